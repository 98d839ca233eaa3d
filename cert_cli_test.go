package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// readPEMCerts parses every certificate in a PEM file.
func readPEMCerts(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			t.Fatalf("%s holds a %s block", path, blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatalf("%s holds no certificate", path)
	}
	return out
}

func colonFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// checkCertDir verifies the four files in dir: modes, a CA, a server
// chain that verifies against it for every host, and a matching key.
// It returns the CA and the server certificate.
func checkCertDir(t *testing.T, dir string, hosts []string) (ca, srv *x509.Certificate) {
	t.Helper()
	for name, mode := range map[string]os.FileMode{"ca.crt": 0o644, "ca.key": 0o600, "server.crt": 0o644, "server.key": 0o600} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s not written: %v", name, err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", name, st.Mode().Perm(), mode)
		}
	}
	cas := readPEMCerts(t, filepath.Join(dir, "ca.crt"))
	if len(cas) != 1 {
		t.Fatalf("ca.crt holds %d certificates", len(cas))
	}
	ca = cas[0]
	if !ca.IsCA || !strings.HasPrefix(ca.Subject.CommonName, "Elph local CA ") {
		t.Errorf("CA %q IsCA=%v", ca.Subject.CommonName, ca.IsCA)
	}
	if _, ok := ca.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("CA key %T, want ECDSA", ca.PublicKey)
	}
	if y := ca.NotAfter.Sub(ca.NotBefore).Hours() / 24 / 365.25; y < 9.99 || y > 10.01 {
		t.Errorf("CA valid for %.2f years", y)
	}
	chain := readPEMCerts(t, filepath.Join(dir, "server.crt"))
	if len(chain) != 2 || !bytes.Equal(chain[1].Raw, ca.Raw) {
		t.Fatalf("server.crt holds %d certificates; want the server certificate, then the CA", len(chain))
	}
	srv = chain[0]
	if d := srv.NotAfter.Sub(srv.NotBefore); d >= 825*24*time.Hour || d < 824*24*time.Hour {
		t.Errorf("server certificate valid for %v, want just under 825 days", d)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, h := range hosts {
		if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, DNSName: h, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("server.crt does not verify against ca.crt for %s: %v", h, err)
		}
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")); err != nil {
		t.Errorf("server.crt and server.key do not pair: %v", err)
	}
	return ca, srv
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCertSelfSigned(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	hosts := []string{"elph.corp.lan", "192.0.2.10", "2001:db8::10", "localhost"}
	out, code := run(t, nil, "cert", "self-signed", "--dir", dir,
		"--host", "Elph.Corp.LAN", "--host", "192.0.2.10,[2001:db8::10]", "--host", "localhost")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	ca, srv := checkCertDir(t, dir, hosts)
	for _, h := range []string{"other.corp.lan", "192.0.2.11"} {
		if err := srv.VerifyHostname(h); err == nil {
			t.Errorf("certificate also covers %s", h)
		}
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v (%v), want 0700", st.Mode().Perm(), err)
	}
	for _, want := range []string{
		colonFingerprint(ca), colonFingerprint(srv),
		"tls_cert: " + filepath.Join(dir, "server.crt"), "tls_key: " + filepath.Join(dir, "server.key"),
		"ELPH_GATEWAY_TLS_CERT=" + filepath.Join(dir, "server.crt"),
		"/usr/local/share/ca-certificates/elph-ca.crt && sudo update-ca-certificates",
		"certutil -addstore -f Root ca.crt", "security add-trusted-cert", "Firefox", "Android", "iOS",
		"elph.corp.lan, localhost, 192.0.2.10, 2001:db8::10",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "covers this machine's hostname") {
		t.Error("output warns about default hosts although --host was given")
	}

	// A second run refuses to overwrite and changes nothing.
	before := map[string][]byte{}
	for _, f := range []string{"ca.crt", "ca.key", "server.crt", "server.key"} {
		before[f] = readFile(t, filepath.Join(dir, f))
	}
	out, code = run(t, nil, "cert", "self-signed", "--dir", dir, "--host", "elph.corp.lan")
	if code == 0 || !strings.Contains(out, "--force") || !strings.Contains(out, "server.crt") {
		t.Errorf("second run without --force: exit %d:\n%s", code, out)
	}
	for f, b := range before {
		if !bytes.Equal(readFile(t, filepath.Join(dir, f)), b) {
			t.Errorf("refused run changed %s", f)
		}
	}
	// --new-ca without --force is refused too.
	if out, code := run(t, nil, "cert", "self-signed", "--dir", dir, "--new-ca"); code == 0 || !strings.Contains(out, "--force") {
		t.Errorf("--new-ca without --force: exit %d:\n%s", code, out)
	}

	// --force re-issues with the same CA: clients that trust ca.crt trust the new certificate.
	out, code = run(t, nil, "cert", "self-signed", "--dir", dir, "--force", "--host", "chat.corp.lan", "--host", "192.0.2.20")
	if code != 0 {
		t.Fatalf("--force: exit %d:\n%s", code, out)
	}
	if !strings.Contains(out, "reused") {
		t.Errorf("output does not say the CA was reused:\n%s", out)
	}
	for _, f := range []string{"ca.crt", "ca.key"} {
		if !bytes.Equal(readFile(t, filepath.Join(dir, f)), before[f]) {
			t.Errorf("--force changed %s", f)
		}
	}
	for _, f := range []string{"server.crt", "server.key"} {
		if bytes.Equal(readFile(t, filepath.Join(dir, f)), before[f]) {
			t.Errorf("--force kept the old %s", f)
		}
	}
	ca2, srv2 := checkCertDir(t, dir, []string{"chat.corp.lan", "192.0.2.20"})
	if !bytes.Equal(ca2.Raw, ca.Raw) {
		t.Error("CA changed on re-issue")
	}
	if err := srv2.VerifyHostname("elph.corp.lan"); err == nil {
		t.Error("re-issued certificate kept the old hosts")
	}

	// --new-ca --force replaces the CA.
	out, code = run(t, nil, "cert", "self-signed", "--dir", dir, "--force", "--new-ca", "--host", "chat.corp.lan")
	if code != 0 {
		t.Fatalf("--new-ca --force: exit %d:\n%s", code, out)
	}
	ca3, _ := checkCertDir(t, dir, []string{"chat.corp.lan"})
	if bytes.Equal(ca3.Raw, ca.Raw) {
		t.Error("--new-ca kept the old CA")
	}
}

