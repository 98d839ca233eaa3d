package stream_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/elph-server/elph/platform/auth/authtest"
	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
	"github.com/elph-server/elph/platform/stream"
)

// recorder is a Listener that writes down what it hears.
type recorder struct {
	mu     sync.Mutex
	events []string
	conns  map[string]stream.Conn // by session
}

func (r *recorder) Opened(c stream.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, "opened "+c.SessionID)
	r.conns[c.SessionID] = c
}

func (r *recorder) Frame(c stream.Conn, typ string, data json.RawMessage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, "frame "+c.SessionID+" "+typ+" "+string(data))
}

func (r *recorder) Closed(c stream.Conn, shutdown bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if shutdown {
		r.events = append(r.events, "shutdown "+c.SessionID)
		return
	}
	r.events = append(r.events, "closed "+c.SessionID)
}

func (r *recorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

func (r *recorder) conn(session string) stream.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns[session]
}

// TestListener: a module hears of connections opening and closing, gets
// the frames of its prefix in order, and can signal one connection or
// this node's connections of a user.
func TestListener(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		is := authtest.New(t)
		b := newBus(t)
		s, err := stream.New(stream.Options{DB: db, Bus: b, Verifier: is.Verifier(), Log: storetest.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		rec := &recorder{conns: map[string]stream.Conn{}}
		for _, tt := range []struct {
			prefix string
			l      stream.Listener
		}{
			{"status.x", rec}, {"", rec}, {"Status", rec}, {"status", nil},
		} {
			if err := s.Watch(tt.prefix, tt.l); err == nil {
				t.Errorf("Watch(%q, %v) succeeded", tt.prefix, tt.l)
			}
		}
		if err := s.Watch("status", rec); err != nil {
			t.Fatal(err)
		}
		if err := s.Watch("status", rec); err == nil {
			t.Error("a second listener took the prefix status")
		}
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(s.Handler())
		t.Cleanup(srv.Close)
		stopped := false
		t.Cleanup(func() {
			if !stopped {
				_ = s.Stop(context.Background())
			}
		})
		if err := s.Watch("late", rec); err == nil {
			t.Error("Watch after Start succeeded")
		}
		n := &node{s: s, srv: srv, url: "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"}

		a := dial(t, n, dialOpts{token: is.Token(t, 1, "a", nil)})
		readHello(t, a)
		b2 := dial(t, n, dialOpts{token: is.Token(t, 1, "b", nil)})
		readHello(t, b2)
		c := dial(t, n, dialOpts{token: is.Token(t, 2, "c", nil)})
		readHello(t, c)

		for _, f := range []map[string]any{
			{"type": "status.watch", "data": map[string]any{"users": []int{2}}},
			{"type": "chat.typing", "data": 1}, // no listener: ignored
			{"type": "status.activity"},        // no data
			{"type": "ping"},
		} {
			if err := wsjson.Write(t.Context(), a, f); err != nil {
				t.Fatal(err)
			}
		}
		if f := mustRead(t, a); f.Type != "pong" {
			t.Fatalf("got %+v, want the pong", f)
		}
		// The pong proves the frames before it were read and handed over.
		want := []string{"opened a", "opened b", "opened c", `frame a status.watch {"users":[2]}`, "frame a status.activity "}
		if got := rec.snapshot(); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("listener heard\n%q\nwant\n%q", got, want)
		}

		// One connection of user 1 only.
		if err := s.SignalConns([]stream.Conn{rec.conn("b"), {ID: 999999, UserID: 1}}, "presence", map[string]int{"user_id": 2}); err != nil {
			t.Fatal(err)
		}
		if f := mustRead(t, b2); f.Signal != "presence" || string(f.Data) != `{"user_id":2}` {
			t.Errorf("b got %+v, want the presence signal", f)
		}
		// Every connection of user 1 on this node.
		if err := s.SignalLocal([]int64{1}, "presence", map[string]int{"user_id": 3}); err != nil {
			t.Fatal(err)
		}
		for name, ws := range map[string]*websocket.Conn{"a": a, "b": b2} {
			if f := mustRead(t, ws); f.Signal != "presence" || string(f.Data) != `{"user_id":3}` {
				t.Errorf("%s got %+v, want the second presence signal", name, f)
			}
		}
		if err := s.SignalLocal([]int64{1}, "Bad Name", nil); err == nil {
			t.Error("SignalLocal with a bad name succeeded")
		}

		if err := a.Close(websocket.StatusNormalClosure, ""); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "closed a", func() bool {
			got := rec.snapshot()
			return got[len(got)-1] == "closed a"
		})
		// c never sent anything: its first frame is still a signal to it.
		if err := s.SignalConns([]stream.Conn{rec.conn("c")}, "presence", nil); err != nil {
			t.Fatal(err)
		}
		if f := mustRead(t, c); f.Signal != "presence" {
			t.Errorf("c got %+v", f)
		}

		// The connections still open are closed by the shutdown, and the
		// listener hears so.
		for _, ws := range []*websocket.Conn{b2, c} {
			go func() { // read, so the close handshake completes at once
				for {
					if _, err := read(ws); err != nil {
						return
					}
				}
			}()
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		stopped = true
		if err := s.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		got := rec.snapshot()
		if tail := strings.Join(got[len(got)-2:], "|"); tail != "shutdown b|shutdown c" && tail != "shutdown c|shutdown b" {
			t.Errorf("after Stop the listener heard %q", got)
		}
	})
}
