package stream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/jmoiron/sqlx"

	"github.com/elph-server/elph/platform/auth"
	"github.com/elph-server/elph/platform/auth/authtest"
	"github.com/elph-server/elph/platform/httpx"
	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
	"github.com/elph-server/elph/platform/stream"
)

// TestReplayAndLive connects at several positions of a stream longer than
// a replay page: each connection gets a hello, the events after its
// position from the database, then live events, each once and in order.
func TestReplayAndLive(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		is := authtest.New(t)
		// A small queue: the 1234 announcements of the backlog, still in
		// flight while the first clients connect, must not make them
		// look slow.
		n := newNode(t, db, newBus(t), is, func(o *stream.Options) { o.SendBuffer = 4 }, nil)
		const user, stored = 5, 1234 // more than two pages of 500
		appendN(t, n.s, db, user, stored)
		tok := is.Token(t, user, "s1", nil)

		tests := []struct {
			since string
			from  int64
		}{
			{"", 0},
			{"0", 0},
			{"1000", 1000},
			{"1234", 1234},
		}
		conns := make([]*websocket.Conn, len(tests))
		for i, tt := range tests {
			c := dial(t, n, dialOpts{token: tok, since: tt.since})
			conns[i] = c
			h := readHello(t, c)
			if h.Seq != stored || h.Oldest != 1 {
				t.Fatalf("since %q: hello %+v, want seq %d oldest 1", tt.since, h, stored)
			}
			readEvents(t, c, tt.from, int(stored-tt.from))
		}
		// Live events reach every connection, after its backlog.
		for i := range 3 {
			if _, err := n.s.Append(t.Context(), []int64{user}, eventType, payload{I: stored + i}); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range conns {
			for i := range 3 {
				f := mustRead(t, c)
				want := int64(stored + i + 1)
				if f.Seq != want || string(f.Data) != fmt.Sprintf(`{"i":%d}`, want-1) || f.Type != eventType || f.Time.IsZero() {
					t.Fatalf("live frame %+v, want event %d", f, want)
				}
			}
		}
		if got := n.counter(t, "elph_stream_connections"); got != float64(len(tests)) || n.s.Connections() != len(tests) {
			t.Errorf("connections = %v / %d, want %d", got, n.s.Connections(), len(tests))
		}
		// The counters are final once the connections are done: a frame
		// is counted after the write the client has already read.
		for _, c := range conns {
			c.CloseNow()
		}
		ctx, cancel := context.WithTimeout(t.Context(), wait)
		defer cancel()
		if err := n.s.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		var replayed int64
		for _, tt := range tests {
			replayed += stored - tt.from
		}
		// A live event can come from the database too, when a connection
		// is still finishing its catch-up as it is appended.
		if got := n.counter(t, "elph_stream_replayed_total"); got < float64(replayed) || got > float64(replayed+3*int64(len(tests))) {
			t.Errorf("replayed_total = %v, want %d plus at most the live events", got, replayed)
		}
		if got := n.counter(t, "elph_stream_delivered_total"); got != float64(replayed+3*int64(len(tests))) {
			t.Errorf("delivered_total = %v, want %d", got, replayed+3*int64(len(tests)))
		}
		if got := n.counter(t, "elph_stream_connections"); got != 0 {
			t.Errorf("connections after Stop = %v", got)
		}
		if got := n.counter(t, "elph_stream_appended_total"); got != stored+3 {
			t.Errorf("appended_total = %v, want %d", got, stored+3)
		}
		if got := n.counter(t, "elph_stream_slow_disconnects_total"); got != 0 {
			t.Errorf("slow_disconnects_total = %v, want 0", got)
		}
	})
}

