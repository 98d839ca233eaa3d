package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Limits of the connection pool.
const (
	// maxResponseHeaderBytes bounds an upstream's response head.
	maxResponseHeaderBytes = 1 << 20
	// max1xx bounds informational answers before the final one.
	max1xx = 5
	// poolBufferSize is the read and write buffer of a pooled connection.
	poolBufferSize = 16 << 10
)

// connPool keeps HTTP/1.1 connections to upstreams alive and sends requests
// over them on the caller's goroutine, as nginx's upstream keepalive does.
// net/http's Transport would hand every request to a connection's writer
// and reader goroutines (HTTP/1.1) or start a goroutine per request and
// run HPACK over one connection (HTTP/2); for a proxy, whose requests are
// small and many, that doubled its CPU per request.
//
// Only requests whose body is absent or can be sent again go through the
// pool (the body is written whole before the answer is read); streaming
// uploads go through the Transport, which reads an early answer while the
// body is still being sent. WebSocket upgrades go through the pool: the
// connection leaves it with the 101 answer and becomes the tunnel.
type connPool struct {
	dial             func(ctx context.Context, network, addr string) (net.Conn, error)
	tls              *tls.Config // for https upstreams
	handshakeTimeout time.Duration
	headerTimeout    time.Duration // 0: none
	idleTimeout      time.Duration
	maxIdle          int // per upstream
	now              func() time.Time

	mu     sync.Mutex
	idle   map[*upstream][]*pconn // most recently used last
	closed bool
}

// newConnPool takes the dialer, TLS settings, timeouts and idle limits of
// tr, so that Options.Transport configures both ways to an upstream.
func newConnPool(tr *http.Transport, now func() time.Time) *connPool {
	cp := &connPool{
		dial:             tr.DialContext,
		handshakeTimeout: tr.TLSHandshakeTimeout,
		headerTimeout:    tr.ResponseHeaderTimeout,
		idleTimeout:      tr.IdleConnTimeout,
		maxIdle:          tr.MaxIdleConnsPerHost,
		now:              now,
		idle:             map[*upstream][]*pconn{},
	}
	if cp.dial == nil {
		cp.dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	if cp.handshakeTimeout <= 0 {
		cp.handshakeTimeout = 10 * time.Second
	}
	if cp.idleTimeout <= 0 {
		cp.idleTimeout = 90 * time.Second
	}
	if cp.maxIdle <= 0 {
		cp.maxIdle = http.DefaultMaxIdleConnsPerHost
	}
	if tr.TLSClientConfig != nil {
		cp.tls = tr.TLSClientConfig.Clone()
	} else {
		cp.tls = &tls.Config{}
	}
	// The pool speaks HTTP/1.1 only; an upstream offering h2 picks it.
	cp.tls.NextProtos = []string{"http/1.1"}
	// New connections resume an earlier TLS session (as nginx's
	// proxy_ssl_session_reuse): a burst of WebSocket upgrades or a
	// reconnect after an upstream restart costs no full handshakes.
	if cp.tls.ClientSessionCache == nil {
		cp.tls.ClientSessionCache = tls.NewLRUClientSessionCache(256)
	}
	return cp
}

// pooled reports whether req can go through the pool: it has no body, or
// one read ahead that can be sent again.
func pooled(req *http.Request) bool {
	return !hasBody(req) || req.GetBody != nil
}

// pconn is one connection to an upstream.
type pconn struct {
	up     *upstream
	raw    net.Conn // TCP: closed to cancel, under any TLS lock
	conn   net.Conn // raw or TLS over it
	br     *bufio.Reader
	bw     *bufio.Writer
	limit  int64 // bytes the reader may still take (the response head's bound)
	idleAt time.Time
	// timer closes the connection when an answer's head is late; it is
	// stopped before the connection is used again, so it fires at most
	// once, and then the connection is gone.
	timer    *time.Timer
	timedOut atomic.Bool
}

func (pc *pconn) Read(p []byte) (int, error) {
	if pc.limit <= 0 {
		return 0, fmt.Errorf("upstream response head larger than %d bytes", maxResponseHeaderBytes)
	}
	if int64(len(p)) > pc.limit {
		p = p[:pc.limit]
	}
	n, err := pc.conn.Read(p)
	pc.limit -= int64(n)
	return n, err
}

func (pc *pconn) close() { _ = pc.raw.Close() }

// staleError marks a failure on a kept-alive connection before any byte of an
// answer: the upstream most likely closed it as idle just then.
type staleError struct{ err error }

func (e staleError) Error() string { return e.err.Error() }
func (e staleError) Unwrap() error { return e.err }

// maybeStale marks a connection closed or reset by the upstream (not a
// timeout) as possibly stale.
func maybeStale(err error) error {
	if classify(err) == "reset" {
		return staleError{err}
	}
	return err
}

// roundTrip sends req to u over a pooled connection, or a new one, and
// returns its answer; reused tells whether the connection was kept alive
// from an earlier request. An idempotent request on a kept-alive connection
// that turns out closed before any answer is repeated once on a fresh one
// (its body, if any, can be sent again); any other request first checks
// that the connection is still open.
func (cp *connPool) roundTrip(req *http.Request, u *upstream) (*http.Response, bool, error) {
	// The body is written whole, so a client's Expect: 100-continue has
	// nothing to wait for upstream (the server in front answered it).
	req.Header.Del("Expect")
	return cp.exchange(exchange{ctx: req.Context(), method: req.Method, close: req.Close, request: req,
		write: func(bw *bufio.Writer, again bool) error {
			if again && req.GetBody != nil {
				body, err := req.GetBody()
				if err != nil {
					return err
				}
				r2 := *req
				r2.Body = body
				return r2.Write(bw)
			}
			return req.Write(bw)
		}}, u)
}

// exchange is one request as the pool sends it.
type exchange struct {
	ctx    context.Context
	method string
	close  bool // the request asked to close the connection
	// write puts the whole request on the connection; again is set when
	// it is repeated on a fresh connection.
	write func(bw *bufio.Writer, again bool) error
	// request is the answer's Request, or nil for one with only method.
	request *http.Request
}

// exchange is roundTrip for a request given as a writer.
func (cp *connPool) exchange(x exchange, u *upstream) (*http.Response, bool, error) {
	// A request that must not be repeated looks at a kept-alive
	// connection before using it; one that may is repeated instead.
	retryable := idempotent(x.method)
	for attempt := 0; ; attempt++ {
		pc := cp.get(u)
		for pc != nil && !retryable && closedByPeer(pc.raw) {
			pc.close()
			pc = cp.get(u)
		}
		reused := pc != nil
		if pc == nil {
			var err error
			if pc, err = cp.connect(x.ctx, u); err != nil {
				return nil, false, err
			}
		}
		res, err := cp.send(pc, x, attempt > 0)
		if err == nil {
			return res, reused, nil
		}
		var stale staleError
		if !reused || !retryable || attempt > 0 || !errors.As(err, &stale) || x.ctx.Err() != nil {
			return nil, reused, err
		}
	}
}

// methodRequests stand for requests whose answer is read with only the
// method known (http.ReadResponse needs it for HEAD).
var methodRequests = map[string]*http.Request{}

func init() {
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions} {
		methodRequests[m] = &http.Request{Method: m}
	}
}

