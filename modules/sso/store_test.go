package sso

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
)

// tokenHash is what the token code stores for an opaque refresh token.
func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// testTime is a fixed instant with nanoseconds and a zone, so every test
// also checks that times come back as UTC microseconds.
var testTime = time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.FixedZone("MSK", 3*3600))

func mustCreateUser(t *testing.T, s *Store, u User, hash string) User {
	t.Helper()
	if err := s.CreateUser(t.Context(), &u, hash); err != nil {
		t.Fatalf("CreateUser(%q): %v", u.Login, err)
	}
	return u
}

func TestNormalizePhone(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "+7 (495) 123-45-67", want: "+74951234567"},
		{in: "+74951234567", want: "+74951234567"},
		{in: "  8-800-555-35-35 ", want: "88005553535"},
		{in: "(495)1234567", want: "4951234567"},
		{in: "12", want: "12"},
		{in: "+12", want: "+12"},
		{in: "123456789012345678901", wantErr: true}, // 21 digits
		{in: "+12345678901234567890", want: "+12345678901234567890"},
		{in: "1", wantErr: true},
		{in: "", wantErr: true},
		{in: "+", wantErr: true},
		{in: "++7", wantErr: true},
		{in: "7+1", wantErr: true},
		{in: "495.123.45.67", wantErr: true},
		{in: "+7 495 123 45 67 доб. 12", wantErr: true},
		{in: "ivanov", wantErr: true},
		{in: "١٢٣", wantErr: true}, // non-ASCII digits
		{in: strings.Repeat("1", 10) + strings.Repeat(" ", 100), want: "1111111111"},
		{in: strings.Repeat("1-", 40), wantErr: true},
	}
	for _, tt := range tests {
		got, err := NormalizePhone(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("NormalizePhone(%q) = %q, want error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("NormalizePhone(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestStoreCreateAndLookupUser(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		s := NewStore(db)
		before := time.Now().UTC().Truncate(time.Microsecond)
		u := mustCreateUser(t, s, User{
			Login:       " Иванов ",
			DisplayName: "Иван Иванов",
			Email:       "ivanov@example.com",
			Phones: []Phone{
				{Number: "+7 (495) 123-45-67", Kind: PhoneWork},
				{Number: "12-34", Kind: PhoneExtension},
				{Number: "+74951234567", Kind: PhoneMobile}, // same number again: dropped
			},
		}, "$argon2id$hash")
		if u.ID <= 0 || u.Login != "Иванов" || u.Role != RoleUser || u.Source != SourceLocal {
			t.Errorf("created user = %+v", u)
		}
		if u.CreatedAt.Before(before) || !u.UpdatedAt.Equal(u.CreatedAt) || u.CreatedAt.Location() != time.UTC {
			t.Errorf("CreatedAt %v, UpdatedAt %v; want UTC, not before %v", u.CreatedAt, u.UpdatedAt, before)
		}
		wantPhones := []Phone{{Number: "1234", Kind: PhoneExtension}, {Number: "+74951234567", Kind: PhoneWork}}
		if !reflect.DeepEqual(u.Phones, wantPhones) {
			t.Errorf("phones = %v, want %v", u.Phones, wantPhones)
		}

		byID, err := s.UserByID(ctx, u.ID)
		if err != nil {
			t.Fatalf("UserByID: %v", err)
		}
		if !reflect.DeepEqual(byID, u) {
			t.Errorf("UserByID =\n%+v\nwant\n%+v", byID, u)
		}

		for _, in := range []string{
			"Иванов", "иванов", "ИВАНОВ", "  иВаНоВ ",
			"+74951234567", "+7 495 123 45 67", "+7 (495) 123-45-67", "+7(495)1234567",
			"1234", "12-34", "(12) 34",
		} {
			got, hash, err := s.UserByLogin(ctx, in)
			if err != nil || got.ID != u.ID || hash != "$argon2id$hash" {
				t.Errorf("UserByLogin(%q) = user %d, hash %q, %v; want user %d", in, got.ID, hash, err, u.ID)
			}
		}
		for _, in := range []string{"", "  ", "иванова", "74951234567", "+7495123456", "ivanov@example.com", "1"} {
			if got, _, err := s.UserByLogin(ctx, in); !errors.Is(err, ErrNotFound) {
				t.Errorf("UserByLogin(%q) = user %d, %v; want ErrNotFound", in, got.ID, err)
			}
		}
		// By phone only: a login is not a number.
		for _, in := range []string{"+7 (495) 123-45-67", "1234"} {
			if got, err := s.UserByPhone(ctx, in); err != nil || got.ID != u.ID {
				t.Errorf("UserByPhone(%q) = user %d, %v; want user %d", in, got.ID, err, u.ID)
			}
		}
		for _, in := range []string{"Иванов", "", "5555", "not a number"} {
			if got, err := s.UserByPhone(ctx, in); !errors.Is(err, ErrNotFound) {
				t.Errorf("UserByPhone(%q) = user %d, %v; want ErrNotFound", in, got.ID, err)
			}
		}
		if _, err := s.UserByID(ctx, u.ID+1000); !errors.Is(err, ErrNotFound) {
			t.Errorf("UserByID(unknown) = %v, want ErrNotFound", err)
		}

		// ё and е are one letter in logins.
		pyotr := mustCreateUser(t, s, User{Login: "Пётр", DisplayName: "Пётр"}, "")
		for _, in := range []string{"Пётр", "пётр", "петр", "ПЕТР", "ПЁТР"} {
			got, hash, err := s.UserByLogin(ctx, in)
			if err != nil || got.ID != pyotr.ID || hash != "" {
				t.Errorf("UserByLogin(%q) = user %d, hash %q, %v; want user %d without hash", in, got.ID, hash, err, pyotr.ID)
			}
		}
		if len(pyotr.Phones) != 0 || pyotr.Phones == nil {
			t.Errorf("phones of user without phones = %#v, want empty", pyotr.Phones)
		}
	})
}

func TestStoreCreateUserConflicts(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		s := NewStore(db)
		mustCreateUser(t, s, User{Login: "Иванов", Phones: []Phone{{Number: "+7 495 123-45-67"}}}, "h")
		mustCreateUser(t, s, User{Login: "Пётр"}, "")
		mustCreateUser(t, s, User{Login: "dir", Source: SourceLDAP, ExternalID: "guid-1"}, "")
		// Local accounts have no external id; many of them must not collide.
		mustCreateUser(t, s, User{Login: "local2"}, "")

		tests := []struct {
			name    string
			u       User
			wantErr error  // nil: any error that is not ErrConflict
			wantMsg string // in the error
		}{
			{name: "same login", u: User{Login: "Иванов"}, wantErr: ErrConflict},
			{name: "login in other case", u: User{Login: "иВАНОВ"}, wantErr: ErrConflict},
			{name: "ё as е", u: User{Login: "ПЕТР"}, wantErr: ErrConflict},
			{name: "phone in other spelling", u: User{Login: "other", Phones: []Phone{{Number: "1111"}, {Number: "+7 (495) 1234567"}}},
				wantErr: ErrConflict, wantMsg: "+74951234567"},
			{name: "external id", u: User{Login: "dir2", Source: SourceLDAP, ExternalID: "guid-1"}, wantErr: ErrConflict, wantMsg: "external id"},
			{name: "empty login", u: User{Login: "  "}},
			{name: "bad phone", u: User{Login: "x1", Phones: []Phone{{Number: "12a"}}}},
			{name: "bad phone kind", u: User{Login: "x2", Phones: []Phone{{Number: "123", Kind: "fax"}}}},
			{name: "bad role", u: User{Login: "x3", Role: "root"}},
			{name: "bad source", u: User{Login: "x4", Source: "nis"}},
			{name: "login too long", u: User{Login: strings.Repeat("я", maxLoginChars+1)}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				u := tt.u
				err := s.CreateUser(ctx, &u, "")
				switch {
				case err == nil:
					t.Fatal("CreateUser succeeded")
				case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				case tt.wantErr == nil && errors.Is(err, ErrConflict):
					t.Fatalf("err = %v, want a validation error", err)
				case !strings.Contains(err.Error(), tt.wantMsg):
					t.Errorf("err = %v, want it to mention %q", err, tt.wantMsg)
				}
				if u.ID != 0 {
					t.Errorf("failed CreateUser set ID %d", u.ID)
				}
			})
		}
		// The failed phone conflict must not have left its user behind.
		if _, _, err := s.UserByLogin(ctx, "other"); !errors.Is(err, ErrNotFound) {
			t.Errorf("user of failed create: %v, want ErrNotFound", err)
		}
		if _, _, err := s.UserByLogin(ctx, "1111"); !errors.Is(err, ErrNotFound) {
			t.Errorf("phone of failed create: %v, want ErrNotFound", err)
		}
	})
}

