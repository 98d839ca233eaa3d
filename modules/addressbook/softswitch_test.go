package addressbook

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
)

// softswitchQuery maps the stand-in table's columns to contact fields, as
// an operator would for ECSS-10's directory.
const softswitchQuery = `SELECT uid AS id, surname AS last_name, name AS first_name, patronymic AS middle_name,
	fio AS Display_Name, dept AS department, post AS title, ext AS phone_extension, city AS phone_work,
	mobile AS phone_mobile, home AS phone_home, mail AS email, note AS info
	FROM people ORDER BY seq`

// softswitchTable creates the softswitch's directory stand-in in a fresh
// MariaDB database and returns its DSN and a handle to change it.
func softswitchTable(t *testing.T) (string, *store.DB) {
	t.Helper()
	dsn := storetest.MySQLDSN(t)
	db := storetest.Open(t, store.DriverMySQL, dsn)
	ctx := context.Background()
	for _, q := range []string{
		`CREATE TABLE people (
			seq        int          NOT NULL AUTO_INCREMENT PRIMARY KEY,
			uid        varchar(32)  NULL,
			surname    varchar(100) NULL,
			name       varchar(100) NULL,
			patronymic varchar(100) NULL,
			fio        varchar(255) NULL,
			dept       varchar(100) NULL,
			post       varchar(100) NULL,
			ext        int          NULL,
			city       varchar(100) NULL,
			mobile     bigint       NULL,
			home       double       NULL,
			mail       varchar(100) NULL,
			note       text         NULL
		) CHARACTER SET utf8mb4`,
		`INSERT INTO people (uid, surname, name, patronymic, fio, dept, post, ext, city, mobile, home, mail, note) VALUES
			('u1', 'Иванов', 'Пётр', 'Сергеевич', NULL, 'Бухгалтерия', 'Главный бухгалтер', 1001, '8 (495) 123-45-67', 79161234567, NULL, 'P.Ivanov@Corp.RU', NULL),
			('u2', NULL, NULL, NULL, 'Сидорова Анна', 'Склад', NULL, 1002, '+7 495 765-43-21, +7.495.765.43.22', NULL, 74951112233, NULL, 'Ключи от склада\nу охраны'),
			(NULL, 'Безымянный', 'Без', NULL, NULL, NULL, NULL, 1003, NULL, NULL, NULL, NULL, NULL),
			('u4', 'Кузнецов', 'Иван', NULL, NULL, NULL, NULL, NULL, 'доб. 12', NULL, NULL, NULL, NULL),
			('u5', NULL, NULL, NULL, NULL, NULL, NULL, 1005, NULL, NULL, NULL, NULL, NULL),
			('u2', 'Дубль', 'Дубль', NULL, NULL, NULL, NULL, 1006, NULL, NULL, NULL, NULL, NULL)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	return dsn, db
}

func newTestSoftswitch(t *testing.T, dsn, query string, log *slog.Logger) *Softswitch {
	t.Helper()
	s, err := NewSoftswitch(config.SoftswitchDirectory{Enabled: true, Driver: "mysql", DSN: dsn, Query: query, Timeout: 20 * time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func rejectedText(res SyncResult) string {
	var b strings.Builder
	for _, e := range res.Rejected {
		b.WriteString(e.ExternalID + ": " + e.Err.Error() + "\n")
	}
	return b.String()
}

func TestSoftswitchSync(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		dsn, src := softswitchTable(t)
		exec := func(q string, args ...any) {
			t.Helper()
			if _, err := src.ExecContext(ctx, q, args...); err != nil {
				t.Fatal(err)
			}
		}
		d := NewDirectory(db, nil)
		s := newTestSoftswitch(t, dsn, softswitchQuery, storetest.Logger(t))

		res, err := s.Sync(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if res.Created != 2 || res.Removed != 0 || res.RejectedCount != 4 {
			t.Errorf("first sync %+v\n%s", res, rejectedText(res))
		}
		rejected := rejectedText(res)
		for _, want := range []string{"row 3 (Безымянный Без): no id", `u4: phone_work: "доб. 12" is not a phone number`,
			"u5: a contact needs a name", `u2: id "u2" is in several rows`} {
			if !strings.Contains(rejected, want) {
				t.Errorf("rejected rows lack %q:\n%s", want, rejected)
			}
		}
		cs := abContacts(t, d)
		iv, ok := cs["Иванов Пётр Сергеевич"]
		if !ok || len(cs) != 2 {
			t.Fatalf("contacts %+v", cs)
		}
		var nums []string
		for _, p := range iv.Phones {
			nums = append(nums, p.Kind+":"+p.Normalized)
		}
		if got := strings.Join(nums, " "); got != "extension:1001 work:74951234567 mobile:79161234567" {
			t.Errorf("phones %s", got)
		}
		if iv.Department != "Бухгалтерия" || iv.Title != "Главный бухгалтер" || iv.Emails[0] != "p.ivanov@corp.ru" ||
			iv.Info != "" || iv.LastName != "Иванов" || iv.MiddleName != "Сергеевич" || iv.Sources[0] != SourceSoftswitch {
			t.Errorf("contact %+v", iv)
		}
		an := cs["Сидорова Анна"]
		nums = nil
		for _, p := range an.Phones {
			nums = append(nums, p.Kind+":"+p.Number)
		}
		if got := strings.Join(nums, " "); got != "extension:1002 work:+7 495 765-43-21 work:+7.495.765.43.22 home:74951112233" ||
			an.Info != "Ключи от склада\nу охраны" || len(an.Emails) != 0 {
			t.Errorf("contact %+v (phones %s)", an, got)
		}

		// Nothing changed: nothing written.
		res, err = s.Sync(ctx, d)
		if err != nil || res.Unchanged != 2 || res.Created+res.Updated+res.Removed != 0 {
			t.Errorf("second sync %+v %v", res, err)
		}

		// Rows changed, deleted, fixed; rows without ids gone.
		exec("UPDATE people SET dept = 'Логистика', mobile = 89160000002 WHERE uid = 'u2'")
		exec("DELETE FROM people WHERE uid = 'u1' OR uid IS NULL OR seq = 6")
		exec("UPDATE people SET city = '+7 495 000-00-04' WHERE uid = 'u4'")
		res, err = s.Sync(ctx, d)
		if err != nil || res.Updated != 1 || res.Created != 1 || res.Removed != 1 || res.RejectedCount != 1 {
			t.Errorf("third sync %+v %v\n%s", res, err, rejectedText(res))
		}
		cs = abContacts(t, d)
		if _, ok := cs["Иванов Пётр Сергеевич"]; ok || len(cs) != 2 {
			t.Errorf("contacts after the delete %v", cs)
		}
		if an := cs["Сидорова Анна"]; an.Department != "Логистика" || len(an.Phones) != 5 || an.Phones[3].Normalized != "79160000002" {
			t.Errorf("updated contact %+v", an)
		}
		if k := cs["Кузнецов Иван"]; len(k.Phones) != 1 {
			t.Errorf("fixed row %+v", k)
		}

		// A row that turns bad keeps its contact as it was: a refused row
		// is not a person who left.
		exec("UPDATE people SET city = 'не знаю' WHERE uid = 'u4'")
		res, err = s.Sync(ctx, d)
		if err != nil || res.Removed != 0 || res.RejectedCount != 2 {
			t.Errorf("sync with a broken row %+v %v\n%s", res, err, rejectedText(res))
		}
		if k := abContacts(t, d)["Кузнецов Иван"]; len(k.Phones) != 1 || k.Phones[0].Normalized != "74950000004" {
			t.Errorf("the broken row's contact changed: %+v", k)
		}

		before := abContacts(t, d)
		unchanged := func(what string) {
			t.Helper()
			after := abContacts(t, d)
			if len(after) != len(before) {
				t.Errorf("%s: %d contacts, had %d", what, len(after), len(before))
			}
			for name, c := range before {
				if a, ok := after[name]; !ok || a.ID != c.ID || !a.UpdatedAt.Equal(c.UpdatedAt) {
					t.Errorf("%s: %s changed", what, name)
				}
			}
		}

		// A query with a column that is not a field fails, naming it, and
		// removes nothing.
		bad := newTestSoftswitch(t, dsn, "SELECT uid AS id, fio AS display_name, surname AS nickname, mail AS `E-Mail` FROM people", nil)
		_, err = bad.Sync(ctx, d)
		if err == nil || !strings.Contains(err.Error(), `"nickname", "E-Mail"`) || !errors.Is(err, ErrInvalid) {
			t.Errorf("unknown column: %v", err)
		}
		noID := newTestSoftswitch(t, dsn, "SELECT fio AS display_name FROM people", nil)
		if _, err := noID.Sync(ctx, d); err == nil || !strings.Contains(err.Error(), "no id column") {
			t.Errorf("no id column: %v", err)
		}
		broken := newTestSoftswitch(t, dsn, "SELECT uid AS id FROM no_such_table", nil)
		if _, err := broken.Sync(ctx, d); err == nil || !strings.Contains(err.Error(), "no_such_table") {
			t.Errorf("missing table: %v", err)
		}
		// An empty result, or ids gone NULL, remove nothing either.
		empty := newTestSoftswitch(t, dsn, softswitchQuery+" LIMIT 0", nil)
		if res, err := empty.Sync(ctx, d); err != nil || res.Removed != 0 {
			t.Errorf("empty result: %+v %v", res, err)
		}
		nullIDs := newTestSoftswitch(t, dsn, strings.Replace(softswitchQuery, "uid AS id", "NULL AS id", 1), nil)
		if res, err := nullIDs.Sync(ctx, d); err != nil || res.Removed != 0 || res.RejectedCount != 3 {
			t.Errorf("NULL ids: %+v %v", res, err)
		}
		unchanged("failed and partial syncs")
	})
}

// logBuffer collects log output written from several goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestSoftswitchFailures(t *testing.T) {
	ctx := context.Background()
	db := storetest.OpenSQLite(t)
	d := NewDirectory(db, nil)
	if _, err := d.Sync(ctx, SourceSoftswitch, []Record{{ExternalID: "u1", Fields: Fields{DisplayName: "Иванов"}}}, true, nil); err != nil {
		t.Fatal(err)
	}

	t.Run("unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		var logs logBuffer
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		// Constructing does not connect: a softswitch that is down must
		// not keep the node from starting.
		s := newTestSoftswitch(t, "reader:topsecret-pw@tcp("+addr+")/ecss", softswitchQuery, log)
		start := time.Now()
		res, err := s.Sync(ctx, d)
		if err == nil || !strings.Contains(err.Error(), "reader:***@tcp("+addr+")/ecss") || strings.Contains(err.Error(), "topsecret") {
			t.Errorf("got %v", err)
		}
		if time.Since(start) > 15*time.Second {
			t.Errorf("took %s", time.Since(start))
		}
		if res.Removed != 0 || len(abContacts(t, d)) != 1 {
			t.Error("a failed fetch removed contacts")
		}
		if strings.Contains(logs.String(), "topsecret") {
			t.Errorf("the password reached the log:\n%s", logs.String())
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		dsn := storetest.MySQLDSN(t)
		i := strings.Index(dsn, "@")
		bad := "nosuchuser:topsecret-pw" + dsn[i:]
		s := newTestSoftswitch(t, bad, "SELECT 1 AS id", nil)
		_, err := s.Sync(ctx, d)
		if err == nil || strings.Contains(err.Error(), "topsecret") || !strings.Contains(err.Error(), "nosuchuser:***@") {
			t.Errorf("got %v", err)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		dsn := storetest.MySQLDSN(t)
		s, err := NewSoftswitch(config.SoftswitchDirectory{Driver: "mysql", DSN: dsn, Query: "SELECT SLEEP(10) AS id", Timeout: time.Second}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		start := time.Now()
		_, err = s.Sync(ctx, d)
		if err == nil || !strings.Contains(err.Error(), "no answer within 1s") || time.Since(start) > 8*time.Second {
			t.Errorf("after %s: %v", time.Since(start), err)
		}
		if len(abContacts(t, d)) != 1 {
			t.Error("a timed out fetch removed contacts")
		}
	})

	t.Run("too many rows", func(t *testing.T) {
		if testing.Short() {
			t.Skip("reads 500 000 rows")
		}
		dsn := storetest.MySQLDSN(t)
		digits := "(SELECT 0 n UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"
		q := "SELECT a.n + 10*b.n + 100*c.n + 1000*d.n + 10000*e.n + 100000*f.n AS id FROM " +
			digits + " a, " + digits + " b, " + digits + " c, " + digits + " d, " + digits + " e, " + digits + " f"
		s := newTestSoftswitch(t, dsn, q, nil)
		_, err := s.Sync(ctx, d)
		if err == nil || !strings.Contains(err.Error(), "more than 500000 rows") {
			t.Errorf("got %v", err)
		}
		if len(abContacts(t, d)) != 1 {
			t.Error("a failed fetch removed contacts")
		}
	})

	t.Run("bad configuration", func(t *testing.T) {
		for _, c := range []struct {
			cfg  config.SoftswitchDirectory
			want string
		}{
			{config.SoftswitchDirectory{Driver: "postgres", DSN: "x@tcp(h)/db", Query: "SELECT 1"}, "not supported"},
			{config.SoftswitchDirectory{DSN: "x@tcp(h)/db"}, "no query"},
			{config.SoftswitchDirectory{DSN: "user:topsecret@tcp(h/db?bad", Query: "SELECT 1"}, "softswitch dsn"},
		} {
			_, err := NewSoftswitch(c.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "topsecret") {
				t.Errorf("%+v: %v", c.cfg, err)
			}
		}
	})
}

func TestDSNPassword(t *testing.T) {
	for dsn, want := range map[string]string{
		"reader:s3cret@tcp(ecss:3306)/ecss":  "s3cret",
		"reader:p@ss:w/rd@tcp(ecss:3306)/db": "p@ss:w/rd",
		"reader@tcp(ecss:3306)/ecss":         "",
		"tcp(ecss:3306)/ecss":                "",
		"":                                   "",
	} {
		if got := dsnPassword(dsn); got != want {
			t.Errorf("dsnPassword(%q) = %q, want %q", dsn, got, want)
		}
	}
}

func TestCellText(t *testing.T) {
	for _, c := range []struct {
		in   any
		want string
	}{
		{nil, ""}, {[]byte("Иванов"), "Иванов"}, {int64(1001), "1001"}, {uint64(74951234567), "74951234567"},
		{float64(74951234567), "74951234567"}, {1.5, "1.5"}, {1e30, "1e+30"}, {true, "true"},
		{time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC), "2024-05-06 07:08:09"},
	} {
		if got := cellText(c.in); got != c.want {
			t.Errorf("cellText(%#v) = %q, want %q", c.in, got, c.want)
		}
	}
}
