package status_test

import (
	"context"
	"net/http"
	"sync"

	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/elph-server/elph/modules/status"
	"github.com/elph-server/elph/platform/store"
)

// TestDevicesAggregate: one device in use makes a user online, all idle
// makes them away, none offline with the time last seen; each change
// reaches a watcher and the user's own devices.
func TestDevicesAggregate(t *testing.T) {
	forEachDialect(t, func(t *testing.T, e *env) {
		watcher := e.connect(t, bob, "bob-desk")
		watcher.send("status.watch", map[string]any{"users": []int64{alice, carol}})
		var list struct{ Presences []status.Presence }
		if err := json.Unmarshal(watcher.signal(status.SignalPresenceList), &list); err != nil {
			t.Fatal(err)
		}
		if len(list.Presences) != 2 || list.Presences[0].UserID != alice || list.Presences[0].State != status.StateOffline || list.Presences[0].LastSeenAt != nil {
			t.Fatalf("snapshot %+v, want alice and carol offline, never seen", list.Presences)
		}

		desk := e.connect(t, alice, "alice-desk")
		if p := watcher.presence(alice); p.State != status.StateOnline {
			t.Fatalf("after the first device: %+v, want online", p)
		}
		phone := e.connect(t, alice, "alice-phone")
		if me := e.me(t, alice); me.Devices != 2 || me.ActiveDevices != 2 || me.State != status.StateOnline || me.Choice != status.ChoiceOnline {
			t.Fatalf("me %+v, want online with 2 devices", me)
		}

		// The desk goes idle past away_after: the phone keeps her online.
		desk.send("status.activity", map[string]any{"idle_seconds": int(e.cfg.AwayAfter.Seconds()) + 1})
		if me := e.me(t, alice); me.ActiveDevices != 1 || me.State != status.StateOnline {
			t.Fatalf("me %+v, want online with 1 active device", me)
		}
		// The phone reports idle time below away_after: still online …
		phone.send("status.activity", map[string]any{"idle_seconds": 60})
		if me := e.me(t, alice); me.State != status.StateOnline {
			t.Fatalf("me %+v, want still online", me)
		}
		// … until that time has grown past it (auto-away).
		e.clock.Advance(e.cfg.AwayAfter)
		if err := e.mod.PromoteIdle(t.Context()); err != nil {
			t.Fatal(err)
		}
		if p := watcher.presence(alice); p.State != status.StateAway {
			t.Fatalf("every device idle: %+v, want away", p)
		}
		// Her own devices hear of it too (after the changes before it).
		desk.presenceIn(alice, status.StateAway)
		// Back at the desk.
		desk.send("status.activity", map[string]any{"idle_seconds": 0})
		if p := watcher.presence(alice); p.State != status.StateOnline {
			t.Fatalf("activity: %+v, want online", p)
		}

		e.close(t, desk, 1)
		if p := watcher.presence(alice); p.State != status.StateAway {
			t.Fatalf("only the idle phone left: %+v, want away", p)
		}
		e.close(t, phone, 0)
		p := watcher.presence(alice)
		if p.State != status.StateOffline || p.LastSeenAt == nil || !p.LastSeenAt.Equal(e.clock.Now()) {
			t.Fatalf("no device: %+v, want offline, last seen %s", p, e.clock.Now())
		}
		if got, _ := e.lastChange(t, alice); got.State != status.StateOffline {
			t.Errorf("last change on the bus %+v, want offline", got)
		}
		// Carol never changed: the watcher heard nothing of her.
		if n := e.changeCount(t, carol); n != 0 {
			t.Errorf("%d changes of carol", n)
		}
		if d := e.counter(t, "elph_status_devices"); d != 1 {
			t.Errorf("elph_status_devices = %v, want 1 (bob)", d)
		}
		if n := e.counter(t, "elph_status_deliveries_total"); n < 5 {
			t.Errorf("elph_status_deliveries_total = %v, want at least 5", n)
		}
	})
}

