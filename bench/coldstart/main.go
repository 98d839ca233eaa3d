// Command coldstart measures how fast `elph serve` becomes ready and how
// much memory it holds when idle. It starts the binary itself, on free
// loopback ports in a fresh data directory each run, polls the admin
// /readyz, reads VmRSS from /proc, then stops it with SIGTERM and times the
// drain.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
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
	fmt.Printf("%-26s %10s %10s %10s %10s\n", "measure", "min", "median", "p90", "max")
	for _, role := range [][]string{{"serve", "--all"}, {"serve", "--role=proxy"}} {
		var ready, stop, rss []float64
		for i := 0; i < *runs; i++ {
			r, err := once(*bin, role, *idle)
			if err != nil {
				fmt.Fprintf(os.Stderr, "coldstart %v: %v\n", role, err)
				os.Exit(1)
			}
			ready = append(ready, r.ready.Seconds()*1000)
			stop = append(stop, r.stop.Seconds()*1000)
			rss = append(rss, float64(r.rssKB)/1024)
		}
		name := strings.Join(role[1:], " ")
		row(name+" ready ms", ready)
		row(name+" idle RSS MiB", rss)
		row(name+" stop ms", stop)
	}
}

type result struct {
	ready, stop time.Duration
	rssKB       int
}

func once(bin string, args []string, idle time.Duration) (result, error) {
	dir, err := os.MkdirTemp("", "elph-coldstart-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	admin, gateway, web := freePort(), freePort(), freePort()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(),
		"ELPH_NODE_DATA_DIR="+filepath.Join(dir, "data"),
		"ELPH_ADMIN_LISTEN="+admin, "ELPH_GATEWAY_LISTEN="+gateway,
		"ELPH_MODULES_WEBCLIENT_LISTEN="+web, "ELPH_LOG_LEVEL=warn")
	logf, err := os.Create(filepath.Join(dir, "elph.log"))
	if err != nil {
		return result{}, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	client := &http.Client{Timeout: time.Second}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	var r result
	for deadline := start.Add(30 * time.Second); ; {
		resp, err := client.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				r.ready = time.Since(start)
				break
			}
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("not ready after 30s (log in %s)", logf.Name())
		}
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(idle)
	if r.rssKB, err = rss(cmd.Process.Pid); err != nil {
		return r, err
	}
	stopAt := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			return r, fmt.Errorf("exit after SIGTERM: %w", err)
		}
	case <-time.After(30 * time.Second):
		return r, fmt.Errorf("did not stop within 30s")
	}
	r.stop = time.Since(stopAt)
	return r, nil
}

func rss(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func row(name string, v []float64) {
	s := slices.Clone(v)
	slices.Sort(s)
	p := func(q float64) float64 { return s[int(q*float64(len(s)-1)+0.5)] }
	fmt.Printf("%-26s %10.1f %10.1f %10.1f %10.1f\n", name, s[0], p(0.5), p(0.9), s[len(s)-1])
}
