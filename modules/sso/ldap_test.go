package sso

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/modules/sso/ldaptest"
)

// ldapGeneratedUsers is more than ldaptest.SizeLimit, so only a paged search
// can return them all.
const ldapGeneratedUsers = 2500

// ldapLogBuffer collects a Directory's log for assertions.
type ldapLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *ldapLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *ldapLogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLDAPLogger() (*slog.Logger, *ldapLogBuffer) {
	b := &ldapLogBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// ldapADConfig is the configuration an Active Directory deployment would have.
func ldapADConfig(s *ldaptest.Server) config.LDAP {
	return config.LDAP{
		Enabled:         true,
		URL:             s.URL,
		BindDN:          s.BindDN,
		BindPassword:    s.BindPassword,
		BaseDN:          s.BaseDN,
		ActiveDirectory: true,
		PageSize:        200,
		Timeout:         30 * time.Second,
	}
}

// ldapGenericConfig is the configuration of a plain OpenLDAP directory: uid
// logins, entryUUID ids, nested groups resolved in Go.
func ldapGenericConfig(s *ldaptest.Server) config.LDAP {
	c := ldapADConfig(s)
	c.ActiveDirectory = false
	c.GroupBaseDN = ldaptest.GroupsDN
	return c
}

func newTestDirectory(t *testing.T, cfg config.LDAP) (*Directory, *ldapLogBuffer) {
	t.Helper()
	log, buf := newLDAPLogger()
	d, err := NewDirectory(cfg, log)
	if err != nil {
		t.Fatalf("NewDirectory: %v", err)
	}
	t.Cleanup(func() {
		if strings.Contains(buf.String(), ldaptest.Password) || strings.Contains(buf.String(), cfg.BindPassword) {
			t.Errorf("a password was logged:\n%s", buf)
		}
	})
	return d, buf
}

// ldapUserBinds returns the binds slapd saw after the first skip ones that were
// not the service account's.
func ldapUserBinds(s *ldaptest.Server, skip int) []string {
	var out []string
	for _, dn := range s.BindDNs()[skip:] {
		if !SameDN(dn, ldaptest.ServiceBindDN) {
			out = append(out, dn)
		}
	}
	return out
}

// closedLDAPURL is an ldap:// URL on which nothing listens.
func closedLDAPURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "ldap://" + addr
}

