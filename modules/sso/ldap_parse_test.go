package sso

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

func TestADDiagnostic(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		code uint32
		ok   bool
	}{
		// As Windows Server 2016-2022 and Samba send them.
		{"80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e, v4563", 0x52e, true},
		{"80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e, v4563\x00", 0x52e, true},
		{"80090308: LdapErr: DSID-0C090446, comment: AcceptSecurityContext error, data 525, v2580", 0x525, true},
		{"80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 530, v1db1", 0x530, true},
		{"80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 531, v1db1", 0x531, true},
		{"80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 532, v4563", 0x532, true},
		{"80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 533, v4563", 0x533, true},
		{"80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 701, v4563", 0x701, true},
		{"80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 773, v4563", 0x773, true},
		{"8009030C: LdapErr: DSID-0C0906B5, comment: AcceptSecurityContext error, data 775, v4563", 0x775, true},
		{"80090308: LdapErr: DSID-0C09030B, comment: AcceptSecurityContext error, data 52e, v893", 0x52e, true},
		{"comment: AcceptSecurityContext error, DATA 52E, v4563", 0x52e, true},
		{"data  775", 0x775, true},
		{"data 0", 0, true},
		{"data ffffffff, v1", 0xffffffff, true},
		// Not a code.
		{"", 0, false},
		{"Invalid credentials", 0, false},
		{"data", 0, false},
		{"data ", 0, false},
		{"data52e", 0, false},
		{"metadata 52e", 0, false},
		{"database 52e", 0, false},
		{"data 52g", 0, false},
		{"data 123456789", 0, false},
		{"data xyz, v4563", 0, false},
		// The first real token wins.
		{"metadata 1, data 775, v1", 0x775, true},
	} {
		t.Run(tc.msg, func(t *testing.T) {
			code, ok := adDataCode(tc.msg)
			if code != tc.code || ok != tc.ok {
				t.Errorf("adDataCode(%q) = %#x, %v; want %#x, %v", tc.msg, code, ok, tc.code, tc.ok)
			}
		})
	}
}

func TestADBindFailure(t *testing.T) {
	adErr := func(code uint16, data string) error {
		return &ldap.Error{ResultCode: code, Err: fmt.Errorf(
			"80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data %s, v4563", data)}
	}
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"bad password", adErr(49, "52e"), ErrBadCredentials},
		{"no such user", adErr(49, "525"), ErrBadCredentials},
		{"logon hours", adErr(49, "530"), ErrLoginNotAllowed},
		{"workstation", adErr(49, "531"), ErrLoginNotAllowed},
		{"password expired", adErr(49, "532"), ErrPasswordExpired},
		{"disabled", adErr(49, "533"), ErrAccountDisabled},
		{"account expired", adErr(49, "701"), ErrAccountExpired},
		{"must change", adErr(49, "773"), ErrMustChange},
		{"locked", adErr(49, "775"), ErrAccountLocked},
		{"unknown sub-code", adErr(49, "568"), ErrBadCredentials},
		{"OpenLDAP", &ldap.Error{ResultCode: 49, Err: errors.New("")}, ErrBadCredentials},
		{"not result 49", adErr(53, "533"), ErrBadCredentials},
		{"not an LDAP error", errors.New("boom"), ErrBadCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := bindFailure(tc.err); got != tc.want {
				t.Errorf("bindFailure = %v, want %v", got, tc.want)
			}
		})
	}
}

