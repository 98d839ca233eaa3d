package blob_test

import (
	"errors"
	"mime"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/elph-server/elph/platform/blob"
)

func TestValidKey(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{"a", true},
		{"a/b", true},
		{"files/2024/ab/0f3c-9e.bin", true},
		{"under_score/x.tar.gz", true},
		{".hidden/x", true},
		{"a.b/c", true},
		{strings.Repeat("a", blob.MaxKeyLen), true},

		{"", false},
		{strings.Repeat("a", blob.MaxKeyLen+1), false},
		{"../x", false},
		{"a/../b", false},
		{"..", false},
		{"a..b", false},
		{"...", false},
		{".", false},
		{"./a", false},
		{"a/./b", false},
		{"a/.", false},
		{"/abs", false},
		{"a//b", false},
		{"a/", false},
		{"/", false},
		{"A", false},
		{"a/B.txt", false},
		{"a b", false},
		{"a\\b", false},
		{"a\x00b", false},
		{"a\nb", false},
		{"ключ", false},
		{"a+b", false},
		{"a%2fb", false},
		{"a:b", false},
	}
	for _, tc := range tests {
		err := blob.ValidKey(tc.key)
		if (err == nil) != tc.ok {
			t.Errorf("ValidKey(%q) = %v, want ok=%v", tc.key, err, tc.ok)
		}
		if err != nil && !errors.Is(err, blob.ErrBadKey) {
			t.Errorf("ValidKey(%q) = %v, does not wrap ErrBadKey", tc.key, err)
		}
	}
}

// FuzzValidKey checks that every key ValidKey accepts is safe to use as a
// relative path below a directory and as an S3 key, whatever it is made of.
func FuzzValidKey(f *testing.F) {
	for _, seed := range []string{"a", "a/b", "../x", "/abs", "a//b", "a/./b", "", "A", "a/..", "a..b", ".a", "a/.b", "a\x00", "ж"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, key string) {
		err := blob.ValidKey(key)
		if err != nil {
			if !errors.Is(err, blob.ErrBadKey) {
				t.Fatalf("ValidKey(%q) = %v, does not wrap ErrBadKey", key, err)
			}
			return
		}
		switch {
		case key == "" || len(key) > blob.MaxKeyLen:
			t.Fatalf("accepted %q: length %d", key, len(key))
		case strings.Contains(key, ".."):
			t.Fatalf("accepted %q: contains ..", key)
		case strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/"):
			t.Fatalf("accepted %q: leading or trailing slash", key)
		case path.Clean(key) != key:
			t.Fatalf("accepted %q: not clean (%q)", key, path.Clean(key))
		case !filepath.IsLocal(key):
			t.Fatalf("accepted %q: not a local path", key)
		}
		for i := 0; i < len(key); i++ {
			if c := key[i]; c != '/' && !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
				t.Fatalf("accepted %q: byte %q", key, c)
			}
		}
		for _, seg := range strings.Split(key, "/") {
			if seg == "" || seg == "." {
				t.Fatalf("accepted %q: segment %q", key, seg)
			}
		}
	})
}

func TestContentDisposition(t *testing.T) {
	tests := []struct {
		name     string
		want     string
		filename string // what a browser saves as ("" = same as name)
	}{
		{"report.pdf", `attachment; filename="report.pdf"`, ""},
		{"отчёт.pdf", `attachment; filename="_____.pdf"; filename*=UTF-8''%D0%BE%D1%82%D1%87%D1%91%D1%82.pdf`, ""},
		{"Q1 report (final).xlsx", `attachment; filename="Q1 report (final).xlsx"`, ""},
		{`say "hi".txt`, `attachment; filename="say _hi_.txt"; filename*=UTF-8''say%20%22hi%22.txt`, ""},
		{"100%.txt", `attachment; filename="100_.txt"; filename*=UTF-8''100%25.txt`, ""},
		{"../../etc/passwd", `attachment; filename=".._.._etc_passwd"`, ".._.._etc_passwd"},
		{`C:\Users\a.txt`, `attachment; filename="C:_Users_a.txt"`, "C:_Users_a.txt"},
		{"evil\r\nSet-Cookie: x=1.txt", `attachment; filename="evil__Set-Cookie: x=1.txt"`, "evil__Set-Cookie: x=1.txt"},
		{"bad\xffutf8.txt", `attachment; filename="bad_utf8.txt"`, "bad_utf8.txt"},
		{"😀.png", `attachment; filename="_.png"; filename*=UTF-8''%F0%9F%98%80.png`, ""},
		{"", "attachment", ""},
		{"  ", "attachment", ""},
	}
	for _, tc := range tests {
		got := blob.ContentDisposition(tc.name)
		if got != tc.want {
			t.Errorf("ContentDisposition(%q)\n got %s\nwant %s", tc.name, got, tc.want)
			continue
		}
		if got == "attachment" {
			continue
		}
		// What a client that understands RFC 6266 / 8187 reads back.
		disp, params, err := mime.ParseMediaType(got)
		want := tc.filename
		if want == "" {
			want = tc.name
		}
		if err != nil || disp != "attachment" || params["filename"] != want {
			t.Errorf("ContentDisposition(%q) = %s parses to %q %q, %v; want filename %q", tc.name, got, disp, params, err, want)
		}
	}
}
