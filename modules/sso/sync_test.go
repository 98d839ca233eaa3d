package sso_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/modules/sso"
	"github.com/elph-server/elph/modules/sso/ldaptest"
	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
)

// syncGeneratedUsers is more than ldaptest.SizeLimit, so the sync has to
// page.
const syncGeneratedUsers = 2500

// directoryAccounts lists every directory account (disabled ones too when
// all is set).
func (e *testEnv) directoryAccounts(t *testing.T, all bool) []sso.User {
	t.Helper()
	var out []sso.User
	var after int64
	for {
		page, err := e.mod.Store().ListUsers(t.Context(), sso.ListUsersOptions{After: after, Limit: 500, IncludeDisabled: all, Source: sso.SourceLDAP})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page...)
		if len(page) < 500 {
			return out
		}
		after = page[len(page)-1].ID
	}
}

// groupNames lists the groups of a user as the store has them.
func (e *testEnv) groupNames(t *testing.T, userID int64) []string {
	t.Helper()
	groups, err := e.mod.Store().UserGroups(t.Context(), userID)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, g := range groups {
		names = append(names, g.Name)
	}
	return names
}

// sync runs a directory sync after moving the clock on (syncs happen at
// intervals, and each one records its own time).
func (e *testEnv) sync(t *testing.T, dry bool) sso.SyncSummary {
	t.Helper()
	e.clock.Advance(time.Minute)
	sum, err := e.mod.SyncDirectory(t.Context(), sso.SyncOptions{DryRun: dry})
	if err != nil {
		t.Fatalf("SyncDirectory(dry %v): %v", dry, err)
	}
	return sum
}

// wantCounts compares the counters of a summary.
func wantCounts(t *testing.T, got, want sso.SyncSummary) {
	t.Helper()
	got.Started, got.Finished = time.Time{}, time.Time{}
	if got != want {
		t.Errorf("summary = %+v\n      want %+v", got, want)
	}
}

