package sso_test

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/modules/sso"
	"github.com/elph-server/elph/modules/sso/ldaptest"
	"github.com/elph-server/elph/platform/auth"
	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
)

var generatedPassword = regexp.MustCompile(`(?m)^\s*password:\s+(\S+)\s*$`)

func TestInitialAdmin(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		noPassword := func(c *config.SSO) { c.InitialAdminPass = "" }

		first := newEnv(t, db, envOptions{cfg: noPassword})
		out := first.out.String()
		m := generatedPassword.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no generated password printed; Out:\n%s", out)
		}
		pw := m[1]
		if len(pw) < 20 {
			t.Errorf("generated password %q is short", pw)
		}
		if !strings.Contains(out, "login:    admin") {
			t.Errorf("Out does not name the admin login:\n%s", out)
		}
		if strings.Contains(first.log.String(), pw) {
			t.Error("the generated password was logged")
		}
		p := first.login(t, "admin", pw, "console")
		if p.User.Login != "admin" || p.User.Role != sso.RoleAdmin || p.User.Source != sso.SourceLocal {
			t.Errorf("admin = %+v", p.User)
		}
		first.tryLogin(t, "admin", "not-"+pw).wantError(t, http.StatusUnauthorized, "bad_credentials")

		// A second node (or a restart) on the same database finds the admin.
		second := newEnv(t, db, envOptions{cfg: noPassword})
		if s := second.out.String(); s != "" {
			t.Errorf("second start printed:\n%s", s)
		}
		if n, err := second.mod.Store().CountAdmins(t.Context()); err != nil || n != 1 {
			t.Errorf("CountAdmins = %d, %v; want 1", n, err)
		}
		users, err := second.mod.Store().ListUsers(t.Context(), sso.ListUsersOptions{IncludeDisabled: true})
		if err != nil || len(users) != 1 {
			t.Fatalf("users after two starts = %+v, %v; want the one admin", users, err)
		}
		second.login(t, "admin", pw, "console")
	})

	t.Run("configured password", func(t *testing.T) {
		storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
			e := newEnv(t, db, envOptions{}) // testConfig sets InitialAdminPass
			if s := e.out.String(); s != "" {
				t.Errorf("printed although the password was configured:\n%s", s)
			}
			if strings.Contains(e.log.String(), adminPassword) {
				t.Error("the configured password was logged")
			}
			p := e.login(t, "admin", adminPassword, "console")
			if p.User.Role != sso.RoleAdmin {
				t.Errorf("role = %q", p.User.Role)
			}
		})
	})
}

// TestLockout: failures are counted per account and per client address,
// and checked before anything else, so a locked-out guesser never reaches
// the directory (which is configured here but unreachable).
func TestLockout(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, envOptions{cfg: func(c *config.SSO) {
			c.Lockout = config.Lockout{AccountMaxFailures: 3, AccountWindow: 15 * time.Minute, IPMaxFailures: 5, IPWindow: 15 * time.Minute}
			c.LDAP = config.LDAP{Enabled: true, URL: closedLDAPURL(t), BaseDN: ldaptest.BaseDN, Timeout: 5 * time.Second}
		}})
		e.createUser(t, sso.NewUser{Login: "alice", Phones: []sso.Phone{{Number: "+7 495 111-22-33"}}})
		e.createUser(t, sso.NewUser{Login: "bob", Password: otherPassword})
		locked := func() float64 {
			return counterValue(t, e.reg, "elph_sso_logins_total", map[string]string{"result": "locked_out"})
		}

		// A login Elph does not know goes to the directory, which is down.
		e.tryLogin(t, "ghost", userPassword).wantError(t, http.StatusServiceUnavailable, "directory_unavailable")

		// Three wrong passwords, typed in any case: one budget.
		for _, login := range []string{"alice", "ALICE", "Alice"} {
			e.tryLogin(t, login, "wrong-password-1").wantError(t, http.StatusUnauthorized, "bad_credentials")
		}
		// Now even the right password is refused, however the account is named.
		for _, login := range []string{"alice", "+7 (495) 111-22-33"} {
			e.tryLogin(t, login, userPassword).wantError(t, http.StatusTooManyRequests, "too_many_attempts")
		}
		if got := locked(); got != 2 {
			t.Errorf("locked_out logins = %v, want 2", got)
		}

		// Another account from the same address still works (4 failures
		// from it so far, the limit is 5)...
		e.tryLogin(t, "bob", "wrong-password-2").wantError(t, http.StatusUnauthorized, "bad_credentials")
		e.login(t, "bob", otherPassword, "laptop")
		// ...until the address reaches its limit.
		e.tryLogin(t, "bob", "wrong-password-3").wantError(t, http.StatusUnauthorized, "bad_credentials")
		e.tryLogin(t, "bob", otherPassword).wantError(t, http.StatusTooManyRequests, "too_many_attempts")
		// The address limit is checked before the directory: 429, not 503.
		e.tryLogin(t, "ghost", userPassword).wantError(t, http.StatusTooManyRequests, "too_many_attempts")
		if got := locked(); got != 4 {
			t.Errorf("locked_out logins = %v, want 4", got)
		}

		// Once the windows have passed, the right password works again.
		e.clock.Advance(15*time.Minute + time.Second)
		p := e.login(t, "alice", userPassword, "laptop")
		if p.User.Login != "alice" {
			t.Errorf("logged in as %q", p.User.Login)
		}
		e.tryLogin(t, "ghost", userPassword).wantError(t, http.StatusServiceUnavailable, "directory_unavailable")
	})
}

