package stream_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/elph-server/elph/platform/auth/authtest"

	"github.com/coder/websocket"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
	"github.com/elph-server/elph/platform/stream"
)

const (
	eventType = "test.thing.happened"
	// wait bounds every wait of a test as a safety net against hangs; no
	// test relies on it to pass.
	wait = 30 * time.Second
)

// newBus returns an in-memory bus closed when the test ends.
func newBus(t testing.TB) *bus.Memory {
	t.Helper()
	b, err := bus.NewMemory(bus.MemoryOptions{Logger: storetest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("close bus: %v", err)
		}
	})
	return b
}

// node is one running Stream with its own metrics and HTTP server.
type node struct {
	s   *stream.Stream
	reg *prometheus.Registry
	srv *httptest.Server
	url string // ws:// URL of the handler
}

// newNode starts a Stream on db and b with the test's issuer, serving it
// from an httptest server (edit adjusts the options, srv the server before
// it starts). Everything is stopped when the test ends.
func newNode(t testing.TB, db *store.DB, b bus.Bus, is *authtest.Signer, edit func(*stream.Options), srv func(*httptest.Server)) *node {
	t.Helper()
	reg := prometheus.NewRegistry()
	o := stream.Options{
		DB:          db,
		Bus:         b,
		Verifier:    is.Verifier(),
		Revocations: is.Revocations(),
		Log:         storetest.Logger(t),
		Metrics:     reg,
	}
	if edit != nil {
		edit(&o)
	}
	s, err := stream.New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	n := &node{s: s, reg: reg, srv: httptest.NewUnstartedServer(s.Handler())}
	if srv != nil {
		srv(n.srv)
	}
	n.srv.Start()
	n.url = "ws" + strings.TrimPrefix(n.srv.URL, "http") + "/ws"
	t.Cleanup(func() {
		n.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return n
}

// counter reads one of the node's elph_stream_* counters.
func (n *node) counter(t testing.TB, name string) float64 {
	t.Helper()
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// dialOpts are how a test client connects.
type dialOpts struct {
	url    string // default: the node's httptest server
	token  string
	since  string // raw query value; "" omits it
	header http.Header
	opts   *websocket.DialOptions
}

// dial connects to n as a client and closes the connection at the end of
// the test.
func dial(t testing.TB, n *node, d dialOpts) *websocket.Conn {
	t.Helper()
	c, resp, err := tryDial(t, n, d)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (HTTP %d)", err, status)
	}
	return c
}

func tryDial(t testing.TB, n *node, d dialOpts) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	o := d.opts
	if o == nil {
		o = &websocket.DialOptions{}
	}
	o.HTTPHeader = d.header.Clone()
	if o.HTTPHeader == nil {
		o.HTTPHeader = http.Header{}
	}
	if d.token != "" {
		o.HTTPHeader.Set("Authorization", "Bearer "+d.token)
	}
	url := n.url
	if d.url != "" {
		url = d.url
	}
	if d.since != "" {
		url += "?since=" + d.since
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, o)
	if err != nil {
		return nil, resp, err
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c, resp, nil
}

// frame is any server frame.
type frame struct {
	Type   string          `json:"type"`
	Seq    int64           `json:"seq"`
	Oldest int64           `json:"oldest"`
	Signal string          `json:"signal"`
	Data   json.RawMessage `json:"data"`
	Time   time.Time       `json:"time"`
}

func (f frame) isEvent() bool { return strings.Contains(f.Type, ".") }

// read reads the next frame; err is the connection's error (a close
// carries its status, see websocket.CloseStatus).
func read(c *websocket.Conn) (frame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		return frame{}, err
	}
	if typ != websocket.MessageText {
		return frame{}, errors.New("binary frame from server")
	}
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		return frame{}, err
	}
	return f, nil
}

func mustRead(t testing.TB, c *websocket.Conn) frame {
	t.Helper()
	f, err := read(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return f
}

// readHello reads the first frame and checks it is a hello.
func readHello(t testing.TB, c *websocket.Conn) frame {
	t.Helper()
	f := mustRead(t, c)
	if f.Type != "hello" {
		t.Fatalf("first frame %+v, want hello", f)
	}
	return f
}

// readEvents reads n frames and checks they are the events from+1 ..
// from+n in order.
func readEvents(t testing.TB, c *websocket.Conn, from int64, n int) {
	t.Helper()
	for i := range n {
		f := mustRead(t, c)
		if want := from + int64(i) + 1; !f.isEvent() || f.Seq != want {
			t.Fatalf("frame %+v, want event %d", f, want)
		}
	}
}

// readClose reads until the connection ends and returns its close status
// and how many event frames came before it.
func readClose(c *websocket.Conn) (websocket.StatusCode, int) {
	n := 0
	for {
		f, err := read(c)
		if err != nil {
			return websocket.CloseStatus(err), n
		}
		if f.isEvent() {
			n++
		}
	}
}

// payload is the data of test events.
type payload struct {
	I int `json:"i"`
}

// appendN appends n events for user in one transaction, fast.
func appendN(t testing.TB, s *stream.Stream, db *store.DB, user int64, n int) {
	t.Helper()
	var pend []stream.Pending
	err := db.InTx(t.Context(), func(tx *sqlx.Tx) error {
		pend = pend[:0]
		for i := range n {
			p, err := s.AppendTx(t.Context(), tx, []int64{user}, eventType, payload{I: i})
			if err != nil {
				return err
			}
			pend = append(pend, p)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("append %d events: %v", n, err)
	}
	for _, p := range pend {
		p.Notify(t.Context())
	}
}

// waitFor polls cond until it holds; the deadline is a safety net.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
