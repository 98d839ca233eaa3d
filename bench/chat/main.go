// Command chat measures chat delivery at scale from outside: it opens N
// authenticated WebSocket clients (one user each) in groups, sends
// messages at a fixed rate through the REST API from random members, and
// prints the connections held, deliveries per second, the send → deliver
// latency seen by every receiving client and the server's memory per idle
// connection.
//
// It starts `elph serve --all`, creates the users through the admin API,
// logs each in once, lets the first member of each group create it, then
// (by default) restarts the server on the same data so the memory baseline
// is not inflated by the setup's password hashing. Everything runs from
// this process over loopback; every phase is bounded in time.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/elph-server/elph/bench/benchkit"
)

const adminPassword = "bench-admin-password-1"

type options struct {
	bin       string
	conns     int
	group     int
	rates     []int
	dur       time.Duration
	gateway   bool
	dbDriver  string
	dsn       string
	setupC    int
	dialC     int
	inflight  int
	idle      time.Duration
	drain     time.Duration
	restart   bool
	setupMax  time.Duration
	connMax   time.Duration
	serverEnv multiFlag
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "./bin/elph", "elph binary to measure")
	flag.IntVar(&o.conns, "conns", 10000, "WebSocket clients (one user each)")
	flag.IntVar(&o.group, "group", 50, "members per group conversation")
	rates := flag.String("rate", "500", "messages per second sent in total; a list (500,200,100) runs one send phase per rate on the same connections")
	flag.DurationVar(&o.dur, "d", 20*time.Second, "duration of each send phase")
	flag.BoolVar(&o.gateway, "gateway", false, "go through the TLS gateway instead of the modules' own loopback ports")
	flag.StringVar(&o.dbDriver, "dbdriver", "sqlite", "database driver: sqlite (in the temp data dir) or mysql (with -dsn)")
	flag.StringVar(&o.dsn, "dsn", "", "mysql DSN, e.g. elph:secret@tcp(127.0.0.1:3306)/elph")
	flag.IntVar(&o.setupC, "setupc", 8, "concurrent requests while creating users, logging in and creating groups")
	flag.IntVar(&o.dialC, "dialc", 64, "concurrent WebSocket handshakes")
	flag.IntVar(&o.inflight, "inflight", 512, "sends in flight at most; a slot that finds this many outstanding is skipped and counted (open loop)")
	flag.DurationVar(&o.idle, "idle", 5*time.Second, "idle time after connecting, before the memory is read")
	flag.DurationVar(&o.drain, "drain", 15*time.Second, "how long to wait for outstanding deliveries after each send phase")
	flag.BoolVar(&o.restart, "restart", true, "restart the server on the same data after setup, for a clean memory baseline")
	flag.DurationVar(&o.setupMax, "setup-timeout", 20*time.Minute, "time limit of the setup (users, logins, groups)")
	flag.DurationVar(&o.connMax, "connect-timeout", 3*time.Minute, "time limit of connecting every client")
	flag.Var(&o.serverEnv, "env", "extra KEY=VALUE for the server (repeatable)")
	flag.Parse()
	for r := range strings.SplitSeq(*rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n < 1 {
			os.Exit(fail(fmt.Errorf("-rate %q: positive integers separated by commas", *rates)))
		}
		o.rates = append(o.rates, n)
	}
	os.Exit(run(o))
}

