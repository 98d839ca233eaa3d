// Package chat is the chat module: direct and group conversations,
// messages with replies, forwards, edits, deletion, reactions, pins,
// mentions and attachments, read markers, history and full-text search.
//
// Every change a member must see is appended to that member's durable
// stream (platform/stream) in the same transaction as the change, and
// published on the bus after commit. Clients read commands' results over
// REST and events over the one WebSocket of the stream, which this module
// serves at /v1/ws. docs/protocol.md is the contract for clients.
package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
const Name = "chat"

// Defaults and bounds.
const (
	DefaultMaxMessageBytes = 16 << 10
	MaxMessageBytesLimit   = 128 << 10
	// purgeInterval is how often the retention policy runs.
	purgeInterval = time.Hour
	// purgeBatch bounds the messages emptied per transaction.
	purgeBatch = 500
)

// People is how the chat module learns about accounts. The wiring
// implements it over the sso store.
type People interface {
	// Existing returns which of ids are enabled accounts (for adding
	// members and starting direct conversations).
	Existing(ctx context.Context, ids []int64) (map[int64]bool, error)
}

// Files is the files module as the chat module sees it. nil means
// attachments are refused.
type Files interface {
	// Attachable reports whether userID may attach fileID (they uploaded
	// it or can read it) and returns its public metadata to embed in the
	// message. A file that does not exist or may not be attached is an
	// error wrapping ErrFileUnavailable.
	Attachable(ctx context.Context, userID int64, fileID string) (FileRef, error)
}

// Options are what the wiring hands the module.
type Options struct {
	Log *slog.Logger // nil: discard
	DB  *store.DB
	Bus bus.Bus
	// Stream is the node's per-user event stream. The chat module serves
	// its WebSocket and owns its lifecycle: Start starts it, Stop stops it.
	Stream   *stream.Stream
	Verifier *auth.Verifier
	People   People
	Files    Files                 // nil: attachments are refused
	Metrics  prometheus.Registerer // nil: metrics not registered
	Now      func() time.Time      // nil: time.Now
	// MaxMessageBytes bounds a message body: 16 KiB by default.
	MaxMessageBytes int
	// Retention empties messages older than this (soft: the body goes, a
	// tombstone stays); 0 keeps them forever.
	Retention time.Duration
}

