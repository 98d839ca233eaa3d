package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/migrations"
	"github.com/elph-server/elph/platform/blob"
	"github.com/elph-server/elph/platform/obs"
	"github.com/elph-server/elph/platform/store"
	"github.com/spf13/cobra"
)

// storeOptions maps the database section to store options. SQLite without a
// DSN lives at <data_dir>/elph.db; the directory is made when missing.
func storeOptions(c *config.Config) (store.Options, error) {
	d := c.Database
	o := store.Options{Driver: d.Driver, DSN: d.DSN, MaxOpenConns: d.MaxOpenConns, ConnMaxLifetime: d.ConnMaxLifetime}
	if d.Driver == "sqlite" && d.DSN == "" {
		if err := os.MkdirAll(c.Node.DataDir, 0o750); err != nil {
			return o, fmt.Errorf("data directory: %w", err)
		}
		o.DSN = filepath.Join(c.Node.DataDir, "elph.db")
	}
	return o, nil
}

// openBlob opens the file store: a directory under the data dir by
// default, or an S3 bucket.
func openBlob(ctx context.Context, c *config.Config, log *slog.Logger) (blob.Store, error) {
	b := c.Blob
	if b.Kind == "s3" {
		s, err := blob.NewS3(ctx, blob.S3Options{
			Endpoint: b.S3.Endpoint, UseTLS: b.S3.UseTLS, CAFile: b.S3.CAFile, Region: b.S3.Region,
			Bucket: b.S3.Bucket, AccessKey: b.S3.AccessKey, SecretKey: b.S3.SecretKey,
			PathStyle: b.S3.PathStyle, CreateBucket: b.S3.CreateBucket, Logger: log.With("component", "blob"),
		})
		if err != nil {
			return nil, fmt.Errorf("file store: %w", err)
		}
		return s, nil
	}
	dir := b.Dir
	if dir == "" {
		dir = filepath.Join(c.Node.DataDir, "files")
	}
	l, err := blob.NewLocal(dir)
	if err != nil {
		return nil, fmt.Errorf("file store: %w", err)
	}
	return l, nil
}

// openMigrated reads the configuration a command was given, opens its
// database and applies pending migrations: what every command that works
// on the data outside `serve` needs first (user, ldap, addressbook).
func openMigrated(ctx context.Context, cf *configFlags, cmd *cobra.Command) (config.Config, *slog.Logger, *store.DB, error) {
	src, err := cf.source(cmd.Flags(), nil)
	if err != nil {
		return config.Config{}, nil, nil, err
	}
	l, err := load(src, cmd.ErrOrStderr())
	if err != nil {
		return config.Config{}, nil, nil, err
	}
	cfg := l.Config
	log := obs.NewLogger(cmd.ErrOrStderr(), cfg.Log.Format, newLevel(cfg.Log.Level))
	o, err := storeOptions(&cfg)
	if err != nil {
		return config.Config{}, nil, nil, err
	}
	o.Logger = log
	db, err := store.Open(ctx, o)
	if err != nil {
		return config.Config{}, nil, nil, err
	}
	fsys, err := migrations.FS(db.Dialect.Name())
	if err == nil {
		_, err = db.Migrate(ctx, fsys)
	}
	if err != nil {
		db.Close()
		return config.Config{}, nil, nil, fmt.Errorf("migrate: %w", err)
	}
	return cfg, log, db, nil
}
