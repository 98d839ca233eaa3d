package ldaptest

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

func TestLDAPServer(t *testing.T) {
	const users = SizeLimit + 20
	s := Start(t, Seed{Users: users})

	pool := x509.NewCertPool()
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("CAFile holds no certificate")
	}
	tlsConf := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}

	dial := func(t *testing.T, url string, startTLS bool) *ldap.Conn {
		t.Helper()
		c, err := ldap.DialURL(url, ldap.DialWithTLSConfig(tlsConf))
		if err != nil {
			t.Fatalf("dial %s: %v", url, err)
		}
		t.Cleanup(func() { c.Close() })
		if startTLS {
			if err := c.StartTLS(tlsConf); err != nil {
				t.Fatalf("StartTLS: %v", err)
			}
		}
		if err := c.Bind(s.BindDN, s.BindPassword); err != nil {
			t.Fatalf("service bind: %v", err)
		}
		return c
	}
	people := func() *ldap.SearchRequest {
		return ldap.NewSearchRequest(PeopleDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
			"(objectClass=user)", []string{"1.1"}, nil)
	}

	t.Run("size limit forces paging", func(t *testing.T) {
		c := dial(t, s.URL, false)
		res, err := c.Search(people())
		if !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
			t.Fatalf("plain search: err = %v, want size limit exceeded", err)
		}
		if res == nil || len(res.Entries) != SizeLimit {
			t.Fatalf("plain search returned %d entries, want the limit %d", len(res.Entries), SizeLimit)
		}
		res, err = c.SearchWithPaging(people(), 100)
		if err != nil {
			t.Fatalf("paged search: %v", err)
		}
		if got, want := len(res.Entries), users+FixedUsers; got != want {
			t.Fatalf("paged search returned %d people, want %d", got, want)
		}
	})

	t.Run("TLS", func(t *testing.T) {
		for _, tc := range []struct {
			name     string
			url      string
			startTLS bool
		}{
			{"StartTLS", s.URL, true},
			{"LDAPS", s.LDAPSURL, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := dial(t, tc.url, tc.startTLS)
				if st, ok := c.TLSConnectionState(); !ok || !st.HandshakeComplete {
					t.Fatal("connection is not encrypted")
				}
			})
		}
	})

	t.Run("AD attributes and binds", func(t *testing.T) {
		c := dial(t, s.URL, false)
		res, err := c.Search(ldap.NewSearchRequest(IvanovDN, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
			"(objectClass=*)", []string{"displayName", "objectGUID", "entryUUID", "userPassword"}, nil))
		if err != nil {
			t.Fatal(err)
		}
		e := res.Entries[0]
		if got := e.GetAttributeValue("displayName"); got != IvanovDisplayName {
			t.Errorf("displayName = %q, want %q", got, IvanovDisplayName)
		}
		if got := string(e.GetRawAttributeValue("objectGUID")); got != IvanovGUIDBytes {
			t.Errorf("objectGUID = % x, want % x", got, IvanovGUIDBytes)
		}
		if e.GetAttributeValue("entryUUID") == "" {
			t.Error("entryUUID missing")
		}
		if e.GetAttributeValue("userPassword") != "" {
			t.Error("the service account can read passwords")
		}

		u, err := ldap.DialURL(s.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		if err := u.Bind(IvanovDN, Password); err != nil {
			t.Fatalf("bind as ivanov: %v", err)
		}
		if err := u.Bind(IvanovDN, "wrong"); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
			t.Fatalf("bind with a wrong password: %v", err)
		}
		binds := s.BindDNs()
		n := 0
		for _, dn := range binds {
			if strings.EqualFold(dn, IvanovDN) {
				n++
			}
		}
		if n != 2 {
			t.Errorf("BindDNs lists ivanov %d times, want 2: %q", n, binds)
		}
		if !slices.ContainsFunc(binds, func(dn string) bool { return strings.EqualFold(dn, ServiceBindDN) }) {
			t.Errorf("BindDNs misses the service account: %q", binds)
		}
	})

	t.Run("Stop", func(t *testing.T) {
		s.Stop()
		s.Stop() // idempotent
		if _, err := ldap.DialURL(s.URL); err == nil {
			t.Fatal("slapd still answers after Stop")
		}
	})
}
