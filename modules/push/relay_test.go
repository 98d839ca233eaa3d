package push_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/modules/push"
	"github.com/elph-server/elph/platform/httpx"
	"github.com/elph-server/elph/platform/store/storetest"
)

const relayToken = "7f3c9a1be5d24f6a8c0b1d2e3f405162-relay"

// relayNode is a DMZ node: no database, the relay endpoint only, talking
// to the fake APNs and FCM; its routes are served over HTTP/2 TLS.
type relayNode struct {
	mod *push.Module
	reg *prometheus.Registry
	srv *httptest.Server
}

func newRelayNode(t *testing.T, e *env) *relayNode {
	t.Helper()
	n := &relayNode{reg: prometheus.NewRegistry()}
	cfg := e.config()
	cfg.Relay.AcceptToken = relayToken
	var err error
	n.mod, err = push.New(push.Options{Config: cfg, Log: storetest.Logger(t), Metrics: n.reg, RootCAs: e.roots, Now: e.clock.Now})
	if err != nil {
		t.Fatalf("relay node: %v", err)
	}
	if err := n.mod.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.mod.Stop(context.Background()) })
	r := httpx.NewRouter(httpx.RouterOptions{Listener: "relay-test", Logger: storetest.Logger(t), MaxBodyBytes: 2 << 20})
	r.Mount("/push", n.mod.Routes())
	n.srv = httptest.NewUnstartedServer(r)
	n.srv.EnableHTTP2 = true
	n.srv.StartTLS()
	t.Cleanup(n.srv.Close)
	e.roots.AddCert(n.srv.Certificate())
	return n
}

// relayMode points an internal node at the relay node, without APNs or
// FCM credentials of its own.
func relayMode(n *relayNode, token string) func(*push.Options) {
	return func(o *push.Options) {
		o.Config.Mode = push.ModeRelay
		o.Config.Relay = config.PushRelay{URL: n.srv.URL + "/push/", Token: token}
		o.Config.APNs.KeyFile, o.Config.FCM.CredentialsFile = "", ""
	}
}

func (n *relayNode) post(t testing.TB, auth, body string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, n.srv.URL+"/push/v1/relay", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := n.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Body: b}
}

// TestRelayEndToEnd: an internal node in relay mode hands its queue to
// the relay node, which sends to APNs and FCM and reports back; an
// invalid token reported by the relay removes the device on the
// internal node.
func TestRelayEndToEnd(t *testing.T) {
	forEachDialect(t, envOptions{noStart: true}, func(t *testing.T, e *env) {
		relay := newRelayNode(t, e)
		reg := prometheus.NewRegistry()
		internal := e.newModule(t, reg, e.bus, relayMode(relay, relayToken))
		e.phones(t, bob)
		bad := apnsToken("relay-bad")
		e.register(t, carol, push.PlatformAPNs, iosApp, bad)
		e.apns.answer(bad, answer{status: 400, reason: "BadDeviceToken"})
		e.start(t, internal)

		e.message(t, 4, 10, alice, []int64{alice, bob, carol}, nil, "through the DMZ")
		p := e.apns.wait(t, 1)[0]
		alert, _ := p.aps()["alert"].(map[string]any)
		if p.Token != apnsToken(fmt.Sprint("alert", bob)) || alert["body"] != "through the DMZ" || alert["title"] != "Alice Liddell" {
			t.Errorf("relayed APNs push %+v", p)
		}
		f := e.fcm.wait(t, 1)[0].Message
		if f.Notification == nil || f.Notification.Body != "through the DMZ" {
			t.Errorf("relayed FCM message %+v", f)
		}
		eventually(t, "carol's invalid device is removed", func() bool { return len(e.devices(t, carol)) == 0 })

		e.publish(t, push.TopicCallStarted, "rc", callEvent("rc", bob, "inbound", e.clock.Now()))
		voip := e.apns.wait(t, 2)[1]
		if voip.PushType != "voip" || voip.Topic != iosApp+".voip" || voip.Expiration != e.clock.Now().Add(callTTL).Unix() {
			t.Errorf("relayed VoIP push %+v", voip)
		}
		e.fcm.wait(t, 2)
		eventually(t, "the queue empties", func() bool { return len(e.queue(t)) == 0 })
		if err := internal.Stop(t.Context()); err != nil { // the sends are settled
			t.Fatal(err)
		}

		for _, c := range []struct {
			reg    *prometheus.Registry
			name   string
			labels []string
			want   float64
		}{
			{reg, "elph_push_sent_total", []string{"platform", "apns", "kind", "message"}, 1},
			{reg, "elph_push_sent_total", []string{"platform", "apns_voip", "kind", "call"}, 1},
			{reg, "elph_push_invalid_tokens_total", []string{"platform", "apns"}, 1},
			{relay.reg, "elph_push_sent_total", []string{"platform", "apns_voip", "kind", "call"}, 1},
			{relay.reg, "elph_push_failures_total", []string{"platform", "apns", "reason", "BadDeviceToken"}, 1},
		} {
			if got := counter(t, c.reg, c.name, c.labels...); got != c.want {
				t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
			}
		}
		if counter(t, reg, "elph_push_relay_requests_total", "side", "out", "result", "ok") < 1 ||
			counter(t, relay.reg, "elph_push_relay_requests_total", "side", "in", "result", "ok") < 1 {
			t.Error("relay requests not counted")
		}

		// A node with the wrong token is refused: nothing is sent, the
		// row stays queued for another attempt.
		wrongReg := prometheus.NewRegistry()
		wrong := e.newModule(t, wrongReg, e.bus, relayMode(relay, strings.Repeat("x", 40)))
		before := len(e.apns.pushes())
		if err := push.Handle(t.Context(), wrong, busEvent(t, push.TopicMessageCreated, chatMessage(4, 11, alice, []int64{alice, bob}, nil, "refused"))); err != nil {
			t.Fatal(err)
		}
		e.start(t, wrong)
		eventually(t, "the relay refused the pushes", func() bool {
			q := e.queue(t)
			return len(q) == 2 && q[0].Attempts == 1 && q[1].Attempts == 1 && q[0].LeaseOwner == ""
		})
		if q := e.queue(t); !strings.Contains(q[0].LastError, "refused") {
			t.Errorf("last_error %q", q[0].LastError)
		}
		if got := counter(t, relay.reg, "elph_push_relay_requests_total", "side", "in", "result", "unauthorized"); got < 1 {
			t.Errorf("relay{in,unauthorized} = %v", got)
		}
		if got := counter(t, wrongReg, "elph_push_relay_requests_total", "side", "out", "result", "unauthorized"); got < 1 {
			t.Errorf("relay{out,unauthorized} = %v", got)
		}
		if len(e.apns.pushes()) != before {
			t.Error("a push went out with a wrong relay token")
		}
	})
}

