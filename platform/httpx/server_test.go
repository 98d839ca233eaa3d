package httpx_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/platform/httpx"
)

// safety bounds waits that only fail when something is broken.
const safety = 20 * time.Second

func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(safety):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func TestStartOnTakenPort(t *testing.T) {
	first, _ := startServer(t, httpx.ServerOptions{Name: "first", Handler: http.NotFoundHandler()})
	second := httpx.NewServer(httpx.ServerOptions{Name: "chat-listener", Addr: first.Addr().String(), Handler: http.NotFoundHandler()})
	err := second.Start()
	if err == nil {
		_ = second.Shutdown(context.Background())
		t.Fatal("Start on a taken port succeeded")
	}
	if !strings.Contains(err.Error(), "chat-listener") {
		t.Errorf("error %q does not name the listener", err)
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Errorf("error %v does not wrap the listen error", err)
	}
	// Shutdown of a listener that never started is a no-op.
	if err := second.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown of an unstarted server: %v", err)
	}
}

func TestServerNameAndAddr(t *testing.T) {
	s, base := startServer(t, httpx.ServerOptions{Name: "admin", Handler: http.NotFoundHandler()})
	if s.Name() != "admin" {
		t.Errorf("Name = %q", s.Name())
	}
	if !strings.HasPrefix(s.Addr().String(), "127.0.0.1:") || strings.HasSuffix(s.Addr().String(), ":0") {
		t.Errorf("Addr = %v", s.Addr())
	}
	resp, err := newClient(t).Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("status %d", resp.StatusCode)
	}
}

func TestShutdownDrainsInFlightRequest(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	r := httpx.NewRouter(httpx.RouterOptions{Listener: "slow", MaxBodyBytes: 1 << 10})
	r.Get("/slow", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		_, _ = io.WriteString(w, "done")
	})
	s := httpx.NewServer(httpx.ServerOptions{Name: "slow", Addr: "127.0.0.1:0", Handler: r})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr().String()

	type result struct {
		status int
		body   string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := newClient(t).Get("http://" + addr + "/slow")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{resp.StatusCode, string(b), err}
	}()
	wait(t, started, "the slow request to start")

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), safety)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()

	// Once the listener refuses new connections, shutdown is under way.
	deadline := time.Now().Add(safety)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting during shutdown")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a request was in flight", err)
	default:
	}

	close(release)
	res := wait(t, got, "the slow response")
	if res.err != nil || res.status != http.StatusOK || res.body != "done" {
		t.Errorf("in-flight request: %d %q %v, want 200 done", res.status, res.body, res.err)
	}
	if err := wait(t, shut, "Shutdown"); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	// A second Shutdown must not hang or fail.
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

// wsServer serves a WebSocket at /ws that tracks itself with the drain.
// obey selects whether it closes with 1001 when draining begins or
// ignores draining and only ends when the connection breaks.
func wsServer(t *testing.T, obey bool) (s *httpx.Server, url string, g gauge, exited <-chan struct{}) {
	t.Helper()
	m, r := newMetrics(t)
	ex := make(chan struct{})
	router := httpx.NewRouter(httpx.RouterOptions{Listener: "ws", Metrics: m, MaxBodyBytes: 1 << 10})
	router.Get("/ws", func(w http.ResponseWriter, r *http.Request) {
		draining, done := httpx.TrackLongLived(r)
		defer close(ex)
		defer done()
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Errorf("Accept: %v", err)
			return
		}
		defer c.CloseNow()
		if !obey {
			for {
				if _, _, err := c.Read(context.Background()); err != nil {
					return
				}
			}
		}
		ctx := c.CloseRead(context.Background())
		select {
		case <-draining:
			_ = c.Close(websocket.StatusGoingAway, "server shutting down")
		case <-ctx.Done():
		}
	})
	s = httpx.NewServer(httpx.ServerOptions{Name: "ws", Addr: "127.0.0.1:0", Handler: router, Metrics: m})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), safety)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s, "ws://" + s.Addr().String() + "/ws", gauge{t, r}, ex
}

// gauge reads elph_http_long_lived_connections{listener="ws"}.
type gauge struct {
	t   *testing.T
	reg prometheus.Gatherer
}

func (g gauge) value(name string) float64 {
	g.t.Helper()
	v, _ := metricValue(g.t, g.reg, name, map[string]string{"listener": "ws"})
	return v
}

