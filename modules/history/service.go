// Package history is the call-history module: it builds a record of each
// call leg of each user from the call.* events that the SIP edge and the
// ECSS bridge publish (so history works with any PBX), and serves a
// user's own records: a list with paging and filters, the missed-call
// counter and "mark seen", deletion (for that user only), a CSV export,
// and retention.
//
// Events are delivered at least once and in any order; each one is merged
// into its record (see Call.apply) so the record converges whatever the
// order. Every change is appended to the user's durable stream (when the
// node has one) in the same transaction, and published on the bus after
// commit. docs/history.md is the contract for producers and clients.
package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/platform/auth"
	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/module"
	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/stream"
)

// Name is the module's name in configuration and logs.
const Name = "history"

// Defaults and bounds.
const (
	// DefaultRetention is the retention the configuration should default
	// to; Options.Retention 0 keeps records forever.
	DefaultRetention = 365 * 24 * time.Hour
	// purgeInterval is how often the retention policy runs.
	purgeInterval = time.Hour
	// purgeBatch bounds the records deleted per statement.
	purgeBatch = 1000
	// consumerWorkers run call events in parallel; events of one call
	// (the bus key) stay in order on one worker.
	consumerWorkers = 4
)

// PeerNames resolves a peer's number to a name the user knows (the
// address book). The wiring implements it; nil uses the name the call
// event carries.
type PeerNames interface {
	NameForNumber(ctx context.Context, userID int64, number string) (string, bool)
}

// Options are what the wiring hands the module.
type Options struct {
	Log *slog.Logger // nil: discard
	DB  *store.DB
	Bus bus.Bus
	// Stream is the node's per-user event stream; nil: changes are only
	// published on the bus. The module only appends to it: whoever serves
	// the WebSocket (chat) starts and stops it.
	Stream   *stream.Stream
	Verifier *auth.Verifier
	Names    PeerNames             // nil: the event's peer_name
	Metrics  prometheus.Registerer // nil: metrics not registered
	Now      func() time.Time      // nil: time.Now
	// Retention deletes records that started longer ago than this; 0
	// keeps them forever (the configuration defaults to
	// DefaultRetention).
	Retention time.Duration
}

