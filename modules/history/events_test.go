package history_test

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/elph-server/elph/modules/history"
)

// want is the expected record of one user's leg of a scripted call.
type want struct {
	user       int64
	direction  string
	result     string
	duration   int64
	startedAt  time.Duration // after t0
	ringing    bool
	answeredAt *time.Duration
	endedAt    *time.Duration
	peer       string
	peerName   string
}

var scripts = []struct {
	name   string
	call   string
	events []event
	want   []want
	// transientMissed: the record was a missed call on the way (and
	// history.call.missed went out) before a late event changed it.
	transientMissed bool
}{
	{
		name: "answered inbound",
		call: "c-answered",
		events: []event{
			started("c-answered", alice, "inbound", "+74951234567", "Иван Петров", 0),
			ringing("c-answered", alice, time.Second),
			answered("c-answered", alice, 5*time.Second),
			ended("c-answered", alice, "normal", 65*time.Second),
		},
		want: []want{{user: alice, direction: "inbound", result: "answered", duration: 60, ringing: true,
			answeredAt: ptr(5 * time.Second), endedAt: ptr(65 * time.Second), peer: "+74951234567", peerName: "Иван Петров"}},
	},
	{
		name: "missed: no answer",
		call: "c-missed",
		events: []event{
			started("c-missed", alice, "inbound", "+74950000001", "", 0),
			ringing("c-missed", alice, time.Second),
			ended("c-missed", alice, "no_answer", 30*time.Second),
		},
		want: []want{{user: alice, direction: "inbound", result: "missed", ringing: true, endedAt: ptr(30 * time.Second), peer: "+74950000001"}},
	},
	{
		name: "missed: the caller gave up",
		call: "c-missed-cancel",
		events: []event{
			started("c-missed-cancel", alice, "inbound", "+74950000002", "", 0),
			ended("c-missed-cancel", alice, "cancelled", 10*time.Second),
		},
		want: []want{{user: alice, direction: "inbound", result: "missed", endedAt: ptr(10 * time.Second), peer: "+74950000002"}},
	},
	{
		name: "missed: normal end without answer",
		call: "c-missed-normal",
		events: []event{
			started("c-missed-normal", alice, "inbound", "+74950000003", "", 0),
			ended("c-missed-normal", alice, "normal", 10*time.Second),
		},
		want: []want{{user: alice, direction: "inbound", result: "missed", endedAt: ptr(10 * time.Second), peer: "+74950000003"}},
	},
	{
		name: "rejected inbound",
		call: "c-rejected",
		events: []event{
			started("c-rejected", alice, "inbound", "+74950000004", "", 0),
			ringing("c-rejected", alice, time.Second),
			ended("c-rejected", alice, "rejected", 3*time.Second),
		},
		want: []want{{user: alice, direction: "inbound", result: "rejected", ringing: true, endedAt: ptr(3 * time.Second), peer: "+74950000004"}},
	},
	{
		name: "busy inbound",
		call: "c-busy-in",
		events: []event{
			started("c-busy-in", alice, "inbound", "+74950000005", "", 0),
			ended("c-busy-in", alice, "busy", time.Second),
		},
		want: []want{{user: alice, direction: "inbound", result: "busy", endedAt: ptr(time.Second), peer: "+74950000005"}},
	},
	{
		name: "busy outbound",
		call: "c-busy-out",
		events: []event{
			started("c-busy-out", alice, "outbound", "+74950000006", "", 0),
			ended("c-busy-out", alice, "busy", 2*time.Second),
		},
		want: []want{{user: alice, direction: "outbound", result: "busy", endedAt: ptr(2 * time.Second), peer: "+74950000006"}},
	},
	{
		name: "outbound declined by the callee",
		call: "c-declined-out",
		events: []event{
			started("c-declined-out", alice, "outbound", "+74950000007", "", 0),
			ended("c-declined-out", alice, "rejected", 2*time.Second),
		},
		want: []want{{user: alice, direction: "outbound", result: "busy", endedAt: ptr(2 * time.Second), peer: "+74950000007"}},
	},
	{
		name: "cancelled outbound",
		call: "c-cancelled",
		events: []event{
			started("c-cancelled", alice, "outbound", "+74950000008", "", 0),
			ringing("c-cancelled", alice, time.Second),
			ended("c-cancelled", alice, "cancelled", 20*time.Second),
		},
		want: []want{{user: alice, direction: "outbound", result: "cancelled", ringing: true, endedAt: ptr(20 * time.Second), peer: "+74950000008"}},
	},
	{
		name: "outbound nobody answered",
		call: "c-noanswer-out",
		events: []event{
			started("c-noanswer-out", alice, "outbound", "+74950000009", "", 0),
			ended("c-noanswer-out", alice, "no_answer", 60*time.Second),
		},
		want: []want{{user: alice, direction: "outbound", result: "cancelled", endedAt: ptr(60 * time.Second), peer: "+74950000009"}},
	},
	{
		name: "failed outbound",
		call: "c-failed",
		events: []event{
			started("c-failed", alice, "outbound", "+74950000010", "", 0),
			ended("c-failed", alice, "failed", time.Second),
		},
		want: []want{{user: alice, direction: "outbound", result: "failed", endedAt: ptr(time.Second), peer: "+74950000010"}},
	},
	{
		name: "in progress",
		call: "c-ringing",
		events: []event{
			started("c-ringing", alice, "outbound", "+74950000011", "", 0),
			ringing("c-ringing", alice, time.Second),
		},
		want: []want{{user: alice, direction: "outbound", result: "in_progress", ringing: true, peer: "+74950000011"}},
	},
	{
		name: "answered, not ended yet",
		call: "c-talking",
		events: []event{
			started("c-talking", alice, "inbound", "+74950000012", "", 0),
			answered("c-talking", alice, 4*time.Second),
		},
		want: []want{{user: alice, direction: "inbound", result: "answered", answeredAt: ptr(4 * time.Second), peer: "+74950000012"}},
	},
	{
		name: "out of order: ended before answered",
		call: "c-ooo-ended",
		events: []event{
			started("c-ooo-ended", alice, "inbound", "+74950000013", "", 0),
			ended("c-ooo-ended", alice, "normal", 65*time.Second),
			answered("c-ooo-ended", alice, 5*time.Second),
		},
		want: []want{{user: alice, direction: "inbound", result: "answered", duration: 60,
			answeredAt: ptr(5 * time.Second), endedAt: ptr(65 * time.Second), peer: "+74950000013"}},
		transientMissed: true,
	},
	{
		name: "out of order: answered before started",
		call: "c-ooo-started",
		events: []event{
			answered("c-ooo-started", alice, 5*time.Second),
			started("c-ooo-started", alice, "outbound", "+74950000014", "", 0),
			ended("c-ooo-started", alice, "normal", 30*time.Second),
		},
		want: []want{{user: alice, direction: "outbound", result: "answered", duration: 25,
			answeredAt: ptr(5 * time.Second), endedAt: ptr(30 * time.Second), peer: "+74950000014"}},
	},
	{
		name: "out of order: everything before started",
		call: "c-ooo-all",
		events: []event{
			ended("c-ooo-all", alice, "no_answer", 30*time.Second),
			ringing("c-ooo-all", alice, 2*time.Second),
			started("c-ooo-all", alice, "inbound", "+74950000015", "Склад", 0),
		},
		want: []want{{user: alice, direction: "inbound", result: "missed", ringing: true,
			endedAt: ptr(30 * time.Second), peer: "+74950000015", peerName: "Склад"}},
	},
	{
		name: "duplicates",
		call: "c-dup",
		events: []event{
			started("c-dup", alice, "inbound", "+74950000016", "", 0),
			started("c-dup", alice, "inbound", "+74950000016", "", 0),
			ringing("c-dup", alice, time.Second),
			answered("c-dup", alice, 5*time.Second),
			ringing("c-dup", alice, time.Second),
			answered("c-dup", alice, 5*time.Second),
			ended("c-dup", alice, "normal", 15*time.Second),
			ended("c-dup", alice, "normal", 15*time.Second),
			started("c-dup", alice, "inbound", "+74950000016", "", 0),
		},
		want: []want{{user: alice, direction: "inbound", result: "answered", duration: 10, ringing: true,
			answeredAt: ptr(5 * time.Second), endedAt: ptr(15 * time.Second), peer: "+74950000016"}},
	},
	{
		name: "two legs of one call",
		call: "c-internal",
		events: []event{
			started("c-internal", alice, "outbound", "1002", "Bob", 0),
			started("c-internal", bob, "inbound", "1001", "Alice", 0),
			ringing("c-internal", bob, time.Second),
			answered("c-internal", alice, 3*time.Second),
			answered("c-internal", bob, 3*time.Second),
			ended("c-internal", bob, "normal", 43*time.Second),
			ended("c-internal", alice, "normal", 43*time.Second),
		},
		want: []want{
			{user: alice, direction: "outbound", result: "answered", duration: 40,
				answeredAt: ptr(3 * time.Second), endedAt: ptr(43 * time.Second), peer: "1002", peerName: "Bob"},
			{user: bob, direction: "inbound", result: "answered", duration: 40, ringing: true,
				answeredAt: ptr(3 * time.Second), endedAt: ptr(43 * time.Second), peer: "1001", peerName: "Alice"},
		},
	},
	{
		name: "two legs: missed by the callee only",
		call: "c-internal-missed",
		events: []event{
			started("c-internal-missed", alice, "outbound", "1003", "Carol", 0),
			started("c-internal-missed", carol, "inbound", "1001", "Alice", 0),
			ended("c-internal-missed", alice, "no_answer", 30*time.Second),
			ended("c-internal-missed", carol, "no_answer", 30*time.Second),
		},
		want: []want{
			{user: alice, direction: "outbound", result: "cancelled", endedAt: ptr(30 * time.Second), peer: "1003", peerName: "Carol"},
			{user: carol, direction: "inbound", result: "missed", endedAt: ptr(30 * time.Second), peer: "1001", peerName: "Alice"},
		},
	},
}

