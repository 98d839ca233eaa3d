// Command proxy compares `elph serve --role=proxy` with nginx doing the
// same job, side by side in one run: both terminate TLS (the same
// certificate and TLS profile, HTTP/2 and HTTP/1.1), verify the same
// upstream's certificate, keep upstream connections alive, stream
// responses and pass WebSockets through.
//
// The upstream is a small HTTPS server (HTTP/1.1 and h2) run by this tool
// as a child process of its own binary: GET /readyz, GET /chat/v1/ping (a
// ~100 B JSON body), GET /files/v1/blob?size=N (N bytes) and a WebSocket
// echo at /chat/v1/ws. The tool measures, against the upstream directly
// (the baseline), through nginx and through elph:
//   - ping: C closed-loop keep-alive clients (HTTP/1.1, or HTTP/2 with -h2)
//     for D seconds: requests/s and latency quantiles;
//   - download: 1 MiB GETs from a few clients: MB/s;
//   - WebSocket: W connections each sending M small messages, one at a
//     time: messages/s and round-trip quantiles;
//
// with the CPU seconds and memory of each proxy. Each test runs -rounds
// times, the order of the targets reversed every round, so warm-up and
// the machine's noise fall on both proxies alike. Everything is on
// loopback and every phase is bounded in time.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/elph-server/elph/bench/benchkit"
	"github.com/elph-server/elph/platform/httpx"
)

type options struct {
	bin, nginx string
	c          int
	d, warm    time.Duration
	dlC        int
	dlD        time.Duration
	dlSize     int
	wsConns    int
	wsMsgs     int
	wsSize     int
	wsLimit    time.Duration
	h2         bool
	upH1       bool
	rounds     int
	pause      time.Duration
	profile    string
	printConf  bool
	startLimit time.Duration
}

func main() {
	if os.Getenv(upstreamEnv) != "" {
		os.Exit(serveUpstream())
	}
	var o options
	flag.StringVar(&o.bin, "bin", "./bin/elph", "elph binary to measure")
	flag.StringVar(&o.nginx, "nginx", "/usr/sbin/nginx", "nginx binary to compare with")
	flag.IntVar(&o.c, "c", 64, "concurrent keep-alive clients of the ping test (one connection each)")
	flag.DurationVar(&o.d, "d", 10*time.Second, "measured time of each ping run")
	flag.DurationVar(&o.warm, "warmup", time.Second, "unmeasured load before each timed run (connections, caches)")
	flag.IntVar(&o.dlC, "dl-c", 8, "concurrent clients of the download test")
	flag.DurationVar(&o.dlD, "dl-d", 5*time.Second, "measured time of each download run (0: skip the test)")
	flag.IntVar(&o.dlSize, "dl-size", 1<<20, "bytes per download")
	flag.IntVar(&o.wsConns, "ws-conns", 50, "WebSocket connections (0: skip the test)")
	flag.IntVar(&o.wsMsgs, "ws-msgs", 1000, "messages each WebSocket sends, waiting for each echo")
	flag.IntVar(&o.wsSize, "ws-size", 64, "bytes per WebSocket message")
	flag.DurationVar(&o.wsLimit, "ws-timeout", 2*time.Minute, "time limit of one WebSocket run")
	flag.BoolVar(&o.h2, "h2", false, "clients speak HTTP/2 to the proxies (and the upstream baseline) instead of HTTP/1.1; WebSockets stay HTTP/1.1")
	flag.BoolVar(&o.upH1, "upstream-h1", false, "the upstream offers only HTTP/1.1 (both proxies speak HTTP/1.1 upstream anyway; elph offers h2 only for streaming uploads)")
	flag.IntVar(&o.rounds, "rounds", 2, "rounds of each test; the target order is reversed every round")
	flag.DurationVar(&o.pause, "pause", 500*time.Millisecond, "idle time between runs")
	flag.StringVar(&o.profile, "profile", "", "directory for elph profiles taken during its first ping run (CPU, allocations before/after; sets ELPH_ADMIN_PPROF=true)")
	flag.BoolVar(&o.printConf, "print-nginx-conf", false, "print the generated nginx configuration")
	flag.DurationVar(&o.startLimit, "start-timeout", 60*time.Second, "time limit for each server to come up")
	flag.Parse()
	os.Exit(run(o))
}

// target is one thing measured: the upstream directly, nginx or elph.
type target struct {
	name string
	base string // https://127.0.0.1:port
	pid  int    // measured process (and its children); 0: none
}

