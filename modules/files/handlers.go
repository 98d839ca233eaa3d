package files

import (
	"errors"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/elph-server/elph/platform/auth"
	"github.com/elph-server/elph/platform/blob"
	"github.com/elph-server/elph/platform/httpx"
	"github.com/elph-server/elph/platform/imaging"
)

// Routes is the files API: upload, metadata, content, thumbnail, delete,
// all for authenticated users only.
func (m *Module) Routes() http.Handler {
	r := chi.NewRouter()
	r.Use(auth.Middleware(m.verifier))
	r.With(httpx.AllowBody(m.maxUpload)).Post("/v1/files", m.handleUpload)
	r.Get("/v1/files/{id}", m.handleMetadata)
	r.Delete("/v1/files/{id}", m.handleDelete)
	r.Get("/v1/files/{id}/content", m.handleContent)
	r.Head("/v1/files/{id}/content", m.handleContent)
	r.Get("/v1/files/{id}/thumbnail", m.handleThumbnail)
	r.Head("/v1/files/{id}/thumbnail", m.handleThumbnail)
	return r
}

// fileResponse is a file's metadata as clients see it.
type fileResponse struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Size        int64     `json:"size"`
	ContentType string    `json:"content_type"`
	SHA256      string    `json:"sha256"`
	OwnerID     int64     `json:"owner_id"`
	CreatedAt   time.Time `json:"created_at"`
	Width       int       `json:"width,omitempty"`
	Height      int       `json:"height,omitempty"`
	Thumbnail   bool      `json:"thumbnail"`
}

func newFileResponse(f File) fileResponse {
	return fileResponse{
		ID: f.ID, Name: f.Name, Size: f.Size, ContentType: f.ContentType, SHA256: f.SHA256,
		OwnerID: f.OwnerID, CreatedAt: f.CreatedAt, Width: f.Width, Height: f.Height, Thumbnail: f.ThumbKey != "",
	}
}

// httpError maps the service's errors to the standard error body.
func httpError(err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return httpx.Errorf(http.StatusNotFound, httpx.CodeNotFound, "no such file")
	case errors.Is(err, ErrForbidden):
		return httpx.Errorf(http.StatusForbidden, httpx.CodeForbidden, "only the uploader may delete a file")
	case errors.Is(err, ErrInterrupted):
		return httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "the upload broke off before its end")
	}
	return err
}

// handleUpload stores the raw request body as a file. The name comes from
// ?name= or the Content-Disposition header's filename; Content-Type is
// only a hint, the type is sniffed from the content.
func (m *Module) handleUpload(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); strings.HasPrefix(mt, "multipart/") {
		// A form post would be stored as its MIME envelope: refuse it
		// rather than keep a file nobody can open.
		m.metrics.uploads.WithLabelValues(resultBadRequest).Inc()
		httpx.WriteError(w, r, httpx.Errorf(http.StatusUnsupportedMediaType, httpx.CodeUnsupportedMedia,
			"send the file as the raw request body, not as multipart form data"))
		return
	}
	if r.ContentLength > m.maxUpload {
		// Refused before a byte of the body is read.
		m.metrics.uploads.WithLabelValues(resultTooLarge).Inc()
		httpx.WriteError(w, r, tooLarge(m.maxUpload))
		return
	}
	name := r.URL.Query().Get("name")
	if name == "" {
		if _, params, err := mime.ParseMediaType(r.Header.Get("Content-Disposition")); err == nil {
			name = params["filename"] // filename* (RFC 6266) already decoded into it
		}
	}
	f, err := m.Upload(r.Context(), UploadRequest{
		OwnerID: p.UserID, Name: name, TypeHint: r.Header.Get("Content-Type"), Body: r.Body,
	})
	if errors.Is(err, ErrTooLarge) {
		httpx.WriteError(w, r, tooLarge(m.maxUpload))
		return
	}
	if err != nil {
		httpx.WriteError(w, r, httpError(err))
		return
	}
	w.Header().Set("Location", strings.TrimSuffix(r.URL.Path, "/")+"/"+f.ID)
	httpx.WriteJSON(w, http.StatusCreated, newFileResponse(f))
}

