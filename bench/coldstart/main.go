// Command coldstart measures how fast `elph serve` becomes ready, how much
// memory it holds when idle and how long it takes to drain and stop. Each
// run starts the binary in a fresh data directory on free loopback ports.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/elph-server/elph/bench/benchkit"
)

func main() {
	bin := flag.String("bin", "./bin/elph", "elph binary to measure")
	runs := flag.Int("runs", 10, "cold starts per role")
	idle := flag.Duration("idle", 2*time.Second, "idle time before RSS is read")
	flag.Parse()
	if _, err := os.Stat(*bin); err != nil {
		fmt.Fprintln(os.Stderr, "coldstart: build the binary first (make build):", err)
		os.Exit(2)
	}
	fmt.Printf("coldstart: %s, %d runs per role, RSS read after %s idle\n\n", *bin, *runs, *idle)
	benchkit.Header(os.Stdout)
	for _, args := range [][]string{{"serve", "--all"}, {"serve", "--role=proxy"}} {
		var ready, stop []time.Duration
		var rss []float64
		for i := 0; i < *runs; i++ {
			// A proxy needs an upstream in its configuration; none needs
			// to answer for it to start.
			n, err := benchkit.Start(*bin, args, "ELPH_PROXY_UPSTREAMS=https://127.0.0.1:1")
			if err != nil {
				fail(err)
			}
			r, err := n.WaitReady(30 * time.Second)
			if err != nil {
				fail(err)
			}
			time.Sleep(*idle)
			kib, err := n.RSSKiB()
			if err != nil {
				fail(err)
			}
			s, err := n.Stop(30 * time.Second)
			if err != nil {
				fail(err)
			}
			ready, stop, rss = append(ready, r), append(stop, s), append(rss, float64(kib)/1024)
		}
		name := args[1]
		benchkit.Row(os.Stdout, name+" to /readyz", "ms", benchkit.Millis(ready))
		benchkit.Row(os.Stdout, name+" idle RSS", "MiB", rss)
		benchkit.Row(os.Stdout, name+" SIGTERM to exit", "ms", benchkit.Millis(stop))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "coldstart:", err)
	os.Exit(1)
}
