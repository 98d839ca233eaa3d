package status

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/elph-server/elph/platform/stream"
)

// device is one connection of this node: a client of a user.
type device struct {
	conn stream.Conn
	// idleSince is when the client's user stopped using it, by its last
	// report; zero while in use.
	idleSince time.Time
	idle      bool // marked idle in the database
	watching  []int64
}

// conns is this node's devices and who watches whom.
type conns struct {
	mu       sync.RWMutex
	byID     map[uint64]*device
	watchers map[int64]map[uint64]stream.Conn // watched user -> connections
}

func newConns() *conns {
	return &conns{byID: map[uint64]*device{}, watchers: map[int64]map[uint64]stream.Conn{}}
}

func (cs *conns) add(c stream.Conn) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.byID[c.ID] = &device{conn: c}
}

// remove forgets c and whom it watched.
func (cs *conns) remove(c stream.Conn) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if d, ok := cs.byID[c.ID]; ok {
		cs.unwatchLocked(d)
		delete(cs.byID, c.ID)
	}
}

func (cs *conns) unwatchLocked(d *device) {
	for _, u := range d.watching {
		if w := cs.watchers[u]; w != nil {
			delete(w, d.conn.ID)
			if len(w) == 0 {
				delete(cs.watchers, u)
			}
		}
	}
	d.watching = nil
}

// watch replaces what c watches; false when c is not (or no longer) open.
func (cs *conns) watch(c stream.Conn, users []int64) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	d, ok := cs.byID[c.ID]
	if !ok {
		return false
	}
	cs.unwatchLocked(d)
	d.watching = users
	for _, u := range users {
		w := cs.watchers[u]
		if w == nil {
			w = map[uint64]stream.Conn{}
			cs.watchers[u] = w
		}
		w[c.ID] = c
	}
	return true
}

// watchersOf returns the connections watching userID.
func (cs *conns) watchersOf(userID int64) []stream.Conn {
	cs.mu.RLock()
	defer cs.mu.RUnlock()
	w := cs.watchers[userID]
	out := make([]stream.Conn, 0, len(w))
	for _, c := range w {
		out = append(out, c)
	}
	return out
}

// counts returns the number of devices and of watched pairs, for metrics.
func (cs *conns) counts() (devices, pairs int) {
	cs.mu.RLock()
	defer cs.mu.RUnlock()
	for _, w := range cs.watchers {
		pairs += len(w)
	}
	return len(cs.byID), pairs
}

// setIdleSince records a client's report; it returns whether the device
// must be marked idle or in use now (change) and which (idle).
func (cs *conns) setIdleSince(c stream.Conn, since time.Time, now time.Time, awayAfter time.Duration) (change, idle, ok bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	d, ok := cs.byID[c.ID]
	if !ok {
		return false, false, false
	}
	d.idleSince = since
	idle = !since.IsZero() && now.Sub(since) >= awayAfter
	if idle == d.idle {
		return false, idle, true
	}
	d.idle = idle
	return true, idle, true
}

// dueIdle returns the devices whose idle time has now crossed awayAfter,
// marking them idle.
func (cs *conns) dueIdle(now time.Time, awayAfter time.Duration) []stream.Conn {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var out []stream.Conn
	for _, d := range cs.byID {
		if !d.idle && !d.idleSince.IsZero() && now.Sub(d.idleSince) >= awayAfter {
			d.idle = true
			out = append(out, d.conn)
		}
	}
	return out
}

// ofSession returns this node's connections of a session.
func (cs *conns) ofSession(userID int64, session string) []stream.Conn {
	cs.mu.RLock()
	defer cs.mu.RUnlock()
	var out []stream.Conn
	for _, d := range cs.byID {
		if d.conn.UserID == userID && d.conn.SessionID == session {
			out = append(out, d.conn)
		}
	}
	return out
}

// connKey names a connection in status_devices: unique across nodes and
// restarts.
func (m *Module) connKey(c stream.Conn) string {
	return m.node + ":" + strconv.FormatUint(c.ID, 10)
}

// listener is the module as the stream's Listener. Its methods run on the
// connection's goroutines and wait for the database: a connection's
// hello waits for its device to count, and its reads for its reports.
type listener struct{ m *Module }

// listenerTimeout bounds the database work of one listener call.
const listenerTimeout = 10 * time.Second

func (l listener) Opened(c stream.Conn) {
	m := l.m
	m.conns.add(c)
	m.refreshGauges()
	ctx, cancel := context.WithTimeout(context.Background(), listenerTimeout)
	defer cancel()
	_, err := m.change(ctx, c.UserID, false, func(tx *sqlx.Tx, _ *userRow) error {
		return m.store.addDevice(ctx, tx, m.connKey(c), m.node, c.UserID, c.SessionID, m.now())
	})
	if err != nil {
		m.log.Error("status: device not counted", "user_id", c.UserID, "err", err)
	}
}

func (l listener) Closed(c stream.Conn, shutdown bool) {
	m := l.m
	m.conns.remove(c)
	m.refreshGauges()
	if shutdown {
		// The client reconnects, here after a restart or to another
		// node: its row keeps the user's presence steady meanwhile and
		// expires after the device timeout if it does not. This also
		// keeps the drain of a node with many clients short.
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), listenerTimeout)
	defer cancel()
	_, err := m.change(ctx, c.UserID, false, func(tx *sqlx.Tx, _ *userRow) error {
		return m.store.removeDevice(ctx, tx, m.connKey(c))
	})
	if err != nil {
		// The row expires after the device timeout.
		m.log.Error("status: device not removed", "user_id", c.UserID, "err", err)
	}
}

