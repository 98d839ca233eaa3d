package sso_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/elph-server/elph/modules/sso"
	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/httpx"
	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
)

func TestLoginHTTP(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, envOptions{})
		u := e.createUser(t, sso.NewUser{Login: "Иванов", DisplayName: "Иванов Иван",
			Phones: []sso.Phone{{Number: "+7 (495) 765-43-21", Kind: sso.PhoneWork}, {Number: "4321"}}})

		for _, login := range []string{
			"Иванов", "иванов", "ИВАНОВ", "  иванов ",
			"+7 495 765-43-21", "+7-495-765-43-21", "+7 (495) 765 43 21", "43-21",
		} {
			t.Run(login, func(t *testing.T) {
				r := e.call(t, http.MethodPost, "/sso/v1/login", "", loginBody{Login: login, Password: userPassword, Device: "Рабочий ноутбук"})
				r.wantStatus(t, http.StatusOK)
				if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
					t.Errorf("Cache-Control = %q, want no-store", cc)
				}
				var raw map[string]json.RawMessage
				r.decode(t, &raw)
				for _, k := range []string{"access_token", "token_type", "expires_in", "expires_at", "refresh_token", "session_id", "user"} {
					if _, ok := raw[k]; !ok {
						t.Errorf("answer lacks %q: %s", k, r)
					}
				}
				var p tokenPair
				r.decode(t, &p)
				if p.TokenType != "Bearer" || p.AccessToken == "" || p.RefreshToken == "" || p.SessionID == "" {
					t.Errorf("answer = %+v", p)
				}
				if want := int(e.cfg.AccessTokenTTL / time.Second); p.ExpiresIn != want {
					t.Errorf("expires_in = %d, want %d", p.ExpiresIn, want)
				}
				if want := e.clock.Now().Add(e.cfg.AccessTokenTTL); !p.ExpiresAt.Equal(want) {
					t.Errorf("expires_at = %v, want %v", p.ExpiresAt, want)
				}
				if p.User.ID != u.ID || p.User.Login != "Иванов" || p.User.DisplayName != "Иванов Иван" {
					t.Errorf("user = %+v", p.User)
				}
				if strings.Contains(string(r.Body), "password") {
					t.Errorf("the answer mentions a password: %s", r)
				}

				me := e.wantTokenAccepted(t, p.AccessToken)
				if me.ID != u.ID || me.SessionID != p.SessionID || me.Groups == nil || len(me.Groups) != 0 {
					t.Errorf("/me = %+v", me)
				}
				sess, err := e.mod.Store().SessionByID(t.Context(), p.SessionID)
				if err != nil || sess.Device != "Рабочий ноутбук" || sess.UserAgent != "sso-test/1.0" || sess.IP != "127.0.0.1" {
					t.Errorf("session = %+v, %v", sess, err)
				}
			})
		}

		// A wrong password and an unknown login cannot be told apart.
		wrong := e.tryLogin(t, "Иванов", "Wrong-Password-1").wantError(t, http.StatusUnauthorized, "bad_credentials")
		unknown := e.tryLogin(t, "nobody", userPassword).wantError(t, http.StatusUnauthorized, "bad_credentials")
		if wrong.Message != unknown.Message {
			t.Errorf("messages differ: %q vs %q", wrong.Message, unknown.Message)
		}

		for _, tc := range []struct {
			name, contentType, body string
			status                  int
			code                    string
		}{
			{"malformed JSON", "application/json", `{"login": "Иванов", "password": `, http.StatusBadRequest, httpx.CodeBadRequest},
			{"not an object", "application/json", `["Иванов"]`, http.StatusBadRequest, httpx.CodeBadRequest},
			{"wrong field type", "application/json", `{"login": 7, "password": "x"}`, http.StatusBadRequest, httpx.CodeBadRequest},
			{"unknown field", "application/json", `{"login": "Иванов", "password": "x", "otp": "1"}`, http.StatusBadRequest, httpx.CodeBadRequest},
			{"trailing data", "application/json", `{"login": "Иванов", "password": "x"} {}`, http.StatusBadRequest, httpx.CodeBadRequest},
			{"empty body", "application/json", ``, http.StatusBadRequest, httpx.CodeBadRequest},
			{"wrong content type", "text/plain", `{"login": "Иванов", "password": "x"}`, http.StatusUnsupportedMediaType, httpx.CodeUnsupportedMedia},
			{"form", "application/x-www-form-urlencoded", `login=a&password=b`, http.StatusUnsupportedMediaType, httpx.CodeUnsupportedMedia},
			{"missing password", "application/json", `{"login": "Иванов"}`, http.StatusBadRequest, httpx.CodeBadRequest},
			{"missing login", "application/json", `{"password": "` + userPassword + `"}`, http.StatusBadRequest, httpx.CodeBadRequest},
			{"blank login", "application/json", `{"login": "  ", "password": "` + userPassword + `"}`, http.StatusBadRequest, httpx.CodeBadRequest},
			{"body too large", "application/json", `{"login": "` + strings.Repeat("a", 70<<10) + `", "password": "x"}`, http.StatusRequestEntityTooLarge, httpx.CodePayloadTooLarge},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e.raw(t, http.MethodPost, "/sso/v1/login", "", tc.contentType, tc.body).wantError(t, tc.status, tc.code)
			})
		}
		e.raw(t, http.MethodGet, "/sso/v1/login", "", "", "").wantError(t, http.StatusMethodNotAllowed, httpx.CodeMethodNotAllowed)

		// /me without a token, with a malformed one, and with another scheme.
		for _, tc := range []struct{ name, header string }{
			{"no token", ""},
			{"garbage token", "Bearer not.a.token"},
			{"basic auth", "Basic YWRtaW46YWRtaW4="},
		} {
			t.Run("me "+tc.name, func(t *testing.T) {
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.srv.URL+"/sso/v1/me", nil)
				if tc.header != "" {
					req.Header.Set("Authorization", tc.header)
				}
				resp, err := e.srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var body struct{ Error apiError }
				if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != http.StatusUnauthorized || body.Error.Code != httpx.CodeUnauthorized {
					t.Errorf("got %d %+v, want 401 unauthorized", resp.StatusCode, body.Error)
				}
				if c := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(c, "Bearer") {
					t.Errorf("WWW-Authenticate = %q", c)
				}
			})
		}
	})
}

