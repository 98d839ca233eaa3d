package history

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/elph-server/elph/platform/store"
)

// ErrNotFound: there is no such record for the user (it belongs to
// someone else, was deleted or never existed).
var ErrNotFound = errors.New("history: not found")

// Store keeps call records (see migrations/*/00006_history.sql) on SQLite
// or MySQL/MariaDB. Times are stored with store.Time, so what is read
// back equals what was written on either database.
type Store struct {
	db *store.DB
}

// NewStore returns a Store on db, which must be migrated.
func NewStore(db *store.DB) *Store { return &Store{db: db} }

const recordColumns = `id, user_id, call_id, direction, local_number, peer_number, peer_name, started_at,
	ringing_at, answered_at, ended_at, end_cause, duration_seconds, result, seen, deleted`

// recordRow is a Call as the table holds it, with its NULLs.
type recordRow struct {
	ID          int64        `db:"id"`
	UserID      int64        `db:"user_id"`
	CallID      string       `db:"call_id"`
	Direction   string       `db:"direction"`
	LocalNumber string       `db:"local_number"`
	PeerNumber  string       `db:"peer_number"`
	PeerName    string       `db:"peer_name"`
	StartedAt   time.Time    `db:"started_at"`
	RingingAt   sql.NullTime `db:"ringing_at"`
	AnsweredAt  sql.NullTime `db:"answered_at"`
	EndedAt     sql.NullTime `db:"ended_at"`
	EndCause    string       `db:"end_cause"`
	Duration    int64        `db:"duration_seconds"`
	Result      string       `db:"result"`
	Seen        bool         `db:"seen"`
	Deleted     bool         `db:"deleted"`
}

func (r recordRow) call() Call {
	return Call{
		ID: r.ID, CallID: r.CallID, Direction: r.Direction, LocalNumber: r.LocalNumber,
		PeerNumber: r.PeerNumber, PeerName: r.PeerName, StartedAt: r.StartedAt.UTC(),
		RingingAt: nullTime(r.RingingAt), AnsweredAt: nullTime(r.AnsweredAt), EndedAt: nullTime(r.EndedAt),
		DurationSeconds: r.Duration, Result: r.Result, Seen: r.Seen,
		userID: r.UserID, cause: r.EndCause, deleted: r.Deleted,
	}
}

func nullTime(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	v := t.Time.UTC()
	return &v
}

func toNull(t *time.Time) sql.NullTime {
	if t == nil {
		return sql.NullTime{}
	}
	return sql.NullTime{Time: store.Time(*t), Valid: true}
}

func (s *Store) isMySQL() bool { return s.db.Dialect.Name() == store.DriverMySQL }

// lock reads the record of (callID, userID) for an update in tx, or
// reports false when there is none. On MySQL the row (or the gap where it
// would be) stays locked until tx ends; SQLite's write transactions lock
// the whole database anyway.
func (s *Store) lock(ctx context.Context, tx *sqlx.Tx, callID string, userID int64) (Call, bool, error) {
	q := "SELECT " + recordColumns + " FROM call_records WHERE call_id = ? AND user_id = ?"
	if s.isMySQL() {
		q += " FOR UPDATE"
	}
	var r recordRow
	err := tx.GetContext(ctx, &r, q, callID, userID)
	if errors.Is(err, sql.ErrNoRows) {
		return Call{}, false, nil
	}
	if err != nil {
		return Call{}, false, fmt.Errorf("history: read record %q of user %d: %w", callID, userID, err)
	}
	return r.call(), true, nil
}

// errRace: another node inserted the record between lock and insert; the
// caller reads it again.
var errRace = errors.New("history: record inserted concurrently")

