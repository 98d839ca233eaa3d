package httpx_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/elph-server/elph/platform/httpx"
)

func parseCertFile(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("%s holds no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fingerprintOf(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

func TestSelfSignedCreatesAndReuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls") // does not exist yet
	certFile, keyFile, err := httpx.SelfSigned(dir, []string{"elph.example.org", "192.0.2.5", ""})
	if err != nil {
		t.Fatalf("SelfSigned: %v", err)
	}
	if filepath.Dir(certFile) != dir || filepath.Dir(keyFile) != dir {
		t.Errorf("files %s %s not in %s", certFile, keyFile, dir)
	}
	st, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", st.Mode().Perm())
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("dir mode = %v (%v), want 0700", st.Mode().Perm(), err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}

	c := parseCertFile(t, certFile)
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Fatalf("cert and key do not pair: %v", err)
	}
	for _, name := range []string{"localhost", "elph.example.org", "127.0.0.1", "::1", "192.0.2.5"} {
		if err := c.VerifyHostname(name); err != nil {
			t.Errorf("certificate does not cover %s: %v", name, err)
		}
	}
	if left := time.Until(c.NotAfter); left < 700*24*time.Hour {
		t.Errorf("certificate lasts only %v", left)
	}
	if _, ok := c.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("key type %T, want ECDSA", c.PublicKey)
	}

	cert2, key2, err := httpx.SelfSigned(dir, []string{"elph.example.org"})
	if err != nil {
		t.Fatalf("second SelfSigned: %v", err)
	}
	if cert2 != certFile || key2 != keyFile {
		t.Errorf("second call returned other paths: %s %s", cert2, key2)
	}
	if got := fingerprintOf(parseCertFile(t, cert2)); got != fingerprintOf(c) {
		t.Errorf("second call regenerated the certificate")
	}
}

// writeCert writes a self-signed certificate valid until notAfter with a
// fresh key to certFile and keyFile.
func writeCert(t *testing.T, certFile, keyFile string, notAfter time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "old"},
		NotBefore:    notAfter.Add(-365 * 24 * time.Hour),
		NotAfter:     notAfter,
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestSelfSignedRegenerates(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, certFile, keyFile string)
	}{
		{"expired", func(t *testing.T, c, k string) { writeCert(t, c, k, time.Now().Add(-time.Hour)) }},
		{"expires in a week", func(t *testing.T, c, k string) { writeCert(t, c, k, time.Now().Add(7*24*time.Hour)) }},
		{"key missing", func(t *testing.T, c, k string) {
			writeCert(t, c, k, time.Now().Add(365*24*time.Hour))
			if err := os.Remove(k); err != nil {
				t.Fatal(err)
			}
		}},
		{"certificate is garbage", func(t *testing.T, c, k string) {
			writeCert(t, c, k, time.Now().Add(365*24*time.Hour))
			if err := os.WriteFile(c, []byte("not a certificate"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile := filepath.Join(dir, "selfsigned.crt"), filepath.Join(dir, "selfsigned.key")
			tc.setup(t, certFile, keyFile)
			oldCert, _ := os.ReadFile(certFile)

			gotCert, gotKey, err := httpx.SelfSigned(dir, nil)
			if err != nil {
				t.Fatalf("SelfSigned: %v", err)
			}
			if gotCert != certFile || gotKey != keyFile {
				t.Fatalf("paths %s %s", gotCert, gotKey)
			}
			newCert, _ := os.ReadFile(certFile)
			if string(newCert) == string(oldCert) {
				t.Fatal("certificate was not regenerated")
			}
			c := parseCertFile(t, certFile)
			if c.Subject.CommonName == "old" || time.Until(c.NotAfter) < 700*24*time.Hour {
				t.Errorf("new certificate %q valid until %v", c.Subject.CommonName, c.NotAfter)
			}
			if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
				t.Errorf("regenerated pair does not match: %v", err)
			}
			if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("key mode %v (%v), want 0600", st.Mode().Perm(), err)
			}
		})
	}
}

