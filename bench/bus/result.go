package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/elph-server/elph/bench/benchkit"
)

// result is one phase's figures.
type result struct {
	name        string // memory, nats, fanout, shared
	burst       bool
	nats        bool
	shared      bool
	nodes       int // subscribing nodes
	n           int // events to publish
	rate        int
	dur         time.Duration
	lossAllowed bool

	// Publisher.
	start     time.Time
	attempted int
	pubErrs   int
	pubCall   []float64 // µs each Publish call took
	firstErr  string
	pubSpan   time.Duration // first publish to the last one's return
	late      int           // rate phases: publishes more than 1 ms behind schedule
	maxLag    time.Duration
	timedOut  bool
	stalled   bool // deliveries stopped before all arrived

	// Receivers.
	perNode    []int64   // distinct events each node handled
	deliveries int64     // sum of perNode
	complete   int64     // events handled everywhere they should be
	lost       int64     // missing (event, node) deliveries; for shared, events no node handled
	dups       int64     // deliveries beyond the first of an (event, node); for shared, beyond the first in the group
	reorder    int64     // deliveries of a key older than one already handled on that node
	malformed  int64     // payloads or keys that did not survive the trip
	lat        []float64 // µs, first delivery of each (event, node)
	latAll     []float64 // µs, fan-out: until every node had handled the event
	span       time.Duration

	// Bus counters and logs.
	busDropped, busBackpressure, handlerErrs float64
	waits, waitSum                           float64
	warnN                                    int
	warnLines                                []string

	// Resources.
	wall                     time.Duration
	selfCPU, natsCPU, others float64
	gcs                      uint32
	gcPause                  time.Duration
	mallocs, allocB          uint64
	varz                     varz
	varzOK                   bool
	natsRSS                  int
	natsDead                 bool
	natsLog                  []string
	natsLogN                 int
}

// account counts what the receivers saw.
func (r *result) account(ph *phase) {
	n := r.attempted
	r.perNode = make([]int64, len(ph.recv))
	var lastRecv int64
	for _, rc := range ph.recv {
		r.reorder += rc.reord.Load()
		r.malformed += rc.bad.Load()
	}
	for seq := range n {
		var got, nodes int64
		var worst int64
		for i, rc := range ph.recv {
			c := int64(rc.count[seq])
			if c == 0 {
				continue
			}
			got += c
			nodes++
			r.perNode[i]++
			r.lat = append(r.lat, float64(rc.lat[seq])/1e3)
			worst = max(worst, rc.lat[seq])
			lastRecv = max(lastRecv, rc.recvAt[seq])
			if !r.shared {
				r.dups += c - 1
			}
		}
		if r.shared {
			switch {
			case got == 0:
				r.lost++
			default:
				r.complete++
				r.dups += got - 1
			}
			continue
		}
		r.lost += int64(len(ph.recv)) - nodes
		if nodes == int64(len(ph.recv)) {
			r.complete++
			if len(ph.recv) > 1 {
				r.latAll = append(r.latAll, float64(worst)/1e3)
			}
		}
	}
	for _, c := range r.perNode {
		r.deliveries += c
	}
	if lastRecv > 0 {
		r.span = time.Duration(lastRecv - r.start.UnixNano())
	}
}

// measure takes the resources and counters used between two snapshots.
func (r *result) measure(before, after snapshot, b *bench) {
	r.wall = after.at.Sub(before.at)
	r.selfCPU = after.self - before.self
	r.natsCPU = -1
	if before.nats >= 0 && after.nats >= 0 {
		r.natsCPU = after.nats - before.nats
	}
	r.others = max(0, after.all-before.all-r.selfCPU-max(0, r.natsCPU))
	r.gcs = after.numGC - before.numGC
	r.gcPause = time.Duration(after.gcPause - before.gcPause)
	r.mallocs, r.allocB = after.mallocs-before.mallocs, after.allocB-before.allocB
	r.waits, r.waitSum = after.waits-before.waits, after.waitSum-before.waitSum
	r.warnN, r.warnLines = b.warn.since(before.warnMark, 3)
	if r.nats && before.varzOK && after.varzOK {
		r.varzOK = true
		r.varz = varz{
			InMsgs: after.varz.InMsgs - before.varz.InMsgs, OutMsgs: after.varz.OutMsgs - before.varz.OutMsgs,
			InBytes: after.varz.InBytes - before.varz.InBytes, OutBytes: after.varz.OutBytes - before.varz.OutBytes,
			SlowConsumers: after.varz.SlowConsumers - before.varz.SlowConsumers,
			Connections:   after.varz.Connections, Mem: after.varz.Mem,
		}
	}
	if r.nats && b.srv != nil {
		r.natsRSS = procRSSKiB(b.srv.pid())
		r.natsDead = !b.srv.alive()
		r.natsLog, r.natsLogN = b.srv.logLines(3, "[WRN]", "[ERR]", "Slow Consumer", "[FTL]")
	}
}

