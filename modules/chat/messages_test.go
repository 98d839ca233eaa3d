package chat

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func msgPath(conv int64, rest string) string {
	return fmt.Sprintf("/v1/conversations/%d%s", conv, rest)
}

func TestIdempotentSend(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		g := e.group(t, 1, "g", 2)
		other := e.group(t, 1, "other", 2)
		req := SendRequest{ClientID: "3f1c-retry", Body: "привет"}

		var first, again Message
		e.call(t, 1, "POST", msgPath(g, "/messages"), req).want(t, http.StatusCreated).decode(t, &first)
		e.call(t, 1, "POST", msgPath(g, "/messages"), req).want(t, http.StatusOK).decode(t, &again)
		if again.ID != first.ID || again.Body != "привет" || again.ClientID != "3f1c-retry" {
			t.Fatalf("retry gave %+v, first %+v", again, first)
		}
		// A retry is the original even if the client changed its mind.
		changed := req
		changed.Body = "другое"
		e.call(t, 1, "POST", msgPath(g, "/messages"), changed).want(t, http.StatusOK).decode(t, &again)
		if again.ID != first.ID || again.Body != "привет" {
			t.Fatalf("changed retry gave %+v", again)
		}
		// The same client_id from another sender is another message.
		var theirs Message
		e.call(t, 2, "POST", msgPath(g, "/messages"), req).want(t, http.StatusCreated).decode(t, &theirs)
		if theirs.ID == first.ID {
			t.Fatal("two senders' client ids collided")
		}
		e.call(t, 1, "POST", msgPath(other, "/messages"), req).wantError(t, http.StatusConflict, "client_id_conflict")

		// Concurrent duplicates: one is stored, every answer names it.
		const n = 8
		dup := SendRequest{ClientID: "concurrent-1", Body: "once"}
		var wg sync.WaitGroup
		res := make([]response, n)
		for i := range n {
			wg.Go(func() { res[i] = e.call(t, 2, "POST", msgPath(g, "/messages"), dup) })
		}
		wg.Wait()
		created, id := 0, int64(0)
		for _, r := range res {
			var m Message
			switch r.Status {
			case http.StatusCreated:
				created++
			case http.StatusOK:
			default:
				t.Fatalf("concurrent send: %s", r)
			}
			r.decode(t, &m)
			if id != 0 && m.ID != id {
				t.Fatalf("concurrent sends gave messages %d and %d", id, m.ID)
			}
			id = m.ID
		}
		if created != 1 {
			t.Errorf("%d of %d concurrent duplicates answered 201, want 1", created, n)
		}
		var stored int
		if err := e.db.GetContext(t.Context(), &stored, "SELECT COUNT(*) FROM chat_messages WHERE client_id = ?", "concurrent-1"); err != nil || stored != 1 {
			t.Errorf("stored %d messages (%v), want 1", stored, err)
		}
		if got := testutil.ToFloat64(e.mod.met.replays); got != 2+n-1 {
			t.Errorf("replays counted %v, want %d", got, 2+n-1)
		}
		if got := testutil.ToFloat64(e.mod.met.messages.WithLabelValues(MessageText)); got != 3 {
			t.Errorf("text messages counted %v, want 3", got)
		}
		// Each member's stream got each message once.
		for _, u := range []int64{1, 2} {
			seen := map[int64]int{}
			for _, ev := range e.events(t, u, 0) {
				if me, err := find([]event{ev}, TopicMessageCreated, func(MessageEvent) bool { return true }); err == nil {
					seen[me.Message.ID]++
				}
			}
			for mid, c := range seen {
				if c != 1 {
					t.Errorf("user %d got message %d %d times", u, mid, c)
				}
			}
			if seen[id] != 1 || seen[first.ID] != 1 {
				t.Errorf("user %d: messages seen %v", u, seen)
			}
		}
	})
}

