package chat

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/elph-server/elph/platform/auth"
	"github.com/elph-server/elph/platform/httpx"
	"github.com/elph-server/elph/platform/stream"
)

// Routes is the chat API, under /chat on the gateway: the stream's
// WebSocket at /v1/ws (it authenticates itself) and the REST API, which
// needs an access token. docs/protocol.md describes both.
func (m *Module) Routes() http.Handler {
	r := chi.NewRouter()
	r.Get("/v1/ws", m.stream.Handler().ServeHTTP)
	r.Group(func(r chi.Router) {
		r.Use(auth.Middleware(m.verifier))
		// JSON may spell each byte of a body as a 6-byte \u escape.
		r.Use(httpx.AllowBody(int64(6*m.maxBody + 16<<10)))
		r.Get("/v1/conversations", m.handleList)
		r.Post("/v1/conversations", m.handleCreate)
		r.Get("/v1/search", m.handleSearch)
		r.Route("/v1/conversations/{id}", func(r chi.Router) {
			r.Get("/", m.handleGet)
			r.Patch("/", m.handleUpdate)
			r.Post("/members", m.handleAddMembers)
			r.Delete("/members/{user}", m.handleRemoveMember)
			r.Put("/members/{user}/role", m.handleSetRole)
			r.Post("/leave", m.handleLeave)
			r.Put("/mute", m.handleMute)
			r.Post("/read", m.handleRead)
			r.Post("/typing", m.handleTyping)
			r.Get("/pins", m.handlePins)
			r.Put("/pins/{mid}", m.handlePin(true))
			r.Delete("/pins/{mid}", m.handlePin(false))
			r.Get("/messages", m.handleHistory)
			r.Post("/messages", m.handleSend)
			r.Get("/messages/{mid}", m.handleGetMessage)
			r.Patch("/messages/{mid}", m.handleEdit)
			r.Delete("/messages/{mid}", m.handleDelete)
			r.Put("/messages/{mid}/reactions/{emoji}", m.handleReact(true))
			r.Delete("/messages/{mid}/reactions/{emoji}", m.handleReact(false))
		})
	})
	return r
}

// httpError turns a service error into the standard error body.
func httpError(err error) error {
	var ce *Error
	var he *httpx.Error
	switch {
	case errors.As(err, &ce):
		status := http.StatusBadRequest
		switch {
		case errors.Is(ce.Kind, ErrNotFound):
			status = http.StatusNotFound
		case errors.Is(ce.Kind, ErrForbidden):
			status = http.StatusForbidden
		case errors.Is(ce.Kind, ErrConflict):
			status = http.StatusConflict
		case errors.Is(ce.Kind, ErrTooLarge):
			status = http.StatusRequestEntityTooLarge
		}
		return httpx.Errorf(status, ce.Code, "%s", ce.Message)
	case errors.Is(err, stream.ErrEventTooLarge):
		// Bodies are bounded, but a message's JSON (escapes, files,
		// mentions) must also fit one stream event.
		return httpx.Errorf(http.StatusRequestEntityTooLarge, "message_too_large", "the message is too large")
	case errors.As(err, &he):
		return he
	}
	return err
}

func fail(w http.ResponseWriter, r *http.Request, err error) {
	httpx.WriteError(w, r, httpError(err))
}

// userID is the authenticated user; the middleware guarantees one.
func userID(r *http.Request) int64 {
	p, _ := auth.FromContext(r.Context())
	return p.UserID
}

// pathID parses a positive id from the path. Anything else names nothing,
// hence 404.
func pathID(r *http.Request, name string) (int64, error) {
	id, err := strconv.ParseInt(chi.URLParam(r, name), 10, 64)
	if err != nil || id <= 0 {
		return 0, httpx.Errorf(http.StatusNotFound, httpx.CodeNotFound, "not found")
	}
	return id, nil
}

// queryID parses an optional non-negative id from the query string.
func queryID(r *http.Request, name string) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id < 0 {
		return 0, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "%s must be an id", name)
	}
	return id, nil
}

func queryLimit(r *http.Request) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "limit must be a positive number")
	}
	return n, nil
}

// pathIDs parses the path ids names (conversation first) or answers 404.
func pathIDs(w http.ResponseWriter, r *http.Request, names ...string) ([]int64, bool) {
	out := make([]int64, len(names))
	for i, n := range names {
		id, err := pathID(r, n)
		if err != nil {
			fail(w, r, err)
			return nil, false
		}
		out[i] = id
	}
	return out, true
}

type createRequest struct {
	Kind      string  `json:"kind"`
	UserID    int64   `json:"user_id,omitempty"`    // direct
	Title     string  `json:"title,omitempty"`      // group
	AvatarRef string  `json:"avatar_ref,omitempty"` // group
	MemberIDs []int64 `json:"member_ids,omitempty"` // group
}