func TestSyncDirectory(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		// The slowest test of the package: its two databases, each with a
		// directory of its own (the test changes it), run side by side.
		t.Parallel()
		s := ldaptest.Start(t, ldaptest.Seed{Users: syncGeneratedUsers})
		e := newEnv(t, db, envOptions{cfg: func(c *config.SSO) {
			c.LDAP = ldapConfig(s, false)
			c.LDAP.AdminGroupDN = ldaptest.ElphAdminsDN
		}})
		ctx := t.Context()
		total := syncGeneratedUsers + ldaptest.FixedUsers
		synced := subscribe(t, e.bus, sso.TopicDirectorySynced)
		revoked := subscribe(t, e.bus, sso.TopicSessionRevoked)

		// A dry run reads everything and writes nothing.
		var calls, lastDone int
		sum, err := e.mod.SyncDirectory(ctx, sso.SyncOptions{DryRun: true, Progress: func(done, expected int) {
			calls++
			if done != lastDone+1 || expected != 0 {
				t.Errorf("progress(%d, %d) after %d", done, expected, lastDone)
			}
			lastDone = done
		}})
		if err != nil {
			t.Fatal(err)
		}
		wantCounts(t, sum, sso.SyncSummary{DryRun: true, Groups: ldaptest.FixedGroups, Seen: total, Created: total})
		if calls != total {
			t.Errorf("progress called %d times, want %d", calls, total)
		}
		if got := e.directoryAccounts(t, true); len(got) != 0 {
			t.Fatalf("a dry run created %d accounts", len(got))
		}

		// The real run creates everyone and tells the bus.
		sum = e.sync(t, false)
		wantCounts(t, sum, sso.SyncSummary{Groups: ldaptest.FixedGroups, Seen: total, Created: total})
		if !sum.Started.Equal(e.clock.Now()) || sum.Finished.Before(sum.Started) {
			t.Errorf("summary times %v..%v, clock %v", sum.Started, sum.Finished, e.clock.Now())
		}
		ev := synced.waitFor(t, "directory synced event", func(bus.Event) bool { return true })
		want, _ := json.Marshal(sum)
		if ev.Topic != sso.TopicDirectorySynced || ev.Key != "directory" || string(ev.Payload) != string(want) {
			t.Errorf("event %s %q %s, want the summary %s (the dry run publishes nothing)", ev.Topic, ev.Key, ev.Payload, want)
		}
		if got := e.directoryAccounts(t, false); len(got) != total {
			t.Fatalf("%d enabled directory accounts, want %d", len(got), total)
		}

		// Nested groups are flattened: Backend ⊂ Engineering ⊂ Staff, the
		// LoopA/LoopB cycle, and the groupOfUniqueNames Legacy.
		ivanov := e.userByLogin(t, ldaptest.IvanovLogin)
		if got, want := e.groupNames(t, ivanov.ID), []string{"Backend", "Engineering", "Legacy", "LoopA", "LoopB", "Staff"}; !slices.Equal(got, want) {
			t.Errorf("ivanov's groups = %v, want %v", got, want)
		}
		if ivanov.DisplayName != ldaptest.IvanovDisplayName || ivanov.Role != sso.RoleUser || len(ivanov.Phones) != 3 {
			t.Errorf("ivanov = %+v", ivanov)
		}
		petrova := e.userByLogin(t, ldaptest.PetrovaLogin)
		if got, want := e.groupNames(t, petrova.ID), []string{"ElphAdmins", "Engineering", "Staff"}; !slices.Equal(got, want) || petrova.Role != sso.RoleAdmin {
			t.Errorf("petrova: role %s, groups %v; want admin in %v", petrova.Role, got, want)
		}
		u7 := e.userByLogin(t, ldaptest.GeneratedLogin(7))
		if got := e.groupNames(t, u7.ID); len(got) != 0 || u7.Role != sso.RoleUser {
			t.Errorf("%s: role %s, groups %v", u7.Login, u7.Role, got)
		}
		me := e.wantTokenAccepted(t, e.login(t, ldaptest.IvanovLogin, ldaptest.Password, "laptop").AccessToken)
		if !slices.Equal(me.Groups, []string{"Backend", "Engineering", "Legacy", "LoopA", "LoopB", "Staff"}) {
			t.Errorf("/me groups = %v", me.Groups)
		}

		// Nothing changed: everyone is unchanged.
		wantCounts(t, e.sync(t, false), sso.SyncSummary{Groups: ldaptest.FixedGroups, Seen: total, Unchanged: total})

		// Two people leave the directory while logged in.
		gone := []string{ldaptest.GeneratedLogin(1), ldaptest.GeneratedLogin(2)}
		var sessions []tokenPair
		for _, login := range gone {
			sessions = append(sessions, e.login(t, login, ldaptest.Password, "laptop"))
		}
		conn := ldapAdmin(t, s)
		for i := range gone {
			if err := conn.Del(ldap.NewDelRequest(generatedDN(i+1), nil)); err != nil {
				t.Fatalf("delete %s: %v", generatedDN(i+1), err)
			}
		}
		wantCounts(t, e.sync(t, false), sso.SyncSummary{Groups: ldaptest.FixedGroups, Seen: total - 2, Unchanged: total - 2, Disabled: 2})
		for i, login := range gone {
			u := e.userByLogin(t, login)
			if !u.Disabled || u.DisabledReason != "removed from directory" {
				t.Errorf("%s after leaving: disabled %v (%q), want disabled, not deleted", login, u.Disabled, u.DisabledReason)
			}
			if p := revoked.revokedEvent(t, sessions[i].SessionID); p.UserID != u.ID || p.Reason != "account disabled" {
				t.Errorf("revocation event = %+v", p)
			}
			e.wantTokenRejected(t, sessions[i].AccessToken)
			e.refresh(t, sessions[i].RefreshToken).wantError(t, http.StatusUnauthorized, "session_revoked")
			e.tryLogin(t, login, ldaptest.Password).wantError(t, http.StatusUnauthorized, "bad_credentials")
		}
		if got := e.directoryAccounts(t, false); len(got) != total-2 {
			t.Errorf("%d enabled directory accounts, want %d", len(got), total-2)
		}
		if got := e.directoryAccounts(t, true); len(got) != total {
			t.Errorf("%d directory accounts in all, want %d (none deleted)", len(got), total)
		}

		// A directory that suddenly returns nobody (a wrong filter, an
		// emptied OU) must not disable everyone.
		z := newEnv(t, db, envOptions{clock: e.clock, cfg: func(c *config.SSO) {
			c.LDAP = ldapConfig(s, false)
			c.LDAP.UserFilter = "(&(objectClass=inetOrgPerson)(uid=no-such-person))"
		}})
		e.clock.Advance(time.Minute)
		if sum, err := z.mod.SyncDirectory(ctx, sso.SyncOptions{}); err == nil || !strings.Contains(err.Error(), "no users") || sum.Disabled != 0 {
			t.Errorf("sync of an empty directory = %+v, %v; want an error and nothing disabled", sum, err)
		}
		if got := e.directoryAccounts(t, false); len(got) != total-2 {
			t.Errorf("%d enabled directory accounts after the refused sync, want %d", len(got), total-2)
		}
		e.login(t, ldaptest.IvanovLogin, ldaptest.Password, "laptop")
	})
}

