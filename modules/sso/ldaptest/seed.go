package ldaptest

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// The fixed part of every seeded directory: an Active Directory-shaped tree
// that the sso tests know by heart.
const (
	BaseDN    = "DC=corp,DC=example"
	PeopleDN  = "OU=People," + BaseDN
	GroupsDN  = "OU=Groups," + BaseDN
	ServiceDN = "OU=Service," + BaseDN

	// Domain is the DNS domain of BaseDN (the UPN suffix) and NetBIOS its
	// pre-Windows 2000 name (CORP\ivanov).
	Domain  = "corp.example"
	NetBIOS = "CORP"

	// Password is the password of every seeded person.
	Password = "Correct-Horse-7"

	// ServiceBindDN is the account the directory client searches as. Unlike
	// the rootdn it is subject to the server's size limit.
	ServiceBindDN       = "CN=svc-elph," + ServiceDN
	ServiceBindPassword = "Svc-Secret-9"

	// SizeLimit is the server's limit on entries per (non-paged) search
	// for every identity but the rootdn.
	SizeLimit = 500

	// FixedUsers is the number of person entries present whatever the Seed:
	// ivanov, petrova, sidorov, kuznetsov, dup-a and dup-b.
	FixedUsers = 6
)

// Ivanov is an enabled user with a Cyrillic name, phones and nested groups
// (Backend ⊂ Engineering ⊂ Staff, a LoopA/LoopB cycle and a
// groupOfUniqueNames).
const (
	IvanovLogin       = "ivanov"
	IvanovUPN         = "ivanov@" + Domain
	IvanovDN          = "CN=Иванов Пётр," + PeopleDN
	IvanovDisplayName = "Иванов Пётр"
	// IvanovGUIDBytes is objectGUID as AD stores it (the first three groups
	// little-endian); IvanovGUID is its canonical text.
	IvanovGUIDBytes = "\x4a\x6d\x3c\x1b\x5e\x9a\xd5\x11\xb6\x0b\x00\xc0\x4f\xd9\x88\x7e"
	IvanovGUID      = "1b3c6d4a-9a5e-11d5-b60b-00c04fd9887e"
	IvanovMail      = "p.ivanov@" + Domain
	IvanovIPPhone   = "1001"
	IvanovMobile    = "+7 912 000-00-01"
	IvanovWorkPhone = "+7 (495) 123-45-67"
	IvanovDept      = "Разработка"
	IvanovTitle     = "Инженер-программист"
)

// The other fixed people.
const (
	// Petrova is enabled but has lockoutTime set: locked is not disabled.
	PetrovaLogin = "petrova"
	PetrovaDN    = "CN=Петрова Анна," + PeopleDN
	// Sidorov is disabled (userAccountControl 514).
	SidorovLogin = "sidorov"
	SidorovDN    = "CN=Сидоров Иван," + PeopleDN
	// Kuznetsov's accountExpires lies in the past.
	KuznetsovLogin = "kuznetsov"
	KuznetsovDN    = "CN=Кузнецов Олег," + PeopleDN
	// DupA and DupB share the mail SharedMail, so a login by mail is
	// ambiguous.
	DupADN     = "CN=Dup A," + PeopleDN
	DupBDN     = "CN=Dup B," + PeopleDN
	SharedMail = "shared@" + Domain
)

// Groups of the fixed tree.
const (
	StaffDN       = "CN=Staff," + GroupsDN
	EngineeringDN = "CN=Engineering," + GroupsDN
	BackendDN     = "CN=Backend," + GroupsDN
	ElphAdminsDN  = "CN=ElphAdmins," + GroupsDN
	LoopADN       = "CN=LoopA," + GroupsDN
	LoopBDN       = "CN=LoopB," + GroupsDN
	// LegacyDN is a groupOfUniqueNames (uniqueMember, not member).
	LegacyDN = "CN=Legacy," + GroupsDN
	// FixedGroups is the number of group entries.
	FixedGroups = 7
)

// GeneratedLogin is the login of the i-th generated user (1-based).
func GeneratedLogin(i int) string { return fmt.Sprintf("u%04d", i) }

// GeneratedGUID is the objectGUID (raw bytes) of the i-th generated user.
func GeneratedGUID(i int) []byte {
	b := make([]byte, 16)
	copy(b, "elph-gen")
	binary.BigEndian.PutUint64(b[8:], uint64(i))
	return b
}

// entry is one LDIF record; attribute order is kept.
type entry struct {
	dn    string
	attrs [][2]string
}

func (e *entry) add(name string, values ...string) {
	for _, v := range values {
		e.attrs = append(e.attrs, [2]string{name, v})
	}
}

// fileTime is t as a Windows FILETIME (100 ns since 1601-01-01 UTC), the
// format of accountExpires and lockoutTime.
func fileTime(t time.Time) string {
	const epochDiff = 11644473600 // seconds from 1601 to 1970
	return fmt.Sprint((t.Unix()+epochDiff)*10_000_000 + int64(t.Nanosecond()/100))
}

// person is an AD-shaped user that is also an inetOrgPerson, so the generic
// (uid, entryUUID) and the AD (sAMAccountName, objectGUID) code paths both
// find it.
func person(dn, login, display, hash string, guid []byte) *entry {
	e := &entry{dn: dn}
	e.add("objectClass", "top", "person", "organizationalPerson", "inetOrgPerson", "user")
	cn, _, _ := strings.Cut(strings.TrimPrefix(dn, "CN="), ",")
	e.add("cn", cn)
	sn, _, _ := strings.Cut(display, " ")
	e.add("sn", sn)
	e.add("displayName", display)
	e.add("uid", login)
	e.add("sAMAccountName", login)
	e.add("userPrincipalName", login+"@"+Domain)
	e.add("objectCategory", "person")
	e.add("objectGUID", string(guid))
	e.add("userPassword", hash)
	return e
}