func TestRefreshHTTP(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, envOptions{})
		u := e.createUser(t, sso.NewUser{Login: "erin"})
		revoked := subscribe(t, e.bus, sso.TopicSessionRevoked)

		first := e.login(t, "erin", userPassword, "laptop")
		e.clock.Advance(time.Minute)
		r := e.refresh(t, first.RefreshToken)
		r.wantStatus(t, http.StatusOK)
		if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control = %q", cc)
		}
		var second tokenPair
		r.decode(t, &second)
		if second.SessionID != first.SessionID || second.User.ID != u.ID {
			t.Errorf("refresh answered session %q user %d, want %q %d", second.SessionID, second.User.ID, first.SessionID, u.ID)
		}
		if second.AccessToken == first.AccessToken || second.RefreshToken == first.RefreshToken || second.RefreshToken == "" {
			t.Error("refresh did not hand out a new pair")
		}
		if want := e.clock.Now().Add(e.cfg.AccessTokenTTL); !second.ExpiresAt.Equal(want) {
			t.Errorf("new expires_at = %v, want %v", second.ExpiresAt, want)
		}
		// The old access token stays valid until it expires.
		e.wantTokenAccepted(t, first.AccessToken)
		e.wantTokenAccepted(t, second.AccessToken)
		sess, err := e.mod.Store().SessionByID(t.Context(), first.SessionID)
		if err != nil || !sess.LastSeenAt.Equal(e.clock.Now()) {
			t.Errorf("session after refresh = %+v, %v; want last seen now", sess, err)
		}

		// The first refresh token again: it was copied. The whole session ends.
		e.refresh(t, first.RefreshToken).wantError(t, http.StatusUnauthorized, "refresh_token_reused")
		p := revoked.revokedEvent(t, first.SessionID)
		if p.UserID != u.ID || p.Reason != "refresh token reused" || !p.At.Equal(e.clock.Now()) {
			t.Errorf("revocation event = %+v", p)
		}
		e.refresh(t, second.RefreshToken).wantError(t, http.StatusUnauthorized, "session_revoked")
		e.wantTokenRejected(t, second.AccessToken)
		e.wantTokenRejected(t, first.AccessToken)
		if got := counterValue(t, e.reg, "elph_sso_sessions_revoked_total", map[string]string{"reason": "refresh_reused"}); got != 1 {
			t.Errorf("sessions revoked for reuse = %v, want 1", got)
		}

		for _, tok := range []string{"", "not-a-token", strings.Repeat("x", 300)} {
			e.refresh(t, tok).wantError(t, http.StatusUnauthorized, "invalid_refresh_token")
		}
		e.raw(t, http.MethodPost, "/sso/v1/token", "", "text/plain", "x").wantError(t, http.StatusUnsupportedMediaType, httpx.CodeUnsupportedMedia)

		// An access token ends at its expiry; the refresh token still works.
		third := e.login(t, "erin", userPassword, "phone")
		e.clock.Advance(e.cfg.AccessTokenTTL + time.Minute) // past the verifier's leeway too
		r = e.me(t, third.AccessToken)
		r.wantError(t, http.StatusUnauthorized, httpx.CodeUnauthorized)
		if c := r.Header.Get("WWW-Authenticate"); !strings.Contains(c, "expired") {
			t.Errorf("WWW-Authenticate of an expired token = %q", c)
		}
		var fourth tokenPair
		r = e.refresh(t, third.RefreshToken)
		r.wantStatus(t, http.StatusOK)
		r.decode(t, &fourth)
		e.wantTokenAccepted(t, fourth.AccessToken)

		// One refresh token presented several times at once: one wins, the
		// others are reuse and end the session, the winner's pair included.
		race := e.login(t, "erin", userPassword, "racer")
		const racers = 4
		type outcome struct {
			status int
			code   string
			err    error
		}
		results := make(chan outcome, racers)
		body, _ := json.Marshal(map[string]string{"refresh_token": race.RefreshToken})
		for range racers {
			go func() {
				resp, err := e.srv.Client().Post(e.srv.URL+"/sso/v1/token", "application/json", strings.NewReader(string(body)))
				if err != nil {
					results <- outcome{err: err}
					return
				}
				defer resp.Body.Close()
				var b struct{ Error apiError }
				_ = json.NewDecoder(resp.Body).Decode(&b)
				results <- outcome{status: resp.StatusCode, code: b.Error.Code}
			}()
		}
		var won, reused int
		for range racers {
			o := <-results
			switch {
			case o.err != nil:
				t.Errorf("refresh: %v", o.err)
			case o.status == http.StatusOK:
				won++
			case o.status == http.StatusUnauthorized && o.code == "refresh_token_reused":
				reused++
			default:
				t.Errorf("refresh answered %d %s", o.status, o.code)
			}
		}
		if won != 1 || reused != racers-1 {
			t.Errorf("%d refreshes won and %d saw reuse; want 1 and %d", won, reused, racers-1)
		}
		revoked.revokedEvent(t, race.SessionID)
		e.wantTokenRejected(t, race.AccessToken)

		// A session past its refresh-token lifetime is over.
		e.clock.Advance(e.cfg.RefreshTokenTTL + time.Minute)
		e.refresh(t, fourth.RefreshToken).wantError(t, http.StatusUnauthorized, "session_expired")
	})
}

