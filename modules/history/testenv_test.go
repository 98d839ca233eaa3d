package history_test

// The module-level test environment: a real history Module on a real
// database of each dialect (storetest), a real in-memory bus and a real
// stream on the same database, access tokens from authtest, and the
// module's routes behind the standard httpx router on a loopback
// httptest server. Nothing waits on a clock: the bus is drained by
// stopping the module (Unsubscribe handles what is queued first).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/elph-server/elph/modules/history"
	"github.com/elph-server/elph/platform/auth/authtest"
	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/httpx"
	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
	"github.com/elph-server/elph/platform/stream"
)

// t0 is when the scripted calls start; the module's clock is a day later.
var (
	t0      = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	testNow = t0.Add(24 * time.Hour)
)

// The users of the tests.
const (
	alice int64 = 1
	bob   int64 = 2
	carol int64 = 3
)

type env struct {
	db     *store.DB
	bus    *bus.Memory
	stream *stream.Stream
	mod    *history.Module
	reg    *prometheus.Registry
	signer *authtest.Signer
	srv    *httptest.Server

	mu        sync.Mutex
	published []bus.Event // history.* events seen on the bus
	collector bus.Subscription
	stopped   bool
}

type envOptions struct {
	noStream bool
	edit     func(*history.Options)
}

// forEachDialect runs fn on a fresh environment on SQLite and on MariaDB.
func forEachDialect(t *testing.T, o envOptions, fn func(t *testing.T, e *env)) {
	t.Helper()
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		fn(t, newEnv(t, db, o))
	})
}

