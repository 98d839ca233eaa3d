package addressbook

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Sources of directory contacts, in order of precedence: when sources
// disagree on a field, the first one that has it wins.
const (
	SourceAccounts   = "accounts"   // Elph accounts (local and LDAP/AD)
	SourceSoftswitch = "softswitch" // the softswitch's directory database
	SourceCSV        = "csv"        // imported CSV files
)

var sourceRank = map[string]int{SourceAccounts: 0, SourceSoftswitch: 1, SourceCSV: 2}

// Phone kinds.
const (
	PhoneWork      = "work"
	PhoneExtension = "extension"
	PhoneMobile    = "mobile"
	PhoneHome      = "home"
	PhoneOther     = "other"
)

// PhoneKinds are the kinds a phone may have.
var PhoneKinds = []string{PhoneWork, PhoneExtension, PhoneMobile, PhoneHome, PhoneOther}

// Bounds of a contact's fields.
const (
	MaxNameRunes    = 255
	MaxInfoRunes    = 4000
	MaxPhones       = 20
	MaxEmails       = 10
	MaxMessengers   = 10
	MaxNumberDigits = 20
	MaxExternalID   = 255
)

// ErrInvalid is a contact or record refused; the message says why.
var ErrInvalid = errors.New("addressbook: invalid")

// ErrNotFound: no such contact for this user (absent, or another user's
// personal contact).
var ErrNotFound = errors.New("addressbook: not found")

// ErrForbidden: the user sees the contact but may not change it (a
// directory contact, changed by its sources).
var ErrForbidden = errors.New("addressbook: forbidden")

// ErrLimit: a per-user limit is reached.
var ErrLimit = errors.New("addressbook: limit reached")

// Phone is one number of a contact.
type Phone struct {
	// Number is as given, for display ("+7 (495) 123-45-67", "1234").
	Number string `json:"number"`
	Kind   string `json:"kind"`
	// Normalized is the digits the number is searched and matched by:
	// Russian 8XXXXXXXXXX as 7XXXXXXXXXX (see NormalizeNumber).
	Normalized string `json:"normalized"`
}

// Messenger is a handle in a messenger ("telegram", "@ivanov").
type Messenger struct {
	Kind   string `json:"kind"`
	Handle string `json:"handle"`
}

// Fields are what is known of a person; both a Contact and a Record
// carry them.
type Fields struct {
	FirstName    string      `json:"first_name,omitempty"`
	MiddleName   string      `json:"middle_name,omitempty"`
	LastName     string      `json:"last_name,omitempty"`
	DisplayName  string      `json:"display_name"`
	Organization string      `json:"organization,omitempty"`
	Department   string      `json:"department,omitempty"`
	Title        string      `json:"title,omitempty"`
	Phones       []Phone     `json:"phones"`
	Emails       []string    `json:"emails"`
	Messengers   []Messenger `json:"messengers"`
	Info         string      `json:"info,omitempty"`
}

// Contact is one person of the address book: a directory contact (every
// user sees it) merged from its sources, or a personal one (its owner
// only).
type Contact struct {
	ID int64 `json:"id"`
	Fields
	// Personal contacts have their owner; directory contacts 0.
	OwnerID int64 `json:"owner_id,omitempty"`
	// UserID is the Elph account of the person, when they have one (chat,
	// presence, calls to them).
	UserID int64 `json:"user_id,omitempty"`
	// Sources lists where a directory contact comes from; "personal" for
	// personal contacts.
	Sources []string `json:"sources"`
	// Avatar is the path of its picture (with ?size=), empty when none.
	Avatar string `json:"avatar,omitempty"`
	// Favorite: the asking user starred it.
	Favorite  bool      `json:"favorite"`
	UpdatedAt time.Time `json:"updated_at"`

	avatarKey string // in blob storage
}

// Record is what one source says about one person.
type Record struct {
	Source string
	// ExternalID identifies the person within the source, stable across
	// syncs (account id, softswitch row id, the CSV's id column).
	ExternalID string
	// UserID links the person to an Elph account (accounts source).
	UserID int64
	Fields
}

// NormalizeNumber reduces a phone number to the digits it is matched and
// searched by: formatting (+, spaces, dashes, parentheses, dots) goes;
// a Russian national number written with the trunk prefix 8
// (8 495 123-45-67) becomes the international 7…; a 10-digit number
// starting with 9 (a Russian mobile without prefix) gets the 7. It
// returns "" when what remains is not 1..20 digits.
func NormalizeNumber(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' || r == ' ' || r == '-' || r == '(' || r == ')' || r == '.' || r == '\u00a0':
		default:
			return ""
		}
	}
	d := b.String()
	switch {
	case len(d) == 0 || len(d) > MaxNumberDigits:
		return ""
	case len(d) == 11 && d[0] == '8':
		return "7" + d[1:]
	case len(d) == 10 && d[0] == '9':
		return "7" + d
	}
	return d
}

// queryDigits turns a search query into the digits it may match numbers
// by, or "" when the query is not a number: the same normalisation, but
// partial numbers keep their form except the trunk 8.
func queryDigits(q string) string {
	var b strings.Builder
	for _, r := range q {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' || r == ' ' || r == '-' || r == '(' || r == ')' || r == '.':
		default:
			return ""
		}
	}
	return b.String()
}