// TestChoices: away, dnd and offline chosen by the user; offline hides
// everything from others; the choice survives devices coming and going.
func TestChoices(t *testing.T) {
	forEachDialect(t, func(t *testing.T, e *env) {
		watcher := e.connect(t, bob, "bob")
		watcher.send("status.watch", map[string]any{"users": []int64{alice}})
		watcher.signal(status.SignalPresenceList)
		e.connect(t, alice, "alice")
		watcher.presence(alice)

		for _, tt := range []struct{ choice, state string }{
			{status.ChoiceDND, status.StateDND},
			{status.ChoiceAway, status.StateAway},
			{status.ChoiceOffline, status.StateOffline},
			{"auto", status.StateOnline},
		} {
			var me status.Me
			e.call(t, alice, "PUT", "/status/v1/me/choice", map[string]string{"choice": tt.choice}).want(t, 200).decode(t, &me)
			if me.State != tt.state {
				t.Errorf("choice %s: state %s, want %s", tt.choice, me.State, tt.state)
			}
			if p := watcher.presence(alice); p.State != tt.state {
				t.Errorf("choice %s: watcher saw %+v", tt.choice, p)
			}
		}
		// Choosing the same again announces nothing.
		before := e.changeCount(t, alice)
		e.call(t, alice, "PUT", "/status/v1/me/choice", map[string]string{"choice": "online"}).want(t, 200)
		if n := e.changeCount(t, alice); n != before {
			t.Errorf("a repeated choice was announced (%d → %d)", before, n)
		}
		for _, body := range []any{
			map[string]string{"choice": "busy"},
			map[string]string{"choice": ""},
			map[string]any{"choice": "dnd", "extra": 1},
		} {
			e.call(t, alice, "PUT", "/status/v1/me/choice", body).want(t, 400)
		}
		e.call(t, 0, "GET", "/status/v1/me", nil).want(t, 401)
	})
}