func newEnv(t *testing.T, db *store.DB, o envOptions) *env {
	t.Helper()
	log := storetest.Logger(t)
	e := &env{db: db, reg: prometheus.NewRegistry(), signer: authtest.New(t)}
	b, err := bus.NewMemory(bus.MemoryOptions{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	e.bus = b
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("bus close: %v", err)
		}
	})
	e.collector, err = b.Subscribe("history.>", "test.collector", func(_ context.Context, ev bus.Event) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.published = append(e.published, ev)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	opts := history.Options{
		Log: log, DB: db, Bus: b, Verifier: e.signer.Verifier(), Metrics: e.reg,
		Now: func() time.Time { return testNow },
	}
	if !o.noStream {
		e.stream, err = stream.New(stream.Options{DB: db, Bus: b, Verifier: e.signer.Verifier(), Log: log, PurgeInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		opts.Stream = e.stream
	}
	if o.edit != nil {
		o.edit(&opts)
	}
	e.mod, err = history.New(opts)
	if err != nil {
		t.Fatalf("history.New: %v", err)
	}
	if err := e.mod.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { e.stop(t) })

	r := httpx.NewRouter(httpx.RouterOptions{Listener: "history-test", Logger: log, MaxBodyBytes: 64 << 10})
	r.Mount("/history", e.mod.Routes())
	e.srv = httptest.NewServer(r)
	t.Cleanup(e.srv.Close)
	return e
}

// stop stops the module, which first handles every call event published
// so far, and then drains the collector of what the module published.
func (e *env) stop(t testing.TB) {
	t.Helper()
	if e.stopped {
		return
	}
	e.stopped = true
	if err := e.mod.Stop(context.Background()); err != nil {
		t.Errorf("Stop: %v", err)
	}
	e.collector.Unsubscribe()
}

// event is one scripted call event.
type event struct {
	topic string
	ev    history.CallEvent
}

func started(call string, user int64, dir, peer, name string, at time.Duration) event {
	return event{history.TopicCallStarted, history.CallEvent{
		CallID: call, UserID: user, Direction: dir, LocalNumber: "100" + strconv.FormatInt(user, 10),
		PeerNumber: peer, PeerName: name, At: t0.Add(at),
	}}
}

func ringing(call string, user int64, at time.Duration) event {
	return event{history.TopicCallRinging, history.CallEvent{CallID: call, UserID: user, At: t0.Add(at)}}
}

func answered(call string, user int64, at time.Duration) event {
	return event{history.TopicCallAnswered, history.CallEvent{CallID: call, UserID: user, At: t0.Add(at)}}
}

func ended(call string, user int64, cause string, at time.Duration) event {
	return event{history.TopicCallEnded, history.CallEvent{CallID: call, UserID: user, Cause: cause, At: t0.Add(at)}}
}

// publish puts events on the bus as a producer does (key: the call id).
func (e *env) publish(t testing.TB, evs ...event) {
	t.Helper()
	for _, ev := range evs {
		payload, err := json.Marshal(ev.ev)
		if err != nil {
			t.Fatal(err)
		}
		e.publishRaw(t, ev.topic, ev.ev.CallID, payload)
	}
}

func (e *env) publishRaw(t testing.TB, topic, key string, payload []byte) {
	t.Helper()
	if err := e.bus.Publish(t.Context(), bus.Event{Topic: topic, Key: key, Payload: payload}); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

// apply feeds events to the module directly, in order.
func (e *env) apply(t testing.TB, evs ...event) {
	t.Helper()
	for _, ev := range evs {
		in := ev.ev
		in.Topic = ev.topic
		if _, err := e.mod.Apply(t.Context(), in); err != nil {
			t.Fatalf("Apply %s %s: %v", ev.topic, in.CallID, err)
		}
	}
}

// all returns every record of user, newest first.
func (e *env) all(t testing.TB, user int64) []history.Call {
	t.Helper()
	calls, next, err := e.mod.List(t.Context(), user, history.Filter{}, "", 200)
	if err != nil {
		t.Fatal(err)
	}
	if next != "" {
		t.Fatalf("more than 200 records of user %d", user)
	}
	return calls
}

// record returns user's record of call, failing when there is none.
func (e *env) record(t testing.TB, user int64, call string) history.Call {
	t.Helper()
	calls := e.all(t, user)
	i := slices.IndexFunc(calls, func(c history.Call) bool { return c.CallID == call })
	if i < 0 {
		t.Fatalf("user %d has no record of call %q", user, call)
	}
	return calls[i]
}

// busEvents returns what the module published on topic (after stop).
func (e *env) busEvents(topic string) []history.RecordEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []history.RecordEvent
	for _, ev := range e.published {
		if ev.Topic != topic {
			continue
		}
		var re history.RecordEvent
		if err := json.Unmarshal(ev.Payload, &re); err != nil {
			panic(fmt.Sprintf("%s payload %s: %v", topic, ev.Payload, err))
		}
		out = append(out, re)
	}
	return out
}

// response is an answer of the HTTP API, read whole.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) String() string {
	body := r.Body
	if len(body) > 300 {
		body = body[:300]
	}
	return fmt.Sprintf("%d %q", r.Status, bytes.TrimSpace(body))
}

func (r response) wantStatus(t testing.TB, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("got %s, want status %d", r, status)
	}
}

// wantError checks that r is the standard error body with status and code.
func (r response) wantError(t testing.TB, status int, code string) {
	t.Helper()
	var body struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil || body.Error == nil {
		t.Fatalf("want the standard error body %d %s, got %s (%v)", status, code, r, err)
	}
	if r.Status != status || body.Error.Code != code || body.Error.Message == "" {
		t.Fatalf("got %s, want %d %s", r, status, code)
	}
}

func (r response) decode(t testing.TB, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %s: %v", r, err)
	}
}

// do calls the API as user (0: without a token); path is below /history.
func (e *env) do(t testing.TB, method, path string, user int64, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewReader([]byte(body))
	}
	req, err := http.NewRequestWithContext(t.Context(), method, e.srv.URL+"/history"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if user != 0 {
		req.Header.Set("Authorization", "Bearer "+e.signer.Token(t, user, "sid-"+strconv.FormatInt(user, 10), nil))
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// counter reads a counter or gauge of the env's registry with the given
// labels (name, value, …); 0 when it has not been counted.
func (e *env) counter(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if labelValue(m, labels[i]) != labels[i+1] {
					continue metrics
				}
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func ptr[T any](v T) *T { return &v }