func TestStoreListUsers(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		s := NewStore(db)
		var all, enabled, ldap []int64
		for i := range 7 {
			u := User{Login: fmt.Sprintf("user%d", i), Phones: []Phone{{Number: fmt.Sprintf("10%d", i)}}}
			if i%3 == 0 {
				u.Disabled, u.DisabledReason = true, "test"
			}
			if i%2 == 0 {
				u.Source, u.ExternalID = SourceLDAP, fmt.Sprintf("guid-%d", i)
			}
			u = mustCreateUser(t, s, u, "")
			all = append(all, u.ID)
			if !u.Disabled {
				enabled = append(enabled, u.ID)
			}
			if u.Source == SourceLDAP && !u.Disabled {
				ldap = append(ldap, u.ID)
			}
		}
		page := func(o ListUsersOptions) []int64 {
			t.Helper()
			var ids []int64
			for range 20 {
				users, err := s.ListUsers(ctx, o)
				if err != nil {
					t.Fatalf("ListUsers(%+v): %v", o, err)
				}
				for _, u := range users {
					ids = append(ids, u.ID)
					if want := "10" + strings.TrimPrefix(u.Login, "user"); len(u.Phones) != 1 || u.Phones[0].Number != want {
						t.Errorf("user %s phones = %v, want %s", u.Login, u.Phones, want)
					}
				}
				if len(users) < o.Limit || o.Limit == 0 {
					return ids
				}
				o.After = users[len(users)-1].ID
			}
			t.Fatal("paging does not end")
			return nil
		}
		tests := []struct {
			name string
			o    ListUsersOptions
			want []int64
		}{
			{"all by 3", ListUsersOptions{Limit: 3, IncludeDisabled: true}, all},
			{"all by 1", ListUsersOptions{Limit: 1, IncludeDisabled: true}, all},
			{"default limit", ListUsersOptions{IncludeDisabled: true}, all},
			{"enabled by 2", ListUsersOptions{Limit: 2}, enabled},
			{"enabled ldap", ListUsersOptions{Limit: 2, Source: SourceLDAP}, ldap},
			{"after the last", ListUsersOptions{After: all[len(all)-1], IncludeDisabled: true}, nil},
			{"limit above maximum", ListUsersOptions{Limit: 10000, IncludeDisabled: true}, all},
		}
		for _, tt := range tests {
			if got := page(tt.o); !slices.Equal(got, tt.want) {
				t.Errorf("%s: ids %v, want %v", tt.name, got, tt.want)
			}
		}
		if _, err := s.ListUsers(ctx, ListUsersOptions{Source: "nis"}); err == nil {
			t.Error("ListUsers with unknown source succeeded")
		}
	})
}

