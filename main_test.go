package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/platform/store/storetest"
)

// elphBin is the binary under test, built once by TestMain.
var elphBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "elph-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	elphBin = filepath.Join(dir, "elph")
	args := []string{"build", "-o", elphBin, "-ldflags", "-X main.version=v-test -X main.commit=c0ffee"}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build elph:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer collects a process's output while tests read it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

// start runs elph with args and a clean ELPH_* environment.
func start(t *testing.T, env map[string]string, args ...string) *proc {
	t.Helper()
	return startWithInput(t, env, "", args...)
}

// startWithInput is start with text on standard input.
func startWithInput(t *testing.T, env map[string]string, stdin string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(elphBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ELPH_") && !strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &proc{cmd: cmd, out: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("elph output:\n%s", p.out.String())
		}
	})
	return p
}

// run runs elph to completion and returns its output and exit code.
func run(t *testing.T, env map[string]string, args ...string) (string, int) {
	t.Helper()
	return runWithInput(t, env, "", args...)
}

// runWithInput is run with text on standard input.
func runWithInput(t *testing.T, env map[string]string, stdin string, args ...string) (string, int) {
	t.Helper()
	p := startWithInput(t, env, stdin, args...)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("elph %v did not finish", args)
	}
	return p.out.String(), p.cmd.ProcessState.ExitCode()
}

// stop sends SIGTERM and waits for the exit code.
func (p *proc) stop(t *testing.T) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatal("elph did not stop after SIGTERM")
	}
	return p.cmd.ProcessState.ExitCode()
}

