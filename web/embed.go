// Package web holds the browser client's static files, embedded into the
// binary so a node serves them with no files on disk.
package web

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// Static is the root of the browser client's files.
func Static() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		// The directory is embedded at build time; this cannot fail.
		panic(err)
	}
	return sub
}
