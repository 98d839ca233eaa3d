package httpx_test

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
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
	"net/http/httptrace"
	"os"
	"path/filepath"
	"slices"
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

// tlsTarget is a TLS server on loopback and the pool that trusts it.
type tlsTarget struct {
	addr string
	pool *x509.CertPool
}

// handshake dials target with cfg (RootCAs and ServerName filled in) and
// returns the negotiated state.
func (tt tlsTarget) handshake(cfg *tls.Config) (tls.ConnectionState, error) {
	cfg = cfg.Clone()
	cfg.RootCAs, cfg.ServerName = tt.pool, "127.0.0.1"
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: safety}, "tcp", tt.addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	return conn.ConnectionState(), nil
}

// handshakeCase is a client configuration tried against a target; want
// checks the negotiated state of a handshake that must succeed.
type handshakeCase struct {
	name   string
	target tlsTarget
	cfg    *tls.Config
	want   func(st tls.ConnectionState) bool
}

// newTestCA makes a CA and a server certificate for 127.0.0.1 written to dir.
func newTestCA(t *testing.T, dir string) (ca *httpx.CA, certFile, keyFile string) {
	t.Helper()
	ca, err := httpx.NewCA("Elph local CA test")
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ca.IssueServerCert([]string{"127.0.0.1", "localhost"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := sc.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	return ca, certFile, keyFile
}

// rsaServerCert is an RSA-2048 server certificate for 127.0.0.1 signed by ca,
// to exercise the ECDHE-RSA suites an operator's own certificate may need.
func rsaServerCert(t *testing.T, ca *httpx.CA) *tls.Certificate {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "rsa"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestTLSIntermediateProfile checks Mozilla's intermediate profile with
// real handshakes on loopback, for an ECDSA certificate (served through
// Certificate.TLSConfig, as the gateway does) and an RSA one.
func TestTLSIntermediateProfile(t *testing.T) {
	dir := t.TempDir()
	ca, certFile, keyFile := newTestCA(t, dir)
	cert, err := httpx.LoadCertificate(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	rsaCert := rsaServerCert(t, ca)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.Proto) })

	ecdsaSrv, _ := startServer(t, httpx.ServerOptions{Name: "ecdsa", TLS: cert.TLSConfig(), Handler: ok})
	rsaSrv, _ := startServer(t, httpx.ServerOptions{Name: "rsa", Handler: ok,
		TLS: httpx.ServerTLSConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return rsaCert, nil })})
	ecdsaT := tlsTarget{addr: ecdsaSrv.Addr().String(), pool: pool}
	rsaT := tlsTarget{addr: rsaSrv.Addr().String(), pool: pool}

	// Control: Go's default server configuration accepts the CBC and P-521
	// clients below, so their refusal is the profile's doing.
	kp, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	defLn, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{kp}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { defLn.Close() })
	go func() {
		for {
			c, err := defLn.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	defaultT := tlsTarget{addr: defLn.Addr().String(), pool: pool}

	cbcSuites := []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
	}
	tls12 := func(suites []uint16, curves []tls.CurveID) *tls.Config {
		return &tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, CipherSuites: suites, CurvePreferences: curves}
	}
	for _, tc := range []handshakeCase{
		{"default server: 1.2 CBC", defaultT, tls12(cbcSuites, nil), nil},
		{"default server: 1.2 P-521", defaultT, tls12(nil, []tls.CurveID{tls.CurveP521}), nil},
	} {
		if _, err := tc.target.handshake(tc.cfg); err != nil {
			t.Fatalf("control %s failed, so the refusals below prove nothing: %v", tc.name, err)
		}
	}

	refused := []handshakeCase{
		{"TLS 1.0", ecdsaT, &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}, nil},
		{"TLS 1.1", ecdsaT, &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, nil},
		{"TLS 1.1 rsa", rsaT, &tls.Config{MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11}, nil},
		{"1.2 CBC only", ecdsaT, tls12(cbcSuites, nil), nil},
		{"1.2 CBC only rsa", rsaT, tls12(cbcSuites, nil), nil},
		{"1.2 RSA key exchange", rsaT, tls12([]uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_RSA_WITH_AES_128_CBC_SHA}, nil), nil},
		{"1.2 3DES", rsaT, tls12([]uint16{tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA}, nil), nil},
		{"1.2 P-521 only", ecdsaT, tls12(nil, []tls.CurveID{tls.CurveP521}), nil},
		{"1.3 P-521 only", ecdsaT, &tls.Config{MinVersion: tls.VersionTLS13, CurvePreferences: []tls.CurveID{tls.CurveP521}}, nil},
	}
	for _, tc := range refused {
		t.Run("refuse "+tc.name, func(t *testing.T) {
			if st, err := tc.target.handshake(tc.cfg); err == nil {
				t.Errorf("handshake succeeded: version %s, suite %s, curve %s",
					tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), st.CurveID)
			}
		})
	}

	var accepted []handshakeCase
	for _, s := range []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	} {
		accepted = append(accepted, handshakeCase{"1.2 " + tls.CipherSuiteName(s), ecdsaT, tls12([]uint16{s}, nil), func(st tls.ConnectionState) bool { return st.CipherSuite == s }})
	}
	for _, s := range []uint16{
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	} {
		accepted = append(accepted, handshakeCase{"1.2 " + tls.CipherSuiteName(s), rsaT, tls12([]uint16{s}, nil), func(st tls.ConnectionState) bool { return st.CipherSuite == s }})
	}
	for _, c := range []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384} {
		accepted = append(accepted, handshakeCase{"1.2 curve " + c.String(), ecdsaT, tls12(nil, []tls.CurveID{c}), func(st tls.ConnectionState) bool { return st.CurveID == c }})
	}
	accepted = append(accepted, []handshakeCase{
		{"1.3", ecdsaT, &tls.Config{MinVersion: tls.VersionTLS13}, func(st tls.ConnectionState) bool { return st.Version == tls.VersionTLS13 }},
		{"1.3 rsa", rsaT, &tls.Config{MinVersion: tls.VersionTLS13}, func(st tls.ConnectionState) bool { return st.Version == tls.VersionTLS13 }},
		{"1.3 post-quantum hybrid", ecdsaT, &tls.Config{MinVersion: tls.VersionTLS13, CurvePreferences: []tls.CurveID{tls.X25519MLKEM768}},
			func(st tls.ConnectionState) bool { return st.CurveID == tls.X25519MLKEM768 }},
		{"1.3 P-384 only", ecdsaT, &tls.Config{MinVersion: tls.VersionTLS13, CurvePreferences: []tls.CurveID{tls.CurveP384}},
			func(st tls.ConnectionState) bool { return st.CurveID == tls.CurveP384 }},
		{"default client gets 1.3", ecdsaT, &tls.Config{}, func(st tls.ConnectionState) bool { return st.Version == tls.VersionTLS13 }},
		{"ALPN h2", ecdsaT, &tls.Config{NextProtos: []string{"h2", "http/1.1"}}, func(st tls.ConnectionState) bool { return st.NegotiatedProtocol == "h2" }},
		{"ALPN h2 over 1.2", ecdsaT, &tls.Config{MaxVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}},
			func(st tls.ConnectionState) bool { return st.NegotiatedProtocol == "h2" }},
		{"ALPN http/1.1 only", ecdsaT, &tls.Config{NextProtos: []string{"http/1.1"}}, func(st tls.ConnectionState) bool { return st.NegotiatedProtocol == "http/1.1" }},
	}...)
	for _, tc := range accepted {
		t.Run("accept "+tc.name, func(t *testing.T) {
			st, err := tc.target.handshake(tc.cfg)
			if err != nil {
				t.Fatalf("handshake refused: %v", err)
			}
			if !tc.want(st) {
				t.Errorf("negotiated version %s, suite %s, curve %s, ALPN %q",
					tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), st.CurveID, st.NegotiatedProtocol)
			}
			if tc.cfg.MaxVersion == tls.VersionTLS12 && st.Version != tls.VersionTLS12 {
				t.Errorf("version %s", tls.VersionName(st.Version))
			}
		})
	}

	// And an HTTP/2 request end to end through the ECDSA listener.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr, Timeout: safety}).Get("https://" + ecdsaT.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp.Body); string(body) != "HTTP/2.0" {
		t.Errorf("served over %q, want HTTP/2.0", body)
	}
	resp.Body.Close()
}

