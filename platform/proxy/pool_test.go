package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// peers records the connections (by client address) and protocols that
// carried requests to an upstream, health checks aside.
type peers struct {
	mu     sync.Mutex
	addrs  map[string]int
	protos map[string]int
}

func (p *peers) wrap(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		if p.addrs == nil {
			p.addrs, p.protos = map[string]int{}, map[string]int{}
		}
		p.addrs[r.RemoteAddr]++
		p.protos[r.Proto]++
		p.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}
}

func (p *peers) conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.addrs)
}

func (p *peers) onlyProto() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var all []string
	for proto := range p.protos {
		all = append(all, proto)
	}
	return strings.Join(all, ",")
}

func TestPoolKeepsConnections(t *testing.T) {
	for _, tlsUp := range []bool{false, true} {
		name := "plain"
		if tlsUp {
			name = "tls offering h2"
		}
		t.Run(name, func(t *testing.T) {
			var seen peers
			var p *Proxy
			if tlsUp {
				ts := httptest.NewUnstartedServer(nil)
				ts.Config.Handler = (&backend{name: "tls"}).handler(seen.wrap(nil))
				ts.EnableHTTP2 = true
				ts.StartTLS()
				t.Cleanup(ts.Close)
				roots := x509.NewCertPool()
				roots.AddCert(ts.Certificate())
				p = newProxy(t, Options{Routes: []Route{{Prefix: "/", Upstreams: []*url.URL{mustURL(t, ts.URL)}}},
					Transport: NewTransport(&tls.Config{RootCAs: roots}), HealthInterval: time.Hour})
			} else {
				up := newBackend(t, "up", seen.wrap(nil))
				p = newProxy(t, Options{Routes: []Route{{Prefix: "/", Upstreams: []*url.URL{up.url(t)}}}, HealthInterval: time.Hour})
			}
			ts := serve(t, p)
			c := client(t)
			for i := range 30 {
				if res, body := get(t, c, fmt.Sprintf("%s/x/%d", ts.URL, i)); res.StatusCode != 200 || body != "ok" {
					t.Fatalf("request %d: %d %q", i, res.StatusCode, body)
				}
			}
			if n := seen.conns(); n != 1 {
				t.Fatalf("30 requests one after another used %d upstream connections, want 1", n)
			}
			if proto := seen.onlyProto(); proto != "HTTP/1.1" {
				t.Fatalf("upstream saw %s, want HTTP/1.1 only", proto)
			}
			// Eight at a time: at most eight connections, all kept.
			var wg sync.WaitGroup
			errs := make(chan error, 80)
			for range 8 {
				wg.Go(func() {
					for range 10 {
						res, err := c.Get(ts.URL + "/y")
						if err != nil {
							errs <- err
							return
						}
						_, _ = io.Copy(io.Discard, res.Body)
						res.Body.Close()
						if res.StatusCode != 200 {
							errs <- fmt.Errorf("status %d", res.StatusCode)
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if n := seen.conns(); n > 9 {
				t.Fatalf("8 concurrent clients used %d upstream connections", n)
			}
			if n := p.pool.idleCount(p.ups[0]); n < 1 || n > 8 {
				t.Fatalf("%d idle connections after the load, want 1..8", n)
			}
		})
	}
}

// idleRaw is the TCP connection of the pool's only idle connection to u.
func idleRaw(t *testing.T, p *Proxy, u *upstream) net.Conn {
	t.Helper()
	p.pool.mu.Lock()
	defer p.pool.mu.Unlock()
	if len(p.pool.idle[u]) != 1 {
		t.Fatalf("%d idle connections, want 1", len(p.pool.idle[u]))
	}
	return p.pool.idle[u][0].raw
}

func TestPoolStaleConnection(t *testing.T) {
	var seen peers
	var mu sync.Mutex
	var posts []string
	var up *backend
	up = newBackend(t, "up", seen.wrap(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			_, b := up.lastRequest() // the helper has read the body
			body := string(b)
			mu.Lock()
			posts = append(posts, body)
			mu.Unlock()
			_, _ = io.WriteString(w, "posted "+body)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	p := newProxy(t, Options{Routes: []Route{{Prefix: "/", Upstreams: []*url.URL{up.url(t)}}}, HealthInterval: time.Hour})
	ts := serve(t, p)
	c := client(t)
	u := p.ups[0]

	// The upstream drops its idle connections (a restart, its idle
	// timeout): an idempotent request is repeated on a fresh connection.
	get(t, c, ts.URL+"/a")
	raw := idleRaw(t, p, u)
	if closedByPeer(raw) {
		t.Fatal("an open idle connection looks closed")
	}
	up.ts.CloseClientConnections()
	eventually(t, 2*time.Second, "the close seen on the idle connection", func() bool { return closedByPeer(raw) })
	if res, body := get(t, c, ts.URL+"/b"); res.StatusCode != 200 || body != "ok" {
		t.Fatalf("GET after the upstream closed the idle connection: %d %q", res.StatusCode, body)
	}

	// A POST is never repeated: it looks at the connection first.
	raw = idleRaw(t, p, u)
	up.ts.CloseClientConnections()
	eventually(t, 2*time.Second, "the close seen on the idle connection", func() bool { return closedByPeer(raw) })
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/send", strings.NewReader("hello"))
	if res, body := do(t, c, req); res.StatusCode != 200 || body != "posted hello" {
		t.Fatalf("POST after the upstream closed the idle connection: %d %q", res.StatusCode, body)
	}
	mu.Lock()
	if len(posts) != 1 || posts[0] != "hello" {
		t.Fatalf("upstream got the POST %d times: %q", len(posts), posts)
	}
	mu.Unlock()
	if !u.healthy.Load() {
		t.Fatal("a stale kept-alive connection marked the upstream down")
	}
	if n := seen.conns(); n != 3 {
		t.Fatalf("%d upstream connections, want 3 (one per close)", n)
	}
}

func TestPoolAbandonedDownload(t *testing.T) {
	gone := make(chan struct{}, 1)
	var seen peers
	up := newBackend(t, "up", seen.wrap(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/endless" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		w.Header().Set("Content-Length", "1099511627776") // 1 TiB, never finished
		chunk := make([]byte, 64<<10)
		for {
			if _, err := w.Write(chunk); err != nil {
				break
			}
		}
		gone <- struct{}{}
	}))
	p := newProxy(t, Options{Routes: []Route{{Prefix: "/", Upstreams: []*url.URL{up.url(t)}}}, HealthInterval: time.Hour})
	ts := serve(t, p)
	c := client(t)
	res, err := c.Get(ts.URL + "/endless")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(res.Body, make([]byte, 256<<10)); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	c.CloseIdleConnections()
	// The proxy closes the upstream connection rather than reading a
	// terabyte to keep it.
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream kept sending after the client left")
	}
	eventually(t, 2*time.Second, "no idle connection kept", func() bool { return p.pool.idleCount(p.ups[0]) == 0 })
	if res, body := get(t, c, ts.URL+"/next"); res.StatusCode != 200 || body != "ok" {
		t.Fatalf("next request: %d %q", res.StatusCode, body)
	}
	if n := seen.conns(); n != 2 {
		t.Fatalf("%d upstream connections, want 2", n)
	}
}

func TestPoolAnswers(t *testing.T) {
	var seen peers
	up := newBackend(t, "up", seen.wrap(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hints":
			w.Header().Set("Link", "</app.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			_, _ = io.WriteString(w, "final")
		case "/chunked":
			w.Header().Set("Trailer", "X-Sum")
			for i := range 3 {
				fmt.Fprintf(w, "part%d;", i)
				http.NewResponseController(w).Flush()
			}
			w.Header().Set("X-Sum", "3")
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		default:
			_, _ = io.WriteString(w, "ok")
		}
	}))
	p := newProxy(t, Options{Routes: []Route{{Prefix: "/", Upstreams: []*url.URL{up.url(t)}}}, HealthInterval: time.Hour})
	ts := serve(t, p)
	c := client(t)

	res, body := get(t, c, ts.URL+"/hints")
	if res.StatusCode != 200 || body != "final" {
		t.Fatalf("after 103: %d %q", res.StatusCode, body)
	}
	res, body = get(t, c, ts.URL+"/chunked")
	if res.StatusCode != 200 || body != "part0;part1;part2;" || res.Trailer.Get("X-Sum") != "3" {
		t.Fatalf("chunked: %d %q trailer %q", res.StatusCode, body, res.Trailer)
	}
	res, body = get(t, c, ts.URL+"/empty")
	if res.StatusCode != http.StatusNoContent || body != "" {
		t.Fatalf("204: %d %q", res.StatusCode, body)
	}
	req, _ := http.NewRequest(http.MethodHead, ts.URL+"/x", nil)
	if res, _ := do(t, c, req); res.StatusCode != 200 {
		t.Fatalf("HEAD: %d", res.StatusCode)
	}
	if n := seen.conns(); n != 1 {
		t.Fatalf("%d upstream connections for 4 answers, want 1", n)
	}
}

func TestPoolConnectionClose(t *testing.T) {
	var seen peers
	up := newBackend(t, "up", seen.wrap(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "bye")
	}))
	p := newProxy(t, Options{Routes: []Route{{Prefix: "/", Upstreams: []*url.URL{up.url(t)}}}, HealthInterval: time.Hour})
	ts := serve(t, p)
	c := client(t)
	for range 3 {
		if res, body := get(t, c, ts.URL+"/x"); res.StatusCode != 200 || body != "bye" {
			t.Fatalf("%d %q", res.StatusCode, body)
		}
	}
	if n := seen.conns(); n != 3 {
		t.Fatalf("%d upstream connections, want 3 (each closed by the upstream)", n)
	}
	if n := p.pool.idleCount(p.ups[0]); n != 0 {
		t.Fatalf("%d idle connections kept after Connection: close", n)
	}
}

func TestPoolClientLeaves(t *testing.T) {
	cancelled := make(chan struct{}, 1)
	up := newBackend(t, "up", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		cancelled <- struct{}{}
	})
	p := newProxy(t, Options{Routes: []Route{{Prefix: "/", Upstreams: []*url.URL{up.url(t)}}}, HealthInterval: time.Hour})
	ts := serve(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/wait", nil)
	if _, err := client(t).Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("client error %v", err)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request went on after the client left")
	}
	if !p.ups[0].healthy.Load() {
		t.Fatal("a client leaving marked the upstream down")
	}
}

// rawUpstream answers every request but /livez with answer, written as is.
func rawUpstream(t *testing.T, answer func(w io.Writer)) *url.URL { return rawUpstreamB(t, answer) }

func rawUpstreamB(t testing.TB, answer func(w io.Writer)) *url.URL {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if req.URL.Path == "/livez" {
						_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
						continue
					}
					answer(conn)
				}
			}()
		}
	}()
	return mustURL(t, "http://"+ln.Addr().String())
}

