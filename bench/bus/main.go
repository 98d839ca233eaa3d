// Command bus measures the event bus (platform/bus) in this process:
//
//   - memory: the in-memory bus, one publisher to one subscription;
//   - nats: two NATS buses, as two server nodes would have them (two NATS
//     connections), through a nats-server on loopback: node A publishes,
//     node B's subscription handles;
//   - fanout: one publishing node and K subscribing nodes (K+1 NATS
//     connections), each node with a plain subscription: every node
//     handles every event;
//   - shared: the same K nodes with bus.Shared() subscriptions of one name
//     (a NATS queue group): each event must be handled exactly once in the
//     cluster.
//
// Each runs twice: at a fixed offered rate (-rate events/s for -d) and as a
// burst (-n events as fast as the publisher can). Every event carries its
// sequence number, key and send time in its payload (one process, one
// clock), so the tool prints publish → handler latency quantiles, events
// and deliveries per second, and counts lost, duplicate, reordered (per
// key) and malformed deliveries, next to the bus's own counters (dropped,
// backpressure), its warnings, this process's CPU and the nats-server's
// (a separate process: the load crosses it). It exits non-zero when a
// phase lost or duplicated events (with -policy block, where losing one is
// not allowed), reordered them or ran out of -timeout.
//
// The NATS server is the one at -nats, or else a private nats-server (PATH
// or /usr/sbin/nats-server) this tool starts on a free loopback port and
// kills at the end.
//
// Usage:
//
//	go run ./bench/bus [-rate 20000 -d 5s -n 100000] [-size 512 -keys 1000 -workers 4 -queue 1024] [-nodes 3] [-phases memory,nats,fanout,shared] [-nats nats://host:4222 [-nats-monitor http://host:8222]]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/bus/natstest"
)

type options struct {
	natsURL     string
	natsMonitor string
	natsBin     string

	rate    int
	dur     time.Duration
	n       int
	size    int
	keys    int
	workers int
	queue   int
	nodes   int
	policy  bus.Policy
	pubWait time.Duration
	timeout time.Duration
	phases  []string
	seed    uint64

	handlerDelay time.Duration
	cpuprofile   string
}

var allPhases = []string{"memory", "nats", "fanout", "shared"}

func main() {
	var o options
	flag.StringVar(&o.natsURL, "nats", "", "NATS server URL to use; empty starts a private nats-server on a free loopback port")
	flag.StringVar(&o.natsMonitor, "nats-monitor", "", "with -nats: its monitoring endpoint (http://host:8222) for the server's message and slow consumer counters")
	flag.StringVar(&o.natsBin, "nats-server", "", "nats-server binary for the private server (default: PATH, then /usr/sbin/nats-server)")
	flag.IntVar(&o.rate, "rate", 20000, "offered rate of the rate phases, events/s (0 skips them)")
	flag.DurationVar(&o.dur, "d", 5*time.Second, "duration of the rate phases")
	flag.IntVar(&o.n, "n", 0, "events in a burst phase, published as fast as possible (default 100000, fewer for large payloads: at most 64 MiB of payload but at least 10000; -1 skips bursts)")
	flag.IntVar(&o.size, "size", 512, fmt.Sprintf("payload bytes per event (JSON with a chat-like body; at least %d)", minPayload))
	flag.IntVar(&o.keys, "keys", 1000, "ordering keys the events are spread over (uniformly at random)")
	flag.IntVar(&o.workers, "workers", 4, "workers per subscription (bus.WithWorkers)")
	flag.IntVar(&o.queue, "queue", bus.DefaultQueueSize, "queue capacity per worker (bus.WithQueueSize)")
	flag.IntVar(&o.nodes, "nodes", 3, "subscribing NATS nodes (buses, each its own connection) in the fanout and shared phases")
	policy := flag.String("policy", "block", "subscription policy: block (no loss allowed) or drop-newest (losses counted, allowed)")
	flag.DurationVar(&o.pubWait, "publish-timeout", bus.DefaultPublishTimeout, "the buses' PublishTimeout: how long a full Block subscriber is waited for")
	flag.DurationVar(&o.timeout, "timeout", 30*time.Second, "time limit of each phase (publishing and handling)")
	phases := flag.String("phases", strings.Join(allPhases, ","), "phases to run, comma-separated: "+strings.Join(allPhases, ", "))
	flag.Uint64Var(&o.seed, "seed", 1, "seed of the keys' random order")
	flag.DurationVar(&o.handlerDelay, "handler-delay", 0, "how long each handler call sleeps (after recording the delivery), to play a slow consumer: backpressure, drops")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of this process for each phase into this directory (<phase>.pprof)")
	flag.Parse()

	switch *policy {
	case "block":
		o.policy = bus.Block
	case "drop-newest":
		o.policy = bus.DropNewest
	default:
		os.Exit(fail(fmt.Errorf("-policy %q: block or drop-newest", *policy)))
	}
	for p := range strings.SplitSeq(*phases, ",") {
		p = strings.TrimSpace(p)
		if !slices.Contains(allPhases, p) {
			os.Exit(fail(fmt.Errorf("-phases: unknown phase %q (want %s)", p, strings.Join(allPhases, ", "))))
		}
		if !slices.Contains(o.phases, p) {
			o.phases = append(o.phases, p)
		}
	}
	if o.n == 0 {
		o.n = min(100_000, max(10_000, (64<<20)/max(o.size, 1)))
	}
	if o.n < 0 {
		o.n = 0
	}
	switch {
	case o.size < minPayload || o.size > bus.MaxPayload:
		os.Exit(fail(fmt.Errorf("-size %d: between %d and %d", o.size, minPayload, bus.MaxPayload)))
	case o.keys < 1 || o.keys > maxKeys:
		os.Exit(fail(fmt.Errorf("-keys %d: between 1 and %d", o.keys, maxKeys)))
	case o.workers < 1 || o.queue < 1 || o.nodes < 1:
		os.Exit(fail(errors.New("-workers, -queue and -nodes must be at least 1")))
	case o.rate < 0 || (o.rate > 0 && o.dur <= 0) || o.timeout <= 0 || o.pubWait <= 0 || o.handlerDelay < 0:
		os.Exit(fail(errors.New("need -rate ≥ 0, -d > 0 with a rate, -timeout > 0, -publish-timeout > 0 and -handler-delay ≥ 0")))
	case o.rate == 0 && o.n == 0:
		os.Exit(fail(errors.New("-rate 0 and -n -1: nothing to run")))
	case int64(o.rate)*int64(o.dur/time.Millisecond)/1000 > 1e8 || o.n > 1e8:
		os.Exit(fail(errors.New("more than 10⁸ events in a phase: lower -rate × -d or -n")))
	}
	os.Exit(run(o))
}

