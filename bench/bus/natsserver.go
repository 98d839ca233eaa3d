package main

// The NATS server the NATS phases go through: a private nats-server this
// tool starts as its child on free loopback ports (natstest.Launch, as the
// tests do), or one given with -nats. The private one also serves its
// monitoring endpoint, whose /varz counts what the server received and
// sent and the slow consumers it cut off.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/elph-server/elph/platform/bus/natstest"
)

// natsServer is the server used; proc is nil and monitor empty for an
// external server (unless -nats-monitor names its monitoring endpoint).
type natsServer struct {
	url     string
	monitor string // http://host:port of the monitoring endpoint, or ""
	info    natstest.Info
	proc    *natstest.Process
	dir     string
}

// externalNATS checks that a NATS server answers at u.
func externalNATS(u, monitor string) (*natsServer, error) {
	info, err := natstest.Greeting(u)
	if err != nil {
		return nil, fmt.Errorf("-nats %s: %w", u, err)
	}
	return &natsServer{url: u, monitor: strings.TrimSuffix(monitor, "/"), info: info}, nil
}

// startNATS starts bin on free loopback ports, with its monitoring
// endpoint and room for the bus's largest event, and waits until it greets
// clients. The child is killed with this process even if the tool itself
// is killed.
func startNATS(bin string) (*natsServer, error) {
	dir, err := os.MkdirTemp("", "elph-bench-bus-")
	if err != nil {
		return nil, err
	}
	proc, err := natstest.Launch(bin, dir, natstest.Options{Monitor: true})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	info, err := natstest.Greeting(proc.URL)
	if err != nil {
		proc.Stop()
		os.RemoveAll(dir)
		return nil, err
	}
	return &natsServer{url: proc.URL, monitor: proc.Monitor, info: info, proc: proc, dir: dir}, nil
}

// pid is the private server's process id, 0 for an external one.
func (s *natsServer) pid() int {
	if s.proc == nil {
		return 0
	}
	return s.proc.Pid()
}

// stop kills a private server and removes its directory.
func (s *natsServer) stop() {
	if s.proc == nil {
		return
	}
	s.proc.Stop()
	os.RemoveAll(s.dir)
}

// alive reports whether a private server is still running (an external
// one is assumed to be).
func (s *natsServer) alive() bool { return s.proc == nil || s.proc.Alive() }

// logLines returns the private server's log lines that mention one of
// words (slow consumers, errors), at most max of them, and how many there
// were.
func (s *natsServer) logLines(max int, words ...string) ([]string, int) {
	if s.proc == nil {
		return nil, 0
	}
	var out []string
	n := 0
	for line := range strings.SplitSeq(strings.TrimSpace(s.proc.Log()), "\n") {
		for _, w := range words {
			if strings.Contains(line, w) {
				n++
				if len(out) < max {
					out = append(out, line)
				}
				break
			}
		}
	}
	return out, n
}

// varz is the part of the server's /varz used here.
type varz struct {
	InMsgs        int64 `json:"in_msgs"`
	OutMsgs       int64 `json:"out_msgs"`
	InBytes       int64 `json:"in_bytes"`
	OutBytes      int64 `json:"out_bytes"`
	SlowConsumers int64 `json:"slow_consumers"`
	Connections   int   `json:"connections"`
	Mem           int64 `json:"mem"`
	MaxPending    int64 `json:"max_pending"`
	WriteDeadline int64 `json:"write_deadline"` // nanoseconds
}

// varz fetches the monitoring counters; ok is false without a monitoring
// endpoint or when it does not answer.
func (s *natsServer) varz() (varz, bool) {
	if s.monitor == "" {
		return varz{}, false
	}
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(s.monitor + "/varz")
	if err != nil {
		return varz{}, false
	}
	defer resp.Body.Close()
	var v varz
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&v) != nil {
		return varz{}, false
	}
	return v, true
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat times (100 on Linux).
const clockTick = 100

// procCPU is the user plus system CPU seconds pid has used; -1 when it
// cannot be read (no pid, gone).
func procCPU(pid int) float64 {
	if pid <= 0 {
		return -1
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// comm is in parentheses and may hold spaces: split after the last ')'.
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return -1
	}
	f := strings.Fields(string(b[end+1:]))
	// f[0] is field 3 (state): utime is field 14, stime 15.
	if len(f) < 13 {
		return -1
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTick
}

// procRSSKiB is pid's resident set size; 0 when it cannot be read.
func procRSSKiB(pid int) int {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}
