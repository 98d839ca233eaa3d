package main

// The node mode: a real `elph serve --all` in its own process, pointed at
// this process's fake APNs, driven through the sso, push and chat REST
// APIs over loopback.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/elph-server/elph/bench/benchkit"
	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/platform/store"
)

const adminPassword = "bench-admin-password-1"

func runNode(o options) error {
	switch {
	case o.users < 2 || o.users > 1000:
		return errors.New("-users is 2 to 1000 (a group has at most 1000 members)")
	case o.workers < 0 || o.workers > 256:
		return errors.New("-workers is 1 to 256")
	case o.rate < 0 || o.messages < 0 || o.conc < 1 || o.setupC < 1:
		return errors.New("need -rate ≥ 0, -messages ≥ 0, -c ≥ 1, -setupc ≥ 1")
	case o.messages == 0 && o.dur <= 0:
		return errors.New("need -d > 0")
	}
	if _, err := os.Stat(o.bin); err != nil {
		return fmt.Errorf("build the binary first (go build -o bin/elph . or make build): %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dir, err := os.MkdirTemp("", "elph-bench-push-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fake, p8, err := newFakeAPNs(dir, o.delay)
	if err != nil {
		return err
	}
	defer fake.srv.Close()
	certDir := filepath.Join(dir, "certs")
	certFile := filepath.Join(certDir, "fake-apns.pem")
	if err := os.Mkdir(certDir, 0o700); err != nil {
		return err
	}
	if err := fake.writeCert(certFile); err != nil {
		return err
	}

	workers := o.workers
	workersText := "push.workers " + strconv.Itoa(workers)
	if workers == 0 {
		workers = config.Default().Push.Workers
		workersText = fmt.Sprintf("push.workers %d (the server's default)", workers)
	}
	env := []string{
		"ELPH_SSO_INITIAL_ADMIN_PASSWORD=" + adminPassword,
		"ELPH_SSO_ACCESS_TOKEN_TTL=1h",
		"ELPH_SSO_LOCKOUT_IP_MAX_FAILURES=100000",
		"ELPH_LOG_LEVEL=warn",
		// Shared by both runs when the server is restarted after setup.
		"ELPH_NODE_DATA_DIR=" + filepath.Join(dir, "data"),
		"ELPH_DATABASE_DRIVER=" + o.driver,
		// The fake APNs, trusted as the only system root (Go reads the
		// roots from these on Linux; the module's RootCAs is nil there).
		"SSL_CERT_FILE=" + certFile,
		"SSL_CERT_DIR=" + certDir,
		"ELPH_PUSH_APNS_URL=" + fake.srv.URL,
		"ELPH_PUSH_APNS_KEY_FILE=" + p8,
		"ELPH_PUSH_APNS_KEY_ID=" + keyID,
		"ELPH_PUSH_APNS_TEAM_ID=" + teamID,
	}
	if o.workers > 0 {
		env = append(env, "ELPH_PUSH_WORKERS="+strconv.Itoa(o.workers))
	}
	if o.cpuprofile != "" {
		env = append(env, "ELPH_ADMIN_PPROF=true")
	}
	if o.driver == "mysql" {
		env = append(env, "ELPH_DATABASE_DSN="+o.dsn)
	}
	env = append(env, o.serverEnv...)

	node, err := startNode(o.bin, env)
	if err != nil {
		return err
	}
	defer func() {
		if node != nil {
			if err := stopNode(node, 30*time.Second); err != nil {
				fmt.Fprintln(os.Stderr, "push bench: stop:", err)
			}
		}
	}()
	failLog := func(err error) error {
		tailLog(node, 30)
		return err
	}

	load := fmt.Sprintf("%d msg/s for %s", o.rate, o.dur)
	if o.messages > 0 {
		load = fmt.Sprintf("a burst of %d messages (%d posts in flight)", o.messages, o.conc)
	}
	fmt.Printf("push bench (node): %s serve --all, %s, %d users in one group (1 sender, %d recipients with an iPhone each, no WebSocket: all offline), %s, %s, fake APNs answers in %s; GOMAXPROCS %d\n",
		o.bin, o.driver, o.users, o.users-1, load, workersText, o.delay, runtime.GOMAXPROCS(0))

	// Setup.
	setupCtx, cancelSetup := context.WithTimeout(ctx, o.setupMax)
	b, err := setup(setupCtx, endpoints(node), o)
	cancelSetup()
	if err != nil {
		return failLog(fmt.Errorf("setup: %w", err))
	}
	if o.restart {
		at := time.Now()
		if err := stopNode(node, 30*time.Second); err != nil {
			node = nil
			return fmt.Errorf("stop after setup: %w", err)
		}
		if node, err = startNode(o.bin, env); err != nil {
			return err
		}
		fmt.Printf("server restarted on the same data in %.1fs (no password hashing in its figures)\n", time.Since(at).Seconds())
	}
	b.ep, b.node, b.fake = endpoints(node), node, fake

	// Warm-up: one message end to end, which also proves the node trusts
	// and reaches the fake before the load starts.
	if err := b.warmUp(ctx, 30*time.Second); err != nil {
		return failLog(fmt.Errorf("warm-up: %w", err))
	}

	// The measured phase.
	var dbs *dbStatus
	if o.driver == "mysql" {
		if dbs, err = openDBStatus(ctx, o.dsn); err != nil {
			fmt.Fprintln(os.Stderr, "push bench: MariaDB status (skipped):", err)
		} else {
			defer dbs.close()
		}
	}
	db0, dbCPU0 := dbs.read(ctx), -1.0
	if dbs != nil {
		dbCPU0 = mariadbCPU()
	}
	m0, err := node.Scrape()
	if err != nil {
		return failLog(err)
	}
	rss0, _ := node.RSSKiB()
	sys0, _ := benchkit.SystemCPU()
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	sampler := b.sample(time.Second)
	var profiled chan error
	if o.cpuprofile != "" {
		secs := int(o.dur.Seconds())
		if o.messages > 0 {
			secs = 10
		}
		profiled = make(chan error, 1)
		go func() { profiled <- serverProfile(ctx, node, o.cpuprofile, max(secs, 1)) }()
	}
	sendCtx, cancelSend := context.WithTimeout(ctx, o.dur+45*time.Second)
	if o.messages > 0 {
		b.burst(sendCtx, o.messages)
	} else {
		b.steady(sendCtx, o.rate, o.dur)
	}
	cancelSend()
	drained := b.drain(ctx, o.timeout)
	m1, err := node.Scrape()
	if err != nil {
		return failLog(err)
	}
	rss1, _ := node.RSSKiB()
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	sys1, _ := benchkit.SystemCPU()
	db1, dbCPU := dbs.read(ctx), -1.0
	if dbCPU0 >= 0 {
		if c := mariadbCPU(); c >= 0 {
			dbCPU = c - dbCPU0
		}
	}
	span := time.Since(b.start)
	samples := sampler.stop()
	// The depth gauge is refreshed on the dispatcher's poll (every second).
	time.Sleep(1200 * time.Millisecond)
	m2, err := node.Scrape()
	if err != nil {
		return failLog(err)
	}

	if o.linger > 0 {
		// Rows whose settling failed come back when their lease runs out
		// (push.request_timeout × 4 + 30 s): sent twice.
		select {
		case <-time.After(o.linger):
		case <-ctx.Done():
		}
	}
	if profiled != nil {
		if err := <-profiled; err != nil {
			fmt.Fprintln(os.Stderr, "push bench: server CPU profile:", err)
		}
	}
	r := b.report(os.Stdout, reportInput{
		drained: drained, span: span, before: m0, after: m1, final: m2, samples: samples,
		rssBefore: rss0, rssAfter: rss1, serverCPU: m1.Get("process_cpu_seconds_total") - m0.Get("process_cpu_seconds_total"),
		toolCPU: benchkit.CPUOf(ru1) - benchkit.CPUOf(ru0), allCPU: sys1 - sys0, db0: db0, db1: db1, dbCPU: dbCPU,
	})
	if ctx.Err() != nil {
		return failLog(ctx.Err())
	}
	if r.delivered == 0 {
		return failLog(errors.New("no push arrived"))
	}
	if r.lost > 0 {
		fmt.Fprintf(os.Stderr, "push bench: %d pushes lost\n", r.lost)
		tailLog(node, 30)
	}
	return nil
}

// startNode starts `elph serve --all` and waits until it is ready. A node
// that exits before it is ready is started again, up to three times:
// benchkit picks free ports by listening and closing, and two of a node's
// dozen listeners (or another process) may get the same one.
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
		tailLog(n, 30)
		if !strings.Contains(err.Error(), "exited before it was ready") {
			_ = stopNode(n, 10*time.Second)
			return nil, err
		}
		// Not n.Stop: WaitReady consumed the exit, and Stop would wait
		// for it forever.
		_ = os.RemoveAll(n.Dir)
		if attempt == 3 {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "push bench: the server exited before it was ready (%v); starting it again\n", err)
	}
}

