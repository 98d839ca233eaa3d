// Package httpx is the HTTP machinery every module shares: listeners with
// graceful drain, chi routers with the standard middleware stack, the JSON
// error shape, request ids, client IPs from trusted proxies only, body
// limits and request metrics. It knows no business rules.
package httpx

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
)

// Stable error codes. Clients branch on these, so they never change meaning.
const (
	CodeBadRequest       = "bad_request"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeConflict         = "conflict"
	CodePayloadTooLarge  = "payload_too_large"
	CodeUnsupportedMedia = "unsupported_media_type"
	CodeRateLimited      = "rate_limited"
	CodeInternal         = "internal"
	CodeUnavailable      = "unavailable"
)

// Error is an error with the HTTP status and stable code it is answered with.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// Errorf builds an *Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

type errorBody struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		RequestID string `json:"request_id,omitempty"`
	} `json:"error"`
}

// WriteError answers with the one error shape used everywhere:
// {"error":{"code":"...","message":"..."}}. An error that is not an *Error
// is logged and answered as a 500 without its text, which may hold details
// a client must not see.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var he *Error
	if !errors.As(err, &he) {
		Logger(r.Context()).ErrorContext(r.Context(), "request failed", "err", err)
		he = &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error"}
	}
	var body errorBody
	body.Error.Code, body.Error.Message, body.Error.RequestID = he.Code, he.Message, RequestID(r.Context())
	WriteJSON(w, he.Status, body)
}

// WriteJSON writes v as a JSON response with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// DecodeJSON reads one JSON object from the request body into v. Unknown
// fields, trailing data, a wrong content type and a body over the limit are
// each answered with their own clear *Error.
func DecodeJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return Errorf(http.StatusUnsupportedMediaType, CodeUnsupportedMedia, "content type must be application/json")
		}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		// Trailing data past the limit is still a body that is too large.
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return decodeError(err)
		}
		return Errorf(http.StatusBadRequest, CodeBadRequest, "body must hold a single JSON value")
	}
	return nil
}

func decodeError(err error) error {
	var maxErr *http.MaxBytesError
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &maxErr):
		return Errorf(http.StatusRequestEntityTooLarge, CodePayloadTooLarge, "body is larger than %d bytes", maxErr.Limit)
	case errors.Is(err, io.EOF):
		return Errorf(http.StatusBadRequest, CodeBadRequest, "body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return Errorf(http.StatusBadRequest, CodeBadRequest, "body is truncated JSON")
	case errors.As(err, &syntaxErr):
		return Errorf(http.StatusBadRequest, CodeBadRequest, "malformed JSON at byte %d", syntaxErr.Offset)
	case errors.As(err, &typeErr):
		// Name the JSON type, not the Go one: the Go type's name is an
		// internal detail ("chat.sendRequest") clients must not see.
		if typeErr.Field == "" {
			return Errorf(http.StatusBadRequest, CodeBadRequest, "body must be %s", jsonKind(typeErr.Type))
		}
		return Errorf(http.StatusBadRequest, CodeBadRequest, "field %q must be %s", typeErr.Field, jsonKind(typeErr.Type))
	default:
		// json reports unknown fields as a plain error: "json: unknown field \"x\"".
		return Errorf(http.StatusBadRequest, CodeBadRequest, "%s", trimJSONPrefix(err.Error()))
	}
}

// jsonKind names the JSON type a Go type decodes from.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return "a number"
	default:
		return "another type"
	}
}

func trimJSONPrefix(s string) string {
	const p = "json: "
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}
