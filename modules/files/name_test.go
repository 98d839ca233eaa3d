package files

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestSanitizeName(t *testing.T) {
	long := strings.Repeat("я", 300)
	tests := []struct {
		in, want string
	}{
		{"report.pdf", "report.pdf"},
		{"Отчёт за май.xlsx", "Отчёт за май.xlsx"},
		{"  spaced  name.txt  ", "spaced  name.txt"},
		{"../../etc/passwd", "passwd"},
		{`C:\Users\me\Desktop\a.txt`, "a.txt"},
		{"dir/sub/", "sub"},
		{"a/ /", "a"},
		{"/", DefaultName},
		{"", DefaultName},
		{"   ", DefaultName},
		{".", DefaultName},
		{"..", DefaultName},
		{"a/..", DefaultName},
		{".bashrc", ".bashrc"},
		{"tab\there", "tab here"},
		{"line\nbreak\r\n.txt", "line break  .txt"},
		{"nul\x00byte", "nulbyte"},
		{"photo\u202Egnp.exe", "photognp.exe"},
		{"\u2066isolate\u2069.txt", "isolate.txt"},
		{"\uFEFFbom.txt", "bom.txt"},
		{"bad\xffutf8.txt", "bad_utf8.txt"},
		{"replacement\uFFFD.txt", "replacement_.txt"},
		{"😀 emoji.png", "😀 emoji.png"},
		{long + ".pdf", strings.Repeat("я", MaxNameChars-4) + ".pdf"},
		{long, strings.Repeat("я", MaxNameChars)},
		// An "extension" too long to be one is cut like the rest.
		{"a." + long, "a." + strings.Repeat("я", MaxNameChars-2)},
		// The cut lands on a space: it is not left dangling.
		{strings.Repeat("x", MaxNameChars-1) + " tail", strings.Repeat("x", MaxNameChars-1)},
	}
	for _, tt := range tests {
		if got := SanitizeName(tt.in); got != tt.want {
			t.Errorf("SanitizeName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzSanitizeName checks the promises of SanitizeName on any input: a
// non-empty, valid, short name without path parts or invisible
// reordering, which sanitises to itself.
func FuzzSanitizeName(f *testing.F) {
	for _, seed := range []string{"a.txt", "../x", `C:\a\b`, "", " ", ".", "..", "a/", "\x00", "\xff", "\u202E", "отчёт.pdf",
		strings.Repeat("ж", 300) + ".docx", "a\u2028b", " /. / "} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := SanitizeName(in)
		switch {
		case got == "":
			t.Fatalf("SanitizeName(%q) is empty", in)
		case !utf8.ValidString(got):
			t.Fatalf("SanitizeName(%q) = %q: invalid UTF-8", in, got)
		case utf8.RuneCountInString(got) > MaxNameChars:
			t.Fatalf("SanitizeName(%q) = %q: %d characters", in, got, utf8.RuneCountInString(got))
		case strings.ContainsAny(got, `/\`):
			t.Fatalf("SanitizeName(%q) = %q: has a path separator", in, got)
		case got == "." || got == "..":
			t.Fatalf("SanitizeName(%q) = %q", in, got)
		case got != strings.TrimSpace(got):
			t.Fatalf("SanitizeName(%q) = %q: leading or trailing space", in, got)
		}
		for _, r := range got {
			if unicode.IsControl(r) || isBidiControl(r) || r == utf8.RuneError || r == '\uFEFF' {
				t.Fatalf("SanitizeName(%q) = %q: has %U", in, got, r)
			}
		}
		if again := SanitizeName(got); again != got {
			t.Fatalf("not idempotent: SanitizeName(%q) = %q, then %q", in, got, again)
		}
	})
}
