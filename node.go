package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/migrations"
	"github.com/elph-server/elph/modules/push"
	"github.com/elph-server/elph/platform/blob"
	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/httpx"
	"github.com/elph-server/elph/platform/module"
	"github.com/elph-server/elph/platform/obs"
	"github.com/elph-server/elph/platform/proxy"
	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/systemd"
)

// node is one running Elph process: the platform services, the modules its
// role selected and the listeners that serve them.
type node struct {
	cfg      config.Config
	src      config.Source
	out      io.Writer
	log      *slog.Logger
	level    *slog.LevelVar
	reg      *prometheus.Registry
	health   *obs.Health
	notifier *systemd.Notifier
	db       *store.DB
	bus      bus.Bus
	blob     blob.Store
	group    *module.Group
	admin    *httpx.Server   // stopped last, so /readyz reports the drain
	servers  []*httpx.Server // gateway and module listeners
	certs    []*httpx.Certificate
	proxy    *proxy.Proxy // the gateway's routing (in-process or to upstreams)
	// relay is the push module without storage on a proxy node with
	// push.relay.accept_token: internal nodes push through the DMZ.
	relay   module.Module
	openURL string
}

// newNode provisions everything the configuration asks for, without
// starting anything yet. On error whatever was opened is closed again.
func newNode(ctx context.Context, loaded *config.Loaded, src config.Source, out io.Writer) (n *node, err error) {
	cfg := loaded.Config
	level := new(slog.LevelVar)
	lv, _ := config.ParseLevel(cfg.Log.Level) // validated by Load
	level.Set(lv)
	log := obs.NewLogger(out, cfg.Log.Format, level)
	// Libraries that log through the standard logger end up structured too.
	slog.SetDefault(log)
	for _, w := range loaded.Warnings {
		log.Warn(w)
	}

	n = &node{
		cfg: cfg, src: src, out: out, log: log, level: level,
		reg:      obs.NewRegistry(version, commit),
		health:   obs.NewHealth(),
		notifier: systemd.FromEnv(os.Getenv),
	}
	// n itself is nil by the time a failure returns; close through a copy.
	opened := n
	defer func() {
		if err != nil {
			opened.closeStorage()
		}
	}()

	selected, err := module.Select(newWiring(&cfg, out).specs(), cfg.Node.Role, cfg.Node.Modules, disabled(&cfg))
	if err != nil {
		return nil, err
	}
	names := make([]string, len(selected))
	for i, s := range selected {
		names[i] = s.Name
	}
	log.Info("starting elph", "version", version, "commit", commit, "role", cfg.Node.Role, "modules", strings.Join(names, ","))
	if len(selected) == 0 && cfg.Node.Role != "proxy" {
		log.Warn("no module of this role is built into this binary yet; only the admin listener runs", "role", cfg.Node.Role)
	}

	b, err := openBus(ctx, &cfg, n.reg, log.With("component", "bus"))
	if err != nil {
		return nil, fmt.Errorf("event bus: %w", err)
	}
	n.bus = b
	n.health.AddCheck("bus", b.Ping)

	// A DMZ proxy keeps no state: storage is opened only for modules.
	if len(selected) > 0 {
		if err := n.openStore(ctx); err != nil {
			return nil, err
		}
		if n.blob, err = openBlob(ctx, &cfg, log); err != nil {
			return nil, err
		}
		n.health.AddCheck("blob", n.blob.Ping)
	}

	deps := module.Deps{Logger: log, DB: n.db, Bus: n.bus, Blob: n.blob, Metrics: n.reg, DataDir: cfg.Node.DataDir}
	mods := make([]module.Module, 0, len(selected))
	for _, s := range selected {
		d := deps
		d.Logger = log.With("module", s.Name)
		m, err := s.New(d)
		if err != nil {
			return nil, fmt.Errorf("module %s: %w", s.Name, err)
		}
		mods = append(mods, m)
	}
	all := mods
	if cfg.Node.Role == "proxy" {
		if n.relay, err = proxyRelay(&cfg, log.With("module", "push"), n.reg); err != nil {
			return nil, err
		}
		if n.relay != nil {
			all = append(slices.Clone(mods), n.relay)
		}
	}
	n.group = module.NewGroup(log, all)

	if err := n.buildListeners(mods); err != nil {
		return nil, err
	}
	return n, nil
}

