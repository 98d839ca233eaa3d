package stream_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/elph-server/elph/platform/stream"
)

func TestDecodeClientFrame(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr error
	}{
		{"ping", `{"type":"ping"}`, "ping", nil},
		{"extra fields", `{"type":"ping","id":7,"x":{"y":[1]}}`, "ping", nil},
		{"white space", " \n{ \"type\" : \"ping\" }\t", "ping", nil},
		{"no type", `{}`, "", nil},
		{"null type", `{"type":null}`, "", nil},
		{"unknown type", `{"type":"chat.send"}`, "chat.send", nil},
		{"cyrillic", `{"type":"пинг"}`, "пинг", nil},
		{"escaped", `{"type":"p\u0069ng"}`, "ping", nil},
		{"last duplicate wins", `{"type":"a","type":"ping"}`, "ping", nil},
		{"case matters", `{"TYPE":"ping","Type":"x"}`, "", nil},
		{"exactly the limit", `{"type":"ping","pad":"` + strings.Repeat("x", stream.MaxClientFrameBytes-24) + `"}`, "ping", nil},
		{"over the limit", `{"type":"ping","pad":"` + strings.Repeat("x", stream.MaxClientFrameBytes-23) + `"}`, "", stream.ErrFrameTooLarge},
		{"empty", ``, "", stream.ErrInvalidFrame},
		{"array", `["ping"]`, "", stream.ErrInvalidFrame},
		{"string", `"ping"`, "", stream.ErrInvalidFrame},
		{"null", `null`, "", stream.ErrInvalidFrame},
		{"number type", `{"type":1}`, "", stream.ErrInvalidFrame},
		{"truncated", `{"type":"ping"`, "", stream.ErrInvalidFrame},
		{"trailing data", `{"type":"ping"} {}`, "", stream.ErrInvalidFrame},
		{"invalid UTF-8", "{\"type\":\"\xff\"}", "", stream.ErrInvalidFrame},
		{"invalid UTF-8 elsewhere", "{\"type\":\"ping\",\"x\":\"\xc3\"}", "", stream.ErrInvalidFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "exactly the limit" && len(tt.in) != stream.MaxClientFrameBytes {
				t.Fatalf("test input is %d bytes", len(tt.in))
			}
			f, err := stream.DecodeClientFrame([]byte(tt.in))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("DecodeClientFrame = %v, want %v", err, tt.wantErr)
			}
			if f.Type != tt.want {
				t.Errorf("type %q, want %q", f.Type, tt.want)
			}
		})
	}
}

// FuzzDecodeClientFrame checks that DecodeClientFrame never panics and
// accepts exactly the small UTF-8 JSON objects, agreeing with a plain
// decode into a map about the type.
func FuzzDecodeClientFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"ping"}`, `{}`, `{"type":null}`, `{"type":1}`, `[]`, `"x"`, `null`, ``,
		`{"type":"ping"} x`, "{\"type\":\"\xff\"}", `{"type":"\ud800"}`, ` {"a":{"b":[1,2,{"type":"x"}]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := stream.DecodeClientFrame(b)
		var m map[string]any
		plain := json.Unmarshal(b, &m)
		switch {
		case len(b) > stream.MaxClientFrameBytes:
			if !errors.Is(err, stream.ErrFrameTooLarge) {
				t.Fatalf("%d bytes accepted: %v", len(b), err)
			}
			return
		case !utf8.Valid(b):
			if !errors.Is(err, stream.ErrInvalidFrame) {
				t.Fatalf("invalid UTF-8 accepted: %v", err)
			}
			return
		}
		typ, isString := m["type"].(string)
		objectWithStringType := plain == nil && m != nil && (m["type"] == nil || isString)
		if (err == nil) != objectWithStringType {
			t.Fatalf("DecodeClientFrame(%q) = %v, but a plain decode says %v, %v", b, err, m, plain)
		}
		if err != nil {
			if !errors.Is(err, stream.ErrInvalidFrame) {
				t.Fatalf("error %v does not wrap ErrInvalidFrame", err)
			}
			return
		}
		if fr.Type != typ {
			t.Fatalf("type %q, a plain decode says %q", fr.Type, typ)
		}
	})
}
