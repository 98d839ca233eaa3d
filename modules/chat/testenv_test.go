package chat

// The module-level test environment: a real chat Module on a real
// database (storetest), a real in-memory bus and stream, access tokens
// signed with an in-test Ed25519 key (no sso module), and the module's
// routes behind the standard httpx router on a loopback httptest server.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/platform/auth/authtest"
	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/httpx"
	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
	"github.com/elph-server/elph/platform/stream"
)

const (
	// wait bounds every wait as a safety net against hangs; no test relies
	// on it to pass.
	wait = 30 * time.Second
)

// people knows users 1..999 except the disabled ones.
type people struct {
	mu       sync.Mutex
	disabled map[int64]bool
}

func (p *people) Existing(_ context.Context, ids []int64) (map[int64]bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[int64]bool, len(ids))
	for _, id := range ids {
		if id > 0 && id < 1000 && !p.disabled[id] {
			out[id] = true
		}
	}
	return out, nil
}

// files lets each user attach the files they own.
type files struct {
	mu    sync.Mutex
	owner map[string]int64
}

func (f *files) add(id string, owner int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.owner[id] = owner
}

func (f *files) Attachable(_ context.Context, userID int64, fileID string) (FileRef, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.owner[fileID] != userID {
		return FileRef{}, fmt.Errorf("files: %s: %w", fileID, ErrFileUnavailable)
	}
	return FileRef{ID: fileID, Name: fileID + ".png", ContentType: "image/png", Size: int64(len(fileID))}, nil
}

// testClock is the injected clock; it moves only when a test moves it.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// env is one node: a started module and an HTTP server for its routes.
type env struct {
	t      *testing.T
	db     *store.DB
	bus    *bus.Memory
	stream *stream.Stream
	mod    *Module
	is     *authtest.Signer
	people *people
	files  *files
	clock  *testClock
	reg    *prometheus.Registry
	srv    *httptest.Server
	tokens sync.Map // user id -> token
}

type envOptions struct {
	noFiles   bool
	retention time.Duration
}

func newEnv(t *testing.T, db *store.DB, o envOptions) *env {
	t.Helper()
	e := &env{
		t: t, db: db, is: authtest.New(t), people: &people{disabled: map[int64]bool{}},
		files: &files{owner: map[string]int64{}}, reg: prometheus.NewRegistry(),
		clock: &testClock{now: time.Now().UTC().Truncate(time.Second)},
	}
	log := storetest.Logger(t)
	b, err := bus.NewMemory(bus.MemoryOptions{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	e.bus = b
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("close bus: %v", err)
		}
	})
	// The event limit the wiring sets: a 16 KiB body may take 6 times that
	// in JSON.
	e.stream, err = stream.New(stream.Options{DB: db, Bus: b, Verifier: e.is.Verifier(), Log: log, Metrics: e.reg, PurgeInterval: -1,
		MaxEventBytes: 6*DefaultMaxMessageBytes + 32<<10})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Log: log, DB: db, Bus: b, Stream: e.stream, Verifier: e.is.Verifier(), People: e.people, Files: e.files,
		Metrics: e.reg, Now: e.clock.Now, Retention: o.retention,
	}
	if o.noFiles {
		opts.Files = nil
	}
	e.mod, err = New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := e.mod.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	httpMetrics, err := httpx.NewMetrics(e.reg)
	if err != nil {
		t.Fatal(err)
	}
	r := httpx.NewRouter(httpx.RouterOptions{Listener: "chat-test", Logger: log, Metrics: httpMetrics, MaxBodyBytes: 1 << 20})
	r.Mount("/chat", e.mod.Routes())
	e.srv = httptest.NewServer(r)
	t.Cleanup(func() {
		e.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := e.mod.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return e
}

// forEachDialect runs fn with a fresh env on each database.
func forEachDialect(t *testing.T, o envOptions, fn func(t *testing.T, e *env)) {
	t.Helper()
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		fn(t, newEnv(t, db, o))
	})
}

func (e *env) token(user int64) string {
	if v, ok := e.tokens.Load(user); ok {
		return v.(string)
	}
	tok := e.is.Token(e.t, user, fmt.Sprintf("s-%d", user), nil)
	e.tokens.Store(user, tok)
	return tok
}

// response is an answer of the HTTP API.
type response struct {
	Status int
	Body   []byte
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Body)) }

func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r, err)
	}
}

func (r response) want(t testing.TB, status int) response {
	t.Helper()
	if r.Status != status {
		t.Fatalf("got %s, want status %d", r, status)
	}
	return r
}

// wantError checks the standard error body with status and code.
func (r response) wantError(t testing.TB, status int, code string) {
	t.Helper()
	var body struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil || body.Error == nil {
		t.Fatalf("want error %d %s, got %s", status, code, r)
	}
	if r.Status != status || body.Error.Code != code || body.Error.Message == "" {
		t.Fatalf("got %s, want %d %s", r, status, code)
	}
}

