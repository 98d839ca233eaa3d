package push

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/elph-server/elph/platform/httpx"
)

// FuzzValidateDevice: whatever validateDevice accepts satisfies every
// bound the store, the APNs path and topic, and the FCM body rely on,
// and accepting is stable (the stored token validates again as is).
func FuzzValidateDevice(f *testing.F) {
	hex64 := strings.Repeat("0a", 32)
	for _, s := range [][3]string{
		{"apns", "ru.eltex.elph", hex64},
		{"apns_voip", "ru.eltex.elph", strings.ToUpper(hex64)},
		{"fcm", "ru.eltex.elph.android", "fXyz:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx"},
		{"apns", "ru.eltex.elph", hex64 + "/../../3/device/x"},
		{"apns", "ru.eltex.elph\r\napns-topic: evil", hex64},
		{"apns", "a.b", strings.Repeat("0", 201)},
		{"fcm", "a.b", "tok\x00en"},
		{"fcm", "a.b", "токен"},
		{"fcm", ".a.b.", "t"},
		{"gcm", "a.b", "t"},
		{"", "", ""},
		{"APNS", "a.b", hex64},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, platform, appID, token string) {
		tok, err := validateDevice(platform, appID, token)
		if err != nil {
			var inv invalidDevice
			if !errors.As(err, &inv) || err.Error() == "" {
				t.Fatalf("error %q: want a client message", err)
			}
			return
		}
		switch {
		case platform != PlatformAPNs && platform != PlatformAPNsVoIP && platform != PlatformFCM:
			t.Fatalf("accepted platform %q", platform)
		case len(appID) == 0 || len(appID) > maxAppID || strings.ContainsAny(appID, " /\r\n:") ||
			strings.HasPrefix(appID, ".") || strings.HasSuffix(appID, ".") || strings.Contains(appID, "..") || !strings.Contains(appID, "."):
			t.Fatalf("accepted app_id %q", appID)
		case !utf8.ValidString(tok) || strings.ContainsAny(tok, " \t\r\n\x00\x7f"):
			t.Fatalf("accepted token %q", tok)
		case platform == PlatformFCM && (len(tok) == 0 || len(tok) > maxFCMToken || tok != token):
			t.Fatalf("accepted FCM token %q as %q", token, tok)
		case platform != PlatformFCM && (len(tok) < minAPNsToken || len(tok) > maxAPNsToken || tok != strings.ToLower(token) || strings.Trim(tok, "0123456789abcdef") != ""):
			t.Fatalf("accepted APNs token %q as %q", token, tok)
		}
		if again, err := validateDevice(platform, appID, tok); err != nil || again != tok {
			t.Fatalf("the stored token %q does not validate again: %v", tok, err)
		}
	})
}

// FuzzRelayRequest feeds arbitrary bodies to the relay endpoint's
// decoder and item checks: they must never panic, refuse with a 4xx, and
// whatever they accept must be within the protocol's bounds.
func FuzzRelayRequest(f *testing.F) {
	hex64 := strings.Repeat("0a", 32)
	item := `{"id":"1","platform":"apns","app_id":"a.b","token":"` + hex64 + `","kind":"message","priority":10,` +
		`"expires_at":"2030-01-01T00:00:00Z","notification":{"title":"t","body":"b","badge":1,"thread":"conv-1","data":{"k":"v"}}}`
	for _, s := range []string{
		`{"items":[` + item + `]}`,
		`{"items":[` + item + `,` + strings.Replace(item, `"id":"1"`, `"id":"2"`, 1) + `]}`,
		`{"items":[` + item + `,` + item + `]}`,
		`{"items":[]}`,
		`{"items":null}`,
		`{"items":[{"id":"1","platform":"fcm","app_id":"a.b","token":"t","kind":"call","priority":10,"expires_at":"2030-01-01T00:00:00Z","notification":{"data":{"aps":"x","google.x":"y"}}}]}`,
		`{"items":[{"id":"1","platform":"apns_voip","kind":"message","priority":7}]}`,
		`{"items":[{"id":"\u0000","notification":{"title":"\ud800","badge":-1}}]}`,
		`{"items":[` + item + `]} trailing`,
		`{"items":[` + item + `],"extra":true}`,
		`[]`, `null`, `{`, ``, "\xff\xfe",
		`{"items":[{"id":"1","expires_at":"not a time"}]}`,
		`{"items":[{"id":"1","priority":1e400}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/v1/relay", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		req, err := decodeRelay(r)
		if err != nil {
			var he *httpx.Error
			if !errors.As(err, &he) || he.Status < 400 || he.Status > 499 {
				t.Fatalf("error %v does not answer 4xx", err)
			}
			return
		}
		if len(req.Items) == 0 || len(req.Items) > maxRelayItems {
			t.Fatalf("accepted %d items", len(req.Items))
		}
		ids := map[string]bool{}
		for _, ri := range req.Items {
			if ri.ID == "" || len(ri.ID) > maxRelayID || ids[ri.ID] {
				t.Fatalf("accepted item id %q", ri.ID)
			}
			ids[ri.ID] = true
			it, err := ri.toItem()
			if err != nil {
				continue // answered "drop"
			}
			if !kindAllowed(it.Platform, it.Kind) || it.Priority != 5 && it.Priority != 10 || it.ExpiresAt.IsZero() {
				t.Fatalf("accepted item %+v", it)
			}
			if utf8.RuneCountInString(it.Note.Title) > maxTitleRunes || len(it.Note.Body) > maxBodyBytes || len(it.Note.Data) > maxDataEntries {
				t.Fatalf("accepted notification %+v", it.Note)
			}
			for k := range it.Note.Data {
				if k == "aps" || strings.HasPrefix(k, "google") || strings.HasPrefix(k, "gcm") || k == "from" {
					t.Fatalf("accepted data key %q", k)
				}
			}
			// What is accepted can be rendered (or is refused as too large).
			var rerr error
			if it.Platform == PlatformFCM {
				_, rerr = renderFCM(it, it.ExpiresAt.Add(-1))
			} else {
				_, rerr = renderAPNs(it)
			}
			if rerr != nil && !errors.Is(rerr, errTooLarge) {
				t.Fatalf("accepted item does not render: %v", rerr)
			}
		}
	})
}