func (m *Module) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		fail(w, r, err)
		return
	}
	me := userID(r)
	switch req.Kind {
	case KindDirect:
		if req.Title != "" || req.AvatarRef != "" || len(req.MemberIDs) > 0 {
			fail(w, r, invalidf("a direct conversation takes user_id only"))
			return
		}
		v, created, err := m.CreateDirect(r.Context(), me, req.UserID)
		if err != nil {
			fail(w, r, err)
			return
		}
		status := http.StatusOK
		if created {
			status = http.StatusCreated
		}
		httpx.WriteJSON(w, status, v)
	case KindGroup:
		if req.UserID != 0 {
			fail(w, r, invalidf("a group takes member_ids, not user_id"))
			return
		}
		v, err := m.CreateGroup(r.Context(), me, req.Title, req.AvatarRef, req.MemberIDs)
		if err != nil {
			fail(w, r, err)
			return
		}
		httpx.WriteJSON(w, http.StatusCreated, v)
	default:
		fail(w, r, invalidf("kind must be %q or %q", KindDirect, KindGroup))
	}
}

type listResponse struct {
	Conversations []ConversationView `json:"conversations"`
	NextCursor    string             `json:"next_cursor,omitempty"`
}

func (m *Module) handleList(w http.ResponseWriter, r *http.Request) {
	limit, err := queryLimit(r)
	if err != nil {
		fail(w, r, err)
		return
	}
	vs, next, err := m.List(r.Context(), userID(r), r.URL.Query().Get("cursor"), limit)
	if err != nil {
		fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, listResponse{Conversations: nonNil(vs), NextCursor: next})
}

func (m *Module) handleGet(w http.ResponseWriter, r *http.Request) {
	id, ok := pathIDs(w, r, "id")
	if !ok {
		return
	}
	v, err := m.View(r.Context(), userID(r), id[0])
	if err != nil {
		fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, v)
}

type updateRequest struct {
	Title     *string `json:"title,omitempty"`
	AvatarRef *string `json:"avatar_ref,omitempty"`
}

func (m *Module) handleUpdate(w http.ResponseWriter, r *http.Request) {
	id, ok := pathIDs(w, r, "id")
	if !ok {
		return
	}
	var req updateRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		fail(w, r, err)
		return
	}
	v, err := m.Update(r.Context(), userID(r), id[0], ConversationUpdate(req))
	if err != nil {
		fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, v)
}

type membersResponse struct {
	Members []Member `json:"members"`
}

func (m *Module) handleAddMembers(w http.ResponseWriter, r *http.Request) {
	id, ok := pathIDs(w, r, "id")
	if !ok {
		return
	}
	var req struct {
		UserIDs []int64 `json:"user_ids"`
	}
	if err := httpx.DecodeJSON(r, &req); err != nil {
		fail(w, r, err)
		return
	}
	added, err := m.AddMembers(r.Context(), userID(r), id[0], req.UserIDs)
	if err != nil {
		fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, membersResponse{Members: added})
}