// failures lists what makes the run fail.
func (r *result) failures() []string {
	var f []string
	if r.timedOut {
		f = append(f, "ran out of -timeout")
	}
	if r.lost > 0 && !r.lossAllowed {
		f = append(f, fmt.Sprintf("%d lost", r.lost))
	}
	if r.dups > 0 {
		f = append(f, fmt.Sprintf("%d duplicates", r.dups))
	}
	if r.reorder > 0 {
		f = append(f, fmt.Sprintf("%d reordered", r.reorder))
	}
	if r.malformed > 0 {
		f = append(f, fmt.Sprintf("%d malformed", r.malformed))
	}
	if r.attempted < r.n {
		f = append(f, fmt.Sprintf("%d of %d events not published", r.n-r.attempted, r.n))
	}
	if r.natsDead {
		f = append(f, "nats-server exited")
	}
	return f
}

func (r *result) label() string {
	name := r.name
	if r.nodes > 1 {
		name = fmt.Sprintf("%s×%d", r.name, r.nodes)
	}
	if r.burst {
		return name + " burst"
	}
	return fmt.Sprintf("%s %d/s", name, r.rate)
}

func (r *result) title() string {
	load := fmt.Sprintf("%d events/s offered for %s", r.rate, r.dur)
	if r.burst {
		load = fmt.Sprintf("burst of %d events, as fast as possible", r.n)
	}
	var what string
	switch r.name {
	case "memory":
		what = "memory bus, in this process: 1 publisher → 1 subscription"
	case "nats":
		what = "NATS, 2 nodes: node pub publishes, node1's subscription handles (through the nats-server)"
	case "fanout":
		what = fmt.Sprintf("NATS fan-out: node pub publishes, %d nodes' plain subscriptions each handle every event", r.nodes)
	case "shared":
		what = fmt.Sprintf("NATS shared: node pub publishes, %d nodes' Shared subscriptions (one queue group) handle each event once", r.nodes)
	}
	return what + "; " + load
}