func TestSessionsHTTP(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, envOptions{})
		frank := e.createUser(t, sso.NewUser{Login: "frank"})
		grace := e.createUser(t, sso.NewUser{Login: "grace"})
		revoked := subscribe(t, e.bus, sso.TopicSessionRevoked)

		laptop := e.login(t, "frank", userPassword, "laptop")
		e.clock.Advance(time.Second)
		phone := e.login(t, "frank", userPassword, "phone")

		type item struct {
			sso.Session
			Current bool `json:"current"`
		}
		list := func(t *testing.T, token, query string) []item {
			t.Helper()
			r := e.call(t, http.MethodGet, "/sso/v1/sessions"+query, token, nil)
			r.wantStatus(t, http.StatusOK)
			var body struct{ Sessions []item }
			r.decode(t, &body)
			return body.Sessions
		}
		got := list(t, laptop.AccessToken, "")
		if len(got) != 2 {
			t.Fatalf("sessions = %+v, want 2", got)
		}
		for _, s := range got {
			if s.UserID != frank.ID {
				t.Errorf("someone else's session listed: %+v", s)
			}
			switch s.ID {
			case laptop.SessionID:
				if !s.Current || s.Device != "laptop" {
					t.Errorf("laptop session = %+v, want current", s)
				}
			case phone.SessionID:
				if s.Current || s.Device != "phone" {
					t.Errorf("phone session = %+v, want not current", s)
				}
			default:
				t.Errorf("unknown session %+v", s)
			}
		}

		// End the phone's session from the laptop.
		e.call(t, http.MethodDelete, "/sso/v1/sessions/"+phone.SessionID, laptop.AccessToken, nil).wantStatus(t, http.StatusNoContent)
		if p := revoked.revokedEvent(t, phone.SessionID); p.UserID != frank.ID || p.Reason != "revoked by user" {
			t.Errorf("revocation event = %+v", p)
		}
		e.refresh(t, phone.RefreshToken).wantError(t, http.StatusUnauthorized, "session_revoked")
		e.wantTokenRejected(t, phone.AccessToken)
		if got := list(t, laptop.AccessToken, ""); len(got) != 1 || got[0].ID != laptop.SessionID || !got[0].Current {
			t.Errorf("sessions after revoking the phone = %+v", got)
		}

		// Someone else's session is not found for a user, revoked for an admin.
		graceSess := e.login(t, "grace", userPassword, "tablet")
		e.call(t, http.MethodDelete, "/sso/v1/sessions/"+graceSess.SessionID, laptop.AccessToken, nil).wantError(t, http.StatusNotFound, httpx.CodeNotFound)
		e.call(t, http.MethodDelete, "/sso/v1/sessions/no-such-session", laptop.AccessToken, nil).wantError(t, http.StatusNotFound, httpx.CodeNotFound)
		e.wantTokenAccepted(t, graceSess.AccessToken)
		e.call(t, http.MethodGet, fmt.Sprintf("/sso/v1/sessions?user_id=%d", grace.ID), laptop.AccessToken, nil).wantError(t, http.StatusForbidden, httpx.CodeForbidden)
		e.call(t, http.MethodGet, "/sso/v1/sessions?user_id=x", laptop.AccessToken, nil).wantError(t, http.StatusBadRequest, httpx.CodeBadRequest)

		admin := e.login(t, "admin", adminPassword, "console")
		if got := list(t, admin.AccessToken, fmt.Sprintf("?user_id=%d", grace.ID)); len(got) != 1 || got[0].ID != graceSess.SessionID || got[0].Current {
			t.Errorf("admin's view of grace's sessions = %+v", got)
		}
		e.call(t, http.MethodDelete, "/sso/v1/sessions/"+graceSess.SessionID, admin.AccessToken, nil).wantStatus(t, http.StatusNoContent)
		if p := revoked.revokedEvent(t, graceSess.SessionID); p.UserID != grace.ID || p.Reason != "revoked by admin" {
			t.Errorf("revocation event = %+v", p)
		}
		e.wantTokenRejected(t, graceSess.AccessToken)
		e.refresh(t, graceSess.RefreshToken).wantError(t, http.StatusUnauthorized, "session_revoked")

		// Introspection answers from the token alone, for a front proxy.
		r := e.call(t, http.MethodGet, "/sso/v1/introspect", laptop.AccessToken, nil)
		r.wantStatus(t, http.StatusOK)
		var intro struct {
			Active    bool   `json:"active"`
			UserID    int64  `json:"user_id"`
			Login     string `json:"login"`
			Role      string `json:"role"`
			SessionID string `json:"session_id"`
		}
		r.decode(t, &intro)
		if !intro.Active || intro.UserID != frank.ID || intro.Login != "frank" || intro.Role != "user" || intro.SessionID != laptop.SessionID {
			t.Errorf("introspect = %+v", intro)
		}
		if r.Header.Get("X-Elph-User-Id") != fmt.Sprint(frank.ID) || r.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("introspect headers = %v", r.Header)
		}

		// Logout ends the caller's own session.
		e.call(t, http.MethodPost, "/sso/v1/logout", laptop.AccessToken, nil).wantStatus(t, http.StatusNoContent)
		e.call(t, http.MethodGet, "/sso/v1/introspect", laptop.AccessToken, nil).wantError(t, http.StatusUnauthorized, httpx.CodeUnauthorized)
		if p := revoked.revokedEvent(t, laptop.SessionID); p.Reason != "logout" {
			t.Errorf("revocation event = %+v", p)
		}
		e.wantTokenRejected(t, laptop.AccessToken)
		e.refresh(t, laptop.RefreshToken).wantError(t, http.StatusUnauthorized, "session_revoked")
		e.call(t, http.MethodPost, "/sso/v1/logout", "", nil).wantError(t, http.StatusUnauthorized, httpx.CodeUnauthorized)
		e.wantTokenAccepted(t, admin.AccessToken)
	})
}

