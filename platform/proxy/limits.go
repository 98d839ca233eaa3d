package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elph-server/elph/platform/httpx"
)

// bodyReader enforces a route's body limit and the body read deadline. It
// is read by the upstream transport's goroutine, hence the atomics.
type bodyReader struct {
	rc       io.ReadCloser
	limit    int64
	n        atomic.Int64
	touched  atomic.Bool // Read was called
	tooLarge atomic.Bool
	timedOut atomic.Bool

	// The deadline is wall-clock time (connection deadlines are), not
	// Options.Now.
	start   time.Time
	timeout time.Duration
	minRate int64
	step    time.Duration // smallest deadline extension worth a syscall

	mu       sync.Mutex
	ctl      *http.ResponseController // nil: the deadline is checked on each Read only
	deadline time.Time
	armed    bool // the connection read deadline is set
	done     bool // the handler returned, or the body ended: hands off the connection
}

// errBodyTimeout is what a body read returns once the deadline has passed.
var errBodyTimeout error = bodyTimeoutError{}

type bodyTimeoutError struct{}

func (bodyTimeoutError) Error() string        { return "proxy: request body not received in time" }
func (bodyTimeoutError) Timeout() bool        { return true }
func (bodyTimeoutError) Is(target error) bool { return target == os.ErrDeadlineExceeded }

// newBody wraps r's body and sets the connection's read deadline.
func (p *Proxy) newBody(w http.ResponseWriter, r *http.Request, limit int64) *bodyReader {
	now := time.Now()
	b := &bodyReader{
		rc: r.Body, limit: limit, start: now, timeout: p.o.BodyReadTimeout, minRate: p.o.MinBodyRate,
		deadline: now.Add(p.o.BodyReadTimeout),
	}
	b.step = min(b.timeout/8, time.Second)
	ctl := http.NewResponseController(w)
	if err := ctl.SetReadDeadline(b.deadline); err == nil {
		b.ctl, b.armed = ctl, true
	}
	return b
}

func (b *bodyReader) Read(p []byte) (int, error) {
	b.touched.Store(true)
	if b.tooLarge.Load() {
		return 0, &http.MaxBytesError{Limit: b.limit}
	}
	if b.timedOut.Load() {
		return 0, errBodyTimeout
	}
	if b.ctl == nil && time.Now().After(b.currentDeadline()) {
		b.timedOut.Store(true)
		return 0, errBodyTimeout
	}
	if room := b.limit + 1 - b.n.Load(); int64(len(p)) > room {
		p = p[:room]
	}
	k, err := b.rc.Read(p)
	total := b.n.Add(int64(k))
	if total > b.limit {
		b.tooLarge.Store(true)
		return k - int(total-b.limit), &http.MaxBytesError{Limit: b.limit}
	}
	if k > 0 && b.minRate > 0 {
		b.extend(total)
	}
	switch {
	case err == io.EOF:
		b.release()
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
		b.timedOut.Store(true)
		err = errBodyTimeout
	}
	return k, err
}

// Close releases the deadline; the server closes the inbound body itself.
func (b *bodyReader) Close() error {
	b.release()
	return b.rc.Close()
}

func (b *bodyReader) currentDeadline() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.deadline
}

// extend moves the deadline out by the time total bytes take at minRate.
func (b *bodyReader) extend(total int64) {
	want := b.start.Add(b.timeout + time.Duration(float64(total)/float64(b.minRate)*float64(time.Second)))
	b.mu.Lock()
	defer b.mu.Unlock()
	if want.Sub(b.deadline) < b.step {
		return
	}
	b.deadline = want
	if b.armed && !b.done {
		_ = b.ctl.SetReadDeadline(want)
	}
}

// release clears the read deadline once the body has been read, so it
// cannot cut the rest of the exchange (a long response, the server's
// background read). Never after the handler has returned: the connection
// then belongs to the next request.
func (b *bodyReader) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.armed && !b.done {
		_ = b.ctl.SetReadDeadline(time.Time{})
	}
	b.armed = false
	b.done = true
}

