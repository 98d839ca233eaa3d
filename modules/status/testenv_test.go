package status_test

// The module-level test environment: a real status Module and a real
// stream on a real database of each dialect (storetest), the in-memory
// bus, tokens from authtest, the stream's WebSocket and the module's REST
// routes on one loopback httptest server. The module's clock is a
// settable one, moved by the tests; the periodic jobs are run by hand
// (Sweep, PromoteIdle), so nothing waits on a timer.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/modules/status"
	"github.com/elph-server/elph/platform/auth/authtest"
	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/httpx"
	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
	"github.com/elph-server/elph/platform/stream"
)

// wait bounds every wait as a safety net against hangs; no test relies
// on it to pass.
const wait = 30 * time.Second

// The users of the tests.
const (
	alice int64 = 1
	bob   int64 = 2
	carol int64 = 3
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// clock is the module's settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type env struct {
	db     *store.DB
	bus    *bus.Memory
	stream *stream.Stream
	mod    *status.Module
	reg    *prometheus.Registry
	signer *authtest.Signer
	clock  *clock
	cfg    config.Status
	srv    *httptest.Server
	wsURL  string

	mu      sync.Mutex
	changes []status.Presence // status.presence.changed seen on the bus
}

// forEachDialect runs fn on a fresh environment on SQLite and MariaDB.
func forEachDialect(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Helper()
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		fn(t, newEnv(t, db))
	})
}

