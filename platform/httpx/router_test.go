package httpx_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/elph-server/elph/platform/httpx"
)

// testRouter is a listener router with a route of its own and a module
// router mounted under /chat, the way main wires them.
func testRouter(t *testing.T, o httpx.RouterOptions) chi.Router {
	t.Helper()
	if o.Listener == "" {
		o.Listener = "gw"
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 1 << 10
	}
	r := httpx.NewRouter(o)
	r.Get("/items/{id}", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"id": chi.URLParam(r, "id")})
	})
	r.Get("/livez", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	chat := chi.NewRouter()
	chat.Get("/v1/items/{id}", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"id": chi.URLParam(r, "id")})
	})
	r.Mount("/chat", chat)
	return r
}

var generatedID = regexp.MustCompile(`^[0-9a-f]{24}$`)

func TestRouterErrorsOverRealServer(t *testing.T) {
	m, _ := newMetrics(t)
	_, base := startServer(t, httpx.ServerOptions{Handler: testRouter(t, httpx.RouterOptions{Metrics: m}), Metrics: m})
	c := newClient(t)

	tests := []struct {
		method, path string
		status       int
		code         string
	}{
		{http.MethodGet, "/nope", http.StatusNotFound, httpx.CodeNotFound},
		{http.MethodGet, "/chat/v1/nope", http.StatusNotFound, httpx.CodeNotFound},
		{http.MethodPost, "/items/1", http.StatusMethodNotAllowed, httpx.CodeMethodNotAllowed},
		{http.MethodDelete, "/chat/v1/items/1", http.StatusMethodNotAllowed, httpx.CodeMethodNotAllowed},
		{http.MethodGet, "/chat/v1/items/1", http.StatusOK, ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, base+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body := readAll(t, resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d (%s)", resp.StatusCode, tc.status, body)
			}
			id := resp.Header.Get("X-Request-ID")
			if !generatedID.MatchString(id) {
				t.Errorf("X-Request-ID = %q, want a generated id", id)
			}
			if tc.code == "" {
				return
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q", ct)
			}
			eb := decodeErrorBody(t, body)
			if eb.Error.Code != tc.code {
				t.Errorf("code = %q, want %q", eb.Error.Code, tc.code)
			}
			if eb.Error.RequestID != id {
				t.Errorf("request_id = %q, header = %q", eb.Error.RequestID, id)
			}
		})
	}
}

func TestRequestIDHeader(t *testing.T) {
	r := testRouter(t, httpx.RouterOptions{})
	var seen string
	r.Get("/id", func(w http.ResponseWriter, r *http.Request) { seen = httpx.RequestID(r.Context()) })

	tests := []struct {
		name string
		in   []string // header values sent; nil: none
		keep bool
	}{
		{"absent", nil, false},
		{"empty", []string{""}, false},
		{"uuid", []string{"3f2c9a1e-7b6d-4c3a-9e8f-1a2b3c4d5e6f"}, true},
		{"all allowed characters", []string{"Az09-_.:"}, true},
		{"64 characters", []string{strings.Repeat("a", 64)}, true},
		{"65 characters", []string{strings.Repeat("a", 65)}, false},
		{"space", []string{"abc def"}, false},
		{"CRLF header injection", []string{"abc\r\nSet-Cookie: sid=evil"}, false},
		{"LF", []string{"abc\nX-Evil: 1"}, false},
		{"NUL", []string{"abc\x00"}, false},
		{"quote and angle", []string{`"><script>`}, false},
		{"slash", []string{"../../etc"}, false},
		{"non-ASCII", []string{"идентификатор"}, false},
		{"log injection", []string{`x" level=ERROR msg="forged`}, false},
		{"first of two is used", []string{"first-id", "second-id"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen = ""
			req := httptest.NewRequest(http.MethodGet, "/id", nil)
			if tc.in != nil {
				req.Header["X-Request-Id"] = tc.in
			}
			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, req)
			got := rec.Header().Values("X-Request-ID")
			if len(got) != 1 {
				t.Fatalf("X-Request-ID values = %q, want exactly one", got)
			}
			if got[0] != seen {
				t.Errorf("header %q differs from RequestID(ctx) %q", got[0], seen)
			}
			if tc.keep {
				if got[0] != tc.in[0] {
					t.Errorf("X-Request-ID = %q, want %q echoed", got[0], tc.in[0])
				}
				return
			}
			if !generatedID.MatchString(got[0]) {
				t.Errorf("X-Request-ID = %q, want a fresh generated id", got[0])
			}
			for _, h := range []string{"Set-Cookie", "X-Evil"} {
				if v := rec.Header().Get(h); v != "" {
					t.Errorf("injected header %s: %q", h, v)
				}
			}
		})
	}
}

