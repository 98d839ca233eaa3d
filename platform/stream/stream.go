package stream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/platform/auth"
	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/store"
)

// Bus topics of the stream.
const (
	// TopicAppended announces a committed event of one user (key: the user
	// id; payload: {"user_id":…,"seq":…,"event":{…}}) so every node can
	// deliver it to its connections of that user.
	TopicAppended = "stream.appended"
	// TopicSignal carries an ephemeral event for the live connections of
	// some users (payload: {"user_ids":[…],"signal":…,"data":…}).
	TopicSignal = "stream.signal"
)

// Defaults for Options' zero values.
const (
	DefaultRetention     = 30 * 24 * time.Hour
	DefaultMaxPerUser    = 10000
	DefaultSendBuffer    = 256
	DefaultPingInterval  = 30 * time.Second
	DefaultWriteTimeout  = 10 * time.Second
	DefaultMaxEventBytes = 64 << 10
	DefaultPurgeInterval = time.Hour
)

// Errors of the stream. They are wrapped with context, so compare with
// errors.Is.
var (
	// ErrResync means the caller's position is not in the retained stream:
	// events after it were purged, or it is beyond the newest sequence. The
	// client must reload its state and continue from the newest sequence.
	ErrResync = errors.New("stream: position beyond retention, resync")
	// ErrInvalidEvent means an event or signal type, its data or a user id
	// is malformed.
	ErrInvalidEvent = errors.New("stream: invalid event")
	// ErrEventTooLarge means an event's or signal's JSON data is larger
	// than Options.MaxEventBytes.
	ErrEventTooLarge = errors.New("stream: event too large")
)

// Options configure New. DB, Bus and Verifier are required; every other
// zero value has a default.
type Options struct {
	DB       *store.DB
	Bus      bus.Bus
	Verifier *auth.Verifier
	// Revocations, when set, closes a connection with 4001 as soon as its
	// session is revoked.
	Revocations *auth.Revocations
	Log         *slog.Logger          // nil: discard
	Metrics     prometheus.Registerer // nil: metrics not registered
	Now         func() time.Time      // nil: time.Now

	// Retention is how long events are kept: 30 days by default.
	Retention time.Duration
	// MaxPerUser is how many events are kept per user at most: 10000 by
	// default.
	MaxPerUser int
	// PurgeInterval is how often Start's background purge runs: hourly by
	// default, the first run one interval after Start; negative disables
	// it (Purge can still be called).
	PurgeInterval time.Duration

	// SendBuffer is each connection's queue of live events waiting to be
	// written: 256 by default. A connection whose queue is full is closed
	// with 4008 (it resumes from the database when it reconnects).
	SendBuffer int
	// PingInterval is how often the server pings each connection (and
	// compares it with the database as a safety net): 30s by default.
	PingInterval time.Duration
	// WriteTimeout bounds each write and the wait for a pong: 10s by
	// default.
	WriteTimeout time.Duration
	// MaxEventBytes bounds the JSON data of one event or signal: 64 KiB by
	// default.
	MaxEventBytes int
	// OriginPatterns are extra browser origins allowed to connect besides
	// the server's own host, as host patterns ("*.example.com") or, with a
	// scheme, "https://app.example.com" (path.Match syntax).
	OriginPatterns []string
}

// Stream is the per-user durable event stream of one node. It is safe for
// concurrent use.
type Stream struct {
	o        Options
	db       *store.DB
	bus      bus.Bus
	log      *slog.Logger
	now      func() time.Time
	met      *metrics
	instance string // names this node's bus subscriptions
	hub      *hub

	mu          sync.Mutex
	state       int // stateNew, stateRunning, stateStopped
	subs        []bus.Subscription
	stopPurge   context.CancelFunc
	purgeDone   chan struct{}
	handlers    sync.WaitGroup // WebSocket handlers still running
	handlersRun bool           // handlers may be added (running)

	listeners []listener    // set before Start, read-only after
	nextConn  atomic.Uint64 // Conn.ID of the next connection
}

const (
	stateNew = iota
	stateRunning
	stateStopped
)