// answerRequest is the Request given to http.ReadResponse.
func (x *exchange) answerRequest() *http.Request {
	if x.request != nil {
		return x.request
	}
	if r := methodRequests[x.method]; r != nil {
		return r
	}
	return &http.Request{Method: x.method}
}

// get takes the most recently used idle connection to u that has not been
// idle too long.
func (cp *connPool) get(u *upstream) *pconn {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	list := cp.idle[u]
	oldest := cp.now().Add(-cp.idleTimeout)
	for len(list) > 0 {
		pc := list[len(list)-1]
		list[len(list)-1] = nil
		list = list[:len(list)-1]
		if pc.idleAt.After(oldest) {
			cp.idle[u] = list
			return pc
		}
		pc.close()
	}
	cp.idle[u] = list
	return nil
}

// put returns a connection whose exchange ended cleanly.
func (cp *connPool) put(pc *pconn) {
	pc.idleAt = cp.now()
	cp.mu.Lock()
	if cp.closed || len(cp.idle[pc.up]) >= cp.maxIdle {
		cp.mu.Unlock()
		pc.close()
		return
	}
	cp.idle[pc.up] = append(cp.idle[pc.up], pc)
	cp.mu.Unlock()
}

// prune closes connections idle longer than the idle timeout.
func (cp *connPool) prune() {
	oldest := cp.now().Add(-cp.idleTimeout)
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for u, list := range cp.idle {
		keep := list[:0]
		for _, pc := range list {
			if pc.idleAt.After(oldest) {
				keep = append(keep, pc)
			} else {
				pc.close()
			}
		}
		clear(list[len(keep):])
		cp.idle[u] = keep
	}
}

// closeIdle closes every idle connection; with stop, later ones too.
func (cp *connPool) closeIdle(stop bool) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for u, list := range cp.idle {
		for _, pc := range list {
			pc.close()
		}
		delete(cp.idle, u)
	}
	if stop {
		cp.closed = true
	}
}

// idleCount is the number of idle connections to u.
func (cp *connPool) idleCount(u *upstream) int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return len(cp.idle[u])
}

