package store

import (
	"strings"
	"unicode/utf8"
)

// Clip makes s fit a text column of n characters: invalid UTF-8 is
// replaced (MySQL refuses it in utf8mb4 columns, SQLite would keep it) and
// the text is cut to at most n characters, never inside one.
func Clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for range n {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return s[:i]
}
