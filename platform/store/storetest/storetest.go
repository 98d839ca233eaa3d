// Package storetest gives tests real databases of both dialects: a SQLite
// file in the test's temp dir and a fresh MariaDB/MySQL database that is
// dropped afterwards.
//
// MariaDB is found through ELPH_TEST_MYSQL_DSN (default
// "root@tcp(127.0.0.1:3306)/"; any database name in it is ignored). When it
// cannot be reached, MySQL tests are skipped, or fail if
// ELPH_REQUIRE_SERVICES=1.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/elph-server/elph/migrations"
	"github.com/elph-server/elph/platform/store"
)

// Environment variables read by this package.
const (
	EnvMySQLDSN        = "ELPH_TEST_MYSQL_DSN"
	EnvRequireServices = "ELPH_REQUIRE_SERVICES"
	DefaultMySQLDSN    = "root@tcp(127.0.0.1:3306)/"
)

const (
	probeTimeout   = 2 * time.Second
	cleanupTimeout = 30 * time.Second
)

// ForEachDialect runs fn as the subtests "sqlite" and "mysql", each with a
// fresh database migrated to the latest schema of the migrations package.
func ForEachDialect(t *testing.T, fn func(t *testing.T, db *store.DB)) {
	t.Helper()
	t.Run(store.DriverSQLite, func(t *testing.T) { fn(t, OpenSQLite(t)) })
	t.Run(store.DriverMySQL, func(t *testing.T) { fn(t, OpenMySQL(t)) })
}

// ForEachDialectEmpty is ForEachDialect without the migrations: the
// databases are empty, for tests of migrating itself.
func ForEachDialectEmpty(t *testing.T, fn func(t *testing.T, db *store.DB)) {
	t.Helper()
	t.Run(store.DriverSQLite, func(t *testing.T) { fn(t, Open(t, store.DriverSQLite, SQLiteDSN(t))) })
	t.Run(store.DriverMySQL, func(t *testing.T) { fn(t, Open(t, store.DriverMySQL, MySQLDSN(t))) })
}

// OpenSQLite returns a migrated SQLite database in t.TempDir().
func OpenSQLite(t testing.TB) *store.DB {
	t.Helper()
	db := Open(t, store.DriverSQLite, SQLiteDSN(t))
	Migrate(t, db)
	return db
}

// OpenMySQL returns a migrated database of its own on the test MariaDB
// server, or skips (fails under ELPH_REQUIRE_SERVICES=1) without a server.
func OpenMySQL(t testing.TB) *store.DB {
	t.Helper()
	db := Open(t, store.DriverMySQL, MySQLDSN(t))
	Migrate(t, db)
	return db
}

// SQLiteDSN returns the path of a not yet existing database file in
// t.TempDir().
func SQLiteDSN(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "elph.db")
}

// MySQLDSN creates an empty database "elph_test_<random>" on the test
// server, drops it when the test ends, and returns a DSN for it. Use it to
// open several handles on one database or to pass custom Options.
func MySQLDSN(t testing.TB) string {
	t.Helper()
	cfg := mysqlServer(t)
	name := "elph_test_" + randomHex(t, 8)

	admin := openAdmin(t, cfg)
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name+" CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"); err != nil {
		t.Fatalf("storetest: create database %s: %v", name, err)
	}
	// Registered before the caller opens the database, so it runs after the
	// caller's handles are closed (cleanups run last-in first-out).
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		admin := openAdmin(t, cfg)
		defer admin.Close()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name); err != nil {
			t.Errorf("storetest: drop database %s: %v", name, err)
		}
	})

	c := cfg.Clone()
	c.DBName = name
	return c.FormatDSN()
}

// Open opens dsn with driver, logging to the test output, and closes it
// when the test ends. It does not migrate.
func Open(t testing.TB, driver, dsn string) *store.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	db, err := store.Open(ctx, store.Options{Driver: driver, DSN: dsn, Logger: Logger(t)})
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("storetest: close: %v", err)
		}
	})
	return db
}

// Migrate applies the migrations package's migrations for db's dialect.
func Migrate(t testing.TB, db *store.DB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := db.Migrate(ctx, Migrations(t, db.Dialect.Name())); err != nil {
		t.Fatalf("storetest: %v", err)
	}
}

// Migrations returns the embedded migrations of dialect.
func Migrations(t testing.TB, dialect string) fs.FS {
	t.Helper()
	fsys, err := migrations.FS(dialect)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	return fsys
}

// Logger returns a logger that writes to the test's output, so store logs
// show up with the test that caused them (with -v or on failure).
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// probe remembers whether the test server answered, so a missing server
// costs one short dial per test binary rather than one per test.
var probe struct {
	once sync.Once
	cfg  *mysql.Config
	err  error
}

// mysqlServer returns the test server's config (no database selected), or
// skips or fails the test when the server cannot be reached.
func mysqlServer(t testing.TB) *mysql.Config {
	t.Helper()
	probe.once.Do(func() { probe.cfg, probe.err = probeMySQL() })
	if probe.err != nil {
		msg := fmt.Sprintf("MariaDB not reachable (%s): %v; "+
			"start one (apt-get install -y mariadb-server; start-stop-daemon --start --background --exec /usr/sbin/mariadbd) "+
			"or point %s at a server (default %s); see TESTING.md",
			EnvMySQLDSN, probe.err, EnvMySQLDSN, DefaultMySQLDSN)
		if os.Getenv(EnvRequireServices) == "1" {
			t.Fatalf("storetest: %s (%s=1)", msg, EnvRequireServices)
		}
		t.Skipf("storetest: %s; set %s=1 to fail instead of skipping", msg, EnvRequireServices)
	}
	return probe.cfg
}

func probeMySQL() (*mysql.Config, error) {
	dsn := os.Getenv(EnvMySQLDSN)
	if dsn == "" {
		dsn = DefaultMySQLDSN
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	cfg.DBName = ""

	p := cfg.Clone()
	if p.Timeout == 0 || p.Timeout > probeTimeout {
		p.Timeout = probeTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	db, err := store.Open(ctx, store.Options{Driver: store.DriverMySQL, DSN: p.FormatDSN(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	return cfg, db.Close()
}

func openAdmin(t testing.TB, cfg *mysql.Config) *store.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	db, err := store.Open(ctx, store.Options{Driver: store.DriverMySQL, DSN: cfg.FormatDSN(), MaxOpenConns: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	return db
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("storetest: random: %v", err)
	}
	return hex.EncodeToString(b)
}
