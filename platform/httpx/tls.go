package httpx

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Certificate holds a key pair loaded from files and reloadable in place,
// so SIGHUP can pick up a renewed certificate without dropping connections.
type Certificate struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// LoadCertificate reads a PEM certificate and key.
func LoadCertificate(certFile, keyFile string) (*Certificate, error) {
	c := &Certificate{certFile: certFile, keyFile: keyFile}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the files again; on error the old certificate stays.
func (c *Certificate) Reload() error {
	kp, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("load certificate %s: %w", c.certFile, err)
	}
	c.cur.Store(&kp)
	return nil
}

// Fingerprint is the SHA-256 of the leaf certificate, for operators to pin.
func (c *Certificate) Fingerprint() string {
	kp := c.cur.Load()
	if kp == nil || len(kp.Certificate) == 0 {
		return ""
	}
	sum := sha256.Sum256(kp.Certificate[0])
	return hex.EncodeToString(sum[:])
}

// TLSConfig is a server configuration that serves this certificate (the
// current one: Reload affects new handshakes, open connections keep theirs)
// with the ServerTLSConfig profile.
func (c *Certificate) TLSConfig() *tls.Config {
	return ServerTLSConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return c.cur.Load(), nil
	})
}

// Server TLS profile: Mozilla's "intermediate" configuration
// (https://wiki.mozilla.org/Security/Server_Side_TLS). TLS 1.3 with
// Go's fixed AEAD suites, and TLS 1.2 only with ECDHE key exchange and an
// AEAD cipher: no CBC, no RSA key exchange, no DHE, no 3DES/RC4. TLS 1.0 and
// 1.1 are refused. Every browser and mobile OS of the last ten years and any
// Java >= 8 or OpenSSL >= 1.0.1 client can connect.
var (
	// intermediateSuites are the TLS 1.2 suites; TLS 1.3 suites are not
	// configurable in Go and are all AEAD.
	intermediateSuites = []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
	// intermediateCurves are Mozilla's X25519, P-256 and P-384, plus the
	// X25519MLKEM768 hybrid post-quantum exchange (TLS 1.3 only; on by
	// default in Go since 1.24 and in current browsers): it is never weaker
	// than X25519 alone, and clients that do not offer it use the others.
	intermediateCurves = []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384}
)

// ServerTLSConfig is the configuration every TLS listener uses: the
// intermediate profile above, ALPN h2 and http/1.1 (HTTP/2 for browsers and
// mobile clients), and the certificate getCert returns for each handshake.
// Taking the certificate per handshake is what lets a reload swap it
// without dropping open connections.
func ServerTLSConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS12,
		CipherSuites:     slices.Clone(intermediateSuites),
		CurvePreferences: slices.Clone(intermediateCurves),
		NextProtos:       []string{"h2", "http/1.1"},
		GetCertificate:   getCert,
	}
}

// selfSignedLifetime and selfSignedRenew: the generated certificate lasts
// two years and is replaced when it has less than 30 days left.
const (
	selfSignedLifetime = 2 * 365 * 24 * time.Hour
	selfSignedRenew    = 30 * 24 * time.Hour
)