// insert stores the new record c and sets its id.
func (s *Store) insert(ctx context.Context, tx *sqlx.Tx, c *Call, now time.Time) error {
	res, err := tx.ExecContext(ctx, `INSERT INTO call_records (user_id, call_id, direction, local_number, peer_number,
		peer_name, peer_folded, started_at, ringing_at, answered_at, ended_at, end_cause, duration_seconds, result,
		seen, deleted, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.userID, c.CallID, c.Direction, c.LocalNumber, c.PeerNumber, c.PeerName, peerFolded(*c),
		store.Time(c.StartedAt), toNull(c.RingingAt), toNull(c.AnsweredAt), toNull(c.EndedAt), c.cause,
		c.DurationSeconds, c.Result, c.Seen, c.deleted, store.Time(now))
	if s.db.Dialect.IsUniqueViolation(err) {
		return errRace
	}
	if err != nil {
		return fmt.Errorf("history: insert record %q of user %d: %w", c.CallID, c.userID, err)
	}
	if c.ID, err = res.LastInsertId(); err != nil {
		return fmt.Errorf("history: insert record %q of user %d: %w", c.CallID, c.userID, err)
	}
	return nil
}

// update writes back the merged record c (all but its keys and deleted).
func (s *Store) update(ctx context.Context, tx *sqlx.Tx, c Call, now time.Time) error {
	_, err := tx.ExecContext(ctx, `UPDATE call_records SET direction = ?, local_number = ?, peer_number = ?,
		peer_name = ?, peer_folded = ?, started_at = ?, ringing_at = ?, answered_at = ?, ended_at = ?, end_cause = ?,
		duration_seconds = ?, result = ?, seen = ?, updated_at = ? WHERE id = ?`,
		c.Direction, c.LocalNumber, c.PeerNumber, c.PeerName, peerFolded(c), store.Time(c.StartedAt),
		toNull(c.RingingAt), toNull(c.AnsweredAt), toNull(c.EndedAt), c.cause, c.DurationSeconds, c.Result,
		c.Seen, store.Time(now), c.ID)
	if err != nil {
		return fmt.Errorf("history: update record %d: %w", c.ID, err)
	}
	return nil
}

// peerFolded is the text the peer filter searches.
func peerFolded(c Call) string {
	return store.Fold(c.PeerName + " " + c.PeerNumber)
}

// Get returns record id of userID, or ErrNotFound (also for a deleted
// record or someone else's).
func (s *Store) Get(ctx context.Context, userID, id int64) (Call, error) {
	var r recordRow
	err := s.db.GetContext(ctx, &r, "SELECT "+recordColumns+" FROM call_records WHERE id = ? AND user_id = ? AND deleted = 0", id, userID)
	if errors.Is(err, sql.ErrNoRows) {
		return Call{}, fmt.Errorf("history: record %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Call{}, fmt.Errorf("history: read record %d: %w", id, err)
	}
	return r.call(), nil
}

// Filter selects records of a list or an export. The zero Filter selects
// all of a user's records.
type Filter struct {
	Direction string // "inbound", "outbound" or "" for both
	Result    string // one of the results or "" for all
	// Peer is matched, case-insensitively, as a substring of the peer's
	// name or number.
	Peer string
	// From and To bound started_at: From inclusive, To exclusive; zero for
	// no bound.
	From, To time.Time
}

// pagePos is the position of a page of a list: the last row's sort key.
type pagePos struct {
	StartedAt time.Time `json:"s"`
	ID        int64     `json:"i"`
}

// list returns up to limit records of userID matching f, newest first,
// after the position after (nil: from the newest).
func (s *Store) list(ctx context.Context, userID int64, f Filter, after *pagePos, limit int) ([]Call, error) {
	var (
		where = []string{"user_id = ?", "deleted = 0"}
		args  = []any{userID}
	)
	if f.Direction != "" {
		where, args = append(where, "direction = ?"), append(args, f.Direction)
	}
	if f.Result != "" {
		where, args = append(where, "result = ?"), append(args, f.Result)
	}
	if p := store.Fold(f.Peer); p != "" {
		where, args = append(where, `peer_folded LIKE ? ESCAPE '!'`), append(args, "%"+escapeLike(p)+"%")
	}
	if !f.From.IsZero() {
		where, args = append(where, "started_at >= ?"), append(args, store.Time(f.From))
	}
	if !f.To.IsZero() {
		where, args = append(where, "started_at < ?"), append(args, store.Time(f.To))
	}
	if after != nil {
		t := store.Time(after.StartedAt)
		where = append(where, "(started_at < ? OR started_at = ? AND id < ?)")
		args = append(args, t, t, after.ID)
	}
	q := "SELECT " + recordColumns + " FROM call_records WHERE " + strings.Join(where, " AND ") +
		" ORDER BY started_at DESC, id DESC LIMIT ?"
	var rows []recordRow
	if err := s.db.SelectContext(ctx, &rows, q, append(args, limit)...); err != nil {
		return nil, fmt.Errorf("history: list records of user %d: %w", userID, err)
	}
	out := make([]Call, len(rows))
	for i, r := range rows {
		out[i] = r.call()
	}
	return out, nil
}

// escapeLike escapes LIKE's wildcards with "!" (a backslash would need
// escaping itself in MySQL string literals).
func escapeLike(s string) string {
	return strings.NewReplacer("!", "!!", "%", "!%", "_", "!_").Replace(s)
}

// unseenMissed counts userID's missed calls not marked seen.
func (s *Store) unseenMissed(ctx context.Context, q sqlx.QueryerContext, userID int64) (int, error) {
	var n int
	err := sqlx.GetContext(ctx, q, &n,
		"SELECT COUNT(*) FROM call_records WHERE user_id = ? AND result = ? AND seen = 0 AND deleted = 0",
		userID, ResultMissed)
	if err != nil {
		return 0, fmt.Errorf("history: count missed calls of user %d: %w", userID, err)
	}
	return n, nil
}

// markSeen marks userID's missed calls seen, those with ids up to upTo
// (0: all), and returns how many it marked.
func (s *Store) markSeen(ctx context.Context, tx *sqlx.Tx, userID, upTo int64, now time.Time) (int64, error) {
	q := "UPDATE call_records SET seen = 1, updated_at = ? WHERE user_id = ? AND result = ? AND seen = 0 AND deleted = 0"
	args := []any{store.Time(now), userID, ResultMissed}
	if upTo > 0 {
		q, args = q+" AND id <= ?", append(args, upTo)
	}
	res, err := tx.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("history: mark missed calls of user %d seen: %w", userID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("history: mark missed calls of user %d seen: %w", userID, err)
	}
	return n, nil
}

// softDelete hides record id from userID, or returns ErrNotFound.
func (s *Store) softDelete(ctx context.Context, tx *sqlx.Tx, userID, id int64, now time.Time) error {
	res, err := tx.ExecContext(ctx, "UPDATE call_records SET deleted = 1, updated_at = ? WHERE id = ? AND user_id = ? AND deleted = 0",
		store.Time(now), id, userID)
	if err != nil {
		return fmt.Errorf("history: delete record %d: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("history: delete record %d: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("history: record %d: %w", id, ErrNotFound)
	}
	return nil
}

// purge deletes up to limit records that started before cutoff and
// returns how many it deleted.
func (s *Store) purge(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	var ids []int64
	err := s.db.SelectContext(ctx, &ids, "SELECT id FROM call_records WHERE started_at < ? ORDER BY started_at LIMIT ?",
		store.Time(cutoff), limit)
	if err != nil {
		return 0, fmt.Errorf("history: find expired records: %w", err)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	q, args, err := sqlx.In("DELETE FROM call_records WHERE id IN (?)", ids)
	if err != nil {
		return 0, fmt.Errorf("history: delete expired records: %w", err)
	}
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("history: delete expired records: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("history: delete expired records: %w", err)
	}
	return int(n), nil
}

// count is the number of records kept, deleted ones included (the
// elph_history_records gauge).
func (s *Store) count(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.GetContext(ctx, &n, "SELECT COUNT(*) FROM call_records"); err != nil {
		return 0, fmt.Errorf("history: count records: %w", err)
	}
	return n, nil
}
