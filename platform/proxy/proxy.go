package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/platform/httpx"
)

// Error codes the proxy answers with beyond httpx's.
const (
	CodeBadGateway     = "bad_gateway"
	CodeGatewayTimeout = "gateway_timeout"
	CodeRequestTimeout = "request_timeout"
)

// Defaults of Options.
const (
	DefaultHealthPath      = "/livez"
	DefaultHealthInterval  = 5 * time.Second
	DefaultHealthTimeout   = 2 * time.Second
	DefaultMaxBodyBytes    = 1 << 20
	DefaultBodyReadTimeout = 60 * time.Second
	DefaultMinBodyRate     = 64 << 10
)

// flushDelay bounds how long response bytes of known length may wait in
// the server's write buffer. Responses of unknown length (chunked, event
// streams) are flushed on every write, and large writes (downloads) pass
// the 4 KiB buffer at once; only small pieces of a slow fixed-length body
// wait. Flushing every response on every write (-1) would cost a timer
// goroutine and a write of the headers alone per request.
const flushDelay = 10 * time.Millisecond

// smallBody is the largest body of known length read ahead before the
// upstream is contacted, so that the request can be sent again and go
// through the connection pool.
const smallBody = 64 << 10

// spoolLimit is the largest route body limit for which a chunked body is
// read ahead before the upstream is contacted.
const spoolLimit = 1 << 20

// Route sends the requests under Prefix to one target.
type Route struct {
	// Prefix starts and ends with "/": "/chat/", or "/" for the rest. The
	// longest matching prefix wins; "/chat" belongs to "/chat/".
	Prefix string
	// Handler is an in-process target (the gateway in --all), or nil.
	Handler http.Handler
	// Upstreams are base URLs (a server node's gateway, for example
	// https://10.0.0.5:8443); the request path is kept as it is.
	Upstreams []*url.URL
	// MaxBodyBytes limits request bodies; 0 means Options.MaxBodyBytes.
	MaxBodyBytes int64
}

// Options configure a Proxy.
type Options struct {
	Routes []Route
	// TrustedProxies are the peers whose X-Forwarded-For/-Proto/-Host are
	// believed.
	TrustedProxies []netip.Prefix
	// Transport reaches the upstreams (TLS roots etc.); nil: NewTransport(nil).
	// It is used as given, so build it with NewTransport.
	Transport *http.Transport
	// HealthPath is checked with GET on every upstream; default "/livez".
	HealthPath     string
	HealthInterval time.Duration // default 5s
	HealthTimeout  time.Duration // default 2s
	// MaxBodyBytes is the default request body limit; default 1 MiB.
	MaxBodyBytes int64
	// BodyReadTimeout is the deadline for a whole request body, default 60s,
	// extended by the time the bytes received so far take at MinBodyRate.
	BodyReadTimeout time.Duration
	// MinBodyRate (bytes/s) is the slowest a large body (an upload) may
	// arrive on average past BodyReadTimeout; default 64 KiB/s, negative: no
	// extension.
	MinBodyRate int64
	// PerIPConnections limits concurrent connections per client IP through
	// LimitListener; 0: unlimited.
	PerIPConnections int
	// PerIPRate limits requests per second per client IP (token bucket of
	// PerIPBurst, default the rate rounded up); 0: unlimited.
	PerIPRate  float64
	PerIPBurst int
	Log        *slog.Logger
	Metrics    prometheus.Registerer
	Now        func() time.Time
}

