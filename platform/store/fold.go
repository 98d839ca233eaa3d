package store

import (
	"strings"
	"unicode"
)

// Fold normalises text for searching: Unicode lower case (Cyrillic
// included), "ё" and "Ё" as "е", runs of white space collapsed to one space
// and trimmed. Invalid UTF-8 bytes become U+FFFD, so the result is always
// valid UTF-8.
//
// SQLite's unicode61 tokenizer and MariaDB's collations disagree on case
// and on ё, so callers store a folded copy of the text in the searched
// column and search with folded input (FullTextQuery does the latter);
// then both dialects find the same rows.
func Fold(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		r = unicode.ToLower(r)
		if r == 'ё' {
			r = 'е'
		}
		b.WriteRune(r)
	}
	return b.String()
}
