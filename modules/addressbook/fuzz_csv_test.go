package addressbook

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// FuzzReadCSV feeds ReadCSV hostile files: it must not panic, and what
// it accepts must be clean records with unique ids, as Directory.Sync
// would store them; what it refuses must carry a line of the file.
func FuzzReadCSV(f *testing.F) {
	header := "id,display_name,last_name,first_name,phone_work,phone_mobile,email,info,messenger_telegram\n"
	for _, s := range []string{
		"",
		"\ufeff",
		"\xff\xfe",
		header,
		header + "1,Иванов,,,8 (495) 123-45-67,,a@b.ru,,@ivanov\n",
		"display_name;phone_work\r\nИванов;1001\r\nПетров;\"1002; 1003\"\r\n",
		header + "1,\"unbalanced,,,,,,,\n2,Петров,,,1002,,,,\n",
		header + "1,\"a\"\"b\"x,,,,,,,\n",
		header + "1,\"" + strings.Repeat("x", MaxCSVLineBytes+10) + "\",,,,,,,\n",
		header + "1," + strings.Repeat("я", MaxNameRunes+1) + ",,,,,,,\n",
		header + "1,a\x00b,,,,,,,\n",
		header + "1,Имя\xff\xfe,,,,,,,\n",
		header + "1,Имя,,,\"" + strings.Repeat("1,", 30) + "\",,,,\n",
		header + "1,Имя,,,,,\"" + strings.Repeat("a@b.c;", 30) + "\",,\n",
		header + strings.Repeat("\"", 100) + "\n",
		header + strings.Repeat(",", 1000) + "\n",
		header + "1,Имя,,,,,,\"\r\n\r\n\",\n",
		"id,id\n",
		"id,display_name,\n1,x,\n1,y,\n",
		"display_name\n\"\n\"\"\n\"\"\"\n",
		"display_name,info\n\xcf\xe5\xf2\xf0\xee\xe2,\xe7\xe0\xec\xe5\xf2\xea\xe0\n",
		"display_name\n" + strings.Repeat("\"x\n", 200),
		"display_name\n  \"a\"  \n \"b\" x\n",
		"\n\n\r\n display_name \n\rx\r\n",
		"display_name,phone_work\nА,+\nБ,()\nВ,8\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, rejected, err := ReadCSV(bytes.NewReader(data))
		if err != nil {
			if recs != nil || rejected != nil {
				t.Fatalf("error %v with %d records and %d rejected", err, len(recs), len(rejected))
			}
			return
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		if len(recs)+len(rejected) > MaxCSVRows {
			t.Fatalf("%d rows", len(recs)+len(rejected))
		}
		ids := make(map[string]bool)
		for _, r := range recs {
			if r.Source != SourceCSV || ids[r.ExternalID] {
				t.Fatalf("record %+v: bad source or duplicate id", r)
			}
			ids[r.ExternalID] = true
			again := r
			again.Phones = append([]Phone(nil), r.Phones...)
			again.Emails = append([]string(nil), r.Emails...)
			again.Messengers = append([]Messenger(nil), r.Messengers...)
			if err := again.clean(); err != nil {
				t.Fatalf("accepted record %+v is not clean: %v", r, err)
			}
			if !reflect.DeepEqual(again, r) {
				t.Fatalf("cleaning an accepted record changes it:\n%+v\n%+v", r, again)
			}
			for _, p := range r.Phones {
				if p.Normalized == "" || p.Normalized != NormalizeNumber(p.Number) {
					t.Fatalf("phone %+v", p)
				}
			}
			if r.DisplayName == "" {
				t.Fatalf("record %+v has no name", r)
			}
		}
		last := 0
		for _, e := range rejected {
			if e.Line < 1 || e.Line > lines || e.Line <= last || e.Err == nil {
				t.Fatalf("rejected %+v (after line %d, of %d)", e, last, lines)
			}
			last = e.Line
		}
	})
}
