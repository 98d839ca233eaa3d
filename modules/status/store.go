package status

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

// Store keeps presence (see migrations/*/00007_status.sql) on SQLite or
// MySQL/MariaDB.
type Store struct {
	db *store.DB
}

// NewStore returns a Store on db, which must be migrated.
func NewStore(db *store.DB) *Store { return &Store{db: db} }

// userRow is a status_users row; a user without one has the zero row
// with state offline.
type userRow struct {
	UserID        int64        `db:"user_id"`
	Manual        string       `db:"manual"`
	Text          string       `db:"text"`
	TextExpiresAt sql.NullTime `db:"text_expires_at"`
	State         string       `db:"state"`
	InCall        bool         `db:"in_call"`
	LastSeenAt    sql.NullTime `db:"last_seen_at"`
	UpdatedAt     time.Time    `db:"updated_at"`
	exists        bool
}

const userColumns = "user_id, manual, text, text_expires_at, state, in_call, last_seen_at, updated_at"

func nullTime(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	v := t.Time.UTC()
	return &v
}

// presence is what others see, as of now (an expired text is hidden
// even before the sweep clears it).
func (r userRow) presence(now time.Time) Presence {
	p := Presence{UserID: r.UserID, State: r.State, InCall: r.InCall, UpdatedAt: r.UpdatedAt.UTC()}
	if p.State == "" {
		p.State = StateOffline
	}
	if r.Text != "" && (!r.TextExpiresAt.Valid || r.TextExpiresAt.Time.After(now)) {
		p.Text = r.Text
		p.TextExpiresAt = nullTime(r.TextExpiresAt)
	}
	if p.State == StateOffline {
		p.LastSeenAt = nullTime(r.LastSeenAt)
	}
	return p
}

func (s *Store) isMySQL() bool { return s.db.Dialect.Name() == store.DriverMySQL }

// lockUser reads userID's row in tx, locking it on MySQL (SQLite's write
// transactions lock the database).
func (s *Store) lockUser(ctx context.Context, tx *sqlx.Tx, userID int64) (userRow, error) {
	q := "SELECT " + userColumns + " FROM status_users WHERE user_id = ?"
	if s.isMySQL() {
		q += " FOR UPDATE"
	}
	var r userRow
	err := tx.GetContext(ctx, &r, q, userID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return userRow{UserID: userID, State: StateOffline}, nil
	case err != nil:
		return userRow{}, fmt.Errorf("status: read user %d: %w", userID, err)
	}
	r.exists = true
	return r, nil
}

// ensureUser creates userID's row if there is none, in a statement of its
// own: locking a row that does not exist yet takes a gap lock on MySQL,
// and concurrent first changes of new users would deadlock on those.
func (s *Store) ensureUser(ctx context.Context, userID int64, now time.Time) error {
	q := s.db.Dialect.InsertIgnore("status_users", []string{"user_id", "state", "updated_at"})
	if _, err := s.db.ExecContext(ctx, q, userID, StateOffline, store.Time(now)); err != nil {
		return fmt.Errorf("status: create user %d: %w", userID, err)
	}
	return nil
}

// saveUser writes r (inserting it the first time).
func (s *Store) saveUser(ctx context.Context, tx *sqlx.Tx, r userRow) error {
	q := s.db.Dialect.Upsert("status_users",
		[]string{"user_id", "manual", "text", "text_expires_at", "state", "in_call", "last_seen_at", "updated_at"},
		[]string{"user_id"},
		[]string{"manual", "text", "text_expires_at", "state", "in_call", "last_seen_at", "updated_at"})
	_, err := tx.ExecContext(ctx, q, r.UserID, r.Manual, r.Text, r.TextExpiresAt, r.State, r.InCall, r.LastSeenAt, store.Time(r.UpdatedAt))
	if err != nil {
		return fmt.Errorf("status: save user %d: %w", r.UserID, err)
	}
	return nil
}

