package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "elph.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func problemsOf(t *testing.T, err error) Problems {
	t.Helper()
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v is not Problems", err)
	}
	return ps
}

func hasProblem(ps Problems, key, fragment string) bool {
	for _, p := range ps {
		if p.Key == key && strings.Contains(p.Message, fragment) {
			return true
		}
	}
	return false
}

func TestDefaultsAreValid(t *testing.T) {
	l, err := Load(Source{})
	if err != nil {
		t.Fatalf("defaults do not load: %v", err)
	}
	c := l.Config
	if c.Node.Role != "all" || c.Node.DataDir != "./data" || c.Database.Driver != "sqlite" {
		t.Errorf("unexpected defaults: %+v", c.Node)
	}
	if c.Modules.Chat.Listen != "127.0.0.1:3011" || c.Modules.SSO.Prefix != "/sso/" {
		t.Errorf("seed ports not defaulted: %+v", c.Modules.Chat)
	}
	if c.HTTP.MaxBodyBytes != 1<<20 || c.Node.ShutdownTimeout != 15*time.Second {
		t.Errorf("limits not defaulted: %+v", c.HTTP)
	}
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, `
log:
  level: warn
  format: json
database:
  max_open_conns: 5
bus:
  queue_size: 10
http:
  max_body_bytes: 2MiB
  idle_timeout: 30s
`)
	l, err := Load(Source{
		File:    file,
		Environ: []string{"ELPH_LOG_LEVEL=error", "ELPH_DATABASE_MAX_OPEN_CONNS=7", "PATH=/bin", "ELPH_HTTP_TRUSTED_PROXIES=10.0.0.0/8,192.168.1.1"},
		Flags:   map[string]string{"log.level": "debug"},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := l.Config
	tests := []struct {
		name      string
		got, want any
	}{
		{"flag beats env and file", c.Log.Level, "debug"},
		{"env beats file", c.Database.MaxOpenConns, 7},
		{"file beats default", c.Log.Format, "json"},
		{"file only", c.Bus.QueueSize, 10},
		{"default only", c.Bus.Workers, 1},
		{"byte size unit", c.HTTP.MaxBodyBytes, ByteSize(2 << 20)},
		{"duration", c.HTTP.IdleTimeout, 30 * time.Second},
		{"list from env", strings.Join(c.HTTP.TrustedProxies, "|"), "10.0.0.0/8|192.168.1.1"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestEveryProblemIsReported(t *testing.T) {
	file := writeFile(t, `
node:
  role: router
  modules: [chat, telepathy]
  shutdown_timeout: 0s
log:
  levle: debug
  format: xml
gateway:
  listen: "nonsense"
admin:
  listen: "0.0.0.0:9090"
database:
  driver: mysql
bus:
  queue_size: -1
  publish_timeout: soon
modules:
  chat:
    prefix: chat
  files:
    listen: 127.0.0.1:3011
`)
	_, err := Load(Source{File: file, Environ: []string{"ELPH_NO_SUCH_KEY=1"}})
	ps := problemsOf(t, err)
	want := []struct{ key, fragment string }{
		{"node.role", "not a role"},
		{"node.modules", "telepathy"},
		{"node.shutdown_timeout", "outside"},
		{"log.levle", "did you mean log.level"},
		{"log.format", "text or json"},
		{"gateway.listen", "not host:port"},
		{"admin.listen", "no TLS"},
		{"database.dsn", "required"},
		{"bus.queue_size", "outside"},
		{"bus.publish_timeout", "invalid duration"},
		{"modules.chat.prefix", "start and end with /"},
		{"modules.files.listen", "also used by modules.chat.listen"},
	}
	for _, w := range want {
		if !hasProblem(ps, w.key, w.fragment) {
			t.Errorf("missing problem %s: ...%s...; got:\n%v", w.key, w.fragment, ps)
		}
	}
}

func TestUnknownEnvIsAWarning(t *testing.T) {
	l, err := Load(Source{Environ: []string{"ELPH_LOGLEVEL=debug", "ELPH_REQUIRE_SERVICES=1"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], "ELPH_LOGLEVEL") {
		t.Errorf("warnings = %v, want one about ELPH_LOGLEVEL", l.Warnings)
	}
}

func TestMissingAndOversizedFile(t *testing.T) {
	_, err := Load(Source{File: filepath.Join(t.TempDir(), "absent.yaml")})
	if ps := problemsOf(t, err); !strings.Contains(ps[0].Message, "does not exist") {
		t.Errorf("got %v", ps)
	}
	big := writeFile(t, "# "+strings.Repeat("x", MaxFileBytes)+"\n")
	_, err = Load(Source{File: big})
	if ps := problemsOf(t, err); !strings.Contains(ps[0].Message, "more than") {
		t.Errorf("got %v", ps)
	}
	bad := writeFile(t, "log: [unclosed\n")
	if _, err := Load(Source{File: bad}); err == nil {
		t.Error("broken YAML loaded without error")
	}
}

func TestUnknownFlagKey(t *testing.T) {
	_, err := Load(Source{Flags: map[string]string{"database.dns": "x"}})
	if ps := problemsOf(t, err); !hasProblem(ps, "database.dns", "did you mean database.dsn") {
		t.Errorf("got %v", ps)
	}
}

func TestEnvNamesAreUnique(t *testing.T) {
	seen := map[string]string{}
	for _, k := range Keys() {
		n := EnvName(k)
		if other, dup := seen[n]; dup {
			t.Errorf("%s and %s share %s", k, other, n)
		}
		seen[n] = k
	}
	if len(seen) < 40 {
		t.Errorf("only %d keys found; the walker is missing sections", len(seen))
	}
}

func TestListenerRules(t *testing.T) {
	tests := []struct {
		name  string
		flags map[string]string
		key   string // "" = valid
	}{
		{"loopback plaintext ok", map[string]string{"modules.chat.listen": "127.0.0.1:3011"}, ""},
		{"all interfaces plaintext refused", map[string]string{"modules.chat.listen": ":3011"}, "modules.chat.listen"},
		{"explicit plaintext allowed", map[string]string{"modules.chat.listen": ":3011", "modules.chat.allow_plaintext": "true"}, ""},
		{"disabled module skipped", map[string]string{"modules.chat.listen": ":3011", "modules.chat.enabled": "false"}, ""},
		{"cert without key", map[string]string{"modules.chat.tls_cert": "/etc/hosts"}, "modules.chat.tls_cert"},
		{"missing cert file", map[string]string{"gateway.tls_cert": "/nonexistent.crt", "gateway.tls_key": "/nonexistent.key"}, "gateway.tls_cert"},
		{"listener disabled", map[string]string{"admin.listen": ""}, ""},
		{"gateway without auto TLS on all interfaces", map[string]string{"gateway.tls_auto": "false"}, "gateway.listen"},
		{"bad port", map[string]string{"admin.listen": "127.0.0.1:70000"}, "admin.listen"},
		{"duplicate prefix", map[string]string{"modules.files.prefix": "/chat/"}, "modules.files.prefix"},
		{"bad trusted proxy", map[string]string{"http.trusted_proxies": "10.0.0.0/8,example"}, "http.trusted_proxies"},
		{"body limit too big", map[string]string{"http.max_body_bytes": "2GiB"}, "http.max_body_bytes"},
		{"bad size", map[string]string{"http.max_body_bytes": "lots"}, "http.max_body_bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(Source{Flags: tt.flags})
			if tt.key == "" {
				if err != nil {
					t.Fatalf("unexpected problems: %v", err)
				}
				return
			}
			if ps := problemsOf(t, err); !hasProblem(ps, tt.key, "") {
				t.Errorf("want a problem at %s, got %v", tt.key, ps)
			}
		})
	}
}

func TestSSORules(t *testing.T) {
	ldap := func(kv ...string) map[string]string {
		m := map[string]string{"sso.ldap.enabled": "true", "sso.ldap.url": "ldaps://dc1.corp.example:636", "sso.ldap.base_dn": "DC=corp,DC=example"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name  string
		flags map[string]string
		key   string
	}{
		{"ldaps ok", ldap(), ""},
		{"ldap disabled needs nothing", map[string]string{"sso.ldap.url": "nonsense"}, ""},
		{"plain ldap to another host refused", ldap("sso.ldap.url", "ldap://dc1:389"), "sso.ldap.url"},
		{"plain ldap with start_tls ok", ldap("sso.ldap.url", "ldap://dc1:389", "sso.ldap.start_tls", "true"), ""},
		{"plain ldap on loopback ok", ldap("sso.ldap.url", "ldap://127.0.0.1:3890"), ""},
		{"starttls on ldaps refused", ldap("sso.ldap.start_tls", "true"), "sso.ldap.start_tls"},
		{"not an ldap url", ldap("sso.ldap.url", "http://dc1"), "sso.ldap.url"},
		{"base dn required", ldap("sso.ldap.base_dn", ""), "sso.ldap.base_dn"},
		{"bind dn without password", ldap("sso.ldap.bind_dn", "CN=svc"), "sso.ldap.bind_dn"},
		{"bad filter", ldap("sso.ldap.user_filter", "objectClass=user"), "sso.ldap.user_filter"},
		{"bad attribute", ldap("sso.ldap.login_attributes", "sAMAccountName,bad attr"), "sso.ldap.login_attributes"},
		{"short admin password", map[string]string{"sso.initial_admin_password": "short"}, "sso.initial_admin_password"},
		{"session shorter than refresh", map[string]string{"sso.session_max_age": "2h"}, "sso.session_max_age"},
		{"access ttl too long", map[string]string{"sso.access_token_ttl": "2h"}, "sso.access_token_ttl"},
		{"health port clash", map[string]string{"sso.health_listen": "127.0.0.1:8282"}, "sso.health.listen"},
		{"s3 ok", map[string]string{"blob.kind": "s3", "blob.s3.endpoint": "s3.corp:9000", "blob.s3.bucket": "elph"}, ""},
		{"s3 without bucket", map[string]string{"blob.kind": "s3", "blob.s3.endpoint": "s3.corp:9000"}, "blob.s3.bucket"},
		{"s3 plaintext to another host", map[string]string{"blob.kind": "s3", "blob.s3.endpoint": "s3.corp:9000", "blob.s3.bucket": "b", "blob.s3.use_tls": "false"}, "blob.s3.use_tls"},
		{"s3 plaintext on loopback", map[string]string{"blob.kind": "s3", "blob.s3.endpoint": "127.0.0.1:9000", "blob.s3.bucket": "b", "blob.s3.use_tls": "false"}, ""},
		{"s3 scheme in endpoint", map[string]string{"blob.kind": "s3", "blob.s3.endpoint": "https://s3", "blob.s3.bucket": "b"}, "blob.s3.endpoint"},
		{"unknown blob kind", map[string]string{"blob.kind": "nfs"}, "blob.kind"},
		{"nats on loopback", map[string]string{"bus.kind": "nats"}, ""},
		{"nats over tls", map[string]string{"bus.kind": "nats", "bus.nats.url": "tls://10.0.0.7:4222, tls://10.0.0.8:4222", "bus.nats.ca_file": "/etc/elph/nats-ca.crt"}, ""},
		{"nats plaintext to another host", map[string]string{"bus.kind": "nats", "bus.nats.url": "nats://10.0.0.7:4222"}, "bus.nats.url"},
		{"nats credentials in the url", map[string]string{"bus.kind": "nats", "bus.nats.url": "tls://u:p@10.0.0.7:4222"}, "bus.nats.url"},
		{"nats without url", map[string]string{"bus.kind": "nats", "bus.nats.url": " "}, "bus.nats.url"},
		{"nats bad prefix", map[string]string{"bus.kind": "nats", "bus.nats.prefix": "Elph.*"}, "bus.nats.prefix"},
		{"nats token and password", map[string]string{"bus.kind": "nats", "bus.nats.token": "t", "bus.nats.user": "u", "bus.nats.password": "p"}, "bus.nats.token"},
		{"nats user without password", map[string]string{"bus.kind": "nats", "bus.nats.user": "u"}, "bus.nats.user"},
		{"nats certificate without key", map[string]string{"bus.kind": "nats", "bus.nats.url": "tls://10.0.0.7:4222", "bus.nats.cert_file": "/c"}, "bus.nats.cert_file"},
		{"nats tls files without tls", map[string]string{"bus.kind": "nats", "bus.nats.ca_file": "/ca"}, "bus.nats.url"},
		{"unknown bus", map[string]string{"bus.kind": "kafka"}, "bus.kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(Source{Flags: tt.flags})
			if tt.key == "" {
				if err != nil {
					t.Fatalf("unexpected problems: %v", err)
				}
				return
			}
			if ps := problemsOf(t, err); !hasProblem(ps, tt.key, "") {
				t.Errorf("want a problem at %s, got %v", tt.key, ps)
			}
		})
	}
}

func TestYAMLMasksSecrets(t *testing.T) {
	l, err := Load(Source{Flags: map[string]string{"database.driver": "mysql", "database.dsn": "elph:hunter2@tcp(db:3306)/elph", "sso.ldap.bind_password": "ldap-s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := l.Config.YAML(func(driver, dsn string) string { return "masked:" + driver })
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	if strings.Contains(s, "hunter2") || strings.Contains(s, "ldap-s3cret") {
		t.Fatalf("secret printed:\n%s", s)
	}
	for _, want := range []string{"dsn: masked:mysql", "shutdown_timeout: 15s", "max_body_bytes: 1MiB", "listen: 127.0.0.1:3011"} {
		if !strings.Contains(s, want) {
			t.Errorf("printed config lacks %q:\n%s", want, s)
		}
	}
	// What is printed loads back to the same configuration.
	back, err := Load(Source{File: writeFile(t, strings.NewReplacer("masked:mysql", "elph:hunter2@tcp(db:3306)/elph", Masked, "ldap-s3cret").Replace(s))})
	if err != nil {
		t.Fatalf("printed config does not load: %v", err)
	}
	if !reflect.DeepEqual(back.Config, l.Config) {
		t.Errorf("round trip changed the configuration:\n%+v\n%+v", back.Config, l.Config)
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		err  bool
	}{
		{"1024", 1024, false}, {"1KiB", 1024, false}, {"1 MiB", 1 << 20, false}, {"64k", 64 << 10, false},
		{"1MB", 1_000_000, false}, {"2GiB", 2 << 30, false}, {"", 0, true}, {"-1", 0, true},
		{"1TiB", 0, true}, {"99999999999GiB", 0, true},
	}
	for _, tt := range tests {
		var b ByteSize
		err := b.UnmarshalText([]byte(tt.in))
		if (err != nil) != tt.err || (!tt.err && b != tt.want) {
			t.Errorf("%q: got %d, %v; want %d, err=%v", tt.in, b, err, tt.want, tt.err)
		}
	}
}