// httpsClient trusts exactly the certificates in certFiles.
func httpsClient(t *testing.T, certFiles ...string) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	for _, f := range certFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !pool.AppendCertsFromPEM(b) {
			t.Fatalf("no certificate in %s", f)
		}
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: safety}
}

func servedFingerprint(t *testing.T, c *http.Client, url string) (string, *http.Response) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		t.Fatal("response without TLS state")
	}
	return fingerprintOf(resp.TLS.PeerCertificates[0]), resp
}

func TestTLSServeAndReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, err := httpx.SelfSigned(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	oldPEM := filepath.Join(t.TempDir(), "old.crt")
	if b, err := os.ReadFile(certFile); err != nil || os.WriteFile(oldPEM, b, 0o644) != nil {
		t.Fatal("copy old cert")
	}

	cert, err := httpx.LoadCertificate(certFile, keyFile)
	if err != nil {
		t.Fatalf("LoadCertificate: %v", err)
	}
	fp1 := cert.Fingerprint()
	if fp1 != fingerprintOf(parseCertFile(t, certFile)) {
		t.Errorf("Fingerprint %s does not match the file", fp1)
	}
	cfg := cert.TLSConfig()
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x", cfg.MinVersion)
	}

	_, base := startServer(t, httpx.ServerOptions{
		Name: "gateway", TLS: cfg,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.Proto) }),
	})
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("base %s", base)
	}

	// An untrusting client refuses the certificate.
	if _, err := newClient(t).Get(base); err == nil {
		t.Error("a client that does not trust the certificate connected")
	}

	c := httpsClient(t, oldPEM)
	got, resp := servedFingerprint(t, c, base)
	if got != fp1 {
		t.Errorf("served fingerprint %s, want %s", got, fp1)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("proto %s, want HTTP/2 over TLS", resp.Proto)
	}

	// Renew: new files in place, then Reload.
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	if _, _, err := httpx.SelfSigned(dir, nil); err != nil {
		t.Fatal(err)
	}
	if err := cert.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	fp2 := cert.Fingerprint()
	if fp2 == fp1 {
		t.Fatal("Reload kept the old certificate")
	}
	newPEM := filepath.Join(t.TempDir(), "new.crt")
	if b, err := os.ReadFile(certFile); err != nil || os.WriteFile(newPEM, b, 0o644) != nil {
		t.Fatal("copy new cert")
	}
	if got, _ := servedFingerprint(t, httpsClient(t, newPEM), base); got != fp2 {
		t.Errorf("after Reload served %s, want %s", got, fp2)
	}
	// A client that trusts only the old certificate now fails.
	if resp, err := httpsClient(t, oldPEM).Get(base); err == nil {
		resp.Body.Close()
		t.Error("old certificate still served after Reload")
	}

	// A broken file keeps the current certificate.
	if err := os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\nbroken\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = cert.Reload()
	if err == nil {
		t.Fatal("Reload of a broken file succeeded")
	}
	if !strings.Contains(err.Error(), certFile) {
		t.Errorf("Reload error %q does not name the file", err)
	}
	if cert.Fingerprint() != fp2 {
		t.Error("failed Reload replaced the certificate")
	}
	if got, _ := servedFingerprint(t, httpsClient(t, newPEM), base); got != fp2 {
		t.Errorf("after a failed Reload served %s, want %s", got, fp2)
	}
}

func TestLoadCertificateErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, err := httpx.SelfSigned(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	_, otherKey, err := httpx.SelfSigned(other, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, cert, key string }{
		{"missing cert", filepath.Join(dir, "nope.crt"), keyFile},
		{"missing key", certFile, filepath.Join(dir, "nope.key")},
		{"mismatched key", certFile, otherKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := httpx.LoadCertificate(tc.cert, tc.key); err == nil {
				t.Errorf("LoadCertificate succeeded: %v", c.Fingerprint())
			}
		})
	}
}