// stopNode stops n with SIGTERM (SIGKILL after limit), giving up on
// waiting a little after that.
func stopNode(n *benchkit.Node, limit time.Duration) error {
	done := make(chan error, 1)
	go func() {
		_, err := n.Stop(limit)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(limit + 5*time.Second):
		_ = os.RemoveAll(n.Dir)
		return fmt.Errorf("the server did not stop within %s", limit+5*time.Second)
	}
}

// tailLog prints the last lines of the server's log (before Stop removes it).
func tailLog(n *benchkit.Node, lines int) {
	if n == nil {
		return
	}
	b, err := os.ReadFile(filepath.Join(n.Dir, "elph.log"))
	if err != nil || len(b) == 0 {
		fmt.Fprintln(os.Stderr, "--- the server log is empty")
		return
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	fmt.Fprintf(os.Stderr, "--- last %d lines of the server log:\n", min(lines, len(all)))
	for _, l := range all[max(0, len(all)-lines):] {
		fmt.Fprintln(os.Stderr, l)
	}
}

// logSummary counts the WARN and ERROR lines of the node's log by level
// and message, with the first err= of each.
func logSummary(n *benchkit.Node) string {
	raw, err := os.ReadFile(filepath.Join(n.Dir, "elph.log"))
	if err != nil {
		return "unreadable: " + err.Error()
	}
	type kind struct {
		n   int
		err string
	}
	kinds := map[string]*kind{}
	var order []string
	for line := range strings.SplitSeq(string(raw), "\n") {
		level := ""
		switch {
		case strings.Contains(line, " level=WARN "):
			level = "WARN"
		case strings.Contains(line, " level=ERROR "):
			level = "ERROR"
		default:
			continue
		}
		_, msg, _ := strings.Cut(line, " msg=")
		if rest, ok := strings.CutPrefix(msg, `"`); ok {
			msg, _, _ = strings.Cut(rest, `"`)
		} else {
			msg, _, _ = strings.Cut(msg, " ")
		}
		key := level + " " + msg
		k := kinds[key]
		if k == nil {
			k = &kind{}
			if _, e, ok := strings.Cut(line, " err="); ok {
				k.err = clipText(e, 200)
			}
			kinds[key] = k
			order = append(order, key)
		}
		k.n++
	}
	if len(order) == 0 {
		return "no warnings or errors"
	}
	var out []string
	for _, key := range order {
		t := fmt.Sprintf("%d× %s", kinds[key].n, key)
		if kinds[key].err != "" {
			t += " (first err=" + kinds[key].err + ")"
		}
		out = append(out, t)
	}
	if len(out) > 8 {
		out = append(out[:8], fmt.Sprintf("… %d more kinds", len(out)-8))
	}
	return strings.Join(out, "; ")
}

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ---- REST ----

type endpointSet struct {
	sso, chat, push string
	http            *http.Client
}

func endpoints(n *benchkit.Node) endpointSet {
	return endpointSet{
		sso:  "http://" + n.Env("ELPH_MODULES_SSO_LISTEN"),
		chat: "http://" + n.Env("ELPH_MODULES_CHAT_LISTEN"),
		push: "http://" + n.Env("ELPH_MODULES_PUSH_LISTEN"),
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1024}},
	}
}