func run(o options) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	needNATS := slices.ContainsFunc(o.phases, func(p string) bool { return p != "memory" })
	var srv *natsServer
	if needNATS {
		var err error
		if o.natsURL != "" {
			srv, err = externalNATS(o.natsURL, o.natsMonitor)
		} else {
			bin := o.natsBin
			if bin == "" {
				bin = natstest.FindBinary()
			}
			if bin == "" {
				return fail(errors.New("nats-server is not installed (apt-get install nats-server): install it, or give a server with -nats, or run -phases memory"))
			}
			srv, err = startNATS(bin)
		}
		if err != nil {
			return fail(err)
		}
		defer srv.stop()
	}

	b := &bench{o: o, srv: srv, warn: &warnLog{}}
	b.keys = make([]string, o.keys)
	for i := range b.keys {
		b.keys[i] = fmt.Sprintf("conv-%d", i)
	}
	defer b.close()
	if err := b.setup(ctx); err != nil {
		return fail(err)
	}
	b.header()

	for _, name := range o.phases {
		for _, burst := range []bool{false, true} {
			if (!burst && o.rate == 0) || (burst && o.n == 0) {
				continue
			}
			if ctx.Err() != nil {
				break
			}
			r, err := b.runPhase(ctx, name, burst)
			if err != nil {
				return fail(err)
			}
			b.results = append(b.results, r)
			r.print(os.Stdout, b)
		}
	}
	b.summary(os.Stdout)
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "bus bench: interrupted")
		return 1
	}
	var failed []string
	for _, r := range b.results {
		for _, f := range r.failures() {
			failed = append(failed, r.label()+": "+f)
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(os.Stderr, "bus bench: FAIL\n  %s\n", strings.Join(failed, "\n  "))
		return 1
	}
	return 0
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "bus bench:", err)
	return 1
}

// header prints what is measured, with the command line and the machine.
func (b *bench) header() {
	o := b.o
	fmt.Printf("bus bench: %s\n", strings.Join(append([]string{"go run ./bench/bus"}, os.Args[1:]...), " "))
	fmt.Printf("machine: %d CPUs (%s), GOMAXPROCS %d, Linux %s, %s, load average %s at start; this process (publisher and subscribers), the nats-server and any other work share them\n",
		runtime.NumCPU(), cpuModel(), runtime.GOMAXPROCS(0), readTrim("/proc/sys/kernel/osrelease"), runtime.Version(), loadAvg())
	burst := "no burst phases"
	if o.n > 0 {
		burst = fmt.Sprintf("bursts of %d events as fast as possible", o.n)
	}
	rate := "no rate phases"
	if o.rate > 0 {
		rate = fmt.Sprintf("%d events/s offered for %s (%d events)", o.rate, o.dur, rateEvents(o))
	}
	fmt.Printf("load: %s; %s; each phase limited to %s\n", rate, burst, o.timeout)
	delay := "handlers only record the delivery"
	if o.handlerDelay > 0 {
		delay = fmt.Sprintf("handlers sleep %s per event", o.handlerDelay)
	}
	fmt.Printf("events: %d B payload (JSON: sequence number, key, send time, chat-like body), %d keys at random; subscriptions: %d workers × %d queue, policy %s, publish timeout %s; %s\n",
		o.size, o.keys, o.workers, o.queue, o.policy, o.pubWait, delay)
	if b.srv != nil {
		s := b.srv
		where := "external server " + s.url
		if s.proc != nil {
			where = fmt.Sprintf("private %s (pid %d) on %s", s.proc.Bin, s.pid(), s.url)
		}
		fmt.Printf("nats: %s, nats-server %s, max_payload %d", where, s.info.Version, s.info.MaxPayload)
		if v, ok := s.varz(); ok {
			fmt.Printf(", max_pending %d MiB, write_deadline %s", v.MaxPending>>20, time.Duration(v.WriteDeadline))
		}
		fmt.Printf("; %d bus connections (%s publishes; %s subscribe), prefix %s\n",
			len(b.nodes), b.pub.name, nodeNames(b.nodes[1:]), b.prefix)
	}
	fmt.Println("latency: publish (just before Publish) → handler start, from the payload's send time (one process, one clock)")
	if n, lines := b.warn.since(0, 5); n > 0 {
		fmt.Printf("bus warnings while connecting: %d\n", n)
		for _, l := range lines {
			fmt.Printf("  %s\n", l)
		}
	}
}

func rateEvents(o options) int {
	return int(int64(o.rate) * int64(o.dur) / int64(time.Second))
}

func nodeNames(ns []*node) string {
	names := make([]string, len(ns))
	for i, n := range ns {
		names[i] = n.name
	}
	return strings.Join(names, ", ")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func loadAvg() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}