// TestRevocationReachesOtherNode: two nodes share the database and (through
// a bridge, as NATS would carry it) the bus, each with its own revocation
// set. A logout on one closes the session's Done channel on the other at
// once, which is how open WebSockets of the session end.
func TestRevocationReachesOtherNode(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		clock := newTestClock()
		keep := testConfig().AccessTokenTTL + time.Minute
		revA, revB := auth.NewRevocations(keep, clock.Now), auth.NewRevocations(keep, clock.Now)
		a := newEnv(t, db, envOptions{clock: clock, revocations: revA})
		busB := newBus(t)
		bridge(t, a.bus, busB)
		b := newEnv(t, db, envOptions{clock: clock, bus: busB, revocations: revB})
		if s := b.out.String(); s != "" {
			t.Errorf("node B printed:\n%s", s)
		}
		a.createUser(t, sso.NewUser{Login: "carol"})

		p := a.login(t, "carol", userPassword, "desktop")
		done, stop := revB.Done(p.SessionID)
		defer stop()
		// Node B trusts node A's signing key (from the shared database).
		if pr, err := b.mod.Verifier().Verify(t.Context(), p.AccessToken); err != nil || pr.SessionID != p.SessionID {
			t.Fatalf("node B Verify before logout = %+v, %v", pr, err)
		}
		b.wantTokenAccepted(t, p.AccessToken)
		select {
		case <-done:
			t.Fatal("Done closed before the session was revoked")
		default:
		}

		a.call(t, http.MethodPost, "/sso/v1/logout", p.AccessToken, nil).wantStatus(t, http.StatusNoContent)
		waitClosed(t, done, "node B's Done channel")
		if _, err := b.mod.Verifier().Verify(t.Context(), p.AccessToken); !errors.Is(err, auth.ErrRevoked) {
			t.Errorf("node B Verify after logout = %v, want ErrRevoked", err)
		}
		b.wantTokenRejected(t, p.AccessToken)
		a.wantTokenRejected(t, p.AccessToken)

		// And the other way round: a session ended on B ends on A.
		q := a.login(t, "carol", userPassword, "phone")
		doneA, stopA := revA.Done(q.SessionID)
		defer stopA()
		b.call(t, http.MethodDelete, "/sso/v1/sessions/"+q.SessionID, q.AccessToken, nil).wantStatus(t, http.StatusNoContent)
		waitClosed(t, doneA, "node A's Done channel")
		a.wantTokenRejected(t, q.AccessToken)
	})
}