func TestUsersHTTP(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, envOptions{})
		changed := subscribe(t, e.bus, sso.TopicUserChanged)
		revoked := subscribe(t, e.bus, sso.TopicSessionRevoked)
		admin := e.login(t, "admin", adminPassword, "console")
		adminUser := admin.User

		in := map[string]any{
			"login": "Гена", "display_name": "Геннадий", "email": "gena@corp.example",
			"phones": []map[string]string{{"number": "+7 900 123-45-67", "kind": "mobile"}}, "password": userPassword,
		}
		r := e.call(t, http.MethodPost, "/sso/v1/users", admin.AccessToken, in)
		r.wantStatus(t, http.StatusCreated)
		var gena sso.User
		r.decode(t, &gena)
		if gena.ID <= 0 || gena.Login != "Гена" || gena.Role != sso.RoleUser || gena.Source != sso.SourceLocal ||
			!slices.Equal(gena.Phones, []sso.Phone{{Number: "+79001234567", Kind: sso.PhoneMobile}}) {
			t.Errorf("created %+v", gena)
		}
		if strings.Contains(string(r.Body), userPassword) || strings.Contains(string(r.Body), "argon2") {
			t.Errorf("the answer shows the password or its hash: %s", r)
		}
		e.call(t, http.MethodPost, "/sso/v1/users", admin.AccessToken, in).wantError(t, http.StatusConflict, httpx.CodeConflict)
		weak := map[string]any{"login": "weak", "password": "short"}
		e.call(t, http.MethodPost, "/sso/v1/users", admin.AccessToken, weak).wantError(t, http.StatusBadRequest, httpx.CodeBadRequest)
		e.call(t, http.MethodPost, "/sso/v1/users", admin.AccessToken, map[string]any{"login": "x", "password": userPassword, "role": "root"}).
			wantError(t, http.StatusBadRequest, httpx.CodeBadRequest)

		g1 := e.login(t, "гена", userPassword, "laptop")
		g2 := e.login(t, "+7 900 123 45 67", userPassword, "phone")
		// A user may not manage users.
		e.call(t, http.MethodPost, "/sso/v1/users", g1.AccessToken, map[string]any{"login": "mallory", "password": userPassword}).
			wantError(t, http.StatusForbidden, httpx.CodeForbidden)
		e.call(t, http.MethodGet, "/sso/v1/users", g1.AccessToken, nil).wantError(t, http.StatusForbidden, httpx.CodeForbidden)
		e.call(t, http.MethodPatch, fmt.Sprintf("/sso/v1/users/%d", gena.ID), g1.AccessToken, map[string]any{"role": "admin"}).
			wantError(t, http.StatusForbidden, httpx.CodeForbidden)
		e.call(t, http.MethodGet, "/sso/v1/users", "", nil).wantError(t, http.StatusUnauthorized, httpx.CodeUnauthorized)

		r = e.call(t, http.MethodGet, "/sso/v1/users?limit=1", admin.AccessToken, nil)
		r.wantStatus(t, http.StatusOK)
		var page struct {
			Users     []sso.User `json:"users"`
			NextAfter string     `json:"next_after"`
		}
		r.decode(t, &page)
		if len(page.Users) != 1 || page.Users[0].ID != adminUser.ID || page.NextAfter != fmt.Sprint(adminUser.ID) {
			t.Errorf("first page = %+v", page)
		}
		e.call(t, http.MethodGet, "/sso/v1/users?limit=0", admin.AccessToken, nil).wantError(t, http.StatusBadRequest, httpx.CodeBadRequest)

		// Disabling ends every session and refuses the login, but only after
		// the right password: a wrong one still says bad_credentials.
		r = e.call(t, http.MethodPatch, fmt.Sprintf("/sso/v1/users/%d", gena.ID), admin.AccessToken, map[string]any{"disabled": true, "reason": "on leave"})
		r.wantStatus(t, http.StatusOK)
		var disabled sso.User
		r.decode(t, &disabled)
		if !disabled.Disabled || disabled.DisabledReason != "on leave" {
			t.Errorf("after PATCH: %+v", disabled)
		}
		for _, p := range []tokenPair{g1, g2} {
			if ev := revoked.revokedEvent(t, p.SessionID); ev.UserID != gena.ID || ev.Reason != "account disabled" {
				t.Errorf("revocation event = %+v", ev)
			}
			e.wantTokenRejected(t, p.AccessToken)
			e.refresh(t, p.RefreshToken).wantError(t, http.StatusUnauthorized, "session_revoked")
		}
		changed.waitFor(t, "user disabled event", func(ev bus.Event) bool {
			var p sso.UserChanged
			return json.Unmarshal(ev.Payload, &p) == nil && p.UserID == gena.ID && p.Change == "disabled" && p.Disabled
		})
		e.tryLogin(t, "Гена", "Wrong-Password-1").wantError(t, http.StatusUnauthorized, "bad_credentials")
		e.tryLogin(t, "Гена", userPassword).wantError(t, http.StatusForbidden, "account_disabled")

		e.call(t, http.MethodPatch, fmt.Sprintf("/sso/v1/users/%d", gena.ID), admin.AccessToken, map[string]any{"disabled": false}).wantStatus(t, http.StatusOK)
		e.login(t, "Гена", userPassword, "laptop")

		// The last admin can neither be disabled nor demoted.
		for _, patch := range []map[string]any{{"disabled": true}, {"role": "user"}} {
			e.call(t, http.MethodPatch, fmt.Sprintf("/sso/v1/users/%d", adminUser.ID), admin.AccessToken, patch).
				wantError(t, http.StatusBadRequest, httpx.CodeBadRequest)
		}
		e.wantTokenAccepted(t, admin.AccessToken)
		for _, tc := range []struct {
			path  string
			body  any
			code  string
			state int
		}{
			{"/sso/v1/users/999999", map[string]any{"disabled": true}, httpx.CodeNotFound, http.StatusNotFound},
			{"/sso/v1/users/abc", map[string]any{"disabled": true}, httpx.CodeBadRequest, http.StatusBadRequest},
			{fmt.Sprintf("/sso/v1/users/%d", gena.ID), map[string]any{"role": "root"}, httpx.CodeBadRequest, http.StatusBadRequest},
			{fmt.Sprintf("/sso/v1/users/%d", gena.ID), map[string]any{"name": "x"}, httpx.CodeBadRequest, http.StatusBadRequest},
		} {
			e.call(t, http.MethodPatch, tc.path, admin.AccessToken, tc.body).wantError(t, tc.state, tc.code)
		}

		// Promote gena; now the first admin may be demoted.
		r = e.call(t, http.MethodPatch, fmt.Sprintf("/sso/v1/users/%d", gena.ID), admin.AccessToken, map[string]any{"role": "admin"})
		r.wantStatus(t, http.StatusOK)
		e.call(t, http.MethodPatch, fmt.Sprintf("/sso/v1/users/%d", adminUser.ID), admin.AccessToken, map[string]any{"role": "user"}).wantStatus(t, http.StatusOK)
		if u := e.userByLogin(t, "admin"); u.Role != sso.RoleUser {
			t.Errorf("admin's role = %q after the demotion", u.Role)
		}
	})
}