// TestScriptedCalls publishes every script on the bus, as the SIP edge
// would, and checks the records, the stream and the bus events that
// result.
func TestScriptedCalls(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		for _, s := range scripts {
			e.publish(t, s.events...)
		}
		e.stop(t) // handles everything queued

		wantMissed := map[string]bool{}
		for _, s := range scripts {
			if s.transientMissed {
				wantMissed[s.call] = true
			}
			t.Run(s.name, func(t *testing.T) {
				for _, w := range s.want {
					c := e.record(t, w.user, s.call)
					checkRecord(t, c, w)
					if w.result == "missed" {
						wantMissed[s.call] = true
					}
				}
			})
		}

		// history.call.missed: once per record that became missed.
		var gotMissed []string
		for _, re := range e.busEvents(history.TopicCallMissed) {
			if re.Call.Result != "missed" || re.UnseenMissed < 1 {
				t.Errorf("history.call.missed of a %s call %q", re.Call.Result, re.Call.CallID)
			}
			gotMissed = append(gotMissed, re.Call.CallID)
		}
		slices.Sort(gotMissed)
		var wantList []string
		for c := range wantMissed {
			wantList = append(wantList, c)
		}
		slices.Sort(wantList)
		if !slices.Equal(gotMissed, wantList) {
			t.Errorf("history.call.missed for %v, want %v", gotMissed, wantList)
		}

		// The last history.call.updated of each record is the record.
		last := map[string]history.Call{}
		for _, re := range e.busEvents(history.TopicCallUpdated) {
			last[re.Call.CallID+"/"+itoa(re.UserID)] = re.Call
		}
		for _, s := range scripts {
			for _, w := range s.want {
				got, ok := last[s.call+"/"+itoa(w.user)]
				if !ok {
					t.Errorf("no history.call.updated for %s of user %d", s.call, w.user)
					continue
				}
				checkRecord(t, got, w)
			}
		}

		// Duplicates are counted as such and change nothing.
		if got := e.counter(t, "elph_history_events_total", "topic", "call.started", "result", "duplicate"); got != 2 {
			t.Errorf("duplicate call.started counted %v times, want 2", got)
		}
		if got := e.counter(t, "elph_history_events_total", "topic", "call.ended", "result", "invalid"); got != 0 {
			t.Errorf("invalid call.ended counted %v times, want 0", got)
		}
		n := 0
		for _, s := range scripts {
			n += len(s.want)
		}
		if got := e.counter(t, "elph_history_records"); got != float64(n) {
			t.Errorf("elph_history_records = %v, want %d", got, n)
		}
	})
}

