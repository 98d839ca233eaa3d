// Package natstest gives tests a real NATS server. With the nats-server
// binary (Debian package nats-server, in PATH or /usr/sbin) it starts a
// private one on a free loopback port, which a test may stop and restart;
// without it, it uses the server at $ELPH_TEST_NATS_URL or
// nats://127.0.0.1:4222 if one answers there. Otherwise the test is
// skipped, or fails when ELPH_REQUIRE_SERVICES=1.
//
// Tests sharing a server keep apart by giving each bus its own subject
// prefix (Prefix).
package natstest

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
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
	"testing"
	"time"
)

const (
	// EnvRequireServices makes a missing server fail the test instead of
	// skipping it (CI sets it).
	EnvRequireServices = "ELPH_REQUIRE_SERVICES"
	// EnvURL names an external server to use when nats-server is not
	// installed.
	EnvURL = "ELPH_TEST_NATS_URL"
	// DefaultURL is tried when EnvURL is not set.
	DefaultURL = "nats://127.0.0.1:4222"

	// DefaultMaxPayload is a private server's max_payload: room for the
	// bus's largest event plus its headers, which NATS's default 1 MiB
	// lacks.
	DefaultMaxPayload = 2 << 20

	readyTimeout = 15 * time.Second
	stopTimeout  = 10 * time.Second
	startTries   = 3
)

// Options configure a private server.
type Options struct {
	// User and Password, when set, are required from clients.
	User, Password string
	// MaxPayload is the server's max_payload in bytes; default
	// DefaultMaxPayload.
	MaxPayload int
}

// Server is a NATS server for one test.
type Server struct {
	// URL is where clients connect, without credentials.
	URL string

	t    testing.TB
	bin  string // empty for an external server
	port int
	conf string
	log  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start returns a private server if nats-server is installed, else an
// external one.
func Start(t testing.TB) *Server {
	t.Helper()
	if bin := findBinary(); bin != "" {
		return start(t, bin, Options{})
	}
	u := os.Getenv(EnvURL)
	if u == "" {
		u = DefaultURL
	}
	if err := answers(u); err != nil {
		unavailable(t, fmt.Sprintf("nats-server is not installed (apt-get install nats-server) and no NATS server answers at %s (%s): %v", u, EnvURL, err))
	}
	return &Server{URL: u, t: t}
}

// StartPrivate starts a private server, for tests that stop it or need its
// configuration; it needs the nats-server binary.
func StartPrivate(t testing.TB, o Options) *Server {
	t.Helper()
	bin := findBinary()
	if bin == "" {
		unavailable(t, "nats-server is not installed (apt-get install nats-server); this test needs a private server")
	}
	return start(t, bin, o)
}

// Private reports whether the test owns the server, which it can then stop
// and restart.
func (s *Server) Private() bool { return s.bin != "" }

// Prefix returns a bus subject prefix unique to this call, so that tests
// on one server never see each other's events.
func Prefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "test-" + hex.EncodeToString(b[:])
}

// Stop kills the private server, as a crash would. Start arranges it for
// the end of the test.
func (s *Server) Stop() {
	s.t.Helper()
	if !s.Private() {
		s.t.Fatal("natstest: Stop on an external server")
	}
	s.stop()
}

// Restart starts the private server again on the same port, after Stop.
func (s *Server) Restart() {
	s.t.Helper()
	if !s.Private() {
		s.t.Fatal("natstest: Restart on an external server")
	}
	s.stop()
	if err := s.run(); err != nil {
		s.t.Fatalf("natstest: restart nats-server on port %d: %v", s.port, err)
	}
}

// Log returns what the private server has logged.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.log)
	return string(b)
}

func unavailable(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv(EnvRequireServices) == "1" {
		t.Fatalf("natstest: %s (%s=1)", msg, EnvRequireServices)
	}
	t.Skipf("natstest: %s; set %s=1 to fail instead of skipping", msg, EnvRequireServices)
}

func findBinary() string {
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p
	}
	const debian = "/usr/sbin/nats-server" // not in a non-root PATH
	if st, err := os.Stat(debian); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
		return debian
	}
	return ""
}

func start(t testing.TB, bin string, o Options) *Server {
	t.Helper()
	dir := t.TempDir()
	s := &Server{t: t, bin: bin, conf: filepath.Join(dir, "nats.conf"), log: filepath.Join(dir, "nats.log")}
	if o.MaxPayload <= 0 {
		o.MaxPayload = DefaultMaxPayload
	}
	conf := fmt.Sprintf("max_payload: %d\n", o.MaxPayload)
	if o.User != "" {
		conf += fmt.Sprintf("authorization {\n  user: %s\n  password: %s\n}\n", strconv.Quote(o.User), strconv.Quote(o.Password))
	}
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		t.Fatalf("natstest: %v", err)
	}
	var errs []error
	for range startTries {
		port, err := freePort()
		if err == nil {
			s.port = port
			s.URL = fmt.Sprintf("nats://127.0.0.1:%d", port)
			if err = s.run(); err == nil {
				t.Cleanup(func() {
					s.stop()
					if t.Failed() {
						t.Logf("natstest: nats-server log:\n%s", s.Log())
					}
				})
				return s
			}
		}
		// Most likely another process took the port between picking
		// and binding it: try another.
		errs = append(errs, err)
	}
	t.Fatalf("natstest: nats-server did not start: %v", errors.Join(errs...))
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// run starts nats-server on s.port and waits until it accepts clients.
func (s *Server) run() error {
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(s.bin, "-a", "127.0.0.1", "-p", strconv.Itoa(s.port), "-c", s.conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test binary dies (timeout panic), so does the server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	deadline := time.Now().Add(readyTimeout)
	for {
		if answers(s.URL) == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("nats-server exited:\n%s", s.Log())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("nats-server on port %d not ready after %v:\n%s", s.port, readyTimeout, s.Log())
		}
	}
}

func (s *Server) stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	select {
	case <-exited:
	case <-time.After(stopTimeout):
	}
}

// answers reports whether a NATS server greets a client at rawURL: it
// sends INFO first thing.
func answers(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "4222")
	}
	conn, err := net.DialTimeout("tcp", host, 2*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "INFO ") {
		return fmt.Errorf("not a NATS server: it said %.40q", line)
	}
	return nil
}
