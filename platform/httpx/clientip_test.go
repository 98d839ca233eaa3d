package httpx

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

var testTrusted = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("fd00::/8"),
}

func TestClientIP(t *testing.T) {
	tests := []struct {
		name    string
		remote  string
		xff     []string // one element per header line
		trusted []netip.Prefix
		want    string // "" means invalid
	}{
		{name: "no proxies", remote: "203.0.113.7:4242", want: "203.0.113.7"},
		{name: "untrusted peer spoofing XFF", remote: "203.0.113.7:4242", xff: []string{"1.1.1.1"}, trusted: testTrusted, want: "203.0.113.7"},
		{name: "no trusted list ignores XFF", remote: "10.0.0.1:4242", xff: []string{"1.1.1.1"}, want: "10.0.0.1"},
		{name: "trusted peer, one hop", remote: "10.0.0.1:4242", xff: []string{"198.51.100.4"}, trusted: testTrusted, want: "198.51.100.4"},
		{name: "trusted peer, client-sent prefix ignored", remote: "10.0.0.1:4242", xff: []string{"1.1.1.1, 198.51.100.4"}, trusted: testTrusted, want: "198.51.100.4"},
		{name: "chain of trusted proxies", remote: "10.0.0.1:4242", xff: []string{"6.6.6.6, 198.51.100.4, 10.2.0.1, 10.3.0.1"}, trusted: testTrusted, want: "198.51.100.4"},
		{name: "chain over several header lines", remote: "10.0.0.1:4242", xff: []string{"6.6.6.6, 198.51.100.4", "10.2.0.1", "10.3.0.1"}, trusted: testTrusted, want: "198.51.100.4"},
		{name: "every hop trusted: leftmost", remote: "10.0.0.1:4242", xff: []string{"10.9.9.9, 10.2.0.1"}, trusted: testTrusted, want: "10.9.9.9"},
		{name: "trusted peer, empty header", remote: "10.0.0.1:4242", xff: []string{""}, trusted: testTrusted, want: "10.0.0.1"},
		{name: "whitespace around hops", remote: "10.0.0.1:4242", xff: []string{"  198.51.100.4  ,\t10.2.0.1 "}, trusted: testTrusted, want: "198.51.100.4"},
		{name: "malformed hop after the client is skipped", remote: "10.0.0.1:4242", xff: []string{"garbage, 198.51.100.4"}, trusted: testTrusted, want: "198.51.100.4"},
		{name: "malformed hop breaks the chain", remote: "10.0.0.1:4242", xff: []string{"6.6.6.6, garbage, 10.2.0.1"}, trusted: testTrusted, want: "10.2.0.1"},
		{name: "malformed last hop: only the peer is believed", remote: "10.0.0.1:4242", xff: []string{"6.6.6.6, garbage"}, trusted: testTrusted, want: "10.0.0.1"},
		{name: "hop with a port is malformed", remote: "10.0.0.1:4242", xff: []string{"6.6.6.6, 198.51.100.4:5555"}, trusted: testTrusted, want: "10.0.0.1"},
		{name: "empty hop is malformed", remote: "10.0.0.1:4242", xff: []string{"6.6.6.6,,"}, trusted: testTrusted, want: "10.0.0.1"},
		{name: "IPv6 peer and client", remote: "[fd00::1]:443", xff: []string{"2001:db8::1"}, trusted: testTrusted, want: "2001:db8::1"},
		{name: "IPv6 untrusted peer", remote: "[2001:db8::2]:443", xff: []string{"2001:db8::1"}, trusted: testTrusted, want: "2001:db8::2"},
		{name: "IPv6 chain", remote: "[fd00::1]:443", xff: []string{"2001:db8::66, 2001:db8::1, fd00::2"}, trusted: testTrusted, want: "2001:db8::1"},
		{name: "IPv4-mapped peer is trusted as IPv4", remote: "[::ffff:10.0.0.1]:443", xff: []string{"198.51.100.4"}, trusted: testTrusted, want: "198.51.100.4"},
		{name: "IPv4-mapped hop is unmapped", remote: "10.0.0.1:4242", xff: []string{"::ffff:198.51.100.4"}, trusted: testTrusted, want: "198.51.100.4"},
		{name: "IPv4-mapped trusted hop is skipped", remote: "10.0.0.1:4242", xff: []string{"198.51.100.4, ::ffff:10.2.0.1"}, trusted: testTrusted, want: "198.51.100.4"},
		{name: "IPv4-mapped untrusted peer", remote: "[::ffff:203.0.113.7]:1", xff: []string{"1.1.1.1"}, trusted: testTrusted, want: "203.0.113.7"},
		{name: "peer without port", remote: "203.0.113.7", want: "203.0.113.7"},
		{name: "unparsable peer", remote: "not-an-address", xff: []string{"1.1.1.1"}, trusted: testTrusted, want: ""},
		{name: "empty peer", remote: "", want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tc.remote
			if tc.xff != nil {
				r.Header["X-Forwarded-For"] = tc.xff
			}
			got := clientIP(r, tc.trusted)
			if tc.want == "" {
				if got.IsValid() {
					t.Errorf("clientIP = %v, want invalid", got)
				}
				return
			}
			if got != netip.MustParseAddr(tc.want) {
				t.Errorf("clientIP = %v, want %s", got, tc.want)
			}
		})
	}
}

