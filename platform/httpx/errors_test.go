package httpx_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/elph-server/elph/platform/httpx"
)

func TestWriteErrorTypedError(t *testing.T) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	httpx.WriteError(rec, req, fmt.Errorf("wrapped: %w", httpx.Errorf(http.StatusConflict, httpx.CodeConflict, "item %d exists", 7)))

	if rec.Code != http.StatusConflict {
		t.Fatalf("status = %d, want 409", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options = %q", got)
	}
	eb := decodeErrorBody(t, rec.Body.Bytes())
	if eb.Error.Code != httpx.CodeConflict || eb.Error.Message != "item 7 exists" {
		t.Errorf("error = %+v", eb.Error)
	}
	if strings.Contains(rec.Body.String(), "request_id") {
		t.Errorf("request_id present outside a request: %s", rec.Body)
	}
}

func TestWriteErrorPlainErrorHidesText(t *testing.T) {
	const secret = "dial tcp 10.1.2.3:3306: password=hunter2 rejected"
	logs := &syncBuffer{}
	r := httpx.NewRouter(httpx.RouterOptions{Listener: "t", Logger: jsonLogger(logs), MaxBodyBytes: 1 << 10})
	r.Get("/boom", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteError(w, r, errors.New(secret))
	})
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/boom", nil))

	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status = %d, want 500", rec.Code)
	}
	eb := decodeErrorBody(t, rec.Body.Bytes())
	if eb.Error.Code != httpx.CodeInternal || eb.Error.Message != "internal error" {
		t.Errorf("error = %+v", eb.Error)
	}
	if eb.Error.RequestID == "" || eb.Error.RequestID != rec.Header().Get("X-Request-ID") {
		t.Errorf("request_id %q, header %q", eb.Error.RequestID, rec.Header().Get("X-Request-ID"))
	}
	for _, frag := range []string{"hunter2", "10.1.2.3", "dial tcp"} {
		if strings.Contains(rec.Body.String(), frag) {
			t.Errorf("body leaks %q: %s", frag, rec.Body)
		}
	}
	// The operator still gets the real cause, tied to the request id.
	if !strings.Contains(logs.String(), "hunter2") || !strings.Contains(logs.String(), eb.Error.RequestID) {
		t.Errorf("log lacks the error or the request id: %s", logs)
	}
}

