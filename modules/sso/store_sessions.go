package sso

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/elph-server/elph/platform/store"
	"github.com/jmoiron/sqlx"
)

// reasonRefreshReused is the revoked_reason of a session ended because one
// of its refresh tokens was presented a second time.
const reasonRefreshReused = "refresh token reused"

// purgeGrace is how long expired and revoked sessions are kept, so a user
// (or an admin investigating) still sees them in the list of devices.
const purgeGrace = 30 * 24 * time.Hour

const sessionColumns = `id, user_id, device, user_agent, ip, created_at, last_seen_at,
	expires_at, revoked_at, revoked_reason`

// CreateSession stores a new session for s.UserID. s.ID (1 to 64 bytes,
// chosen by the caller) and s.ExpiresAt are required; a zero CreatedAt is
// now and a zero LastSeenAt is CreatedAt. Device, UserAgent and IP are
// clipped to their column sizes and s is updated to what was stored. A
// taken id is ErrConflict; an unknown user is ErrNotFound.
func (s *Store) CreateSession(ctx context.Context, sess *Session) error {
	if sess.ID == "" || len(sess.ID) > maxSessionIDBytes {
		return fmt.Errorf("sso: create session: id must be 1 to %d bytes", maxSessionIDBytes)
	}
	if sess.ExpiresAt.IsZero() {
		return fmt.Errorf("sso: create session %s: no expiry", sess.ID)
	}
	ns := *sess
	if ns.CreatedAt.IsZero() {
		ns.CreatedAt = time.Now()
	}
	if ns.LastSeenAt.IsZero() {
		ns.LastSeenAt = ns.CreatedAt
	}
	ns.CreatedAt, ns.LastSeenAt, ns.ExpiresAt = store.Time(ns.CreatedAt), store.Time(ns.LastSeenAt), store.Time(ns.ExpiresAt)
	ns.Device = store.Clip(ns.Device, maxTextChars)
	ns.UserAgent = store.Clip(ns.UserAgent, maxUserAgentChars)
	ns.IP = store.Clip(ns.IP, maxIPChars)
	ns.RevokedAt, ns.RevokedReason = nil, ""

	// Selecting the user id from users makes a missing user "0 rows"
	// rather than a foreign key error, which the dialects do not classify.
	res, err := s.db.ExecContext(ctx, `INSERT INTO sessions (id, user_id, device, user_agent, ip,
		created_at, last_seen_at, expires_at, revoked_reason)
		SELECT ?, id, ?, ?, ?, ?, ?, ?, '' FROM users WHERE id = ?`,
		ns.ID, ns.Device, ns.UserAgent, ns.IP, ns.CreatedAt, ns.LastSeenAt, ns.ExpiresAt, ns.UserID)
	if s.db.Dialect.IsUniqueViolation(err) {
		return fmt.Errorf("sso: create session %s: %w", ns.ID, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("sso: create session %s: %w", ns.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		if err == nil {
			err = fmt.Errorf("user %d: %w", ns.UserID, ErrNotFound)
		}
		return fmt.Errorf("sso: create session %s: %w", ns.ID, err)
	}
	*sess = ns
	return nil
}

func getSession(ctx context.Context, q sqlx.QueryerContext, id string) (Session, error) {
	var sess Session
	err := sqlx.GetContext(ctx, q, &sess, "SELECT "+sessionColumns+" FROM sessions WHERE id = ?", id)
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, ErrNotFound
	}
	return sess, err
}

// SessionByID returns a session, revoked and expired ones included, or
// ErrNotFound.
func (s *Store) SessionByID(ctx context.Context, id string) (Session, error) {
	sess, err := getSession(ctx, s.db, id)
	if err != nil {
		return Session{}, fmt.Errorf("sso: session %s: %w", id, err)
	}
	return sess, nil
}

// ListSessions returns a user's sessions, most recently seen first:
// those not revoked, or all of them with includeRevoked. Expired sessions
// are listed until PurgeExpired removes them; ExpiresAt tells them apart.
func (s *Store) ListSessions(ctx context.Context, userID int64, includeRevoked bool) ([]Session, error) {
	q := "SELECT " + sessionColumns + " FROM sessions WHERE user_id = ?"
	if !includeRevoked {
		q += " AND revoked_at IS NULL"
	}
	q += " ORDER BY last_seen_at DESC, id"
	sessions := []Session{}
	if err := sqlx.SelectContext(ctx, s.db, &sessions, q, userID); err != nil {
		return nil, fmt.Errorf("sso: sessions of user %d: %w", userID, err)
	}
	return sessions, nil
}

// TouchSession records that a session was used at now from ip ("" keeps
// the last address). ErrNotFound when there is no such session.
func (s *Store) TouchSession(ctx context.Context, id string, now time.Time, ip string) error {
	q, args := "UPDATE sessions SET last_seen_at = ? WHERE id = ?", []any{store.Time(now), id}
	if ip != "" {
		q, args = "UPDATE sessions SET last_seen_at = ?, ip = ? WHERE id = ?", []any{store.Time(now), store.Clip(ip, maxIPChars), id}
	}
	res, err := s.db.ExecContext(ctx, q, args...)
	if err == nil {
		err = affectedOrMissing(ctx, s.db, res, "SELECT 1 FROM sessions WHERE id = ?", id)
	}
	if err != nil {
		return fmt.Errorf("sso: touch session %s: %w", id, err)
	}
	return nil
}

// revokeSession revokes one session unless it already is, reporting
// whether it did.
func revokeSession(ctx context.Context, q sqlx.ExecerContext, id, reason string, now time.Time) (bool, error) {
	res, err := q.ExecContext(ctx, "UPDATE sessions SET revoked_at = ?, revoked_reason = ? WHERE id = ? AND revoked_at IS NULL",
		store.Time(now), store.Clip(reason, maxTextChars), id)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// RevokeSession ends a session at now for reason. It reports false, and
// changes nothing, when the session was already revoked; ErrNotFound when
// there is no such session.
func (s *Store) RevokeSession(ctx context.Context, id, reason string, now time.Time) (bool, error) {
	revoked, err := revokeSession(ctx, s.db, id, reason, now)
	if err == nil && !revoked {
		_, err = getSession(ctx, s.db, id)
	}
	if err != nil {
		return false, fmt.Errorf("sso: revoke session %s: %w", id, err)
	}
	return revoked, nil
}

// RevokeUserSessions ends every session of a user that is not revoked yet
// (after a password change, when an account is disabled) and returns the
// ids it revoked, so their connections can be closed.
func (s *Store) RevokeUserSessions(ctx context.Context, userID int64, reason string, now time.Time) ([]string, error) {
	var ids []string
	err := s.db.InTx(ctx, func(tx *sqlx.Tx) error {
		ids = nil
		if err := sqlx.SelectContext(ctx, tx, &ids, "SELECT id FROM sessions WHERE user_id = ? AND revoked_at IS NULL ORDER BY id", userID); err != nil {
			return err
		}
		// Revoking exactly the listed ids (not "all of the user's") keeps
		// the returned list true when a session is created meanwhile.
		for chunk := range slices.Chunk(ids, memberBatch) {
			q, args, err := sqlx.In("UPDATE sessions SET revoked_at = ?, revoked_reason = ? WHERE id IN (?) AND revoked_at IS NULL",
				store.Time(now), store.Clip(reason, maxTextChars), chunk)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sso: revoke sessions of user %d: %w", userID, err)
	}
	if ids == nil {
		ids = []string{}
	}
	return ids, nil
}

// validTokenHash reports whether h looks like what the store keeps: the
// lower-case hex SHA-256 of a refresh token. Anything else (the token
// itself, say) is refused so it cannot end up in the database.
func validTokenHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// InsertRefreshToken stores the hash of a new refresh token of a session
// (tokenHash: lower-case hex SHA-256 of the token, never the token). An
// unknown session is ErrNotFound, a hash already stored ErrConflict.
func (s *Store) InsertRefreshToken(ctx context.Context, tokenHash, sessionID string, expiresAt time.Time) error {
	if !validTokenHash(tokenHash) {
		return fmt.Errorf("sso: insert refresh token: not a hex SHA-256")
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at)
		SELECT ?, id, ?, ? FROM sessions WHERE id = ?`,
		tokenHash, store.Time(time.Now()), store.Time(expiresAt), sessionID)
	if s.db.Dialect.IsUniqueViolation(err) {
		return fmt.Errorf("sso: insert refresh token: %w", ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("sso: insert refresh token: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		if err == nil {
			err = fmt.Errorf("session %s: %w", sessionID, ErrNotFound)
		}
		return fmt.Errorf("sso: insert refresh token: %w", err)
	}
	return nil
}

// UseRefreshToken spends a refresh token at now and returns its session,
// in one transaction:
//   - an unknown token is ErrNotFound;
//   - a token already used means it was copied: the whole session is
//     revoked ("refresh token reused") and ErrRefreshReused is returned
//     with the session;
//   - a revoked session is ErrSessionRevoked, an expired token or session
//     ErrSessionExpired (both with the session);
//   - otherwise the token is marked used and the session returned.
//
// Two concurrent uses of one token cannot both succeed: marking it used is
// an UPDATE ... WHERE used_at IS NULL, and the loser, which changes no
// row, is treated as a reuse.
func (s *Store) UseRefreshToken(ctx context.Context, tokenHash string, now time.Time) (Session, error) {
	if !validTokenHash(tokenHash) {
		return Session{}, fmt.Errorf("sso: use refresh token: %w", ErrNotFound)
	}
	now = store.Time(now)
	var (
		sess    Session
		outcome error // the sentinel to return once the transaction is committed
	)
	err := s.db.InTx(ctx, func(tx *sqlx.Tx) error {
		sess, outcome = Session{}, nil
		var tok struct {
			SessionID string     `db:"session_id"`
			ExpiresAt time.Time  `db:"expires_at"`
			UsedAt    *time.Time `db:"used_at"`
		}
		err := sqlx.GetContext(ctx, tx, &tok, "SELECT session_id, expires_at, used_at FROM refresh_tokens WHERE token_hash = ?", tokenHash)
		if errors.Is(err, sql.ErrNoRows) {
			outcome = ErrNotFound
			return nil
		}
		if err != nil {
			return err
		}
		if sess, err = getSession(ctx, tx, tok.SessionID); err != nil {
			return err
		}

		// The revocation must be committed, so reuse is an outcome of a
		// successful transaction rather than an error that rolls it back.
		reused := func() error {
			outcome = ErrRefreshReused
			revoked, err := revokeSession(ctx, tx, sess.ID, reasonRefreshReused, now)
			if revoked {
				sess.RevokedAt, sess.RevokedReason = &now, reasonRefreshReused
			}
			return err
		}
		switch {
		case tok.UsedAt != nil:
			return reused()
		case sess.RevokedAt != nil:
			outcome = ErrSessionRevoked
			return nil
		case !now.Before(tok.ExpiresAt) || !now.Before(sess.ExpiresAt):
			outcome = ErrSessionExpired
			return nil
		}
		res, err := tx.ExecContext(ctx, "UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL", now, tokenHash)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			// Used by a concurrent transaction since we read it.
			return reused()
		}
		return nil
	})
	if err != nil {
		return Session{}, fmt.Errorf("sso: use refresh token: %w", err)
	}
	if outcome != nil {
		return sess, outcome
	}
	return sess, nil
}

// PurgeExpired deletes expired refresh tokens (used or not: until then a
// used one still detects reuse) and sessions that expired or were revoked
// more than 30 days before now, with their tokens. It returns how many
// tokens and sessions it deleted.
func (s *Store) PurgeExpired(ctx context.Context, now time.Time) (int, error) {
	now = store.Time(now)
	res, err := s.db.ExecContext(ctx, "DELETE FROM refresh_tokens WHERE expires_at <= ?", now)
	if err != nil {
		return 0, fmt.Errorf("sso: purge refresh tokens: %w", err)
	}
	tokens, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sso: purge refresh tokens: %w", err)
	}
	cutoff := now.Add(-purgeGrace)
	res, err = s.db.ExecContext(ctx, "DELETE FROM sessions WHERE expires_at < ? OR revoked_at < ?", cutoff, cutoff)
	if err != nil {
		return int(tokens), fmt.Errorf("sso: purge sessions: %w", err)
	}
	sessions, err := res.RowsAffected()
	if err != nil {
		return int(tokens), fmt.Errorf("sso: purge sessions: %w", err)
	}
	return int(tokens + sessions), nil
}