func tooLarge(limit int64) error {
	return httpx.Errorf(http.StatusRequestEntityTooLarge, httpx.CodePayloadTooLarge, "the file is larger than %d bytes", limit)
}

// file loads the {id} of the request for its principal, or answers 404.
func (m *Module) file(w http.ResponseWriter, r *http.Request) (File, bool) {
	p, _ := auth.FromContext(r.Context())
	f, err := m.readable(r.Context(), p.UserID, chi.URLParam(r, "id"))
	if err != nil {
		httpx.WriteError(w, r, httpError(err))
		return File{}, false
	}
	return f, true
}

// cacheHeaders let a client keep a file but ask each time: contents never
// change, but who may read them does, and the check is cheap with ETag.
func cacheHeaders(h http.Header) {
	h.Set("Cache-Control", "private, no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
}

func (m *Module) handleMetadata(w http.ResponseWriter, r *http.Request) {
	f, ok := m.file(w, r)
	if !ok {
		return
	}
	cacheHeaders(w.Header())
	httpx.WriteJSON(w, http.StatusOK, newFileResponse(f))
}

// handleContent delivers a file: with ?redirect=1 on S3 as a redirect to a
// presigned URL (the bytes then bypass this server), otherwise streamed
// with Range and conditional requests. It is always an attachment, never
// rendered in the browser, and active content is labelled as plain bytes.
func (m *Module) handleContent(w http.ResponseWriter, r *http.Request) {
	f, ok := m.file(w, r)
	if !ok {
		return
	}
	if v := r.URL.Query().Get("redirect"); v == "1" || v == "true" {
		url, ok, err := m.blob.PresignGet(r.Context(), f.BlobKey, m.presignTTL, f.Name)
		if err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		if ok {
			m.metrics.downloads.Inc()
			// The URL expires: nothing may keep the redirect.
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, url, http.StatusFound)
			return
		}
		// Local storage has no URL of its own: stream instead.
	}
	obj, err := m.blob.Open(r.Context(), f.BlobKey)
	if err != nil {
		if errors.Is(err, blob.ErrNotFound) {
			m.log.ErrorContext(r.Context(), "file without its blob", "file_id", f.ID, "key", f.BlobKey)
		}
		httpx.WriteError(w, r, err)
		return
	}
	defer obj.Close()
	m.metrics.downloads.Inc()
	h := w.Header()
	cacheHeaders(h)
	h.Set("Content-Type", servedType(f.ContentType))
	h.Set("Content-Disposition", blob.ContentDisposition(f.Name))
	// Should a browser still render it (an old one ignoring nosniff and
	// the attachment), it runs no script and loads nothing.
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("ETag", strconv.Quote(f.SHA256))
	http.ServeContent(w, r, "", f.CreatedAt, obj)
}

// handleThumbnail delivers an image's thumbnail, which the module made
// itself (JPEG or PNG), so it may be shown inline.
func (m *Module) handleThumbnail(w http.ResponseWriter, r *http.Request) {
	f, ok := m.file(w, r)
	if !ok {
		return
	}
	if f.ThumbKey == "" {
		httpx.WriteError(w, r, httpx.Errorf(http.StatusNotFound, httpx.CodeNotFound, "the file has no thumbnail"))
		return
	}
	obj, err := m.blob.Open(r.Context(), f.ThumbKey)
	if err != nil {
		if errors.Is(err, blob.ErrNotFound) {
			m.log.ErrorContext(r.Context(), "thumbnail without its blob", "file_id", f.ID, "key", f.ThumbKey)
		}
		httpx.WriteError(w, r, err)
		return
	}
	defer obj.Close()
	info := obj.Info()
	ct := imaging.TypeJPEG
	if info.ContentType == imaging.TypePNG {
		ct = imaging.TypePNG
	}
	h := w.Header()
	cacheHeaders(h)
	h.Set("Content-Type", ct)
	h.Set("Content-Disposition", "inline")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	if info.SHA256 != "" {
		h.Set("ETag", strconv.Quote(info.SHA256))
	}
	http.ServeContent(w, r, "", f.CreatedAt, obj)
}

func (m *Module) handleDelete(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	if err := m.Delete(r.Context(), p.UserID, chi.URLParam(r, "id")); err != nil {
		httpx.WriteError(w, r, httpError(err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