func TestErrorString(t *testing.T) {
	e := httpx.Errorf(http.StatusNotFound, httpx.CodeNotFound, "no %s", "thing")
	if got, want := e.Error(), "404 not_found: no thing"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

type payload struct {
	Name string `json:"name"`
	N    int    `json:"n"`
}

func TestDecodeJSON(t *testing.T) {
	big := `{"name":"` + strings.Repeat("x", 2048) + `"}`
	tests := []struct {
		name        string
		contentType string
		body        string
		limit       int64 // 0: no limit
		wantStatus  int   // 0: success
		wantCode    string
		wantMsg     string // substring of the message
	}{
		{name: "valid", contentType: "application/json", body: `{"name":"a","n":3}`},
		{name: "valid with charset", contentType: "application/json; charset=utf-8", body: `{"name":"a","n":3}`},
		{name: "valid upper-case type", contentType: "Application/JSON", body: `{"name":"a","n":3}`},
		{name: "valid without content type", body: ` {"name":"a","n":3}` + "\n"},
		{name: "empty", contentType: "application/json", body: "", wantStatus: 400, wantCode: httpx.CodeBadRequest, wantMsg: "empty"},
		{name: "whitespace only", contentType: "application/json", body: " \n\t", wantStatus: 400, wantCode: httpx.CodeBadRequest, wantMsg: "empty"},
		{name: "truncated", contentType: "application/json", body: `{"name":"a"`, wantStatus: 400, wantCode: httpx.CodeBadRequest, wantMsg: "truncated"},
		{name: "syntax error", contentType: "application/json", body: `{"name":}`, wantStatus: 400, wantCode: httpx.CodeBadRequest, wantMsg: "malformed JSON at byte"},
		{name: "wrong type", contentType: "application/json", body: `{"n":"three"}`, wantStatus: 400, wantCode: httpx.CodeBadRequest, wantMsg: `"n"`},
		{name: "not an object", contentType: "application/json", body: `[1,2]`, wantStatus: 400, wantCode: httpx.CodeBadRequest, wantMsg: "object"},
		{name: "unknown field", contentType: "application/json", body: `{"name":"a","admin":true}`, wantStatus: 400, wantCode: httpx.CodeBadRequest, wantMsg: `"admin"`},
		{name: "two values", contentType: "application/json", body: `{"name":"a"} {"name":"b"}`, wantStatus: 400, wantCode: httpx.CodeBadRequest, wantMsg: "single JSON value"},
		{name: "trailing garbage", contentType: "application/json", body: `{"name":"a"}x`, wantStatus: 400, wantCode: httpx.CodeBadRequest, wantMsg: "single JSON value"},
		{name: "wrong content type", contentType: "text/plain", body: `{"name":"a"}`, wantStatus: 415, wantCode: httpx.CodeUnsupportedMedia},
		{name: "form content type", contentType: "application/x-www-form-urlencoded", body: `name=a`, wantStatus: 415, wantCode: httpx.CodeUnsupportedMedia},
		{name: "malformed content type", contentType: "application/json; =", body: `{"name":"a"}`, wantStatus: 415, wantCode: httpx.CodeUnsupportedMedia},
		{name: "over the limit", contentType: "application/json", body: big, limit: 1024, wantStatus: 413, wantCode: httpx.CodePayloadTooLarge, wantMsg: "1024"},
		{name: "over the limit after the value", contentType: "application/json", body: `{"name":"a"}` + strings.Repeat(" ", 2048), limit: 1024, wantStatus: 413, wantCode: httpx.CodePayloadTooLarge},
		{name: "just under the limit", contentType: "application/json", body: big, limit: int64(len(big))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tc.body))
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			if tc.limit > 0 {
				req.Body = http.MaxBytesReader(httptest.NewRecorder(), req.Body, tc.limit)
			}
			var got payload
			err := httpx.DecodeJSON(req, &got)
			if tc.wantStatus == 0 {
				if err != nil {
					t.Fatalf("DecodeJSON: %v", err)
				}
				if got.Name == "" {
					t.Errorf("decoded %+v, want a name", got)
				}
				if tc.name == "valid" && (got.Name != "a" || got.N != 3) {
					t.Errorf("decoded %+v", got)
				}
				return
			}
			var he *httpx.Error
			if !errors.As(err, &he) {
				t.Fatalf("err = %v (%T), want *httpx.Error", err, err)
			}
			if he.Status != tc.wantStatus || he.Code != tc.wantCode {
				t.Errorf("got %d %s (%q), want %d %s", he.Status, he.Code, he.Message, tc.wantStatus, tc.wantCode)
			}
			if !strings.Contains(he.Message, tc.wantMsg) {
				t.Errorf("message %q lacks %q", he.Message, tc.wantMsg)
			}
			if strings.Contains(he.Message, "httpx_test") || strings.Contains(he.Message, "json: ") {
				t.Errorf("message %q leaks Go internals", he.Message)
			}
		})
	}
}

func TestDecodeJSONThroughWriteError(t *testing.T) {
	// The usual handler shape: decode, and on error answer it as is.
	h := func(w http.ResponseWriter, r *http.Request) {
		var p payload
		if err := httpx.DecodeJSON(r, &p); err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		httpx.WriteJSON(w, http.StatusCreated, p)
	}
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"nope":1}`)))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("status = %d", rec.Code)
	}
	if eb := decodeErrorBody(t, rec.Body.Bytes()); eb.Error.Code != httpx.CodeBadRequest {
		t.Errorf("code = %q", eb.Error.Code)
	}

	rec = httptest.NewRecorder()
	h(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"name":"z","n":1}`)))
	if rec.Code != http.StatusCreated || strings.TrimSpace(rec.Body.String()) != `{"name":"z","n":1}` {
		t.Errorf("got %d %q", rec.Code, rec.Body)
	}
}