func TestServerTLSConfigIsFresh(t *testing.T) {
	a := httpx.ServerTLSConfig(nil)
	a.CipherSuites[0], a.CurvePreferences[0] = 0, 0
	b := httpx.ServerTLSConfig(nil)
	if b.CipherSuites[0] == 0 || b.CurvePreferences[0] == 0 {
		t.Error("ServerTLSConfig shares its slices between calls")
	}
	if b.MinVersion != tls.VersionTLS12 || len(b.CipherSuites) != 6 {
		t.Errorf("MinVersion %x, %d suites", b.MinVersion, len(b.CipherSuites))
	}
	for _, s := range b.CipherSuites {
		name := tls.CipherSuiteName(s)
		if !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20_POLY1305")) {
			t.Errorf("suite %s is not ECDHE with AEAD", name)
		}
	}
}

// TestTLSReloadKeepsOpenConnections: after Reload, connections made
// before it go on working (a keep-alive HTTP/1.1 connection, an HTTP/2
// connection and a response streaming across the reload) while new
// handshakes get the new certificate.
func TestTLSReloadKeepsOpenConnections(t *testing.T) {
	dir := t.TempDir()
	ca, certFile, keyFile := newTestCA(t, dir)
	cert, err := httpx.LoadCertificate(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	fp1 := cert.Fingerprint()
	release := make(chan struct{})
	firstPart := make(chan struct{}, 1)
	_, base := startServer(t, httpx.ServerOptions{
		Name: "gateway", TLS: cert.TLSConfig(),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				_, _ = io.WriteString(w, "first\n")
				w.(http.Flusher).Flush()
				firstPart <- struct{}{}
				<-release
				_, _ = io.WriteString(w, "second\n")
				return
			}
			_, _ = io.WriteString(w, "ok "+r.Proto)
		}),
	})
	addr := strings.TrimPrefix(base, "https://")
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	target := tlsTarget{addr: addr, pool: pool}

	// An HTTP/1.1 keep-alive connection, used once before the reload.
	h1, err := tls.DialWithDialer(&net.Dialer{Timeout: safety}, "tcp", addr,
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Close()
	_ = h1.SetDeadline(time.Now().Add(safety))
	h1r := bufio.NewReader(h1)
	roundTrip := func(what string) {
		t.Helper()
		if _, err := io.WriteString(h1, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
			t.Fatalf("%s: write: %v", what, err)
		}
		resp, err := http.ReadResponse(h1r, nil)
		if err != nil {
			t.Fatalf("%s: read: %v", what, err)
		}
		body := readAll(t, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "ok HTTP/1.1" {
			t.Fatalf("%s: %d %q", what, resp.StatusCode, body)
		}
	}
	roundTrip("before reload")
	if got := fingerprintOf(h1.ConnectionState().PeerCertificates[0]); got != fp1 {
		t.Fatalf("served %s, want %s", got, fp1)
	}

	// An HTTP/2 connection with a response in flight.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true, MaxConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	h2 := &http.Client{Transport: tr, Timeout: safety}
	slow, err := h2.Get(base + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Body.Close()
	if slow.ProtoMajor != 2 {
		t.Fatalf("proto %s, want HTTP/2", slow.Proto)
	}
	slowR := bufio.NewReader(slow.Body)
	if line, err := slowR.ReadString('\n'); err != nil || line != "first\n" {
		t.Fatalf("first part %q %v", line, err)
	}
	wait(t, firstPart, "first part")

	// Renew with the same CA and reload.
	sc, err := ca.IssueServerCert([]string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	if err := cert.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	fp2 := cert.Fingerprint()
	if fp2 == fp1 || fp2 != fingerprintOf(sc.Cert) {
		t.Fatalf("after Reload fingerprint %s (old %s, issued %s)", fp2, fp1, fingerprintOf(sc.Cert))
	}

	// The streaming response finishes on its connection.
	close(release)
	if rest, err := io.ReadAll(slowR); err != nil || string(rest) != "second\n" {
		t.Errorf("rest of the streamed response %q %v", rest, err)
	}
	// The HTTP/2 connection carries another request, still under the old certificate.
	var reused bool
	req, _ := http.NewRequest("GET", base+"/", nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
	}))
	resp, err := h2.Do(req)
	if err != nil {
		t.Fatalf("request on the open HTTP/2 connection: %v", err)
	}
	body := readAll(t, resp.Body)
	resp.Body.Close()
	if !reused || string(body) != "ok HTTP/2.0" {
		t.Errorf("second HTTP/2 request: reused=%v body %q", reused, body)
	}
	if got := fingerprintOf(resp.TLS.PeerCertificates[0]); got != fp1 {
		t.Errorf("open HTTP/2 connection now shows %s, want the old %s", got, fp1)
	}
	// The HTTP/1.1 keep-alive connection carries another request.
	roundTrip("after reload")

	// A new handshake gets the new certificate.
	st, err := target.handshake(&tls.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if got := fingerprintOf(st.PeerCertificates[0]); got != fp2 {
		t.Errorf("new handshake got %s, want the new %s", got, fp2)
	}
}

func TestNewCAAndIssueServerCert(t *testing.T) {
	ca, err := httpx.NewCA("Elph local CA host1")
	if err != nil {
		t.Fatal(err)
	}
	c := ca.Cert
	if c.Subject.CommonName != "Elph local CA host1" || !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("CA %q IsCA=%v MaxPathLen=%d zero=%v", c.Subject.CommonName, c.IsCA, c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA key usage %b lacks certSign", c.KeyUsage)
	}
	if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("CA key %T, want ECDSA P-256", c.PublicKey)
	}
	if years := c.NotAfter.Sub(c.NotBefore).Hours() / 24 / 365.25; years < 9.99 || years > 10.01 {
		t.Errorf("CA valid for %.2f years, want 10", years)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}

	sc, err := ca.IssueServerCert([]string{
		"Elph.Example.org.", "192.0.2.7", "[2001:DB8::7]", "*.svc.example.org", "localhost", " ",
		"elph.example.org", "::ffff:192.0.2.7", "", "2001:db8::7",
	}, 0)
	if err != nil {
		t.Fatalf("IssueServerCert: %v", err)
	}
	s := sc.Cert
	if want := []string{"elph.example.org", "*.svc.example.org", "localhost"}; !slices.Equal(s.DNSNames, want) {
		t.Errorf("DNS names %v, want %v", s.DNSNames, want)
	}
	if len(s.IPAddresses) != 2 || !s.IPAddresses[0].Equal(net.ParseIP("192.0.2.7")) || len(s.IPAddresses[0]) != 4 ||
		!s.IPAddresses[1].Equal(net.ParseIP("2001:db8::7")) {
		t.Errorf("IP addresses %v", s.IPAddresses)
	}
	if s.Subject.CommonName != "elph.example.org" {
		t.Errorf("CN %q", s.Subject.CommonName)
	}
	if d := s.NotAfter.Sub(s.NotBefore); d >= 825*24*time.Hour || d < 824*24*time.Hour {
		t.Errorf("validity %v, want just under 825 days", d)
	}
	if s.NotBefore.After(time.Now()) {
		t.Errorf("NotBefore %v is in the future", s.NotBefore)
	}
	if s.IsCA || !slices.Equal(s.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("leaf IsCA=%v EKU=%v", s.IsCA, s.ExtKeyUsage)
	}
	if pub, ok := s.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("server key %T, want ECDSA P-256", s.PublicKey)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, h := range []string{"elph.example.org", "ELPH.example.org", "a.svc.example.org", "localhost", "192.0.2.7", "2001:db8::7"} {
		if _, err := s.Verify(x509.VerifyOptions{Roots: roots, DNSName: h}); err != nil {
			t.Errorf("verify for %s: %v", h, err)
		}
	}
	for _, h := range []string{"other.example.org", "svc.example.org", "a.b.svc.example.org", "192.0.2.8"} {
		if _, err := s.Verify(x509.VerifyOptions{Roots: roots, DNSName: h}); err == nil {
			t.Errorf("certificate verifies for %s", h)
		}
	}
	if _, err := s.Verify(x509.VerifyOptions{Roots: x509.NewCertPool(), DNSName: "localhost"}); err == nil {
		t.Error("certificate verifies without its CA")
	}

	// Files: chain (server, then CA) and keys with their modes; they load.
	dir := t.TempDir()
	caCrt, caKey := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	srvCrt, srvKey := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := ca.WriteFiles(caCrt, caKey); err != nil {
		t.Fatal(err)
	}
	if err := sc.WriteFiles(srvCrt, srvKey); err != nil {
		t.Fatal(err)
	}
	for f, mode := range map[string]os.FileMode{caCrt: 0o644, caKey: 0o600, srvCrt: 0o644, srvKey: 0o600} {
		if st, err := os.Stat(f); err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s mode %v (%v), want %v", filepath.Base(f), st.Mode().Perm(), err, mode)
		}
	}
	kp, err := tls.LoadX509KeyPair(srvCrt, srvKey)
	if err != nil {
		t.Fatalf("server pair: %v", err)
	}
	if len(kp.Certificate) != 2 || !bytes.Equal(kp.Certificate[0], s.Raw) || !bytes.Equal(kp.Certificate[1], ca.Cert.Raw) {
		t.Errorf("server.crt holds %d certificates, want server then CA", len(kp.Certificate))
	}
	if !bytes.Equal(parseCertFile(t, caCrt).Raw, ca.Cert.Raw) {
		t.Error("ca.crt is not the CA")
	}
	loaded, err := httpx.LoadCA(caCrt, caKey)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	if !bytes.Equal(loaded.Cert.Raw, ca.Cert.Raw) {
		t.Error("LoadCA returned another certificate")
	}
	// The loaded CA signs certificates the same roots accept.
	sc2, err := loaded.IssueServerCert([]string{"localhost"}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc2.Cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "localhost"}); err != nil {
		t.Errorf("certificate from the loaded CA: %v", err)
	}
	if d := sc2.Cert.NotAfter.Sub(sc2.Cert.NotBefore); d != 24*time.Hour-time.Second {
		t.Errorf("lifetime 24h gave validity %v", d)
	}
}

