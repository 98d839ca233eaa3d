package bus

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for MemoryOptions' zero values.
const (
	DefaultQueueSize      = 1024
	DefaultWorkers        = 1
	DefaultPublishTimeout = 5 * time.Second
)

// maxNameLen bounds a subscriber name, which becomes a metric label value.
const maxNameLen = 255

// dropWarnEvery rate-limits the warning logged when a DropNewest subscriber
// drops events: a stuck consumer of presence pings would otherwise log once
// per ping.
const dropWarnEvery = 10 * time.Second

// MemoryOptions configures NewMemory. The zero value is usable.
type MemoryOptions struct {
	Logger         *slog.Logger          // nil -> slog.New(slog.DiscardHandler)
	Registerer     prometheus.Registerer // nil -> metrics not registered (still counted internally)
	QueueSize      int                   // default per-worker queue capacity, default 1024
	Workers        int                   // default workers per subscription, default 1
	PublishTimeout time.Duration         // max wait of a Block publish, default 5s
}

// Memory is the in-process Bus. Each subscription has its own workers and
// bounded queues, so a slow consumer only affects publishers through its own
// Policy.
type Memory struct {
	log            *slog.Logger
	metrics        *metrics
	queueSize      int
	workers        int
	publishTimeout time.Duration
	now            func() time.Time // tests replace it to check rate limiting

	// handlerCtx is passed to every handler. It is cancelled when Close
	// gives up waiting, so handlers can abandon slow work on shutdown.
	handlerCtx     context.Context
	cancelHandlers context.CancelFunc

	closed atomic.Bool
	// subs is a copy-on-write index that Publish reads without a lock.
	subs atomic.Pointer[subIndex]

	mu      sync.Mutex               // serialises Subscribe, Unsubscribe and Close
	names   map[string]*subscription // reserved names, until a subscription has fully stopped
	drained chan struct{}            // closed when Close has stopped every subscription
}

var _ Bus = (*Memory)(nil)

