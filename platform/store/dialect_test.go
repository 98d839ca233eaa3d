package store

import (
	"strings"
	"testing"
)

func TestUpsert(t *testing.T) {
	tests := []struct {
		name    string
		dialect Dialect
		update  []string
		want    string
	}{
		{
			name:    "sqlite",
			dialect: sqliteDialect{},
			update:  []string{"v", "updated_at"},
			want:    "INSERT INTO meta (k, v, updated_at) VALUES (?, ?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v, updated_at = excluded.updated_at",
		},
		{
			name:    "sqlite nothing to update",
			dialect: sqliteDialect{},
			want:    "INSERT INTO meta (k, v, updated_at) VALUES (?, ?, ?) ON CONFLICT (k) DO NOTHING",
		},
		{
			name:    "mysql",
			dialect: mysqlDialect{},
			update:  []string{"v", "updated_at"},
			want:    "INSERT INTO meta (k, v, updated_at) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE v = VALUES(v), updated_at = VALUES(updated_at)",
		},
		{
			name:    "mysql nothing to update",
			dialect: mysqlDialect{},
			want:    "INSERT INTO meta (k, v, updated_at) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE k = k",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.dialect.Upsert("meta", []string{"k", "v", "updated_at"}, []string{"k"}, tt.update)
			if got != tt.want {
				t.Errorf("Upsert:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestInsertIgnore(t *testing.T) {
	tests := []struct {
		dialect Dialect
		want    string
	}{
		{sqliteDialect{}, "INSERT OR IGNORE INTO meta (k, v) VALUES (?, ?)"},
		{mysqlDialect{}, "INSERT IGNORE INTO meta (k, v) VALUES (?, ?)"},
	}
	for _, tt := range tests {
		t.Run(tt.dialect.Name(), func(t *testing.T) {
			if got := tt.dialect.InsertIgnore("meta", []string{"k", "v"}); got != tt.want {
				t.Errorf("InsertIgnore:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestBadIdentifierPanics(t *testing.T) {
	tests := []struct {
		name string
		fn   func(d Dialect)
	}{
		{"table with space", func(d Dialect) { d.InsertIgnore("meta x", []string{"k"}) }},
		{"quoted column", func(d Dialect) { d.InsertIgnore("meta", []string{`k"`}) }},
		{"upper case", func(d Dialect) { d.InsertIgnore("Meta", []string{"k"}) }},
		{"leading digit", func(d Dialect) { d.InsertIgnore("meta", []string{"1k"}) }},
		{"no columns", func(d Dialect) { d.InsertIgnore("meta", nil) }},
		{"empty table", func(d Dialect) { d.InsertIgnore("", []string{"k"}) }},
		{"injection in update", func(d Dialect) {
			d.Upsert("meta", []string{"k"}, []string{"k"}, []string{"v=1;DROP TABLE meta"})
		}},
		{"no conflict columns", func(d Dialect) { d.Upsert("meta", []string{"k"}, nil, nil) }},
		{"fts column", func(d Dialect) { d.FullTextWhere("doc_fts", []string{"body)"}) }},
		{"fts table", func(d Dialect) { d.FullTextWhere("doc fts", []string{"body"}) }},
	}
	for _, d := range []Dialect{sqliteDialect{}, mysqlDialect{}} {
		for _, tt := range tests {
			t.Run(d.Name()+"/"+tt.name, func(t *testing.T) {
				defer func() {
					if recover() == nil {
						t.Error("no panic")
					}
				}()
				tt.fn(d)
			})
		}
	}
}

func TestNewDialect(t *testing.T) {
	for _, name := range []string{"sqlite", "mysql"} {
		d, err := NewDialect(name)
		if err != nil || d.Name() != name {
			t.Errorf("NewDialect(%q) = %v, %v", name, d, err)
		}
	}
	if _, err := NewDialect("postgres"); err == nil {
		t.Error("NewDialect(postgres) succeeded")
	}
}

func TestFullTextWhere(t *testing.T) {
	cols := []string{"title", "body"}
	if got, want := (sqliteDialect{}).FullTextWhere("doc_fts", cols), "doc_fts MATCH ?"; got != want {
		t.Errorf("sqlite: got %q, want %q", got, want)
	}
	if got, want := (mysqlDialect{}).FullTextWhere("doc", cols), "MATCH(title, body) AGAINST (? IN BOOLEAN MODE)"; got != want {
		t.Errorf("mysql: got %q, want %q", got, want)
	}
}

func TestFullTextQuery(t *testing.T) {
	long := strings.Repeat("я", 200) // 400 bytes
	tests := []struct {
		name       string
		in         string
		wantSQLite string
		wantMySQL  string
		wantOK     bool
	}{
		{"cyrillic yo", "ЁЛК", `"елк"*`, `+елк*`, true},
		{"two words", "Иванов  Пётр", `"иванов"* "петр"*`, `+иванов* +петр*`, true},
		{"punctuation only", `"'()*-+~<>@!?., `, "", "", false},
		{"empty", "", "", "", false},
		{"white space", " \t\n ", "", "", false},
		{"operators dropped", `"foo" -bar +baz* (qux) NEAR(a b) x~y`,
			`"foo"* "bar"* "baz"* "qux"* "near"* "a"* "b"* "x"* "y"*`,
			`+foo* +bar* +baz* +qux* +near* a* b* x* y*`, true},
		{"fts5 keywords are quoted", "AND OR NOT", `"and"* "or"* "not"*`, `+and* or* +not*`, true},
		{"stopwords optional on mysql", "the quick", `"the"* "quick"*`, `the* +quick*`, true},
		{"short words optional on mysql", "ИП Иванов", `"ип"* "иванов"*`, `ип* +иванов*`, true},
		{"duplicates once", "foo Foo FOO", `"foo"*`, `+foo*`, true},
		{"digits", "tel: +7 (495) 123-45-67", `"tel"* "7"* "495"* "123"* "45"* "67"*`, `+tel* 7* +495* +123* 45* 67*`, true},
		{"column filter syntax dropped", "title:secret", `"title"* "secret"*`, `+title* +secret*`, true},
		{"seventeen terms cut to sixteen",
			"a1 b1 c1 d1 e1 f1 g1 h1 i1 j1 k1 l1 m1 n1 o1 p1 q1",
			`"a1"* "b1"* "c1"* "d1"* "e1"* "f1"* "g1"* "h1"* "i1"* "j1"* "k1"* "l1"* "m1"* "n1"* "o1"* "p1"*`,
			`a1* b1* c1* d1* e1* f1* g1* h1* i1* j1* k1* l1* m1* n1* o1* p1*`, true},
		{"long word cut to fit", long,
			`"` + strings.Repeat("я", 126) + `"*`,
			`+` + strings.Repeat("я", 127) + `*`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []struct {
				d    Dialect
				want string
			}{{sqliteDialect{}, tt.wantSQLite}, {mysqlDialect{}, tt.wantMySQL}} {
				got, ok := c.d.FullTextQuery(tt.in)
				if got != c.want || ok != tt.wantOK {
					t.Errorf("%s FullTextQuery(%q) = %q, %v; want %q, %v", c.d.Name(), tt.in, got, ok, c.want, tt.wantOK)
				}
				if len(got) > maxFullTextBytes {
					t.Errorf("%s: %d bytes, limit %d", c.d.Name(), len(got), maxFullTextBytes)
				}
			}
		})
	}
}
