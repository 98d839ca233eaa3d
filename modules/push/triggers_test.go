package push_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/elph-server/elph/modules/push"
)

// TestMessagePushes: a chat message reaches the offline recipient's
// iPhone and Android phone with the sender's name and the text; the
// sender, a live user, a DND user and a user who muted the conversation
// get nothing; system messages notify nobody.
func TestMessagePushes(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		e.phones(t, alice, bob, carol, dave, erin)
		e.presence.set(carol, push.Reach{Live: true})
		e.presence.set(dave, push.Reach{DND: true})
		everyone := []int64{alice, bob, carol, dave, erin}

		// One key (the conversation): handled in order.
		e.message(t, 7, 100, alice, everyone, []int64{erin}, "Привет! <b>Встреча</b> в 15:00 & не опаздывай")
		e.publish(t, push.TopicMessageCreated, "7", map[string]any{
			"conversation_id": 7, "actor_id": alice, "user_ids": everyone,
			"data": map[string]any{"conversation_id": 7, "message": map[string]any{
				"id": 101, "sender_id": alice, "kind": "system", "body": "", "system": map[string]any{"event": "renamed", "actor_id": alice},
			}},
		})
		e.message(t, 7, 102, alice, everyone, []int64{erin}, "", "report.pdf", "scan.png")

		ap := e.apns.wait(t, 2)
		fp := e.fcm.wait(t, 2)
		e.stop(t)
		if got := e.apns.pushes(); len(got) != 2 {
			t.Fatalf("APNs got %d pushes, want 2 (bob's): %+v", len(got), got)
		}
		if got := e.fcm.pushes(); len(got) != 2 {
			t.Fatalf("FCM got %d messages, want 2 (bob's): %+v", len(got), got)
		}
		if q := e.queue(t); len(q) != 0 {
			t.Fatalf("queue holds %+v, want nothing (no push for the sender, live, DND or muted users)", q)
		}

		// Workers send in parallel: in any order.
		slices.SortFunc(ap, func(a, b apnsPush) int {
			return strings.Compare(fmt.Sprint(a.Payload["message_id"]), fmt.Sprint(b.Payload["message_id"]))
		})
		slices.SortFunc(fp, func(a, b fcmPush) int {
			return strings.Compare(a.Message.Data["message_id"], b.Message.Data["message_id"])
		})
		bobAlert := apnsToken(fmt.Sprint("alert", bob))
		for i, want := range []string{"Привет! <b>Встреча</b> в 15:00 & не опаздывай", "📎 report.pdf (+1)"} {
			p := ap[i]
			alert, _ := p.aps()["alert"].(map[string]any)
			switch {
			case p.Token != bobAlert || p.Topic != iosApp || p.PushType != "alert" || p.Priority != 10:
				t.Errorf("APNs push %d: token %s topic %s type %s priority %d", i, p.Token, p.Topic, p.PushType, p.Priority)
			case alert["title"] != "Alice Liddell" || alert["body"] != want:
				t.Errorf("APNs push %d alert %v, want Alice Liddell / %q", i, alert, want)
			case p.aps()["thread-id"] != "conv-7" || p.aps()["sound"] != "default" || p.CollapseID != "":
				t.Errorf("APNs push %d: aps %v collapse %q", i, p.aps(), p.CollapseID)
			case p.Payload["type"] != "message" || p.Payload["conversation_id"] != "7" || p.Payload["message_id"] != fmt.Sprint(100+2*i):
				t.Errorf("APNs push %d custom data %v", i, p.Payload)
			}
			if exp := time.Unix(p.Expiration, 0); exp.Before(e.clock.Now().Add(messageTTL - time.Minute)) {
				t.Errorf("APNs push %d expires at %v", i, exp)
			}
			f := fp[i].Message
			switch {
			case f.Token != fcmToken(fmt.Sprint("fcm", bob)) || f.Notification == nil:
				t.Errorf("FCM message %d: token %s notification %v", i, f.Token, f.Notification)
			case f.Notification.Title != "Alice Liddell" || f.Notification.Body != want:
				t.Errorf("FCM message %d notification %+v, want %q", i, *f.Notification, want)
			case f.Android.Priority != "HIGH" || f.Android.TTL != "3600s" || f.Android.CollapseKey != "conv-7":
				t.Errorf("FCM message %d android %+v", i, f.Android)
			case f.Data["type"] != "message" || f.Data["conversation_id"] != "7" || f.Data["sender_id"] != "1":
				t.Errorf("FCM message %d data %v", i, f.Data)
			}
		}
		for _, c := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"elph_push_sent_total", []string{"platform", "apns", "kind", "message"}, 2},
			{"elph_push_sent_total", []string{"platform", "fcm", "kind", "message"}, 2},
			{"elph_push_skipped_total", []string{"reason", "live"}, 2},
			{"elph_push_skipped_total", []string{"reason", "dnd"}, 2},
			{"elph_push_skipped_total", []string{"reason", "muted"}, 2},
			{"elph_push_events_total", []string{"topic", push.TopicMessageCreated, "result", "queued"}, 2},
			{"elph_push_events_total", []string{"topic", push.TopicMessageCreated, "result", "none"}, 1},
			{"elph_push_enqueued_total", []string{"kind", "message"}, 4},
		} {
			if got := e.counter(t, c.name, c.labels...); got != c.want {
				t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
			}
		}
	})
}