// TestLosslessReconnect is the stream's promise: while a writer appends
// 2000 events at full speed, a client reads a random number of them, drops
// the connection without a goodbye, and reconnects from the last event it
// saw, over and over. In the end it has seen 1..2000 exactly once, in
// order. With two nodes the writer appends on one and the client reads
// from the other, through the bus.
func TestLosslessReconnect(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		for _, nodes := range []int{1, 2} {
			t.Run(fmt.Sprintf("%d nodes", nodes), func(t *testing.T) {
				is := authtest.New(t)
				b := newBus(t)
				writer := newNode(t, db, b, is, nil, nil)
				reader := writer
				if nodes == 2 {
					reader = newNode(t, db, b, is, nil, nil)
				}
				user := int64(100 + nodes) // the subtests share the database
				tok := is.Token(t, user, "s1", nil)
				const total = 2000

				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				written := make(chan error, 1)
				go func() {
					for i := 1; i <= total; i++ {
						if _, err := writer.s.Append(ctx, []int64{user}, eventType, payload{I: i}); err != nil {
							written <- fmt.Errorf("append %d: %w", i, err)
							return
						}
					}
					written <- nil
				}()

				rng := rand.New(rand.NewPCG(1, uint64(nodes)))
				var last int64
				connections := 0
				for last < total {
					c := dial(t, reader, dialOpts{token: tok, since: fmt.Sprint(last)})
					connections++
					h := readHello(t, c)
					if h.Seq < last || h.Oldest != 1 {
						t.Fatalf("connection %d since %d: hello %+v", connections, last, h)
					}
					for k := 1 + rng.IntN(70); k > 0 && last < total; k-- {
						f := mustRead(t, c)
						if !f.isEvent() || f.Seq != last+1 || string(f.Data) != fmt.Sprintf(`{"i":%d}`, last+1) {
							t.Fatalf("connection %d: after %d got %+v", connections, last, f)
						}
						last = f.Seq
					}
					c.CloseNow()
				}
				if err := <-written; err != nil {
					t.Fatal(err)
				}
				if connections < 40 {
					t.Errorf("only %d connections; the test should reconnect about 57 times", connections)
				}
				t.Logf("read %d events over %d connections", last, connections)
				waitFor(t, "connections to close", func() bool { return reader.s.Connections() == 0 })
			})
		}
	})
}

// TestResync covers positions the server cannot continue from: before the
// oldest retained event, and beyond the newest.
func TestResync(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		is := authtest.New(t)
		n := newNode(t, db, newBus(t), is, func(o *stream.Options) { o.MaxPerUser = 5 }, nil)
		const user = 9
		appendN(t, n.s, db, user, 12)
		if deleted, err := n.s.Purge(t.Context()); err != nil || deleted != 7 {
			t.Fatalf("Purge = %d, %v; want 7", deleted, err)
		}
		tok := is.Token(t, user, "s1", nil)

		tests := []struct {
			name   string
			since  string
			resync bool
			from   int64 // the first event is from+1
		}{
			{"from the start", "0", true, 12},
			{"one purged event missing", "6", true, 12},
			{"right before oldest", "7", false, 7},
			{"up to date", "12", false, 12},
			{"future", "13", true, 12},
			{"far future", "999999", true, 12},
		}
		// One connection per case, all kept open (so no subtests, whose
		// end would close them).
		var conns []*websocket.Conn
		for _, tt := range tests {
			before := n.counter(t, "elph_stream_resyncs_total")
			c := dial(t, n, dialOpts{token: tok, since: tt.since})
			conns = append(conns, c)
			h := readHello(t, c)
			if h.Seq != 12 || h.Oldest != 8 {
				t.Fatalf("%s: hello %+v, want seq 12 oldest 8", tt.name, h)
			}
			if tt.resync {
				if f := mustRead(t, c); f.Type != "resync" || f.Seq != 12 {
					t.Fatalf("%s: frame %+v, want resync to 12", tt.name, f)
				}
			}
			if got, want := n.counter(t, "elph_stream_resyncs_total")-before, map[bool]float64{true: 1}[tt.resync]; got != want {
				t.Errorf("%s: resyncs_total went up by %v, want %v", tt.name, got, want)
			}
			readEvents(t, c, tt.from, int(12-tt.from))
		}
		// Every connection goes on, a resynced one too: the next event comes.
		if _, err := n.s.Append(t.Context(), []int64{user}, eventType, payload{}); err != nil {
			t.Fatal(err)
		}
		for _, c := range conns {
			readEvents(t, c, 12, 1)
		}
	})
}

// smallBuffers shrinks the kernel's send buffer of accepted connections,
// so a client that does not read backs the server up after a few frames
// instead of megabytes.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(8 << 10)
	}
	return c, err
}

// smallReadClient dials with a small kernel receive buffer, for the same
// reason.
func smallReadClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(8 << 10)
			}
			return c, err
		},
	}}
}