// deviceCounts counts userID's devices seen after cutoff, and of them
// those not idle.
func (s *Store) deviceCounts(ctx context.Context, q sqlx.QueryerContext, userID int64, cutoff time.Time) (devices, active int, err error) {
	var c struct {
		Devices int           `db:"devices"`
		Idle    sql.NullInt64 `db:"idle"`
	}
	err = sqlx.GetContext(ctx, q, &c,
		"SELECT COUNT(*) AS devices, SUM(idle) AS idle FROM status_devices WHERE user_id = ? AND seen_at > ?",
		userID, store.Time(cutoff))
	if err != nil {
		return 0, 0, fmt.Errorf("status: count devices of user %d: %w", userID, err)
	}
	return c.Devices, c.Devices - int(c.Idle.Int64), nil
}

// inCall reports whether userID has a call that started after cutoff and
// has not ended.
func (s *Store) inCall(ctx context.Context, q sqlx.QueryerContext, userID int64, cutoff time.Time) (bool, error) {
	var n int
	err := sqlx.GetContext(ctx, q, &n,
		"SELECT COUNT(*) FROM status_calls WHERE user_id = ? AND ended_at IS NULL AND started_at > ?",
		userID, store.Time(cutoff))
	if err != nil {
		return false, fmt.Errorf("status: read calls of user %d: %w", userID, err)
	}
	return n > 0, nil
}