// TestMessageWithoutPreview: with preview off the text never leaves, and
// without display names the title is generic; long texts are clipped.
func TestMessageWithoutPreview(t *testing.T) {
	forEachDialect(t, envOptions{edit: func(o *push.Options) { o.Config.Preview = false; o.Names = nil }}, func(t *testing.T, e *env) {
		e.register(t, bob, push.PlatformAPNs, iosApp, apnsToken("bob"))
		e.registerOn(t, bob, "android", push.PlatformFCM, androidApp, fcmToken("bob"))
		e.message(t, 3, 1, alice, []int64{alice, bob}, nil, "the secret text")
		p := e.apns.wait(t, 1)[0]
		alert, _ := p.aps()["alert"].(map[string]any)
		if alert["title"] != "New message" || alert["body"] != "New message" {
			t.Errorf("alert %v, want the generic texts", alert)
		}
		if f := e.fcm.wait(t, 1)[0].Message.Notification; f == nil || f.Body != "New message" {
			t.Errorf("FCM notification %+v, want the generic text", f)
		}

		// An access token FCM stops accepting early is replaced once, and
		// the push goes through on the first attempt.
		e.fcm.revokeTokens()
		e.message(t, 3, 2, alice, []int64{alice, bob}, nil, "again")
		e.fcm.wait(t, 2)
		if n := e.fcm.mintedTokens(); n != 2 {
			t.Errorf("%d access tokens minted, want 2 (one cached, one after the 401)", n)
		}
		if q := e.queue(t); len(q) != 0 && q[0].Attempts > 0 {
			t.Errorf("the 401 cost an attempt: %+v", q)
		}
	})
}

