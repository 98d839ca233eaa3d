package status

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/elph-server/elph/platform/auth"
	"github.com/elph-server/elph/platform/httpx"
)

// Routes is the status API for authenticated users. Presence is visible
// to every user of the company (as in its address book); what a user
// chose and their devices only to themself.
func (m *Module) Routes() http.Handler {
	r := chi.NewRouter()
	r.Use(auth.Middleware(m.verifier))
	r.Get("/v1/me", m.handleMe)
	r.Put("/v1/me/choice", m.handleChoose)
	r.Put("/v1/me/text", m.handleSetText)
	r.Delete("/v1/me/text", m.handleClearText)
	r.Post("/v1/me/activity", m.handleActivity)
	r.Get("/v1/users/{id}", m.handleGet)
	r.Post("/v1/query", m.handleQuery)
	return r
}

func principal(r *http.Request) *auth.Principal {
	p, _ := auth.FromContext(r.Context())
	return p
}

// httpError maps the module's errors to the standard error body.
func httpError(err error) error {
	if isInvalid(err) {
		return httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "%s", strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "))
	}
	return err
}

func (m *Module) handleMe(w http.ResponseWriter, r *http.Request) {
	me, err := m.Me(r.Context(), principal(r).UserID)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, me)
}

type chooseRequest struct {
	Choice string `json:"choice"`
}

func (m *Module) handleChoose(w http.ResponseWriter, r *http.Request) {
	var req chooseRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	me, err := m.Choose(r.Context(), principal(r).UserID, req.Choice)
	if err != nil {
		httpx.WriteError(w, r, httpError(err))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, me)
}

type textRequest struct {
	Text string `json:"text"`
	// ExpiresAt or ExpiresIn (seconds) sets when the text goes away; with
	// neither it stays until changed.
	ExpiresAt *time.Time `json:"expires_at"`
	ExpiresIn *int64     `json:"expires_in"`
}

func (m *Module) handleSetText(w http.ResponseWriter, r *http.Request) {
	var req textRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	expires := req.ExpiresAt
	if req.ExpiresIn != nil {
		if expires != nil {
			httpx.WriteError(w, r, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "give expires_at or expires_in, not both"))
			return
		}
		if *req.ExpiresIn <= 0 || *req.ExpiresIn > int64(maxTextTTL/time.Second) {
			httpx.WriteError(w, r, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "expires_in must be 1..%d seconds", int64(maxTextTTL/time.Second)))
			return
		}
		t := m.now().Add(time.Duration(*req.ExpiresIn) * time.Second)
		expires = &t
	}
	me, err := m.SetText(r.Context(), principal(r).UserID, req.Text, expires)
	if err != nil {
		httpx.WriteError(w, r, httpError(err))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, me)
}

func (m *Module) handleClearText(w http.ResponseWriter, r *http.Request) {
	me, err := m.SetText(r.Context(), principal(r).UserID, "", nil)
	if err != nil {
		httpx.WriteError(w, r, httpError(err))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, me)
}

// handleActivity is status.activity over REST, for the caller's session's
// connections on this node (a client whose socket is on this node; the
// WebSocket frame is the usual way).
func (m *Module) handleActivity(w http.ResponseWriter, r *http.Request) {
	var req ActivityFrame
	if err := httpx.DecodeJSON(r, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if req.IdleSeconds < 0 || req.IdleSeconds > maxIdleSeconds {
		httpx.WriteError(w, r, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "idle_seconds must be 0..%d", maxIdleSeconds))
		return
	}
	p := principal(r)
	for _, c := range m.conns.ofSession(p.UserID, p.SessionID) {
		if err := m.report(r.Context(), c, time.Duration(req.IdleSeconds)*time.Second); err != nil {
			httpx.WriteError(w, r, err)
			return
		}
	}
	m.handleMe(w, r)
}

func (m *Module) handleGet(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id <= 0 {
		httpx.WriteError(w, r, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "user id must be a positive integer"))
		return
	}
	p, err := m.Get(r.Context(), id)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, p)
}

type queryRequest struct {
	UserIDs []int64 `json:"user_ids"`
}

func (m *Module) handleQuery(w http.ResponseWriter, r *http.Request) {
	var req queryRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	switch {
	case len(req.UserIDs) > MaxQueryUsers:
		httpx.WriteError(w, r, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "at most %d user_ids per query", MaxQueryUsers))
		return
	}
	for _, id := range req.UserIDs {
		if id <= 0 {
			httpx.WriteError(w, r, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "user id %d is not positive", id))
			return
		}
	}
	ps, err := m.Query(r.Context(), req.UserIDs)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, presenceList{Presences: ps})
}