func TestCreateLocalUser(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, envOptions{})
		ctx := t.Context()
		ok := sso.NewUser{Login: "Петров", DisplayName: "Петров Пётр", Email: "petrov@corp.example",
			Phones: []sso.Phone{{Number: "+7 (495) 222-33-44", Kind: sso.PhoneWork}, {Number: "2001"}}, Password: userPassword}
		manyPhones := make([]sso.Phone, 17)
		for i := range manyPhones {
			manyPhones[i] = sso.Phone{Number: fmt.Sprintf("30%02d", i)}
		}
		for _, tc := range []struct {
			name string
			edit func(*sso.NewUser)
		}{
			{"empty login", func(n *sso.NewUser) { n.Login = "  " }},
			{"login with a space", func(n *sso.NewUser) { n.Login = "a b" }},
			{"login with a slash", func(n *sso.NewUser) { n.Login = `corp\a` }},
			{"login too long", func(n *sso.NewUser) { n.Login = strings.Repeat("я", 129) }},
			{"phone-like login", func(n *sso.NewUser) { n.Login = "2002" }},
			{"phone-like login with punctuation", func(n *sso.NewUser) { n.Login = "+7(495)222-33-45" }},
			{"bad e-mail", func(n *sso.NewUser) { n.Email = "petrov at corp" }},
			{"e-mail with a name", func(n *sso.NewUser) { n.Email = "Petrov <petrov@corp.example>" }},
			{"weak password: short", func(n *sso.NewUser) { n.Password = "Short-1" }},
			{"weak password: repeated", func(n *sso.NewUser) { n.Password = strings.Repeat("x", 20) }},
			{"no password", func(n *sso.NewUser) { n.Password = "" }},
			{"bad role", func(n *sso.NewUser) { n.Role = "root" }},
			{"too many phones", func(n *sso.NewUser) { n.Phones = manyPhones }},
			{"bad phone", func(n *sso.NewUser) { n.Phones = []sso.Phone{{Number: "12ab"}} }},
			{"bad phone kind", func(n *sso.NewUser) { n.Phones = []sso.Phone{{Number: "2003", Kind: "fax"}} }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				n := ok
				n.Phones = slices.Clone(ok.Phones)
				tc.edit(&n)
				u, err := e.mod.CreateLocalUser(ctx, n)
				var ve *sso.ValidationError
				if !errors.As(err, &ve) || ve.Error() == "" {
					t.Fatalf("CreateLocalUser = %+v, %v; want a *ValidationError", u, err)
				}
			})
		}
		if users, _ := e.mod.Store().ListUsers(ctx, sso.ListUsersOptions{IncludeDisabled: true}); len(users) != 1 {
			t.Fatalf("invalid input created accounts: %+v", users)
		}

		events := subscribe(t, e.bus, sso.TopicUserChanged)
		u := e.createUser(t, ok)
		if u.ID <= 0 || u.Login != "Петров" || u.Role != sso.RoleUser || u.Source != sso.SourceLocal {
			t.Errorf("created %+v", u)
		}
		wantPhones := []sso.Phone{{Number: "2001", Kind: sso.PhoneExtension}, {Number: "+74952223344", Kind: sso.PhoneWork}}
		if !slices.Equal(u.Phones, wantPhones) {
			t.Errorf("phones = %v, want %v", u.Phones, wantPhones)
		}
		events.waitFor(t, "user created event", func(ev bus.Event) bool {
			return ev.Topic == sso.TopicUserChanged && ev.Key == fmt.Sprint(u.ID) && strings.Contains(string(ev.Payload), `"created"`)
		})

		for _, tc := range []struct {
			name string
			n    sso.NewUser
		}{
			{"same login in another case", sso.NewUser{Login: "ПЕТРОВ"}},
			{"same phone number", sso.NewUser{Login: "sidorov", Phones: []sso.Phone{{Number: "20-01"}}}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				tc.n.Password = userPassword
				if _, err := e.mod.CreateLocalUser(ctx, tc.n); !errors.Is(err, sso.ErrConflict) {
					t.Fatalf("CreateLocalUser = %v, want ErrConflict", err)
				}
			})
		}
	})
}

func TestLastAdmin(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, envOptions{})
		ctx := t.Context()
		admin := e.userByLogin(t, "admin")
		var ve *sso.ValidationError
		if err := e.mod.SetDisabled(ctx, admin.ID, true, ""); !errors.As(err, &ve) {
			t.Errorf("disable the last admin = %v, want a *ValidationError", err)
		}
		if err := e.mod.SetRole(ctx, admin.ID, sso.RoleUser); !errors.As(err, &ve) {
			t.Errorf("demote the last admin = %v, want a *ValidationError", err)
		}
		if u := e.userByLogin(t, "admin"); u.Disabled || u.Role != sso.RoleAdmin {
			t.Fatalf("the last admin changed: %+v", u)
		}
		if err := e.mod.SetRole(ctx, admin.ID, "root"); !errors.As(err, &ve) {
			t.Errorf("SetRole(root) = %v, want a *ValidationError", err)
		}

		// With a second admin, either may go.
		second := e.createUser(t, sso.NewUser{Login: "admin2", Role: sso.RoleAdmin})
		if err := e.mod.SetRole(ctx, admin.ID, sso.RoleUser); err != nil {
			t.Fatalf("demote with another admin left: %v", err)
		}
		if err := e.mod.SetDisabled(ctx, second.ID, true, ""); !errors.As(err, &ve) {
			t.Errorf("disable the admin who is now the last = %v, want a *ValidationError", err)
		}
	})
}