func run(o options) int {
	switch {
	case o.conns < 2 || o.group < 2 || o.dur <= 0 || o.setupC < 1 || o.dialC < 1 || o.inflight < 1:
		return fail(errors.New("need -conns ≥ 2, -group ≥ 2, -d > 0 and positive concurrencies"))
	case o.group > 1000:
		return fail(errors.New("-group is at most 1000 (the server's member limit)"))
	case o.dbDriver != "sqlite" && o.dbDriver != "mysql":
		return fail(fmt.Errorf("-dbdriver %q: sqlite or mysql", o.dbDriver))
	case o.dbDriver == "mysql" && o.dsn == "":
		return fail(errors.New("-dbdriver mysql needs -dsn"))
	}
	if _, err := os.Stat(o.bin); err != nil {
		return fail(fmt.Errorf("build the binary first (make build): %w", err))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Open files: this process holds a socket per client plus the send
	// pool; the server, which inherits these limits, a socket per client
	// plus its own. An explicit Setrlimit is also what makes the child
	// inherit the raised soft limit (Go restores the original one for
	// children otherwise).
	soft, hard, err := raiseNoFile(uint64(o.conns + o.inflight + 1024))
	if err != nil {
		return fail(fmt.Errorf("open files limit: %w", err))
	}

	dataDir, err := os.MkdirTemp("", "elph-bench-chat-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dataDir)
	env := []string{
		"ELPH_SSO_INITIAL_ADMIN_PASSWORD=" + adminPassword,
		// Setup logs in 10 000 users over minutes: the first tokens must
		// still be good when the send phase starts (1h is the maximum).
		"ELPH_SSO_ACCESS_TOKEN_TTL=1h",
		"ELPH_SSO_LOCKOUT_IP_MAX_FAILURES=100000",
		"ELPH_LOG_LEVEL=warn",
		// Shared by both runs when the server is restarted after setup.
		"ELPH_NODE_DATA_DIR=" + filepath.Join(dataDir, "data"),
		"ELPH_DATABASE_DRIVER=" + o.dbDriver,
	}
	if o.dbDriver == "mysql" {
		env = append(env, "ELPH_DATABASE_DSN="+o.dsn)
	}
	env = append(env, o.serverEnv...)

	node, err := startNode(o.bin, env)
	if err != nil {
		return fail(err)
	}
	// Stopped at the end whatever happens; node is replaced on restart.
	defer func() {
		if node != nil {
			if _, err := node.Stop(30 * time.Second); err != nil {
				fmt.Fprintln(os.Stderr, "chat bench: stop:", err)
			}
		}
	}()
	failLog := func(err error) int {
		fmt.Fprintln(os.Stderr, "chat bench:", err)
		tailLog(node, 20)
		return 1
	}

	m0, err := node.Scrape()
	if err != nil {
		return failLog(err)
	}
	ep := endpoints(node, o.gateway)
	fmt.Printf("chat bench: %s, %d clients in groups of %d, %s msg/s for %s, %s, via %s\n",
		o.bin, o.conns, o.group, joinInts(o.rates), o.dur, o.dbDriver, ep.ws)
	fmt.Printf("open files: this tool %d (hard %d), server %.0f (from its process_max_fds)\n", soft, hard, m0.Get("process_max_fds"))
	if m0.Get("process_max_fds") < float64(o.conns+64) {
		fmt.Printf("  warning: the server may run out of file descriptors for %d connections\n", o.conns)
	}

	// Setup.
	setupCtx, cancelSetup := context.WithTimeout(ctx, o.setupMax)
	users, groups, err := setup(setupCtx, ep, o)
	cancelSetup()
	if err != nil {
		return failLog(fmt.Errorf("setup: %w", err))
	}
	if o.restart {
		at := time.Now()
		if _, err := node.Stop(30 * time.Second); err != nil {
			node = nil
			return fail(fmt.Errorf("stop after setup: %w", err))
		}
		if node, err = startNode(o.bin, env); err != nil {
			return fail(err)
		}
		ep = endpoints(node, o.gateway)
		fmt.Printf("server restarted on the same data in %.1fs (clean memory baseline)\n", time.Since(at).Seconds())
	}
	time.Sleep(2 * time.Second) // let the start settle
	before, err := node.Scrape()
	if err != nil {
		return failLog(err)
	}
	rssBefore, _ := node.RSSKiB()

	// Connect.
	b := newBench(o, users, groups)
	connCtx, cancelConn := context.WithTimeout(ctx, o.connMax)
	connected, took := b.connectAll(connCtx, ep)
	cancelConn()
	defer b.closeAll()
	fmt.Printf("connect: %d/%d clients connected (hello received) in %.1fs, %d at a time; %d failed\n",
		connected, o.conns, took.Seconds(), o.dialC, o.conns-connected)
	if b.firstDialErr != nil {
		fmt.Printf("  first connect error: %v\n", b.firstDialErr)
	}
	if connected == 0 {
		return failLog(errors.New("no client connected"))
	}
	select {
	case <-time.After(o.idle):
	case <-ctx.Done():
		return failLog(ctx.Err())
	}
	idle, err := node.Scrape()
	if err != nil {
		return failLog(err)
	}
	rssIdle, _ := node.RSSKiB()
	perConn := func(a, b float64) float64 { return (b - a) / float64(connected) }
	fmt.Printf("server before connecting: RSS %.1f MiB, Go heap in use %.1f MiB, stacks %.1f MiB, %.0f goroutines\n",
		float64(rssBefore)/1024, before.Get("go_memstats_heap_inuse_bytes")/(1<<20), before.Get("go_memstats_stack_inuse_bytes")/(1<<20), before.Get("go_goroutines"))
	fmt.Printf("server with %d idle connections (after %s): RSS %.1f MiB, Go heap in use %.1f MiB, stacks %.1f MiB, %.0f goroutines, %.0f stream connections\n",
		connected, o.idle, float64(rssIdle)/1024, idle.Get("go_memstats_heap_inuse_bytes")/(1<<20), idle.Get("go_memstats_stack_inuse_bytes")/(1<<20), idle.Get("go_goroutines"), idle.Get("elph_stream_connections"))
	fmt.Printf("  per idle connection: %.1f KiB RSS (Go heap %.1f KiB + stacks %.1f KiB), %.1f goroutines\n\n",
		perConn(float64(rssBefore), float64(rssIdle)),
		perConn(before.Get("go_memstats_heap_inuse_bytes"), idle.Get("go_memstats_heap_inuse_bytes"))/1024,
		perConn(before.Get("go_memstats_stack_inuse_bytes"), idle.Get("go_memstats_stack_inuse_bytes"))/1024,
		perConn(before.Get("go_goroutines"), idle.Get("go_goroutines")))

	// Send phases, each followed by a drain.
	ok := 0
	for pi := range b.phases {
		ph := &b.phases[pi]
		sys0, _ := benchkit.SystemCPU()
		var ru0 syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
		m0, err := node.Scrape()
		if err != nil {
			return failLog(err)
		}
		rss0, _ := node.RSSKiB()
		// Bounded: the sender stops issuing at o.dur, and every send
		// times out after 30s.
		sendCtx, cancelSend := context.WithTimeout(ctx, o.dur+45*time.Second)
		b.sendPhase(sendCtx, ep, ph)
		cancelSend()
		ph.drainedIn = b.waitDrain(ctx, o.drain)
		m1, err := node.Scrape()
		if err != nil {
			return failLog(err)
		}
		rss1, _ := node.RSSKiB()
		var ru1 syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
		sys1, _ := benchkit.SystemCPU()
		ph.span = time.Since(ph.start)
		ph.serverCPU = m1.Get("process_cpu_seconds_total") - m0.Get("process_cpu_seconds_total")
		ph.toolCPU = benchkit.CPUOf(ru1) - benchkit.CPUOf(ru0)
		ph.allCPU = sys1 - sys0
		ph.before, ph.after, ph.rssBefore, ph.rssAfter = m0, m1, rss0, rss1
		ph.held = b.held()
		b.reportPhase(os.Stdout, pi, connected)
		if ph.ok.Load() > 0 {
			ok++
		}
		if ctx.Err() != nil {
			return failLog(ctx.Err())
		}
	}
	if ok == 0 {
		return failLog(errors.New("no message was sent successfully"))
	}
	return 0
}

func joinInts(rs []int) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = strconv.Itoa(r)
	}
	return strings.Join(s, ",")
}

