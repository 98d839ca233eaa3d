// Package migrations embeds the SQL schema migrations of every module, one
// folder per dialect. Files are goose migrations named NNNNN_name.sql; the
// two folders hold the same versions so a database can move between dialects
// with the same schema history.
package migrations

import (
	"embed"
	"fmt"
	"io/fs"
)

//go:embed sqlite/*.sql mysql/*.sql
var files embed.FS

// FS returns the migrations for dialect ("sqlite" or "mysql") with the
// migration files at its root, as goose expects them.
func FS(dialect string) (fs.FS, error) {
	switch dialect {
	case "sqlite", "mysql":
		sub, err := fs.Sub(files, dialect)
		if err != nil {
			return nil, fmt.Errorf("migrations: %s: %w", dialect, err)
		}
		return sub, nil
	default:
		return nil, fmt.Errorf("migrations: unknown dialect %q (want sqlite or mysql)", dialect)
	}
}
