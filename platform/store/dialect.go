package store

import (
	"fmt"
	"strings"
)

// Dialect spells the parts of SQL that differ between SQLite and
// MySQL/MariaDB. Everything else is written once with "?" placeholders.
//
// The SQL builders take table and column names from code, never from
// users: they panic on a name that is not a plain lower-case identifier
// ([a-z_][a-z0-9_]*), which is a programming error caught by any test that
// runs the statement. Names are not quoted, so they must not be reserved
// words of either database.
type Dialect interface {
	// Name is "sqlite" or "mysql".
	Name() string

	// Upsert returns an INSERT of cols (one "?" each, in order) that, when
	// a row with the same conflictCols already exists, sets updateCols to
	// the new values instead. With no updateCols a conflicting row is left
	// as it is. MySQL ignores conflictCols: ON DUPLICATE KEY fires on any
	// unique key, so the table should have only the one the caller means.
	Upsert(table string, cols, conflictCols, updateCols []string) string

	// InsertIgnore returns an INSERT of cols that silently skips rows that
	// would violate a unique key. (On MySQL, INSERT IGNORE also downgrades
	// some other errors to warnings; use it only with well-formed values.)
	InsertIgnore(table string, cols []string) string

	// IsUniqueViolation reports whether err is a duplicate-key error.
	IsUniqueViolation(err error) bool

	// IsRetryable reports whether err is a transient lock conflict after
	// which the whole transaction may simply be run again: SQLITE_BUSY and
	// SQLITE_LOCKED, MySQL deadlock (1213) and lock wait timeout (1205).
	IsRetryable(err error) bool

	// FullTextQuery turns free user input into a match expression for the
	// "?" of FullTextWhere: folded with [Fold], operators and quotes
	// dropped, each remaining word a prefix term, all required. At most 16
	// terms and 256 bytes are kept. ok is false when nothing searchable is
	// left; the caller should then not search at all.
	FullTextQuery(userInput string) (expr string, ok bool)

	// FullTextWhere returns a WHERE fragment with one "?" for the
	// expression from FullTextQuery.
	//
	// SQLite: "<ftsTable> MATCH ?", where ftsTable is an FTS5 table holding
	// the searchable text (folded with Fold, tokenize='unicode61
	// remove_diacritics 0'); columns are not used, the FTS5 table searches
	// all of its columns. The caller selects from or joins the FTS5 table
	// and maps its rowid to the content row.
	//
	// MySQL: "MATCH(col1, col2) AGAINST (? IN BOOLEAN MODE)", where the
	// columns are exactly those of one FULLTEXT index of the table in the
	// FROM clause; ftsTable is not used.
	FullTextWhere(ftsTable string, columns []string) string
}

// NewDialect returns the dialect of a driver name ("sqlite" or "mysql").
// Open sets DB.Dialect itself; this is for code that builds SQL without a
// connection.
func NewDialect(driver string) (Dialect, error) {
	switch driver {
	case DriverSQLite:
		return sqliteDialect{}, nil
	case DriverMySQL:
		return mysqlDialect{}, nil
	default:
		return nil, fmt.Errorf("%sunknown driver %q", errorPrefix, driver)
	}
}

// validIdent reports whether s is a plain lower-case SQL identifier.
func validIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_' || 'a' <= c && c <= 'z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// mustIdents panics unless every name is a valid identifier and there is at
// least one; what describes the list in the panic message.
func mustIdents(what string, names ...string) {
	if len(names) == 0 {
		panic(fmt.Sprintf("%sno %s given", errorPrefix, what))
	}
	for _, n := range names {
		if !validIdent(n) {
			panic(fmt.Sprintf("%sinvalid %s identifier %q", errorPrefix, what, n))
		}
	}
}

// insertPrefix returns "<verb> <table> (a, b) VALUES (?, ?)".
func insertPrefix(verb, table string, cols []string) string {
	mustIdents("table", table)
	mustIdents("column", cols...)
	var b strings.Builder
	b.WriteString(verb)
	b.WriteByte(' ')
	b.WriteString(table)
	b.WriteString(" (")
	b.WriteString(strings.Join(cols, ", "))
	b.WriteString(") VALUES (")
	for i := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('?')
	}
	b.WriteByte(')')
	return b.String()
}

func (sqliteDialect) Upsert(table string, cols, conflictCols, updateCols []string) string {
	q := insertPrefix("INSERT INTO", table, cols)
	mustIdents("conflict column", conflictCols...)
	q += " ON CONFLICT (" + strings.Join(conflictCols, ", ") + ") DO "
	if len(updateCols) == 0 {
		return q + "NOTHING"
	}
	mustIdents("update column", updateCols...)
	sets := make([]string, len(updateCols))
	for i, c := range updateCols {
		sets[i] = c + " = excluded." + c
	}
	return q + "UPDATE SET " + strings.Join(sets, ", ")
}

func (sqliteDialect) InsertIgnore(table string, cols []string) string {
	return insertPrefix("INSERT OR IGNORE INTO", table, cols)
}

// Upsert uses VALUES(col), which MariaDB (10.11 and later) supports; MySQL
// 8.0.20+ deprecates it in favour of row aliases but still accepts it.
func (mysqlDialect) Upsert(table string, cols, conflictCols, updateCols []string) string {
	q := insertPrefix("INSERT INTO", table, cols)
	mustIdents("conflict column", conflictCols...)
	if len(updateCols) == 0 {
		// A no-op assignment keeps the existing row; unlike INSERT IGNORE it
		// does not swallow unrelated errors.
		c := conflictCols[0]
		return q + " ON DUPLICATE KEY UPDATE " + c + " = " + c
	}
	mustIdents("update column", updateCols...)
	sets := make([]string, len(updateCols))
	for i, c := range updateCols {
		sets[i] = c + " = VALUES(" + c + ")"
	}
	return q + " ON DUPLICATE KEY UPDATE " + strings.Join(sets, ", ")
}

func (mysqlDialect) InsertIgnore(table string, cols []string) string {
	return insertPrefix("INSERT IGNORE INTO", table, cols)
}
