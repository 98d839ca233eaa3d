package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestNewValidates(t *testing.T) {
	h := http.NotFoundHandler()
	up := mustURL(t, "http://10.0.0.5:8443")
	cases := []struct {
		name  string
		o     Options
		wants []string // every one must appear in the error; none: no error
	}{
		{"ok", Options{Routes: []Route{{Prefix: "/", Handler: h}, {Prefix: "/chat/", Upstreams: []*url.URL{up, mustURL(t, "https://b:1/")}}}}, nil},
		{"no routes", Options{}, []string{"no routes"}},
		{"prefix without slashes", Options{Routes: []Route{{Prefix: "chat", Handler: h}}}, []string{"start and end with /"}},
		{"prefix without trailing slash", Options{Routes: []Route{{Prefix: "/chat", Handler: h}}}, []string{"start and end with /"}},
		{"unclean prefix", Options{Routes: []Route{{Prefix: "/a/../b/", Handler: h}, {Prefix: "//", Handler: h}}}, []string{`route 0 ("/a/../b/")`, `route 1 ("//")`, "clean path"}},
		{"duplicate prefix", Options{Routes: []Route{{Prefix: "/x/", Handler: h}, {Prefix: "/x/", Handler: h}}}, []string{"duplicate prefix"}},
		{"both targets", Options{Routes: []Route{{Prefix: "/", Handler: h, Upstreams: []*url.URL{up}}}}, []string{"exactly one"}},
		{"no target", Options{Routes: []Route{{Prefix: "/"}}}, []string{"exactly one"}},
		{"bad upstreams", Options{Routes: []Route{{Prefix: "/", Upstreams: []*url.URL{
			nil, mustURL(t, "ftp://a"), mustURL(t, "/relative"), mustURL(t, "http:///"), mustURL(t, "http://a/api"),
			mustURL(t, "http://u:p@a"), mustURL(t, "http://a/?q=1"), mustURL(t, "http://a:"),
		}}}}, []string{"missing URL", "scheme must be http or https", "absolute URL", "path beyond /", "user info", "query", "empty port"}},
		{"duplicate upstream", Options{Routes: []Route{{Prefix: "/", Upstreams: []*url.URL{up, mustURL(t, "HTTP://10.0.0.5:8443/")}}}}, []string{"listed twice"}},
		{"negative limits", Options{Routes: []Route{{Prefix: "/", Handler: h, MaxBodyBytes: -1}}, MaxBodyBytes: -1, PerIPRate: -1, PerIPConnections: -1, HealthInterval: -1, HealthPath: "livez"},
			[]string{"route 0", "max body bytes", "per-IP rate", "per-IP connections", "health interval", "health path"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.o)
			if len(tc.wants) == 0 {
				if err != nil || p == nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("New accepted invalid options")
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestRouting(t *testing.T) {
	chat := newBackend(t, "chat", nil)
	web := newBackend(t, "web", nil)
	local := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "local "+r.URL.Path)
	})
	withRoot := newProxy(t, Options{Routes: []Route{
		{Prefix: "/", Upstreams: []*url.URL{web.url(t)}},
		{Prefix: "/chat/", Upstreams: []*url.URL{chat.url(t)}},
		{Prefix: "/chat/admin/", Handler: local},
		{Prefix: "/files/", Handler: local},
	}})
	noRoot := newProxy(t, Options{Routes: []Route{{Prefix: "/chat/", Upstreams: []*url.URL{chat.url(t)}}}})

	cases := []struct {
		name   string
		p      *Proxy
		target string
		status int
		body   string // exact body, or the error code for an error
	}{
		{"prefix", withRoot, "/chat/messages?x=1", 200, "chat"},
		{"prefix itself", withRoot, "/chat/", 200, "chat"},
		{"prefix without slash", withRoot, "/chat", 200, "chat"},
		{"longest prefix wins", withRoot, "/chat/admin/users", 200, "local /chat/admin/users"},
		{"longer prefix without slash", withRoot, "/chat/admin", 200, "local /chat/admin"},
		{"not a segment match", withRoot, "/chatter", 200, "web"},
		{"root", withRoot, "/index.html", 200, "web"},
		{"local handler", withRoot, "/files/a.txt", 200, "local /files/a.txt"},
		{"no route", noRoot, "/other", 404, "not_found"},
		{"dot segment", withRoot, "/files/../chat/x", 400, "bad_request"},
		{"encoded dot segment", withRoot, "/files/%2e%2e/chat/x", 400, "bad_request"},
		{"dot segment at end", withRoot, "/chat/..", 400, "bad_request"},
		{"dots in a name are fine", withRoot, "/files/a..b", 200, "local /files/a..b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "http://elph.test"+tc.target, nil)
			w := httptest.NewRecorder()
			tc.p.ServeHTTP(w, req)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d (body %q)", w.Code, tc.status, w.Body)
			}
			if tc.status >= 400 {
				if got := errorCode(t, w.Body.String()); got != tc.body {
					t.Fatalf("error code %q, want %q", got, tc.body)
				}
				if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Fatalf("content type %q", ct)
				}
				return
			}
			if w.Body.String() != tc.body {
				t.Fatalf("body %q, want %q", w.Body, tc.body)
			}
		})
	}
	if req, _ := chat.lastRequest(); req.URL.Path != "/chat" || req.Host != "elph.test" {
		t.Fatalf("upstream got path %q host %q: the path and host must pass unchanged", req.URL.Path, req.Host)
	}
}

