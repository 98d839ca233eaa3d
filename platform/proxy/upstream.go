package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/platform/httpx"
	"github.com/elph-server/elph/platform/module"
)

// NewTransport is the transport to upstreams used when Options.Transport is
// nil, with tlsConfig (nil: system roots) for https upstreams: a 5 s dial
// and TLS handshake, a 60 s wait for response headers, 256 idle
// connections per upstream kept 90 s. The connection pool takes these
// settings; the Transport itself carries streaming uploads and health
// checks (HTTP/2 when the upstream offers it, no environment proxy, no
// transparent decompression).
func NewTransport(tlsConfig *tls.Config) *http.Transport {
	return &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig:       tlsConfig,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		DisableCompression:    true,
	}
}

// upstream is one base URL with its health and load.
type upstream struct {
	key           string // scheme://host, the metrics label
	url           *url.URL
	healthy       atomic.Bool
	inFlight      atomic.Int64
	inFlightGauge prometheus.Gauge
	healthGauge   prometheus.Gauge
	recheck       chan struct{} // a passive failure asks for an early check
}

func (u *upstream) acquire() {
	u.inFlight.Add(1)
	u.inFlightGauge.Inc()
}

func (u *upstream) release() {
	u.inFlight.Add(-1)
	u.inFlightGauge.Dec()
}

// setHealth records a health change and logs it.
func (p *Proxy) setHealth(u *upstream, up bool, why string) {
	if up {
		u.healthGauge.Set(1)
	} else {
		u.healthGauge.Set(0)
	}
	if u.healthy.Swap(up) == up {
		return
	}
	if up {
		p.log.Info("upstream up", "upstream", u.key)
	} else {
		p.log.Warn("upstream down", "upstream", u.key, "reason", why)
	}
}

// markDown takes an upstream out after a failed request and has it
// checked again soon, so that a passing fault costs at most recheckDelay.
func (p *Proxy) markDown(u *upstream, err error) {
	p.setHealth(u, false, err.Error())
	select {
	case u.recheck <- struct{}{}:
	default:
	}
}

// pick chooses the healthy upstream with the fewest requests in flight,
// skipping one; ties go round robin.
func (rt *route) pick(skip *upstream) *upstream {
	n := uint64(len(rt.ups))
	if n == 0 {
		return nil
	}
	start := rt.rr.Add(1)
	var best *upstream
	var bestLoad int64
	for i := uint64(0); i < n; i++ {
		u := rt.ups[(start+i)%n]
		if u == skip || !u.healthy.Load() {
			continue
		}
		if l := u.inFlight.Load(); best == nil || l < bestLoad {
			best, bestLoad = u, l
		}
	}
	return best
}

// reqState follows one request through the proxy.
type reqState struct {
	start   time.Time
	id      string
	client  netip.Addr
	trusted bool
	route   *route
	body    *bodyReader
	local   bool
	aborted bool
	// Set by the balancer and the error handler, which run on the
	// request's goroutine.
	upstream *upstream
	retries  int
	err      error
	status   int // overrides the recorded status (499: client gone)
}

type stateKey struct{}

func stateFrom(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

// rewrite builds the outbound request; the balancer fills in the upstream.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	st := stateFrom(pr.In.Context())
	in, out := pr.In, pr.Out
	// ReverseProxy has removed Forwarded and X-Forwarded-* from out.
	if st.trusted {
		if prior := in.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			out.Header["X-Forwarded-For"] = append([]string(nil), prior...)
		}
	} else {
		out.Header.Del("X-Real-Ip")
	}
	pr.SetXForwarded()
	if st.trusted {
		if proto := strings.ToLower(strings.TrimSpace(in.Header.Get("X-Forwarded-Proto"))); proto == "http" || proto == "https" {
			out.Header.Set("X-Forwarded-Proto", proto)
		}
		if host := strings.TrimSpace(in.Header.Get("X-Forwarded-Host")); host != "" {
			out.Header.Set("X-Forwarded-Host", host)
		}
	}
	out.Host = in.Host
	out.Header.Set("X-Request-Id", st.id)
}

// modifyResponse drops the upstream's X-Request-Id: the proxy has set the
// same id on the response already, and the copy would duplicate it.
func modifyResponse(res *http.Response) error {
	res.Header.Del("X-Request-Id")
	return nil
}

// errNoUpstream: every upstream of the route is down.
var errNoUpstream = errors.New("no healthy upstream")