func startNode(bin string, env []string) (*benchkit.Node, error) {
	n, err := benchkit.Start(bin, []string{"serve", "--all"}, env...)
	if err != nil {
		return nil, err
	}
	if _, err := n.WaitReady(60 * time.Second); err != nil {
		tailLog(n, 20)
		_, _ = n.Stop(10 * time.Second)
		return nil, err
	}
	return n, nil
}

// tailLog prints the last lines of the server's log (before Stop removes it).
func tailLog(n *benchkit.Node, lines int) {
	if n == nil {
		return
	}
	b, err := os.ReadFile(filepath.Join(n.Dir, "elph.log"))
	if err != nil || len(b) == 0 {
		return
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	fmt.Fprintf(os.Stderr, "--- last %d lines of the server log:\n", min(lines, len(all)))
	for _, l := range all[max(0, len(all)-lines):] {
		fmt.Fprintln(os.Stderr, l)
	}
}

func raiseNoFile(need uint64) (soft, hard uint64, err error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, 0, err
	}
	if r.Max < need {
		// Only a privileged process may raise the hard limit.
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: need, Max: need}) == nil {
			return need, need, nil
		}
		fmt.Fprintf(os.Stderr, "chat bench: warning: %d open files needed, hard limit is %d\n", need, r.Max)
	}
	r.Cur = r.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, 0, err
	}
	return r.Cur, r.Max, nil
}

// ---- endpoints and REST ----

type endpointSet struct {
	sso, chat, ws string
	http          *http.Client // REST
	wsHTTP        *http.Client // WebSocket handshakes (HTTP/1.1)
}

