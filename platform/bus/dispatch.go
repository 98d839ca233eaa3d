package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Defaults for the zero values of MemoryOptions and NATSOptions.
const (
	DefaultQueueSize      = 1024
	DefaultWorkers        = 1
	DefaultPublishTimeout = 5 * time.Second
)

// maxNameLen bounds a subscriber name, which becomes a metric label value.
const maxNameLen = 255

// dropWarnEvery rate-limits the warning logged when a subscriber drops
// events: a stuck consumer of presence pings would otherwise log once per
// ping.
const dropWarnEvery = 10 * time.Second

// core is what Memory and NATS share: the defaults for new subscriptions,
// the metrics, the clock, and the context handlers run with. The buses
// decide which events reach a subscription; the dispatchers built here
// decide which worker handles them, and in which order.
type core struct {
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
}

// newCore applies the defaults to a bus's options. The caller sets metrics,
// which need to know how to list the bus's subscriptions.
func newCore(log *slog.Logger, queueSize, workers int, publishTimeout time.Duration) core {
	c := core{
		log:            log,
		queueSize:      queueSize,
		workers:        workers,
		publishTimeout: publishTimeout,
		now:            time.Now,
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.queueSize <= 0 {
		c.queueSize = DefaultQueueSize
	}
	if c.workers <= 0 {
		c.workers = DefaultWorkers
	}
	if c.publishTimeout <= 0 {
		c.publishTimeout = DefaultPublishTimeout
	}
	c.handlerCtx, c.cancelHandlers = context.WithCancel(context.Background())
	return c
}

// options checks a subscriber's name and handler and applies opts over the
// bus's defaults.
func (c *core) options(name string, h Handler, opts []SubscribeOption) (subscribeOptions, error) {
	if name == "" || len(name) > maxNameLen || !utf8.ValidString(name) {
		// The name is a Prometheus label value, which must be valid UTF-8.
		return subscribeOptions{}, fmt.Errorf("bus: invalid subscriber name %q: want 1..%d bytes of UTF-8", name, maxNameLen)
	}
	if h == nil {
		return subscribeOptions{}, fmt.Errorf("bus: subscriber %q: nil handler", name)
	}
	o := subscribeOptions{policy: Block, queueSize: c.queueSize, workers: c.workers}
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return subscribeOptions{}, fmt.Errorf("bus: subscriber %q: %w", name, err)
	}
	return o, nil
}

// newDispatcher starts the workers of a new subscription.
func (c *core) newDispatcher(name string, h Handler, o subscribeOptions, log *slog.Logger) *dispatcher {
	d := &dispatcher{
		core:     c,
		name:     name,
		handler:  h,
		policy:   o.policy,
		log:      log,
		met:      c.metrics.forSubscriber(name),
		queues:   make([]chan Event, o.workers),
		stopping: make(chan struct{}),
	}
	for i := range d.queues {
		d.queues[i] = make(chan Event, o.queueSize)
		d.workers.Go(func() { d.work(d.queues[i]) })
	}
	return d
}

// dispatcher is the local half of a subscription: one bounded queue per
// worker, the workers running the handler, drop and backpressure
// accounting, and the drain when it stops.
type dispatcher struct {
	core    *core
	name    string
	handler Handler
	policy  Policy
	log     *slog.Logger
	met     subMetrics
	queues  []chan Event

	// mu makes sending on the queues and closing them mutually exclusive:
	// senders hold it shared while they send, stop holds it exclusively
	// to set closed, after which no one sends and the queues can be closed
	// without a send on a closed channel.
	mu       sync.RWMutex
	closed   bool
	stopping chan struct{} // closed before stop takes mu, to wake senders waiting for room
	stopOnce sync.Once
	stopped  atomic.Bool // drained and its metric series deleted
	workers  sync.WaitGroup

	pendingDrops atomic.Int64 // drops since the last warning
	lastDropWarn atomic.Int64 // core.now() in Unix nanoseconds at the last warning
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
func (d *dispatcher) queue(h uint64) chan Event {
	return d.queues[h%uint64(len(d.queues))]
}

// offer queues ev if there is room right now.
func (d *dispatcher) offer(ev Event, h uint64) offerResult {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return offerGone
	}
	select {
	case d.queue(h) <- ev:
		return offerQueued
	default:
	}
	if d.policy == DropNewest {
		d.noteDrop(ev)
		return offerDropped
	}
	return offerFull
}