// finish is called when the handler returns.
func (b *bodyReader) finish() {
	b.mu.Lock()
	b.done = true
	b.mu.Unlock()
}

func (b *bodyReader) failed() bool    { return b.tooLarge.Load() || b.timedOut.Load() }
func (b *bodyReader) untouched() bool { return !b.touched.Load() }

// spool reads a chunked body ahead, so that an oversized one is refused
// before any upstream sees it and a small one is sent with a length and can
// be sent again on a retry.
func (p *Proxy) spool(w http.ResponseWriter, r *http.Request, st *reqState) (*http.Request, bool) {
	data, err := io.ReadAll(st.body)
	switch {
	case st.body.tooLarge.Load():
		p.tooLarge(w, r, st.body.limit)
		return nil, false
	case st.body.timedOut.Load():
		p.bodyTimeout(w, r)
		return nil, false
	case err != nil:
		if r.Context().Err() != nil {
			st.status = 499
			return nil, false
		}
		w.Header().Set("Connection", "close")
		httpx.WriteError(w, r, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "could not read the request body"))
		return nil, false
	}
	r2 := r.WithContext(r.Context())
	r2.Body = io.NopCloser(bytes.NewReader(data))
	r2.ContentLength = int64(len(data))
	r2.TransferEncoding = nil
	r2.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	return r2, true
}

// limitKey is the unit of per-IP limits: the address, or an IPv6 /64 (one
// subscriber's network). The zero Prefix means no address (not limited).
func limitKey(a netip.Addr) netip.Prefix {
	if !a.IsValid() {
		return netip.Prefix{}
	}
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	pfx, _ := a.Prefix(bits)
	return pfx
}

// rateLimiter is a token bucket per client.
type rateLimiter struct {
	rate, burst float64

	mu        sync.Mutex
	buckets   map[netip.Prefix]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(rate float64, burst int) *rateLimiter {
	return &rateLimiter{rate: rate, burst: float64(max(burst, 1)), buckets: map[netip.Prefix]*bucket{}}
}

// allow takes a token for key, or says how long until one is there.
func (l *rateLimiter) allow(key netip.Prefix, now time.Time) (bool, time.Duration) {
	if !key.IsValid() {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= time.Minute {
		l.sweep(now)
	}
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	} else if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(l.burst, b.tokens+el*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// sweep forgets the buckets that have refilled: they hold nothing a new
// bucket would not.
func (l *rateLimiter) sweep(now time.Time) {
	l.lastSweep = now
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
}

// LimitListener limits concurrent connections per client IP (IPv6 by /64)
// to PerIPConnections: an excess connection is closed as soon as it is
// accepted and counted as rejected. Trusted proxies are not limited. Wrap
// the raw TCP listener (under TLS). With no limit ln is returned as is.
func (p *Proxy) LimitListener(ln net.Listener) net.Listener {
	if p.o.PerIPConnections <= 0 {
		return ln
	}
	return &limitListener{Listener: ln, p: p, max: p.o.PerIPConnections, open: map[netip.Prefix]int{}}
}

type limitListener struct {
	net.Listener
	p   *Proxy
	max int

	mu   sync.Mutex
	open map[netip.Prefix]int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := httpx.PeerAddr(c.RemoteAddr().String())
		if !ip.IsValid() || httpx.IsTrusted(ip, l.p.o.TrustedProxies) {
			return c, nil
		}
		key := limitKey(ip)
		l.mu.Lock()
		if l.open[key] >= l.max {
			l.mu.Unlock()
			_ = c.Close()
			l.p.m.rejected.WithLabelValues("connections").Inc()
			l.p.log.Debug("connection refused: per-IP limit", "client_ip", ip.String(), "limit", l.max)
			continue
		}
		l.open[key]++
		l.mu.Unlock()
		return &limitedConn{Conn: c, l: l, key: key}, nil
	}
}

func (l *limitListener) release(key netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key]--; l.open[key] <= 0 {
		delete(l.open, key)
	}
}

type limitedConn struct {
	net.Conn
	l    *limitListener
	key  netip.Prefix
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.key) })
	return err
}
