package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/elph-server/elph/modules/sso/ldaptest"
)

func TestUserCommands(t *testing.T) {
	n := newNodeEnv(t)
	env := n.env
	out, code := runWithInput(t, env, "bob-password-123\n", "user", "add", "bob", "--name", "Bob Builder", "--phone", "+7 (495) 100-20-30:work", "--phone", "1002", "--password-stdin")
	if code != 0 || !strings.Contains(out, "created bob") {
		t.Fatalf("user add: exit %d\n%s", code, out)
	}
	tests := []struct {
		name, stdin string
		args        []string
		want        string
	}{
		{"duplicate login", "bob-password-123\n", []string{"user", "add", "BOB", "--password-stdin"}, "already exists"},
		{"weak password", "short\n", []string{"user", "add", "carol", "--password-stdin"}, "at least 12"},
		{"phone as login", "carol-password-1\n", []string{"user", "add", "1003", "--password-stdin"}, "phone number"},
		{"taken phone", "carol-password-1\n", []string{"user", "add", "carol", "--phone", "1002", "--password-stdin"}, "1002"},
		{"unknown user", "", []string{"user", "disable", "nobody"}, "not found"},
	}
	for _, tt := range tests {
		out, code := runWithInput(t, env, tt.stdin, tt.args...)
		if code == 0 || !strings.Contains(out, tt.want) {
			t.Errorf("%s: exit %d, want an error with %q:\n%s", tt.name, code, tt.want, out)
		}
	}

	out, _ = run(t, env, "user", "list")
	if !regexp.MustCompile(`bob\s+Bob Builder\s+user\s+local\s+enabled\s+\S*1002`).MatchString(out) {
		t.Errorf("user list:\n%s", out)
	}
	if out, code := run(t, env, "user", "disable", "bob", "--reason", "on leave"); code != 0 || !strings.Contains(out, "disabled bob") {
		t.Fatalf("disable: %d %s", code, out)
	}
	if out, _ := run(t, env, "user", "list"); strings.Contains(out, "bob") {
		t.Errorf("disabled user listed without --all:\n%s", out)
	}
	if out, _ := run(t, env, "user", "list", "--all"); !strings.Contains(out, "disabled") {
		t.Errorf("list --all lacks the disabled user:\n%s", out)
	}
	if _, code := run(t, env, "user", "enable", "bob"); code != 0 {
		t.Fatal("enable failed")
	}
	if out, code := runWithInput(t, env, "bob-password-456\n", "user", "passwd", "bob", "--password-stdin"); code != 0 {
		t.Fatalf("passwd: %s", out)
	}

	// The node sees what the commands wrote: the new password logs in over
	// the gateway, by login or by phone; the old one does not.
	env["ELPH_SSO_INITIAL_ADMIN_PASSWORD"] = "admin-password-1"
	p := start(t, env, "serve", "--all")
	plain := &http.Client{Timeout: 5 * time.Second}
	waitFor(t, p, "ready", func() bool { code, _ := get(plain, "http://"+n.admin+"/readyz"); return code == 200 })
	gw := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	login := func(who, pw string) (int, map[string]any) {
		b, _ := json.Marshal(map[string]string{"login": who, "password": pw, "device": "test"})
		resp, err := gw.Post("https://"+n.gateway+"/sso/v1/login", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	if code, body := login("bob", "bob-password-456"); code != 200 || body["access_token"] == nil {
		t.Errorf("login with the new password: %d %v", code, body)
	}
	if code, _ := login("+7 495 100 20 30", "bob-password-456"); code != 200 {
		t.Errorf("login by phone: %d", code)
	}
	if code, body := login("bob", "bob-password-123"); code != 401 || !strings.Contains(toJSON(body), "bad_credentials") {
		t.Errorf("old password: %d %v", code, body)
	}
	if code, _ := login("admin", "admin-password-1"); code != 200 {
		t.Errorf("initial admin from the environment cannot log in: %d", code)
	}
	if strings.Contains(p.out.String(), "admin-password-1") || strings.Contains(p.out.String(), "bob-password") {
		t.Error("a password reached the log")
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestLDAPSyncCommand(t *testing.T) {
	const generated = 600 // above the server's size limit of 500: paging is needed
	srv := ldaptest.Start(t, ldaptest.Seed{Users: generated})
	env := map[string]string{
		"ELPH_NODE_DATA_DIR":             t.TempDir(),
		"ELPH_SSO_LDAP_ENABLED":          "true",
		"ELPH_SSO_LDAP_URL":              srv.URL,
		"ELPH_SSO_LDAP_BASE_DN":          srv.BaseDN,
		"ELPH_SSO_LDAP_BIND_DN":          srv.BindDN,
		"ELPH_SSO_LDAP_BIND_PASSWORD":    srv.BindPassword,
		"ELPH_SSO_LDAP_ACTIVE_DIRECTORY": "true", // slapd carries the test AD schema
		"ELPH_SSO_LDAP_START_TLS":        "true",
		"ELPH_SSO_LDAP_CA_FILE":          srv.CAFile,
	}
	total := generated + ldaptest.FixedUsers
	count := func(out, what string) int {
		m := regexp.MustCompile(`(?m)^` + what + `\s+(\d+)$`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no %q in:\n%s", what, out)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}

	out, code := run(t, env, "ldap", "sync", "--dry-run")
	if code != 0 || !strings.Contains(out, "dry run") || count(out, "created") != total || count(out, "users seen") != total {
		t.Fatalf("dry run: exit %d\n%s", code, out)
	}
	if out, _ := run(t, env, "user", "list", "--all"); strings.Contains(out, "ivanov") {
		t.Fatalf("the dry run wrote accounts:\n%s", out)
	}

	out, code = run(t, env, "ldap", "sync")
	if code != 0 || count(out, "created") != total || count(out, "groups") == 0 || count(out, "errors") != 0 {
		t.Fatalf("sync: exit %d\n%s", code, out)
	}
	// Disabled and expired directory accounts arrive disabled.
	if count(out, "disabled") < 2 {
		t.Errorf("disabled/expired accounts not counted:\n%s", out)
	}
	list, _ := run(t, env, "user", "list", "--all")
	if !regexp.MustCompile(`ivanov\s+Иванов Пётр\s+user\s+ldap\s+enabled`).MatchString(list) {
		t.Errorf("ivanov not synced:\n%s", list)
	}
	if !regexp.MustCompile(`sidorov\s+.*ldap\s+disabled`).MatchString(list) {
		t.Errorf("sidorov (disabled in the directory) not disabled:\n%s", list)
	}

	out, code = run(t, env, "ldap", "sync")
	if code != 0 || count(out, "unchanged") != total || count(out, "created") != 0 {
		t.Errorf("second sync: exit %d\n%s", code, out)
	}

	// A wrong service password is a configuration error, not a crash.
	env["ELPH_SSO_LDAP_BIND_PASSWORD"] = "wrong-secret"
	out, code = run(t, env, "ldap", "sync")
	if code == 0 || !strings.Contains(out, "directory") || strings.Contains(out, "wrong-secret") {
		t.Errorf("bad bind password: exit %d\n%s", code, out)
	}
}