// Proxy routes requests to handlers and upstreams. It is an http.Handler.
type Proxy struct {
	o         Options
	log       *slog.Logger
	now       func() time.Time
	routes    []*route        // longest prefix first
	ups       []*upstream     // distinct upstreams of every route
	transport *http.Transport // streaming uploads, health checks
	pool      *connPool       // everything else to upstreams
	rp        *httputil.ReverseProxy
	m         *metrics
	rate      *rateLimiter // nil: unlimited

	mu      sync.Mutex
	started bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type route struct {
	prefix  string
	handler http.Handler
	ups     []*upstream
	maxBody int64
	rr      atomic.Uint64 // round robin among equally loaded upstreams
	// The route's series, by classIndex.
	requests [len(codeClasses)]prometheus.Counter
	duration prometheus.Observer
}

// New checks o and builds a Proxy. Every problem found is reported.
func New(o Options) (*Proxy, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if o.HealthPath == "" {
		o.HealthPath = DefaultHealthPath
	} else if !strings.HasPrefix(o.HealthPath, "/") {
		bad("health path %q must start with /", o.HealthPath)
	}
	durations := []struct {
		name string
		d    *time.Duration
		def  time.Duration
	}{
		{"health interval", &o.HealthInterval, DefaultHealthInterval},
		{"health timeout", &o.HealthTimeout, DefaultHealthTimeout},
		{"body read timeout", &o.BodyReadTimeout, DefaultBodyReadTimeout},
	}
	for _, d := range durations {
		switch {
		case *d.d < 0:
			bad("%s must not be negative", d.name)
		case *d.d == 0:
			*d.d = d.def
		}
	}
	switch {
	case o.MaxBodyBytes < 0:
		bad("max body bytes must not be negative")
	case o.MaxBodyBytes == 0:
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MinBodyRate == 0 {
		o.MinBodyRate = DefaultMinBodyRate
	}
	if o.PerIPConnections < 0 {
		bad("per-IP connections must not be negative")
	}
	if o.PerIPRate < 0 || o.PerIPBurst < 0 {
		bad("per-IP rate and burst must not be negative")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if len(o.Routes) == 0 {
		bad("no routes")
	}

	p := &Proxy{o: o, log: o.Log, now: o.Now}
	byURL := map[string]*upstream{}
	seen := map[string]bool{}
	for i, r := range o.Routes {
		name := fmt.Sprintf("route %d (%q)", i, r.Prefix)
		if err := checkPrefix(r.Prefix); err != nil {
			bad("%s: %v", name, err)
		} else if seen[r.Prefix] {
			bad("%s: duplicate prefix", name)
		}
		seen[r.Prefix] = true
		if (r.Handler != nil) == (len(r.Upstreams) > 0) {
			bad("%s: needs exactly one of a handler or upstreams", name)
		}
		if r.MaxBodyBytes < 0 {
			bad("%s: max body bytes must not be negative", name)
		}
		rt := &route{prefix: r.Prefix, handler: r.Handler, maxBody: r.MaxBodyBytes}
		if rt.maxBody == 0 {
			rt.maxBody = o.MaxBodyBytes
		}
		inRoute := map[string]bool{}
		for j, u := range r.Upstreams {
			key, err := upstreamKey(u)
			if err != nil {
				bad("%s: upstream %d: %v", name, j, err)
				continue
			}
			if inRoute[key] {
				bad("%s: upstream %s listed twice", name, key)
				continue
			}
			inRoute[key] = true
			up := byURL[key]
			if up == nil {
				up = &upstream{key: key, url: &url.URL{Scheme: strings.ToLower(u.Scheme), Host: u.Host}, recheck: make(chan struct{}, 1)}
				up.healthy.Store(true)
				byURL[key] = up
				p.ups = append(p.ups, up)
			}
			rt.ups = append(rt.ups, up)
		}
		p.routes = append(p.routes, rt)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("proxy: %w", errors.Join(errs...))
	}
	sort.SliceStable(p.routes, func(i, j int) bool { return len(p.routes[i].prefix) > len(p.routes[j].prefix) })

	m, err := newMetrics(o.Metrics)
	if err != nil {
		return nil, fmt.Errorf("proxy metrics: %w", err)
	}
	p.m = m
	for _, rt := range p.routes {
		m.bindRoute(rt)
	}
	for _, u := range p.ups {
		u.inFlightGauge = m.inFlight.WithLabelValues(u.key)
		u.healthGauge = m.healthy.WithLabelValues(u.key)
		u.healthGauge.Set(1)
	}
	if o.PerIPRate > 0 {
		burst := o.PerIPBurst
		if burst == 0 {
			burst = int(o.PerIPRate + 0.999999)
		}
		p.rate = newRateLimiter(o.PerIPRate, burst)
	}
	p.transport = o.Transport
	if p.transport == nil {
		p.transport = NewTransport(nil)
	}
	p.pool = newConnPool(p.transport, p.now)
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      balancer{p},
		FlushInterval:  flushDelay,
		BufferPool:     bufferPool{},
		ErrorHandler:   p.proxyError,
		ModifyResponse: modifyResponse,
		ErrorLog:       slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug),
	}
	return p, nil
}

// checkPrefix accepts "/" and clean paths that end with "/".
func checkPrefix(p string) error {
	switch {
	case !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/"):
		return errors.New("prefix must start and end with /")
	case p != "/" && (path.Clean(p)+"/" != p || strings.Contains(p, "//")):
		return errors.New("prefix must be a clean path (no //, . or ..)")
	case strings.ContainsAny(p, "?#%*") || strings.IndexFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0:
		return errors.New("prefix must not hold ?, #, %, *, spaces or control characters")
	}
	return nil
}

// upstreamKey validates an upstream base URL and names it scheme://host.
func upstreamKey(u *url.URL) (string, error) {
	switch {
	case u == nil:
		return "", errors.New("missing URL")
	case u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "HTTP" && u.Scheme != "HTTPS":
		return "", fmt.Errorf("%s: scheme must be http or https", u.Redacted())
	case u.Host == "" || u.Opaque != "":
		return "", fmt.Errorf("%s: must be an absolute URL with a host", u.Redacted())
	case u.User != nil:
		return "", fmt.Errorf("%s: must not hold user info", u.Redacted())
	case u.Path != "" && u.Path != "/":
		return "", fmt.Errorf("%s: must not have a path beyond /", u.Redacted())
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", fmt.Errorf("%s: must not have a query or fragment", u.Redacted())
	}
	if strings.HasSuffix(u.Host, ":") {
		return "", fmt.Errorf("%s: empty port", u.Redacted())
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host), nil
}

// match returns the route of a path: the longest prefix, or the prefix the
// path equals without its trailing slash.
func (p *Proxy) match(routePath string) *route {
	for _, rt := range p.routes {
		if strings.HasPrefix(routePath, rt.prefix) || len(rt.prefix) > 1 && routePath == rt.prefix[:len(rt.prefix)-1] {
			return rt
		}
	}
	return nil
}

// routingPath is the path routers see: the escaped form when the client
// escaped it differently from the default (as chi does).
func routingPath(u *url.URL) string {
	if u.RawPath != "" {
		return u.RawPath
	}
	return u.Path
}

// hasDotSegment reports a "." or ".." path segment.
func hasDotSegment(p string) bool {
	for p != "" {
		var seg string
		seg, p, _ = strings.Cut(p, "/")
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// ServeHTTP routes one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := &reqState{start: p.now()}
	rec := &recorder{ResponseWriter: w}
	peer := httpx.PeerAddr(r.RemoteAddr)
	st.trusted = httpx.IsTrusted(peer, p.o.TrustedProxies)
	st.client = httpx.ClientAddr(peer, st.trusted, r.Header.Values("X-Forwarded-For"), p.o.TrustedProxies)
	st.id = requestID(r)
	w.Header().Set("X-Request-Id", st.id)
	defer func() {
		v := recover()
		if v != nil && rec.status == 0 && !rec.hijacked {
			rec.status = http.StatusInternalServerError
		}
		st.aborted = v != nil
		if st.body != nil {
			st.body.finish()
		}
		p.observe(rec, r, st)
		if v != nil {
			panic(v)
		}
	}()

	if p.rate != nil {
		if ok, wait := p.rate.allow(limitKey(st.client), p.now()); !ok {
			p.m.rejected.WithLabelValues("rate").Inc()
			rec.Header().Set("Retry-After", retryAfter(wait))
			httpx.WriteError(rec, r, httpx.Errorf(http.StatusTooManyRequests, httpx.CodeRateLimited, "too many requests"))
			return
		}
	}
	rp := routingPath(r.URL)
	switch {
	case r.Method == http.MethodConnect:
		httpx.WriteError(rec, r, httpx.Errorf(http.StatusMethodNotAllowed, httpx.CodeMethodNotAllowed, "method CONNECT not allowed"))
		return
	case !strings.HasPrefix(rp, "/") || hasDotSegment(r.URL.Path) || hasDotSegment(rp):
		httpx.WriteError(rec, r, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "bad request path"))
		return
	}
	rt := p.match(rp)
	if rt == nil {
		httpx.WriteError(rec, r, httpx.Errorf(http.StatusNotFound, httpx.CodeNotFound, "no such route"))
		return
	}
	st.route = rt

	if r.ContentLength > rt.maxBody {
		p.tooLarge(rec, r, rt.maxBody)
		return
	}
	if hasBody(r) {
		st.body = p.newBody(rec, r, rt.maxBody)
		if rt.handler == nil && (r.ContentLength < 0 && rt.maxBody <= spoolLimit || r.ContentLength > 0 && r.ContentLength <= smallBody) {
			spooled, ok := p.spool(rec, r, st)
			if !ok {
				return
			}
			r = spooled
		} else {
			r = shallowWithBody(r, st.body)
		}
	}

	if rt.handler != nil {
		p.serveLocal(rec, r, st)
		return
	}
	upgrade := isUpgrade(r)
	if !upgrade && pooled(r) {
		p.forward(rec, r, st)
		return
	}
	ctx := context.WithValue(r.Context(), stateKey{}, st)
	if upgrade {
		// A proxied WebSocket lives until one side closes it; on shutdown
		// the server's drain closes the tunnel so clients reconnect.
		draining, done := httpx.TrackLongLived(r)
		defer done()
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-draining:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	p.rp.ServeHTTP(rec, r.WithContext(ctx))
}

// serveLocal hands a request to an in-process handler: no hop, so no
// X-Forwarded-* are added, but spoofed ones from an untrusted peer are
// removed and the request id is passed on.
func (p *Proxy) serveLocal(w http.ResponseWriter, r *http.Request, st *reqState) {
	r2 := r.WithContext(r.Context())
	r2.Header = r.Header.Clone()
	if r2.Header == nil {
		r2.Header = http.Header{}
	}
	if !st.trusted {
		for _, h := range untrustedHeaders {
			r2.Header.Del(h)
		}
	}
	r2.Header.Set("X-Request-Id", st.id)
	st.local = true
	st.route.handler.ServeHTTP(w, r2)
}

// untrustedHeaders are dropped from requests of peers outside TrustedProxies.
var untrustedHeaders = []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "X-Real-Ip"}

func shallowWithBody(r *http.Request, b *bodyReader) *http.Request {
	r2 := r.WithContext(r.Context())
	r2.Body = b
	return r2
}

// hasBody: an HTTP/2 request without a body still has a Body (not
// NoBody); ContentLength 0 tells.
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

func isUpgrade(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" && headerHasToken(r.Header.Values("Connection"), "upgrade")
}

func headerHasToken(values []string, token string) bool {
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func (p *Proxy) tooLarge(w http.ResponseWriter, r *http.Request, limit int64) {
	p.m.rejected.WithLabelValues("body_too_large").Inc()
	w.Header().Set("Connection", "close")
	httpx.WriteError(w, r, httpx.Errorf(http.StatusRequestEntityTooLarge, httpx.CodePayloadTooLarge, "body is larger than %d bytes", limit))
}

func (p *Proxy) bodyTimeout(w http.ResponseWriter, r *http.Request) {
	p.m.rejected.WithLabelValues("body_timeout").Inc()
	w.Header().Set("Connection", "close")
	httpx.WriteError(w, r, httpx.Errorf(http.StatusRequestTimeout, CodeRequestTimeout, "request body not received in time"))
}

// retryAfter renders a wait as whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return fmt.Sprint(s)
}

// Healthy is nil when every route with upstreams has a healthy one (for the
// proxy node's /readyz).
func (p *Proxy) Healthy() error {
	var down []string
	for _, rt := range p.routes {
		if rt.handler != nil {
			continue
		}
		ok := false
		for _, u := range rt.ups {
			if u.healthy.Load() {
				ok = true
				break
			}
		}
		if !ok {
			down = append(down, rt.prefix)
		}
	}
	if len(down) > 0 {
		sort.Strings(down)
		return fmt.Errorf("no healthy upstream for %s", strings.Join(down, ", "))
	}
	return nil
}
