package files

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	// MaxNameChars is the longest file name kept, in characters: the
	// column is varchar(255), and MySQL in strict mode refuses longer
	// values instead of cutting them.
	MaxNameChars = 255
	// DefaultName stands in for a name that is missing or sanitises to
	// nothing.
	DefaultName = "file"
	// maxExtChars is the longest extension kept whole when a long name is
	// shortened; anything longer is not an extension worth keeping.
	maxExtChars = 16
)

// SanitizeName turns the name a client sent into one that is safe to
// store, show and offer as a download name: valid UTF-8, only the last
// path element (a client may send "C:\Users\me\a.txt" or "../../x"), no
// control or bidirectional-override characters (U+202E turns
// "photo\u202Egnp.exe" into what reads as "photoexe.png"), whitespace
// runs as written but each one a plain space, no leading or trailing
// spaces, at most MaxNameChars characters with the extension kept when
// the name is shortened. A name with nothing left is DefaultName.
//
// It is idempotent: a sanitised name comes back unchanged.
func SanitizeName(name string) string {
	name = strings.Map(func(r rune) rune {
		switch {
		case r == utf8.RuneError:
			return '_'
		case unicode.IsSpace(r):
			return ' '
		case unicode.IsControl(r), isBidiControl(r), r == '\uFEFF':
			return -1
		}
		return r
	}, strings.ToValidUTF8(name, "_"))
	if i := strings.LastIndexAny(strings.TrimRight(name, `/\ `), `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Trim(name, `/\ `)
	name = strings.TrimSpace(shorten(name, MaxNameChars))
	if name == "" || name == "." || name == ".." {
		return DefaultName
	}
	return name
}

// isBidiControl reports the characters that reorder the text around them
// (Unicode Bidi_Control), with which a name can display differently from
// what it is.
func isBidiControl(r rune) bool {
	switch {
	case r == '\u061C', r == '\u200E', r == '\u200F':
		return true
	case '\u202A' <= r && r <= '\u202E', '\u2066' <= r && r <= '\u2069':
		return true
	}
	return false
}

// shorten cuts name to at most n characters, taking them from the end of
// the stem so that the extension (".pdf") survives.
func shorten(name string, n int) string {
	count := utf8.RuneCountInString(name)
	if count <= n {
		return name
	}
	stem, ext := name, ""
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		if e := name[i:]; utf8.RuneCountInString(e) <= maxExtChars {
			stem, ext = name[:i], e
		}
	}
	keep := n - utf8.RuneCountInString(ext)
	i := 0
	for range keep {
		_, size := utf8.DecodeRuneInString(stem[i:])
		i += size
	}
	return strings.TrimRight(stem[:i], " ") + ext
}
