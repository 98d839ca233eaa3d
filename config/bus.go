package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Bus configures the event bus: in memory on one node, NATS when several
// server nodes share events.
type Bus struct {
	// Kind is memory (one node) or nats (several nodes, through a NATS
	// server or cluster).
	Kind string `koanf:"kind"`
	// QueueSize, Workers and PublishTimeout shape each consumer's queue on
	// this node: a full queue makes the event wait up to publish_timeout
	// (durable events are never dropped silently).
	QueueSize      int           `koanf:"queue_size"`
	Workers        int           `koanf:"workers"`
	PublishTimeout time.Duration `koanf:"publish_timeout"`
	NATS           BusNATS       `koanf:"nats"`
}

// BusNATS is the NATS connection of kind nats.
type BusNATS struct {
	// URL lists the NATS servers, comma-separated:
	// nats://10.0.0.7:4222,nats://10.0.0.8:4222 (tls:// for TLS).
	URL string `koanf:"url"`
	// Prefix starts every subject, so several installations (or a test
	// and production) can share one NATS cluster; all nodes of one
	// installation use the same.
	Prefix string `koanf:"prefix"`
	// CAFile verifies the servers' certificates (tls:// URLs); CertFile
	// and KeyFile are this node's client certificate when the servers ask
	// for one.
	CAFile   string `koanf:"ca_file"`
	CertFile string `koanf:"cert_file"`
	KeyFile  string `koanf:"key_file"`
	// User and Password, or Token, when the servers require them.
	User     string `koanf:"user"`
	Password string `koanf:"password" secret:"true"`
	Token    string `koanf:"token" secret:"true"`
}

func defaultBus() Bus {
	return Bus{Kind: "memory", QueueSize: 1024, Workers: 1, PublishTimeout: 5 * time.Second,
		NATS: BusNATS{URL: "nats://127.0.0.1:4222", Prefix: "elph"}}
}

func (b *Bus) validate() Problems {
	var ps Problems
	add := func(key, format string, args ...any) {
		ps = append(ps, Problem{Key: "bus." + key, Message: fmt.Sprintf(format, args...)})
	}
	switch b.Kind {
	case "memory":
	case "nats":
		ps = append(ps, b.NATS.validate()...)
	default:
		add("kind", "%q is not a bus; use memory (one node) or nats (several nodes)", b.Kind)
	}
	if b.QueueSize < 1 || b.QueueSize > 1_000_000 {
		add("queue_size", "%d is outside 1..1000000", b.QueueSize)
	}
	if b.Workers < 1 || b.Workers > 256 {
		add("workers", "%d is outside 1..256", b.Workers)
	}
	checkDuration(add, "publish_timeout", b.PublishTimeout, time.Millisecond, time.Minute)
	return ps
}

func (n *BusNATS) validate() Problems {
	var ps Problems
	add := func(key, format string, args ...any) {
		ps = append(ps, Problem{Key: "bus.nats." + key, Message: fmt.Sprintf(format, args...)})
	}
	if strings.TrimSpace(n.URL) == "" {
		add("url", "is required with bus.kind nats, e.g. nats://10.0.0.7:4222")
	}
	anyTLS := false
	for _, s := range strings.Split(n.URL, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		u, err := url.Parse(s)
		switch {
		case err != nil || u.Host == "":
			add("url", "%q is not a server address such as nats://10.0.0.7:4222", s)
		case u.User != nil:
			add("url", "%q must not hold credentials; use bus.nats.user/password or token", u.Redacted())
		case u.Scheme != "nats" && u.Scheme != "tls":
			add("url", "%q: scheme must be nats or tls", s)
		case u.Scheme == "tls":
			anyTLS = true
		case !IsLoopback(u.Hostname()):
			add("url", "%q is plaintext to another host; use tls:// (events carry chat messages)", s)
		}
	}
	if !validSubjectPrefix(n.Prefix) {
		add("prefix", "%q must be lower-case tokens of a-z, 0-9, _ or - separated by dots, e.g. elph", n.Prefix)
	}
	if (n.CertFile == "") != (n.KeyFile == "") {
		add("cert_file", "cert_file and key_file must be given together")
	}
	if (n.CAFile != "" || n.CertFile != "") && !anyTLS {
		add("url", "TLS files are set but no server URL uses tls://")
	}
	if n.Token != "" && (n.User != "" || n.Password != "") {
		add("token", "use either token or user and password, not both")
	}
	if (n.User == "") != (n.Password == "") {
		add("user", "user and password must be given together")
	}
	return ps
}

// validSubjectPrefix: tokens of [a-z0-9_-] separated by single dots, at
// most 64 bytes.
func validSubjectPrefix(p string) bool {
	if p == "" || len(p) > 64 {
		return false
	}
	for _, tok := range strings.Split(p, ".") {
		if tok == "" {
			return false
		}
		for _, c := range tok {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				return false
			}
		}
	}
	return true
}
