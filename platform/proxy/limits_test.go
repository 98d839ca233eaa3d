package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/platform/httpx"
)

func TestBodyLimit(t *testing.T) {
	up := newBackend(t, "up", func(w http.ResponseWriter, r *http.Request) {})
	local := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			var maxErr *http.MaxBytesError
			if errors.As(err, &maxErr) {
				httpx.WriteError(w, r, httpx.Errorf(http.StatusRequestEntityTooLarge, httpx.CodePayloadTooLarge, "too large"))
				return
			}
			t.Errorf("local handler read: %v", err)
		}
	})
	reg := prometheus.NewRegistry()
	const limit, bigLimit = 1024, 2 << 20
	p := newProxy(t, Options{Routes: []Route{
		{Prefix: "/", Upstreams: []*url.URL{up.url(t)}},
		{Prefix: "/files/", Upstreams: []*url.URL{up.url(t)}, MaxBodyBytes: bigLimit},
		{Prefix: "/local/", Handler: local},
	}, MaxBodyBytes: limit, Metrics: reg})
	ts := serve(t, p)
	c := client(t)

	cases := []struct {
		name    string
		path    string
		size    int
		chunked bool
		status  int
		reaches bool // whether the upstream handler runs at all
	}{
		{"length within limit", "/x", limit, false, 200, true},
		{"length over limit", "/x", limit + 1, false, 413, false},
		{"chunked within limit", "/x", 500, true, 200, true},
		{"chunked over limit", "/x", limit + 1, true, 413, false},
		{"upload route allows more", "/files/up", 64 << 10, false, 200, true},
		{"upload route chunked within its limit", "/files/up", 64 << 10, true, 200, true},
		{"upload route length over its limit", "/files/up", bigLimit + 1, false, 413, false},
		{"upload route chunked over its limit", "/files/up", bigLimit + 1, true, 413, true},
		{"local length over limit", "/local/x", limit + 1, false, 413, false},
		{"local chunked over limit", "/local/x", limit + 1, true, 413, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := up.hits.Load()
			payload := bytes.Repeat([]byte("x"), tc.size)
			var body io.Reader = bytes.NewReader(payload)
			if tc.chunked {
				body = io.MultiReader(body) // unknown length: sent chunked
			}
			req, _ := http.NewRequest(http.MethodPost, ts.URL+tc.path, body)
			res, rbody := do(t, c, req)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%q)", res.StatusCode, tc.status, rbody)
			}
			if tc.status == 413 && errorCode(t, rbody) != httpx.CodePayloadTooLarge {
				t.Fatalf("body %q", rbody)
			}
			hits := up.hits.Load() - before
			if tc.path == "/local/x" {
				return
			}
			if !tc.reaches && hits != 0 {
				t.Fatalf("the upstream saw a request that was refused")
			}
			got, gotBody := up.lastRequest()
			if tc.status == 200 {
				if len(gotBody) != tc.size {
					t.Fatalf("upstream got %d bytes, want %d", len(gotBody), tc.size)
				}
				if tc.chunked && tc.path == "/x" && got.ContentLength != int64(tc.size) {
					t.Fatalf("read-ahead body sent with length %d", got.ContentLength)
				}
			}
			if tc.status == 413 && hits > 0 && len(gotBody) > tc.size-1 {
				t.Fatalf("the upstream got the whole oversized body (%d bytes)", len(gotBody))
			}
		})
	}
	if v := metricValue(t, reg, "elph_proxy_rejected_total", map[string]string{"reason": "body_too_large"}); v < 5 {
		t.Fatalf("rejected body_too_large = %v", v)
	}
}

// rawRequest writes head to a new connection to addr, then feeds body one
// piece every interval, and returns what the server answered and when the
// connection was closed.
func rawRequest(t *testing.T, addr, head string, body []string, interval time.Duration) (answer string, closedAfter time.Duration) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := io.WriteString(conn, head); err != nil {
			return
		}
		for _, piece := range body {
			select {
			case <-stop:
				return
			case <-time.After(interval):
			}
			if _, err := io.WriteString(conn, piece); err != nil {
				return
			}
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(conn)
	closedAfter = time.Since(start)
	close(stop)
	wg.Wait()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v (got %q)", closedAfter, got)
	}
	return string(got), closedAfter
}

func trickle(piece string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = piece
	}
	return out
}

