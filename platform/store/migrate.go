package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
)

// MigrationResult describes one migration applied by Migrate.
type MigrationResult struct {
	Version  int64
	Source   string // file name, e.g. "00001_meta.sql"
	Duration time.Duration
}

// MigrationStatus describes one known migration.
type MigrationStatus struct {
	Version   int64
	Source    string
	Applied   bool
	AppliedAt time.Time // zero unless Applied
}

const (
	// migrateLockName is the MySQL named lock (server-wide) that makes nodes
	// starting together take turns: the first applies the migrations, the
	// others then find nothing to do.
	migrateLockName = "elph_migrate"
	migrateLockWait = 60 * time.Second
)

// Migrate applies all pending migrations from migrations (a folder of goose
// SQL files, as returned by migrations.FS for this dialect) and returns the
// ones it applied; none when the schema is already current.
//
// On MySQL the migrations run under GET_LOCK('elph_migrate', 60) on a
// dedicated connection, so several nodes can start at once. On SQLite each
// migration runs in an immediate transaction and busy_timeout makes a
// concurrent writer wait, which is enough for one node (two processes
// migrating one SQLite file at the same moment can still collide: one of
// them fails and succeeds on its next start).
func (db *DB) Migrate(ctx context.Context, migrations fs.FS) ([]MigrationResult, error) {
	var out []MigrationResult
	err := db.withProvider(ctx, migrations, func(p *goose.Provider) error {
		res, err := p.Up(ctx)
		for _, r := range res {
			if r.Error != nil {
				continue
			}
			m := MigrationResult{Version: r.Source.Version, Source: path.Base(r.Source.Path), Duration: r.Duration}
			db.logger.Info("store migration applied", "dialect", db.Dialect.Name(), "version", m.Version, "source", m.Source, "duration", m.Duration)
			out = append(out, m)
		}
		return err
	})
	if err != nil {
		return out, fmt.Errorf("%smigrate %s: %w", errorPrefix, db.Dialect.Name(), err)
	}
	return out, nil
}

// MigrationStatus lists every migration in migrations, in version order,
// with whether and when it was applied. Like goose, it creates the empty
// version table (goose_db_version) when the database has none yet.
func (db *DB) MigrationStatus(ctx context.Context, migrations fs.FS) ([]MigrationStatus, error) {
	var out []MigrationStatus
	err := db.withProvider(ctx, migrations, func(p *goose.Provider) error {
		st, err := p.Status(ctx)
		if err != nil {
			return err
		}
		for _, s := range st {
			out = append(out, MigrationStatus{
				Version:   s.Source.Version,
				Source:    path.Base(s.Source.Path),
				Applied:   s.State == goose.StateApplied,
				AppliedAt: s.AppliedAt,
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%smigration status %s: %w", errorPrefix, db.Dialect.Name(), err)
	}
	return out, nil
}

// withProvider runs fn with a goose provider for this database. Providers
// are cheap and built per call so nothing goose-related outlives it; the
// global goose registry of Go migrations is explicitly not consulted.
func (db *DB) withProvider(ctx context.Context, migrations fs.FS, fn func(*goose.Provider) error) (err error) {
	if migrations == nil {
		return errors.New("nil migrations")
	}
	opts := []goose.ProviderOption{
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(db.logger),
	}
	var (
		dialect database.Dialect
		sqlDB   = db.DB.DB
	)
	switch db.Dialect.Name() {
	case DriverMySQL:
		dialect = goose.DialectMySQL
		// The lock wait and long DDL would trip the pool's readTimeout.
		var mdb *sql.DB
		mdb, err = openMySQLNoTimeouts(db.mysqlCfg)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := mdb.Close(); err == nil {
				err = cerr
			}
		}()
		// goose's own session locker is not used: goose creates its version
		// table and checks for pending migrations before taking it, and
		// nodes racing there fail. The lock is held around everything
		// instead.
		var unlock func() error
		unlock, err = lockMigrations(ctx, mdb)
		if err != nil {
			return err
		}
		defer func() {
			if uerr := unlock(); err == nil {
				err = uerr
			}
		}()
		sqlDB = mdb
	default:
		dialect = goose.DialectSQLite3
	}
	p, err := goose.NewProvider(dialect, sqlDB, migrations, opts...)
	if err != nil {
		return err
	}
	return fn(p)
}

// lockMigrations takes the MySQL named lock on a connection of its own and
// returns the function that releases it. Named locks belong to the
// session, so the server also releases it if this node dies mid-migration.
func lockMigrations(ctx context.Context, db *sql.DB) (unlock func() error, err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("migration lock connection: %w", err)
	}
	var got sql.NullInt64
	err = conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, ?)", migrateLockName, int(migrateLockWait.Seconds())).Scan(&got)
	if err == nil && (!got.Valid || got.Int64 != 1) {
		err = fmt.Errorf("not granted within %s (another node still migrating?)", migrateLockWait)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("take migration lock %q: %w", migrateLockName, err)
	}
	return func() error {
		// Release even if ctx is done, or the lock lingers until the
		// connection is closed below anyway.
		_, err := conn.ExecContext(context.WithoutCancel(ctx), "DO RELEASE_LOCK(?)", migrateLockName)
		if cerr := conn.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("release migration lock %q: %w", migrateLockName, err)
		}
		return nil
	}, nil
}
