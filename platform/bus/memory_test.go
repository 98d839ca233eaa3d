package bus

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// newTestBus returns a bus registered on a fresh registry and closed when
// the test ends.
func newTestBus(t *testing.T, opts MemoryOptions) (*Memory, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	b, err := NewMemory(opts)
	if err != nil {
		t.Fatalf("NewMemory: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b, reg
}

func mustSubscribe(t *testing.T, b Bus, subject, name string, h Handler, opts ...SubscribeOption) Subscription {
	t.Helper()
	sub, err := b.Subscribe(subject, name, h, opts...)
	if err != nil {
		t.Fatalf("Subscribe(%q, %q): %v", subject, name, err)
	}
	return sub
}

func mustPublish(t *testing.T, b Bus, ev Event) {
	t.Helper()
	if err := b.Publish(context.Background(), ev); err != nil {
		t.Fatalf("Publish(%s): %v", ev.Topic, err)
	}
}

// metricValue reads a counter, gauge or histogram sample count with the
// given label from reg; ok is false when the series does not exist.
func metricValue(t *testing.T, reg prometheus.Gatherer, name, label, value string) (v float64, ok bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			found := label == ""
			for _, lp := range m.GetLabel() {
				found = found || lp.GetName() == label && lp.GetValue() == value
			}
			if !found {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue(), true
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), true
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func mustMetric(t *testing.T, reg prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	v, ok := metricValue(t, reg, name, label, value)
	if !ok {
		t.Fatalf("metric %s{%s=%q} not found", name, label, value)
	}
	return v
}

// recorder is a handler that keeps what it received.
type recorder struct {
	mu  sync.Mutex
	evs []Event
}

func (r *recorder) handle(_ context.Context, ev Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
	return nil
}

func (r *recorder) topics() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ts []string
	for _, ev := range r.evs {
		ts = append(ts, ev.Topic)
	}
	return ts
}

// gate is a handler that blocks until released, so tests can fill queues
// deterministically.
type gate struct {
	started chan struct{} // receives once per event that reached the handler
	release chan struct{}
	once    sync.Once
	handled atomic.Int64
}

// newGate returns a closed gate. It is opened when the test ends at the
// latest (before the bus's Close, registered earlier), so a failing test
// does not hang in Close.
func newGate(t *testing.T) *gate {
	g := &gate{started: make(chan struct{}, 1<<16), release: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

func (g *gate) handle(context.Context, Event) error {
	g.started <- struct{}{}
	<-g.release
	g.handled.Add(1)
	return nil
}

// logBuffer collects JSON log records.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, nil))
}

func (l *logBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var recs []map[string]any
	for line := range strings.Lines(l.buf.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		recs = append(recs, rec)
	}
	return recs
}

func TestPublishValidation(t *testing.T) {
	b, _ := newTestBus(t, MemoryOptions{})
	tests := []struct {
		name string
		ev   Event
		want error // nil: accepted
	}{
		{"valid", Event{Topic: "chat.message.created"}, nil},
		{"empty topic", Event{}, ErrInvalidSubject},
		{"empty token", Event{Topic: "chat..created"}, ErrInvalidSubject},
		{"upper case", Event{Topic: "Chat.message.created"}, ErrInvalidSubject},
		{"wildcard", Event{Topic: "chat.*.created"}, ErrInvalidSubject},
		{"tail wildcard", Event{Topic: "chat.>"}, ErrInvalidSubject},
		{"max key", Event{Topic: "chat.x", Key: strings.Repeat("k", MaxKeyLen)}, nil},
		{"key too long", Event{Topic: "chat.x", Key: strings.Repeat("k", MaxKeyLen+1)}, ErrTooLarge},
		{"max payload", Event{Topic: "chat.x", Payload: make(json.RawMessage, MaxPayload)}, nil},
		{"payload too large", Event{Topic: "chat.x", Payload: make(json.RawMessage, MaxPayload+1)}, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := b.Publish(context.Background(), tt.ev)
			if tt.want == nil && err != nil {
				t.Errorf("Publish = %v, want nil", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Publish = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestPublishFillsEvent(t *testing.T) {
	b, reg := newTestBus(t, MemoryOptions{})
	var rec recorder
	sub := mustSubscribe(t, b, "chat.>", "rec", rec.handle)

	payload := []byte(`{"text":"hello"}`)
	mustPublish(t, b, Event{Topic: "chat.message.created", Key: "c1", Payload: payload})
	copy(payload, `{"text":"XXXXX"}`) // the caller reuses its buffer
	mustPublish(t, b, Event{Topic: "chat.message.created", Key: "c1"})
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.FixedZone("MSK", 3*60*60))
	mustPublish(t, b, Event{ID: "given", Topic: "chat.message.created", Key: "c1", Time: at})
	if got := mustMetric(t, reg, "elph_bus_published_total", "topic", "chat.message.created"); got != 3 {
		t.Errorf("published_total = %v, want 3", got)
	}
	sub.Unsubscribe()

	if len(rec.evs) != 3 {
		t.Fatalf("received %d events, want 3", len(rec.evs))
	}
	for i, ev := range rec.evs[:2] {
		if raw, err := hex.DecodeString(ev.ID); err != nil || len(raw) != 16 {
			t.Errorf("event %d: ID %q is not 128-bit hex", i, ev.ID)
		}
		if ev.Time.IsZero() || ev.Time.Location() != time.UTC {
			t.Errorf("event %d: Time %v, want non-zero UTC", i, ev.Time)
		}
	}
	if rec.evs[0].ID == rec.evs[1].ID {
		t.Errorf("two events got the same ID %q", rec.evs[0].ID)
	}
	if got := string(rec.evs[0].Payload); got != `{"text":"hello"}` {
		t.Errorf("payload = %s, want the value at publish time", got)
	}
	if rec.evs[2].ID != "given" || !rec.evs[2].Time.Equal(at) {
		t.Errorf("given ID/Time replaced: %q %v", rec.evs[2].ID, rec.evs[2].Time)
	}
}

func TestPerKeyOrdering(t *testing.T) {
	const (
		keys       = 50
		pubsPerKey = 2   // independent publishers per key, each with its own sequence
		perPub     = 100 // keys*pubsPerKey*perPub = 10,000 events
	)
	// Several workers and small queues, so publishers contend and wait.
	b, _ := newTestBus(t, MemoryOptions{PublishTimeout: time.Minute})

	type seq struct {
		Pub int `json:"pub"`
		N   int `json:"n"`
	}
	type stream struct {
		key string
		pub int
	}
	var (
		mu       sync.Mutex
		next     = map[stream]int{}
		problems []string
		handled  int
	)
	h := func(_ context.Context, ev Event) error {
		var s seq
		if err := json.Unmarshal(ev.Payload, &s); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		handled++
		k := stream{ev.Key, s.Pub}
		if s.N != next[k] && len(problems) < 10 {
			problems = append(problems, fmt.Sprintf("key %s publisher %d: got #%d, want #%d", ev.Key, s.Pub, s.N, next[k]))
		}
		next[k] = s.N + 1
		return nil
	}
	// "*" on the last token: events of one key alternate between two
	// topics and must still be in order, since the worker is chosen by key.
	sub := mustSubscribe(t, b, "test.order.*", "order", h, WithWorkers(4), WithQueueSize(16))

	var wg sync.WaitGroup
	errs := make(chan error, keys*pubsPerKey)
	for k := range keys {
		for p := range pubsPerKey {
			wg.Go(func() {
				key := "conv-" + strconv.Itoa(k)
				for n := range perPub {
					payload, _ := json.Marshal(seq{Pub: p, N: n})
					topic := "test.order.created"
					if n%2 == 1 {
						topic = "test.order.updated"
					}
					if err := b.Publish(context.Background(), Event{Topic: topic, Key: key, Payload: payload}); err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Publish: %v", err)
	}
	sub.Unsubscribe() // drains

	if handled != keys*pubsPerKey*perPub {
		t.Errorf("handled %d events, want %d", handled, keys*pubsPerKey*perPub)
	}
	for _, p := range problems {
		t.Error(p)
	}
	for k, n := range next {
		if n != perPub {
			t.Errorf("key %s publisher %d: last #%d, want %d", k.key, k.pub, n-1, perPub-1)
		}
	}
}

// The ordering test only means something if its keys really are spread
// over several workers.
func TestKeyHashSpreadsKeys(t *testing.T) {
	used := map[uint64]bool{}
	for k := range 50 {
		used[keyHash("conv-"+strconv.Itoa(k), "test.order.created")%4] = true
	}
	if len(used) != 4 {
		t.Errorf("50 keys use %d of 4 workers", len(used))
	}
	if keyHash("k", "a.b") != keyHash("k", "c.d") {
		t.Error("key hash depends on the topic")
	}
	if keyHash("", "a.b") != keyHash("a.b", "x") {
		t.Error("an event without key is not ordered by topic")
	}
}

func TestFanOut(t *testing.T) {
	b, _ := newTestBus(t, MemoryOptions{})
	subjects := []struct{ name, subject string }{
		{"exact", "chat.message.created"},
		{"star", "chat.*.created"},
		{"tail", "chat.>"},
		{"presence", "presence.changed"},
		{"all", ">"},
		{"two", "*.*"},
	}
	recs := map[string]*recorder{}
	var subs []Subscription
	for _, s := range subjects {
		recs[s.name] = &recorder{}
		subs = append(subs, mustSubscribe(t, b, s.subject, s.name, recs[s.name].handle))
	}
	published := []string{
		"chat.message.created",
		"chat.message.deleted",
		"chat.reaction.created",
		"chat.typing",
		"chat",
		"presence.changed",
		"call.ended",
		"chat.message.created.extra",
	}
	for _, topic := range published {
		mustPublish(t, b, Event{Topic: topic}) // no key: per-topic order, one worker: publish order
	}
	for _, s := range subs {
		s.Unsubscribe()
	}
	want := map[string][]string{
		"exact":    {"chat.message.created"},
		"star":     {"chat.message.created", "chat.reaction.created"},
		"tail":     {"chat.message.created", "chat.message.deleted", "chat.reaction.created", "chat.typing", "chat.message.created.extra"},
		"presence": {"presence.changed"},
		"all":      published,
		"two":      {"chat.typing", "presence.changed", "call.ended"},
	}
	for name, w := range want {
		if got := recs[name].topics(); !slices.Equal(got, w) {
			t.Errorf("%s received %q, want %q", name, got, w)
		}
	}
}

func TestBlockBackpressure(t *testing.T) {
	b, reg := newTestBus(t, MemoryOptions{PublishTimeout: 50 * time.Millisecond})
	g := newGate(t)
	sub := mustSubscribe(t, b, "test.slow", "slow", g.handle, WithQueueSize(2))
	ctx := context.Background()
	ev := Event{Topic: "test.slow", Key: "k"}

	// One event in the handler, then fill the queue (2) and overflow.
	mustPublish(t, b, ev)
	<-g.started
	accepted := 1
	var err error
	for range 10 {
		if err = b.Publish(ctx, ev); err != nil {
			break
		}
		accepted++
	}
	if !errors.Is(err, ErrBackpressure) {
		t.Fatalf("Publish to a full queue = %v, want ErrBackpressure", err)
	}
	if msg := err.Error(); !strings.Contains(msg, `"slow"`) || !strings.Contains(msg, "test.slow") {
		t.Errorf("error %q does not name the subscriber and topic", msg)
	}
	if accepted != 3 {
		t.Errorf("accepted %d events before backpressure, want 3 (1 handling + queue of 2)", accepted)
	}

	// A caller's cancelled context ends the wait too, and says so.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	err = b.Publish(cctx, ev)
	if !errors.Is(err, ErrBackpressure) || !errors.Is(err, context.Canceled) {
		t.Errorf("Publish with cancelled ctx = %v, want ErrBackpressure and context.Canceled", err)
	}

	const want = `
# HELP elph_bus_backpressure_total Events a Block subscriber missed because its queue stayed full for the publish timeout.
# TYPE elph_bus_backpressure_total counter
elph_bus_backpressure_total{subscriber="slow"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "elph_bus_backpressure_total"); err != nil {
		t.Error(err)
	}
	if got := mustMetric(t, reg, "elph_bus_publish_wait_seconds", "", ""); got != 2 {
		t.Errorf("publish_wait_seconds observed %v times, want 2 (only publishes that waited)", got)
	}
	if got := mustMetric(t, reg, "elph_bus_queue_depth", "subscriber", "slow"); got != 2 {
		t.Errorf("queue_depth = %v, want 2", got)
	}

	g.open()
	sub.Unsubscribe()
	if got := g.handled.Load(); got != int64(accepted) {
		t.Errorf("handled %d events, want every accepted one (%d)", got, accepted)
	}
}

func TestFullSubscriberDoesNotDelayOthers(t *testing.T) {
	b, _ := newTestBus(t, MemoryOptions{PublishTimeout: time.Minute})
	g := newGate(t)
	slow := mustSubscribe(t, b, "test.x", "slow", g.handle, WithQueueSize(1))
	got := make(chan string, 10)
	fast := mustSubscribe(t, b, "test.x", "fast", func(_ context.Context, ev Event) error {
		got <- string(ev.Payload)
		return nil
	})

	mustPublish(t, b, Event{Topic: "test.x", Payload: json.RawMessage(`1`)})
	<-g.started
	mustPublish(t, b, Event{Topic: "test.x", Payload: json.RawMessage(`2`)}) // fills slow's queue
	done := make(chan error, 1)
	go func() { done <- b.Publish(context.Background(), Event{Topic: "test.x", Payload: json.RawMessage(`3`)}) }()

	for _, want := range []string{"1", "2", "3"} {
		select {
		case p := <-got:
			if p != want {
				t.Fatalf("fast got %s, want %s", p, want)
			}
		case err := <-done:
			t.Fatalf("Publish returned (%v) before fast got event %s", err, want)
		}
	}
	// fast has event 3 although slow still has no room for it.
	select {
	case err := <-done:
		t.Fatalf("Publish returned (%v) while a Block subscriber was full", err)
	default:
	}
	g.open()
	if err := <-done; err != nil {
		t.Errorf("Publish after room appeared = %v", err)
	}
	slow.Unsubscribe()
	fast.Unsubscribe()
	if n := g.handled.Load(); n != 3 {
		t.Errorf("slow handled %d events, want 3", n)
	}
}

func TestDropNewest(t *testing.T) {
	const n = 200
	// A short timeout: if DropNewest ever waited, Publish would fail.
	b, reg := newTestBus(t, MemoryOptions{PublishTimeout: 10 * time.Millisecond})
	g := newGate(t)
	typing := mustSubscribe(t, b, "presence.typing", "typing", g.handle, WithPolicy(DropNewest), WithQueueSize(1))
	var audited atomic.Int64
	audit := mustSubscribe(t, b, "presence.>", "audit", func(context.Context, Event) error {
		audited.Add(1)
		return nil
	}, WithQueueSize(n))

	for i := range n {
		if err := b.Publish(context.Background(), Event{Topic: "presence.typing", Key: "u1"}); err != nil {
			t.Fatalf("Publish #%d = %v, want nil: DropNewest must not block", i, err)
		}
	}
	dropped := mustMetric(t, reg, "elph_bus_dropped_total", "subscriber", "typing")
	if got, ok := metricValue(t, reg, "elph_bus_publish_wait_seconds", "", ""); ok && got != 0 {
		t.Errorf("publish_wait_seconds observed %v times, want 0", got)
	}

	g.open()
	typing.Unsubscribe()
	audit.Unsubscribe()
	handled := g.handled.Load()
	if handled < 1 || handled > 2 {
		t.Errorf("typing handled %d events, want 1 or 2 (handler + queue of 1)", handled)
	}
	if dropped != float64(n-handled) {
		t.Errorf("dropped_total = %v, want published - delivered = %d", dropped, n-handled)
	}
	if got := audited.Load(); got != n {
		t.Errorf("Block subscriber on the same topic got %d events, want %d", got, n)
	}
}

func TestDropWarningRateLimited(t *testing.T) {
	var logs logBuffer
	b, _ := newTestBus(t, MemoryOptions{Logger: logs.logger()})
	var clock atomic.Int64
	clock.Store(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	b.now = func() time.Time { return time.Unix(0, clock.Load()) }

	g := newGate(t)
	sub := mustSubscribe(t, b, "presence.ping", "ping", g.handle, WithPolicy(DropNewest), WithQueueSize(1))
	publish := func(times int) {
		for range times {
			mustPublish(t, b, Event{Topic: "presence.ping"})
		}
	}
	publish(1)
	<-g.started
	publish(1)  // queued
	publish(10) // dropped: the first warns at once, 9 wait for the next window
	clock.Add(int64(dropWarnEvery - time.Nanosecond))
	publish(1) // still inside the window
	clock.Add(int64(time.Nanosecond))
	publish(1) // window over: warns with 11
	publish(2) // pending at Unsubscribe
	g.open()
	sub.Unsubscribe()

	var counts []float64
	for _, rec := range logs.records(t) {
		if rec["level"] == "WARN" && rec["subscriber"] == "ping" {
			counts = append(counts, rec["dropped"].(float64))
		}
	}
	if want := []float64{1, 11, 2}; !slices.Equal(counts, want) {
		t.Errorf("drop warnings reported %v, want %v", counts, want)
	}
}

func TestHandlerErrorsAndPanics(t *testing.T) {
	var logs logBuffer
	b, reg := newTestBus(t, MemoryOptions{Logger: logs.logger()})
	var (
		mu   sync.Mutex
		seen []string
	)
	done := make(chan struct{})
	h := func(_ context.Context, ev Event) error {
		p := string(ev.Payload)
		mu.Lock()
		seen = append(seen, p)
		mu.Unlock()
		switch p {
		case `"error"`:
			return errors.New("boom")
		case `"panic"`:
			panic("kaboom")
		case `"done"`:
			close(done)
		}
		return nil
	}
	mustSubscribe(t, b, "test.h", "h", h)
	for _, p := range []string{`"error"`, `"ok"`, `"panic"`, `"ok"`, `"panic"`, `"done"`} {
		mustPublish(t, b, Event{ID: p, Topic: "test.h", Key: "k", Payload: json.RawMessage(p)})
	}
	// One key, one worker: when "done" is handled, every earlier event
	// has been handled and counted.
	<-done

	if got := mustMetric(t, reg, "elph_bus_handler_errors_total", "subscriber", "h"); got != 3 {
		t.Errorf("handler_errors_total = %v, want 3", got)
	}
	if got := mustMetric(t, reg, "elph_bus_delivered_total", "subscriber", "h"); got != 6 {
		t.Errorf("delivered_total = %v, want 6", got)
	}
	mu.Lock()
	if len(seen) != 6 {
		t.Errorf("handler saw %q, want all 6 events", seen)
	}
	mu.Unlock()

	var failed, panicked int
	for _, rec := range logs.records(t) {
		switch rec["msg"] {
		case "bus: handler failed":
			failed++
			if rec["err"] != "boom" || rec["event_id"] != `"error"` || rec["key"] != "k" || rec["topic"] != "test.h" || rec["subscriber"] != "h" {
				t.Errorf("handler error log lacks context: %v", rec)
			}
		case "bus: handler panicked":
			panicked++
			if stack, _ := rec["stack"].(string); !strings.Contains(stack, "goroutine") || rec["panic"] != "kaboom" {
				t.Errorf("panic log lacks the panic value or stack: %v", rec)
			}
		}
	}
	if failed != 1 || panicked != 2 {
		t.Errorf("logged %d handler errors and %d panics, want 1 and 2", failed, panicked)
	}
}

func TestCloseDrains(t *testing.T) {
	b, _ := newTestBus(t, MemoryOptions{})
	g := newGate(t)
	mustSubscribe(t, b, "test.c", "c", g.handle)
	for range 5 {
		mustPublish(t, b, Event{Topic: "test.c", Key: "k"})
	}
	<-g.started

	closed := make(chan error, 1)
	go func() { closed <- b.Close(context.Background()) }()
	for b.Ping(context.Background()) == nil {
		runtime.Gosched() // wait for Close to begin
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while events were still queued", err)
	default:
	}
	if err := b.Publish(context.Background(), Event{Topic: "test.c"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish during Close = %v, want ErrClosed", err)
	}
	if _, err := b.Subscribe("test.c", "late", g.handle); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe during Close = %v, want ErrClosed", err)
	}

	g.open()
	if err := <-closed; err != nil {
		t.Fatalf("Close = %v", err)
	}
	if n := g.handled.Load(); n != 5 {
		t.Errorf("handled %d events before Close returned, want 5", n)
	}
	if err := b.Ping(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Ping after Close = %v, want ErrClosed", err)
	}
	if err := b.Publish(context.Background(), Event{Topic: "test.c"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
	if err := b.Close(context.Background()); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

func TestCloseExpiredContext(t *testing.T) {
	b, _ := newTestBus(t, MemoryOptions{})
	started := make(chan struct{})
	var gaveUp atomic.Bool
	// A handler stuck until its context ends.
	mustSubscribe(t, b, "test.stuck", "stuck", func(ctx context.Context, ev Event) error {
		close(started)
		<-ctx.Done()
		gaveUp.Store(true)
		return ctx.Err()
	})
	mustPublish(t, b, Event{Topic: "test.stuck"})
	<-started

	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if err := b.Close(expired); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close with expired ctx while a handler is stuck = %v, want DeadlineExceeded", err)
	}
	// That cancelled the handler's context, so the drain can now finish.
	if err := b.Close(context.Background()); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if !gaveUp.Load() {
		t.Error("handler's context was not cancelled")
	}
	if err := b.Ping(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Ping = %v, want ErrClosed", err)
	}
}

func TestPublishWaitingWhenClosed(t *testing.T) {
	b, _ := newTestBus(t, MemoryOptions{PublishTimeout: time.Minute})
	g := newGate(t)
	mustSubscribe(t, b, "test.w", "w", g.handle, WithQueueSize(1))
	mustPublish(t, b, Event{Topic: "test.w"})
	<-g.started
	mustPublish(t, b, Event{Topic: "test.w"}) // queue full
	res := make(chan error, 1)
	go func() { res <- b.Publish(context.Background(), Event{Topic: "test.w"}) }()

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Close(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("Close = %v, want context.Canceled while the handler is blocked", err)
	}
	// The blocked (or late) publish learns the event went nowhere.
	if err := <-res; !errors.Is(err, ErrClosed) {
		t.Errorf("Publish waiting during Close = %v, want ErrClosed", err)
	}
	g.open()
	if err := b.Close(context.Background()); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if n := g.handled.Load(); n != 2 {
		t.Errorf("handled %d events, want the 2 accepted", n)
	}
}

func TestUnsubscribe(t *testing.T) {
	b, reg := newTestBus(t, MemoryOptions{})
	g := newGate(t)
	sub := mustSubscribe(t, b, "test.u", "u", g.handle)
	for range 3 {
		mustPublish(t, b, Event{Topic: "test.u"})
	}
	<-g.started

	unsubscribed := make(chan struct{})
	go func() {
		sub.Unsubscribe()
		close(unsubscribed)
	}()
	select {
	case <-unsubscribed:
		t.Fatal("Unsubscribe returned while its handler was blocked")
	default:
	}
	g.open()
	<-unsubscribed
	if n := g.handled.Load(); n != 3 {
		t.Errorf("handled %d events before Unsubscribe returned, want 3", n)
	}

	mustPublish(t, b, Event{Topic: "test.u"})
	for _, name := range []string{
		"elph_bus_delivered_total", "elph_bus_dropped_total", "elph_bus_backpressure_total",
		"elph_bus_handler_errors_total", "elph_bus_queue_depth",
	} {
		if _, ok := metricValue(t, reg, name, "subscriber", "u"); ok {
			t.Errorf("%s{subscriber=\"u\"} still exported after Unsubscribe", name)
		}
	}
	sub.Unsubscribe() // idempotent

	// The name is free again, and the new subscription gets fresh series.
	var rec recorder
	again := mustSubscribe(t, b, "test.u", "u", rec.handle)
	mustPublish(t, b, Event{Topic: "test.u"})
	if got := mustMetric(t, reg, "elph_bus_delivered_total", "subscriber", "u"); got > 1 {
		t.Errorf("delivered_total after resubscribing = %v, want at most 1", got)
	}
	again.Unsubscribe()
	if n := g.handled.Load(); n != 3 {
		t.Errorf("old handler ran after Unsubscribe: %d events", n)
	}
	if got := len(rec.topics()); got != 1 {
		t.Errorf("new subscription got %d events, want 1", got)
	}
}

func TestSubscribeErrors(t *testing.T) {
	b, _ := newTestBus(t, MemoryOptions{})
	nop := func(context.Context, Event) error { return nil }
	mustSubscribe(t, b, "chat.>", "taken", nop)
	tests := []struct {
		name     string
		subject  string
		subName  string
		h        Handler
		opts     []SubscribeOption
		sentinel error // nil: any error
	}{
		{"duplicate name", "other.>", "taken", nop, nil, ErrDuplicateName},
		{"empty subject", "", "a", nop, nil, ErrInvalidSubject},
		{"empty token", "a..b", "a", nop, nil, ErrInvalidSubject},
		{"mid >", "a.>.b", "a", nop, nil, ErrInvalidSubject},
		{"upper case", "Chat.>", "a", nop, nil, ErrInvalidSubject},
		{"empty name", "a", "", nop, nil, nil},
		{"name not UTF-8", "a", "\xff", nop, nil, nil},
		{"name too long", "a", strings.Repeat("n", 256), nop, nil, nil},
		{"nil handler", "a", "a", nil, nil, nil},
		{"zero workers", "a", "a", nop, []SubscribeOption{WithWorkers(0)}, nil},
		{"zero queue", "a", "a", nop, []SubscribeOption{WithQueueSize(0)}, nil},
		{"unknown policy", "a", "a", nop, []SubscribeOption{WithPolicy(Policy(7))}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub, err := b.Subscribe(tt.subject, tt.subName, tt.h, tt.opts...)
			if err == nil {
				sub.Unsubscribe()
				t.Fatal("Subscribe succeeded, want an error")
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("Subscribe = %v, want %v", err, tt.sentinel)
			}
		})
	}
}

func TestNewMemoryRegistrationConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	first, err := NewMemory(MemoryOptions{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close(context.Background())
	if _, err := NewMemory(MemoryOptions{Registerer: reg}); err == nil {
		t.Fatal("second bus on the same registry: want a registration error")
	}
	// The failed attempt must not have unregistered the first bus's metrics.
	mustPublish(t, first, Event{Topic: "a.b"})
	if got := mustMetric(t, reg, "elph_bus_published_total", "topic", "a.b"); got != 1 {
		t.Errorf("published_total = %v, want 1", got)
	}
}

func TestNilRegistererStillWorks(t *testing.T) {
	b, err := NewMemory(MemoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var rec recorder
	mustSubscribe(t, b, "a.b", "r", rec.handle)
	mustPublish(t, b, Event{Topic: "a.b"})
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(rec.topics()); got != 1 {
		t.Errorf("got %d events, want 1", got)
	}
}

func BenchmarkPublish(b *testing.B) {
	cases := []struct {
		name    string
		workers int
		others  int // non-matching subscriptions scanned on every publish
	}{
		{"workers=1", 1, 0},
		{"workers=4", 4, 0},
		{"workers=4/subs=300", 4, 299},
	}
	payload := json.RawMessage(`{"conversation":"c1","user":"u1","text":"hello, world"}`)
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			m, err := NewMemory(MemoryOptions{PublishTimeout: time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			nop := func(context.Context, Event) error { return nil }
			for i := range bc.others {
				if _, err := m.Subscribe(fmt.Sprintf("mod%d.*.created", i), fmt.Sprintf("other%d", i), nop); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := m.Subscribe("chat.message.*", "bench", nop, WithWorkers(bc.workers)); err != nil {
				b.Fatal(err)
			}
			var keys atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				key := "conv-" + strconv.FormatInt(keys.Add(1), 10)
				for pb.Next() {
					if err := m.Publish(context.Background(), Event{Topic: "chat.message.created", Key: key, Payload: payload}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			if err := m.Close(context.Background()); err != nil {
				b.Fatal(err)
			}
		})
	}
}
