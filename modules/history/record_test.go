package history

import (
	"encoding/json"
	"testing"
	"time"
)

var r0 = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)

func ev(topic string, at time.Duration, f func(*CallEvent)) CallEvent {
	e := CallEvent{Topic: topic, CallID: "c", UserID: 1, At: r0.Add(at)}
	if f != nil {
		f(&e)
	}
	return e
}

func startedEv(dir string) CallEvent {
	return ev(TopicCallStarted, 0, func(e *CallEvent) { e.Direction, e.PeerNumber, e.PeerName = dir, "+7495", "Имя" })
}

func endedEv(cause string, at time.Duration) CallEvent {
	return ev(TopicCallEnded, at, func(e *CallEvent) { e.Cause = cause })
}

// permutations calls fn with every order of evs.
func permutations(evs []CallEvent, fn func([]CallEvent)) {
	var rec func(k int)
	rec = func(k int) {
		if k == len(evs) {
			fn(evs)
			return
		}
		for i := k; i < len(evs); i++ {
			evs[k], evs[i] = evs[i], evs[k]
			rec(k + 1)
			evs[k], evs[i] = evs[i], evs[k]
		}
	}
	rec(0)
}

// TestApplyConverges: every order of a call's events, each delivered
// twice, gives the record of the natural order.
func TestApplyConverges(t *testing.T) {
	tests := []struct {
		name     string
		evs      []CallEvent
		result   string
		duration int64
	}{
		{"answered", []CallEvent{startedEv("inbound"), ev(TopicCallRinging, time.Second, nil), ev(TopicCallAnswered, 5*time.Second, nil), endedEv("normal", 65*time.Second)}, ResultAnswered, 60},
		{"missed", []CallEvent{startedEv("inbound"), ev(TopicCallRinging, time.Second, nil), endedEv("no_answer", 30*time.Second)}, ResultMissed, 0},
		{"rejected", []CallEvent{startedEv("inbound"), endedEv("rejected", 3*time.Second)}, ResultRejected, 0},
		{"busy outbound", []CallEvent{startedEv("outbound"), ev(TopicCallRinging, time.Second, nil), endedEv("busy", 2*time.Second)}, ResultBusy, 0},
		{"failed outbound", []CallEvent{startedEv("outbound"), endedEv("failed", time.Second)}, ResultFailed, 0},
		{"in progress", []CallEvent{startedEv("outbound"), ev(TopicCallRinging, time.Second, nil)}, ResultInProgress, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ref Call
			for _, e := range tt.evs {
				ref.apply(e)
			}
			if ref.Result != tt.result || ref.DurationSeconds != tt.duration || !ref.StartedAt.Equal(r0) {
				t.Fatalf("in order: result %q duration %d started %v, want %q %d %v", ref.Result, ref.DurationSeconds, ref.StartedAt, tt.result, tt.duration, r0)
			}
			doubled := append(append([]CallEvent{}, tt.evs...), tt.evs...)
			n := 0
			permutations(doubled, func(order []CallEvent) {
				n++
				var c Call
				for _, e := range order {
					c.apply(e)
				}
				if !c.equal(ref) {
					t.Fatalf("order %v gives %+v, want %+v", topicsOf(order), c, ref)
				}
			})
			if n == 0 {
				t.Fatal("no permutations ran")
			}
		})
	}
}

func topicsOf(evs []CallEvent) []string {
	var s []string
	for _, e := range evs {
		s = append(s, e.Topic)
	}
	return s
}

// TestApplyUnknownDirection: before call.started an unanswered call is
// never missed, so no missed-call push goes out for a call that turns out
// outbound; once started says inbound, it is.
func TestApplyUnknownDirection(t *testing.T) {
	var c Call
	if !c.apply(endedEv("no_answer", 30*time.Second)) || c.Result != ResultCancelled || c.Direction != "" {
		t.Fatalf("ended alone: %+v", c)
	}
	if !c.StartedAt.Equal(r0.Add(30 * time.Second)) {
		t.Errorf("started_at before call.started = %v, want the earliest time seen", c.StartedAt)
	}
	c.apply(startedEv("inbound"))
	if c.Result != ResultMissed || !c.StartedAt.Equal(r0) || c.PeerName != "Имя" {
		t.Errorf("after started: %+v", c)
	}
	if c.apply(startedEv("inbound")) {
		t.Error("a duplicate call.started changed the record")
	}
}

