package addressbook_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/elph-server/elph/modules/addressbook"
	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/imaging/imagingtest"
)

var ivanov = addressbook.Account{ID: 7, Login: "ivanov", DisplayName: "Иван Иванов", Email: "Ivanov@corp.example",
	Department: "Связь", Title: "Инженер", Phones: []addressbook.Phone{{Number: "1234", Kind: addressbook.PhoneExtension}}}

// TestAccountsSource: enabled accounts are in the directory, follow their
// changes, and leave when disabled.
func TestAccountsSource(t *testing.T) {
	forEachDialect(t, []addressbook.Account{ivanov, {ID: 8, Login: "gone", Disabled: true}}, func(t *testing.T, e *env) {
		waitFor(t, "the accounts sync", func() bool { return e.search(t, alice, "q=иванов").Total == 1 })
		c := e.search(t, alice, "q=1234").Contacts[0]
		if c.UserID != 7 || c.Department != "Связь" || !slices.Equal(c.Emails, []string{"ivanov@corp.example"}) || !slices.Equal(c.Sources, []string{"accounts"}) {
			t.Errorf("contact %+v", c)
		}
		if n := e.search(t, alice, "q=gone").Total; n != 0 {
			t.Errorf("a disabled account is in the directory")
		}
		// A change of the account: the sso module announces it.
		changed := ivanov
		changed.Title = "Ведущий инженер"
		e.accounts.set(changed)
		e.publishUserChanged(t, 7)
		waitFor(t, "the change", func() bool {
			cs := e.search(t, alice, "q=ведущий").Contacts
			return len(cs) == 1 && cs[0].ID == c.ID
		})
		changed.Disabled = true
		e.accounts.set(changed)
		e.publishUserChanged(t, 7)
		waitFor(t, "the removal", func() bool { return e.search(t, alice, "q=иванов").Total == 0 })
	})
}

