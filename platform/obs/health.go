package obs

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// CheckTimeout bounds each readiness check so a hung dependency answers
// "not ready" instead of hanging the probe.
const CheckTimeout = 2 * time.Second

// Check reports whether one dependency (database, bus…) is usable.
type Check func(ctx context.Context) error

// Health serves /livez and /readyz. The node is ready once SetReady(true)
// is called after start-up and every check passes; it turns unready when
// shutdown begins so load balancers stop sending new work first.
type Health struct {
	mu     sync.RWMutex
	checks map[string]Check
	ready  atomic.Bool
}

// NewHealth returns a Health with no checks that is not yet ready.
func NewHealth() *Health { return &Health{checks: make(map[string]Check)} }

// AddCheck registers a named readiness check.
func (h *Health) AddCheck(name string, c Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks[name] = c
}

// SetReady marks start-up finished (true) or shutdown begun (false).
func (h *Health) SetReady(ready bool) { h.ready.Store(ready) }

// Livez answers 200 while the process serves HTTP at all.
func (h *Health) Livez(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok\n"))
}

type readyBody struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks,omitempty"`
}

// Result runs every check concurrently and reports each one's outcome.
func (h *Health) Result(ctx context.Context) (ok bool, checks map[string]string) {
	h.mu.RLock()
	names := make([]string, 0, len(h.checks))
	for n := range h.checks {
		names = append(names, n)
	}
	sort.Strings(names)
	fns := make([]Check, len(names))
	for i, n := range names {
		fns[i] = h.checks[n]
	}
	h.mu.RUnlock()

	// Checks share one deadline, and the results are collected only until
	// it passes: a check that ignores its context (a driver stuck in a
	// call) is reported as failed instead of hanging the probe.
	cctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	type result struct {
		i   int
		err error
	}
	results := make(chan result, len(fns)) // buffered: late checks never block
	for i, fn := range fns {
		go func() { results <- result{i, fn(cctx)} }()
	}
	errs := make([]error, len(names))
	answered := make([]bool, len(names))
collect:
	for range fns {
		select {
		case r := <-results:
			errs[r.i], answered[r.i] = r.err, true
		case <-cctx.Done():
			break collect
		}
	}
	ready := h.ready.Load()
	ok = ready
	checks = make(map[string]string, len(names))
	for i, n := range names {
		switch {
		case !answered[i]:
			ok = false
			checks[n] = fmt.Sprintf("no answer within %s", CheckTimeout)
		case errs[i] != nil:
			ok = false
			checks[n] = errs[i].Error()
		default:
			checks[n] = "ok"
		}
	}
	if !ready {
		checks["lifecycle"] = "starting or stopping"
	}
	return ok, checks
}

// Readyz answers 200 when ready, 503 otherwise, with each check's result.
// detail=false hides the checks' error texts (for the public gateway).
func (h *Health) Readyz(detail bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ok, checks := h.Result(r.Context())
		body := readyBody{Status: "ready", Checks: checks}
		code := http.StatusOK
		if !ok {
			body.Status, code = "unavailable", http.StatusServiceUnavailable
		}
		if !detail {
			body.Checks = nil
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(body)
	}
}
