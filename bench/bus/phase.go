package main

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/bench/benchkit"
	"github.com/elph-server/elph/platform/bus"
)

// bench holds the buses, which live for the whole run: each phase adds
// its own subscriptions (a topic and name of its own) and removes them.
type bench struct {
	o    options
	srv  *natsServer
	warn *warnLog
	keys []string

	prefix string
	mem    *node
	pub    *node   // the publishing NATS node (nodes[0])
	nodes  []*node // every NATS node: the publisher, then the subscribers

	phaseNo int
	results []*result
}

// node is one bus, as one server node has it, with its own registry (one
// bus per registry).
type node struct {
	name string
	b    bus.Bus
	reg  *prometheus.Registry
}

func (b *bench) setup(ctx context.Context) error {
	o := b.o
	needs := func(p string) bool {
		for _, q := range o.phases {
			if q == p {
				return true
			}
		}
		return false
	}
	if needs("memory") {
		reg := prometheus.NewRegistry()
		m, err := bus.NewMemory(bus.MemoryOptions{
			Logger: b.warn.logger("memory"), Registerer: reg,
			QueueSize: o.queue, Workers: o.workers, PublishTimeout: o.pubWait,
		})
		if err != nil {
			return err
		}
		b.mem = &node{name: "memory", b: m, reg: reg}
	}
	if b.srv == nil {
		return nil
	}
	var rb [6]byte
	_, _ = crand.Read(rb[:])
	b.prefix = "bench-" + hex.EncodeToString(rb[:])
	subs := 1
	if needs("fanout") || needs("shared") {
		subs = o.nodes
	}
	for i := 0; i <= subs; i++ {
		name := fmt.Sprintf("node%d", i)
		if i == 0 {
			name = "pub"
		}
		reg := prometheus.NewRegistry()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		nb, err := bus.NewNATS(cctx, bus.NATSOptions{
			URL: b.srv.url, Prefix: b.prefix, Name: "elph-bench-" + name,
			Logger: b.warn.logger(name), Registerer: reg,
			QueueSize: o.queue, Workers: o.workers, PublishTimeout: o.pubWait,
		})
		cancel()
		if err != nil {
			return err
		}
		b.nodes = append(b.nodes, &node{name: name, b: nb, reg: reg})
	}
	b.pub = b.nodes[0]
	return nil
}

// close closes every bus, concurrently, each within 10 s.
func (b *bench) close() {
	all := b.nodes
	if b.mem != nil {
		all = append([]*node{b.mem}, all...)
	}
	var wg sync.WaitGroup
	for _, n := range all {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := n.b.Close(ctx); err != nil {
				fmt.Fprintf(os.Stderr, "bus bench: close %s: %v\n", n.name, err)
			}
		})
	}
	wg.Wait()
}

// phase is one run in progress: what is published and who receives it.
type phase struct {
	keys      []string
	delay     time.Duration
	ended     atomic.Bool  // the phase is over: handlers stop sleeping, so the drain is quick
	delivered atomic.Int64 // every handler call, duplicates and malformed ones included
	recv      []*receiver
}

// receiver records one subscription's deliveries, indexed by sequence
// number.
type receiver struct {
	ph     *phase
	count  []uint32 // deliveries of each event (atomic)
	recvAt []int64  // Unix ns of the first delivery
	lat    []int64  // ns from send to the first delivery
	last   []int64  // per key, the highest sequence number seen; one worker per key
	reord  atomic.Int64
	bad    atomic.Int64
}

func newReceiver(ph *phase, n, keys int) *receiver {
	r := &receiver{ph: ph,
		count: make([]uint32, n), recvAt: make([]int64, n), lat: make([]int64, n), last: make([]int64, keys)}
	for i := range r.last {
		r.last[i] = -1
	}
	return r
}