func TestStoreUserUpdates(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		s := NewStore(db)
		admin := mustCreateUser(t, s, User{Login: "admin", Role: RoleAdmin}, "old")
		u := mustCreateUser(t, s, User{Login: "user"}, "")
		const missing = 1 << 40

		count := func(want int) {
			t.Helper()
			if n, err := s.CountAdmins(ctx); err != nil || n != want {
				t.Errorf("CountAdmins = %d, %v; want %d", n, err, want)
			}
		}
		count(1)
		if err := s.SetRole(ctx, u.ID, RoleAdmin); err != nil {
			t.Fatal(err)
		}
		// Setting what is already there is not "not found" (MySQL reports 0
		// changed rows for it).
		if err := s.SetRole(ctx, u.ID, RoleAdmin); err != nil {
			t.Fatalf("SetRole again: %v", err)
		}
		count(2)
		if err := s.SetDisabled(ctx, u.ID, true, "left"); err != nil {
			t.Fatal(err)
		}
		count(1)
		got, _ := s.UserByID(ctx, u.ID)
		if !got.Disabled || got.DisabledReason != "left" || got.Role != RoleAdmin || !got.UpdatedAt.After(u.UpdatedAt) {
			t.Errorf("after SetDisabled: %+v", got)
		}
		if err := s.SetDisabled(ctx, u.ID, false, "ignored"); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.UserByID(ctx, u.ID); got.Disabled || got.DisabledReason != "" {
			t.Errorf("after enabling: disabled %v, reason %q", got.Disabled, got.DisabledReason)
		}
		count(2)

		if err := s.SetPassword(ctx, admin.ID, "new"); err != nil {
			t.Fatal(err)
		}
		if _, h, _ := s.UserByLogin(ctx, "ADMIN"); h != "new" {
			t.Errorf("hash after SetPassword = %q", h)
		}
		if err := s.SetPassword(ctx, admin.ID, ""); err != nil {
			t.Fatal(err)
		}
		if _, h, _ := s.UserByLogin(ctx, "admin"); h != "" {
			t.Errorf("hash after clearing = %q", h)
		}

		if err := s.SetRole(ctx, u.ID, "root"); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("SetRole(root) = %v, want validation error", err)
		}
		for name, err := range map[string]error{
			"SetRole":     s.SetRole(ctx, missing, RoleUser),
			"SetDisabled": s.SetDisabled(ctx, missing, true, "x"),
			"SetPassword": s.SetPassword(ctx, missing, "x"),
		} {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("%s(unknown user) = %v, want ErrNotFound", name, err)
			}
		}
	})
}

func TestStoreDirectoryUsers(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		s := NewStore(db)
		t0 := testTime
		du := DirectoryUser{
			DN:          "CN=Petrov,OU=People,DC=corp,DC=example",
			ExternalID:  "0b9f6c4e-1111-4d6a-9c1e-000000000001",
			Login:       "PPetrov",
			DisplayName: "Пётр Петров",
			Email:       "petrov@corp.example",
			Department:  "IT",
			Title:       "Engineer",
			Phones:      []Phone{{Number: "+7 495 765-43-21", Kind: PhoneWork}, {Number: "2001", Kind: PhoneExtension}, {Number: "ext. 5"}},
		}
		upsert := func(du DirectoryUser, role Role, now time.Time, want UpsertResult) int64 {
			t.Helper()
			res, id, err := s.UpsertDirectoryUser(ctx, du, role, now)
			if err != nil || res != want {
				t.Fatalf("UpsertDirectoryUser(%s) = %v, %d, %v; want %v", du.Login, res, id, err, want)
			}
			return id
		}
		id := upsert(du, "", t0, UpsertCreated)
		u, hash, err := s.UserByLogin(ctx, "ppetrov")
		if err != nil || u.ID != id {
			t.Fatalf("UserByLogin = %d, %v; want %d", u.ID, err, id)
		}
		want := User{
			ID: id, Login: "PPetrov", DisplayName: du.DisplayName, Email: du.Email, Department: "IT",
			Title: "Engineer", Role: RoleUser, Source: SourceLDAP, ExternalID: du.ExternalID, DN: du.DN,
			CreatedAt: store.Time(t0), UpdatedAt: store.Time(t0), SyncedAt: store.TimePtr(&t0),
			Phones: []Phone{{Number: "2001", Kind: PhoneExtension}, {Number: "+74957654321", Kind: PhoneWork}},
		}
		if !reflect.DeepEqual(u, want) || hash != "" {
			t.Errorf("created directory user =\n%+v, hash %q\nwant\n%+v", u, hash, want)
		}

		// The same again: unchanged, but seen.
		t1 := t0.Add(time.Hour)
		upsert(du, "", t1, UpsertUnchanged)
		u, _ = s.UserByID(ctx, id)
		if !u.UpdatedAt.Equal(store.Time(t0)) || u.SyncedAt == nil || !u.SyncedAt.Equal(store.Time(t1)) {
			t.Errorf("after unchanged upsert: updated %v, synced %v; want %v, %v", u.UpdatedAt, u.SyncedAt, t0, t1)
		}

		// Renamed in the directory: followed through the external id.
		t2 := t1.Add(time.Hour)
		du.Login, du.Title = "Petrov.P", "Lead"
		if got := upsert(du, "", t2, UpsertUpdated); got != id {
			t.Errorf("rename gave id %d, want %d", got, id)
		}
		if _, _, err := s.UserByLogin(ctx, "ppetrov"); !errors.Is(err, ErrNotFound) {
			t.Errorf("old login after rename: %v, want ErrNotFound", err)
		}
		u, _, err = s.UserByLogin(ctx, "PETROV.P")
		if err != nil || u.ID != id || u.Title != "Lead" || !u.UpdatedAt.Equal(store.Time(t2)) {
			t.Errorf("renamed user = %+v, %v", u, err)
		}

		// Role is applied when given, kept when not.
		upsert(du, RoleAdmin, t2, UpsertUpdated)
		upsert(du, "", t2, UpsertUnchanged)
		upsert(du, RoleAdmin, t2, UpsertUnchanged)
		if u, _ := s.UserByID(ctx, id); u.Role != RoleAdmin {
			t.Errorf("role = %s, want admin", u.Role)
		}

		// Disabled state and reason come from the directory.
		du.Disabled, du.DisabledReason = true, "locked"
		upsert(du, RoleAdmin, t2, UpsertUpdated)
		if u, _ := s.UserByID(ctx, id); !u.Disabled || u.DisabledReason != "locked" {
			t.Errorf("disabled = %v, %q; want true, locked", u.Disabled, u.DisabledReason)
		}
		du.Disabled, du.DisabledReason = false, "stale reason"
		upsert(du, RoleAdmin, t2, UpsertUpdated)
		if u, _ := s.UserByID(ctx, id); u.Disabled || u.DisabledReason != "" {
			t.Errorf("enabled again = %v, %q", u.Disabled, u.DisabledReason)
		}

		// Phones are replaced.
		du.Phones = []Phone{{Number: "2002", Kind: PhoneExtension}}
		upsert(du, RoleAdmin, t2, UpsertUpdated)
		if _, _, err := s.UserByLogin(ctx, "2001"); !errors.Is(err, ErrNotFound) {
			t.Errorf("old phone still finds a user: %v", err)
		}
		if u, _, err := s.UserByLogin(ctx, "2002"); err != nil || u.ID != id {
			t.Errorf("new phone: user %d, %v", u.ID, err)
		}

		// A local account is never taken over, whatever the case of the login.
		local := mustCreateUser(t, s, User{Login: "sidorov", DisplayName: "Local", Phones: []Phone{{Number: "3001"}}}, "local-hash")
		other := DirectoryUser{ExternalID: "guid-sidorov", Login: "SIDOROV", DisplayName: "Directory"}
		if _, _, err := s.UpsertDirectoryUser(ctx, other, "", t2); !errors.Is(err, ErrConflict) {
			t.Errorf("upsert over local account: %v, want ErrConflict", err)
		}
		if u, h, _ := s.UserByLogin(ctx, "sidorov"); u.ID != local.ID || u.Source != SourceLocal || u.DisplayName != "Local" || h != "local-hash" {
			t.Errorf("local account changed: %+v, hash %q", u, h)
		}
		// Nor is another directory account's login.
		if _, _, err := s.UpsertDirectoryUser(ctx, DirectoryUser{ExternalID: "guid-x", Login: "petrov.p"}, "", t2); !errors.Is(err, ErrConflict) {
			t.Errorf("upsert over another directory account: %v, want ErrConflict", err)
		}

		// A number held by someone else is left out, and that is stable.
		shared := DirectoryUser{ExternalID: "guid-shared", Login: "kuznetsov", Phones: []Phone{{Number: "3001"}, {Number: "3002"}}}
		sid := upsert(shared, "", t2, UpsertCreated)
		upsert(shared, "", t2, UpsertUnchanged)
		if u, _ := s.UserByID(ctx, sid); !reflect.DeepEqual(u.Phones, []Phone{{Number: "3002", Kind: PhoneWork}}) {
			t.Errorf("phones with a foreign number = %v, want only 3002", u.Phones)
		}
		if u, _, _ := s.UserByLogin(ctx, "3001"); u.ID != local.ID {
			t.Errorf("3001 belongs to %d, want the local %d", u.ID, local.ID)
		}

		if _, _, err := s.UpsertDirectoryUser(ctx, DirectoryUser{Login: "noid"}, "", t2); err == nil {
			t.Error("upsert without external id succeeded")
		}
		if _, _, err := s.UpsertDirectoryUser(ctx, DirectoryUser{ExternalID: "g", Login: "r"}, "root", t2); err == nil {
			t.Error("upsert with unknown role succeeded")
		}
	})
}