// NewMemory returns an in-memory bus. It fails only if registering the
// metrics on opts.Registerer fails.
func NewMemory(opts MemoryOptions) (*Memory, error) {
	m := &Memory{
		log:            opts.Logger,
		queueSize:      opts.QueueSize,
		workers:        opts.Workers,
		publishTimeout: opts.PublishTimeout,
		now:            time.Now,
		names:          make(map[string]*subscription),
		drained:        make(chan struct{}),
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.queueSize <= 0 {
		m.queueSize = DefaultQueueSize
	}
	if m.workers <= 0 {
		m.workers = DefaultWorkers
	}
	if m.publishTimeout <= 0 {
		m.publishTimeout = DefaultPublishTimeout
	}
	m.subs.Store(newSubIndex(nil))
	met, err := newMetrics(opts.Registerer, func() []*subscription { return m.subs.Load().all })
	if err != nil {
		return nil, err
	}
	m.metrics = met
	m.handlerCtx, m.cancelHandlers = context.WithCancel(context.Background())
	return m, nil
}

// Publish queues ev for every matching subscription. ctx only bounds the
// wait for a full Block subscriber; an event that can be queued at once is
// queued even if ctx is already done.
func (m *Memory) Publish(ctx context.Context, ev Event) error {
	if m.closed.Load() {
		return ErrClosed
	}
	if err := validateEvent(&ev); err != nil {
		return err
	}
	if ev.ID == "" {
		ev.ID = newID()
	}
	if ev.Time.IsZero() {
		ev.Time = m.now().UTC()
	}
	// Handlers read the payload after Publish has returned, when the caller
	// may be reusing its buffer. A NATS bus copies it onto the wire; copy
	// it here so both behave the same.
	ev.Payload = bytes.Clone(ev.Payload)
	m.metrics.published.WithLabelValues(ev.Topic).Inc()

	h := keyHash(ev.Key, ev.Topic)
	var full []*subscription
	var errs []error
	// First a non-blocking pass over every subscriber, so the ones with
	// room get the event now, whatever a full one makes us wait for below.
	idx := m.subs.Load()
	first, _, _ := strings.Cut(ev.Topic, ".")
	for _, candidates := range [...][]*subscription{idx.byFirst[first], idx.wild} {
		for _, s := range candidates {
			if !matchTokens(s.pattern, ev.Topic) {
				continue
			}
			switch s.offer(ev, h) {
			case offerFull:
				full = append(full, s)
			case offerGone:
				if m.closed.Load() {
					errs = append(errs, s.closedErr(ev))
				}
			}
		}
	}
	if len(full) > 0 {
		errs = append(errs, m.wait(ctx, ev, h, full)...)
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// wait queues ev for Block subscribers whose queues were full. They share
// one deadline so that several slow subscribers cost one publish timeout,
// not one each.
func (m *Memory) wait(ctx context.Context, ev Event, h uint64, full []*subscription) []error {
	start := time.Now()
	defer func() { m.metrics.publishWait.Observe(time.Since(start).Seconds()) }()
	wctx, cancel := context.WithTimeout(ctx, m.publishTimeout)
	defer cancel()
	var errs []error
	for _, s := range full {
		switch s.wait(wctx, ev, h) {
		case offerGone:
			if m.closed.Load() {
				errs = append(errs, s.closedErr(ev))
			}
		case offerTimeout:
			if err := ctx.Err(); err != nil {
				errs = append(errs, fmt.Errorf("%w: subscriber %q missed %s (id %s): %w",
					ErrBackpressure, s.name, ev.Topic, ev.ID, err))
			} else {
				errs = append(errs, fmt.Errorf("%w: subscriber %q queue full for %v, missed %s (id %s)",
					ErrBackpressure, s.name, m.publishTimeout, ev.Topic, ev.ID))
			}
		}
	}
	return errs
}

// Subscribe registers h under a unique name for every topic matching
// subject. The handler runs in the subscription's own goroutines.
func (m *Memory) Subscribe(subject, name string, h Handler, opts ...SubscribeOption) (Subscription, error) {
	if err := ValidateSubject(subject); err != nil {
		return nil, err
	}
	if name == "" || len(name) > maxNameLen || !utf8.ValidString(name) {
		// The name is a Prometheus label value, which must be valid UTF-8.
		return nil, fmt.Errorf("bus: invalid subscriber name %q: want 1..%d bytes of UTF-8", name, maxNameLen)
	}
	if h == nil {
		return nil, fmt.Errorf("bus: subscriber %q: nil handler", name)
	}
	o := subscribeOptions{policy: Block, queueSize: m.queueSize, workers: m.workers}
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("bus: subscriber %q: %w", name, err)
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return nil, ErrClosed
	}
	if _, dup := m.names[name]; dup {
		return nil, fmt.Errorf("%w: %q", ErrDuplicateName, name)
	}
	s := &subscription{
		bus:      m,
		name:     name,
		pattern:  strings.Split(subject, "."),
		handler:  h,
		policy:   o.policy,
		log:      m.log.With("subscriber", name, "subject", subject),
		met:      m.metrics.forSubscriber(name),
		queues:   make([]chan Event, o.workers),
		stopping: make(chan struct{}),
	}
	for i := range s.queues {
		s.queues[i] = make(chan Event, o.queueSize)
		s.workers.Go(func() { s.work(s.queues[i]) })
	}
	m.names[name] = s
	m.subs.Store(newSubIndex(append(slices.Clone(m.subs.Load().all), s)))
	return s, nil
}

// Ping reports whether the bus accepts events.
func (m *Memory) Ping(context.Context) error {
	if m.closed.Load() {
		return ErrClosed
	}
	return nil
}

// Close stops accepting events and waits, until ctx is done, for every
// subscription to drain. Calling it again waits for the same drain.
func (m *Memory) Close(ctx context.Context) error {
	m.mu.Lock()
	if !m.closed.Load() {
		m.closed.Store(true)
		// names, not the publish list: it also holds subscriptions that
		// are in the middle of Unsubscribe, whose drain Close must await.
		subs := slices.Collect(maps.Values(m.names))
		go m.drain(subs)
	}
	m.mu.Unlock()

	select {
	case <-m.drained:
		m.cancelHandlers()
		return nil
	default:
	}
	select {
	case <-m.drained:
		m.cancelHandlers()
		return nil
	case <-ctx.Done():
		// Let handlers still running know they should give up; the drain
		// goes on in the background until they return.
		m.cancelHandlers()
		return fmt.Errorf("bus: close: queues not drained: %w", ctx.Err())
	}
}

func (m *Memory) drain(subs []*subscription) {
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Go(s.stop)
	}
	wg.Wait()
	close(m.drained)
}

// subIndex groups subscriptions by the first token of their subject, so a
// publish only tests the subscriptions that can match: with hundreds of
// subscriptions spread over a dozen modules that is a few, not all. It is
// rebuilt on every Subscribe and Unsubscribe, which are rare, and holds
// nothing but the subscriptions themselves.
type subIndex struct {
	all     []*subscription
	byFirst map[string][]*subscription // subject starts with a literal token
	wild    []*subscription            // subject starts with '*' or '>'
}

func newSubIndex(all []*subscription) *subIndex {
	idx := &subIndex{all: all, byFirst: make(map[string][]*subscription)}
	for _, s := range all {
		if p := s.pattern[0]; p == "*" || p == ">" {
			idx.wild = append(idx.wild, s)
		} else {
			idx.byFirst[p] = append(idx.byFirst[p], s)
		}
	}
	return idx
}

// subscription is one consumer: a handler, its queues (one per worker) and
// the workers draining them.
type subscription struct {
	bus     *Memory
	name    string
	pattern []string // subject split on '.'
	handler Handler
	policy  Policy
	log     *slog.Logger
	met     subMetrics
	queues  []chan Event

	// mu makes sending on the queues and closing them mutually exclusive:
	// publishers hold it shared while they send, stop holds it exclusively
	// to set closed, after which no one sends and the queues can be closed
	// without a send on a closed channel.
	mu       sync.RWMutex
	closed   bool
	stopping chan struct{} // closed before stop takes mu, to wake publishers waiting for room
	stopOnce sync.Once
	stopped  atomic.Bool // drained and its metric series deleted
	workers  sync.WaitGroup

	pendingDrops atomic.Int64 // drops since the last warning
	lastDropWarn atomic.Int64 // m.now() in Unix nanoseconds at the last warning
}

type offerResult int

const (
	offerQueued  offerResult = iota
	offerDropped             // DropNewest and the queue was full
	offerFull                // Block and the queue was full: the caller must wait
	offerGone                // the subscription is stopping
	offerTimeout             // waited until the deadline without room
)

// queue picks the worker for a key hash: one key, one worker, one order.
func (s *subscription) queue(h uint64) chan Event {
	return s.queues[h%uint64(len(s.queues))]
}

// offer queues ev if there is room right now.
func (s *subscription) offer(ev Event, h uint64) offerResult {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return offerGone
	}
	select {
	case s.queue(h) <- ev:
		return offerQueued
	default:
	}
	if s.policy == DropNewest {
		s.noteDrop(ev)
		return offerDropped
	}
	return offerFull
}

