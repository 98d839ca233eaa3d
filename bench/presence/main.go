// Command presence measures presence fan-out from outside: N users each
// hold one authenticated WebSocket and watch K random other users
// (status.watch); then, at a fixed rate, random users flip their choice
// between away and online over REST (PUT /v1/me/choice), and every
// watching connection's presence signal is timed from the request.
//
// It starts `elph serve --all`, creates the users through the admin API,
// logs each in once, (by default) restarts the server on the same data so
// the memory figures are not inflated by the setup's password hashing,
// connects every user, and prints per rate phase: the changes achieved,
// the REST latency, deliveries per second, the fan-out, the change →
// watcher latency, lost and duplicate deliveries, and the server's CPU,
// memory and counters. A user has one change in flight at a time (until
// its request is answered and every watcher got it, or -hold after the
// answer), so each delivery belongs to exactly one change. Only users the
// server shows online after connecting take part (a user shown offline
// announces nothing whatever they choose). Everything runs from this
// process over loopback; every phase is bounded in time.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
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
	users     int
	watch     int
	rates     []int
	dur       time.Duration
	dbDriver  string
	dsn       string
	setupC    int
	dialC     int
	inflight  int
	drain     time.Duration
	hold      time.Duration
	settle    time.Duration
	restart   bool
	seed      uint64
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
	flag.IntVar(&o.users, "users", 1000, "users, each with one WebSocket connection")
	flag.IntVar(&o.watch, "watch", 100, "random other users each connection watches (status.watch)")
	rates := flag.String("rate", "500", "presence changes per second in total; a list (500,1000) runs one phase per rate on the same connections")
	flag.DurationVar(&o.dur, "d", 20*time.Second, "duration of each change phase")
	flag.StringVar(&o.dbDriver, "dbdriver", "sqlite", "database driver: sqlite (in the temp data dir) or mysql (with -dsn)")
	flag.StringVar(&o.dsn, "dsn", "", "mysql DSN, e.g. root@tcp(127.0.0.1:3306)/elph_bench_presence")
	flag.IntVar(&o.setupC, "setupc", 8, "concurrent requests while creating users and logging in")
	flag.IntVar(&o.dialC, "dialc", 64, "concurrent WebSocket handshakes (each followed by its status.watch)")
	flag.IntVar(&o.inflight, "inflight", 256, "changes (PUTs) in flight at most; a slot that finds this many outstanding is skipped and counted (open loop)")
	flag.DurationVar(&o.drain, "drain", 10*time.Second, "how long to wait for outstanding deliveries after each phase")
	flag.DurationVar(&o.hold, "hold", 5*time.Second, "a user whose change is answered but not yet seen by every watcher gets its next change this long after the answer at the earliest (much shorter than the delivery latency makes deliveries ambiguous: counted as lost + duplicates)")
	flag.DurationVar(&o.settle, "settle", 15*time.Second, "at most this long after connecting for the connect-time presence signals to stop")
	flag.BoolVar(&o.restart, "restart", true, "restart the server on the same data after setup, for a clean memory baseline")
	flag.Uint64Var(&o.seed, "seed", 1, "seed of the watch sets and of the choice of users")
	flag.DurationVar(&o.setupMax, "setup-timeout", 20*time.Minute, "time limit of the setup (users, logins)")
	flag.DurationVar(&o.connMax, "connect-timeout", 3*time.Minute, "time limit of connecting and watching for every client")
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
	case o.users < 2 || o.watch < 1 || o.dur <= 0 || o.setupC < 1 || o.dialC < 1 || o.inflight < 1 || o.hold <= 0:
		return fail(errors.New("need -users ≥ 2, -watch ≥ 1, -d > 0, -hold > 0 and positive concurrencies"))
	case o.watch > o.users-1:
		return fail(fmt.Errorf("-watch %d: at most -users − 1 = %d (other users)", o.watch, o.users-1))
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

	// A socket per client on both sides, plus the PUT pool. An explicit
	// Setrlimit is also what makes the child inherit the raised soft limit.
	soft, hard, err := raiseNoFile(uint64(o.users + o.inflight + 1024))
	if err != nil {
		return fail(fmt.Errorf("open files limit: %w", err))
	}

	dataDir, err := os.MkdirTemp("", "elph-bench-presence-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dataDir)
	env := []string{
		"ELPH_SSO_INITIAL_ADMIN_PASSWORD=" + adminPassword,
		// The first tokens must still be good when the last phase runs.
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
	defer func() {
		if node != nil {
			if err := stopNode(node); err != nil {
				fmt.Fprintln(os.Stderr, "presence bench: stop:", err)
			}
		}
	}()
	failLog := func(err error) int {
		fmt.Fprintln(os.Stderr, "presence bench:", err)
		tailLog(node, 30)
		return 1
	}

	m0, err := node.Scrape()
	if err != nil {
		return failLog(err)
	}
	ep := endpoints(node)
	fmt.Printf("presence bench: %s, %d users each watching %d others, %s changes/s for %s, %s, via %s and %s (admin %s)\n",
		o.bin, o.users, o.watch, joinInts(o.rates), o.dur, o.dbDriver, ep.ws, ep.status, node.Admin)
	fmt.Printf("open files: this tool %d (hard %d), server %.0f (from its process_max_fds)\n", soft, hard, m0.Get("process_max_fds"))

	// Setup.
	setupCtx, cancelSetup := context.WithTimeout(ctx, o.setupMax)
	users, err := setup(setupCtx, ep, o)
	cancelSetup()
	if err != nil {
		return failLog(fmt.Errorf("setup: %w", err))
	}
	if o.restart {
		at := time.Now()
		if err := stopNode(node); err != nil {
			node = nil
			return fail(fmt.Errorf("stop after setup: %w", err))
		}
		if node, err = startNode(o.bin, env); err != nil {
			return fail(err)
		}
		ep = endpoints(node)
		fmt.Printf("server restarted on the same data in %.1fs (clean memory baseline; admin %s)\n", time.Since(at).Seconds(), node.Admin)
	}
	time.Sleep(2 * time.Second) // let the start settle
	before, err := node.Scrape()
	if err != nil {
		return failLog(err)
	}
	rssBefore, _ := node.RSSKiB()

	// Connect and watch.
	b := newBench(o, users)
	connCtx, cancelConn := context.WithTimeout(ctx, o.connMax)
	connected, took := b.connectAll(connCtx, ep)
	cancelConn()
	defer b.closeAll()
	fmt.Printf("connect: %d/%d clients connected and watching (presence_list received) in %.1fs, %d at a time; %d failed\n",
		connected, o.users, took.Seconds(), o.dialC, o.users-connected)
	if b.firstDialErr != nil {
		fmt.Printf("  first connect error: %v\n", b.firstDialErr)
	}
	if connected == 0 {
		return failLog(errors.New("no client connected"))
	}
	quiet, seen := b.settle(ctx)
	fmt.Printf("connect-time presence signals: %d received; quiet after %.1fs (limit %s)\n", seen, quiet.Seconds(), o.settle)
	states, err := b.queryStates(ctx, ep)
	if err != nil {
		return failLog(fmt.Errorf("presence of the connected users: %w", err))
	}
	inPlay := b.countWatchers()
	fmt.Printf("the server shows the %d connected users as %v; %d online ones take part (only a connected, online user's choice is announced)\n",
		connected, states, inPlay)
	if inPlay == 0 {
		return failLog(errors.New("no connected user is online"))
	}
	idle, err := node.Scrape()
	if err != nil {
		return failLog(err)
	}
	rssIdle, _ := node.RSSKiB()
	fmt.Printf("server before connecting: RSS %.1f MiB, %.0f goroutines; with %d connections: RSS %.1f MiB, Go heap in use %.1f MiB, %.0f goroutines, %.0f stream connections, %.0f presence devices, %.0f watched pairs (asked %d)\n\n",
		float64(rssBefore)/1024, before.Get("go_goroutines"), connected, float64(rssIdle)/1024,
		idle.Get("go_memstats_heap_inuse_bytes")/(1<<20), idle.Get("go_goroutines"), idle.Get("elph_stream_connections"),
		idle.Get("elph_status_devices"), idle.Get("elph_status_watches"), connected*o.watch)

	stopSweep := b.startSweeper()
	defer stopSweep()

	// Change phases, each followed by a drain.
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
		// Bounded: the sender stops issuing at o.dur, and every PUT
		// times out after 30s.
		sendCtx, cancelSend := context.WithTimeout(ctx, o.dur+45*time.Second)
		b.changePhase(sendCtx, ep, ph)
		cancelSend()
		ph.drainedIn = b.waitDrain(ctx, ph, o.drain)
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
	logSummary(os.Stdout, node, 8)
	if ok == 0 {
		return failLog(errors.New("no change was answered 200"))
	}
	return 0
}

// logSummary prints the server log's warnings and errors of the whole run
// counted by kind (the line without its time, numbers folded to N), the
// most frequent first.
func logSummary(w io.Writer, n *benchkit.Node, kinds int) {
	b, err := os.ReadFile(filepath.Join(n.Dir, "elph.log"))
	if err != nil {
		return
	}
	count := map[string]int{}
	total := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		if !strings.Contains(line, "level=ERROR") && !strings.Contains(line, "level=WARN") &&
			!strings.Contains(line, `"level":"ERROR"`) && !strings.Contains(line, `"level":"WARN"`) {
			continue
		}
		total++
		if _, rest, ok := strings.Cut(line, " "); ok && strings.HasPrefix(line, "time=") {
			line = rest
		}
		count[foldDigits(line)]++
	}
	if total == 0 {
		fmt.Fprintln(w, "\nserver log: no warnings or errors")
		return
	}
	keys := make([]string, 0, len(count))
	for k := range count {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return count[b] - count[a] })
	fmt.Fprintf(w, "\nserver log: %d warnings and errors of %d kinds (numbers shown as N):\n", total, len(keys))
	for _, k := range keys[:min(kinds, len(keys))] {
		shown := k
		if len(shown) > 300 {
			shown = shown[:300] + "…"
		}
		fmt.Fprintf(w, "  %6d× %s\n", count[k], shown)
	}
}

