package history

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/elph-server/elph/platform/auth"
	"github.com/elph-server/elph/platform/httpx"
)

// Routes is the history API, for authenticated users, each of whom only
// ever sees their own records.
func (m *Module) Routes() http.Handler {
	r := chi.NewRouter()
	r.Use(auth.Middleware(m.verifier))
	r.Get("/v1/calls", m.handleList)
	r.Get("/v1/calls/export.csv", m.handleExport)
	r.Get("/v1/calls/missed/count", m.handleMissedCount)
	r.Post("/v1/calls/missed/seen", m.handleMarkSeen)
	r.Get("/v1/calls/{id}", m.handleGet)
	r.Delete("/v1/calls/{id}", m.handleDelete)
	return r
}

func userID(r *http.Request) int64 {
	p, _ := auth.FromContext(r.Context())
	return p.UserID
}

// httpError maps the service's errors to the standard error body.
func httpError(err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return httpx.Errorf(http.StatusNotFound, httpx.CodeNotFound, "no such call record")
	case errors.Is(err, errBadCursor):
		return httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "cursor is not valid")
	}
	return err
}

// parseFilter reads direction, result, peer, from and to.
func parseFilter(q url.Values) (Filter, error) {
	f := Filter{Direction: q.Get("direction"), Result: q.Get("result"), Peer: q.Get("peer")}
	switch f.Direction {
	case "", DirectionInbound, DirectionOutbound:
	default:
		return Filter{}, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "direction must be %q or %q", DirectionInbound, DirectionOutbound)
	}
	switch f.Result {
	case "", ResultAnswered, ResultMissed, ResultRejected, ResultBusy, ResultFailed, ResultCancelled, ResultInProgress:
	default:
		return Filter{}, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "unknown result %q", clip(f.Result))
	}
	if len(f.Peer) > 2*MaxPeerNameRune {
		return Filter{}, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "peer is too long")
	}
	for _, b := range []struct {
		name string
		t    *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		v := q.Get(b.name)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil || t.Before(minEventTime) || !t.Before(maxEventTime) {
			return Filter{}, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "%s must be an RFC 3339 time", b.name)
		}
		*b.t = t
	}
	return f, nil
}

type listResponse struct {
	Calls      []Call `json:"calls"`
	NextCursor string `json:"next_cursor,omitempty"`
}

func (m *Module) handleList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := parseFilter(q)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	limit := 0
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 {
			httpx.WriteError(w, r, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "limit must be a positive integer"))
			return
		}
	}
	calls, next, err := m.List(r.Context(), userID(r), f, q.Get("cursor"), limit)
	if err != nil {
		httpx.WriteError(w, r, httpError(err))
		return
	}
	if calls == nil {
		calls = []Call{}
	}
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, http.StatusOK, listResponse{Calls: calls, NextCursor: next})
}

// recordID reads {id}; a malformed one is a record that does not exist.
func recordID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id <= 0 {
		httpx.WriteError(w, r, httpError(ErrNotFound))
		return 0, false
	}
	return id, true
}

func (m *Module) handleGet(w http.ResponseWriter, r *http.Request) {
	id, ok := recordID(w, r)
	if !ok {
		return
	}
	c, err := m.Get(r.Context(), userID(r), id)
	if err != nil {
		httpx.WriteError(w, r, httpError(err))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, http.StatusOK, c)
}

func (m *Module) handleDelete(w http.ResponseWriter, r *http.Request) {
	id, ok := recordID(w, r)
	if !ok {
		return
	}
	if err := m.Delete(r.Context(), userID(r), id); err != nil {
		httpx.WriteError(w, r, httpError(err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type countResponse struct {
	Count int `json:"count"`
}

func (m *Module) handleMissedCount(w http.ResponseWriter, r *http.Request) {
	n, err := m.UnseenMissed(r.Context(), userID(r))
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, http.StatusOK, countResponse{Count: n})
}

// seenRequest is the optional body of POST /v1/calls/missed/seen.
type seenRequest struct {
	// UpToID marks the missed calls with ids up to it; 0 or absent: all.
	UpToID int64 `json:"up_to_id"`
}

type seenResponse struct {
	Marked int64 `json:"marked"`
	Count  int   `json:"count"` // unseen missed calls left
}

func (m *Module) handleMarkSeen(w http.ResponseWriter, r *http.Request) {
	var req seenRequest
	// No body (Content-Length: 0) marks all.
	if r.ContentLength != 0 {
		if err := httpx.DecodeJSON(r, &req); err != nil {
			httpx.WriteError(w, r, err)
			return
		}
	}
	if req.UpToID < 0 {
		httpx.WriteError(w, r, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "up_to_id must not be negative"))
		return
	}
	marked, unseen, err := m.MarkSeen(r.Context(), userID(r), req.UpToID)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, seenResponse{Marked: marked, Count: unseen})
}
