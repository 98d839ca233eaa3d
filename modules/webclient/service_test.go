package webclient

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func TestRoutes(t *testing.T) {
	files := fstest.MapFS{
		"index.html": {Data: []byte("<html>index</html>")},
		"app.js":     {Data: []byte("console.log(1)")},
	}
	h := New(files).Routes()
	tests := []struct {
		path, wantBody, wantType string
	}{
		{"/", "index", "text/html"},
		{"/app.js", "console.log", "javascript"},
		{"/chats/42", "index", "text/html"}, // client-side route
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.path, nil))
		if rec.Code != http.StatusOK {
			t.Errorf("%s: status %d", tt.path, rec.Code)
			continue
		}
		if !strings.Contains(rec.Body.String(), tt.wantBody) || !strings.Contains(rec.Header().Get("Content-Type"), tt.wantType) {
			t.Errorf("%s: got %q (%s)", tt.path, rec.Body.String(), rec.Header().Get("Content-Type"))
		}
		if rec.Header().Get("Content-Security-Policy") == "" || rec.Header().Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: security headers missing", tt.path)
		}
	}
	// Traversal is refused outright; nothing outside the files is served.
	for _, p := range []string{"/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc/passwd"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		if strings.Contains(rec.Body.String(), "root:") || (rec.Code != http.StatusBadRequest && !strings.Contains(rec.Body.String(), "index")) {
			t.Errorf("%s: %d %q", p, rec.Code, rec.Body.String())
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST / = %d, want 405", rec.Code)
	}
}