func TestStoreDisableMissingDirectoryUsers(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		s := NewStore(db)
		t0, t1 := testTime, testTime.Add(time.Hour)
		var ids []int64
		for i := range 4 {
			_, id, err := s.UpsertDirectoryUser(ctx, DirectoryUser{ExternalID: fmt.Sprintf("g%d", i), Login: fmt.Sprintf("d%d", i)}, "", t0)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		local := mustCreateUser(t, s, User{Login: "local"}, "")
		if err := s.SetDisabled(ctx, ids[3], true, "by admin"); err != nil {
			t.Fatal(err)
		}
		// A new sync starting at t1 sees only d0: d1, d2 and d3 (already
		// disabled) are missing; a local account named by mistake is
		// left alone.
		if _, _, err := s.UpsertDirectoryUser(ctx, DirectoryUser{ExternalID: "g0", Login: "d0"}, "", t1); err != nil {
			t.Fatal(err)
		}
		n, err := s.DisableMissingDirectoryUsers(ctx, []int64{ids[1], ids[2], ids[3], local.ID}, "", t1)
		if err != nil || n != 2 {
			t.Fatalf("DisableMissingDirectoryUsers = %d, %v; want 2", n, err)
		}
		wants := map[int64]struct {
			disabled bool
			reason   string
		}{
			ids[0]:   {false, ""},
			ids[1]:   {true, defaultMissingReason},
			ids[2]:   {true, defaultMissingReason},
			ids[3]:   {true, "by admin"}, // already disabled: reason kept
			local.ID: {false, ""},
		}
		for id, w := range wants {
			u, err := s.UserByID(ctx, id)
			if err != nil || u.Disabled != w.disabled || u.DisabledReason != w.reason {
				t.Errorf("user %d: disabled %v %q, %v; want %v %q", id, u.Disabled, u.DisabledReason, err, w.disabled, w.reason)
			}
		}
		if n, err := s.DisableMissingDirectoryUsers(ctx, []int64{ids[1], ids[2]}, "gone", t1); err != nil || n != 0 {
			t.Errorf("second DisableMissingDirectoryUsers = %d, %v; want 0", n, err)
		}
		// Back in the directory: enabled again.
		res, _, err := s.UpsertDirectoryUser(ctx, DirectoryUser{ExternalID: "g1", Login: "d1"}, "", t1.Add(time.Hour))
		if err != nil || res != UpsertUpdated {
			t.Fatalf("upsert of returning user = %v, %v", res, err)
		}
		if u, _ := s.UserByID(ctx, ids[1]); u.Disabled {
			t.Error("returning user still disabled")
		}
	})
}

// An admin's "disabled" in Elph outlasts the directory's "enabled"; an
// admin's "enabled" gives the directory back its say.
func TestStoreDirectoryUserDisabledLocally(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		s := NewStore(db)
		du := DirectoryUser{ExternalID: "g-local", Login: "kept", DisplayName: "Kept"}
		_, id, err := s.UpsertDirectoryUser(ctx, du, "", testTime)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SetDisabled(ctx, id, true, "left the company"); err != nil {
			t.Fatal(err)
		}
		du.DisplayName = "Kept Renamed"
		if res, _, err := s.UpsertDirectoryUser(ctx, du, "", testTime.Add(time.Hour)); err != nil || res != UpsertUpdated {
			t.Fatalf("sync = %v, %v", res, err)
		}
		u, err := s.UserByID(ctx, id)
		if err != nil || !u.Disabled || !u.DisabledLocally || u.DisabledReason != "left the company" || u.DisplayName != "Kept Renamed" {
			t.Fatalf("after sync: %+v, %v; want still disabled by the admin, name updated", u, err)
		}
		if res, _, err := s.UpsertDirectoryUser(ctx, du, "", testTime.Add(2*time.Hour)); err != nil || res != UpsertUnchanged {
			t.Errorf("second sync = %v, %v; want unchanged", res, err)
		}
		if err := s.SetDisabled(ctx, id, false, ""); err != nil {
			t.Fatal(err)
		}
		du.Disabled, du.DisabledReason = true, "disabled"
		if _, _, err := s.UpsertDirectoryUser(ctx, du, "", testTime.Add(3*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if u, _ := s.UserByID(ctx, id); !u.Disabled || u.DisabledLocally || u.DisabledReason != "disabled" {
			t.Errorf("after enable and a directory disable: %+v", u)
		}
	})
}