// TestSlowClient connects a client that never reads next to one that
// does: appends go on unhindered, the slow one is closed with 4008 once its
// queue is full (having got a gap-free prefix), the fast one gets
// everything.
func TestSlowClient(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		is := authtest.New(t)
		n := newNode(t, db, newBus(t), is, func(o *stream.Options) {
			o.SendBuffer = 16
			o.PingInterval = time.Hour // a non-reading client fails pings too; not the point here
		}, func(srv *httptest.Server) { srv.Listener = smallBuffers{srv.Listener} })
		const user = 1
		tok := is.Token(t, user, "s1", nil)
		slow := dial(t, n, dialOpts{token: tok, opts: &websocket.DialOptions{HTTPClient: smallReadClient()}})
		fast := dial(t, n, dialOpts{token: tok})
		readHello(t, fast)
		got := make(chan int64, 10000)
		go func() {
			defer close(got)
			for {
				f, err := read(fast)
				if err != nil {
					return
				}
				if f.isEvent() {
					got <- f.Seq
				}
			}
		}()

		pad := strings.Repeat("x", 8<<10)
		var total int64
		for total = 1; ; total++ {
			if total > 3000 {
				t.Fatal("3000 events of 8 KiB appended and the client that does not read was not disconnected")
			}
			seqs, err := n.s.Append(t.Context(), []int64{user}, eventType, map[string]any{"i": total, "pad": pad})
			if err != nil || seqs[user] != total {
				t.Fatalf("Append %d = %v, %v", total, seqs, err)
			}
			if n.counter(t, "elph_stream_slow_disconnects_total") > 0 {
				break
			}
		}
		t.Logf("slow client cut after %d events", total)

		// The slow client finds what was written before the cut, in order,
		// then the close.
		var prefix int64
		for {
			f, err := read(slow)
			if err != nil {
				if code := websocket.CloseStatus(err); code != 4008 {
					t.Fatalf("slow client: %v, want close 4008", err)
				}
				break
			}
			switch {
			case f.Type == "hello":
			case f.isEvent() && f.Seq == prefix+1:
				prefix++
			default:
				t.Fatalf("slow client after %d: %+v", prefix, f)
			}
		}
		if prefix >= total {
			t.Errorf("slow client got all %d events before the cut", prefix)
		}
		for want := int64(1); want <= total; want++ {
			if seq, ok := <-got; !ok || seq != want {
				t.Fatalf("fast client: got %d (open %v), want %d", seq, ok, want)
			}
		}
		if got := n.counter(t, "elph_stream_slow_disconnects_total"); got != 1 {
			t.Errorf("slow_disconnects_total = %v, want 1 (only the client that does not read)", got)
		}
		// Appending goes on, and the fast client still gets it.
		if _, err := n.s.Append(t.Context(), []int64{user}, eventType, payload{}); err != nil {
			t.Fatal(err)
		}
		if seq := <-got; seq != total+1 {
			t.Errorf("fast client after the cut: %d, want %d", seq, total+1)
		}
	})
}

