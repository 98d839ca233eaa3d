package addressbook

import "strings"

// cyrLat is a simple transliteration of Russian letters (lower case,
// after fold: ё is already е), so "ivanov" finds "Иванов". It follows the
// common passport style (ГОСТ Р 52535.1), which is how Russian names are
// usually spelled in Latin e-mail addresses and logins.
var cyrLat = map[rune]string{
	'а': "a", 'б': "b", 'в': "v", 'г': "g", 'д': "d", 'е': "e", 'ж': "zh", 'з': "z", 'и': "i",
	'й': "i", 'к': "k", 'л': "l", 'м': "m", 'н': "n", 'о': "o", 'п': "p", 'р': "r", 'с': "s",
	'т': "t", 'у': "u", 'ф': "f", 'х': "kh", 'ц': "ts", 'ч': "ch", 'ш': "sh", 'щ': "shch",
	'ъ': "", 'ы': "y", 'ь': "", 'э': "e", 'ю': "iu", 'я': "ia",
}

// translit returns folded text with Cyrillic letters in Latin; text
// without Cyrillic comes back unchanged.
func translit(s string) string {
	var b strings.Builder
	changed := false
	for _, r := range s {
		if l, ok := cyrLat[r]; ok {
			b.WriteString(l)
			changed = true
			continue
		}
		b.WriteRune(r)
	}
	if !changed {
		return s
	}
	return b.String()
}
