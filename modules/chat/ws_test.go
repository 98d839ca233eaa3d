package chat

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
)

// TestLossless is the chat's promise: while several senders post into two
// groups at once, a member's client reads a random number of frames,
// drops the connection without a goodbye and reconnects from the last
// sequence it saw, over and over. In the end it has every message
// exactly once, each conversation's messages in the order they were
// stored, and the stream's sequence without a gap.
func TestLossless(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		const (
			reader  = 1
			senders = 4
			each    = 40 // messages per sender per group
		)
		var members []int64
		for s := range senders {
			members = append(members, int64(10+s))
		}
		groups := []int64{e.group(t, reader, "a", members...), e.group(t, reader, "b", members...)}
		start := e.lastSeq(t, reader)
		total := senders * each * len(groups)

		// The senders go, each alternating between the groups.
		var wg sync.WaitGroup
		errs := make(chan error, senders)
		for _, s := range members {
			wg.Go(func() {
				for i := range each * len(groups) {
					conv := groups[i%len(groups)]
					body, _ := json.Marshal(SendRequest{ClientID: fmt.Sprintf("s%d-%d", s, i), Body: fmt.Sprintf("%d:%d", s, i)})
					r := e.raw(t, s, "POST", msgPath(conv, "/messages"), string(body))
					if r.Status != http.StatusCreated {
						errs <- fmt.Errorf("sender %d message %d: %s", s, i, r)
						return
					}
				}
			})
		}

		rng := rand.New(rand.NewPCG(7, uint64(len(e.db.Dialect.Name()))))
		last := start
		seen := map[int64]int{}       // message id -> times
		lastID := map[int64]int64{}   // conversation -> newest message id seen
		perSender := map[string]int{} // "conv/sender" -> next index expected
		connections := 0
		for len(seen) < total {
			c := e.dial(t, reader, last)
			connections++
			if h := readFrame(t, c); h.Type != "hello" || h.Seq < last {
				t.Fatalf("connection %d since %d: hello %+v", connections, last, h)
			}
			for k := 1 + rng.IntN(16); k > 0 && len(seen) < total; k-- {
				f := readFrame(t, c)
				if !f.isEvent() {
					t.Fatalf("connection %d: frame %+v", connections, f)
				}
				if f.Seq != last+1 {
					t.Fatalf("connection %d: after %d got seq %d", connections, last, f.Seq)
				}
				last = f.Seq
				if f.Type != TopicMessageCreated {
					t.Fatalf("unexpected event %s", f.Type)
				}
				var ev MessageEvent
				if err := json.Unmarshal(f.Data, &ev); err != nil {
					t.Fatal(err)
				}
				msg := ev.Message
				seen[msg.ID]++
				if seen[msg.ID] > 1 {
					t.Fatalf("message %d delivered twice", msg.ID)
				}
				if msg.ID <= lastID[ev.ConversationID] {
					t.Fatalf("conversation %d: message %d after %d", ev.ConversationID, msg.ID, lastID[ev.ConversationID])
				}
				lastID[ev.ConversationID] = msg.ID
				// Each sender's messages arrive in the order it sent them.
				var s, i int
				if _, err := fmt.Sscanf(msg.Body, "%d:%d", &s, &i); err != nil || int64(s) != msg.SenderID {
					t.Fatalf("message %d body %q from %d", msg.ID, msg.Body, msg.SenderID)
				}
				key := fmt.Sprintf("%d/%d", ev.ConversationID, s)
				if want := perSender[key]; i/len(groups) != want {
					t.Fatalf("%s: message %d, want %d", key, i/len(groups), want)
				}
				perSender[key]++
			}
			c.CloseNow()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if connections < 20 {
			t.Errorf("only %d connections; the test should reconnect far more", connections)
		}
		if len(seen) != total {
			t.Fatalf("saw %d messages, want %d", len(seen), total)
		}
		// The database agrees: nothing stored that the reader missed.
		for _, g := range groups {
			var n int
			if err := e.db.GetContext(t.Context(), &n, "SELECT COUNT(*) FROM chat_messages WHERE conversation_id = ? AND kind = 'text'", g); err != nil {
				t.Fatal(err)
			}
			if n != total/len(groups) {
				t.Errorf("group %d stored %d messages, want %d", g, n, total/len(groups))
			}
		}
		t.Logf("read %d messages over %d connections", total, connections)
	})
}

// TestTyping: typing is a signal to the other members' open connections,
// not an event of their streams.
func TestTyping(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		g := e.group(t, 1, "g", 2)
		seq := e.lastSeq(t, 2)
		c := e.dial(t, 2, seq)
		readFrame(t, c) // hello
		e.call(t, 1, "POST", msgPath(g, "/typing"), nil).want(t, 204)
		f := readFrame(t, c)
		var ty Typing
		if f.Type != "signal" || f.Signal != SignalTyping || json.Unmarshal(f.Data, &ty) != nil || ty.ConversationID != g || ty.UserID != 1 {
			t.Fatalf("frame %+v, want the typing signal", f)
		}
		if got := e.lastSeq(t, 2); got != seq {
			t.Errorf("typing was stored: seq %d → %d", seq, got)
		}
		// A message after it arrives as the next event.
		m := e.send(t, 1, g, "напечатал")
		f = readFrame(t, c)
		var me MessageEvent
		if f.Seq != seq+1 || json.Unmarshal(f.Data, &me) != nil || me.Message.ID != m.ID {
			t.Fatalf("frame %+v, want message %d", f, m.ID)
		}
	})
}