// handle is the subscription's handler. Events of one key reach one
// worker, so r.last[key] has one writer; the other slices are read after
// Unsubscribe, which waits for the workers.
func (r *receiver) handle(_ context.Context, ev bus.Event) error {
	now := time.Now().UnixNano()
	defer r.ph.delivered.Add(1)
	seq, key, sent, ok := parse(ev.Payload)
	if !ok || seq >= len(r.count) || key >= len(r.last) || ev.Key != r.ph.keys[key] {
		r.bad.Add(1)
		return nil
	}
	if atomic.AddUint32(&r.count[seq], 1) == 1 {
		r.recvAt[seq] = now
		r.lat[seq] = now - sent
	}
	if int64(seq) < r.last[key] {
		r.reord.Add(1)
	} else {
		r.last[key] = int64(seq)
	}
	if r.ph.delay > 0 && !r.ph.ended.Load() {
		time.Sleep(r.ph.delay)
	}
	return nil
}

// snapshot is what is read before and after a phase.
type snapshot struct {
	at       time.Time
	self     float64 // this process's CPU seconds
	nats     float64 // the private nats-server's, -1 if unknown
	all      float64 // every CPU's busy seconds
	varz     varz
	varzOK   bool
	numGC    uint32
	gcPause  uint64
	mallocs  uint64
	allocB   uint64
	waits    float64 // elph_bus_publish_wait_seconds count, all buses in the phase
	waitSum  float64
	warnMark int
}

func (b *bench) snap(nodes []*node) snapshot {
	s := snapshot{at: time.Now(), nats: -1, warnMark: b.warn.mark()}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = benchkit.CPUOf(ru)
	}
	if b.srv != nil {
		s.nats = procCPU(b.srv.pid())
		s.varz, s.varzOK = b.srv.varz()
	}
	s.all, _ = benchkit.SystemCPU()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.numGC, s.gcPause = ms.NumGC, ms.PauseTotalNs
	s.mallocs, s.allocB = ms.Mallocs, ms.TotalAlloc
	for _, n := range nodes {
		c, sum := histogram(n.reg, "elph_bus_publish_wait_seconds")
		s.waits += c
		s.waitSum += sum
	}
	return s
}