func TestRequestIDsAreUnique(t *testing.T) {
	r := testRouter(t, httpx.RouterOptions{})
	seen := map[string]bool{}
	for range 100 {
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/livez", nil))
		id := rec.Header().Get("X-Request-ID")
		if seen[id] {
			t.Fatalf("request id %q repeated", id)
		}
		seen[id] = true
	}
}

func TestRequestIDOverRealServer(t *testing.T) {
	_, base := startServer(t, httpx.ServerOptions{Handler: testRouter(t, httpx.RouterOptions{})})
	c := newClient(t)
	for _, tc := range []struct{ in, want string }{
		{"from-the-proxy-123", "from-the-proxy-123"},
		{strings.Repeat("b", 200), ""},
		{"a b", ""},
	} {
		req, _ := http.NewRequest(http.MethodGet, base+"/nope", nil)
		req.Header.Set("X-Request-ID", tc.in)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		eb := decodeErrorBody(t, readAll(t, resp.Body))
		resp.Body.Close()
		got := resp.Header.Get("X-Request-ID")
		if tc.want != "" && got != tc.want {
			t.Errorf("sent %q: X-Request-ID = %q, want it echoed", tc.in, got)
		}
		if tc.want == "" && !generatedID.MatchString(got) {
			t.Errorf("sent %q: X-Request-ID = %q, want a generated id", tc.in, got)
		}
		if eb.Error.RequestID != got {
			t.Errorf("body request_id %q != header %q", eb.Error.RequestID, got)
		}
	}
}