// New validates o, applies defaults and registers the metrics. The stream
// serves connections once Start has run.
func New(o Options) (*Stream, error) {
	switch {
	case o.DB == nil:
		return nil, errors.New("stream: no DB")
	case o.Bus == nil:
		return nil, errors.New("stream: no Bus")
	case o.Verifier == nil:
		return nil, errors.New("stream: no Verifier")
	case o.Retention < 0, o.MaxPerUser < 0, o.SendBuffer < 0, o.PingInterval < 0, o.WriteTimeout < 0, o.MaxEventBytes < 0:
		return nil, errors.New("stream: negative limit in options")
	}
	if o.MaxEventBytes > bus.MaxPayload/2 {
		// An announcement carries the event; it must fit on the bus.
		return nil, fmt.Errorf("stream: MaxEventBytes %d above %d", o.MaxEventBytes, bus.MaxPayload/2)
	}
	for _, p := range o.OriginPatterns {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("stream: origin pattern %q: %w", p, err)
		}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	setDefault(&o.Retention, DefaultRetention)
	setDefault(&o.MaxPerUser, DefaultMaxPerUser)
	setDefault(&o.PurgeInterval, DefaultPurgeInterval)
	setDefault(&o.SendBuffer, DefaultSendBuffer)
	setDefault(&o.PingInterval, DefaultPingInterval)
	setDefault(&o.WriteTimeout, DefaultWriteTimeout)
	setDefault(&o.MaxEventBytes, DefaultMaxEventBytes)
	met, err := newMetrics(o.Metrics)
	if err != nil {
		return nil, err
	}
	var id [8]byte
	_, _ = rand.Read(id[:]) // never fails since Go 1.24
	s := &Stream{
		o:        o,
		db:       o.DB,
		bus:      o.Bus,
		log:      o.Log,
		now:      o.Now,
		met:      met,
		instance: hex.EncodeToString(id[:]),
	}
	s.hub = newHub(met)
	return s, nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// Start subscribes to the stream's bus topics, so this node's connections
// get events appended on any node, and starts the retention purge. It
// does not block; ctx only carries values (the purge outlives it).
func (s *Stream) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateNew {
		return errors.New("stream: Start called twice or after Stop")
	}
	// Subscriber names are unique per bus: one pair per node.
	appended, err := s.bus.Subscribe(TopicAppended, "stream.appended."+s.instance, s.onAppended,
		// Per-key (user) order is kept with several workers; handlers
		// never block, so Block costs publishers nothing.
		bus.WithWorkers(4))
	if err != nil {
		return fmt.Errorf("stream: subscribe %s: %w", TopicAppended, err)
	}
	signals, err := s.bus.Subscribe(TopicSignal, "stream.signal."+s.instance, s.onSignal,
		bus.WithPolicy(bus.DropNewest))
	if err != nil {
		appended.Unsubscribe()
		return fmt.Errorf("stream: subscribe %s: %w", TopicSignal, err)
	}
	s.subs = []bus.Subscription{appended, signals}

	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stopPurge = cancel
	s.purgeDone = make(chan struct{})
	go s.purgeLoop(pctx)

	s.state = stateRunning
	s.handlersRun = true
	s.hub.open()
	return nil
}

// Stop refuses new connections, closes every open one with 1001 (going
// away), ends the bus subscriptions and the purge, and waits until ctx is
// done for the connections' handlers to finish; those still running then
// are cut.
func (s *Stream) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.state != stateRunning {
		s.state = stateStopped
		s.mu.Unlock()
		return nil
	}
	s.state = stateStopped
	s.handlersRun = false
	subs, stopPurge, purgeDone := s.subs, s.stopPurge, s.purgeDone
	s.subs = nil
	s.mu.Unlock()

	conns := s.hub.shut()
	for _, c := range conns {
		c.kill(closeGoingAway, "server shutting down")
	}
	for _, sub := range subs {
		sub.Unsubscribe()
	}
	stopPurge()

	done := make(chan struct{})
	go func() {
		s.handlers.Wait()
		<-purgeDone
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, c := range conns {
			c.cut()
		}
		return fmt.Errorf("stream: stop: connections not closed in time: %w", ctx.Err())
	}
}

