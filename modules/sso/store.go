package sso

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/elph-server/elph/platform/store"
)

// Store keeps the sso module's data (see migrations/*/00002_sso.sql):
// accounts and their phone numbers, directory groups, device sessions with
// their refresh tokens, token signing keys and failed-login counters. It
// works the same on SQLite and MySQL/MariaDB.
//
// Every time it writes is stored in UTC truncated to microseconds (what
// MySQL's datetime(6) keeps), so what a caller reads back equals what it
// wrote on either database.
type Store struct {
	db *store.DB
}

// NewStore returns a Store on db, which must be migrated.
func NewStore(db *store.DB) *Store {
	return &Store{db: db}
}

// UpsertResult says what an upsert of a directory entry did.
type UpsertResult int

const (
	// UpsertUnchanged: the entry was known and nothing of it changed (only
	// its sync time was recorded).
	UpsertUnchanged UpsertResult = iota
	// UpsertCreated: the entry was new.
	UpsertCreated
	// UpsertUpdated: the entry was known and some of it changed.
	UpsertUpdated
)

func (r UpsertResult) String() string {
	switch r {
	case UpsertUnchanged:
		return "unchanged"
	case UpsertCreated:
		return "created"
	case UpsertUpdated:
		return "updated"
	default:
		return fmt.Sprintf("UpsertResult(%d)", int(r))
	}
}

// Column sizes the store clips free text to, in characters: MySQL in strict
// mode rejects longer values instead of cutting them, and a too-long
// directory attribute or User-Agent must not fail a sync or a login.
const (
	maxTextChars      = 255
	maxDNChars        = 1024
	maxUserAgentChars = 512
	maxIPChars        = 64
	maxLoginChars     = 128
	maxSessionIDBytes = 64
	maxKIDBytes       = 64
)

// nullIfEmpty stores "" as NULL, for unique columns where many rows may
// have no value (external_id) and for "not set" (password_hash).
func nullIfEmpty(s string) sql.NullString {
	return sql.NullString{String: s, Valid: s != ""}
}

// affectedOrMissing turns an UPDATE that changed no row into ErrNotFound
// when the row does not exist. RowsAffected alone cannot tell: MySQL counts
// changed rows, so an UPDATE writing the values a row already has reports 0.
func affectedOrMissing(ctx context.Context, db *store.DB, res sql.Result, existsQuery string, args ...any) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	var one int
	err = db.QueryRowContext(ctx, existsQuery, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// isMySQL reports whether statements must be spelled for MySQL where the
// store.Dialect has no builder for them.
func (s *Store) isMySQL() bool {
	return s.db.Dialect.Name() == store.DriverMySQL
}
