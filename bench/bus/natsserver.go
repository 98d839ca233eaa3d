package main

// The NATS server the NATS phases go through: a private nats-server this
// tool starts as its child on free loopback ports (as
// platform/bus/natstest does for tests, which needs a testing.TB), or one
// given with -nats. The private one also serves its monitoring endpoint,
// whose /varz counts what the server received and sent and the slow
// consumers it cut off.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	natsReadyTimeout = 15 * time.Second
	natsStopTimeout  = 10 * time.Second
	natsStartTries   = 3
	// natsMaxPayload leaves room for the bus's largest event plus its
	// headers, which NATS's default of 1 MiB lacks (NewNATS warns then).
	natsMaxPayload = 2 << 20
)

// natsServer is the server used; pid and monitor are zero for an external
// server (unless -nats-monitor names its monitoring endpoint).
type natsServer struct {
	url     string
	monitor string // http://host:port of the monitoring endpoint, or ""
	bin     string
	pid     int
	info    natsInfo

	dir    string
	log    string
	cmd    *exec.Cmd
	exited chan struct{}
}

// natsInfo is the part of the INFO greeting shown in the header.
type natsInfo struct {
	Version    string `json:"version"`
	MaxPayload int64  `json:"max_payload"`
	Headers    bool   `json:"headers"`
}

// findNATSBinary looks in PATH, then where Debian's package puts it (not in
// a non-root PATH).
func findNATSBinary() string {
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p
	}
	const debian = "/usr/sbin/nats-server"
	if st, err := os.Stat(debian); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
		return debian
	}
	return ""
}

// externalNATS checks that a NATS server answers at u.
func externalNATS(u, monitor string) (*natsServer, error) {
	info, err := natsGreeting(u)
	if err != nil {
		return nil, fmt.Errorf("-nats %s: %w", u, err)
	}
	return &natsServer{url: u, monitor: strings.TrimSuffix(monitor, "/"), info: info}, nil
}

// startNATS starts bin on free loopback ports and waits until it greets
// clients. The child is killed with this process (Pdeathsig) even if the
// tool itself is killed.
func startNATS(bin string) (*natsServer, error) {
	dir, err := os.MkdirTemp("", "elph-bench-bus-")
	if err != nil {
		return nil, err
	}
	s := &natsServer{bin: bin, dir: dir, log: filepath.Join(dir, "nats.log")}
	var errs []error
	for range natsStartTries {
		if err := s.run(); err != nil {
			// Most likely another process took a port between picking and
			// binding it: try others.
			errs = append(errs, err)
			continue
		}
		return s, nil
	}
	os.RemoveAll(dir)
	return nil, fmt.Errorf("nats-server did not start: %w", errors.Join(errs...))
}

func (s *natsServer) run() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	mport, err := freePort()
	if err != nil {
		return err
	}
	conf := filepath.Join(s.dir, "nats.conf")
	text := fmt.Sprintf("listen: \"127.0.0.1:%d\"\nhttp: \"127.0.0.1:%d\"\nmax_payload: %d\n", port, mport, natsMaxPayload)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return err
	}
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(s.bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.cmd, s.exited, s.pid = cmd, exited, cmd.Process.Pid
	s.url = fmt.Sprintf("nats://127.0.0.1:%d", port)
	s.monitor = fmt.Sprintf("http://127.0.0.1:%d", mport)
	for deadline := time.Now().Add(natsReadyTimeout); ; {
		if info, err := natsGreeting(s.url); err == nil {
			s.info = info
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("nats-server exited: %s", s.logText())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("nats-server on port %d not ready after %v: %s", port, natsReadyTimeout, s.logText())
		}
	}
}

// stop kills a private server and removes its directory.
func (s *natsServer) stop() {
	if s.cmd == nil {
		return
	}
	s.kill()
	os.RemoveAll(s.dir)
}

func (s *natsServer) kill() {
	_ = s.cmd.Process.Kill()
	select {
	case <-s.exited:
	case <-time.After(natsStopTimeout):
	}
}

// alive reports whether a private server is still running (an external
// one is assumed to be).
func (s *natsServer) alive() bool {
	if s.exited == nil {
		return true
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

func (s *natsServer) logText() string {
	b, _ := os.ReadFile(s.log)
	return strings.TrimSpace(string(b))
}

// logLines returns the private server's log lines that mention one of
// words (slow consumers, errors), at most max of them, and how many there
// were.
func (s *natsServer) logLines(max int, words ...string) ([]string, int) {
	if s.log == "" {
		return nil, 0
	}
	var out []string
	n := 0
	for line := range strings.SplitSeq(s.logText(), "\n") {
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

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// natsGreeting connects to rawURL and reads the INFO line a NATS server
// sends first thing.
func natsGreeting(rawURL string) (natsInfo, error) {
	first, _, _ := strings.Cut(rawURL, ",")
	u, err := url.Parse(strings.TrimSpace(first))
	if err != nil {
		return natsInfo{}, err
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "4222")
	}
	conn, err := net.DialTimeout("tcp", host, 2*time.Second)
	if err != nil {
		return natsInfo{}, err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return natsInfo{}, err
	}
	rest, ok := strings.CutPrefix(line, "INFO ")
	if !ok {
		return natsInfo{}, fmt.Errorf("not a NATS server: it said %.40q", line)
	}
	var info natsInfo
	if err := json.Unmarshal([]byte(rest), &info); err != nil {
		return natsInfo{}, fmt.Errorf("INFO: %w", err)
	}
	return info, nil
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