// clean checks and tidies the fields: trimmed, bounded, phones
// normalised and deduplicated, e-mails lower-cased and deduplicated, a
// display name made from the parts when missing.
func (f *Fields) clean() error {
	for _, s := range []struct {
		name string
		v    *string
		max  int
	}{
		{"first_name", &f.FirstName, MaxNameRunes}, {"middle_name", &f.MiddleName, MaxNameRunes},
		{"last_name", &f.LastName, MaxNameRunes}, {"display_name", &f.DisplayName, MaxNameRunes},
		{"organization", &f.Organization, MaxNameRunes}, {"department", &f.Department, MaxNameRunes},
		{"title", &f.Title, MaxNameRunes}, {"info", &f.Info, MaxInfoRunes},
	} {
		v := strings.TrimSpace(*s.v)
		switch {
		case !utf8.ValidString(v):
			return fmt.Errorf("%w: %s is not UTF-8", ErrInvalid, s.name)
		case utf8.RuneCountInString(v) > s.max:
			return fmt.Errorf("%w: %s is longer than %d characters", ErrInvalid, s.name, s.max)
		case s.name != "info" && strings.ContainsFunc(v, unicode.IsControl):
			return fmt.Errorf("%w: %s contains control characters", ErrInvalid, s.name)
		}
		*s.v = v
	}
	if f.DisplayName == "" {
		f.DisplayName = strings.Join(nonEmpty(f.LastName, f.FirstName, f.MiddleName), " ")
	}
	if f.DisplayName == "" {
		return fmt.Errorf("%w: a contact needs a name", ErrInvalid)
	}
	if len(f.Phones) > MaxPhones {
		return fmt.Errorf("%w: more than %d phones", ErrInvalid, MaxPhones)
	}
	phones := make([]Phone, 0, len(f.Phones))
	for _, p := range f.Phones {
		p.Number = strings.TrimSpace(p.Number)
		if p.Kind == "" {
			p.Kind = PhoneWork
		}
		if !slices.Contains(PhoneKinds, p.Kind) {
			return fmt.Errorf("%w: phone kind %q; use %s", ErrInvalid, clip(p.Kind), strings.Join(PhoneKinds, ", "))
		}
		if p.Normalized = NormalizeNumber(p.Number); p.Normalized == "" {
			return fmt.Errorf("%w: %q is not a phone number", ErrInvalid, clip(p.Number))
		}
		if !slices.ContainsFunc(phones, func(q Phone) bool { return q.Normalized == p.Normalized }) {
			phones = append(phones, p)
		}
	}
	f.Phones = phones
	if len(f.Emails) > MaxEmails {
		return fmt.Errorf("%w: more than %d e-mails", ErrInvalid, MaxEmails)
	}
	emails := make([]string, 0, len(f.Emails))
	for _, e := range f.Emails {
		e = strings.ToLower(strings.TrimSpace(e))
		if e == "" {
			continue
		}
		at := strings.IndexByte(e, '@')
		if at < 1 || at == len(e)-1 || len(e) > 254 || strings.ContainsAny(e, " \t\r\n<>,;\"") {
			return fmt.Errorf("%w: %q is not an e-mail address", ErrInvalid, clip(e))
		}
		if !slices.Contains(emails, e) {
			emails = append(emails, e)
		}
	}
	f.Emails = emails
	if len(f.Messengers) > MaxMessengers {
		return fmt.Errorf("%w: more than %d messengers", ErrInvalid, MaxMessengers)
	}
	for i, m := range f.Messengers {
		m.Kind, m.Handle = strings.ToLower(strings.TrimSpace(m.Kind)), strings.TrimSpace(m.Handle)
		if m.Kind == "" || m.Handle == "" || len(m.Kind) > 32 || utf8.RuneCountInString(m.Handle) > MaxNameRunes ||
			strings.ContainsFunc(m.Kind+m.Handle, unicode.IsControl) {
			return fmt.Errorf("%w: messenger %d needs a kind (≤ 32 bytes) and a handle", ErrInvalid, i+1)
		}
		f.Messengers[i] = m
	}
	if f.Messengers == nil {
		f.Messengers = []Messenger{}
	}
	return nil
}

// clean checks a record's identity and fields.
func (r *Record) clean() error {
	if _, ok := sourceRank[r.Source]; !ok {
		return fmt.Errorf("%w: unknown source %q", ErrInvalid, clip(r.Source))
	}
	r.ExternalID = strings.TrimSpace(r.ExternalID)
	if r.ExternalID == "" || len(r.ExternalID) > MaxExternalID || !utf8.ValidString(r.ExternalID) {
		return fmt.Errorf("%w: a record needs an id of 1..%d bytes", ErrInvalid, MaxExternalID)
	}
	return r.Fields.clean()
}

func nonEmpty(ss ...string) []string {
	out := ss[:0:0]
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// clip shortens a value quoted in an error message.
func clip(s string) string {
	if len(s) <= 64 {
		return s
	}
	return strings.ToValidUTF8(s[:64], "") + "…"
}
