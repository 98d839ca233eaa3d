package config

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Roles are the node roles serve understands.
var Roles = []string{"all", "server", "proxy", "edge"}

// Validate checks the whole configuration and returns every problem found,
// each with its key; nil means the configuration is usable.
func (c *Config) Validate() Problems {
	var ps Problems
	add := func(key, format string, args ...any) {
		ps = append(ps, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
	}

	if !slices.Contains(Roles, c.Node.Role) {
		add("node.role", "%q is not a role; use one of %s", c.Node.Role, strings.Join(Roles, ", "))
	}
	names := c.Modules.Names()
	for _, m := range c.Node.Modules {
		if !slices.Contains(names, m) {
			add("node.modules", "%q is not a module; known: %s", m, strings.Join(names, ", "))
		}
	}
	if strings.TrimSpace(c.Node.DataDir) == "" {
		add("node.data_dir", "must not be empty")
	}
	checkDuration(add, "node.shutdown_timeout", c.Node.ShutdownTimeout, time.Second, 10*time.Minute)

	if _, err := ParseLevel(c.Log.Level); err != nil {
		add("log.level", "%v", err)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		add("log.format", "%q is not a format; use text or json", c.Log.Format)
	}

	listeners := map[string]string{} // address -> key, to find two listeners on one port
	checkListener := func(key string, l Listener, tlsAuto bool) {
		if l.Listen == "" {
			return
		}
		host, port, err := net.SplitHostPort(l.Listen)
		if err != nil {
			add(key+".listen", "%q is not host:port: %v", l.Listen, err)
			return
		}
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			add(key+".listen", "port %q is not a number from 0 to 65535", port)
		} else if p != 0 {
			addr := net.JoinHostPort(normalHost(host), port)
			if other, dup := listeners[addr]; dup {
				add(key+".listen", "%s is also used by %s", l.Listen, other)
			}
			listeners[addr] = key + ".listen"
		}
		if (l.TLSCert == "") != (l.TLSKey == "") {
			add(key+".tls_cert", "tls_cert and tls_key must be given together")
		}
		for _, f := range []struct{ key, path string }{{key + ".tls_cert", l.TLSCert}, {key + ".tls_key", l.TLSKey}} {
			if f.path == "" {
				continue
			}
			if _, err := os.Stat(f.path); err != nil {
				add(f.key, "cannot read %s: %v", f.path, err)
			}
		}
		if l.TLSCert == "" && !tlsAuto && !l.AllowPlaintext && !IsLoopback(host) {
			add(key+".listen", "%s is reachable from other hosts but has no TLS; set tls_cert/tls_key, bind to 127.0.0.1, or set allow_plaintext: true for a closed segment", l.Listen)
		}
	}
	checkListener("admin", c.Admin.Listener, false)
	checkListener("gateway", c.Gateway.Listener, c.Gateway.TLSAuto)
	// The redirect listener is plain HTTP by design: it serves nothing.
	checkListener("gateway.redirect", Listener{Listen: c.Gateway.RedirectListen, AllowPlaintext: true}, false)

	prefixes := map[string]string{}
	for _, name := range names {
		m := c.Modules.ByName(name)
		key := "modules." + name
		if !m.Enabled {
			continue
		}
		checkListener(key, m.Listener, false)
		switch {
		case !strings.HasPrefix(m.Prefix, "/") || !strings.HasSuffix(m.Prefix, "/"):
			add(key+".prefix", "%q must start and end with /", m.Prefix)
		case strings.ContainsAny(m.Prefix, "{}*?#% "):
			add(key+".prefix", "%q must be a plain path", m.Prefix)
		default:
			if other, dup := prefixes[m.Prefix]; dup {
				add(key+".prefix", "%s is also the prefix of %s", m.Prefix, other)
			}
			prefixes[m.Prefix] = key
		}
	}

	checkSize(add, "http.max_body_bytes", c.HTTP.MaxBodyBytes, 1<<10, 1<<30)
	checkSize(add, "http.max_header_bytes", c.HTTP.MaxHeaderBytes, 1<<10, 1<<20)
	checkDuration(add, "http.read_header_timeout", c.HTTP.ReadHeaderTimeout, 100*time.Millisecond, 5*time.Minute)
	checkDuration(add, "http.idle_timeout", c.HTTP.IdleTimeout, time.Second, time.Hour)
	if _, err := ParsePrefixes(c.HTTP.TrustedProxies); err != nil {
		add("http.trusted_proxies", "%v", err)
	}

	switch c.Database.Driver {
	case "sqlite":
	case "mysql":
		if c.Database.DSN == "" {
			add("database.dsn", "is required with driver mysql, e.g. elph:secret@tcp(127.0.0.1:3306)/elph")
		}
	default:
		add("database.driver", "%q is not supported; use sqlite or mysql", c.Database.Driver)
	}
	if c.Database.MaxOpenConns < 0 || c.Database.MaxOpenConns > 1000 {
		add("database.max_open_conns", "%d is outside 0..1000 (0 picks a default)", c.Database.MaxOpenConns)
	}
	if c.Database.ConnMaxLifetime < 0 {
		add("database.conn_max_lifetime", "must not be negative")
	}

	ps = append(ps, c.Bus.validate()...)
	ps = append(ps, c.Blob.validate()...)
	checkSize(add, "chat.max_message_bytes", c.Chat.MaxMessageBytes, 256, 128<<10)
	if c.Chat.Retention != 0 {
		checkDuration(add, "chat.retention", c.Chat.Retention, 24*time.Hour, 100*365*24*time.Hour)
	}
	checkDuration(add, "chat.stream_retention", c.Chat.StreamRetention, time.Hour, 365*24*time.Hour)
	if c.Chat.StreamMaxEvents < 100 || c.Chat.StreamMaxEvents > 10_000_000 {
		add("chat.stream_max_events", "%d is outside 100..10000000", c.Chat.StreamMaxEvents)
	}
	if c.History.Retention != 0 {
		checkDuration(add, "history.retention", c.History.Retention, time.Hour, 100*365*24*time.Hour)
	}
	checkSize(add, "files.max_upload_bytes", c.Files.MaxUploadBytes, 1<<10, 64<<30)
	checkDuration(add, "files.presign_ttl", c.Files.PresignTTL, time.Second, 7*24*time.Hour)
	if c.Files.ThumbnailSize < 16 || c.Files.ThumbnailSize > 4096 {
		add("files.thumbnail_size", "%d is outside 16..4096", c.Files.ThumbnailSize)
	}
	if c.Files.MaxImagePixels < 1 || c.Files.MaxImagePixels > 500_000_000 {
		add("files.max_image_pixels", "%d is outside 1..500000000", c.Files.MaxImagePixels)
	}
	ps = append(ps, c.SSO.validate(checkListener)...)
	ps = append(ps, c.Status.validate()...)
	ps = append(ps, c.Push.validate()...)
	ps = append(ps, c.Addressbook.validate()...)
	ps = append(ps, c.Proxy.validate(c.Node.Role)...)
	return ps
}