func newEnv(t *testing.T, db *store.DB) *env {
	t.Helper()
	log := storetest.Logger(t)
	e := &env{db: db, reg: prometheus.NewRegistry(), signer: authtest.New(t), clock: &clock{now: t0}, cfg: config.Default().Status}
	b, err := bus.NewMemory(bus.MemoryOptions{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	e.bus = b
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("bus close: %v", err)
		}
	})
	if _, err := b.Subscribe(status.TopicPresenceChanged, "test.collector", func(_ context.Context, ev bus.Event) error {
		var p status.Presence
		if err := json.Unmarshal(ev.Payload, &p); err != nil {
			t.Errorf("malformed change: %v", err)
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		e.changes = append(e.changes, p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.stream, err = stream.New(stream.Options{DB: db, Bus: b, Verifier: e.signer.Verifier(), Log: log, PurgeInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	e.mod, err = status.New(status.Options{
		Config: e.cfg, Log: log, DB: db, Bus: b, Stream: e.stream, Verifier: e.signer.Verifier(),
		Metrics: e.reg, Now: e.clock.Now,
	})
	if err != nil {
		t.Fatalf("status.New: %v", err)
	}
	if err := e.stream.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := e.mod.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	r := httpx.NewRouter(httpx.RouterOptions{Listener: "status-test", Logger: log, MaxBodyBytes: 64 << 10})
	r.Mount("/status", e.mod.Routes())
	r.Handle("/ws", e.stream.Handler())
	e.srv = httptest.NewServer(r)
	e.wsURL = "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/ws"
	t.Cleanup(func() {
		e.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := e.stream.Stop(ctx); err != nil {
			t.Errorf("stream Stop: %v", err)
		}
		if err := e.mod.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return e
}

// client is one device: a WebSocket of a user's session.
type client struct {
	t       testing.TB
	user    int64
	ws      *websocket.Conn
	pending []frame // read while waiting for a pong, not yet consumed
}

func (e *env) connect(t testing.TB, user int64, session string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, e.wsURL, &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + e.signer.Token(t, user, session, nil)}},
	})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	ws.SetReadLimit(1 << 20)
	t.Cleanup(func() { ws.CloseNow() })
	c := &client{t: t, user: user, ws: ws}
	if f := c.read(); f.Type != "hello" {
		t.Fatalf("first frame %+v, want hello", f)
	}
	return c
}

// frame is a server frame.
type frame struct {
	Type   string          `json:"type"`
	Signal string          `json:"signal"`
	Data   json.RawMessage `json:"data"`
}

func (c *client) read() frame {
	c.t.Helper()
	if len(c.pending) > 0 {
		f := c.pending[0]
		c.pending = c.pending[1:]
		return f
	}
	return c.readWire()
}

func (c *client) readWire() frame {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var f frame
	if err := wsjson.Read(ctx, c.ws, &f); err != nil {
		c.t.Fatalf("user %d read: %v", c.user, err)
	}
	return f
}

// send writes a client frame and waits until the server has handled it:
// frames are handled in order, and the pong comes after.
func (c *client) send(typ string, data any) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for _, f := range []map[string]any{{"type": typ, "data": data}, {"type": "ping"}} {
		if err := wsjson.Write(ctx, c.ws, f); err != nil {
			c.t.Fatalf("write: %v", err)
		}
	}
	for {
		f := c.readWire()
		if f.Type == "pong" {
			return
		}
		c.pending = append(c.pending, f)
	}
}

// presence reads frames until a presence signal about user arrives
// (skipping pongs and others' presence) and returns it.
func (c *client) presence(user int64) status.Presence {
	c.t.Helper()
	for {
		f := c.read()
		if f.Type != "signal" || f.Signal != status.SignalPresence {
			continue
		}
		var p status.Presence
		if err := json.Unmarshal(f.Data, &p); err != nil {
			c.t.Fatal(err)
		}
		if p.UserID == user {
			return p
		}
	}
}

// presenceIn reads presence signals of user until one in state comes.
func (c *client) presenceIn(user int64, state string) status.Presence {
	c.t.Helper()
	for {
		if p := c.presence(user); p.State == state {
			return p
		}
	}
}

// signal reads frames until a signal named name arrives.
func (c *client) signal(name string) json.RawMessage {
	c.t.Helper()
	for {
		if f := c.read(); f.Type == "signal" && f.Signal == name {
			return f.Data
		}
	}
}

// close closes the device and waits until the module counted it gone.
func (e *env) close(t testing.TB, c *client, wantDevices int) {
	t.Helper()
	if err := c.ws.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		var me status.Me
		e.call(t, c.user, "GET", "/status/v1/me", nil).want(t, 200).decode(t, &me)
		if me.Devices == wantDevices {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("user %d still has other than %d devices", c.user, wantDevices)
}

// me is the user's own presence as REST shows it.
func (e *env) me(t testing.TB, user int64) status.Me {
	t.Helper()
	var me status.Me // fresh: decoding leaves absent fields alone
	e.call(t, user, "GET", "/status/v1/me", nil).want(t, 200).decode(t, &me)
	return me
}

// lastChange is the newest change of user published on the bus; it
// drains the bus first by publishing a marker through the same
// subscription order (the collector is a single worker).
func (e *env) lastChange(t testing.TB, user int64) (status.Presence, bool) {
	t.Helper()
	e.flush(t)
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.changes) - 1; i >= 0; i-- {
		if e.changes[i].UserID == user {
			return e.changes[i], true
		}
	}
	return status.Presence{}, false
}

// changeCount is how many changes of user were published.
func (e *env) changeCount(t testing.TB, user int64) int {
	t.Helper()
	e.flush(t)
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, p := range e.changes {
		if p.UserID == user {
			n++
		}
	}
	return n
}

// flush waits until the collector has handled everything published so
// far: a marker for user 0 goes through the same single worker.
func (e *env) flush(t testing.TB) {
	t.Helper()
	e.mu.Lock()
	before := len(e.changes)
	e.mu.Unlock()
	if err := e.bus.Publish(t.Context(), bus.Event{Topic: status.TopicPresenceChanged, Key: "0", Payload: []byte(`{"user_id":0}`)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		e.mu.Lock()
		for i := before; i < len(e.changes); i++ {
			if e.changes[i].UserID == 0 {
				e.changes = append(e.changes[:i], e.changes[i+1:]...)
				e.mu.Unlock()
				return
			}
		}
		e.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	t.Fatal("the bus did not deliver the marker")
}

// publishCall puts a call event on the bus as the SIP edge does, and
// waits until the module handled it (its metric counts it).
func (e *env) publishCall(t testing.TB, topic string, ev map[string]any) {
	t.Helper()
	before := e.counter(t, "elph_status_call_events_total")
	payload, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.bus.Publish(t.Context(), bus.Event{Topic: topic, Key: "k", Payload: payload}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	for e.counter(t, "elph_status_call_events_total") == before {
		if time.Now().After(deadline) {
			t.Fatalf("call event %s not handled", topic)
		}
		time.Sleep(time.Millisecond)
	}
}

// counter sums every series of a metric.
func (e *env) counter(t testing.TB, name string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.Counter != nil {
				sum += m.Counter.GetValue()
			} else {
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

type response struct {
	status int
	body   []byte
}

func (e *env) call(t testing.TB, user int64, method, path string, body any) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if user > 0 {
		req.Header.Set("Authorization", "Bearer "+e.signer.Token(t, user, "rest", nil))
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, body: b}
}

func (r response) want(t testing.TB, status int) response {
	t.Helper()
	if r.status != status {
		t.Fatalf("HTTP %d, want %d: %s", r.status, status, r.body)
	}
	return r
}

func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}
