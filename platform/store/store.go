// Package store opens the SQL database shared by all modules and hides the
// few places where SQLite and MySQL/MariaDB differ (DSN options, upserts,
// error classification, full-text search) behind a small [Dialect].
//
// SQLite (modernc.org/sqlite, pure Go) is the default and suits a single
// node; MySQL/MariaDB (go-sql-driver/mysql) is for production clusters. Both
// are used through sqlx with "?" placeholders, so most SQL is written once.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Driver names accepted in [Options.Driver].
const (
	DriverSQLite = "sqlite"
	DriverMySQL  = "mysql"
)

// Options configure [Open]. The zero value of every field except DSN has a
// sensible default.
type Options struct {
	// Driver is "sqlite" (default) or "mysql".
	Driver string
	// DSN is, for sqlite, a file path or a "file:..." URI (":memory:" is
	// allowed for tests); for mysql, a go-sql-driver DSN such as
	// "user:pass@tcp(host:3306)/elph".
	DSN string
	// MaxOpenConns bounds the pool: 0 means 8 for sqlite and 32 for mysql.
	MaxOpenConns int
	// ConnMaxLifetime recycles pooled connections: 0 means 5m for mysql (so
	// connections follow fail-overs and do not hit wait_timeout) and
	// unlimited for sqlite.
	ConnMaxLifetime time.Duration
	// BusyTimeout is how long a sqlite statement waits for a lock held by
	// another connection before failing with SQLITE_BUSY: 0 means 5s.
	BusyTimeout time.Duration
	// Logger receives connection and migration events; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Defaults applied by [Open].
const (
	defaultSQLiteMaxOpen = 8
	defaultMySQLMaxOpen  = 32
	defaultMySQLLifetime = 5 * time.Minute
	defaultMySQLMaxIdle  = 8
	defaultBusyTimeout   = 5 * time.Second
	maskedPassword       = "***"
	errorPrefix          = "store: "
)

// DB is an open database: an sqlx handle plus the dialect that knows how
// this database spells the non-portable parts of SQL.
type DB struct {
	*sqlx.DB
	Dialect Dialect

	logger *slog.Logger
	// mysqlCfg is the normalised driver config (nil for sqlite); Migrate
	// derives a pool without I/O timeouts from it, because a long ALTER
	// TABLE or a wait on the migration lock must not be cut off by the
	// readTimeout that protects ordinary queries.
	mysqlCfg *mysql.Config
}

// bindSQLite tells sqlx that the modernc driver, registered as "sqlite"
// (sqlx only knows "sqlite3"), uses "?" placeholders. It is a one-time
// registration in sqlx's table, not state of ours.
var bindSQLite sync.Once

// Open validates o, opens the database and pings it. For sqlite it creates
// the database file's parent directory (0700) when missing. Errors name the
// driver and the DSN with any password masked.
func Open(ctx context.Context, o Options) (*DB, error) {
	if o.Driver == "" {
		o.Driver = DriverSQLite
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if err := o.validate(); err != nil {
		return nil, openError(o, err)
	}

	var (
		db  *sql.DB
		d   Dialect
		cfg *mysql.Config
	)
	switch o.Driver {
	case DriverSQLite:
		bindSQLite.Do(func() { sqlx.BindDriver(DriverSQLite, sqlx.QUESTION) })
		s, err := prepareSQLite(o.DSN, o.BusyTimeout)
		if err != nil {
			return nil, openError(o, err)
		}
		db, err = sql.Open(DriverSQLite, s.dsn)
		if err != nil {
			return nil, openError(o, err)
		}
		configureSQLitePool(db, o, s.memory)
		d = sqliteDialect{}
	case DriverMySQL:
		var err error
		cfg, err = normalizeMySQL(o.DSN)
		if err != nil {
			return nil, openError(o, err)
		}
		cfg.Logger = mysqlLogger{o.Logger}
		conn, err := mysql.NewConnector(cfg)
		if err != nil {
			return nil, openError(o, err)
		}
		db = sql.OpenDB(conn)
		configureMySQLPool(db, o)
		d = mysqlDialect{}
	}

	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, openError(o, err)
	}
	o.Logger.Info("store opened", "driver", o.Driver, "dsn", MaskDSN(o.Driver, o.DSN))
	return &DB{
		DB:       sqlx.NewDb(db, o.Driver),
		Dialect:  d,
		logger:   o.Logger,
		mysqlCfg: cfg,
	}, nil
}

func (o Options) validate() error {
	switch o.Driver {
	case DriverSQLite, DriverMySQL:
	default:
		return fmt.Errorf("unknown driver %q (want %q or %q)", o.Driver, DriverSQLite, DriverMySQL)
	}
	if strings.TrimSpace(o.DSN) == "" {
		return errors.New("empty DSN")
	}
	if o.MaxOpenConns < 0 {
		return fmt.Errorf("negative MaxOpenConns %d", o.MaxOpenConns)
	}
	if o.ConnMaxLifetime < 0 {
		return fmt.Errorf("negative ConnMaxLifetime %s", o.ConnMaxLifetime)
	}
	if o.BusyTimeout < 0 {
		return fmt.Errorf("negative BusyTimeout %s", o.BusyTimeout)
	}
	return nil
}

// openError is the single place Open wraps its errors, so every one of them
// carries the driver and the masked DSN and none carries the password.
func openError(o Options, err error) error {
	return fmt.Errorf("%sopen %s %q: %w", errorPrefix, o.Driver, MaskDSN(o.Driver, o.DSN), redact(err, dsnPassword(o.Driver, o.DSN)))
}

// Close closes the pool.
func (db *DB) Close() error {
	return db.DB.Close()
}

// Ping checks that the database answers; it backs /readyz.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.DB.PingContext(ctx); err != nil {
		return fmt.Errorf("%sping %s: %w", errorPrefix, db.Dialect.Name(), err)
	}
	return nil
}

// MaskDSN returns dsn with its password replaced by "***", for logs, errors
// and `config print`. A DSN it cannot parse is masked heuristically rather
// than returned as is, since that is exactly when a password may be in an
// unexpected place.
func MaskDSN(driver, dsn string) string {
	switch driver {
	case DriverSQLite, "":
		// SQLite has no passwords; the DSN is a path or a file: URI.
		return dsn
	default:
		// MySQL DSNs and anything unknown share the user:pass@ shape.
		return maskMySQLDSN(dsn)
	}
}

// dsnPassword extracts the password from a DSN so errors can be scrubbed
// of it; "" when there is none.
func dsnPassword(driver, dsn string) string {
	if driver == DriverSQLite || driver == "" {
		return ""
	}
	_, _, pass, _ := splitUserinfo(dsn)
	return pass
}

// redactedError hides secret in the message of err while keeping err in
// the chain for errors.Is/As. Drivers do not normally echo passwords, but a
// DSN parse error quoting a malformed parameter could.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func redact(err error, secret string) error {
	if secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return &redactedError{msg: strings.ReplaceAll(err.Error(), secret, maskedPassword), err: err}
}
