package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Proxy configures routing to upstream server nodes: what a node of role
// proxy (the DMZ node) forwards each prefix to.
type Proxy struct {
	// Upstreams are the server nodes' gateways (https://10.0.0.5:8443)
	// that every module prefix goes to.
	Upstreams []string `koanf:"upstreams"`
	// Routes send some prefixes elsewhere: "PREFIX=URL[,URL…]", e.g.
	// "/push/=https://10.0.0.9:8443".
	Routes []string `koanf:"routes"`
	// CAFile verifies the upstreams' certificates; empty means the system
	// roots.
	CAFile string `koanf:"ca_file"`
	// HealthInterval between checks of each upstream's /livez.
	HealthInterval time.Duration `koanf:"health_interval"`
	// BodyReadTimeout bounds reading one request's body (slow uploads).
	BodyReadTimeout time.Duration `koanf:"body_read_timeout"`
	// PerIPConnections bounds the open connections of one client address;
	// 0 is unlimited.
	PerIPConnections int `koanf:"per_ip_connections"`
	// PerIPRate bounds the requests per second of one client address,
	// with bursts of PerIPBurst; 0 is unlimited.
	PerIPRate  int `koanf:"per_ip_rate"`
	PerIPBurst int `koanf:"per_ip_burst"`
}

func defaultProxy() Proxy {
	return Proxy{
		HealthInterval: 5 * time.Second, BodyReadTimeout: 5 * time.Minute,
		PerIPConnections: 512, PerIPRate: 200, PerIPBurst: 400,
	}
}

// ParseRoute splits a proxy route "PREFIX=URL[,URL…]".
func ParseRoute(s string) (prefix string, upstreams []*url.URL, err error) {
	prefix, list, ok := strings.Cut(s, "=")
	prefix = strings.TrimSpace(prefix)
	if !ok || !strings.HasPrefix(prefix, "/") || !strings.HasSuffix(prefix, "/") {
		return "", nil, fmt.Errorf("%q is not PREFIX=URL[,URL…] with a prefix like /push/", s)
	}
	for _, raw := range strings.Split(list, ",") {
		u, err := ParseUpstream(strings.TrimSpace(raw))
		if err != nil {
			return "", nil, err
		}
		upstreams = append(upstreams, u)
	}
	return prefix, upstreams, nil
}

// ParseUpstream checks an upstream base URL: http or https, a host, no
// path beyond "/", no query.
func ParseUpstream(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return nil, fmt.Errorf("upstream %q: %v", s, err)
	case u.Scheme != "https" && u.Scheme != "http", u.Host == "":
		return nil, fmt.Errorf("upstream %q is not an http(s)://host[:port] address", s)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.User != nil:
		return nil, fmt.Errorf("upstream %q: give only scheme, host and port", s)
	}
	u.Path = ""
	return u, nil
}

func (p *Proxy) validate(role string) Problems {
	var ps Problems
	add := func(key, format string, args ...any) {
		ps = append(ps, Problem{Key: "proxy." + key, Message: fmt.Sprintf(format, args...)})
	}
	for _, s := range p.Upstreams {
		if _, err := ParseUpstream(s); err != nil {
			add("upstreams", "%v", err)
		}
	}
	seen := map[string]bool{}
	for _, s := range p.Routes {
		prefix, _, err := ParseRoute(s)
		if err != nil {
			add("routes", "%v", err)
			continue
		}
		if seen[prefix] {
			add("routes", "prefix %s appears twice", prefix)
		}
		seen[prefix] = true
	}
	if role == "proxy" && len(p.Upstreams) == 0 && len(p.Routes) == 0 {
		add("upstreams", "a proxy node needs the server nodes' gateways, e.g. [https://10.0.0.5:8443]")
	}
	checkDuration(add, "health_interval", p.HealthInterval, time.Second, 10*time.Minute)
	checkDuration(add, "body_read_timeout", p.BodyReadTimeout, time.Second, 24*time.Hour)
	for _, n := range []struct {
		key string
		v   int
	}{{"per_ip_connections", p.PerIPConnections}, {"per_ip_rate", p.PerIPRate}, {"per_ip_burst", p.PerIPBurst}} {
		if n.v < 0 || n.v > 1_000_000 {
			add(n.key, "%d is outside 0..1000000", n.v)
		}
	}
	if p.PerIPRate > 0 && p.PerIPBurst < 1 {
		add("per_ip_burst", "must be at least 1 when per_ip_rate is set")
	}
	return ps
}