// TestIncomingCallPushes: an inbound call rings the user's phones with a
// VoIP push and a high-priority FCM data message, whether the user is
// live or in DND; answered and then ended, it is cancelled once on the
// user's devices; duplicates, outbound calls and calls that never rang
// push nothing.
func TestIncomingCallPushes(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		e.phones(t, bob, carol)
		e.presence.set(bob, push.Reach{Live: true, DND: true})
		now := e.clock.Now()

		e.publish(t, push.TopicCallStarted, "c-1", callEvent("c-1", bob, "inbound", now))
		e.publish(t, push.TopicCallStarted, "c-1", callEvent("c-1", bob, "inbound", now)) // redelivered
		e.publish(t, "call.ringing", "c-1", callEvent("c-1", bob, "", now))
		voip := e.apns.wait(t, 1)[0]
		data := e.fcm.wait(t, 1)[0].Message

		voipToken := apnsToken(fmt.Sprint("voip", bob))
		switch {
		case voip.Token != voipToken || voip.Topic != iosApp+".voip" || voip.PushType != "voip" || voip.Priority != 10:
			t.Errorf("VoIP push: token %s topic %s type %s priority %d", voip.Token, voip.Topic, voip.PushType, voip.Priority)
		case voip.Payload["type"] != "call" || voip.Payload["call_id"] != "c-1" || voip.Payload["peer_number"] != "+74951234567" ||
			voip.Payload["caller"] != "Иван Петров" || voip.CollapseID != "call-c-1":
			t.Errorf("VoIP payload %v collapse %q", voip.Payload, voip.CollapseID)
		case voip.Expiration != now.Add(callTTL).Unix():
			t.Errorf("VoIP expiration %d, want now+CallTTL %d", voip.Expiration, now.Add(callTTL).Unix())
		}
		switch {
		case data.Notification != nil:
			t.Errorf("call FCM message has a notification: %+v", data.Notification)
		case data.Android.Priority != "HIGH" || data.Android.TTL != "30s":
			t.Errorf("call FCM android %+v, want HIGH and 30s", data.Android)
		case data.Data["type"] != "call" || data.Data["call_id"] != "c-1" || data.Data["peer_name"] != "Иван Петров":
			t.Errorf("call FCM data %v", data.Data)
		}

		// Answered, then ended: one cancel, on the alert token and FCM.
		e.publish(t, push.TopicCallAnswered, "c-1", callEvent("c-1", bob, "", now.Add(3*time.Second)))
		e.publish(t, push.TopicCallEnded, "c-1", map[string]any{"call_id": "c-1", "user_id": bob, "at": now.Add(9 * time.Second), "cause": "normal"})
		cancel := e.apns.wait(t, 2)[1]
		fcmCancel := e.fcm.wait(t, 2)[1].Message
		switch {
		case cancel.Token != apnsToken(fmt.Sprint("alert", bob)) || cancel.Topic != iosApp || cancel.PushType != "background" || cancel.Priority != 5:
			t.Errorf("cancel push: token %s topic %s type %s priority %d", cancel.Token, cancel.Topic, cancel.PushType, cancel.Priority)
		case cancel.aps()["content-available"] != float64(1) || cancel.Payload["type"] != "call_cancelled" ||
			cancel.Payload["call_id"] != "c-1" || cancel.Payload["reason"] != "answered":
			t.Errorf("cancel payload %v", cancel.Payload)
		}
		if fcmCancel.Data["type"] != "call_cancelled" || fcmCancel.Notification != nil || fcmCancel.Android.Priority != "HIGH" {
			t.Errorf("FCM cancel %+v", fcmCancel)
		}

		// Nothing for: an outbound call, the end of a call that rang no
		// device (carol's outbound), and a call that ended before its
		// call.started arrived.
		e.publish(t, push.TopicCallStarted, "c-2", callEvent("c-2", carol, "outbound", now))
		e.publish(t, push.TopicCallEnded, "c-2", map[string]any{"call_id": "c-2", "user_id": carol, "at": now, "cause": "normal"})
		e.publish(t, push.TopicCallEnded, "c-3", map[string]any{"call_id": "c-3", "user_id": carol, "at": now, "cause": "cancelled"})
		e.publish(t, push.TopicCallStarted, "c-3", callEvent("c-3", carol, "inbound", now))
		// A stale call.started (it waited longer than the call rings).
		e.publish(t, push.TopicCallStarted, "c-4", callEvent("c-4", carol, "inbound", now.Add(-time.Minute)))
		e.stop(t)
		if n := len(e.apns.pushes()); n != 2 {
			t.Errorf("APNs got %d pushes, want 2: %+v", n, e.apns.pushes())
		}
		if n := len(e.fcm.pushes()); n != 2 {
			t.Errorf("FCM got %d messages, want 2: %+v", n, e.fcm.pushes())
		}
		if q := e.queue(t); len(q) != 0 {
			t.Errorf("queue holds %+v", q)
		}
		if got := e.counter(t, "elph_push_events_total", "topic", push.TopicCallStarted, "result", "duplicate"); got != 1 {
			t.Errorf("duplicate call.started counted %v times, want 1", got)
		}
		if got := e.counter(t, "elph_push_skipped_total", "reason", "stale"); got != 1 {
			t.Errorf("stale call.started skipped %v times, want 1", got)
		}
	})
}

