package chat

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
)

// TestACL: a non-member gets 404 on every route of a conversation (so
// ids are not confirmed), a message id of another conversation is 404
// too, nothing works without a token, and a non-member's stream gets
// nothing of what happens in the conversation.
func TestACL(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		const owner, member, outsider = 1, 2, 9
		g := e.group(t, owner, "секрет", member)
		m := e.send(t, owner, g, "секретный текст")
		e.call(t, owner, "PUT", msgPath(g, fmt.Sprintf("/pins/%d", m.ID)), nil).want(t, 204)
		// The outsider's own conversation, to point at foreign messages.
		own := e.group(t, outsider, "своя")
		ownMsg := e.send(t, outsider, own, "мой текст")
		outsiderSeq := e.lastSeq(t, outsider)

		type route struct {
			method, path string
			body         any
		}
		convRoutes := func(conv, msg int64) []route {
			mp := msgPath(conv, fmt.Sprintf("/messages/%d", msg))
			return []route{
				{"GET", msgPath(conv, ""), nil},
				{"PATCH", msgPath(conv, ""), map[string]any{"title": "взлом"}},
				{"POST", msgPath(conv, "/members"), map[string]any{"user_ids": []int64{outsider}}},
				{"DELETE", msgPath(conv, fmt.Sprintf("/members/%d", member)), nil},
				{"PUT", msgPath(conv, fmt.Sprintf("/members/%d/role", member)), map[string]any{"role": "admin"}},
				{"POST", msgPath(conv, "/leave"), nil},
				{"PUT", msgPath(conv, "/mute"), map[string]any{"until": nil}},
				{"POST", msgPath(conv, "/read"), map[string]any{"message_id": msg}},
				{"POST", msgPath(conv, "/typing"), nil},
				{"GET", msgPath(conv, "/pins"), nil},
				{"PUT", msgPath(conv, fmt.Sprintf("/pins/%d", msg)), nil},
				{"DELETE", msgPath(conv, fmt.Sprintf("/pins/%d", msg)), nil},
				{"GET", msgPath(conv, "/messages"), nil},
				{"GET", msgPath(conv, fmt.Sprintf("/messages?around=%d", msg)), nil},
				{"POST", msgPath(conv, "/messages"), SendRequest{ClientID: fmt.Sprintf("acl-%d-%d", conv, msg), Body: "x"}},
				{"POST", msgPath(conv, "/messages"), SendRequest{ClientID: fmt.Sprintf("acl-r-%d-%d", conv, msg), Body: "x", ReplyToID: msg}},
				{"GET", mp, nil},
				{"PATCH", mp, map[string]any{"body": "взлом"}},
				{"DELETE", mp + "?for=me", nil},
				{"DELETE", mp + "?for=everyone", nil},
				{"PUT", mp + "/reactions/x", nil},
				{"DELETE", mp + "/reactions/x", nil},
				{"GET", fmt.Sprintf("/v1/search?q=текст&conversation_id=%d", conv), nil},
			}
		}
		t.Run("non-member", func(t *testing.T) {
			for _, conv := range []int64{g, 999999} {
				for _, rt := range convRoutes(conv, m.ID) {
					t.Run(fmt.Sprintf("%s %s", rt.method, rt.path), func(t *testing.T) {
						e.call(t, outsider, rt.method, rt.path, rt.body).wantError(t, http.StatusNotFound, "not_found")
					})
				}
			}
		})
		t.Run("message of another conversation", func(t *testing.T) {
			for _, rt := range convRoutes(g, ownMsg.ID) {
				switch rt.path {
				case msgPath(g, ""), msgPath(g, "/members"), msgPath(g, "/leave"), msgPath(g, "/mute"), msgPath(g, "/typing"),
					msgPath(g, "/pins"), msgPath(g, "/messages"), msgPath(g, fmt.Sprintf("/members/%d", member)),
					msgPath(g, fmt.Sprintf("/members/%d/role", member)), fmt.Sprintf("/v1/search?q=текст&conversation_id=%d", g):
					continue // no message in these
				}
				if rt.method == "POST" && rt.path == msgPath(g, "/messages") {
					req := rt.body.(SendRequest)
					if req.ReplyToID == 0 {
						continue
					}
					// A reply to a foreign message is refused as a bad
					// reference, without saying whether it exists.
					e.call(t, owner, rt.method, rt.path, rt.body).wantError(t, http.StatusBadRequest, "bad_request")
					continue
				}
				t.Run(fmt.Sprintf("%s %s", rt.method, rt.path), func(t *testing.T) {
					e.call(t, owner, rt.method, rt.path, rt.body).wantError(t, http.StatusNotFound, "not_found")
				})
			}
		})
		t.Run("no token", func(t *testing.T) {
			for _, rt := range append(convRoutes(g, m.ID),
				route{"GET", "/v1/conversations", nil}, route{"POST", "/v1/conversations", map[string]any{"kind": "group", "title": "x"}},
				route{"GET", "/v1/search?q=x", nil}) {
				e.call(t, 0, rt.method, rt.path, rt.body).wantError(t, http.StatusUnauthorized, "unauthorized")
			}
		})
		t.Run("bad ids", func(t *testing.T) {
			for _, p := range []string{"/v1/conversations/abc", "/v1/conversations/0", "/v1/conversations/-1/messages", msgPath(g, "/messages/x")} {
				e.call(t, owner, "GET", p, nil).wantError(t, http.StatusNotFound, "not_found")
			}
		})

		// Nothing the outsider did changed anything.
		var v ConversationView
		e.call(t, owner, "GET", msgPath(g, ""), nil).want(t, 200).decode(t, &v)
		if v.Title != "секрет" || v.MemberCount != 2 {
			t.Errorf("conversation changed by an outsider: %+v", v)
		}
		if got := e.getMessage(t, owner, g, m.ID); got.Body != "секретный текст" || got.Deleted || len(got.Reactions) != 0 {
			t.Errorf("message changed by an outsider: %+v", got)
		}
		var res SearchResult
		e.call(t, outsider, "GET", "/v1/search?q=секрет", nil).want(t, 200).decode(t, &res)
		if len(res.Messages) != 0 {
			t.Errorf("outsider found %+v", res.Messages)
		}

		// The outsider's stream got nothing: over the WebSocket, the first
		// event after the outsider's own ones is the next thing that does
		// concern them.
		c := e.dial(t, outsider, outsiderSeq)
		if h := readFrame(t, c); h.Type != "hello" || h.Seq != outsiderSeq {
			t.Fatalf("hello %+v, want seq %d", h, outsiderSeq)
		}
		e.send(t, owner, g, "ещё секрет")
		e.call(t, owner, "POST", msgPath(g, "/typing"), nil).want(t, 204)
		d := e.direct(t, owner, outsider)
		f := readFrame(t, c)
		var ce ConversationEvent
		if f.Seq != outsiderSeq+1 || f.Type != TopicConversationCreated {
			t.Fatalf("outsider's next frame %+v, want the direct conversation", f)
		}
		if err := json.Unmarshal(f.Data, &ce); err != nil || ce.Conversation.ID != d {
			t.Fatalf("outsider's next event %s, want conversation %d", f.Data, d)
		}
	})
}