func TestSendValidation(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		g := e.group(t, 1, "g", 2)
		other := e.group(t, 3, "elsewhere", 4)
		foreign := e.send(t, 3, other, "не ваше")
		e.files.add("f1", 1)
		e.files.add("f2", 2)
		tests := []struct {
			name   string
			body   string
			status int
			code   string
		}{
			{"no client id", `{"body":"x"}`, 400, "bad_request"},
			{"client id with space", `{"client_id":"a b","body":"x"}`, 400, "bad_request"},
			{"client id too long", `{"client_id":"` + strings.Repeat("a", 65) + `","body":"x"}`, 400, "bad_request"},
			{"empty", `{"client_id":"v1","body":"  "}`, 400, "bad_request"},
			{"too large", `{"client_id":"v2","body":"` + strings.Repeat("я", 8193) + `"}`, 413, "message_too_large"},
			{"nul", `{"client_id":"v3","body":"a\u0000b"}`, 400, "bad_request"},
			{"reply elsewhere", fmt.Sprintf(`{"client_id":"v4","body":"x","reply_to_id":%d}`, foreign.ID), 400, "bad_request"},
			{"mention non-member", `{"client_id":"v5","body":"x","mentions":[3]}`, 400, "bad_request"},
			{"mention bad id", `{"client_id":"v6","body":"x","mentions":[-1]}`, 400, "bad_request"},
			{"someone else's file", `{"client_id":"v7","file_ids":["f2"]}`, 400, "file_unavailable"},
			{"file twice", `{"client_id":"v8","file_ids":["f1","f1"]}`, 400, "bad_request"},
			{"forward unreadable", fmt.Sprintf(`{"client_id":"v9","forward_from_id":%d}`, foreign.ID), 400, "bad_request"},
			{"forward with body", `{"client_id":"v10","forward_from_id":1,"body":"x"}`, 400, "bad_request"},
			{"unknown field", `{"client_id":"v11","body":"x","silent":true}`, 400, "bad_request"},
			{"not json", `client_id=v12`, 400, "bad_request"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e.raw(t, 1, "POST", msgPath(g, "/messages"), tt.body).wantError(t, tt.status, tt.code)
			})
		}
		// Exactly at the limit is fine.
		e.send(t, 1, g, strings.Repeat("я", 8192))
		// HTML-ish text is escaped in JSON, and still fits.
		e.send(t, 1, g, strings.Repeat("<", 16<<10))

		// Replies, mentions, files and forwards that are allowed.
		base := e.send(t, 2, g, "основа")
		m := e.sendReq(t, 1, g, SendRequest{Body: "ответ @2", ReplyToID: base.ID, Mentions: []int64{2, 2, 1}, FileIDs: []string{"f1"}})
		if m.ReplyToID != base.ID || !slices.Equal(m.Mentions, []int64{1, 2}) || len(m.Files) != 1 || m.Files[0].ID != "f1" || m.Files[0].Name != "f1.png" {
			t.Fatalf("sent %+v", m)
		}
		got := e.getMessage(t, 2, g, m.ID)
		if !slices.Equal(got.Mentions, m.Mentions) || len(got.Files) != 1 || got.ReplyToID != base.ID {
			t.Fatalf("read back %+v", got)
		}
		d := e.direct(t, 1, 5)
		fwd := e.sendReq(t, 1, d, SendRequest{ForwardFromID: m.ID})
		if fwd.Body != m.Body || fwd.ForwardedFrom == nil || fwd.ForwardedFrom.MessageID != m.ID || fwd.ForwardedFrom.SenderID != 1 || len(fwd.Files) != 1 {
			t.Fatalf("forward %+v", fwd)
		}
		fwd2 := e.sendReq(t, 5, d, SendRequest{ForwardFromID: fwd.ID})
		if fwd2.ForwardedFrom.MessageID != m.ID {
			t.Errorf("a forward of a forward names %d, want the original %d", fwd2.ForwardedFrom.MessageID, m.ID)
		}
		// The file is now readable by the direct chat's peer too.
		for _, tt := range []struct {
			user int64
			want bool
		}{{1, true}, {2, true}, {5, true}, {3, false}} {
			ok, err := e.mod.CanReadFile(t.Context(), tt.user, "f1")
			if err != nil || ok != tt.want {
				t.Errorf("CanReadFile(%d, f1) = %v, %v; want %v", tt.user, ok, err, tt.want)
			}
		}
	})
}

func TestAttachmentsDisabled(t *testing.T) {
	forEachDialect(t, envOptions{noFiles: true}, func(t *testing.T, e *env) {
		g := e.group(t, 1, "g")
		e.call(t, 1, "POST", msgPath(g, "/messages"), SendRequest{ClientID: "a", FileIDs: []string{"f1"}}).
			wantError(t, 400, "attachments_disabled")
	})
}

