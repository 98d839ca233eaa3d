package push_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/elph-server/elph/modules/push"
	"github.com/elph-server/elph/platform/httpx"
)

func TestDeviceAPI(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		t.Run("validation", func(t *testing.T) {
			hex64 := apnsToken("x")
			for _, c := range []struct {
				name, body string
				status     int
				code       string
			}{
				{"unknown platform", `{"platform":"gcm","app_id":"a.b","token":"t"}`, 400, httpx.CodeBadRequest},
				{"no platform", `{"app_id":"a.b","token":"t"}`, 400, httpx.CodeBadRequest},
				{"app id without a dot", `{"platform":"fcm","app_id":"app","token":"t"}`, 400, httpx.CodeBadRequest},
				{"app id with a slash", `{"platform":"fcm","app_id":"a.b/c","token":"t"}`, 400, httpx.CodeBadRequest},
				{"app id with an empty label", `{"platform":"fcm","app_id":"a..b","token":"t"}`, 400, httpx.CodeBadRequest},
				{"app id too long", `{"platform":"fcm","app_id":"a.` + strings.Repeat("b", 255) + `","token":"t"}`, 400, httpx.CodeBadRequest},
				{"APNs token not hex", `{"platform":"apns","app_id":"a.b","token":"` + strings.Repeat("g", 64) + `"}`, 400, httpx.CodeBadRequest},
				{"APNs token too short", `{"platform":"apns","app_id":"a.b","token":"` + hex64[:62] + `"}`, 400, httpx.CodeBadRequest},
				{"APNs token too long", `{"platform":"apns_voip","app_id":"a.b","token":"` + strings.Repeat(hex64, 4) + `"}`, 400, httpx.CodeBadRequest},
				{"FCM token with a space", `{"platform":"fcm","app_id":"a.b","token":"abc def"}`, 400, httpx.CodeBadRequest},
				{"FCM token empty", `{"platform":"fcm","app_id":"a.b","token":""}`, 400, httpx.CodeBadRequest},
				{"FCM token too long", `{"platform":"fcm","app_id":"a.b","token":"` + strings.Repeat("a", 4097) + `"}`, 400, httpx.CodeBadRequest},
				{"name with a control character", `{"platform":"fcm","app_id":"a.b","token":"t","name":"a\u0007"}`, 400, httpx.CodeBadRequest},
				{"unknown field", `{"platform":"fcm","app_id":"a.b","token":"t","user_id":2}`, 400, httpx.CodeBadRequest},
				{"not JSON", `platform=fcm`, 400, httpx.CodeBadRequest},
				{"body too large", `{"platform":"fcm","app_id":"a.b","token":"t","name":"` + strings.Repeat("a", 20<<10) + `"}`, 413, httpx.CodePayloadTooLarge},
			} {
				t.Run(c.name, func(t *testing.T) {
					e.do(t, http.MethodPost, "/v1/devices", alice, sid(alice), c.body).wantError(t, c.status, c.code)
				})
			}
			e.do(t, http.MethodPost, "/v1/devices", 0, "", `{"platform":"fcm","app_id":"a.b","token":"t"}`).wantError(t, 401, httpx.CodeUnauthorized)
			if d := e.devices(t, alice); len(d) != 0 {
				t.Fatalf("refused registrations stored devices: %+v", d)
			}
		})

		upper := strings.ToUpper(apnsToken("alice-phone"))
		var first push.Device
		t.Run("register", func(t *testing.T) {
			body := `{"platform":"apns","app_id":"` + iosApp + `","token":"` + upper + `","name":"iPhone Алисы"}`
			r := e.do(t, http.MethodPost, "/v1/devices", alice, sid(alice), body)
			r.wantStatus(t, http.StatusCreated)
			r.decode(t, &first)
			want := "…" + strings.ToLower(upper[len(upper)-8:])
			if first.ID <= 0 || first.Platform != "apns" || first.AppID != iosApp || first.Name != "iPhone Алисы" ||
				first.TokenHint != want || !first.Current || first.CreatedAt.IsZero() {
				t.Fatalf("registered %+v (hint want %s)", first, want)
			}
			if strings.Contains(string(r.Body), strings.ToLower(upper)) {
				t.Error("the answer holds the whole token")
			}
			// Again (same token in lower case): the same device, 200.
			var again push.Device
			r = e.do(t, http.MethodPost, "/v1/devices", alice, sid(alice), strings.Replace(body, upper, strings.ToLower(upper), 1))
			r.wantStatus(t, http.StatusOK)
			r.decode(t, &again)
			if again.ID != first.ID {
				t.Fatalf("re-registering made device %d, want %d", again.ID, first.ID)
			}
			// The same token on another platform is another device.
			if d := e.register(t, alice, push.PlatformAPNsVoIP, iosApp, upper); d.ID == first.ID {
				t.Fatal("apns_voip shares the apns device")
			}
			if d := e.devices(t, alice); len(d) != 2 {
				t.Fatalf("alice has %d devices, want 2", len(d))
			}
		})

		t.Run("a new token of the same session replaces the old one", func(t *testing.T) {
			d := e.register(t, alice, push.PlatformAPNs, iosApp, apnsToken("alice-phone-rotated"))
			devs := e.devices(t, alice)
			if len(devs) != 2 || devs[0].Platform != push.PlatformAPNsVoIP || devs[1].ID != d.ID {
				t.Fatalf("devices after the token rotated: %+v", devs)
			}
			first = d
		})

		t.Run("a token moves to whoever registers it", func(t *testing.T) {
			var moved push.Device
			r := e.do(t, http.MethodPost, "/v1/devices", bob, sid(bob), `{"platform":"apns","app_id":"`+iosApp+`","token":"`+apnsToken("alice-phone-rotated")+`"}`)
			r.wantStatus(t, http.StatusOK)
			r.decode(t, &moved)
			if moved.ID != first.ID || !moved.Current {
				t.Fatalf("moved %+v, want device %d", moved, first.ID)
			}
			if devs := e.devices(t, alice); len(devs) != 1 {
				t.Fatalf("alice still has %+v", devs)
			}
			if devs := e.devices(t, bob); len(devs) != 1 || devs[0].ID != first.ID {
				t.Fatalf("bob has %+v", devs)
			}
		})

		t.Run("delete", func(t *testing.T) {
			id := strconv.FormatInt(first.ID, 10) // bob's now
			e.do(t, http.MethodDelete, "/v1/devices/"+id, alice, sid(alice), "").wantError(t, 404, httpx.CodeNotFound)
			e.do(t, http.MethodDelete, "/v1/devices/abc", bob, sid(bob), "").wantError(t, 404, httpx.CodeNotFound)
			e.do(t, http.MethodDelete, "/v1/devices/"+id, bob, sid(bob), "").wantStatus(t, http.StatusNoContent)
			e.do(t, http.MethodDelete, "/v1/devices/"+id, bob, sid(bob), "").wantError(t, 404, httpx.CodeNotFound)
			e.do(t, http.MethodDelete, "/v1/devices/"+id, 0, "", "").wantError(t, 401, httpx.CodeUnauthorized)
		})

		t.Run("at most 20 devices: the oldest is replaced", func(t *testing.T) {
			var ids []int64
			for i := range push.MaxDevicesPerUser + 1 {
				d := e.registerOn(t, carol, fmt.Sprint("s", i), push.PlatformFCM, androidApp, fcmToken(fmt.Sprint("carol", i)))
				ids = append(ids, d.ID)
			}
			devs := e.devices(t, carol)
			if len(devs) != push.MaxDevicesPerUser || devs[0].ID != ids[1] || devs[len(devs)-1].ID != ids[len(ids)-1] {
				t.Fatalf("carol has %d devices from %d, want the %d newest", len(devs), devs[0].ID, push.MaxDevicesPerUser)
			}
			for _, d := range devs {
				if d.Current {
					t.Errorf("device %d is current for the listing session %s", d.ID, sid(carol))
				}
			}
		})

		t.Run("a revoked session's devices are removed", func(t *testing.T) {
			e.registerOn(t, dave, "phone", push.PlatformAPNs, iosApp, apnsToken("dave-1"))
			e.registerOn(t, dave, "phone", push.PlatformAPNsVoIP, iosApp, apnsToken("dave-2"))
			keep := e.registerOn(t, dave, "laptop", push.PlatformFCM, androidApp, fcmToken("dave-3"))
			// Something queued for the phone goes with it.
			e.message(t, 5, 1, alice, []int64{alice, dave}, nil, "hi")
			e.publish(t, push.TopicSessionRevoked, "4", map[string]any{"session_id": "phone", "user_id": dave, "reason": "logout", "at": e.clock.Now()})
			eventually(t, "the phone's devices are removed", func() bool {
				d := e.devices(t, dave)
				return len(d) == 1 && d[0].ID == keep.ID
			})
			e.stop(t)
			for _, p := range e.apns.pushes() {
				if p.Token == apnsToken("dave-1") {
					// Sent before the revocation was handled: allowed; but
					// nothing of it may stay queued.
					t.Logf("pushed to the phone before its session was revoked")
				}
			}
			for _, r := range e.queue(t) {
				if r.UserID == dave && r.Platform != push.PlatformFCM {
					t.Errorf("queued for a revoked device: %+v", r)
				}
			}
		})
	})
}

// TestDeviceJSON pins the device's JSON fields (the client contract).
func TestDeviceJSON(t *testing.T) {
	b, err := json.Marshal(push.Device{ID: 1, Platform: "fcm", AppID: "a.b", Name: "n", TokenHint: "…12345678", Current: true})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for _, k := range []string{"id", "platform", "app_id", "name", "token_hint", "current", "created_at", "updated_at"} {
		if _, ok := m[k]; !ok {
			t.Errorf("device JSON lacks %q: %s", k, b)
		}
	}
	if len(m) != 8 {
		t.Errorf("device JSON has extra fields: %s", b)
	}
}