// ---- setup ----

type benchUser struct {
	login string
	id    int64
	token string
	apns  string // the device token registered
}

// nodeBench is the state of a node run.
type nodeBench struct {
	o      options
	ep     endpointSet
	node   *benchkit.Node
	fake   *fakeAPNs
	users  []benchUser
	convID int64
	tag    string
	tokens map[string]int // device token → user index
	warmID int64          // the warm-up message

	start  time.Time // the first send of the measured phase
	window time.Duration

	mu       sync.Mutex
	sends    []*send // measured sends, in order
	issued   int
	skipped  int
	late     int
	maxLag   time.Duration
	sendEnd  time.Time
	sendErrs map[string]int
	firstErr string
}

// send is one posted message.
type send struct {
	k    int
	at   time.Time // before the POST
	took time.Duration
	id   int64 // the stored message's id; 0 when the POST failed
}

func password(i int) string { return fmt.Sprintf("bench-password-%06d", i) }

// deviceToken is a 64-hex APNs token unique to the run and user.
func deviceToken(tag string, i int) string {
	h := sha256.Sum256([]byte("elph-bench-push/" + tag + "/" + strconv.Itoa(i)))
	return hex.EncodeToString(h[:])
}

func setup(ctx context.Context, ep endpointSet, o options) (*nodeBench, error) {
	var admin struct {
		AccessToken string `json:"access_token"`
	}
	if _, err := benchkit.Call(ctx, ep.http, "POST", ep.sso+"/v1/login", "", map[string]string{
		"login": "admin", "password": adminPassword, "device": "bench"}, &admin, 200); err != nil {
		return nil, fmt.Errorf("admin login: %w", err)
	}
	// A tag per run keeps logins and device tokens unique in a reused
	// MariaDB database.
	tag := strconv.FormatInt(time.Now().UnixNano()/1e6%1e9, 36)
	b := &nodeBench{o: o, users: make([]benchUser, o.users), tag: tag, tokens: map[string]int{}, sendErrs: map[string]int{}}
	for i := range b.users {
		b.users[i].login = fmt.Sprintf("pbench-%s-%04d", tag, i)
		b.users[i].apns = deviceToken(tag, i)
		b.tokens[b.users[i].apns] = i
	}

	start := time.Now()
	err := parallel(ctx, o.setupC, o.users, "users created", func(ctx context.Context, i int) error {
		var u struct {
			ID int64 `json:"id"`
		}
		_, err := benchkit.Call(ctx, ep.http, "POST", ep.sso+"/v1/users", admin.AccessToken, map[string]any{
			"login": b.users[i].login, "password": password(i), "display_name": fmt.Sprintf("Push Bench %d", i)}, &u, 201)
		b.users[i].id = u.ID
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
			"login": b.users[i].login, "password": password(i), "device": "bench"}, &t, 200); err != nil {
			return err
		}
		if t.User.ID != b.users[i].id || t.AccessToken == "" {
			return fmt.Errorf("login %s: user %d, want %d", b.users[i].login, t.User.ID, b.users[i].id)
		}
		b.users[i].token = t.AccessToken
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("log in: %w", err)
	}
	loggedIn := time.Since(start)

	start = time.Now()
	err = parallel(ctx, o.setupC, o.users, "devices registered", func(ctx context.Context, i int) error {
		_, err := benchkit.Call(ctx, ep.http, "POST", ep.push+"/v1/devices", b.users[i].token, map[string]string{
			"platform": "apns", "app_id": appID, "token": b.users[i].apns, "name": "iPhone " + strconv.Itoa(i)}, nil, 201)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("register devices: %w", err)
	}
	registered := time.Since(start)

	start = time.Now()
	ids := make([]int64, 0, o.users-1)
	for _, u := range b.users[1:] {
		ids = append(ids, u.id)
	}
	var conv struct {
		ID int64 `json:"id"`
	}
	if _, err := benchkit.Call(ctx, ep.http, "POST", ep.chat+"/v1/conversations", b.users[0].token, map[string]any{
		"kind": "group", "title": "push bench " + tag, "member_ids": ids}, &conv, 201); err != nil {
		return nil, fmt.Errorf("create the group: %w", err)
	}
	b.convID = conv.ID
	fmt.Printf("setup: %d users created in %.1fs, %d logins in %.1fs (%.0f/s), %d devices registered in %.1fs, a group of %d created in %.2fs; %d requests at a time\n",
		o.users, created.Seconds(), o.users, loggedIn.Seconds(), float64(o.users)/loggedIn.Seconds(),
		o.users, registered.Seconds(), o.users, time.Since(start).Seconds(), o.setupC)
	return b, nil
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
			if done.Load() < int64(n) {
				if err := context.Cause(ctx); err != nil {
					return err
				}
				return fmt.Errorf("%s: %d of %d done", what, done.Load(), n)
			}
			return nil
		case <-tick.C:
			fmt.Fprintf(os.Stderr, "  %s: %d/%d after %.0fs\n", what, done.Load(), n, time.Since(start).Seconds())
		}
	}
}