// foldDigits replaces every run of digits with N.
func foldDigits(s string) string {
	var sb strings.Builder
	digits := false
	for _, r := range s {
		if r >= '0' && r <= '9' {
			if !digits {
				sb.WriteByte('N')
			}
			digits = true
			continue
		}
		digits = false
		sb.WriteRune(r)
	}
	return sb.String()
}

func joinInts(rs []int) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = strconv.Itoa(r)
	}
	return strings.Join(s, ",")
}

// startNode starts `elph serve --all` and waits until it is ready. A start
// that failed because two listeners got the same port is tried again (at
// most three times): benchkit.FreePort picks each port by binding and
// releasing it, so two picks can coincide.
func startNode(bin string, env []string) (*benchkit.Node, error) {
	for attempt := 1; ; attempt++ {
		n, err := benchkit.Start(bin, []string{"serve", "--all"}, env...)
		if err != nil {
			return nil, err
		}
		_, err = n.WaitReady(60 * time.Second)
		if err == nil {
			return n, nil
		}
		log, _ := os.ReadFile(filepath.Join(n.Dir, "elph.log"))
		collision := bytes.Contains(log, []byte("is also used by")) || bytes.Contains(log, []byte("address already in use"))
		tailLog(n, 30)
		abandon(n, strings.Contains(err.Error(), "exited before"))
		if !collision || attempt == 3 {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "presence bench: two listeners got the same free port; starting again (attempt %d of 3)\n", attempt+1)
	}
}

