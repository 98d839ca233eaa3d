package sso_test

// The module-level test environment: a real sso.Module on a real database
// (storetest), a real in-memory bus, an injected clock and the module's
// routes behind the standard httpx router on a loopback httptest server, so
// client IPs, JSON errors and the middleware are the production ones.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/modules/sso"
	"github.com/elph-server/elph/modules/sso/ldaptest"
	"github.com/elph-server/elph/platform/auth"
	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/httpx"
	"github.com/elph-server/elph/platform/store"
)

// Passwords that pass the policy (12+ characters).
const (
	adminPassword = "Admin-Secret-2031"
	userPassword  = "User-Secret-2031!"
	otherPassword = "Other-Secret-2031?"
)

// waitTimeout bounds every wait for something asynchronous (a bus event, a
// closed channel). It is a safety net: the tests never depend on it passing.
const waitTimeout = 5 * time.Second

// testClock is the injected clock. It only moves when a test moves it.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock {
	// Near the real time, so nothing that reads the real clock (the
	// directory's accountExpires check, the bus) disagrees much.
	return &testClock{now: time.Now().UTC().Truncate(time.Second)}
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

// lockedBuffer is a bytes.Buffer safe for the module's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// testConfig is the default sso configuration with nothing listening on a
// fixed port, no background directory sync and a known admin password.
func testConfig() config.SSO {
	c := config.Default().SSO
	c.HealthListen = ""
	c.InitialAdminPass = adminPassword
	c.LDAP.SyncInterval = 0
	return c
}

// ldapConfig points the module at a test slapd: Active Directory mode
// (sAMAccountName, objectGUID, userAccountControl) or the generic mode
// (uid, entryUUID, nested groups resolved by Elph, which slapd needs since
// it lacks AD's in-chain matching rule).
func ldapConfig(s *ldaptest.Server, activeDirectory bool) config.LDAP {
	c := config.LDAP{
		Enabled:         true,
		URL:             s.URL,
		BindDN:          s.BindDN,
		BindPassword:    s.BindPassword,
		BaseDN:          s.BaseDN,
		ActiveDirectory: activeDirectory,
		PageSize:        200,
		Timeout:         30 * time.Second,
	}
	if !activeDirectory {
		c.GroupBaseDN = ldaptest.GroupsDN
	}
	return c
}

// closedLDAPURL is an ldap:// URL on loopback where nothing listens.
func closedLDAPURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "ldap://" + addr
}

// envOptions adjust newEnv.
type envOptions struct {
	// cfg edits the configuration (testConfig) before the module is made.
	cfg func(*config.SSO)
	// clock is shared with another env (another node); nil makes one.
	clock *testClock
	// revocations is the node's revocation set; nil lets the module make
	// its own.
	revocations *auth.Revocations
	// bus is used instead of a fresh one.
	bus *bus.Memory
}

// testEnv is one node: a started module and an HTTP server for its routes.
type testEnv struct {
	t     *testing.T
	cfg   config.SSO
	mod   *sso.Module
	db    *store.DB
	bus   *bus.Memory
	clock *testClock
	reg   *prometheus.Registry
	out   *lockedBuffer // the module's Out: one-time messages
	log   *lockedBuffer // the module's and the router's log
	srv   *httptest.Server
}

// newEnv starts a module on db and serves its routes under /sso on
// loopback. Everything is stopped when the test ends.
func newEnv(t *testing.T, db *store.DB, o envOptions) *testEnv {
	t.Helper()
	cfg := testConfig()
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	e := &testEnv{t: t, cfg: cfg, db: db, clock: o.clock, reg: prometheus.NewRegistry(),
		out: &lockedBuffer{}, log: &lockedBuffer{}}
	if e.clock == nil {
		e.clock = newTestClock()
	}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(e.log, t.Output()), &slog.HandlerOptions{Level: slog.LevelDebug}))

	e.bus = o.bus
	if e.bus == nil {
		e.bus = newBus(t)
	}

	m, err := sso.New(sso.Options{
		Config: cfg, Log: log, DB: db, Bus: e.bus, Metrics: e.reg,
		Revocations: o.revocations, Out: e.out, Now: e.clock.Now,
	})
	if err != nil {
		t.Fatalf("sso.New: %v", err)
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := m.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	e.mod = m

	httpMetrics, err := httpx.NewMetrics(e.reg)
	if err != nil {
		t.Fatal(err)
	}
	r := httpx.NewRouter(httpx.RouterOptions{Listener: "sso-test", Logger: log, Metrics: httpMetrics, MaxBodyBytes: 64 << 10})
	r.Mount("/sso", m.Routes())
	e.srv = httptest.NewServer(r)
	t.Cleanup(e.srv.Close)
	return e
}

