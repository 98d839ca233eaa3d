package main

import (
	"testing"

	"github.com/elph-server/elph/modules/sso"
	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
)

// The directory names a call's peer and a message's sender from the
// accounts, on both dialects.
func TestDirectory(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		s := sso.NewStore(db)
		ivanov := sso.User{Login: "ivanov", DisplayName: "Иван Иванов", Phones: []sso.Phone{{Number: "1234", Kind: sso.PhoneExtension}}}
		bare := sso.User{Login: "petrov", Phones: []sso.Phone{{Number: "+7 495 000-00-01", Kind: sso.PhoneMobile}}}
		for _, u := range []*sso.User{&ivanov, &bare} {
			if err := s.CreateUser(t.Context(), u, ""); err != nil {
				t.Fatal(err)
			}
		}
		d := directory{store: s}
		for _, tt := range []struct {
			number, want string
			ok           bool
		}{
			{"12-34", "Иван Иванов", true},
			{"+74950000001", "petrov", true}, // no display name: the login
			{"5555", "", false},
			{"", "", false},
		} {
			if got, ok := d.NameForNumber(t.Context(), 1, tt.number); got != tt.want || ok != tt.ok {
				t.Errorf("NameForNumber(%q) = %q, %v; want %q, %v", tt.number, got, ok, tt.want, tt.ok)
			}
		}
		names, err := d.DisplayNames(t.Context(), []int64{ivanov.ID, bare.ID, 9999})
		if err != nil || len(names) != 2 || names[ivanov.ID] != "Иван Иванов" || names[bare.ID] != "petrov" {
			t.Errorf("DisplayNames = %v, %v", names, err)
		}
	})
}