// SelfSigned returns the paths of a self-signed certificate and key in dir,
// generating them (ECDSA P-256, for hosts plus localhost and loopback) when
// they are missing or about to expire. It is the gateway's fallback when no
// certificate is configured, so the gateway never serves plaintext.
func SelfSigned(dir string, hosts []string) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, "selfsigned.crt"), filepath.Join(dir, "selfsigned.key")
	if fresh(certFile) {
		if _, err := os.Stat(keyFile); err == nil {
			return certFile, keyFile, nil
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("create %s: %w", dir, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Elph self-signed", Organization: []string{"Elph server"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range append([]string{"localhost", "127.0.0.1", "::1"}, hosts...) {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", fmt.Errorf("create certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("marshal key: %w", err)
	}
	if err := writePEM(keyFile, "PRIVATE KEY", keyDER, 0o600); err != nil {
		return "", "", err
	}
	if err := writePEM(certFile, "CERTIFICATE", der, 0o644); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

func fresh(certFile string) bool {
	b, err := os.ReadFile(certFile)
	if err != nil {
		return false
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return false
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	return err == nil && time.Until(c.NotAfter) > selfSignedRenew
}

// writePEM writes one PEM block atomically.
func writePEM(path, typ string, der []byte, mode fs.FileMode) error {
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

// writeFileAtomic writes through a temporary file and a rename, so a crash
// never leaves half a key behind and a reload never reads half a file.
// The mode is set before any byte is written.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	werr := tmp.Chmod(mode)
	if werr == nil {
		_, werr = tmp.Write(data)
	}
	werr = errors.Join(werr, tmp.Sync(), tmp.Close())
	if werr != nil {
		return fmt.Errorf("write %s: %w", path, werr)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Lifetimes of what NewCA and IssueServerCert make. 825 days is the most
// Apple platforms accept for a TLS server certificate, even one issued by a
// user-installed CA.
const (
	CAYears            = 10
	ServerCertLifetime = 825 * 24 * time.Hour
)

// CA is a certificate authority for closed networks: its certificate,
// which clients install as trusted, and the key that signs server
// certificates.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewCA makes a CA with an ECDSA P-256 key, valid for CAYears. It may sign
// only end-entity certificates (path length 0).
func NewCA(commonName string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	notBefore := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"Elph server"}},
		NotBefore:             notBefore,
		NotAfter:              notBefore.AddDate(CAYears, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// LoadCA reads a CA certificate and its private key (PKCS#8, SEC 1 or
// PKCS#1 PEM) and checks that they belong together, that the certificate
// is a CA allowed to sign certificates, and that it has not expired.
func LoadCA(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	blk, _ := pem.Decode(certPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s holds no PEM certificate", certFile)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s is not a CA certificate", certFile)
	}
	if now := time.Now(); now.After(cert.NotAfter) || now.Before(cert.NotBefore) {
		return nil, fmt.Errorf("CA certificate %s is valid only from %s to %s", certFile,
			cert.NotBefore.UTC().Format(time.DateOnly), cert.NotAfter.UTC().Format(time.DateOnly))
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s is not the key of %s", keyFile, certFile)
	}
	return &CA{Cert: cert, Key: key}, nil
}

func parsePrivateKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM private key")
	}
	if _, encrypted := blk.Headers["Proc-Type"]; encrypted || blk.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, errors.New("the private key is encrypted; give it unencrypted")
	}
	var (
		key any
		err error
	)
	switch blk.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", blk.Type)
	}
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", key)
	}
	return signer, nil
}

// CertPEM is the CA certificate in PEM, the file clients install.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// WriteFiles writes the certificate (0644) and the key (0600, PKCS#8),
// each atomically, the key first.
func (ca *CA) WriteFiles(certFile, keyFile string) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return fmt.Errorf("marshal CA key: %w", err)
	}
	if err := writePEM(keyFile, "PRIVATE KEY", keyDER, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certFile, ca.CertPEM(), 0o644)
}

// ServerCert is a server certificate with its fresh key and the CA that
// signed it.
type ServerCert struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	CA   *x509.Certificate
}

// IssueServerCert signs a server certificate (ECDSA P-256, serverAuth) for
// hosts, each a DNS name (a leading "*." makes a wildcard) or an IP
// address. It is valid from an hour ago (clock skew) for lifetime, at most
// ServerCertLifetime (0 means that), and never beyond the CA's own expiry.
// A host that is neither a valid name nor an address is an error naming it.
func (ca *CA) IssueServerCert(hosts []string, lifetime time.Duration) (*ServerCert, error) {
	dns, ips, err := SANs(hosts)
	if err != nil {
		return nil, err
	}
	if len(dns)+len(ips) == 0 {
		return nil, errors.New("a server certificate needs at least one host name or IP address")
	}
	if lifetime <= 0 || lifetime > ServerCertLifetime {
		lifetime = ServerCertLifetime
	}
	notBefore := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	if notBefore.Before(ca.Cert.NotBefore) {
		notBefore = ca.Cert.NotBefore
	}
	// X.509 validity includes both ends: stay a second under lifetime.
	notAfter := notBefore.Add(lifetime - time.Second)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	if !notAfter.After(time.Now()) {
		return nil, fmt.Errorf("CA %q expired on %s", ca.Cert.Subject.CommonName, ca.Cert.NotAfter.UTC().Format(time.DateOnly))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate server key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	cn := ""
	if len(dns) > 0 {
		cn = dns[0]
	} else {
		cn = ips[0].String()
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Elph server"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              dns,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign server certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse server certificate: %w", err)
	}
	return &ServerCert{Cert: cert, Key: key, CA: ca.Cert}, nil
}