func TestStoreGroups(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		s := NewStore(db)
		t0 := testTime
		a := mustCreateUser(t, s, User{Login: "a"}, "")
		b := mustCreateUser(t, s, User{Login: "b"}, "")

		upsert := func(g DirectoryGroup, now time.Time, want UpsertResult) int64 {
			t.Helper()
			id, res, err := s.UpsertGroup(ctx, g, now)
			if err != nil || res != want || id <= 0 {
				t.Fatalf("UpsertGroup(%s) = %d, %v, %v; want %v", g.Name, id, res, err, want)
			}
			return id
		}
		dev := DirectoryGroup{DN: "CN=Dev,DC=corp", ExternalID: "grp-dev", Name: "Разработка"}
		devID := upsert(dev, t0, UpsertCreated)
		if id := upsert(dev, t0.Add(time.Hour), UpsertUnchanged); id != devID {
			t.Errorf("unchanged group id %d, want %d", id, devID)
		}
		dev.Name = "Development"
		upsert(dev, t0.Add(2*time.Hour), UpsertUpdated)
		ops := upsert(DirectoryGroup{DN: "CN=Ops,DC=corp", ExternalID: "grp-ops", Name: "Ops"}, t0, UpsertCreated)

		if err := s.SetGroupMembers(ctx, devID, []int64{a.ID, b.ID, a.ID}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetGroupMembers(ctx, ops, []int64{a.ID}); err != nil {
			t.Fatal(err)
		}
		names := func(userID int64) []string {
			t.Helper()
			groups, err := s.UserGroups(ctx, userID)
			if err != nil {
				t.Fatal(err)
			}
			out := []string{}
			for _, g := range groups {
				out = append(out, g.Name)
			}
			return out
		}
		if got := names(a.ID); !slices.Equal(got, []string{"Development", "Ops"}) {
			t.Errorf("groups of a = %v", got)
		}
		groups, _ := s.UserGroups(ctx, b.ID)
		wantDev := Group{ID: devID, ExternalID: "grp-dev", Name: "Development", DN: dev.DN, UpdatedAt: store.Time(t0.Add(2 * time.Hour))}
		if len(groups) != 1 || !reflect.DeepEqual(groups[0], wantDev) {
			t.Errorf("groups of b = %+v, want [%+v]", groups, wantDev)
		}

		if err := s.SetGroupMembers(ctx, devID, []int64{b.ID}); err != nil {
			t.Fatal(err)
		}
		if got := names(a.ID); !slices.Equal(got, []string{"Ops"}) {
			t.Errorf("groups of a after replace = %v", got)
		}
		if err := s.SetGroupMembers(ctx, ops, nil); err != nil {
			t.Fatal(err)
		}
		if got := names(a.ID); len(got) != 0 {
			t.Errorf("groups of a after emptying = %v", got)
		}
		if got := names(b.ID); !slices.Equal(got, []string{"Development"}) {
			t.Errorf("groups of b = %v", got)
		}
		if err := s.SetGroupMembers(ctx, 1<<40, []int64{a.ID}); !errors.Is(err, ErrNotFound) {
			t.Errorf("SetGroupMembers(unknown group) = %v, want ErrNotFound", err)
		}
		if _, _, err := s.UpsertGroup(ctx, DirectoryGroup{Name: "no id"}, t0); err == nil {
			t.Error("UpsertGroup without external id succeeded")
		}

		// Large sets go in batches.
		var many []int64
		for i := range memberBatch + 7 {
			many = append(many, mustCreateUser(t, s, User{Login: fmt.Sprintf("m%d", i)}, "").ID)
		}
		if err := s.SetGroupMembers(ctx, ops, many); err != nil {
			t.Fatal(err)
		}
		if err := s.SetGroupMembers(ctx, ops, many[3:]); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM group_members WHERE group_id = ?", ops).Scan(&n); err != nil || n != len(many)-3 {
			t.Errorf("members = %d, %v; want %d", n, err, len(many)-3)
		}
	})
}

