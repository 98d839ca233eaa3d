// Package push is the push gateway: it keeps the mobile devices users
// register (APNs and FCM tokens), turns chat messages, incoming calls and
// missed calls into notifications for the users who are not connected,
// and delivers them to Apple (APNs, token auth, VoIP pushes for calls)
// and Google (FCM HTTP v1), directly or through a relay node in the DMZ.
//
// Every notification is a row of a durable queue in the database (one per
// device), written in the same statement that picks the devices, and
// sent by a pool of workers that claim rows with a lease, so a push
// survives a restart and several nodes on one MariaDB never send a row
// twice at once. A failed send is retried with exponential backoff (or
// the Retry-After the service gave) until the push expires or runs out
// of attempts; an invalid token removes its device.
//
// docs/push.md is the contract for clients and operators.
package push

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/platform/auth"
	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/httpx"
	"github.com/elph-server/elph/platform/module"
	"github.com/elph-server/elph/platform/store"
)

// Name is the module's name in configuration and logs.
const Name = "push"

// Modes of config.Push.Mode.
const (
	ModeDirect = "direct"
	ModeRelay  = "relay"
)

// Topics the module consumes. It publishes none.
const (
	TopicMessageCreated = "chat.message.created"
	TopicCallStarted    = "call.started"
	TopicCallAnswered   = "call.answered"
	TopicCallEnded      = "call.ended"
	TopicCallMissed     = "history.call.missed"
	TopicSessionRevoked = "sso.session.revoked"
)

// Tuning of the queue; tests shorten some through export_test.go.
const (
	// pollInterval is how often the workers look for due rows besides
	// being woken by an enqueue: retries and rows of other nodes.
	pollInterval = time.Second
	// backoffBase and backoffMax shape the retry delays: 1 s doubling per
	// attempt, at most 5 minutes, ±20 % jitter.
	backoffBase = time.Second
	backoffMax  = 5 * time.Minute
	// maxRetryAfter caps a Retry-After a service asks for.
	maxRetryAfter = time.Hour
	// leaseMargin is added to the longest a job may take (a request
	// timeout, twice for the relay) to get the lease of its rows.
	leaseMargin = 30 * time.Second
	// callLogRetention is how long the call ledger (dedupe of call
	// pushes) is kept: far longer than any call rings.
	callLogRetention = 24 * time.Hour
	// callLogPurge is how often the ledger is purged.
	callLogPurge = time.Hour
	// prefetch is how many rows per worker are claimed ahead (direct
	// mode).
	prefetch = 4
	// settleBatch bounds the rows deleted per statement.
	settleBatch = 256
	// consumerWorkers handle bus events in parallel (per key in order).
	consumerWorkers = 4
	// dbTimeout bounds the bookkeeping after a send, which must happen
	// even when Stop has cancelled the send.
	dbTimeout = 10 * time.Second
)

// Presence tells the module who is connected right now and who asked not
// to be disturbed. The wiring implements it with the status module.
type Presence interface {
	// Reachability reports for each user whether they have a live
	// connection now (then chat/missed-call pushes are skipped) and
	// whether do-not-disturb is on. Users missing from the map count as
	// not live and not DND.
	Reachability(ctx context.Context, userIDs []int64) (map[int64]Reach, error)
}

// Reach is one user's reachability.
type Reach struct{ Live, DND bool }

// Numbers resolves a phone number to a person's name for one user.
type Numbers interface {
	NameForNumber(ctx context.Context, userID int64, number string) (string, bool)
}

// Names resolves users' display names, for the title of chat pushes.
type Names interface {
	DisplayNames(ctx context.Context, userIDs []int64) (map[int64]string, error)
}

// Options are what the wiring hands the module.
type Options struct {
	Config config.Push
	Log    *slog.Logger // nil: discard
	// DB holds the devices and the queue. Nil makes a relay-only node
	// (a DMZ node without a database): it serves POST /v1/relay, which
	// then needs Config.Relay.AcceptToken, and nothing else.
	DB       *store.DB
	Bus      bus.Bus        // required with DB
	Verifier *auth.Verifier // for the device routes; required with DB
	Metrics  prometheus.Registerer
	// Presence may be nil: everybody counts as not live and not DND.
	Presence Presence
	// Names may be nil: titles fall back to generic text.
	Names Names
	// Numbers names a caller by number as the called user knows them
	// (the address book); nil, or unknown numbers: the name the call
	// event carries.
	Numbers Numbers
	// RootCAs verifies APNs, FCM, the OAuth token endpoint and the relay
	// node; nil means the system roots (Config.Relay.CAFile, when set,
	// replaces them for the relay).
	RootCAs *x509.CertPool
	Now     func() time.Time // nil: time.Now
}

