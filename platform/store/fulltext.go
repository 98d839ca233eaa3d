package store

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds of a full-text expression: enough for any honest search box,
// small enough that a pasted novel cannot make the engine do silly work.
const (
	maxFullTextTerms = 16
	maxFullTextBytes = 256
)

// fullTextTerms splits folded input into words: maximal runs of letters and
// digits. Everything else (quotes, parentheses, operators such as - + * ~ <
// > @ ^ :, punctuation) separates words and never reaches the expression.
// Repeated words are kept once.
func fullTextTerms(input string) []string {
	words := strings.FieldsFunc(Fold(input), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsNumber(r)
	})
	seen := make(map[string]bool, len(words))
	terms := words[:0]
	for _, w := range words {
		if !seen[w] {
			seen[w] = true
			terms = append(terms, w)
		}
	}
	return terms
}

// buildFullText joins up to maxFullTextTerms terms, each rendered by term
// as open+word+close, with spaces, within maxFullTextBytes. The last term
// is cut at a rune boundary when it does not fit whole: as a prefix term it
// still matches what the full word would have.
func buildFullText(input string, term func(word string) (open, close string)) (string, bool) {
	var b strings.Builder
	n := 0
	for _, w := range fullTextTerms(input) {
		if n == maxFullTextTerms {
			break
		}
		open, close := term(w)
		sep := 0
		if n > 0 {
			sep = 1
		}
		room := maxFullTextBytes - b.Len() - sep - len(open) - len(close)
		if room <= 0 {
			break
		}
		if len(w) > room {
			w = truncateRunes(w, room)
			if w == "" {
				break
			}
		}
		if n > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(open)
		b.WriteString(w)
		b.WriteString(close)
		n++
	}
	return b.String(), n > 0
}

// truncateRunes cuts s to at most max bytes without splitting a rune.
func truncateRunes(s string, max int) string {
	if len(s) <= max {
		return s
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return s[:max]
}

// FullTextQuery renders each term as an FTS5 prefix phrase, "term"*, with
// spaces between them, which FTS5 reads as AND. Terms hold only letters and
// digits, so no quote can end the phrase early and no bareword such as
// NEAR, AND or OR is read as an operator.
func (sqliteDialect) FullTextQuery(userInput string) (string, bool) {
	return buildFullText(userInput, func(string) (string, string) { return `"`, `"*` })
}

func (sqliteDialect) FullTextWhere(ftsTable string, columns []string) string {
	mustIdents("full-text table", ftsTable)
	if len(columns) > 0 {
		mustIdents("full-text column", columns...)
	}
	return ftsTable + " MATCH ?"
}

// mysqlStopwords is InnoDB's default full-text stopword list
// (INFORMATION_SCHEMA.INNODB_FT_DEFAULT_STOPWORD).
var mysqlStopwords = map[string]bool{
	"a": true, "about": true, "an": true, "are": true, "as": true, "at": true,
	"be": true, "by": true, "com": true, "de": true, "en": true, "for": true,
	"from": true, "how": true, "i": true, "in": true, "is": true, "it": true,
	"la": true, "of": true, "on": true, "or": true, "that": true, "the": true,
	"this": true, "to": true, "was": true, "what": true, "when": true,
	"where": true, "who": true, "will": true, "with": true, "und": true,
	"www": true,
}

// mysqlMinToken is InnoDB's default innodb_ft_min_token_size.
const mysqlMinToken = 3

// FullTextQuery renders terms for MariaDB's boolean mode as +term*.
//
// MariaDB caveats (InnoDB FULLTEXT, no ngram parser in MariaDB):
//   - words shorter than innodb_ft_min_token_size (3) and stopwords
//     (INNODB_FT_DEFAULT_STOPWORD: "the", "a", "of", "de", "la", ...) are
//     not indexed at all. A required term that is such a word makes the
//     whole query match nothing: "+the* +quick*" finds no "the quick fox".
//     Such terms are therefore emitted optional ("the*", no "+"): they still
//     match longer indexed words by prefix ("ип*" finds "ипотека") and rank
//     rows, but cannot veto them. A short word itself ("ИП", "АО") is not
//     findable on MariaDB; on SQLite it is.
//   - as a prefix term, a short query word does match longer indexed words
//     ("+ив*" finds "иванов").
//   - CJK text is not split into words (no ngram parser).
//   - InnoDB applies rows to the full-text index at commit; a transaction
//     does not find its own uncommitted rows.
//
// Terms hold only letters and digits, so none of + - < > ( ) ~ * " @ can
// be injected.
func (mysqlDialect) FullTextQuery(userInput string) (string, bool) {
	return buildFullText(userInput, func(w string) (string, string) {
		if mysqlStopwords[w] || utf8.RuneCountInString(w) < mysqlMinToken {
			return "", "*"
		}
		return "+", "*"
	})
}

func (mysqlDialect) FullTextWhere(ftsTable string, columns []string) string {
	if ftsTable != "" {
		mustIdents("full-text table", ftsTable)
	}
	mustIdents("full-text column", columns...)
	return "MATCH(" + strings.Join(columns, ", ") + ") AGAINST (? IN BOOLEAN MODE)"
}