func endpoints(n *benchkit.Node, viaGateway bool) endpointSet {
	if viaGateway {
		tlsConf := &tls.Config{InsecureSkipVerify: true} // loopback, self-signed
		return endpointSet{
			sso: "https://" + n.Gateway + "/sso", chat: "https://" + n.Gateway + "/chat",
			ws: "wss://" + n.Gateway + "/chat/v1/ws",
			http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
				MaxIdleConnsPerHost: 1024, ForceAttemptHTTP2: true, TLSClientConfig: tlsConf}},
			wsHTTP: &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf,
				TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}},
		}
	}
	return endpointSet{
		sso:    "http://" + n.Env("ELPH_MODULES_SSO_LISTEN"),
		chat:   "http://" + n.Env("ELPH_MODULES_CHAT_LISTEN"),
		ws:     "ws://" + n.Env("ELPH_MODULES_CHAT_LISTEN") + "/v1/ws",
		http:   &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1024}},
		wsHTTP: &http.Client{Transport: &http.Transport{}},
	}
}

// ---- setup ----

type user struct {
	login string
	id    int64
	token string
	group int
}

type group struct {
	convID  int64
	members []int // indexes into users
}

func password(i int) string { return fmt.Sprintf("bench-password-%06d", i) }

func setup(ctx context.Context, ep endpointSet, o options) ([]user, []group, error) {
	var admin struct {
		AccessToken string `json:"access_token"`
	}
	if _, err := benchkit.Call(ctx, ep.http, "POST", ep.sso+"/v1/login", "", map[string]string{
		"login": "admin", "password": adminPassword, "device": "bench"}, &admin, 200); err != nil {
		return nil, nil, fmt.Errorf("admin login: %w", err)
	}
	// A tag per run keeps logins unique in a reused MariaDB database.
	tag := strconv.FormatInt(time.Now().Unix()%1e6, 36)
	users := make([]user, o.conns)
	for i := range users {
		users[i].login = fmt.Sprintf("bench-%s-%05d", tag, i)
	}

	start := time.Now()
	err := parallel(ctx, o.setupC, o.conns, "users created", func(ctx context.Context, i int) error {
		var u struct {
			ID int64 `json:"id"`
		}
		_, err := benchkit.Call(ctx, ep.http, "POST", ep.sso+"/v1/users", admin.AccessToken, map[string]any{
			"login": users[i].login, "password": password(i), "display_name": fmt.Sprintf("Bench User %d", i)}, &u, 201)
		users[i].id = u.ID
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("create users: %w", err)
	}
	created := time.Since(start)

	start = time.Now()
	err = parallel(ctx, o.setupC, o.conns, "logins", func(ctx context.Context, i int) error {
		var t struct {
			AccessToken string `json:"access_token"`
			User        struct {
				ID int64 `json:"id"`
			} `json:"user"`
		}
		if _, err := benchkit.Call(ctx, ep.http, "POST", ep.sso+"/v1/login", "", map[string]string{
			"login": users[i].login, "password": password(i), "device": "bench"}, &t, 200); err != nil {
			return err
		}
		if t.User.ID != users[i].id || t.AccessToken == "" {
			return fmt.Errorf("login %s: user %d, want %d", users[i].login, t.User.ID, users[i].id)
		}
		users[i].token = t.AccessToken
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("log in: %w", err)
	}
	loggedIn := time.Since(start)

	// Groups of o.group consecutive users; a remainder of one joins the
	// last group. The first member creates the group, so the admin is in
	// none of them and every member is a measured client.
	var groups []group
	for lo := 0; lo < o.conns; {
		hi := min(lo+o.group, o.conns)
		if o.conns-hi == 1 {
			hi = o.conns
		}
		g := group{}
		for i := lo; i < hi; i++ {
			g.members = append(g.members, i)
			users[i].group = len(groups)
		}
		groups = append(groups, g)
		lo = hi
	}
	start = time.Now()
	err = parallel(ctx, o.setupC, len(groups), "groups", func(ctx context.Context, gi int) error {
		g := &groups[gi]
		ids := make([]int64, 0, len(g.members)-1)
		for _, m := range g.members[1:] {
			ids = append(ids, users[m].id)
		}
		var conv struct {
			ID int64 `json:"id"`
		}
		_, err := benchkit.Call(ctx, ep.http, "POST", ep.chat+"/v1/conversations", users[g.members[0]].token, map[string]any{
			"kind": "group", "title": fmt.Sprintf("bench group %d", gi), "member_ids": ids}, &conv, 201)
		g.convID = conv.ID
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("create groups: %w", err)
	}
	fmt.Printf("setup: %d users created in %.1fs (%.0f/s), %d logins in %.1fs (%.0f/s), %d groups created in %.1fs; %d requests at a time\n",
		o.conns, created.Seconds(), float64(o.conns)/created.Seconds(), o.conns, loggedIn.Seconds(), float64(o.conns)/loggedIn.Seconds(),
		len(groups), time.Since(start).Seconds(), o.setupC)
	return users, groups, nil
}

// parallel runs fn for 0..n-1 from conc workers and stops at the first
// error. It reports progress on stderr every 15 seconds.
func parallel(ctx context.Context, conc, n int, what string, fn func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next, done atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(ctx, i); err != nil {
					cancel(fmt.Errorf("#%d: %w", i, err))
					return
				}
				done.Add(1)
			}
		})
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	start := time.Now()
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-finished:
			if err := context.Cause(ctx); err != nil && done.Load() < int64(n) {
				return err
			}
			return nil
		case <-tick.C:
			fmt.Fprintf(os.Stderr, "  %s: %d/%d after %.0fs\n", what, done.Load(), n, time.Since(start).Seconds())
		}
	}
}