// users reads the rows of ids (missing ones are left out).
func (s *Store) users(ctx context.Context, ids []int64) (map[int64]userRow, error) {
	out := make(map[int64]userRow, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	q, args, err := sqlx.In("SELECT "+userColumns+" FROM status_users WHERE user_id IN (?)", ids)
	if err != nil {
		return nil, fmt.Errorf("status: read users: %w", err)
	}
	var rows []userRow
	if err := s.db.SelectContext(ctx, &rows, s.db.Rebind(q), args...); err != nil {
		return nil, fmt.Errorf("status: read users: %w", err)
	}
	for _, r := range rows {
		r.exists = true
		out[r.UserID] = r
	}
	return out, nil
}

// activeUsers returns those of ids with a device in use seen after
// cutoff.
func (s *Store) activeUsers(ctx context.Context, ids []int64, cutoff time.Time) (map[int64]bool, error) {
	out := make(map[int64]bool, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	q, args, err := sqlx.In("SELECT DISTINCT user_id FROM status_devices WHERE user_id IN (?) AND idle = 0 AND seen_at > ?",
		ids, store.Time(cutoff))
	if err != nil {
		return nil, fmt.Errorf("status: read devices: %w", err)
	}
	var live []int64
	if err := s.db.SelectContext(ctx, &live, s.db.Rebind(q), args...); err != nil {
		return nil, fmt.Errorf("status: read devices: %w", err)
	}
	for _, id := range live {
		out[id] = true
	}
	return out, nil
}

// Devices.

func (s *Store) addDevice(ctx context.Context, tx *sqlx.Tx, key, node string, userID int64, session string, now time.Time) error {
	q := s.db.Dialect.Upsert("status_devices",
		[]string{"conn_key", "node", "user_id", "session_id", "idle", "seen_at"},
		[]string{"conn_key"}, []string{"idle", "seen_at"})
	if _, err := tx.ExecContext(ctx, q, key, node, userID, session, false, store.Time(now)); err != nil {
		return fmt.Errorf("status: add device of user %d: %w", userID, err)
	}
	return nil
}

func (s *Store) removeDevice(ctx context.Context, tx *sqlx.Tx, key string) error {
	if _, err := tx.ExecContext(ctx, "DELETE FROM status_devices WHERE conn_key = ?", key); err != nil {
		return fmt.Errorf("status: remove device: %w", err)
	}
	return nil
}

func (s *Store) setIdle(ctx context.Context, tx *sqlx.Tx, key string, idle bool, now time.Time) error {
	if _, err := tx.ExecContext(ctx, "UPDATE status_devices SET idle = ?, seen_at = ? WHERE conn_key = ?", idle, store.Time(now), key); err != nil {
		return fmt.Errorf("status: mark device idle: %w", err)
	}
	return nil
}

// touchNode vouches for every device of node: they are still connected.
func (s *Store) touchNode(ctx context.Context, node string, now time.Time) error {
	if _, err := s.db.ExecContext(ctx, "UPDATE status_devices SET seen_at = ? WHERE node = ?", store.Time(now), node); err != nil {
		return fmt.Errorf("status: refresh devices: %w", err)
	}
	return nil
}

// staleDevices returns the users with devices not vouched for since
// cutoff, and deletes those devices.
func (s *Store) staleDevices(ctx context.Context, cutoff time.Time) ([]int64, error) {
	var users []int64
	err := s.db.InTx(ctx, func(tx *sqlx.Tx) error {
		users = users[:0]
		if err := tx.SelectContext(ctx, &users, "SELECT DISTINCT user_id FROM status_devices WHERE seen_at <= ?", store.Time(cutoff)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "DELETE FROM status_devices WHERE seen_at <= ?", store.Time(cutoff))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("status: sweep stale devices: %w", err)
	}
	return users, nil
}

// expiredTexts returns the users whose text expired at or before now.
func (s *Store) expiredTexts(ctx context.Context, now time.Time) ([]int64, error) {
	var users []int64
	err := s.db.SelectContext(ctx, &users,
		"SELECT user_id FROM status_users WHERE text_expires_at IS NOT NULL AND text_expires_at <= ? LIMIT 1000", store.Time(now))
	if err != nil {
		return nil, fmt.Errorf("status: find expired texts: %w", err)
	}
	return users, nil
}

// Calls.

// startCall records that userID is on callID since at, unless the call
// already ended (a late event).
func (s *Store) startCall(ctx context.Context, tx *sqlx.Tx, userID int64, callID string, at time.Time) error {
	q := s.db.Dialect.InsertIgnore("status_calls", []string{"user_id", "call_id", "started_at"})
	if _, err := tx.ExecContext(ctx, q, userID, callID, store.Time(at)); err != nil {
		return fmt.Errorf("status: start call of user %d: %w", userID, err)
	}
	return nil
}

// endCall marks callID ended for userID, leaving a tombstone when it never
// started here.
func (s *Store) endCall(ctx context.Context, tx *sqlx.Tx, userID int64, callID string, at time.Time) error {
	if err := s.startCall(ctx, tx, userID, callID, at); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE status_calls SET ended_at = ? WHERE user_id = ? AND call_id = ? AND ended_at IS NULL",
		store.Time(at), userID, callID); err != nil {
		return fmt.Errorf("status: end call of user %d: %w", userID, err)
	}
	return nil
}

// overdueCalls returns the users with a call that started at or before
// cutoff and never ended, and closes those calls (the call.ended was
// lost); it also deletes calls that ended before purgeBefore.
func (s *Store) overdueCalls(ctx context.Context, cutoff, purgeBefore, now time.Time) ([]int64, error) {
	var users []int64
	err := s.db.InTx(ctx, func(tx *sqlx.Tx) error {
		users = users[:0]
		if err := tx.SelectContext(ctx, &users,
			"SELECT DISTINCT user_id FROM status_calls WHERE ended_at IS NULL AND started_at <= ?", store.Time(cutoff)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE status_calls SET ended_at = ? WHERE ended_at IS NULL AND started_at <= ?",
			store.Time(now), store.Time(cutoff)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "DELETE FROM status_calls WHERE ended_at IS NOT NULL AND ended_at < ?", store.Time(purgeBefore))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("status: sweep calls: %w", err)
	}
	return users, nil
}

// clipForLog shortens a client-supplied value for a log line.
func clipForLog(s string) string {
	if len(s) <= 64 {
		return s
	}
	return strings.ToValidUTF8(s[:64], "")
}