// newBus returns an in-memory bus closed when the test ends.
func newBus(t *testing.T) *bus.Memory {
	t.Helper()
	b, err := bus.NewMemory(bus.MemoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("bus close: %v", err)
		}
	})
	return b
}

// bridge forwards every event from each bus to the other, as NATS does
// between the nodes of a cluster. Each node needs a bus of its own: a
// Memory bus allows one subscriber per name, and every sso node subscribes
// to revocations under the same name.
func bridge(t *testing.T, a, b *bus.Memory) {
	t.Helper()
	var forwarded sync.Map // event ids already carried across, so nothing echoes back
	forward := func(to *bus.Memory) bus.Handler {
		return func(ctx context.Context, ev bus.Event) error {
			if _, seen := forwarded.LoadOrStore(ev.ID, true); seen {
				return nil
			}
			return to.Publish(ctx, ev)
		}
	}
	for _, p := range []struct {
		from, to *bus.Memory
		name     string
	}{{a, b, "bridge.a-to-b"}, {b, a, "bridge.b-to-a"}} {
		sub, err := p.from.Subscribe(">", p.name, forward(p.to))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sub.Unsubscribe)
	}
}

// apiResponse is an answer of the HTTP API.
type apiResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r apiResponse) String() string {
	return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Body))
}

// decode unmarshals the body into v.
func (r apiResponse) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r, err)
	}
}

// apiError is the standard error body.
type apiError struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

// wantError checks that r is the standard error body with status and code,
// and returns it.
func (r apiResponse) wantError(t *testing.T, status int, code string) apiError {
	t.Helper()
	var body struct {
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil || body.Error == nil {
		t.Fatalf("want the standard error body %d %s, got %s (%v)", status, code, r, err)
	}
	if r.Status != status || body.Error.Code != code {
		t.Fatalf("got %s, want %d %s", r, status, code)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error Content-Type = %q", ct)
	}
	if body.Error.Message == "" {
		t.Errorf("error without a message: %s", r)
	}
	if id := r.Header.Get("X-Request-ID"); body.Error.RequestID == "" || body.Error.RequestID != id {
		t.Errorf("error request_id = %q, X-Request-ID = %q", body.Error.RequestID, id)
	}
	return *body.Error
}

// wantStatus fails unless r has status.
func (r apiResponse) wantStatus(t *testing.T, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("got %s, want status %d", r, status)
	}
}

