package main

import (
	"context"
	"log/slog"
	"testing"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/bus/natstest"
)

func TestOpenBus(t *testing.T) {
	nats := natstest.Start(t)
	cases := []struct {
		name     string
		role     string
		kind     string
		url      string
		wantNATS bool
	}{
		{"memory", "all", "memory", "", false},
		{"nats on a server node", "server", "nats", nats.URL, true},
		// Nothing listens there: a proxy node must not even try.
		{"nats on a proxy node stays in memory", "proxy", "nats", "nats://127.0.0.1:1", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Node.Role, cfg.Bus.Kind = tc.role, tc.kind
			cfg.Bus.NATS.URL, cfg.Bus.NATS.Prefix = tc.url, natstest.Prefix()
			b, err := openBus(context.Background(), &cfg, nil, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatalf("openBus: %v", err)
			}
			defer b.Close(context.Background())
			if _, isNATS := b.(*bus.NATS); isNATS != tc.wantNATS {
				t.Fatalf("got %T, want NATS %v", b, tc.wantNATS)
			}
			if err := b.Ping(context.Background()); err != nil {
				t.Fatalf("Ping: %v", err)
			}
		})
	}
}

func TestNATSTLSFiles(t *testing.T) {
	if cfg, err := natsTLS(config.BusNATS{URL: "nats://127.0.0.1:4222"}); err != nil || cfg != nil {
		t.Fatalf("plaintext URL: %v, %v; want no TLS", cfg, err)
	}
	if _, err := natsTLS(config.BusNATS{URL: "tls://10.0.0.7:4222", CAFile: "/nonexistent/ca.crt"}); err == nil {
		t.Fatal("a missing CA file was accepted")
	}
	cfg, err := natsTLS(config.BusNATS{URL: "tls://10.0.0.7:4222"})
	if err != nil || cfg == nil || cfg.RootCAs != nil || cfg.MinVersion == 0 {
		t.Fatalf("tls without files: %+v, %v; want TLS on the system roots", cfg, err)
	}
}