func (e *env) publishUserChanged(t testing.TB, id int64) {
	t.Helper()
	if err := e.bus.Publish(t.Context(), bus.Event{Topic: "sso.user.changed", Key: strconv.FormatInt(id, 10), Payload: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
}

// TestMergeRules: the same person from several sources is one contact
// (same account, same e-mail, or same name and a shared number); another
// person sharing a number is not merged; a full sync removes what the
// source dropped, and a contact with no source left goes.
func TestMergeRules(t *testing.T) {
	forEachDialect(t, []addressbook.Account{ivanov}, func(t *testing.T, e *env) {
		waitFor(t, "the accounts sync", func() bool { return e.search(t, alice, "q=иванов").Total == 1 })
		ctx := t.Context()
		rec := func(id, name, email string, numbers ...string) addressbook.Record {
			r := addressbook.Record{ExternalID: id}
			r.DisplayName = name
			if email != "" {
				r.Emails = []string{email}
			}
			for _, n := range numbers {
				r.Phones = append(r.Phones, addressbook.Phone{Number: n, Kind: addressbook.PhoneWork})
			}
			return r
		}
		res, err := e.dir.Sync(ctx, addressbook.SourceSoftswitch, []addressbook.Record{
			rec("s1", "Иванов Иван Иванович", "IVANOV@corp.example", "+7 495 000-12-34"), // e-mail: merged
			rec("s2", "Петров Пётр", "", "2000"),
			rec("s3", "Сидорова Анна", "", "2000"), // shares Петров's number, another name: separate
		}, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Created != 2 || res.Merged != 1 {
			t.Errorf("softswitch sync %+v, want 2 created, 1 merged", res)
		}
		res, err = e.dir.Sync(ctx, addressbook.SourceCSV, []addressbook.Record{
			rec("c1", "Петров Пётр", "petrov@corp.example", "2000"), // same name and number: merged
			rec("c2", "", "", "1"), // no name: rejected
		}, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Merged != 1 || res.RejectedCount != 1 || res.Created != 0 {
			t.Errorf("csv sync %+v, want 1 merged, 1 rejected", res)
		}
		if err := e.mod.Follow(ctx); err != nil {
			t.Fatal(err)
		}
		iv := e.search(t, alice, "q=иванов").Contacts
		if len(iv) != 1 || iv[0].DisplayName != "Иван Иванов" || len(iv[0].Phones) != 2 ||
			!slices.Equal(iv[0].Sources, []string{"accounts", "softswitch"}) {
			t.Fatalf("ivanov %+v: want one contact, the account's name, both numbers", iv)
		}
		if got := e.search(t, alice, "q=2000"); got.Total != 2 {
			t.Errorf("2000: %d contacts, want Петров and Сидорова", got.Total)
		}
		pe := e.search(t, alice, "q=петров").Contacts
		if len(pe) != 1 || !slices.Equal(pe[0].Emails, []string{"petrov@corp.example"}) || !slices.Equal(pe[0].Sources, []string{"softswitch", "csv"}) {
			t.Errorf("petrov %+v", pe)
		}
		// Re-running the same sync changes nothing.
		res, err = e.dir.Sync(ctx, addressbook.SourceSoftswitch, []addressbook.Record{
			rec("s1", "Иванов Иван Иванович", "IVANOV@corp.example", "+7 495 000-12-34"),
			rec("s2", "Петров Пётр", "", "2000"),
		}, true, nil)
		if err != nil || res.Unchanged != 2 || res.Removed != 1 {
			t.Errorf("second softswitch sync %+v, %v; want 2 unchanged, s3 removed", res, err)
		}
		if err := e.mod.Follow(ctx); err != nil {
			t.Fatal(err)
		}
		if got := e.search(t, alice, "q=сидорова"); got.Total != 0 {
			t.Errorf("Сидорова stays after her only source dropped her")
		}
		if got := e.search(t, alice, "q=петров").Contacts; len(got) != 1 || !slices.Equal(got[0].Sources, []string{"softswitch", "csv"}) {
			t.Errorf("petrov after the sync %+v", got)
		}
	})
}

// TestPersonalContacts: private to their owner, within the limit; the
// directory is read-only through the API.
func TestPersonalContacts(t *testing.T) {
	forEachDialect(t, []addressbook.Account{ivanov}, func(t *testing.T, e *env) {
		waitFor(t, "the accounts sync", func() bool { return e.search(t, alice, "q=иванов").Total == 1 })
		var c addressbook.Contact
		e.call(t, alice, "POST", "/v1/contacts", map[string]any{
			"display_name": "Сантехник Василий", "phones": []map[string]string{{"number": "+7 916 555-44-33", "kind": "mobile"}},
			"info": "по вторникам",
		}).want(t, 201).decode(t, &c)
		if c.ID == 0 || c.OwnerID != alice || c.Phones[0].Normalized != "79165554433" {
			t.Fatalf("created %+v", c)
		}
		path := fmt.Sprintf("/v1/contacts/%d", c.ID)
		if got := e.search(t, alice, "q=василий"); got.Total != 1 {
			t.Errorf("the owner does not find it: %+v", got)
		}
		if got := e.search(t, bob, "q=василий"); got.Total != 0 {
			t.Errorf("bob finds alice's personal contact")
		}
		if got := e.search(t, bob, "q=5554433"); got.Total != 0 {
			t.Errorf("bob finds it by number")
		}
		e.call(t, bob, "GET", path, nil).want(t, 404)
		e.call(t, bob, "PUT", path, map[string]any{"display_name": "x"}).want(t, 404)
		e.call(t, bob, "DELETE", path, nil).want(t, 404)
		e.call(t, bob, "PUT", path+"/favorite", nil).want(t, 404)

		var upd addressbook.Contact
		e.call(t, alice, "PUT", path, map[string]any{"display_name": "Василий (сантехник)", "phones": []map[string]string{{"number": "8 916 555 44 33"}}}).
			want(t, 200).decode(t, &upd)
		if upd.DisplayName != "Василий (сантехник)" || upd.Info != "" {
			t.Errorf("updated %+v", upd)
		}
		// Personal first, then the directory, in number resolution.
		if name, ok := e.mod.NameForNumber(t.Context(), alice, "+79165554433"); !ok || name != "Василий (сантехник)" {
			t.Errorf("alice resolves %q, %v", name, ok)
		}
		if _, ok := e.mod.NameForNumber(t.Context(), bob, "+79165554433"); ok {
			t.Errorf("bob resolves alice's personal contact")
		}
		if name, ok := e.mod.NameForNumber(t.Context(), bob, "12-34"); !ok || name != "Иван Иванов" {
			t.Errorf("bob resolves 1234 as %q, %v", name, ok)
		}
		var lk struct{ Contacts []addressbook.Contact }
		e.call(t, alice, "GET", "/v1/lookup?number=8-916-555-44-33", nil).want(t, 200).decode(t, &lk)
		if len(lk.Contacts) != 1 || lk.Contacts[0].ID != c.ID {
			t.Errorf("lookup %+v", lk)
		}

		// The directory is changed by its sources only.
		dirID := e.search(t, alice, "q=иванов").Contacts[0].ID
		e.call(t, alice, "PUT", fmt.Sprintf("/v1/contacts/%d", dirID), map[string]any{"display_name": "x"}).want(t, 403)
		e.call(t, alice, "DELETE", fmt.Sprintf("/v1/contacts/%d", dirID), nil).want(t, 403)

		// Limits and validation.
		for i := range 2 {
			e.call(t, alice, "POST", "/v1/contacts", map[string]any{"display_name": fmt.Sprint("c", i)}).want(t, 201)
		}
		e.call(t, alice, "POST", "/v1/contacts", map[string]any{"display_name": "one too many"}).want(t, 409)
		for _, bad := range []map[string]any{
			{},
			{"display_name": "x", "phones": []map[string]string{{"number": "позвонить"}}},
			{"display_name": "x", "emails": []string{"nope"}},
			{"display_name": "x", "unknown": 1},
		} {
			e.call(t, bob, "POST", "/v1/contacts", bad).want(t, 400)
		}
		e.call(t, alice, "DELETE", path, nil).want(t, 204)
		e.call(t, alice, "GET", path, nil).want(t, 404)
		e.call(t, 0, "GET", "/v1/contacts", nil).want(t, 401)
		e.call(t, alice, "GET", "/v1/contacts?limit=1000", nil).want(t, 400)
		e.call(t, alice, "GET", "/v1/contacts?scope=everyone", nil).want(t, 400)
	})
}

// TestFavorites are per user.
func TestFavorites(t *testing.T) {
	forEachDialect(t, []addressbook.Account{ivanov}, func(t *testing.T, e *env) {
		waitFor(t, "the accounts sync", func() bool { return e.search(t, alice, "q=иванов").Total == 1 })
		id := e.search(t, alice, "q=иванов").Contacts[0].ID
		var c addressbook.Contact
		e.call(t, alice, "PUT", fmt.Sprintf("/v1/contacts/%d/favorite", id), nil).want(t, 200).decode(t, &c)
		if !c.Favorite {
			t.Errorf("not starred: %+v", c)
		}
		if got := e.search(t, alice, "favorites=true"); got.Total != 1 || !got.Contacts[0].Favorite {
			t.Errorf("alice's favourites %+v", got)
		}
		if got := e.search(t, bob, "favorites=true"); got.Total != 0 {
			t.Errorf("bob sees alice's favourites")
		}
		if got := e.search(t, bob, "q=иванов"); got.Contacts[0].Favorite {
			t.Errorf("bob's view shows alice's star")
		}
		e.call(t, alice, "DELETE", fmt.Sprintf("/v1/contacts/%d/favorite", id), nil).want(t, 200)
		if got := e.search(t, alice, "favorites=true"); got.Total != 0 {
			t.Errorf("unstarred still a favourite")
		}
	})
}

// TestAvatars: stored scaled, served at fixed sizes with an ETag; the
// person, the owner or an admin may change one.
func TestAvatars(t *testing.T) {
	forEachDialect(t, []addressbook.Account{ivanov}, func(t *testing.T, e *env) {
		waitFor(t, "the accounts sync", func() bool { return e.search(t, alice, "q=иванов").Total == 1 })
		id := e.search(t, alice, "q=иванов").Contacts[0].ID
		path := fmt.Sprintf("/v1/contacts/%d/avatar", id)
		png := imagingtest.EncodePNG(t, imagingtest.Image(1200, 800))
		e.call(t, alice, "GET", path, nil).want(t, 404)
		e.call(t, alice, "PUT", path, png).want(t, 403) // not hers
		e.call(t, 7, "PUT", path, []byte("not a picture")).want(t, 400)
		e.call(t, 7, "PUT", path, imagingtest.BombPNG(100000, 100000)).want(t, 400)
		var c addressbook.Contact
		e.call(t, 7, "PUT", path, png).want(t, 200).decode(t, &c) // his own
		if c.Avatar != "/addressbook"+path {
			t.Errorf("avatar %q", c.Avatar)
		}
		r := e.call(t, bob, "GET", path+"?size=64", nil).want(t, 200)
		etag := r.header.Get("ETag")
		if r.header.Get("Content-Type") != "image/png" || etag == "" || len(r.body) == 0 {
			t.Fatalf("avatar: %v %d bytes", r.header, len(r.body))
		}
		e.call(t, bob, "GET", path+"?size=64", nil, "If-None-Match", etag).want(t, 304)
		if r2 := e.call(t, bob, "GET", path+"?size=128", nil).want(t, 200); r2.header.Get("ETag") == etag {
			t.Errorf("two sizes share an ETag")
		}
		e.call(t, bob, "GET", path+"?size=65", nil).want(t, 400)
		e.call(t, admin, "PUT", path, imagingtest.EncodeJPEG(t, imagingtest.Image(300, 300))).want(t, 200)
		r3 := e.call(t, bob, "GET", path+"?size=64", nil, "If-None-Match", etag).want(t, 200)
		if r3.header.Get("ETag") == etag || r3.header.Get("Content-Type") != "image/jpeg" {
			t.Errorf("a new picture kept its ETag or type: %v", r3.header)
		}
		e.call(t, 7, "DELETE", path, nil).want(t, 204)
		e.call(t, bob, "GET", path, nil).want(t, 404)
	})
}

// TestIndexFollowsOtherWriters: a change made through another Directory
// (the import command, another node) reaches this node's search.
func TestIndexFollowsOtherWriters(t *testing.T) {
	forEachDialect(t, nil, func(t *testing.T, e *env) {
		r := addressbook.Record{ExternalID: "x1"}
		r.DisplayName = "Внешний Контакт"
		if _, err := e.dir.Sync(context.Background(), addressbook.SourceCSV, []addressbook.Record{r}, false, nil); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the change log", func() bool { return e.search(t, alice, "q=внешний").Total == 1 })
	})
}
