package main

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/elph-server/elph/modules/sso/ldaptest"
)

// The address book from the LDAP fixture: the directory sync brings the
// accounts in, the address book lists them with their department and
// numbers, finds them by any spelling of a number, and call history's
// resolution goes through it.
func TestAddressbookFromLDAP(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.Seed{Users: 20})
	n := newNodeEnv(t)
	for k, v := range map[string]string{
		"ELPH_SSO_INITIAL_ADMIN_PASSWORD": "admin-password-1",
		"ELPH_SSO_LDAP_ENABLED":           "true",
		"ELPH_SSO_LDAP_URL":               srv.URL,
		"ELPH_SSO_LDAP_BASE_DN":           srv.BaseDN,
		"ELPH_SSO_LDAP_BIND_DN":           srv.BindDN,
		"ELPH_SSO_LDAP_BIND_PASSWORD":     srv.BindPassword,
		"ELPH_SSO_LDAP_ACTIVE_DIRECTORY":  "true",
		"ELPH_SSO_LDAP_START_TLS":         "true",
		"ELPH_SSO_LDAP_CA_FILE":           srv.CAFile,
	} {
		n.env[k] = v
	}
	if out, code := run(t, n.env, "ldap", "sync"); code != 0 {
		t.Fatalf("ldap sync: exit %d\n%s", code, out)
	}
	p := start(t, n.env, "serve", "--all")
	plain := &http.Client{Timeout: 5 * time.Second}
	waitFor(t, p, "ready", func() bool { code, _ := get(plain, "http://"+n.admin+"/readyz"); return code == 200 })
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // the node's self-signed certificate
	anon := &gatewayClient{t: t, base: "https://" + n.gateway, http: &http.Client{Timeout: 10 * time.Second, Transport: tr}}
	admin := anon.login("admin", "admin-password-1")

	type contact struct {
		ID          int64
		DisplayName string `json:"display_name"`
		Department  string
		Emails      []string
		UserID      int64 `json:"user_id"`
		Sources     []string
		Phones      []struct{ Number, Kind, Normalized string }
	}
	var res struct {
		Contacts []contact
		Total    int
	}
	search := func(q string) {
		t.Helper()
		res.Contacts, res.Total = nil, 0
		if code := admin.do("GET", "/addressbook/v1/contacts?q="+url.QueryEscape(q), nil, &res); code != 200 {
			t.Fatalf("search %q: %d", q, code)
		}
	}
	// The accounts sync runs in the background after start.
	deadline := time.Now().Add(30 * time.Second)
	for search("разработка"); res.Total == 0 && time.Now().Before(deadline); search("разработка") {
		time.Sleep(50 * time.Millisecond)
	}
	if res.Total != 1 {
		t.Fatalf("department search: %+v", res)
	}
	iv := res.Contacts[0]
	if iv.DisplayName != ldaptest.IvanovDisplayName || iv.UserID == 0 || !slices.Equal(iv.Sources, []string{"accounts"}) ||
		!slices.Equal(iv.Emails, []string{ldaptest.IvanovMail}) || len(iv.Phones) != 3 {
		t.Errorf("ivanov from LDAP: %+v", iv)
	}
	for _, q := range []string{"8 495 123 45 67", "+7 (495) 123-45-67", "1001", "912 000", "ivanov", "пётр"} {
		if search(q); res.Total < 1 || res.Contacts[0].ID != iv.ID {
			t.Errorf("search %q: %+v, want ivanov first", q, res.Contacts)
		}
	}
	// Sidorov is disabled in the directory: not in the address book.
	if search("сидоров"); res.Total != 0 {
		t.Errorf("a disabled account is listed: %+v", res.Contacts)
	}
	var lk struct{ Contacts []contact }
	if code := admin.do("GET", "/addressbook/v1/lookup?number="+url.QueryEscape("+74951234567"), nil, &lk); code != 200 || len(lk.Contacts) != 1 || lk.Contacts[0].ID != iv.ID {
		t.Errorf("lookup: %d %+v", code, lk)
	}
	if code := anon.do("GET", "/addressbook/v1/contacts", nil, nil); code != 401 {
		t.Errorf("anonymous search: %d", code)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