func (e *env) getMessage(t testing.TB, user, conv, id int64) Message {
	t.Helper()
	var m Message
	e.call(t, user, "GET", msgPath(conv, fmt.Sprintf("/messages/%d", id)), nil).want(t, 200).decode(t, &m)
	return m
}

func (e *env) history(t testing.TB, user, conv int64, query string) HistoryPage {
	t.Helper()
	var p HistoryPage
	e.call(t, user, "GET", msgPath(conv, "/messages"+query), nil).want(t, 200).decode(t, &p)
	return p
}

func bodies(p HistoryPage) []string {
	var out []string
	for _, m := range p.Messages {
		out = append(out, m.Body)
	}
	return out
}

func seqBodies(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprint(i))
	}
	return out
}

func TestHistory(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		d := e.direct(t, 1, 2)
		ids := map[int]int64{}
		for i := 1; i <= 30; i++ {
			ids[i] = e.send(t, int64(1+i%2), d, fmt.Sprint(i)).ID
		}
		// User 1 hides 20; user 2 still sees it.
		e.call(t, 1, "DELETE", msgPath(d, fmt.Sprintf("/messages/%d?for=me", ids[20])), nil).want(t, 204)

		without20 := func(s []string) []string { return slices.DeleteFunc(s, func(b string) bool { return b == "20" }) }
		tests := []struct {
			name         string
			user         int64
			query        string
			want         []string
			before, more bool
		}{
			{"newest", 1, "?limit=5", seqBodies(26, 30), true, false},
			{"newest default", 2, "", seqBodies(1, 30), false, false},
			{"before", 1, fmt.Sprintf("?before=%d&limit=5", ids[26]), without20(seqBodies(20, 25)), true, true},
			{"before start", 1, fmt.Sprintf("?before=%d&limit=5", ids[3]), seqBodies(1, 2), false, true},
			{"after", 1, fmt.Sprintf("?after=%d&limit=5", ids[17]), without20(seqBodies(18, 23)), true, true},
			{"after end", 2, fmt.Sprintf("?after=%d&limit=5", ids[28]), seqBodies(29, 30), true, false},
			{"after everything", 2, fmt.Sprintf("?after=%d", ids[30]), nil, true, false},
			{"around", 2, fmt.Sprintf("?around=%d&limit=5", ids[10]), seqBodies(8, 12), true, true},
			{"around start", 2, fmt.Sprintf("?around=%d&limit=5", ids[1]), seqBodies(1, 5), false, true},
			{"around end", 2, fmt.Sprintf("?around=%d&limit=4", ids[30]), seqBodies(29, 30)[0:2], true, false},
		}
		// around the end: one older (limit-1)/2 = 1, then 30 itself.
		tests[len(tests)-1].want = []string{"29", "30"}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				p := e.history(t, tt.user, d, tt.query)
				if got := bodies(p); !slices.Equal(got, tt.want) || p.HasMoreBefore != tt.before || p.HasMoreAfter != tt.more {
					t.Errorf("got %v before=%v after=%v; want %v before=%v after=%v", got, p.HasMoreBefore, p.HasMoreAfter, tt.want, tt.before, tt.more)
				}
			})
		}

		// Paging backwards and forwards visits every visible message once.
		var back []string
		q := "?limit=7"
		for {
			p := e.history(t, 1, d, q)
			back = append(bodies(p), back...)
			if !p.HasMoreBefore {
				break
			}
			q = fmt.Sprintf("?limit=7&before=%d", p.Messages[0].ID)
		}
		var fwd []string
		q = "?limit=7&after=0"
		for {
			p := e.history(t, 1, d, q)
			fwd = append(fwd, bodies(p)...)
			if !p.HasMoreAfter {
				break
			}
			q = fmt.Sprintf("?limit=7&after=%d", p.Messages[len(p.Messages)-1].ID)
		}
		if want := without20(seqBodies(1, 30)); !slices.Equal(back, want) || !slices.Equal(fwd, want) {
			t.Errorf("paged back %v, forward %v; want %v", back, fwd, want)
		}

		for _, bad := range []string{"?before=1&after=2", "?limit=abc", "?before=-1", "?around=x"} {
			e.call(t, 1, "GET", msgPath(d, "/messages"+bad), nil).wantError(t, 400, "bad_request")
		}
		e.call(t, 1, "GET", msgPath(d, fmt.Sprintf("/messages?around=%d", ids[20])), nil).wantError(t, 404, "not_found")
		if p := e.history(t, 2, d, "?limit=1000"); len(p.Messages) != 30 {
			t.Errorf("limit 1000 gave %d", len(p.Messages))
		}
		var n int
		for i := 31; i <= 130; i++ {
			e.send(t, 1, d, fmt.Sprint(i))
			n++
		}
		if p := e.history(t, 2, d, "?limit=1000"); len(p.Messages) != MaxHistoryLimit || !p.HasMoreBefore {
			t.Errorf("limit 1000 of %d messages gave %d", 30+n, len(p.Messages))
		}
	})
}

