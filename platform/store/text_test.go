package store_test

import (
	"testing"

	"github.com/elph-server/elph/platform/store"
)

func TestClip(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 3, ""},
		{"abc", 3, "abc"},
		{"abcd", 3, "abc"},
		{"Ёлка зелёная", 4, "Ёлка"},
		{"a\xffb", 5, "a\uFFFDb"},
		{"日本語", 2, "日本"},
	} {
		if got := store.Clip(tt.in, tt.n); got != tt.want {
			t.Errorf("Clip(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}