// TestSyncDirectoryActiveDirectory: in Active Directory mode the sync reads
// userAccountControl and accountExpires, so people disabled in the directory
// are disabled in Elph (with their sessions ended) and enabled again when
// the directory enables them; an account an admin disabled in Elph stays so.
func TestSyncDirectoryActiveDirectory(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		s := ldaptest.Start(t, ldaptest.Seed{Users: 3})
		e := newEnv(t, db, envOptions{cfg: func(c *config.SSO) { c.LDAP = ldapConfig(s, true) }})
		ctx := t.Context()
		total := 3 + ldaptest.FixedUsers
		revoked := subscribe(t, e.bus, sso.TopicSessionRevoked)
		changed := subscribe(t, e.bus, sso.TopicUserChanged)

		// sidorov (userAccountControl 514) and kuznetsov (expired) arrive disabled.
		wantCounts(t, e.sync(t, false), sso.SyncSummary{Groups: ldaptest.FixedGroups, Seen: total, Created: total, Disabled: 2})
		for login, reason := range map[string]string{ldaptest.SidorovLogin: "disabled", ldaptest.KuznetsovLogin: "expired"} {
			if u := e.userByLogin(t, login); !u.Disabled || u.DisabledReason != reason {
				t.Errorf("%s: disabled %v (%q), want %q", login, u.Disabled, u.DisabledReason, reason)
			}
		}
		ivanov := e.userByLogin(t, ldaptest.IvanovLogin)
		if ivanov.ExternalID != ldaptest.IvanovGUID || ivanov.Disabled {
			t.Errorf("ivanov = %+v", ivanov)
		}

		// u0002 is disabled in the directory and u0003 removed, both while
		// logged in.
		u2, u3 := ldaptest.GeneratedLogin(2), ldaptest.GeneratedLogin(3)
		s2 := e.login(t, u2, ldaptest.Password, "laptop")
		s3 := e.login(t, u3, ldaptest.Password, "laptop")
		conn := ldapAdmin(t, s)
		setUAC := func(i int, v string) {
			t.Helper()
			req := ldap.NewModifyRequest(generatedDN(i), nil)
			req.Replace("userAccountControl", []string{v})
			if err := conn.Modify(req); err != nil {
				t.Fatalf("modify %s: %v", generatedDN(i), err)
			}
		}
		setUAC(2, "514")
		if err := conn.Del(ldap.NewDelRequest(generatedDN(3), nil)); err != nil {
			t.Fatal(err)
		}

		// A dry run predicts it and changes nothing.
		wantCounts(t, e.sync(t, true), sso.SyncSummary{DryRun: true, Groups: ldaptest.FixedGroups, Seen: total - 1, Updated: 1, Unchanged: total - 2, Disabled: 2})
		if u := e.userByLogin(t, u2); u.Disabled {
			t.Fatal("a dry run disabled an account")
		}
		e.wantTokenAccepted(t, s2.AccessToken)

		wantCounts(t, e.sync(t, false), sso.SyncSummary{Groups: ldaptest.FixedGroups, Seen: total - 1, Updated: 1, Unchanged: total - 2, Disabled: 2})
		for login, reason := range map[string]string{u2: "disabled", u3: "removed from directory"} {
			if u := e.userByLogin(t, login); !u.Disabled || u.DisabledReason != reason {
				t.Errorf("%s: disabled %v (%q), want %q", login, u.Disabled, u.DisabledReason, reason)
			}
		}
		for _, p := range []tokenPair{s2, s3} {
			if ev := revoked.revokedEvent(t, p.SessionID); ev.UserID != p.User.ID || ev.Reason != "account disabled" {
				t.Errorf("revocation event = %+v", ev)
			}
			e.wantTokenRejected(t, p.AccessToken)
			changed.waitFor(t, "user disabled event", func(ev bus.Event) bool {
				var c sso.UserChanged
				return json.Unmarshal(ev.Payload, &c) == nil && c.UserID == p.User.ID && c.Change == "disabled" && c.Disabled
			})
		}
		e.tryLogin(t, u2, ldaptest.Password).wantError(t, http.StatusForbidden, "account_disabled")

		// Enabled in the directory again, enabled in Elph again.
		setUAC(2, "512")
		wantCounts(t, e.sync(t, false), sso.SyncSummary{Groups: ldaptest.FixedGroups, Seen: total - 1, Updated: 1, Unchanged: total - 2})
		if u := e.userByLogin(t, u2); u.Disabled || u.DisabledReason != "" {
			t.Errorf("%s after the directory enabled it: %+v", u2, u)
		}
		e.login(t, u2, ldaptest.Password, "laptop")

		// An admin's decision in Elph outlasts the directory's, and a dry
		// run does not report it as a change to come.
		u1 := e.userByLogin(t, ldaptest.GeneratedLogin(1))
		if err := e.mod.SetDisabled(ctx, u1.ID, true, "left the company"); err != nil {
			t.Fatal(err)
		}
		wantCounts(t, e.sync(t, true), sso.SyncSummary{DryRun: true, Groups: ldaptest.FixedGroups, Seen: total - 1, Unchanged: total - 1})
		wantCounts(t, e.sync(t, false), sso.SyncSummary{Groups: ldaptest.FixedGroups, Seen: total - 1, Unchanged: total - 1})
		if u := e.userByLogin(t, u1.Login); !u.Disabled || u.DisabledReason != "left the company" {
			t.Errorf("%s after a sync: %+v; want still disabled by the admin", u1.Login, u)
		}
		e.tryLogin(t, u1.Login, ldaptest.Password).wantError(t, http.StatusForbidden, "account_disabled")
	})
}

// TestSyncDirectoryRefusals: a sync needs the directory, and only one runs
// at a time.
func TestSyncDirectoryRefusals(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		plain := newEnv(t, db, envOptions{})
		if _, err := plain.mod.SyncDirectory(t.Context(), sso.SyncOptions{}); err == nil {
			t.Error("a sync without a directory configured succeeded")
		}
		down := newEnv(t, db, envOptions{cfg: func(c *config.SSO) {
			c.LDAP = config.LDAP{Enabled: true, URL: closedLDAPURL(t), BaseDN: ldaptest.BaseDN, Timeout: 5 * time.Second}
		}})
		if _, err := down.mod.SyncDirectory(t.Context(), sso.SyncOptions{}); !errors.Is(err, sso.ErrDirectoryDown) {
			t.Errorf("sync with the directory down = %v, want ErrDirectoryDown", err)
		}
	})
}
