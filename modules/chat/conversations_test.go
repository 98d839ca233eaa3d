package chat

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestDirectConversation(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		var ab ConversationView
		e.call(t, 1, "POST", "/v1/conversations", map[string]any{"kind": "direct", "user_id": 2}).want(t, http.StatusCreated).decode(t, &ab)
		if ab.Kind != KindDirect || ab.MemberCount != 2 || len(ab.Members) != 2 || ab.Me.Role != RoleMember {
			t.Fatalf("created %+v", ab)
		}
		var ba ConversationView
		e.call(t, 2, "POST", "/v1/conversations", map[string]any{"kind": "direct", "user_id": 1}).want(t, http.StatusOK).decode(t, &ba)
		if ba.ID != ab.ID {
			t.Fatalf("B→A gave conversation %d, A→B %d", ba.ID, ab.ID)
		}
		for _, u := range []int64{1, 2} {
			evs := e.events(t, u, 0)
			if got := types(evs); !slices.Equal(got, []string{TopicConversationCreated}) {
				t.Errorf("user %d events %v, want one conversation.created", u, got)
			}
		}

		tests := []struct {
			name   string
			body   map[string]any
			status int
			code   string
		}{
			{"self", map[string]any{"kind": "direct", "user_id": 1}, 400, "bad_request"},
			{"unknown user", map[string]any{"kind": "direct", "user_id": 5000}, 400, "unknown_users"},
			{"no user", map[string]any{"kind": "direct"}, 400, "bad_request"},
			{"title on direct", map[string]any{"kind": "direct", "user_id": 3, "title": "x"}, 400, "bad_request"},
			{"bad kind", map[string]any{"kind": "channel"}, 400, "bad_request"},
			{"unknown field", map[string]any{"kind": "direct", "user_id": 3, "color": "red"}, 400, "bad_request"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e.call(t, 1, "POST", "/v1/conversations", tt.body).wantError(t, tt.status, tt.code)
			})
		}

		// Both create the pair's conversation at the same moment, many
		// times over: one conversation, and each user hears of it once.
		const pairs = 6
		var wg sync.WaitGroup
		got := make([][2]int64, pairs)
		for i := range pairs {
			a, b := int64(10+2*i), int64(11+2*i)
			wg.Go(func() { got[i][0] = e.direct(t, a, b) })
			wg.Go(func() { got[i][1] = e.direct(t, b, a) })
		}
		wg.Wait()
		for i, g := range got {
			if g[0] != g[1] || g[0] == 0 {
				t.Errorf("pair %d: conversations %v", i, g)
			}
			for _, u := range []int64{int64(10 + 2*i), int64(11 + 2*i)} {
				if n := len(e.events(t, u, 0)); n != 1 {
					t.Errorf("user %d has %d events, want 1", u, n)
				}
			}
		}
	})
}