// Module is the chat module.
type Module struct {
	log      *slog.Logger
	db       *store.DB
	store    *Store
	bus      bus.Bus
	stream   *stream.Stream
	verifier *auth.Verifier
	people   People
	files    Files
	met      *metrics
	now      func() time.Time
	maxBody  int
	retain   time.Duration

	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ module.Module = (*Module)(nil)

// New validates o and provisions the module; it starts nothing.
func New(o Options) (*Module, error) {
	switch {
	case o.DB == nil:
		return nil, errors.New("chat: no DB")
	case o.Bus == nil:
		return nil, errors.New("chat: no Bus")
	case o.Stream == nil:
		return nil, errors.New("chat: no Stream")
	case o.Verifier == nil:
		return nil, errors.New("chat: no Verifier")
	case o.People == nil:
		return nil, errors.New("chat: no People")
	case o.MaxMessageBytes < 0:
		return nil, fmt.Errorf("chat: negative MaxMessageBytes %d", o.MaxMessageBytes)
	case o.Retention < 0:
		return nil, fmt.Errorf("chat: negative Retention %s", o.Retention)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxMessageBytes == 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	// A message travels as one stream event and one bus event, where
	// JSON may spell each byte as a 6-byte escape; the bus takes 1 MiB.
	if o.MaxMessageBytes > MaxMessageBytesLimit {
		return nil, fmt.Errorf("chat: MaxMessageBytes %d is more than %d", o.MaxMessageBytes, MaxMessageBytesLimit)
	}
	met, err := newMetrics(o.Metrics)
	if err != nil {
		return nil, fmt.Errorf("chat metrics: %w", err)
	}
	return &Module{
		log: o.Log, db: o.DB, store: NewStore(o.DB), bus: o.Bus, stream: o.Stream, verifier: o.Verifier,
		people: o.People, files: o.Files, met: met, now: o.Now, maxBody: o.MaxMessageBytes, retain: o.Retention,
	}, nil
}

func (m *Module) Name() string { return Name }

// Topics lists the chat topics and the stream's own, which it uses on the
// module's behalf.
func (m *Module) Topics() module.Topics {
	return module.Topics{
		Publishes: append(slices.Clone(topics), stream.TopicAppended, stream.TopicSignal),
		Consumes:  []string{stream.TopicAppended, stream.TopicSignal},
	}
}

// Start starts the stream (so its WebSocket serves) and the retention
// policy when one is set.
func (m *Module) Start(ctx context.Context) error {
	if err := m.stream.Start(ctx); err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.mu.Lock()
	m.cancel = cancel
	m.mu.Unlock()
	if m.retain > 0 {
		m.wg.Go(func() { module.Every(loopCtx, purgeInterval, m.log, "chat retention", m.purge) })
	}
	return nil
}

// Stop ends the retention loop and stops the stream, which closes every
// WebSocket with 1001 (clients reconnect elsewhere or later).
func (m *Module) Stop(ctx context.Context) error {
	m.mu.Lock()
	if m.cancel != nil {
		m.cancel()
	}
	m.mu.Unlock()
	m.wg.Wait()
	return m.stream.Stop(ctx)
}

// purge runs the retention policy once, for module.Every.
func (m *Module) purge(ctx context.Context) error {
	n, err := m.Purge(ctx)
	if n > 0 {
		m.log.Info("chat retention emptied old messages", "messages", n)
	}
	return err
}

// Purge applies the retention policy: text messages older than Retention
// lose their body, mentions, files, reactions and pins and stay as
// tombstones. It returns how many it emptied; with no Retention it does
// nothing. Clients are not told: they apply the same policy to what they
// keep, and see tombstones when they reload history.
func (m *Module) Purge(ctx context.Context) (int, error) {
	if m.retain <= 0 {
		return 0, nil
	}
	cutoff := m.now().Add(-m.retain)
	total := 0
	for {
		ids, err := m.store.expiredMessages(ctx, cutoff, purgeBatch)
		if err != nil {
			return total, err
		}
		if len(ids) == 0 {
			return total, nil
		}
		err = m.db.InTx(ctx, func(tx *sqlx.Tx) error {
			return m.store.tombstone(ctx, tx, ids, m.now())
		})
		if err != nil {
			return total, fmt.Errorf("chat: retention: %w", err)
		}
		total += len(ids)
		m.met.purged.Add(float64(len(ids)))
		if len(ids) < purgeBatch {
			return total, nil
		}
	}
}

// CanReadFile reports whether fileID is attached to a message, not
// deleted, of a conversation userID is a member of. The files module asks
// it before serving a file.
func (m *Module) CanReadFile(ctx context.Context, userID int64, fileID string) (bool, error) {
	return m.store.canReadFile(ctx, userID, fileID)
}

// wtx is a write transaction of the chat module: the SQL transaction plus
// the announcements to make once it has committed.
type wtx struct {
	*sqlx.Tx
	ctx     context.Context
	m       *Module
	pending []stream.Pending
	publish []bus.Event
	after   []func() // run after commit: counting what was stored
}

// onCommit runs fn once the transaction has committed.
func (t *wtx) onCommit(fn func()) { t.after = append(t.after, fn) }

// write runs fn in a transaction (retried on lock conflicts, so fn must
// only have effects inside the transaction) and, after commit, announces
// the stream events fn appended and publishes its bus events.
func (m *Module) write(ctx context.Context, fn func(t *wtx) error) error {
	var t *wtx
	err := m.db.InTx(ctx, func(tx *sqlx.Tx) error {
		t = &wtx{Tx: tx, ctx: ctx, m: m}
		return fn(t)
	})
	if err != nil {
		return err
	}
	// The change is committed: announcing it must not depend on the
	// client still waiting for the answer.
	actx := context.WithoutCancel(ctx)
	for _, p := range t.pending {
		p.Notify(actx)
	}
	for _, fn := range t.after {
		fn()
	}
	for _, ev := range t.publish {
		if err := m.bus.Publish(actx, ev); err != nil {
			m.met.busFails.Inc()
			m.log.Warn("chat: publishing an event on the bus failed; stream clients have it, bus consumers miss it",
				"topic", ev.Topic, "key", ev.Key, "err", err)
		}
	}
	return nil
}

// enter locks a conversation for a change by userID (see
// lockConversation) and returns it with the user's membership; a
// non-member gets errConversationNotFound.
func (t *wtx) enter(convID, userID int64) (convRow, memberRow, error) {
	c, err := t.m.store.lockConversation(t.ctx, t.Tx, convID)
	if err != nil {
		return convRow{}, memberRow{}, err
	}
	me, err := t.m.store.member(t.ctx, t.Tx, convID, userID)
	if err != nil {
		return convRow{}, memberRow{}, err
	}
	return c, me, nil
}

// emit appends an event to the streams of users and queues the same
// event for the bus.
func (t *wtx) emit(users []int64, typ string, convID, actorID int64, data any) error {
	return t.emitMuted(users, nil, typ, convID, actorID, data)
}

func (t *wtx) emitMuted(users, muted []int64, typ string, convID, actorID int64, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("chat: encode %s: %w", typ, err)
	}
	if len(users) > 0 {
		p, err := t.m.stream.AppendTx(t.ctx, t.Tx, users, typ, json.RawMessage(raw))
		if err != nil {
			return fmt.Errorf("chat: append %s: %w", typ, err)
		}
		t.pending = append(t.pending, p)
	}
	payload, err := json.Marshal(BusEvent{ConversationID: convID, ActorID: actorID, UserIDs: users, MutedIDs: muted, Data: raw})
	if err != nil {
		return fmt.Errorf("chat: encode %s: %w", typ, err)
	}
	t.publish = append(t.publish, bus.Event{Topic: typ, Key: strconv.FormatInt(convID, 10), Payload: payload})
	return nil
}