func TestDecodeCallEvent(t *testing.T) {
	tests := []struct {
		topic, payload string
		ok             bool
	}{
		{TopicCallStarted, `{"call_id":"a","user_id":1,"direction":"inbound","local_number":"100","peer_number":"+7","at":"2025-03-01T10:00:00+03:00"}`, true},
		{TopicCallStarted, `{"call_id":"a","user_id":1,"direction":"outbound","at":"2025-03-01T10:00:00Z","future_field":1}`, true},
		{TopicCallStarted, `{"call_id":"a","user_id":1,"at":"2025-03-01T10:00:00Z"}`, false},
		{TopicCallStarted, `{"call_id":"a","user_id":1,"direction":"inbound","peer_name":"a\u0000b","at":"2025-03-01T10:00:00Z"}`, false},
		{TopicCallRinging, `{"call_id":"a","user_id":1,"at":"2025-03-01T10:00:00Z","cause":"busy","peer_number":"9"}`, true},
		{TopicCallRinging, `{"call_id":"a","user_id":1,"at":"1970-01-01T00:00:00Z"}`, false},
		{TopicCallEnded, `{"call_id":"a","user_id":1,"at":"2025-03-01T10:00:00Z","cause":"no_answer"}`, true},
		{TopicCallEnded, `{"call_id":"a","user_id":1,"at":"2025-03-01T10:00:00Z","cause":"NORMAL"}`, false},
		{TopicCallAnswered, `null`, false},
		{"call.parked", `{}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.topic+" "+tt.payload, func(t *testing.T) {
			ev, err := DecodeCallEvent(tt.topic, []byte(tt.payload))
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok %v", err, tt.ok)
			}
			if err != nil {
				return
			}
			if ev.At.Location() != time.UTC {
				t.Errorf("at %v not in UTC", ev.At)
			}
			if ev.Topic != TopicCallStarted && (ev.PeerNumber != "" || ev.Direction != "") {
				t.Errorf("%s kept started's fields: %+v", ev.Topic, ev)
			}
			if ev.Topic != TopicCallEnded && ev.Cause != "" {
				t.Errorf("%s kept a cause: %+v", ev.Topic, ev)
			}
		})
	}
}

func FuzzCallEvent(f *testing.F) {
	for _, s := range []struct{ topic, payload string }{
		{TopicCallStarted, `{"call_id":"a","user_id":1,"direction":"inbound","local_number":"100","peer_number":"+7","peer_name":"Иван","at":"2025-03-01T10:00:00Z"}`},
		{TopicCallRinging, `{"call_id":"a","user_id":1,"at":"2025-03-01T10:00:00Z"}`},
		{TopicCallAnswered, `{"call_id":"a","user_id":9223372036854775807,"at":"2025-03-01T10:00:00.123456789+03:00"}`},
		{TopicCallEnded, `{"call_id":"a","user_id":1,"at":"2025-03-01T10:00:00Z","cause":"busy"}`},
		{TopicCallEnded, `{"call_id":"\u00e9","user_id":-1}`},
		{"call.x", `{}`},
	} {
		f.Add(s.topic, []byte(s.payload))
	}
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		ev, err := DecodeCallEvent(topic, payload)
		if err != nil {
			return
		}
		// What is accepted fits its columns and is printable.
		if ev.UserID <= 0 || ev.CallID == "" || len(ev.CallID) > MaxCallIDLen || !printable(ev.CallID) ||
			len(ev.PeerNumber) > MaxNumberLen || len(ev.LocalNumber) > MaxNumberLen || !printable(ev.PeerName) {
			t.Fatalf("accepted %+v", ev)
		}
		// Applying it makes a record whose result is one of the known.
		var c Call
		if !c.apply(ev) {
			t.Fatal("the first event did not change an empty record")
		}
		switch c.Result {
		case ResultAnswered, ResultMissed, ResultRejected, ResultBusy, ResultFailed, ResultCancelled, ResultInProgress:
		default:
			t.Fatalf("result %q", c.Result)
		}
		if c.apply(ev) {
			t.Fatal("applying an event twice changed the record")
		}
		// It round-trips.
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeCallEvent(topic, b)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", b, err)
		}
		if again != ev {
			t.Fatalf("round trip: %+v, want %+v", again, ev)
		}
	})
}