// balancer is the ReverseProxy's transport: it picks the upstream, counts
// the request in flight until the response body is closed, marks failing
// upstreams down and retries a failed connection once elsewhere.
type balancer struct{ p *Proxy }

func (b balancer) RoundTrip(req *http.Request) (*http.Response, error) {
	p := b.p
	st := stateFrom(req.Context())
	return p.attempts(req.Context(), st, func(kind string) bool { return canRetry(req, kind, st) },
		func(u *upstream, attempt int) (*http.Response, bool, error) {
			// The first attempt sends ReverseProxy's own outbound request,
			// whose URL is a copy; a retry sends a new shallow copy, since
			// the Transport of a failed attempt may still hold the first.
			out := req
			if attempt > 0 {
				out = req.WithContext(req.Context())
				target := *req.URL
				out.URL = &target
				switch {
				case req.GetBody != nil:
					body, err := req.GetBody()
					if err != nil {
						return nil, false, err
					}
					out.Body = body
				case req.Body != nil && req.Body != http.NoBody:
					// Never read (canRetry checked): hand the inbound body
					// over again, not ReverseProxy's wrapper, which the
					// failed attempt has closed.
					out.Body = io.NopCloser(st.body)
				}
			}
			out.URL.Scheme, out.URL.Host = u.url.Scheme, u.url.Host
			return p.send(out, u)
		})
}

// attempts picks an upstream for a request and sends it there; when the
// attempt fails in a way retryable allows, it sends it once more to
// another upstream. The answer's body, closed, ends the upstream's count
// of requests in flight.
func (p *Proxy) attempts(ctx context.Context, st *reqState, retryable func(kind string) bool,
	send func(u *upstream, attempt int) (*http.Response, bool, error)) (*http.Response, error) {
	rt := st.route
	var failed *upstream
	var lastErr error
	for attempt := 0; ; attempt++ {
		u := rt.pick(failed)
		if u == nil {
			if lastErr != nil {
				return nil, lastErr
			}
			return nil, errNoUpstream
		}
		if attempt > 0 {
			p.m.retries.WithLabelValues(rt.prefix).Inc()
			st.retries++
		}
		st.upstream = u
		u.acquire()
		res, reused, err := send(u, attempt)
		if err == nil {
			res.Body = releaseOnClose(res.Body, u)
			return res, nil
		}
		u.release()
		if ctx.Err() != nil || (st.body != nil && st.body.failed()) {
			// The client left, or its body was too large or too slow: not
			// the upstream's fault.
			return nil, err
		}
		kind := classify(err)
		p.m.upstreamErrors.WithLabelValues(u.key, kind).Inc()
		// A dial failure, or a fresh connection broken before any answer,
		// is the upstream's state; a kept-alive connection that broke may
		// just have been closed as idle at the wrong moment.
		if kind == "dial" || kind == "reset" && !reused {
			p.markDown(u, err)
		}
		if attempt > 0 || !retryable(kind) {
			return nil, err
		}
		failed, lastErr = u, err
	}
}

// send hands one attempt to the pool, or to the Transport when the body
// streams; reused tells whether a kept-alive connection carried it.
func (p *Proxy) send(out *http.Request, u *upstream) (*http.Response, bool, error) {
	if pooled(out) {
		return p.pool.roundTrip(out, u)
	}
	var reused atomic.Bool
	out = out.WithContext(httptrace.WithClientTrace(out.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { reused.Store(info.Reused) },
	}))
	res, err := p.transport.RoundTrip(out)
	return res, reused.Load(), err
}

// classify names an upstream error: dial (nothing sent), reset (the
// connection broke before a response), timeout, or other.
func classify(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return "dial"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return "reset"
	}
	return "other"
}

