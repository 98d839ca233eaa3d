package natstest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a nats-server child on free loopback ports, for tests (through
// Start) and for bench tools, which have no testing.TB.
type Process struct {
	// URL is where clients connect, without credentials.
	URL string
	// Monitor is the monitoring endpoint (http://…, /varz), or "" unless
	// Options.Monitor asked for it.
	Monitor string
	// Bin is the nats-server binary.
	Bin string

	port int
	conf string
	log  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Info is the part of a server's INFO greeting callers look at.
type Info struct {
	Version    string `json:"version"`
	MaxPayload int64  `json:"max_payload"`
	Headers    bool   `json:"headers"`
}

// FindBinary looks for nats-server in PATH, then where Debian's package
// puts it (not in a non-root PATH); "" when there is none.
func FindBinary() string {
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p
	}
	const debian = "/usr/sbin/nats-server"
	if st, err := os.Stat(debian); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
		return debian
	}
	return ""
}

// Launch starts bin with o on free loopback ports, its configuration and
// log in dir, and waits until it greets clients. The child dies with this
// process (Pdeathsig), even when this one is killed.
func Launch(bin, dir string, o Options) (*Process, error) {
	p := &Process{Bin: bin, conf: filepath.Join(dir, "nats.conf"), log: filepath.Join(dir, "nats.log")}
	if o.MaxPayload <= 0 {
		o.MaxPayload = DefaultMaxPayload
	}
	var errs []error
	for range startTries {
		port, err := freePort()
		conf := fmt.Sprintf("max_payload: %d\n", o.MaxPayload)
		if o.User != "" {
			conf += fmt.Sprintf("authorization {\n  user: %s\n  password: %s\n}\n", strconv.Quote(o.User), strconv.Quote(o.Password))
		}
		if err == nil && o.Monitor {
			var mport int
			if mport, err = freePort(); err == nil {
				conf += fmt.Sprintf("http: \"127.0.0.1:%d\"\n", mport)
				p.Monitor = fmt.Sprintf("http://127.0.0.1:%d", mport)
			}
		}
		if err == nil {
			err = os.WriteFile(p.conf, []byte(conf), 0o600)
		}
		if err == nil {
			p.port = port
			p.URL = fmt.Sprintf("nats://127.0.0.1:%d", port)
			if err = p.run(); err == nil {
				return p, nil
			}
		}
		// Most likely another process took a port between picking and
		// binding it: try others.
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("nats-server did not start: %w", errors.Join(errs...))
}

// run starts the server on p.port and waits until it accepts clients.
func (p *Process) run() error {
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(p.Bin, "-a", "127.0.0.1", "-p", strconv.Itoa(p.port), "-c", p.conf)
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
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	deadline := time.Now().Add(readyTimeout)
	for {
		if _, err := Greeting(p.URL); err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("nats-server exited:\n%s", p.Log())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return fmt.Errorf("nats-server on port %d not ready after %v:\n%s", p.port, readyTimeout, p.Log())
		}
	}
}

// Stop kills the server, as a crash would, and waits for it to exit.
func (p *Process) Stop() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	select {
	case <-exited:
	case <-time.After(stopTimeout):
	}
}

// Restart starts the server again on the same port.
func (p *Process) Restart() error {
	p.Stop()
	return p.run()
}

// Pid is the running server's process id, or 0.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Alive reports whether the server is running.
func (p *Process) Alive() bool {
	p.mu.Lock()
	exited := p.exited
	running := p.cmd != nil
	p.mu.Unlock()
	if !running {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// Log returns what the server has logged.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// Greeting connects to the first server of rawURL (a comma-separated
// list) and reads the INFO line a NATS server sends first thing.
func Greeting(rawURL string) (Info, error) {
	first, _, _ := strings.Cut(rawURL, ",")
	u, err := url.Parse(strings.TrimSpace(first))
	if err != nil {
		return Info{}, err
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "4222")
	}
	conn, err := net.DialTimeout("tcp", host, 2*time.Second)
	if err != nil {
		return Info{}, err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return Info{}, err
	}
	js, ok := strings.CutPrefix(line, "INFO ")
	if !ok {
		return Info{}, fmt.Errorf("not a NATS server: it said %.40q", line)
	}
	var info Info
	if err := json.Unmarshal([]byte(js), &info); err != nil {
		return Info{}, fmt.Errorf("NATS INFO: %w", err)
	}
	return info, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
