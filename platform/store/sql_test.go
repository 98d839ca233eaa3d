package store_test

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
)

type metaRow struct {
	K         string    `db:"k"`
	V         string    `db:"v"`
	UpdatedAt time.Time `db:"updated_at"`
}

func getMeta(t *testing.T, q sqlx.QueryerContext, k string) (metaRow, error) {
	t.Helper()
	var m metaRow
	err := sqlx.GetContext(t.Context(), q, &m, "SELECT k, v, updated_at FROM meta WHERE k = ?", k)
	return m, err
}

func TestUpsertAndInsertIgnore(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		cols := []string{"k", "v", "updated_at"}
		upsert := db.Dialect.Upsert("meta", cols, []string{"k"}, []string{"v", "updated_at"})

		// A non-UTC time with sub-microsecond digits: what comes back must
		// be the same instant, in UTC, at microsecond precision.
		t1 := time.Date(2024, 3, 1, 12, 30, 45, 123456789, time.FixedZone("MSK", 3*3600))
		t2 := t1.Add(time.Hour)
		if _, err := db.ExecContext(ctx, upsert, "instance", "first", t1); err != nil {
			t.Fatalf("upsert insert: %v", err)
		}
		if _, err := db.ExecContext(ctx, upsert, "instance", "second", t2); err != nil {
			t.Fatalf("upsert update: %v", err)
		}
		got, err := getMeta(t, db, "instance")
		if err != nil {
			t.Fatal(err)
		}
		if got.V != "second" {
			t.Errorf("v = %q, want second", got.V)
		}
		if want := t2.Truncate(time.Microsecond); !got.UpdatedAt.Truncate(time.Microsecond).Equal(want) || got.UpdatedAt.Location() != time.UTC {
			t.Errorf("updated_at = %v, want %v in UTC", got.UpdatedAt, want)
		}

		ignore := db.Dialect.InsertIgnore("meta", cols)
		res, err := db.ExecContext(ctx, ignore, "instance", "third", t2)
		if err != nil {
			t.Fatalf("insert ignore duplicate: %v", err)
		}
		if n, _ := res.RowsAffected(); n != 0 {
			t.Errorf("insert ignore duplicate affected %d rows", n)
		}
		if got, _ := getMeta(t, db, "instance"); got.V != "second" {
			t.Errorf("after insert ignore v = %q, want second", got.V)
		}
		if _, err := db.ExecContext(ctx, ignore, "other", "x", t2); err != nil {
			t.Fatalf("insert ignore new: %v", err)
		}

		_, err = db.ExecContext(ctx, "INSERT INTO meta (k, v, updated_at) VALUES (?, ?, ?)", "instance", "dup", t2)
		if err == nil {
			t.Fatal("duplicate INSERT succeeded")
		}
		if !db.Dialect.IsUniqueViolation(err) {
			t.Errorf("IsUniqueViolation(%v) = false", err)
		}
		if db.Dialect.IsRetryable(err) {
			t.Errorf("IsRetryable(%v) = true", err)
		}
		_, err = db.ExecContext(ctx, "SELECT nope FROM meta")
		if err == nil || db.Dialect.IsUniqueViolation(err) || db.Dialect.IsRetryable(err) {
			t.Errorf("unknown column error %v classified as unique violation or retryable", err)
		}
	})
}

func TestInTx(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		insert := "INSERT INTO meta (k, v, updated_at) VALUES (?, ?, ?)"
		boom := errors.New("boom")

		err := db.InTx(ctx, func(tx *sqlx.Tx) error {
			if _, err := tx.ExecContext(ctx, insert, "rolled", "back", time.Now()); err != nil {
				return err
			}
			if _, err := getMeta(t, tx, "rolled"); err != nil {
				t.Errorf("row not visible inside its transaction: %v", err)
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("InTx = %v, want boom", err)
		}
		if _, err := getMeta(t, db, "rolled"); !errors.Is(err, sql.ErrNoRows) {
			t.Errorf("rolled back row: err = %v, want sql.ErrNoRows", err)
		}

		calls := 0
		err = db.InTx(ctx, func(tx *sqlx.Tx) error {
			calls++
			_, err := tx.ExecContext(ctx, insert, "committed", "yes", time.Now())
			return err
		})
		if err != nil || calls != 1 {
			t.Fatalf("InTx = %v after %d calls", err, calls)
		}
		if got, err := getMeta(t, db, "committed"); err != nil || got.V != "yes" {
			t.Errorf("committed row = %+v, %v", got, err)
		}

		// Non-retryable errors are not retried.
		calls = 0
		err = db.InTx(ctx, func(tx *sqlx.Tx) error {
			calls++
			_, err := tx.ExecContext(ctx, insert, "committed", "dup", time.Now())
			return err
		})
		if !db.Dialect.IsUniqueViolation(err) || calls != 1 {
			t.Errorf("duplicate in InTx: err = %v after %d calls, want unique violation after 1", err, calls)
		}

		func() {
			defer func() {
				if recover() == nil {
					t.Error("panic in fn not re-raised")
				}
			}()
			_ = db.InTx(ctx, func(tx *sqlx.Tx) error {
				if _, err := tx.ExecContext(ctx, insert, "panicked", "x", time.Now()); err != nil {
					return err
				}
				panic("fn panics")
			})
		}()
		if _, err := getMeta(t, db, "panicked"); !errors.Is(err, sql.ErrNoRows) {
			t.Errorf("row of panicked transaction: err = %v, want sql.ErrNoRows", err)
		}
	})
}

// TestInTxRetriesBusySQLite holds the SQLite write lock from a second handle
// with a tiny busy_timeout: InTx must see SQLITE_BUSY, call it retryable,
// and succeed once the lock is released. The lock is released when InTx
// logs its first retry, so the test does not depend on timing.
func TestInTxRetriesBusySQLite(t *testing.T) {
	path := storetest.SQLiteDSN(t)
	ctx := t.Context()
	holder := storetest.Open(t, store.DriverSQLite, path)
	storetest.Migrate(t, holder)

	retried := make(chan struct{})
	logger := slog.New(&signalHandler{
		Handler: slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}),
		msg:     "store transaction retry",
		fire:    sync.OnceFunc(func() { close(retried) }),
	})
	db, err := store.Open(ctx, store.Options{DSN: path, BusyTimeout: time.Millisecond, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	lock, err := holder.BeginTxx(ctx, nil) // immediate: takes the write lock now
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.BeginTx(ctx, nil)
	if err == nil || !db.Dialect.IsRetryable(err) {
		t.Fatalf("BEGIN while locked: err = %v, want a retryable error", err)
	}
	go func() {
		<-retried
		lock.Rollback()
	}()

	err = db.InTx(ctx, func(tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO meta (k, v, updated_at) VALUES (?, ?, ?)", "retried", "ok", time.Now())
		return err
	})
	if err != nil {
		t.Fatalf("InTx: %v", err)
	}
	select {
	case <-retried:
	default:
		t.Error("InTx succeeded without retrying")
	}
	if got, err := getMeta(t, db, "retried"); err != nil || got.V != "ok" {
		t.Errorf("row = %+v, %v", got, err)
	}
}

// signalHandler calls fire when a record with message msg is logged.
type signalHandler struct {
	slog.Handler
	msg  string
	fire func()
}

func (h *signalHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		defer h.fire()
	}
	return h.Handler.Handle(ctx, r)
}