// raw sends a request as user (0: no token) with a literal body.
func (e *env) raw(t testing.TB, user int64, method, path, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, e.srv.URL+"/chat"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if user != 0 {
		req.Header.Set("Authorization", "Bearer "+e.token(user))
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
	return response{Status: resp.StatusCode, Body: b}
}

// call sends v (nil: no body) as JSON.
func (e *env) call(t testing.TB, user int64, method, path string, v any) response {
	t.Helper()
	if v == nil {
		return e.raw(t, user, method, path, "")
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return e.raw(t, user, method, path, string(b))
}

// group creates a group owned by owner with members and returns its id.
func (e *env) group(t testing.TB, owner int64, title string, members ...int64) int64 {
	t.Helper()
	var v ConversationView
	e.call(t, owner, "POST", "/v1/conversations", map[string]any{"kind": "group", "title": title, "member_ids": members}).
		want(t, http.StatusCreated).decode(t, &v)
	return v.ID
}

// direct opens the direct conversation of a and b.
func (e *env) direct(t testing.TB, a, b int64) int64 {
	t.Helper()
	r := e.call(t, a, "POST", "/v1/conversations", map[string]any{"kind": "direct", "user_id": b})
	if r.Status != http.StatusCreated && r.Status != http.StatusOK {
		t.Fatalf("direct %d-%d: %s", a, b, r)
	}
	var v ConversationView
	r.decode(t, &v)
	return v.ID
}

// send posts a text message and returns it.
func (e *env) send(t testing.TB, user, conv int64, body string) Message {
	t.Helper()
	return e.sendReq(t, user, conv, SendRequest{Body: body})
}

func (e *env) sendReq(t testing.TB, user, conv int64, req SendRequest) Message {
	t.Helper()
	if req.ClientID == "" {
		req.ClientID = newClientID()
	}
	var m Message
	e.call(t, user, "POST", fmt.Sprintf("/v1/conversations/%d/messages", conv), req).want(t, http.StatusCreated).decode(t, &m)
	return m
}

var clientSeq struct {
	mu sync.Mutex
	n  int
}

func newClientID() string {
	clientSeq.mu.Lock()
	defer clientSeq.mu.Unlock()
	clientSeq.n++
	return fmt.Sprintf("c-%d-%d", time.Now().UnixNano(), clientSeq.n)
}

// event is a stream event with its chat data.
type event struct {
	Seq  int64
	Type string
	Data json.RawMessage
}

// events returns the stream events of user after seq, read from the
// database: what a client reconnecting with since=after gets.
func (e *env) events(t testing.TB, user, after int64) []event {
	t.Helper()
	var out []event
	for {
		evs, err := e.stream.Since(t.Context(), user, after, 1000)
		if err != nil {
			t.Fatalf("events of %d: %v", user, err)
		}
		for _, ev := range evs {
			out = append(out, event{Seq: ev.Seq, Type: ev.Type, Data: ev.Data})
			after = ev.Seq
		}
		if len(evs) < 1000 {
			return out
		}
	}
}

// lastSeq is the newest stream sequence of user.
func (e *env) lastSeq(t testing.TB, user int64) int64 {
	t.Helper()
	evs := e.events(t, user, 0)
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].Seq
}

// types lists the types of events.
func types(evs []event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Type
	}
	return out
}

// frame is any server frame of the WebSocket.
type frame struct {
	Type   string          `json:"type"`
	Seq    int64           `json:"seq"`
	Oldest int64           `json:"oldest"`
	Signal string          `json:"signal"`
	Data   json.RawMessage `json:"data"`
}

func (f frame) isEvent() bool { return strings.Contains(f.Type, ".") }

// dial opens the WebSocket of user from since.
func (e *env) dial(t testing.TB, user, since int64) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	url := "ws" + strings.TrimPrefix(e.srv.URL, "http") + fmt.Sprintf("/chat/v1/ws?since=%d", since)
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + e.token(user)}},
	})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial as %d: %v (HTTP %d)", user, err, status)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func readFrame(t testing.TB, c *websocket.Conn) frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageText {
		t.Fatal("binary frame from server")
	}
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("frame %q: %v", b, err)
	}
	return f
}

// errNoEvent is returned by find when a predicate never matches.
var errNoEvent = errors.New("no such event")

// find returns the first event of type typ whose data decodes into v and
// satisfies ok (nil: any).
func find[T any](evs []event, typ string, ok func(T) bool) (T, error) {
	var zero T
	for _, ev := range evs {
		if ev.Type != typ {
			continue
		}
		var v T
		if json.Unmarshal(ev.Data, &v) != nil {
			continue
		}
		if ok == nil || ok(v) {
			return v, nil
		}
	}
	return zero, errNoEvent
}