// caWith makes a CA certificate from tmpl (self-signed, fresh P-256 key).
func caWith(t *testing.T, tmpl *x509.Certificate) *httpx.CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &httpx.CA{Cert: c, Key: key}
}

func TestIssueServerCertCappedByCA(t *testing.T) {
	soon := caWith(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "ends soon"}, IsCA: true, KeyUsage: x509.KeyUsageCertSign,
		NotBefore: time.Now().Add(-24 * time.Hour), NotAfter: time.Now().Add(100 * 24 * time.Hour).Truncate(time.Second),
	})
	sc, err := soon.IssueServerCert([]string{"localhost"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !sc.Cert.NotAfter.Equal(soon.Cert.NotAfter) {
		t.Errorf("server certificate ends %v, want the CA's end %v", sc.Cert.NotAfter, soon.Cert.NotAfter)
	}
	expired := caWith(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "expired"}, IsCA: true, KeyUsage: x509.KeyUsageCertSign,
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour),
	})
	if _, err := expired.IssueServerCert([]string{"localhost"}, 0); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("issuing from an expired CA: %v", err)
	}
}

func TestIssueServerCertRejectsBadHosts(t *testing.T) {
	ca, err := httpx.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		hosts []string
		want  string
	}{
		{"none", nil, "at least one"},
		{"only blanks", []string{"", "  "}, "at least one"},
		{"url", []string{"https://elph.example.org"}, "without scheme"},
		{"host:port", []string{"elph.example.org:8443"}, "without scheme"},
		{"ipv6 zone", []string{"fe80::1%eth0"}, "zone"},
		{"cyrillic", []string{"чат.пример.рф"}, "xn--"},
		{"empty label", []string{"elph..example.org"}, "1 to 63"},
		{"long label", []string{strings.Repeat("a", 64) + ".org"}, "1 to 63"},
		{"long name", []string{strings.Repeat("abcdefghi.", 26) + "org"}, "1 to 253"},
		{"hyphen", []string{"-elph.example.org"}, "'-'"},
		{"bad ip", []string{"192.0.2.300"}, "IP address"},
		{"bare wildcard", []string{"*.org"}, "wildcard"},
		{"inner wildcard", []string{"a.*.example.org"}, "cannot contain '*'"},
		{"second host bad", []string{"ok.example.org", "bad!host"}, "bad!host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ca.IssueServerCert(tc.hosts, 0)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestLoadCAErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca, err := httpx.NewCA("good")
	if err != nil {
		t.Fatal(err)
	}
	caCrt, caKey := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := ca.WriteFiles(caCrt, caKey); err != nil {
		t.Fatal(err)
	}
	other, err := httpx.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	otherCrt, otherKey := filepath.Join(dir, "other.crt"), filepath.Join(dir, "other.key")
	if err := other.WriteFiles(otherCrt, otherKey); err != nil {
		t.Fatal(err)
	}
	sc, err := ca.IssueServerCert([]string{"localhost"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	srvCrt, srvKey := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := sc.WriteFiles(srvCrt, srvKey); err != nil {
		t.Fatal(err)
	}
	expired := caWith(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "expired"}, IsCA: true, KeyUsage: x509.KeyUsageCertSign,
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour),
	})
	expCrt, expKey := filepath.Join(dir, "exp.crt"), filepath.Join(dir, "exp.key")
	if err := expired.WriteFiles(expCrt, expKey); err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := os.ReadFile(caKey)
	encrypted := write("enc.key", bytes.Replace(keyPEM, []byte("-----\n"), []byte("-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n\n"), 1))

	for _, tc := range []struct{ name, cert, key, want string }{
		{"missing cert", filepath.Join(dir, "nope.crt"), caKey, "read CA certificate"},
		{"missing key", caCrt, filepath.Join(dir, "nope.key"), "read CA key"},
		{"garbage cert", write("garbage.crt", []byte("hello")), caKey, "no PEM certificate"},
		{"server cert is no CA", srvCrt, srvKey, "not a CA"},
		{"other CA's key", caCrt, otherKey, "is not the key of"},
		{"expired", expCrt, expKey, "valid only from"},
		{"encrypted key", caCrt, encrypted, "encrypted"},
		{"certificate as key", caCrt, caCrt, "not a private key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := httpx.LoadCA(tc.cert, tc.key)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want one containing %q", err, tc.want)
			}
		})
	}

	// SEC 1 ("EC PRIVATE KEY") and PKCS#1 RSA keys load too.
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct {
		name string
		key  crypto.Signer
		pem  *pem.Block
	}{
		{"sec1", ecKey, &pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}},
		{"pkcs1", rsaKey, &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}},
	} {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: k.name}, IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.key.Public(), k.key)
		if err != nil {
			t.Fatal(err)
		}
		crt := write(k.name+".crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
		key := write(k.name+".key", pem.EncodeToMemory(k.pem))
		loaded, err := httpx.LoadCA(crt, key)
		if err != nil {
			t.Errorf("%s: %v", k.name, err)
			continue
		}
		if _, err := loaded.IssueServerCert([]string{"localhost"}, 0); err != nil {
			t.Errorf("%s: issue: %v", k.name, err)
		}
	}
}

func TestSANs(t *testing.T) {
	dns, ips, err := httpx.SANs([]string{"A.example.org", "a.example.org.", "10.0.0.1", "::ffff:10.0.0.1", "[::1]", "::1", "elph_db.lan"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dns, []string{"a.example.org", "elph_db.lan"}) {
		t.Errorf("dns %v", dns)
	}
	if len(ips) != 2 || ips[0].String() != "10.0.0.1" || ips[1].String() != "::1" {
		t.Errorf("ips %v", ips)
	}
}
