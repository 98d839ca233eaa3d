package stream

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"

	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/store"
)

// Event is one event of a user's stream, as stored and as sent to
// clients.
type Event struct {
	Seq  int64           `json:"seq"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
	Time time.Time       `json:"time"`
}

// Pending is the result of AppendTx: the sequences assigned, and the
// announcement to make once the transaction has committed.
type Pending interface {
	// Seqs maps each user to the sequence of the event appended for them.
	Seqs() map[int64]int64
	// Notify publishes the events on the bus so every node's live
	// connections get them. Call it once, after commit (never after a
	// rollback). Failures are logged, not returned: the events are stored,
	// and connections find them at the next event or their periodic check
	// at the latest.
	Notify(ctx context.Context)
}

// batchUsers bounds the users per multi-row statement, far below both
// dialects' limits on placeholders (5 per row for events).
const batchUsers = 500

// AppendTx appends one event of type typ with data (anything
// encoding/json marshals; a json.RawMessage is stored as is) to the stream
// of each of userIDs, inside tx, so the change the event announces and the
// event commit or roll back together. Duplicate user ids get one event.
// typ is a dotted name such as "chat.message.created".
//
// Each user's head row stays locked until tx ends, so concurrent appends
// for the same user (from any node) take turns and sequences have no gaps
// or duplicates; keep such transactions short. Users are locked in
// ascending id order, so two multi-user appends cannot deadlock each
// other. On a lock conflict the error is one store's Dialect.IsRetryable
// accepts: run the transaction with store.DB.InTx, which retries it.
//
// After a successful commit call Notify on the returned Pending.
func (s *Stream) AppendTx(ctx context.Context, tx *sqlx.Tx, userIDs []int64, typ string, data any) (Pending, error) {
	if err := validType(typ, true); err != nil {
		return nil, err
	}
	raw, err := s.encodeData(data)
	if err != nil {
		return nil, err
	}
	users := slices.Clone(userIDs)
	slices.Sort(users)
	users = slices.Compact(users)
	if len(users) > 0 && users[0] <= 0 {
		return nil, fmt.Errorf("%w: user id %d", ErrInvalidEvent, users[0])
	}
	p := &pending{s: s, typ: typ, data: raw, time: store.Time(s.now()), seqs: make(map[int64]int64, len(users))}
	for chunk := range slices.Chunk(users, batchUsers) {
		if err := s.appendChunk(ctx, tx, chunk, p); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (s *Stream) appendChunk(ctx context.Context, tx *sqlx.Tx, users []int64, p *pending) error {
	args := make([]any, len(users))
	for i, u := range users {
		args[i] = u
	}
	// One statement allocates the next sequence of every user: the upsert
	// takes each head row's write lock (SQLite: the whole database, the
	// transaction being IMMEDIATE; InnoDB: the row, held until commit) and
	// increments it; reading the rows back in the same transaction sees
	// the transaction's own increments.
	rows := strings.TrimSuffix(strings.Repeat("(?, 1, 1), ", len(users)), ", ")
	var q string
	switch s.db.Dialect.Name() {
	case store.DriverMySQL:
		q = "INSERT INTO stream_heads (user_id, last_seq, oldest_seq) VALUES " + rows +
			" ON DUPLICATE KEY UPDATE last_seq = last_seq + 1"
	default:
		q = "INSERT INTO stream_heads (user_id, last_seq, oldest_seq) VALUES " + rows +
			" ON CONFLICT (user_id) DO UPDATE SET last_seq = last_seq + 1"
	}
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("stream: allocate sequences: %w", err)
	}
	var heads []struct {
		UserID  int64 `db:"user_id"`
		LastSeq int64 `db:"last_seq"`
	}
	q = "SELECT user_id, last_seq FROM stream_heads WHERE user_id IN (" + placeholders(len(users)) + ")"
	if err := tx.SelectContext(ctx, &heads, q, args...); err != nil {
		return fmt.Errorf("stream: read sequences: %w", err)
	}
	if len(heads) != len(users) {
		return fmt.Errorf("stream: read %d sequences for %d users", len(heads), len(users))
	}
	ins := make([]any, 0, 5*len(users))
	for _, h := range heads {
		p.seqs[h.UserID] = h.LastSeq
		ins = append(ins, h.UserID, h.LastSeq, p.typ, string(p.data), p.time)
	}
	q = "INSERT INTO stream_events (user_id, seq, type, data, created_at) VALUES " +
		strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?), ", len(users)), ", ")
	if _, err := tx.ExecContext(ctx, q, ins...); err != nil {
		return fmt.Errorf("stream: insert events: %w", err)
	}
	return nil
}

// Append is AppendTx in a transaction of its own (retried on lock
// conflicts) followed by Notify. It returns the sequence per user.
func (s *Stream) Append(ctx context.Context, userIDs []int64, typ string, data any) (map[int64]int64, error) {
	var p Pending
	err := s.db.InTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		p, err = s.AppendTx(ctx, tx, userIDs, typ, data)
		return err
	})
	if err != nil {
		return nil, err
	}
	p.Notify(ctx)
	return p.Seqs(), nil
}

// encodeData turns an event's or signal's data into the JSON stored and
// sent, enforcing MaxEventBytes and valid UTF-8 (MySQL refuses anything
// else in a utf8mb4 column, and browsers in a text frame).
func (s *Stream) encodeData(data any) (json.RawMessage, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("%w: data: %v", ErrInvalidEvent, err)
	}
	if len(raw) > s.o.MaxEventBytes {
		return nil, fmt.Errorf("%w: %d bytes of data (max %d)", ErrEventTooLarge, len(raw), s.o.MaxEventBytes)
	}
	if !utf8.Valid(raw) {
		return nil, fmt.Errorf("%w: data is not valid UTF-8", ErrInvalidEvent)
	}
	return raw, nil
}

type pending struct {
	s    *Stream
	typ  string
	data json.RawMessage
	time time.Time
	seqs map[int64]int64
}

func (p *pending) Seqs() map[int64]int64 { return maps.Clone(p.seqs) }

func (p *pending) Notify(ctx context.Context) {
	for _, uid := range slices.Sorted(maps.Keys(p.seqs)) {
		seq := p.seqs[uid]
		p.s.met.appended.Inc()
		ev, err := json.Marshal(Event{Seq: seq, Type: p.typ, Data: p.data, Time: p.time})
		if err == nil {
			var payload []byte
			payload, err = json.Marshal(appendedMsg{UserID: uid, Seq: seq, Event: ev})
			if err == nil {
				err = p.s.bus.Publish(ctx, bus.Event{Topic: TopicAppended, Key: strconv.FormatInt(uid, 10), Payload: payload})
			}
		}
		if err != nil {
			p.s.log.Warn("stream: announcing an appended event failed; connections will find it at their next event or check",
				"user_id", uid, "seq", seq, "type", p.typ, "err", err)
		}
	}
}

// Signal sends an ephemeral event (typing, presence pings) to the open
// connections of userIDs on every node: no sequence, not stored, dropped
// for connections that are behind. typ is the signal's name ("typing").
func (s *Stream) Signal(ctx context.Context, userIDs []int64, typ string, data any) error {
	if err := validType(typ, false); err != nil {
		return err
	}
	raw, err := s.encodeData(data)
	if err != nil {
		return err
	}
	users := slices.Clone(userIDs)
	slices.Sort(users)
	users = slices.Compact(users)
	if len(users) == 0 {
		return nil
	}
	if users[0] <= 0 {
		return fmt.Errorf("%w: user id %d", ErrInvalidEvent, users[0])
	}
	payload, err := json.Marshal(signalMsg{UserIDs: users, Signal: typ, Data: raw})
	if err != nil {
		return fmt.Errorf("stream: encode signal %q: %w", typ, err)
	}
	if err := s.bus.Publish(ctx, bus.Event{Topic: TopicSignal, Payload: payload}); err != nil {
		return fmt.Errorf("stream: signal %q: %w", typ, err)
	}
	return nil
}

// head is a user's stream position.
type head struct {
	Last   int64 `db:"last_seq"`   // newest sequence, 0 when none
	Oldest int64 `db:"oldest_seq"` // lowest retained, 1 when nothing was purged
}

func (s *Stream) head(ctx context.Context, userID int64) (head, error) {
	var h head
	err := s.db.GetContext(ctx, &h, "SELECT last_seq, oldest_seq FROM stream_heads WHERE user_id = ?", userID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return head{Last: 0, Oldest: 1}, nil
	case err != nil:
		return head{}, fmt.Errorf("stream: read head of user %d: %w", userID, err)
	}
	return h, nil
}

// Since paging limits.
const (
	defaultSinceLimit = 100
	maxSinceLimit     = 1000
)

// Since returns up to limit events of userID after sequence after, in
// order (limit <= 0 means 100; at most 1000). Fewer than limit means the
// caller is up to date. It fails with ErrResync when events after after
// are no longer retained (after < oldest-1) or after is beyond the newest
// sequence: the client must reload its state.
func (s *Stream) Since(ctx context.Context, userID, after int64, limit int) ([]Event, error) {
	if after < 0 {
		return nil, fmt.Errorf("%w: negative position %d", ErrInvalidEvent, after)
	}
	limit = store.PageLimit(limit, defaultSinceLimit, maxSinceLimit)
	var rows []struct {
		Seq       int64     `db:"seq"`
		Type      string    `db:"type"`
		Data      []byte    `db:"data"`
		CreatedAt time.Time `db:"created_at"`
	}
	err := s.db.SelectContext(ctx, &rows,
		"SELECT seq, type, data, created_at FROM stream_events WHERE user_id = ? AND seq > ? ORDER BY seq LIMIT ?",
		userID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("stream: read events of user %d after %d: %w", userID, after, err)
	}
	// The events from oldest to last are all present, and purges delete
	// from the bottom, so a page that starts right after the position is
	// complete. Otherwise the head says why: it is read after the events,
	// so it is at least as new as they are.
	if len(rows) == 0 || rows[0].Seq != after+1 {
		h, err := s.head(ctx, userID)
		if err != nil {
			return nil, err
		}
		if after < h.Oldest-1 || after > h.Last {
			return nil, fmt.Errorf("%w: user %d position %d, retained %d..%d", ErrResync, userID, after, h.Oldest, h.Last)
		}
		if len(rows) > 0 {
			// Cannot happen while the invariant holds; refuse to skip.
			return nil, fmt.Errorf("stream: user %d has no event %d but retains %d..%d", userID, after+1, h.Oldest, h.Last)
		}
	}
	out := make([]Event, len(rows))
	for i, r := range rows {
		out[i] = Event{Seq: r.Seq, Type: r.Type, Data: json.RawMessage(r.Data), Time: r.CreatedAt.UTC()}
	}
	return out, nil
}

// Purge applies retention: for each user it deletes the events older
// than Retention and those beyond the newest MaxPerUser, and advances the
// user's oldest sequence past them. It returns how many events it
// deleted. Each user is purged in a transaction of its own that advances
// the head and deletes together, so a reader never finds a retained range
// with a hole.
func (s *Stream) Purge(ctx context.Context) (int, error) {
	keep := map[int64]int64{} // user -> lowest sequence to keep
	var old []struct {
		UserID int64 `db:"user_id"`
		Max    int64 `db:"max_seq"`
	}
	cutoff := store.Time(s.now().Add(-s.o.Retention))
	err := s.db.SelectContext(ctx, &old,
		"SELECT user_id, MAX(seq) AS max_seq FROM stream_events WHERE created_at < ? GROUP BY user_id", cutoff)
	if err != nil {
		return 0, fmt.Errorf("stream: purge: find expired events: %w", err)
	}
	for _, o := range old {
		keep[o.UserID] = o.Max + 1
	}
	var full []struct {
		UserID int64 `db:"user_id"`
		Last   int64 `db:"last_seq"`
	}
	err = s.db.SelectContext(ctx, &full,
		"SELECT user_id, last_seq FROM stream_heads WHERE last_seq - oldest_seq >= ?", s.o.MaxPerUser)
	if err != nil {
		return 0, fmt.Errorf("stream: purge: find full streams: %w", err)
	}
	for _, f := range full {
		keep[f.UserID] = max(keep[f.UserID], f.Last-int64(s.o.MaxPerUser)+1)
	}

	total := 0
	for _, uid := range slices.Sorted(maps.Keys(keep)) {
		from := keep[uid]
		var n int64
		err := s.db.InTx(ctx, func(tx *sqlx.Tx) error {
			// The head first: it locks the user against appends (same
			// order as AppendTx, so the two cannot deadlock).
			if _, err := tx.ExecContext(ctx,
				"UPDATE stream_heads SET oldest_seq = ? WHERE user_id = ? AND oldest_seq < ?", from, uid, from); err != nil {
				return err
			}
			res, err := tx.ExecContext(ctx, "DELETE FROM stream_events WHERE user_id = ? AND seq < ?", uid, from)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return total, fmt.Errorf("stream: purge user %d below %d: %w", uid, from, err)
		}
		total += int(n)
	}
	return total, nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}