func (b *bench) runPhase(ctx context.Context, name string, burst bool) (*result, error) {
	o := b.o
	b.phaseNo++
	id := fmt.Sprintf("p%d", b.phaseNo)
	topic := "bench." + id + ".created"
	subName := "bench-" + id // the same on every node: the queue group when shared

	r := &result{name: name, burst: burst, lossAllowed: o.policy == bus.DropNewest, natsRSS: -1}
	var pub *node
	var subs []*node
	switch name {
	case "memory":
		pub, subs = b.mem, []*node{b.mem}
	case "nats":
		pub, subs = b.pub, b.nodes[1:2]
	case "fanout":
		pub, subs = b.pub, b.nodes[1:]
	case "shared":
		pub, subs, r.shared = b.pub, b.nodes[1:], true
	}
	r.nats = name != "memory"
	r.nodes = len(subs)
	r.n = o.n
	if !burst {
		r.rate, r.dur, r.n = o.rate, o.dur, rateEvents(o)
	}

	ph := &phase{keys: b.keys, delay: o.handlerDelay}
	opts := []bus.SubscribeOption{bus.WithWorkers(o.workers), bus.WithQueueSize(o.queue), bus.WithPolicy(o.policy)}
	if r.shared {
		opts = append(opts, bus.Shared())
	}
	var handles []bus.Subscription
	unsubscribe := func() {
		var wg sync.WaitGroup
		for _, s := range handles {
			wg.Go(s.Unsubscribe)
		}
		wg.Wait()
		handles = nil
	}
	for _, n := range subs {
		rc := newReceiver(ph, r.n, o.keys)
		s, err := n.b.Subscribe(topic, subName, rc.handle, opts...)
		if err != nil {
			unsubscribe()
			return nil, fmt.Errorf("%s: subscribe on %s: %w", name, n.name, err)
		}
		handles = append(handles, s)
		ph.recv = append(ph.recv, rc)
	}
	involved := append([]*node{pub}, subs...)
	if name == "memory" {
		involved = subs
	}

	r.pubCall = make([]float64, r.n)
	runtime.GC()
	if o.cpuprofile != "" {
		stop, err := startProfile(o.cpuprofile, r.label())
		if err != nil {
			unsubscribe()
			return nil, err
		}
		defer stop()
	}
	before := b.snap(involved)
	pctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	// Publish.
	rnd := rand.New(rand.NewPCG(o.seed, uint64(b.phaseNo)))
	payload := newPayload(o.size)
	start := time.Now()
	r.start = start
	for i := 0; i < r.n; i++ {
		if i&255 == 0 && pctx.Err() != nil {
			break
		}
		if r.rate > 0 {
			due := start.Add(time.Duration(int64(i) * int64(time.Second) / int64(r.rate)))
			if wait := time.Until(due); wait > 0 {
				time.Sleep(wait)
			} else if lag := -wait; lag > time.Millisecond {
				r.late++
				r.maxLag = max(r.maxLag, lag)
			}
		}
		k := rnd.IntN(o.keys)
		t0 := time.Now()
		stamp(payload, i, k, t0.UnixNano())
		err := pub.b.Publish(pctx, bus.Event{Topic: topic, Key: b.keys[k], Payload: payload})
		r.pubCall[i] = float64(time.Since(t0).Nanoseconds()) / 1e3
		r.attempted++
		if err != nil {
			r.pubErrs++
			if r.firstErr == "" {
				r.firstErr = err.Error()
			}
		}
	}
	r.pubSpan = time.Since(start)

	// Wait for the handlers: until every published event has been
	// handled where it should be, or nothing has moved for longer than a
	// Block subscriber may hold a delivery, or the phase's time is up.
	want := int64(r.attempted - r.pubErrs)
	if !r.shared {
		want *= int64(len(subs))
	}
	idle := o.pubWait + time.Second
	last, lastMove := int64(-1), time.Now()
	for {
		d := ph.delivered.Load()
		if d >= want {
			break
		}
		if d != last {
			last, lastMove = d, time.Now()
		}
		if time.Since(lastMove) > idle {
			r.stalled = true
			break
		}
		if pctx.Err() != nil {
			r.timedOut = ctx.Err() == nil
			break
		}
		time.Sleep(time.Millisecond)
	}
	if r.attempted < r.n && ctx.Err() == nil {
		r.timedOut = true
	}
	// The subscriber series disappear with the subscription: read them
	// first.
	for _, n := range subs {
		r.busDropped += counter(n.reg, "elph_bus_dropped_total", subName)
		r.busBackpressure += counter(n.reg, "elph_bus_backpressure_total", subName)
		r.handlerErrs += counter(n.reg, "elph_bus_handler_errors_total", subName)
	}
	r.pubCall = r.pubCall[:r.attempted]
	ph.ended.Store(true)
	unsubscribe()
	after := b.snap(involved)
	r.account(ph)
	r.measure(before, after, b)
	return r, nil
}

// startProfile starts a CPU profile of this process in dir, named after
// the phase; the returned function stops it.
func startProfile(dir, label string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	name := strings.NewReplacer("×", "x", " ", "-", "/", "").Replace(label) + ".pprof"
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// warnLog collects what the buses log at warning level and above.
type warnLog struct {
	mu    sync.Mutex
	lines []string
	total int
}

const warnKeep = 1000

func (w *warnLog) logger(node string) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", node)
}

func (w *warnLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for line := range strings.SplitSeq(strings.TrimRight(string(p), "\n"), "\n") {
		w.total++
		if len(w.lines) < warnKeep {
			w.lines = append(w.lines, line)
		}
	}
	return len(p), nil
}

func (w *warnLog) mark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.total
}

// since returns how many lines were logged after mark, and up to max of
// the first of them.
func (w *warnLog) since(mark, max int) (int, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for i := mark; i < len(w.lines) && len(out) < max; i++ {
		out = append(out, w.lines[i])
	}
	return w.total - mark, out
}

// counter reads a subscriber's series of a counter family.
func counter(reg *prometheus.Registry, family, sub string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "subscriber" && l.GetValue() == sub {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// histogram reads a histogram's sample count and sum.
func histogram(reg *prometheus.Registry, family string) (count, sum float64) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, 0
	}
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			count += float64(h.GetSampleCount())
			sum += h.GetSampleSum()
		}
	}
	return count, sum
}
