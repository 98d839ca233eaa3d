// Package blobtest runs a real S3 server for tests: versitygw (Apache-2.0)
// with its posix backend in a temporary directory, on a free loopback
// port. The blob package's S3 backend is tested against it, never against
// a mock.
//
// The binary is found in PATH or in $(go env GOPATH)/bin; install it with
//
//	go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
//
// (or run .ci/services.sh). Without it the test is skipped, or fails when
// ELPH_REQUIRE_SERVICES=1.
package blobtest

import (
	"context"
	"errors"
	"fmt"
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

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/elph-server/elph/platform/blob"
)

// EnvRequireServices makes a missing versitygw fail the test instead of
// skipping it (CI sets it).
const EnvRequireServices = "ELPH_REQUIRE_SERVICES"

// Install is the command that installs the server.
const Install = "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"

const (
	// Region is the region the server is started with.
	Region = "us-east-1"
	// AccessKey and SecretKey are the root account's credentials.
	AccessKey = "elphtestaccess"
	SecretKey = "elph-test-secret-9f4c2a"

	healthPath = "/health"
	// readyTimeout bounds start-up (well under a second normally) on a
	// busy machine.
	readyTimeout = 30 * time.Second
	stopTimeout  = 10 * time.Second
	startTries   = 3
)

// Server is a running versitygw.
type Server struct {
	// Endpoint is host:port for S3Options.Endpoint (plain http).
	Endpoint string
	// Root is the posix backend's directory: a bucket is a subdirectory,
	// an object a file in it.
	Root string

	bin     string
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start runs versitygw until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := findBinary()
	if bin == "" {
		msg := "versitygw not found in PATH or $(go env GOPATH)/bin (" + Install + ", or .ci/services.sh); see TESTING.md"
		if os.Getenv(EnvRequireServices) == "1" {
			t.Fatalf("blobtest: %s (%s=1)", msg, EnvRequireServices)
		}
		t.Skipf("blobtest: %s; set %s=1 to fail instead of skipping", msg, EnvRequireServices)
	}
	dir := t.TempDir()
	s := &Server{Root: filepath.Join(dir, "root"), bin: bin, logPath: filepath.Join(dir, "versitygw.log")}
	if err := os.Mkdir(s.Root, 0o700); err != nil {
		t.Fatalf("blobtest: %v", err)
	}
	var errs []error
	for range startTries {
		err := s.start()
		if err == nil {
			t.Cleanup(s.Stop)
			return s
		}
		// Most likely another process took the port between picking and
		// binding it: try another.
		errs = append(errs, err)
	}
	t.Fatalf("blobtest: versitygw did not start: %v", errors.Join(errs...))
	return nil
}

// Options returns S3Options for a store on bucket, which NewS3 creates.
func (s *Server) Options(bucket string) blob.S3Options {
	return blob.S3Options{
		Endpoint:     s.Endpoint,
		Region:       Region,
		Bucket:       bucket,
		AccessKey:    AccessKey,
		SecretKey:    SecretKey,
		PathStyle:    true,
		CreateBucket: true,
	}
}

// Client returns a plain minio client for looking behind a store's back.
func (s *Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(s.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(AccessKey, SecretKey, ""),
		Region:       Region,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatalf("blobtest: %v", err)
	}
	return c
}

// Log returns what the server has written to stdout and stderr.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// findBinary looks where `go install` puts binaries as well as in PATH,
// since $(go env GOPATH)/bin often is not in PATH.
func findBinary() string {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	var dirs []string
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		dirs = append(dirs, gobin)
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, d := range filepath.SplitList(strings.TrimSpace(string(out))) {
			dirs = append(dirs, filepath.Join(d, "bin"))
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, "versitygw")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs versitygw on a fresh port and waits until its health
// endpoint answers.
func (s *Server) start() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	endpoint := fmt.Sprintf("127.0.0.1:%d", port)
	logf, err := os.Create(s.logPath)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(s.bin, "--port", endpoint, "--health", healthPath, "--quiet", "--region", Region, "posix", s.Root)
	// Credentials through the environment keep them out of ps; VGW_*
	// settings of the developer's shell must not change the server.
	cmd.Env = append(cleanEnv(), "ROOT_ACCESS_KEY_ID="+AccessKey, "ROOT_SECRET_ACCESS_KEY="+SecretKey)
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test binary dies (timeout panic), so does the server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited, s.Endpoint = cmd, exited, endpoint
	s.mu.Unlock()
	if err := waitReady(endpoint, exited); err != nil {
		s.Stop()
		return fmt.Errorf("%w\n%s", err, s.Log())
	}
	return nil
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VGW_") || strings.HasPrefix(kv, "ROOT_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func waitReady(endpoint string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	url := "http://" + endpoint + healthPath
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return errors.New("versitygw exited")
		case <-ctx.Done():
			return fmt.Errorf("versitygw on %s not ready after %v", endpoint, readyTimeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop ends the server; Start arranges it for the end of the test.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		cmd.Process.Kill()
		<-exited
	}
}
