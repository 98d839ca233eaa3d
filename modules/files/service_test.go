package files_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/modules/files"
	"github.com/elph-server/elph/platform/auth/authtest"
	"github.com/elph-server/elph/platform/blob"
	"github.com/elph-server/elph/platform/store"
)

func TestNewChecksOptions(t *testing.T) {
	local, err := blob.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	valid := func() files.Options {
		// New does no I/O: an unopened DB is enough to construct.
		return files.Options{DB: &store.DB{}, Blob: local, Verifier: authtest.New(t).Verifier()}
	}
	tests := []struct {
		name    string
		edit    func(*files.Options)
		wantErr string
	}{
		{"defaults", func(*files.Options) {}, ""},
		{"everything set", func(o *files.Options) {
			o.MaxUploadBytes, o.PresignTTL, o.ThumbnailSize, o.MaxImagePixels = 1, time.Second, 4096, 1
		}, ""},
		{"no database", func(o *files.Options) { o.DB = nil }, "database"},
		{"no blob store", func(o *files.Options) { o.Blob = nil }, "blob"},
		{"no verifier", func(o *files.Options) { o.Verifier = nil }, "verifier"},
		{"negative upload limit", func(o *files.Options) { o.MaxUploadBytes = -1 }, "MaxUploadBytes"},
		{"presign TTL under a second", func(o *files.Options) { o.PresignTTL = time.Millisecond }, "PresignTTL"},
		{"presign TTL over S3's week", func(o *files.Options) { o.PresignTTL = 8 * 24 * time.Hour }, "PresignTTL"},
		{"huge thumbnails", func(o *files.Options) { o.ThumbnailSize = 5000 }, "ThumbnailSize"},
		{"negative thumbnails", func(o *files.Options) { o.ThumbnailSize = -1 }, "ThumbnailSize"},
		{"negative pixel limit", func(o *files.Options) { o.MaxImagePixels = -1 }, "MaxImagePixels"},
	}
	for _, tt := range tests {
		o := valid()
		tt.edit(&o)
		m, err := files.New(o)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: New: %v", tt.name, err)
		case tt.wantErr == "" && (m.Name() != files.Name || m.Routes() == nil):
			t.Errorf("%s: module %q without routes", tt.name, m.Name())
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: New: %v, want an error about %s", tt.name, err, tt.wantErr)
		}
	}

	// Two modules cannot share a registry: the second is told, not
	// silently unmetered.
	reg := prometheus.NewRegistry()
	o := valid()
	o.Metrics = reg
	if _, err := files.New(o); err != nil {
		t.Fatal(err)
	}
	if _, err := files.New(o); err == nil {
		t.Error("a second module registered the same metrics")
	}
}
