package store_test

import (
	"testing"

	"github.com/elph-server/elph/platform/store"
)

func TestMaskDSN(t *testing.T) {
	tests := []struct {
		driver, dsn, want string
	}{
		{"mysql", "elph:s3cret@tcp(db:3306)/elph?parseTime=true", "elph:***@tcp(db:3306)/elph?parseTime=true"},
		{"mysql", "elph@tcp(db:3306)/elph", "elph@tcp(db:3306)/elph"},
		{"mysql", "elph:@tcp(db:3306)/elph", "elph:@tcp(db:3306)/elph"},
		{"mysql", "elph:p@ss:w/rd@tcp(db:3306)/elph", "elph:***@tcp(db:3306)/elph"},
		{"mysql", "elph:s3cret@unix(/run/mysqld.sock)/elph", "elph:***@unix(/run/mysqld.sock)/elph"},
		{"mysql", "elph:s3cret@/elph", "elph:***@/elph"},
		{"mysql", "elph:s3cret@tcp(db:3306", "elph:***@tcp(db:3306"}, // unparseable: still masked
		{"mysql", "/elph", "/elph"},
		{"mysql", "", ""},
		{"sqlite", "/var/lib/elph/elph.db", "/var/lib/elph/elph.db"},
		{"sqlite", "file:/var/lib/elph/elph.db?_pragma=foreign_keys(1)", "file:/var/lib/elph/elph.db?_pragma=foreign_keys(1)"},
		{"postgres", "elph:s3cret@tcp(db)/x", "elph:***@tcp(db)/x"}, // unknown drivers are masked too
	}
	for _, tt := range tests {
		if got := store.MaskDSN(tt.driver, tt.dsn); got != tt.want {
			t.Errorf("MaskDSN(%q, %q) = %q, want %q", tt.driver, tt.dsn, got, tt.want)
		}
	}
}