// Frame handles status.watch and status.activity (docs/status.md).
func (l listener) Frame(c stream.Conn, typ string, data json.RawMessage) {
	m := l.m
	ctx, cancel := context.WithTimeout(context.Background(), listenerTimeout)
	defer cancel()
	var err error
	switch typ {
	case frameWatch:
		err = m.onWatch(ctx, c, data)
	case frameActivity:
		err = m.onActivity(ctx, c, data)
	default:
		err = fmt.Errorf("%w: unknown frame type %q", ErrInvalid, clipForLog(typ))
	}
	if err != nil {
		m.met.frames.WithLabelValues("refused").Inc()
		m.signalError(c, err)
		return
	}
	m.met.frames.WithLabelValues("ok").Inc()
}

// WatchFrame is the data of status.watch: the complete list of users the
// connection wants changes of (it replaces the previous one; empty stops
// watching).
type WatchFrame struct {
	Users []int64 `json:"users"`
}

// ActivityFrame is the data of status.activity: how long the user has not
// touched this client (0: in use now).
type ActivityFrame struct {
	IdleSeconds int64 `json:"idle_seconds"`
}

// maxIdleSeconds bounds a reported idle time (a year).
const maxIdleSeconds = 365 * 24 * 3600

// DecodeWatch parses and checks a status.watch frame's data: user ids
// positive, at most max of them; duplicates are removed.
func DecodeWatch(data json.RawMessage, max int) ([]int64, error) {
	var f WatchFrame
	if err := decodeStrict(data, &f); err != nil {
		return nil, err
	}
	if len(f.Users) > max {
		return nil, fmt.Errorf("%w: %d users to watch, at most %d", ErrInvalid, len(f.Users), max)
	}
	users := slices.Clone(f.Users)
	slices.Sort(users)
	users = slices.Compact(users)
	if len(users) > 0 && users[0] <= 0 {
		return nil, fmt.Errorf("%w: user id %d", ErrInvalid, users[0])
	}
	return users, nil
}

// DecodeActivity parses and checks a status.activity frame's data.
func DecodeActivity(data json.RawMessage) (time.Duration, error) {
	var f ActivityFrame
	if err := decodeStrict(data, &f); err != nil {
		return 0, err
	}
	if f.IdleSeconds < 0 || f.IdleSeconds > maxIdleSeconds {
		return 0, fmt.Errorf("%w: idle_seconds %d is outside 0..%d", ErrInvalid, f.IdleSeconds, maxIdleSeconds)
	}
	return time.Duration(f.IdleSeconds) * time.Second, nil
}

func (m *Module) onWatch(ctx context.Context, c stream.Conn, data json.RawMessage) error {
	users, err := DecodeWatch(data, m.cfg.MaxWatch)
	if err != nil {
		return err
	}
	if !m.conns.watch(c, users) {
		return nil // closed meanwhile
	}
	m.refreshGauges()
	ps, err := m.Query(ctx, users)
	if err != nil {
		return err
	}
	return m.stream.SignalConns([]stream.Conn{c}, SignalPresenceList, presenceList{Presences: ps})
}

// presenceList is the data of the presence_list signal and of the bulk
// query's answer.
type presenceList struct {
	Presences []Presence `json:"presences"`
}

func (m *Module) onActivity(ctx context.Context, c stream.Conn, data json.RawMessage) error {
	idle, err := DecodeActivity(data)
	if err != nil {
		return err
	}
	return m.report(ctx, c, idle)
}

// report applies a client's idle time to its device.
func (m *Module) report(ctx context.Context, c stream.Conn, idleFor time.Duration) error {
	now := m.now()
	var since time.Time
	if idleFor > 0 {
		since = now.Add(-idleFor)
	}
	change, idle, ok := m.conns.setIdleSince(c, since, now, m.cfg.AwayAfter)
	if !ok || !change {
		return nil
	}
	return m.markIdle(ctx, c, idle)
}

func (m *Module) markIdle(ctx context.Context, c stream.Conn, idle bool) error {
	_, err := m.change(ctx, c.UserID, false, func(tx *sqlx.Tx, _ *userRow) error {
		return m.store.setIdle(ctx, tx, m.connKey(c), idle, m.now())
	})
	return err
}

// promoteIdle marks idle the devices whose reported idle time has grown
// past away_after since the report, for module.Every.
func (m *Module) promoteIdle(ctx context.Context) error {
	var errs []error
	for _, c := range m.conns.dueIdle(m.now(), m.cfg.AwayAfter) {
		if err := m.markIdle(ctx, c, true); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("status: %d devices not marked idle: %w", len(errs), errs[0])
	}
	return nil
}

// signalError tells the client a frame was refused.
func (m *Module) signalError(c stream.Conn, err error) {
	code, msg := "internal", "the frame could not be handled"
	if isInvalid(err) {
		code, msg = "invalid", strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": ")
	} else {
		m.log.Error("status: client frame failed", "user_id", c.UserID, "err", err)
	}
	if m.stream != nil {
		_ = m.stream.SignalConns([]stream.Conn{c}, SignalError, map[string]string{"code": code, "message": msg})
	}
}

func (m *Module) refreshGauges() {
	d, p := m.conns.counts()
	m.met.devices.Set(float64(d))
	m.met.watches.Set(float64(p))
}