func checkRecord(t *testing.T, c history.Call, w want) {
	t.Helper()
	if c.Direction != w.direction || c.Result != w.result || c.DurationSeconds != w.duration {
		t.Errorf("user %d %s: direction %q result %q duration %d, want %q %q %d",
			w.user, c.CallID, c.Direction, c.Result, c.DurationSeconds, w.direction, w.result, w.duration)
	}
	if !c.StartedAt.Equal(t0.Add(w.startedAt)) {
		t.Errorf("user %d %s: started_at %v, want %v", w.user, c.CallID, c.StartedAt, t0.Add(w.startedAt))
	}
	if (c.RingingAt != nil) != w.ringing {
		t.Errorf("user %d %s: ringing_at %v, want set: %v", w.user, c.CallID, c.RingingAt, w.ringing)
	}
	checkTime(t, "answered_at", c.AnsweredAt, w.answeredAt)
	checkTime(t, "ended_at", c.EndedAt, w.endedAt)
	if c.PeerNumber != w.peer || c.PeerName != w.peerName {
		t.Errorf("user %d %s: peer %q %q, want %q %q", w.user, c.CallID, c.PeerNumber, c.PeerName, w.peer, w.peerName)
	}
	if c.LocalNumber != "100"+itoa(w.user) {
		t.Errorf("user %d %s: local number %q", w.user, c.CallID, c.LocalNumber)
	}
	if c.Seen {
		t.Errorf("user %d %s: seen before anyone marked it", w.user, c.CallID)
	}
}