// TestAuth covers how a client authenticates, and what it gets when it
// does not.
func TestAuth(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		is := authtest.New(t)
		n := newNode(t, db, newBus(t), is, func(o *stream.Options) {
			o.OriginPatterns = []string{"app.example.com", "https://*.example.org"}
		}, nil)
		good := is.Token(t, 1, "s-good", nil)
		is.Revocations().Revoke("s-revoked")

		forged := authtest.Forger(t).Token(t, 1, "s-x", nil)
		expired := is.Token(t, 1, "s-old", func(c *auth.Claims) {
			c.IssuedAt = jwt.NewNumericDate(time.Now().Add(-2 * time.Hour))
			c.NotBefore = c.IssuedAt
			c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
		})

		refused := []struct {
			name     string
			d        dialOpts
			status   int
			code     string
			message  string
			wwwAuthn string
		}{
			{"no token", dialOpts{}, 401, "unauthorized", "missing bearer token", "Bearer"},
			{"garbage", dialOpts{token: "not-a-token"}, 401, "unauthorized", "invalid access token", `Bearer error="invalid_token"`},
			{"foreign key", dialOpts{token: forged}, 401, "unauthorized", "invalid access token", `Bearer error="invalid_token"`},
			{"expired", dialOpts{token: expired}, 401, "unauthorized", "access token expired", "expired"},
			{"revoked", dialOpts{token: is.Token(t, 1, "s-revoked", nil)}, 401, "unauthorized", "session revoked", "revoked"},
			{"basic scheme", dialOpts{header: http.Header{"Authorization": {"Basic dXNlcjpwdw=="}}}, 401, "unauthorized", "must be Bearer", "Bearer"},
			{"bad since", dialOpts{token: good, since: "abc"}, 400, "bad_request", "since", ""},
			{"negative since", dialOpts{token: good, since: "-1"}, 400, "bad_request", "since", ""},
			{"foreign origin", dialOpts{token: good, header: http.Header{"Origin": {"https://evil.example.net"}}}, 403, "forbidden", "origin", ""},
			{"null origin", dialOpts{token: good, header: http.Header{"Origin": {"null"}}}, 403, "forbidden", "origin", ""},
			{"pattern needs its scheme", dialOpts{token: good, header: http.Header{"Origin": {"http://x.example.org"}}}, 403, "forbidden", "origin", ""},
		}
		for _, tt := range refused {
			t.Run(tt.name, func(t *testing.T) {
				_, resp, err := tryDial(t, n, tt.d)
				if err == nil {
					t.Fatal("connected")
				}
				if resp == nil || resp.StatusCode != tt.status {
					t.Fatalf("response %v, want HTTP %d", resp, tt.status)
				}
				var body struct {
					Error struct{ Code, Message string }
				}
				b, _ := io.ReadAll(resp.Body)
				if err := json.Unmarshal(b, &body); err != nil || body.Error.Code != tt.code || !strings.Contains(body.Error.Message, tt.message) {
					t.Errorf("body %s, want code %q and a message about %q", b, tt.code, tt.message)
				}
				if h := resp.Header.Get("WWW-Authenticate"); !strings.Contains(h, tt.wwwAuthn) {
					t.Errorf("WWW-Authenticate %q, want it to mention %q", h, tt.wwwAuthn)
				}
			})
		}

		accepted := []struct {
			name         string
			d            dialOpts
			wantProtocol string
		}{
			{"authorization header", dialOpts{token: good}, ""},
			{"subprotocol", dialOpts{opts: &websocket.DialOptions{Subprotocols: []string{"elph.v1", "bearer." + good}}}, "elph.v1"},
			{"query", dialOpts{since: "0&access_token=" + good}, ""},
			{"same origin", dialOpts{token: good, header: http.Header{"Origin": {n.srv.URL}}}, ""},
			{"origin pattern", dialOpts{token: good, header: http.Header{"Origin": {"https://app.example.com"}}}, ""},
			{"origin pattern with scheme", dialOpts{token: good, header: http.Header{"Origin": {"https://x.example.org"}}}, ""},
		}
		for _, tt := range accepted {
			t.Run(tt.name, func(t *testing.T) {
				c := dial(t, n, tt.d)
				if got := c.Subprotocol(); got != tt.wantProtocol {
					t.Errorf("subprotocol %q, want %q", got, tt.wantProtocol)
				}
				readHello(t, c)
			})
		}
	})
}

// TestRevokedWhileConnected closes the connections of a session that is
// revoked with 4001, and only those.
func TestRevokedWhileConnected(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		is := authtest.New(t)
		n := newNode(t, db, newBus(t), is, nil, nil)
		revoked := dial(t, n, dialOpts{token: is.Token(t, 1, "s-bye", nil)})
		kept := dial(t, n, dialOpts{token: is.Token(t, 1, "s-stay", nil)})
		readHello(t, revoked)
		readHello(t, kept)

		is.Revocations().Revoke("s-bye")
		if code, _ := readClose(revoked); code != 4001 {
			t.Fatalf("close %v, want 4001", code)
		}
		if _, resp, err := tryDial(t, n, dialOpts{token: is.Token(t, 1, "s-bye", nil)}); err == nil || resp.StatusCode != 401 {
			t.Errorf("reconnect with the revoked session: %v", err)
		}
		if _, err := n.s.Append(t.Context(), []int64{1}, eventType, payload{}); err != nil {
			t.Fatal(err)
		}
		readEvents(t, kept, 0, 1)
	})
}