// wait queues ev, waiting for room until ctx is done or the subscription
// stops.
func (s *subscription) wait(ctx context.Context, ev Event, h uint64) offerResult {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return offerGone
	}
	select {
	case s.queue(h) <- ev:
		return offerQueued
	case <-s.stopping:
		return offerGone
	case <-ctx.Done():
		// Counted under mu, before stop can delete the series.
		s.met.backpressure.Inc()
		return offerTimeout
	}
}

func (s *subscription) closedErr(ev Event) error {
	return fmt.Errorf("%w: subscriber %q missed %s (id %s)", ErrClosed, s.name, ev.Topic, ev.ID)
}

// noteDrop counts a dropped event and warns at most once per dropWarnEvery,
// with the number dropped since the previous warning.
func (s *subscription) noteDrop(ev Event) {
	s.met.dropped.Inc()
	s.pendingDrops.Add(1)
	now := s.bus.now().UnixNano()
	last := s.lastDropWarn.Load()
	if last != 0 && now-last < int64(dropWarnEvery) {
		return
	}
	if !s.lastDropWarn.CompareAndSwap(last, now) {
		return // another publisher is logging this window
	}
	s.log.Warn("bus: subscriber queue full, dropping events",
		"topic", ev.Topic, "dropped", s.pendingDrops.Swap(0))
}

func (s *subscription) depth() int {
	n := 0
	for _, q := range s.queues {
		n += len(q)
	}
	return n
}

func (s *subscription) work(q <-chan Event) {
	for ev := range q {
		s.handle(ev)
	}
}

func (s *subscription) handle(ev Event) {
	defer func() {
		if r := recover(); r != nil {
			// One bad event must not kill the worker and stall every
			// later event with a key that hashes to it.
			s.met.handlerErrors.Inc()
			s.log.Error("bus: handler panicked",
				"topic", ev.Topic, "key", ev.Key, "event_id", ev.ID,
				"panic", r, "stack", string(debug.Stack()))
		}
	}()
	s.met.delivered.Inc()
	if err := s.handler(s.bus.handlerCtx, ev); err != nil {
		s.met.handlerErrors.Inc()
		s.log.Error("bus: handler failed",
			"topic", ev.Topic, "key", ev.Key, "event_id", ev.ID, "err", err)
	}
}

// Unsubscribe stops delivery and waits until the queued events have been
// handled. The name can be reused once it returns.
func (s *subscription) Unsubscribe() {
	m := s.bus
	m.mu.Lock()
	subs := m.subs.Load().all
	if i := slices.Index(subs, s); i >= 0 {
		m.subs.Store(newSubIndex(slices.Delete(slices.Clone(subs), i, i+1)))
	}
	m.mu.Unlock()

	s.stop()

	m.mu.Lock()
	if m.names[s.name] == s {
		delete(m.names, s.name)
	}
	m.mu.Unlock()
}

// stop closes the queues, waits for the workers to drain them and removes
// the subscriber's metric series. Concurrent callers all wait for it.
func (s *subscription) stop() {
	s.stopOnce.Do(func() {
		close(s.stopping)
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		for _, q := range s.queues {
			close(q)
		}
		s.workers.Wait()
		if n := s.pendingDrops.Swap(0); n > 0 {
			s.log.Warn("bus: subscriber stopped, dropped events since last warning", "dropped", n)
		}
		s.stopped.Store(true)
		s.bus.metrics.deleteSubscriber(s.name)
	})
}

// newID returns a random 128-bit id in hex.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails since Go 1.24
	return hex.EncodeToString(b[:])
}

// keyHash is FNV-1a of the key, or of the topic when there is no key, so
// keyless events keep per-topic order. It must not depend on anything else
// (not the topic when a key is set): all events of one conversation, of
// whatever topic, go to the same worker.
func keyHash(key, topic string) uint64 {
	if key == "" {
		key = topic
	}
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= prime
	}
	return h
}
