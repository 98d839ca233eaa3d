package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

// BenchmarkForward measures the proxy's own work per request: ServeHTTP
// with a recorder in front and an upstream that answers fixed bytes, so
// allocations are the proxy's and the pool's.
func BenchmarkForward(b *testing.B) {
	up := rawUpstreamB(b, func(w io.Writer) {
		_, _ = io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"pong\":\"ping\"}")
	})
	p, err := New(Options{Routes: []Route{{Prefix: "/", Upstreams: []*url.URL{up}}}, HealthInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "http://elph.example.org/chat/v1/ping", nil)
	req.RemoteAddr = "192.0.2.1:4242"
	req.Header.Set("Authorization", "Bearer x")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		p.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
