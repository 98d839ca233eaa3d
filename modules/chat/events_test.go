package chat

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/elph-server/elph/platform/bus"
)

// busLog records every chat event on the bus.
type busLog struct {
	mu     sync.Mutex
	events []bus.Event
	more   chan struct{}
}

func recordBus(t *testing.T, b bus.Bus) *busLog {
	t.Helper()
	l := &busLog{more: make(chan struct{}, 1)}
	sub, err := b.Subscribe("chat.>", "test.chat", func(_ context.Context, ev bus.Event) error {
		l.mu.Lock()
		l.events = append(l.events, ev)
		l.mu.Unlock()
		select {
		case l.more <- struct{}{}:
		default:
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Unsubscribe)
	return l
}

// waitN waits until n events were recorded and returns them.
func (l *busLog) waitN(t *testing.T, n int) []bus.Event {
	t.Helper()
	deadline := time.After(wait)
	for {
		l.mu.Lock()
		if len(l.events) >= n {
			evs := slices.Clone(l.events)
			l.mu.Unlock()
			return evs
		}
		l.mu.Unlock()
		select {
		case <-l.more:
		case <-deadline:
			t.Fatalf("fewer than %d bus events within %s", n, wait)
		}
	}
}

// TestBusEvents: every chat event is also published on the bus, keyed by
// conversation, with whom it went to and who muted the conversation.
func TestBusEvents(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		l := recordBus(t, e.bus)
		g := e.group(t, 1, "g", 2, 3)
		until := e.clock.Now().Add(time.Hour)
		e.call(t, 3, "PUT", msgPath(g, "/mute"), map[string]any{"until": until}).want(t, 200)
		m := e.sendReq(t, 2, g, SendRequest{Body: "@1", Mentions: []int64{1}})

		evs := l.waitN(t, 4)
		var topics []string
		for _, ev := range evs {
			topics = append(topics, ev.Topic)
			if ev.Key != strconv.FormatInt(g, 10) {
				t.Errorf("%s keyed %q, want the conversation %d", ev.Topic, ev.Key, g)
			}
		}
		if want := []string{TopicConversationCreated, TopicMessageCreated, TopicMemberUpdated, TopicMessageCreated}; !slices.Equal(topics, want) {
			t.Fatalf("bus topics %v, want %v", topics, want)
		}
		var be BusEvent
		if err := json.Unmarshal(evs[3].Payload, &be); err != nil {
			t.Fatal(err)
		}
		var me MessageEvent
		if err := json.Unmarshal(be.Data, &me); err != nil {
			t.Fatal(err)
		}
		if be.ConversationID != g || be.ActorID != 2 || !slices.Equal(be.UserIDs, []int64{1, 2, 3}) ||
			!slices.Equal(be.MutedIDs, []int64{3}) || me.Message.ID != m.ID || !slices.Equal(me.Message.Mentions, []int64{1}) {
			t.Errorf("bus event %+v with %+v", be, me)
		}
		// The bus data is exactly what the streams got.
		streamed, err := find(e.events(t, 1, 0), TopicMessageCreated, func(ev MessageEvent) bool { return ev.Message.ID == m.ID })
		if err != nil || fmt.Sprint(streamed) != fmt.Sprint(me) {
			t.Errorf("stream has %+v, bus %+v", streamed, me)
		}
	})
}

// TestRetention: messages older than the retention become tombstones;
// newer ones and system messages stay.
func TestRetention(t *testing.T) {
	forEachDialect(t, envOptions{retention: 24 * time.Hour}, func(t *testing.T, e *env) {
		g := e.group(t, 1, "g", 2)
		e.files.add("old-file", 1)
		old := e.sendReq(t, 1, g, SendRequest{Body: "старое", FileIDs: []string{"old-file"}})
		e.call(t, 2, "PUT", msgPath(g, fmt.Sprintf("/messages/%d/reactions/x", old.ID)), nil).want(t, 200)
		e.clock.Advance(25 * time.Hour)
		fresh := e.send(t, 1, g, "новое")

		n, err := e.mod.Purge(t.Context())
		if err != nil || n != 1 {
			t.Fatalf("Purge = %d, %v; want 1", n, err)
		}
		if got := e.getMessage(t, 2, g, old.ID); !got.Deleted || got.Body != "" || len(got.Files) != 0 || len(got.Reactions) != 0 {
			t.Errorf("expired message %+v", got)
		}
		if got := e.getMessage(t, 2, g, fresh.ID); got.Deleted || got.Body != "новое" {
			t.Errorf("fresh message %+v", got)
		}
		if ok, err := e.mod.CanReadFile(t.Context(), 2, "old-file"); ok || err != nil {
			t.Errorf("file of an expired message readable: %v, %v", ok, err)
		}
		var res SearchResult
		e.call(t, 1, "GET", "/v1/search?q=старое", nil).want(t, 200).decode(t, &res)
		if len(res.Messages) != 0 {
			t.Errorf("expired message found: %+v", res.Messages)
		}
		p := e.history(t, 2, g, "")
		if len(p.Messages) != 3 || p.Messages[0].Kind != MessageSystem || p.Messages[0].Deleted {
			t.Errorf("history after retention %+v", p.Messages)
		}
		if n, err := e.mod.Purge(t.Context()); n != 0 || err != nil {
			t.Errorf("second Purge = %d, %v", n, err)
		}
	})
}