func TestMatchPrefersLongest(t *testing.T) {
	h := http.NotFoundHandler()
	p, err := New(Options{Routes: []Route{{Prefix: "/a/", Handler: h}, {Prefix: "/a/b/c/", Handler: h}, {Prefix: "/", Handler: h}, {Prefix: "/a/b/", Handler: h}}})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/a/b/c/d": "/a/b/c/", "/a/b/c": "/a/b/c/", "/a/b/x": "/a/b/", "/a/b": "/a/b/",
		"/a/bc": "/a/", "/a": "/a/", "/ab": "/", "/": "/",
	} {
		if got := p.match(path); got == nil || got.prefix != want {
			t.Errorf("match(%q) = %v, want %q", path, got, want)
		}
	}
}

func TestRequestID(t *testing.T) {
	up := newBackend(t, "up", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", r.Header.Get("X-Request-Id"))
		_, _ = io.WriteString(w, r.Header.Get("X-Request-Id"))
	})
	var localID string
	p := newProxy(t, Options{Routes: []Route{
		{Prefix: "/", Upstreams: []*url.URL{up.url(t)}},
		{Prefix: "/local/", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { localID = r.Header.Get("X-Request-Id") })},
	}})
	ts := serve(t, p)
	c := client(t)

	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/x", nil)
	req.Header.Set("X-Request-Id", "abc-123")
	res, body := do(t, c, req)
	if body != "abc-123" || len(res.Header.Values("X-Request-Id")) != 1 || res.Header.Get("X-Request-Id") != "abc-123" {
		t.Fatalf("well-formed id not kept: upstream saw %q, client got %q", body, res.Header.Values("X-Request-Id"))
	}
	req, _ = http.NewRequest(http.MethodGet, ts.URL+"/x", nil)
	req.Header.Set("X-Request-Id", "bad id with spaces")
	res, body = do(t, c, req)
	if body == "" || body == "bad id with spaces" || res.Header.Get("X-Request-Id") != body {
		t.Fatalf("malformed id not replaced: upstream saw %q, client got %q", body, res.Header.Get("X-Request-Id"))
	}
	res, _ = get(t, c, ts.URL+"/local/y")
	if localID == "" || res.Header.Get("X-Request-Id") != localID {
		t.Fatalf("local handler saw id %q, client got %q", localID, res.Header.Get("X-Request-Id"))
	}
}