// TestMissedCallPush: a missed call notifies the offline user with the
// unseen count as badge, once; a live user gets nothing.
func TestMissedCallPush(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		e.phones(t, bob, carol)
		e.presence.set(carol, push.Reach{Live: true})
		e.publish(t, push.TopicCallMissed, "3", missedCall(carol, "m-0", 1))
		e.publish(t, push.TopicCallMissed, "2", missedCall(bob, "m-1", 3))
		e.publish(t, push.TopicCallMissed, "2", missedCall(bob, "m-1", 3)) // redelivered
		p := e.apns.wait(t, 1)[0]
		f := e.fcm.wait(t, 1)[0].Message
		e.stop(t)
		alert, _ := p.aps()["alert"].(map[string]any)
		switch {
		case p.Token != apnsToken(fmt.Sprint("alert", bob)) || p.PushType != "alert":
			t.Errorf("missed-call push to %s type %s", p.Token, p.PushType)
		case alert["title"] != "Missed call" || alert["body"] != "Office, Moscow" || p.aps()["badge"] != float64(3):
			t.Errorf("missed-call aps %v", p.aps())
		case p.aps()["thread-id"] != "missed-calls" || p.Payload["type"] != "missed_call" || p.Payload["call_id"] != "m-1":
			t.Errorf("missed-call payload %v", p.Payload)
		}
		switch {
		case f.Notification == nil || f.Notification.Title != "Missed call" || f.Notification.Body != "Office, Moscow":
			t.Errorf("missed-call FCM notification %+v", f.Notification)
		case f.Android.Notification == nil || f.Android.Notification.NotificationCount == nil || *f.Android.Notification.NotificationCount != 3:
			t.Errorf("missed-call FCM badge %+v", f.Android.Notification)
		case f.Data["unseen_missed"] != "3" || f.Data["peer_number"] != "+74957654321":
			t.Errorf("missed-call FCM data %v", f.Data)
		}
		if n, m := len(e.apns.pushes()), len(e.fcm.pushes()); n != 1 || m != 1 {
			t.Errorf("pushes: APNs %d, FCM %d; want one each", n, m)
		}
	})
}

// TestInvalidTokenRemovesDevice: the answers that mean the token is dead
// remove the device (and whatever was queued for it).
func TestInvalidTokenRemovesDevice(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		cases := []struct {
			name, platform string
			answer         answer
		}{
			{"APNs BadDeviceToken", push.PlatformAPNs, answer{status: 400, reason: "BadDeviceToken"}},
			{"APNs Unregistered", push.PlatformAPNs, answer{status: 410, reason: "Unregistered"}},
			{"APNs DeviceTokenNotForTopic", push.PlatformAPNs, answer{status: 400, reason: "DeviceTokenNotForTopic"}},
			{"FCM UNREGISTERED", push.PlatformFCM, answer{status: 404, reason: "UNREGISTERED"}},
			{"FCM SENDER_ID_MISMATCH", push.PlatformFCM, answer{status: 403, reason: "SENDER_ID_MISMATCH"}},
		}
		for i, c := range cases {
			user := int64(100 + i)
			var tok string
			if c.platform == push.PlatformAPNs {
				tok = apnsToken(c.name)
				e.register(t, user, c.platform, iosApp, tok)
				e.apns.answer(tok, c.answer)
			} else {
				tok = fcmToken(c.name)
				e.register(t, user, c.platform, androidApp, tok)
				e.fcm.answer(tok, c.answer)
			}
			e.message(t, 9, int64(i+1), alice, []int64{alice, user}, nil, "hello")
			eventually(t, c.name+" removes the device", func() bool { return len(e.devices(t, user)) == 0 })
		}
		eventually(t, "the queue empties", func() bool { return len(e.queue(t)) == 0 })
		e.stop(t)
		if got := e.counter(t, "elph_push_invalid_tokens_total", "platform", "apns"); got != 3 {
			t.Errorf("APNs invalid tokens %v, want 3", got)
		}
		if got := e.counter(t, "elph_push_invalid_tokens_total", "platform", "fcm"); got != 2 {
			t.Errorf("FCM invalid tokens %v, want 2", got)
		}
		if got := e.counter(t, "elph_push_failures_total", "platform", "apns", "reason", "Unregistered"); got != 1 {
			t.Errorf("failures{apns,Unregistered} = %v", got)
		}
		if n := len(e.apns.pushes()) + len(e.fcm.pushes()); n != 0 {
			t.Errorf("%d pushes accepted, want none", n)
		}
	})
}