// TestText: a personal status text with an expiry, cleared by the sweep
// once it passes; bad texts are refused.
func TestText(t *testing.T) {
	forEachDialect(t, func(t *testing.T, e *env) {
		var me status.Me
		e.call(t, alice, "PUT", "/status/v1/me/text", map[string]any{"text": "  В отпуске до понедельника  ", "expires_in": 3600}).
			want(t, 200).decode(t, &me)
		if me.Text != "В отпуске до понедельника" || me.TextExpiresAt == nil || !me.TextExpiresAt.Equal(t0.Add(time.Hour)) {
			t.Fatalf("me %+v, want the trimmed text expiring in an hour", me)
		}
		var p status.Presence
		e.call(t, bob, "GET", "/status/v1/users/1", nil).want(t, 200).decode(t, &p)
		if p.Text != me.Text || p.State != status.StateOffline {
			t.Errorf("bob sees %+v", p)
		}
		if got, _ := e.lastChange(t, alice); got.Text != me.Text {
			t.Errorf("change on the bus %+v, want the text", got)
		}

		e.clock.Advance(time.Hour)
		// Expired: hidden at once, cleared and announced by the sweep.
		p = status.Presence{}
		e.call(t, bob, "GET", "/status/v1/users/1", nil).want(t, 200).decode(t, &p)
		if p.Text != "" {
			t.Errorf("expired text still shown: %+v", p)
		}
		if err := e.mod.Sweep(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got, _ := e.lastChange(t, alice); got.Text != "" || got.TextExpiresAt != nil {
			t.Errorf("after the sweep the last change is %+v, want no text", got)
		}

		me = status.Me{}
		e.call(t, alice, "PUT", "/status/v1/me/text", map[string]any{"text": "Обед"}).want(t, 200).decode(t, &me)
		if me.Text != "Обед" || me.TextExpiresAt != nil {
			t.Errorf("me %+v, want a text without expiry", me)
		}
		me = status.Me{}
		e.call(t, alice, "DELETE", "/status/v1/me/text", nil).want(t, 200).decode(t, &me)
		if me.Text != "" {
			t.Errorf("me %+v after DELETE", me)
		}
		past := e.clock.Now().Add(-time.Minute)
		for name, body := range map[string]any{
			"too long":      map[string]any{"text": strings.Repeat("я", status.MaxTextRunes+1)},
			"control":       map[string]any{"text": "a\x07b"},
			"past":          map[string]any{"text": "x", "expires_at": past},
			"far":           map[string]any{"text": "x", "expires_in": 400 * 24 * 3600},
			"both":          map[string]any{"text": "x", "expires_in": 60, "expires_at": past},
			"zero duration": map[string]any{"text": "x", "expires_in": 0},
		} {
			if r := e.call(t, alice, "PUT", "/status/v1/me/text", body); r.status != 400 {
				t.Errorf("%s: HTTP %d, want 400: %s", name, r.status, r.body)
			}
		}
		e.call(t, alice, "PUT", "/status/v1/me/text", map[string]any{"text": strings.Repeat("я", status.MaxTextRunes)}).want(t, 200)
	})
}

// TestCalls: "in a call" from a scripted sequence of call events, in
// order, out of order, duplicated, and with the end lost.
func TestCalls(t *testing.T) {
	forEachDialect(t, func(t *testing.T, e *env) {
		e.connect(t, alice, "alice")
		at := func(d time.Duration) string { return e.clock.Now().Add(d).Format(time.RFC3339Nano) }
		state := func() string { return e.me(t, alice).State }

		// An inbound call rings: not yet in a call.
		e.publishCall(t, "call.started", map[string]any{"call_id": "c1", "user_id": alice, "direction": "inbound", "at": at(0)})
		e.publishCall(t, "call.ringing", map[string]any{"call_id": "c1", "user_id": alice, "at": at(0)})
		if s := state(); s != status.StateOnline {
			t.Fatalf("ringing: %s, want online", s)
		}
		e.publishCall(t, "call.answered", map[string]any{"call_id": "c1", "user_id": alice, "at": at(time.Second)})
		if p, _ := e.lastChange(t, alice); p.State != status.StateInCall || !p.InCall {
			t.Fatalf("answered: %+v, want in_call", p)
		}
		e.publishCall(t, "call.answered", map[string]any{"call_id": "c1", "user_id": alice, "at": at(time.Second)}) // duplicate
		e.publishCall(t, "call.ended", map[string]any{"call_id": "c1", "user_id": alice, "at": at(time.Minute), "cause": "normal"})
		if p, _ := e.lastChange(t, alice); p.State != status.StateOnline || p.InCall {
			t.Fatalf("ended: %+v, want online", p)
		}
		// A late answered after the end does not start it again.
		e.publishCall(t, "call.answered", map[string]any{"call_id": "c1", "user_id": alice, "at": at(time.Second)})
		if s := state(); s != status.StateOnline {
			t.Fatalf("late answered: %s, want online", s)
		}
		// The end before the start: a tombstone.
		e.publishCall(t, "call.ended", map[string]any{"call_id": "c2", "user_id": alice, "at": at(0)})
		e.publishCall(t, "call.started", map[string]any{"call_id": "c2", "user_id": alice, "direction": "outbound", "at": at(0)})
		if s := state(); s != status.StateOnline {
			t.Fatalf("ended before started: %s, want online", s)
		}

		// A desk-phone call of a user with no device: in a call, then
		// offline. DND shows over the call, and InCall still says it.
		e.publishCall(t, "call.started", map[string]any{"call_id": "c3", "user_id": carol, "direction": "outbound", "at": at(0)})
		if p, _ := e.lastChange(t, carol); p.State != status.StateInCall {
			t.Fatalf("carol: %+v, want in_call without a device", p)
		}
		var me status.Me
		e.call(t, carol, "PUT", "/status/v1/me/choice", map[string]string{"choice": "dnd"}).want(t, 200).decode(t, &me)
		if me.State != status.StateDND || !me.InCall {
			t.Errorf("carol in dnd: %+v, want dnd with in_call", me)
		}
		e.call(t, carol, "PUT", "/status/v1/me/choice", map[string]string{"choice": "offline"}).want(t, 200).decode(t, &me)
		if me.State != status.StateOffline || me.InCall {
			t.Errorf("carol invisible: %+v, want offline without in_call", me)
		}
		e.call(t, carol, "PUT", "/status/v1/me/choice", map[string]string{"choice": "online"}).want(t, 200)

		// The end never comes: after max_call_duration the sweep ends it.
		e.clock.Advance(e.cfg.MaxCallDuration + time.Second)
		if err := e.mod.Sweep(t.Context()); err != nil {
			t.Fatal(err)
		}
		if p, _ := e.lastChange(t, carol); p.State != status.StateOffline {
			t.Errorf("overdue call: %+v, want offline", p)
		}

		// Unusable events are counted and skipped.
		before := e.counter(t, "elph_status_call_events_total")
		for _, raw := range []map[string]any{
			{"call_id": "", "user_id": alice},
			{"call_id": "c9", "user_id": -1},
			{"call_id": strings.Repeat("x", 200), "user_id": alice},
		} {
			e.publishCall(t, "call.answered", raw)
		}
		if n := e.counter(t, "elph_status_call_events_total") - before; n != 3 {
			t.Errorf("%v call events counted, want 3", n)
		}
	})
}

// TestStaleDevices: a node that died without closing its connections;
// its devices stop counting after device_timeout, while this node's own
// are vouched for by the sweep.
func TestStaleDevices(t *testing.T) {
	forEachDialect(t, func(t *testing.T, e *env) {
		e.connect(t, alice, "alice")
		_, err := e.db.ExecContext(t.Context(),
			"INSERT INTO status_devices (conn_key, node, user_id, session_id, idle, seen_at) VALUES (?, ?, ?, ?, ?, ?)",
			"dead:1", "dead", bob, "s", false, store.Time(e.clock.Now()))
		if err != nil {
			t.Fatal(err)
		}
		if me := e.me(t, bob); me.State != status.StateOnline || me.Devices != 1 {
			t.Fatalf("bob %+v, want online on the dead node's device", me)
		}
		e.clock.Advance(e.cfg.DeviceTimeout / 2)
		if err := e.mod.Sweep(t.Context()); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(e.cfg.DeviceTimeout/2 + time.Second)
		if err := e.mod.Sweep(t.Context()); err != nil {
			t.Fatal(err)
		}
		if p, _ := e.lastChange(t, bob); p.State != status.StateOffline {
			t.Errorf("bob %+v, want offline once the dead node's device expired", p)
		}
		if me := e.me(t, alice); me.State != status.StateOnline || me.Devices != 1 {
			t.Errorf("alice %+v, want still online: this node vouched for her", me)
		}
	})
}

// TestQuery: the bulk query for a contact list, and its limits.
func TestQuery(t *testing.T) {
	forEachDialect(t, func(t *testing.T, e *env) {
		e.connect(t, alice, "alice")
		e.call(t, carol, "PUT", "/status/v1/me/choice", map[string]string{"choice": "dnd"}).want(t, 200)
		var list struct{ Presences []status.Presence }
		e.call(t, bob, "POST", "/status/v1/query", map[string]any{"user_ids": []int64{carol, alice, 99}}).want(t, 200).decode(t, &list)
		want := []string{status.StateDND, status.StateOnline, status.StateOffline}
		if len(list.Presences) != 3 {
			t.Fatalf("%d presences", len(list.Presences))
		}
		for i, p := range list.Presences {
			if p.State != want[i] {
				t.Errorf("presence %d: %+v, want %s", i, p, want[i])
			}
		}
		many := make([]int64, status.MaxQueryUsers+1)
		for i := range many {
			many[i] = int64(i + 1)
		}
		e.call(t, bob, "POST", "/status/v1/query", map[string]any{"user_ids": many}).want(t, 400)
		e.call(t, bob, "POST", "/status/v1/query", map[string]any{"user_ids": []int64{0}}).want(t, 400)
		e.call(t, bob, "GET", "/status/v1/users/abc", nil).want(t, 400)
		e.call(t, bob, "POST", "/status/v1/query", map[string]any{"user_ids": many[:status.MaxQueryUsers]}).want(t, 200)

		reach, err := e.mod.Reachability(t.Context(), []int64{alice, carol, bob})
		if err != nil {
			t.Fatal(err)
		}
		if r := reach[alice]; !r.Live || r.DND {
			t.Errorf("alice %+v, want live", r)
		}
		if r := reach[carol]; r.Live || !r.DND {
			t.Errorf("carol %+v, want dnd", r)
		}
		if r := reach[bob]; r.Live || r.DND {
			t.Errorf("bob %+v, want neither", r)
		}
	})
}

// TestBadFrames: a refused frame gets a status_error signal and the
// connection goes on.
func TestBadFrames(t *testing.T) {
	forEachDialect(t, func(t *testing.T, e *env) {
		c := e.connect(t, alice, "alice")
		for _, tt := range []struct {
			typ  string
			data any
		}{
			{"status.watch", map[string]any{"users": make([]int64, e.cfg.MaxWatch+1)}},
			{"status.watch", map[string]any{"users": []int64{-5}}},
			{"status.watch", "nope"},
			{"status.watch", nil},
			{"status.activity", map[string]any{"idle_seconds": -1}},
			{"status.activity", map[string]any{"idle": true}},
			{"status.nonsense", map[string]any{}},
		} {
			c.send(tt.typ, tt.data)
			var e struct{ Code, Message string }
			if err := json.Unmarshal(c.signal(status.SignalError), &e); err != nil || e.Code != "invalid" || e.Message == "" {
				t.Errorf("%s %v: error %+v, %v", tt.typ, tt.data, e, err)
			}
		}
		c.send("status.watch", map[string]any{"users": []int64{bob, bob, alice}})
		var list struct{ Presences []status.Presence }
		if err := json.Unmarshal(c.signal(status.SignalPresenceList), &list); err != nil || len(list.Presences) != 2 {
			t.Errorf("watch after errors: %+v, %v; want two presences (duplicates removed)", list, err)
		}
		if n := e.counter(t, "elph_status_frames_total"); n != 8 {
			t.Errorf("elph_status_frames_total = %v, want 8", n)
		}
	})
}

// TestShutdownKeepsDevices: a node shutting down closes its connections
// with 1001; their users stay online while clients reconnect (here or to
// another node), and go offline only if none does within device_timeout.
func TestShutdownKeepsDevices(t *testing.T) {
	forEachDialect(t, func(t *testing.T, e *env) {
		c := e.connect(t, alice, "alice")
		go func() { // read, so the close handshake completes at once
			for {
				if _, _, err := c.ws.Read(t.Context()); err != nil {
					return
				}
			}
		}()
		before := e.changeCount(t, alice)
		if err := e.stream.Stop(t.Context()); err != nil {
			t.Fatal(err)
		}
		if me := e.me(t, alice); me.State != status.StateOnline || me.Devices != 1 {
			t.Fatalf("after the shutdown: %+v, want still online", me)
		}
		if n := e.changeCount(t, alice); n != before {
			t.Errorf("the shutdown announced %d changes", n-before)
		}
		// Nobody vouches for the device any more: the node restarts under
		// a new name (rows of the old one are nobody's) and the client does
		// not come back. It expires.
		if err := e.mod.Stop(t.Context()); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(e.cfg.DeviceTimeout + time.Second)
		if _, err := e.db.ExecContext(t.Context(), "UPDATE status_devices SET node = 'gone'"); err != nil {
			t.Fatal(err)
		}
		if err := e.mod.Sweep(t.Context()); err != nil {
			t.Fatal(err)
		}
		if me := e.me(t, alice); me.State != status.StateOffline || me.Devices != 0 {
			t.Errorf("after the device timeout: %+v, want offline", me)
		}
	})
}

// TestManyNewUsersAtOnce: users never seen before connecting at the same
// moment all count (on MariaDB their first rows once deadlocked on gap
// locks).
func TestManyNewUsersAtOnce(t *testing.T) {
	forEachDialect(t, func(t *testing.T, e *env) {
		const n = 40
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				ws, _, err := websocket.Dial(ctx, e.wsURL, &websocket.DialOptions{
					HTTPHeader: http.Header{"Authorization": {"Bearer " + e.signer.Token(t, int64(100+i), "s", nil)}},
				})
				if err != nil {
					t.Errorf("dial %d: %v", i, err)
					return
				}
				t.Cleanup(func() { ws.CloseNow() })
				var f frame
				if err := wsjson.Read(ctx, ws, &f); err != nil || f.Type != "hello" {
					t.Errorf("user %d: %+v %v", 100+i, f, err)
				}
			})
		}
		wg.Wait()
		ids := make([]int64, n)
		for i := range ids {
			ids[i] = int64(100 + i)
		}
		var list struct{ Presences []status.Presence }
		e.call(t, alice, "POST", "/status/v1/query", map[string]any{"user_ids": ids}).want(t, 200).decode(t, &list)
		for _, p := range list.Presences {
			if p.State != status.StateOnline {
				t.Errorf("user %d is %s, want online", p.UserID, p.State)
			}
		}
	})
}
