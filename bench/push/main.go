// Command push measures push notifications for chat messages: every
// message to a group becomes one queued push per offline member's
// device, and the push module's workers deliver them over HTTP/2 to a
// fake APNs (TLS, in this process, verifying what Apple verifies: the
// path, the device token, the ES256 provider token of the team's key,
// the headers and the payload). It prints pushes per second, the
// message → push delivered latency of every push, lost and duplicate
// pushes, and the queue's own figures.
//
// Two modes:
//
//   - -node (the default) measures a real `elph serve --all` from outside,
//     as the other benches do. The node is pointed at the fake through
//     configuration (push.apns.url, .p8 key file, key and team id) and
//     trusts the fake's certificate as its only system root
//     (SSL_CERT_FILE). Setup creates -users users through the sso admin
//     API, logs each in, registers an iPhone per user through
//     POST /push/v1/devices, and lets the first user create a group with
//     all the others. Nobody holds a WebSocket, so every member is
//     offline and each message fans out to users−1 pushes. The sender
//     then posts messages through the chat REST API at -rate per second
//     for -d (or a burst of -messages), and the send → push latency
//     covers chat's store and publish, the bus, presence, the enqueue,
//     the queue and the APNs request.
//   - -inproc runs the push module alone in this process through its
//     public API on a real database and publishes chat events straight on
//     an in-memory bus: it isolates the durable queue.
//
// Usage:
//
//	go run ./bench/push [-users 200 -rate 10 -d 15s | -messages 100] [-workers 4] [-apns-delay 2ms] [-dbdriver mysql -dsn …]
//	go run ./bench/push -inproc [-n 20000 -users 100 -workers 16 -rate 0] [-dbdriver mysql -dsn …]
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/elph-server/elph/platform/store"
)

type options struct {
	node bool

	// Both modes.
	users, workers, rate int
	delay                time.Duration
	driver, dsn          string
	timeout              time.Duration

	// -inproc.
	n          int
	cpuprofile string

	// -node.
	bin       string
	messages  int
	dur       time.Duration
	conc      int
	setupC    int
	setupMax  time.Duration
	restart   bool
	linger    time.Duration
	serverEnv multiFlag
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var o options
	var inproc bool
	flag.BoolVar(&o.node, "node", true, "measure a real node (elph serve --all) from this process; -node=false is -inproc")
	flag.BoolVar(&inproc, "inproc", false, "run the push module in this process instead of a node: isolates the queue")
	flag.IntVar(&o.users, "users", 0, "node: users, one iPhone each, all in one group (the first one sends; default 200, at most 1000); -inproc: recipients per message (default 100)")
	flag.IntVar(&o.workers, "workers", 0, "push.workers (node default: the server's default; -inproc default 16)")
	flag.IntVar(&o.rate, "rate", 0, "chat messages per second (node default 10); 0 posts them all at once, a burst (-inproc default)")
	flag.DurationVar(&o.delay, "apns-delay", 0, "how long the fake APNs takes to answer (Apple's round trip)")
	flag.StringVar(&o.driver, "dbdriver", "sqlite", "sqlite (a temp file) or mysql (with -dsn; -inproc empties its push tables)")
	flag.StringVar(&o.dsn, "dsn", "", "mysql DSN, e.g. root@tcp(127.0.0.1:3306)/elph_bench_push")
	flag.DurationVar(&o.timeout, "timeout", 2*time.Minute, "give up waiting for the pushes this long after the last send")
	flag.IntVar(&o.n, "n", 20000, "-inproc: pushes to deliver (rounded up to whole messages)")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the measured phase to this file: the server's (admin pprof, the -d window or 10 s of a burst), or with -inproc this process's")
	flag.StringVar(&o.bin, "bin", "./bin/elph", "node: the elph binary to measure")
	flag.IntVar(&o.messages, "messages", 0, "node: post this many messages as fast as -c senders can (a burst) instead of -rate for -d (default 100 with -rate 0)")
	flag.DurationVar(&o.dur, "d", 15*time.Second, "node: duration of the send phase at -rate")
	flag.IntVar(&o.conc, "c", 16, "node: posts in flight at most (a burst's senders; at -rate a slot that finds this many outstanding is skipped and counted)")
	flag.IntVar(&o.setupC, "setupc", 8, "node: concurrent requests while creating users, logging in and registering devices")
	flag.DurationVar(&o.setupMax, "setup-timeout", 10*time.Minute, "node: time limit of the setup")
	flag.BoolVar(&o.restart, "restart", true, "node: restart the server on the same data after setup (no password hashing in its memory and CPU figures)")
	flag.DurationVar(&o.linger, "linger", 0, "node: keep listening this long after the drain, to count re-sent pushes (a row whose settling failed comes back when its lease runs out: 70 s by default)")
	flag.Var(&o.serverEnv, "env", "node: extra KEY=VALUE for the server (repeatable)")
	flag.Parse()

	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if inproc {
		if set["node"] && o.node {
			exit(errors.New("-node and -inproc: choose one"))
		}
		o.node = false
	}
	def := func(name string, p *int, node, in int) {
		if !set[name] {
			*p = in
			if o.node {
				*p = node
			}
		}
	}
	def("users", &o.users, 200, 100)
	def("workers", &o.workers, 0, 16)
	def("rate", &o.rate, 10, 0)
	if o.node && !set["messages"] && o.rate == 0 {
		o.messages = 100
	}
	if o.node && o.messages > 0 && set["rate"] && o.rate > 0 {
		exit(errors.New("-messages is a burst; it does not go with -rate"))
	}
	switch {
	case o.driver != store.DriverSQLite && o.driver != store.DriverMySQL:
		exit(fmt.Errorf("-dbdriver %q: sqlite or mysql", o.driver))
	case o.driver == store.DriverMySQL && o.dsn == "":
		exit(errors.New("-dbdriver mysql needs -dsn"))
	}
	var err error
	if o.node {
		err = runNode(o)
	} else {
		err = runInproc(o)
	}
	if err != nil {
		exit(err)
	}
}

func exit(err error) {
	fmt.Fprintln(os.Stderr, "push bench:", err)
	os.Exit(1)
}
