package httpx

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
)

type ctxKey int

const (
	keyRequestID ctxKey = iota
	keyClientIP
	keyLogger
	keyBody
	keyDrain
	keyConn
	keyUnmatched
)

// RequestID is the id of the request being served ("" outside a request).
func RequestID(ctx context.Context) string {
	s, _ := ctx.Value(keyRequestID).(string)
	return s
}

// ClientIP is the address of the client: the peer, or, when the peer is a
// trusted proxy, the nearest untrusted address in X-Forwarded-For.
func ClientIP(ctx context.Context) netip.Addr {
	a, _ := ctx.Value(keyClientIP).(netip.Addr)
	return a
}

// Logger is the request's logger, which already carries its request id.
// Outside a request it discards, so a missing logger never panics.
func Logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(keyLogger).(*slog.Logger); ok {
		return l
	}
	return slog.New(slog.DiscardHandler)
}

// originalBody is the request body before the default size limit wrapped
// it, kept so a route may allow a larger body (AllowBody).
func originalBody(ctx context.Context) io.ReadCloser {
	b, _ := ctx.Value(keyBody).(io.ReadCloser)
	return b
}

// markUnmatched records that no route matched the request, so the metrics
// label it "unmatched" even inside a mounted router, whose mount pattern
// ("/chat/*") chi still reports.
func markUnmatched(ctx context.Context) {
	if p, ok := ctx.Value(keyUnmatched).(*bool); ok {
		*p = true
	}
}
