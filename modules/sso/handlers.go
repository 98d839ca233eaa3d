package sso

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/elph-server/elph/platform/auth"
	"github.com/elph-server/elph/platform/httpx"
)

// errorCode is the stable code a client sees for a login-flow error. Bad
// password and unknown login share one code so nothing tells them apart.
func errorCode(err error) string {
	switch {
	case errors.Is(err, ErrBadCredentials):
		return "bad_credentials"
	case errors.Is(err, ErrTooManyFailures):
		return "too_many_attempts"
	case errors.Is(err, ErrAccountDisabled):
		return "account_disabled"
	case errors.Is(err, ErrAccountExpired):
		return "account_expired"
	case errors.Is(err, ErrPasswordExpired):
		return "password_expired"
	case errors.Is(err, ErrMustChange):
		return "password_must_change"
	case errors.Is(err, ErrAccountLocked):
		return "account_locked"
	case errors.Is(err, ErrLoginNotAllowed):
		return "login_not_allowed"
	case errors.Is(err, ErrDirectoryDown):
		return "directory_unavailable"
	case errors.Is(err, ErrRefreshReused):
		return "refresh_token_reused"
	case errors.Is(err, ErrSessionRevoked):
		return "session_revoked"
	case errors.Is(err, ErrSessionExpired):
		return "session_expired"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrConflict):
		return "conflict"
	}
	return "internal"
}

var errorMessages = map[string]string{
	"bad_credentials":       "login or password is wrong",
	"too_many_attempts":     "too many failed attempts; try again later",
	"account_disabled":      "the account is disabled",
	"account_expired":       "the account has expired",
	"password_expired":      "the password has expired; change it in the directory",
	"password_must_change":  "the password must be changed before the first login",
	"account_locked":        "the account is locked in the directory",
	"login_not_allowed":     "logging in is not allowed at this time or from this workstation",
	"directory_unavailable": "the directory cannot be reached; try again later",
	"refresh_token_reused":  "the refresh token was already used; the session has been ended",
	"session_revoked":       "the session has ended",
	"session_expired":       "the session has expired; log in again",
}

// httpError turns a flow error into the standard error body.
func httpError(err error) error {
	code := errorCode(err)
	status := http.StatusUnauthorized
	switch code {
	case "too_many_attempts":
		status = http.StatusTooManyRequests
	case "account_disabled", "account_expired", "password_expired", "password_must_change", "account_locked", "login_not_allowed":
		status = http.StatusForbidden
	case "directory_unavailable":
		status = http.StatusServiceUnavailable
	case "not_found":
		status = http.StatusNotFound
	case "conflict":
		status = http.StatusConflict
	case "internal":
		return err
	}
	msg, ok := errorMessages[code]
	if !ok {
		msg = err.Error()
	}
	return httpx.Errorf(status, code, "%s", msg)
}

// Routes is the sso API under /sso/v1.
func (m *Module) Routes() http.Handler {
	r := chi.NewRouter()
	r.Post("/v1/login", m.handleLogin)
	r.Post("/v1/token", m.handleRefresh)
	r.Group(func(r chi.Router) {
		r.Use(auth.Middleware(m.verifier))
		r.Get("/v1/me", m.handleMe)
		r.Get("/v1/introspect", m.handleIntrospect)
		r.Post("/v1/logout", m.handleLogout)
		r.Get("/v1/sessions", m.handleSessions)
		r.Delete("/v1/sessions/{id}", m.handleRevokeSession)
		r.Post("/v1/password", m.handleChangePassword)
		r.Group(func(r chi.Router) {
			r.Use(auth.RequireRole(string(RoleAdmin)))
			r.Get("/v1/users", m.handleListUsers)
			r.Post("/v1/users", m.handleCreateUser)
			r.Patch("/v1/users/{id}", m.handleUpdateUser)
		})
	})
	return r
}

type tokenResponse struct {
	AccessToken  string    `json:"access_token"`
	TokenType    string    `json:"token_type"`
	ExpiresIn    int       `json:"expires_in"`
	ExpiresAt    time.Time `json:"expires_at"`
	RefreshToken string    `json:"refresh_token"`
	SessionID    string    `json:"session_id"`
	User         User      `json:"user"`
}

func (m *Module) tokenResponse(res LoginResult) tokenResponse {
	return tokenResponse{
		AccessToken: res.AccessToken, TokenType: "Bearer",
		ExpiresIn: int(res.AccessExpiry.Sub(m.now()).Round(time.Second) / time.Second), ExpiresAt: res.AccessExpiry,
		RefreshToken: res.RefreshToken, SessionID: res.Session.ID, User: res.User,
	}
}