func (r *result) print(w io.Writer, b *bench) {
	fmt.Fprintf(w, "\n== %s: %s\n", r.label(), r.title())
	benchkit.Header(w)
	switch {
	case r.shared:
		benchkit.Row(w, "publish → handler (one node)", "µs", r.lat)
	case r.nodes > 1:
		benchkit.Row(w, "publish → handler (each node)", "µs", r.lat)
		benchkit.Row(w, fmt.Sprintf("publish → all %d nodes handled", r.nodes), "µs", r.latAll)
	default:
		benchkit.Row(w, "publish → handler", "µs", r.lat)
	}
	benchkit.Row(w, "Publish() call", "µs", r.pubCall)

	fmt.Fprintf(w, "published: %d of %d events in %.2fs: %.0f events/s (%.1f MB/s of payload); publish errors %d",
		r.attempted, r.n, r.pubSpan.Seconds(), perSec(r.attempted, r.pubSpan), perSec(r.attempted*b.o.size, r.pubSpan)/1e6, r.pubErrs)
	if r.rate > 0 {
		fmt.Fprintf(w, "; %d publishes >1 ms behind schedule (max %s)", r.late, fmtDur(r.maxLag))
	}
	fmt.Fprintln(w)
	if r.firstErr != "" {
		fmt.Fprintf(w, "  first publish error: %s\n", r.firstErr)
	}
	if r.span > 0 {
		fmt.Fprintf(w, "handled: %d events in %.2fs from the first publish to the last handler: %.0f events/s", r.complete, r.span.Seconds(), perSec(int(r.complete), r.span))
		if r.nodes > 1 {
			fmt.Fprintf(w, ", %.0f deliveries/s (%d)", perSec(int(r.deliveries), r.span), r.deliveries)
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintln(w, "handled: nothing")
	}
	if r.nodes > 1 {
		parts := make([]string, len(r.perNode))
		for i, c := range r.perNode {
			parts[i] = fmt.Sprintf("node%d %d (%.1f%%)", i+1, c, 100*float64(c)/float64(max(r.deliveries, 1)))
		}
		fmt.Fprintf(w, "per node: %s\n", strings.Join(parts, ", "))
	}
	verdict := "ok"
	if f := r.failures(); len(f) > 0 {
		verdict = "FAIL: " + strings.Join(f, ", ")
	}
	lostNote := "not allowed"
	if r.lossAllowed {
		lostNote = "allowed by -policy drop-newest"
	}
	fmt.Fprintf(w, "check: lost %d (%s), duplicates %d, reordered within a key %d, malformed %d", r.lost, lostNote, r.dups, r.reorder, r.malformed)
	if r.stalled {
		fmt.Fprintf(w, "; deliveries stopped before all arrived")
	}
	fmt.Fprintf(w, " → %s\n", verdict)
	fmt.Fprintf(w, "bus counters: dropped %.0f, backpressure %.0f, handler errors %.0f, waits for room in a full queue %.0f (%s in all); warnings logged %d\n",
		r.busDropped, r.busBackpressure, r.handlerErrs, r.waits, fmtDur(time.Duration(r.waitSum*float64(time.Second))), r.warnN)
	for _, l := range r.warnLines {
		fmt.Fprintf(w, "  %s\n", l)
	}
	if r.nats {
		if r.varzOK {
			fmt.Fprintf(w, "nats-server: in %d msgs (%.1f MB), out %d msgs (%.1f MB), slow consumers %d, %d connections",
				r.varz.InMsgs, float64(r.varz.InBytes)/1e6, r.varz.OutMsgs, float64(r.varz.OutBytes)/1e6, r.varz.SlowConsumers, r.varz.Connections)
			if r.natsRSS > 0 {
				fmt.Fprintf(w, ", RSS %.1f MiB", float64(r.natsRSS)/1024)
			}
		} else {
			fmt.Fprintf(w, "nats-server: no monitoring endpoint (-nats-monitor)")
		}
		if r.natsDead {
			fmt.Fprintf(w, "; EXITED")
		}
		fmt.Fprintln(w)
		if r.natsLogN > 0 {
			fmt.Fprintf(w, "  nats-server log, warnings and errors so far: %d\n", r.natsLogN)
			for _, l := range r.natsLog {
				fmt.Fprintf(w, "  %s\n", l)
			}
		}
	}
	ws := r.wall.Seconds()
	cpu := fmt.Sprintf("this process %.2fs (%.0f%% of a core)", r.selfCPU, 100*r.selfCPU/ws)
	total, whose := r.selfCPU, "this process"
	if r.natsCPU >= 0 {
		cpu += fmt.Sprintf(", nats-server %.2fs (%.0f%%)", r.natsCPU, 100*r.natsCPU/ws)
		if r.nats {
			total, whose = total+r.natsCPU, "this process + nats-server"
		}
	} else if r.nats {
		cpu += ", nats-server not measured (external)"
	}
	fmt.Fprintf(w, "CPU over %.2fs: %s, other processes %.2fs (%.0f%%); %d cores = %d%%; %.1f µs of CPU (%s) per delivery\n",
		ws, cpu, r.others, 100*r.others/ws, runtime.NumCPU(), 100*runtime.NumCPU(), 1e6*total/float64(max(r.deliveries, 1)), whose)
	ev := float64(max(r.attempted, 1))
	fmt.Fprintf(w, "this process's heap: %.1f allocations and %.0f B allocated per event published (the bench's publisher and handler allocate nothing per event), %d GCs (%s paused)\n",
		float64(r.mallocs)/ev, float64(r.allocB)/ev, r.gcs, fmtDur(r.gcPause))
}

// summary prints one line per phase.
func (b *bench) summary(w io.Writer) {
	if len(b.results) == 0 {
		return
	}
	fmt.Fprintf(w, "\n== summary (latency: publish → handler; fan-out: each node)\n")
	fmt.Fprintf(w, "%-18s %7s %9s %9s %9s %8s %8s %8s %8s %6s %5s %5s %7s %7s %s\n",
		"phase", "events", "publish/s", "events/s", "deliv/s", "p50", "p90", "p99", "max", "lost", "dup", "reord", "CPU s", "nats s", "verdict")
	for _, r := range b.results {
		s := slices.Clone(r.lat)
		slices.Sort(s)
		q := func(p float64) string {
			if len(s) == 0 {
				return "-"
			}
			return fmtDur(time.Duration(benchkit.Quantile(s, p) * 1e3))
		}
		mx := "-"
		if len(s) > 0 {
			mx = fmtDur(time.Duration(s[len(s)-1] * 1e3))
		}
		natsCPU := "-"
		if r.natsCPU >= 0 {
			natsCPU = fmt.Sprintf("%.2f", r.natsCPU)
		}
		verdict := "ok"
		if len(r.failures()) > 0 {
			verdict = "FAIL"
		}
		fmt.Fprintf(w, "%-18s %7d %9.0f %9.0f %9.0f %8s %8s %8s %8s %6d %5d %5d %7.2f %7s %s\n",
			r.label(), r.attempted, perSec(r.attempted, r.pubSpan), perSec(int(r.complete), r.span), perSec(int(r.deliveries), r.span),
			q(.5), q(.9), q(.99), mx, r.lost, r.dups, r.reorder, r.selfCPU, natsCPU, verdict)
	}
}

func perSec(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// fmtDur prints a duration with three significant figures in a fitting
// unit.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < time.Millisecond:
		return fmt.Sprintf("%.3gµs", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.3gms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.3gs", d.Seconds())
}
