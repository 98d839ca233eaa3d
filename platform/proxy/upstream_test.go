package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/platform/httpx"
)

func TestFailoverAndRecovery(t *testing.T) {
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	reg := prometheus.NewRegistry()
	p := newProxy(t, Options{Routes: []Route{{Prefix: "/", Upstreams: []*url.URL{a.url(t), b.url(t)}}}, Metrics: reg,
		HealthInterval: 10 * time.Second}) // no check during the first part: failures are seen passively
	ts := serve(t, p)
	c := client(t)
	ua := p.upstreamByKey(a.ts.URL)

	// Both take requests.
	seen := map[string]int{}
	for range 6 {
		_, body := get(t, c, ts.URL+"/x")
		seen[body]++
	}
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Fatalf("requests not spread: %v", seen)
	}

	// a dies: every request still succeeds, the first one through a retry,
	// and a is marked down at once.
	addr := a.ts.Listener.Addr().String()
	a.ts.Close()
	for i := range 6 {
		res, body := get(t, c, ts.URL+"/x")
		if res.StatusCode != 200 || body != "b" {
			t.Fatalf("request %d after a died: %d %q", i, res.StatusCode, body)
		}
	}
	if ua.healthy.Load() {
		t.Fatal("a not marked down")
	}
	if err := p.Healthy(); err != nil {
		t.Fatalf("Healthy with b up: %v", err)
	}
	if metricValue(t, reg, "elph_proxy_retries_total", map[string]string{"prefix": "/"}) < 1 {
		t.Fatal("no retry counted")
	}
	if metricValue(t, reg, "elph_proxy_upstream_healthy", map[string]string{"upstream": a.ts.URL}) != 0 {
		t.Fatal("health gauge of a not 0")
	}

	// a comes back on the same address; the health check brings it back.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	a2 := &backend{name: "a"}
	a2.ts = &httptest.Server{Listener: ln, Config: &http.Server{Handler: a2.handler(nil)}}
	a2.ts.Start()
	t.Cleanup(a2.ts.Close)
	// The failed request asked for an early check (within a second), long
	// before the 10 s schedule.
	eventually(t, 3*time.Second, "a marked up again", ua.healthy.Load)
	seen = map[string]int{}
	for range 6 {
		_, body := get(t, c, ts.URL+"/x")
		seen[body]++
	}
	if seen["a"] == 0 {
		t.Fatalf("a gets no requests after coming back: %v", seen)
	}
}

func TestRetryKeepsBody(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := mustURL(t, dead.URL)
	dead.Close()
	live := newBackend(t, "live", func(w http.ResponseWriter, r *http.Request) {})
	reg := prometheus.NewRegistry()
	// Not started: the dead upstream is presumed up until a request fails.
	p, err := New(Options{Routes: []Route{
		{Prefix: "/", Upstreams: []*url.URL{deadURL, live.url(t)}},
		{Prefix: "/big/", Upstreams: []*url.URL{deadURL, live.url(t)}, MaxBodyBytes: 4 << 20},
	}, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	ts := serve(t, p)
	c := client(t)
	cases := []struct {
		name    string
		path    string
		body    func() io.Reader
		chunked bool
	}{
		{"content-length body", "/x", func() io.Reader { return strings.NewReader("payload") }, false},
		{"chunked body read ahead", "/x", func() io.Reader { return io.MultiReader(strings.NewReader("pay"), strings.NewReader("load")) }, true},
		{"streamed body not yet read", "/big/x", func() io.Reader { return strings.NewReader("payload") }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Two requests: ties go round robin, so one of them tries the
			// dead upstream first.
			for range 2 {
				p.setHealth(p.ups[0], true, "")
				req, _ := http.NewRequest(http.MethodPost, ts.URL+tc.path, tc.body())
				if tc.chunked {
					req.ContentLength = -1
				}
				res, _ := do(t, c, req)
				if res.StatusCode != 200 {
					t.Fatalf("status %d", res.StatusCode)
				}
				if _, body := live.lastRequest(); string(body) != "payload" {
					t.Fatalf("upstream got body %q", body)
				}
			}
		})
	}
	if v := metricValue(t, reg, "elph_proxy_retries_total", nil); v < 3 {
		t.Fatalf("retries = %v, want one per case", v)
	}
}

func TestActiveHealthChecks(t *testing.T) {
	var healthy sync.Mutex
	status := http.StatusOK
	setStatus := func(s int) { healthy.Lock(); status = s; healthy.Unlock() }
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		healthy.Lock()
		defer healthy.Unlock()
		if r.URL.Path == "/readyz" {
			w.WriteHeader(status)
		}
	}))
	t.Cleanup(a.Close)
	p := newProxy(t, Options{Routes: []Route{{Prefix: "/", Upstreams: []*url.URL{mustURL(t, a.URL)}}}, HealthPath: "/readyz", HealthInterval: 20 * time.Millisecond})
	u := p.ups[0]
	setStatus(http.StatusServiceUnavailable)
	eventually(t, 2*time.Second, "upstream marked down by a failing check", func() bool { return !u.healthy.Load() })
	if err := p.Healthy(); err == nil || !strings.Contains(err.Error(), "/") {
		t.Fatalf("Healthy = %v", err)
	}
	setStatus(http.StatusOK)
	eventually(t, 2*time.Second, "upstream marked up by a good check", func() bool { return u.healthy.Load() })
}