// stopNode stops n (SIGTERM, 30 s) and, when that fails, prints the tail
// of its log, read through a descriptor opened before Stop removes it.
func stopNode(n *benchkit.Node) error {
	f, ferr := os.Open(filepath.Join(n.Dir, "elph.log"))
	if ferr == nil {
		defer f.Close()
	}
	_, err := n.Stop(30 * time.Second)
	if err != nil && ferr == nil {
		b, _ := io.ReadAll(f)
		printTail(b, 30)
	}
	return err
}

// abandon stops a node that did not get ready. Node.Stop waits for the
// exit WaitReady has already consumed when the process exited by itself,
// so it would block for ever: then only the directory is removed, and
// otherwise Stop gets a bounded time.
func abandon(n *benchkit.Node, exited bool) {
	if !exited {
		stopped := make(chan struct{})
		go func() { _, _ = n.Stop(10 * time.Second); close(stopped) }()
		select {
		case <-stopped:
			return
		case <-time.After(15 * time.Second):
		}
	}
	_ = os.RemoveAll(n.Dir)
}

// tailLog prints the last lines of the server's log (before Stop removes it).
func tailLog(n *benchkit.Node, lines int) {
	if n == nil {
		return
	}
	b, _ := os.ReadFile(filepath.Join(n.Dir, "elph.log"))
	printTail(b, lines)
}

func printTail(b []byte, lines int) {
	if len(b) == 0 {
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
		fmt.Fprintf(os.Stderr, "presence bench: warning: %d open files needed, hard limit is %d\n", need, r.Max)
	}
	r.Cur = r.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, 0, err
	}
	return r.Cur, r.Max, nil
}

// ---- endpoints and REST ----

// endpointSet is the modules' own loopback listeners (no gateway).
type endpointSet struct {
	sso, status, ws string
	http            *http.Client // REST
	wsHTTP          *http.Client // WebSocket handshakes (HTTP/1.1)
}

