package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/httpx"
)

// natsConnectTimeout bounds the wait for NATS when a node starts.
const natsConnectTimeout = 20 * time.Second

// openBus builds the event bus the configuration asks for. A proxy node
// runs no module, so it never connects to NATS (which need not be
// reachable from the DMZ).
func openBus(ctx context.Context, cfg *config.Config, reg prometheus.Registerer, log *slog.Logger) (bus.Bus, error) {
	c := cfg.Bus
	if c.Kind == "memory" || cfg.Node.Role == "proxy" {
		if c.Kind != "memory" {
			log.Info("the proxy role keeps its event bus in memory: it runs no module", "bus.kind", c.Kind)
		}
		return bus.NewMemory(bus.MemoryOptions{
			Logger: log, Registerer: reg,
			QueueSize: c.QueueSize, Workers: c.Workers, PublishTimeout: c.PublishTimeout,
		})
	}
	tlsCfg, err := natsTLS(c.NATS)
	if err != nil {
		return nil, err
	}
	// The NATS server lists connections by name: which host this is.
	name := "elph-" + cfg.Node.Role
	if host, err := os.Hostname(); err == nil {
		name += "@" + host
	}
	// NewNATS waits for a first connection as long as ctx lets it: a node
	// that cannot reach NATS stops with the reason (systemd starts it
	// again) rather than hanging or running cut off from the others.
	ctx, cancel := context.WithTimeout(ctx, natsConnectTimeout)
	defer cancel()
	return bus.NewNATS(ctx, bus.NATSOptions{
		URL: c.NATS.URL, TLS: tlsCfg, Prefix: c.NATS.Prefix, Name: name,
		User: c.NATS.User, Password: c.NATS.Password, Token: c.NATS.Token,
		Logger: log, Registerer: reg,
		QueueSize: c.QueueSize, Workers: c.Workers, PublishTimeout: c.PublishTimeout,
	})
}

// natsTLS is the TLS of tls:// NATS servers: the configured CA (else the
// system roots) and this node's certificate when one is given.
func natsTLS(n config.BusNATS) (*tls.Config, error) {
	if !strings.Contains(n.URL, "tls://") {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if n.CAFile != "" {
		pool, err := httpx.LoadCertPool(n.CAFile)
		if err != nil {
			return nil, fmt.Errorf("bus.nats.ca_file: %w", err)
		}
		cfg.RootCAs = pool
	}
	if n.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(n.CertFile, n.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("bus.nats.cert_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