func TestPoolBadAnswers(t *testing.T) {
	cases := []struct {
		name   string
		answer func(w io.Writer)
	}{
		{"head larger than 1 MiB", func(w io.Writer) {
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nX-Big: %s\r\nContent-Length: 0\r\n\r\n", strings.Repeat("a", 2<<20))
		}},
		{"endless informational answers", func(w io.Writer) {
			for range 20 {
				_, _ = io.WriteString(w, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
			}
		}},
		{"not HTTP", func(w io.Writer) { _, _ = io.WriteString(w, "SSH-2.0-OpenSSH\r\n\r\n") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newProxy(t, Options{Routes: []Route{{Prefix: "/", Upstreams: []*url.URL{rawUpstream(t, tc.answer)}}}, HealthInterval: time.Hour})
			res, body := get(t, client(t), serve(t, p).URL+"/x")
			if res.StatusCode != http.StatusBadGateway || errorCode(t, body) != CodeBadGateway {
				t.Fatalf("%d %q, want 502", res.StatusCode, body)
			}
		})
	}
}

func TestPoolIdleLimits(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 5)
	up := newBackend(t, "up", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			arrived <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	})
	var skew atomic.Int64 // the clock's offset
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	tr := NewTransport(nil)
	tr.MaxIdleConnsPerHost = 2
	tr.IdleConnTimeout = time.Minute
	p := newProxy(t, Options{Routes: []Route{{Prefix: "/", Upstreams: []*url.URL{up.url(t)}}}, Transport: tr, HealthInterval: time.Hour, Now: now})
	ts := serve(t, p)
	c := client(t)
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() { get(t, c, ts.URL+"/hold") })
	}
	for range 5 {
		<-arrived
	}
	close(release)
	wg.Wait()
	if n := p.pool.idleCount(p.ups[0]); n != 2 {
		t.Fatalf("%d idle connections after 5 at once, want the limit 2", n)
	}
	// Past the idle timeout a connection is neither kept nor used.
	skew.Store(int64(2 * time.Minute))
	p.pool.prune()
	if n := p.pool.idleCount(p.ups[0]); n != 0 {
		t.Fatalf("%d idle connections kept past the idle timeout", n)
	}
	get(t, c, ts.URL+"/x")
	skew.Store(int64(4 * time.Minute))
	if pc := p.pool.get(p.ups[0]); pc != nil {
		t.Fatal("get returned a connection idle past the timeout")
	}
}

func TestPoolResumesTLSSessions(t *testing.T) {
	var mu sync.Mutex
	resumed := map[bool]int{}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/x" { // health checks use the Transport
			mu.Lock()
			resumed[r.TLS.DidResume]++
			mu.Unlock()
		}
		w.Header().Set("Connection", "close") // every request on a new connection
		_, _ = io.WriteString(w, "ok")
	}))
	ts.StartTLS()
	t.Cleanup(ts.Close)
	roots := x509.NewCertPool()
	roots.AddCert(ts.Certificate())
	p := newProxy(t, Options{Routes: []Route{{Prefix: "/", Upstreams: []*url.URL{mustURL(t, ts.URL)}}},
		Transport: NewTransport(&tls.Config{RootCAs: roots}), HealthInterval: time.Hour})
	px := serve(t, p)
	c := client(t)
	for range 4 {
		if res, body := get(t, c, px.URL+"/x"); res.StatusCode != 200 || body != "ok" {
			t.Fatalf("%d %q", res.StatusCode, body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if resumed[false] != 1 || resumed[true] != 3 {
		t.Fatalf("full handshakes %d, resumed %d; want 1 and 3", resumed[false], resumed[true])
	}
}