// ---- clients ----

type bench struct {
	o       options
	users   []user
	groups  []group
	phases  []phase
	clients []*client

	dialMu       sync.Mutex
	firstDialErr error

	// Per message (index = message number, over all phases): deliveries
	// seen and whether the send was answered 201 or 200.
	counts []atomic.Int32
	sentOK []atomic.Bool
	recvd  atomic.Int64 // deliveries of bench messages, echoes included
	expect atomic.Int64 // deliveries expected for the sends answered 201/200
}

// phase is one send phase at one rate; its messages are numbered
// first..first+n-1.
type phase struct {
	rate     int
	first, n int

	mu        sync.Mutex
	sendLat   []time.Duration
	sendErrs  map[string]int
	firstErr  string
	ok        atomic.Int64
	start     time.Time
	sendEnd   time.Time // the last send answered or timed out
	issued    int
	skipped   int // slots the in-flight limit left unsent
	late      int // sends started more than 10 ms after their slot
	maxLag    time.Duration
	drainedIn time.Duration
	span      time.Duration // start to the end of the drain
	serverCPU float64
	toolCPU   float64
	allCPU    float64 // every process on the machine
	before    benchkit.Metrics
	after     benchkit.Metrics
	rssBefore int
	rssAfter  int
	held      int
}

type client struct {
	idx   int
	ws    *websocket.Conn
	hello chan struct{}
	once  sync.Once
	done  chan struct{} // closed when the reader has returned

	dial, toHello time.Duration
	ok            bool // hello received

	// Written by the reader; read by the report under mu.
	mu                     sync.Mutex
	lastSeq                int64
	seqGaps, seqDups       int
	resyncs, other, system int
	lat, echoLat           [][]float64 // per phase, ms
	recvAt                 [][]int64   // per phase: unix ns of each delivery to others
	closed                 atomic.Bool
	closeCode              websocket.StatusCode
	closeErr               error
}

func newBench(o options, users []user, groups []group) *bench {
	b := &bench{o: o, users: users, groups: groups}
	first := 0
	for _, r := range o.rates {
		n := int(int64(r)*int64(o.dur)/int64(time.Second)) + 1
		b.phases = append(b.phases, phase{rate: r, first: first, n: n, sendErrs: map[string]int{}})
		first += n
	}
	b.counts = make([]atomic.Int32, first)
	b.sentOK = make([]atomic.Bool, first)
	return b
}

func (b *bench) phaseOf(id int) int {
	for i := range b.phases {
		if id < b.phases[i].first+b.phases[i].n {
			return i
		}
	}
	return -1
}

// connectAll opens every client's WebSocket with o.dialC handshakes at a
// time; a client counts as connected when its hello frame arrives.
func (b *bench) connectAll(ctx context.Context, ep endpointSet) (int, time.Duration) {
	start := time.Now()
	b.clients = make([]*client, len(b.users))
	sem := make(chan struct{}, b.o.dialC)
	var wg sync.WaitGroup
	var connected atomic.Int64
	progress := time.NewTicker(15 * time.Second)
	defer progress.Stop()
	for i := range b.users {
		c := &client{idx: i, hello: make(chan struct{}), done: make(chan struct{}),
			lat: make([][]float64, len(b.phases)), echoLat: make([][]float64, len(b.phases)), recvAt: make([][]int64, len(b.phases))}
		b.clients[i] = c
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			close(c.done)
			continue
		}
		select {
		case <-progress.C:
			fmt.Fprintf(os.Stderr, "  connected: %d/%d after %.0fs\n", connected.Load(), len(b.users), time.Since(start).Seconds())
		default:
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := b.connect(ctx, ep, c); err != nil {
				b.dialMu.Lock()
				if b.firstDialErr == nil {
					b.firstDialErr = fmt.Errorf("client %d: %w", i, err)
				}
				b.dialMu.Unlock()
				return
			}
			connected.Add(1)
		})
	}
	wg.Wait()
	return int(connected.Load()), time.Since(start)
}