// raw sends a request with a literal body and content type.
func (e *testEnv) raw(t *testing.T, method, path, token, contentType, body string) apiResponse {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("User-Agent", "sso-test/1.0")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return apiResponse{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// call sends v (nil: no body) as JSON.
func (e *testEnv) call(t *testing.T, method, path, token string, v any) apiResponse {
	t.Helper()
	if v == nil {
		return e.raw(t, method, path, token, "", "")
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return e.raw(t, method, path, token, "application/json", string(b))
}

// tokenPair is the answer of /v1/login and /v1/token.
type tokenPair struct {
	AccessToken  string    `json:"access_token"`
	TokenType    string    `json:"token_type"`
	ExpiresIn    int       `json:"expires_in"`
	ExpiresAt    time.Time `json:"expires_at"`
	RefreshToken string    `json:"refresh_token"`
	SessionID    string    `json:"session_id"`
	User         sso.User  `json:"user"`
}

type loginBody struct {
	Login    string `json:"login"`
	Password string `json:"password"`
	Device   string `json:"device,omitempty"`
}

// tryLogin posts to /sso/v1/login.
func (e *testEnv) tryLogin(t *testing.T, login, password string) apiResponse {
	t.Helper()
	return e.call(t, http.MethodPost, "/sso/v1/login", "", loginBody{Login: login, Password: password})
}

// login logs in from device and fails the test unless it works.
func (e *testEnv) login(t *testing.T, login, password, device string) tokenPair {
	t.Helper()
	r := e.call(t, http.MethodPost, "/sso/v1/login", "", loginBody{Login: login, Password: password, Device: device})
	r.wantStatus(t, http.StatusOK)
	var p tokenPair
	r.decode(t, &p)
	if p.AccessToken == "" || p.RefreshToken == "" || p.SessionID == "" {
		t.Fatalf("login %q: incomplete answer %s", login, r)
	}
	return p
}

// refresh posts a refresh token to /sso/v1/token.
func (e *testEnv) refresh(t *testing.T, refreshToken string) apiResponse {
	t.Helper()
	return e.call(t, http.MethodPost, "/sso/v1/token", "", map[string]string{"refresh_token": refreshToken})
}

// meResponse is the answer of /v1/me.
type meResponse struct {
	sso.User
	Groups    []string `json:"groups"`
	SessionID string   `json:"session_id"`
}

// me asks /sso/v1/me with token.
func (e *testEnv) me(t *testing.T, token string) apiResponse {
	t.Helper()
	return e.raw(t, http.MethodGet, "/sso/v1/me", token, "", "")
}

// wantTokenRejected checks that the API refuses token.
func (e *testEnv) wantTokenRejected(t *testing.T, token string) {
	t.Helper()
	r := e.me(t, token)
	r.wantError(t, http.StatusUnauthorized, httpx.CodeUnauthorized)
	if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("401 without a Bearer challenge: %q", r.Header.Get("WWW-Authenticate"))
	}
}

// wantTokenAccepted checks that the API accepts token and returns /me.
func (e *testEnv) wantTokenAccepted(t *testing.T, token string) meResponse {
	t.Helper()
	r := e.me(t, token)
	r.wantStatus(t, http.StatusOK)
	var me meResponse
	r.decode(t, &me)
	return me
}

// createUser makes a local account through the service.
func (e *testEnv) createUser(t *testing.T, n sso.NewUser) sso.User {
	t.Helper()
	if n.Password == "" {
		n.Password = userPassword
	}
	u, err := e.mod.CreateLocalUser(t.Context(), n)
	if err != nil {
		t.Fatalf("CreateLocalUser(%q): %v", n.Login, err)
	}
	return u
}

// loginDirect logs in through the service, not HTTP.
func (e *testEnv) loginDirect(t *testing.T, login, password string) (sso.LoginResult, error) {
	t.Helper()
	return e.mod.Login(t.Context(), sso.LoginRequest{Login: login, Password: password, Device: "direct",
		UserAgent: "sso-test", IP: netip.MustParseAddr("192.0.2.10")})
}

// events collects what a bus subscription receives.
type events struct {
	mu     sync.Mutex
	list   []bus.Event
	notify chan struct{}
}

var subscriberSeq atomic.Int64

// subscribe records every event on subject until the test ends.
func subscribe(t *testing.T, b bus.Bus, subject string) *events {
	t.Helper()
	ev := &events{notify: make(chan struct{}, 1)}
	name := fmt.Sprintf("test.%d", subscriberSeq.Add(1))
	sub, err := b.Subscribe(subject, name, func(_ context.Context, e bus.Event) error {
		ev.mu.Lock()
		ev.list = append(ev.list, e)
		ev.mu.Unlock()
		select {
		case ev.notify <- struct{}{}:
		default:
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Unsubscribe)
	return ev
}

// waitFor returns the first event matching match, waiting for it at most
// waitTimeout.
func (ev *events) waitFor(t *testing.T, what string, match func(bus.Event) bool) bus.Event {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		ev.mu.Lock()
		for _, e := range ev.list {
			if match(e) {
				ev.mu.Unlock()
				return e
			}
		}
		ev.mu.Unlock()
		select {
		case <-ev.notify:
		case <-deadline.C:
			t.Fatalf("no %s within %s; got %d other events", what, waitTimeout, ev.count())
		}
	}
}

func (ev *events) count() int {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return len(ev.list)
}

// revokedEvent waits for the TopicSessionRevoked event of sessionID.
func (ev *events) revokedEvent(t *testing.T, sessionID string) sso.SessionRevoked {
	t.Helper()
	var p sso.SessionRevoked
	ev.waitFor(t, "revocation of session "+sessionID, func(e bus.Event) bool {
		var q sso.SessionRevoked
		if e.Topic != sso.TopicSessionRevoked || json.Unmarshal(e.Payload, &q) != nil || q.SessionID != sessionID {
			return false
		}
		p = q
		return true
	})
	return p
}

// waitClosed waits for ch to be closed, at most waitTimeout.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		t.Fatalf("%s not closed within %s", what, waitTimeout)
	}
}

// counterValue reads a counter of reg with the given labels (0 when it has
// not been counted yet).
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				if labelValue(m, k) != v {
					continue metrics
				}
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

// ldapAdmin connects to a test slapd as its rootdn, to change the
// directory under a running module.
func ldapAdmin(t *testing.T, s *ldaptest.Server) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL(s.URL)
	if err != nil {
		t.Fatalf("ldap dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetTimeout(30 * time.Second)
	if err := c.Bind(ldaptest.RootDN, ldaptest.RootPassword); err != nil {
		t.Fatalf("ldap bind as rootdn: %v", err)
	}
	return c
}

// generatedDN is the DN of the i-th generated directory user.
func generatedDN(i int) string {
	return fmt.Sprintf("CN=User %04d,%s", i, ldaptest.PeopleDN)
}

// userByLogin finds an account, failing the test when there is none.
func (e *testEnv) userByLogin(t *testing.T, login string) sso.User {
	t.Helper()
	u, _, err := e.mod.Store().UserByLogin(t.Context(), login)
	if err != nil {
		t.Fatalf("UserByLogin(%q): %v", login, err)
	}
	return u
}