func (b *Blob) validate() Problems {
	var ps Problems
	add := func(key, format string, args ...any) {
		ps = append(ps, Problem{Key: "blob." + key, Message: fmt.Sprintf(format, args...)})
	}
	switch b.Kind {
	case "local":
		return nil
	case "s3":
	default:
		add("kind", "%q is not supported; use local or s3", b.Kind)
		return ps
	}
	s := b.S3
	switch {
	case s.Endpoint == "":
		add("s3.endpoint", "is required with kind s3, e.g. s3.corp.example:9000")
	case strings.Contains(s.Endpoint, "://"):
		add("s3.endpoint", "%q: give host:port without a scheme (use_tls selects https)", s.Endpoint)
	case !s.UseTLS:
		if host, _, err := net.SplitHostPort(s.Endpoint); err != nil || !IsLoopback(host) {
			add("s3.use_tls", "files would cross the network in clear: set use_tls: true (or run the S3 server on loopback)")
		}
	}
	if s.Bucket == "" {
		add("s3.bucket", "is required with kind s3")
	}
	if (s.AccessKey == "") != (s.SecretKey == "") {
		add("s3.access_key", "access_key and secret_key must be given together")
	}
	if s.CAFile != "" {
		if _, err := os.Stat(s.CAFile); err != nil {
			add("s3.ca_file", "cannot read %s: %v", s.CAFile, err)
		}
	}
	return ps
}