func TestPanicRecovery(t *testing.T) {
	m, reg := newMetrics(t)
	logs := &syncBuffer{}
	r := testRouter(t, httpx.RouterOptions{Listener: "gw", Metrics: m, Logger: jsonLogger(logs)})
	r.Get("/panic", func(http.ResponseWriter, *http.Request) { panic("kaboom: secret detail") })
	_, base := startServer(t, httpx.ServerOptions{Handler: r, Metrics: m})
	c := newClient(t)

	for i := 1; i <= 2; i++ {
		resp, err := c.Get(base + "/panic")
		if err != nil {
			t.Fatalf("GET /panic: %v", err)
		}
		body := readAll(t, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusInternalServerError {
			t.Fatalf("status = %d, want 500", resp.StatusCode)
		}
		eb := decodeErrorBody(t, body)
		if eb.Error.Code != httpx.CodeInternal || eb.Error.RequestID != resp.Header.Get("X-Request-ID") {
			t.Errorf("error = %+v", eb.Error)
		}
		if bytes.Contains(body, []byte("kaboom")) {
			t.Errorf("body leaks the panic value: %s", body)
		}
		// The panic is counted before the answer is written.
		if v, _ := metricValue(t, reg, "elph_http_panics_total", map[string]string{"listener": "gw"}); v != float64(i) {
			t.Errorf("elph_http_panics_total = %v, want %d", v, i)
		}
	}

	// The server keeps serving.
	resp, err := c.Get(base + "/items/9")
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"9"`) {
		t.Errorf("after panics: %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(logs.String(), "kaboom") || !strings.Contains(logs.String(), "handler panic") {
		t.Errorf("panic not logged: %s", logs)
	}
}

func TestPanicAfterResponseStarted(t *testing.T) {
	m, reg := newMetrics(t)
	r := testRouter(t, httpx.RouterOptions{Metrics: m})
	r.Get("/half", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "partial")
		http.NewResponseController(w).Flush()
		panic("late")
	})
	_, base := startServer(t, httpx.ServerOptions{Handler: r, Metrics: m})
	c := newClient(t)

	resp, err := c.Get(base + "/half")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	// A response already under way cannot turn into a 500; it must be cut
	// so the client sees a failure, never a complete 200 with an error
	// glued to its end.
	if err == nil {
		t.Errorf("body read cleanly: %q", body)
	}
	if bytes.Contains(body, []byte(`"error"`)) {
		t.Errorf("error body appended to a started response: %q", body)
	}
	if v, _ := metricValue(t, reg, "elph_http_panics_total", nil); v != 1 {
		t.Errorf("elph_http_panics_total = %v, want 1", v)
	}
	resp, err = c.Get(base + "/livez")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("after panic: %d", resp.StatusCode)
	}
}

func TestAbortHandlerIsNotA500(t *testing.T) {
	m, reg := newMetrics(t)
	r := testRouter(t, httpx.RouterOptions{Metrics: m})
	r.Get("/abort", func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) })
	_, base := startServer(t, httpx.ServerOptions{Handler: r, Metrics: m})
	c := newClient(t)

	resp, err := c.Get(base + "/abort")
	if err == nil {
		body := readAll(t, resp.Body)
		resp.Body.Close()
		t.Fatalf("aborted request answered %d %s", resp.StatusCode, body)
	}
	if v, _ := metricValue(t, reg, "elph_http_panics_total", nil); v != 0 {
		t.Errorf("elph_http_panics_total = %v, want 0 for a deliberate abort", v)
	}
	resp, err = c.Get(base + "/livez")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("after abort: %d", resp.StatusCode)
	}
}

func TestMetricsRouteLabel(t *testing.T) {
	m, reg := newMetrics(t)
	r := testRouter(t, httpx.RouterOptions{Listener: "gw", Metrics: m})
	tests := []struct {
		method, path string
		route, code  string
	}{
		{http.MethodGet, "/chat/v1/items/42", "/chat/v1/items/{id}", "200"},
		{http.MethodGet, "/chat/v1/items/43", "/chat/v1/items/{id}", "200"},
		{http.MethodGet, "/items/abc", "/items/{id}", "200"},
		{http.MethodGet, "/livez", "/livez", "200"},
		{http.MethodGet, "/nope/12345", "unmatched", "404"},
		{http.MethodGet, "/chat/v1/nope/777", "unmatched", "404"},
		{http.MethodPost, "/items/99", "unmatched", "405"},
		{http.MethodPut, "/chat/v1/items/5", "unmatched", "405"},
	}
	for _, tc := range tests {
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if got := rec.Code; got != atoi(t, tc.code) {
			t.Errorf("%s %s: status %d, want %s", tc.method, tc.path, got, tc.code)
		}
	}
	if v, _ := metricValue(t, reg, "elph_http_requests_total", map[string]string{
		"listener": "gw", "method": "GET", "route": "/chat/v1/items/{id}", "code": "200",
	}); v != 2 {
		t.Errorf("requests{/chat/v1/items/{id}} = %v, want 2", v)
	}
	for _, tc := range tests {
		if v, ok := metricValue(t, reg, "elph_http_requests_total", map[string]string{
			"method": tc.method, "route": tc.route, "code": tc.code,
		}); !ok || v < 1 {
			t.Errorf("no series for %s %s (route %q code %s)", tc.method, tc.path, tc.route, tc.code)
		}
		if _, ok := metricValue(t, reg, "elph_http_request_duration_seconds", map[string]string{
			"method": tc.method, "route": tc.route,
		}); !ok {
			t.Errorf("no duration series for route %q", tc.route)
		}
	}
	allowed := []string{"/chat/v1/items/{id}", "/items/{id}", "/livez", "unmatched"}
	for _, route := range routeLabels(t, reg) {
		if !contains(allowed, route) {
			t.Errorf("route label %q, want one of %q", route, allowed)
		}
		for _, raw := range []string{"42", "43", "abc", "12345", "777", "99", "nope"} {
			if strings.Contains(route, raw) {
				t.Errorf("route label %q carries the raw path", route)
			}
		}
	}
	if v, _ := metricValue(t, reg, "elph_http_requests_in_flight", map[string]string{"listener": "gw"}); v != 0 {
		t.Errorf("in flight = %v after all requests finished", v)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if err := json.Unmarshal([]byte(s), &n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestInFlightGauge(t *testing.T) {
	m, reg := newMetrics(t)
	r := testRouter(t, httpx.RouterOptions{Listener: "gw", Metrics: m})
	var during float64
	r.Get("/probe", func(w http.ResponseWriter, r *http.Request) {
		during, _ = metricValue(t, reg, "elph_http_requests_in_flight", map[string]string{"listener": "gw"})
	})
	r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/probe", nil))
	if during != 1 {
		t.Errorf("in flight during the request = %v, want 1", during)
	}
	if v, _ := metricValue(t, reg, "elph_http_requests_in_flight", map[string]string{"listener": "gw"}); v != 0 {
		t.Errorf("in flight after = %v, want 0", v)
	}
}

func TestAccessLog(t *testing.T) {
	logs := &syncBuffer{}
	r := testRouter(t, httpx.RouterOptions{Listener: "gw", Logger: jsonLogger(logs)})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/items/7?access_token=SECRET123", nil)
	req.RemoteAddr = "192.0.2.10:5555"
	r.ServeHTTP(rec, req)

	var line struct {
		Msg       string `json:"msg"`
		Level     string `json:"level"`
		Listener  string `json:"listener"`
		RequestID string `json:"request_id"`
		Method    string `json:"method"`
		Path      string `json:"path"`
		Route     string `json:"route"`
		Status    int    `json:"status"`
		ClientIP  string `json:"client_ip"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(logs.String())), &line); err != nil {
		t.Fatalf("want exactly one JSON log line, got %q: %v", logs, err)
	}
	got := []string{line.Msg, line.Level, line.Listener, line.Method, line.Path, line.Route, itoa(line.Status), line.ClientIP}
	want := []string{"http request", "INFO", "gw", "GET", "/items/7", "/items/{id}", "200", "192.0.2.10"}
	if strings.Join(got, " | ") != strings.Join(want, " | ") {
		t.Errorf("log line fields = %q, want %q", got, want)
	}
	if line.RequestID != rec.Header().Get("X-Request-ID") {
		t.Errorf("log request_id %q, header %q", line.RequestID, rec.Header().Get("X-Request-ID"))
	}
	if strings.Contains(logs.String(), "SECRET123") {
		t.Errorf("query string logged: %s", logs)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestNilMetricsAndLogger(t *testing.T) {
	r := httpx.NewRouter(httpx.RouterOptions{Listener: "bare", MaxBodyBytes: 1 << 10})
	r.Get("/x", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "x") })
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/x", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "x" {
		t.Errorf("got %d %q", rec.Code, rec.Body)
	}
}

