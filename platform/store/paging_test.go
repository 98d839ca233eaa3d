package store_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
)

type position struct {
	K  string `json:"k"`
	ID int64  `json:"id"`
}

func TestPageLimit(t *testing.T) {
	for _, tt := range []struct{ n, want int }{{-5, 50}, {0, 50}, {1, 1}, {200, 200}, {201, 200}, {1 << 40, 200}} {
		if got := store.PageLimit(tt.n, 50, 200); got != tt.want {
			t.Errorf("PageLimit(%d) = %d, want %d", tt.n, got, tt.want)
		}
	}
}

func TestCursorRoundTripAndHostileInput(t *testing.T) {
	c, err := store.EncodeCursor(position{K: "Ёлка", ID: 42})
	if err != nil {
		t.Fatal(err)
	}
	var p position
	if err := store.DecodeCursor(c, &p); err != nil || p != (position{K: "Ёлка", ID: 42}) {
		t.Fatalf("round trip: %+v, %v", p, err)
	}
	for _, bad := range []string{"%%%", "bm90IGpzb24", strings.Repeat("A", store.MaxCursorLen+1), "eyJpZCI6Im5vIn0"} {
		if err := store.DecodeCursor(bad, &p); !errors.Is(err, store.ErrBadCursor) {
			t.Errorf("DecodeCursor(%.20q) = %v, want ErrBadCursor", bad, err)
		}
	}
	if _, err := store.EncodeCursor(position{K: strings.Repeat("x", 600)}); err == nil {
		t.Error("an oversized cursor was made")
	}
}

func FuzzDecodeCursor(f *testing.F) {
	c, _ := store.EncodeCursor(position{K: "a", ID: 1})
	for _, s := range []string{c, "", "e30", "W10", "bnVsbA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var p position
		if err := store.DecodeCursor(s, &p); err != nil && !errors.Is(err, store.ErrBadCursor) {
			t.Fatalf("error %v does not wrap ErrBadCursor", err)
		}
	})
}

// Keyset paging walks every row exactly once in order on both dialects,
// with ties on the sort key broken by id.
func TestKeysetPagingOnBothDialects(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		if _, err := db.ExecContext(ctx, `CREATE TABLE paged (id INTEGER NOT NULL PRIMARY KEY, k VARCHAR(32) NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		const rows = 95
		for i := 1; i <= rows; i++ {
			if _, err := db.ExecContext(ctx, "INSERT INTO paged (id, k) VALUES (?, ?)", i, fmt.Sprintf("k%02d", i%7)); err != nil {
				t.Fatal(err)
			}
		}
		seen := map[int64]bool{}
		var last position
		cursor, pages := "", 0
		for {
			var pos position
			if cursor != "" {
				if err := store.DecodeCursor(cursor, &pos); err != nil {
					t.Fatal(err)
				}
			}
			var page []position
			err := db.SelectContext(ctx, &page, `SELECT k, id FROM paged WHERE k > ? OR (k = ? AND id > ?) ORDER BY k, id LIMIT ?`,
				pos.K, pos.K, pos.ID, store.PageLimit(10, 10, 100))
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			pages++
			for _, r := range page {
				if seen[r.ID] || (r.K < last.K || r.K == last.K && r.ID <= last.ID) {
					t.Fatalf("row %+v out of order after %+v", r, last)
				}
				seen[r.ID], last = true, r
			}
			if cursor, err = store.EncodeCursor(page[len(page)-1]); err != nil {
				t.Fatal(err)
			}
		}
		if len(seen) != rows || pages != 10 {
			t.Errorf("saw %d rows in %d pages, want %d in 10", len(seen), pages, rows)
		}
	})
}
