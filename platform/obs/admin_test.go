package obs_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/elph-server/elph/platform/obs"
)

// serveAdmin serves the admin handler on a real loopback listener.
func serveAdmin(t *testing.T, reg *prometheus.Registry, h *obs.Health, pprof bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: obs.AdminHandler(reg, h, pprof), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestAdminHandler(t *testing.T) {
	reg := obs.NewRegistry("1.2.3", "abc123")
	h := obs.NewHealth()
	base := serveAdmin(t, reg, h, false)

	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`elph_build_info{commit="abc123",goversion="go`,
		`version="1.2.3"} 1`,
		"go_goroutines ",
		"process_cpu_seconds_total",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	if code, body := get(t, base+"/livez"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/livez: %d %q", code, body)
	}
	if code, _ := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before ready: %d", code)
	}
	h.AddCheck("db", func(context.Context) error { return context.DeadlineExceeded })
	h.SetReady(true)
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "deadline exceeded") {
		t.Errorf("admin /readyz shows check details: %d %s", code, body)
	}

	for _, p := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine"} {
		if code, _ := get(t, base+p); code != http.StatusNotFound {
			t.Errorf("%s without pprof: %d, want 404", p, code)
		}
	}
}

func TestAdminHandlerWithPprof(t *testing.T) {
	base := serveAdmin(t, obs.NewRegistry("dev", "none"), obs.NewHealth(), true)
	code, body := get(t, base+"/debug/pprof/")
	if code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/: %d", code)
	}
	if code, body := get(t, base+"/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile") {
		t.Errorf("/debug/pprof/goroutine: %d", code)
	}
}

func TestNewRegistryIsFresh(t *testing.T) {
	a, b := obs.NewRegistry("1", "x"), obs.NewRegistry("2", "y")
	if a == b {
		t.Fatal("same registry twice")
	}
	// Registering the same metric in both works: nothing global is shared.
	for _, reg := range []*prometheus.Registry{a, b} {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: "elph_test_total", Help: "t"})
		if err := reg.Register(c); err != nil {
			t.Fatalf("register: %v", err)
		}
	}
	n, err := testutil.GatherAndCount(a, "elph_build_info")
	if err != nil || n != 1 {
		t.Errorf("elph_build_info series = %d (%v), want 1", n, err)
	}
	if err := testutil.GatherAndCompare(b, strings.NewReader(`
# HELP elph_test_total t
# TYPE elph_test_total counter
elph_test_total 0
`), "elph_test_total"); err != nil {
		t.Error(err)
	}
}
