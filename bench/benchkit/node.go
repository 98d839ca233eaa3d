// Package benchkit starts the elph binary under measurement and summarises
// the figures, for the load tools in bench/. Everything talks to loopback.
package benchkit

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/elph-server/elph/config"
)

// Node is a running `elph serve` in a temp data directory on free ports.
type Node struct {
	Admin, Gateway string // host:port
	Dir            string
	Started        time.Time
	cmd            *exec.Cmd
	done           chan error
	log            *os.File
}

// Start runs bin with args and env on free loopback ports. The listeners
// of every module section are moved to free ports too, so several nodes
// and a developer's own `make run` never collide.
func Start(bin string, args []string, env ...string) (*Node, error) {
	dir, err := os.MkdirTemp("", "elph-bench-")
	if err != nil {
		return nil, err
	}
	n := &Node{Admin: FreePort(), Gateway: FreePort(), Dir: dir, done: make(chan error, 1)}
	n.cmd = exec.Command(bin, args...)
	n.cmd.Env = append(os.Environ(),
		"ELPH_NODE_DATA_DIR="+filepath.Join(dir, "data"),
		"ELPH_ADMIN_LISTEN="+n.Admin, "ELPH_GATEWAY_LISTEN="+n.Gateway, "ELPH_LOG_LEVEL=warn")
	def := config.Default()
	for _, m := range def.Modules.Names() {
		n.cmd.Env = append(n.cmd.Env, config.EnvName("modules."+m+".listen")+"="+FreePort())
	}
	n.cmd.Env = append(n.cmd.Env, "ELPH_SSO_HEALTH_LISTEN="+FreePort())
	n.cmd.Env = append(n.cmd.Env, env...)
	if n.log, err = os.Create(filepath.Join(dir, "elph.log")); err != nil {
		return nil, err
	}
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	n.Started = time.Now()
	if err := n.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { n.done <- n.cmd.Wait() }()
	return n, nil
}

// Env returns the value a node was given for an ELPH_* variable.
func (n *Node) Env(name string) string {
	for i := len(n.cmd.Env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(n.cmd.Env[i], "="); ok && k == name {
			return v
		}
	}
	return ""
}

// WaitReady polls the admin /readyz and returns the time since start.
func (n *Node) WaitReady(limit time.Duration) (time.Duration, error) {
	client := &http.Client{Timeout: time.Second}
	for deadline := n.Started.Add(limit); ; {
		resp, err := client.Get("http://" + n.Admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return time.Since(n.Started), nil
			}
		}
		select {
		case err := <-n.done:
			return 0, fmt.Errorf("elph exited before it was ready (%v); log: %s", err, n.log.Name())
		default:
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("not ready after %s; log: %s", limit, n.log.Name())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// RSSKiB reads the node's resident set size.
func (n *Node) RSSKiB() (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", n.cmd.Process.Pid)
}

// Stop sends SIGTERM and returns how long the drain took.
func (n *Node) Stop(limit time.Duration) (time.Duration, error) {
	defer os.RemoveAll(n.Dir)
	defer n.log.Close()
	at := time.Now()
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-n.done:
		if err != nil {
			return 0, fmt.Errorf("exit after SIGTERM: %w", err)
		}
		return time.Since(at), nil
	case <-time.After(limit):
		_ = n.cmd.Process.Kill()
		<-n.done
		return 0, fmt.Errorf("did not stop within %s", limit)
	}
}

// FreePort returns a free 127.0.0.1 port as host:port.
func FreePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