// Module is the push module.
type Module struct {
	cfg      config.Push
	log      *slog.Logger
	db       *store.DB
	store    *Store
	bus      bus.Bus
	verifier *auth.Verifier
	met      *metrics
	presence Presence
	names    Names
	numbers  Numbers
	now      func() time.Time

	// direct sends to APNs and FCM (nil clients are not configured);
	// used by the workers in direct mode and by the relay endpoint.
	direct *directSender
	// relay forwards the queue to the relay node in relay mode.
	relay *relayClient
	// enabled are the platforms pushes are queued for.
	enabled map[string]bool
	// relaySem bounds the sends of the relay endpoint across requests.
	relaySem chan struct{}

	// instance prefixes the lease owners of this module's claims.
	instance string
	claims   atomic.Uint64

	pollEvery   time.Duration
	backoffBase time.Duration
	backoffMax  time.Duration
	jobSize     int // rows per job: 1 direct, up to maxRelayItems relayed

	wake     chan struct{}
	inflight atomic.Int64
	// done takes the ids of rows to delete (sent or given up) from the
	// dispatcher and the workers; settle deletes them in batches. Set by
	// Start, closed once the workers have returned.
	done chan<- int64

	mu         sync.Mutex
	running    bool
	subs       []bus.Subscription
	cancel     context.CancelFunc // the dispatcher and the ledger purge
	sendCancel context.CancelFunc // in-flight sends, cancelled when Stop runs out of time
	wg         sync.WaitGroup
}

var _ module.Module = (*Module)(nil)

