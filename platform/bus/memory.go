package bus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

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
	core

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
		core:    newCore(opts.Logger, opts.QueueSize, opts.Workers, opts.PublishTimeout),
		names:   make(map[string]*subscription),
		drained: make(chan struct{}),
	}
	m.subs.Store(newSubIndex(nil))
	met, err := newMetrics(opts.Registerer, m.dispatchers)
	if err != nil {
		m.cancelHandlers()
		return nil, err
	}
	m.metrics = met
	return m, nil
}

// dispatchers lists the live subscriptions for the queue depth gauge.
func (m *Memory) dispatchers(yield func(*dispatcher) bool) {
	for _, s := range m.subs.Load().all {
		if !yield(s.dispatcher) {
			return
		}
	}
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
// subject. The handler runs in the subscription's own goroutines. Shared is
// accepted and changes nothing: one process is one node, and every
// subscription already handles each event once.
func (m *Memory) Subscribe(subject, name string, h Handler, opts ...SubscribeOption) (Subscription, error) {
	if err := ValidateSubject(subject); err != nil {
		return nil, err
	}
	o, err := m.options(name, h, opts)
	if err != nil {
		return nil, err
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
		dispatcher: m.newDispatcher(name, h, o, m.log.With("subscriber", name, "subject", subject)),
		bus:        m,
		pattern:    strings.Split(subject, "."),
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
	return m.awaitDrain(ctx, m.drained, nil)
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

// subscription is one consumer: which topics it takes, and the dispatcher
// that queues and handles them.
type subscription struct {
	*dispatcher
	bus     *Memory
	pattern []string // subject split on '.'
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
