package push_test

// The module-level test environment: a real push Module on a real
// database of each dialect (storetest), a real in-memory bus, access
// tokens from authtest, the module's routes behind the standard httpx
// router on a loopback server, and the fake APNs and FCM of
// fakes_test.go. The module's clock is a test clock: retries become due
// when a test advances it, never by waiting.

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/modules/push"
	"github.com/elph-server/elph/platform/auth/authtest"
	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/httpx"
	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
)

// The users of the tests.
const (
	alice int64 = 1
	bob   int64 = 2
	carol int64 = 3
	dave  int64 = 4
	erin  int64 = 5
)

const (
	iosApp     = "ru.eltex.elph"
	androidApp = "ru.eltex.elph.android"
	callTTL    = 30 * time.Second
	messageTTL = time.Hour
)

// clock is the module's clock; tests move it forward.
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

// presence is a Presence the tests set.
type presence struct {
	mu    sync.Mutex
	reach map[int64]push.Reach
}

func (p *presence) set(user int64, r push.Reach) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reach[user] = r
}

func (p *presence) Reachability(_ context.Context, users []int64) (map[int64]push.Reach, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[int64]push.Reach{}
	for _, u := range users {
		if r, ok := p.reach[u]; ok {
			out[u] = r
		}
	}
	return out, nil
}

type names map[int64]string

func (n names) DisplayNames(_ context.Context, users []int64) (map[int64]string, error) {
	out := map[int64]string{}
	for _, u := range users {
		if v, ok := n[u]; ok {
			out[u] = v
		}
	}
	return out, nil
}

type env struct {
	db       *store.DB
	bus      *bus.Memory
	reg      *prometheus.Registry
	signer   *authtest.Signer
	apns     *fakeAPNs
	fcm      *fakeFCM
	apnsKey  string
	fcmCreds string
	roots    *x509.CertPool
	clock    *clock
	presence *presence
	mod      *push.Module
	api      *httptest.Server
	stopped  bool
}

type envOptions struct {
	edit    func(*push.Options)
	noStart bool
}

// forEachDialect runs fn on a fresh environment on SQLite and MariaDB.
func forEachDialect(t *testing.T, o envOptions, fn func(t *testing.T, e *env)) {
	t.Helper()
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		fn(t, newEnv(t, db, o))
	})
}

func newEnv(t *testing.T, db *store.DB, o envOptions) *env {
	t.Helper()
	e := &env{
		db: db, reg: prometheus.NewRegistry(), signer: authtest.New(t), roots: x509.NewCertPool(),
		clock: &clock{now: time.Now().UTC()}, presence: &presence{reach: map[int64]push.Reach{}},
	}
	e.apns, e.apnsKey = newFakeAPNs(t)
	e.fcm, e.fcmCreds = newFakeFCM(t)
	e.roots.AddCert(e.apns.srv.Certificate())
	e.roots.AddCert(e.fcm.srv.Certificate())
	b, err := bus.NewMemory(bus.MemoryOptions{Logger: storetest.Logger(t)})
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
	e.mod = e.newModule(t, e.reg, e.bus, o.edit)
	if !o.noStart {
		e.start(t, e.mod)
	}
	r := httpx.NewRouter(httpx.RouterOptions{Listener: "push-test", Logger: storetest.Logger(t), MaxBodyBytes: 2 << 20})
	r.Mount("/push", e.mod.Routes())
	e.api = httptest.NewServer(r)
	t.Cleanup(e.api.Close)
	return e
}

// config is the configuration of a direct node talking to the fakes.
func (e *env) config() config.Push {
	return config.Push{
		Mode:           push.ModeDirect,
		APNs:           config.APNs{KeyFile: e.apnsKey, KeyID: apnsKeyID, TeamID: apnsTeamID, URL: e.apns.srv.URL},
		FCM:            config.FCM{CredentialsFile: e.fcmCreds, URL: e.fcm.srv.URL},
		Workers:        4,
		MaxAttempts:    8,
		MessageTTL:     messageTTL,
		CallTTL:        callTTL,
		RequestTimeout: 5 * time.Second,
		Preview:        true,
	}
}