func TestForwardedHeaders(t *testing.T) {
	type seen struct{ xff, proto, host, fwd, realIP, hostHeader string }
	var got seen
	record := func(r *http.Request) {
		got = seen{r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"),
			r.Header.Get("Forwarded"), r.Header.Get("X-Real-Ip"), r.Host}
	}
	up := newBackend(t, "up", func(w http.ResponseWriter, r *http.Request) { record(r) })
	local := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { record(r) })
	routes := []Route{{Prefix: "/", Upstreams: []*url.URL{up.url(t)}}, {Prefix: "/local/", Handler: local}}
	untrusted := serve(t, newProxy(t, Options{Routes: routes, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}))
	trusted := serve(t, newProxy(t, Options{Routes: routes, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}))

	spoof := map[string]string{
		"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example",
		"Forwarded": "for=6.6.6.6", "X-Real-Ip": "6.6.6.6",
	}
	cases := []struct {
		name string
		base string
		path string
		want seen
	}{
		{"untrusted peer: spoofed headers replaced", untrusted.URL, "/x",
			seen{xff: "127.0.0.1", proto: "http", host: "elph.example.org", hostHeader: "elph.example.org"}},
		{"trusted peer: chain extended, proto and host kept", trusted.URL, "/x",
			seen{xff: "6.6.6.6, 127.0.0.1", proto: "https", host: "evil.example", realIP: "6.6.6.6", hostHeader: "elph.example.org"}},
		{"untrusted peer, local handler: spoofed headers removed", untrusted.URL, "/local/x",
			seen{hostHeader: "elph.example.org"}},
		{"trusted peer, local handler: headers kept", trusted.URL, "/local/x",
			seen{xff: "6.6.6.6", proto: "https", host: "evil.example", fwd: "for=6.6.6.6", realIP: "6.6.6.6", hostHeader: "elph.example.org"}},
	}
	c := client(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, tc.base+tc.path, nil)
			req.Host = "elph.example.org"
			for k, v := range spoof {
				req.Header.Set(k, v)
			}
			res, _ := do(t, c, req)
			if res.StatusCode != 200 {
				t.Fatalf("status %d", res.StatusCode)
			}
			if got != tc.want {
				t.Fatalf("upstream saw %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestHopByHopHeaders(t *testing.T) {
	var hdr http.Header
	up := newBackend(t, "up", func(w http.ResponseWriter, r *http.Request) {
		hdr = r.Header.Clone()
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Proxy-Authenticate", "Basic")
		w.Header().Set("X-End-To-End", "yes")
	})
	ts := serve(t, newProxy(t, Options{Routes: []Route{{Prefix: "/", Upstreams: []*url.URL{up.url(t)}, MaxBodyBytes: 1 << 20}}}))
	// A request without a body is written by the proxy itself; one with a
	// streaming body goes through httputil.ReverseProxy: the same rules.
	for _, streamed := range []bool{false, true} {
		t.Run(fmt.Sprintf("streamed body %v", streamed), func(t *testing.T) {
			hopByHop(t, ts.URL, streamed, func() http.Header { return hdr })
		})
	}
}

func hopByHop(t *testing.T, base string, streamed bool, upstreamSaw func() http.Header) {
	req, _ := http.NewRequest(http.MethodGet, base+"/x", nil)
	if streamed {
		req, _ = http.NewRequest(http.MethodPost, base+"/x", strings.NewReader(strings.Repeat("b", 100<<10)))
	}
	req.Header.Set("Connection", "X-Hop, keep-alive")
	req.Header.Set("X-Hop", "1")
	req.Header.Set("Keep-Alive", "timeout=5")
	req.Header.Set("Proxy-Authorization", "Basic eDp5")
	req.Header.Set("Proxy-Connection", "keep-alive")
	req.Header.Set("Upgrade", "h2c") // without Connection: Upgrade it is just a hop header
	req.Header.Set("X-End-To-End", "yes")
	res, _ := do(t, client(t), req)
	hdr := upstreamSaw()
	for _, h := range []string{"X-Hop", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Upgrade"} {
		if v := hdr.Get(h); v != "" {
			t.Errorf("upstream got hop-by-hop %s: %q", h, v)
		}
	}
	if c := hdr.Get("Connection"); c != "" {
		t.Errorf("upstream got Connection %q", c)
	}
	if hdr.Get("X-End-To-End") != "yes" || res.Header.Get("X-End-To-End") != "yes" {
		t.Error("end-to-end header lost")
	}
	for _, h := range []string{"X-Resp-Hop", "Keep-Alive", "Proxy-Authenticate"} {
		if v := res.Header.Get(h); v != "" {
			t.Errorf("client got hop-by-hop %s: %q", h, v)
		}
	}
}

func TestAccessLogAndMetrics(t *testing.T) {
	up := newBackend(t, "up", nil)
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	p := newProxy(t, Options{Routes: []Route{{Prefix: "/chat/", Upstreams: []*url.URL{up.url(t)}}}, Log: jsonLogger(&logs), Metrics: reg})
	ts := serve(t, p)
	c := client(t)
	get(t, c, ts.URL+"/chat/ws?access_token=s3cr3t&x=1&Token=t0k")
	get(t, c, ts.URL+"/nowhere")

	out := logs.String()
	for _, secret := range []string{"s3cr3t", "t0k", "access_token"} {
		if strings.Contains(out, secret) {
			t.Fatalf("access log leaks %q: %s", secret, out)
		}
	}
	for _, want := range []string{`"msg":"proxy request"`, `"path":"/chat/ws"`, `"query":"x=1"`, `"status":200`, `"upstream":"` + up.ts.URL + `"`, `"client_ip":"127.0.0.1"`, `"prefix":"/chat/"`, `"status":404`, `"bytes":`, `"duration_ms":`, `"request_id":`} {
		if !strings.Contains(out, want) {
			t.Errorf("access log lacks %s:\n%s", want, out)
		}
	}
	if v := metricValue(t, reg, "elph_proxy_requests_total", map[string]string{"prefix": "/chat/", "code": "2xx"}); v != 1 {
		t.Errorf("requests /chat/ 2xx = %v", v)
	}
	if v := metricValue(t, reg, "elph_proxy_requests_total", map[string]string{"prefix": "unmatched", "code": "4xx"}); v != 1 {
		t.Errorf("requests unmatched 4xx = %v", v)
	}
	if v := metricValue(t, reg, "elph_proxy_request_duration_seconds", map[string]string{"prefix": "/chat/"}); v != 1 {
		t.Errorf("duration count = %v", v)
	}
	if v := metricValue(t, reg, "elph_proxy_upstream_healthy", map[string]string{"upstream": up.ts.URL}); v != 1 {
		t.Errorf("healthy = %v", v)
	}
	// A second proxy on the same registry (a reload) shares the series.
	if _, err := New(Options{Routes: []Route{{Prefix: "/", Handler: http.NotFoundHandler()}}, Metrics: reg}); err != nil {
		t.Fatalf("second proxy on one registry: %v", err)
	}
}

func TestLoggedQuery(t *testing.T) {
	cases := map[string]string{
		"":                                   "",
		"a=1&b=2":                            "a=1&b=2",
		"access_token=x":                     "",
		"ACCESS_TOKEN=x&page=2":              "page=2",
		"code=abc&state=s":                   "state=s",
		"X-Amz-Signature=abc&X-Amz-Expires=": "X-Amz-Expires=",
		"bad=%zz&access_token=x":             "",
	}
	for in, want := range cases {
		if got := loggedQuery(in); got != want {
			t.Errorf("loggedQuery(%q) = %q, want %q", in, got, want)
		}
	}
}
