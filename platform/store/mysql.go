package store

import (
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MySQL connection defaults applied when the DSN does not set them.
const (
	mysqlCharset      = "utf8mb4"
	mysqlCollation    = "utf8mb4_unicode_ci"
	mysqlDialTimeout  = 5 * time.Second
	mysqlReadTimeout  = 30 * time.Second
	mysqlWriteTimeout = 30 * time.Second
	// mysqlTimeZone makes NOW() and TIMESTAMP columns agree with loc=UTC.
	mysqlTimeZone = "'+00:00'"
)

// normalizeMySQL parses dsn and adjusts it to what elph relies on:
//   - parseTime=true and loc=UTC always, because code scans DATETIME columns
//     into time.Time and stores UTC;
//   - session time_zone '+00:00', charset utf8mb4 with collation
//     utf8mb4_unicode_ci, and dial/read/write timeouts of 5s/30s/30s unless
//     the DSN sets them.
//
// multiStatements is left alone: goose splits migration files itself.
func normalizeMySQL(dsn string) (*mysql.Config, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC

	// The driver keeps the charset in an unexported field, so whether the
	// user chose one is read from the DSN itself.
	params := mysqlParams(dsn)
	if !params.Has("charset") && cfg.Collation == "" {
		if err := cfg.Apply(mysql.Charset(mysqlCharset, mysqlCollation)); err != nil {
			return nil, err
		}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = mysqlDialTimeout
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = mysqlReadTimeout
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = mysqlWriteTimeout
	}
	if _, ok := cfg.Params["time_zone"]; !ok {
		if cfg.Params == nil {
			cfg.Params = map[string]string{}
		}
		cfg.Params["time_zone"] = mysqlTimeZone
	}
	return cfg, nil
}

// mysqlParams returns the query parameters of a go-sql-driver DSN
// (everything after the '?' that follows the database name).
func mysqlParams(dsn string) url.Values {
	slash := strings.LastIndexByte(dsn, '/')
	if slash < 0 {
		return url.Values{}
	}
	_, raw, ok := strings.Cut(dsn[slash:], "?")
	if !ok {
		return url.Values{}
	}
	v, err := url.ParseQuery(raw)
	if err != nil {
		return url.Values{}
	}
	return v
}

// splitUserinfo finds the password in a "user:pass@net(addr)/db" DSN the
// way go-sql-driver does: the userinfo ends at the last '@' before the last
// '/', and the password starts after the first ':' in it. passStart and
// passEnd index dsn; ok is false when the DSN has no password.
func splitUserinfo(dsn string) (passStart, passEnd int, pass string, ok bool) {
	head := dsn
	if slash := strings.LastIndexByte(dsn, '/'); slash >= 0 {
		head = dsn[:slash]
	}
	at := strings.LastIndexByte(head, '@')
	if at < 0 {
		return 0, 0, "", false
	}
	colon := strings.IndexByte(dsn[:at], ':')
	if colon < 0 || colon+1 == at {
		return 0, 0, "", false
	}
	return colon + 1, at, dsn[colon+1 : at], true
}

// maskMySQLDSN replaces the password in dsn by "***", keeping the rest of
// the user's text as written.
func maskMySQLDSN(dsn string) string {
	start, end, _, ok := splitUserinfo(dsn)
	if !ok {
		return dsn
	}
	return dsn[:start] + maskedPassword + dsn[end:]
}

func configureMySQLPool(db *sql.DB, o Options) {
	n := o.MaxOpenConns
	if n == 0 {
		n = defaultMySQLMaxOpen
	}
	life := o.ConnMaxLifetime
	if life == 0 {
		life = defaultMySQLLifetime
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(min(n, defaultMySQLMaxIdle))
	db.SetConnMaxLifetime(life)
}

// mysqlLogger sends the driver's own complaints (broken packets, dropped
// connections) to our logger instead of the standard log package.
type mysqlLogger struct{ l *slog.Logger }

func (m mysqlLogger) Print(v ...any) {
	m.l.Warn("mysql driver", "msg", strings.TrimSpace(fmt.Sprint(v...)))
}

// openMySQLNoTimeouts opens a small pool on the same server without read
// and write timeouts, for work that legitimately stays silent for longer
// than readTimeout: waiting for the migration lock and long DDL.
func openMySQLNoTimeouts(cfg *mysql.Config) (*sql.DB, error) {
	c := cfg.Clone()
	c.ReadTimeout, c.WriteTimeout = 0, 0
	conn, err := mysql.NewConnector(c)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(2)
	return db, nil
}

type mysqlDialect struct{}

func (mysqlDialect) Name() string { return DriverMySQL }

// MySQL/MariaDB server error numbers we classify.
const (
	erDupEntry            = 1062
	erDupEntryWithKeyName = 1586
	erLockWaitTimeout     = 1205
	erLockDeadlock        = 1213
)

func mysqlNumber(err error) (uint16, bool) {
	var e *mysql.MySQLError
	if !errors.As(err, &e) {
		return 0, false
	}
	return e.Number, true
}

func (mysqlDialect) IsUniqueViolation(err error) bool {
	n, ok := mysqlNumber(err)
	return ok && (n == erDupEntry || n == erDupEntryWithKeyName)
}

// IsRetryable reports deadlocks and lock wait timeouts: InnoDB rolls back
// the victim transaction (or statement), and running it again is the
// documented remedy.
func (mysqlDialect) IsRetryable(err error) bool {
	n, ok := mysqlNumber(err)
	return ok && (n == erLockDeadlock || n == erLockWaitTimeout)
}