func (n *node) openStore(ctx context.Context) error {
	o, err := storeOptions(&n.cfg)
	if err != nil {
		return err
	}
	o.Logger = n.log.With("component", "store")
	db, err := store.Open(ctx, o)
	if err != nil {
		return err
	}
	n.db = db
	n.health.AddCheck("database", db.Ping)
	if !n.cfg.Database.MigrateOnStart {
		return nil
	}
	fsys, err := migrations.FS(db.Dialect.Name())
	if err != nil {
		return err
	}
	// The store logs each migration it applies.
	if _, err := db.Migrate(ctx, fsys); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// buildListeners makes the admin listener, the gateway (every module under
// its prefix) and each module's own listener.
func (n *node) buildListeners(mods []module.Module) error {
	c := n.cfg
	trusted, _ := config.ParsePrefixes(c.HTTP.TrustedProxies) // validated by Load
	metrics, err := httpx.NewMetrics(n.reg)
	if err != nil {
		return fmt.Errorf("http metrics: %w", err)
	}
	newServer := func(name string, l config.Listener, h http.Handler, tlsCfg *tls.Config) *httpx.Server {
		return httpx.NewServer(httpx.ServerOptions{
			Name: name, Addr: l.Listen, Handler: h, TLS: tlsCfg,
			ReadHeaderTimeout: c.HTTP.ReadHeaderTimeout, IdleTimeout: c.HTTP.IdleTimeout,
			MaxHeaderBytes: int(c.HTTP.MaxHeaderBytes), Logger: n.log, Metrics: metrics,
		})
	}
	router := func(name string) chi.Router {
		return httpx.NewRouter(httpx.RouterOptions{
			Listener: name, Logger: n.log, Metrics: metrics,
			MaxBodyBytes: int64(c.HTTP.MaxBodyBytes), TrustedProxies: trusted,
		})
	}

	if c.Admin.Listen != "" {
		tlsCfg, err := n.tlsFor("admin", c.Admin.Listener, false)
		if err != nil {
			return err
		}
		n.admin = newServer("admin", c.Admin.Listener, obs.AdminHandler(n.reg, n.health, c.Admin.Pprof), tlsCfg)
	}

	if c.Gateway.Listen != "" && c.Node.Role != "edge" {
		tlsCfg, err := n.tlsFor("gateway", c.Gateway.Listener, c.Gateway.TLSAuto)
		if err != nil {
			return err
		}
		routes, err := n.gatewayRoutes(mods, router("gateway"))
		if err != nil {
			return err
		}
		transport, err := upstreamTransport(c.Proxy.CAFile)
		if err != nil {
			return err
		}
		px, err := proxy.New(proxy.Options{
			Routes: routes, TrustedProxies: trusted, Transport: transport,
			HealthPath: "/readyz", HealthInterval: c.Proxy.HealthInterval,
			MaxBodyBytes: int64(c.HTTP.MaxBodyBytes), BodyReadTimeout: c.Proxy.BodyReadTimeout,
			PerIPConnections: c.Proxy.PerIPConnections, PerIPRate: float64(c.Proxy.PerIPRate), PerIPBurst: c.Proxy.PerIPBurst,
			Log: n.log.With("component", "proxy"), Metrics: n.reg,
		})
		if err != nil {
			return fmt.Errorf("gateway routes: %w", err)
		}
		n.proxy = px
		if c.Node.Role == "proxy" {
			n.health.AddCheck("upstreams", func(context.Context) error { return px.Healthy() })
		}
		// Health answers here, in front of the routing: a proxy node's
		// /readyz says whether it has somewhere to send requests.
		gw := http.NewServeMux()
		gw.HandleFunc("GET /livez", n.health.Livez)
		gw.Handle("GET /readyz", n.health.Readyz(false))
		gw.Handle("/", px)
		srv := httpx.NewServer(httpx.ServerOptions{
			Name: "gateway", Addr: c.Gateway.Listen, Handler: gw, TLS: tlsCfg,
			ReadHeaderTimeout: c.HTTP.ReadHeaderTimeout, IdleTimeout: c.HTTP.IdleTimeout,
			MaxHeaderBytes: int(c.HTTP.MaxHeaderBytes), Logger: n.log, Metrics: metrics,
			WrapListener: px.LimitListener,
		})
		n.servers = append(n.servers, srv)
		n.openURL = openURL(c.Gateway.Listen, tlsCfg != nil)
		if port := httpx.HTTPSPort(c.Gateway.Listen); c.Gateway.RedirectListen != "" && tlsCfg != nil && port != "0" {
			// Plain HTTP only says where the https gateway is.
			n.servers = append(n.servers, httpx.NewServer(httpx.ServerOptions{
				Name: "gateway-redirect", Addr: c.Gateway.RedirectListen, Handler: httpx.RedirectHandler(port),
				ReadHeaderTimeout: c.HTTP.ReadHeaderTimeout, IdleTimeout: c.HTTP.IdleTimeout,
				MaxHeaderBytes: int(c.HTTP.MaxHeaderBytes), Logger: n.log, Metrics: metrics,
			}))
		}
	}

	for _, m := range mods {
		h, mc := m.Routes(), c.Modules.ByName(m.Name())
		if h == nil || mc == nil || mc.Listen == "" {
			continue
		}
		tlsCfg, err := n.tlsFor(m.Name(), mc.Listener, false)
		if err != nil {
			return err
		}
		r := router(m.Name())
		r.Mount("/", h)
		n.servers = append(n.servers, newServer(m.Name(), mc.Listener, r, tlsCfg))
		if n.openURL == "" {
			n.openURL = openURL(mc.Listen, tlsCfg != nil)
		}
	}
	return nil
}

// gatewayRoutes is what the gateway routes where: on a node with modules,
// every module's prefix to the module in this process (no hop); on a
// proxy node, every module prefix to the upstream server nodes, with
// proxy.routes overriding some. Upload routes get their larger body
// limits.
func (n *node) gatewayRoutes(mods []module.Module, local chi.Router) ([]proxy.Route, error) {
	c := n.cfg
	limits := map[string]int64{
		"files":       int64(c.Files.MaxUploadBytes),
		"addressbook": int64(c.Addressbook.MaxAvatarBytes),
	}
	var routes []proxy.Route
	if c.Node.Role != "proxy" {
		for _, m := range mods {
			h := m.Routes()
			if h == nil {
				continue
			}
			prefix := c.Modules.ByName(m.Name()).Prefix
			local.Mount(mountPath(prefix), h)
			routes = append(routes, proxy.Route{Prefix: prefix, Handler: local, MaxBodyBytes: limits[m.Name()]})
		}
		if !slices.ContainsFunc(routes, func(r proxy.Route) bool { return r.Prefix == "/" }) {
			// Unknown paths get the router's JSON 404.
			routes = append(routes, proxy.Route{Prefix: "/", Handler: local})
		}
		return routes, nil
	}
	override := map[string][]*url.URL{}
	for _, s := range c.Proxy.Routes {
		prefix, ups, err := config.ParseRoute(s)
		if err != nil {
			return nil, fmt.Errorf("proxy.routes: %w", err) // validated by Load
		}
		override[prefix] = ups
	}
	var upstreams []*url.URL
	for _, s := range c.Proxy.Upstreams {
		u, err := config.ParseUpstream(s)
		if err != nil {
			return nil, fmt.Errorf("proxy.upstreams: %w", err)
		}
		upstreams = append(upstreams, u)
	}
	for _, name := range c.Modules.Names() {
		m := c.Modules.ByName(name)
		if !m.Enabled || m.Prefix == "" {
			continue
		}
		ups, ok := override[m.Prefix]
		delete(override, m.Prefix)
		if !ok {
			ups = upstreams
		}
		if len(ups) == 0 {
			continue
		}
		routes = append(routes, proxy.Route{Prefix: m.Prefix, Upstreams: ups, MaxBodyBytes: limits[name]})
	}
	for prefix, ups := range override { // prefixes of no module: passed on as configured
		routes = append(routes, proxy.Route{Prefix: prefix, Upstreams: ups})
	}
	if n.relay != nil {
		// The relay endpoint is answered here; the rest of /push/ (the
		// devices API) goes upstream like any module's.
		prefix := c.Modules.ByName(push.Name).Prefix
		local.Mount(mountPath(prefix), n.relay.Routes())
		routes = append(routes, proxy.Route{Prefix: prefix + "v1/relay/", Handler: local})
	}
	return routes, nil
}

// upstreamTransport is the proxy's client to upstream server nodes,
// verifying them with caFile (empty: the system roots).
func upstreamTransport(caFile string) (*http.Transport, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := httpx.LoadCertPool(caFile)
		if err != nil {
			return nil, fmt.Errorf("proxy.ca_file: %w", err)
		}
		cfg.RootCAs = pool
	}
	return proxy.NewTransport(cfg), nil
}