type bench struct {
	o       options
	tlsCfg  *tls.Config // trusts the bench CA
	up      *child
	upBase  string
	node    *benchkit.Node
	elphPID int
	ngx     *child
	ngxDir  string
	targets []*target // direct, nginx, elph
}

func run(o options) int {
	switch {
	case o.c < 1 || o.d <= 0 || o.rounds < 1 || o.dlC < 1 || o.dlD < 0 || o.dlSize < 0 || o.dlSize > maxBlob:
		return fail(fmt.Errorf("need -c ≥ 1, -d > 0, -rounds ≥ 1, -dl-c ≥ 1 and 0 ≤ -dl-size ≤ %d", maxBlob))
	case o.wsConns < 0 || o.wsMsgs < 1 || o.wsSize < 16 || o.wsSize > 32<<10:
		return fail(errors.New("need -ws-conns ≥ 0, -ws-msgs ≥ 1 and 16 ≤ -ws-size ≤ 32768"))
	}
	for _, bin := range []string{o.bin, o.nginx} {
		if _, err := os.Stat(bin); err != nil {
			return fail(fmt.Errorf("%w (build elph first: go build -o bin/elph .)", err))
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	raiseNoFile()

	dir, err := os.MkdirTemp("", "elph-bench-proxy-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	b := &bench{o: o}
	defer b.stopAll()
	if err := b.start(ctx, dir); err != nil {
		fmt.Fprintln(os.Stderr, "proxy bench:", err)
		b.tails()
		return 1
	}

	proto := "HTTP/1.1"
	if o.h2 {
		proto = "HTTP/2"
	}
	upProto := "h2 and HTTP/1.1"
	if o.upH1 {
		upProto = "HTTP/1.1 only"
	}
	fmt.Printf("proxy bench: elph %s (serve --role=proxy, pid %d) vs nginx %s (%d workers, pid %d); upstream: a child of this tool on %s offering %s (pid %d)\n",
		o.bin, b.elphPID, nginxVersion(o.nginx), runtime.NumCPU(), b.ngx.pid(), strings.TrimPrefix(b.upBase, "https://"), upProto, b.up.pid())
	fmt.Printf("clients: TLS, %s, one kept-alive connection per client (one request at a time on it); %d rounds per test, target order reversed each round, %s warm-up before each timed run\n",
		proto, o.rounds, o.warm)
	fmt.Printf("logging: elph ELPH_LOG_LEVEL=warn (no per-request info line), nginx access_log off; limits: elph per-IP rate and connections 0 (off), nginx none\n")
	fmt.Printf("machine: %d CPUs, load average %s at start; the load generator (this process), the upstream and the proxy under test share them,\n", runtime.NumCPU(), loadAvg())
	fmt.Printf("  and the machine may be running other work: compare the proxies by their ratio, not by absolute figures (\"other CPU\" rows show the noise)\n")

	// What each target looks like from the upstream, and the checks.
	for _, t := range b.targets {
		if err := b.describe(ctx, t); err != nil {
			fmt.Fprintf(os.Stderr, "proxy bench: %s: %v\n", t.name, err)
			b.tails()
			return 1
		}
	}

	tests := []func(context.Context) error{b.pingTest}
	if o.dlD > 0 {
		tests = append(tests, b.downloadTest)
	}
	if o.wsConns > 0 {
		tests = append(tests, b.wsTest)
	}
	for _, t := range tests {
		if err := t(ctx); err != nil {
			if ctx.Err() != nil {
				fmt.Fprintln(os.Stderr, "proxy bench: interrupted; stopping elph, nginx and the upstream")
				return 1
			}
			fmt.Fprintln(os.Stderr, "proxy bench:", err)
			b.tails()
			return 1
		}
	}
	if err := b.alive(); err != nil {
		fmt.Fprintln(os.Stderr, "proxy bench:", err)
		b.tails()
		return 1
	}
	// Warnings and errors either proxy logged during the run.
	fmt.Println()
	logSummary("elph log (level warn)", filepath.Join(b.node.Dir, "elph.log"), "Elph is ready")
	logSummary("nginx error log (level warn)", filepath.Join(b.ngxDir, "error.log"), "")
	return 0
}

// logSummary prints how many lines a log has and the first few.
func logSummary(title, path, skip string) {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Printf("%s: %v\n", title, err)
		return
	}
	var lines []string
	for l := range strings.SplitSeq(string(data), "\n") {
		if strings.TrimSpace(l) != "" && (skip == "" || !strings.Contains(l, skip)) {
			lines = append(lines, l)
		}
	}
	fmt.Printf("%s: %d lines\n", title, len(lines))
	for _, l := range lines[:min(len(lines), 5)] {
		if len(l) > 300 {
			l = l[:300] + "…"
		}
		fmt.Println("  " + l)
	}
}

// start makes the certificates and starts the upstream, elph and nginx.
func (b *bench) start(ctx context.Context, dir string) error {
	o := b.o
	ca, err := httpx.NewCA("elph bench proxy CA")
	if err != nil {
		return err
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o644); err != nil {
		return err
	}
	hosts := []string{"127.0.0.1", "localhost"}
	upCert, err := ca.IssueServerCert(hosts, 0)
	if err != nil {
		return err
	}
	pxCert, err := ca.IssueServerCert(hosts, 0)
	if err != nil {
		return err
	}
	upCrt, upKey := filepath.Join(dir, "upstream.crt"), filepath.Join(dir, "upstream.key")
	pxCrt, pxKey := filepath.Join(dir, "proxy.crt"), filepath.Join(dir, "proxy.key")
	if err := upCert.WriteFiles(upCrt, upKey); err != nil {
		return err
	}
	if err := pxCert.WriteFiles(pxCrt, pxKey); err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	b.tlsCfg = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}

	// Upstream: this binary again, in upstream mode.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	upAddr := benchkit.FreePort()
	h1 := "0"
	if o.upH1 {
		h1 = "1"
	}
	b.up, err = startChild("upstream", filepath.Join(dir, "upstream.log"), self, nil, []string{
		upstreamEnv + "=" + upAddr, upstreamCertEnv + "=" + upCrt, upstreamKeyEnv + "=" + upKey, upstreamH1Env + "=" + h1})
	if err != nil {
		return err
	}
	b.upBase = "https://" + upAddr
	if err := waitHTTPS(ctx, b.upBase+"/readyz", b.tlsCfg, o.startLimit, b.up.exited); err != nil {
		return fmt.Errorf("upstream: %w", err)
	}

	// elph.
	before := children()
	env := []string{
		"ELPH_PROXY_UPSTREAMS=" + b.upBase,
		"ELPH_PROXY_CA_FILE=" + caFile,
		"ELPH_GATEWAY_TLS_CERT=" + pxCrt, "ELPH_GATEWAY_TLS_KEY=" + pxKey,
		"ELPH_PROXY_PER_IP_RATE=0", "ELPH_PROXY_PER_IP_CONNECTIONS=0",
		"ELPH_LOG_LEVEL=warn",
	}
	if o.profile != "" {
		env = append(env, "ELPH_ADMIN_PPROF=true")
	}
	node, err := benchkit.Start(o.bin, []string{"serve", "--role=proxy"}, env...)
	if err != nil {
		return fmt.Errorf("elph: %w", err)
	}
	b.node = node
	for pid := range children() {
		if !before[pid] && pid != b.up.pid() {
			b.elphPID = pid
		}
	}
	if _, err := node.WaitReady(o.startLimit); err != nil {
		return fmt.Errorf("elph: %w", err)
	}
	if b.elphPID == 0 {
		return errors.New("elph: its process was not found among this tool's children")
	}

	// nginx.
	b.ngxDir = filepath.Join(dir, "nginx")
	ngxAddr := benchkit.FreePort()
	conf := nginxConf{Listen: ngxAddr, Cert: pxCrt, Key: pxKey, CA: caFile, Upstream: upAddr, UpstreamName: "localhost", Workers: runtime.NumCPU()}
	if o.printConf {
		s, err := renderNginx(nginxConf{Dir: b.ngxDir, Root: os.Geteuid() == 0, Listen: conf.Listen, Cert: pxCrt, Key: pxKey, CA: caFile,
			Upstream: upAddr, UpstreamName: conf.UpstreamName, Workers: conf.Workers})
		if err != nil {
			return err
		}
		fmt.Printf("--- nginx.conf:\n%s--- end of nginx.conf\n", s)
	}
	b.ngx, err = startNginx(o.nginx, b.ngxDir, conf)
	if err != nil {
		return err
	}
	if err := waitHTTPS(ctx, "https://"+ngxAddr+"/chat/v1/ping", b.tlsCfg, o.startLimit, b.ngx.exited); err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	b.targets = []*target{
		{name: "direct", base: b.upBase},
		{name: "nginx", base: "https://" + ngxAddr, pid: b.ngx.pid()},
		{name: "elph", base: "https://" + node.Gateway, pid: b.elphPID},
	}
	return nil
}

func (b *bench) stopAll() {
	if b.node != nil {
		if _, err := b.node.Stop(15 * time.Second); err != nil {
			fmt.Fprintln(os.Stderr, "proxy bench: elph:", err)
		}
		b.node = nil
	}
	stopNginx(b.ngx)
	if b.up != nil {
		_ = b.up.stop(syscall.SIGTERM, 5*time.Second)
	}
}

// tails prints the end of every log, for a failure.
func (b *bench) tails() {
	if b.node != nil {
		tailFile("the elph log", filepath.Join(b.node.Dir, "elph.log"), 20)
	}
	if b.ngx != nil {
		tailFile("nginx's output", b.ngx.log, 10)
		tailFile("the nginx error log", filepath.Join(b.ngxDir, "error.log"), 20)
	}
	if b.up != nil {
		tailFile("the upstream log", b.up.log, 10)
	}
}

// upstreamStats reads the upstream's counters, directly.
func (b *bench) upstreamStats(reset bool) (upstreamStats, error) {
	var st upstreamStats
	c := &http.Client{Timeout: 5 * time.Second, Transport: newTransport(b.tlsCfg, false)}
	defer c.CloseIdleConnections()
	url := b.upBase + "/bench/stats"
	if reset {
		url += "?reset=1"
	}
	resp, err := c.Get(url)
	if err != nil {
		return st, fmt.Errorf("upstream stats: %w", err)
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// describe checks a target and prints what the upstream saw of its ping.
func (b *bench) describe(ctx context.Context, t *target) error {
	if _, err := b.upstreamStats(true); err != nil {
		return err
	}
	h, err := check(ctx, t.base, b.tlsCfg, b.o.h2)
	if err != nil {
		return err
	}
	st, err := b.upstreamStats(false)
	if err != nil {
		return err
	}
	s := st.Seen
	if s == nil {
		return errors.New("the upstream saw no ping")
	}
	or := func(v string) string {
		if v == "" {
			return "-"
		}
		return v
	}
	fmt.Printf("  %-6s → upstream: %s, Host %s, X-Forwarded-For %s, -Proto %s, -Host %s, X-Request-Id %s (answered: %s), Connection %s\n",
		t.name, s.Proto, s.Host, or(s.XFF), or(s.XFProto), or(s.XFHost), or(s.RequestID), or(h.Get("X-Request-Id")), or(s.Connection))
	return nil
}

// ---- measuring ----

// usage is what a run cost, from /proc.
type usage struct {
	proxyCPU, upCPU, toolCPU, irqCPU, otherCPU, span float64
	rss, pss                                         int // KiB, proxy at the end of the load
	upConns, upH1, upH2                              int64
}

type meter struct {
	b                             *bench
	t                             *target
	at                            time.Time
	proxy, up, tool, all, irq, ot float64
	st                            upstreamStats
	u                             usage
}

func (b *bench) otherPIDsCPU(except int) float64 {
	var sum float64
	for _, t := range b.targets {
		if t.pid != 0 && t.pid != except {
			sum += treeCPU(t.pid)
		}
	}
	return sum
}

// startMeter takes the readings that begin (at the start of the measured
// window) takes again, in case the window never opens.
func (b *bench) startMeter(t *target) *meter {
	m := &meter{b: b, t: t}
	m.st, _ = b.upstreamStats(false)
	m.begin()
	return m
}

func (m *meter) hooks() hooks { return hooks{begin: m.begin, end: m.end} }

// begin reads the CPU counters at the start of the measured window.
func (m *meter) begin() {
	m.at = time.Now()
	m.all, m.irq = systemCPU()
	m.proxy, m.up, m.tool, m.ot = treeCPU(m.t.pid), treeCPU(m.b.up.pid()), selfCPU(), m.b.otherPIDsCPU(m.t.pid)
}

// end is called when the load stops, connections still open: memory.
func (m *meter) end() {
	if m.t.pid != 0 {
		m.u.rss, m.u.pss = treeMem(m.t.pid)
	}
}

func (m *meter) stop() usage {
	b := m.b
	proxy, up, tool, ot := treeCPU(m.t.pid), treeCPU(b.up.pid()), selfCPU(), b.otherPIDsCPU(m.t.pid)
	all, irq := systemCPU()
	m.u.span = time.Since(m.at).Seconds()
	if m.t.pid != 0 {
		m.u.proxyCPU = proxy - m.proxy
	}
	m.u.upCPU, m.u.toolCPU = up-m.up, tool-m.tool
	m.u.irqCPU = irq - m.irq
	// Softirq time is mostly charged to the process it interrupted as
	// well (the process times add up to user+system+softirq), so it is
	// not taken off again.
	m.u.otherCPU = max(0, (all-m.all)-m.u.proxyCPU-m.u.upCPU-m.u.toolCPU-(ot-m.ot))
	if st, err := b.upstreamStats(false); err == nil {
		m.u.upConns, m.u.upH1, m.u.upH2 = st.Conns-m.st.Conns, st.H1-m.st.H1, st.H2-m.st.H2
	}
	return m.u
}

// order is the targets of round r: reversed every other round.
func (b *bench) order(r int) []*target {
	ts := slices.Clone(b.targets)
	if r%2 == 1 {
		slices.Reverse(ts)
	}
	return ts
}

func names(ts []*target) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = t.name
	}
	return strings.Join(s, " → ")
}

// agg sums a target's runs over the rounds.
type agg struct {
	n, bytes, errs int64
	firstErr       string
	window         float64 // seconds measured
	lat            []float64
	perRound       []float64 // the main rate of each round
	extra          []float64 // handshake ms (WebSocket)
	conns          int64
	u              usage
}

func (a *agg) addUsage(u usage) {
	a.u.proxyCPU += u.proxyCPU
	a.u.upCPU += u.upCPU
	a.u.toolCPU += u.toolCPU
	a.u.otherCPU += u.otherCPU
	a.u.irqCPU += u.irqCPU
	a.u.span += u.span
	a.u.rss, a.u.pss = max(a.u.rss, u.rss), max(a.u.pss, u.pss)
	a.u.upConns += u.upConns
	a.u.upH1 += u.upH1
	a.u.upH2 += u.upH2
}

func (a *agg) addErr(n int64, first string) {
	if a.errs == 0 && n > 0 {
		a.firstErr = first
	}
	a.errs += n
}

func (b *bench) sleep(ctx context.Context) error {
	select {
	case <-time.After(b.o.pause):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// alive fails when a proxy or the upstream has exited.
func (b *bench) alive() error {
	switch {
	case b.up.exited():
		return errors.New("the upstream exited")
	case b.ngx.exited():
		return errors.New("nginx exited")
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", b.elphPID)); err != nil {
		return errors.New("elph exited")
	}
	return nil
}

// httpTest runs one HTTP test over the rounds.
func (b *bench) httpTest(ctx context.Context, path string, conc int, dur time.Duration, want int64, profile bool) (map[string]*agg, []string, error) {
	res := map[string]*agg{}
	var orders []string
	profiled := !profile || b.o.profile == ""
	for r := range b.o.rounds {
		ts := b.order(r)
		orders = append(orders, names(ts))
		for _, t := range ts {
			if err := b.sleep(ctx); err != nil {
				return nil, nil, err
			}
			var prof chan error
			if !profiled && t.name == "elph" {
				profiled = true
				prof = b.profileElph(ctx, dur)
			}
			m := b.startMeter(t)
			hr := httpLoad(ctx, t.base+path, conc, b.o.warm, dur, b.tlsCfg, b.o.h2, want, m.hooks())
			u := m.stop()
			if prof != nil {
				if err := <-prof; err != nil {
					fmt.Fprintln(os.Stderr, "proxy bench: profile:", err)
				}
			}
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			if err := b.alive(); err != nil {
				return nil, nil, err
			}
			a := res[t.name]
			if a == nil {
				a = &agg{}
				res[t.name] = a
			}
			a.n += hr.n
			a.bytes += hr.bytes
			a.addErr(hr.errs, hr.firstErr)
			a.window += hr.window.Seconds()
			a.lat = append(a.lat, hr.lat...)
			a.perRound = append(a.perRound, float64(hr.n)/hr.window.Seconds())
			a.addUsage(u)
			if hr.n == 0 {
				return nil, nil, fmt.Errorf("%s: no request succeeded in %s (%d errors; first: %s)", t.name, dur, hr.errs, hr.firstErr)
			}
		}
	}
	return res, orders, nil
}

func (b *bench) pingTest(ctx context.Context) error {
	res, orders, err := b.httpTest(ctx, "/chat/v1/ping", b.o.c, b.o.d, int64(len(pingBody)), true)
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	fmt.Printf("\n== ping: GET /chat/v1/ping (%d B JSON), %d clients, %s, %d rounds × %s (orders: %s)\n",
		len(pingBody), b.o.c, b.proto(), b.o.rounds, b.o.d, strings.Join(orders, " | "))
	b.latencyRows("latency ms", res, func(a *agg) []float64 { return a.lat })
	tb := b.newTable(res)
	tb.rate("requests/s", func(a *agg) float64 { return float64(a.n) / a.window }, "%.0f", ">=", 0.8)
	tb.perRound("  requests/s by round", "%.0f")
	b.latencyTable(tb, func(a *agg) []float64 { return a.lat })
	tb.common(true)
	tb.print()
	return nil
}

func (b *bench) downloadTest(ctx context.Context) error {
	path := fmt.Sprintf("/files/v1/blob?size=%d", b.o.dlSize)
	res, orders, err := b.httpTest(ctx, path, b.o.dlC, b.o.dlD, int64(b.o.dlSize), false)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	fmt.Printf("\n== download: GET %s, %d clients, %s, %d rounds × %s (orders: %s)\n",
		path, b.o.dlC, b.proto(), b.o.rounds, b.o.dlD, strings.Join(orders, " | "))
	b.latencyRows("download ms", res, func(a *agg) []float64 { return a.lat })
	tb := b.newTable(res)
	for _, a := range res {
		for i := range a.perRound {
			a.perRound[i] *= float64(b.o.dlSize) / 1e6
		}
	}
	tb.rate("MB/s (10^6 B)", func(a *agg) float64 { return float64(a.bytes) / a.window / 1e6 }, "%.1f", ">=", 0.8)
	tb.perRound("  MB/s by round", "%.1f")
	tb.rate("downloads/s", func(a *agg) float64 { return float64(a.n) / a.window }, "%.1f", "", 0)
	b.latencyTable(tb, func(a *agg) []float64 { return a.lat })
	tb.common(true)
	tb.print()
	return nil
}

func (b *bench) wsTest(ctx context.Context) error {
	res := map[string]*agg{}
	var orders []string
	for r := range b.o.rounds {
		ts := b.order(r)
		orders = append(orders, names(ts))
		for _, t := range ts {
			if err := b.sleep(ctx); err != nil {
				return err
			}
			m := b.startMeter(t)
			wsURL := "wss" + strings.TrimPrefix(t.base, "https") + "/chat/v1/ws"
			wr := wsLoad(ctx, wsURL, b.o.wsConns, b.o.wsMsgs, b.o.wsSize, b.tlsCfg, b.o.wsLimit, m.hooks())
			u := m.stop()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err := b.alive(); err != nil {
				return fmt.Errorf("websocket: %w", err)
			}
			if wr.msgs == 0 {
				return fmt.Errorf("websocket: %s: no message echoed (%d errors; first: %s)", t.name, wr.errs, wr.firstErr)
			}
			a := res[t.name]
			if a == nil {
				a = &agg{}
				res[t.name] = a
			}
			a.n += wr.msgs
			a.conns += wr.conns
			a.addErr(wr.errs, wr.firstErr)
			a.window += wr.span.Seconds()
			a.lat = append(a.lat, wr.rtt...)
			a.extra = append(a.extra, wr.handshake...)
			a.perRound = append(a.perRound, float64(wr.msgs)/wr.span.Seconds())
			a.addUsage(u)
		}
	}
	fmt.Printf("\n== websocket: %d connections (HTTP/1.1 upgrade) × %d messages of %d B, each waiting for its echo, %d rounds (orders: %s)\n",
		b.o.wsConns, b.o.wsMsgs, b.o.wsSize, b.o.rounds, strings.Join(orders, " | "))
	b.latencyRows("round trip ms", res, func(a *agg) []float64 { return a.lat })
	b.latencyRows("handshake ms", res, func(a *agg) []float64 { return a.extra })
	tb := b.newTable(res)
	tb.rate("messages/s", func(a *agg) float64 { return float64(a.n) / a.window }, "%.0f", ">=", 0.8)
	tb.perRound("  messages/s by round", "%.0f")
	b.latencyTable(tb, func(a *agg) []float64 { return a.lat })
	tb.quantile("handshake p99 ms", func(a *agg) []float64 { return a.extra }, .99, "", 0)
	tb.row("connections held", func(a *agg) string { return fmt.Sprintf("%d/%d", a.conns, int64(b.o.wsConns)*int64(b.o.rounds)) }, "")
	tb.common(false)
	tb.print()
	return nil
}

func (b *bench) proto() string {
	if b.o.h2 {
		return "HTTP/2"
	}
	return "HTTP/1.1"
}

// profileElph takes elph's CPU profile over the measured window of the
// run that starts now, and its allocation profile before and after.
func (b *bench) profileElph(ctx context.Context, dur time.Duration) chan error {
	done := make(chan error, 1)
	if err := os.MkdirAll(b.o.profile, 0o755); err != nil {
		done <- err
		return done
	}
	admin := "http://" + b.node.Admin + "/debug/pprof/"
	save := func(url, file string, limit time.Duration) error {
		ctx, cancel := context.WithTimeout(ctx, limit)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s (is ELPH_ADMIN_PPROF on?)", url, resp.Status)
		}
		f, err := os.Create(filepath.Join(b.o.profile, file))
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, resp.Body); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	if err := save(admin+"allocs", "elph-allocs-before.pprof", 10*time.Second); err != nil {
		done <- err
		return done
	}
	secs := max(1, int(dur.Seconds()))
	go func() {
		select {
		case <-time.After(b.o.warm):
		case <-ctx.Done():
			done <- ctx.Err()
			return
		}
		err := save(fmt.Sprintf("%sprofile?seconds=%d", admin, secs), "elph-cpu.pprof", time.Duration(secs)*time.Second+30*time.Second)
		if err == nil {
			err = save(admin+"allocs", "elph-allocs-after.pprof", 10*time.Second)
		}
		if err == nil {
			fmt.Printf("profiles of elph's first ping run in %s: go tool pprof -top %s %s; go tool pprof -sample_index=alloc_space -top -diff_base %s %s %s\n",
				b.o.profile, b.o.bin, filepath.Join(b.o.profile, "elph-cpu.pprof"),
				filepath.Join(b.o.profile, "elph-allocs-before.pprof"), b.o.bin, filepath.Join(b.o.profile, "elph-allocs-after.pprof"))
		}
		done <- err
	}()
	return done
}

// ---- reporting ----

// latencyRows prints a distribution per target with benchkit's columns.
func (b *bench) latencyRows(what string, res map[string]*agg, f func(*agg) []float64) {
	benchkit.Header(os.Stdout)
	for _, t := range b.targets {
		benchkit.Row(os.Stdout, what+" "+t.name, "ms", f(res[t.name]))
	}
}

// table prints one row per measure: direct, nginx, elph, elph/nginx and
// the goal.
type table struct {
	b    *bench
	res  map[string]*agg
	rows [][6]string
}

func (b *bench) newTable(res map[string]*agg) *table { return &table{b: b, res: res} }

func (tb *table) add(cells [6]string) { tb.rows = append(tb.rows, cells) }

func ratio(e, n float64) (float64, string) {
	if n == 0 || math.IsNaN(e) || math.IsNaN(n) {
		return math.NaN(), "-"
	}
	r := e / n
	return r, fmt.Sprintf("%.2f", r)
}

func goal(r float64, op string, lim float64) string {
	if op == "" || math.IsNaN(r) {
		return ""
	}
	ok := r >= lim
	if op == "<=" {
		ok = r <= lim
	}
	verdict := "met"
	if !ok {
		verdict = "MISSED"
	}
	return fmt.Sprintf("goal %s %.2f: %s", strings.ReplaceAll(strings.ReplaceAll(op, ">=", "≥"), "<=", "≤"), lim, verdict)
}

// rate adds a row of a figure per target with the elph/nginx ratio.
func (tb *table) rate(name string, f func(*agg) float64, format, op string, lim float64) {
	d, n, e := f(tb.res["direct"]), f(tb.res["nginx"]), f(tb.res["elph"])
	r, rs := ratio(e, n)
	tb.add([6]string{name, fmt.Sprintf(format, d), fmt.Sprintf(format, n), fmt.Sprintf(format, e), rs, goal(r, op, lim)})
}

func (tb *table) quantile(name string, f func(*agg) []float64, q float64, op string, lim float64) {
	qf := func(a *agg) float64 {
		s := slices.Clone(f(a))
		if len(s) == 0 {
			return math.NaN()
		}
		slices.Sort(s)
		if q >= 1 {
			return s[len(s)-1]
		}
		return benchkit.Quantile(s, q)
	}
	tb.rate(name, qf, "%.2f", op, lim)
}

func (tb *table) row(name string, f func(*agg) string, note string) {
	tb.add([6]string{name, f(tb.res["direct"]), f(tb.res["nginx"]), f(tb.res["elph"]), "", note})
}

// perRound adds the main rate of each round, with the ratio of each round
// (the rounds run the targets in opposite orders).
func (tb *table) perRound(name, format string) {
	cell := func(a *agg) string {
		s := make([]string, len(a.perRound))
		for i, v := range a.perRound {
			s[i] = fmt.Sprintf(format, v)
		}
		return strings.Join(s, " ")
	}
	n, e := tb.res["nginx"], tb.res["elph"]
	var rs []string
	for i := range min(len(n.perRound), len(e.perRound)) {
		_, r := ratio(e.perRound[i], n.perRound[i])
		rs = append(rs, r)
	}
	tb.add([6]string{name, cell(tb.res["direct"]), cell(n), cell(e), strings.Join(rs, " "), ""})
}

func (b *bench) latencyTable(tb *table, f func(*agg) []float64) {
	tb.quantile("latency p50 ms", f, .5, "", 0)
	tb.quantile("latency p90 ms", f, .9, "", 0)
	tb.quantile("latency p99 ms", f, .99, "<=", 1.5)
	tb.quantile("latency max ms", f, 1, "", 0)
}

// common adds the errors and resource rows.
func (tb *table) common(perRequest bool) {
	tb.row("errors", func(a *agg) string { return fmt.Sprint(a.errs) }, "")
	proxyRow := func(name string, v func(*agg) float64, format string, note string) {
		d := "-"
		n, e := v(tb.res["nginx"]), v(tb.res["elph"])
		_, rs := ratio(e, n)
		tb.add([6]string{name, d, fmt.Sprintf(format, n), fmt.Sprintf(format, e), rs, note})
	}
	proxyRow("proxy CPU s", func(a *agg) float64 { return a.u.proxyCPU }, "%.2f", "")
	proxyRow("proxy CPU % of one core", func(a *agg) float64 { return 100 * a.u.proxyCPU / a.u.span }, "%.0f", "")
	if perRequest {
		proxyRow("proxy CPU µs per request", func(a *agg) float64 { return 1e6 * a.u.proxyCPU / float64(a.n) }, "%.1f", "")
		// What one core of proxy would serve: the comparison least moved
		// by the other work on the machine.
		proxyRow("requests per proxy CPU second", func(a *agg) float64 { return float64(a.n) / a.u.proxyCPU }, "%.0f", "")
	} else {
		proxyRow("proxy CPU µs per message", func(a *agg) float64 { return 1e6 * a.u.proxyCPU / float64(a.n) }, "%.1f", "")
	}
	proxyRow("proxy RSS MiB (under load)", func(a *agg) float64 { return float64(a.u.rss) / 1024 }, "%.1f", "nginx: master + workers")
	proxyRow("proxy PSS MiB (under load)", func(a *agg) float64 { return float64(a.u.pss) / 1024 }, "%.1f", "shared pages split")
	tb.row("upstream CPU s", func(a *agg) string { return fmt.Sprintf("%.2f", a.u.upCPU) }, "")
	tb.row("load generator CPU s", func(a *agg) string { return fmt.Sprintf("%.2f", a.u.toolCPU) }, "this process")
	tb.row("softirq CPU s", func(a *agg) string { return fmt.Sprintf("%.2f", a.u.irqCPU) }, "loopback TCP; mostly inside the figures above")
	tb.row("other CPU s (noise)", func(a *agg) string { return fmt.Sprintf("%.2f", a.u.otherCPU) }, "other processes on the machine (≈: tick accounting)")
	tb.row("measured s (all rounds)", func(a *agg) string { return fmt.Sprintf("%.1f", a.u.span) }, "the CPU rows cover these windows; 2 CPUs = 2 CPU s per s")
	tb.row("upstream conns opened", func(a *agg) string { return fmt.Sprint(a.u.upConns) }, "warm-up included")
	tb.row("upstream requests h1/h2", func(a *agg) string { return fmt.Sprintf("%d/%d", a.u.upH1, a.u.upH2) }, "warm-up and health checks included")
}

func (tb *table) print() {
	w := []int{0, 0, 0, 0, 0}
	head := [6]string{"measure", "upstream-direct", "nginx", "elph", "elph/nginx", ""}
	for _, r := range append([][6]string{head}, tb.rows...) {
		for i := range w {
			w[i] = max(w[i], len([]rune(r[i])))
		}
	}
	for _, r := range append([][6]string{head}, tb.rows...) {
		line := fmt.Sprintf("%-*s", w[0], r[0])
		for i := 1; i < 5; i++ {
			line += fmt.Sprintf("  %*s", w[i]+len(r[i])-len([]rune(r[i])), r[i])
		}
		if r[5] != "" {
			line += "  " + r[5]
		}
		fmt.Println(strings.TrimRight(line, " "))
	}
	if a := tb.res; a != nil {
		for _, t := range tb.b.targets {
			if x := a[t.name]; x != nil && x.errs > 0 {
				fmt.Printf("  %s: first error: %s\n", t.name, x.firstErr)
			}
		}
	}
}

func raiseNoFile() {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return
	}
	r.Cur = r.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "proxy bench:", err)
	return 1
}
