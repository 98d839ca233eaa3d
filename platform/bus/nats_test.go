package bus

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/platform/bus/natstest"
)

// waitTimeout bounds every wait for something to arrive over NATS. Only a
// broken bus takes that long; nothing asserts how fast it is.
const waitTimeout = 15 * time.Second

// newNATSBus connects a bus to srv with a fresh registry and, unless o sets
// one, a prefix of its own, and closes it when the test ends.
func newNATSBus(t *testing.T, srv *natstest.Server, o NATSOptions) (*NATS, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	if o.Registerer == nil {
		o.Registerer = reg
	}
	if o.URL == "" {
		o.URL = srv.URL
	}
	if o.Prefix == "" {
		o.Prefix = natstest.Prefix()
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	b, err := NewNATS(ctx, o)
	if err != nil {
		t.Fatalf("NewNATS: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b, reg
}

// rawConn is a plain NATS client, for looking at the wire or publishing
// what another program would.
func rawConn(t *testing.T, srv *natstest.Server, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(srv.URL, opts...)
	if err != nil {
		t.Fatalf("nats.Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// waitFor polls cond until it holds, failing the test after waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metricOr0 reads a counter that may not exist yet.
func metricOr0(t *testing.T, reg prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	v, _ := metricValue(t, reg, name, label, value)
	return v
}

// counter is a handler that counts events and remembers their IDs.
type counter struct {
	mu  sync.Mutex
	ids map[string]int
	n   int
}

func (c *counter) handle(_ context.Context, ev Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids == nil {
		c.ids = make(map[string]int)
	}
	c.ids[ev.ID]++
	c.n++
	return nil
}

func (c *counter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *counter) idSet() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.ids)
}

func TestNATSRoundTrip(t *testing.T) {
	srv := natstest.Start(t)
	b, reg := newNATSBus(t, srv, NATSOptions{})
	var rec recorder
	sub := mustSubscribe(t, b, "chat.>", "rec", rec.handle)

	// A plain client sees the wire format other programs rely on.
	raw := rawConn(t, srv)
	wire, err := raw.SubscribeSync(b.prefix + "chat.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Flush(); err != nil {
		t.Fatal(err)
	}

	at := time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.FixedZone("MSK", 3*60*60))
	payload := []byte(`{"text":"привет"}`)
	sent := []Event{
		{Topic: "chat.message.created", Key: "conv-1", Payload: payload},
		// A caller's own ID and time, and a key that headers alone would
		// mangle (spaces at the ends, CR LF, '%', NUL, non-ASCII).
		{ID: "client id 1", Topic: "chat.message.updated", Key: " conv 2\r\nX-Evil: 1 100% \x00é ", Time: at, Payload: json.RawMessage(`[1,2,3]`)},
		{Topic: "chat.typing"}, // no key, no payload
	}
	for _, ev := range sent {
		mustPublish(t, b, ev)
	}
	copy(payload, `{"text":"XXXXXXXXXXXX"}`) // the caller reuses its buffer
	sub.Unsubscribe()                        // drains: everything published before has been handled

	got := rec.evs
	if len(got) != len(sent) {
		t.Fatalf("received %d events, want %d", len(got), len(sent))
	}
	wantPayloads := []string{`{"text":"привет"}`, `[1,2,3]`, ``}
	for i, ev := range got {
		if ev.Topic != sent[i].Topic || ev.Key != sent[i].Key {
			t.Errorf("event %d: topic %q key %q, want %q %q", i, ev.Topic, ev.Key, sent[i].Topic, sent[i].Key)
		}
		if string(ev.Payload) != wantPayloads[i] {
			t.Errorf("event %d: payload %q, want %q", i, ev.Payload, wantPayloads[i])
		}
	}
	if got[2].Payload != nil {
		t.Errorf("event without payload arrived with %#v, want nil", got[2].Payload)
	}
	for _, i := range []int{0, 2} {
		if raw, err := hex.DecodeString(got[i].ID); err != nil || len(raw) != 16 {
			t.Errorf("event %d: ID %q is not 128-bit hex", i, got[i].ID)
		}
		if got[i].Time.Location() != time.UTC || time.Since(got[i].Time).Abs() > time.Minute {
			t.Errorf("event %d: Time %v, want now in UTC", i, got[i].Time)
		}
	}
	if got[0].ID == got[2].ID {
		t.Errorf("two events got the same ID %q", got[0].ID)
	}
	if got[1].ID != "client id 1" || !got[1].Time.Equal(at) {
		t.Errorf("given ID/Time changed on the way: %q %v", got[1].ID, got[1].Time)
	}
	if v := mustMetric(t, reg, "elph_bus_published_total", "topic", "chat.message.created"); v != 1 {
		t.Errorf("published_total = %v, want 1", v)
	}

	msg, err := wire.NextMsg(waitTimeout)
	if err != nil {
		t.Fatalf("raw subscriber: %v", err)
	}
	if msg.Subject != b.prefix+"chat.message.created" || string(msg.Data) != `{"text":"привет"}` {
		t.Errorf("wire message %s %q", msg.Subject, msg.Data)
	}
	if msg.Header.Get("Elph-Id") != got[0].ID || msg.Header.Get("Elph-Key") != "conv-1" ||
		msg.Header.Get("Elph-Time") != got[0].Time.Format(time.RFC3339Nano) {
		t.Errorf("wire headers %v, want Elph-Id, Elph-Key and Elph-Time of %+v", msg.Header, got[0])
	}
}

func TestNATSWildcards(t *testing.T) {
	srv := natstest.Start(t)
	b, _ := newNATSBus(t, srv, NATSOptions{})
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
		mustPublish(t, b, Event{Topic: topic})
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

func TestNATSPerKeyOrder(t *testing.T) {
	const keys, perKey = 20, 50 // 1000 events
	srv := natstest.Start(t)
	b, _ := newNATSBus(t, srv, NATSOptions{PublishTimeout: time.Minute})
	var (
		mu       sync.Mutex
		next     = map[string]int{}
		problems []string
		handled  int
	)
	h := func(_ context.Context, ev Event) error {
		n, err := strconv.Atoi(string(ev.Payload))
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		handled++
		if n != next[ev.Key] && len(problems) < 10 {
			problems = append(problems, fmt.Sprintf("key %s: got #%d, want #%d", ev.Key, n, next[ev.Key]))
		}
		next[ev.Key] = n + 1
		return nil
	}
	// Small queues, so the NATS callback waits for room now and then.
	sub := mustSubscribe(t, b, "test.order.*", "order", h, WithWorkers(4), WithQueueSize(8))

	var wg sync.WaitGroup
	errs := make(chan error, keys)
	for k := range keys {
		wg.Go(func() {
			key := "conv-" + strconv.Itoa(k)
			for n := range perKey {
				topic := "test.order.created"
				if n%2 == 1 {
					topic = "test.order.updated"
				}
				if err := b.Publish(context.Background(), Event{Topic: topic, Key: key, Payload: json.RawMessage(strconv.Itoa(n))}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Publish: %v", err)
	}
	sub.Unsubscribe()

	if handled != keys*perKey {
		t.Errorf("handled %d events, want %d", handled, keys*perKey)
	}
	for _, p := range problems {
		t.Error(p)
	}
	for k, n := range next {
		if n != perKey {
			t.Errorf("key %s: last #%d, want %d", k, n-1, perKey-1)
		}
	}
}

// Two buses on one server with one prefix are two nodes of a cluster.
func twoNodes(t *testing.T) (*NATS, *NATS) {
	t.Helper()
	srv := natstest.Start(t)
	prefix := natstest.Prefix()
	a, _ := newNATSBus(t, srv, NATSOptions{Prefix: prefix, Name: "node-a"})
	b, _ := newNATSBus(t, srv, NATSOptions{Prefix: prefix, Name: "node-b"})
	return a, b
}

func TestNATSFanOut(t *testing.T) {
	const n = 40
	a, b := twoNodes(t)
	var onA, onB counter
	// The same name on both nodes: without Shared that is still fan-out.
	mustSubscribe(t, a, "call.>", "history", onA.handle)
	mustSubscribe(t, b, "call.>", "history", onB.handle)
	for i := range n {
		from := a
		if i%2 == 1 {
			from = b
		}
		mustPublish(t, from, Event{Topic: "call.ended", Key: "call-" + strconv.Itoa(i)})
	}
	waitFor(t, "both nodes to get every event", func() bool { return onA.count() >= n && onB.count() >= n })
	closeBus(t, a)
	closeBus(t, b)
	if onA.count() != n || onB.count() != n {
		t.Errorf("node a handled %d, node b %d; want %d each", onA.count(), onB.count(), n)
	}
	if !maps.Equal(onA.idSet(), onB.idSet()) {
		t.Error("the nodes got different events")
	}
}

func TestNATSShared(t *testing.T) {
	const n = 200
	a, b := twoNodes(t)
	var onA, onB, audit counter
	mustSubscribe(t, a, "call.>", "history", onA.handle, Shared(), WithWorkers(2))
	mustSubscribe(t, b, "call.>", "history", onB.handle, Shared(), WithWorkers(2))
	// Another name is another group: it gets every event too.
	mustSubscribe(t, a, "call.>", "audit", audit.handle)
	for i := range n {
		from := a
		if i%2 == 1 {
			from = b
		}
		mustPublish(t, from, Event{Topic: "call.ended", Key: "call-" + strconv.Itoa(i%7)})
	}
	waitFor(t, "every event to be handled", func() bool { return onA.count()+onB.count() >= n && audit.count() >= n })
	closeBus(t, a)
	closeBus(t, b)

	ids := onA.idSet()
	for id, c := range onB.idSet() {
		ids[id] += c
	}
	if len(ids) != n {
		t.Errorf("the group handled %d distinct events, want %d", len(ids), n)
	}
	for id, c := range ids {
		if c != 1 {
			t.Errorf("event %s handled %d times, want once", id, c)
		}
	}
	if onA.count() == 0 || onB.count() == 0 {
		t.Errorf("node a handled %d and node b %d: the group did not share the work", onA.count(), onB.count())
	}
	if audit.count() != n {
		t.Errorf("plain subscription got %d events, want %d", audit.count(), n)
	}
}

// closeBus closes b now (the cleanup's second Close then does nothing), so
// a test can count what was handled once everything has drained.
func closeBus(t *testing.T, b Bus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// On one node Shared changes nothing: each event is handled once.
func TestSharedSingleNode(t *testing.T) {
	buses := []struct {
		name string
		open func(t *testing.T) Bus
	}{
		{"memory", func(t *testing.T) Bus { b, _ := newTestBus(t, MemoryOptions{}); return b }},
		{"nats", func(t *testing.T) Bus { b, _ := newNATSBus(t, natstest.Start(t), NATSOptions{}); return b }},
	}
	for _, tt := range buses {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.open(t)
			var c counter
			sub := mustSubscribe(t, b, "push.queued", "push", c.handle, Shared(), WithWorkers(3))
			for i := range 20 {
				mustPublish(t, b, Event{Topic: "push.queued", Key: strconv.Itoa(i)})
			}
			sub.Unsubscribe()
			if c.count() != 20 || len(c.idSet()) != 20 {
				t.Errorf("handled %d events (%d distinct), want 20", c.count(), len(c.idSet()))
			}
		})
	}
}

func TestNATSDropNewest(t *testing.T) {
	const n = 200
	srv := natstest.Start(t)
	// A short timeout: if DropNewest ever waited, the audit count would
	// still be right but backpressure would be counted.
	b, reg := newNATSBus(t, srv, NATSOptions{PublishTimeout: 10 * time.Millisecond})
	g := newGate(t)
	typing := mustSubscribe(t, b, "presence.typing", "typing", g.handle, WithPolicy(DropNewest), WithQueueSize(1))
	var audit counter
	auditSub := mustSubscribe(t, b, "presence.>", "audit", audit.handle, WithQueueSize(n))

	for i := range n {
		if err := b.Publish(context.Background(), Event{Topic: "presence.typing", Key: "u1"}); err != nil {
			t.Fatalf("Publish #%d = %v", i, err)
		}
	}
	// One event in the blocked handler, one in the queue of 1: the rest
	// are dropped, whatever the timing.
	waitFor(t, "dropped_total to reach n-2", func() bool {
		return metricOr0(t, reg, "elph_bus_dropped_total", "subscriber", "typing") == n-2
	})
	if v := metricOr0(t, reg, "elph_bus_backpressure_total", "subscriber", "typing"); v != 0 {
		t.Errorf("backpressure_total = %v, want 0 for DropNewest", v)
	}
	g.open()
	typing.Unsubscribe()
	auditSub.Unsubscribe()
	if h := g.handled.Load(); h != 2 {
		t.Errorf("typing handled %d events, want 2 (handler + queue of 1)", h)
	}
	if audit.count() != n {
		t.Errorf("Block subscriber on the same topic got %d events, want %d", audit.count(), n)
	}
}

func TestNATSBlockBackpressure(t *testing.T) {
	const n = 8
	srv := natstest.Start(t)
	var logs logBuffer
	b, reg := newNATSBus(t, srv, NATSOptions{Logger: logs.logger(), PublishTimeout: 50 * time.Millisecond})
	g := newGate(t)
	sub := mustSubscribe(t, b, "test.slow", "slow", g.handle, WithQueueSize(2))

	// The publisher is never held up by a remote subscriber's queue.
	for i := range n {
		mustPublish(t, b, Event{ID: "ev-" + strconv.Itoa(i), Topic: "test.slow", Key: "k"})
	}
	// One in the handler and two queued; each other event waits the
	// publish timeout at the receiving end and is dropped.
	waitFor(t, "backpressure_total to reach n-3", func() bool {
		return metricOr0(t, reg, "elph_bus_backpressure_total", "subscriber", "slow") == n-3
	})
	if got := mustMetric(t, reg, "elph_bus_queue_depth", "subscriber", "slow"); got != 2 {
		t.Errorf("queue_depth = %v, want 2", got)
	}
	if got := mustMetric(t, reg, "elph_bus_publish_wait_seconds", "", ""); got < n-3 {
		t.Errorf("publish_wait_seconds observed %v waits, want at least %d", got, n-3)
	}
	g.open()
	sub.Unsubscribe()
	if h := g.handled.Load(); h != 3 {
		t.Errorf("handled %d events, want 3", h)
	}
	var warned int
	for _, rec := range logs.records(t) {
		if rec["msg"] == "bus: subscriber queue full, event dropped" {
			warned++
			if id, _ := rec["event_id"].(string); rec["level"] != "WARN" || rec["subscriber"] != "slow" ||
				rec["topic"] != "test.slow" || !strings.HasPrefix(id, "ev-") {
				t.Errorf("drop log lacks context: %v", rec)
			}
		}
	}
	if warned != n-3 {
		t.Errorf("logged %d dropped events, want %d", warned, n-3)
	}
}

func TestNATSBlockWaitsForRoom(t *testing.T) {
	srv := natstest.Start(t)
	b, reg := newNATSBus(t, srv, NATSOptions{PublishTimeout: time.Minute})
	g := newGate(t)
	sub := mustSubscribe(t, b, "test.wait", "wait", g.handle, WithQueueSize(1))
	for range 3 {
		mustPublish(t, b, Event{Topic: "test.wait", Key: "k"})
	}
	// The third event has left NATS's buffer: with one in the handler and
	// one queued, the callback is waiting for room with it.
	ns := sub.(*natsSubscription).sub
	waitFor(t, "the NATS callback to take the third event", func() bool {
		d, _ := ns.Delivered()
		return d == 3
	})
	g.open()
	sub.Unsubscribe()
	if h := g.handled.Load(); h != 3 {
		t.Errorf("handled %d events, want all 3", h)
	}
	if v := metricOr0(t, reg, "elph_bus_backpressure_total", "subscriber", "wait"); v != 0 {
		t.Errorf("backpressure_total = %v, want 0", v)
	}
	if got := mustMetric(t, reg, "elph_bus_publish_wait_seconds", "", ""); got < 1 {
		t.Errorf("publish_wait_seconds observed %v waits, want at least 1", got)
	}
}

func TestNATSSlowConsumer(t *testing.T) {
	const n = 100
	srv := natstest.Start(t)
	var logs logBuffer
	b, reg := newNATSBus(t, srv, NATSOptions{Logger: logs.logger(), PublishTimeout: time.Minute})
	b.pendingMsgs = 5 // so that NATS itself drops
	g := newGate(t)
	mustSubscribe(t, b, "test.flood", "flood", g.handle, WithQueueSize(1))
	for range n {
		mustPublish(t, b, Event{Topic: "test.flood", Key: "k"})
	}
	waitFor(t, "NATS slow consumer drops to be counted", func() bool {
		return metricOr0(t, reg, "elph_bus_dropped_total", "subscriber", "flood") > 0
	})
	g.open()
	// Every event is either handled or counted as dropped.
	waitFor(t, "handled + dropped to reach n", func() bool {
		return g.handled.Load()+int64(metricOr0(t, reg, "elph_bus_dropped_total", "subscriber", "flood")) == n
	})
	var warned bool
	for _, rec := range logs.records(t) {
		warned = warned || rec["level"] == "WARN" && strings.Contains(rec["msg"].(string), "slow consumer") && rec["subscriber"] == "flood"
	}
	if !warned {
		t.Error("no slow consumer warning logged")
	}
}

func TestNATSPublishValidation(t *testing.T) {
	srv := natstest.Start(t)
	b, _ := newNATSBus(t, srv, NATSOptions{})
	roomy := b.nc.MaxPayload() >= MaxPayload+natsHeaderRoom
	tests := []struct {
		name  string
		ev    Event
		want  error // nil: accepted
		roomy bool  // needs a server whose max_payload fits the largest event
	}{
		{"valid", Event{Topic: "chat.message.created"}, nil, false},
		{"empty topic", Event{}, ErrInvalidSubject, false},
		{"empty token", Event{Topic: "chat..created"}, ErrInvalidSubject, false},
		{"upper case", Event{Topic: "Chat.message.created"}, ErrInvalidSubject, false},
		{"wildcard", Event{Topic: "chat.*.created"}, ErrInvalidSubject, false},
		{"tail wildcard", Event{Topic: "chat.>"}, ErrInvalidSubject, false},
		{"space", Event{Topic: "chat message"}, ErrInvalidSubject, false},
		{"max key", Event{Topic: "chat.x", Key: strings.Repeat("k", MaxKeyLen)}, nil, false},
		{"key too long", Event{Topic: "chat.x", Key: strings.Repeat("k", MaxKeyLen+1)}, ErrTooLarge, false},
		{"max payload", Event{Topic: "chat.x", Key: strings.Repeat("\x00", MaxKeyLen), Payload: make(json.RawMessage, MaxPayload)}, nil, true},
		{"payload too large", Event{Topic: "chat.x", Payload: make(json.RawMessage, MaxPayload+1)}, ErrTooLarge, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.roomy && !roomy {
				t.Skipf("the server's max_payload %d is below %d", b.nc.MaxPayload(), MaxPayload+natsHeaderRoom)
			}
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

func TestNATSPublishAboveServerMaxPayload(t *testing.T) {
	srv := natstest.StartPrivate(t, natstest.Options{MaxPayload: 64 << 10})
	var logs logBuffer
	b, _ := newNATSBus(t, srv, NATSOptions{Logger: logs.logger()})
	err := b.Publish(context.Background(), Event{Topic: "blob.stored", Payload: make(json.RawMessage, 100<<10)})
	if !errors.Is(err, ErrTooLarge) || !errors.Is(err, nats.ErrMaxPayload) {
		t.Errorf("Publish over the server's max_payload = %v, want ErrTooLarge wrapping nats.ErrMaxPayload", err)
	}
	var warned bool
	for _, rec := range logs.records(t) {
		warned = warned || rec["level"] == "WARN" && strings.Contains(rec["msg"].(string), "max_payload")
	}
	if !warned {
		t.Error("a small server max_payload was not warned about at connect")
	}
}

func TestNATSSubscribeErrors(t *testing.T) {
	srv := natstest.Start(t)
	b, _ := newNATSBus(t, srv, NATSOptions{})
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
		{"duplicate shared name", "other.>", "taken", nop, []SubscribeOption{Shared()}, ErrDuplicateName},
		{"empty subject", "", "a", nop, nil, ErrInvalidSubject},
		{"empty token", "a..b", "a", nop, nil, ErrInvalidSubject},
		{"mid >", "a.>.b", "a", nop, nil, ErrInvalidSubject},
		{"upper case", "Chat.>", "a", nop, nil, ErrInvalidSubject},
		{"empty name", "a", "", nop, nil, nil},
		{"name not UTF-8", "a", "\xff", nop, nil, nil},
		{"name too long", "a", strings.Repeat("n", 256), nop, nil, nil},
		{"shared name with a space", "a", "call history", nop, []SubscribeOption{Shared()}, nats.ErrBadQueueName},
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
	// A failed Subscribe leaves nothing behind: the names are free.
	mustSubscribe(t, b, "a", "call history", nop).Unsubscribe()
}

func TestNewNATSErrors(t *testing.T) {
	srv := natstest.Start(t)
	const secret = "pa55-w0rd"
	tests := []struct {
		name     string
		o        NATSOptions
		sentinel error // nil: any error
	}{
		{"upper-case prefix", NATSOptions{Prefix: "Elph"}, ErrInvalidSubject},
		{"empty token in prefix", NATSOptions{Prefix: "elph..a"}, ErrInvalidSubject},
		{"wildcard prefix", NATSOptions{Prefix: "elph.>"}, ErrInvalidSubject},
		{"star prefix", NATSOptions{Prefix: "elph.*"}, ErrInvalidSubject},
		{"token and user", NATSOptions{Token: "t", User: "u", Password: "p"}, nil},
		{"password without user", NATSOptions{Password: "p"}, nil},
		{"nobody listening", NATSOptions{URL: "nats://elph:" + secret + "@127.0.0.1:1"}, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			if tt.o.URL == "" {
				tt.o.URL = srv.URL
			}
			b, err := NewNATS(ctx, tt.o)
			if err == nil {
				b.Close(context.Background())
				t.Fatal("NewNATS succeeded, want an error")
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("NewNATS = %v, want %v", err, tt.sentinel)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

// Credentials the server refuses fail at once, not when ctx ends: no
// retry would make them right.
func TestNewNATSWrongPassword(t *testing.T) {
	srv := natstest.StartPrivate(t, natstest.Options{User: "elph", Password: "right"})
	var logs logBuffer
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	b, err := NewNATS(ctx, NATSOptions{
		URL: srv.URL, User: "elph", Password: "wrong-pw", ReconnectWait: 20 * time.Millisecond, Logger: logs.logger(),
	})
	if err == nil {
		b.Close(ctx)
		t.Fatal("NewNATS with a wrong password succeeded")
	}
	if ctx.Err() != nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Errorf("NewNATS = %v, want an authorization error before ctx ends", err)
	}
	if strings.Contains(err.Error()+logs.String(), "wrong-pw") {
		t.Error("the password appears in the error or the log")
	}
}

func TestNATSMetricsRegistry(t *testing.T) {
	srv := natstest.Start(t)
	reg := prometheus.NewRegistry()
	mem, err := NewMemory(MemoryOptions{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close(context.Background())

	// Same metric names on one registry: an error, not a panic.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if b, err := NewNATS(ctx, NATSOptions{URL: srv.URL, Prefix: natstest.Prefix(), Registerer: reg}); err == nil {
		b.Close(ctx)
		t.Fatal("NATS bus on the memory bus's registry: want a registration error")
	}
	mustPublish(t, mem, Event{Topic: "a.b"})
	if got := mustMetric(t, reg, "elph_bus_published_total", "topic", "a.b"); got != 1 {
		t.Errorf("memory bus published_total = %v, want 1: the failed NATS bus disturbed its metrics", got)
	}

	// A NATS bus that cannot connect gives its registration back.
	own := prometheus.NewRegistry()
	short, cancelShort := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancelShort()
	if _, err := NewNATS(short, NATSOptions{URL: "nats://127.0.0.1:1", Registerer: own}); err == nil {
		t.Fatal("NewNATS to a closed port succeeded")
	}
	b, _ := newNATSBus(t, srv, NATSOptions{Registerer: own})
	mustPublish(t, b, Event{Topic: "a.b"})
	if got := mustMetric(t, own, "elph_bus_published_total", "topic", "a.b"); got != 1 {
		t.Errorf("NATS bus published_total = %v, want 1", got)
	}
}

func TestNATSCloseDrains(t *testing.T) {
	srv := natstest.Start(t)
	b, _ := newNATSBus(t, srv, NATSOptions{})
	g := newGate(t)
	mustSubscribe(t, b, "test.c", "c", g.handle)
	for range 5 {
		mustPublish(t, b, Event{Topic: "test.c", Key: "k"})
	}
	<-g.started

	closed := make(chan error, 1)
	go func() { closed <- b.Close(context.Background()) }()
	waitFor(t, "Close to begin", func() bool { return b.Ping(context.Background()) != nil })
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
	if !b.nc.IsClosed() {
		t.Error("the NATS connection is still open after Close")
	}
	if err := b.Close(context.Background()); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

func TestNATSCloseExpiredContext(t *testing.T) {
	srv := natstest.Start(t)
	b, _ := newNATSBus(t, srv, NATSOptions{})
	started := make(chan struct{})
	var gaveUp atomic.Bool
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
	if !b.nc.IsClosed() {
		t.Error("the NATS connection is still open after Close gave up")
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if !gaveUp.Load() {
		t.Error("handler's context was not cancelled")
	}
}

func TestNATSReconnect(t *testing.T) {
	const user, password = "elph", "s3cret-pw"
	srv := natstest.StartPrivate(t, natstest.Options{User: user, Password: password})
	var logs logBuffer
	b, _ := newNATSBus(t, srv, NATSOptions{
		User: user, Password: password, ReconnectWait: 20 * time.Millisecond, Logger: logs.logger(),
	})
	got := make(chan string, 10)
	mustSubscribe(t, b, "call.>", "calls", func(_ context.Context, ev Event) error {
		got <- string(ev.Payload)
		return nil
	})
	expect := func(want string) {
		t.Helper()
		select {
		case p := <-got:
			if p != want {
				t.Fatalf("received %s, want %s", p, want)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("event %s did not arrive", want)
		}
	}
	ctx := context.Background()
	if err := b.Ping(ctx); err != nil {
		t.Fatalf("Ping = %v", err)
	}
	mustPublish(t, b, Event{Topic: "call.started", Key: "c1", Payload: json.RawMessage(`1`)})
	expect(`1`)

	srv.Stop()
	waitFor(t, "Ping to fail", func() bool { return b.Ping(ctx) != nil })
	if err := b.Ping(ctx); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "reconnecting") {
		t.Errorf("Ping with the server down = %v, want ErrUnavailable naming the reconnecting state", err)
	}
	// Buffered by the client while it reconnects.
	mustPublish(t, b, Event{Topic: "call.ringing", Key: "c1", Payload: json.RawMessage(`2`)})

	srv.Restart()
	waitFor(t, "Ping to recover", func() bool { return b.Ping(ctx) == nil })
	mustPublish(t, b, Event{Topic: "call.ended", Key: "c1", Payload: json.RawMessage(`3`)})
	expect(`2`)
	expect(`3`)

	// The client reports the reconnect from its own goroutine, which may
	// come after Ping already sees the connection up.
	logged := func() bool {
		var disconnected, reconnected bool
		for _, rec := range logs.records(t) {
			switch rec["msg"] {
			case "bus: disconnected from NATS, reconnecting":
				disconnected = disconnected || rec["level"] == "WARN" && rec["server"] == srv.URL
			case "bus: reconnected to NATS":
				reconnected = reconnected || rec["level"] == "INFO" && rec["server"] == srv.URL
			}
		}
		return disconnected && reconnected
	}
	deadline := time.Now().Add(waitTimeout)
	for !logged() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !logged() {
		t.Errorf("want a WARN on disconnect and an INFO on reconnect naming %s; logged:\n%s", srv.URL, logs.String())
	}
	if strings.Contains(logs.String(), password) {
		t.Error("the password appears in the log")
	}
}

func TestNATSRawMessages(t *testing.T) {
	srv := natstest.Start(t)
	var logs logBuffer
	b, _ := newNATSBus(t, srv, NATSOptions{Logger: logs.logger()})
	var rec recorder
	mustSubscribe(t, b, ">", "all", rec.handle)
	raw := rawConn(t, srv)
	publish := func(subject string, h nats.Header, data string) {
		t.Helper()
		if err := raw.PublishMsg(&nats.Msg{Subject: b.prefix + subject, Header: h, Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	publish("chat.raw", nil, `{"x":1}`)                                             // someone else's: no headers
	publish("chat.raw", nats.Header{"Elph-Key": {"k2"}}, `2`)                       // a key only
	publish("Chat.Raw", nil, `"bad topic"`)                                         // not a valid topic
	publish("chat.raw", nats.Header{"Elph-Time": {"yesterday"}}, `"bad time"`)      // malformed header
	publish("chat.raw", nats.Header{"Elph-Key": {strings.Repeat("k", 300)}}, `"k"`) // key too long
	publish("chat.raw", nil, `"end"`)
	waitFor(t, "the last raw message", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.evs) > 0 && string(rec.evs[len(rec.evs)-1].Payload) == `"end"`
	})

	rec.mu.Lock()
	evs := slices.Clone(rec.evs)
	rec.mu.Unlock()
	var payloads []string
	for _, ev := range evs {
		payloads = append(payloads, string(ev.Payload))
	}
	if want := []string{`{"x":1}`, `2`, `"end"`}; !slices.Equal(payloads, want) {
		t.Fatalf("delivered %q, want %q (malformed messages dropped)", payloads, want)
	}
	first := evs[0]
	if first.Topic != "chat.raw" || first.Key != "" || first.ID == "" || first.Time.IsZero() {
		t.Errorf("raw message without headers = %+v, want topic chat.raw, empty key, an ID and a time", first)
	}
	if evs[1].Key != "k2" {
		t.Errorf("raw message with Elph-Key: key %q, want k2", evs[1].Key)
	}
	var malformed int
	for _, r := range logs.records(t) {
		if r["msg"] == "bus: dropping malformed NATS message" {
			malformed++
		}
	}
	if malformed != 3 {
		t.Errorf("logged %d malformed messages, want 3", malformed)
	}
}

func TestNATSUnsubscribe(t *testing.T) {
	srv := natstest.Start(t)
	b, reg := newNATSBus(t, srv, NATSOptions{})
	var first recorder
	sub := mustSubscribe(t, b, "test.u", "u", first.handle)
	mustPublish(t, b, Event{Topic: "test.u"})
	sub.Unsubscribe()
	if len(first.topics()) != 1 {
		t.Fatalf("got %d events before Unsubscribe, want 1", len(first.topics()))
	}
	for _, name := range []string{"elph_bus_delivered_total", "elph_bus_queue_depth"} {
		if _, ok := metricValue(t, reg, name, "subscriber", "u"); ok {
			t.Errorf("%s{subscriber=\"u\"} still exported after Unsubscribe", name)
		}
	}
	sub.Unsubscribe() // idempotent

	// The name is free again; the old handler gets nothing more.
	var again recorder
	mustSubscribe(t, b, "test.u", "u", again.handle).Unsubscribe()
	second := mustSubscribe(t, b, "test.u", "u", again.handle)
	mustPublish(t, b, Event{Topic: "test.u"})
	second.Unsubscribe()
	if len(again.topics()) != 1 || len(first.topics()) != 1 {
		t.Errorf("after resubscribing: new subscription got %d events (want 1), old one %d (want 1)",
			len(again.topics()), len(first.topics()))
	}
}

func TestNATSHandlerErrorsAndPanics(t *testing.T) {
	srv := natstest.Start(t)
	var logs logBuffer
	b, reg := newNATSBus(t, srv, NATSOptions{Logger: logs.logger()})
	done := make(chan struct{})
	mustSubscribe(t, b, "test.h", "h", func(_ context.Context, ev Event) error {
		switch string(ev.Payload) {
		case `"error"`:
			return errors.New("boom")
		case `"panic"`:
			panic("kaboom")
		case `"done"`:
			close(done)
		}
		return nil
	})
	for _, p := range []string{`"error"`, `"panic"`, `"ok"`, `"done"`} {
		mustPublish(t, b, Event{Topic: "test.h", Key: "k", Payload: json.RawMessage(p)})
	}
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("the event after a panic was not handled")
	}
	if got := mustMetric(t, reg, "elph_bus_handler_errors_total", "subscriber", "h"); got != 2 {
		t.Errorf("handler_errors_total = %v, want 2", got)
	}
	text := logs.String()
	if !strings.Contains(text, "bus: handler failed") || !strings.Contains(text, "bus: handler panicked") {
		t.Errorf("handler error and panic not logged:\n%s", text)
	}
}

func TestNATSOptionsHideSecrets(t *testing.T) {
	o := NATSOptions{
		URL:      "nats://tok3n-secret@n1:4222, nats://bob:pa55-secret@n2:4222,n3:4222",
		User:     "alice",
		Password: "alice-secret",
		Prefix:   "elph",
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("starting", "nats", o)
	for _, out := range []string{buf.String(), fmt.Sprint(o), fmt.Sprintf("%+v", o)} {
		if strings.Contains(out, "secret") {
			t.Errorf("options printed with a secret: %s", out)
		}
		if !strings.Contains(out, "n2:4222") || !strings.Contains(out, "alice") {
			t.Errorf("options printed without the servers or the user: %s", out)
		}
	}
	o.Token, o.User, o.Password = "token-secret", "", ""
	if out := fmt.Sprint(o); strings.Contains(out, "secret") || !strings.Contains(out, "token") {
		t.Errorf("token options printed as %s", out)
	}
}

func TestHeaderEscape(t *testing.T) {
	for _, s := range []string{"", "conv-1", "a b", " lead", "trail ", "100%", "%41", "\r\n", "\x00\xff", "ключ", "tab\there"} {
		esc := headerEscape(s)
		for i := 0; i < len(esc); i++ {
			if c := esc[i]; c < '!' || c > '~' {
				t.Errorf("headerEscape(%q) = %q: byte %q would not survive a header", s, esc, c)
			}
		}
		back, err := headerUnescape(esc)
		if err != nil || back != s {
			t.Errorf("headerUnescape(headerEscape(%q)) = %q, %v", s, back, err)
		}
	}
	if got := headerEscape("conv-42"); got != "conv-42" {
		t.Errorf("an ordinary key was escaped: %q", got)
	}
}