// TestSignals checks that signals reach the live connections of their
// users only, and are not stored.
func TestSignals(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		is := authtest.New(t)
		b := newBus(t)
		n := newNode(t, db, b, is, nil, nil)
		other := newNode(t, db, b, is, nil, nil)
		a1 := dial(t, n, dialOpts{token: is.Token(t, 1, "s1", nil)})
		a2 := dial(t, other, dialOpts{token: is.Token(t, 1, "s2", nil)})
		c := dial(t, n, dialOpts{token: is.Token(t, 2, "s3", nil)})
		for _, conn := range []*websocket.Conn{a1, a2, c} {
			readHello(t, conn)
		}

		if err := n.s.Signal(t.Context(), []int64{1}, "typing", map[string]int{"conversation_id": 5}); err != nil {
			t.Fatal(err)
		}
		if err := n.s.Signal(t.Context(), []int64{2, 1}, "presence", nil); err != nil {
			t.Fatal(err)
		}
		for _, conn := range []*websocket.Conn{a1, a2} {
			if f := mustRead(t, conn); f.Type != "signal" || f.Signal != "typing" || string(f.Data) != `{"conversation_id":5}` || f.Seq != 0 {
				t.Errorf("user 1 got %+v, want the typing signal", f)
			}
			if f := mustRead(t, conn); f.Type != "signal" || f.Signal != "presence" || string(f.Data) != "null" {
				t.Errorf("user 1 got %+v, want the presence signal", f)
			}
		}
		// User 2's first frame is the second signal: it never got the first.
		if f := mustRead(t, c); f.Signal != "presence" {
			t.Errorf("user 2 got %+v, want only the presence signal", f)
		}
		for _, user := range []int64{1, 2} {
			if evs, err := n.s.Since(t.Context(), user, 0, 0); err != nil || len(evs) != 0 {
				t.Errorf("Since(%d) = %v, %v; signals must not be stored", user, evs, err)
			}
		}
		// Nor do they take a sequence: the first event is 1.
		seqs, err := n.s.Append(t.Context(), []int64{1}, eventType, payload{})
		if err != nil || seqs[1] != 1 {
			t.Errorf("Append after signals = %v, %v; want seq 1", seqs, err)
		}

		for _, tt := range []struct {
			name  string
			users []int64
			typ   string
			data  any
		}{
			{"bad name", []int64{1}, "Typing!", nil},
			{"bad user", []int64{0}, "typing", nil},
			{"too large", []int64{1}, "typing", strings.Repeat("x", stream.DefaultMaxEventBytes)},
		} {
			if err := n.s.Signal(t.Context(), tt.users, tt.typ, tt.data); err == nil {
				t.Errorf("Signal %s succeeded", tt.name)
			}
		}
	})
}

// TestStop closes connections with 1001 and refuses new ones.
func TestStop(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		is := authtest.New(t)
		n := newNode(t, db, newBus(t), is, nil, nil)
		tok := is.Token(t, 1, "s1", nil)
		c1 := dial(t, n, dialOpts{token: tok})
		c2 := dial(t, n, dialOpts{token: tok})
		readHello(t, c1)
		readHello(t, c2)

		stopped := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			stopped <- n.s.Stop(ctx)
		}()
		for _, c := range []*websocket.Conn{c1, c2} {
			if code, _ := readClose(c); code != websocket.StatusGoingAway {
				t.Errorf("close %v, want 1001", code)
			}
		}
		if err := <-stopped; err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if n.s.Connections() != 0 {
			t.Errorf("%d connections after Stop", n.s.Connections())
		}
		if _, resp, err := tryDial(t, n, dialOpts{token: tok}); err == nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("dial after Stop: %v", err)
		}
	})
}

