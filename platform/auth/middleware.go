package auth

import (
	"errors"
	"net/http"
	"strings"

	"github.com/elph-server/elph/platform/httpx"
)

// Middleware authenticates requests with "Authorization: Bearer <token>"
// and puts the *Principal in the request's context. A request without a
// valid token is answered 401 with the standard error shape and a
// WWW-Authenticate challenge (RFC 6750).
func Middleware(v *Verifier) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := r.Header.Get("Authorization")
			if h == "" {
				// RFC 6750 §3.1: no error code when the client sent no
				// credentials at all; it may not know auth is needed.
				challenge(w, r, `Bearer`, "missing bearer token")
				return
			}
			scheme, token, _ := strings.Cut(h, " ")
			if !strings.EqualFold(scheme, "Bearer") {
				challenge(w, r, `Bearer`, "authorization scheme must be Bearer")
				return
			}
			p, err := v.Verify(r.Context(), strings.TrimSpace(token))
			if err != nil {
				// The reason (unknown kid, bad signature…) helps an operator,
				// not a client, and may help an attacker probe.
				httpx.Logger(r.Context()).DebugContext(r.Context(), "access token rejected", "err", err)
				switch {
				case errors.Is(err, ErrExpiredToken):
					challenge(w, r, `Bearer error="invalid_token", error_description="the access token expired"`, "access token expired")
				case errors.Is(err, ErrRevoked):
					challenge(w, r, `Bearer error="invalid_token", error_description="the session was revoked"`, "session revoked")
				default:
					challenge(w, r, `Bearer error="invalid_token"`, "invalid access token")
				}
				return
			}
			next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
		})
	}
}

func challenge(w http.ResponseWriter, r *http.Request, wwwAuthenticate, message string) {
	w.Header().Set("WWW-Authenticate", wwwAuthenticate)
	httpx.WriteError(w, r, httpx.Errorf(http.StatusUnauthorized, httpx.CodeUnauthorized, "%s", message))
}

// RequireRole lets a request through when its principal has role, or is an
// admin; others get 403. It must run after Middleware; a request without a
// principal gets 401.
func RequireRole(role string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, ok := FromContext(r.Context())
			if !ok {
				challenge(w, r, `Bearer`, "missing bearer token")
				return
			}
			if p.Role != role && p.Role != RoleAdmin {
				httpx.WriteError(w, r, httpx.Errorf(http.StatusForbidden, httpx.CodeForbidden, "requires role %q", role))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