func TestDirectory(t *testing.T) {
	s := ldaptest.Start(t, ldaptest.Seed{Users: ldapGeneratedUsers})
	ctx := t.Context()

	t.Run("Authenticate AD", func(t *testing.T) {
		d, _ := newTestDirectory(t, ldapADConfig(s))
		wantPhones := []Phone{
			{Number: "1001", Kind: PhoneExtension},
			{Number: "+74951234567", Kind: PhoneWork},
			{Number: "+79120000001", Kind: PhoneMobile},
		}
		for _, login := range []string{
			ldaptest.IvanovLogin,
			"IVANOV",
			ldaptest.IvanovUPN,
			`CORP\ivanov`,
			`corp\ivanov`,
			"  ivanov ",
		} {
			t.Run(login, func(t *testing.T) {
				u, err := d.Authenticate(ctx, login, ldaptest.Password)
				if err != nil {
					t.Fatalf("Authenticate(%q): %v", login, err)
				}
				if !SameDN(u.DN, ldaptest.IvanovDN) {
					t.Errorf("DN = %q, want %q", u.DN, ldaptest.IvanovDN)
				}
				checks := []struct{ name, got, want string }{
					{"Login", u.Login, ldaptest.IvanovLogin},
					{"UPN", u.UPN, ldaptest.IvanovUPN},
					{"DisplayName", u.DisplayName, ldaptest.IvanovDisplayName},
					{"ExternalID", u.ExternalID, ldaptest.IvanovGUID},
					{"Email", u.Email, ldaptest.IvanovMail},
					{"Department", u.Department, ldaptest.IvanovDept},
					{"Title", u.Title, ldaptest.IvanovTitle},
					{"DisabledReason", u.DisabledReason, ""},
				}
				for _, c := range checks {
					if c.got != c.want {
						t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
					}
				}
				if u.Disabled {
					t.Error("Disabled = true")
				}
				if !slices.Equal(u.Phones, wantPhones) {
					t.Errorf("Phones = %v, want %v", u.Phones, wantPhones)
				}
			})
		}
	})

	t.Run("Authenticate a locked account is left to the bind", func(t *testing.T) {
		// petrova has lockoutTime set; slapd has no lockout, so the bind
		// succeeds: the client must not refuse her by itself.
		d, _ := newTestDirectory(t, ldapADConfig(s))
		u, err := d.Authenticate(ctx, ldaptest.PetrovaLogin, ldaptest.Password)
		if err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
		if u.Disabled || u.DisabledReason != "" {
			t.Errorf("petrova: Disabled = %v (%q), want an enabled account", u.Disabled, u.DisabledReason)
		}
	})

	t.Run("Authenticate refusals", func(t *testing.T) {
		d, _ := newTestDirectory(t, ldapADConfig(s))
		for _, tc := range []struct {
			name, login, password string
			want                  error
			// boundAs is the one user DN the refusal may have bound as.
			boundAs string
			// refusedBeforeSending: not even the service account binds.
			refusedBeforeSending bool
		}{
			{"wrong password", ldaptest.IvanovLogin, "wrong", ErrBadCredentials, ldaptest.IvanovDN, false},
			{"unknown login", "nobody", ldaptest.Password, ErrBadCredentials, "", false},
			{"empty login", "", ldaptest.Password, ErrBadCredentials, "", true},
			{"empty password", ldaptest.IvanovLogin, "", ErrBadCredentials, "", true},
			// The account's state is told only to someone with its password.
			{"disabled", ldaptest.SidorovLogin, ldaptest.Password, ErrAccountDisabled, ldaptest.SidorovDN, false},
			{"disabled, wrong password", ldaptest.SidorovLogin, "wrong", ErrBadCredentials, ldaptest.SidorovDN, false},
			{"expired", ldaptest.KuznetsovLogin, ldaptest.Password, ErrAccountExpired, ldaptest.KuznetsovDN, false},
			{"expired, wrong password", ldaptest.KuznetsovLogin, "wrong", ErrBadCredentials, ldaptest.KuznetsovDN, false},
			{"UPN of another domain", "ivanov@evil.example", ldaptest.Password, ErrBadCredentials, "", false},
			// Injection attempts, with a password that is right for every
			// seeded person: any match would log in.
			{"star", "*", ldaptest.Password, ErrBadCredentials, "", false},
			{"prefix star", "ivan*", ldaptest.Password, ErrBadCredentials, "", false},
			{"closing paren", "ivanov)(uid=*", ldaptest.Password, ErrBadCredentials, "", false},
			{"or injection", "*)(|(objectClass=*", ldaptest.Password, ErrBadCredentials, "", false},
			{"escaped star", `\2a`, ldaptest.Password, ErrBadCredentials, "", false},
			{"domain escaped star", `CORP\2a`, ldaptest.Password, ErrBadCredentials, "", false},
			{"NUL inside", "ivanov\x00", ldaptest.Password, ErrBadCredentials, "", true},
			{"NUL escaped", `ivanov\00`, ldaptest.Password, ErrBadCredentials, "", false},
			{"lone paren", "(", ldaptest.Password, ErrBadCredentials, "", false},
			{"too long", strings.Repeat("a", maxLoginLength+1), ldaptest.Password, ErrBadCredentials, "", true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := len(s.BindDNs())
				u, err := d.Authenticate(ctx, tc.login, tc.password)
				if !errors.Is(err, tc.want) {
					t.Fatalf("Authenticate(%q) = %+v, %v; want %v", tc.login, u, err, tc.want)
				}
				if u.DN != "" {
					t.Errorf("a refused login returned a user: %+v", u)
				}
				if strings.Contains(err.Error(), ldaptest.Password) {
					t.Errorf("the error shows the password: %v", err)
				}
				binds := ldapUserBinds(s, before)
				var want []string
				if tc.boundAs != "" {
					want = []string{tc.boundAs}
				}
				if !slices.EqualFunc(binds, want, SameDN) {
					t.Errorf("binds as users = %q, want %q", binds, want)
				}
				if n := len(s.BindDNs()) - before; tc.refusedBeforeSending && n != 0 {
					t.Errorf("%d binds reached the directory, want none", n)
				}
			})
		}
	})

	t.Run("Authenticate empty password sends nothing", func(t *testing.T) {
		// Nothing listens on this URL: any attempt to reach the directory
		// would be ErrDirectoryDown.
		cfg := ldapADConfig(s)
		cfg.URL = closedLDAPURL(t)
		d, _ := newTestDirectory(t, cfg)
		if err := d.Ping(ctx); !errors.Is(err, ErrDirectoryDown) {
			t.Fatalf("Ping on a closed port = %v, want ErrDirectoryDown", err)
		}
		_, err := d.Authenticate(ctx, ldaptest.IvanovLogin, "")
		if !errors.Is(err, ErrBadCredentials) || errors.Is(err, ErrDirectoryDown) {
			t.Fatalf("Authenticate with an empty password = %v, want only ErrBadCredentials", err)
		}
	})

	t.Run("Authenticate ambiguous login", func(t *testing.T) {
		cfg := ldapGenericConfig(s)
		cfg.LoginAttributes = []string{"uid", "mail"}
		d, log := newTestDirectory(t, cfg)
		before := len(s.BindDNs())
		_, err := d.Authenticate(ctx, ldaptest.SharedMail, ldaptest.Password)
		if !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("Authenticate = %v, want ErrBadCredentials", err)
		}
		if b := ldapUserBinds(s, before); len(b) != 0 {
			t.Errorf("bound as %q for an ambiguous login", b)
		}
		out := log.String()
		if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "several directory entries") ||
			!strings.Contains(out, "login_attributes=[mail]") {
			t.Errorf("no warning naming the mail attribute:\n%s", out)
		}
		// The same directory still logs ivanov in by uid.
		if _, err := d.Authenticate(ctx, ldaptest.IvanovLogin, ldaptest.Password); err != nil {
			t.Errorf("Authenticate(ivanov): %v", err)
		}
	})

	t.Run("Authenticate generic nested groups", func(t *testing.T) {
		d, _ := newTestDirectory(t, ldapGenericConfig(s))
		uuidText := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
		for _, tc := range []struct {
			login  string
			groups []string
		}{
			// Backend ⊂ Engineering ⊂ Staff, the LoopA/LoopB cycle and the
			// groupOfUniqueNames Legacy.
			{ldaptest.IvanovLogin, []string{ldaptest.BackendDN, ldaptest.EngineeringDN, ldaptest.StaffDN,
				ldaptest.LoopBDN, ldaptest.LoopADN, ldaptest.LegacyDN}},
			{ldaptest.PetrovaLogin, []string{ldaptest.EngineeringDN, ldaptest.ElphAdminsDN, ldaptest.StaffDN}},
			{ldaptest.GeneratedLogin(7), nil},
		} {
			t.Run(tc.login, func(t *testing.T) {
				u, err := d.Authenticate(ctx, tc.login, ldaptest.Password)
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				if u.Login != tc.login {
					t.Errorf("Login = %q, want %q", u.Login, tc.login)
				}
				if !uuidText.MatchString(u.ExternalID) {
					t.Errorf("ExternalID = %q, want entryUUID text", u.ExternalID)
				}
				if !sameDNSet(u.Groups, tc.groups) {
					t.Errorf("Groups = %q, want %q", u.Groups, tc.groups)
				}
			})
		}
	})

	t.Run("Authenticate AD asks for nested groups in chain", func(t *testing.T) {
		// slapd does not implement LDAP_MATCHING_RULE_IN_CHAIN, so the
		// answer is empty; what matters is that the AD path asked for it
		// rather than walking the graph itself.
		d, _ := newTestDirectory(t, ldapADConfig(s))
		u, err := d.Authenticate(ctx, ldaptest.IvanovLogin, ldaptest.Password)
		if err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
		if len(u.Groups) != 0 {
			t.Errorf("Groups = %q from a server without the in-chain rule", u.Groups)
		}
		// slapd logs an extensible match with a matching rule it does not
		// know as "(?=undefined)"; the generic path would have sent
		// (member=...) instead.
		if !strings.Contains(s.Log(), `filter="(&(objectClass=group)(?=undefined))"`) {
			t.Error("slapd never received the in-chain group search")
		}
	})

	t.Run("Users AD pages through everyone", func(t *testing.T) {
		total := ldapGeneratedUsers + ldaptest.FixedUsers
		// Paging is needed: a plain search as the same account stops at
		// the server's size limit.
		requireLDAPSizeLimit(t, s, total)

		d, _ := newTestDirectory(t, ldapADConfig(s))
		byLogin := map[string]DirectoryUser{}
		ids := map[string]bool{}
		err := d.Users(ctx, func(u DirectoryUser) error {
			if _, dup := byLogin[u.Login]; dup {
				return fmt.Errorf("user %q streamed twice", u.Login)
			}
			byLogin[u.Login] = u
			if u.ExternalID == "" || ids[u.ExternalID] {
				return fmt.Errorf("user %q: missing or repeated ExternalID %q", u.Login, u.ExternalID)
			}
			ids[u.ExternalID] = true
			return nil
		})
		if err != nil {
			t.Fatalf("Users: %v", err)
		}
		if len(byLogin) != total {
			t.Fatalf("Users streamed %d users, want %d", len(byLogin), total)
		}
		for _, tc := range []struct {
			login    string
			disabled bool
			reason   string
		}{
			{ldaptest.IvanovLogin, false, ""},
			{ldaptest.PetrovaLogin, false, ""}, // locked is not disabled
			{ldaptest.SidorovLogin, true, "disabled"},
			{ldaptest.KuznetsovLogin, true, "expired"},
			{ldaptest.GeneratedLogin(ldapGeneratedUsers), false, ""},
		} {
			u := byLogin[tc.login]
			if u.Disabled != tc.disabled || u.DisabledReason != tc.reason {
				t.Errorf("%s: Disabled = %v (%q), want %v (%q)", tc.login, u.Disabled, u.DisabledReason, tc.disabled, tc.reason)
			}
		}
		if iv := byLogin[ldaptest.IvanovLogin]; iv.ExternalID != ldaptest.IvanovGUID || iv.DisplayName != ldaptest.IvanovDisplayName {
			t.Errorf("ivanov = %+v", iv)
		}
	})

	t.Run("Users generic resolves nested groups", func(t *testing.T) {
		d, _ := newTestDirectory(t, ldapGenericConfig(s))
		groups := map[string][]string{}
		n := 0
		err := d.Users(ctx, func(u DirectoryUser) error {
			n++
			groups[u.Login] = u.Groups
			if u.Disabled {
				return fmt.Errorf("generic mode flagged %q disabled", u.Login)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Users: %v", err)
		}
		if want := ldapGeneratedUsers + ldaptest.FixedUsers; n != want {
			t.Fatalf("Users streamed %d users, want %d", n, want)
		}
		want := []string{ldaptest.BackendDN, ldaptest.EngineeringDN, ldaptest.StaffDN,
			ldaptest.LoopBDN, ldaptest.LoopADN, ldaptest.LegacyDN}
		if g := groups[ldaptest.IvanovLogin]; !sameDNSet(g, want) {
			t.Errorf("ivanov's groups = %q, want %q", g, want)
		}
		if g := groups[ldaptest.GeneratedLogin(1)]; len(g) != 0 {
			t.Errorf("u0001's groups = %q, want none", g)
		}
	})

	t.Run("Users stops", func(t *testing.T) {
		d, _ := newTestDirectory(t, ldapGenericConfig(s))
		errEnough := errors.New("enough")
		calls := 0
		err := d.Users(ctx, func(DirectoryUser) error {
			calls++
			if calls == 10 {
				return errEnough
			}
			return nil
		})
		if !errors.Is(err, errEnough) || calls != 10 {
			t.Errorf("Users after fn's error = %v with %d calls, want errEnough with 10", err, calls)
		}

		cctx, cancel := context.WithCancel(ctx)
		calls = 0
		err = d.Users(cctx, func(DirectoryUser) error {
			calls++
			if calls == 5 {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrDirectoryDown) || calls != 5 {
			t.Errorf("Users after cancel = %v with %d calls, want context.Canceled with 5", err, calls)
		}
	})

	t.Run("Groups", func(t *testing.T) {
		want := []string{ldaptest.StaffDN, ldaptest.EngineeringDN, ldaptest.BackendDN, ldaptest.ElphAdminsDN,
			ldaptest.LoopADN, ldaptest.LoopBDN, ldaptest.LegacyDN}
		for name, cfg := range map[string]config.LDAP{"AD": ldapADConfig(s), "generic": ldapGenericConfig(s)} {
			t.Run(name, func(t *testing.T) {
				d, _ := newTestDirectory(t, cfg)
				var dns []string
				ids := map[string]bool{}
				names := map[string]bool{}
				err := d.Groups(ctx, func(g DirectoryGroup) error {
					dns = append(dns, g.DN)
					ids[g.ExternalID] = true
					names[g.Name] = true
					return nil
				})
				if err != nil {
					t.Fatalf("Groups: %v", err)
				}
				if !sameDNSet(dns, want) {
					t.Errorf("Groups = %q, want %q", dns, want)
				}
				if len(ids) != len(want) || ids[""] {
					t.Errorf("ExternalIDs %v: want %d distinct non-empty", ids, len(want))
				}
				for _, n := range []string{"Staff", "Engineering", "Backend", "ElphAdmins"} {
					if !names[n] {
						t.Errorf("no group named %q in %v", n, names)
					}
				}
			})
		}
	})

	t.Run("Ping", func(t *testing.T) {
		d, _ := newTestDirectory(t, ldapADConfig(s))
		if err := d.Ping(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})

	t.Run("wrong service password", func(t *testing.T) {
		cfg := ldapADConfig(s)
		cfg.BindPassword = "not-the-service-password"
		d, log := newTestDirectory(t, cfg)
		calls := map[string]func() error{
			"Ping": func() error { return d.Ping(ctx) },
			"Authenticate": func() error {
				_, err := d.Authenticate(ctx, ldaptest.IvanovLogin, ldaptest.Password)
				return err
			},
			"Users":  func() error { return d.Users(ctx, func(DirectoryUser) error { return nil }) },
			"Groups": func() error { return d.Groups(ctx, func(DirectoryGroup) error { return nil }) },
		}
		for name, call := range calls {
			err := call()
			if !errors.Is(err, ErrDirectoryDown) || errors.Is(err, ErrBadCredentials) {
				t.Errorf("%s = %v, want ErrDirectoryDown and not ErrBadCredentials", name, err)
			}
			if err != nil && strings.Contains(err.Error(), cfg.BindPassword) {
				t.Errorf("%s: the error shows the bind password: %v", name, err)
			}
		}
		if out := log.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "bind_password") {
			t.Errorf("no error-level log pointing at bind_password:\n%s", out)
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
				cfg := ldapADConfig(s)
				cfg.URL, cfg.StartTLS, cfg.CAFile = tc.url, tc.startTLS, s.CAFile
				d, _ := newTestDirectory(t, cfg)
				u, err := d.Authenticate(ctx, ldaptest.IvanovLogin, ldaptest.Password)
				if err != nil {
					t.Fatalf("Authenticate with the CA: %v", err)
				}
				if u.ExternalID != ldaptest.IvanovGUID {
					t.Errorf("ExternalID = %q", u.ExternalID)
				}

				// Without the CA the certificate is not trusted: a
				// directory problem, never the user's password.
				cfg.CAFile = ""
				d, _ = newTestDirectory(t, cfg)
				_, err = d.Authenticate(ctx, ldaptest.IvanovLogin, ldaptest.Password)
				if !errors.Is(err, ErrDirectoryDown) || errors.Is(err, ErrBadCredentials) {
					t.Fatalf("Authenticate without the CA = %v, want ErrDirectoryDown", err)
				}
				if !strings.Contains(err.Error(), "certificate signed by unknown authority") {
					t.Errorf("error does not tell about the certificate: %v", err)
				}
				var unknown x509.UnknownAuthorityError
				if !tc.startTLS && !errors.As(err, &unknown) {
					t.Errorf("LDAPS error does not wrap x509.UnknownAuthorityError: %v", err)
				}

				// insecure_skip_verify connects anyway, with a warning.
				cfg.InsecureSkipVerify = true
				d, log := newTestDirectory(t, cfg)
				if !strings.Contains(log.String(), "insecure_skip_verify") {
					t.Errorf("no warning about insecure_skip_verify:\n%s", log)
				}
				if err := d.Ping(ctx); err != nil {
					t.Errorf("Ping with insecure_skip_verify: %v", err)
				}
			})
		}
	})

	t.Run("TLS version", func(t *testing.T) {
		cfg := ldapADConfig(s)
		cfg.URL, cfg.CAFile = s.LDAPSURL, s.CAFile
		d, _ := newTestDirectory(t, cfg)
		if d.tls.MinVersion != tls.VersionTLS12 || d.tls.ServerName != "127.0.0.1" || d.tls.InsecureSkipVerify {
			t.Errorf("tls.Config = min %x, server name %q, insecure %v", d.tls.MinVersion, d.tls.ServerName, d.tls.InsecureSkipVerify)
		}
	})
}

// requireLDAPSizeLimit proves that a plain search as the service account is
// cut at the server's size limit, below total.
func requireLDAPSizeLimit(t *testing.T, s *ldaptest.Server, total int) {
	t.Helper()
	if ldaptest.SizeLimit >= total {
		t.Fatalf("server size limit %d is not below the %d users", ldaptest.SizeLimit, total)
	}
	c, err := ldap.DialURL(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind(s.BindDN, s.BindPassword); err != nil {
		t.Fatal(err)
	}
	res, err := c.Search(ldap.NewSearchRequest(s.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		adUserFilter, []string{"1.1"}, nil))
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) || len(res.Entries) != ldaptest.SizeLimit {
		t.Fatalf("plain search: %d entries, err %v; want %d and size limit exceeded", len(res.Entries), err, ldaptest.SizeLimit)
	}
}

func sameDNSet(got, want []string) bool {
	norm := func(dns []string) []string {
		out := make([]string, len(dns))
		for i, dn := range dns {
			out[i] = normDN(dn)
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(norm(got), norm(want))
}

func TestDirectoryDown(t *testing.T) {
	s := ldaptest.Start(t, ldaptest.Seed{})
	ctx := t.Context()
	d, _ := newTestDirectory(t, ldapADConfig(s))
	if err := d.Ping(ctx); err != nil {
		t.Fatalf("Ping while up: %v", err)
	}
	s.Stop()
	for name, call := range map[string]func() error{
		"Ping": func() error { return d.Ping(ctx) },
		"Authenticate": func() error {
			_, err := d.Authenticate(ctx, ldaptest.IvanovLogin, ldaptest.Password)
			return err
		},
		"Users":  func() error { return d.Users(ctx, func(DirectoryUser) error { return nil }) },
		"Groups": func() error { return d.Groups(ctx, func(DirectoryGroup) error { return nil }) },
	} {
		if err := call(); !errors.Is(err, ErrDirectoryDown) {
			t.Errorf("%s after slapd stopped = %v, want ErrDirectoryDown", name, err)
		}
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.Ping(cctx); !errors.Is(err, context.Canceled) || errors.Is(err, ErrDirectoryDown) {
		t.Errorf("Ping with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestNewDirectoryValidates(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := config.LDAP{
		URL: "ldaps://dc1.corp.example:636", BaseDN: "DC=corp,DC=example",
		BindDN: "CN=svc,DC=corp,DC=example", BindPassword: "Bind-Secret-5", ActiveDirectory: true,
	}
	for _, tc := range []struct {
		name   string
		change func(*config.LDAP)
		want   string // "" means valid
	}{
		{"good", func(*config.LDAP) {}, ""},
		{"loopback in clear", func(c *config.LDAP) { c.URL = "ldap://127.0.0.1:389" }, ""},
		{"StartTLS", func(c *config.LDAP) { c.URL, c.StartTLS = "ldap://dc1:389", true }, ""},
		{"anonymous", func(c *config.LDAP) { c.BindDN, c.BindPassword = "", "" }, ""},
		{"no URL", func(c *config.LDAP) { c.URL = "" }, "url"},
		{"http URL", func(c *config.LDAP) { c.URL = "http://dc1" }, "url"},
		{"remote in clear", func(c *config.LDAP) { c.URL = "ldap://dc1:389" }, "in clear"},
		{"ldaps with StartTLS", func(c *config.LDAP) { c.StartTLS = true }, "start_tls"},
		{"no base DN", func(c *config.LDAP) { c.BaseDN = "" }, "base_dn"},
		{"bad base DN", func(c *config.LDAP) { c.BaseDN = "not a dn" }, "base_dn"},
		{"bad group base", func(c *config.LDAP) { c.GroupBaseDN = "=x" }, "group_base_dn"},
		{"bind DN without password", func(c *config.LDAP) { c.BindPassword = "" }, "bind_password"},
		{"bad user filter", func(c *config.LDAP) { c.UserFilter = "(objectClass=user" }, "user_filter"},
		{"bad group filter", func(c *config.LDAP) { c.GroupFilter = "objectClass=group" }, "group_filter"},
		{"injected login attribute", func(c *config.LDAP) { c.LoginAttributes = []string{"uid)(x"} }, "login attribute"},
		{"page size", func(c *config.LDAP) { c.PageSize = -1 }, "page_size"},
		{"timeout", func(c *config.LDAP) { c.Timeout = -time.Second }, "timeout"},
		{"missing CA file", func(c *config.LDAP) { c.CAFile = filepath.Join(dir, "nope.pem") }, "ca_file"},
		{"CA file without PEM", func(c *config.LDAP) { c.CAFile = notPEM }, "no PEM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.change(&cfg)
			d, err := NewDirectory(cfg, nil)
			if tc.want == "" {
				if err != nil || d == nil {
					t.Fatalf("NewDirectory = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewDirectory = %v, want an error about %q", err, tc.want)
			}
			if strings.Contains(err.Error(), cfg.BindPassword) && cfg.BindPassword != "" {
				t.Errorf("error shows the bind password: %v", err)
			}
		})
	}
}

func TestNewDirectoryDefaults(t *testing.T) {
	base := config.LDAP{URL: "ldaps://dc1:636", BaseDN: "OU=Corp,DC=corp,DC=example"}
	for _, tc := range []struct {
		name                            string
		ad                              bool
		userFilter, groupFilter, idAttr string
		loginAttrs                      []string
	}{
		{"AD", true, adUserFilter, adGroupFilter, "objectGUID", []string{"sAMAccountName", "userPrincipalName"}},
		{"generic", false, genericUserFilter, genericGroupFilter, "entryUUID", []string{"uid"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			cfg.ActiveDirectory = tc.ad
			d, err := NewDirectory(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d.userFilter != tc.userFilter || d.groupFilter != tc.groupFilter || d.idAttr != tc.idAttr ||
				!slices.Equal(d.loginAttrs, tc.loginAttrs) {
				t.Errorf("defaults = %q %q %q %q", d.userFilter, d.groupFilter, d.idAttr, d.loginAttrs)
			}
			if !slices.Contains(d.userAttrs, tc.idAttr) {
				t.Errorf("user attributes %q do not ask for %s", d.userAttrs, tc.idAttr)
			}
			if d.pageSize != defaultLDAPPageSize || d.timeout != defaultLDAPTimeout || d.groupBase != cfg.BaseDN {
				t.Errorf("page size %d, timeout %s, group base %q", d.pageSize, d.timeout, d.groupBase)
			}
			if d.domain != "corp.example" {
				t.Errorf("domain = %q", d.domain)
			}
		})
	}
}
