package push

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"

	"github.com/elph-server/elph/platform/store"
)

// ErrNotFound: the user has no such device.
var ErrNotFound = errors.New("push: no such device")

// Store keeps the devices, the queue and the call ledger (see
// migrations/*/00008_push.sql) on SQLite or MySQL/MariaDB.
type Store struct {
	db *store.DB
}

// NewStore returns a Store on db, which must be migrated.
func NewStore(db *store.DB) *Store { return &Store{db: db} }

func (s *Store) isMySQL() bool { return s.db.Dialect.Name() == store.DriverMySQL }

// forUpdate locks the rows read on MySQL; SQLite's write transactions
// lock the database anyway.
func (s *Store) forUpdate() string {
	if s.isMySQL() {
		return " FOR UPDATE"
	}
	return ""
}

// tokenHash is the unique key of a token (tokens are too long for a
// MySQL index).
func tokenHash(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

const deviceColumns = "id, user_id, session_id, platform, app_id, token, name, created_at, updated_at"

type deviceRow struct {
	ID        int64     `db:"id"`
	UserID    int64     `db:"user_id"`
	SessionID string    `db:"session_id"`
	Platform  string    `db:"platform"`
	AppID     string    `db:"app_id"`
	Token     string    `db:"token"`
	Name      string    `db:"name"`
	CreatedAt time.Time `db:"created_at"`
	UpdatedAt time.Time `db:"updated_at"`
}

func (r deviceRow) device() Device {
	return Device{
		ID: r.ID, Platform: r.Platform, AppID: r.AppID, Name: r.Name, TokenHint: tokenHint(r.Token),
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(), sessionID: r.SessionID,
	}
}

// registration is a validated POST /v1/devices of a user.
type registration struct {
	UserID    int64
	SessionID string
	Platform  string
	AppID     string
	Token     string // normalised
	Name      string
}

// errRace: another request inserted the same token concurrently.
var errRace = errors.New("push: device registered concurrently")

// upsertDevice registers r: a token already known (on its platform) moves
// to r's user and session; a new one is inserted. Other devices of the
// same session, platform and app (the app's previous token) are removed,
// and so are the user's oldest devices beyond MaxDevicesPerUser. It
// reports whether the device is new and how many devices it replaced.
func (s *Store) upsertDevice(ctx context.Context, r registration, now time.Time) (Device, bool, int, error) {
	hash := tokenHash(r.Token)
	now = store.Time(now)
	for range 3 {
		var (
			id       int64
			created  bool
			replaced int
		)
		err := s.db.InTx(ctx, func(tx *sqlx.Tx) error {
			id, created, replaced = 0, false, 0
			var cur struct {
				ID     int64 `db:"id"`
				UserID int64 `db:"user_id"`
			}
			err := tx.GetContext(ctx, &cur, "SELECT id, user_id FROM push_devices WHERE platform = ? AND token_hash = ?"+s.forUpdate(), r.Platform, hash)
			switch {
			case err == nil:
				id = cur.ID
				if _, err := tx.ExecContext(ctx, `UPDATE push_devices SET user_id = ?, session_id = ?, app_id = ?, token = ?,
					name = ?, updated_at = ? WHERE id = ?`, r.UserID, r.SessionID, r.AppID, r.Token, r.Name, now, id); err != nil {
					return fmt.Errorf("push: update device %d: %w", id, err)
				}
				if cur.UserID != r.UserID {
					// What was queued is the previous user's.
					if _, err := tx.ExecContext(ctx, "DELETE FROM push_queue WHERE device_id = ?", id); err != nil {
						return fmt.Errorf("push: clear the queue of device %d: %w", id, err)
					}
				}
			case errors.Is(err, sql.ErrNoRows):
				created = true
			default:
				return fmt.Errorf("push: read device: %w", err)
			}
			// The app's previous token on this session is stale.
			var stale []int64
			if r.SessionID != "" {
				if err := tx.SelectContext(ctx, &stale, `SELECT id FROM push_devices WHERE user_id = ? AND session_id = ?
					AND platform = ? AND app_id = ? AND id <> ?`, r.UserID, r.SessionID, r.Platform, r.AppID, id); err != nil {
					return fmt.Errorf("push: read devices of session: %w", err)
				}
			}
			if created {
				var n int
				if err := tx.GetContext(ctx, &n, "SELECT COUNT(*) FROM push_devices WHERE user_id = ?", r.UserID); err != nil {
					return fmt.Errorf("push: count devices: %w", err)
				}
				if over := n - len(stale) - MaxDevicesPerUser + 1; over > 0 {
					var oldest []int64
					q, args, err := sqlx.In(`SELECT id FROM push_devices WHERE user_id = ? AND id NOT IN (?)
						ORDER BY updated_at, id LIMIT ?`, r.UserID, append([]int64{0}, stale...), over)
					if err != nil {
						return err
					}
					if err := tx.SelectContext(ctx, &oldest, q, args...); err != nil {
						return fmt.Errorf("push: read oldest devices: %w", err)
					}
					stale = append(stale, oldest...)
				}
			}
			if err := deleteDevicesTx(ctx, tx, stale); err != nil {
				return err
			}
			replaced = len(stale)
			if !created {
				return nil
			}
			res, err := tx.ExecContext(ctx, `INSERT INTO push_devices (user_id, session_id, platform, app_id, token, token_hash,
				name, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				r.UserID, r.SessionID, r.Platform, r.AppID, r.Token, hash, r.Name, now, now)
			if s.db.Dialect.IsUniqueViolation(err) {
				return errRace
			}
			if err != nil {
				return fmt.Errorf("push: insert device: %w", err)
			}
			id, err = res.LastInsertId()
			return err
		})
		if errors.Is(err, errRace) {
			continue // now it is found
		}
		if err != nil {
			return Device{}, false, 0, err
		}
		var row deviceRow
		if err := s.db.GetContext(ctx, &row, "SELECT "+deviceColumns+" FROM push_devices WHERE id = ?", id); err != nil {
			return Device{}, false, 0, fmt.Errorf("push: read device %d: %w", id, err)
		}
		return row.device(), created, replaced, nil
	}
	return Device{}, false, 0, errRace
}

// deleteDevicesTx removes devices and what is queued for them.
func deleteDevicesTx(ctx context.Context, tx *sqlx.Tx, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	for _, stmt := range []string{"DELETE FROM push_queue WHERE device_id IN (?)", "DELETE FROM push_devices WHERE id IN (?)"} {
		q, args, err := sqlx.In(stmt, ids)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("push: delete devices: %w", err)
		}
	}
	return nil
}

// listDevices returns userID's devices, oldest first.
func (s *Store) listDevices(ctx context.Context, userID int64) ([]Device, error) {
	var rows []deviceRow
	if err := s.db.SelectContext(ctx, &rows, "SELECT "+deviceColumns+" FROM push_devices WHERE user_id = ? ORDER BY id", userID); err != nil {
		return nil, fmt.Errorf("push: list devices of user %d: %w", userID, err)
	}
	out := make([]Device, len(rows))
	for i, r := range rows {
		out[i] = r.device()
	}
	return out, nil
}

// deleteDevice removes userID's device id, or returns ErrNotFound.
func (s *Store) deleteDevice(ctx context.Context, userID, id int64) error {
	return s.db.InTx(ctx, func(tx *sqlx.Tx) error {
		var n int
		if err := tx.GetContext(ctx, &n, "SELECT COUNT(*) FROM push_devices WHERE id = ? AND user_id = ?", id, userID); err != nil {
			return fmt.Errorf("push: read device %d: %w", id, err)
		}
		if n == 0 {
			return ErrNotFound
		}
		return deleteDevicesTx(ctx, tx, []int64{id})
	})
}

// deleteSessionDevices removes the devices registered by a session (of
// userID, when not 0) and returns how many.
func (s *Store) deleteSessionDevices(ctx context.Context, userID int64, sessionID string) (int, error) {
	var n int
	err := s.db.InTx(ctx, func(tx *sqlx.Tx) error {
		q, args := "SELECT id FROM push_devices WHERE session_id = ?", []any{sessionID}
		if userID != 0 {
			q, args = q+" AND user_id = ?", append(args, userID)
		}
		var ids []int64
		if err := tx.SelectContext(ctx, &ids, q, args...); err != nil {
			return fmt.Errorf("push: read devices of session: %w", err)
		}
		n = len(ids)
		return deleteDevicesTx(ctx, tx, ids)
	})
	return n, err
}

// removeInvalid removes device id when it still has token (APNs or FCM
// called the token invalid), and reports whether it did.
func (s *Store) removeInvalid(ctx context.Context, id int64, token string) (bool, error) {
	var removed bool
	err := s.db.InTx(ctx, func(tx *sqlx.Tx) error {
		var n int
		if err := tx.GetContext(ctx, &n, "SELECT COUNT(*) FROM push_devices WHERE id = ? AND token_hash = ?", id, tokenHash(token)); err != nil {
			return fmt.Errorf("push: read device %d: %w", id, err)
		}
		removed = n > 0
		if !removed {
			_, err := tx.ExecContext(ctx, "DELETE FROM push_queue WHERE device_id = ?", id)
			return err
		}
		return deleteDevicesTx(ctx, tx, []int64{id})
	})
	return removed, err
}

// template is what one trigger queues for every matching device.
type template struct {
	Kind       string
	Ref        string // the call id of call pushes, for cancelling them
	CollapseID string
	Priority   int
	Payload    []byte // the notification, JSON
	Next       time.Time
	Expires    time.Time
	Created    time.Time
}

// enqueueTx queues t for every device of platform of the users, in one
// INSERT … SELECT so a device removed concurrently gets no row, and
// returns how many rows it queued.
func enqueueTx(ctx context.Context, tx *sqlx.Tx, userIDs []int64, platform string, t template) (int64, error) {
	if len(userIDs) == 0 {
		return 0, nil
	}
	q, args, err := sqlx.In(`INSERT INTO push_queue (device_id, user_id, platform, app_id, token, kind, ref, payload,
		collapse_id, priority, attempts, next_attempt_at, expires_at, last_error, lease_owner, created_at)
		SELECT id, user_id, platform, app_id, token, ?, ?, ?, ?, ?, 0, ?, ?, '', '', ? FROM push_devices
		WHERE platform = ? AND user_id IN (?)`,
		t.Kind, t.Ref, string(t.Payload), t.CollapseID, t.Priority, store.Time(t.Next), store.Time(t.Expires),
		store.Time(t.Created), platform, userIDs)
	if err != nil {
		return 0, err
	}
	res, err := tx.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("push: enqueue %s for %s: %w", t.Kind, platform, err)
	}
	return res.RowsAffected()
}

const queueColumns = `id, device_id, user_id, platform, app_id, token, kind, ref, payload, collapse_id, priority,
	attempts, expires_at, created_at`

type queueRow struct {
	ID         int64     `db:"id"`
	DeviceID   int64     `db:"device_id"`
	UserID     int64     `db:"user_id"`
	Platform   string    `db:"platform"`
	AppID      string    `db:"app_id"`
	Token      string    `db:"token"`
	Kind       string    `db:"kind"`
	Ref        string    `db:"ref"`
	Payload    string    `db:"payload"`
	CollapseID string    `db:"collapse_id"`
	Priority   int       `db:"priority"`
	Attempts   int       `db:"attempts"`
	ExpiresAt  time.Time `db:"expires_at"`
	CreatedAt  time.Time `db:"created_at"`
}

// claim leases up to limit due rows to owner until the given time and
// returns them. The lease is taken by a conditional UPDATE, which on
// MariaDB re-checks the condition on the row it locks, so of several
// nodes claiming the same row exactly one gets it; owner must be unique
// per claim. Rows whose lease ran out (a node died sending them) are due
// again.
func (s *Store) claim(ctx context.Context, now time.Time, limit int, owner string, until time.Time) ([]queueRow, error) {
	now = store.Time(now)
	var ids []int64
	err := s.db.SelectContext(ctx, &ids, `SELECT id FROM push_queue WHERE next_attempt_at <= ?
		AND (lease_until IS NULL OR lease_until < ?) ORDER BY next_attempt_at, id LIMIT ?`, now, now, limit)
	if err != nil {
		return nil, fmt.Errorf("push: find due rows: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	q, args, err := sqlx.In(`UPDATE push_queue SET lease_owner = ?, lease_until = ?
		WHERE id IN (?) AND (lease_until IS NULL OR lease_until < ?)`, owner, store.Time(until), ids, now)
	if err != nil {
		return nil, err
	}
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("push: lease rows: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return nil, err
	}
	var rows []queueRow
	if err := s.db.SelectContext(ctx, &rows, "SELECT "+queueColumns+" FROM push_queue WHERE lease_owner = ? ORDER BY id", owner); err != nil {
		return nil, fmt.Errorf("push: read leased rows: %w", err)
	}
	return rows, nil
}

// complete removes rows that were sent or given up.
func (s *Store) complete(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	q, args, err := sqlx.In("DELETE FROM push_queue WHERE id IN (?)", ids)
	if err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("push: delete %d rows: %w", len(ids), err)
	}
	return nil
}

// reschedule releases a row that failed, for another attempt at next.
func (s *Store) reschedule(ctx context.Context, id int64, attempts int, next time.Time, lastErr string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE push_queue SET attempts = ?, next_attempt_at = ?, last_error = ?,
		lease_owner = '', lease_until = NULL WHERE id = ?`, attempts, store.Time(next), truncate(lastErr, 255), id)
	if err != nil {
		return fmt.Errorf("push: reschedule row %d: %w", id, err)
	}
	return nil
}

// release gives rows back untouched (a send cancelled by Stop).
func (s *Store) release(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	q, args, err := sqlx.In("UPDATE push_queue SET lease_owner = '', lease_until = NULL WHERE id IN (?)", ids)
	if err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("push: release rows: %w", err)
	}
	return nil
}

// depth counts the queued rows of every node.
func (s *Store) depth(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.GetContext(ctx, &n, "SELECT COUNT(*) FROM push_queue"); err != nil {
		return 0, fmt.Errorf("push: count the queue: %w", err)
	}
	return n, nil
}

// Kinds of the call ledger.
const (
	logCall   = "call"   // the incoming-call push was decided (devices: how many got one)
	logCancel = "cancel" // the call was answered or ended
	logMissed = "missed" // the missed-call push was decided
)

// logCallTx records kind for (callID, userID) and reports whether it is
// new: call events arrive at least once and in any order, and the ledger
// outlives the queue rows (sent rows are deleted), so it is what dedupes.
func (s *Store) logCallTx(ctx context.Context, tx *sqlx.Tx, callID string, userID int64, kind string, now time.Time) (bool, error) {
	res, err := tx.ExecContext(ctx, s.db.Dialect.InsertIgnore("push_call_log", []string{"call_id", "user_id", "kind", "devices", "created_at"}),
		callID, userID, kind, 0, store.Time(now))
	if err != nil {
		return false, fmt.Errorf("push: call ledger: %w", err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// callDevicesTx returns how many devices got the incoming-call push of
// (callID, userID), and whether that push was decided at all.
func callDevicesTx(ctx context.Context, tx *sqlx.Tx, callID string, userID int64) (int, bool, error) {
	var n int
	err := tx.GetContext(ctx, &n, "SELECT devices FROM push_call_log WHERE call_id = ? AND user_id = ? AND kind = ?", callID, userID, logCall)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("push: call ledger: %w", err)
	}
	return n, true, nil
}

func setCallDevicesTx(ctx context.Context, tx *sqlx.Tx, callID string, userID int64, n int64) error {
	_, err := tx.ExecContext(ctx, "UPDATE push_call_log SET devices = ? WHERE call_id = ? AND user_id = ? AND kind = ?", n, callID, userID, logCall)
	if err != nil {
		return fmt.Errorf("push: call ledger: %w", err)
	}
	return nil
}

// hasCallLogTx reports whether kind was recorded for (callID, userID).
func hasCallLogTx(ctx context.Context, tx *sqlx.Tx, callID string, userID int64, kind string) (bool, error) {
	var n int
	err := tx.GetContext(ctx, &n, "SELECT COUNT(*) FROM push_call_log WHERE call_id = ? AND user_id = ? AND kind = ?", callID, userID, kind)
	if err != nil {
		return false, fmt.Errorf("push: call ledger: %w", err)
	}
	return n > 0, nil
}

// dropUnsentCallsTx removes incoming-call pushes of (callID, userID) that
// no worker holds: the call stopped ringing before they went out.
func dropUnsentCallsTx(ctx context.Context, tx *sqlx.Tx, callID string, userID int64) (int64, error) {
	res, err := tx.ExecContext(ctx, "DELETE FROM push_queue WHERE user_id = ? AND kind = ? AND ref = ? AND lease_owner = ''",
		userID, KindCall, callID)
	if err != nil {
		return 0, fmt.Errorf("push: drop unsent call pushes: %w", err)
	}
	return res.RowsAffected()
}

// purgeCallLog deletes ledger entries older than cutoff.
func (s *Store) purgeCallLog(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, "DELETE FROM push_call_log WHERE created_at < ?", store.Time(cutoff))
	if err != nil {
		return 0, fmt.Errorf("push: purge call ledger: %w", err)
	}
	return res.RowsAffected()
}

// truncate cuts s to at most n bytes on a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