// connect dials u, with TLS for https.
func (cp *connPool) connect(ctx context.Context, u *upstream) (*pconn, error) {
	addr := u.url.Host
	if u.url.Port() == "" {
		if u.url.Scheme == "https" {
			addr = net.JoinHostPort(u.url.Hostname(), "443")
		} else {
			addr = net.JoinHostPort(u.url.Hostname(), "80")
		}
	}
	raw, err := cp.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	pc := &pconn{up: u, raw: raw, conn: raw}
	if u.url.Scheme == "https" {
		cfg := cp.tls
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName = u.url.Hostname()
		}
		tc := tls.Client(raw, cfg)
		hctx, cancel := context.WithTimeout(ctx, cp.handshakeTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = raw.Close()
			return nil, fmt.Errorf("TLS handshake with %s: %w", u.key, err)
		}
		pc.conn = tc
	}
	pc.br = bufio.NewReaderSize(pc, poolBufferSize)
	pc.bw = bufio.NewWriterSize(pc.conn, poolBufferSize)
	return pc, nil
}

// send writes req on pc and reads the head of the answer. The body stays
// on the connection, which returns to the pool once it has been read to
// its end.
func (cp *connPool) send(pc *pconn, x exchange, again bool) (*http.Response, error) {
	ctx := x.ctx
	// Cancelling the request closes the connection, which ends any write
	// or read under way; such a connection is never pooled again.
	stop := context.AfterFunc(ctx, pc.close)
	// The connection's timer bounds the wait for the head; it is armed
	// once the request is written. A timer rather than a read deadline:
	// setting and clearing a deadline costs two poller updates per request.
	var timer *time.Timer
	fail := func(err error) (*http.Response, error) {
		stop()
		pc.close()
		if timer != nil && pc.timedOut.Load() {
			return nil, fmt.Errorf("no answer from %s within %s: %w", pc.up.key, cp.headerTimeout, os.ErrDeadlineExceeded)
		}
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("%w (%w)", cerr, err)
		}
		return nil, err
	}
	if err := x.write(pc.bw, again); err != nil {
		return fail(maybeStale(err))
	}
	if err := pc.bw.Flush(); err != nil {
		return fail(maybeStale(err))
	}
	if cp.headerTimeout > 0 {
		if pc.timer == nil {
			pc.timer = time.AfterFunc(cp.headerTimeout, func() { pc.timedOut.Store(true); pc.close() })
		} else {
			pc.timer.Reset(cp.headerTimeout)
		}
		timer = pc.timer
	}
	pc.limit = maxResponseHeaderBytes
	if _, err := pc.br.Peek(1); err != nil {
		return fail(maybeStale(err))
	}
	var res *http.Response
	for n := 0; ; n++ {
		var err error
		res, err = http.ReadResponse(pc.br, x.answerRequest())
		if err != nil {
			return fail(err)
		}
		// 1xx other than 101 precede the real answer (100 Continue, 103
		// Early Hints); they are not passed on.
		if res.StatusCode >= 200 || res.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		if n == max1xx {
			return fail(fmt.Errorf("upstream sent more than %d informational answers", max1xx))
		}
	}
	pc.limit = math.MaxInt64
	if timer != nil && !timer.Stop() {
		return fail(os.ErrDeadlineExceeded)
	}
	if res.StatusCode == http.StatusSwitchingProtocols {
		// The connection is the tunnel now (ReverseProxy writes through
		// the body); the request's cancellation still closes it.
		res.Body = &tunnel{pc: pc}
		return res, nil
	}
	b := &pooledBody{cp: cp, pc: pc, body: res.Body, stop: stop, keep: !res.Close && !x.close}
	b.eof = res.Body == http.NoBody
	res.Body = b
	return res, nil
}

// pooledBody is an answer's body; reading it to its end and closing it
// gives its connection back to the pool.
type pooledBody struct {
	cp     *connPool
	pc     *pconn
	body   io.ReadCloser
	stop   func() bool
	keep   bool
	eof    bool
	closed bool
}

func (b *pooledBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// pending is how many bytes of the connection are read and not yet taken.
func (b *pooledBody) pending() int { return b.pc.br.Buffered() }

// Close pools the connection when the body was read to its end, the
// answer allows it and the request was not cancelled; otherwise it closes
// the connection rather than reading the rest (a download the client left).
func (b *pooledBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	if !b.eof {
		b.pc.close()
		_ = b.body.Close()
		b.stop()
		return nil
	}
	err := b.body.Close()
	if b.stop() && b.keep && err == nil && b.pc.br.Buffered() == 0 {
		b.cp.put(b.pc)
		return nil
	}
	b.pc.close()
	return err
}

// tunnel is a switched connection (WebSocket) as ReverseProxy uses it: it
// reads what the pool's reader already buffered first.
type tunnel struct{ pc *pconn }

func (t *tunnel) Read(p []byte) (int, error)  { return t.pc.br.Read(p) }
func (t *tunnel) Write(p []byte) (int, error) { return t.pc.conn.Write(p) }
func (t *tunnel) Close() error                { return t.pc.raw.Close() }