// wait queues ev, waiting for room until ctx is done or the subscription
// stops.
func (d *dispatcher) wait(ctx context.Context, ev Event, h uint64) offerResult {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return offerGone
	}
	select {
	case d.queue(h) <- ev:
		return offerQueued
	case <-d.stopping:
		return offerGone
	case <-ctx.Done():
		// Counted under mu, before stop can delete the series.
		d.met.backpressure.Inc()
		return offerTimeout
	}
}

func (d *dispatcher) closedErr(ev Event) error {
	return fmt.Errorf("%w: subscriber %q missed %s (id %s)", ErrClosed, d.name, ev.Topic, ev.ID)
}

// noteDrop counts an event dropped because the queue was full.
func (d *dispatcher) noteDrop(ev Event) {
	d.noteDrops(1, "bus: subscriber queue full, dropping events", "topic", ev.Topic)
}

// noteDrops counts n missed events and warns at most once per
// dropWarnEvery, with the number dropped since the previous warning. msg
// and args describe the drop that triggers the warning.
func (d *dispatcher) noteDrops(n int64, msg string, args ...any) {
	d.met.dropped.Add(float64(n))
	d.pendingDrops.Add(n)
	now := d.core.now().UnixNano()
	last := d.lastDropWarn.Load()
	if last != 0 && now-last < int64(dropWarnEvery) {
		return
	}
	if !d.lastDropWarn.CompareAndSwap(last, now) {
		return // another sender is logging this window
	}
	d.log.Warn(msg, append(args, "dropped", d.pendingDrops.Swap(0))...)
}

func (d *dispatcher) depth() int {
	n := 0
	for _, q := range d.queues {
		n += len(q)
	}
	return n
}

func (d *dispatcher) work(q <-chan Event) {
	for ev := range q {
		d.handle(ev)
	}
}

func (d *dispatcher) handle(ev Event) {
	defer func() {
		if r := recover(); r != nil {
			// One bad event must not kill the worker and stall every
			// later event with a key that hashes to it.
			d.met.handlerErrors.Inc()
			d.log.Error("bus: handler panicked",
				"topic", ev.Topic, "key", ev.Key, "event_id", ev.ID,
				"panic", r, "stack", string(debug.Stack()))
		}
	}()
	d.met.delivered.Inc()
	if err := d.handler(d.core.handlerCtx, ev); err != nil {
		d.met.handlerErrors.Inc()
		d.log.Error("bus: handler failed",
			"topic", ev.Topic, "key", ev.Key, "event_id", ev.ID, "err", err)
	}
}

// stop closes the queues, waits for the workers to drain them and removes
// the subscriber's metric series. Concurrent callers all wait for it.
func (d *dispatcher) stop() {
	d.stopOnce.Do(func() {
		close(d.stopping)
		d.mu.Lock()
		d.closed = true
		d.mu.Unlock()
		for _, q := range d.queues {
			close(q)
		}
		d.workers.Wait()
		if n := d.pendingDrops.Swap(0); n > 0 {
			d.log.Warn("bus: subscriber stopped, dropped events since last warning", "dropped", n)
		}
		d.stopped.Store(true)
		d.core.metrics.deleteSubscriber(d.name)
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

// awaitDrain is the end of Close: it waits, until ctx is done, for drained
// (every queue handled) and then cancels the handlers' context. When ctx
// ends first, abandon runs (nil: nothing) before the handlers are told to
// give up; the drain goes on in the background until they return.
func (c *core) awaitDrain(ctx context.Context, drained <-chan struct{}, abandon func()) error {
	select {
	case <-drained:
		c.cancelHandlers()
		return nil
	default:
	}
	select {
	case <-drained:
		c.cancelHandlers()
		return nil
	case <-ctx.Done():
		if abandon != nil {
			abandon()
		}
		c.cancelHandlers()
		return fmt.Errorf("bus: close: queues not drained: %w", ctx.Err())
	}
}