// canRetry: a dial failure sent nothing, so any method may go elsewhere if
// its body is still whole; a reset may have reached the upstream, so only
// idempotent requests whose body can be sent again are retried.
func canRetry(req *http.Request, kind string, st *reqState) bool {
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	switch kind {
	case "dial":
		return replayable || (st.body != nil && st.body.untouched())
	case "reset":
		return replayable && idempotent(req.Method)
	}
	return false
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// releaseOnClose ends u's count of the request once the body is closed,
// keeping the io.Writer of a 101 answer's body (ReverseProxy tunnels
// through it, and may close it from two goroutines).
func releaseOnClose(body io.ReadCloser, u *upstream) io.ReadCloser {
	r := &releasingBody{ReadCloser: body, u: u}
	if rwc, ok := body.(io.ReadWriteCloser); ok {
		return releasingRWC{releasingBody: r, w: rwc}
	}
	return r
}

type releasingBody struct {
	io.ReadCloser
	u    *upstream
	done atomic.Bool
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	if b.done.CompareAndSwap(false, true) {
		b.u.release()
	}
	return err
}

type releasingRWC struct {
	*releasingBody
	w io.Writer
}

func (b releasingRWC) Write(p []byte) (int, error) { return b.w.Write(p) }

// proxyError answers a request ReverseProxy could not complete.
func (p *Proxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	p.failed(w, r, stateFrom(r.Context()), err)
}

// failed answers a request the proxy could not complete.
func (p *Proxy) failed(w http.ResponseWriter, r *http.Request, st *reqState, err error) {
	st.err = err
	if rec, ok := w.(*recorder); ok && (rec.status != 0 || rec.hijacked) {
		return // the response is under way; nothing more can be said
	}
	switch {
	case st.body != nil && st.body.tooLarge.Load():
		p.tooLarge(w, r, st.body.limit)
	case st.body != nil && st.body.timedOut.Load():
		p.bodyTimeout(w, r)
	case errors.Is(err, errNoUpstream):
		w.Header().Set("Retry-After", retryAfter(p.o.HealthInterval))
		httpx.WriteError(w, r, httpx.Errorf(http.StatusServiceUnavailable, httpx.CodeUnavailable, "no healthy upstream"))
	case r.Context().Err() != nil:
		st.status = 499 // the client closed the request; nobody to answer
	case classify(err) == "timeout":
		httpx.WriteError(w, r, httpx.Errorf(http.StatusGatewayTimeout, CodeGatewayTimeout, "upstream timed out"))
	default:
		w.Header().Set("Retry-After", retryAfter(p.o.HealthInterval))
		httpx.WriteError(w, r, httpx.Errorf(http.StatusBadGateway, CodeBadGateway, "upstream unavailable"))
	}
}

// Start runs a first round of health checks, then checks every upstream
// each HealthInterval in the background until Stop.
func (p *Proxy) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return errors.New("proxy already started")
	}
	p.started = true
	loopCtx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	var first sync.WaitGroup
	for _, u := range p.ups {
		first.Add(1)
		go func() {
			defer first.Done()
			p.check(ctx, u)
		}()
	}
	first.Wait()
	if err := ctx.Err(); err != nil {
		cancel()
		p.cancel = nil
		return err
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		module.Every(loopCtx, p.pool.idleTimeout/2, p.log, "closing idle upstream connections", func(context.Context) error {
			p.pool.prune()
			return nil
		})
	}()
	for _, u := range p.ups {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			t := time.NewTicker(p.o.HealthInterval)
			defer t.Stop()
			for {
				select {
				case <-loopCtx.Done():
					return
				case <-t.C:
				case <-u.recheck:
					select {
					case <-loopCtx.Done():
						return
					case <-time.After(p.recheckDelay()):
					}
				}
				p.check(loopCtx, u)
			}
		}()
	}
	return nil
}

// Stop ends the health checks and closes idle upstream connections. The
// requests in flight belong to the server's drain.
func (p *Proxy) Stop(ctx context.Context) error {
	p.mu.Lock()
	cancel := p.cancel
	p.cancel = nil
	p.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	defer p.transport.CloseIdleConnections()
	defer p.pool.closeIdle(true)
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("proxy health checks did not stop: %w", ctx.Err())
	}
}

// recheckDelay is how soon an upstream marked down by a failed request is
// checked again: a second at most.
func (p *Proxy) recheckDelay() time.Duration { return min(p.o.HealthInterval, time.Second) }

// check asks one upstream for HealthPath.
func (p *Proxy) check(parent context.Context, u *upstream) {
	ctx, cancel := context.WithTimeout(parent, p.o.HealthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.url.Scheme+"://"+u.url.Host+p.o.HealthPath, nil)
	if err != nil {
		p.setHealth(u, false, err.Error())
		return
	}
	req.Header.Set("User-Agent", "elph-proxy-health")
	res, err := p.transport.RoundTrip(req)
	if err != nil {
		if parent.Err() != nil {
			return // stopping, not a verdict
		}
		p.setHealth(u, false, err.Error())
		return
	}
	_, _ = io.CopyN(io.Discard, res.Body, 4<<10)
	_ = res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		p.setHealth(u, false, fmt.Sprintf("%s answered %d", p.o.HealthPath, res.StatusCode))
		return
	}
	p.setHealth(u, true, "")
}

// bufferPool recycles ReverseProxy's copy buffers.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }
