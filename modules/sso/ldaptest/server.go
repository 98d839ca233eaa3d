// Package ldaptest runs a real OpenLDAP slapd on loopback for tests, seeded
// with an Active Directory-shaped tree (see the constants in seed.go): the
// sso directory client is tested against it, never against a mock.
//
// Start needs the Debian packages slapd and ldap-utils. Without slapd the
// test is skipped, or fails when ELPH_REQUIRE_SERVICES=1.
package ldaptest

import (
	"bufio"
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// EnvRequireServices makes a missing slapd fail the test instead of
// skipping it (CI sets it).
const EnvRequireServices = "ELPH_REQUIRE_SERVICES"

// RootDN is the database's rootdn; RootPassword is its password. The rootdn
// bypasses access control and size limits.
const (
	RootDN       = "CN=admin," + BaseDN
	RootPassword = "Root-Secret-3"
)

const (
	schemaDir = "/etc/ldap/schema"
	// moduleDir is where Debian installs back_mdb.
	moduleDir = "/usr/lib/ldap"
	// readyTimeout bounds start-up (about 0.1 s normally) on a busy machine.
	readyTimeout = 20 * time.Second
	stopTimeout  = 10 * time.Second
	startTries   = 3
)

//go:embed testdata/elph-ad.schema
var adSchema []byte

// Seed says what to put into the directory besides the fixed entries.
type Seed struct {
	// Users is the number of generated users u0001..uNNNN: enabled, in no
	// group, password Password. More than SizeLimit of them make paging
	// necessary.
	Users int
}

// Server is a running slapd. URL speaks plain LDAP with StartTLS offered;
// LDAPSURL speaks LDAP over TLS; both present a certificate for 127.0.0.1
// signed by the CA in CAFile.
type Server struct {
	URL      string
	LDAPSURL string
	CAFile   string
	BaseDN   string
	// BindDN and BindPassword are the service account an application
	// searches as: it may read everything but passwords and is subject to
	// SizeLimit.
	BindDN       string
	BindPassword string
	// Dir is the server's working directory (config, database, log).
	Dir string

	slapd   string
	conf    string
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start runs slapd with a fresh database seeded from seed and stops it when
// the test ends. It prints nothing unless something goes wrong.
func Start(t testing.TB, seed Seed) *Server {
	t.Helper()
	slapd, slapadd := lookPath("slapd"), lookPath("slapadd")
	if slapd == "" || slapadd == "" {
		msg := "slapd/slapadd not installed (echo 'slapd slapd/no_configuration boolean true' | debconf-set-selections; " +
			"DEBIAN_FRONTEND=noninteractive apt-get install -y slapd ldap-utils); see TESTING.md"
		if os.Getenv(EnvRequireServices) == "1" {
			t.Fatalf("ldaptest: %s (%s=1)", msg, EnvRequireServices)
		}
		t.Skipf("ldaptest: %s; set %s=1 to fail instead of skipping", msg, EnvRequireServices)
	}

	// Not t.TempDir: its parent is private to root, and slapd drops to the
	// openldap user, which must reach the directory.
	dir, err := os.MkdirTemp("", "elph-slapd-")
	if err != nil {
		t.Fatalf("ldaptest: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	s := &Server{
		BaseDN:       BaseDN,
		BindDN:       ServiceBindDN,
		BindPassword: ServiceBindPassword,
		Dir:          dir,
		slapd:        slapd,
		conf:         filepath.Join(dir, "slapd.conf"),
		logPath:      filepath.Join(dir, "slapd.log"),
	}
	now := time.Now()
	tf, err := writeTLS(dir, now)
	if err != nil {
		t.Fatalf("ldaptest: certificates: %v", err)
	}
	s.CAFile = tf.ca
	if err := s.writeFiles(tf, seed, now); err != nil {
		t.Fatalf("ldaptest: %v", err)
	}
	if out, err := exec.Command(slapadd, "-q", "-f", s.conf, "-l", filepath.Join(dir, "seed.ldif")).CombinedOutput(); err != nil {
		t.Fatalf("ldaptest: slapadd: %v\n%s", err, out)
	}
	owner, err := dropTo(dir)
	if err != nil {
		t.Fatalf("ldaptest: %v", err)
	}

	var errs []error
	for range startTries {
		err := s.start(owner)
		if err == nil {
			t.Cleanup(s.Stop)
			return s
		}
		// Most likely another process took a port between picking and
		// binding it: try other ports.
		errs = append(errs, err)
	}
	t.Fatalf("ldaptest: slapd did not start: %v", errors.Join(errs...))
	return nil
}

func lookPath(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	// /usr/sbin is not on every user's PATH.
	p := filepath.Join("/usr/sbin", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

func (s *Server) writeFiles(tf tlsFiles, seed Seed, now time.Time) error {
	schema := filepath.Join(s.Dir, "elph-ad.schema")
	if err := os.WriteFile(schema, adSchema, 0o644); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(s.Dir, "db"), 0o700); err != nil {
		return err
	}
	var c strings.Builder
	for _, name := range []string{"core", "cosine", "inetorgperson", "nis"} {
		fmt.Fprintf(&c, "include %s/%s.schema\n", schemaDir, name)
	}
	fmt.Fprintf(&c, "include %s\n", schema)
	fmt.Fprintf(&c, "pidfile %s\nargsfile %s\n", filepath.Join(s.Dir, "slapd.pid"), filepath.Join(s.Dir, "slapd.args"))
	fmt.Fprintf(&c, "modulepath %s\nmoduleload back_mdb\n", moduleDir)
	// prtotal=unlimited lets a paged search return everything, as AD does,
	// while a plain search stops at SizeLimit: paging is then required.
	fmt.Fprintf(&c, "sizelimit size.soft=%d size.hard=%d size.prtotal=unlimited\n", SizeLimit, SizeLimit)
	fmt.Fprintf(&c, "TLSCACertificateFile %s\nTLSCertificateFile %s\nTLSCertificateKeyFile %s\n", tf.ca, tf.cert, tf.key)
	fmt.Fprintf(&c, "database mdb\nmaxsize 1073741824\n")
	fmt.Fprintf(&c, "suffix %q\nrootdn %q\nrootpw %s\n", BaseDN, RootDN, ssha(RootPassword))
	fmt.Fprintf(&c, "directory %s\n", filepath.Join(s.Dir, "db"))
	c.WriteString("index objectClass eq\n")
	c.WriteString("index uid,sAMAccountName,userPrincipalName,mail eq\n")
	c.WriteString("index member,uniqueMember eq\n")
	// People authenticate with their password but cannot read it or
	// anything else; the service account reads everything but passwords.
	c.WriteString("access to attrs=userPassword\n\tby anonymous auth\n\tby * none\n")
	fmt.Fprintf(&c, "access to *\n\tby dn.exact=%q read\n\tby * none\n", ServiceBindDN)
	if err := os.WriteFile(s.conf, []byte(c.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.Dir, "seed.ldif"), ldif(seedEntries(seed, ssha(Password), now)), 0o600)
}

// dropTo returns the user slapd should run as and hands dir to it: as root,
// the unprivileged openldap user the Debian package creates; otherwise
// nobody (slapd runs as the current user).
func dropTo(dir string) (*user.User, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("openldap")
	if err != nil {
		return nil, fmt.Errorf("slapd must not run as root and there is no openldap user: %w", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, err
	}
	err = filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	return u, err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs slapd on two fresh ports and waits until it accepts a bind.
func (s *Server) start(owner *user.User) error {
	p1, err := freePort()
	if err != nil {
		return err
	}
	p2, err := freePort()
	if err != nil {
		return err
	}
	url := fmt.Sprintf("ldap://127.0.0.1:%d/", p1)
	ldapsURL := fmt.Sprintf("ldaps://127.0.0.1:%d/", p2)

	logf, err := os.Create(s.logPath)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own copy
	// -d stats keeps slapd in the foreground and logs every operation to
	// the log file, so tests can see which binds happened (BindDNs).
	args := []string{"-h", url + " " + ldapsURL, "-f", s.conf, "-d", "stats"}
	if owner != nil {
		args = append(args, "-u", owner.Username, "-g", groupName(owner))
	}
	cmd := exec.Command(s.slapd, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()

	if err := waitReady(url, exited); err != nil {
		cmd.Process.Kill()
		<-exited
		log, _ := os.ReadFile(s.logPath)
		return fmt.Errorf("%w\n%s", err, log)
	}
	s.mu.Lock()
	s.URL, s.LDAPSURL, s.cmd, s.exited = url, ldapsURL, cmd, exited
	s.mu.Unlock()
	return nil
}

func groupName(u *user.User) string {
	if g, err := user.LookupGroupId(u.Gid); err == nil {
		return g.Name
	}
	return u.Gid
}

// waitReady polls until the rootdn can bind at url, slapd exits or
// readyTimeout passes.
func waitReady(url string, exited <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-exited:
			return errors.New("slapd exited during start-up")
		default:
		}
		err := bindOnce(url)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("slapd not ready after %s: %w", readyTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func bindOnce(url string) error {
	conn, err := ldap.DialURL(url, ldap.DialWithDialer(&net.Dialer{Timeout: time.Second}))
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetTimeout(time.Second)
	return conn.Bind(RootDN, RootPassword)
}

// Stop ends slapd (SIGTERM, then SIGKILL) and waits for it; later calls do
// nothing. Tests use it to make the directory unreachable.
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

// Log returns what slapd has logged (level stats: one line per operation).
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// BindDNs lists the DNs of every simple bind slapd has received so far, in
// order, as slapd logs them (attribute types lower-cased). An operation is
// logged before its result is sent, so a bind whose answer a client has seen
// is always listed.
func (s *Server) BindDNs() []string {
	var dns []string
	sc := bufio.NewScanner(bytes.NewReader([]byte(s.Log())))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		// Each bind is logged as `BIND dn="..." method=128`, and once more
		// with mech= when it succeeds; count the first only.
		i := strings.Index(line, ` BIND dn="`)
		if i < 0 || !strings.HasSuffix(line, " method=128") {
			continue
		}
		rest := line[i+len(` BIND dn="`):]
		if j := strings.LastIndex(rest, `" method=`); j >= 0 {
			dns = append(dns, rest[:j])
		}
	}
	return dns
}