// newModule builds a module on e's database (another node, or the same
// node after a restart); it is stopped when the test ends.
func (e *env) newModule(t *testing.T, reg prometheus.Registerer, b bus.Bus, edit func(*push.Options)) *push.Module {
	t.Helper()
	opts := push.Options{
		Config: e.config(), Log: storetest.Logger(t), DB: e.db, Bus: b, Verifier: e.signer.Verifier(),
		Metrics: reg, Presence: e.presence, Names: names{alice: "Alice Liddell", bob: "Bob", carol: "Carol"},
		RootCAs: e.roots, Now: e.clock.Now,
	}
	if edit != nil {
		edit(&opts)
	}
	m, err := push.New(opts)
	if err != nil {
		t.Fatalf("push.New: %v", err)
	}
	push.SetPollInterval(m, 10*time.Millisecond)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := m.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return m
}

func (e *env) start(t testing.TB, m *push.Module) {
	t.Helper()
	if err := m.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
}

// stop stops the env's module: events published so far are queued first
// and sends in flight finish.
func (e *env) stop(t testing.TB) {
	t.Helper()
	if e.stopped {
		return
	}
	e.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.mod.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
}

// publish puts an event on the bus as its producer does.
func (e *env) publish(t testing.TB, topic, key string, payload any) {
	t.Helper()
	b, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.bus.Publish(t.Context(), bus.Event{Topic: topic, Key: key, Payload: b}); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

// chatMessage is chat's BusEvent of chat.message.created.
func chatMessage(conv, id, sender int64, users, muted []int64, body string, files ...string) map[string]any {
	msg := map[string]any{
		"id": id, "conversation_id": conv, "sender_id": sender, "kind": "text", "body": body,
		"created_at": time.Now().UTC().Format(time.RFC3339Nano),
	}
	if len(files) > 0 {
		var fs []map[string]any
		for i, f := range files {
			fs = append(fs, map[string]any{"id": "f" + strconv.Itoa(i), "name": f, "content_type": "application/pdf", "size": 1000})
		}
		msg["files"] = fs
	}
	ev := map[string]any{
		"conversation_id": conv, "actor_id": sender, "user_ids": users,
		"data": map[string]any{"conversation_id": conv, "message": msg},
	}
	if len(muted) > 0 {
		ev["muted_ids"] = muted
	}
	return ev
}

func (e *env) message(t testing.TB, conv, id, sender int64, users, muted []int64, body string, files ...string) {
	t.Helper()
	e.publish(t, push.TopicMessageCreated, strconv.FormatInt(conv, 10), chatMessage(conv, id, sender, users, muted, body, files...))
}

// callEvent is a call.* payload.
func callEvent(call string, user int64, dir string, at time.Time) map[string]any {
	ev := map[string]any{"call_id": call, "user_id": user, "at": at.UTC().Format(time.RFC3339Nano)}
	if dir != "" {
		ev["direction"], ev["local_number"], ev["peer_number"], ev["peer_name"] = dir, "1002", "+74951234567", "Иван Петров"
	}
	return ev
}

// missedCall is history's RecordEvent of history.call.missed.
func missedCall(user int64, call string, unseen int) map[string]any {
	return map[string]any{
		"user_id": user, "unseen_missed": unseen,
		"call": map[string]any{
			"id": 41, "call_id": call, "direction": "inbound", "local_number": "1002", "peer_number": "+74957654321",
			"peer_name": "Office, Moscow", "started_at": time.Now().UTC().Format(time.RFC3339), "result": "missed",
			"duration_seconds": 0, "seen": false,
		},
	}
}

// response is an answer of the HTTP API, read whole.
type response struct {
	Status int
	Body   []byte
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Body)) }