func TestEditDelete(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		const owner, admin, alice, bob = 1, 2, 3, 4
		g := e.group(t, owner, "g", admin, alice, bob)
		e.call(t, owner, "PUT", msgPath(g, "/members/2/role"), map[string]any{"role": "admin"}).want(t, 200)
		m := e.send(t, alice, g, "опечатка")
		mp := msgPath(g, fmt.Sprintf("/messages/%d", m.ID))

		e.call(t, bob, "PATCH", mp, map[string]any{"body": "чужое"}).wantError(t, 403, "forbidden")
		e.call(t, alice, "PATCH", mp, map[string]any{"body": " "}).wantError(t, 400, "bad_request")
		e.call(t, alice, "PATCH", mp, map[string]any{"body": "x", "mentions": []int64{99}}).wantError(t, 400, "bad_request")
		var edited Message
		e.call(t, alice, "PATCH", mp, map[string]any{"body": "исправлено", "mentions": []int64{bob}}).want(t, 200).decode(t, &edited)
		if edited.Body != "исправлено" || edited.EditedAt == nil || !slices.Equal(edited.Mentions, []int64{bob}) {
			t.Fatalf("edited %+v", edited)
		}
		if got := e.getMessage(t, bob, g, m.ID); got.Body != "исправлено" || got.EditedAt == nil || !got.EditedAt.Equal(*edited.EditedAt) {
			t.Errorf("bob reads %+v", got)
		}
		if _, err := find(e.events(t, bob, 0), TopicMessageUpdated, func(ev MessageEvent) bool { return ev.Message.Body == "исправлено" }); err != nil {
			t.Error("bob missed the edit")
		}

		// Deleting for oneself.
		e.call(t, bob, "DELETE", mp+"?for=me", nil).want(t, 204)
		e.call(t, bob, "DELETE", mp+"?for=me", nil).want(t, 204)
		e.call(t, bob, "GET", mp, nil).wantError(t, 404, "not_found")
		if got := e.getMessage(t, alice, g, m.ID); got.Deleted || got.Body != "исправлено" {
			t.Errorf("alice reads %+v after bob hid it", got)
		}
		if _, err := find[MessageDeleted](e.events(t, alice, 0), TopicMessageDeleted, nil); err == nil {
			t.Error("alice heard of bob's delete for me")
		}
		if _, err := find(e.events(t, bob, 0), TopicMessageDeleted, func(ev MessageDeleted) bool { return !ev.ForEveryone && ev.MessageID == m.ID }); err != nil {
			t.Error("bob's other devices were not told")
		}

		// Deleting for everyone: own, or as an admin; not someone else's.
		theirs := e.send(t, bob, g, "bob's")
		tp := msgPath(g, fmt.Sprintf("/messages/%d", theirs.ID))
		e.call(t, alice, "DELETE", tp+"?for=everyone", nil).wantError(t, 403, "forbidden")
		e.call(t, alice, "DELETE", tp+"?for=all", nil).wantError(t, 400, "bad_request")
		e.call(t, admin, "DELETE", tp+"?for=everyone", nil).want(t, 204)
		e.call(t, alice, "DELETE", mp+"?for=everyone", nil).want(t, 204)
		e.call(t, alice, "DELETE", mp+"?for=everyone", nil).want(t, 204)
		for _, id := range []int64{m.ID, theirs.ID} {
			got := e.getMessage(t, owner, g, id)
			if !got.Deleted || got.DeletedAt == nil || got.Body != "" || len(got.Mentions) != 0 {
				t.Errorf("tombstone %+v", got)
			}
		}
		e.call(t, alice, "PATCH", mp, map[string]any{"body": "воскрешение"}).wantError(t, 409, "message_deleted")
		p := e.history(t, owner, g, "?limit=2")
		if len(p.Messages) != 2 || p.Messages[0].ID != m.ID || p.Messages[1].ID != theirs.ID || !p.Messages[0].Deleted || !p.Messages[1].Deleted {
			t.Errorf("history ends with %+v, want the two tombstones", p.Messages)
		}
		// The event carries no text either.
		for _, ev := range e.events(t, owner, 0) {
			if ev.Type == TopicMessageDeleted && strings.Contains(string(ev.Data), "исправлено") {
				t.Errorf("deletion event carries the text: %s", ev.Data)
			}
		}
		if _, err := find(e.events(t, owner, 0), TopicMessageDeleted, func(ev MessageDeleted) bool { return ev.ForEveryone && ev.MessageID == theirs.ID && ev.By == admin }); err != nil {
			t.Error("owner missed the admin's deletion")
		}

		// In a direct conversation only one's own.
		d := e.direct(t, alice, bob)
		dm := e.send(t, alice, d, "личное")
		e.call(t, bob, "DELETE", msgPath(d, fmt.Sprintf("/messages/%d?for=everyone", dm.ID)), nil).wantError(t, 403, "forbidden")
		e.call(t, alice, "DELETE", msgPath(d, fmt.Sprintf("/messages/%d?for=everyone", dm.ID)), nil).want(t, 204)
	})
}