func TestStoreSessions(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		s := NewStore(db)
		u := mustCreateUser(t, s, User{Login: "u"}, "")
		other := mustCreateUser(t, s, User{Login: "other"}, "")
		t0 := testTime

		s1 := Session{ID: "s1", UserID: u.ID, Device: "Phone", UserAgent: strings.Repeat("я", 600), IP: "192.0.2.1",
			CreatedAt: t0, ExpiresAt: t0.Add(24 * time.Hour)}
		if err := s.CreateSession(ctx, &s1); err != nil {
			t.Fatal(err)
		}
		if s1.UserAgent != strings.Repeat("я", maxUserAgentChars) || !s1.LastSeenAt.Equal(store.Time(t0)) || s1.CreatedAt.Location() != time.UTC {
			t.Errorf("stored session: UA %d chars, last seen %v", len([]rune(s1.UserAgent)), s1.LastSeenAt)
		}
		got, err := s.SessionByID(ctx, "s1")
		if err != nil || !reflect.DeepEqual(got, s1) {
			t.Errorf("SessionByID =\n%+v, %v\nwant\n%+v", got, err, s1)
		}
		s2 := Session{ID: "s2", UserID: u.ID, Device: "Laptop", UserAgent: "bad \xff utf-8", CreatedAt: t0.Add(time.Minute), ExpiresAt: t0.Add(24 * time.Hour)}
		if err := s.CreateSession(ctx, &s2); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.SessionByID(ctx, "s2"); got.UserAgent != "bad \uFFFD utf-8" {
			t.Errorf("UA with invalid UTF-8 stored as %q", got.UserAgent)
		}
		s3 := Session{ID: "s3", UserID: other.ID, ExpiresAt: t0.Add(time.Hour)}
		if err := s.CreateSession(ctx, &s3); err != nil {
			t.Fatal(err)
		}

		for _, bad := range []Session{
			{ID: "s1", UserID: u.ID, ExpiresAt: t0},
		} {
			if err := s.CreateSession(ctx, &bad); !errors.Is(err, ErrConflict) {
				t.Errorf("CreateSession(duplicate) = %v, want ErrConflict", err)
			}
		}
		if err := s.CreateSession(ctx, &Session{ID: "s9", UserID: 1 << 40, ExpiresAt: t0}); !errors.Is(err, ErrNotFound) {
			t.Errorf("CreateSession(unknown user) = %v, want ErrNotFound", err)
		}
		for _, bad := range []Session{{UserID: u.ID, ExpiresAt: t0}, {ID: strings.Repeat("x", 65), UserID: u.ID, ExpiresAt: t0}, {ID: "s8", UserID: u.ID}} {
			if err := s.CreateSession(ctx, &bad); err == nil || errors.Is(err, ErrConflict) || errors.Is(err, ErrNotFound) {
				t.Errorf("CreateSession(%+v) = %v, want validation error", bad, err)
			}
		}

		ids := func(includeRevoked bool) []string {
			t.Helper()
			list, err := s.ListSessions(ctx, u.ID, includeRevoked)
			if err != nil {
				t.Fatal(err)
			}
			out := []string{}
			for _, x := range list {
				out = append(out, x.ID)
			}
			return out
		}
		if got := ids(false); !slices.Equal(got, []string{"s2", "s1"}) {
			t.Errorf("sessions by last seen = %v, want [s2 s1]", got)
		}
		if err := s.TouchSession(ctx, "s1", t0.Add(time.Hour), "198.51.100.7"); err != nil {
			t.Fatal(err)
		}
		if err := s.TouchSession(ctx, "s1", t0.Add(time.Hour), ""); err != nil {
			t.Fatalf("TouchSession with the same time: %v", err)
		}
		if got, _ := s.SessionByID(ctx, "s1"); !got.LastSeenAt.Equal(store.Time(t0.Add(time.Hour))) || got.IP != "198.51.100.7" {
			t.Errorf("touched session: last seen %v, ip %q", got.LastSeenAt, got.IP)
		}
		if got := ids(false); !slices.Equal(got, []string{"s1", "s2"}) {
			t.Errorf("sessions after touch = %v, want [s1 s2]", got)
		}
		if err := s.TouchSession(ctx, "nope", t0, ""); !errors.Is(err, ErrNotFound) {
			t.Errorf("TouchSession(unknown) = %v, want ErrNotFound", err)
		}

		tr := t0.Add(2 * time.Hour)
		if ok, err := s.RevokeSession(ctx, "s1", "logout", tr); err != nil || !ok {
			t.Errorf("RevokeSession = %v, %v; want true", ok, err)
		}
		if ok, err := s.RevokeSession(ctx, "s1", "again", tr.Add(time.Hour)); err != nil || ok {
			t.Errorf("RevokeSession again = %v, %v; want false", ok, err)
		}
		if got, _ := s.SessionByID(ctx, "s1"); got.RevokedAt == nil || !got.RevokedAt.Equal(store.Time(tr)) || got.RevokedReason != "logout" {
			t.Errorf("revoked session: at %v, reason %q", got.RevokedAt, got.RevokedReason)
		}
		if _, err := s.RevokeSession(ctx, "nope", "x", tr); !errors.Is(err, ErrNotFound) {
			t.Errorf("RevokeSession(unknown) = %v, want ErrNotFound", err)
		}
		if got := ids(false); !slices.Equal(got, []string{"s2"}) {
			t.Errorf("active sessions = %v, want [s2]", got)
		}
		if got := ids(true); !slices.Equal(got, []string{"s1", "s2"}) {
			t.Errorf("all sessions = %v, want [s1 s2]", got)
		}

		revoked, err := s.RevokeUserSessions(ctx, u.ID, "password changed", tr)
		if err != nil || !slices.Equal(revoked, []string{"s2"}) {
			t.Errorf("RevokeUserSessions = %v, %v; want [s2]", revoked, err)
		}
		if revoked, err := s.RevokeUserSessions(ctx, u.ID, "again", tr); err != nil || len(revoked) != 0 {
			t.Errorf("RevokeUserSessions again = %v, %v; want none", revoked, err)
		}
		if got, _ := s.SessionByID(ctx, "s3"); got.RevokedAt != nil {
			t.Error("another user's session was revoked")
		}
		if got, _ := s.SessionByID(ctx, "s1"); got.RevokedReason != "logout" {
			t.Errorf("earlier revocation overwritten: %q", got.RevokedReason)
		}
	})
}