func (m *Module) handleRemoveMember(w http.ResponseWriter, r *http.Request) {
	id, ok := pathIDs(w, r, "id", "user")
	if !ok {
		return
	}
	if err := m.RemoveMember(r.Context(), userID(r), id[0], id[1]); err != nil {
		fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (m *Module) handleSetRole(w http.ResponseWriter, r *http.Request) {
	id, ok := pathIDs(w, r, "id", "user")
	if !ok {
		return
	}
	var req struct {
		Role string `json:"role"`
	}
	if err := httpx.DecodeJSON(r, &req); err != nil {
		fail(w, r, err)
		return
	}
	changed, err := m.SetRole(r.Context(), userID(r), id[0], id[1], req.Role)
	if err != nil {
		fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, membersResponse{Members: changed})
}

func (m *Module) handleLeave(w http.ResponseWriter, r *http.Request) {
	id, ok := pathIDs(w, r, "id")
	if !ok {
		return
	}
	if err := m.Leave(r.Context(), userID(r), id[0]); err != nil {
		fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (m *Module) handleMute(w http.ResponseWriter, r *http.Request) {
	id, ok := pathIDs(w, r, "id")
	if !ok {
		return
	}
	var req struct {
		Until *time.Time `json:"until"`
	}
	if err := httpx.DecodeJSON(r, &req); err != nil {
		fail(w, r, err)
		return
	}
	me, err := m.Mute(r.Context(), userID(r), id[0], req.Until)
	if err != nil {
		fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, me)
}

func (m *Module) handleRead(w http.ResponseWriter, r *http.Request) {
	id, ok := pathIDs(w, r, "id")
	if !ok {
		return
	}
	var req struct {
		MessageID int64 `json:"message_id"`
	}
	if err := httpx.DecodeJSON(r, &req); err != nil {
		fail(w, r, err)
		return
	}
	st, err := m.MarkRead(r.Context(), userID(r), id[0], req.MessageID)
	if err != nil {
		fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, st)
}

func (m *Module) handleTyping(w http.ResponseWriter, r *http.Request) {
	id, ok := pathIDs(w, r, "id")
	if !ok {
		return
	}
	if err := m.Typing(r.Context(), userID(r), id[0]); err != nil {
		fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (m *Module) handlePins(w http.ResponseWriter, r *http.Request) {
	id, ok := pathIDs(w, r, "id")
	if !ok {
		return
	}
	pins, err := m.Pins(r.Context(), userID(r), id[0])
	if err != nil {
		fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, struct {
		Pins []Pin `json:"pins"`
	}{nonNil(pins)})
}

func (m *Module) handlePin(pinned bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathIDs(w, r, "id", "mid")
		if !ok {
			return
		}
		if err := m.SetPinned(r.Context(), userID(r), id[0], id[1], pinned); err != nil {
			fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func (m *Module) handleHistory(w http.ResponseWriter, r *http.Request) {
	id, ok := pathIDs(w, r, "id")
	if !ok {
		return
	}
	var q HistoryQuery
	var err error
	for _, p := range []struct {
		name string
		dst  **int64
	}{{"before", &q.Before}, {"after", &q.After}, {"around", &q.Around}} {
		if !r.URL.Query().Has(p.name) {
			continue
		}
		id, err := queryID(r, p.name)
		if err != nil {
			fail(w, r, err)
			return
		}
		*p.dst = &id
	}
	if q.Limit, err = queryLimit(r); err != nil {
		fail(w, r, err)
		return
	}
	page, err := m.History(r.Context(), userID(r), id[0], q)
	if err != nil {
		fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, page)
}

func (m *Module) handleSend(w http.ResponseWriter, r *http.Request) {
	id, ok := pathIDs(w, r, "id")
	if !ok {
		return
	}
	req, err := decodeSend(r, m.maxBody)
	if err != nil {
		fail(w, r, err)
		return
	}
	msg, created, err := m.Send(r.Context(), userID(r), id[0], req)
	if err != nil {
		fail(w, r, err)
		return
	}
	status := http.StatusOK // a retry: the message stored the first time
	if created {
		status = http.StatusCreated
	}
	httpx.WriteJSON(w, status, msg)
}

func (m *Module) handleGetMessage(w http.ResponseWriter, r *http.Request) {
	id, ok := pathIDs(w, r, "id", "mid")
	if !ok {
		return
	}
	msg, err := m.Message(r.Context(), userID(r), id[0], id[1])
	if err != nil {
		fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, msg)
}

func (m *Module) handleEdit(w http.ResponseWriter, r *http.Request) {
	id, ok := pathIDs(w, r, "id", "mid")
	if !ok {
		return
	}
	var req EditRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		fail(w, r, err)
		return
	}
	msg, err := m.Edit(r.Context(), userID(r), id[0], id[1], req)
	if err != nil {
		fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, msg)
}

func (m *Module) handleDelete(w http.ResponseWriter, r *http.Request) {
	id, ok := pathIDs(w, r, "id", "mid")
	if !ok {
		return
	}
	var everyone bool
	switch r.URL.Query().Get("for") {
	case "", "me":
	case "everyone":
		everyone = true
	default:
		fail(w, r, invalidf("for must be me or everyone"))
		return
	}
	if err := m.Delete(r.Context(), userID(r), id[0], id[1], everyone); err != nil {
		fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (m *Module) handleReact(add bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathIDs(w, r, "id", "mid")
		if !ok {
			return
		}
		emoji := chi.URLParam(r, "emoji")
		if r.URL.RawPath != "" {
			// chi matched the escaped path, so the parameter is escaped.
			var err error
			if emoji, err = url.PathUnescape(emoji); err != nil {
				fail(w, r, invalidf("emoji is not a valid path segment"))
				return
			}
		}
		rs, err := m.React(r.Context(), userID(r), id[0], id[1], emoji, add)
		if err != nil {
			fail(w, r, err)
			return
		}
		httpx.WriteJSON(w, http.StatusOK, struct {
			Reactions []Reaction `json:"reactions"`
		}{rs})
	}
}

func (m *Module) handleSearch(w http.ResponseWriter, r *http.Request) {
	q := SearchQuery{Text: r.URL.Query().Get("q")}
	var err error
	if q.ConversationID, err = queryID(r, "conversation_id"); err != nil {
		fail(w, r, err)
		return
	}
	if q.Before, err = queryID(r, "before"); err != nil {
		fail(w, r, err)
		return
	}
	if q.Limit, err = queryLimit(r); err != nil {
		fail(w, r, err)
		return
	}
	res, err := m.Search(r.Context(), userID(r), q)
	if err != nil {
		fail(w, r, err)
		return
	}
	res.Messages = nonNil(res.Messages)
	httpx.WriteJSON(w, http.StatusOK, res)
}
