package push

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sideshow/apns2"

	"github.com/elph-server/elph/config"
)

func testItem(platform, kind, body string) item {
	return item{
		ID: 1, Platform: platform, AppID: "ru.eltex.elph", Token: strings.Repeat("ab", 32), Kind: kind,
		Priority: priorityHigh, CollapseID: "conv-1", ExpiresAt: time.Unix(2_000_000_000, 0),
		Note: notification{Title: "Alice", Body: body, Thread: "conv-1", Data: map[string]string{"conversation_id": "1"}},
	}
}

func TestRenderAPNs(t *testing.T) {
	for _, c := range []struct {
		kind, topic string
		typ         apns2.EPushType
		prio        int
	}{
		{KindMessage, "ru.eltex.elph", apns2.PushTypeAlert, 10},
		{KindMissedCall, "ru.eltex.elph", apns2.PushTypeAlert, 10},
		{KindCall, "ru.eltex.elph.voip", apns2.PushTypeVOIP, 10},
		{KindCallCancelled, "ru.eltex.elph", apns2.PushTypeBackground, 5},
	} {
		t.Run(c.kind, func(t *testing.T) {
			msg, err := renderAPNs(testItem(PlatformAPNs, c.kind, "hi <&>"))
			if err != nil {
				t.Fatal(err)
			}
			if msg.Topic != c.topic || msg.PushType != c.typ || msg.Priority != c.prio {
				t.Errorf("got %s %s %d", msg.Topic, msg.PushType, msg.Priority)
			}
			var p map[string]any
			if err := json.Unmarshal(msg.Payload, &p); err != nil {
				t.Fatal(err)
			}
			if p["type"] != c.kind || p["conversation_id"] != "1" {
				t.Errorf("payload %s", msg.Payload)
			}
			if c.typ == apns2.PushTypeAlert && !strings.Contains(string(msg.Payload), `"body":"hi <&>"`) {
				t.Errorf("payload %s: the body must not be HTML-escaped (bytes count)", msg.Payload)
			}
		})
	}
}

// TestPayloadsFit: a text too long for the limit is shortened, not
// refused, on every platform; what cannot fit is refused.
func TestPayloadsFit(t *testing.T) {
	for _, body := range []string{
		strings.Repeat("я", 3000),     // 2 bytes each
		strings.Repeat("\"\n", 1500),  // escaped: 2 bytes each
		strings.Repeat("\u0001", 900), // escaped: 6 bytes each
		strings.Repeat("😀", 1500),     // 4 bytes each
	} {
		msg, err := renderAPNs(testItem(PlatformAPNs, KindMessage, body))
		if err != nil || len(msg.Payload) > apnsLimit || !utf8.Valid(msg.Payload) {
			t.Fatalf("APNs: %d bytes, %v", len(msg.Payload), err)
		}
		var p struct {
			Aps struct{ Alert struct{ Body string } } `json:"aps"`
		}
		if err := json.Unmarshal(msg.Payload, &p); err != nil || !strings.HasSuffix(p.Aps.Alert.Body, "…") || len(msg.Payload) < apnsLimit-100 {
			t.Errorf("APNs payload of %d bytes (%v), want the body cut to just fit, with an ellipsis", len(msg.Payload), err)
		}
		b, err := renderFCM(testItem(PlatformFCM, KindMessage, body), time.Unix(1_999_999_000, 0))
		if err != nil {
			t.Fatal(err)
		}
		var r fcmRequest
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		if size, _ := fcmSize(r.Message); size > fcmLimit || size < fcmLimit-100 || !strings.HasSuffix(r.Message.Notification.Body, "…") {
			t.Errorf("FCM: %d bytes", size)
		}
		if r.Message.Android.TTL != "1000s" {
			t.Errorf("FCM ttl %s, want 1000s", r.Message.Android.TTL)
		}
	}
	// Data alone over the limit: refused.
	it := testItem(PlatformAPNsVoIP, KindCall, "")
	for i := range 12 {
		it.Note.Data[string(rune('a'+i))] = strings.Repeat("x", maxDataValue)
	}
	if _, err := renderAPNs(it); err != errTooLarge {
		t.Errorf("oversized VoIP data: %v", err)
	}
}

func TestPreview(t *testing.T) {
	if got := preview(strings.Repeat("ж", previewRunes)); got != strings.Repeat("ж", previewRunes) {
		t.Error("a text of exactly the preview length was cut")
	}
	if got := preview(strings.Repeat("ж", previewRunes+1)); got != strings.Repeat("ж", previewRunes)+"…" {
		t.Errorf("preview %q", got)
	}
	if got := clean("  a\x00b\nc\u0085 "); got != "ab\nc" {
		t.Errorf("clean %q", got)
	}
	if got := cleanLine("a\nb"); got != "a b" {
		t.Errorf("cleanLine %q", got)
	}
}

func TestClassifyAPNs(t *testing.T) {
	for _, c := range []struct {
		status int
		reason string
		want   status
		drop   string
	}{
		{200, "", statusSent, ""},
		{400, "BadDeviceToken", statusInvalid, ""},
		{400, "DeviceTokenNotForTopic", statusInvalid, ""},
		{410, "Unregistered", statusInvalid, ""},
		{410, "ExpiredToken", statusInvalid, ""},
		{400, "BadTopic", statusDrop, dropRejected},
		{413, "PayloadTooLarge", statusDrop, dropPayload},
		{403, "InvalidProviderToken", statusRetry, ""},
		{403, "ExpiredProviderToken", statusRetry, ""},
		{429, "TooManyRequests", statusRetry, ""},
		{500, "InternalServerError", statusRetry, ""},
		{503, "ServiceUnavailable", statusRetry, ""},
		{502, "", statusRetry, ""},
	} {
		r := classifyAPNs(&apns2.Response{StatusCode: c.status, Reason: c.reason}, 0)
		if r.status != c.want || r.drop != c.drop {
			t.Errorf("%d %s: got %+v", c.status, c.reason, r)
		}
		if c.status != 200 && r.reason == "" {
			t.Errorf("%d %s: no failure label", c.status, c.reason)
		}
	}
	if r := classifyAPNs(&apns2.Response{StatusCode: 400, Reason: strings.Repeat("x", 100)}, 0); r.reason != reasonOther {
		t.Errorf("unknown reason labelled %q", r.reason)
	}
}

