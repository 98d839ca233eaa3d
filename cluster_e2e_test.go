package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/elph-server/elph/platform/bus/natstest"
	"github.com/elph-server/elph/platform/store/storetest"
)

// Two server nodes share one MariaDB database and a NATS bus: what happens
// on one reaches clients connected to the other (a chat message, presence,
// a revoked session), and work done once per cluster is done once.
func TestTwoServerNodesShareEvents(t *testing.T) {
	nats := natstest.Start(t)
	dsn := storetest.MySQLDSN(t)
	prefix := natstest.Prefix()
	nodes := make([]nodeEnv, 2)
	procs := make([]*proc, 2)
	plain := &http.Client{Timeout: 5 * time.Second}
	for i := range nodes {
		nodes[i] = newNodeEnv(t)
		for k, v := range map[string]string{
			"ELPH_DATABASE_DRIVER": "mysql", "ELPH_DATABASE_DSN": dsn,
			"ELPH_BUS_KIND": "nats", "ELPH_BUS_NATS_URL": nats.URL, "ELPH_BUS_NATS_PREFIX": prefix,
			"ELPH_SSO_INITIAL_ADMIN_PASSWORD": "admin-password-1",
		} {
			nodes[i].env[k] = v
		}
		// One after the other: the first applies the migrations.
		procs[i] = start(t, nodes[i].env, "serve", "--role=server")
		waitFor(t, procs[i], fmt.Sprintf("node %d ready", i), func() bool {
			code, _ := get(plain, "http://"+nodes[i].admin+"/readyz")
			return code == 200
		})
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // the nodes' self-signed certificates
	client := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	a := &gatewayClient{t: t, base: "https://" + nodes[0].gateway, http: client}
	b := &gatewayClient{t: t, base: "https://" + nodes[1].gateway, http: client}

	admin := a.login("admin", "admin-password-1")
	var bobUser struct {
		ID int64 `json:"id"`
	}
	if code := admin.do("POST", "/sso/v1/users", map[string]any{"login": "bob", "password": "bob-password-1"}, &bobUser); code != 201 {
		t.Fatalf("create bob on node A: %d", code)
	}
	var me struct {
		ID int64 `json:"id"`
	}
	if code := admin.do("GET", "/sso/v1/me", nil, &me); code != 200 {
		t.Fatalf("admin's /me: %d", code)
	}
	var conv struct {
		ID int64 `json:"id"`
	}
	if code := admin.do("POST", "/chat/v1/conversations", map[string]any{"kind": "group", "title": "Два узла", "member_ids": []int64{bobUser.ID}}, &conv); code != 201 {
		t.Fatalf("create group on node A: %d", code)
	}

	// Bob is on node B: a token node A issued is good there too.
	bob := b.login("bob", "bob-password-1")
	bobOnA := &gatewayClient{t: t, base: a.base, http: client, token: bob.token}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss://"+nodes[1].gateway+"/chat/v1/ws?since=0", &websocket.DialOptions{
		HTTPClient: client, Subprotocols: []string{"elph.v1", "bearer." + bob.token},
	})
	if err != nil {
		t.Fatalf("websocket on node B: %v", err)
	}
	defer ws.CloseNow()
	// next reads Bob's socket until a frame holding every one of want.
	next := func(what string, want ...string) {
		t.Helper()
		for {
			_, data, err := ws.Read(ctx)
			if err != nil {
				t.Fatalf("waiting for %s on node B: %v", what, err)
			}
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(string(data), w)
			}
			if ok {
				return
			}
		}
	}

	// A message sent on node A reaches Bob's socket on node B.
	if code := admin.do("POST", fmt.Sprintf("/chat/v1/conversations/%d/messages", conv.ID),
		map[string]any{"client_id": "cluster-1", "body": "Привет с узла A"}, nil); code != 201 {
		t.Fatalf("send on node A: %d", code)
	}
	next("the message from node A", `"chat.message.created"`, "Привет с узла A")

	// Presence: Bob watches the admin from node B; the admin comes online
	// on node A.
	if err := wsjson.Write(ctx, ws, map[string]any{"type": "status.watch", "data": map[string]any{"users": []int64{me.ID}}}); err != nil {
		t.Fatal(err)
	}
	next("the presence list", `"presence_list"`)
	adminWS, _, err := websocket.Dial(ctx, "wss://"+nodes[0].gateway+"/chat/v1/ws", &websocket.DialOptions{
		HTTPClient: client, Subprotocols: []string{"elph.v1", "bearer." + admin.token},
	})
	if err != nil {
		t.Fatalf("websocket on node A: %v", err)
	}
	defer adminWS.CloseNow()
	next("the admin online", `"presence"`, fmt.Sprintf(`"user_id":%d`, me.ID), `"online"`)

	// Bob logs out on node A: his socket on node B closes as revoked.
	if code := bobOnA.do("POST", "/sso/v1/logout", nil, nil); code != 204 {
		t.Fatalf("logout on node A: %d", code)
	}
	for {
		if _, _, err := ws.Read(ctx); err != nil {
			if websocket.CloseStatus(err) != 4001 {
				t.Errorf("Bob's socket on node B closed with %v, want 4001 session revoked", err)
			}
			break
		}
	}

	// The group's messages were stored once, whichever node handled them.
	var msgs struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if code := admin.do("GET", fmt.Sprintf("/chat/v1/conversations/%d/messages", conv.ID), nil, &msgs); code != 200 {
		t.Fatalf("list messages: %d", code)
	}
	sent := 0
	for _, m := range msgs.Messages {
		if strings.Contains(string(m), "Привет с узла A") {
			sent++
		}
	}
	if sent != 1 {
		t.Errorf("the message is stored %d times, want once", sent)
	}
	for i := len(procs) - 1; i >= 0; i-- {
		if code := procs[i].stop(t); code != 0 {
			t.Errorf("node %d exit %d", i, code)
		}
	}
}