// tlsFor loads a listener's certificate, or makes a self-signed one when
// auto is set and none is configured. nil means plaintext.
func (n *node) tlsFor(name string, l config.Listener, auto bool) (*tls.Config, error) {
	certFile, keyFile := l.TLSCert, l.TLSKey
	if certFile == "" {
		if !auto {
			return nil, nil
		}
		host, _ := os.Hostname()
		var err error
		certFile, keyFile, err = httpx.SelfSigned(filepath.Join(n.cfg.Node.DataDir, "tls"), []string{host})
		if err != nil {
			return nil, fmt.Errorf("%s: self-signed certificate: %w", name, err)
		}
	}
	cert, err := httpx.LoadCertificate(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	n.certs = append(n.certs, cert)
	n.log.Info("tls certificate", "listener", name, "file", certFile, "sha256", cert.Fingerprint(), "self_signed", l.TLSCert == "")
	return cert.TLSConfig(), nil
}

// mountPath turns a configured prefix ("/chat/") into chi's mount pattern
// ("/chat"); the root prefix stays "/".
func mountPath(prefix string) string {
	if p := strings.TrimSuffix(prefix, "/"); p != "" {
		return p
	}
	return "/"
}

func openURL(listen string, tls bool) string {
	host, port, _ := net.SplitHostPort(listen)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	scheme := "http"
	if tls {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/"
}

// run starts the node, serves until ctx is cancelled (SIGTERM/SIGINT),
// reloading on every value from hup, then drains and stops. release undoes
// the signal capture so a second Ctrl-C during the drain kills at once.
func (n *node) run(ctx context.Context, hup <-chan os.Signal, release func()) error {
	if err := n.start(ctx); err != nil {
		return err
	}
	n.health.SetReady(true)
	if err := n.notifier.Ready(); err != nil {
		n.log.Warn("systemd notification failed", "err", err)
	}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go n.notifier.RunWatchdog(watchCtx, n.bus.Ping)
	n.log.Info("elph is ready", "open", n.openURL)
	if n.openURL != "" {
		fmt.Fprintf(n.out, "\nElph is ready: open %s\n\n", n.openURL)
	}

	for {
		select {
		case <-hup:
			n.reload()
			continue
		case <-ctx.Done():
		}
		break
	}
	release()
	n.log.Info("shutting down", "timeout", n.cfg.Node.ShutdownTimeout)
	return n.shutdown()
}

func (n *node) start(ctx context.Context) error {
	if err := n.group.Start(ctx); err != nil {
		n.closeStorage()
		return err
	}
	if n.proxy != nil {
		// Health checks of upstreams; a first round runs before this
		// returns, so /readyz is right from the start.
		if err := n.proxy.Start(ctx); err != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = n.group.Stop(sctx)
			n.closeStorage()
			return err
		}
	}
	all := n.servers
	if n.admin != nil {
		all = append([]*httpx.Server{n.admin}, all...)
	}
	for i, s := range all {
		if err := s.Start(); err != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for _, started := range all[:i] {
				_ = started.Shutdown(sctx)
			}
			_ = n.group.Stop(sctx)
			n.closeStorage()
			return err
		}
	}
	return nil
}