func TestBodyLimit(t *testing.T) {
	decode := func(w http.ResponseWriter, r *http.Request) {
		var v struct {
			Data string `json:"data"`
		}
		if err := httpx.DecodeJSON(r, &v); err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		httpx.WriteJSON(w, http.StatusOK, map[string]int{"len": len(v.Data)})
	}
	r := httpx.NewRouter(httpx.RouterOptions{Listener: "gw", MaxBodyBytes: 1 << 10})
	r.Post("/small", decode)
	r.With(httpx.AllowBody(4096)).Post("/upload", decode)
	r.Post("/raw", func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		var mbe *http.MaxBytesError
		if !errors.As(err, &mbe) {
			t.Errorf("ReadAll past the limit: %v, want *http.MaxBytesError", err)
		}
		httpx.WriteError(w, r, httpx.Errorf(http.StatusRequestEntityTooLarge, httpx.CodePayloadTooLarge, "too big"))
	})
	_, base := startServer(t, httpx.ServerOptions{Handler: r})
	c := newClient(t)

	body := func(n int) []byte {
		b, _ := json.Marshal(map[string]string{"data": strings.Repeat("z", n)})
		return b
	}
	tests := []struct {
		path   string
		body   []byte
		status int
		code   string
	}{
		{"/small", body(2048), http.StatusRequestEntityTooLarge, httpx.CodePayloadTooLarge},
		{"/upload", body(2048), http.StatusOK, ""},
		{"/small", body(2048), http.StatusRequestEntityTooLarge, httpx.CodePayloadTooLarge},
		{"/small", body(500), http.StatusOK, ""},
		{"/upload", body(5000), http.StatusRequestEntityTooLarge, httpx.CodePayloadTooLarge},
		{"/raw", body(2048), http.StatusRequestEntityTooLarge, httpx.CodePayloadTooLarge},
	}
	for i, tc := range tests {
		resp, err := c.Post(base+tc.path, "application/json", bytes.NewReader(tc.body))
		if err != nil {
			t.Fatalf("#%d POST %s: %v", i, tc.path, err)
		}
		got := readAll(t, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("#%d POST %s (%d bytes): %d %s, want %d", i, tc.path, len(tc.body), resp.StatusCode, got, tc.status)
			continue
		}
		if tc.code != "" {
			if eb := decodeErrorBody(t, got); eb.Error.Code != tc.code {
				t.Errorf("#%d code = %q, want %q", i, eb.Error.Code, tc.code)
			}
		} else if !bytes.Contains(got, []byte(`"len"`)) {
			t.Errorf("#%d body %s", i, got)
		}
	}
}

func TestClientIPThroughRouter(t *testing.T) {
	tests := []struct {
		name    string
		trusted []netip.Prefix
		xff     string
		want    string
	}{
		{"untrusted peer, header ignored", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, "203.0.113.9", "127.0.0.1"},
		{"trusted peer, header believed", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, "198.51.100.1, 203.0.113.9", "203.0.113.9"},
		{"trusted peer, no header", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, "", "127.0.0.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httpx.NewRouter(httpx.RouterOptions{Listener: "gw", MaxBodyBytes: 1 << 10, TrustedProxies: tc.trusted})
			r.Get("/ip", func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, httpx.ClientIP(r.Context()).String())
			})
			_, base := startServer(t, httpx.ServerOptions{Handler: r})
			req, _ := http.NewRequest(http.MethodGet, base+"/ip", nil)
			if tc.xff != "" {
				req.Header.Set("X-Forwarded-For", tc.xff)
			}
			resp, err := newClient(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got := string(readAll(t, resp.Body))
			resp.Body.Close()
			if got != tc.want {
				t.Errorf("ClientIP = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestContextHelpersOutsideRequest(t *testing.T) {
	ctx := context.Background()
	if id := httpx.RequestID(ctx); id != "" {
		t.Errorf("RequestID = %q", id)
	}
	if ip := httpx.ClientIP(ctx); ip.IsValid() {
		t.Errorf("ClientIP = %v", ip)
	}
	// Must not panic.
	httpx.Logger(ctx).Info("discarded")
}