func (r response) wantStatus(t testing.TB, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("got %s, want status %d", r, status)
	}
}

func (r response) wantError(t testing.TB, status int, code string) {
	t.Helper()
	var body struct {
		Error *struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil || body.Error == nil || r.Status != status ||
		body.Error.Code != code || body.Error.Message == "" {
		t.Fatalf("got %s, want the standard error %d %s", r, status, code)
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

// do calls the API as user on session sid (user 0: no token); path is
// below /push.
func (e *env) do(t testing.TB, method, path string, user int64, sid, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewReader([]byte(body))
	}
	req, err := http.NewRequestWithContext(t.Context(), method, e.api.URL+"/push"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if user != 0 {
		req.Header.Set("Authorization", "Bearer "+e.signer.Token(t, user, sid, nil))
	}
	resp, err := e.api.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Body: b}
}

func sid(user int64) string { return "sid-" + strconv.FormatInt(user, 10) }

// register registers a device of user on the user's default session.
func (e *env) register(t testing.TB, user int64, platform, app, token string) push.Device {
	t.Helper()
	return e.registerOn(t, user, sid(user), platform, app, token)
}

func (e *env) registerOn(t testing.TB, user int64, session, platform, app, token string) push.Device {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"platform": platform, "app_id": app, "token": token, "name": "phone of " + strconv.FormatInt(user, 10)})
	r := e.do(t, http.MethodPost, "/v1/devices", user, session, string(body))
	if r.Status != http.StatusCreated && r.Status != http.StatusOK {
		t.Fatalf("register %s device of user %d: %s", platform, user, r)
	}
	var d push.Device
	r.decode(t, &d)
	return d
}

// phones registers an iPhone (alert and VoIP tokens) and an Android
// phone for each user; tokens are derived from the user and kind.
func (e *env) phones(t testing.TB, users ...int64) {
	t.Helper()
	for _, u := range users {
		e.register(t, u, push.PlatformAPNs, iosApp, apnsToken(fmt.Sprint("alert", u)))
		e.register(t, u, push.PlatformAPNsVoIP, iosApp, apnsToken(fmt.Sprint("voip", u)))
		e.registerOn(t, u, sid(u)+"-android", push.PlatformFCM, androidApp, fcmToken(fmt.Sprint("fcm", u)))
	}
}

func (e *env) devices(t testing.TB, user int64) []push.Device {
	t.Helper()
	var l struct {
		Devices []push.Device `json:"devices"`
	}
	r := e.do(t, http.MethodGet, "/v1/devices", user, sid(user), "")
	r.wantStatus(t, http.StatusOK)
	r.decode(t, &l)
	return l.Devices
}

// queued is a row of the push queue.
type queued struct {
	ID         int64     `db:"id"`
	UserID     int64     `db:"user_id"`
	Platform   string    `db:"platform"`
	Kind       string    `db:"kind"`
	Attempts   int       `db:"attempts"`
	Next       time.Time `db:"next_attempt_at"`
	Expires    time.Time `db:"expires_at"`
	LastError  string    `db:"last_error"`
	LeaseOwner string    `db:"lease_owner"`
}

func (e *env) queue(t testing.TB) []queued {
	t.Helper()
	var rows []queued
	err := e.db.SelectContext(context.Background(), &rows, `SELECT id, user_id, platform, kind, attempts, next_attempt_at,
		expires_at, last_error, lease_owner FROM push_queue ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// counter reads a counter or gauge of reg with the given labels (name,
// value, …); 0 when it has not been counted.
func counter(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
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
				sum += g.GetValue()
			} else {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func (e *env) counter(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	return counter(t, e.reg, name, labels...)
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// busEvent is a bus event as a producer publishes it.
func busEvent(t testing.TB, topic string, payload any) bus.Event {
	t.Helper()
	b, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	return bus.Event{ID: "test-" + topic, Topic: topic, Key: "k", Payload: b}
}
