package auth_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/elph-server/elph/platform/auth"
	"github.com/elph-server/elph/platform/httpx"
)

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// serve runs h on a GET with the given Authorization header ("" for none)
// and decodes an error body when the status is not 200.
func serve(t *testing.T, h http.Handler, authorization string) (*httptest.ResponseRecorder, errorBody) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var body errorBody
	if w.Code != http.StatusOK {
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatalf("error body %q: %v", w.Body.String(), err)
		}
	}
	return w, body
}

func TestMiddleware(t *testing.T) {
	f := newFixture(t)
	valid := f.token(t, nil)
	revoked := f.token(t, func(c *auth.Claims) { c.SessionID = "sess-revoked" })
	f.revoked.Revoke("sess-revoked")

	var got *auth.Principal
	h := auth.Middleware(f.v)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = auth.FromContext(r.Context())
		w.WriteHeader(http.StatusOK)
	}))

	const invalid = `Bearer error="invalid_token"`
	tests := []struct {
		name          string
		authorization string
		at            time.Time
		wantStatus    int
		wantChallenge string // WWW-Authenticate
		wantMessage   string
	}{
		{"bearer", "Bearer " + valid, t0, http.StatusOK, "", ""},
		{"scheme in lower case", "bearer " + valid, t0, http.StatusOK, "", ""},
		{"scheme in upper case", "BEARER " + valid, t0, http.StatusOK, "", ""},
		{"missing header", "", t0, http.StatusUnauthorized, "Bearer", "missing bearer token"},
		{"basic scheme", "Basic aXZhbjpzZWNyZXQ=", t0, http.StatusUnauthorized, "Bearer", "authorization scheme must be Bearer"},
		{"token without scheme", valid, t0, http.StatusUnauthorized, "Bearer", "authorization scheme must be Bearer"},
		{"scheme without token", "Bearer", t0, http.StatusUnauthorized, invalid, "invalid access token"},
		{"bad token", "Bearer abc.def.ghi", t0, http.StatusUnauthorized, invalid, "invalid access token"},
		{"expired", "Bearer " + valid, t0.Add(time.Hour), http.StatusUnauthorized,
			`Bearer error="invalid_token", error_description="the access token expired"`, "access token expired"},
		{"revoked", "Bearer " + revoked, t0, http.StatusUnauthorized,
			`Bearer error="invalid_token", error_description="the session was revoked"`, "session revoked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.clock.Set(tt.at)
			got = nil
			w, body := serve(t, h, tt.authorization)
			if w.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", w.Code, tt.wantStatus, w.Body)
			}
			if c := w.Header().Get("WWW-Authenticate"); c != tt.wantChallenge {
				t.Errorf("WWW-Authenticate = %q, want %q", c, tt.wantChallenge)
			}
			if tt.wantStatus == http.StatusOK {
				if got == nil || got.UserID != 42 || got.SessionID != "sess-1" {
					t.Errorf("principal in the handler = %+v, want user 42 of sess-1", got)
				}
				return
			}
			if got != nil {
				t.Error("handler ran for a rejected request")
			}
			if body.Error.Code != httpx.CodeUnauthorized || body.Error.Message != tt.wantMessage {
				t.Errorf("error = %+v, want code %q message %q", body.Error, httpx.CodeUnauthorized, tt.wantMessage)
			}
		})
	}
}

func TestRequireRole(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	tests := []struct {
		name       string
		principal  *auth.Principal // nil: no Middleware ran
		role       string
		wantStatus int
		wantCode   string
	}{
		{"user for user", &auth.Principal{UserID: 1, Role: "user"}, "user", http.StatusOK, ""},
		{"admin for admin", &auth.Principal{UserID: 1, Role: "admin"}, "admin", http.StatusOK, ""},
		{"admin for user", &auth.Principal{UserID: 1, Role: "admin"}, "user", http.StatusOK, ""},
		{"admin for any role", &auth.Principal{UserID: 1, Role: "admin"}, "auditor", http.StatusOK, ""},
		{"user for admin", &auth.Principal{UserID: 1, Role: "user"}, "admin", http.StatusForbidden, httpx.CodeForbidden},
		{"role names are exact", &auth.Principal{UserID: 1, Role: "Admin"}, "admin", http.StatusForbidden, httpx.CodeForbidden},
		{"no principal", nil, "user", http.StatusUnauthorized, httpx.CodeUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := auth.RequireRole(tt.role)(ok)
			r := httptest.NewRequest(http.MethodGet, "/x", nil)
			if tt.principal != nil {
				r = r.WithContext(auth.WithPrincipal(r.Context(), tt.principal))
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d", w.Code, tt.wantStatus)
			}
			if tt.wantCode == "" {
				return
			}
			var body errorBody
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if body.Error.Code != tt.wantCode {
				t.Errorf("code = %q, want %q", body.Error.Code, tt.wantCode)
			}
		})
	}
}

func TestMiddlewareThenRequireRole(t *testing.T) {
	f := newFixture(t)
	h := auth.Middleware(f.v)(auth.RequireRole("admin")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	})))
	user := f.token(t, nil)
	admin := f.token(t, func(c *auth.Claims) { c.Role = "admin" })
	if w, _ := serve(t, h, "Bearer "+user); w.Code != http.StatusForbidden {
		t.Errorf("user on an admin route: status %d, want 403", w.Code)
	}
	if w, _ := serve(t, h, "Bearer "+admin); w.Code != http.StatusOK {
		t.Errorf("admin on an admin route: status %d, want 200", w.Code)
	}
}