func FuzzADDiagnostic(f *testing.F) {
	f.Add("80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error,", uint32(0x52e), false, " v4563\x00")
	f.Add("metadata 12", uint32(0x775), true, "")
	f.Add("", uint32(0), false, "data 1")
	f.Add("İ data", uint32(0x701), false, "ß")
	f.Fuzz(func(t *testing.T, prefix string, code uint32, upper bool, suffix string) {
		// Any text at all: no panic, and a code only after "data".
		if c, ok := adDataCode(prefix + suffix); ok && !strings.Contains(strings.ToLower(prefix+suffix), "data") {
			t.Fatalf("code %#x found in %q, which has no \"data\"", c, prefix+suffix)
		}
		// A well-formed token after text that has none is found.
		if _, ok := adDataCode(prefix); ok {
			return
		}
		format := " data %x, "
		if upper {
			format = " DATA %X, "
		}
		msg := prefix + fmt.Sprintf(format, code) + suffix
		got, ok := adDataCode(msg)
		if !ok || got != code {
			t.Fatalf("adDataCode(%q) = %#x, %v; want %#x", msg, got, ok, code)
		}
		if err := bindFailure(&ldap.Error{ResultCode: 49, Err: errors.New(msg)}); err == nil {
			t.Fatal("bindFailure returned nil")
		}
	})
}

func TestObjectGUID(t *testing.T) {
	// Expected texts come from Python's uuid.UUID(bytes_le=...), which
	// implements the same Windows layout independently.
	for _, tc := range []struct {
		hex, want string
	}{
		{"4a6d3c1b5e9ad511b60b00c04fd9887e", "1b3c6d4a-9a5e-11d5-b60b-00c04fd9887e"},
		{"00112233445566778899aabbccddeeff", "33221100-5544-7766-8899-aabbccddeeff"},
		{"0123456789abcdeffedcba9876543210", "67452301-ab89-efcd-fedc-ba9876543210"},
		{"7d8e1f2a3b4c5d6e7f8091a2b3c4d5e6", "2a1f8e7d-4c3b-6e5d-7f80-91a2b3c4d5e6"},
		{"00000000000000000000000000000000", "00000000-0000-0000-0000-000000000000"},
		{"ffffffffffffffffffffffffffffffff", "ffffffff-ffff-ffff-ffff-ffffffffffff"},
	} {
		b, err := hex.DecodeString(tc.hex)
		if err != nil {
			t.Fatal(err)
		}
		got, err := guidText(b)
		if err != nil || got != tc.want {
			t.Errorf("guidText(%s) = %q, %v; want %q", tc.hex, got, err, tc.want)
		}
	}
	for _, n := range []int{0, 1, 15, 17, 36} {
		if got, err := guidText(make([]byte, n)); err == nil {
			t.Errorf("guidText of %d bytes = %q, want an error", n, got)
		}
	}
}