// TestRetryThenSent: APNs 429 is retried after the backoff, FCM
// QUOTA_EXCEEDED after its Retry-After; both then go out. A module clock
// makes the retries due: nothing waits for them in real time.
func TestRetryThenSent(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		at, ft := apnsToken("retry"), fcmToken("retry")
		e.register(t, bob, push.PlatformAPNs, iosApp, at)
		e.registerOn(t, bob, "android", push.PlatformFCM, androidApp, ft)
		e.apns.answer(at, answer{status: 429, reason: "TooManyRequests"})
		e.fcm.answer(ft, answer{status: 429, reason: "QUOTA_EXCEEDED", retryAfter: "30"})
		e.message(t, 1, 1, alice, []int64{alice, bob}, nil, "again")

		eventually(t, "both pushes failed once", func() bool {
			q := e.queue(t)
			return len(q) == 2 && q[0].Attempts == 1 && q[1].Attempts == 1 && q[0].LeaseOwner == "" && q[1].LeaseOwner == ""
		})
		now := e.clock.Now()
		for _, r := range e.queue(t) {
			wait := r.Next.Sub(now)
			switch r.Platform {
			case push.PlatformAPNs:
				if wait < 800*time.Millisecond || wait > 1200*time.Millisecond || !strings.Contains(r.LastError, "TooManyRequests") {
					t.Errorf("APNs retry in %v (%q), want 1 s ± 20 %%", wait, r.LastError)
				}
			case push.PlatformFCM:
				if wait < 29*time.Second || wait > 31*time.Second || !strings.Contains(r.LastError, "QUOTA_EXCEEDED") {
					t.Errorf("FCM retry in %v (%q), want the Retry-After of 30 s", wait, r.LastError)
				}
			}
		}
		if len(e.apns.pushes())+len(e.fcm.pushes()) != 0 {
			t.Fatal("a push went out before its retry was due")
		}
		e.clock.Advance(2 * time.Second)
		e.apns.wait(t, 1)
		if len(e.fcm.pushes()) != 0 {
			t.Fatal("FCM retried before its Retry-After")
		}
		e.clock.Advance(30 * time.Second)
		e.fcm.wait(t, 1)
		eventually(t, "the queue empties", func() bool { return len(e.queue(t)) == 0 })
		e.stop(t)
		for _, c := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"elph_push_failures_total", []string{"platform", "apns", "reason", "TooManyRequests"}, 1},
			{"elph_push_failures_total", []string{"platform", "fcm", "reason", "QUOTA_EXCEEDED"}, 1},
			{"elph_push_sent_total", []string{"platform", "apns"}, 1},
			{"elph_push_sent_total", []string{"platform", "fcm"}, 1},
		} {
			if got := e.counter(t, c.name, c.labels...); got != c.want {
				t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
			}
		}
	})
}