func checkTime(t *testing.T, name string, got *time.Time, want *time.Duration) {
	t.Helper()
	switch {
	case want == nil && got != nil:
		t.Errorf("%s = %v, want none", name, got)
	case want != nil && (got == nil || !got.Equal(t0.Add(*want))):
		t.Errorf("%s = %v, want %v", name, got, t0.Add(*want))
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestInvalidEvents: unusable payloads are counted and skipped, and the
// consumer goes on with the next event.
func TestInvalidEvents(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		bad := []struct {
			topic   string
			payload string
		}{
			{"call.started", `not json`},
			{"call.started", `{"call_id":"x","user_id":1,"at":"2025-03-01T10:00:00Z","direction":"sideways"}`},
			{"call.started", `{"call_id":"x","user_id":0,"at":"2025-03-01T10:00:00Z","direction":"inbound"}`},
			{"call.ringing", `{"call_id":"","user_id":1,"at":"2025-03-01T10:00:00Z"}`},
			{"call.ringing", `{"call_id":"x","user_id":1}`},
			{"call.answered", `{"call_id":"x","user_id":"1","at":"2025-03-01T10:00:00Z"}`},
			{"call.ended", `{"call_id":"x","user_id":1,"at":"2025-03-01T10:00:00Z","cause":"exploded"}`},
			{"call.ended", `{"call_id":"x","user_id":1,"at":"2025-03-01T10:00:00Z"}`},
			{"call.ended", `[]`},
		}
		for _, b := range bad {
			e.publishRaw(t, b.topic, "x", []byte(b.payload))
		}
		e.publishRaw(t, "call.transferred", "x", []byte(`{"call_id":"x"}`))
		e.publish(t, started("c-after", alice, "inbound", "+7", "", 0))
		e.stop(t)

		want := map[string]float64{"call.started": 3, "call.ringing": 2, "call.answered": 1, "call.ended": 3}
		for topic, n := range want {
			if got := e.counter(t, "elph_history_events_total", "topic", topic, "result", "invalid"); got != n {
				t.Errorf("invalid %s counted %v times, want %v", topic, got, n)
			}
		}
		if got := e.counter(t, "elph_history_events_total", "topic", "other", "result", "ignored"); got != 1 {
			t.Errorf("unknown topic counted %v times, want 1", got)
		}
		if got := e.counter(t, "elph_history_events_total", "topic", "call.started", "result", "applied"); got != 1 {
			t.Errorf("applied call.started counted %v times, want 1", got)
		}
		if calls := e.all(t, alice); len(calls) != 1 || calls[0].CallID != "c-after" {
			t.Errorf("records after invalid events: %+v, want only c-after", calls)
		}
	})
}