func (b *bench) connect(ctx context.Context, ep endpointSet, c *client) error {
	t0 := time.Now()
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(dctx, ep.ws+"?since=0", &websocket.DialOptions{
		HTTPClient:   ep.wsHTTP,
		Subprotocols: []string{"elph.v1", "bearer." + b.users[c.idx].token},
	})
	if err != nil {
		close(c.done)
		return err
	}
	c.dial = time.Since(t0)
	c.ws = ws
	go b.read(c)
	select {
	case <-c.hello:
		c.toHello = time.Since(t0)
		c.ok = true
		return nil
	case <-c.done:
		return fmt.Errorf("closed before hello: %v", c.closeErr)
	case <-dctx.Done():
		ws.CloseNow()
		return errors.New("no hello within 30s")
	}
}

var (
	keySeq     = []byte(`{"seq":`)
	keyHello   = []byte(`{"type":"hello"`)
	keyResync  = []byte(`{"type":"resync"`)
	keyCreated = []byte(`"type":"chat.message.created"`)
	keyBody    = []byte(`"body":"bench `)
)

// read is the client's reader: it checks the sequence and records every
// bench message's delivery latency. The frames are matched as bytes, not
// decoded, to keep this process's share of the two cores small.
func (b *bench) read(c *client) {
	defer close(c.done)
	for {
		_, f, err := c.ws.Read(context.Background())
		if err != nil {
			c.mu.Lock()
			c.closeErr = err
			c.closeCode = websocket.CloseStatus(err)
			c.mu.Unlock()
			c.closed.Store(true)
			return
		}
		now := time.Now()
		c.mu.Lock()
		b.frame(c, f, now)
		c.mu.Unlock()
	}
}

func (b *bench) frame(c *client, f []byte, now time.Time) {
	switch {
	case bytes.HasPrefix(f, keyHello):
		c.once.Do(func() { close(c.hello) })
		return
	case bytes.HasPrefix(f, keyResync):
		c.resyncs++
		return
	case !bytes.HasPrefix(f, keySeq):
		c.other++
		return
	}
	seq, _ := leadingInt(f[len(keySeq):])
	switch {
	case seq == c.lastSeq+1:
		c.lastSeq = seq
	case seq <= c.lastSeq:
		c.seqDups++
		return
	default:
		c.seqGaps++
		c.lastSeq = seq
	}
	if !bytes.Contains(f, keyCreated) {
		c.other++
		return
	}
	at := bytes.Index(f, keyBody)
	if at < 0 {
		c.system++ // the group's "created" message
		return
	}
	// body: "bench <message> <sender> <unix ns>"
	rest := f[at+len(keyBody):]
	id, n1 := leadingInt(rest)
	sender, n2 := leadingInt(rest[min(n1+1, len(rest)):])
	ts, _ := leadingInt(rest[min(n1+n2+2, len(rest)):])
	p := b.phaseOf(int(id))
	if p < 0 || ts == 0 {
		c.other++
		return
	}
	b.counts[id].Add(1)
	b.recvd.Add(1)
	ms := float64(now.UnixNano()-ts) / 1e6
	if int(sender) == c.idx {
		c.echoLat[p] = append(c.echoLat[p], ms)
	} else {
		c.lat[p] = append(c.lat[p], ms)
		c.recvAt[p] = append(c.recvAt[p], now.UnixNano())
	}
}

// leadingInt parses the decimal digits at the start of b.
func leadingInt(b []byte) (int64, int) {
	var v int64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		v = v*10 + int64(b[i]-'0')
	}
	return v, i
}

func (b *bench) held() int {
	n := 0
	for _, c := range b.clients {
		if c != nil && c.ok && !c.closed.Load() {
			n++
		}
	}
	return n
}

func (b *bench) closeAll() {
	var wg sync.WaitGroup
	for _, c := range b.clients {
		if c != nil && c.ws != nil {
			wg.Go(func() { c.ws.CloseNow() })
		}
	}
	wg.Wait()
	deadline := time.After(10 * time.Second)
	for _, c := range b.clients {
		if c == nil {
			continue
		}
		select {
		case <-c.done:
		case <-deadline:
			return
		}
	}
}

// ---- send ----