func TestChangePasswordHTTP(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, envOptions{})
		e.createUser(t, sso.NewUser{Login: "heidi"})
		here := e.login(t, "heidi", userPassword, "laptop")
		there := e.login(t, "heidi", userPassword, "phone")
		change := func(current, next string) apiResponse {
			return e.call(t, http.MethodPost, "/sso/v1/password", here.AccessToken,
				map[string]string{"current_password": current, "new_password": next})
		}

		change("Wrong-Password-1", otherPassword).wantError(t, http.StatusUnauthorized, "bad_credentials")
		change(userPassword, "short").wantError(t, http.StatusBadRequest, "weak_password")
		change(userPassword, strings.Repeat("z", 16)).wantError(t, http.StatusBadRequest, "weak_password")
		e.call(t, http.MethodPost, "/sso/v1/password", "", map[string]string{"current_password": userPassword, "new_password": otherPassword}).
			wantError(t, http.StatusUnauthorized, httpx.CodeUnauthorized)
		e.call(t, http.MethodPost, "/sso/v1/password", here.AccessToken, map[string]string{"old": userPassword}).
			wantError(t, http.StatusBadRequest, httpx.CodeBadRequest)
		e.login(t, "heidi", userPassword, "still-the-old-password")

		change(userPassword, otherPassword).wantStatus(t, http.StatusNoContent)
		// The caller's session stays; the others end.
		e.wantTokenAccepted(t, here.AccessToken)
		e.wantTokenRejected(t, there.AccessToken)
		e.refresh(t, there.RefreshToken).wantError(t, http.StatusUnauthorized, "session_revoked")
		r := e.refresh(t, here.RefreshToken)
		r.wantStatus(t, http.StatusOK)

		e.tryLogin(t, "heidi", userPassword).wantError(t, http.StatusUnauthorized, "bad_credentials")
		e.login(t, "heidi", otherPassword, "laptop") // clears the account's failures

		// Guessing the current password with a (stolen) access token spends
		// the account's login budget like guessing at the login form.
		for range e.cfg.Lockout.AccountMaxFailures {
			change("Wrong-Password-2", "Brand-New-Secret-1").wantError(t, http.StatusUnauthorized, "bad_credentials")
		}
		change(otherPassword, "Brand-New-Secret-1").wantError(t, http.StatusTooManyRequests, "too_many_attempts")
		e.tryLogin(t, "heidi", otherPassword).wantError(t, http.StatusTooManyRequests, "too_many_attempts")
	})
}
