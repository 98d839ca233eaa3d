package proxy

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/elph-server/elph/platform/httpx"
)

// FuzzMatch checks the route table against a brute-force longest match.
func FuzzMatch(f *testing.F) {
	prefixes := []string{"/", "/chat/", "/chat/admin/", "/files/", "/f/", "/sso/"}
	h := http.NotFoundHandler()
	var routes []Route
	for _, p := range prefixes {
		routes = append(routes, Route{Prefix: p, Handler: h})
	}
	p, err := New(Options{Routes: routes})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"/", "/chat", "/chat/", "/chat/admin", "/chatx", "/files/a/b", "/f", "//chat/", "", "/sso/../chat/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		want := ""
		for _, pre := range prefixes {
			if (strings.HasPrefix(path, pre) || path+"/" == pre && pre != "/") && len(pre) > len(want) {
				want = pre
			}
		}
		got := ""
		if rt := p.match(path); rt != nil {
			got = rt.prefix
		}
		if got != want {
			t.Fatalf("match(%q) = %q, want %q", path, got, want)
		}
		if hasDotSegment(path) != containsDotSegment(path) {
			t.Fatalf("hasDotSegment(%q) wrong", path)
		}
	})
}

func containsDotSegment(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// FuzzClientIP: an untrusted peer is always its own client IP; behind a
// trusted peer the answer is the peer or an address from the header, never
// a trusted one unless every hop is trusted.
func FuzzClientIP(f *testing.F) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	f.Add("10.0.0.1", "203.0.113.5, 10.0.0.2")
	f.Add("192.0.2.1", "203.0.113.5")
	f.Add("10.0.0.1", "garbage, 198.51.100.1")
	f.Add("fd00::1", "2001:db8::1,fd00::2")
	f.Add("10.0.0.1", "::ffff:198.51.100.1")
	f.Fuzz(func(t *testing.T, peerS, xff string) {
		peer, err := netip.ParseAddr(peerS)
		if err != nil {
			return
		}
		peer = peer.Unmap()
		pt := httpx.IsTrusted(peer, trusted)
		got := httpx.ClientAddr(peer, pt, []string{xff}, trusted)
		if !pt {
			if got != peer {
				t.Fatalf("untrusted peer %v: client %v", peer, got)
			}
			return
		}
		if got == peer {
			return
		}
		found := false
		for _, part := range strings.Split(xff, ",") {
			if a, err := netip.ParseAddr(strings.TrimSpace(part)); err == nil && a.Unmap() == got {
				found = true
			}
		}
		if !found {
			t.Fatalf("client %v is neither the peer nor in %q", got, xff)
		}
	})
}
