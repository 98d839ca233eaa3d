package httpx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

// maxRequestIDLen bounds a request id taken from a client or proxy.
const maxRequestIDLen = 64

func validRequestID(s string) bool {
	if s == "" || len(s) > maxRequestIDLen {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// requestContext puts the request id, client IP and request logger into the
// context. A well-formed X-Request-ID from the caller is kept so one id
// follows a request through the proxy and the server.
func requestContext(base *slog.Logger, listener string, trusted []netip.Prefix) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := r.Header.Get("X-Request-ID")
			if !validRequestID(id) {
				id = newRequestID()
			}
			w.Header().Set("X-Request-ID", id)
			ip := clientIP(r, trusted)
			ctx := context.WithValue(r.Context(), keyRequestID, id)
			ctx = context.WithValue(ctx, keyClientIP, ip)
			ctx = context.WithValue(ctx, keyLogger, base.With("listener", listener, "request_id", id))
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// clientIP believes X-Forwarded-For only when the peer itself is trusted,
// and then walks it from the right, so a client cannot spoof its address by
// sending the header itself.
func clientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer := PeerAddr(r.RemoteAddr)
	return ClientAddr(peer, IsTrusted(peer, trusted), r.Header.Values("X-Forwarded-For"), trusted)
}

// ClientAddr is the client's address: the peer, or when the peer is a
// trusted proxy (peerTrusted) the nearest untrusted address in the
// X-Forwarded-For values xff, walked from the right. A malformed hop
// breaks the chain there. The proxy and the routers share it.
func ClientAddr(peer netip.Addr, peerTrusted bool, xff []string, trusted []netip.Prefix) netip.Addr {
	if !peerTrusted {
		return peer
	}
	var addrs []netip.Addr
	for _, h := range xff {
		for _, part := range strings.Split(h, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(part))
			if err != nil {
				// A malformed hop breaks the chain; stop believing it there.
				addrs = nil
				continue
			}
			addrs = append(addrs, a.Unmap())
		}
	}
	for i := len(addrs) - 1; i >= 0; i-- {
		if !IsTrusted(addrs[i], trusted) {
			return addrs[i]
		}
	}
	if len(addrs) > 0 {
		return addrs[0]
	}
	return peer
}

// PeerAddr parses a connection's remote address ("ip:port", or a bare
// IP); the zero Addr when it is neither.
func PeerAddr(hostport string) netip.Addr {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// IsTrusted reports whether a is inside one of the trusted prefixes.
func IsTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// observe logs each request once and records its metrics. The route label
// is chi's route pattern, never the raw path, so metrics stay bounded; the
// query string is never logged because it may carry tokens.
func observe(listener string, m *Metrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			unmatched := new(bool)
			r = r.WithContext(context.WithValue(r.Context(), keyUnmatched, unmatched))
			m.inFlight.WithLabelValues(listener).Inc()
			defer func() {
				m.inFlight.WithLabelValues(listener).Dec()
				status := ww.Status()
				if status == 0 {
					// Nothing written (or hijacked for a WebSocket).
					status = http.StatusOK
					if r.Header.Get("Upgrade") != "" {
						status = http.StatusSwitchingProtocols
					}
				}
				route := "unmatched"
				if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" && !*unmatched {
					route = rc.RoutePattern()
				}
				d := time.Since(start)
				m.requests.WithLabelValues(listener, r.Method, route, fmt.Sprint(status)).Inc()
				m.duration.WithLabelValues(listener, r.Method, route).Observe(d.Seconds())
				level := slog.LevelInfo
				switch {
				case status >= 500:
					level = slog.LevelError
				case route == "/livez" || route == "/readyz":
					level = slog.LevelDebug
				}
				Logger(r.Context()).Log(r.Context(), level, "http request",
					"method", r.Method, "path", r.URL.Path, "route", route, "status", status,
					"bytes", ww.BytesWritten(), "duration_ms", float64(d.Microseconds())/1000,
					"client_ip", ClientIP(r.Context()).String(), "proto", r.Proto)
			}()
			next.ServeHTTP(ww, r)
		})
	}
}

// recoverer turns a handler panic into a logged 500 with the standard error
// body instead of a dropped connection. http.ErrAbortHandler is re-raised:
// it is how a handler deliberately aborts a response. A panic after the
// response has started aborts it too, since no 500 can be sent any more.
func recoverer(listener string, m *Metrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				v := recover()
				if v == nil {
					return
				}
				if v == http.ErrAbortHandler {
					panic(v)
				}
				m.panics.WithLabelValues(listener).Inc()
				Logger(r.Context()).ErrorContext(r.Context(), "handler panic", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				if ww, ok := w.(middleware.WrapResponseWriter); ok && ww.Status() != 0 {
					// The response is already under way (or a WebSocket has
					// taken the connection after its 101): a 500 can no longer
					// be sent, and an error body glued to a partial one would
					// read as success. Cut the connection instead.
					panic(http.ErrAbortHandler)
				}
				WriteError(w, r, Errorf(http.StatusInternalServerError, CodeInternal, "internal error"))
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// limitBody caps every request body at max bytes. Routes that take larger
// bodies (file uploads) raise their own limit with AllowBody, which is why
// the limit is enforced while reading rather than refused up front on
// Content-Length: the route is not known yet here.
func limitBody(max int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := context.WithValue(r.Context(), keyBody, r.Body)
			r = r.WithContext(ctx)
			r.Body = http.MaxBytesReader(w, r.Body, max)
			next.ServeHTTP(w, r)
		})
	}
}

// AllowBody is route middleware that replaces the default body limit with
// max, for the few routes (uploads) that need more.
func AllowBody(max int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if orig := originalBody(r.Context()); orig != nil {
				r.Body = http.MaxBytesReader(w, orig, max)
			}
			next.ServeHTTP(w, r)
		})
	}
}