// waitFor polls until cond holds; the limit is a safety net, not a measure.
func waitFor(t *testing.T, p *proc, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		select {
		case err := <-p.done:
			t.Fatalf("elph exited (%v) while waiting for %s", err, what)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func get(c *http.Client, url string) (int, string) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// nodeEnv is the environment of a node on free loopback ports in a fresh
// data directory.
type nodeEnv struct {
	env                                  map[string]string
	dataDir                              string
	admin, gateway, webclient, ssoHealth string
}

func newNodeEnv(t *testing.T) nodeEnv {
	n := nodeEnv{dataDir: t.TempDir(), admin: freePort(t), gateway: freePort(t), webclient: freePort(t), ssoHealth: freePort(t)}
	n.env = map[string]string{
		"ELPH_NODE_DATA_DIR":     n.dataDir,
		"ELPH_ADMIN_LISTEN":      n.admin,
		"ELPH_GATEWAY_LISTEN":    n.gateway,
		"ELPH_SSO_HEALTH_LISTEN": n.ssoHealth,
	}
	// Every module's own listener on a free port, so tests never meet a
	// developer's `make run` or each other on the seed ports.
	def := config.Default()
	for _, name := range def.Modules.Names() {
		n.env[config.EnvName("modules."+name+".listen")] = freePort(t)
	}
	n.env["ELPH_MODULES_WEBCLIENT_LISTEN"] = n.webclient
	return n
}

func TestServeAllStartsAnswersAndStops(t *testing.T) {
	n := newNodeEnv(t)
	p := start(t, n.env, "serve", "--all")
	plain := &http.Client{Timeout: 5 * time.Second}
	waitFor(t, p, "admin /readyz", func() bool { code, _ := get(plain, "http://"+n.admin+"/readyz"); return code == 200 })

	_, body := get(plain, "http://"+n.admin+"/readyz")
	var ready struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	if err := json.Unmarshal([]byte(body), &ready); err != nil {
		t.Fatalf("readyz body %q: %v", body, err)
	}
	if ready.Status != "ready" || ready.Checks["database"] != "ok" || ready.Checks["bus"] != "ok" || ready.Checks["blob"] != "ok" {
		t.Errorf("readyz = %+v, want ready with database, bus and blob ok", ready)
	}

	// The gateway speaks TLS with the certificate it generated; trust exactly that.
	pem, err := os.ReadFile(filepath.Join(n.dataDir, "tls", "selfsigned.crt"))
	if err != nil {
		t.Fatalf("self-signed certificate not written: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	gw := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if code, body := get(gw, "https://"+n.gateway+"/"); code != 200 || !strings.Contains(body, "<title>Elph</title>") {
		t.Errorf("gateway / = %d %q", code, body)
	}
	if code, body := get(gw, "https://"+n.gateway+"/readyz"); code != 200 || strings.Contains(body, "database") {
		t.Errorf("gateway /readyz = %d %q; want 200 without check details", code, body)
	}
	if code, _ := get(plain, "http://"+n.gateway+"/"); code == 200 {
		t.Error("gateway answered plaintext HTTP")
	}
	// The sso module's separate health port (the seed's 9100).
	if code, body := get(plain, "http://"+n.ssoHealth+"/readyz"); code != 200 || !strings.Contains(body, `"database":"ok"`) {
		t.Errorf("sso health /readyz = %d %q", code, body)
	}
	if code, body := get(plain, "http://"+n.webclient+"/elph.js"); code != 200 || !strings.Contains(body, "readyz") {
		t.Errorf("webclient own listener = %d %q", code, body)
	}
	_, metrics := get(plain, "http://"+n.admin+"/metrics")
	for _, want := range []string{`elph_http_requests_total{code="200",listener="gateway",method="GET",route="/*"}`, `elph_build_info{commit="c0ffee"`, "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if !strings.Contains(p.out.String(), "Elph is ready: open https://") {
		t.Errorf("no 'open' line printed")
	}
	if _, err := os.Stat(filepath.Join(n.dataDir, "elph.db")); err != nil {
		t.Errorf("SQLite database not created in the data dir: %v", err)
	}

	if code := p.stop(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	out := p.out.String()
	for _, want := range []string{"shutting down", "module stopped", "stopped cleanly"} {
		if !strings.Contains(out, want) {
			t.Errorf("shutdown log lacks %q", want)
		}
	}
	if _, err := net.DialTimeout("tcp", n.gateway, time.Second); err == nil {
		t.Error("gateway still accepts connections after exit")
	}
}

func TestServeRefusesToStart(t *testing.T) {
	t.Run("bad configuration", func(t *testing.T) {
		out, code := run(t, map[string]string{"ELPH_LOG_LEVEL": "loud", "ELPH_DATABASE_DRIVER": "oracle"}, "serve", "--all")
		if code != 1 || !strings.Contains(out, "log.level") || !strings.Contains(out, "database.driver") {
			t.Errorf("exit %d, output:\n%s", code, out)
		}
	})
	t.Run("port taken", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		n := newNodeEnv(t)
		n.env["ELPH_ADMIN_LISTEN"] = ln.Addr().String()
		out, code := run(t, n.env, "serve", "--all")
		if code != 1 || !strings.Contains(out, "address already in use") {
			t.Errorf("exit %d, output:\n%s", code, out)
		}
	})
	t.Run("unknown module", func(t *testing.T) {
		out, code := run(t, newNodeEnv(t).env, "serve", "--modules=webclient,nosuch")
		if code != 1 || !strings.Contains(out, "nosuch") {
			t.Errorf("exit %d, output:\n%s", code, out)
		}
	})
	t.Run("all and role together", func(t *testing.T) {
		out, code := run(t, nil, "serve", "--all", "--role=proxy")
		if code == 0 || !strings.Contains(out, "exclude") {
			t.Errorf("exit %d, output:\n%s", code, out)
		}
	})
}

func TestSIGHUPReloadsLogLevel(t *testing.T) {
	n := newNodeEnv(t)
	file := filepath.Join(t.TempDir(), "elph.yaml")
	write := func(level string) {
		if err := os.WriteFile(file, []byte("log:\n  level: "+level+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("info")
	p := start(t, n.env, "serve", "--all", "--config", file)
	plain := &http.Client{Timeout: 5 * time.Second}
	waitFor(t, p, "ready", func() bool { code, _ := get(plain, "http://"+n.admin+"/readyz"); return code == 200 })
	get(plain, "http://"+n.admin+"/readyz")
	if strings.Contains(p.out.String(), "level=DEBUG") {
		t.Fatal("debug lines before the reload")
	}

	write("debug")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, p, "reload", func() bool { return strings.Contains(p.out.String(), "log_level=DEBUG") })
	// Health probes log at debug: now they show.
	waitFor(t, p, "a debug line", func() bool {
		get(plain, "http://"+n.webclient+"/livez")
		return strings.Contains(p.out.String(), "level=DEBUG")
	})

	// A broken file is refused and the node keeps running.
	write("[broken")
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, p, "refused reload", func() bool { return strings.Contains(p.out.String(), "reload refused") })
	if code, _ := get(plain, "http://"+n.admin+"/readyz"); code != 200 {
		t.Errorf("not ready after a refused reload: %d", code)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

func TestConfigCommands(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("node:\n  role: router\nlog:\n  levl: debug\nbus:\n  workers: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := run(t, nil, "config", "check", "--config", bad)
	if code != 1 {
		t.Errorf("config check on a bad file exited %d", code)
	}
	for _, want := range []string{"3 problem(s)", "node.role:", "log.levl: unknown key (did you mean log.level?)", "bus.workers:"} {
		if !strings.Contains(out, want) {
			t.Errorf("config check output lacks %q:\n%s", want, out)
		}
	}

	out, code = run(t, nil, "config", "check")
	if code != 0 || !strings.Contains(out, "configuration is valid") {
		t.Errorf("defaults: exit %d\n%s", code, out)
	}

	env := map[string]string{"ELPH_DATABASE_DRIVER": "mysql", "ELPH_DATABASE_DSN": "elph:hunter2@tcp(db.example:3306)/elph"}
	out, code = run(t, env, "config", "print", "--set", "bus.queue_size=77", "--log-level", "warn")
	if code != 0 {
		t.Fatalf("config print exit %d\n%s", code, out)
	}
	if strings.Contains(out, "hunter2") {
		t.Fatalf("config print shows the password:\n%s", out)
	}
	for _, want := range []string{"dsn: elph:***@tcp(db.example:3306)/elph", "queue_size: 77", "level: warn", "driver: mysql"} {
		if !strings.Contains(out, want) {
			t.Errorf("config print lacks %q:\n%s", want, out)
		}
	}
}

func TestVersion(t *testing.T) {
	out, code := run(t, nil, "version")
	if code != 0 || !strings.Contains(out, "elph v-test") || !strings.Contains(out, "commit c0ffee") || !strings.Contains(out, "go1.") {
		t.Errorf("exit %d: %q", code, out)
	}
}

func TestMigrateCommand(t *testing.T) {
	dialects := []struct {
		name string
		env  func(t *testing.T) map[string]string
	}{
		{"sqlite", func(t *testing.T) map[string]string {
			return map[string]string{"ELPH_NODE_DATA_DIR": t.TempDir()}
		}},
		{"mysql", func(t *testing.T) map[string]string {
			return map[string]string{"ELPH_DATABASE_DRIVER": "mysql", "ELPH_DATABASE_DSN": storetest.MySQLDSN(t)}
		}},
	}
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			env := d.env(t)
			out, code := run(t, env, "migrate", "status")
			if code != 0 || !strings.Contains(out, "pending") {
				t.Fatalf("status before: exit %d\n%s", code, out)
			}
			out, code = run(t, env, "migrate", "up")
			if code != 0 || !strings.Contains(out, "applied 00001") || !strings.Contains(out, "up to date") {
				t.Fatalf("up: exit %d\n%s", code, out)
			}
			out, code = run(t, env, "migrate", "up")
			if code != 0 || !strings.Contains(out, "(0 applied now)") {
				t.Fatalf("second up: exit %d\n%s", code, out)
			}
			out, code = run(t, env, "migrate", "status")
			if code != 0 || !strings.Contains(out, "0 pending") || !strings.Contains(out, "applied") {
				t.Fatalf("status after: exit %d\n%s", code, out)
			}
		})
	}
	t.Run("unreachable database", func(t *testing.T) {
		env := map[string]string{"ELPH_DATABASE_DRIVER": "mysql", "ELPH_DATABASE_DSN": "elph:topsecret@tcp(" + freePort(t) + ")/elph"}
		out, code := run(t, env, "migrate", "up")
		if code == 0 || strings.Contains(out, "topsecret") {
			t.Errorf("exit %d, output:\n%s", code, out)
		}
	})
}
