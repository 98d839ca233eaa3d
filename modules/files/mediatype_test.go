package files

import (
	"bytes"
	"image"
	"image/png"
	"testing"
)

func TestDetectType(t *testing.T) {
	var pngBytes bytes.Buffer
	if err := png.Encode(&pngBytes, image.NewGray(image.Rect(0, 0, 2, 2))); err != nil {
		t.Fatal(err)
	}
	zip := []byte("PK\x03\x04\x14\x00\x06\x00")
	binary := []byte{0x00, 0x01, 0x02, 0xfe, 0xff}
	tests := []struct {
		name string
		head []byte
		hint string
		want string
	}{
		{"png sent as text", pngBytes.Bytes(), "text/plain", "image/png"},
		{"png sent as html", pngBytes.Bytes(), "text/html", "image/png"},
		{"png sent as another image", pngBytes.Bytes(), "image/jpeg", "image/png"},
		{"html without hint", []byte("<!DOCTYPE html><script>alert(1)</script>"), "", "text/html; charset=utf-8"},
		{"html sent as text", []byte("<html><body>x"), "text/plain", "text/html; charset=utf-8"},
		{"docx", zip, "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
			"application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
		{"zip claimed as image stays zip", zip, "image/png", "application/zip"},
		{"zip claimed as svg stays zip", zip, "application/svg+xml", "application/zip"},
		{"binary with a specific hint", binary, "audio/amr", "audio/amr"},
		{"binary claimed as html", binary, "text/html", "application/octet-stream"},
		{"binary claimed as svg", binary, "image/svg+xml", "application/octet-stream"},
		{"binary claimed as text", binary, "text/csv", "application/octet-stream"},
		{"binary with a form hint", binary, "application/x-www-form-urlencoded", "application/octet-stream"},
		{"binary with a broken hint", binary, "image/", "application/octet-stream"},
		{"binary with a garbage hint", binary, "not a type", "application/octet-stream"},
		{"csv", []byte("a,b\n1,2\n"), "text/csv; charset=koi8-r", "text/csv; charset=utf-8"},
		{"markdown", []byte("# Заголовок\n"), "text/markdown", "text/markdown; charset=utf-8"},
		{"text claimed as svg", []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>x</script></svg>`), "image/svg+xml", "text/plain; charset=utf-8"},
		{"text claimed as javascript", []byte("alert(1)"), "text/javascript", "text/plain; charset=utf-8"},
		{"text claimed as image", []byte("hello"), "image/png", "text/plain; charset=utf-8"},
		{"xml", []byte(`<?xml version="1.0"?><x/>`), "", "text/xml; charset=utf-8"},
		{"empty", nil, "", "text/plain; charset=utf-8"},
		{"pdf", []byte("%PDF-1.7\n"), "application/octet-stream", "application/pdf"},
	}
	for _, tt := range tests {
		if got := DetectType(tt.head, tt.hint); got != tt.want {
			t.Errorf("%s: DetectType(%q, %q) = %q, want %q", tt.name, tt.head, tt.hint, got, tt.want)
		}
	}
}

func TestServedType(t *testing.T) {
	tests := []struct{ in, want string }{
		{"image/png", "image/png"},
		{"application/pdf", "application/pdf"},
		{"text/plain; charset=utf-8", "text/plain; charset=utf-8"},
		{"text/html; charset=utf-8", octetStream},
		{"TEXT/HTML", octetStream},
		{"application/xhtml+xml", octetStream},
		{"image/svg+xml", octetStream},
		{"text/xml; charset=utf-8", octetStream},
		{"application/xml", octetStream},
		{"application/rss+xml", octetStream},
		{"text/javascript", octetStream},
		{"application/javascript", octetStream},
		{"application/x-shockwave-flash", octetStream},
		{"multipart/x-mixed-replace; boundary=x", octetStream},
		{"", octetStream},
		{"garbage;;", octetStream},
	}
	for _, tt := range tests {
		if got := servedType(tt.in); got != tt.want {
			t.Errorf("servedType(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
