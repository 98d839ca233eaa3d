package main

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"text/template"
	"time"
)

//go:embed nginx.conf.tmpl
var nginxTemplate string

// nginxConf are the values the template takes.
type nginxConf struct {
	Dir          string // prefix: pid, error log, temp paths
	Root         bool   // running as root: "user root;"
	Workers      int
	Listen       string // 127.0.0.1:port
	Cert, Key    string // the same certificate elph's gateway serves
	CA           string // verifies the upstream
	Upstream     string // 127.0.0.1:port
	UpstreamName string // name checked in the upstream's certificate
}

func renderNginx(c nginxConf) (string, error) {
	t, err := template.New("nginx.conf").Option("missingkey=error").Parse(nginxTemplate)
	if err != nil {
		return "", fmt.Errorf("nginx template: %w", err)
	}
	var b strings.Builder
	if err := t.Execute(&b, c); err != nil {
		return "", fmt.Errorf("nginx template: %w", err)
	}
	return b.String(), nil
}

// startNginx writes the configuration into dir, checks it (nginx -t) and
// runs nginx in the foreground as a child.
func startNginx(bin, dir string, c nginxConf) (*child, error) {
	c.Dir = dir
	c.Root = os.Geteuid() == 0
	if c.Workers == 0 {
		c.Workers = runtime.NumCPU()
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		return nil, err
	}
	conf, err := renderNginx(c)
	if err != nil {
		return nil, err
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	args := []string{"-p", dir + "/", "-c", confPath, "-g", "daemon off;"}
	if out, err := exec.Command(bin, append([]string{"-t", "-q"}, args...)...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nginx -t rejected %s: %v\n%s", confPath, err, strings.TrimSpace(string(out)))
	}
	return startChild("nginx", filepath.Join(dir, "nginx.out"), bin, args, nil)
}

// stopNginx asks for a fast shutdown (SIGTERM), then kills.
func stopNginx(n *child) {
	if n == nil {
		return
	}
	if err := n.stop(syscall.SIGTERM, 10*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "proxy bench:", err)
	}
}

func nginxVersion(bin string) string {
	out, err := exec.Command(bin, "-v").CombinedOutput()
	if err != nil {
		return "nginx (version unknown: " + err.Error() + ")"
	}
	s := strings.TrimSpace(string(out))
	return strings.TrimPrefix(s, "nginx version: ")
}