func TestSlowBodyCut(t *testing.T) {
	up := newBackend(t, "up", func(w http.ResponseWriter, r *http.Request) {})
	local := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "slow", http.StatusRequestTimeout)
		}
	})
	reg := prometheus.NewRegistry()
	const timeout = 300 * time.Millisecond
	p := newProxy(t, Options{Routes: []Route{
		{Prefix: "/", Upstreams: []*url.URL{up.url(t)}},
		{Prefix: "/files/", Upstreams: []*url.URL{up.url(t)}, MaxBodyBytes: 4 << 20},
		{Prefix: "/local/", Handler: local},
	}, BodyReadTimeout: timeout, Metrics: reg})
	ts := serve(t, p)
	addr := ts.Listener.Addr().String()

	cases := []struct {
		name string
		head string
		body []string
	}{
		{"length, streamed upstream", "POST /files/x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n", trickle("a", 100)},
		{"chunked, read ahead", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", trickle("1\r\na\r\n", 100)},
		{"length, local handler", "POST /local/x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n", trickle("a", 100)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			answer, after := rawRequest(t, addr, tc.head, tc.body, 30*time.Millisecond)
			if after < timeout-50*time.Millisecond || after > timeout+time.Second {
				t.Fatalf("connection closed after %v, want about %v", after, timeout)
			}
			if !strings.HasPrefix(answer, "HTTP/1.1 408") {
				t.Fatalf("answer %q, want 408", answer)
			}
		})
	}
	if v := metricValue(t, reg, "elph_proxy_rejected_total", map[string]string{"reason": "body_timeout"}); v != 2 {
		t.Fatalf("rejected body_timeout = %v, want 2 (the local handler answers its own)", v)
	}
}

// slowReader hands out its data a piece at a time with a pause before each.
type slowReader struct {
	data  []byte
	piece int
	pause time.Duration
}

func (s *slowReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	time.Sleep(s.pause)
	n := copy(p[:min(len(p), s.piece)], s.data)
	s.data = s.data[n:]
	return n, nil
}

func TestSteadyBodyOutlastsTimeout(t *testing.T) {
	up := newBackend(t, "up", func(w http.ResponseWriter, r *http.Request) {})
	p := newProxy(t, Options{Routes: []Route{{Prefix: "/", Upstreams: []*url.URL{up.url(t)}, MaxBodyBytes: 4 << 20}},
		BodyReadTimeout: 200 * time.Millisecond, MinBodyRate: 16 << 10})
	ts := serve(t, p)
	const size = 16 << 10
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/upload", &slowReader{data: bytes.Repeat([]byte("u"), size), piece: 2 << 10, pause: 40 * time.Millisecond})
	req.ContentLength = size
	start := time.Now()
	res, body := do(t, client(t), req)
	if res.StatusCode != 200 {
		t.Fatalf("status %d %q after %v", res.StatusCode, body, time.Since(start))
	}
	if time.Since(start) < 200*time.Millisecond {
		t.Fatalf("upload took %v: not longer than the timeout, the test proves nothing", time.Since(start))
	}
	if _, got := up.lastRequest(); len(got) != size {
		t.Fatalf("upstream got %d bytes", len(got))
	}
}