func noStore(w http.ResponseWriter) {
	// RFC 6749 5.1: responses with tokens must not be cached.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

func (m *Module) handleLogin(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Login    string `json:"login"`
		Password string `json:"password"`
		Device   string `json:"device"`
	}
	if err := httpx.DecodeJSON(r, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if strings.TrimSpace(req.Login) == "" || req.Password == "" {
		httpx.WriteError(w, r, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "login and password are required"))
		return
	}
	res, err := m.Login(r.Context(), LoginRequest{
		Login: strings.TrimSpace(req.Login), Password: req.Password, Device: req.Device,
		UserAgent: r.UserAgent(), IP: httpx.ClientIP(r.Context()),
	})
	if err != nil {
		httpx.WriteError(w, r, httpError(err))
		return
	}
	noStore(w)
	httpx.WriteJSON(w, http.StatusOK, m.tokenResponse(res))
}

func (m *Module) handleRefresh(w http.ResponseWriter, r *http.Request) {
	var req struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := httpx.DecodeJSON(r, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	res, err := m.Refresh(r.Context(), req.RefreshToken, httpx.ClientIP(r.Context()))
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			err = httpx.Errorf(http.StatusUnauthorized, "invalid_refresh_token", "the refresh token is not valid")
		} else {
			err = httpError(err)
		}
		httpx.WriteError(w, r, err)
		return
	}
	noStore(w)
	httpx.WriteJSON(w, http.StatusOK, m.tokenResponse(res))
}

func (m *Module) handleMe(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	u, err := m.store.UserByID(r.Context(), p.UserID)
	if err != nil {
		httpx.WriteError(w, r, httpError(err))
		return
	}
	groups, err := m.store.UserGroups(r.Context(), u.ID)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	names := make([]string, len(groups))
	for i, g := range groups {
		names[i] = g.Name
	}
	httpx.WriteJSON(w, http.StatusOK, struct {
		User
		Groups    []string `json:"groups"`
		SessionID string   `json:"session_id"`
	}{u, names, p.SessionID})
}

// handleIntrospect answers 200 with the token's claims, or 401: checked
// from the signature alone, with no database read, so a front proxy
// (nginx auth_request) or a mini-app can ask on every request.
func (m *Module) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Elph-User-Id", strconv.FormatInt(p.UserID, 10))
	w.Header().Set("X-Elph-Login", p.Login)
	httpx.WriteJSON(w, http.StatusOK, map[string]any{
		"active": true, "user_id": p.UserID, "login": p.Login, "role": p.Role,
		"session_id": p.SessionID, "expires_at": p.ExpiresAt,
	})
}

func (m *Module) handleLogout(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	m.revoke(r.Context(), Session{ID: p.SessionID, UserID: p.UserID}, "logout")
	w.WriteHeader(http.StatusNoContent)
}

// handleSessions lists the caller's sessions; an admin may ask for
// anyone's with ?user_id=.
func (m *Module) handleSessions(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	uid := p.UserID
	if s := r.URL.Query().Get("user_id"); s != "" {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil || id <= 0 {
			httpx.WriteError(w, r, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "user_id must be a positive integer"))
			return
		}
		if id != p.UserID && p.Role != string(RoleAdmin) {
			httpx.WriteError(w, r, httpx.Errorf(http.StatusForbidden, httpx.CodeForbidden, "only an admin may list another user's sessions"))
			return
		}
		uid = id
	}
	sessions, err := m.store.ListSessions(r.Context(), uid, false)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	type item struct {
		Session
		Current bool `json:"current"`
	}
	// Expired sessions stay in the table until purged; they are not live.
	now := m.now()
	out := make([]item, 0, len(sessions))
	for _, s := range sessions {
		if s.ExpiresAt.After(now) {
			out = append(out, item{s, s.ID == p.SessionID})
		}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"sessions": out})
}

// handleRevokeSession ends one of the caller's sessions, or anyone's for
// an admin. Someone else's session answers 404, not 403, so its id is not
// confirmed to exist.
func (m *Module) handleRevokeSession(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	sess, err := m.store.SessionByID(r.Context(), chi.URLParam(r, "id"))
	if err != nil || (sess.UserID != p.UserID && p.Role != string(RoleAdmin)) {
		httpx.WriteError(w, r, httpx.Errorf(http.StatusNotFound, httpx.CodeNotFound, "no such session"))
		return
	}
	reason := "revoked by user"
	if sess.UserID != p.UserID {
		reason = "revoked by admin"
	}
	m.revoke(r.Context(), sess, reason)
	w.WriteHeader(http.StatusNoContent)
}

