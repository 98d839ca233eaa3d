package store

import (
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteTarget is a user DSN turned into what the modernc driver gets.
type sqliteTarget struct {
	dsn    string // with our pragmas and parameters appended
	path   string // database file on disk; "" for in-memory databases
	memory bool
}

// prepareSQLite appends the connection settings every elph SQLite database
// needs to dsn, keeping any the user already chose, and creates the parent
// directory of the database file.
//
// The settings, applied by the driver to every new connection:
//   - busy_timeout first, so the switch to WAL below waits for a lock held
//     by another process instead of failing;
//   - journal_mode(WAL): readers do not block the writer and vice versa;
//   - foreign_keys(1): SQLite leaves them off by default;
//   - synchronous(NORMAL): safe with WAL, far fewer fsyncs than FULL;
//   - _txlock=immediate: a write transaction takes the write lock at BEGIN
//     and waits busy_timeout for it, instead of starting as a reader and
//     failing with SQLITE_BUSY when it later tries to upgrade. The price is
//     that read-only transactions serialise too; plain queries outside a
//     transaction still run concurrently;
//   - _time_format=sqlite and _timezone=UTC: times are written as sortable
//     "2006-01-02 15:04:05.999999999+00:00" text in UTC and read back as
//     UTC, matching the MySQL side's loc=UTC (the driver's default format
//     is time.Time.String, monotonic clock reading included).
func prepareSQLite(dsn string, busy time.Duration) (sqliteTarget, error) {
	if busy == 0 {
		busy = defaultBusyTimeout
	}
	base, rawQuery, _ := strings.Cut(dsn, "?")
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return sqliteTarget{}, fmt.Errorf("bad DSN query: %w", err)
	}
	t := sqliteTarget{memory: isSQLiteMemory(base, q)}

	pragmas := map[string]bool{}
	for _, p := range q["_pragma"] {
		name, _, _ := strings.Cut(p, "(")
		name, _, _ = strings.Cut(name, "=")
		pragmas[strings.ToLower(strings.TrimSpace(name))] = true
	}
	// The driver's shorthand keys set the same pragmas.
	shorthand := map[string][]string{
		"busy_timeout": {"_busy_timeout", "_timeout"},
		"journal_mode": {"_journal_mode", "_journal"},
		"foreign_keys": {"_foreign_keys", "_fk"},
		"synchronous":  {"_synchronous", "_sync"},
	}
	userSet := func(pragma string) bool {
		if pragmas[pragma] {
			return true
		}
		for _, k := range shorthand[pragma] {
			if q.Has(k) {
				return true
			}
		}
		return false
	}

	var add []string
	for _, p := range []struct{ name, value string }{
		{"busy_timeout", strconv.FormatInt(busy.Milliseconds(), 10)},
		{"journal_mode", "WAL"},
		{"foreign_keys", "1"},
		{"synchronous", "NORMAL"},
	} {
		if !userSet(p.name) {
			add = append(add, "_pragma="+p.name+"("+p.value+")")
		}
	}
	if !q.Has("_txlock") {
		add = append(add, "_txlock=immediate")
	}
	if !q.Has("_time_format") && !q.Has("_time_integer_format") {
		add = append(add, "_time_format=sqlite")
	}
	if !q.Has("_timezone") {
		add = append(add, "_timezone=UTC")
	}

	query := rawQuery
	if len(add) > 0 {
		if query != "" {
			query += "&"
		}
		query += strings.Join(add, "&")
	}
	t.dsn = base + "?" + query

	if !t.memory {
		t.path, err = sqlitePath(base)
		if err != nil {
			return sqliteTarget{}, err
		}
		if t.path != "" {
			if err := os.MkdirAll(filepath.Dir(t.path), 0o700); err != nil {
				return sqliteTarget{}, fmt.Errorf("create database directory: %w", err)
			}
		}
	}
	return t, nil
}

// isSQLiteMemory reports whether the DSN names an in-memory database, which
// exists only as long as its one connection does.
func isSQLiteMemory(base string, q url.Values) bool {
	if base == ":memory:" || strings.HasPrefix(base, "file::memory:") {
		return true
	}
	return strings.HasPrefix(base, "file:") && q.Get("mode") == "memory"
}

// sqlitePath returns the file system path a plain path or file: URI names.
func sqlitePath(base string) (string, error) {
	rest, ok := strings.CutPrefix(base, "file:")
	if !ok {
		return base, nil
	}
	if after, ok := strings.CutPrefix(rest, "//"); ok {
		// file://host/path: SQLite accepts only an empty or "localhost"
		// authority.
		host, p, _ := strings.Cut(after, "/")
		if host != "" && host != "localhost" {
			return "", fmt.Errorf("file URI with remote host %q", host)
		}
		rest = "/" + p
	}
	p, err := url.PathUnescape(rest)
	if err != nil {
		return "", fmt.Errorf("bad file URI path: %w", err)
	}
	return p, nil
}

func configureSQLitePool(db *sql.DB, o Options, memory bool) {
	n := o.MaxOpenConns
	if n == 0 {
		n = defaultSQLiteMaxOpen
	}
	if memory {
		// Every connection to ":memory:" is a separate, empty database: keep
		// exactly one and never let the pool close it.
		n = 1
		db.SetConnMaxIdleTime(0)
		db.SetConnMaxLifetime(0)
	} else {
		db.SetConnMaxLifetime(o.ConnMaxLifetime)
	}
	db.SetMaxOpenConns(n)
	// Opening a connection re-runs the pragmas; keep them all around.
	db.SetMaxIdleConns(n)
}

type sqliteDialect struct{}

func (sqliteDialect) Name() string { return DriverSQLite }

func sqliteCode(err error) (int, bool) {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return 0, false
	}
	return e.Code(), true
}

func (sqliteDialect) IsUniqueViolation(err error) bool {
	code, ok := sqliteCode(err)
	// Extended result codes are on in the driver, so a duplicate key is
	// reported precisely rather than as a generic constraint failure.
	return ok && (code == sqlite3.SQLITE_CONSTRAINT_UNIQUE || code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
}

func (sqliteDialect) IsRetryable(err error) bool {
	code, ok := sqliteCode(err)
	if !ok {
		return false
	}
	switch code & 0xff { // primary code of an extended one
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return true
	}
	return false
}