func TestStartChecksBeforeReturning(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := mustURL(t, dead.URL)
	dead.Close()
	up := newBackend(t, "up", nil)
	p := newProxy(t, Options{Routes: []Route{
		{Prefix: "/", Upstreams: []*url.URL{up.url(t)}},
		{Prefix: "/dead/", Upstreams: []*url.URL{deadURL}},
	}, HealthInterval: time.Hour})
	if err := p.Healthy(); err == nil || !strings.Contains(err.Error(), "/dead/") || strings.Contains(err.Error(), "/, ") {
		t.Fatalf("Healthy after Start = %v, want /dead/ down only", err)
	}
}

func TestAllUpstreamsDown(t *testing.T) {
	a := httptest.NewServer(http.NotFoundHandler())
	b := httptest.NewServer(http.NotFoundHandler())
	ua, ub := mustURL(t, a.URL), mustURL(t, b.URL)
	a.Close()
	b.Close()
	p, err := New(Options{Routes: []Route{{Prefix: "/", Upstreams: []*url.URL{ua, ub}}}, HealthInterval: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ts := serve(t, p)
	c := client(t)

	// Not started, so both are presumed up: the first request tries one,
	// retries the other, and answers 502.
	res, body := get(t, c, ts.URL+"/x")
	if res.StatusCode != http.StatusBadGateway || errorCode(t, body) != CodeBadGateway || res.Header.Get("Retry-After") == "" {
		t.Fatalf("first request: %d %q Retry-After %q", res.StatusCode, body, res.Header.Get("Retry-After"))
	}
	// Both are now marked down: 503 without trying.
	res, body = get(t, c, ts.URL+"/x")
	if res.StatusCode != http.StatusServiceUnavailable || errorCode(t, body) != "unavailable" || res.Header.Get("Retry-After") != "3" {
		t.Fatalf("second request: %d %q Retry-After %q", res.StatusCode, body, res.Header.Get("Retry-After"))
	}
	if err := p.Healthy(); err == nil {
		t.Fatal("Healthy with every upstream down")
	}
}

func TestUpstreamTimeout(t *testing.T) {
	release := make(chan struct{})
	slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) { <-release })
	defer close(release)
	tr := NewTransport(nil)
	tr.ResponseHeaderTimeout = 100 * time.Millisecond
	p := newProxy(t, Options{Routes: []Route{{Prefix: "/", Upstreams: []*url.URL{slow.url(t)}}}, Transport: tr, HealthInterval: time.Hour})
	res, body := get(t, client(t), serve(t, p).URL+"/x")
	if res.StatusCode != http.StatusGatewayTimeout || errorCode(t, body) != CodeGatewayTimeout {
		t.Fatalf("%d %q", res.StatusCode, body)
	}
	if !p.ups[0].healthy.Load() {
		t.Fatal("a slow answer marked the upstream down")
	}
}

