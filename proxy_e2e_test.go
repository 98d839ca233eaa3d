package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// A DMZ proxy node in front of a server node: it keeps no state, is
// ready only while an upstream is, passes REST and WebSockets through
// (the upstream's Origin check sees the proxy's Host), redirects plain
// HTTP, and answers a JSON 503 once the upstream is gone.
func TestProxyNodeInFrontOfAServer(t *testing.T) {
	server := newNodeEnv(t)
	server.env["ELPH_SSO_INITIAL_ADMIN_PASSWORD"] = "admin-password-1"
	sp := start(t, server.env, "serve", "--all")
	plain := &http.Client{Timeout: 5 * time.Second}
	waitFor(t, sp, "server ready", func() bool { code, _ := get(plain, "http://"+server.admin+"/readyz"); return code == 200 })

	px := newNodeEnv(t)
	redirect := freePort(t)
	px.env["ELPH_PROXY_UPSTREAMS"] = "https://" + server.gateway
	// The server's generated certificate is its own root.
	px.env["ELPH_PROXY_CA_FILE"] = filepath.Join(server.dataDir, "tls", "selfsigned.crt")
	px.env["ELPH_GATEWAY_REDIRECT_LISTEN"] = redirect
	relayToken := strings.Repeat("r", 40)
	px.env["ELPH_PUSH_RELAY_ACCEPT_TOKEN"] = relayToken
	pp := start(t, px.env, "serve", "--role=proxy")
	waitFor(t, pp, "proxy ready", func() bool { code, _ := get(plain, "http://"+px.admin+"/readyz"); return code == 200 })
	if !strings.Contains(pp.out.String(), "role=proxy") {
		t.Errorf("start-up log does not name the role")
	}
	if _, err := os.Stat(filepath.Join(px.dataDir, "elph.db")); err == nil {
		t.Error("the proxy created a database")
	}
	if c, err := net.DialTimeout("tcp", px.webclient, time.Second); err == nil {
		c.Close()
		t.Error("a module listener is open on the proxy")
	}

	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true} // the proxy's self-signed certificate
	anon := &gatewayClient{t: t, base: "https://" + px.gateway, http: &http.Client{Timeout: 10 * time.Second, Transport: tr}}
	admin := anon.login("admin", "admin-password-1")
	var me struct {
		Login string `json:"login"`
	}
	if code := admin.do("GET", "/sso/v1/me", nil, &me); code != 200 || me.Login != "admin" {
		t.Errorf("GET /sso/v1/me through the proxy: %d %+v", code, me)
	}
	if code, body := get(anon.http, "https://"+px.gateway+"/livez"); code != 200 {
		t.Errorf("proxy /livez = %d %s", code, body)
	}
	if code := admin.do("GET", "/chat/v1/nowhere", nil, nil); code != 404 {
		t.Errorf("unknown route of a module: %d", code)
	}

	// A browser's WebSocket through the proxy: its Origin is the proxy's
	// address, which the server accepts as its own host.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss://"+px.gateway+"/chat/v1/ws", &websocket.DialOptions{
		HTTPClient:   &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}},
		Subprotocols: []string{"elph.v1", "bearer." + admin.token},
		HTTPHeader:   http.Header{"Origin": {"https://" + px.gateway}},
	})
	if err != nil {
		t.Fatalf("websocket through the proxy: %v", err)
	}
	if _, data, err := ws.Read(ctx); err != nil || !strings.Contains(string(data), `"hello"`) {
		t.Errorf("first frame %s, %v", data, err)
	}
	ws.CloseNow()

	// Plain HTTP redirects to https.
	noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get("http://" + redirect + "/chat/v1/conversations?x=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusPermanentRedirect || !strings.HasPrefix(loc, "https://") || !strings.HasSuffix(loc, "/chat/v1/conversations?x=1") {
		t.Errorf("plain HTTP: %d Location %q", resp.StatusCode, loc)
	}

	// The push relay is answered by the proxy node itself (the server has
	// no relay token, so it would refuse); the devices API goes upstream.
	relay := func(token string) (int, string) {
		req, _ := http.NewRequest("POST", "https://"+px.gateway+"/push/v1/relay", strings.NewReader(`{"items":[]}`))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		res, err := anon.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	// Past the token check, an empty batch is the relay's own 400.
	if code, body := relay(relayToken); code != 400 || !strings.Contains(body, "items must hold") {
		t.Errorf("relay with the token: %d %s", code, body)
	}
	if code, _ := relay(strings.Repeat("x", 40)); code != 401 {
		t.Errorf("relay with a wrong token: %d", code)
	}
	if code := admin.do("GET", "/push/v1/devices", nil, nil); code != 200 {
		t.Errorf("devices through the proxy: %d", code)
	}
	if c, err := net.DialTimeout("tcp", px.env["ELPH_MODULES_PUSH_LISTEN"], time.Second); err == nil {
		c.Close()
		t.Error("the relay opened the push module's own listener on the proxy")
	}

	// The server goes away: the proxy is no longer ready and says so.
	if code := sp.stop(t); code != 0 {
		t.Fatalf("server exit %d", code)
	}
	waitFor(t, pp, "proxy unready", func() bool { code, _ := get(plain, "http://"+px.admin+"/readyz"); return code == 503 })
	if code, body := get(anon.http, "https://"+px.gateway+"/sso/v1/me"); (code != 502 && code != 503) || !strings.Contains(body, `"error"`) {
		t.Errorf("with the upstream gone: %d %s", code, body)
	}
	if code := pp.stop(t); code != 0 {
		t.Fatalf("proxy exit %d", code)
	}
}