func (m *Module) handleChangePassword(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	var req struct {
		Current string `json:"current_password"`
		New     string `json:"new_password"`
	}
	if err := httpx.DecodeJSON(r, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	u, hash, err := m.store.UserByLogin(r.Context(), p.Login)
	if err != nil || u.ID != p.UserID {
		httpx.WriteError(w, r, httpError(ErrNotFound))
		return
	}
	if u.Source != SourceLocal {
		httpx.WriteError(w, r, httpx.Errorf(http.StatusConflict, "directory_account", "this account's password is managed in the directory"))
		return
	}
	// The current password is checked like a login: within the lockout
	// budget (so a stolen access token is no unlimited guessing oracle)
	// and in a hashing slot.
	acctKey, ipKey := m.failureKeys(r.Context(), u.Login, httpx.ClientIP(r.Context()))
	now := m.now()
	if err := m.lockedOut(r.Context(), acctKey, ipKey, now); err != nil {
		httpx.WriteError(w, r, httpError(err))
		return
	}
	var ok bool
	if err := m.hashing(r.Context(), func() { ok, _, _ = VerifyPassword(hash, req.Current) }); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if !ok {
		m.countFailure(r.Context(), acctKey, ipKey, now)
		httpx.WriteError(w, r, httpError(ErrBadCredentials))
		return
	}
	if err := CheckPasswordPolicy(req.New); err != nil {
		httpx.WriteError(w, r, httpx.Errorf(http.StatusBadRequest, "weak_password", "%s", err.Error()))
		return
	}
	if err := m.SetPassword(r.Context(), u.ID, req.New, p.SessionID); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (m *Module) handleListUsers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var o ListUsersOptions
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			httpx.WriteError(w, r, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "after must be a user id"))
			return
		}
		o.After = n
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 500 {
			httpx.WriteError(w, r, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "limit must be 1..500"))
			return
		}
		o.Limit = n
	}
	o.IncludeDisabled = q.Get("include_disabled") == "true"
	users, err := m.store.ListUsers(r.Context(), o)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	next := ""
	if len(users) > 0 && (o.Limit == 0 && len(users) == 100 || len(users) == o.Limit) {
		next = strconv.FormatInt(users[len(users)-1].ID, 10)
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"users": users, "next_after": next})
}

type userInput struct {
	Login       string  `json:"login"`
	DisplayName string  `json:"display_name"`
	Email       string  `json:"email"`
	Department  string  `json:"department"`
	Title       string  `json:"title"`
	Phones      []Phone `json:"phones"`
	Role        Role    `json:"role"`
	Password    string  `json:"password"`
}

func (m *Module) handleCreateUser(w http.ResponseWriter, r *http.Request) {
	var in userInput
	if err := httpx.DecodeJSON(r, &in); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	u, err := m.CreateLocalUser(r.Context(), NewUser{
		Login: in.Login, DisplayName: in.DisplayName, Email: in.Email, Department: in.Department,
		Title: in.Title, Phones: in.Phones, Role: in.Role, Password: in.Password,
	})
	if err != nil {
		httpx.WriteError(w, r, userError(err))
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, u)
}

func (m *Module) handleUpdateUser(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id <= 0 {
		httpx.WriteError(w, r, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "user id must be a positive integer"))
		return
	}
	var in struct {
		Disabled *bool  `json:"disabled"`
		Role     *Role  `json:"role"`
		Reason   string `json:"reason"`
	}
	if err := httpx.DecodeJSON(r, &in); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if in.Role != nil {
		if err := m.SetRole(r.Context(), id, *in.Role); err != nil {
			httpx.WriteError(w, r, userError(err))
			return
		}
	}
	if in.Disabled != nil {
		if err := m.SetDisabled(r.Context(), id, *in.Disabled, in.Reason); err != nil {
			httpx.WriteError(w, r, userError(err))
			return
		}
	}
	u, err := m.store.UserByID(r.Context(), id)
	if err != nil {
		httpx.WriteError(w, r, userError(err))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, u)
}

// userError maps account-management errors; validation errors carry
// their own text.
func userError(err error) error {
	var ve *ValidationError
	switch {
	case errors.As(err, &ve):
		return httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "%s", ve.Error())
	case errors.Is(err, ErrNotFound):
		return httpx.Errorf(http.StatusNotFound, httpx.CodeNotFound, "no such user")
	case errors.Is(err, ErrConflict):
		return httpx.Errorf(http.StatusConflict, httpx.CodeConflict, "%s", err.Error())
	}
	return err
}
