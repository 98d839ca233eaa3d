package httpx_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/elph-server/elph/platform/httpx"
)

func TestRedirectHandler(t *testing.T) {
	tests := []struct {
		name, port, method, host, target string
		want                             string // Location; "" means 400
	}{
		{"name with query", "8443", "GET", "elph.example.org", "/chat/v1/x?a=1&b=%20", "https://elph.example.org:8443/chat/v1/x?a=1&b=%20"},
		{"port 80 replaced by 443 left out", "443", "GET", "Elph.Example.ORG:80", "/", "https://elph.example.org/"},
		{"empty port leaves it out", "", "GET", "elph.example.org", "/a", "https://elph.example.org/a"},
		{"other port replaced", "8443", "GET", "elph.example.org:8080", "/a", "https://elph.example.org:8443/a"},
		{"empty port after colon", "8443", "GET", "elph.example.org:", "/", "https://elph.example.org:8443/"},
		{"trailing dot", "8443", "GET", "elph.example.org.", "/", "https://elph.example.org:8443/"},
		{"single label", "8443", "GET", "elph", "/", "https://elph:8443/"},
		{"underscore", "8443", "GET", "elph_1.lan", "/", "https://elph_1.lan:8443/"},
		{"ipv4", "8443", "GET", "192.0.2.10", "/", "https://192.0.2.10:8443/"},
		{"ipv4 with port", "443", "GET", "192.0.2.10:80", "/x", "https://192.0.2.10/x"},
		{"ipv6", "8443", "GET", "[2001:DB8::1]", "/", "https://[2001:db8::1]:8443/"},
		{"ipv6 with port", "8443", "GET", "[2001:db8::1]:80", "/p?q", "https://[2001:db8::1]:8443/p?q"},
		{"ipv6 loopback default port", "443", "GET", "[::1]:80", "/", "https://[::1]/"},
		{"escaped path kept", "8443", "GET", "elph.example.org", "/files/a%2Fb%20c", "https://elph.example.org:8443/files/a%2Fb%20c"},
		{"double slash stays on the host", "8443", "GET", "elph.example.org", "//evil.example/x", "https://elph.example.org:8443//evil.example/x"},
		{"post keeps path", "8443", "POST", "elph.example.org", "/sso/v1/login", "https://elph.example.org:8443/sso/v1/login"},
		{"head", "8443", "HEAD", "elph.example.org", "/", "https://elph.example.org:8443/"},
		{"options star", "8443", "OPTIONS", "elph.example.org", "*", "https://elph.example.org:8443/"},

		{"missing host", "8443", "GET", "", "/", ""},
		{"bare ipv6", "8443", "GET", "2001:db8::1", "/", ""},
		{"ipv6 zone", "8443", "GET", "[fe80::1%25eth0]", "/", ""},
		{"ipv6 unclosed", "8443", "GET", "[2001:db8::1", "/", ""},
		{"ipv6 junk after bracket", "8443", "GET", "[2001:db8::1]x", "/", ""},
		{"ipv4 in brackets", "8443", "GET", "[192.0.2.1]", "/", ""},
		{"port not a number", "8443", "GET", "elph.example.org:https", "/", ""},
		{"port too long", "8443", "GET", "elph.example.org:123456", "/", ""},
		{"userinfo", "8443", "GET", "user@evil.example", "/", ""},
		{"path in host", "8443", "GET", "evil.example/x", "/", ""},
		{"space", "8443", "GET", "elph example", "/", ""},
		{"backslash", "8443", "GET", `evil.example\x`, "/", ""},
		{"not an ip", "8443", "GET", "192.0.2.300", "/", ""},
		{"empty label", "8443", "GET", "elph..example.org", "/", ""},
		{"hyphen at start", "8443", "GET", "-elph.example.org", "/", ""},
		{"wildcard", "8443", "GET", "*.example.org", "/", ""},
		{"non-ascii", "8443", "GET", "чат.example.org", "/", ""},
		{"label too long", "8443", "GET", strings.Repeat("a", 64) + ".org", "/", ""},
		{"name too long", "8443", "GET", strings.Repeat("abcdefghi.", 26) + "org", "/", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.method == "POST" {
				body = strings.NewReader(`{"login":"bob"}`)
			}
			r := httptest.NewRequest(tc.method, "http://placeholder"+tc.target, body)
			if tc.target == "*" {
				r = httptest.NewRequest(tc.method, "*", nil)
			}
			r.Host = tc.host
			w := httptest.NewRecorder()
			httpx.RedirectHandler(tc.port).ServeHTTP(w, r)

			if tc.want == "" {
				if w.Code != http.StatusBadRequest {
					t.Fatalf("status %d (Location %q), want 400", w.Code, w.Header().Get("Location"))
				}
				if loc := w.Header().Get("Location"); loc != "" {
					t.Errorf("400 with Location %q", loc)
				}
				if eb := decodeErrorBody(t, w.Body.Bytes()); eb.Error.Code != httpx.CodeBadRequest {
					t.Errorf("error code %q", eb.Error.Code)
				}
				return
			}
			if w.Code != http.StatusPermanentRedirect {
				t.Fatalf("status %d, want 308; body %q", w.Code, w.Body.String())
			}
			if got := w.Header().Get("Location"); got != tc.want {
				t.Errorf("Location %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRedirectHandlerPanicsOnBadPort(t *testing.T) {
	for _, port := range []string{"0", "65536", "https", "-1", "08443", " 443", "44 3"} {
		t.Run(port, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("RedirectHandler(%q) did not panic", port)
				}
			}()
			httpx.RedirectHandler(port)
		})
	}
	for _, port := range []string{"", "1", "443", "8443", "65535"} {
		httpx.RedirectHandler(port) // must not panic
	}
}

func TestHTTPSPort(t *testing.T) {
	for listen, want := range map[string]string{
		":8443":         "8443",
		"0.0.0.0:443":   "443",
		"[::]:8443":     "8443",
		"127.0.0.1:0":   "0",
		"no-port":       "",
		"":              "",
		"[::1]":         "",
		"example.org:1": "1",
	} {
		if got := httpx.HTTPSPort(listen); got != want {
			t.Errorf("HTTPSPort(%q) = %q, want %q", listen, got, want)
		}
	}
}

// TestRedirectListener runs the handler on a real plaintext listener in
// front of a TLS one: a browser-like client that follows redirects lands
// on the HTTPS server with path and query intact, and requests that carry
// no usable Host get 400 from the listener.
func TestRedirectListener(t *testing.T) {
	dir := t.TempDir()
	ca, err := httpx.NewCA("Elph local CA redirect-test")
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ca.IssueServerCert([]string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := sc.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	cert, err := httpx.LoadCertificate(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	tlsSrv, _ := startServer(t, httpx.ServerOptions{
		Name: "gateway", TLS: cert.TLSConfig(),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, r.Method+" "+r.URL.RequestURI()+" "+r.Proto)
		}),
	})
	httpsPort := httpx.HTTPSPort(tlsSrv.Addr().String())
	plainSrv, plainBase := startServer(t, httpx.ServerOptions{Name: "gateway-http", Handler: httpx.RedirectHandler(httpsPort)})

	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	var hops []string
	c := &http.Client{Transport: tr, Timeout: safety, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		hops = append(hops, req.URL.String())
		return nil
	}}
	resp, err := c.Post(plainBase+"/sso/v1/login?x=1", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatalf("POST through the redirect: %v", err)
	}
	got := string(readAll(t, resp.Body))
	resp.Body.Close()
	if resp.StatusCode != 200 || got != "POST /sso/v1/login?x=1 HTTP/2.0" {
		t.Errorf("landed on %d %q, want POST /sso/v1/login?x=1 over HTTP/2", resp.StatusCode, got)
	}
	if want := "https://127.0.0.1:" + httpsPort + "/sso/v1/login?x=1"; len(hops) != 1 || hops[0] != want {
		t.Errorf("redirects %v, want one to %s", hops, want)
	}

	// Raw requests: HTTP/1.0 without Host reaches the handler (400 from
	// us); HTTP/1.1 without Host is refused by net/http itself.
	for _, tc := range []struct{ req, wantStatus string }{
		{"GET / HTTP/1.0\r\n\r\n", "400"},
		{"GET / HTTP/1.1\r\n\r\n", "400"},
		{"GET / HTTP/1.1\r\nHost: evil.example/x\r\n\r\n", "400"},
		{"GET /a?b HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", "308"},
	} {
		conn, err := net.DialTimeout("tcp", plainSrv.Addr().String(), safety)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(safety))
		if _, err := io.WriteString(conn, tc.req); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("%q: %v", tc.req, err)
		}
		if f := strings.Fields(line); len(f) < 2 || f[1] != tc.wantStatus {
			t.Errorf("%q answered %q, want %s", tc.req, line, tc.wantStatus)
		}
	}
}