// TestDrain shuts an httpx.Server down under a connection: the handler
// sees the drain and closes with 1001, and Shutdown returns once it has.
func TestDrain(t *testing.T) {
	db := storetest.OpenSQLite(t)
	is := authtest.New(t)
	n := newNode(t, db, newBus(t), is, nil, nil)
	srv := httpx.NewServer(httpx.ServerOptions{Name: "test", Addr: "127.0.0.1:0", Handler: n.s.Handler(), Logger: storetest.Logger(t)})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	c := dial(t, n, dialOpts{token: is.Token(t, 1, "s1", nil), url: "ws://" + srv.Addr().String() + "/"})
	readHello(t, c)

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		shut <- srv.Shutdown(ctx)
	}()
	if code, _ := readClose(c); code != websocket.StatusGoingAway {
		t.Errorf("close %v, want 1001", code)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestClientFrames checks what the server does with each kind of client
// frame.
func TestClientFrames(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		is := authtest.New(t)
		n := newNode(t, db, newBus(t), is, nil, nil)
		tok := is.Token(t, 1, "s1", nil)

		t.Run("ping", func(t *testing.T) {
			c := dial(t, n, dialOpts{token: tok})
			readHello(t, c)
			for _, msg := range []string{`{"type":"ping"}`, `{"type":"future.thing","x":1}`, `{}`, ` {"type":"ping","id":"a"}`} {
				if err := c.Write(t.Context(), websocket.MessageText, []byte(msg)); err != nil {
					t.Fatal(err)
				}
			}
			// The unknown frames were ignored: two pings, two pongs.
			for range 2 {
				if f := mustRead(t, c); f.Type != "pong" {
					t.Fatalf("frame %+v, want pong", f)
				}
			}
		})

		closing := []struct {
			name string
			typ  websocket.MessageType
			msg  []byte
			want websocket.StatusCode
		}{
			{"invalid JSON", websocket.MessageText, []byte(`{"type":"ping"`), websocket.StatusInvalidFramePayloadData},
			{"not an object", websocket.MessageText, []byte(`["ping"]`), websocket.StatusInvalidFramePayloadData},
			{"type not a string", websocket.MessageText, []byte(`{"type":1}`), websocket.StatusInvalidFramePayloadData},
			{"invalid UTF-8", websocket.MessageText, []byte("{\"type\":\"\xff\"}"), websocket.StatusInvalidFramePayloadData},
			{"binary", websocket.MessageBinary, []byte(`{"type":"ping"}`), websocket.StatusUnsupportedData},
			{"too large", websocket.MessageText, []byte(`{"type":"ping","pad":"` + strings.Repeat("x", 5000) + `"}`), websocket.StatusMessageTooBig},
		}
		for _, tt := range closing {
			t.Run(tt.name, func(t *testing.T) {
				c := dial(t, n, dialOpts{token: tok})
				readHello(t, c)
				if err := c.Write(t.Context(), tt.typ, tt.msg); err != nil {
					t.Fatal(err)
				}
				_, err := read(c)
				var ce websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != tt.want || ce.Reason == "" {
					t.Errorf("read = %v, want close %v with a reason", err, tt.want)
				}
			})
		}
	})
}

// TestMissedAnnouncement appends without Notify, as if the appending node
// died between commit and publish: the connection's periodic check finds
// the event anyway.
func TestMissedAnnouncement(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		is := authtest.New(t)
		n := newNode(t, db, newBus(t), is, func(o *stream.Options) { o.PingInterval = 20 * time.Millisecond }, nil)
		c := dial(t, n, dialOpts{token: is.Token(t, 1, "s1", nil)})
		readHello(t, c)
		err := db.InTx(t.Context(), func(tx *sqlx.Tx) error {
			_, err := n.s.AppendTx(t.Context(), tx, []int64{1}, eventType, payload{I: 1})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		readEvents(t, c, 0, 1)
		// A later, announced event still follows in order.
		if _, err := n.s.Append(t.Context(), []int64{1}, eventType, payload{I: 2}); err != nil {
			t.Fatal(err)
		}
		readEvents(t, c, 1, 1)
	})
}

// TestUnansweredPing drops a client that does not answer pings (it does
// not read at all).
func TestUnansweredPing(t *testing.T) {
	db := storetest.OpenSQLite(t)
	is := authtest.New(t)
	n := newNode(t, db, newBus(t), is, func(o *stream.Options) {
		o.PingInterval = 20 * time.Millisecond
		o.WriteTimeout = 50 * time.Millisecond
	}, nil)
	dial(t, n, dialOpts{token: is.Token(t, 1, "s1", nil)})
	waitFor(t, "the connection to count", func() bool { return n.s.Connections() == 1 })
	waitFor(t, "the silent client to be dropped", func() bool { return n.s.Connections() == 0 })
}

// TestStartStop checks the lifecycle: no connections before Start, Start
// and Stop only once.
func TestStartStop(t *testing.T) {
	db := storetest.OpenSQLite(t)
	is := authtest.New(t)
	s, err := stream.New(stream.Options{DB: db, Bus: newBus(t), Verifier: is.Verifier()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	n := &node{s: s, srv: srv, url: "ws" + strings.TrimPrefix(srv.URL, "http")}
	if _, resp, err := tryDial(t, n, dialOpts{token: is.Token(t, 1, "s1", nil)}); err == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("dial before Start: %v", err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err == nil {
		t.Error("second Start succeeded")
	}
	if err := s.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(t.Context()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := s.Start(t.Context()); err == nil {
		t.Error("Start after Stop succeeded")
	}
}
