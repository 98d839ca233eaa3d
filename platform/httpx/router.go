package httpx

import (
	"log/slog"
	"net/http"
	"net/netip"

	"github.com/go-chi/chi/v5"
)

// RouterOptions configure the middleware stack of one listener.
type RouterOptions struct {
	// Listener names the listener in logs and metrics ("gateway", "chat").
	Listener       string
	Logger         *slog.Logger
	Metrics        *Metrics
	MaxBodyBytes   int64
	TrustedProxies []netip.Prefix
}

// NewRouter returns a chi router with the standard stack: request context
// (id, client IP, logger), access log and metrics, panic recovery and the
// body limit, and JSON answers for unknown routes and methods. Modules build
// their own plain chi routers; a listener mounts them on one of these.
func NewRouter(o RouterOptions) chi.Router {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		// Unregistered metrics, so a router without them still serves
		// instead of panicking on every request.
		o.Metrics, _ = NewMetrics(nil)
	}
	r := chi.NewRouter()
	r.Use(requestContext(o.Logger, o.Listener, o.TrustedProxies), observe(o.Listener, o.Metrics), recoverer(o.Listener, o.Metrics), limitBody(o.MaxBodyBytes))
	r.NotFound(NotFound)
	r.MethodNotAllowed(MethodNotAllowed)
	return r
}

// NotFound answers an unknown route with the standard error body.
func NotFound(w http.ResponseWriter, r *http.Request) {
	markUnmatched(r.Context())
	WriteError(w, r, Errorf(http.StatusNotFound, CodeNotFound, "no such route"))
}

// MethodNotAllowed answers a known route called with the wrong method.
func MethodNotAllowed(w http.ResponseWriter, r *http.Request) {
	markUnmatched(r.Context())
	WriteError(w, r, Errorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "method %s not allowed here", r.Method))
}
