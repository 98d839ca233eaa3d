// Package status is the presence module: whether each user is online,
// away, in do-not-disturb, in a call or offline, with a personal status
// text and the last time they were seen.
//
// A user's state is computed (see resolve) from what they chose, their
// connected devices on every node (one device in use means online; all
// idle means away), and their calls (from the call.* events of the SIP
// edge and the ECSS bridge). Devices are the WebSocket connections of the
// per-user stream: the module hears of them as a stream.Listener, and
// clients report idle time and the people they watch on the same socket
// (docs/status.md). Every change is published on the bus
// (status.presence.changed, key: the user id); every node's module
// delivers it to its own connections that watch that user, within
// milliseconds.
package status

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/platform/auth"
	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/module"
	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/stream"
)

// Name is the module's name in configuration and logs.
const Name = "status"

// Bus topics.
const (
	// TopicPresenceChanged: a user's presence changed (key: the user id;
	// payload: Presence).
	TopicPresenceChanged = "status.presence.changed"
	// callSubject is every call event; the module uses started (outbound),
	// answered and ended.
	callSubject = "call.>"
)

// Signals on the stream (ephemeral: a client asks again after
// reconnecting).
const (
	// SignalPresence carries one Presence: a watched user (or the user
	// themself) changed.
	SignalPresence = "presence"
	// SignalPresenceList answers status.watch with the current presence of
	// everyone watched ({"presences":[...]}).
	SignalPresenceList = "presence_list"
	// SignalError tells a client that a frame it sent was refused
	// ({"code":"...","message":"..."}).
	SignalError = "status_error"
)

// Client frames (type "status.<verb>") the module handles.
const (
	frameWatch    = "status.watch"
	frameActivity = "status.activity"
)

// lockStripes serialises the changes of one user on this node.
const lockStripes = 64

// Options are what the wiring hands the module.
type Options struct {
	Config config.Status
	Log    *slog.Logger // nil: discard
	DB     *store.DB
	Bus    bus.Bus
	// Stream is the node's per-user stream; nil: no WebSocket presence on
	// this node (REST only, and no devices are counted here).
	Stream   *stream.Stream
	Verifier *auth.Verifier
	Metrics  prometheus.Registerer // nil: metrics not registered
	Now      func() time.Time      // nil: time.Now
}