func TestLeastLoaded(t *testing.T) {
	arrived := make(chan struct{}, 100)
	release := make(chan struct{})
	slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "slow")
	})
	fast := newBackend(t, "fast", nil)
	p := newProxy(t, Options{Routes: []Route{{Prefix: "/", Upstreams: []*url.URL{slow.url(t), fast.url(t)}}}, HealthInterval: time.Hour})
	ts := serve(t, p)
	c := client(t)
	uf := p.upstreamByKey(fast.ts.URL)

	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(release)
	const n = 20
	for i := range n {
		done := make(chan string, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.Get(ts.URL + "/x")
			if err != nil {
				done <- "error: " + err.Error()
				return
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			done <- string(b)
		}()
		select {
		case body := <-done:
			if body != "fast" {
				t.Fatalf("request %d: %q", i, body)
			}
		case <-arrived: // parked on the slow upstream
		case <-time.After(5 * time.Second):
			t.Fatalf("request %d went nowhere", i)
		}
		eventually(t, 2*time.Second, "fast upstream idle", func() bool { return uf.inFlight.Load() == 0 })
	}
	if got := slow.hits.Load(); got != 1 {
		t.Fatalf("the slow upstream got %d of %d requests, want 1 (it stays busy)", got, n)
	}
}

func TestStreaming(t *testing.T) {
	cases := []struct {
		name   string
		length bool // a Content-Length response (a download), else chunked
	}{
		{"chunked", false},
		{"with length", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			up := newBackend(t, "up", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/octet-stream")
				if tc.length {
					w.Header().Set("Content-Length", "17")
				}
				_, _ = io.WriteString(w, "first chunk\n")
				w.(http.Flusher).Flush()
				<-release
				_, _ = io.WriteString(w, "rest\n")
			})
			ts := serve(t, newProxy(t, Options{Routes: []Route{{Prefix: "/", Upstreams: []*url.URL{up.url(t)}}}}))
			res, err := client(t).Get(ts.URL + "/download")
			if err != nil {
				close(release)
				t.Fatal(err)
			}
			defer res.Body.Close()
			line := make(chan string, 1)
			go func() {
				l, _ := bufio.NewReader(res.Body).ReadString('\n')
				line <- l
			}()
			select {
			case l := <-line:
				if l != "first chunk\n" {
					t.Fatalf("first line %q", l)
				}
			case <-time.After(3 * time.Second):
				close(release)
				t.Fatal("first chunk not received while the upstream is still writing: the proxy buffers")
			}
			close(release)
		})
	}
}

