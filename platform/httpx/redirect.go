package httpx

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// RedirectHandler is the whole of a plain-HTTP listener (port 80 beside
// the gateway's 443): every request, whatever its method or path, is
// answered with 308 Permanent Redirect to the same host, path and query
// over https on httpsPort. 308 keeps the method and body, so a POST stays
// a POST. httpsPort "" or "443" leaves the port out of the URL.
//
// Nothing is served in plaintext, not even /livez: health checks belong
// on the admin listener, which has /livez and /readyz. Browsers cache a
// 308, so changing the HTTPS port later means clients keep going to the
// old one until their cache expires; keep the public port stable.
//
// The host comes from the request's Host header with any port replaced.
// A missing Host or one that is not a host name, an IPv4 address or a
// bracketed IPv6 address without zone is answered 400 in the JSON error
// shape rather than echoed into a Location header.
//
// An invalid httpsPort is a programming error (the configuration was
// validated earlier) and panics, as regexp.MustCompile does.
func RedirectHandler(httpsPort string) http.Handler {
	suffix := ""
	if httpsPort != "" && httpsPort != "443" {
		p, err := strconv.ParseUint(httpsPort, 10, 16)
		if err != nil || p == 0 || strconv.FormatUint(p, 10) != httpsPort {
			panic(fmt.Sprintf("httpx.RedirectHandler: HTTPS port %q is not a number from 1 to 65535", httpsPort))
		}
		suffix = ":" + httpsPort
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, ok := redirectHost(r.Host)
		if !ok {
			w.Header().Set("Connection", "close")
			WriteError(w, r, Errorf(http.StatusBadRequest, CodeBadRequest, "missing or invalid Host header"))
			return
		}
		u := url.URL{Scheme: "https", Host: host + suffix, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
		// "OPTIONS *" and CONNECT targets have no path: send them to the root.
		if !strings.HasPrefix(u.Path, "/") {
			u.Path, u.RawPath = "/", ""
		}
		http.Redirect(w, r, u.String(), http.StatusPermanentRedirect)
	})
}

// HTTPSPort is the port of a listen address (":8443" → "8443"), for
// RedirectHandler; "" when there is none.
func HTTPSPort(listen string) string {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return ""
	}
	return port
}

// redirectHost returns the host part of a Host header, lower-cased, with
// brackets kept around IPv6, or false when it is missing or not a host.
func redirectHost(hostport string) (string, bool) {
	if hostport == "" || len(hostport) > 260 {
		return "", false
	}
	host := hostport
	if strings.HasPrefix(hostport, "[") {
		end := strings.IndexByte(hostport, ']')
		if end < 0 {
			return "", false
		}
		rest := hostport[end+1:]
		if rest != "" && (rest[0] != ':' || !validPort(rest[1:])) {
			return "", false
		}
		addr, err := netip.ParseAddr(hostport[1:end])
		if err != nil || !addr.Is6() || addr.Zone() != "" {
			return "", false
		}
		return "[" + addr.String() + "]", true
	}
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 {
		if !validPort(hostport[i+1:]) {
			return "", false // also a bare IPv6 address without brackets
		}
		host = hostport[:i]
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		if !addr.Is4() {
			return "", false
		}
		return addr.String(), true
	}
	name, err := checkDNSName(host, false)
	if err != nil {
		return "", false
	}
	return name, true
}

// validPort accepts what may follow the colon of a Host header: digits,
// possibly none ("example.org:" is allowed by RFC 3986).
func validPort(p string) bool {
	if len(p) > 5 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}