func TestReactions(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		g := e.group(t, 1, "g", 2, 3)
		m := e.send(t, 1, g, "реагируйте")
		rp := func(emoji string) string {
			return msgPath(g, fmt.Sprintf("/messages/%d/reactions/%s", m.ID, url.PathEscape(emoji)))
		}
		var res struct{ Reactions []Reaction }
		e.call(t, 2, "PUT", rp("👍"), nil).want(t, 200)
		e.call(t, 3, "PUT", rp("👍"), nil).want(t, 200)
		e.call(t, 3, "PUT", rp("👍"), nil).want(t, 200) // once per user per emoji
		e.call(t, 2, "PUT", rp("👨‍👩‍👧‍👦"), nil).want(t, 200)
		e.call(t, 1, "PUT", rp(":ok:"), nil).want(t, 200).decode(t, &res)
		want := []Reaction{{"👍", []int64{2, 3}}, {"👨‍👩‍👧‍👦", []int64{2}}, {":ok:", []int64{1}}}
		if !reactionsEqual(res.Reactions, want) {
			t.Fatalf("reactions %+v, want %+v", res.Reactions, want)
		}
		e.call(t, 3, "DELETE", rp("👍"), nil).want(t, 200).decode(t, &res)
		e.call(t, 3, "DELETE", rp("👍"), nil).want(t, 200)
		want[0].UserIDs = []int64{2}
		if !reactionsEqual(res.Reactions, want) || !reactionsEqual(e.getMessage(t, 1, g, m.ID).Reactions, want) {
			t.Fatalf("after removal %+v, want %+v", res.Reactions, want)
		}
		// Each change is one event; the no-ops none.
		var changes []ReactionChanged
		for _, ev := range e.events(t, 1, 0) {
			if rc, err := find([]event{ev}, TopicReactionChanged, func(ReactionChanged) bool { return true }); err == nil {
				changes = append(changes, rc)
			}
		}
		if len(changes) != 5 || changes[4].Added || changes[4].UserID != 3 || !reactionsEqual(changes[4].Reactions, want) {
			t.Errorf("reaction events %+v", changes)
		}

		for _, bad := range []string{"a b", strings.Repeat("x", 65), strings.Repeat("😀", 17), "\t"} {
			e.call(t, 1, "PUT", rp(bad), nil).wantError(t, 400, "bad_request")
		}
		for i := range MaxReactionsPerUser - 1 {
			e.call(t, 1, "PUT", rp(fmt.Sprintf("e%d", i)), nil).want(t, 200)
		}
		e.call(t, 1, "PUT", rp("one-too-many"), nil).wantError(t, 409, "too_many_reactions")
		e.call(t, 1, "PUT", rp(":ok:"), nil).want(t, 200) // already there: fine
		e.call(t, 1, "DELETE", msgPath(g, fmt.Sprintf("/messages/%d?for=everyone", m.ID)), nil).want(t, 204)
		e.call(t, 2, "PUT", rp("👍"), nil).wantError(t, 409, "message_deleted")
		if got := e.getMessage(t, 2, g, m.ID); len(got.Reactions) != 0 {
			t.Errorf("tombstone keeps reactions %+v", got.Reactions)
		}
	})
}

