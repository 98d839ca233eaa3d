package sso

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/elph-server/elph/platform/store"
	"github.com/jmoiron/sqlx"
)

// InsertSigningKey stores a new token signing key. A kid already stored is
// ErrConflict.
func (s *Store) InsertSigningKey(ctx context.Context, k SigningKey) error {
	switch {
	case k.KID == "" || len(k.KID) > maxKIDBytes:
		return fmt.Errorf("sso: insert signing key: kid must be 1 to %d bytes", maxKIDBytes)
	case len(k.Private) == 0 || len(k.Public) == 0:
		// A nil []byte would be stored as NULL.
		return fmt.Errorf("sso: insert signing key %s: empty key material", k.KID)
	case k.CreatedAt.IsZero() || k.RetireAt.IsZero() || k.ExpireAt.IsZero():
		return fmt.Errorf("sso: insert signing key %s: times must be set", k.KID)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO signing_keys (kid, alg, private_key, public_key,
		created_at, retire_at, expire_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		k.KID, k.Alg, k.Private, k.Public, store.Time(k.CreatedAt), store.Time(k.RetireAt), store.Time(k.ExpireAt))
	if s.db.Dialect.IsUniqueViolation(err) {
		return fmt.Errorf("sso: insert signing key %s: %w", k.KID, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("sso: insert signing key %s: %w", k.KID, err)
	}
	return nil
}

// SigningKeys returns the keys not yet expired at now, newest first: the
// first one whose RetireAt is after now is the one to sign with, and all of
// them verify.
func (s *Store) SigningKeys(ctx context.Context, now time.Time) ([]SigningKey, error) {
	keys := []SigningKey{}
	err := sqlx.SelectContext(ctx, s.db, &keys, `SELECT kid, alg, private_key, public_key, created_at,
		retire_at, expire_at FROM signing_keys WHERE expire_at > ? ORDER BY created_at DESC, kid DESC`, store.Time(now))
	if err != nil {
		return nil, fmt.Errorf("sso: signing keys: %w", err)
	}
	return keys, nil
}

// DeleteExpiredKeys deletes the keys expired at now and returns how many.
func (s *Store) DeleteExpiredKeys(ctx context.Context, now time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, "DELETE FROM signing_keys WHERE expire_at <= ?", store.Time(now))
	if err != nil {
		return 0, fmt.Errorf("sso: delete expired signing keys: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sso: delete expired signing keys: %w", err)
	}
	return int(n), nil
}

// maxFailureKeyBytes is the size of login_failures.k.
const maxFailureKeyBytes = 255

// failureKey returns the stored form of a limiter key. Keys come partly
// from what a client typed, so one that is too long for the column (or not
// valid UTF-8) is replaced by its hash rather than refused: the limiter
// must count every attempt, odd ones most of all.
func failureKey(key string) (string, error) {
	if key == "" {
		return "", errors.New("empty key")
	}
	if len(key) <= maxFailureKeyBytes && utf8.ValidString(key) {
		return key, nil
	}
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// Failures returns the failed-login count of key ("acct:<login_key>" or
// "ip:<address>") in the fixed window that started with its first failure;
// 0 when there is none or that window has passed by now.
func (s *Store) Failures(ctx context.Context, key string, now time.Time, window time.Duration) (int, error) {
	k, err := failureKey(key)
	if err != nil {
		return 0, fmt.Errorf("sso: failures: %w", err)
	}
	var row struct {
		Count       int       `db:"count"`
		WindowStart time.Time `db:"window_start"`
	}
	err = sqlx.GetContext(ctx, s.db, &row, "SELECT count, window_start FROM login_failures WHERE k = ?", k)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sso: failures of %q: %w", k, err)
	}
	if !store.Time(now).Before(row.WindowStart.Add(window)) {
		return 0, nil
	}
	return row.Count, nil
}

// AddFailure counts one failed login for key at now and returns the count
// in the current window. The first failure after a window has passed (or
// ever) starts a new window of the given length at now.
//
// It is one atomic upsert, so nodes and goroutines adding to the same key
// at once all count: n concurrent calls raise the count by n.
func (s *Store) AddFailure(ctx context.Context, key string, now time.Time, window time.Duration) (int, error) {
	k, err := failureKey(key)
	if err != nil {
		return 0, fmt.Errorf("sso: add failure: %w", err)
	}
	if window <= 0 {
		return 0, fmt.Errorf("sso: add failure to %q: window %s is not positive", k, window)
	}
	now = store.Time(now)
	expired := now.Add(-window) // a window that started at or before this has passed

	// store.Dialect.Upsert can only copy the new values; the reset needs an
	// expression, so the conflict clause is spelled here. Both databases
	// evaluate the CASEs against the row as it was (MySQL assigns left to
	// right, and count is assigned before window_start changes).
	conflict := "ON CONFLICT (k) DO UPDATE SET"
	if s.isMySQL() {
		conflict = "ON DUPLICATE KEY UPDATE"
	}
	upsert := `INSERT INTO login_failures (k, count, window_start) VALUES (?, 1, ?) ` + conflict + `
		count = CASE WHEN window_start <= ? THEN 1 ELSE count + 1 END,
		window_start = CASE WHEN window_start <= ? THEN ? ELSE window_start END`

	var count int
	err = s.db.InTx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, upsert, k, now, expired, expired, now); err != nil {
			return err
		}
		// The upsert holds the row's write lock until commit, so this reads
		// this transaction's own count.
		return tx.QueryRowxContext(ctx, "SELECT count FROM login_failures WHERE k = ?", k).Scan(&count)
	})
	if err != nil {
		return 0, fmt.Errorf("sso: add failure to %q: %w", k, err)
	}
	return count, nil
}

// ClearFailures forgets the failures of key, after a successful login.
func (s *Store) ClearFailures(ctx context.Context, key string) error {
	k, err := failureKey(key)
	if err != nil {
		return fmt.Errorf("sso: clear failures: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, "DELETE FROM login_failures WHERE k = ?", k); err != nil {
		return fmt.Errorf("sso: clear failures of %q: %w", k, err)
	}
	return nil
}

// PurgeFailures deletes counters whose window started before before (pass
// now minus the longest window), so addresses seen once do not accumulate.
// It returns how many it deleted.
func (s *Store) PurgeFailures(ctx context.Context, before time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, "DELETE FROM login_failures WHERE window_start < ?", store.Time(before))
	if err != nil {
		return 0, fmt.Errorf("sso: purge failures: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sso: purge failures: %w", err)
	}
	return int(n), nil
}