func group(dn string, guid byte, unique bool, members ...string) *entry {
	e := &entry{dn: dn}
	cn, _, _ := strings.Cut(strings.TrimPrefix(dn, "CN="), ",")
	attr := "member"
	if unique {
		e.add("objectClass", "top", "groupOfUniqueNames", "group")
		attr = "uniqueMember"
	} else {
		e.add("objectClass", "top", "groupOfNames", "group")
	}
	e.add("cn", cn)
	e.add("sAMAccountName", cn)
	e.add("objectCategory", "group")
	e.add("groupType", "-2147483646") // global security group
	g := make([]byte, 16)
	copy(g, "elph-grp")
	g[15] = guid
	e.add("objectGUID", string(g))
	e.add(attr, members...)
	return e
}

func ou(dn string) *entry {
	e := &entry{dn: dn}
	name, _, _ := strings.Cut(strings.TrimPrefix(dn, "OU="), ",")
	e.add("objectClass", "top", "organizationalUnit")
	e.add("ou", name)
	return e
}

// seedEntries returns the whole directory for seed, people's passwords
// hashed with hash.
func seedEntries(seed Seed, hash string, now time.Time) []*entry {
	root := &entry{dn: BaseDN}
	root.add("objectClass", "top", "dcObject", "organization")
	root.add("dc", "corp")
	root.add("o", "Corp Example")
	out := []*entry{root, ou(PeopleDN), ou(GroupsDN), ou(ServiceDN)}

	svc := &entry{dn: ServiceBindDN}
	svc.add("objectClass", "top", "applicationProcess", "simpleSecurityObject")
	svc.add("cn", "svc-elph")
	svc.add("userPassword", ssha(ServiceBindPassword))
	out = append(out, svc)

	iv := person(IvanovDN, IvanovLogin, IvanovDisplayName, hash, []byte(IvanovGUIDBytes))
	iv.add("givenName", "Пётр")
	iv.add("mail", IvanovMail)
	iv.add("department", IvanovDept)
	iv.add("title", IvanovTitle)
	iv.add("ipPhone", IvanovIPPhone)
	iv.add("telephoneNumber", IvanovWorkPhone)
	iv.add("mobile", IvanovMobile)
	iv.add("userAccountControl", "512")
	iv.add("accountExpires", "0")
	iv.add("lockoutTime", "0")

	pe := person(PetrovaDN, PetrovaLogin, "Петрова Анна", hash, guid(2))
	pe.add("mail", "a.petrova@"+Domain)
	pe.add("ipPhone", "1002")
	pe.add("userAccountControl", "512")
	pe.add("accountExpires", "9223372036854775807")
	pe.add("lockoutTime", fileTime(now.Add(-time.Hour)))

	si := person(SidorovDN, SidorovLogin, "Сидоров Иван", hash, guid(3))
	si.add("userAccountControl", "514")

	ku := person(KuznetsovDN, KuznetsovLogin, "Кузнецов Олег", hash, guid(4))
	ku.add("userAccountControl", "512")
	ku.add("accountExpires", fileTime(now.AddDate(0, 0, -30)))

	da := person(DupADN, "dup-a", "Dup A", hash, guid(5))
	da.add("mail", SharedMail)
	db := person(DupBDN, "dup-b", "Dup B", hash, guid(6))
	db.add("mail", SharedMail)
	out = append(out, iv, pe, si, ku, da, db)

	for i := 1; i <= seed.Users; i++ {
		login := GeneratedLogin(i)
		u := person(fmt.Sprintf("CN=User %04d,%s", i, PeopleDN), login, "User "+login[1:], hash, GeneratedGUID(i))
		u.add("userAccountControl", "512")
		out = append(out, u)
	}

	out = append(out,
		group(StaffDN, 1, false, EngineeringDN),
		group(EngineeringDN, 2, false, BackendDN, PetrovaDN),
		group(BackendDN, 3, false, IvanovDN),
		group(ElphAdminsDN, 4, false, PetrovaDN),
		group(LoopADN, 5, false, LoopBDN),
		group(LoopBDN, 6, false, LoopADN, IvanovDN),
		group(LegacyDN, 7, true, IvanovDN),
	)
	return out
}

func guid(n byte) []byte {
	b := make([]byte, 16)
	copy(b, "elph-fix")
	b[15] = n
	return b
}

// ldif renders entries; values that are not plain ASCII (Cyrillic, binary
// GUIDs) are base64-encoded as RFC 2849 requires.
func ldif(entries []*entry) []byte {
	var b strings.Builder
	line := func(name, v string) {
		if safe(v) {
			fmt.Fprintf(&b, "%s: %s\n", name, v)
		} else {
			fmt.Fprintf(&b, "%s:: %s\n", name, base64.StdEncoding.EncodeToString([]byte(v)))
		}
	}
	for _, e := range entries {
		line("dn", e.dn)
		for _, a := range e.attrs {
			line(a[0], a[1])
		}
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

func safe(v string) bool {
	if v == "" {
		return true
	}
	if v[0] == ' ' || v[0] == ':' || v[0] == '<' || v[len(v)-1] == ' ' || !utf8.ValidString(v) {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// ssha is the {SSHA} scheme slappasswd uses by default: SHA-1 over the
// password and a random salt, then the salt appended.
func ssha(password string) string {
	salt := make([]byte, 8)
	rand.Read(salt) // never fails since Go 1.24
	h := sha1.New()
	h.Write([]byte(password))
	h.Write(salt)
	return "{SSHA}" + base64.StdEncoding.EncodeToString(append(h.Sum(nil), salt...))
}