// sendPhase posts ph.rate messages a second for o.dur, each from a random
// member of the next group in turn. It is open loop: a slot that finds
// o.inflight sends outstanding is skipped (and counted), so an overloaded
// server shows as a lower achieved rate, not as a longer phase.
func (b *bench) sendPhase(ctx context.Context, ep endpointSet, ph *phase) {
	rng := rand.New(rand.NewPCG(uint64(ph.first), 2))
	sem := make(chan struct{}, b.o.inflight)
	var wg sync.WaitGroup
	ph.start = time.Now()
	for k := range ph.n {
		due := ph.start.Add(time.Duration(int64(k) * int64(time.Second) / int64(ph.rate)))
		if !due.Before(ph.start.Add(b.o.dur)) || ctx.Err() != nil {
			break
		}
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		select {
		case sem <- struct{}{}:
		default:
			ph.skipped++
			continue
		}
		t0 := time.Now()
		if lag := t0.Sub(due); lag > 10*time.Millisecond {
			ph.late++
			ph.maxLag = max(ph.maxLag, lag)
		}
		id := ph.first + k
		g := &b.groups[id%len(b.groups)]
		// The sender is a random member, a connected one when possible.
		sender := g.members[rng.IntN(len(g.members))]
		for try := 0; try < 4 && !b.clients[sender].ok; try++ {
			sender = g.members[rng.IntN(len(g.members))]
		}
		ph.issued++
		wg.Go(func() {
			defer func() { <-sem }()
			b.send(ctx, ep, ph, id, g, sender, t0)
		})
	}
	wg.Wait()
	ph.sendEnd = time.Now()
}

func (b *bench) send(ctx context.Context, ep endpointSet, ph *phase, id int, g *group, sender int, t0 time.Time) {
	body := map[string]string{
		"client_id": "b" + strconv.Itoa(id),
		"body":      fmt.Sprintf("bench %d %d %d", id, sender, t0.UnixNano()),
	}
	status, err := benchkit.Call(ctx, ep.http, "POST", ep.chat+"/v1/conversations/"+strconv.FormatInt(g.convID, 10)+"/messages",
		b.users[sender].token, body, nil, 201, 200)
	took := time.Since(t0)
	ph.mu.Lock()
	defer ph.mu.Unlock()
	if err != nil {
		key := "transport error"
		if status != 0 {
			key = "HTTP " + strconv.Itoa(status)
		}
		ph.sendErrs[key]++
		if ph.firstErr == "" {
			ph.firstErr = err.Error()
		}
		return
	}
	ph.sendLat = append(ph.sendLat, took)
	b.sentOK[id].Store(true)
	ph.ok.Add(1)
	b.expect.Add(int64(len(g.members)))
}

