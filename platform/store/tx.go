package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jmoiron/sqlx"
)

// Retry policy of InTx: a handful of quick attempts. Lock conflicts that
// outlast this are better reported than hidden behind a long stall.
const (
	txAttempts    = 5
	txBackoffBase = 10 * time.Millisecond
	txBackoffMax  = 200 * time.Millisecond
)

// InTx runs fn in a transaction and commits it when fn returns nil, or
// rolls it back and returns fn's error. A panic in fn rolls back and is
// re-raised.
//
// When fn or the commit fails with an error the dialect calls retryable
// (SQLITE_BUSY/LOCKED, MySQL deadlock or lock wait timeout), the whole
// transaction is run again, up to 5 attempts with a short jittered
// backoff. fn may therefore run more than once and must have no effects
// outside tx (or only idempotent ones).
func (db *DB) InTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = db.tryTx(ctx, fn)
		if err == nil || attempt == txAttempts || !db.Dialect.IsRetryable(err) {
			return err
		}
		wait := backoff(attempt)
		db.logger.Debug("store transaction retry", "dialect", db.Dialect.Name(), "attempt", attempt, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
}

// backoff returns the pause after the given failed attempt: exponential,
// capped, with jitter so that two transactions that just collided do not
// collide again in lockstep.
func backoff(attempt int) time.Duration {
	d := min(txBackoffBase<<(attempt-1), txBackoffMax)
	return d/2 + rand.N(d/2+1)
}

// tryTx is one attempt of InTx. Errors of fn are returned unwrapped so the
// caller sees its own sentinel errors as is.
func (db *DB) tryTx(ctx context.Context, fn func(tx *sqlx.Tx) error) (err error) {
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%sbegin transaction: %w", errorPrefix, err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
	}()
	if err := fn(tx); err != nil {
		if rerr := tx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
			db.logger.Warn("store rollback failed", "dialect", db.Dialect.Name(), "err", rerr)
		}
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%scommit: %w", errorPrefix, err)
	}
	return nil
}
