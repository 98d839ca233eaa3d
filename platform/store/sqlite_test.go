package store

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPrepareSQLite(t *testing.T) {
	dir := t.TempDir()
	defaults := "_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate&_time_format=sqlite&_timezone=UTC"
	tests := []struct {
		name     string
		dsn      string
		busy     time.Duration
		wantDSN  string
		wantPath string
		memory   bool
	}{
		{
			name:     "plain path",
			dsn:      filepath.Join(dir, "a", "b.db"),
			wantDSN:  filepath.Join(dir, "a", "b.db") + "?" + defaults,
			wantPath: filepath.Join(dir, "a", "b.db"),
		},
		{
			name:     "file URI keeps user settings",
			dsn:      "file:" + dir + "/c/d.db?_pragma=journal_mode(DELETE)&_fk=0&_txlock=deferred&cache=private",
			busy:     time.Second,
			wantDSN:  "file:" + dir + "/c/d.db?_pragma=journal_mode(DELETE)&_fk=0&_txlock=deferred&cache=private&_pragma=busy_timeout(1000)&_pragma=synchronous(NORMAL)&_time_format=sqlite&_timezone=UTC",
			wantPath: dir + "/c/d.db",
		},
		{
			name:     "file URI with authority and escapes",
			dsn:      "file://localhost" + dir + "/e%20f/g.db",
			wantDSN:  "file://localhost" + dir + "/e%20f/g.db?" + defaults,
			wantPath: dir + "/e f/g.db",
		},
		{
			name:    "memory",
			dsn:     ":memory:",
			wantDSN: ":memory:?" + defaults,
			memory:  true,
		},
		{
			name:    "memory URI",
			dsn:     "file:x?mode=memory&cache=shared",
			wantDSN: "file:x?mode=memory&cache=shared&" + defaults,
			memory:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := prepareSQLite(tt.dsn, tt.busy)
			if err != nil {
				t.Fatalf("prepareSQLite(%q): %v", tt.dsn, err)
			}
			if got.dsn != tt.wantDSN {
				t.Errorf("dsn:\n got %s\nwant %s", got.dsn, tt.wantDSN)
			}
			if got.path != tt.wantPath || got.memory != tt.memory {
				t.Errorf("path, memory = %q, %v; want %q, %v", got.path, got.memory, tt.wantPath, tt.memory)
			}
			if got.path != "" {
				fi, err := os.Stat(filepath.Dir(got.path))
				if err != nil {
					t.Fatalf("parent directory not created: %v", err)
				}
				if perm := fi.Mode().Perm(); perm != 0o700 {
					t.Errorf("parent directory mode %o, want 700", perm)
				}
			}
		})
	}
}

func TestPrepareSQLiteErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, dsn, want string }{
		{"parent is a file", filepath.Join(file, "x.db"), "create database directory"},
		{"remote host", "file://example.com/x.db", "remote host"},
		{"bad query", "x.db?a=%zz", "bad DSN query"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := prepareSQLite(tt.dsn, 0)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("prepareSQLite(%q) error = %v, want it to mention %q", tt.dsn, err, tt.want)
			}
		})
	}
}
