package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// gatewayClient speaks JSON to a node's gateway as one user.
type gatewayClient struct {
	t     *testing.T
	base  string
	http  *http.Client
	token string
}

func (c *gatewayClient) do(method, path string, body any, out any) int {
	c.t.Helper()
	var rd io.Reader
	ct := "application/json"
	switch b := body.(type) {
	case nil:
	case []byte:
		rd, ct = bytes.NewReader(b), "application/octet-stream"
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", ct)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode
}

func (c *gatewayClient) login(login, password string) *gatewayClient {
	c.t.Helper()
	var tok struct {
		AccessToken string `json:"access_token"`
		User        struct {
			ID int64 `json:"id"`
		} `json:"user"`
	}
	if code := c.do("POST", "/sso/v1/login", map[string]string{"login": login, "password": password, "device": "e2e"}, &tok); code != 200 {
		c.t.Fatalf("login %s: %d", login, code)
	}
	return &gatewayClient{t: c.t, base: c.base, http: c.http, token: tok.AccessToken}
}

// The modules wired together in one process behind the TLS gateway: a
// message with a file reaches a member's WebSocket, the member may
// download the file because it was shared with them, a stranger may not.
func TestChatAndFilesThroughTheGateway(t *testing.T) {
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

	var conv struct {
		ID int64 `json:"id"`
	}
	if code := admin.do("POST", "/chat/v1/conversations", map[string]any{"kind": "group", "title": "Отдел", "member_ids": []int64{ids["bob"]}}, &conv); code != 201 {
		t.Fatalf("create group: %d", code)
	}

	// Bob listens on the WebSocket through the gateway, token in the
	// subprotocol as a browser would send it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss://"+n.gateway+"/chat/v1/ws?since=0", &websocket.DialOptions{
		HTTPClient: anon.http, Subprotocols: []string{"elph.v1", "bearer." + bob.token},
	})
	if err != nil {
		t.Fatalf("websocket: %v", err)
	}
	defer ws.CloseNow()

	var file struct {
		ID string `json:"id"`
	}
	if code := admin.do("POST", "/files/v1/files?name=%D0%BE%D1%82%D1%87%D1%91%D1%82.txt", []byte("квартальный отчёт"), &file); code != 201 {
		t.Fatalf("upload: %d", code)
	}
	if code := bob.do("GET", "/files/v1/files/"+file.ID, nil, nil); code != 404 {
		t.Fatalf("bob reads the file before it is shared: %d", code)
	}
	var msg struct {
		ID int64 `json:"id"`
	}
	if code := admin.do("POST", fmt.Sprintf("/chat/v1/conversations/%d/messages", conv.ID),
		map[string]any{"client_id": "e2e-1", "body": "Отчёт во вложении", "file_ids": []string{file.ID}}, &msg); code != 201 {
		t.Fatalf("send: %d", code)
	}

	// Bob's socket gets the message (after hello and the group's creation).
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("read websocket: %v", err)
		}
		if strings.Contains(string(data), `"chat.message.created"`) && strings.Contains(string(data), "Отчёт во вложении") {
			if !strings.Contains(string(data), file.ID) {
				t.Errorf("the event lacks the attachment: %s", data)
			}
			break
		}
	}
	// Shared with him now: he downloads it; Carol, no member, still cannot.
	req, _ := http.NewRequest("GET", anon.base+"/files/v1/files/"+file.ID+"/content", nil)
	req.Header.Set("Authorization", "Bearer "+bob.token)
	resp, err := anon.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "квартальный отчёт" {
		t.Errorf("bob's download: %d %q", resp.StatusCode, body)
	}
	if code := carol.do("GET", "/files/v1/files/"+file.ID, nil, nil); code != 404 {
		t.Errorf("carol reads a file of a conversation she is not in: %d", code)
	}
	if code := carol.do("GET", fmt.Sprintf("/chat/v1/conversations/%d/messages", conv.ID), nil, nil); code != 404 {
		t.Errorf("carol reads the group's messages: %d", code)
	}

	// Logging out closes the session's socket (session revoked).
	if code := bob.do("POST", "/sso/v1/logout", nil, nil); code != 204 {
		t.Fatalf("logout: %d", code)
	}
	for {
		_, _, err := ws.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) != 4001 {
				t.Errorf("socket closed with %v, want 4001 session revoked", err)
			}
			break
		}
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
