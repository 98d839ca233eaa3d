package proxy

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestForwardRequestHead(t *testing.T) {
	up := newBackend(t, "up", nil)
	ts := serve(t, newProxy(t, Options{Routes: []Route{{Prefix: "/", Upstreams: []*url.URL{up.url(t)}}}}))
	c := client(t)

	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/a%2Fb/c?x=1&y=2;z=3", nil)
	req.Host = "elph.example.org"
	req.Header["Accept"] = []string{"text/plain", "application/json"}
	req.Header.Set("Te", "trailers, deflate")
	req.Header.Set("User-Agent", "") // none sent
	req.Header.Set("X-Request-Id", "abc-123")
	req.Header.Set("X-Real-Ip", "6.6.6.6")
	if res, body := do(t, c, req); res.StatusCode != 200 || body != "up" || res.Header.Get("X-Request-Id") != "abc-123" {
		t.Fatalf("%d %q, X-Request-Id %q", res.StatusCode, body, res.Header.Values("X-Request-Id"))
	}
	r, _ := up.lastRequest()
	checks := []struct{ what, got, want string }{
		{"escaped path", r.URL.EscapedPath(), "/a%2Fb/c"},
		{"query (the ; pair dropped)", r.URL.RawQuery, "x=1"},
		{"Host", r.Host, "elph.example.org"},
		{"Accept", strings.Join(r.Header["Accept"], "|"), "text/plain|application/json"},
		{"Te", r.Header.Get("Te"), "trailers"},
		{"User-Agent", r.UserAgent(), ""},
		{"X-Request-Id", r.Header.Get("X-Request-Id"), "abc-123"},
		{"X-Real-Ip", r.Header.Get("X-Real-Ip"), ""},
		{"X-Forwarded-For", r.Header.Get("X-Forwarded-For"), "127.0.0.1"},
		{"X-Forwarded-Host", r.Header.Get("X-Forwarded-Host"), "elph.example.org"},
		{"X-Forwarded-Proto", r.Header.Get("X-Forwarded-Proto"), "http"},
		{"proto", r.Proto, "HTTP/1.1"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: upstream got %q, want %q", c.what, c.got, c.want)
		}
	}

	// A POST without a body says so; one with a small body sends it whole.
	for _, body := range []string{"", "hello"} {
		req, _ = http.NewRequest(http.MethodPost, ts.URL+"/p", strings.NewReader(body))
		if res, _ := do(t, c, req); res.StatusCode != 200 {
			t.Fatalf("POST %q: %d", body, res.StatusCode)
		}
		r, got := up.lastRequest()
		if string(got) != body || r.ContentLength != int64(len(body)) || len(r.TransferEncoding) > 0 {
			t.Errorf("POST %q: upstream got %q, length %d, transfer encoding %q", body, got, r.ContentLength, r.TransferEncoding)
		}
	}
}

func FuzzCleanQuery(f *testing.F) {
	for _, q := range []string{"", "a=1", "a=1;b=2", "a=%zz&b=2", "a=%4", "%", "a=1&&b", "a=%41%42", "x=1&y=2;z=3"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		got := cleanQuery(q)
		if _, err := url.ParseQuery(got); err != nil {
			t.Fatalf("cleanQuery(%q) = %q, which does not parse: %v", q, got, err)
		}
		if _, err := url.ParseQuery(q); err == nil && !strings.Contains(q, ";") && got != q {
			t.Fatalf("cleanQuery changed a clean query %q to %q", q, got)
		}
		if again := cleanQuery(got); again != got {
			t.Fatalf("cleanQuery not stable: %q → %q → %q", q, got, again)
		}
	})
}