func FuzzObjectGUID(f *testing.F) {
	f.Add([]byte("\x4a\x6d\x3c\x1b\x5e\x9a\xd5\x11\xb6\x0b\x00\xc0\x4f\xd9\x88\x7e"))
	f.Add([]byte{})
	f.Add([]byte("0123456789abcdefX"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := guidText(b)
		if len(b) != 16 {
			if err == nil {
				t.Fatalf("guidText of %d bytes = %q, want an error", len(b), got)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		// The Windows GUID structure read field by field: Data1..Data3
		// little-endian, Data4 as bytes.
		want := fmt.Sprintf("%08x-%04x-%04x-%x-%x",
			binary.LittleEndian.Uint32(b[0:4]), binary.LittleEndian.Uint16(b[4:6]),
			binary.LittleEndian.Uint16(b[6:8]), b[8:10], b[10:16])
		if got != want {
			t.Fatalf("guidText(% x) = %q, want %q", b, got, want)
		}
	})
}

func TestADDisabled(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	ft := func(t time.Time) string { return fmt.Sprint((t.Unix() + 11644473600) * 10_000_000) }
	for _, tc := range []struct {
		name   string
		attrs  map[string][]string
		reason string // "" means enabled
	}{
		{"normal", map[string][]string{"userAccountControl": {"512"}, "accountExpires": {"0"}}, ""},
		{"no attributes", nil, ""},
		{"disabled", map[string][]string{"userAccountControl": {"514"}}, "disabled"},
		{"disabled with other flags", map[string][]string{"userAccountControl": {"66050"}}, "disabled"},
		{"password never expires", map[string][]string{"userAccountControl": {"66048"}}, ""},
		{"never expires (max)", map[string][]string{"accountExpires": {fmt.Sprint(int64(math.MaxInt64))}}, ""},
		{"expires later", map[string][]string{"accountExpires": {ft(now.Add(time.Hour))}}, ""},
		{"expired", map[string][]string{"accountExpires": {ft(now.Add(-time.Hour))}}, "expired"},
		{"expires now", map[string][]string{"accountExpires": {ft(now)}}, "expired"},
		{"disabled and expired", map[string][]string{"userAccountControl": {"514"}, "accountExpires": {ft(now.Add(-time.Hour))}}, "disabled"},
		{"locked is not disabled", map[string][]string{"userAccountControl": {"512"}, "lockoutTime": {ft(now.Add(-time.Minute))}}, ""},
		{"garbage", map[string][]string{"userAccountControl": {"x"}, "accountExpires": {"y"}}, ""},
		{"attribute case", map[string][]string{"USERACCOUNTCONTROL": {"2"}}, "disabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			disabled, reason := adDisabled(ldap.NewEntry("CN=x", tc.attrs), now)
			if disabled != (tc.reason != "") || reason != tc.reason {
				t.Errorf("adDisabled = %v, %q; want %q", disabled, reason, tc.reason)
			}
		})
	}
	if got := fileTimeTime(116444736000000000); !got.Equal(time.Unix(0, 0)) {
		t.Errorf("FILETIME of the Unix epoch = %v", got)
	}
}

func TestLDAPPhones(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		extension, work, mobile []string
		want                    []Phone
	}{
		{"none", nil, nil, nil, nil},
		{"ivanov", []string{"1001"}, []string{"+7 (495) 123-45-67"}, []string{"+7 912 000-00-01"}, []Phone{
			{"1001", PhoneExtension}, {"+74951234567", PhoneWork}, {"+79120000001", PhoneMobile}}},
		{"first kind wins", []string{"1001"}, []string{"10-01", "+7 495 1"}, []string{"+7-495-1"}, []Phone{
			{"1001", PhoneExtension}, {"+74951", PhoneWork}}},
		{"unusable numbers left out", []string{"ext. 12", ""}, []string{"n/a", "+"}, []string{"8 (912) 000 00 01"}, []Phone{
			{"89120000001", PhoneMobile}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := directoryPhones(tc.extension, tc.work, tc.mobile); !slices.Equal(got, tc.want) {
				t.Errorf("directoryPhones = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLDAPLoginCandidates(t *testing.T) {
	for _, tc := range []struct {
		login string
		want  []string
	}{
		{"ivanov", []string{"ivanov"}},
		{`CORP\ivanov`, []string{`CORP\ivanov`, "ivanov"}},
		{`\ivanov`, []string{`\ivanov`}},
		{`CORP\`, []string{`CORP\`}},
		{`A\B\c`, []string{`A\B\c`}},
		{"ivanov@corp.example", []string{"ivanov@corp.example", "ivanov"}},
		{"ivanov@CORP.EXAMPLE", []string{"ivanov@CORP.EXAMPLE", "ivanov"}},
		{"ivanov@other.example", []string{"ivanov@other.example"}},
		{"@corp.example", []string{"@corp.example"}},
		{`CORP\ivanov@corp.example`, []string{`CORP\ivanov@corp.example`}},
	} {
		if got := loginCandidates(tc.login, "corp.example"); !slices.Equal(got, tc.want) {
			t.Errorf("loginCandidates(%q) = %q, want %q", tc.login, got, tc.want)
		}
	}
}

func TestLDAPLoginFilter(t *testing.T) {
	d := &Directory{userFilter: adUserFilter, loginAttrs: []string{"sAMAccountName", "userPrincipalName"}, domain: "corp.example"}
	for _, tc := range []struct{ login, want string }{
		{"ivanov", `(&(&(objectCategory=person)(objectClass=user))(|(sAMAccountName=ivanov)(userPrincipalName=ivanov)))`},
		{"*", `(&(&(objectCategory=person)(objectClass=user))(|(sAMAccountName=\2a)(userPrincipalName=\2a)))`},
		{"a)(uid=*", `(&(&(objectCategory=person)(objectClass=user))(|(sAMAccountName=a\29\28uid=\2a)(userPrincipalName=a\29\28uid=\2a)))`},
		{`X\2a`, `(&(&(objectCategory=person)(objectClass=user))(|(sAMAccountName=X\5c2a)(sAMAccountName=2a)(userPrincipalName=X\5c2a)(userPrincipalName=2a)))`},
	} {
		got := d.loginFilter(tc.login)
		if got != tc.want {
			t.Errorf("loginFilter(%q) =\n %s\nwant\n %s", tc.login, got, tc.want)
		}
		if _, err := ldap.CompileFilter(got); err != nil {
			t.Errorf("loginFilter(%q) does not compile: %v", tc.login, err)
		}
	}
}

func TestLDAPNestedGroupsBounds(t *testing.T) {
	ctx := context.Background()
	log, buf := newLDAPLogger()
	d := &Directory{log: log}

	// A chain deeper than the limit: g1 ⊂ g2 ⊂ … ⊂ g40.
	chain := func(_ context.Context, dn string) ([]string, bool, error) {
		var n int
		if dn == "CN=user" {
			return []string{"CN=g1"}, false, nil
		}
		if _, err := fmt.Sscanf(dn, "CN=g%d", &n); err != nil {
			return nil, false, err
		}
		return []string{fmt.Sprintf("CN=g%d", n+1)}, false, nil
	}
	got, err := d.nestedGroups(ctx, "CN=user", chain)
	if err != nil || len(got) != maxGroupDepth {
		t.Errorf("deep chain: %d groups, %v; want %d", len(got), err, maxGroupDepth)
	}
	if !strings.Contains(buf.String(), "deeper than the limit") {
		t.Errorf("no warning about depth:\n%s", buf)
	}

	// A cycle that names the user and groups in other spellings.
	cycle := func(_ context.Context, dn string) ([]string, bool, error) {
		switch normDN(dn) {
		case "cn=user":
			return []string{"CN=A", "cn=b"}, false, nil
		case "cn=a":
			return []string{"CN=B", "CN=User"}, false, nil
		case "cn=b":
			return []string{"cn=a", " CN = A "}, false, nil
		}
		return nil, false, nil
	}
	got, err = d.nestedGroups(ctx, "CN=user", cycle)
	if err != nil || !slices.Equal(got, []string{"CN=A", "cn=b"}) {
		t.Errorf("cycle: %q, %v", got, err)
	}

	// A user in too many groups.
	wide := func(_ context.Context, dn string) ([]string, bool, error) {
		if dn != "CN=user" {
			return nil, false, nil
		}
		var gs []string
		for i := range maxUserGroups + 10 {
			gs = append(gs, fmt.Sprintf("CN=w%d", i))
		}
		return gs, true, nil
	}
	got, err = d.nestedGroups(ctx, "CN=user", wide)
	if err != nil || len(got) != maxUserGroups {
		t.Errorf("wide: %d groups, %v; want %d", len(got), err, maxUserGroups)
	}

	boom := errors.New("boom")
	if _, err := d.nestedGroups(ctx, "CN=user", func(context.Context, string) ([]string, bool, error) {
		return nil, false, boom
	}); !errors.Is(err, boom) {
		t.Errorf("error from parents = %v", err)
	}
}

func TestLDAPStripUID(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"CN=a,DC=x", "CN=a,DC=x"},
		{"CN=a,DC=x#'0101'B", "CN=a,DC=x"},
		{"CN=a#b,DC=x", "CN=a#b,DC=x"},
	} {
		if got := stripUID(tc.in); got != tc.want {
			t.Errorf("stripUID(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
