package store_test

import (
	"slices"
	"testing"

	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
)

// TestFullText runs searches against a real index of each dialect, built
// the way modules are expected to: folded text in the indexed columns.
func TestFullText(t *testing.T) {
	docs := []struct {
		id          int64
		title, body string
	}{
		{1, "Ёлка зелёная", "Новогодний праздник"},
		{2, "елка", "просто ель"},
		{3, "ИВАНОВ Пётр", "Инженер"},
		{4, "The quick brown fox", "jumps over the lazy dog"},
		{5, "Сидоров Иван", "ИП Сидоров, ипотека"},
		{6, "Report 2024", "Quarterly numbers"},
	}
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		var ddl, insert, search string
		where := db.Dialect.FullTextWhere("doc_fts", []string{"title", "body"})
		switch db.Dialect.Name() {
		case "sqlite":
			ddl = "CREATE VIRTUAL TABLE doc_fts USING fts5(title, body, tokenize='unicode61 remove_diacritics 0')"
			insert = "INSERT INTO doc_fts (rowid, title, body) VALUES (?, ?, ?)"
			search = "SELECT rowid FROM doc_fts WHERE " + where + " ORDER BY rowid"
		case "mysql":
			ddl = `CREATE TABLE doc_fts (
				id bigint NOT NULL PRIMARY KEY,
				title varchar(255) NOT NULL,
				body text NOT NULL,
				FULLTEXT KEY doc_fts_text (title, body)
			) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`
			insert = "INSERT INTO doc_fts (id, title, body) VALUES (?, ?, ?)"
			search = "SELECT id FROM doc_fts WHERE " + where + " ORDER BY id"
		}
		if _, err := db.ExecContext(ctx, ddl); err != nil {
			t.Fatalf("create index table: %v", err)
		}
		for _, d := range docs {
			if _, err := db.ExecContext(ctx, insert, d.id, store.Fold(d.title), store.Fold(d.body)); err != nil {
				t.Fatalf("insert %d: %v", d.id, err)
			}
		}

		tests := []struct {
			query string
			want  []int64
		}{
			{"ЁЛК", []int64{1, 2}},
			{"елка ЗЕЛЕНАЯ", []int64{1}},
			{"Иванов", []int64{3}},
			{"иван", []int64{3, 5}},
			{"пётр иванов", []int64{3}},
			{"quick fox", []int64{4}},
			{"the quick", []int64{4}},
			{"2024", []int64{6}},
			{"сидоров ипот", []int64{5}},
			{"nothing-like-this", nil},
		}
		for _, tt := range tests {
			expr, ok := db.Dialect.FullTextQuery(tt.query)
			if !ok {
				t.Errorf("FullTextQuery(%q) found nothing searchable", tt.query)
				continue
			}
			var got []int64
			if err := db.SelectContext(ctx, &got, search, expr); err != nil {
				t.Errorf("search %q (%s): %v", tt.query, expr, err)
				continue
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("search %q (%s) = %v, want %v", tt.query, expr, got, tt.want)
			}
		}

		for _, q := range []string{"", "  ", `"'()*-+~<>@!?.,:;^`, "— « » …"} {
			if expr, ok := db.Dialect.FullTextQuery(q); ok {
				t.Errorf("FullTextQuery(%q) = %q, true; want false", q, expr)
			}
		}

		hostile := []string{
			`"unbalanced`, `(((`, `)`, `NEAR(ёлка иванов, 2)`, `ёлка NEAR иванов`,
			`-ёлка`, `+-ёлка*`, `*`, `ёлка*"*`, `"a" OR "b"`, `title:ёлка`, `{title body}: x`,
			`^ёлка`, `ёлка AND NOT иванов`, `@ёлка`, `~ёлка <иванов >петр`, `'; DROP TABLE doc_fts; --`,
			"a\x00b", "\xff\xfe", `½ ² Ⅷ 𝐀bc 中文 ʰx`,
		}
		for _, q := range hostile {
			expr, ok := db.Dialect.FullTextQuery(q)
			if !ok {
				continue
			}
			var got []int64
			if err := db.SelectContext(ctx, &got, search, expr); err != nil {
				t.Errorf("hostile query %q (%s): %v", q, expr, err)
			}
		}
	})
}