func TestValidRequestID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"", false},
		{"a", true},
		{strings.Repeat("x", maxRequestIDLen), true},
		{strings.Repeat("x", maxRequestIDLen+1), false},
		{"req-1_2.3:4", true},
		{"a\r\nb", false},
		{"a b", false},
		{"a/b", false},
		{"é", false},
		{"\xff", false},
	} {
		if got := validRequestID(tc.in); got != tc.want {
			t.Errorf("validRequestID(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// FuzzClientIP: any peer address and X-Forwarded-For give either an
// invalid address or one that appears, parsed, in the inputs; an untrusted
// peer's header is never believed.
func FuzzClientIP(f *testing.F) {
	for _, s := range [][2]string{
		{"10.0.0.1:80", "1.2.3.4, 10.0.0.2"},
		{"203.0.113.1:80", "1.2.3.4"},
		{"[fd00::1]:443", "2001:db8::1,fd00::5"},
		{"[::ffff:10.0.0.1]:1", "::ffff:1.2.3.4"},
		{"10.0.0.1:1", "garbage,,  ,1.1.1.1:80"},
		{"", ""},
		{"[fe80::1%eth0]:1", "fe80::2%lo"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, remote, xff string) {
		r := &http.Request{RemoteAddr: remote, Header: http.Header{}}
		if xff != "" {
			r.Header["X-Forwarded-For"] = strings.Split(xff, "\n")
		}
		got := clientIP(r, testTrusted)
		if !got.IsValid() {
			return
		}
		if got.Is4In6() {
			t.Fatalf("clientIP returned a mapped address %v", got)
		}
		peer := fuzzParsePeer(remote)
		if got == peer {
			return
		}
		if !IsTrusted(peer, testTrusted) {
			t.Fatalf("untrusted peer %q: clientIP = %v came from X-Forwarded-For", remote, got)
		}
		for _, line := range r.Header["X-Forwarded-For"] {
			for _, part := range strings.Split(line, ",") {
				if a, err := netip.ParseAddr(strings.TrimSpace(part)); err == nil && a.Unmap() == got {
					return
				}
			}
		}
		t.Fatalf("clientIP(%q, %q) = %v, which is in neither input", remote, xff, got)
	})
}

// fuzzParsePeer is an independent parse of RemoteAddr for the oracle.
func fuzzParsePeer(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	if h, _, err := net.SplitHostPort(s); err == nil {
		s = h
	}
	a, _ := netip.ParseAddr(s)
	return a.Unmap()
}
