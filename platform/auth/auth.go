// Package auth verifies access tokens and carries the request's principal.
// It knows no business rules: which keys are trusted, which sessions are
// revoked and what a role may do are handed in by the wiring and the
// modules. The sso module issues the tokens this package verifies.
package auth

import (
	"context"
	"errors"
	"time"
)

// Errors returned by Verifier.Verify. They are wrapped with the reason, so
// compare with errors.Is. The reason is for logs; clients get a generic
// message.
var (
	// ErrInvalidToken means the token is malformed, badly signed, signed by
	// an unknown key, for another issuer, not valid yet, or lacks a claim.
	ErrInvalidToken = errors.New("invalid access token")
	// ErrExpiredToken means the token was valid but its lifetime is over:
	// the client should refresh it.
	ErrExpiredToken = errors.New("access token expired")
	// ErrRevoked means the token's session was revoked: refreshing will not
	// help, the user must log in again.
	ErrRevoked = errors.New("session revoked")
)

// RoleAdmin passes every role check (see RequireRole).
const RoleAdmin = "admin"

// Principal is who a request acts for, as the verified access token says.
type Principal struct {
	UserID    int64
	Login     string
	Role      string // "user" | "admin"
	SessionID string
	TokenID   string // jti
	ExpiresAt time.Time
}

type principalKey struct{}

// WithPrincipal returns a copy of ctx that carries p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal put in ctx by WithPrincipal (usually by
// Middleware), and false when there is none.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok && p != nil
}