// attrName is an LDAP attribute description (RFC 4512 keystring or OID).
var attrName = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9-]*|[0-9]+(\.[0-9]+)+)$`)

func (s *SSO) validate(checkListener func(string, Listener, bool)) Problems {
	var ps Problems
	add := func(key, format string, args ...any) {
		ps = append(ps, Problem{Key: "sso." + key, Message: fmt.Sprintf(format, args...)})
	}
	checkListener("sso.health", Listener{Listen: s.HealthListen}, false)
	if strings.TrimSpace(s.Issuer) == "" {
		add("issuer", "must not be empty")
	}
	checkDuration(add, "access_token_ttl", s.AccessTokenTTL, 30*time.Second, time.Hour)
	checkDuration(add, "refresh_token_ttl", s.RefreshTokenTTL, time.Hour, 365*24*time.Hour)
	checkDuration(add, "session_max_age", s.SessionMaxAge, time.Hour, 3*365*24*time.Hour)
	if s.SessionMaxAge < s.RefreshTokenTTL {
		add("session_max_age", "%s is shorter than refresh_token_ttl %s", s.SessionMaxAge, s.RefreshTokenTTL)
	}
	checkDuration(add, "key_rotation", s.KeyRotation, time.Hour, 90*24*time.Hour)
	if strings.TrimSpace(s.InitialAdmin) == "" {
		add("initial_admin", "must not be empty")
	}
	if n := len(s.InitialAdminPass); n > 0 && n < 12 {
		add("initial_admin_password", "must be at least 12 characters")
	}
	l := s.Lockout
	if l.AccountMaxFailures < 1 || l.AccountMaxFailures > 1000 {
		add("lockout.account_max_failures", "%d is outside 1..1000", l.AccountMaxFailures)
	}
	if l.IPMaxFailures < 1 || l.IPMaxFailures > 100000 {
		add("lockout.ip_max_failures", "%d is outside 1..100000", l.IPMaxFailures)
	}
	checkDuration(add, "lockout.account_window", l.AccountWindow, time.Minute, 24*time.Hour)
	checkDuration(add, "lockout.ip_window", l.IPWindow, time.Minute, 24*time.Hour)

	d := s.LDAP
	if !d.Enabled {
		return ps
	}
	u, err := url.Parse(d.URL)
	switch {
	case d.URL == "":
		add("ldap.url", "is required when ldap.enabled is true, e.g. ldaps://dc1.corp.example:636")
	case err != nil || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Hostname() == "":
		add("ldap.url", "%q is not an ldap:// or ldaps:// URL with a host", d.URL)
	case u.Scheme == "ldap" && !d.StartTLS && !IsLoopback(u.Hostname()):
		add("ldap.url", "passwords would cross the network in clear: use ldaps:// or start_tls: true")
	case u.Scheme == "ldaps" && d.StartTLS:
		add("ldap.start_tls", "StartTLS cannot be used on an ldaps:// connection")
	}
	if strings.TrimSpace(d.BaseDN) == "" {
		add("ldap.base_dn", "is required, e.g. DC=corp,DC=example")
	}
	if (d.BindDN == "") != (d.BindPassword == "") {
		add("ldap.bind_dn", "bind_dn and bind_password must be given together (a service account that can search)")
	}
	if d.CAFile != "" {
		if _, err := os.Stat(d.CAFile); err != nil {
			add("ldap.ca_file", "cannot read %s: %v", d.CAFile, err)
		}
	}
	for _, a := range d.LoginAttributes {
		if !attrName.MatchString(a) {
			add("ldap.login_attributes", "%q is not an attribute name", a)
		}
	}
	for key, f := range map[string]string{"ldap.user_filter": d.UserFilter, "ldap.group_filter": d.GroupFilter} {
		if f != "" && (!strings.HasPrefix(f, "(") || !strings.HasSuffix(f, ")") || strings.Count(f, "(") != strings.Count(f, ")")) {
			add(key, "%q is not a parenthesised LDAP filter", f)
		}
	}
	if d.PageSize < 1 || d.PageSize > 10000 {
		add("ldap.page_size", "%d is outside 1..10000", d.PageSize)
	}
	checkDuration(add, "ldap.timeout", d.Timeout, time.Second, 2*time.Minute)
	if d.SyncInterval != 0 {
		checkDuration(add, "ldap.sync_interval", d.SyncInterval, 5*time.Minute, 7*24*time.Hour)
	}
	return ps
}

// ParseLevel reads a log level name.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q is not a level; use debug, info, warn or error", s)
	}
	return l, nil
}

// ParsePrefixes reads CIDRs or single addresses.
func ParsePrefixes(ss []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR nor an address", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// IsLoopback reports whether a listen host only accepts local connections.
// An empty host or an unspecified address listens on every interface.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func normalHost(h string) string {
	if h == "0.0.0.0" || h == "::" {
		return ""
	}
	return h
}

func checkDuration(add func(string, string, ...any), key string, d, lo, hi time.Duration) {
	if d < lo || d > hi {
		add(key, "%s is outside %s..%s", d, lo, hi)
	}
}

func checkSize(add func(string, string, ...any), key string, b, lo, hi ByteSize) {
	if b < lo || b > hi {
		add(key, "%s is outside %s..%s", b, lo, hi)
	}
}
