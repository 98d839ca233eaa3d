package migrations

import (
	"io/fs"
	"path"
	"slices"
	"strings"
	"testing"
)

func TestFS(t *testing.T) {
	tests := []struct {
		dialect string
		wantErr bool
	}{
		{dialect: "sqlite"},
		{dialect: "mysql"},
		{dialect: "postgres", wantErr: true},
		{dialect: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.dialect, func(t *testing.T) {
			fsys, err := FS(tt.dialect)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("FS(%q) succeeded, want error", tt.dialect)
				}
				return
			}
			if err != nil {
				t.Fatalf("FS(%q): %v", tt.dialect, err)
			}
			b, err := fs.ReadFile(fsys, "00001_meta.sql")
			if err != nil {
				t.Fatalf("read 00001_meta.sql: %v", err)
			}
			for _, want := range []string{"-- +goose Up", "-- +goose Down", "CREATE TABLE meta"} {
				if !strings.Contains(string(b), want) {
					t.Errorf("00001_meta.sql lacks %q", want)
				}
			}
		})
	}
}

// TestSameVersions guards against a migration added to one dialect only: both
// folders must list the same file names so both schemas move in lockstep.
func TestSameVersions(t *testing.T) {
	names := func(dialect string) []string {
		t.Helper()
		fsys, err := FS(dialect)
		if err != nil {
			t.Fatal(err)
		}
		m, err := fs.Glob(fsys, "*.sql")
		if err != nil {
			t.Fatal(err)
		}
		for i := range m {
			m[i] = path.Base(m[i])
		}
		slices.Sort(m)
		return m
	}
	sqlite, mysql := names("sqlite"), names("mysql")
	if !slices.Equal(sqlite, mysql) {
		t.Errorf("migration files differ between dialects:\nsqlite: %v\nmysql:  %v", sqlite, mysql)
	}
}
