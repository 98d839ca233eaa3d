package status

import (
	"encoding/json"
	"testing"
)

// The parsers of what clients and producers send: nothing may panic, and
// what is accepted must be within bounds.

func FuzzDecodeWatch(f *testing.F) {
	for _, s := range []string{`{"users":[1,2]}`, `{"users":[]}`, `{"users":[-1]}`, `{"users":[1e400]}`,
		`{"users":null}`, `{"users":[9223372036854775807]}`, `{"users":[1],"users":[2]}`, "{\"users\":[\"\u0000\"]}", `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		users, err := DecodeWatch(json.RawMessage(b), 100)
		if err != nil {
			return
		}
		if len(users) > 100 {
			t.Fatalf("%d users accepted", len(users))
		}
		for i, u := range users {
			if u <= 0 || (i > 0 && users[i-1] >= u) {
				t.Fatalf("users %v not positive, sorted and unique", users)
			}
		}
	})
}

func FuzzDecodeActivity(f *testing.F) {
	for _, s := range []string{`{"idle_seconds":5}`, `{"idle_seconds":-5}`, `{"idle_seconds":"5"}`, `{"idle_seconds":99999999999999999999}`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeActivity(json.RawMessage(b))
		if err == nil && (d < 0 || d.Seconds() > maxIdleSeconds) {
			t.Fatalf("idle %v accepted", d)
		}
	})
}

func FuzzDecodeCallEvent(f *testing.F) {
	for _, s := range []string{`{"call_id":"a","user_id":1,"direction":"outbound","at":"2026-01-01T00:00:00Z"}`,
		`{"call_id":"a","user_id":-1}`, `{"call_id":1}`, `{"at":"0000-01-01T00:00:00Z","call_id":"x","user_id":1}`} {
		f.Add("call.started", []byte(s))
		f.Add("call.ended", []byte(s))
	}
	f.Fuzz(func(t *testing.T, topic string, b []byte) {
		ev, ok, err := DecodeCallEvent(topic, b)
		if err == nil && ok && (ev.CallID == "" || len(ev.CallID) > maxCallIDLen || ev.UserID <= 0) {
			t.Fatalf("accepted %+v", ev)
		}
	})
}