// Module is the status module.
type Module struct {
	cfg      config.Status
	log      *slog.Logger
	db       *store.DB
	store    *Store
	bus      bus.Bus
	stream   *stream.Stream
	verifier *auth.Verifier
	met      *metrics
	now      func() time.Time
	node     string // this process's name in status_devices
	locks    [lockStripes]sync.Mutex
	known    sync.Map // user ids whose status_users row exists

	conns *conns

	mu     sync.Mutex
	subs   []bus.Subscription
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ module.Module = (*Module)(nil)

// New validates o and provisions the module; it starts nothing. With a
// stream it registers as its listener, so it must run before the stream
// starts.
func New(o Options) (*Module, error) {
	switch {
	case o.DB == nil:
		return nil, errors.New("status: no DB")
	case o.Bus == nil:
		return nil, errors.New("status: no Bus")
	case o.Verifier == nil:
		return nil, errors.New("status: no Verifier")
	}
	if c := o.Config; c.AwayAfter <= 0 || c.DeviceTimeout <= 0 || c.MaxWatch <= 0 || c.MaxCallDuration <= 0 {
		return nil, errors.New("status: Config has zero limits; start from config.Default().Status")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	met, err := newMetrics(o.Metrics)
	if err != nil {
		return nil, fmt.Errorf("status metrics: %w", err)
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	m := &Module{
		cfg: o.Config, log: o.Log, db: o.DB, store: NewStore(o.DB), bus: o.Bus, stream: o.Stream,
		verifier: o.Verifier, met: met, now: o.Now, node: hex.EncodeToString(id[:]),
		conns: newConns(),
	}
	if o.Stream != nil {
		if err := o.Stream.Watch("status", listener{m}); err != nil {
			return nil, fmt.Errorf("status: %w", err)
		}
	}
	return m, nil
}

func (m *Module) Name() string { return Name }

func (m *Module) Topics() module.Topics {
	return module.Topics{
		Publishes: []string{TopicPresenceChanged},
		Consumes:  []string{TopicPresenceChanged, "call.started", "call.answered", "call.ended"},
	}
}

// Start subscribes to presence changes (for this node's watchers) and to
// call events, and starts the sweeps. It does not block.
func (m *Module) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.subs != nil {
		return errors.New("status: Start called twice")
	}
	// Every node hears every change, for its own watchers; the name is
	// unique per node. Delivery never blocks (signals drop for slow
	// connections), so Block costs publishers little.
	changes, err := m.bus.Subscribe(TopicPresenceChanged, "status.presence."+m.node, m.onChanged, bus.WithWorkers(2))
	if err != nil {
		return fmt.Errorf("status: subscribe %s: %w", TopicPresenceChanged, err)
	}
	// Shared: one node per cluster records each call state.
	calls, err := m.bus.Subscribe(callSubject, "status.calls", m.onCall, bus.WithPolicy(bus.Block), bus.WithWorkers(4), bus.Shared())
	if err != nil {
		changes.Unsubscribe()
		return fmt.Errorf("status: subscribe %s: %w", callSubject, err)
	}
	m.subs = []bus.Subscription{changes, calls}
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	m.wg.Go(func() { module.Every(loopCtx, m.sweepInterval(), m.log, "status sweep", m.sweep) })
	m.wg.Go(func() { module.Every(loopCtx, m.idleInterval(), m.log, "status idle check", m.promoteIdle) })
	return nil
}

// sweepInterval is how often this node vouches for its devices and
// sweeps what others left: three times per device timeout.
func (m *Module) sweepInterval() time.Duration { return m.cfg.DeviceTimeout / 3 }

// idleInterval is how often devices are checked for crossing away_after:
// a tenth of it, at most 5 s, so "away" shows at most that late.
func (m *Module) idleInterval() time.Duration { return min(m.cfg.AwayAfter/10, 5*time.Second) }

// Stop ends the subscriptions and the sweeps. The devices of this node
// stay in the database: clients reconnect (to this node restarted or to
// another) within the device timeout, so users do not flap offline; if
// they do not, the rows expire.
func (m *Module) Stop(ctx context.Context) error {
	m.mu.Lock()
	subs, cancel := m.subs, m.cancel
	m.subs, m.cancel = nil, nil
	m.mu.Unlock()
	for _, s := range subs {
		s.Unsubscribe()
	}
	if cancel != nil {
		cancel()
	}
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("status: stop: %w", ctx.Err())
	}
}

func (m *Module) lock(userID int64) func() {
	l := &m.locks[uint64(userID)%lockStripes]
	l.Lock()
	return l.Unlock
}

// change runs fn on userID's row in a transaction, recomputes the state
// and, when what others see changed (or force), saves it and publishes
// the new presence after commit. It returns the user's presence and
// device counts after the change.
func (m *Module) change(ctx context.Context, userID int64, force bool, fn func(tx *sqlx.Tx, r *userRow) error) (Me, error) {
	unlock := m.lock(userID)
	defer unlock()
	if _, known := m.known.Load(userID); !known {
		if err := m.store.ensureUser(ctx, userID, m.now()); err != nil {
			return Me{}, err
		}
		m.known.Store(userID, struct{}{})
	}
	var (
		me        Me
		published bool
	)
	err := m.db.InTx(ctx, func(tx *sqlx.Tx) error {
		published = false
		r, err := m.store.lockUser(ctx, tx, userID)
		if err != nil {
			return err
		}
		before := r
		if fn != nil {
			if err := fn(tx, &r); err != nil {
				return err
			}
		}
		now := m.now().UTC()
		in := inputs{manual: r.Manual}
		if in.devices, in.active, err = m.store.deviceCounts(ctx, tx, userID, now.Add(-m.cfg.DeviceTimeout)); err != nil {
			return err
		}
		if in.inCall, err = m.store.inCall(ctx, tx, userID, now.Add(-m.cfg.MaxCallDuration)); err != nil {
			return err
		}
		r.State = resolve(in)
		r.InCall = in.inCall && r.Manual != manualInvisible
		if r.Text != "" && r.TextExpiresAt.Valid && !r.TextExpiresAt.Time.After(now) {
			r.Text, r.TextExpiresAt = "", sqlNull()
		}
		visible := r.State != before.State || r.InCall != before.InCall || r.Text != before.Text ||
			!sameTime(r.TextExpiresAt, before.TextExpiresAt)
		if visible || force || !r.exists {
			if r.State != StateOffline || before.State != StateOffline {
				r.LastSeenAt = sqlTime(now)
			}
			r.UpdatedAt = now
			if err := m.store.saveUser(ctx, tx, r); err != nil {
				return err
			}
			published = visible || force
		}
		me = Me{Presence: r.presence(now), Choice: choiceOf(r.Manual), Devices: in.devices, ActiveDevices: in.active}
		return nil
	})
	if err != nil {
		return Me{}, err
	}
	if published {
		m.met.changes.WithLabelValues(me.State).Inc()
		m.publish(ctx, me.Presence)
	}
	return me, nil
}

// publish announces p on the bus. A failure is logged and counted: the
// change is stored, and watchers see it at their next query.
func (m *Module) publish(ctx context.Context, p Presence) {
	payload, err := json.Marshal(p)
	if err == nil {
		err = m.bus.Publish(ctx, bus.Event{Topic: TopicPresenceChanged, Key: strconv.FormatInt(p.UserID, 10), Payload: payload})
	}
	if err != nil {
		m.met.busFails.Inc()
		m.log.WarnContext(ctx, "status: presence change not announced", "user_id", p.UserID, "err", err)
	}
}

// onChanged delivers a presence change to this node's connections that
// watch the user, and to the user's own.
func (m *Module) onChanged(ctx context.Context, ev bus.Event) error {
	if m.stream == nil {
		return nil
	}
	var p Presence
	if err := json.Unmarshal(ev.Payload, &p); err != nil || p.UserID <= 0 {
		return fmt.Errorf("status: malformed %s: %v", TopicPresenceChanged, err)
	}
	watchers := m.conns.watchersOf(p.UserID)
	if err := m.stream.SignalConns(watchers, SignalPresence, p); err != nil {
		return err
	}
	m.met.delivered.Add(float64(len(watchers)))
	return m.stream.SignalLocal([]int64{p.UserID}, SignalPresence, p)
}

// Get returns the presence of one user.
func (m *Module) Get(ctx context.Context, userID int64) (Presence, error) {
	ps, err := m.Query(ctx, []int64{userID})
	if err != nil {
		return Presence{}, err
	}
	return ps[0], nil
}

// Query returns the presence of each of ids, in the same order; users
// never seen are offline.
func (m *Module) Query(ctx context.Context, ids []int64) ([]Presence, error) {
	rows, err := m.store.users(ctx, ids)
	if err != nil {
		return nil, err
	}
	now := m.now().UTC()
	out := make([]Presence, len(ids))
	for i, id := range ids {
		r, ok := rows[id]
		if !ok {
			r = userRow{UserID: id, State: StateOffline}
		}
		out[i] = r.presence(now)
	}
	return out, nil
}

// Me returns a user's own presence with their choice and devices.
func (m *Module) Me(ctx context.Context, userID int64) (Me, error) {
	return m.change(ctx, userID, false, nil)
}

// Choose sets what the user chose (ChoiceOnline, ChoiceAway, ChoiceDND or
// ChoiceOffline).
func (m *Module) Choose(ctx context.Context, userID int64, choice string) (Me, error) {
	manual, ok := manualOf(choice)
	if !ok {
		return Me{}, fmt.Errorf("%w: %q is not a choice; use online, away, dnd or offline", ErrInvalid, clipForLog(choice))
	}
	return m.change(ctx, userID, false, func(_ *sqlx.Tx, r *userRow) error {
		r.Manual = manual
		return nil
	})
}

// SetText sets (or, with an empty text, clears) the personal status text.
func (m *Module) SetText(ctx context.Context, userID int64, text string, expires *time.Time) (Me, error) {
	text, err := checkText(text, expires, m.now())
	if err != nil {
		return Me{}, err
	}
	return m.change(ctx, userID, false, func(_ *sqlx.Tx, r *userRow) error {
		r.Text = text
		r.TextExpiresAt = sqlNull()
		if expires != nil && text != "" {
			r.TextExpiresAt = sqlTime(*expires)
		}
		return nil
	})
}

// Reach is what push asks before notifying a user.
type Reach struct {
	// Live: a device of the user is connected and in use, so the client
	// shows the event itself.
	Live bool
	// DND: the user chose do-not-disturb.
	DND bool
}

// Reachability answers push's "is this user looking, or in DND" for
// each of ids, in two queries.
func (m *Module) Reachability(ctx context.Context, ids []int64) (map[int64]Reach, error) {
	rows, err := m.store.users(ctx, ids)
	if err != nil {
		return nil, err
	}
	active, err := m.store.activeUsers(ctx, ids, m.now().Add(-m.cfg.DeviceTimeout))
	if err != nil {
		return nil, err
	}
	out := make(map[int64]Reach, len(ids))
	for _, id := range ids {
		out[id] = Reach{Live: active[id], DND: rows[id].Manual == manualDND}
	}
	return out, nil
}