// TestStreamEvents: a user's stream gets every change of their records,
// and nobody else's stream does; without a stream the bus still does.
func TestStreamEvents(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		e.publish(t,
			started("c-s", alice, "inbound", "+74951112233", "Пётр", 0),
			ended("c-s", alice, "no_answer", 20*time.Second),
			ended("c-s", alice, "no_answer", 20*time.Second), // no change: no event
		)
		e.stop(t)
		evs, err := e.stream.Since(context.Background(), alice, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 2 {
			t.Fatalf("alice's stream has %d events, want 2: %+v", len(evs), evs)
		}
		for _, ev := range evs {
			if ev.Type != history.TopicCallUpdated {
				t.Errorf("stream event type %q, want %q", ev.Type, history.TopicCallUpdated)
			}
		}
		var c history.Call
		if err := json.Unmarshal(evs[1].Data, &c); err != nil {
			t.Fatal(err)
		}
		if c.CallID != "c-s" || c.Result != "missed" || c.PeerName != "Пётр" || c.ID == 0 {
			t.Errorf("last stream event %+v, want the missed record of c-s", c)
		}
		if evs, err := e.stream.Since(context.Background(), bob, 0, 100); err != nil || len(evs) != 0 {
			t.Errorf("bob's stream: %v, %v; want empty", evs, err)
		}

		// Deleting and marking seen reach the user's other devices.
		if _, _, err := e.mod.MarkSeen(t.Context(), alice, 0); err != nil {
			t.Fatal(err)
		}
		if err := e.mod.Delete(t.Context(), alice, c.ID); err != nil {
			t.Fatal(err)
		}
		evs, err = e.stream.Since(context.Background(), alice, 2, 100)
		if err != nil {
			t.Fatal(err)
		}
		var types []string
		for _, ev := range evs {
			types = append(types, ev.Type)
		}
		if want := []string{history.TypeMissedSeen, history.TypeCallDeleted}; !slices.Equal(types, want) {
			t.Errorf("stream events after seen and delete: %v, want %v", types, want)
		}
	})
}

func TestWithoutStream(t *testing.T) {
	forEachDialect(t, envOptions{noStream: true}, func(t *testing.T, e *env) {
		e.publish(t,
			started("c-ns", alice, "inbound", "+74951112233", "", 0),
			ended("c-ns", alice, "cancelled", 20*time.Second),
		)
		e.stop(t)
		if got := e.record(t, alice, "c-ns"); got.Result != "missed" {
			t.Errorf("result %q, want missed", got.Result)
		}
		if n := len(e.busEvents(history.TopicCallUpdated)); n != 2 {
			t.Errorf("%d history.call.updated, want 2", n)
		}
		missed := e.busEvents(history.TopicCallMissed)
		if len(missed) != 1 || missed[0].UserID != alice || missed[0].UnseenMissed != 1 {
			t.Errorf("history.call.missed: %+v, want one for alice with 1 unseen", missed)
		}
	})
}

// names is a fake address book.
type names map[string]string

func (n names) NameForNumber(_ context.Context, userID int64, number string) (string, bool) {
	name, ok := n[number]
	return name, ok
}

func TestPeerNames(t *testing.T) {
	book := names{"+74951234567": "Иванов Иван (бухгалтерия)"}
	forEachDialect(t, envOptions{edit: func(o *history.Options) { o.Names = book }}, func(t *testing.T, e *env) {
		e.apply(t,
			started("c-known", alice, "inbound", "+74951234567", "IVANOV", 0),
			started("c-unknown", alice, "inbound", "+74950000000", "Caller ID name", 0),
		)
		if got := e.record(t, alice, "c-known").PeerName; got != "Иванов Иван (бухгалтерия)" {
			t.Errorf("known number: peer name %q, want the address book's", got)
		}
		if got := e.record(t, alice, "c-unknown").PeerName; got != "Caller ID name" {
			t.Errorf("unknown number: peer name %q, want the event's", got)
		}
	})
}
