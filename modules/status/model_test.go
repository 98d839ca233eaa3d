package status

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestResolve(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   inputs
		want string
	}{
		{"no device", inputs{}, StateOffline},
		{"one device in use", inputs{devices: 1, active: 1}, StateOnline},
		{"one of two in use", inputs{devices: 2, active: 1}, StateOnline},
		{"all idle", inputs{devices: 2}, StateAway},
		{"chose away", inputs{manual: manualAway, devices: 1, active: 1}, StateAway},
		{"chose away, no device", inputs{manual: manualAway}, StateOffline},
		{"dnd", inputs{manual: manualDND, devices: 1, active: 1}, StateDND},
		{"dnd without devices", inputs{manual: manualDND}, StateDND},
		{"dnd over a call", inputs{manual: manualDND, inCall: true}, StateDND},
		{"call with devices", inputs{devices: 1, active: 1, inCall: true}, StateInCall},
		{"call on a desk phone", inputs{inCall: true}, StateInCall},
		{"call while away", inputs{manual: manualAway, devices: 1, inCall: true}, StateInCall},
		{"invisible hides everything", inputs{manual: manualInvisible, devices: 3, active: 3, inCall: true}, StateOffline},
	} {
		if got := resolve(tt.in); got != tt.want {
			t.Errorf("%s: resolve(%+v) = %s, want %s", tt.name, tt.in, got, tt.want)
		}
	}
}

func TestChoiceRoundTrip(t *testing.T) {
	for _, c := range []string{ChoiceOnline, ChoiceAway, ChoiceDND, ChoiceOffline} {
		m, ok := manualOf(c)
		if !ok || choiceOf(m) != c {
			t.Errorf("%s → %q, %v → %s", c, m, ok, choiceOf(m))
		}
	}
	for _, bad := range []string{"", "busy", "ONLINE", "dnd "} {
		if _, ok := manualOf(bad); ok {
			t.Errorf("manualOf(%q) accepted", bad)
		}
	}
}

func TestCheckText(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	soon, past, far := now.Add(time.Hour), now.Add(-time.Second), now.Add(400*24*time.Hour)
	for _, tt := range []struct {
		text    string
		expires *time.Time
		want    string
		ok      bool
	}{
		{"  hi  ", nil, "hi", true},
		{"", &past, "", true}, // clearing ignores the expiry
		{"x", &soon, "x", true},
		{"x", &past, "", false},
		{"x", &far, "", false},
		{strings.Repeat("ё", MaxTextRunes), nil, strings.Repeat("ё", MaxTextRunes), true},
		{strings.Repeat("ё", MaxTextRunes+1), nil, "", false},
		{"a\nb", nil, "", false},
		{"\xff", nil, "", false},
	} {
		got, err := checkText(tt.text, tt.expires, now)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("checkText(%q) = %q, %v", tt.text, got, err)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("checkText(%q): %v is not ErrInvalid", tt.text, err)
		}
	}
}

func TestDecodeFrames(t *testing.T) {
	for _, tt := range []struct {
		data string
		want int
		ok   bool
	}{
		{`{"users":[3,1,3]}`, 2, true},
		{`{"users":[]}`, 0, true},
		{`{"users":[0]}`, 0, false},
		{`{"users":[1,2,3,4]}`, 0, false}, // over the max of 3
		{`{"users":"1"}`, 0, false},
		{`{"users":[1],"x":1}`, 0, false},
		{`{"users":[1]} {}`, 0, false},
		{`[1]`, 0, false},
		{``, 0, false},
	} {
		got, err := DecodeWatch(json.RawMessage(tt.data), 3)
		if (err == nil) != tt.ok || len(got) != tt.want {
			t.Errorf("DecodeWatch(%s) = %v, %v", tt.data, got, err)
		}
	}
	for _, tt := range []struct {
		data string
		want time.Duration
		ok   bool
	}{
		{`{"idle_seconds":0}`, 0, true},
		{`{"idle_seconds":90}`, 90 * time.Second, true},
		{`{"idle_seconds":-1}`, 0, false},
		{`{"idle_seconds":1e12}`, 0, false},
		{`{"idle_seconds":1.5}`, 0, false},
		{`{}`, 0, true},
	} {
		got, err := DecodeActivity(json.RawMessage(tt.data))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("DecodeActivity(%s) = %v, %v", tt.data, got, err)
		}
	}
}

func TestDecodeCallEvent(t *testing.T) {
	for _, tt := range []struct {
		topic, payload string
		ok, bad        bool
	}{
		{"call.started", `{"call_id":"a","user_id":1,"direction":"outbound"}`, true, false},
		{"call.started", `{"call_id":"a","user_id":1,"direction":"inbound"}`, false, false},
		{"call.answered", `{"call_id":"a","user_id":1}`, true, false},
		{"call.ended", `{"call_id":"a","user_id":1,"cause":"busy"}`, true, false},
		{"call.ringing", `{"call_id":"a","user_id":1}`, false, false},
		{"call.transferred", `garbage`, false, false},
		{"call.answered", `{"call_id":"","user_id":1}`, false, true},
		{"call.answered", `{"call_id":"a","user_id":0}`, false, true},
		{"call.answered", `{"call_id":"a","user_id":1,"at":"yesterday"}`, false, true},
		{"call.answered", `[]`, false, true},
	} {
		_, ok, err := DecodeCallEvent(tt.topic, []byte(tt.payload))
		if ok != tt.ok || (err != nil) != tt.bad {
			t.Errorf("DecodeCallEvent(%s, %s) = %v, %v", tt.topic, tt.payload, ok, err)
		}
	}
}