func TestGroupRoles(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		const owner, admin, member, other, newcomer = 1, 2, 3, 4, 5
		g := e.group(t, owner, "  Проект  ", admin, member, other, owner)
		path := fmt.Sprintf("/v1/conversations/%d", g)

		var v ConversationView
		e.call(t, owner, "GET", path, nil).want(t, 200).decode(t, &v)
		if v.Title != "Проект" || v.MemberCount != 4 || len(v.Members) != 4 || v.Me.Role != RoleOwner {
			t.Fatalf("group %+v", v)
		}
		if v.LastMessage == nil || v.LastMessage.Kind != MessageSystem || v.LastMessage.System.Event != SystemCreated {
			t.Fatalf("last message %+v, want the created system message", v.LastMessage)
		}

		// Only the owner changes roles.
		e.call(t, member, "PUT", path+"/members/2/role", map[string]any{"role": "admin"}).wantError(t, 403, "forbidden")
		var changed struct{ Members []Member }
		e.call(t, owner, "PUT", path+"/members/2/role", map[string]any{"role": "admin"}).want(t, 200).decode(t, &changed)
		if len(changed.Members) != 1 || changed.Members[0].Role != RoleAdmin {
			t.Fatalf("role change %+v", changed)
		}
		e.call(t, owner, "PUT", path+"/members/2/role", map[string]any{"role": "king"}).wantError(t, 400, "bad_request")
		e.call(t, owner, "PUT", path+"/members/1/role", map[string]any{"role": "member"}).wantError(t, 403, "forbidden")
		e.call(t, owner, "PUT", path+"/members/77/role", map[string]any{"role": "admin"}).wantError(t, 404, "not_found")

		tests := []struct {
			name   string
			user   int64
			method string
			path   string
			body   any
			status int
		}{
			{"member renames", member, "PATCH", path, map[string]any{"title": "x"}, 403},
			{"member adds", member, "POST", path + "/members", map[string]any{"user_ids": []int64{newcomer}}, 403},
			{"member removes", member, "DELETE", path + "/members/4", nil, 403},
			{"admin removes owner", admin, "DELETE", path + "/members/1", nil, 403},
			{"admin sets role", admin, "PUT", path + "/members/3/role", map[string]any{"role": "admin"}, 403},
			{"admin renames", admin, "PATCH", path, map[string]any{"title": "Проект 2"}, 200},
			{"empty title", admin, "PATCH", path, map[string]any{"title": "  "}, 400},
			{"admin adds", admin, "POST", path + "/members", map[string]any{"user_ids": []int64{newcomer, member}}, 200},
			{"add unknown", admin, "POST", path + "/members", map[string]any{"user_ids": []int64{4000}}, 400},
			{"admin removes member", admin, "DELETE", path + "/members/4", nil, 204},
			{"remove non-member", admin, "DELETE", path + "/members/4", nil, 404},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e.call(t, tt.user, tt.method, tt.path, tt.body).want(t, tt.status)
			})
		}

		// What the members saw: the rename, the newcomer, the removal.
		evs := e.events(t, member, 0)
		if _, err := find(evs, TopicConversationUpdated, func(ev ConversationEvent) bool { return ev.Conversation.Title == "Проект 2" }); err != nil {
			t.Errorf("member missed the rename: %v", types(evs))
		}
		if _, err := find(evs, TopicMemberAdded, func(ev MembersAdded) bool {
			return len(ev.Members) == 1 && ev.Members[0].UserID == newcomer
		}); err != nil {
			t.Errorf("member missed the newcomer: %v", types(evs))
		}
		if _, err := find(evs, TopicMemberRemoved, func(ev MemberRemoved) bool { return ev.UserID == other && !ev.Left }); err != nil {
			t.Errorf("member missed the removal: %v", types(evs))
		}
		var systems []string
		for _, ev := range evs {
			if me, err := find([]event{ev}, TopicMessageCreated, func(ev MessageEvent) bool { return ev.Message.System != nil }); err == nil {
				systems = append(systems, me.Message.System.Event)
			}
		}
		if want := []string{SystemCreated, SystemRenamed, SystemJoined, SystemRemoved}; !slices.Equal(systems, want) {
			t.Errorf("system messages %v, want %v", systems, want)
		}
		// The newcomer got the conversation, not a member.added, and does
		// not count the history before they joined as unread.
		nevs := e.events(t, newcomer, 0)
		if got := types(nevs); len(got) < 2 || !slices.Equal(got[:2], []string{TopicConversationCreated, TopicMessageCreated}) {
			t.Errorf("newcomer events %v", got)
		}
		var nv ConversationView
		e.call(t, newcomer, "GET", path, nil).want(t, 200).decode(t, &nv)
		if nv.Unread != 0 || nv.Me.Role != RoleMember {
			t.Errorf("newcomer view %+v", nv)
		}
		// The removed member gets the removal and nothing after it.
		oevs := e.events(t, other, 0)
		if oevs[len(oevs)-1].Type != TopicMemberRemoved {
			t.Errorf("removed member's last event %s", oevs[len(oevs)-1].Type)
		}
		e.call(t, other, "GET", path, nil).wantError(t, 404, "not_found")

		// Mute is the member's own: only they hear of it.
		until := e.clock.Now().Add(time.Hour)
		var me Me
		e.call(t, member, "PUT", path+"/mute", map[string]any{"until": until}).want(t, 200).decode(t, &me)
		if me.MutedUntil == nil || !me.MutedUntil.Equal(until) {
			t.Errorf("muted until %v, want %v", me.MutedUntil, until)
		}
		if _, err := find(e.events(t, member, 0), TopicMemberUpdated, func(ev MemberUpdated) bool { return ev.Me != nil && ev.Me.MutedUntil != nil }); err != nil {
			t.Error("member did not hear of their mute")
		}
		if _, err := find(e.events(t, owner, 0), TopicMemberUpdated, func(ev MemberUpdated) bool { return ev.Me != nil }); err == nil {
			t.Error("owner heard of the member's mute")
		}
		e.call(t, member, "PUT", path+"/mute", map[string]any{"until": nil}).want(t, 200).decode(t, &me)
		if me.MutedUntil != nil {
			t.Errorf("still muted until %v", me.MutedUntil)
		}

		// The owner leaves: the oldest admin takes over.
		e.call(t, owner, "POST", path+"/leave", nil).want(t, 204)
		e.call(t, admin, "GET", path, nil).want(t, 200).decode(t, &v)
		if v.Me.Role != RoleOwner || v.MemberCount != 3 {
			t.Fatalf("after the owner left: %+v", v)
		}
		if _, err := find(e.events(t, member, 0), TopicMemberRemoved, func(ev MemberRemoved) bool { return ev.UserID == owner && ev.Left }); err != nil {
			t.Error("member missed the owner leaving")
		}
		// Ownership hand-over by the new owner.
		e.call(t, admin, "PUT", path+"/members/3/role", map[string]any{"role": "owner"}).want(t, 200).decode(t, &changed)
		if len(changed.Members) != 2 || changed.Members[0].Role != RoleOwner || changed.Members[1].Role != RoleAdmin {
			t.Fatalf("hand-over %+v", changed)
		}

		// Direct conversations have no roles to manage.
		d := e.direct(t, 1, 3)
		dpath := fmt.Sprintf("/v1/conversations/%d", d)
		e.call(t, 1, "PATCH", dpath, map[string]any{"title": "x"}).wantError(t, 403, "forbidden")
		e.call(t, 1, "POST", dpath+"/leave", nil).wantError(t, 403, "forbidden")
		e.call(t, 1, "POST", dpath+"/members", map[string]any{"user_ids": []int64{4}}).wantError(t, 403, "forbidden")
	})
}