// ---- sending ----

// post sends message k from the sender and returns the stored id.
func (b *nodeBench) post(ctx context.Context, k int) (int64, int, error) {
	var msg struct {
		ID int64 `json:"id"`
	}
	status, err := benchkit.Call(ctx, b.ep.http, "POST", b.ep.chat+"/v1/conversations/"+strconv.FormatInt(b.convID, 10)+"/messages",
		b.users[0].token, map[string]string{
			"client_id": "p" + b.tag + "-" + strconv.Itoa(k),
			"body":      "bench push " + strconv.Itoa(k),
		}, &msg, 201)
	if err == nil && msg.ID <= 0 {
		err = errors.New("201 without a message id")
	}
	return msg.ID, status, err
}

// warmUp posts message 0 and waits for its pushes.
func (b *nodeBench) warmUp(ctx context.Context, limit time.Duration) error {
	at := time.Now()
	id, _, err := b.post(ctx, 0)
	if err != nil {
		return err
	}
	b.warmID = id
	want := len(b.users) - 1
	deadline := at.Add(limit)
	for {
		got := 0
		for _, a := range b.fake.since(0) {
			if a.msg == id {
				got++
			}
		}
		if got >= want {
			fmt.Printf("warm-up: 1 message → %d pushes in %.0f ms\n", got, float64(time.Since(at).Microseconds())/1000)
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			m, _ := b.node.Scrape()
			refused, reasons, problems := b.fake.refusals()
			connErrs, connErr := b.fake.connErrors()
			return fmt.Errorf("%d of %d pushes of message %d arrived within %s; the fake refused %d %v %v and saw %d connection errors (first: %q); the server: sent %.0f, failures %v, queue depth %.0f, enqueued %.0f, skipped %v",
				got, want, id, limit, refused, reasons, problems, connErrs, connErr, m.Get("elph_push_sent_total"), m.Labelled("elph_push_failures_total"),
				m.Get("elph_push_queue_depth"), m.Get("elph_push_enqueued_total"), m.Labelled("elph_push_skipped_total"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *nodeBench) record(s *send, status int, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		key := "transport error"
		if status != 0 {
			key = "HTTP " + strconv.Itoa(status)
		}
		b.sendErrs[key]++
		if b.firstErr == "" {
			b.firstErr = err.Error()
		}
	}
	b.sends = append(b.sends, s)
}

func (b *nodeBench) sendOne(ctx context.Context, k int, t0 time.Time) {
	s := &send{k: k, at: t0}
	id, status, err := b.post(ctx, k)
	s.took, s.id = time.Since(t0), id
	b.record(s, status, err)
}

// steady posts rate messages a second for dur. It is open loop: a slot
// that finds o.conc posts outstanding is skipped (and counted), so an
// overloaded server shows as a lower achieved rate, not a longer phase.
func (b *nodeBench) steady(ctx context.Context, rate int, dur time.Duration) {
	sem := make(chan struct{}, b.o.conc)
	var wg sync.WaitGroup
	b.start, b.window = time.Now(), dur
	n := int(int64(rate) * int64(dur) / int64(time.Second))
	for k := 1; k <= n && ctx.Err() == nil; k++ {
		due := b.start.Add(time.Duration(int64(k-1) * int64(time.Second) / int64(rate)))
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		select {
		case sem <- struct{}{}:
		default:
			b.mu.Lock()
			b.skipped++
			b.mu.Unlock()
			continue
		}
		t0 := time.Now()
		b.mu.Lock()
		b.issued++
		if lag := t0.Sub(due); lag > 10*time.Millisecond {
			b.late++
			b.maxLag = max(b.maxLag, lag)
		}
		b.mu.Unlock()
		wg.Go(func() {
			defer func() { <-sem }()
			b.sendOne(ctx, k, t0)
		})
	}
	wg.Wait()
	b.sendEnd = time.Now()
}

// burst posts n messages from o.conc senders as fast as they are answered.
func (b *nodeBench) burst(ctx context.Context, n int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.start = time.Now()
	for range min(b.o.conc, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				k := int(next.Add(1))
				if k > n {
					return
				}
				b.mu.Lock()
				b.issued++
				b.mu.Unlock()
				b.sendOne(ctx, k, time.Now())
			}
		})
	}
	wg.Wait()
	b.sendEnd = time.Now()
	b.window = b.sendEnd.Sub(b.start)
}