func TestStoreRefreshTokens(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		s := NewStore(db)
		u := mustCreateUser(t, s, User{Login: "u"}, "")
		now := testTime
		newSession := func(id string, expires time.Time) {
			t.Helper()
			if err := s.CreateSession(ctx, &Session{ID: id, UserID: u.ID, CreatedAt: now, ExpiresAt: expires}); err != nil {
				t.Fatal(err)
			}
		}
		insert := func(token, session string, expires time.Time) string {
			t.Helper()
			h := tokenHash(token)
			if err := s.InsertRefreshToken(ctx, h, session, expires); err != nil {
				t.Fatalf("InsertRefreshToken(%s): %v", token, err)
			}
			return h
		}

		t.Run("rotation and reuse", func(t *testing.T) {
			newSession("rot", now.Add(30*24*time.Hour))
			h1 := insert("t1", "rot", now.Add(24*time.Hour))
			sess, err := s.UseRefreshToken(ctx, h1, now.Add(time.Minute))
			if err != nil || sess.ID != "rot" || sess.UserID != u.ID {
				t.Fatalf("first use = %+v, %v", sess, err)
			}
			h2 := insert("t2", "rot", now.Add(25*time.Hour))
			if sess, err := s.UseRefreshToken(ctx, h2, now.Add(2*time.Minute)); err != nil || sess.ID != "rot" {
				t.Fatalf("use of rotated token = %+v, %v", sess, err)
			}
			h3 := insert("t3", "rot", now.Add(26*time.Hour))

			// t1 again: stolen. The session ends for everyone.
			reuseAt := now.Add(3 * time.Minute)
			sess, err = s.UseRefreshToken(ctx, h1, reuseAt)
			if !errors.Is(err, ErrRefreshReused) || sess.ID != "rot" {
				t.Fatalf("reuse = %+v, %v; want the session and ErrRefreshReused", sess, err)
			}
			if sess.RevokedAt == nil || !sess.RevokedAt.Equal(store.Time(reuseAt)) || sess.RevokedReason != "refresh token reused" {
				t.Errorf("returned session not revoked: %v %q", sess.RevokedAt, sess.RevokedReason)
			}
			stored, _ := s.SessionByID(ctx, "rot")
			if stored.RevokedAt == nil || stored.RevokedReason != "refresh token reused" {
				t.Errorf("stored session not revoked: %+v", stored)
			}
			if _, err := s.UseRefreshToken(ctx, h3, now.Add(4*time.Minute)); !errors.Is(err, ErrSessionRevoked) {
				t.Errorf("fresh token of revoked session: %v, want ErrSessionRevoked", err)
			}
			if _, err := s.UseRefreshToken(ctx, h2, now.Add(4*time.Minute)); !errors.Is(err, ErrRefreshReused) {
				t.Errorf("second reuse: %v, want ErrRefreshReused", err)
			}
			if again, _ := s.SessionByID(ctx, "rot"); !again.RevokedAt.Equal(*stored.RevokedAt) {
				t.Errorf("second reuse moved revoked_at from %v to %v", stored.RevokedAt, again.RevokedAt)
			}
		})

		t.Run("not found and bad input", func(t *testing.T) {
			newSession("nf", now.Add(time.Hour))
			for _, h := range []string{tokenHash("never stored"), "raw-opaque-token", strings.ToUpper(tokenHash("x")), ""} {
				if _, err := s.UseRefreshToken(ctx, h, now); !errors.Is(err, ErrNotFound) {
					t.Errorf("UseRefreshToken(%q) = %v, want ErrNotFound", h, err)
				}
			}
			if err := s.InsertRefreshToken(ctx, "raw-opaque-token", "nf", now.Add(time.Hour)); err == nil {
				t.Error("InsertRefreshToken accepted something that is not a hash")
			}
			if err := s.InsertRefreshToken(ctx, tokenHash("x"), "no-such-session", now.Add(time.Hour)); !errors.Is(err, ErrNotFound) {
				t.Errorf("InsertRefreshToken(unknown session) = %v, want ErrNotFound", err)
			}
			insert("dup", "nf", now.Add(time.Hour))
			if err := s.InsertRefreshToken(ctx, tokenHash("dup"), "nf", now.Add(time.Hour)); !errors.Is(err, ErrConflict) {
				t.Errorf("InsertRefreshToken(duplicate) = %v, want ErrConflict", err)
			}
		})

		t.Run("expiry", func(t *testing.T) {
			newSession("exp", now.Add(time.Hour))
			tokenExpired := insert("short", "exp", now.Add(time.Minute))
			if _, err := s.UseRefreshToken(ctx, tokenExpired, now.Add(time.Minute)); !errors.Is(err, ErrSessionExpired) {
				t.Errorf("token at its expiry: %v, want ErrSessionExpired", err)
			}
			sessionExpired := insert("long", "exp", now.Add(2*time.Hour))
			if _, err := s.UseRefreshToken(ctx, sessionExpired, now.Add(90*time.Minute)); !errors.Is(err, ErrSessionExpired) {
				t.Errorf("token of an expired session: %v, want ErrSessionExpired", err)
			}
			// Expiry refusals do not spend the token.
			if sess, err := s.UseRefreshToken(ctx, sessionExpired, now.Add(30*time.Minute)); err != nil || sess.ID != "exp" {
				t.Errorf("token used in time after refusals = %v", err)
			}
		})

		t.Run("concurrent use", func(t *testing.T) {
			const n = 8
			newSession("race", now.Add(time.Hour))
			h := insert("contended", "race", now.Add(time.Hour))
			var (
				wg    sync.WaitGroup
				start = make(chan struct{})
				errs  = make([]error, n)
			)
			for i := range n {
				wg.Go(func() {
					<-start
					_, errs[i] = s.UseRefreshToken(ctx, h, now.Add(time.Minute))
				})
			}
			close(start)
			wg.Wait()
			won, reused := 0, 0
			for _, err := range errs {
				switch {
				case err == nil:
					won++
				case errors.Is(err, ErrRefreshReused):
					reused++
				default:
					t.Errorf("concurrent use: %v", err)
				}
			}
			if won != 1 || reused != n-1 {
				t.Errorf("%d uses won and %d saw reuse; want 1 and %d", won, reused, n-1)
			}
			if sess, _ := s.SessionByID(ctx, "race"); sess.RevokedAt == nil {
				t.Error("session survived a double use")
			}
		})
	})
}

func TestStorePurgeExpired(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		s := NewStore(db)
		u := mustCreateUser(t, s, User{Login: "u"}, "")
		now := testTime
		day := 24 * time.Hour
		sessions := []struct {
			id      string
			expires time.Time
			revoked time.Time
			kept    bool
		}{
			{id: "active", expires: now.Add(day), kept: true},
			{id: "expired-recently", expires: now.Add(-29 * day), kept: true},
			{id: "expired-long-ago", expires: now.Add(-31 * day)},
			{id: "revoked-recently", expires: now.Add(day), revoked: now.Add(-29 * day), kept: true},
			{id: "revoked-long-ago", expires: now.Add(day), revoked: now.Add(-31 * day)},
		}
		for _, x := range sessions {
			if err := s.CreateSession(ctx, &Session{ID: x.id, UserID: u.ID, CreatedAt: now.Add(-60 * day), ExpiresAt: x.expires}); err != nil {
				t.Fatal(err)
			}
			if !x.revoked.IsZero() {
				if _, err := s.RevokeSession(ctx, x.id, "test", x.revoked); err != nil {
					t.Fatal(err)
				}
			}
		}
		tokens := []struct {
			token, session string
			expires        time.Time
			kept           bool
		}{
			{"live", "active", now.Add(time.Hour), true},
			{"dead", "active", now, false},
			{"dead2", "expired-recently", now.Add(-time.Hour), false},
			{"cascaded", "revoked-long-ago", now.Add(time.Hour), false},
		}
		for _, x := range tokens {
			if err := s.InsertRefreshToken(ctx, tokenHash(x.token), x.session, x.expires); err != nil {
				t.Fatal(err)
			}
		}
		n, err := s.PurgeExpired(ctx, now)
		if err != nil || n != 4 { // dead, dead2, and two sessions
			t.Errorf("PurgeExpired = %d, %v; want 4", n, err)
		}
		for _, x := range sessions {
			if _, err := s.SessionByID(ctx, x.id); (err == nil) != x.kept {
				t.Errorf("session %s: %v, kept = %v", x.id, err, x.kept)
			}
		}
		for _, x := range tokens {
			var c int
			if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM refresh_tokens WHERE token_hash = ?", tokenHash(x.token)).Scan(&c); err != nil {
				t.Fatal(err)
			}
			if (c == 1) != x.kept {
				t.Errorf("token %s: %d rows, kept = %v", x.token, c, x.kept)
			}
		}
		if n, err := s.PurgeExpired(ctx, now); err != nil || n != 0 {
			t.Errorf("second PurgeExpired = %d, %v; want 0", n, err)
		}
	})
}