func TestSlowHeadersRejected(t *testing.T) {
	up := newBackend(t, "up", nil)
	p := newProxy(t, Options{Routes: []Route{{Prefix: "/", Upstreams: []*url.URL{up.url(t)}}}})
	const timeout = 300 * time.Millisecond
	srv := httpx.NewServer(httpx.ServerOptions{Name: "proxy", Addr: "127.0.0.1:0", Handler: p, ReadHeaderTimeout: timeout})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(t.Context()) })

	head := "GET /x HTTP/1.1\r\nHost: elph.test\r\nUser-Agent: slowloris\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n"
	pieces := strings.Split(head, "")
	_, after := rawRequest(t, srv.Addr().String(), pieces[0], pieces[1:], 20*time.Millisecond)
	if after > timeout+time.Second {
		t.Fatalf("slow headers kept the connection for %v", after)
	}
	if up.hits.Load() != 0 {
		t.Fatal("a request with slow headers reached the upstream")
	}
	// A normal request still works.
	res, body := get(t, client(t), "http://"+srv.Addr().String()+"/x")
	if res.StatusCode != 200 || body != "up" {
		t.Fatalf("normal request: %d %q", res.StatusCode, body)
	}
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestRateLimit(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	reg := prometheus.NewRegistry()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	p := newProxy(t, Options{Routes: []Route{{Prefix: "/", Handler: ok}}, PerIPRate: 1, PerIPBurst: 2, Now: clock.Now,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Metrics: reg})

	steps := []struct {
		name    string
		remote  string
		xff     string
		advance time.Duration
		status  int
	}{
		{"first", "192.0.2.1:1000", "", 0, 200},
		{"burst", "192.0.2.1:1001", "", 0, 200},
		{"over the burst", "192.0.2.1:1002", "", 0, 429},
		{"spoofed XFF from an untrusted peer changes nothing", "192.0.2.1:1003", "198.51.100.9", 0, 429},
		{"another client", "192.0.2.2:1000", "", 0, 200},
		{"a token later", "192.0.2.1:1004", "", time.Second, 200},
		{"and empty again", "192.0.2.1:1005", "", 0, 429},
		{"behind a trusted proxy: the client counts", "10.1.1.1:1000", "198.51.100.7", 0, 200},
		{"same client", "10.1.1.1:1001", "198.51.100.7", 0, 200},
		{"same client over", "10.2.2.2:1000", "198.51.100.7", 0, 429},
		{"another client behind the proxy", "10.1.1.1:1002", "198.51.100.8", 0, 200},
		{"IPv6 by /64", "[2001:db8::1]:1000", "", 0, 200},
		{"IPv6 same /64", "[2001:db8::2]:1000", "", 0, 200},
		{"IPv6 same /64 over", "[2001:db8::3]:1000", "", 0, 429},
		{"IPv6 other /64", "[2001:db8:0:1::1]:1000", "", 0, 200},
	}
	for _, s := range steps {
		clock.Advance(s.advance)
		req := httptest.NewRequest(http.MethodGet, "/x", nil)
		req.RemoteAddr = s.remote
		if s.xff != "" {
			req.Header.Set("X-Forwarded-For", s.xff)
		}
		w := httptest.NewRecorder()
		p.ServeHTTP(w, req)
		if w.Code != s.status {
			t.Fatalf("%s: status %d, want %d", s.name, w.Code, s.status)
		}
		if s.status == 429 {
			if errorCode(t, w.Body.String()) != httpx.CodeRateLimited || w.Header().Get("Retry-After") != "1" {
				t.Fatalf("%s: %q Retry-After %q", s.name, w.Body, w.Header().Get("Retry-After"))
			}
		}
	}
	if v := metricValue(t, reg, "elph_proxy_rejected_total", map[string]string{"reason": "rate"}); v != 5 {
		t.Fatalf("rejected rate = %v", v)
	}
}

func TestRateLimiterForgetsIdleClients(t *testing.T) {
	l := newRateLimiter(10, 5)
	now := time.Unix(0, 0)
	for i := range 100 {
		l.allow(limitKey(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})), now)
	}
	if len(l.buckets) != 100 {
		t.Fatalf("%d buckets", len(l.buckets))
	}
	l.allow(limitKey(netip.MustParseAddr("198.51.100.1")), now.Add(2*time.Minute))
	if len(l.buckets) != 1 {
		t.Fatalf("%d buckets after the sweep, want 1", len(l.buckets))
	}
}

func TestConnectionLimit(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := newProxy(t, Options{Routes: []Route{{Prefix: "/", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})}}, PerIPConnections: 2, Metrics: reg})
	ts := httptest.NewUnstartedServer(p)
	ts.Listener = p.LimitListener(ts.Listener)
	ts.Start()
	t.Cleanup(ts.Close)
	addr := ts.Listener.Addr().String()

	// open dials from local and makes one request; it reports whether the
	// connection was served.
	open := func(local string) (net.Conn, bool) {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		conn, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial from %s: %v", local, err)
		}
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := io.WriteString(conn, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
			conn.Close()
			return nil, false
		}
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			conn.Close()
			return nil, false
		}
		res.Body.Close()
		return conn, res.StatusCode == 200
	}
	c1, ok1 := open("127.0.0.1")
	c2, ok2 := open("127.0.0.1")
	if !ok1 || !ok2 {
		t.Fatal("connections within the limit refused")
	}
	defer c2.Close()
	if c, ok := open("127.0.0.1"); ok {
		c.Close()
		t.Fatal("a third connection from one IP was served")
	}
	c4, ok := open("127.0.0.2")
	if !ok {
		t.Skip("cannot use 127.0.0.2 as a second client address here")
	}
	c4.Close()
	c1.Close()
	eventually(t, 3*time.Second, "a slot freed by a closed connection", func() bool {
		c, ok := open("127.0.0.1")
		if ok {
			c.Close()
		}
		return ok
	})
	if v := metricValue(t, reg, "elph_proxy_rejected_total", map[string]string{"reason": "connections"}); v < 1 {
		t.Fatalf("rejected connections = %v", v)
	}
}