// waitDrain waits until every expected delivery arrived, or limit.
func (b *bench) waitDrain(ctx context.Context, limit time.Duration) time.Duration {
	start := time.Now()
	for time.Since(start) < limit && ctx.Err() == nil {
		if b.recvd.Load() >= b.expect.Load() {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// ---- report ----

// reportConnect prints the connect rows of the table.
func (b *bench) connectRows(w io.Writer) {
	var dial, hello []time.Duration
	for _, c := range b.clients {
		if c != nil && c.ok {
			dial = append(dial, c.dial)
			hello = append(hello, c.toHello)
		}
	}
	benchkit.Row(w, "ws connect (handshake)", "ms", benchkit.Millis(dial))
	benchkit.Row(w, "ws connect (to hello)", "ms", benchkit.Millis(hello))
}

// reportPhase prints what phase pi measured. Deliveries still arriving
// after the drain are not counted as lost: the figures are a snapshot.
func (b *bench) reportPhase(w io.Writer, pi, connected int) {
	ph := &b.phases[pi]
	var lat, echo []float64
	var recvAt []int64
	var gaps, dups, resyncs, system int
	closes := map[string]int{}
	for _, c := range b.clients {
		if c == nil || !c.ok {
			continue
		}
		c.mu.Lock()
		lat = append(lat, c.lat[pi]...)
		echo = append(echo, c.echoLat[pi]...)
		recvAt = append(recvAt, c.recvAt[pi]...)
		gaps += c.seqGaps
		dups += c.seqDups
		resyncs += c.resyncs
		system += c.system
		if c.closed.Load() {
			closes[closeName(c)]++
		}
		c.mu.Unlock()
	}
	var expected, got, lost, extra, ofFailed int64
	for id := ph.first; id < ph.first+ph.n; id++ {
		n := int64(b.counts[id].Load())
		if !b.sentOK[id].Load() {
			ofFailed += n
			continue
		}
		exp := int64(len(b.groups[id%len(b.groups)].members))
		expected += exp
		got += min(n, exp)
		lost += max(0, exp-n)
		extra += max(0, n-exp)
	}
	ph.mu.Lock()
	defer ph.mu.Unlock()
	okN := ph.ok.Load()

	fmt.Fprintf(w, "\n== phase %d: %d msg/s for %s (groups of %d, %d groups, %d clients connected)\n", pi+1, ph.rate, b.o.dur, b.o.group, len(b.groups), connected)
	benchkit.Header(w)
	if pi == 0 {
		b.connectRows(w)
	}
	benchkit.Row(w, "send (POST → 201)", "ms", benchkit.Millis(ph.sendLat))
	benchkit.Row(w, "send→deliver (other members)", "ms", lat)
	benchkit.Row(w, "send→deliver (own echo)", "ms", echo)

	win := b.o.dur.Seconds()
	endWin := ph.start.Add(b.o.dur).UnixNano()
	inWin, last := 0, int64(0)
	for _, t := range recvAt {
		if t <= endWin {
			inWin++
		}
		last = max(last, t)
	}
	fmt.Fprintf(w, "sent: %d answered 201 of %d posted (%.1f msg/s over the %s window, target %d); %d slots skipped at the in-flight limit (%d); %d sends >10 ms late (max %.0f ms); last answer %.1fs after the start\n",
		okN, ph.issued, float64(okN)/win, b.o.dur, ph.rate, ph.skipped, b.o.inflight, ph.late, float64(ph.maxLag.Microseconds())/1000, ph.sendEnd.Sub(ph.start).Seconds())
	if len(ph.sendErrs) > 0 {
		fmt.Fprintf(w, "  send errors: %v; first: %s\n", ph.sendErrs, ph.firstErr)
	}
	fmt.Fprintf(w, "delivered: %d of %d expected for the answered sends (every member, the sender's own echo included: %d echoes, %d to others); lost %d, duplicates %d; %d deliveries of sends not answered (stored after a client timeout)\n",
		got, expected, len(echo), len(lat), lost, extra, ofFailed)
	if last > 0 {
		span := float64(last-ph.start.UnixNano()) / 1e9
		fmt.Fprintf(w, "deliveries/s to other members: %.0f within the %s window; %.0f over the %.1fs to the last delivery (%.0f with echoes)\n",
			float64(inWin)/win, b.o.dur, float64(len(lat))/span, span, float64(len(lat)+len(echo))/span)
	}
	fmt.Fprintf(w, "client checks (all phases so far): seq gaps %d, seq repeats %d, resyncs %d\n", gaps, dups, resyncs)
	fmt.Fprintf(w, "drain after the window: %.1fs (limit %s)\n", ph.drainedIn.Seconds(), b.o.drain)
	fmt.Fprintf(w, "connections held at the end: %d of %d connected (%d asked); the server counts %.0f stream connections\n",
		ph.held, connected, b.o.conns, ph.after.Get("elph_stream_connections"))
	if len(closes) > 0 {
		fmt.Fprintf(w, "  closed so far: %v\n", closes)
	}
	sp := ph.span.Seconds()
	fmt.Fprintf(w, "CPU over the %.1fs from the start to the end of the drain: server %.1fs (%.0f%% of one core), this tool %.1fs (%.0f%%), other processes %.1fs (%.0f%%); 2 cores = 200%%\n",
		sp, ph.serverCPU, 100*ph.serverCPU/sp, ph.toolCPU, 100*ph.toolCPU/sp,
		max(0, ph.allCPU-ph.serverCPU-ph.toolCPU), 100*max(0, ph.allCPU-ph.serverCPU-ph.toolCPU)/sp)
	fmt.Fprintf(w, "server RSS: %.1f MiB before the phase, %.1f MiB after; Go heap in use %.1f MiB after; %.0f goroutines after\n",
		float64(ph.rssBefore)/1024, float64(ph.rssAfter)/1024, ph.after.Get("go_memstats_heap_inuse_bytes")/(1<<20), ph.after.Get("go_goroutines"))
	d := func(name string) float64 { return ph.after.Get(name) - ph.before.Get(name) }
	fmt.Fprintf(w, "server counters: messages %.0f; stream appended %.0f, delivered %.0f, of which replayed from the database %.0f; slow disconnects (4008) %.0f; bus backpressure %.0f, dropped %.0f, handler errors %.0f\n",
		d("elph_chat_messages_total"), d("elph_stream_appended_total"), d("elph_stream_delivered_total"), d("elph_stream_replayed_total"),
		d("elph_stream_slow_disconnects_total"), d("elph_bus_backpressure_total"), d("elph_bus_dropped_total"), d("elph_bus_handler_errors_total"))
	if pi == 0 {
		fmt.Fprintf(w, "(not counted above: the groups' \"created\" system messages replayed on connect, %d seen)\n", system)
	}
}

func closeName(c *client) string {
	if c.closeCode != -1 {
		return "close " + strconv.Itoa(int(c.closeCode))
	}
	if c.closeErr != nil {
		return "dropped"
	}
	return "closed"
}

// ---- server metrics ----

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "chat bench:", err)
	return 1
}