// TestRelayEndpoint: the relay endpoint's authentication and request
// checks.
func TestRelayEndpoint(t *testing.T) {
	forEachDialect(t, envOptions{noStart: true}, func(t *testing.T, e *env) {
		relay := newRelayNode(t, e)
		tok := apnsToken("direct")
		expires := e.clock.Now().Add(time.Minute).UTC().Format(time.RFC3339)
		itemJSON := func(id, platform, token string) string {
			return fmt.Sprintf(`{"id":%q,"platform":%q,"app_id":%q,"token":%q,"kind":"message","priority":10,`+
				`"expires_at":%q,"notification":{"title":"T","body":"B","thread":"conv-1","data":{"conversation_id":"1"}}}`,
				id, platform, iosApp, token, expires)
		}
		good := `{"items":[` + itemJSON("1", "apns", tok) + `]}`

		relay.post(t, "", good).wantError(t, 401, httpx.CodeUnauthorized)
		relay.post(t, "Bearer "+relayToken+"x", good).wantError(t, 401, httpx.CodeUnauthorized)
		relay.post(t, "Basic "+relayToken, good).wantError(t, 401, httpx.CodeUnauthorized)
		if n := len(e.apns.pushes()); n != 0 {
			t.Fatalf("%d pushes sent without the right token", n)
		}
		// A node without accept_token has no relay endpoint.
		e.do(t, http.MethodPost, "/v1/relay", 0, "", good).wantError(t, 404, httpx.CodeNotFound)

		auth := "Bearer " + relayToken
		var items []string
		for i := range 101 {
			items = append(items, itemJSON(fmt.Sprint(i), "apns", tok))
		}
		for _, c := range []struct{ name, body string }{
			{"no items", `{"items":[]}`},
			{"too many items", `{"items":[` + strings.Join(items, ",") + `]}`},
			{"repeated id", `{"items":[` + itemJSON("1", "apns", tok) + "," + itemJSON("1", "apns", tok) + `]}`},
			{"empty id", `{"items":[` + itemJSON("", "apns", tok) + `]}`},
			{"unknown field", `{"items":[],"x":1}`},
			{"not JSON", `items`},
		} {
			t.Run(c.name, func(t *testing.T) { relay.post(t, auth, c.body).wantError(t, 400, httpx.CodeBadRequest) })
		}

		// Items are checked one by one: a bad one is dropped, the others
		// go out.
		body := `{"items":[` + itemJSON("ok", "apns", tok) + "," + itemJSON("bad", "apns", "nothex") + "," +
			itemJSON("fcm", "fcm", fcmToken("direct")) + "," + itemJSON("voip-message", "apns_voip", tok) + `]}`
		r := relay.post(t, auth, body)
		r.wantStatus(t, http.StatusOK)
		var resp struct {
			Results []struct {
				ID, Status, Reason string
				RetryAfter         int64 `json:"retry_after"`
			} `json:"results"`
		}
		if err := json.Unmarshal(r.Body, &resp); err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, res := range resp.Results {
			got[res.ID] = res.Status + "/" + res.Reason
		}
		want := map[string]string{"ok": "sent/", "bad": "drop/invalid", "fcm": "sent/", "voip-message": "drop/invalid"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("results %v, want %v", got, want)
		}
		if len(e.apns.pushes()) != 1 || len(e.fcm.pushes()) != 1 {
			t.Errorf("sent %d APNs, %d FCM; want one each", len(e.apns.pushes()), len(e.fcm.pushes()))
		}

		// A retry the service asks for is passed on with its delay.
		e.fcm.answer(fcmToken("direct"), answer{status: 503, reason: "UNAVAILABLE", retryAfter: "12"})
		r = relay.post(t, auth, `{"items":[`+itemJSON("f", "fcm", fcmToken("direct"))+`]}`)
		if !bytes.Contains(r.Body, []byte(`"status":"retry","reason":"UNAVAILABLE","retry_after":12`)) {
			t.Errorf("retry result %s", r)
		}
	})
}

// TestRelayNodeWithoutDatabase: a relay-only node needs accept_token.
func TestRelayNodeWithoutDatabase(t *testing.T) {
	_, err := push.New(push.Options{Config: config.Push{}})
	if err == nil || !strings.Contains(err.Error(), "accept_token") {
		t.Fatalf("New without DB or accept_token: %v", err)
	}
	m, err := push.New(push.Options{Config: config.Push{Relay: config.PushRelay{AcceptToken: relayToken}}})
	if err != nil {
		t.Fatal(err)
	}
	if m.Topics().Consumes != nil {
		t.Errorf("a relay-only node consumes %v", m.Topics().Consumes)
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
}