func TestCertSelfSignedDefaults(t *testing.T) {
	// Without --dir the files go to <node.data_dir>/tls, even when the
	// configuration already names server.crt, which does not exist yet
	// (serve would reject that; the command that makes the file must not).
	dataDir := t.TempDir()
	dir := filepath.Join(dataDir, "tls")
	env := map[string]string{
		"ELPH_NODE_DATA_DIR":    dataDir,
		"ELPH_GATEWAY_TLS_CERT": filepath.Join(dir, "server.crt"),
		"ELPH_GATEWAY_TLS_KEY":  filepath.Join(dir, "server.key"),
	}
	out, code := run(t, env, "cert", "self-signed")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" && !strings.Contains(out, "cannot go into a certificate") {
		hosts = append(hosts, h)
	}
	ca, _ := checkCertDir(t, dir, hosts)
	if h, _ := os.Hostname(); ca.Subject.CommonName != "Elph local CA "+h {
		t.Errorf("CA name %q", ca.Subject.CommonName)
	}
	if !strings.Contains(out, "covers this machine's hostname") {
		t.Errorf("output does not say the default hosts are loopback and hostname only:\n%s", out)
	}

	// --data-dir on the command line wins over the environment.
	other := t.TempDir()
	if out, code := run(t, env, "cert", "self-signed", "--data-dir", other, "--host", "localhost"); code != 0 {
		t.Fatalf("--data-dir: exit %d:\n%s", code, out)
	}
	checkCertDir(t, filepath.Join(other, "tls"), []string{"localhost"})

	// A broken node.data_dir is reported like any configuration problem.
	if out, code := run(t, map[string]string{"ELPH_NODE_DATA_DIR": ""}, "cert", "self-signed"); code == 0 || !strings.Contains(out, "node.data_dir") {
		t.Errorf("empty data dir: exit %d:\n%s", code, out)
	}
}

func TestCertSelfSignedRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		setup func()
		args  []string
		want  string
	}{
		{"url as host", nil, []string{"--host", "https://elph.corp.lan"}, "https://elph.corp.lan"},
		{"host with port", nil, []string{"--host", "elph.corp.lan:8443"}, "without scheme, port or path"},
		{"cyrillic host", nil, []string{"--host", "чат.рф"}, "xn--"},
		{"bad ip", nil, []string{"--host", "10.0.0.300"}, "10.0.0.300"},
		{"CA key missing", func() {
			if err := os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{"--host", "localhost"}, "ca.key"},
		{"CA unreadable", func() {
			if err := os.WriteFile(filepath.Join(dir, "ca.key"), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"--host", "localhost"}, "reuse the CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			out, code := run(t, nil, append([]string{"cert", "self-signed", "--dir", dir}, tc.args...)...)
			if code == 0 || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, want a failure mentioning %q:\n%s", code, tc.want, out)
			}
			for _, f := range []string{"server.crt", "server.key"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
					t.Errorf("%s written despite the error", f)
				}
			}
		})
	}
}

// TestCertServedByGateway: the files plug into the gateway; a client that
// trusts only ca.crt connects, and a TLS 1.1 client does not.
func TestCertServedByGateway(t *testing.T) {
	n := newNodeEnv(t)
	dir := filepath.Join(n.dataDir, "tls")
	if out, code := run(t, nil, "cert", "self-signed", "--dir", dir, "--host", "127.0.0.1"); code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	n.env["ELPH_GATEWAY_TLS_CERT"] = filepath.Join(dir, "server.crt")
	n.env["ELPH_GATEWAY_TLS_KEY"] = filepath.Join(dir, "server.key")
	p := start(t, n.env, "serve", "--all")
	plain := &http.Client{Timeout: 5 * time.Second}
	waitFor(t, p, "admin /readyz", func() bool { code, _ := get(plain, "http://"+n.admin+"/readyz"); return code == 200 })

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(readFile(t, filepath.Join(dir, "ca.crt")))
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + n.gateway + "/livez")
	if err != nil {
		t.Fatalf("client trusting ca.crt: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Errorf("gateway /livez: %d over %s", resp.StatusCode, resp.Proto)
	}
	old := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	if c, err := tls.Dial("tcp", n.gateway, old); err == nil {
		c.Close()
		t.Error("the gateway accepted TLS 1.1")
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("exit %d", code)
	}
}