// ChainPEM is the server certificate followed by the CA certificate, the
// chain a TLS server sends.
func (s *ServerCert) ChainPEM() []byte {
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Cert.Raw})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.CA.Raw})...)
}

// WriteFiles writes the chain (0644) and the key (0600, PKCS#8), each
// atomically, the key first. A reload that runs between the two renames
// finds a mismatched pair, fails, and keeps the old certificate.
func (s *ServerCert) WriteFiles(certFile, keyFile string) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(s.Key)
	if err != nil {
		return fmt.Errorf("marshal server key: %w", err)
	}
	if err := writePEM(keyFile, "PRIVATE KEY", keyDER, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certFile, s.ChainPEM(), 0o644)
}

// SANs sorts hosts into DNS names (lower-cased, without a trailing dot)
// and IP addresses (IPv4 in 4-byte form, brackets around IPv6 allowed),
// dropping empty entries and duplicates. A host that is neither, such as
// a URL, a host:port, an IPv6 zone or an internationalised name not in
// its xn-- form, is an error naming it.
func SANs(hosts []string) (dns []string, ips []net.IP, err error) {
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if b, ok := strings.CutPrefix(h, "["); ok {
			if b, ok = strings.CutSuffix(b, "]"); ok && strings.Contains(b, ":") {
				h = b
			}
		}
		if addr, perr := netip.ParseAddr(h); perr == nil {
			if addr.Zone() != "" {
				return nil, nil, fmt.Errorf("host %q: an IP address in a certificate cannot carry a zone", h)
			}
			ip := net.IP(addr.Unmap().AsSlice())
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
			continue
		}
		name, cerr := checkDNSName(h, true)
		if cerr != nil {
			return nil, nil, fmt.Errorf("host %q: %w", h, cerr)
		}
		if !slices.Contains(dns, name) {
			dns = append(dns, name)
		}
	}
	return dns, ips, nil
}

// checkDNSName validates a host name (RFC 1123 labels; underscores are
// tolerated as many internal names have them) and returns it lower-cased
// without a trailing dot. wildcard allows a leading "*." label.
func checkDNSName(h string, wildcard bool) (string, error) {
	name := strings.ToLower(strings.TrimSuffix(h, "."))
	for _, r := range name {
		if r >= utf8.RuneSelf {
			return "", errors.New("not an ASCII host name; give an internationalised name in its xn-- (punycode) form")
		}
	}
	if strings.ContainsAny(name, ":/@?#[]") {
		return "", errors.New("not a host name or IP address; give it without scheme, port or path")
	}
	if name == "" || len(name) > 253 {
		return "", errors.New("a host name has 1 to 253 characters")
	}
	labels := strings.Split(name, ".")
	if labels[0] == "*" && wildcard {
		if len(labels) < 3 {
			return "", errors.New("a wildcard must cover a subdomain, like *.example.org")
		}
		labels = labels[1:]
	}
	numeric := true
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "", errors.New("every dot-separated part of a host name has 1 to 63 characters")
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "", errors.New("a part of a host name cannot start or end with '-'")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c == '-', c == '_':
				numeric = false
			default:
				return "", fmt.Errorf("a host name cannot contain %q", c)
			}
		}
	}
	if numeric {
		return "", errors.New("looks like an IP address but is not a valid one")
	}
	return name, nil
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	// Never zero: some clients reject a zero serial.
	return serial.Add(serial, big.NewInt(1)), nil
}

// LoadCertPool reads the PEM certificates of a CA file into a new pool:
// the roots a client trusts for an internal service (upstream nodes, a
// relay node, NATS), instead of the system's.
func LoadCertPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