// expected is the pushes the answered sends owe: one per recipient.
func (b *nodeBench) expected() (map[int64]*send, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	byID := make(map[int64]*send, len(b.sends))
	for _, s := range b.sends {
		if s.id > 0 {
			byID[s.id] = s
		}
	}
	return byID, len(byID) * (len(b.users) - 1)
}

// drain waits until every expected push arrived, or limit.
func (b *nodeBench) drain(ctx context.Context, limit time.Duration) time.Duration {
	start := time.Now()
	byID, want := b.expected()
	seen := map[string]bool{}
	got, done := 0, 0
	for time.Since(start) < limit && ctx.Err() == nil {
		fresh := b.fake.since(done)
		for _, a := range fresh {
			key := a.token + "/" + strconv.FormatInt(a.msg, 10)
			if _, ok := byID[a.msg]; ok && !seen[key] {
				seen[key] = true
				got++
			}
		}
		done += len(fresh)
		if got >= want {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// ---- sampling the server during the phase ----

type sample struct {
	at    time.Time
	depth float64
}

type sampler struct {
	stopc chan struct{}
	done  chan []sample
}

// sample scrapes the node's metrics every period until stop.
func (b *nodeBench) sample(period time.Duration) *sampler {
	s := &sampler{stopc: make(chan struct{}), done: make(chan []sample, 1)}
	go func() {
		var out []sample
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-s.stopc:
				s.done <- out
				return
			case <-t.C:
				if m, err := b.node.Scrape(); err == nil {
					out = append(out, sample{at: time.Now(), depth: m.Get("elph_push_queue_depth")})
				}
			}
		}
	}()
	return s
}

func (s *sampler) stop() []sample {
	close(s.stopc)
	return <-s.done
}

// ---- report ----

type reportInput struct {
	drained, span              time.Duration
	before, after, final       benchkit.Metrics
	samples                    []sample
	rssBefore, rssAfter        int
	serverCPU, toolCPU, allCPU float64
	db0, db1                   map[string]float64 // MariaDB's global status; nil with SQLite
	dbCPU                      float64            // of the mariadbd process here; -1 unknown
}

type reportOutput struct {
	delivered, lost int
}

func (b *nodeBench) report(w io.Writer, in reportInput) reportOutput {
	byID, want := b.expected()
	recipients := len(b.users) - 1
	senderID := strconv.FormatInt(b.users[0].id, 10)
	convID := strconv.FormatInt(b.convID, 10)
	var lat []time.Duration
	count := map[string]int{}
	var unknown, wrong, dups, unknownTok int
	var first, last time.Time
	var arrivals []time.Time
	for _, a := range b.fake.since(0) {
		s, ok := byID[a.msg]
		if !ok {
			if a.msg != b.warmID {
				unknown++
			}
			continue
		}
		if _, ok := b.tokens[a.token]; !ok {
			unknownTok++
		}
		if a.conv != convID || a.from != senderID {
			wrong++
		}
		key := a.token + "/" + strconv.FormatInt(a.msg, 10)
		count[key]++
		if count[key] > 1 {
			dups++
			continue
		}
		lat = append(lat, a.at.Sub(s.at))
		arrivals = append(arrivals, a.at)
		if first.IsZero() || a.at.Before(first) {
			first = a.at
		}
		if a.at.After(last) {
			last = a.at
		}
	}
	delivered := len(lat)
	lost := want - delivered

	b.mu.Lock()
	defer b.mu.Unlock()
	var post []time.Duration
	for _, s := range b.sends {
		if s.id > 0 {
			post = append(post, s.took)
		}
	}
	answered := len(byID)
	fmt.Fprintln(w)
	benchkit.Header(w)
	benchkit.Row(w, "send (POST → 201)", "ms", benchkit.Millis(post))
	benchkit.Row(w, "send → push delivered", "ms", benchkit.Millis(lat))

	if b.o.messages > 0 {
		fmt.Fprintf(w, "sent: %d answered 201 of %d posted in %.2fs (%.0f msg/s, %d in flight)\n",
			answered, b.issued, b.window.Seconds(), float64(answered)/b.window.Seconds(), b.o.conc)
	} else {
		fmt.Fprintf(w, "sent: %d answered 201 of %d posted (%.1f msg/s over the %s window, target %d); %d slots skipped at the in-flight limit (%d); %d posts >10 ms late (max %.0f ms); last answer %.1fs after the start\n",
			answered, b.issued, float64(answered)/b.window.Seconds(), b.window, b.o.rate, b.skipped, b.o.conc, b.late,
			float64(b.maxLag.Microseconds())/1000, b.sendEnd.Sub(b.start).Seconds())
	}
	if len(b.sendErrs) > 0 {
		fmt.Fprintf(w, "  send errors: %v; first: %s\n", b.sendErrs, b.firstErr)
	}
	refused, reasons, problems := b.fake.refusals()
	fmt.Fprintf(w, "pushes: %d delivered of %d expected (%d answered messages × %d recipients); lost %d (not arrived by the end of the drain), duplicates %d; of unknown messages %d, to unknown devices %d, wrong conversation or sender %d; refused by the fake %d\n",
		delivered, want, answered, recipients, lost, dups, unknown, unknownTok, wrong, refused)
	if refused > 0 {
		fmt.Fprintf(w, "  refused: %v; first: %v\n", reasons, problems)
	}
	if n, first := b.fake.connErrors(); n > 0 {
		fmt.Fprintf(w, "  the fake saw %d connection errors; first: %s\n", n, first)
	}
	if delivered > 0 {
		overall := last.Sub(b.start).Seconds()
		line := fmt.Sprintf("pushes/s at the fake: %.0f overall (%d from the first send to the last push, %.2fs)", float64(delivered)/overall, delivered, overall)
		if b.o.messages == 0 {
			warm := min(2*time.Second, b.window/5)
			from, to := b.start.Add(warm), b.start.Add(b.window)
			in := 0
			for _, t := range arrivals {
				if !t.Before(from) && t.Before(to) {
					in++
				}
			}
			line += fmt.Sprintf("; %.0f steady (from %s after the start to the end of the %s window; offered %d)", float64(in)/(to.Sub(from).Seconds()), warm, b.window, b.o.rate*recipients)
		} else {
			line += fmt.Sprintf("; %.0f between the first and the last push (%.2fs)", float64(delivered)/max(last.Sub(first).Seconds(), 1e-3), last.Sub(first).Seconds())
		}
		fmt.Fprintln(w, line)
		fmt.Fprintf(w, "pushes per second at the fake: %s\n", perSecond(arrivals, b.start, last))
	}
	if len(in.samples) > 0 {
		maxDepth, endDepth := 0.0, 0.0
		var depths []string
		for _, s := range in.samples {
			maxDepth = max(maxDepth, s.depth)
			if !s.at.After(b.sendEnd) {
				endDepth = s.depth
			}
			depths = append(depths, strconv.FormatFloat(s.depth, 'f', 0, 64))
		}
		fmt.Fprintf(w, "queue depth (elph_push_queue_depth, scraped every second, refreshed by the dispatcher's 1 s poll): max %.0f, %.0f at the end of sending, %.0f after the drain; samples: %s\n",
			maxDepth, endDepth, in.final.Get("elph_push_queue_depth"), elide(depths, 40))
	}
	linger := ""
	if b.o.linger > 0 {
		linger = fmt.Sprintf(", then %s more listening for re-sends", b.o.linger)
	}
	fmt.Fprintf(w, "drain after sending: %.1fs (limit %s)%s\n", in.drained.Seconds(), b.o.timeout, linger)
	d := func(name string) float64 { return in.after.Get(name) - in.before.Get(name) }
	sends := d("elph_push_send_seconds_count")
	mean := 0.0
	if sends > 0 {
		mean = d("elph_push_send_seconds_sum") / sends * 1000
	}
	fmt.Fprintf(w, "server push counters: chat messages %.0f; events queued %.0f, none %.0f, error %.0f; enqueued %.0f; sent %.0f; failures %.0f %v; dropped %.0f; queue errors %.0f; skipped %v; mean APNs request %.2f ms\n",
		d("elph_chat_messages_total"),
		in.after.With("elph_push_events_total", `result="queued"`)-in.before.With("elph_push_events_total", `result="queued"`),
		in.after.With("elph_push_events_total", `result="none"`)-in.before.With("elph_push_events_total", `result="none"`),
		in.after.With("elph_push_events_total", `result="error"`)-in.before.With("elph_push_events_total", `result="error"`),
		d("elph_push_enqueued_total"), d("elph_push_sent_total"), d("elph_push_failures_total"), in.after.Labelled("elph_push_failures_total"),
		d("elph_push_dropped_total"), d("elph_push_queue_errors_total"), in.after.Labelled("elph_push_skipped_total"), mean)
	fmt.Fprintf(w, "server bus: backpressure %.0f, dropped %.0f, handler errors %.0f\n",
		d("elph_bus_backpressure_total"), d("elph_bus_dropped_total"), d("elph_bus_handler_errors_total"))
	if in.db0 != nil && in.db1 != nil {
		dd := func(name string) float64 { return in.db1[name] - in.db0[name] }
		per := func(name string) float64 { return dd(name) / float64(max(delivered, 1)) }
		fmt.Fprintf(w, "MariaDB global status over the phase (the whole server: other clients count too): SELECT %.0f, INSERT %.0f, UPDATE %.0f, DELETE %.0f, COMMIT %.0f, InnoDB fsyncs %.0f; per push delivered: %.2f SELECT, %.2f UPDATE, %.2f DELETE, %.2f fsyncs\n",
			dd("Com_select"), dd("Com_insert"), dd("Com_update"), dd("Com_delete"), dd("Com_commit"), dd("Innodb_data_fsyncs"),
			per("Com_select"), per("Com_update"), per("Com_delete"), per("Innodb_data_fsyncs"))
	}
	sp := in.span.Seconds()
	others := max(0, in.allCPU-in.serverCPU-in.toolCPU)
	db := ""
	if in.dbCPU >= 0 {
		others = max(0, others-in.dbCPU)
		db = fmt.Sprintf(", mariadbd %.1fs (%.0f%%)", in.dbCPU, 100*in.dbCPU/sp)
	}
	fmt.Fprintf(w, "CPU over the %.1fs from the first send to the end of the drain: server %.1fs (%.0f%% of one core), this tool %.1fs (%.0f%%)%s, other processes %.1fs (%.0f%%); 2 cores = 200%%\n",
		sp, in.serverCPU, 100*in.serverCPU/sp, in.toolCPU, 100*in.toolCPU/sp, db, others, 100*others/sp)
	fmt.Fprintf(w, "server RSS: %.1f MiB before the phase, %.1f MiB after; Go heap in use %.1f MiB after; %.0f goroutines after\n",
		float64(in.rssBefore)/1024, float64(in.rssAfter)/1024, in.after.Get("go_memstats_heap_inuse_bytes")/(1<<20), in.after.Get("go_goroutines"))
	fmt.Fprintf(w, "server log (level warn, since the restart): %s\n", logSummary(b.node))
	return reportOutput{delivered: delivered, lost: lost}
}

// perSecond counts the arrivals in each second from start to last.
func perSecond(ts []time.Time, start, last time.Time) string {
	n := int(last.Sub(start)/time.Second) + 1
	if n <= 0 {
		return ""
	}
	buckets := make([]int, n)
	for _, t := range ts {
		if i := int(t.Sub(start) / time.Second); i >= 0 && i < n {
			buckets[i]++
		}
	}
	s := make([]string, n)
	for i, c := range buckets {
		s[i] = strconv.Itoa(c)
	}
	return elide(s, 40)
}

// elide joins s, keeping the first and last max/2 when there are more.
func elide(s []string, limit int) string {
	if len(s) <= limit {
		return strings.Join(s, " ")
	}
	return strings.Join(s[:limit/2], " ") + " … " + strings.Join(s[len(s)-limit/2:], " ")
}

// ---- HTTP ----

// ---- the server's resources ----

// dbStatus reads MariaDB's global statement and fsync counters: what the
// queue costs the database per push.
type dbStatus struct{ db *store.DB }

func openDBStatus(ctx context.Context, dsn string) (*dbStatus, error) {
	db, err := store.Open(ctx, store.Options{Driver: store.DriverMySQL, DSN: dsn, MaxOpenConns: 1,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	return &dbStatus{db: db}, nil
}

func (d *dbStatus) close() { _ = d.db.Close() }

// mariadbCPU is the CPU time of the MariaDB (or MySQL) server process on
// this machine, in seconds; -1 when there is none to be seen.
func mariadbCPU() float64 {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		comm, err := os.ReadFile(d + "/comm")
		if err != nil {
			continue
		}
		if c := strings.TrimSpace(string(comm)); c != "mariadbd" && c != "mysqld" {
			continue
		}
		stat, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		// The fields after the command's closing parenthesis; utime and
		// stime are the 14th and 15th of the line.
		_, rest, _ := strings.Cut(string(stat), ") ")
		f := strings.Fields(rest)
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseFloat(f[11], 64)
		s, _ := strconv.ParseFloat(f[12], 64)
		return (u + s) / 100 // USER_HZ
	}
	return -1
}

// read returns the counters, or nil.
func (d *dbStatus) read(ctx context.Context) map[string]float64 {
	if d == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var rows []struct {
		Name  string `db:"Variable_name"`
		Value string `db:"Value"`
	}
	if err := d.db.SelectContext(ctx, &rows, `SHOW GLOBAL STATUS WHERE Variable_name IN
		('Com_select', 'Com_insert', 'Com_update', 'Com_delete', 'Com_commit', 'Innodb_data_fsyncs')`); err != nil {
		fmt.Fprintln(os.Stderr, "push bench: MariaDB status:", err)
		return nil
	}
	out := make(map[string]float64, len(rows))
	for _, r := range rows {
		out[r.Name], _ = strconv.ParseFloat(r.Value, 64)
	}
	return out
}

// serverProfile writes a CPU profile of the node's next secs seconds
// (admin pprof) to path.
func serverProfile(ctx context.Context, n *benchkit.Node, path string, secs int) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs+30)*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+n.Admin+"/debug/pprof/profile?seconds="+strconv.Itoa(secs), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