func TestConversationList(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		var convs []int64
		for i := range 5 {
			convs = append(convs, e.group(t, 1, fmt.Sprintf("g%d", i), 2))
		}
		d := e.direct(t, 1, 2)
		// Activity reorders: the oldest group gets a message. A
		// conversation without messages (the direct one) comes last.
		e.send(t, 2, convs[0], "поднимаю")
		want := []int64{convs[0], convs[4], convs[3], convs[2], convs[1], d}

		var got []int64
		cursor := ""
		pages := 0
		for {
			var page listResponse
			e.call(t, 1, "GET", "/v1/conversations?limit=4&cursor="+cursor, nil).want(t, 200).decode(t, &page)
			pages++
			for _, c := range page.Conversations {
				got = append(got, c.ID)
				if c.Kind == KindDirect && len(c.Members) != 2 {
					t.Errorf("direct %d without members", c.ID)
				}
				if c.Kind == KindGroup && len(c.Members) != 0 {
					t.Errorf("group %d listed with members", c.ID)
				}
			}
			if page.NextCursor == "" {
				break
			}
			cursor = page.NextCursor
		}
		if !slices.Equal(got, want) || pages != 2 {
			t.Fatalf("listed %v in %d pages, want %v in 2", got, pages, want)
		}
		var first listResponse
		e.call(t, 1, "GET", "/v1/conversations", nil).want(t, 200).decode(t, &first)
		if c := first.Conversations[0]; c.Unread != 1 || c.LastMessage == nil || c.LastMessage.Body != "поднимаю" {
			t.Errorf("top conversation %+v", c)
		}
		e.call(t, 1, "GET", "/v1/conversations?cursor=garbage", nil).wantError(t, 400, "bad_request")
		e.call(t, 1, "GET", "/v1/conversations?limit=x", nil).wantError(t, 400, "bad_request")
		var none listResponse
		e.call(t, 9, "GET", "/v1/conversations", nil).want(t, 200).decode(t, &none)
		if none.Conversations == nil || len(none.Conversations) != 0 {
			t.Errorf("a user without conversations got %s", e.call(t, 9, "GET", "/v1/conversations", nil))
		}
	})
}