func TestSetPasswordEndsOtherSessions(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, envOptions{})
		ctx := t.Context()
		u := e.createUser(t, sso.NewUser{Login: "dave"})
		events := subscribe(t, e.bus, sso.TopicSessionRevoked)
		keep, err := e.loginDirect(t, "dave", userPassword)
		if err != nil {
			t.Fatal(err)
		}
		other, err := e.loginDirect(t, "dave", userPassword)
		if err != nil {
			t.Fatal(err)
		}

		var ve *sso.ValidationError
		if err := e.mod.SetPassword(ctx, u.ID, "too-short", keep.Session.ID); !errors.As(err, &ve) {
			t.Fatalf("weak password = %v, want a *ValidationError", err)
		}
		if err := e.mod.SetPassword(ctx, u.ID, otherPassword, keep.Session.ID); err != nil {
			t.Fatal(err)
		}
		if p := events.revokedEvent(t, other.Session.ID); p.UserID != u.ID || p.Reason != "password changed" {
			t.Errorf("revocation event = %+v", p)
		}
		sessions, err := e.mod.Store().ListSessions(ctx, u.ID, false)
		if err != nil || len(sessions) != 1 || sessions[0].ID != keep.Session.ID {
			t.Fatalf("sessions after the change = %+v, %v; want only the kept one", sessions, err)
		}
		e.wantTokenAccepted(t, keep.AccessToken)
		e.wantTokenRejected(t, other.AccessToken)
		e.refresh(t, other.RefreshToken).wantError(t, http.StatusUnauthorized, "session_revoked")

		if _, err := e.loginDirect(t, "dave", userPassword); !errors.Is(err, sso.ErrBadCredentials) {
			t.Errorf("old password: %v, want ErrBadCredentials", err)
		}
		if _, err := e.loginDirect(t, "dave", otherPassword); err != nil {
			t.Errorf("new password: %v", err)
		}
		if err := e.mod.SetPassword(ctx, 999999, otherPassword, ""); !errors.Is(err, sso.ErrNotFound) {
			t.Errorf("SetPassword of nobody = %v, want ErrNotFound", err)
		}
	})
}

