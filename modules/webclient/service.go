// Package webclient serves the browser client (web/) from the binary.
package webclient

import (
	"context"
	"io/fs"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/elph-server/elph/platform/module"
)

// Name is the module's name in configuration and logs.
const Name = "webclient"

// Module serves the embedded browser client. Its files are public (no
// token), as every web asset must be for the login page to load.
type Module struct {
	files fs.FS
}

// New returns the module over the given files.
func New(files fs.FS) *Module { return &Module{files: files} }

func (m *Module) Name() string                    { return Name }
func (m *Module) Topics() module.Topics           { return module.Topics{} }
func (m *Module) Start(ctx context.Context) error { return nil }
func (m *Module) Stop(ctx context.Context) error  { return nil }

// Routes serves the files with security headers; unknown paths fall back to
// index.html so client-side routes survive a reload.
func (m *Module) Routes() http.Handler {
	r := chi.NewRouter()
	r.Use(securityHeaders)
	// fs.Stat refuses paths with "..", so nothing outside the files is
	// reachable.
	r.Get("/*", func(w http.ResponseWriter, req *http.Request) {
		p := chi.URLParam(req, "*")
		if p != "" {
			if st, err := fs.Stat(m.files, p); err == nil && !st.IsDir() {
				w.Header().Set("Cache-Control", "public, max-age=300")
				http.ServeFileFS(w, req, m.files, p)
				return
			}
		}
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, req, m.files, "index.html")
	})
	return r
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}
