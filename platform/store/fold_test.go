package store

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestFold(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{"Hello World", "hello world"},
		{"Ёлка ЗЕЛЁНАЯ", "елка зеленая"},
		{"ёЁеЕ", "ееее"},
		{"ИВАНОВ Пётр", "иванов петр"},
		{"  many \t\n spaces\u00a0here  ", "many spaces here"},
		{"Straße", "straße"},
		{"ΣΟΦΙΑ", "σοφια"},
		{"bad \xff byte", "bad \ufffd byte"},
	}
	for _, tt := range tests {
		if got := Fold(tt.in); got != tt.want {
			t.Errorf("Fold(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzFold(f *testing.F) {
	for _, s := range []string{"", "Ёлка", "  a  b ", "\xff\xfe", "İSTANBUL", "ǅ", "ΣΑΣ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Fold(s)
		if !utf8.ValidString(got) {
			t.Fatalf("Fold(%q) = %q: invalid UTF-8", s, got)
		}
		if strings.ContainsAny(got, "ёЁ") {
			t.Fatalf("Fold(%q) = %q: contains ё", s, got)
		}
		if got != strings.TrimSpace(got) || strings.Contains(got, "  ") {
			t.Fatalf("Fold(%q) = %q: white space not collapsed", s, got)
		}
		for _, r := range got {
			if unicode.IsSpace(r) && r != ' ' {
				t.Fatalf("Fold(%q) = %q: white space %U kept", s, got, r)
			}
		}
		// Invalid bytes grow to U+FFFD (3 bytes); nothing else grows more
		// than lower-casing can (at most 3 bytes per input byte overall).
		if len(got) > 3*len(s) {
			t.Fatalf("Fold(%q): %d bytes from %d", s, len(got), len(s))
		}
		if again := Fold(got); again != got {
			t.Fatalf("Fold not idempotent: Fold(%q) = %q, Fold of that = %q", s, got, again)
		}
	})
}

func FuzzFullTextQuery(f *testing.F) {
	for _, s := range []string{
		"", "ЁЛК", "Иванов Пётр", `"a" OR b* NEAR(c d) -e +f ~g <h >i (j) @k`,
		`\"'; DROP TABLE x; --`, "title:x", "^x", "\xff", strings.Repeat("ab ", 200),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, d := range []Dialect{sqliteDialect{}, mysqlDialect{}} {
			got, ok := d.FullTextQuery(s)
			if ok != (got != "") {
				t.Fatalf("%s FullTextQuery(%q) = %q, %v: ok disagrees with output", d.Name(), s, got, ok)
			}
			if !utf8.ValidString(got) {
				t.Fatalf("%s FullTextQuery(%q) = %q: invalid UTF-8", d.Name(), s, got)
			}
			if len(got) > maxFullTextBytes {
				t.Fatalf("%s FullTextQuery(%q): %d bytes", d.Name(), s, len(got))
			}
			if !ok {
				continue
			}
			terms := strings.Split(got, " ")
			if len(terms) > maxFullTextTerms {
				t.Fatalf("%s FullTextQuery(%q): %d terms", d.Name(), s, len(terms))
			}
			for _, term := range terms {
				word := checkTerm(t, d.Name(), term)
				for _, r := range word {
					if !unicode.IsLetter(r) && !unicode.IsNumber(r) {
						t.Fatalf("%s FullTextQuery(%q) = %q: %U in term %q", d.Name(), s, got, r, term)
					}
				}
			}
		}
	})
}

// checkTerm verifies the operator syntax around one term and returns its
// word, which must not be empty.
func checkTerm(t *testing.T, dialect, term string) string {
	t.Helper()
	var word string
	var ok bool
	switch dialect {
	case "sqlite":
		word, ok = strings.CutPrefix(term, `"`)
		if ok {
			word, ok = strings.CutSuffix(word, `"*`)
		}
	case "mysql":
		word, ok = strings.CutSuffix(strings.TrimPrefix(term, "+"), "*")
	}
	if !ok || word == "" {
		t.Fatalf("%s: malformed term %q", dialect, term)
	}
	return word
}
