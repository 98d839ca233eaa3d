package httpx_test

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/elph-server/elph/platform/httpx"
)

// FuzzDecodeJSON: whatever the body and content type, DecodeJSON never
// panics and every failure is an *httpx.Error answered with a 4xx.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range [][2]string{
		{"application/json", `{"name":"a","n":1}`},
		{"application/json", ``},
		{"application/json", `{"name":`},
		{"application/json", `{"n":"x"}`},
		{"application/json", `{"extra":1}`},
		{"application/json", `{} {}`},
		{"application/json", `[1]`},
		{"application/json", `{"name":"` + string(bytes.Repeat([]byte("x"), 300)) + `"}`},
		{"text/plain", `{}`},
		{"application/json; charset=utf-8", `{"nested":{"a":[1,2,{"b":null}]}}`},
		{"", "\xff\xfe"},
		{";;;", "{}"},
	} {
		f.Add(s[0], []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		for _, v := range []any{new(payload), new(map[string]any), new(any)} {
			req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
			req.Header["Content-Type"] = []string{contentType}
			req.Body = http.MaxBytesReader(httptest.NewRecorder(), req.Body, 256)
			err := httpx.DecodeJSON(req, v)
			if err == nil {
				continue
			}
			var he *httpx.Error
			if !errors.As(err, &he) {
				t.Fatalf("error %v (%T) is not *httpx.Error", err, err)
			}
			if he.Status < 400 || he.Status > 499 {
				t.Fatalf("status %d for %v", he.Status, err)
			}
			if he.Code == "" || he.Message == "" {
				t.Fatalf("error without code or message: %+v", he)
			}
		}
	})
}