func reactionsEqual(a, b []Reaction) bool {
	return slices.EqualFunc(a, b, func(x, y Reaction) bool { return x.Emoji == y.Emoji && slices.Equal(x.UserIDs, y.UserIDs) })
}

func TestPins(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		g := e.group(t, 1, "g", 2)
		m1 := e.send(t, 2, g, "первое")
		m2 := e.send(t, 2, g, "второе")
		pp := func(conv, id int64) string { return msgPath(conv, fmt.Sprintf("/pins/%d", id)) }

		e.call(t, 2, "PUT", pp(g, m1.ID), nil).wantError(t, 403, "forbidden")
		e.call(t, 1, "PUT", pp(g, m1.ID), nil).want(t, 204)
		e.call(t, 1, "PUT", pp(g, m2.ID), nil).want(t, 204)
		e.call(t, 1, "PUT", pp(g, m2.ID), nil).want(t, 204)
		e.call(t, 1, "PUT", pp(g, 999999), nil).wantError(t, 404, "not_found")
		var res struct{ Pins []Pin }
		e.call(t, 2, "GET", msgPath(g, "/pins"), nil).want(t, 200).decode(t, &res)
		if len(res.Pins) != 2 || res.Pins[0].Message.ID != m2.ID || res.Pins[1].Message.ID != m1.ID || res.Pins[0].PinnedBy != 1 {
			t.Fatalf("pins %+v", res.Pins)
		}
		e.call(t, 1, "DELETE", pp(g, m2.ID), nil).want(t, 204)
		e.call(t, 1, "DELETE", pp(g, m2.ID), nil).want(t, 204)
		e.call(t, 2, "GET", msgPath(g, "/pins"), nil).want(t, 200).decode(t, &res)
		if len(res.Pins) != 1 || res.Pins[0].Message.ID != m1.ID {
			t.Fatalf("pins after unpin %+v", res.Pins)
		}
		var pins []PinChanged
		for _, ev := range e.events(t, 2, 0) {
			if pc, err := find([]event{ev}, TopicPinChanged, func(PinChanged) bool { return true }); err == nil {
				pins = append(pins, pc)
			}
		}
		if len(pins) != 3 || !pins[0].Pinned || pins[2].Pinned || pins[2].MessageID != m2.ID {
			t.Errorf("pin events %+v", pins)
		}
		// Deleting a pinned message unpins it.
		e.call(t, 2, "DELETE", msgPath(g, fmt.Sprintf("/messages/%d?for=everyone", m1.ID)), nil).want(t, 204)
		e.call(t, 1, "GET", msgPath(g, "/pins"), nil).want(t, 200).decode(t, &res)
		if len(res.Pins) != 0 {
			t.Errorf("a deleted message is still pinned: %+v", res.Pins)
		}
		e.call(t, 1, "PUT", pp(g, m1.ID), nil).wantError(t, 409, "message_deleted")

		// In a direct conversation both may pin.
		d := e.direct(t, 2, 3)
		dm := e.send(t, 3, d, "важное")
		e.call(t, 2, "PUT", pp(d, dm.ID), nil).want(t, 204)
		e.call(t, 3, "DELETE", pp(d, dm.ID), nil).want(t, 204)
	})
}

