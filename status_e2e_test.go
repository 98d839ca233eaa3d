package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
)

// Presence wired in one process behind the gateway: Bob watches Carol on
// the chat WebSocket; Carol's device makes her online, her choice of dnd
// reaches Bob, her device closing makes her offline. (Calls come from the
// SIP edge, not built yet; the module's tests cover them on the bus.)
func TestPresenceThroughTheGateway(t *testing.T) {
	n := newNodeEnv(t)
	n.env["ELPH_SSO_INITIAL_ADMIN_PASSWORD"] = "admin-password-1"
	p := start(t, n.env, "serve", "--all")
	plain := &http.Client{Timeout: 5 * time.Second}
	waitFor(t, p, "ready", func() bool { code, _ := get(plain, "http://"+n.admin+"/readyz"); return code == 200 })
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // the node's self-signed certificate
	anon := &gatewayClient{t: t, base: "https://" + n.gateway, http: &http.Client{Timeout: 10 * time.Second, Transport: tr}}
	admin := anon.login("admin", "admin-password-1")
	ids := map[string]int64{}
	for _, name := range []string{"bob", "carol"} {
		var u struct {
			ID int64 `json:"id"`
		}
		if code := admin.do("POST", "/sso/v1/users", map[string]any{"login": name, "password": name + "-password-1"}, &u); code != 201 {
			t.Fatalf("create %s: %d", name, code)
		}
		ids[name] = u.ID
	}
	bob, carol := anon.login("bob", "bob-password-1"), anon.login("carol", "carol-password-1")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func(token string) *websocket.Conn {
		ws, _, err := websocket.Dial(ctx, "wss://"+n.gateway+"/chat/v1/ws", &websocket.DialOptions{
			HTTPClient: anon.http, Subprotocols: []string{"elph.v1", "bearer." + token},
		})
		if err != nil {
			t.Fatalf("websocket: %v", err)
		}
		t.Cleanup(func() { ws.CloseNow() })
		return ws
	}
	type presence struct {
		UserID int64  `json:"user_id"`
		State  string `json:"state"`
	}
	// next reads Bob's socket until a signal about Carol.
	bobWS := dial(bob.token)
	next := func(signal string) json.RawMessage {
		t.Helper()
		for {
			var f struct {
				Type, Signal string
				Data         json.RawMessage
			}
			if err := wsjson.Read(ctx, bobWS, &f); err != nil {
				t.Fatalf("read: %v", err)
			}
			if f.Type == "signal" && f.Signal == signal {
				return f.Data
			}
		}
	}
	if err := wsjson.Write(ctx, bobWS, map[string]any{"type": "status.watch", "data": map[string]any{"users": []int64{ids["carol"]}}}); err != nil {
		t.Fatal(err)
	}
	var list struct{ Presences []presence }
	if err := json.Unmarshal(next("presence_list"), &list); err != nil || len(list.Presences) != 1 || list.Presences[0].State != "offline" {
		t.Fatalf("presence_list %+v, %v; want carol offline", list.Presences, err)
	}
	want := func(state string) {
		t.Helper()
		var p presence
		for p.UserID != ids["carol"] { // Bob's own devices hear of Bob too
			if err := json.Unmarshal(next("presence"), &p); err != nil {
				t.Fatal(err)
			}
		}
		if p.State != state {
			t.Fatalf("presence %+v; want carol %s", p, state)
		}
	}
	carolWS := dial(carol.token)
	want("online")
	if code := carol.do("PUT", "/status/v1/me/choice", map[string]string{"choice": "dnd"}, nil); code != 200 {
		t.Fatalf("choose dnd: %d", code)
	}
	want("dnd")
	if code := carol.do("PUT", "/status/v1/me/choice", map[string]string{"choice": "online"}, nil); code != 200 {
		t.Fatalf("choose online: %d", code)
	}
	want("online")
	if err := carolWS.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	want("offline")

	var q struct{ Presences []presence }
	if code := bob.do("POST", "/status/v1/query", map[string]any{"user_ids": []int64{ids["carol"], ids["bob"]}}, &q); code != 200 ||
		len(q.Presences) != 2 || q.Presences[0].State != "offline" || q.Presences[1].State != "online" {
		t.Errorf("query: %d %+v", code, q.Presences)
	}
	if code := anon.do("GET", "/status/v1/me", nil, nil); code != 401 {
		t.Errorf("anonymous /status/v1/me: %d", code)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