// shutdown turns unready, drains the public listeners, stops the modules,
// drains the bus, closes the database and finally the admin listener, all
// within node.shutdown_timeout.
func (n *node) shutdown() error {
	start := time.Now()
	n.health.SetReady(false)
	_ = n.notifier.Stopping()
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Node.ShutdownTimeout)
	defer cancel()

	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, s := range n.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Shutdown(ctx); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if n.proxy != nil {
		errs = append(errs, n.proxy.Stop(ctx))
	}
	errs = append(errs, n.group.Stop(ctx))
	if err := n.bus.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("event bus: %w", err))
	}
	n.closeStorage()
	if n.admin != nil {
		errs = append(errs, n.admin.Shutdown(ctx))
	}
	err := errors.Join(errs...)
	if err != nil {
		n.log.Error("stopped with errors", "err", err, "took", time.Since(start))
		return err
	}
	n.log.Info("stopped cleanly", "took", time.Since(start))
	return nil
}

func (n *node) closeStorage() {
	if n.db != nil {
		if err := n.db.Close(); err != nil {
			n.log.Error("close database", "err", err)
		}
		n.db = nil
	}
}

// reload applies what can change while running: the log level and TLS
// certificates. Other changes are named so the operator knows to restart.
func (n *node) reload() {
	_ = n.notifier.Reloading(monotonic())
	defer func() { _ = n.notifier.Ready() }()
	l, err := config.Load(n.src)
	if err != nil {
		n.log.Error("reload refused: configuration has problems; keeping the running one", "err", err)
		return
	}
	next := l.Config
	lv, _ := config.ParseLevel(next.Log.Level)
	n.level.Set(lv)
	for _, c := range n.certs {
		if err := c.Reload(); err != nil {
			n.log.Error("tls certificate reload failed; keeping the old one", "err", err)
		}
	}
	changed := slices.DeleteFunc(config.Diff(&n.cfg, &next), func(k string) bool { return k == "log.level" })
	if len(changed) > 0 {
		n.log.Warn("reloaded; these changes take effect after a restart", "keys", strings.Join(changed, ","))
	}
	n.cfg.Log.Level = next.Log.Level
	n.log.Info("reloaded", "log_level", lv.String(), "certificates", len(n.certs))
}