func endpoints(n *benchkit.Node) endpointSet {
	return endpointSet{
		sso:    "http://" + n.Env("ELPH_MODULES_SSO_LISTEN"),
		status: "http://" + n.Env("ELPH_MODULES_STATUS_LISTEN"),
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
}

func password(i int) string { return fmt.Sprintf("bench-password-%06d", i) }

func setup(ctx context.Context, ep endpointSet, o options) ([]user, error) {
	var admin struct {
		AccessToken string `json:"access_token"`
	}
	if _, err := benchkit.Call(ctx, ep.http, "POST", ep.sso+"/v1/login", "", map[string]string{
		"login": "admin", "password": adminPassword, "device": "bench"}, &admin, 200); err != nil {
		return nil, fmt.Errorf("admin login: %w", err)
	}
	// A tag per run keeps logins unique in a reused MariaDB database.
	tag := strconv.FormatInt(time.Now().Unix()%1e6, 36)
	users := make([]user, o.users)
	for i := range users {
		users[i].login = fmt.Sprintf("presence-%s-%05d", tag, i)
	}

	start := time.Now()
	err := parallel(ctx, o.setupC, o.users, "users created", func(ctx context.Context, i int) error {
		var u struct {
			ID int64 `json:"id"`
		}
		_, err := benchkit.Call(ctx, ep.http, "POST", ep.sso+"/v1/users", admin.AccessToken, map[string]any{
			"login": users[i].login, "password": password(i), "display_name": fmt.Sprintf("Presence User %d", i)}, &u, 201)
		users[i].id = u.ID
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create users: %w", err)
	}
	created := time.Since(start)

	start = time.Now()
	err = parallel(ctx, o.setupC, o.users, "logins", func(ctx context.Context, i int) error {
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
		return nil, fmt.Errorf("log in: %w", err)
	}
	loggedIn := time.Since(start)
	fmt.Printf("setup: %d users created in %.1fs (%.0f/s), %d logins in %.1fs (%.0f/s); %d requests at a time\n",
		o.users, created.Seconds(), float64(o.users)/created.Seconds(), o.users, loggedIn.Seconds(), float64(o.users)/loggedIn.Seconds(), o.setupC)
	return users, nil
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

// ---- state ----

// Choices the load alternates between; each is a visible state change
// for a connected user (away ↔ online).
const (
	stateOnline = "online"
	stateAway   = "away"
)

type bench struct {
	o       options
	users   []user
	byID    map[int64]int // user id → index; read-only after newBench
	watches [][]int       // per user: the users their connection watches
	phases  []phase
	clients []*client

	// watchers[u]: the clients watching u (filled by countWatchers once
	// the connections are up; only clients that got their presence_list).
	watchers [][]int

	dialMu       sync.Mutex
	firstDialErr error

	// changes are numbered over all phases; current[u] is 1 + the number
	// of u's latest change (0: none yet).
	changes []change
	current []atomic.Int64
	choice  []string // u's choice after its last answered change; the load's goroutines own it while u is taken
	online  []bool   // the server showed u online after connecting
	pool    pool

	presenceSeen atomic.Int64 // every presence signal of another user, for settle
	timedOut     atomic.Int64 // changes whose user was released by -hold
	retired      atomic.Int64 // users out of play after a failed or unexpected answer
}

// change is one PUT /v1/me/choice of one user.
type change struct {
	user     int
	prev     int64  // 1 + the number of the user's change before this one (0: none)
	state    string // the state asked, and expected in the watchers' signals
	t0       int64  // unix ns, just before the request
	expected int32  // watchers connected when it was issued
	got      atomic.Int32
	dups     atomic.Int32
	// remaining counts down the watchers to deliver to plus the answer;
	// at zero the user gets back into the pool.
	remaining atomic.Int32
	answered  atomic.Bool  // the PUT returned (whatever the result)
	answerAt  atomic.Int64 // unix ns of the answer, for -hold
	ok        atomic.Bool  // ... with 200 and the state chosen: watchers are expected to see it
	released  atomic.Bool
}

// phase is one change phase at one rate; its changes are numbered
// first..first+n-1 (slots; those not issued stay zero).
type phase struct {
	rate     int
	first, n int

	mu         sync.Mutex
	putLat     []time.Duration
	putErrs    map[string]int
	firstErr   string
	wrongState map[string]int // answered 200 with another state than asked, by that state
	ok         atomic.Int64   // answered 200
	start      time.Time
	sendEnd    time.Time
	issued     int
	skipped    int // slots the in-flight limit left unsent
	noUser     int // slots that found every user with a change outstanding
	late       int
	maxLag     time.Duration
	drainedIn  time.Duration
	span       time.Duration
	serverCPU  float64
	toolCPU    float64
	allCPU     float64
	before     benchkit.Metrics
	after      benchkit.Metrics
	rssBefore  int
	rssAfter   int
	held       int
}

func newBench(o options, users []user) *bench {
	b := &bench{o: o, users: users, byID: make(map[int64]int, len(users))}
	for i, u := range users {
		b.byID[u.id] = i
	}
	// K distinct random others per user.
	rng := rand.New(rand.NewPCG(o.seed, 1))
	b.watches = make([][]int, len(users))
	for i := range users {
		picked := make(map[int]bool, o.watch)
		w := make([]int, 0, o.watch)
		for len(w) < o.watch {
			j := rng.IntN(len(users))
			if j == i || picked[j] {
				continue
			}
			picked[j] = true
			w = append(w, j)
		}
		b.watches[i] = w
	}
	first := 0
	for _, r := range o.rates {
		n := int(int64(r)*int64(o.dur)/int64(time.Second)) + 1
		b.phases = append(b.phases, phase{rate: r, first: first, n: n, putErrs: map[string]int{}, wrongState: map[string]int{}})
		first += n
	}
	b.changes = make([]change, first)
	b.current = make([]atomic.Int64, len(users))
	b.choice = make([]string, len(users))
	for i := range b.choice {
		b.choice[i] = stateOnline // the automatic choice of a new user
	}
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

// pool is the users without a change outstanding.
type pool struct {
	mu   sync.Mutex
	free []int
	pos  []int // index in free, -1 when taken
}

func (p *pool) init(users []int, n int) {
	p.pos = make([]int, n)
	for i := range p.pos {
		p.pos[i] = -1
	}
	for _, u := range users {
		p.pos[u] = len(p.free)
		p.free = append(p.free, u)
	}
}

func (p *pool) take(rng *rand.Rand) (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) == 0 {
		return 0, false
	}
	i := rng.IntN(len(p.free))
	u := p.free[i]
	last := p.free[len(p.free)-1]
	p.free[i], p.pos[last] = last, i
	p.free = p.free[:len(p.free)-1]
	p.pos[u] = -1
	return u, true
}

func (p *pool) put(u int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pos[u] >= 0 {
		return
	}
	p.pos[u] = len(p.free)
	p.free = append(p.free, u)
}

// release puts the change's user back into the pool, once.
func (b *bench) release(ch *change) {
	if ch.released.CompareAndSwap(false, true) {
		b.pool.put(ch.user)
	}
}

// ---- clients ----

type client struct {
	idx      int
	ws       *websocket.Conn
	hello    chan struct{}
	listed   chan struct{} // presence_list received
	once     sync.Once
	listOnce sync.Once
	done     chan struct{} // closed when the reader has returned
	watching map[int]bool  // user indexes

	dial, toHello, toList time.Duration
	ok                    bool // connected and watching

	// Written by the reader; read by the report under mu.
	mu         sync.Mutex
	listN      int           // presences in the presence_list
	statusErr  string        // a status_error signal
	last       map[int]int64 // watched user → the change last delivered here
	lat        [][]float64   // per phase, ms
	recvAt     [][]int64     // per phase: unix ns of each delivery
	self       int           // own presence signals (ignored)
	idleSig    int           // presence of a user with no change yet (connect time)
	late       int           // deliveries of the user's previous change (after -hold)
	stale      int           // a state neither of the user's current nor previous change
	unexpected int           // presence of a user this client does not watch
	dups       int           // the same change twice
	other      int           // frames of no interest
	closed     atomic.Bool
	closeCode  websocket.StatusCode
	closeErr   error
}

// connectAll opens every client's WebSocket with o.dialC at a time, sends
// its status.watch and waits for the presence_list; a client counts as
// connected when that arrives.
func (b *bench) connectAll(ctx context.Context, ep endpointSet) (int, time.Duration) {
	start := time.Now()
	b.clients = make([]*client, len(b.users))
	sem := make(chan struct{}, b.o.dialC)
	var wg sync.WaitGroup
	var connected atomic.Int64
	progress := time.NewTicker(15 * time.Second)
	defer progress.Stop()
	for i := range b.users {
		c := &client{idx: i, hello: make(chan struct{}), listed: make(chan struct{}), done: make(chan struct{}),
			watching: make(map[int]bool, len(b.watches[i])), last: make(map[int]int64, len(b.watches[i])),
			lat: make([][]float64, len(b.phases)), recvAt: make([][]int64, len(b.phases))}
		for _, u := range b.watches[i] {
			c.watching[u] = true
		}
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

type watchFrame struct {
	Type string `json:"type"`
	Data struct {
		Users []int64 `json:"users"`
	} `json:"data"`
}

func (b *bench) connect(ctx context.Context, ep endpointSet, c *client) error {
	t0 := time.Now()
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(dctx, ep.ws, &websocket.DialOptions{
		HTTPClient:   ep.wsHTTP,
		HTTPHeader:   http.Header{"Authorization": {"Bearer " + b.users[c.idx].token}},
		Subprotocols: []string{"elph.v1"},
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
	case <-c.done:
		return fmt.Errorf("closed before hello: %v", c.closeErr)
	case <-dctx.Done():
		ws.CloseNow()
		return errors.New("no hello within 30s")
	}
	var f watchFrame
	f.Type = "status.watch"
	for _, u := range b.watches[c.idx] {
		f.Data.Users = append(f.Data.Users, b.users[u].id)
	}
	frame, _ := json.Marshal(f)
	t1 := time.Now()
	if err := ws.Write(dctx, websocket.MessageText, frame); err != nil {
		ws.CloseNow()
		return fmt.Errorf("status.watch: %w", err)
	}
	select {
	case <-c.listed:
		c.toList = time.Since(t1)
	case <-c.done:
		return fmt.Errorf("closed before presence_list: %v", c.closeErr)
	case <-dctx.Done():
		ws.CloseNow()
		return errors.New("no presence_list within 30s of the hello")
	}
	c.mu.Lock()
	n, serr := c.listN, c.statusErr
	c.mu.Unlock()
	if serr != "" {
		ws.CloseNow()
		return fmt.Errorf("status.watch refused: %s", serr)
	}
	if n != len(b.watches[c.idx]) {
		ws.CloseNow()
		return fmt.Errorf("presence_list has %d presences, %d watched", n, len(b.watches[c.idx]))
	}
	c.ok = true
	return nil
}

var (
	keyHello      = []byte(`{"type":"hello"`)
	keyPresence   = []byte(`{"type":"signal","signal":"presence","data":{"user_id":`)
	keyState      = []byte(`,"state":"`)
	keyList       = []byte(`{"type":"signal","signal":"presence_list"`)
	keyStatusErr  = []byte(`{"type":"signal","signal":"status_error"`)
	keySignalType = []byte(`"type":"signal"`)
)

// read is the client's reader. Presence frames are matched as bytes, not
// decoded, to keep this process's share of the two cores small; a frame
// of another shape is decoded.
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

type signalFrame struct {
	Type   string          `json:"type"`
	Signal string          `json:"signal"`
	Data   json.RawMessage `json:"data"`
}

type presence struct {
	UserID int64  `json:"user_id"`
	State  string `json:"state"`
}

func (b *bench) frame(c *client, f []byte, now time.Time) {
	switch {
	case bytes.HasPrefix(f, keyPresence):
		rest := f[len(keyPresence):]
		id, n := leadingInt(rest)
		rest = rest[n:]
		if n > 0 && bytes.HasPrefix(rest, keyState) {
			rest = rest[len(keyState):]
			if end := bytes.IndexByte(rest, '"'); end > 0 {
				b.presence(c, id, string(rest[:end]), now)
				return
			}
		}
	case bytes.HasPrefix(f, keyHello):
		c.once.Do(func() { close(c.hello) })
		return
	case bytes.HasPrefix(f, keyList):
		var s struct {
			Data struct {
				Presences []presence `json:"presences"`
			} `json:"data"`
		}
		_ = json.Unmarshal(f, &s)
		c.listN = len(s.Data.Presences)
		c.listOnce.Do(func() { close(c.listed) })
		return
	case bytes.HasPrefix(f, keyStatusErr):
		var s struct {
			Data struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"data"`
		}
		_ = json.Unmarshal(f, &s)
		c.statusErr = s.Data.Code + ": " + s.Data.Message
		c.listOnce.Do(func() { close(c.listed) })
		return
	case !bytes.Contains(f, keySignalType):
		c.other++
		return
	}
	// Another layout than expected: decode.
	var s signalFrame
	if err := json.Unmarshal(f, &s); err != nil || s.Type != "signal" || s.Signal != "presence" {
		c.other++
		return
	}
	var p presence
	if err := json.Unmarshal(s.Data, &p); err != nil {
		c.other++
		return
	}
	b.presence(c, p.UserID, p.State, now)
}

// presence attributes one presence signal to the change it announces.
func (b *bench) presence(c *client, id int64, state string, now time.Time) {
	u, ok := b.byID[id]
	switch {
	case !ok:
		c.unexpected++
		return
	case u == c.idx:
		c.self++
		return
	}
	b.presenceSeen.Add(1)
	cur := b.current[u].Load()
	if cur == 0 {
		c.idleSig++
		return
	}
	ch := &b.changes[cur-1]
	if ch.state != state {
		// A delivery of the user's previous change that came later than
		// -hold after its answer, or a state the load did not cause.
		prev := ch.prev
		if prev == 0 || b.changes[prev-1].state != state || c.last[u] == prev {
			c.stale++
			return
		}
		c.late++
		cur, ch = prev, &b.changes[prev-1]
	}
	switch {
	case !c.watching[u]:
		c.unexpected++
		return
	case c.last[u] == cur:
		c.dups++
		ch.dups.Add(1)
		return
	}
	c.last[u] = max(c.last[u], cur)
	ch.got.Add(1)
	if p := b.phaseOf(int(cur - 1)); p >= 0 {
		c.lat[p] = append(c.lat[p], float64(now.UnixNano()-ch.t0)/1e6)
		c.recvAt[p] = append(c.recvAt[p], now.UnixNano())
	}
	if ch.remaining.Add(-1) == 0 {
		b.release(ch)
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

// settle waits until no presence signal of another user has arrived for
// a second (the connect-time "online" changes), at most o.settle.
func (b *bench) settle(ctx context.Context) (time.Duration, int64) {
	start := time.Now()
	last, quietSince := b.presenceSeen.Load(), time.Now()
	for time.Since(start) < b.o.settle && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
		if n := b.presenceSeen.Load(); n != last {
			last, quietSince = n, time.Now()
		} else if time.Since(quietSince) >= time.Second {
			break
		}
	}
	return time.Since(start), b.presenceSeen.Load()
}

// queryStates asks the server (POST /v1/query, 1000 users at a time)
// for the state of every connected user, and counts the states.
func (b *bench) queryStates(ctx context.Context, ep endpointSet) (map[string]int, error) {
	var ids []int64
	token := ""
	for _, c := range b.clients {
		if c != nil && c.ok {
			ids = append(ids, b.users[c.idx].id)
			token = b.users[c.idx].token
		}
	}
	b.online = make([]bool, len(b.users))
	states := map[string]int{}
	for lo := 0; lo < len(ids); lo += 1000 {
		chunk := ids[lo:min(lo+1000, len(ids))]
		var out struct {
			Presences []presence `json:"presences"`
		}
		qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := benchkit.Call(qctx, ep.http, "POST", ep.status+"/v1/query", token, map[string]any{"user_ids": chunk}, &out, 200)
		cancel()
		if err != nil {
			return nil, err
		}
		for _, p := range out.Presences {
			states[p.State]++
			if u, ok := b.byID[p.UserID]; ok && p.State == stateOnline {
				b.online[u] = true
			}
		}
	}
	return states, nil
}

// countWatchers fills watchers from the connected clients' watch sets and
// puts every connected user the server shows online in the pool; it
// returns how many.
func (b *bench) countWatchers() int {
	b.watchers = make([][]int, len(b.users))
	var ready []int
	for _, c := range b.clients {
		if c == nil || !c.ok {
			continue
		}
		if b.online[c.idx] {
			ready = append(ready, c.idx)
		}
		for _, u := range b.watches[c.idx] {
			b.watchers[u] = append(b.watchers[u], c.idx)
		}
	}
	// A user without a device counted is offline whatever they choose,
	// which announces nothing.
	b.pool.init(ready, len(b.users))
	return len(ready)
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

// ---- load ----

// startSweeper releases the users whose change was answered -hold ago
// and still misses deliveries. Counted from the answer, not the request:
// the server publishes after its commit, just before it answers.
func (b *bench) startSweeper() func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			cutoff := time.Now().Add(-b.o.hold).UnixNano()
			for u := range b.current {
				cur := b.current[u].Load()
				if cur == 0 {
					continue
				}
				ch := &b.changes[cur-1]
				if ch.answered.Load() && !ch.released.Load() && ch.answerAt.Load() < cutoff {
					b.timedOut.Add(1)
					b.release(ch)
				}
			}
		}
	}()
	return func() { close(stop); <-done }
}

// changePhase issues ph.rate changes a second for o.dur, each from a
// random user without a change outstanding. It is open loop: a slot that
// finds o.inflight requests outstanding, or no user free, is skipped
// (and counted), so an overloaded server shows as a lower achieved rate.
func (b *bench) changePhase(ctx context.Context, ep endpointSet, ph *phase) {
	rng := rand.New(rand.NewPCG(b.o.seed, uint64(2+ph.first)))
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
		u, ok := b.pool.take(rng)
		if !ok {
			<-sem
			ph.noUser++
			continue
		}
		t0 := time.Now()
		if lag := t0.Sub(due); lag > 10*time.Millisecond {
			ph.late++
			ph.maxLag = max(ph.maxLag, lag)
		}
		id := ph.first + k
		ch := &b.changes[id]
		ch.user = u
		ch.state = stateAway
		if b.choice[u] == stateAway {
			ch.state = stateOnline
		}
		exp := 0
		for _, w := range b.watchers[u] {
			if !b.clients[w].closed.Load() {
				exp++
			}
		}
		ch.expected = int32(exp)
		ch.remaining.Store(int32(exp) + 1)
		ch.t0 = t0.UnixNano()
		ch.prev = b.current[u].Load()
		b.current[u].Store(int64(id) + 1) // publishes ch to the readers
		ph.issued++
		wg.Go(func() {
			defer func() { <-sem }()
			b.put(ctx, ep, ph, ch, t0)
		})
	}
	wg.Wait()
	ph.sendEnd = time.Now()
}

// put sends one change and settles its user's part of it.
func (b *bench) put(ctx context.Context, ep endpointSet, ph *phase, ch *change, t0 time.Time) {
	var me struct {
		State  string `json:"state"`
		Choice string `json:"choice"`
	}
	status, err := benchkit.Call(ctx, ep.http, "PUT", ep.status+"/v1/me/choice", b.users[ch.user].token,
		map[string]string{"choice": ch.state}, &me, 200)
	took := time.Since(t0)
	ph.mu.Lock()
	if err != nil {
		key := "transport error"
		if status != 0 {
			key = "HTTP " + strconv.Itoa(status)
		}
		ph.putErrs[key]++
		if ph.firstErr == "" {
			ph.firstErr = err.Error()
		}
	} else {
		ph.putLat = append(ph.putLat, took)
		ph.ok.Add(1)
		if me.State != ch.state {
			ph.wrongState[me.State]++
		}
	}
	ph.mu.Unlock()
	if err != nil || me.State != ch.state {
		// Failed: the server may or may not have applied it, so the
		// user's choice is unknown. Another state: the server does not
		// see the user as connected (offline), or the state is not the
		// one announced, so its watchers get nothing to time. Either way
		// the user takes no further part (never released); the change's
		// deliveries are not expected.
		b.retired.Add(1)
		ch.released.Store(true)
		ch.answerAt.Store(time.Now().UnixNano())
		ch.answered.Store(true)
		return
	}
	// Written before answered: the sweeper may release the user as soon
	// as that is set, and the next change reads the choice.
	b.choice[ch.user] = ch.state
	ch.ok.Store(true)
	ch.answerAt.Store(time.Now().UnixNano())
	ch.answered.Store(true)
	if ch.remaining.Add(-1) == 0 {
		b.release(ch)
	}
}

// waitDrain waits until every answered change of ph was seen by all its
// watchers, or limit.
func (b *bench) waitDrain(ctx context.Context, ph *phase, limit time.Duration) time.Duration {
	start := time.Now()
	for time.Since(start) < limit && ctx.Err() == nil {
		done := true
		for id := ph.first; id < ph.first+ph.n && done; id++ {
			ch := &b.changes[id]
			if ch.ok.Load() && ch.got.Load() < ch.expected {
				done = false
			}
		}
		if done {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// ---- report ----

// reportPhase prints what phase pi measured. Deliveries still arriving
// after the drain are not counted as lost: the figures are a snapshot.
func (b *bench) reportPhase(w io.Writer, pi, connected int) {
	ph := &b.phases[pi]
	var lat []float64
	var recvAt []int64
	var self, idleSig, late, stale, unexpected, dups, other int
	closes := map[string]int{}
	for _, c := range b.clients {
		if c == nil || !c.ok {
			continue
		}
		c.mu.Lock()
		lat = append(lat, c.lat[pi]...)
		recvAt = append(recvAt, c.recvAt[pi]...)
		self += c.self
		idleSig += c.idleSig
		late += c.late
		stale += c.stale
		unexpected += c.unexpected
		dups += c.dups
		other += c.other
		if c.closed.Load() {
			closes[closeName(c)]++
		}
		c.mu.Unlock()
	}
	var expected, got, lost, extra, ofFailed int64
	var fanout []float64
	for id := ph.first; id < ph.first+ph.n; id++ {
		ch := &b.changes[id]
		if !ch.answered.Load() {
			continue
		}
		n := int64(ch.got.Load())
		if !ch.ok.Load() {
			ofFailed += n
			continue
		}
		exp := int64(ch.expected)
		fanout = append(fanout, float64(exp))
		expected += exp
		got += min(n, exp)
		lost += max(0, exp-n)
		extra += int64(ch.dups.Load())
	}
	ph.mu.Lock()
	defer ph.mu.Unlock()
	okN := ph.ok.Load()
	meanFan := 0.0
	if len(fanout) > 0 {
		meanFan = float64(expected) / float64(len(fanout))
	}

	fmt.Fprintf(w, "\n== phase %d: %d changes/s for %s (%d users connected, each watching %d others)\n", pi+1, ph.rate, b.o.dur, connected, b.o.watch)
	benchkit.Header(w)
	if pi == 0 {
		b.connectRows(w)
	}
	benchkit.Row(w, "PUT /v1/me/choice → 200", "ms", benchkit.Millis(ph.putLat))
	benchkit.Row(w, "change→watcher delivery", "ms", lat)
	benchkit.Row(w, "fan-out (watchers per change)", "conns", fanout)

	win := b.o.dur.Seconds()
	endWin := ph.start.Add(b.o.dur).UnixNano()
	inWin, last := 0, int64(0)
	for _, t := range recvAt {
		if t <= endWin {
			inWin++
		}
		last = max(last, t)
	}
	fmt.Fprintf(w, "changes: %d answered 200 of %d sent (%.1f changes/s over the %s window, target %d); slots skipped: %d at the in-flight limit (%d), %d with no user free; %d sends >10 ms late (max %.0f ms); last answer %.1fs after the start\n",
		okN, ph.issued, float64(okN)/win, b.o.dur, ph.rate, ph.skipped, b.o.inflight, ph.noUser, ph.late, float64(ph.maxLag.Microseconds())/1000, ph.sendEnd.Sub(ph.start).Seconds())
	if len(ph.putErrs) > 0 {
		fmt.Fprintf(w, "  PUT errors: %v; first: %s\n", ph.putErrs, ph.firstErr)
	}
	if len(ph.wrongState) > 0 {
		fmt.Fprintf(w, "  answered 200 with another state than the one chosen (by the state answered): %v; not counted below\n", ph.wrongState)
	}
	if r := b.retired.Load(); r > 0 {
		fmt.Fprintf(w, "  users out of play after a failed or unexpected answer (all phases so far): %d of %d\n", r, connected)
	}
	fmt.Fprintf(w, "deliveries: %d of %d expected for %d changes answered with the state chosen (fan-out %.1f watchers per change on average); lost %d, duplicates %d; %d deliveries of changes that failed or were answered with another state\n",
		got, expected, len(fanout), meanFan, lost, extra, ofFailed)
	if last > 0 {
		span := float64(last-ph.start.UnixNano()) / 1e9
		fmt.Fprintf(w, "deliveries/s: %.0f within the %s window; %.0f over the %.1fs to the last delivery\n",
			float64(inWin)/win, b.o.dur, float64(len(lat))/span, span)
	}
	fmt.Fprintf(w, "client checks (all phases so far): users released by -hold (%s after the answer, deliveries missing) %d, deliveries of the previous change after that %d (counted above), stale states %d, not watched %d, own presence %d, before any change %d, other frames %d\n",
		b.o.hold, b.timedOut.Load(), late, stale, unexpected, self, idleSig, other)
	fmt.Fprintf(w, "drain after the window: %.1fs (limit %s)\n", ph.drainedIn.Seconds(), b.o.drain)
	fmt.Fprintf(w, "connections held at the end: %d of %d connected (%d asked); the server counts %.0f stream connections, %.0f presence devices, %.0f watched pairs\n",
		ph.held, connected, b.o.users, ph.after.Get("elph_stream_connections"), ph.after.Get("elph_status_devices"), ph.after.Get("elph_status_watches"))
	if len(closes) > 0 {
		fmt.Fprintf(w, "  closed so far: %v\n", closes)
	}
	sp := ph.span.Seconds()
	fmt.Fprintf(w, "CPU over the %.1fs from the start to the end of the drain: server %.1fs (%.0f%% of one core), this tool %.1fs (%.0f%%), other processes %.1fs (%.0f%%); %d cores = %d%%\n",
		sp, ph.serverCPU, 100*ph.serverCPU/sp, ph.toolCPU, 100*ph.toolCPU/sp,
		max(0, ph.allCPU-ph.serverCPU-ph.toolCPU), 100*max(0, ph.allCPU-ph.serverCPU-ph.toolCPU)/sp, runtime.NumCPU(), 100*runtime.NumCPU())
	fmt.Fprintf(w, "server RSS: %.1f MiB before the phase, %.1f MiB after; Go heap in use %.1f MiB after; %.0f goroutines after\n",
		float64(ph.rssBefore)/1024, float64(ph.rssAfter)/1024, ph.after.Get("go_memstats_heap_inuse_bytes")/(1<<20), ph.after.Get("go_goroutines"))
	d := func(name string) float64 { return ph.after.Get(name) - ph.before.Get(name) }
	fmt.Fprintf(w, "server counters: status changes %.0f, status deliveries (handed to watching connections) %.0f, stream signals dropped (queue full) %.0f, slow disconnects (4008) %.0f; status bus publish failures %.0f; bus backpressure %.0f, dropped %.0f, handler errors %.0f\n",
		d("elph_status_changes_total"), d("elph_status_deliveries_total"), d("elph_stream_signals_dropped_total"), d("elph_stream_slow_disconnects_total"),
		d("elph_status_bus_publish_failures_total"), d("elph_bus_backpressure_total"), d("elph_bus_dropped_total"), d("elph_bus_handler_errors_total"))
}

// connectRows prints the connect rows of the first table.
func (b *bench) connectRows(w io.Writer) {
	var dial, hello, list []time.Duration
	for _, c := range b.clients {
		if c != nil && c.ok {
			dial = append(dial, c.dial)
			hello = append(hello, c.toHello)
			list = append(list, c.toList)
		}
	}
	benchkit.Row(w, "ws connect (handshake)", "ms", benchkit.Millis(dial))
	benchkit.Row(w, "ws connect (to hello)", "ms", benchkit.Millis(hello))
	benchkit.Row(w, "status.watch → presence_list", "ms", benchkit.Millis(list))
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
	fmt.Fprintln(os.Stderr, "presence bench:", err)
	return 1
}
