package obs_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/elph-server/elph/platform/obs"
)

type readyBody struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

func readyz(t *testing.T, h *obs.Health, detail bool) (int, readyBody, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.Readyz(detail)(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	var b readyBody
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("readyz body %q: %v", rec.Body, err)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q", cc)
	}
	return rec.Code, b, rec.Body.String()
}

func TestLivez(t *testing.T) {
	h := obs.NewHealth()
	rec := httptest.NewRecorder()
	h.Livez(rec, httptest.NewRequest(http.MethodGet, "/livez", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "ok\n" {
		t.Errorf("livez: %d %q", rec.Code, rec.Body)
	}
	if rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q", rec.Header().Get("Cache-Control"))
	}
}

func TestReadyLifecycle(t *testing.T) {
	h := obs.NewHealth()
	h.AddCheck("db", func(context.Context) error { return nil })
	h.AddCheck("bus", func(context.Context) error { return nil })

	code, b, _ := readyz(t, h, true)
	if code != http.StatusServiceUnavailable || b.Status != "unavailable" {
		t.Errorf("before SetReady: %d %s, want 503 unavailable", code, b.Status)
	}
	if b.Checks["lifecycle"] == "" {
		t.Errorf("before SetReady: checks %v lack the lifecycle reason", b.Checks)
	}

	h.SetReady(true)
	code, b, _ = readyz(t, h, true)
	if code != http.StatusOK || b.Status != "ready" {
		t.Errorf("ready: %d %s, want 200 ready", code, b.Status)
	}
	want := map[string]string{"db": "ok", "bus": "ok"}
	if len(b.Checks) != len(want) || b.Checks["db"] != "ok" || b.Checks["bus"] != "ok" {
		t.Errorf("checks = %v, want %v", b.Checks, want)
	}

	h.SetReady(false) // shutdown begins
	code, b, _ = readyz(t, h, true)
	if code != http.StatusServiceUnavailable || b.Checks["lifecycle"] == "" {
		t.Errorf("after SetReady(false): %d %v", code, b.Checks)
	}
}

func TestReadyWithoutChecks(t *testing.T) {
	h := obs.NewHealth()
	h.SetReady(true)
	code, b, _ := readyz(t, h, true)
	if code != http.StatusOK || b.Status != "ready" {
		t.Errorf("%d %+v", code, b)
	}
}

func TestFailingCheck(t *testing.T) {
	const msg = "dial tcp 10.9.8.7:3306: connection refused"
	h := obs.NewHealth()
	h.AddCheck("db", func(context.Context) error { return errors.New(msg) })
	h.AddCheck("bus", func(context.Context) error { return nil })
	h.SetReady(true)

	code, b, _ := readyz(t, h, true)
	if code != http.StatusServiceUnavailable || b.Status != "unavailable" {
		t.Errorf("detail: %d %s, want 503", code, b.Status)
	}
	if b.Checks["db"] != msg || b.Checks["bus"] != "ok" {
		t.Errorf("detail checks = %v", b.Checks)
	}
	if _, ok := b.Checks["lifecycle"]; ok {
		t.Errorf("lifecycle reported while ready: %v", b.Checks)
	}

	code, b, raw := readyz(t, h, false)
	if code != http.StatusServiceUnavailable || b.Status != "unavailable" {
		t.Errorf("public: %d %s, want 503", code, b.Status)
	}
	if strings.Contains(raw, "10.9.8.7") || strings.Contains(raw, "refused") {
		t.Errorf("public readyz leaks the check error: %s", raw)
	}

	// The same check recovering makes the node ready again.
	h.AddCheck("db", func(context.Context) error { return nil })
	if code, _, _ := readyz(t, h, false); code != http.StatusOK {
		t.Errorf("after recovery: %d", code)
	}
}

func TestHungCheckIsBounded(t *testing.T) {
	h := obs.NewHealth()
	h.AddCheck("hung", func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	h.AddCheck("fine", func(context.Context) error { return nil })
	h.SetReady(true)

	ok, checks := h.Result(context.Background())
	if ok {
		t.Fatal("ready with a hung check")
	}
	if checks["hung"] == "" || checks["hung"] == "ok" {
		t.Errorf("hung check result %q, want an error", checks["hung"])
	}
	if checks["fine"] != "ok" {
		t.Errorf("fine check = %q", checks["fine"])
	}
}

func TestCheckIgnoringContextIsBounded(t *testing.T) {
	// A check stuck in a call that ignores its context (a driver blocked in
	// a syscall) must still not hang the probe.
	release := make(chan struct{})
	defer close(release)
	h := obs.NewHealth()
	h.AddCheck("stuck", func(context.Context) error { <-release; return nil })
	h.SetReady(true)

	ok, checks := h.Result(context.Background())
	if ok || checks["stuck"] == "" || checks["stuck"] == "ok" {
		t.Errorf("stuck check: ok=%v result=%q, want not ready with an error", ok, checks["stuck"])
	}
}

func TestResultHonoursCallerContext(t *testing.T) {
	h := obs.NewHealth()
	h.AddCheck("hung", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	h.SetReady(true)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ok, checks := h.Result(ctx)
	if ok || checks["hung"] == "ok" {
		t.Errorf("cancelled probe: ok=%v %v", ok, checks)
	}
}

func TestChecksRunConcurrently(t *testing.T) {
	// Each check waits for the other: they only pass if run at once.
	var wg sync.WaitGroup
	wg.Add(2)
	both := func(ctx context.Context) error {
		wg.Done()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	h := obs.NewHealth()
	h.AddCheck("a", both)
	h.AddCheck("b", both)
	h.SetReady(true)
	if ok, checks := h.Result(context.Background()); !ok {
		t.Errorf("checks did not run concurrently: %v", checks)
	}
}

func TestHealthConcurrentUse(t *testing.T) {
	h := obs.NewHealth()
	h.SetReady(true)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			h.AddCheck(string(rune('a'+i)), func(context.Context) error { return nil })
			h.SetReady(i%2 == 0)
		}()
		go func() {
			defer wg.Done()
			ok, checks := h.Result(context.Background())
			if _, stopping := checks["lifecycle"]; ok && stopping {
				t.Errorf("ready and starting-or-stopping at once: %v", checks)
			}
		}()
	}
	wg.Wait()
}
