package addressbook

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/elph-server/elph/platform/auth"
	"github.com/elph-server/elph/platform/httpx"
)

// Routes is the address book API for authenticated users. Directory
// contacts are visible to everyone; personal contacts and favourites
// only to their owner.
func (m *Module) Routes() http.Handler {
	r := chi.NewRouter()
	r.Use(auth.Middleware(m.verifier))
	r.Get("/v1/contacts", m.handleSearch)
	r.Post("/v1/contacts", m.handleCreate)
	r.Get("/v1/contacts/{id}", m.handleGet)
	r.Put("/v1/contacts/{id}", m.handleUpdate)
	r.Delete("/v1/contacts/{id}", m.handleDelete)
	r.Put("/v1/contacts/{id}/favorite", m.handleFavorite(true))
	r.Delete("/v1/contacts/{id}/favorite", m.handleFavorite(false))
	r.Get("/v1/contacts/{id}/avatar", m.handleAvatar)
	r.Head("/v1/contacts/{id}/avatar", m.handleAvatar)
	r.With(httpx.AllowBody(int64(m.cfg.MaxAvatarBytes))).Put("/v1/contacts/{id}/avatar", m.handlePutAvatar)
	r.Delete("/v1/contacts/{id}/avatar", m.handleDeleteAvatar)
	r.Get("/v1/lookup", m.handleLookup)
	return r
}

func principal(r *http.Request) *auth.Principal {
	p, _ := auth.FromContext(r.Context())
	return p
}

// httpError maps the module's errors to the standard error body.
func httpError(err error) error {
	msg := func(sentinel error) string {
		return strings.TrimPrefix(err.Error(), sentinel.Error()+": ")
	}
	switch {
	case errors.Is(err, ErrInvalid):
		return httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "%s", msg(ErrInvalid))
	case errors.Is(err, ErrNotFound):
		return httpx.Errorf(http.StatusNotFound, httpx.CodeNotFound, "no such contact")
	case errors.Is(err, ErrForbidden):
		return httpx.Errorf(http.StatusForbidden, httpx.CodeForbidden, "%s", msg(ErrForbidden))
	case errors.Is(err, ErrLimit):
		return httpx.Errorf(http.StatusConflict, "limit_reached", "%s", msg(ErrLimit))
	}
	return err
}

func contactID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "contact id must be a positive integer")
	}
	return id, nil
}

type searchResponse struct {
	Contacts []Contact `json:"contacts"`
	Total    int       `json:"total"`
}

// handleSearch: GET /v1/contacts?q=&scope=all|directory|personal&favorites=1&department=&limit=&offset=
func (m *Module) handleSearch(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	q := Query{Text: v.Get("q"), Department: v.Get("department")}
	switch v.Get("scope") {
	case "", "all":
	case "directory":
		q.Directory = true
	case "personal":
		q.Personal = true
	default:
		httpx.WriteError(w, r, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "scope must be all, directory or personal"))
		return
	}
	switch v.Get("favorites") {
	case "", "0", "false":
	case "1", "true":
		q.Favorites = true
	default:
		httpx.WriteError(w, r, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "favorites must be true or false"))
		return
	}
	for _, p := range []struct {
		name string
		dst  *int
		max  int
	}{{"limit", &q.Limit, MaxLimit}, {"offset", &q.Offset, maxOffset}} {
		s := v.Get(p.name)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > p.max {
			httpx.WriteError(w, r, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "%s must be 0..%d", p.name, p.max))
			return
		}
		*p.dst = n
	}
	cs, total, err := m.Search(r.Context(), principal(r).UserID, q)
	if err != nil {
		httpx.WriteError(w, r, httpError(err))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, searchResponse{Contacts: cs, Total: total})
}

func (m *Module) handleGet(w http.ResponseWriter, r *http.Request) {
	id, err := contactID(r)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	c, err := m.Get(r.Context(), principal(r).UserID, id)
	if err != nil {
		httpx.WriteError(w, r, httpError(err))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, c)
}

func (m *Module) handleCreate(w http.ResponseWriter, r *http.Request) {
	var f Fields
	if err := httpx.DecodeJSON(r, &f); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	c, err := m.CreatePersonal(r.Context(), principal(r).UserID, f)
	if err != nil {
		httpx.WriteError(w, r, httpError(err))
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, c)
}

func (m *Module) handleUpdate(w http.ResponseWriter, r *http.Request) {
	id, err := contactID(r)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	var f Fields
	if err := httpx.DecodeJSON(r, &f); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	c, err := m.UpdatePersonal(r.Context(), principal(r).UserID, id, f)
	if err != nil {
		httpx.WriteError(w, r, httpError(err))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, c)
}

func (m *Module) handleDelete(w http.ResponseWriter, r *http.Request) {
	id, err := contactID(r)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if err := m.DeletePersonal(r.Context(), principal(r).UserID, id); err != nil {
		httpx.WriteError(w, r, httpError(err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (m *Module) handleFavorite(on bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := contactID(r)
		if err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		c, err := m.SetFavorite(r.Context(), principal(r).UserID, id, on)
		if err != nil {
			httpx.WriteError(w, r, httpError(err))
			return
		}
		httpx.WriteJSON(w, http.StatusOK, c)
	}
}

type lookupResponse struct {
	Contacts []Contact `json:"contacts"`
}

// handleLookup: GET /v1/lookup?number= — who has this number (a caller
// id), personal contacts first.
func (m *Module) handleLookup(w http.ResponseWriter, r *http.Request) {
	number := r.URL.Query().Get("number")
	if number == "" || len(number) > 64 {
		httpx.WriteError(w, r, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "number is required (at most 64 bytes)"))
		return
	}
	cs := m.Lookup(principal(r).UserID, number)
	if cs == nil {
		cs = []Contact{}
	}
	httpx.WriteJSON(w, http.StatusOK, lookupResponse{Contacts: cs})
}
