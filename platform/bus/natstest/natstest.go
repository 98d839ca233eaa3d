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
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
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
	// Monitor opens the monitoring endpoint on another free port
	// (Process.Monitor).
	Monitor bool
}

// Server is a NATS server for one test.
type Server struct {
	// URL is where clients connect, without credentials.
	URL string

	t    testing.TB
	proc *Process // nil for an external server
}

// Start returns a private server if nats-server is installed, else an
// external one.
func Start(t testing.TB) *Server {
	t.Helper()
	if bin := FindBinary(); bin != "" {
		return start(t, bin, Options{})
	}
	u := os.Getenv(EnvURL)
	if u == "" {
		u = DefaultURL
	}
	if _, err := Greeting(u); err != nil {
		unavailable(t, fmt.Sprintf("nats-server is not installed (apt-get install nats-server) and no NATS server answers at %s (%s): %v", u, EnvURL, err))
	}
	return &Server{URL: u, t: t}
}

// StartPrivate starts a private server, for tests that stop it or need its
// configuration; it needs the nats-server binary.
func StartPrivate(t testing.TB, o Options) *Server {
	t.Helper()
	bin := FindBinary()
	if bin == "" {
		unavailable(t, "nats-server is not installed (apt-get install nats-server); this test needs a private server")
	}
	return start(t, bin, o)
}

// Private reports whether the test owns the server, which it can then stop
// and restart.
func (s *Server) Private() bool { return s.proc != nil }

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
	s.proc.Stop()
}

// Restart starts the private server again on the same port, after Stop.
func (s *Server) Restart() {
	s.t.Helper()
	if !s.Private() {
		s.t.Fatal("natstest: Restart on an external server")
	}
	if err := s.proc.Restart(); err != nil {
		s.t.Fatalf("natstest: restart nats-server: %v", err)
	}
}

// Log returns what the private server has logged.
func (s *Server) Log() string {
	if s.proc == nil {
		return ""
	}
	return s.proc.Log()
}

func unavailable(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv(EnvRequireServices) == "1" {
		t.Fatalf("natstest: %s (%s=1)", msg, EnvRequireServices)
	}
	t.Skipf("natstest: %s; set %s=1 to fail instead of skipping", msg, EnvRequireServices)
}

func start(t testing.TB, bin string, o Options) *Server {
	t.Helper()
	proc, err := Launch(bin, t.TempDir(), o)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	s := &Server{URL: proc.URL, t: t, proc: proc}
	t.Cleanup(func() {
		proc.Stop()
		if t.Failed() {
			t.Logf("natstest: nats-server log:\n%s", proc.Log())
		}
	})
	return s
}