// TestLDAPLoginActiveDirectory logs directory people in through the HTTP
// API, in Active Directory mode (sAMAccountName, objectGUID and the
// userAccountControl / accountExpires checks).
func TestLDAPLoginActiveDirectory(t *testing.T) {
	s := ldaptest.Start(t, ldaptest.Seed{})
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, envOptions{cfg: func(c *config.SSO) {
			c.LDAP = ldapConfig(s, true)
			c.Lockout.AccountMaxFailures = 3
		}})
		ctx := t.Context()

		if _, _, err := e.mod.Store().UserByLogin(ctx, ldaptest.IvanovLogin); !errors.Is(err, sso.ErrNotFound) {
			t.Fatalf("ivanov exists before his first login: %v", err)
		}
		p := e.login(t, ldaptest.IvanovLogin, ldaptest.Password, "laptop")
		u := p.User
		wantPhones := []sso.Phone{
			{Number: ldaptest.IvanovIPPhone, Kind: sso.PhoneExtension},
			{Number: "+79120000001", Kind: sso.PhoneMobile},
			{Number: "+74951234567", Kind: sso.PhoneWork},
		}
		if u.Source != sso.SourceLDAP || u.Login != ldaptest.IvanovLogin || u.DisplayName != ldaptest.IvanovDisplayName ||
			u.Email != ldaptest.IvanovMail || u.Department != ldaptest.IvanovDept || u.Title != ldaptest.IvanovTitle ||
			u.Role != sso.RoleUser || u.Disabled {
			t.Errorf("provisioned account = %+v", u)
		}
		if !slices.Equal(u.Phones, wantPhones) {
			t.Errorf("phones = %v, want %v", u.Phones, wantPhones)
		}
		stored, err := e.mod.Store().UserByID(ctx, u.ID)
		if err != nil || stored.ExternalID != ldaptest.IvanovGUID || !sso.SameDN(stored.DN, ldaptest.IvanovDN) || stored.SyncedAt == nil {
			t.Errorf("stored account = %+v, %v", stored, err)
		}
		if _, hash, _ := e.mod.Store().UserByLogin(ctx, ldaptest.IvanovLogin); hash != "" {
			t.Error("a directory account got a local password hash")
		}
		me := e.wantTokenAccepted(t, p.AccessToken)
		if me.ID != u.ID || me.DisplayName != ldaptest.IvanovDisplayName || me.SessionID != p.SessionID {
			t.Errorf("/me = %+v", me)
		}

		// Once known, he logs in by any of his numbers and the directory's
		// other spellings of his login.
		for _, login := range []string{ldaptest.IvanovIPPhone, "+7 912 000-00-01", "IVANOV", `CORP\ivanov`, ldaptest.IvanovUPN} {
			if q := e.login(t, login, ldaptest.Password, "phone"); q.User.ID != u.ID {
				t.Errorf("login %q reached account %d, want %d", login, q.User.ID, u.ID)
			}
		}

		for _, tc := range []struct{ login, code string }{
			{ldaptest.SidorovLogin, "account_disabled"},
			{ldaptest.KuznetsovLogin, "account_expired"},
		} {
			e.tryLogin(t, tc.login, ldaptest.Password).wantError(t, http.StatusForbidden, tc.code)
			if _, _, err := e.mod.Store().UserByLogin(ctx, tc.login); !errors.Is(err, sso.ErrNotFound) {
				t.Errorf("%s refused but provisioned: %v", tc.login, err)
			}
		}
		e.tryLogin(t, "nobody", ldaptest.Password).wantError(t, http.StatusUnauthorized, "bad_credentials")

		// Without an admin group the directory does not manage roles: an
		// admin's promotion in Elph survives the next login.
		admin := e.login(t, "admin", adminPassword, "console")
		e.call(t, http.MethodPatch, fmt.Sprintf("/sso/v1/users/%d", u.ID), admin.AccessToken,
			map[string]any{"role": "admin"}).wantStatus(t, http.StatusOK)
		if q := e.login(t, ldaptest.IvanovLogin, ldaptest.Password, "laptop"); q.User.Role != sso.RoleAdmin {
			t.Errorf("role after a promotion and a login = %q, want admin", q.User.Role)
		}

		// Wrong passwords count toward the lockout, whichever spelling of the
		// login they use; once locked, the directory is not asked at all.
		before := len(s.BindDNs())
		for _, login := range []string{ldaptest.IvanovLogin, `CORP\ivanov`, ldaptest.IvanovIPPhone} {
			e.tryLogin(t, login, "Wrong-Password-1").wantError(t, http.StatusUnauthorized, "bad_credentials")
		}
		for _, login := range []string{ldaptest.IvanovLogin, ldaptest.IvanovUPN, `corp\IVANOV`} {
			e.tryLogin(t, login, ldaptest.Password).wantError(t, http.StatusTooManyRequests, "too_many_attempts")
		}
		var userBinds int
		for _, dn := range s.BindDNs()[before:] {
			if !sso.SameDN(dn, ldaptest.ServiceBindDN) {
				userBinds++
				if !sso.SameDN(dn, ldaptest.IvanovDN) {
					t.Errorf("bound as %q", dn)
				}
			}
		}
		if userBinds != 3 {
			t.Errorf("%d binds as ivanov, want 3 (one per wrong password, none once locked)", userBinds)
		}
	})
}

// TestLDAPLoginGeneric: the generic mode resolves nested groups itself, so
// membership of the admin group makes an admin.
func TestLDAPLoginGeneric(t *testing.T) {
	s := ldaptest.Start(t, ldaptest.Seed{Users: 3})
	uuidText := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, envOptions{cfg: func(c *config.SSO) {
			c.LDAP = ldapConfig(s, false)
			c.LDAP.AdminGroupDN = ldaptest.ElphAdminsDN
		}})
		for _, tc := range []struct {
			login string
			role  sso.Role
			users int // status of GET /v1/users
		}{
			{ldaptest.PetrovaLogin, sso.RoleAdmin, http.StatusOK},
			{ldaptest.IvanovLogin, sso.RoleUser, http.StatusForbidden},
			{ldaptest.GeneratedLogin(2), sso.RoleUser, http.StatusForbidden},
		} {
			t.Run(tc.login, func(t *testing.T) {
				p := e.login(t, tc.login, ldaptest.Password, "laptop")
				if p.User.Role != tc.role || p.User.Source != sso.SourceLDAP || p.User.Login != tc.login {
					t.Errorf("account = %+v, want role %s", p.User, tc.role)
				}
				if got := e.call(t, http.MethodGet, "/sso/v1/users", p.AccessToken, nil).Status; got != tc.users {
					t.Errorf("GET /v1/users = %d, want %d", got, tc.users)
				}
				stored, err := e.mod.Store().UserByID(t.Context(), p.User.ID)
				if err != nil || !uuidText.MatchString(stored.ExternalID) {
					t.Errorf("ExternalID = %q (%v), want entryUUID text", stored.ExternalID, err)
				}
			})
		}
		e.tryLogin(t, ldaptest.GeneratedLogin(3), "Wrong-Password-1").wantError(t, http.StatusUnauthorized, "bad_credentials")
	})
}