// New validates o, loads the APNs key and the FCM service account when
// they are configured (an unusable file is an error naming its
// configuration key) and provisions the module; it starts nothing.
func New(o Options) (*Module, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	cfg, err := normalizeConfig(o.Config)
	if err != nil {
		return nil, err
	}
	met := newMetrics()
	m := &Module{
		cfg: cfg, log: o.Log, db: o.DB, bus: o.Bus, verifier: o.Verifier, met: met,
		presence: o.Presence, names: o.Names, numbers: o.Numbers, now: o.Now,
		enabled:   map[string]bool{},
		relaySem:  make(chan struct{}, relayConcurrency),
		pollEvery: pollInterval, backoffBase: backoffBase, backoffMax: backoffMax, jobSize: 1,
		wake: make(chan struct{}, 1),
	}
	if o.DB != nil {
		m.store = NewStore(o.DB)
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	m.instance = hex.EncodeToString(id[:])

	m.direct = &directSender{met: met, log: o.Log, now: o.Now}
	if cfg.APNs.KeyFile != "" {
		if m.direct.apns, err = newAPNs(cfg.APNs, o.RootCAs, cfg.RequestTimeout); err != nil {
			return nil, err
		}
	}
	if cfg.FCM.CredentialsFile != "" {
		if m.direct.fcm, err = newFCM(cfg.FCM, o.RootCAs, cfg.RequestTimeout); err != nil {
			return nil, err
		}
	}
	switch cfg.Mode {
	case ModeRelay:
		roots := o.RootCAs
		if cfg.Relay.CAFile != "" {
			if roots, err = loadCAFile(cfg.Relay.CAFile); err != nil {
				return nil, err
			}
		}
		if m.relay, err = newRelayClient(cfg.Relay, roots, 2*cfg.RequestTimeout); err != nil {
			return nil, err
		}
		m.jobSize = maxRelayItems
		for _, p := range platforms {
			m.enabled[p] = true
		}
	default:
		if m.direct.apns != nil {
			m.enabled[PlatformAPNs], m.enabled[PlatformAPNsVoIP] = true, true
		}
		if m.direct.fcm != nil {
			m.enabled[PlatformFCM] = true
		}
	}
	// The dependencies last: a broken key file is the likelier mistake,
	// and it should be named first.
	if o.DB != nil {
		switch {
		case o.Bus == nil:
			return nil, errors.New("push: no Bus")
		case o.Verifier == nil:
			return nil, errors.New("push: no Verifier")
		}
	} else if cfg.Relay.AcceptToken == "" {
		return nil, errors.New("push: no DB: only a relay node (push.relay.accept_token set) runs without a database")
	} else if cfg.Mode == ModeRelay {
		return nil, errors.New("push: no DB: a node in relay mode queues its pushes in the database")
	}
	if err := met.register(o.Metrics); err != nil {
		return nil, fmt.Errorf("push metrics: %w", err)
	}
	return m, nil
}

// normalizeConfig fills the zero values a hand-built configuration may
// leave (the loaded one has the defaults) and rejects what cannot work.
func normalizeConfig(c config.Push) (config.Push, error) {
	if c.Mode == "" {
		c.Mode = ModeDirect
	}
	if c.APNs.URL == "" {
		c.APNs.URL = "https://api.push.apple.com"
	}
	if c.FCM.URL == "" {
		c.FCM.URL = "https://fcm.googleapis.com"
	}
	if c.Workers == 0 {
		c.Workers = 4
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 8
	}
	if c.MessageTTL == 0 {
		c.MessageTTL = time.Hour
	}
	if c.CallTTL == 0 {
		c.CallTTL = 30 * time.Second
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 10 * time.Second
	}
	switch {
	case c.Mode != ModeDirect && c.Mode != ModeRelay:
		return c, fmt.Errorf("push.mode: %q is not a mode; use direct or relay", c.Mode)
	case c.Mode == ModeRelay && (c.Relay.URL == "" || c.Relay.Token == ""):
		return c, errors.New("push.relay.url and push.relay.token are required when push.mode is relay")
	case c.Workers < 1 || c.Workers > 256:
		return c, fmt.Errorf("push.workers: %d is outside 1..256", c.Workers)
	case c.MaxAttempts < 1:
		return c, fmt.Errorf("push.max_attempts: %d is not positive", c.MaxAttempts)
	case c.MessageTTL < 0 || c.CallTTL < 0 || c.RequestTimeout < 0:
		return c, errors.New("push: message_ttl, call_ttl and request_timeout must be positive")
	}
	return c, nil
}

func loadCAFile(path string) (*x509.CertPool, error) {
	pool, err := httpx.LoadCertPool(path)
	if err != nil {
		return nil, fmt.Errorf("push.relay.ca_file: %w", err)
	}
	return pool, nil
}

func (m *Module) Name() string { return Name }

// Topics lists the events that trigger pushes and the session
// revocations that remove devices.
func (m *Module) Topics() module.Topics {
	if m.db == nil {
		return module.Topics{}
	}
	return module.Topics{Consumes: []string{
		TopicMessageCreated, TopicCallStarted, TopicCallAnswered, TopicCallEnded, TopicCallMissed, TopicSessionRevoked,
	}}
}

// Start subscribes to the triggers and starts the workers. It does not
// block; rows left in the queue by an earlier run are sent at once.
func (m *Module) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running {
		return errors.New("push: Start called twice")
	}
	if m.db == nil {
		m.running = true
		m.log.InfoContext(ctx, "push: relay-only node", "apns", m.direct.apns != nil, "fcm", m.direct.fcm != nil)
		return nil
	}
	if len(m.enabled) == 0 {
		m.log.WarnContext(ctx, "push: neither APNs (push.apns.key_file) nor FCM (push.fcm.credentials_file) is configured: devices are kept but no push is sent")
	}
	subs := []struct {
		subject, name string
		h             bus.Handler
	}{
		{TopicMessageCreated, "push.chat", m.onMessage},
		{"call.*", "push.calls", m.onCall},
		{TopicCallMissed, "push.missed", m.onMissed},
		{TopicSessionRevoked, "push.sessions", m.onSessionRevoked},
	}
	for _, s := range subs {
		// Block: a trigger must not be lost because the database was slow
		// for a moment. Shared: one node per cluster queues each push.
		sub, err := m.bus.Subscribe(s.subject, s.name, s.h, bus.WithPolicy(bus.Block), bus.WithWorkers(consumerWorkers), bus.Shared())
		if err != nil {
			for _, done := range m.subs {
				done.Unsubscribe()
			}
			m.subs = nil
			return fmt.Errorf("push: subscribe %s: %w", s.subject, err)
		}
		m.subs = append(m.subs, sub)
	}
	base := context.WithoutCancel(ctx)
	loopCtx, cancel := context.WithCancel(base)
	sendCtx, sendCancel := context.WithCancel(base)
	m.cancel, m.sendCancel = cancel, sendCancel
	jobs := make(chan []item, m.capacity())
	done := make(chan int64, 4*m.capacity())
	m.done = done
	var workers sync.WaitGroup
	for range m.cfg.Workers {
		workers.Go(func() { m.work(sendCtx, jobs) })
	}
	m.wg.Go(func() { workers.Wait(); close(done) })
	m.wg.Go(func() { m.settle(done) })
	m.wg.Go(func() { m.dispatch(loopCtx, jobs) })
	m.wg.Go(func() { module.Every(loopCtx, callLogPurge, m.log, "push call ledger purge", m.purgeCallLog) })
	m.running = true
	m.log.InfoContext(ctx, "push started", "mode", m.cfg.Mode, "apns", m.direct.apns != nil, "fcm", m.direct.fcm != nil, "workers", m.cfg.Workers)
	return nil
}

// Stop unsubscribes (events already delivered are queued first), stops
// claiming rows and waits for the sends in flight until ctx ends; then
// it cancels them. Unsent rows stay in the queue for the next Start (or
// another node): their leases are released, or expire.
func (m *Module) Stop(ctx context.Context) error {
	m.mu.Lock()
	subs, cancel, sendCancel := m.subs, m.cancel, m.sendCancel
	m.subs, m.cancel, m.sendCancel = nil, nil, nil
	m.running = false
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
		if sendCancel != nil {
			sendCancel()
		}
		return nil
	case <-ctx.Done():
	}
	if sendCancel != nil {
		sendCancel()
	}
	// Cancelled sends return at once and release their rows.
	select {
	case <-done:
	case <-time.After(dbTimeout):
	}
	return fmt.Errorf("push: stop: %w", ctx.Err())
}

// signal wakes the dispatcher without blocking.
func (m *Module) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *Module) purgeCallLog(ctx context.Context) error {
	_, err := m.store.purgeCallLog(ctx, m.now().Add(-callLogRetention))
	return err
}
