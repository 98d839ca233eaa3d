package addressbook

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestNormalizeNumber(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"+7 (495) 123-45-67", "74951234567"},
		{"8 495 123 45 67", "74951234567"},
		{"84951234567", "74951234567"},
		{"9161234567", "79161234567"},
		{"1234", "1234"},
		{"12-34", "1234"},
		{"+44 20 7946 0958", "442079460958"},
		{"", ""},
		{"abc", ""},
		{"123x", ""},
		{strings.Repeat("1", 21), ""},
	} {
		if got := NormalizeNumber(tt.in); got != tt.want {
			t.Errorf("NormalizeNumber(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestClean(t *testing.T) {
	f := Fields{
		FirstName: " Иван ", LastName: "Иванов",
		Phones:     []Phone{{Number: "8 495 123-45-67"}, {Number: "+7 495 1234567", Kind: PhoneMobile}, {Number: "1234", Kind: PhoneExtension}},
		Emails:     []string{" Ivanov@Corp.Example ", "ivanov@corp.example", ""},
		Messengers: []Messenger{{Kind: " Telegram", Handle: "@ivanov "}},
	}
	if err := f.clean(); err != nil {
		t.Fatal(err)
	}
	if f.DisplayName != "Иванов Иван" || f.FirstName != "Иван" {
		t.Errorf("names %q %q", f.DisplayName, f.FirstName)
	}
	if len(f.Phones) != 2 || f.Phones[0].Kind != PhoneWork || f.Phones[0].Normalized != "74951234567" || f.Phones[1].Normalized != "1234" {
		t.Errorf("phones %+v: want the duplicate dropped, work by default", f.Phones)
	}
	if !slices.Equal(f.Emails, []string{"ivanov@corp.example"}) {
		t.Errorf("emails %v", f.Emails)
	}
	if f.Messengers[0] != (Messenger{Kind: "telegram", Handle: "@ivanov"}) {
		t.Errorf("messengers %+v", f.Messengers)
	}
	for name, bad := range map[string]Fields{
		"no name":      {},
		"long name":    {DisplayName: strings.Repeat("я", MaxNameRunes+1)},
		"control":      {DisplayName: "a\x00b"},
		"bad number":   {DisplayName: "x", Phones: []Phone{{Number: "call me"}}},
		"bad kind":     {DisplayName: "x", Phones: []Phone{{Number: "1", Kind: "fax"}}},
		"bad email":    {DisplayName: "x", Emails: []string{"no-at-sign"}},
		"many phones":  {DisplayName: "x", Phones: make([]Phone, MaxPhones+1)},
		"bad UTF-8":    {DisplayName: "\xff"},
		"empty handle": {DisplayName: "x", Messengers: []Messenger{{Kind: "telegram"}}},
	} {
		if err := bad.clean(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: clean = %v, want ErrInvalid", name, err)
		}
	}
}

// TestMerge: a person in several sources is one contact; fields come from
// the first source that has them, lists are joined.
func TestMerge(t *testing.T) {
	recs := []Record{
		{Source: SourceCSV, ExternalID: "c1", Fields: Fields{DisplayName: "Иванов И.", Organization: "ООО Ромашка", Info: "из CSV",
			Phones: []Phone{{Number: "+7 916 000-00-01", Kind: PhoneMobile, Normalized: "79160000001"}}, Emails: []string{"ivanov@corp.example"}}},
		{Source: SourceSoftswitch, ExternalID: "s1", Fields: Fields{DisplayName: "Иванов Иван", Department: "Связь",
			Phones: []Phone{{Number: "1234", Kind: PhoneExtension, Normalized: "1234"}}}},
		{Source: SourceAccounts, ExternalID: "7", UserID: 7, Fields: Fields{DisplayName: "Иван Иванов", Title: "Инженер",
			Phones: []Phone{{Number: "1234", Kind: PhoneWork, Normalized: "1234"}}, Emails: []string{"ivanov@corp.example"}}},
	}
	f, user, sources := merge(recs)
	if user != 7 || !slices.Equal(sources, []string{SourceAccounts, SourceSoftswitch, SourceCSV}) {
		t.Errorf("user %d sources %v", user, sources)
	}
	if f.DisplayName != "Иван Иванов" || f.Department != "Связь" || f.Organization != "ООО Ромашка" || f.Title != "Инженер" || f.Info != "из CSV" {
		t.Errorf("fields %+v", f)
	}
	if len(f.Phones) != 2 || f.Phones[0].Kind != PhoneWork || f.Phones[1].Normalized != "79160000001" {
		t.Errorf("phones %+v: want 1234 (from accounts, as work) and the mobile", f.Phones)
	}
	if !slices.Equal(f.Emails, []string{"ivanov@corp.example"}) {
		t.Errorf("emails %v", f.Emails)
	}
}

func TestTranslit(t *testing.T) {
	for in, want := range map[string]string{"иванов": "ivanov", "щукин": "shchukin", "юлия": "iuliia", "smith": "smith"} {
		if got := translit(in); got != want {
			t.Errorf("translit(%q) = %q, want %q", in, got, want)
		}
	}
}
