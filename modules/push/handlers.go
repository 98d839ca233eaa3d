package push

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/elph-server/elph/platform/auth"
	"github.com/elph-server/elph/platform/httpx"
)

// maxDeviceBody bounds a registration's body.
const maxDeviceBody = 16 << 10

// Routes is the device API for authenticated users (each sees and
// removes only their own devices) and the relay endpoint, which has its
// own token instead of a user's.
func (m *Module) Routes() http.Handler {
	r := chi.NewRouter()
	r.NotFound(httpx.NotFound)
	r.MethodNotAllowed(httpx.MethodNotAllowed)
	r.Post("/v1/relay", m.handleRelay)
	if m.db == nil {
		return r
	}
	r.Group(func(r chi.Router) {
		r.Use(auth.Middleware(m.verifier))
		r.Post("/v1/devices", m.handleRegister)
		r.Get("/v1/devices", m.handleList)
		r.Delete("/v1/devices/{id}", m.handleDelete)
	})
	return r
}

func principal(r *http.Request) *auth.Principal {
	p, _ := auth.FromContext(r.Context())
	return p
}

// registerRequest is the body of POST /v1/devices.
type registerRequest struct {
	Platform string `json:"platform"`
	AppID    string `json:"app_id"`
	Token    string `json:"token"`
	Name     string `json:"name"`
}

func badRequest(msg string) error {
	return httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "%s", msg)
}

// parseRegistration validates a registration request's fields.
func parseRegistration(req registerRequest) (registration, error) {
	tok, err := validateDevice(req.Platform, req.AppID, req.Token)
	if err != nil {
		return registration{}, badRequest(err.Error())
	}
	if !validName(req.Name) {
		return registration{}, badRequest("name must be at most 100 characters of printable text")
	}
	return registration{Platform: req.Platform, AppID: req.AppID, Token: tok, Name: req.Name}, nil
}

func (m *Module) handleRegister(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxDeviceBody)
	var req registerRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	reg, err := parseRegistration(req)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	p := principal(r)
	reg.UserID, reg.SessionID = p.UserID, p.SessionID
	if len(reg.SessionID) > 64 {
		reg.SessionID = reg.SessionID[:64]
	}
	dev, created, replaced, err := m.store.upsertDevice(r.Context(), reg, m.now())
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	dev.Current = dev.sessionID == reg.SessionID
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		m.met.devices.WithLabelValues("created").Inc()
	} else {
		m.met.devices.WithLabelValues("updated").Inc()
	}
	if replaced > 0 {
		m.met.devices.WithLabelValues("replaced").Add(float64(replaced))
	}
	httpx.Logger(r.Context()).InfoContext(r.Context(), "push: device registered", "user_id", reg.UserID, "device_id", dev.ID,
		"platform", reg.Platform, "app_id", reg.AppID, "token", tokenHint(reg.Token), "created", created, "replaced", replaced)
	httpx.WriteJSON(w, status, dev)
}

type listResponse struct {
	Devices []Device `json:"devices"`
}

func (m *Module) handleList(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	devs, err := m.store.listDevices(r.Context(), p.UserID)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	for i := range devs {
		devs[i].Current = p.SessionID != "" && devs[i].sessionID == p.SessionID
	}
	if devs == nil {
		devs = []Device{}
	}
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, http.StatusOK, listResponse{Devices: devs})
}

func (m *Module) handleDelete(w http.ResponseWriter, r *http.Request) {
	notFound := httpx.Errorf(http.StatusNotFound, httpx.CodeNotFound, "no such device")
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id <= 0 {
		httpx.WriteError(w, r, notFound)
		return
	}
	p := principal(r)
	err = m.store.deleteDevice(r.Context(), p.UserID, id)
	switch {
	case errors.Is(err, ErrNotFound):
		httpx.WriteError(w, r, notFound)
		return
	case err != nil:
		httpx.WriteError(w, r, err)
		return
	}
	m.met.devices.WithLabelValues("deleted").Inc()
	httpx.Logger(r.Context()).InfoContext(r.Context(), "push: device removed by its user", "user_id", p.UserID, "device_id", id)
	w.WriteHeader(http.StatusNoContent)
}