func TestStoreSigningKeys(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		s := NewStore(db)
		t0 := testTime
		day := 24 * time.Hour
		key := func(kid string, created time.Time) SigningKey {
			return SigningKey{KID: kid, Alg: "EdDSA", Private: []byte("private " + kid + "\x00\xff"), Public: []byte("public " + kid),
				CreatedAt: created, RetireAt: created.Add(day), ExpireAt: created.Add(2 * day)}
		}
		k1, k2, k3 := key("k1", t0), key("k2", t0.Add(day)), key("k3", t0.Add(2*day))
		for _, k := range []SigningKey{k2, k1, k3} {
			if err := s.InsertSigningKey(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.InsertSigningKey(ctx, k1); !errors.Is(err, ErrConflict) {
			t.Errorf("duplicate kid: %v, want ErrConflict", err)
		}
		if err := s.InsertSigningKey(ctx, SigningKey{KID: "k4", Alg: "EdDSA", Public: []byte("p"), CreatedAt: t0, RetireAt: t0, ExpireAt: t0}); err == nil {
			t.Error("key without private part accepted")
		}
		norm := func(k SigningKey) SigningKey {
			k.CreatedAt, k.RetireAt, k.ExpireAt = store.Time(k.CreatedAt), store.Time(k.RetireAt), store.Time(k.ExpireAt)
			return k
		}
		tests := []struct {
			at   time.Time
			want []SigningKey
		}{
			{t0, []SigningKey{norm(k3), norm(k2), norm(k1)}},
			{t0.Add(2*day - time.Microsecond), []SigningKey{norm(k3), norm(k2), norm(k1)}},
			{t0.Add(2 * day), []SigningKey{norm(k3), norm(k2)}},
			{t0.Add(4 * day), []SigningKey{}},
		}
		for _, tt := range tests {
			got, err := s.SigningKeys(ctx, tt.at)
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("SigningKeys(%v) =\n%+v, %v\nwant\n%+v", tt.at, got, err, tt.want)
			}
		}
		if n, err := s.DeleteExpiredKeys(ctx, t0.Add(3*day)); err != nil || n != 2 {
			t.Errorf("DeleteExpiredKeys = %d, %v; want 2", n, err)
		}
		if got, _ := s.SigningKeys(ctx, t0); len(got) != 1 || got[0].KID != "k3" {
			t.Errorf("keys left = %+v, want k3", got)
		}
	})
}

func TestStoreLoginFailures(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		s := NewStore(db)
		const window = 15 * time.Minute
		t0 := testTime

		failures := func(key string, at time.Time, want int) {
			t.Helper()
			if n, err := s.Failures(ctx, key, at, window); err != nil || n != want {
				t.Errorf("Failures(%.30s, +%v) = %d, %v; want %d", key, at.Sub(t0), n, err, want)
			}
		}
		add := func(key string, at time.Time, want int) {
			t.Helper()
			if n, err := s.AddFailure(ctx, key, at, window); err != nil || n != want {
				t.Errorf("AddFailure(%.30s, +%v) = %d, %v; want %d", key, at.Sub(t0), n, err, want)
			}
		}

		t.Run("window", func(t *testing.T) {
			k := "acct:иванов"
			failures(k, t0, 0)
			add(k, t0, 1)
			add(k, t0.Add(5*time.Minute), 2)
			failures(k, t0.Add(window-time.Microsecond), 2)
			failures(k, t0.Add(window), 0)
			// The first failure after the window starts a new one.
			add(k, t0.Add(window), 1)
			add(k, t0.Add(window+time.Minute), 2)
			failures(k, t0.Add(2*window-time.Microsecond), 2)
			failures(k, t0.Add(2*window), 0)
			failures("ip:192.0.2.1", t0, 0)

			if err := s.ClearFailures(ctx, k); err != nil {
				t.Fatal(err)
			}
			failures(k, t0.Add(window+time.Minute), 0)
			add(k, t0.Add(window+2*time.Minute), 1)

			// Keys too long for the column are hashed, not refused.
			long := "acct:" + strings.Repeat("я", 300)
			add(long, t0, 1)
			add(long, t0, 2)
			failures(long, t0, 2)
			bad := "ip:\xff\xfe"
			add(bad, t0, 1)
			failures(bad, t0, 1)

			if _, err := s.AddFailure(ctx, "", t0, window); err == nil {
				t.Error("AddFailure with empty key succeeded")
			}
			if _, err := s.AddFailure(ctx, "ip:x", t0, 0); err == nil {
				t.Error("AddFailure with zero window succeeded")
			}

			// Only counters whose window started before the cut-off go.
			if n, err := s.PurgeFailures(ctx, t0.Add(time.Second)); err != nil || n != 2 {
				t.Errorf("PurgeFailures = %d, %v; want 2 (long and bad)", n, err)
			}
			failures(long, t0, 0)
			failures(k, t0.Add(window+2*time.Minute), 1)
		})

		t.Run("concurrent", func(t *testing.T) {
			const n = 20
			k := "ip:203.0.113.9"
			var (
				wg     sync.WaitGroup
				start  = make(chan struct{})
				counts = make([]int, n)
				errs   = make([]error, n)
			)
			for i := range n {
				wg.Go(func() {
					<-start
					counts[i], errs[i] = s.AddFailure(ctx, k, t0.Add(time.Duration(i)*time.Millisecond), window)
				})
			}
			close(start)
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatalf("AddFailure: %v", err)
			}
			slices.Sort(counts)
			for i, c := range counts {
				if c != i+1 {
					t.Fatalf("counts returned = %v, want 1..%d each once", counts, n)
				}
			}
			failures(k, t0.Add(time.Minute), n)
		})
	})
}
