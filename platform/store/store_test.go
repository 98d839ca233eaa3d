package store_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
)

func TestOpenErrors(t *testing.T) {
	const secret = "s3cretPW"
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		o    store.Options
		want []string // substrings of the error
	}{
		{
			name: "unknown driver",
			o:    store.Options{Driver: "postgres", DSN: "elph:" + secret + "@tcp(db)/elph"},
			want: []string{`unknown driver "postgres"`, "elph:***@tcp(db)/elph"},
		},
		{
			name: "empty DSN",
			o:    store.Options{},
			want: []string{"open sqlite", "empty DSN"},
		},
		{
			name: "negative pool size",
			o:    store.Options{DSN: "x.db", MaxOpenConns: -1},
			want: []string{"MaxOpenConns"},
		},
		{
			name: "mysql DSN without slash",
			o:    store.Options{Driver: "mysql", DSN: "elph:" + secret + "@tcp(127.0.0.1:3306"},
			want: []string{"open mysql", "elph:***@tcp(127.0.0.1:3306", "invalid DSN"},
		},
		{
			name: "mysql bad parameter",
			o:    store.Options{Driver: "mysql", DSN: "elph:" + secret + "@tcp(127.0.0.1:3306)/elph?timeout=soon"},
			want: []string{"open mysql", "elph:***@tcp", "invalid duration"},
		},
		{
			name: "mysql unreachable",
			o:    store.Options{Driver: "mysql", DSN: "elph:" + secret + "@tcp(127.0.0.1:1)/elph?timeout=1s"},
			want: []string{"open mysql", "elph:***@tcp(127.0.0.1:1)/elph", "connection refused"},
		},
		{
			name: "sqlite parent is a file",
			o:    store.Options{DSN: filepath.Join(notDir, "elph.db")},
			want: []string{"open sqlite", "create database directory"},
		},
		{
			name: "sqlite bad driver parameter",
			o:    store.Options{DSN: "file:" + filepath.Join(t.TempDir(), "x.db") + "?_txlock=bogus"},
			want: []string{"open sqlite", "_txlock"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Logger = storetest.Logger(t)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			db, err := store.Open(ctx, tt.o)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			if strings.Contains(msg, secret) {
				t.Errorf("error %q reveals the password", msg)
			}
		})
	}
}

// TestSQLitePragmas checks that the settings passed through the DSN reach
// every pooled connection of a file database.
func TestSQLitePragmas(t *testing.T) {
	db := storetest.Open(t, store.DriverSQLite, filepath.Join(t.TempDir(), "sub", "elph.db"))
	ctx := t.Context()

	// Hold several connections at once so the checks are not all answered
	// by the first one.
	for range 3 {
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var journal string
		var fk, busy, sync int
		for _, q := range []struct {
			pragma string
			dst    any
		}{
			{"journal_mode", &journal}, {"foreign_keys", &fk}, {"busy_timeout", &busy}, {"synchronous", &sync},
		} {
			if err := conn.QueryRowContext(ctx, "PRAGMA "+q.pragma).Scan(q.dst); err != nil {
				t.Fatalf("PRAGMA %s: %v", q.pragma, err)
			}
		}
		if journal != "wal" {
			t.Errorf("journal_mode = %q, want wal", journal)
		}
		if fk != 1 {
			t.Errorf("foreign_keys = %d, want 1", fk)
		}
		if busy != 5000 {
			t.Errorf("busy_timeout = %d, want 5000", busy)
		}
		if sync != 1 {
			t.Errorf("synchronous = %d, want 1 (NORMAL)", sync)
		}
	}
	if db.Dialect.Name() != "sqlite" || db.DriverName() != "sqlite" {
		t.Errorf("dialect %q, driver %q", db.Dialect.Name(), db.DriverName())
	}
	if err := db.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

// TestSQLiteMemory checks that ":memory:" keeps one database for the life of
// the handle: with a pool of several connections each would see its own
// empty database.
func TestSQLiteMemory(t *testing.T) {
	db := storetest.Open(t, store.DriverSQLite, ":memory:")
	storetest.Migrate(t, db)
	ctx := t.Context()
	if _, err := db.ExecContext(ctx, "INSERT INTO meta (k, v, updated_at) VALUES (?, ?, ?)", "a", "b", time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := db.Stats().MaxOpenConnections; got != 1 {
		t.Errorf("MaxOpenConnections = %d, want 1", got)
	}
	var n int
	if err := db.GetContext(ctx, &n, "SELECT COUNT(*) FROM meta"); err != nil || n != 1 {
		t.Errorf("count = %d, %v; want 1", n, err)
	}
}

func TestPing(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		if err := db.Ping(t.Context()); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		db.Close()
		if err := db.Ping(t.Context()); err == nil {
			t.Error("Ping of a closed DB succeeded")
		}
	})
}
