package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
)

// abCount reads "what N" from a command's summary.
func abCount(t *testing.T, out, what string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + what + `\s+(\d+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %q in:\n%s", what, out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func TestAddressbookImportExport(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"ELPH_NODE_DATA_DIR": filepath.Join(dir, "data"), "ELPH_LOG_LEVEL": "warn"}
	file := filepath.Join(dir, "contacts.csv")
	// As Excel writes it in a Russian locale ("CSV UTF-8"): BOM, ";", CRLF.
	csv := "\ufeffid;last_name;first_name;department;phone_work;phone_mobile;email;info\r\n" + // 1
		"1;Иванов;Пётр;Бухгалтерия;8 (495) 123-45-67;+7 916 123-45-67;p.ivanov@corp.ru;\"Кабинет 12\r\nпо вторникам удалённо\"\r\n" + // 2-3
		"2;Петров;Павел;Склад;abc;;;\r\n" + // 4: not a number
		"3;Сидорова;Анна;Склад;8 495 765-43-21;;a.sidorova@corp.ru;\r\n" + // 5
		"4;Кузнецов;Иван;;1004;;kuznetsov@corp.ru;\r\n" + // 6
		"5;;;Склад;1005;;;\r\n" + // 7: no name
		"6;Орлова;Ольга;;\"1006, 1007\";;;\r\n" + // 8
		"7;Новиков;Олег;;;8 916 000-00-07;novikov@corp.ru;\r\n" // 9
	if err := os.WriteFile(file, []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}

	out, code := run(t, env, "addressbook", "import", file)
	if code != 2 || abCount(t, out, "created") != 5 || abCount(t, out, "rejected") != 2 {
		t.Fatalf("import: exit %d\n%s", code, out)
	}
	for _, want := range []string{`line 4: phone_work: "abc" is not a phone number`, "line 7: a contact needs a name"} {
		if !strings.Contains(out, want) {
			t.Errorf("import output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "line ") != 2 {
		t.Errorf("other lines reported:\n%s", out)
	}

	exported := filepath.Join(dir, "export.csv")
	out, code = run(t, env, "addressbook", "export", exported)
	if code != 0 || !strings.Contains(out, "exported 5 contacts") {
		t.Fatalf("export: exit %d\n%s", code, out)
	}
	data, err := os.ReadFile(exported)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, want := range []string{"id,first_name,middle_name,last_name,display_name,", "Иванов Пётр", "\"Кабинет 12\nпо вторникам удалённо\"",
		"Сидорова Анна", "Кузнецов Иван", `"1006, 1007"`, "novikov@corp.ru"} {
		if !strings.Contains(text, want) {
			t.Errorf("export lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "Петров") || strings.Count(text, "\n") != 7 { // header, 5 rows, one two-line info
		t.Errorf("export:\n%s", text)
	}
	if fi, err := os.Stat(exported); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("export file mode %v %v", fi.Mode(), err)
	}
	stdout, code := run(t, env, "addressbook", "export", "-")
	if code != 0 || !strings.Contains(stdout, text) {
		t.Errorf("export to stdout: exit %d\n%s", code, stdout)
	}

	// Importing the export changes nothing: its ids are the file's.
	out, code = run(t, env, "addressbook", "import", "--full", exported)
	if code != 0 || abCount(t, out, "unchanged") != 5 || abCount(t, out, "created")+abCount(t, out, "merged")+abCount(t, out, "updated")+abCount(t, out, "removed")+abCount(t, out, "rejected") != 0 {
		t.Fatalf("re-import: exit %d\n%s", code, out)
	}
	again := filepath.Join(dir, "again.csv")
	if out, code := run(t, env, "addressbook", "export", again); code != 0 {
		t.Fatalf("export: %s", out)
	}
	if data2, _ := os.ReadFile(again); string(data2) != text {
		t.Errorf("the contacts changed:\n%s\n---\n%s", text, data2)
	}
	out, code = run(t, env, "addressbook", "import", "--full", again)
	if code != 0 || abCount(t, out, "unchanged") != 5 || abCount(t, out, "created")+abCount(t, out, "merged")+abCount(t, out, "updated")+abCount(t, out, "removed") != 0 {
		t.Fatalf("second re-import: exit %d\n%s", code, out)
	}

	// --full with rejected lines removes nothing.
	partial := filepath.Join(dir, "partial.csv")
	if err := os.WriteFile(partial, []byte(strings.SplitAfter(text, "\n")[0]+"999,,,,,,,,bad-number,,,,,,\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code = run(t, env, "addressbook", "import", "--full", partial)
	if code != 2 || abCount(t, out, "removed") != 0 || !strings.Contains(out, "no contact was removed") || !strings.Contains(out, "line 2: ") {
		t.Errorf("--full with a rejected line: exit %d\n%s", code, out)
	}

	// Failures of the whole file.
	bad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(bad, []byte("id,name,phone\n1,x,2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code = run(t, env, "addressbook", "import", bad)
	if code != 1 || !strings.Contains(out, `unknown column(s) "name", "phone"`) {
		t.Errorf("unknown columns: exit %d\n%s", code, out)
	}
	out, code = run(t, env, "addressbook", "import", filepath.Join(dir, "missing.csv"))
	if code != 1 || !strings.Contains(out, "missing.csv") {
		t.Errorf("missing file: exit %d\n%s", code, out)
	}
	out, code = run(t, env, "addressbook", "import", "--source", "accounts", file)
	if code != 1 || !strings.Contains(out, "--source") {
		t.Errorf("--source accounts: exit %d\n%s", code, out)
	}
}

func TestAddressbookSyncSoftswitch(t *testing.T) {
	env := map[string]string{"ELPH_NODE_DATA_DIR": t.TempDir(), "ELPH_LOG_LEVEL": "warn"}
	out, code := run(t, env, "addressbook", "sync", "softswitch")
	if code != 1 || !strings.Contains(out, "ELPH_ADDRESSBOOK_SOFTSWITCH_ENABLED=true") {
		t.Errorf("disabled: exit %d\n%s", code, out)
	}

	dsn := storetest.MySQLDSN(t)
	src := storetest.Open(t, store.DriverMySQL, dsn)
	for _, q := range []string{
		"CREATE TABLE subscribers (login varchar(32), fio varchar(255), ext int, email varchar(100))",
		"INSERT INTO subscribers VALUES ('ivanov', 'Иванов Пётр', 1001, 'ivanov@corp.ru'), ('petrov', 'Петров Павел', 1002, NULL), ('bad', 'Плохой', NULL, 'nope')",
	} {
		if _, err := src.ExecContext(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
	env["ELPH_ADDRESSBOOK_SOFTSWITCH_ENABLED"] = "true"
	env["ELPH_ADDRESSBOOK_SOFTSWITCH_DSN"] = dsn
	env["ELPH_ADDRESSBOOK_SOFTSWITCH_QUERY"] = "SELECT login AS id, fio AS display_name, ext AS phone_extension, email FROM subscribers"
	out, code = run(t, env, "addressbook", "sync", "softswitch")
	if code != 2 || abCount(t, out, "created") != 2 || abCount(t, out, "rejected") != 1 || !strings.Contains(out, `id "bad": "nope" is not an e-mail address`) {
		t.Fatalf("sync: exit %d\n%s", code, out)
	}
	if _, err := src.ExecContext(context.Background(), "DELETE FROM subscribers WHERE login <> 'ivanov'"); err != nil {
		t.Fatal(err)
	}
	out, code = run(t, env, "addressbook", "sync", "softswitch")
	if code != 0 || abCount(t, out, "unchanged") != 1 || abCount(t, out, "removed") != 1 {
		t.Fatalf("second sync: exit %d\n%s", code, out)
	}
	out, _ = run(t, env, "addressbook", "export")
	if !strings.Contains(out, "Иванов Пётр") || strings.Contains(out, "Петров") {
		t.Errorf("export after the sync:\n%s", out)
	}

	env["ELPH_ADDRESSBOOK_SOFTSWITCH_QUERY"] = "SELECT login AS id, fio AS name FROM subscribers"
	out, code = run(t, env, "addressbook", "sync", "softswitch")
	if code != 1 || !strings.Contains(out, `"name"`) {
		t.Errorf("unknown column: exit %d\n%s", code, out)
	}
}
