package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
)

func TestMigrate(t *testing.T) {
	storetest.ForEachDialectEmpty(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		fsys := storetest.Migrations(t, db.Dialect.Name())

		before, err := db.MigrationStatus(ctx, fsys)
		if err != nil {
			t.Fatalf("MigrationStatus before: %v", err)
		}
		if len(before) == 0 || before[0].Version != 1 || before[0].Applied {
			t.Fatalf("status before = %+v, want version 1 pending", before)
		}

		start := time.Now()
		res, err := db.Migrate(ctx, fsys)
		if err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		if len(res) != len(before) || res[0].Version != 1 || res[0].Source != "00001_meta.sql" {
			t.Fatalf("first Migrate = %+v, want all %d migrations starting at 00001_meta.sql", res, len(before))
		}

		res, err = db.Migrate(ctx, fsys)
		if err != nil {
			t.Fatalf("second Migrate: %v", err)
		}
		if len(res) != 0 {
			t.Errorf("second Migrate applied %+v, want nothing", res)
		}

		st, err := db.MigrationStatus(ctx, fsys)
		if err != nil {
			t.Fatalf("MigrationStatus: %v", err)
		}
		for _, s := range st {
			if !s.Applied {
				t.Errorf("%s not applied", s.Source)
			}
			// Both dialects store the time in UTC; allow for clock
			// granularity (SQLite datetime('now') has whole seconds).
			if s.AppliedAt.Before(start.Add(-2*time.Second)) || s.AppliedAt.After(time.Now().Add(2*time.Second)) {
				t.Errorf("%s applied at %v, want about %v", s.Source, s.AppliedAt, start)
			}
		}
		if st[0].Version != 1 || st[0].Source != "00001_meta.sql" {
			t.Errorf("status[0] = %+v", st[0])
		}

		if _, err := db.ExecContext(ctx, "SELECT k, v, updated_at FROM meta"); err != nil {
			t.Errorf("meta table unusable: %v", err)
		}
	})
}

func TestMigrateNil(t *testing.T) {
	db := storetest.Open(t, store.DriverSQLite, ":memory:")
	if _, err := db.Migrate(t.Context(), nil); err == nil {
		t.Error("Migrate(nil) succeeded")
	}
}

// TestMigrateConcurrentMySQL starts four "nodes" migrating one MySQL
// database at once: the named lock must let exactly one apply each
// migration and the others find nothing to do.
func TestMigrateConcurrentMySQL(t *testing.T) {
	dsn := storetest.MySQLDSN(t)
	const nodes = 4
	dbs := make([]*store.DB, nodes)
	for i := range dbs {
		dbs[i] = storetest.Open(t, store.DriverMySQL, dsn)
	}
	fsys := storetest.Migrations(t, store.DriverMySQL)

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		applied = map[int64]int{}
	)
	start := make(chan struct{})
	for i, db := range dbs {
		wg.Go(func() {
			<-start
			t0 := time.Now()
			res, err := db.Migrate(ctx, fsys)
			t.Logf("node %d: %v in %s", i, len(res), time.Since(t0))
			if err != nil {
				t.Errorf("node %d: %v", i, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, r := range res {
				applied[r.Version]++
			}
		})
	}
	close(start)
	wg.Wait()

	if applied[1] != 1 {
		t.Errorf("version 1 applied by %d nodes, want 1", applied[1])
	}
	for v, n := range applied {
		if n != 1 {
			t.Errorf("version %d applied by %d nodes, want 1", v, n)
		}
	}
	var rows int
	if err := dbs[0].GetContext(ctx, &rows, "SELECT COUNT(*) FROM goose_db_version WHERE version_id = 1 AND is_applied"); err != nil {
		t.Fatal(err)
	}
	if rows != 1 {
		t.Errorf("version 1 recorded %d times, want 1", rows)
	}
}