// Connections is the number of open WebSocket connections on this node.
func (s *Stream) Connections() int {
	return s.hub.count()
}

// Handler is the WebSocket endpoint (see the package documentation for
// the protocol). The module serving it mounts it, e.g. chat at
// /chat/v1/ws; it needs no auth middleware in front, it authenticates
// itself.
func (s *Stream) Handler() http.Handler {
	return http.HandlerFunc(s.serveWS)
}

// beginHandler registers a WebSocket handler with Stop's wait, or reports
// false when the stream is not running.
func (s *Stream) beginHandler() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.handlersRun {
		return false
	}
	s.handlers.Add(1)
	return true
}

func (s *Stream) purgeLoop(ctx context.Context) {
	defer close(s.purgeDone)
	if s.o.PurgeInterval < 0 {
		return
	}
	t := time.NewTicker(s.o.PurgeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := s.Purge(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				s.log.Error("stream purge failed", "err", err)
			case n > 0:
				s.log.Info("stream purged", "events", n)
			}
		}
	}
}

// appendedMsg is the payload of TopicAppended.
type appendedMsg struct {
	UserID int64           `json:"user_id"`
	Seq    int64           `json:"seq"`
	Event  json.RawMessage `json:"event"` // the Event as JSON: exactly the frame clients get
}

// signalMsg is the payload of TopicSignal.
type signalMsg struct {
	UserIDs []int64         `json:"user_ids"`
	Signal  string          `json:"signal"`
	Data    json.RawMessage `json:"data"`
}

// onAppended hands a committed event to this node's connections of its
// user. It never blocks (see conn.offerLive for a full queue).
func (s *Stream) onAppended(_ context.Context, ev bus.Event) error {
	var m appendedMsg
	if err := json.Unmarshal(ev.Payload, &m); err != nil {
		return fmt.Errorf("stream: decode %s: %w", TopicAppended, err)
	}
	if m.UserID <= 0 || m.Seq <= 0 || len(m.Event) == 0 {
		return fmt.Errorf("stream: malformed %s for user %d seq %d", TopicAppended, m.UserID, m.Seq)
	}
	item := liveEvent{seq: m.Seq, frame: m.Event}
	s.hub.each(m.UserID, func(c *conn) { c.offerLive(item) })
	return nil
}

// onSignal hands a signal to this node's connections of its users,
// dropping it for connections that are behind.
func (s *Stream) onSignal(_ context.Context, ev bus.Event) error {
	var m signalMsg
	if err := json.Unmarshal(ev.Payload, &m); err != nil {
		return fmt.Errorf("stream: decode %s: %w", TopicSignal, err)
	}
	frame, err := json.Marshal(signalFrame{Type: frameSignal, Signal: m.Signal, Data: m.Data})
	if err != nil {
		return fmt.Errorf("stream: encode signal %q: %w", m.Signal, err)
	}
	for _, uid := range m.UserIDs {
		s.hub.each(uid, func(c *conn) { c.offerSignal(frame) })
	}
	return nil
}

// validType reports whether typ is a valid event type (dotted) or, with
// dotted false, a valid signal name: at most 64 bytes of bus topic syntax.
func validType(typ string, dotted bool) error {
	if len(typ) > maxTypeLen {
		return fmt.Errorf("%w: type of %d bytes (max %d)", ErrInvalidEvent, len(typ), maxTypeLen)
	}
	if err := bus.ValidateTopic(typ); err != nil {
		return fmt.Errorf("%w: type %q: %v", ErrInvalidEvent, typ, err)
	}
	if dotted && !strings.Contains(typ, ".") {
		// Undotted frame types are the protocol's own (hello, resync…).
		return fmt.Errorf("%w: type %q is not a dotted <module>.<noun>.<verb> name", ErrInvalidEvent, typ)
	}
	return nil
}

// maxTypeLen is the width of stream_events.type.
const maxTypeLen = 64