func TestWebSocket(t *testing.T) {
	echo := func(w http.ResponseWriter, r *http.Request) {
		// Default options: the Origin must match the Host, which only holds
		// if the proxy passes the inbound Host on.
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		for {
			typ, msg, err := conn.Read(r.Context())
			if err != nil {
				return
			}
			if err := conn.Write(r.Context(), typ, append([]byte(r.Header.Get("X-Forwarded-For")+" "), msg...)); err != nil {
				return
			}
		}
	}
	plain := newBackend(t, "plain", echo)

	// An HTTP/2 TLS upstream: plain requests use HTTP/2, the WebSocket
	// HTTP/1.1; the certificate is checked against the upstream address
	// while the Host header is the public name.
	h2 := httptest.NewUnstartedServer(nil)
	h2b := &backend{name: "h2", ts: h2}
	h2.Config.Handler = h2b.handler(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/chat/proto" {
			_, _ = io.WriteString(w, r.Proto)
			return
		}
		echo(w, r)
	})
	h2.EnableHTTP2 = true
	h2.StartTLS()
	t.Cleanup(h2.Close)
	roots := x509.NewCertPool()
	roots.AddCert(h2.Certificate())
	tlsProxy := newProxy(t, Options{Routes: []Route{{Prefix: "/chat/", Upstreams: []*url.URL{mustURL(t, h2.URL)}}},
		Transport: NewTransport(&tls.Config{RootCAs: roots})})

	cases := []struct {
		name string
		p    *Proxy
		xff  string // what the WebSocket handler sees
	}{
		{"plain upstream", newProxy(t, Options{Routes: []Route{{Prefix: "/chat/", Upstreams: []*url.URL{plain.url(t)}}}}), "127.0.0.1"},
		{"tls http2 upstream", tlsProxy, "127.0.0.1"},
		{"in-process handler", newProxy(t, Options{Routes: []Route{{Prefix: "/chat/", Handler: http.HandlerFunc(echo)}}}), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := serve(t, tc.p)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			host := "elph.example.org"
			dialer := &net.Dialer{}
			hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, network, ts.Listener.Addr().String())
			}}}
			conn, res, err := websocket.Dial(ctx, "ws://"+host+"/chat/ws", &websocket.DialOptions{
				HTTPClient: hc,
				HTTPHeader: http.Header{"Origin": {"https://" + host}, "X-Forwarded-For": {"6.6.6.6"}},
			})
			if err != nil {
				t.Fatalf("dial through proxy: %v (response %v)", err, res)
			}
			defer conn.CloseNow()
			if res.Header.Get("X-Request-Id") == "" || len(res.Header.Values("X-Request-Id")) != 1 {
				t.Errorf("101 response X-Request-Id %q", res.Header.Values("X-Request-Id"))
			}
			for _, msg := range []string{"hello", "again"} {
				if err := conn.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
					t.Fatal(err)
				}
				_, got, err := conn.Read(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if want := tc.xff + " " + msg; string(got) != want {
					t.Fatalf("echo %q, want %q", got, want)
				}
			}
			if err := conn.Close(websocket.StatusNormalClosure, ""); err != nil {
				t.Fatalf("close: %v", err)
			}
			for _, u := range tc.p.ups {
				eventually(t, 2*time.Second, "the tunnel released from in-flight", func() bool { return u.inFlight.Load() == 0 })
			}
		})
	}
	// Requests go over the pool's HTTP/1.1 connections even to an upstream
	// offering h2.
	res, body := get(t, client(t), serve(t, tlsProxy).URL+"/chat/proto")
	if res.StatusCode != 200 || body != "HTTP/1.1" {
		t.Fatalf("TLS upstream request: %d %q, want HTTP/1.1", res.StatusCode, body)
	}
}

func TestWebSocketDrainedOnShutdown(t *testing.T) {
	up := newBackend(t, "up", func(w http.ResponseWriter, r *http.Request) {
		conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer conn.CloseNow()
		_, _, _ = conn.Read(r.Context())
	})
	p := newProxy(t, Options{Routes: []Route{{Prefix: "/", Upstreams: []*url.URL{up.url(t)}}}})
	srv := httpx.NewServer(httpx.ServerOptions{Name: "proxy", Addr: "127.0.0.1:0", Handler: p, ReadHeaderTimeout: time.Second})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+srv.Addr().String()+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	start := time.Now()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a proxied WebSocket: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
	if _, _, err := conn.Read(ctx); err == nil {
		t.Fatal("tunnel still open after shutdown")
	}
}

func TestRetryRules(t *testing.T) {
	getReq, _ := http.NewRequest(http.MethodGet, "/", nil)
	postNoBody, _ := http.NewRequest(http.MethodPost, "/", nil)
	postBody, _ := http.NewRequest(http.MethodPost, "/", io.NopCloser(strings.NewReader("x")))
	postBody.GetBody = nil
	untouched := &reqState{body: &bodyReader{}}
	touched := &reqState{body: &bodyReader{}}
	touched.body.touched.Store(true)
	cases := []struct {
		req  *http.Request
		kind string
		st   *reqState
		want bool
	}{
		{getReq, "dial", &reqState{}, true},
		{getReq, "reset", &reqState{}, true},
		{getReq, "timeout", &reqState{}, false},
		{postNoBody, "dial", &reqState{}, true},
		{postNoBody, "reset", &reqState{}, false},
		{postBody, "dial", untouched, true},
		{postBody, "dial", touched, false},
		{postBody, "reset", untouched, false},
	}
	for i, tc := range cases {
		if got := canRetry(tc.req, tc.kind, tc.st); got != tc.want {
			t.Errorf("case %d: %s %s: canRetry = %v", i, tc.req.Method, tc.kind, got)
		}
	}
}