func TestReadMarkers(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		const alice, bob, carol = 1, 2, 3
		g := e.group(t, alice, "g", bob, carol)
		var sent []Message
		for i := range 5 {
			sent = append(sent, e.send(t, alice, g, fmt.Sprint("m", i)))
		}
		sent = append(sent, e.sendReq(t, carol, g, SendRequest{Body: "@bob", Mentions: []int64{bob}}))

		view := func(user int64) ConversationView {
			var v ConversationView
			e.call(t, user, "GET", msgPath(g, ""), nil).want(t, 200).decode(t, &v)
			return v
		}
		if v := view(bob); v.Unread != 6 || v.UnreadMentions != 1 || v.Me.LastReadMessageID != 0 {
			t.Fatalf("bob before reading: unread %d mentions %d marker %d", v.Unread, v.UnreadMentions, v.Me.LastReadMessageID)
		}
		// Own messages are never unread; sending reads what came before.
		if v := view(alice); v.Unread != 1 || v.Me.LastReadMessageID != sent[4].ID {
			t.Fatalf("alice: unread %d, marker %d", v.Unread, v.Me.LastReadMessageID)
		}

		bobSeq := e.lastSeq(t, alice)
		var st ReadState
		e.call(t, bob, "POST", msgPath(g, "/read"), map[string]any{"message_id": sent[2].ID}).want(t, 200).decode(t, &st)
		if st.LastReadMessageID != sent[2].ID || st.Unread != 3 || st.UnreadMentions != 1 {
			t.Fatalf("after reading to 3: %+v", st)
		}
		// Backwards is ignored, and announces nothing.
		e.call(t, bob, "POST", msgPath(g, "/read"), map[string]any{"message_id": sent[0].ID}).want(t, 200).decode(t, &st)
		if st.LastReadMessageID != sent[2].ID || st.Unread != 3 {
			t.Fatalf("marker moved back: %+v", st)
		}
		e.call(t, bob, "POST", msgPath(g, "/read"), map[string]any{"message_id": sent[5].ID}).want(t, 200).decode(t, &st)
		if st.Unread != 0 || st.UnreadMentions != 0 {
			t.Fatalf("after reading all: %+v", st)
		}
		// Read receipts: every member saw bob's two moves, in order.
		for _, u := range []int64{alice, carol, bob} {
			var marks []int64
			for _, ev := range e.events(t, u, 0) {
				if ru, err := find([]event{ev}, TopicReadUpdated, func(r ReadUpdated) bool { return r.UserID == bob }); err == nil {
					marks = append(marks, ru.LastReadMessageID)
				}
			}
			if want := []int64{sent[2].ID, sent[5].ID}; !slices.Equal(marks, want) {
				t.Errorf("user %d saw bob's marker at %v, want %v", u, marks, want)
			}
		}
		if evs := e.events(t, alice, bobSeq); len(evs) != 2 {
			t.Errorf("alice got %v for bob's three read calls, want 2 receipts", types(evs))
		}
		var members ConversationView
		e.call(t, alice, "GET", msgPath(g, ""), nil).want(t, 200).decode(t, &members)
		for _, mb := range members.Members {
			if mb.UserID == bob && mb.LastReadMessageID != sent[5].ID {
				t.Errorf("bob's public marker %d", mb.LastReadMessageID)
			}
		}

		other := e.group(t, carol, "other")
		elsewhere := e.send(t, carol, other, "x")
		e.call(t, bob, "POST", msgPath(g, "/read"), map[string]any{"message_id": elsewhere.ID}).wantError(t, 404, "not_found")
		e.call(t, bob, "POST", msgPath(g, "/read"), map[string]any{"message_id": 0}).wantError(t, 400, "bad_request")

		// Deleted and hidden messages are not unread.
		more := e.send(t, alice, g, "удалю")
		hidden := e.send(t, alice, g, "скрою")
		e.call(t, alice, "DELETE", msgPath(g, fmt.Sprintf("/messages/%d?for=everyone", more.ID)), nil).want(t, 204)
		e.call(t, carol, "DELETE", msgPath(g, fmt.Sprintf("/messages/%d?for=me", hidden.ID)), nil).want(t, 204)
		if v := view(bob); v.Unread != 1 {
			t.Errorf("bob: unread %d, want 1", v.Unread)
		}
		if v := view(carol); v.Unread != 0 || v.LastMessage == nil || v.LastMessage.ID != more.ID {
			t.Errorf("carol: unread %d, last %+v", v.Unread, v.LastMessage)
		}
	})
}