// TestGivingUp: a push is dropped after max_attempts, and when its next
// attempt would come after its expiry; each is counted.
func TestGivingUp(t *testing.T) {
	forEachDialect(t, envOptions{edit: func(o *push.Options) { o.Config.MaxAttempts = 2 }}, func(t *testing.T, e *env) {
		at, ft := apnsToken("down"), fcmToken("down")
		e.register(t, bob, push.PlatformAPNs, iosApp, at)
		e.registerOn(t, bob, "android", push.PlatformFCM, androidApp, ft)
		e.apns.answerAlways(at, answer{status: 503, reason: "ServiceUnavailable"})
		// Retry-After beyond the message's TTL: no point trying again.
		e.fcm.answerAlways(ft, answer{status: 500, reason: "INTERNAL", retryAfter: "7200"})
		e.message(t, 1, 1, alice, []int64{alice, bob}, nil, "lost")

		eventually(t, "the APNs push failed once", func() bool {
			q := e.queue(t)
			return len(q) == 1 && q[0].Attempts == 1 && q[0].LeaseOwner == ""
		})
		e.clock.Advance(5 * time.Second)
		eventually(t, "the queue empties", func() bool { return len(e.queue(t)) == 0 })
		e.stop(t) // the sends are settled
		if got := e.counter(t, "elph_push_dropped_total", "reason", "attempts"); got != 1 {
			t.Errorf("dropped{attempts} = %v, want 1", got)
		}
		if got := e.counter(t, "elph_push_dropped_total", "reason", "expired"); got != 1 {
			t.Errorf("dropped{expired} = %v, want 1", got)
		}
		if got := e.counter(t, "elph_push_failures_total", "platform", "apns", "reason", "ServiceUnavailable"); got != 2 {
			t.Errorf("APNs failures %v, want 2", got)
		}

		// A push that expired in the queue is dropped unsent.
		e.apns.answerAlways(at, answer{})
		m := e.newModule(t, nil, e.bus, nil)
		if err := push.Handle(t.Context(), m, busEvent(t, push.TopicMessageCreated, chatMessage(1, 2, alice, []int64{alice, bob}, nil, "late"))); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(messageTTL + time.Second)
		e.start(t, m)
		eventually(t, "the expired pushes are dropped", func() bool { return len(e.queue(t)) == 0 })
		if n := len(e.apns.pushes()); n != 0 {
			t.Errorf("an expired push was sent")
		}
	})
}

// TestCallPushOrderIndependence: call events in any order and repeated
// converge on one ring and at most one cancel per (call, user).
func TestCallPushOrderIndependence(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		e.phones(t, bob)
		now := e.clock.Now()
		ended := map[string]any{"call_id": "x", "user_id": bob, "at": now, "cause": "normal"}
		for _, ev := range []struct {
			topic string
			p     any
		}{
			{push.TopicCallStarted, callEvent("x", bob, "inbound", now)},
			{push.TopicCallEnded, ended},
			{push.TopicCallAnswered, callEvent("x", bob, "", now)},
			{push.TopicCallEnded, ended},
			{push.TopicCallStarted, callEvent("x", bob, "inbound", now)},
		} {
			e.publish(t, ev.topic, "x", ev.p)
		}
		e.stop(t)
		// The ring may have been dropped unsent when the cancel came
		// first; the cancel itself is queued or sent once per device.
		types := map[string]int{}
		for _, p := range e.apns.pushes() {
			types[p.PushType]++
		}
		for _, r := range e.queue(t) {
			if r.Kind != push.KindCallCancelled {
				t.Errorf("queued %s push left", r.Kind)
			}
		}
		if types["voip"] > 1 || types["background"] > 1 {
			t.Errorf("APNs pushes by type %v: at most one ring and one cancel", types)
		}
		if slices.ContainsFunc(e.apns.pushes(), func(p apnsPush) bool { return p.PushType == "alert" }) {
			t.Error("a call sent an alert push")
		}
	})
}

// numberBook is the address book as push sees it: bob knows the number
// under his own name for the caller.
type numberBook map[string]string

func (b numberBook) NameForNumber(_ context.Context, userID int64, number string) (string, bool) {
	name, ok := b[fmt.Sprint(userID, ":", number)]
	return name, ok
}

// TestCallerNameFromAddressBook: the ring shows the caller as the called
// user knows them; an unknown number keeps the PBX's name.
func TestCallerNameFromAddressBook(t *testing.T) {
	book := numberBook{fmt.Sprint(bob, ":+74951234567"): "Иван (сосед)"}
	forEachDialect(t, envOptions{edit: func(o *push.Options) { o.Numbers = book }}, func(t *testing.T, e *env) {
		e.phones(t, bob, carol)
		now := e.clock.Now()
		e.publish(t, push.TopicCallStarted, "n-1", callEvent("n-1", bob, "inbound", now))
		if p := e.apns.wait(t, 1)[0]; p.Payload["caller"] != "Иван (сосед)" || p.Payload["peer_name"] != "Иван (сосед)" {
			t.Errorf("bob's ring shows %v", p.Payload)
		}
		e.publish(t, push.TopicCallStarted, "n-2", callEvent("n-2", carol, "inbound", now))
		if p := e.apns.wait(t, 2)[1]; p.Payload["caller"] != "Иван Петров" {
			t.Errorf("carol's ring shows %v", p.Payload)
		}
	})
}