func TestClassifyFCM(t *testing.T) {
	body := func(status int, st, code string) []byte {
		return []byte(`{"error":{"code":` + itoa(status) + `,"message":"m","status":"` + st +
			`","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"` + code + `"}]}}`)
	}
	for _, c := range []struct {
		status   int
		st, code string
		want     status
	}{
		{200, "", "", statusSent},
		{404, "NOT_FOUND", "UNREGISTERED", statusInvalid},
		{403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", statusInvalid},
		{400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", statusDrop},
		{429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", statusRetry},
		{503, "UNAVAILABLE", "UNAVAILABLE", statusRetry},
		{500, "INTERNAL", "INTERNAL", statusRetry},
		{401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR", statusRetry},
	} {
		r := classifyFCM(c.status, body(c.status, c.st, c.code), time.Second)
		if r.status != c.want {
			t.Errorf("%d %s: got %+v", c.status, c.code, r)
		}
		if c.want == statusRetry && r.retryAfter != time.Second {
			t.Errorf("%d %s: retry after %v", c.status, c.code, r.retryAfter)
		}
	}
	if r := classifyFCM(502, []byte("<html>bad gateway</html>"), 0); r.status != statusRetry || r.reason != "http_502" {
		t.Errorf("502 HTML: %+v", r)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"": 0, "0": 0, "-5": 0, "junk": 0, "30": 30 * time.Second, "999999999999": maxRetryAfter,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Hour).Format(http.TimeFormat):       0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	m := &Module{backoffBase: time.Second, backoffMax: 5 * time.Minute}
	for attempt, base := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 9: 256 * time.Second, 10: 5 * time.Minute, 60: 5 * time.Minute} {
		for range 50 {
			if d := m.backoff(attempt); d < base*8/10 || d > base*12/10 {
				t.Fatalf("backoff(%d) = %v, want %v ± 20 %%", attempt, d, base)
			}
		}
	}
}

// TestNewNamesTheConfigKey: an unusable key file is an error that names
// its configuration key.
func TestNewNamesTheConfigKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	p8 := write("key.p8", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	relayOnly := config.PushRelay{AcceptToken: strings.Repeat("a", 32)}
	for _, c := range []struct {
		name string
		cfg  config.Push
		want string
	}{
		{"missing p8", config.Push{Relay: relayOnly, APNs: config.APNs{KeyFile: filepath.Join(dir, "nope.p8"), KeyID: "ABCDEFGHIJ", TeamID: "ABCDEFGHIJ"}}, "push.apns.key_file"},
		{"not a p8", config.Push{Relay: relayOnly, APNs: config.APNs{KeyFile: write("bad.p8", "hello"), KeyID: "ABCDEFGHIJ", TeamID: "ABCDEFGHIJ"}}, "push.apns.key_file"},
		{"bad key id", config.Push{Relay: relayOnly, APNs: config.APNs{KeyFile: p8, KeyID: "short", TeamID: "ABCDEFGHIJ"}}, "push.apns.key_id"},
		{"missing credentials", config.Push{Relay: relayOnly, FCM: config.FCM{CredentialsFile: filepath.Join(dir, "nope.json")}}, "push.fcm.credentials_file"},
		{"credentials not JSON", config.Push{Relay: relayOnly, FCM: config.FCM{CredentialsFile: write("bad.json", "{")}}, "push.fcm.credentials_file"},
		{"credentials of a user", config.Push{Relay: relayOnly, FCM: config.FCM{CredentialsFile: write("user.json", `{"type":"authorized_user"}`)}}, "push.fcm.credentials_file"},
		{"credentials without a key", config.Push{Relay: relayOnly, FCM: config.FCM{CredentialsFile: write("nokey.json",
			`{"type":"service_account","project_id":"p","client_email":"a@b","private_key":"x","token_uri":"https://oauth2.googleapis.com/token"}`)}}, "private_key"},
		{"bad mode", config.Push{Mode: "carrier-pigeon", Relay: relayOnly}, "push.mode"},
		{"bad relay CA", config.Push{Mode: ModeRelay, Relay: config.PushRelay{URL: "https://relay.example/push/", Token: strings.Repeat("t", 32), CAFile: write("ca.pem", "no")}}, "push.relay.ca_file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(Options{Config: c.cfg})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New: %v, want an error naming %s", err, c.want)
			}
		})
	}
}

func TestAuthorizedRelay(t *testing.T) {
	const tok = "0123456789abcdef0123456789abcdef"
	for h, want := range map[string]bool{
		"Bearer " + tok: true, "bearer " + tok: true, "Bearer  " + tok + " ": true,
		"": false, "Bearer": false, "Bearer " + tok[:31]: false, "Basic " + tok: false, tok: false,
	} {
		if got := authorizedRelay(h, tok); got != want {
			t.Errorf("authorizedRelay(%q) = %v", h, got)
		}
	}
}