// Module is the history module.
type Module struct {
	log      *slog.Logger
	db       *store.DB
	store    *Store
	bus      bus.Bus
	stream   *stream.Stream
	verifier *auth.Verifier
	names    PeerNames
	met      *metrics
	now      func() time.Time
	retain   time.Duration
	// exportBatch and exportMax are defaultExportBatch and MaxExportRows
	// except in tests.
	exportBatch, exportMax int

	mu     sync.Mutex
	sub    bus.Subscription
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ module.Module = (*Module)(nil)

// New validates o and provisions the module; it starts nothing.
func New(o Options) (*Module, error) {
	switch {
	case o.DB == nil:
		return nil, errors.New("history: no DB")
	case o.Bus == nil:
		return nil, errors.New("history: no Bus")
	case o.Verifier == nil:
		return nil, errors.New("history: no Verifier")
	case o.Retention < 0:
		return nil, fmt.Errorf("history: negative Retention %s", o.Retention)
	case o.Retention > 0 && o.Retention < time.Hour:
		// A typo in the unit would wipe the history within the hour.
		return nil, fmt.Errorf("history: Retention %s is shorter than an hour", o.Retention)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	met, err := newMetrics(o.Metrics)
	if err != nil {
		return nil, fmt.Errorf("history metrics: %w", err)
	}
	return &Module{
		log: o.Log, db: o.DB, store: NewStore(o.DB), bus: o.Bus, stream: o.Stream, verifier: o.Verifier,
		names: o.Names, met: met, now: o.Now, retain: o.Retention,
		exportBatch: defaultExportBatch, exportMax: MaxExportRows,
	}, nil
}

func (m *Module) Name() string { return Name }

// Topics lists the call events consumed and the history events published
// (the stream's announcement too, when there is a stream).
func (m *Module) Topics() module.Topics {
	t := module.Topics{
		Publishes: []string{TopicCallUpdated, TopicCallMissed},
		Consumes:  []string{TopicCallStarted, TopicCallRinging, TopicCallAnswered, TopicCallEnded},
	}
	if m.stream != nil {
		t.Publishes = append(t.Publishes, stream.TopicAppended)
	}
	return t
}

// Start subscribes to the call events and starts the retention policy
// when one is set. It does not block.
func (m *Module) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sub != nil {
		return errors.New("history: Start called twice")
	}
	if n, err := m.store.count(ctx); err == nil {
		m.met.records.Set(float64(n))
	} else {
		m.log.WarnContext(ctx, "history: counting records", "err", err)
	}
	// Block: a call event must not be lost because the database was slow
	// for a moment. Shared: one node per cluster writes each record.
	sub, err := m.bus.Subscribe(subject, "history.calls", m.onEvent,
		bus.WithPolicy(bus.Block), bus.WithWorkers(consumerWorkers), bus.Shared())
	if err != nil {
		return fmt.Errorf("history: subscribe %s: %w", subject, err)
	}
	m.sub = sub
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	if m.retain > 0 {
		m.wg.Go(func() { module.Every(loopCtx, purgeInterval, m.log, "history retention", m.purge) })
	}
	return nil
}

// Stop unsubscribes (events already queued are handled first) and ends
// the retention loop.
func (m *Module) Stop(ctx context.Context) error {
	m.mu.Lock()
	sub, cancel := m.sub, m.cancel
	m.sub, m.cancel = nil, nil
	m.mu.Unlock()
	if sub != nil {
		sub.Unsubscribe()
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
		return fmt.Errorf("history: stop: %w", ctx.Err())
	}
}

// purge runs the retention policy once, for module.Every.
func (m *Module) purge(ctx context.Context) error {
	n, err := m.Purge(ctx)
	if n > 0 {
		m.log.Info("history retention deleted old call records", "records", n)
	}
	return err
}

// Purge deletes the records that started longer ago than Retention and
// returns how many; with no Retention it does nothing. Clients are not
// told: they apply the same policy to what they keep.
func (m *Module) Purge(ctx context.Context) (int, error) {
	if m.retain <= 0 {
		return 0, nil
	}
	cutoff := m.now().Add(-m.retain)
	total := 0
	for {
		n, err := m.store.purge(ctx, cutoff, purgeBatch)
		total += n
		m.met.purged.Add(float64(n))
		m.met.records.Sub(float64(n))
		if err != nil {
			return total, err
		}
		if n < purgeBatch {
			return total, nil
		}
	}
}

// onEvent is the bus handler of call.>. A payload that cannot be used is
// logged and counted, never returned: redelivering it would not help.
func (m *Module) onEvent(ctx context.Context, be bus.Event) error {
	ev, err := DecodeCallEvent(be.Topic, be.Payload)
	switch {
	case errors.Is(err, ErrUnknownTopic):
		m.met.event(topicOther, resultIgnored)
		m.log.DebugContext(ctx, "history: call event of an unknown topic skipped", "topic", be.Topic, "event_id", be.ID)
		return nil
	case err != nil:
		m.met.event(be.Topic, resultInvalid)
		m.log.WarnContext(ctx, "history: invalid call event skipped", "topic", be.Topic, "event_id", be.ID, "key", be.Key, "err", err)
		return nil
	}
	changed, err := m.Apply(ctx, ev)
	switch {
	case err != nil:
		m.met.event(ev.Topic, resultError)
		return err
	case changed:
		m.met.event(ev.Topic, resultApplied)
	default:
		m.met.event(ev.Topic, resultDuplicate)
	}
	return nil
}

// Apply merges a call event into its record, creating the record on the
// first event of the leg, and reports whether the record changed. A
// change is appended to the user's stream and published on the bus, and
// a record that just became a missed call is published as such, once.
// Records the user deleted take the change silently.
func (m *Module) Apply(ctx context.Context, ev CallEvent) (bool, error) {
	if ev.Topic == TopicCallStarted && m.names != nil && ev.PeerNumber != "" {
		// Outside the transaction: the address book is someone else's
		// tables, and its answer does not depend on the record.
		if name, ok := m.names.NameForNumber(ctx, ev.UserID, ev.PeerNumber); ok && name != "" && printable(name) {
			ev.PeerName = truncateRunes(name, MaxPeerNameRune)
		}
	}
	var (
		c        Call
		changed  bool
		inserted bool
		missed   bool
		unseen   int
		pending  stream.Pending
	)
	err := m.db.InTx(ctx, func(tx *sqlx.Tx) error {
		changed, inserted, missed, unseen, pending = false, false, false, 0, nil
		var (
			found bool
			err   error
		)
		for range 2 {
			c, found, err = m.store.lock(ctx, tx, ev.CallID, ev.UserID)
			if err != nil {
				return err
			}
			if !found {
				c = Call{CallID: ev.CallID, userID: ev.UserID}
			}
			prev := c.Result
			if !c.apply(ev) {
				return nil
			}
			now := m.now()
			if found {
				err = m.store.update(ctx, tx, c, now)
			} else {
				err = m.store.insert(ctx, tx, &c, now)
			}
			if errors.Is(err, errRace) {
				continue // now it is found
			}
			if err != nil {
				return err
			}
			changed, inserted = true, !found
			missed = c.Result == ResultMissed && prev != ResultMissed
			break
		}
		if !changed {
			return fmt.Errorf("history: record %q of user %d: %w", ev.CallID, ev.UserID, errRace)
		}
		if c.deleted {
			return nil
		}
		if unseen, err = m.store.unseenMissed(ctx, tx, ev.UserID); err != nil {
			return err
		}
		if m.stream != nil {
			if pending, err = m.stream.AppendTx(ctx, tx, []int64{ev.UserID}, TopicCallUpdated, c); err != nil {
				return fmt.Errorf("history: append %s: %w", TopicCallUpdated, err)
			}
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	if inserted {
		m.met.records.Inc()
	}
	if !changed || c.deleted {
		return changed, nil
	}
	// Committed: the announcements must not depend on the caller's
	// context lasting.
	actx := context.WithoutCancel(ctx)
	if pending != nil {
		pending.Notify(actx)
	}
	payload, err := json.Marshal(RecordEvent{UserID: ev.UserID, Call: c, UnseenMissed: unseen})
	if err != nil {
		return true, fmt.Errorf("history: encode %s: %w", TopicCallUpdated, err)
	}
	m.publish(actx, TopicCallUpdated, ev.UserID, payload)
	if missed {
		m.met.missed.Inc()
		m.publish(actx, TopicCallMissed, ev.UserID, payload)
	}
	return true, nil
}

// publish puts a committed change on the bus. A failure is logged and
// counted: the record and the stream have the change, bus consumers
// (push) miss it.
func (m *Module) publish(ctx context.Context, topic string, userID int64, payload []byte) {
	err := m.bus.Publish(ctx, bus.Event{Topic: topic, Key: strconv.FormatInt(userID, 10), Payload: payload})
	if err != nil {
		m.met.busFails.Inc()
		m.log.WarnContext(ctx, "history: publishing on the bus failed", "topic", topic, "user_id", userID, "err", err)
	}
}

// List returns a page of userID's records matching f, newest first, and
// the cursor of the next page ("" at the end). limit is bounded by
// PageLimit (50 by default, at most 200).
func (m *Module) List(ctx context.Context, userID int64, f Filter, cursor string, limit int) ([]Call, string, error) {
	limit = store.PageLimit(limit, defaultPageSize, maxPageSize)
	var after *pagePos
	if cursor != "" {
		var p pagePos
		if err := store.DecodeCursor(cursor, &p); err != nil || p.ID <= 0 {
			return nil, "", fmt.Errorf("history: %w", errBadCursor)
		}
		after = &p
	}
	calls, err := m.store.list(ctx, userID, f, after, limit+1)
	if err != nil {
		return nil, "", err
	}
	if len(calls) <= limit {
		return calls, "", nil
	}
	calls = calls[:limit]
	last := calls[limit-1]
	next, err := store.EncodeCursor(pagePos{StartedAt: last.StartedAt, ID: last.ID})
	if err != nil {
		return nil, "", fmt.Errorf("history: %w", err)
	}
	return calls, next, nil
}

// Paging bounds of List.
const (
	defaultPageSize = 50
	maxPageSize     = 200
)

var errBadCursor = errors.New("invalid cursor")

// Get returns record id of userID, or ErrNotFound.
func (m *Module) Get(ctx context.Context, userID, id int64) (Call, error) {
	return m.store.Get(ctx, userID, id)
}

// UnseenMissed counts userID's missed calls not marked seen.
func (m *Module) UnseenMissed(ctx context.Context, userID int64) (int, error) {
	return m.store.unseenMissed(ctx, m.db, userID)
}

// MarkSeen marks userID's missed calls with ids up to upTo (0: all) seen
// and returns how many it marked and how many unseen remain. The user's
// other devices learn it from the history.missed.seen stream event.
func (m *Module) MarkSeen(ctx context.Context, userID, upTo int64) (marked int64, unseen int, err error) {
	var pending stream.Pending
	err = m.db.InTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		if marked, err = m.store.markSeen(ctx, tx, userID, upTo, m.now()); err != nil {
			return err
		}
		if unseen, err = m.store.unseenMissed(ctx, tx, userID); err != nil {
			return err
		}
		pending = nil
		if m.stream != nil && marked > 0 {
			pending, err = m.stream.AppendTx(ctx, tx, []int64{userID}, TypeMissedSeen, MissedSeen{UpToID: upTo, UnseenMissed: unseen})
			if err != nil {
				return fmt.Errorf("history: append %s: %w", TypeMissedSeen, err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	if pending != nil {
		pending.Notify(context.WithoutCancel(ctx))
	}
	return marked, unseen, nil
}

// Delete hides record id from userID (their other devices learn it from
// the history.call.deleted stream event), or returns ErrNotFound. The
// other party's record of the same call stays.
func (m *Module) Delete(ctx context.Context, userID, id int64) error {
	var pending stream.Pending
	err := m.db.InTx(ctx, func(tx *sqlx.Tx) error {
		if err := m.store.softDelete(ctx, tx, userID, id, m.now()); err != nil {
			return err
		}
		pending = nil
		if m.stream != nil {
			var err error
			if pending, err = m.stream.AppendTx(ctx, tx, []int64{userID}, TypeCallDeleted, CallDeleted{ID: id}); err != nil {
				return fmt.Errorf("history: append %s: %w", TypeCallDeleted, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if pending != nil {
		pending.Notify(context.WithoutCancel(ctx))
	}
	m.log.InfoContext(ctx, "call record deleted", "user_id", userID, "record_id", id)
	return nil
}

// truncateRunes cuts s to at most n characters.
func truncateRunes(s string, n int) string {
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}
