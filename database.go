package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/platform/store"
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