func TestWebSocketGoingAwayOnShutdown(t *testing.T) {
	s, url, g, exited := wsServer(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.CloseNow()
	if v := g.value("elph_http_long_lived_connections"); v != 1 {
		t.Errorf("long-lived gauge = %v with one socket open, want 1", v)
	}

	readErr := make(chan error, 1)
	go func() {
		_, _, err := c.Read(ctx)
		readErr <- err
	}()
	sctx, scancel := context.WithTimeout(context.Background(), safety)
	defer scancel()
	if err := s.Shutdown(sctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	err = wait(t, readErr, "the client read")
	if st := websocket.CloseStatus(err); st != websocket.StatusGoingAway {
		t.Errorf("client read ended with %v (status %v), want 1001 going away", err, st)
	}
	wait(t, exited, "the handler to return")
	if v := g.value("elph_http_long_lived_connections"); v != 0 {
		t.Errorf("long-lived gauge = %v after shutdown, want 0", v)
	}
}

func TestShutdownDeadlineClosesIgnoringHandler(t *testing.T) {
	s, url, g, exited := wsServer(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.CloseNow()
	if v := g.value("elph_http_long_lived_connections"); v != 1 {
		t.Errorf("long-lived gauge = %v, want 1", v)
	}

	// The deadline is what is under test: the handler never finishes on
	// its own, so Shutdown must give up when it passes.
	sctx, scancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer scancel()
	err = s.Shutdown(sctx)
	if err == nil {
		t.Fatal("Shutdown returned nil with a handler that ignores draining")
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "ws") {
		t.Errorf("Shutdown error = %v, want the listener name and the deadline", err)
	}

	// The connection is cut: the client's read fails at once rather than
	// at the safety timeout, and not with a clean close from the server.
	_, _, err = c.Read(ctx)
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("client read: %v, want the connection closed by the server", err)
	}
	if st := websocket.CloseStatus(err); st != -1 {
		t.Errorf("client got close status %v; the server was supposed to cut the connection", st)
	}
	wait(t, exited, "the handler to return")
	if v := g.value("elph_http_long_lived_connections"); v != 0 {
		t.Errorf("long-lived gauge = %v, want 0", v)
	}
}

func TestTrackLongLivedOutsideServer(t *testing.T) {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	draining, done := httpx.TrackLongLived(req)
	if draining != nil {
		t.Error("draining is not nil outside a Server")
	}
	done()
	done() // idempotent
}

func TestDoneIsIdempotent(t *testing.T) {
	m, reg := newMetrics(t)
	calls := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, done := httpx.TrackLongLived(r)
		done()
		done()
		calls <- struct{}{}
	})
	s, base := startServer(t, httpx.ServerOptions{Name: "idem", Handler: h, Metrics: m})
	resp, err := newClient(t).Get(base)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wait(t, calls, "handler")
	if v, _ := metricValue(t, reg, "elph_http_long_lived_connections", map[string]string{"listener": "idem"}); v != 0 {
		t.Errorf("gauge = %v after done twice, want 0", v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestWebSocketHandlerPanics(t *testing.T) {
	m, reg := newMetrics(t)
	r := httpx.NewRouter(httpx.RouterOptions{Listener: "ws", Metrics: m, MaxBodyBytes: 1 << 10})
	r.Get("/before", func(http.ResponseWriter, *http.Request) { panic("before accept") })
	r.Get("/after", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		panic("after accept")
	})
	r.Get("/ok", func(http.ResponseWriter, *http.Request) {})
	_, base := startServer(t, httpx.ServerOptions{Name: "ws", Handler: r, Metrics: m})
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	wsBase := "ws" + strings.TrimPrefix(base, "http")

	// Before the upgrade the client still gets the standard 500.
	_, resp, err := websocket.Dial(ctx, wsBase+"/before", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("dial /before: resp %v, err %v; want a 500", resp, err)
	}

	// After it, the socket is cut; no HTTP error is written into it.
	c, _, err := websocket.Dial(ctx, wsBase+"/after", nil)
	if err != nil {
		t.Fatalf("dial /after: %v", err)
	}
	defer c.CloseNow()
	if _, _, err := c.Read(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("read after the handler panicked: %v, want the connection gone", err)
	}
	// The handler's deferred CloseNow cuts the socket before the recoverer
	// counts the panic, so the count may lag the client's read a moment.
	deadline := time.Now().Add(safety)
	for {
		v, _ := metricValue(t, reg, "elph_http_panics_total", map[string]string{"listener": "ws"})
		if v == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("elph_http_panics_total = %v, want 2", v)
		}
		time.Sleep(5 * time.Millisecond)
	}
	resp2, err := newClient(t).Get(base + "/ok")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusOK {
		t.Errorf("after panics: %d", resp2.StatusCode)
	}
}
