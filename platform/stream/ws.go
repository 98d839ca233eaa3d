package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/elph-server/elph/platform/auth"
	"github.com/elph-server/elph/platform/httpx"
)

// Subprotocol is the WebSocket subprotocol of this protocol version.
const Subprotocol = "elph.v1"

// bearerProtocolPrefix marks the subprotocol that carries a browser's
// access token: "bearer.<token>".
const bearerProtocolPrefix = "bearer."

// Close codes the server sends (see the package documentation).
const (
	closeGoingAway = websocket.StatusGoingAway
	closeInternal  = websocket.StatusInternalError
	closeRevoked   = websocket.StatusCode(4001)
	closeTooSlow   = websocket.StatusCode(4008)
)

// maxPendingPongs bounds the client pings waiting for their pong.
const maxPendingPongs = 8

// replayPage is how many events a connection reads from the database at a
// time when it catches up.
const replayPage = 500

func (s *Stream) serveWS(w http.ResponseWriter, r *http.Request) {
	if err := s.checkOrigin(r); err != nil {
		httpx.Logger(r.Context()).DebugContext(r.Context(), "stream: origin refused", "err", err)
		httpx.WriteError(w, r, httpx.Errorf(http.StatusForbidden, httpx.CodeForbidden, "origin not allowed"))
		return
	}
	p, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	since, err := parseSince(r.URL.Query().Get("since"))
	if err != nil {
		httpx.WriteError(w, r, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "since must be a sequence number (0 or more)"))
		return
	}
	if !s.beginHandler() {
		httpx.WriteError(w, r, httpx.Errorf(http.StatusServiceUnavailable, httpx.CodeUnavailable, "event stream not running"))
		return
	}
	defer s.handlers.Done()

	draining, trackDone := httpx.TrackLongLived(r)
	defer trackDone()
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols: []string{Subprotocol},
		// checkOrigin above did the same check with JSON answers.
		InsecureSkipVerify: true,
	})
	if err != nil {
		// Accept has answered (not a WebSocket handshake, hijack failed).
		httpx.Logger(r.Context()).DebugContext(r.Context(), "stream: upgrade failed", "err", err)
		return
	}
	// One byte more than a client may send, so an oversized frame reaches
	// our own check (and its close reason) before the library's limit.
	ws.SetReadLimit(MaxClientFrameBytes + 1)

	// The request's context must not bound the connection after the
	// hijack; keep its values (logger) only.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	c := &conn{
		s:         s,
		ws:        ws,
		id:        s.nextConn.Add(1),
		userID:    p.UserID,
		sessionID: p.SessionID,
		log:       s.log.With("user_id", p.UserID, "request_id", httpx.RequestID(r.Context())),
		ctx:       ctx,
		cancel:    cancel,
		live:      make(chan liveEvent, s.o.SendBuffer),
		signals:   make(chan []byte, s.o.SendBuffer),
		pong:      make(chan struct{}, maxPendingPongs),
		done:      make(chan struct{}),
	}
	// Registered before the backlog is read: every event committed from
	// here on is either read by the catch-up or announced to c.
	if !s.hub.add(c) {
		c.kill(closeGoingAway, "server shutting down")
		c.closeWS()
		return
	}
	defer s.hub.remove(c)
	c.notifyOpened()
	defer c.notifyClosed()
	var revoked <-chan struct{}
	if s.o.Revocations != nil {
		ch, unregister := s.o.Revocations.Done(p.SessionID)
		defer unregister()
		revoked = ch
	}
	c.log.Debug("stream: connected", "since", since)

	var wg sync.WaitGroup
	wg.Go(c.readLoop)
	wg.Go(c.pingLoop)
	wg.Go(func() { c.watch(draining, revoked) })
	c.run(since)
	c.drop("writer finished") // a no-op unless run ended without a reason
	c.closeWS()
	wg.Wait()
	c.log.Debug("stream: disconnected", "code", int(c.code), "reason", c.reason, "last_sent", c.lastSent)
}

// authenticate verifies the request's access token and answers 401
// itself when there is none or it is not good.
func (s *Stream) authenticate(w http.ResponseWriter, r *http.Request) (*auth.Principal, bool) {
	token, err := bearerToken(r)
	if err != nil {
		// RFC 6750 §3.1: no error code when no credentials were sent.
		unauthorized(w, r, "Bearer", err.Error())
		return nil, false
	}
	p, err := s.o.Verifier.Verify(r.Context(), token)
	if err == nil && s.o.Revocations != nil && s.o.Revocations.IsRevoked(p.SessionID) {
		err = fmt.Errorf("%w: session %s", auth.ErrRevoked, p.SessionID)
	}
	if err != nil {
		// The reason helps an operator, not a client (nor a prober).
		httpx.Logger(r.Context()).DebugContext(r.Context(), "stream: access token rejected", "err", err)
		switch {
		case errors.Is(err, auth.ErrExpiredToken):
			unauthorized(w, r, `Bearer error="invalid_token", error_description="the access token expired"`, "access token expired")
		case errors.Is(err, auth.ErrRevoked):
			unauthorized(w, r, `Bearer error="invalid_token", error_description="the session was revoked"`, "session revoked")
		default:
			unauthorized(w, r, `Bearer error="invalid_token"`, "invalid access token")
		}
		return nil, false
	}
	return p, true
}

func unauthorized(w http.ResponseWriter, r *http.Request, challenge, message string) {
	w.Header().Set("WWW-Authenticate", challenge)
	httpx.WriteError(w, r, httpx.Errorf(http.StatusUnauthorized, httpx.CodeUnauthorized, "%s", message))
}

// bearerToken finds the access token: the Authorization header, else a
// "bearer.<token>" subprotocol (browsers), else ?access_token=.
func bearerToken(r *http.Request) (string, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, token, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return "", errors.New("authorization scheme must be Bearer")
		}
		if token = strings.TrimSpace(token); token == "" {
			return "", errors.New("missing bearer token")
		}
		return token, nil
	}
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if token, ok := strings.CutPrefix(strings.TrimSpace(p), bearerProtocolPrefix); ok && token != "" {
				return token, nil
			}
		}
	}
	if token := r.URL.Query().Get("access_token"); token != "" {
		return token, nil
	}
	return "", errors.New("missing bearer token")
}

// checkOrigin accepts requests without an Origin (native clients), from
// the server's own host, and from OriginPatterns. Browsers always send
// Origin on a WebSocket handshake, so this is what stops another site's
// page from using a token it got hold of through the user's browser.
func (s *Stream) checkOrigin(r *http.Request) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return fmt.Errorf("malformed Origin %q", origin)
	}
	if strings.EqualFold(u.Host, r.Host) {
		return nil
	}
	for _, p := range s.o.OriginPatterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(target)); ok {
			return nil
		}
	}
	return fmt.Errorf("origin %q not allowed for host %q", origin, r.Host)
}

func parseSince(v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad since %q", v)
	}
	return n, nil
}

// Connection modes, for offerLive's decision on a full queue.
const (
	modeReplay       int32 = iota // catching up from the database
	modeReplayMissed              // catching up, and an announcement was dropped
	modeLive                      // sending announced events
)

// liveEvent is an appended event announced on the bus: its sequence and
// its frame, ready to write.
type liveEvent struct {
	seq   int64
	frame []byte
}

// conn is one client's WebSocket. Four goroutines serve it: run (the
// handler's own) is the only writer of data frames and owns lastSent;
// readLoop reads client frames; pingLoop pings; watch turns server drain
// and session revocation into a close. Whoever decides the connection
// must end calls end (through kill or drop): the first reason wins, done
// is closed, and run closes the socket with that reason.
type conn struct {
	s         *Stream
	ws        *websocket.Conn
	id        uint64
	userID    int64
	sessionID string
	log       *slog.Logger
	ctx       context.Context // cancelled when the connection ends; bounds database reads
	cancel    context.CancelFunc

	live    chan liveEvent // announced events; see offerLive for when it is full
	mode    atomic.Int32   // modeReplay, modeReplayMissed or modeLive
	signals chan []byte    // signal frames; full means drop the signal
	pong    chan struct{}  // one per client ping waiting for its pong

	once   sync.Once
	done   chan struct{}
	code   websocket.StatusCode // set once, before done is closed
	reason string
	abrupt bool // close without a handshake: the peer is gone or unresponsive

	lastSent int64        // the last event sent; run's goroutine only
	sent     atomic.Int64 // lastSent for offerLive, to skip stale announcements
}

func (c *conn) setLastSent(seq int64) {
	c.lastSent = seq
	c.sent.Store(seq)
}

// end records why the connection ends, the first time it is called, and
// reports whether this call was the first.
func (c *conn) end(code websocket.StatusCode, reason string, abrupt bool) bool {
	first := false
	c.once.Do(func() {
		c.code, c.reason, c.abrupt = code, reason, abrupt
		first = true
		close(c.done)
		c.cancel()
	})
	return first
}

// kill ends the connection with a close frame.
func (c *conn) kill(code websocket.StatusCode, reason string) bool {
	return c.end(code, reason, false)
}

// drop ends the connection without a close handshake.
func (c *conn) drop(why string) bool {
	return c.end(0, why, true)
}

// cut closes the socket at once; Stop uses it when its deadline passes.
func (c *conn) cut() {
	c.drop("stream stopped")
	_ = c.ws.CloseNow()
}

// fail ends the connection after a server-side error.
func (c *conn) fail(err error) {
	if c.ctx.Err() != nil {
		return // ending anyway; the error is a consequence
	}
	c.log.Error("stream: connection failed", "err", err)
	c.kill(closeInternal, "internal error")
}

// closeWS closes the socket the way end was asked to. Close waits for the
// client's answer (bounded by the library at 5s each way).
func (c *conn) closeWS() {
	var err error
	if c.abrupt {
		err = c.ws.CloseNow()
	} else {
		err = c.ws.Close(c.code, c.reason)
	}
	if err != nil {
		c.log.Debug("stream: close", "err", err)
	}
}

// offerLive queues an announced event without blocking the bus worker.
//
// When the queue is full: while the connection is catching up from the
// database the announcement is redundant (a later read returns its event)
// and is dropped, noting that the catch-up must read once more before it
// ends; once the connection is live, a full queue means the client reads
// slower than its events arrive, and it is closed with 4008 (it resumes
// from the database when it reconnects).
func (c *conn) offerLive(ev liveEvent) {
	select {
	case <-c.done:
		return
	default:
	}
	if ev.seq <= c.sent.Load() {
		return // already sent from the database; needs no room in the queue
	}
	select {
	case c.live <- ev:
		return
	default:
	}
	for {
		switch m := c.mode.Load(); m {
		case modeReplayMissed:
			return
		case modeReplay:
			if c.mode.CompareAndSwap(m, modeReplayMissed) {
				return
			}
		default:
			if c.kill(closeTooSlow, "too slow") {
				c.s.met.slowDisconnects.Inc()
				c.log.Info("stream: send queue full, disconnecting slow client", "queue", cap(c.live))
			}
			return
		}
	}
}

// offerSignal queues a signal frame, or drops it when the queue is full.
func (c *conn) offerSignal(frame []byte) {
	select {
	case c.signals <- frame:
	default:
		c.s.met.signalsDropped.Inc()
	}
}

// run writes the hello, the backlog, then live events until the
// connection ends.
//
// The handover from backlog to live events: c was registered with the hub
// before the head is read, so any event committed later is announced to
// it. Every event is handled by sequence: one at or below lastSent was
// already sent (by the catch-up) and is dropped; lastSent+1 is sent as
// announced; anything beyond means a gap (announcements from several
// nodes can overtake each other, or one was lost), which is filled from
// the database (catchUp). Announcements are published after commit, so
// the database always has what they name.
func (c *conn) run(since int64) {
	h, err := c.s.head(c.ctx, c.userID)
	if err != nil {
		c.fail(err)
		return
	}
	if !c.sendJSON(helloFrame{Type: frameHello, Seq: h.Last, Oldest: h.Oldest}) {
		return
	}
	c.setLastSent(since)
	if since > h.Last || since < h.Oldest-1 {
		if !c.resync(h.Last) {
			return
		}
	}
	if !c.catchUp() {
		return
	}

	// The periodic check against the database is the safety net for an
	// announcement that never came (a node that died between commit and
	// publish, a bus that refused it): without it the client would not
	// see that event until the user's next one.
	check := time.NewTicker(c.s.o.PingInterval)
	defer check.Stop()
	for {
		select {
		case <-c.done:
			return
		case ev := <-c.live:
			if !c.onLive(ev) {
				return
			}
		case f := <-c.signals:
			if !c.send(f) {
				return
			}
		case <-c.pong:
			if !c.send([]byte(pongFrame)) {
				return
			}
		case <-check.C:
			h, err := c.s.head(c.ctx, c.userID)
			if err != nil {
				c.fail(err)
				return
			}
			if h.Last != c.lastSent && !c.catchUp() {
				return
			}
		}
	}
}

func (c *conn) onLive(ev liveEvent) bool {
	switch {
	case ev.seq <= c.lastSent:
		return true
	case ev.seq == c.lastSent+1:
		if !c.send(ev.frame) {
			return false
		}
		c.setLastSent(ev.seq)
		c.s.met.delivered.Inc()
		return true
	default:
		return c.catchUp()
	}
}

// catchUp sends every stored event after lastSent and switches the
// connection to live mode once nothing it may have missed is left.
//
// While it reads, the connection is in replay mode, in which announcements
// that do not fit the queue are dropped (see offerLive). After the last
// page it sends what is queued in order; then it switches to live mode,
// unless an announcement was dropped since it started: that event may be
// newer than its last read, so it reads again. The switch and the drop
// are decided on the one atomic mode, so no announcement falls between
// them.
func (c *conn) catchUp() bool {
	c.mode.Store(modeReplay)
	for {
		if !c.readBacklog() {
			return false
		}
		gap, ok := c.flushQueued()
		if !ok {
			return false
		}
		if gap {
			continue
		}
		if c.mode.CompareAndSwap(modeReplay, modeLive) {
			return true
		}
		c.mode.Store(modeReplay)
	}
}

// readBacklog sends the stored events after lastSent, page by page, until
// a page comes back short: then the client has everything committed
// before that read.
func (c *conn) readBacklog() bool {
	for {
		// Announcements queued so far name events committed before this
		// read, which will return them (or a later page will): drop them
		// so a long replay does not fill the queue.
		c.drainLive()
		evs, err := c.s.Since(c.ctx, c.userID, c.lastSent, replayPage)
		if errors.Is(err, ErrResync) {
			// Retention overtook the client, or it came with a position
			// this server never had.
			h, err := c.s.head(c.ctx, c.userID)
			if err != nil {
				c.fail(err)
				return false
			}
			if !c.resync(h.Last) {
				return false
			}
			continue
		}
		if err != nil {
			c.fail(err)
			return false
		}
		for _, ev := range evs {
			frame, err := json.Marshal(ev)
			if err != nil {
				c.fail(fmt.Errorf("stream: encode event %d: %w", ev.Seq, err))
				return false
			}
			if !c.send(frame) {
				return false
			}
			c.setLastSent(ev.Seq)
			c.s.met.delivered.Inc()
			c.s.met.replayed.Inc()
		}
		if len(evs) < replayPage {
			return true
		}
	}
}

// flushQueued sends the queued announcements that continue the stream,
// without waiting for more. gap reports one that does not: the database
// must be read again.
func (c *conn) flushQueued() (gap, ok bool) {
	for {
		select {
		case ev := <-c.live:
			switch {
			case ev.seq <= c.lastSent:
			case ev.seq == c.lastSent+1:
				if !c.send(ev.frame) {
					return false, false
				}
				c.setLastSent(ev.seq)
				c.s.met.delivered.Inc()
			default:
				return true, true
			}
		default:
			return false, true
		}
	}
}

func (c *conn) drainLive() {
	for {
		select {
		case <-c.live:
		default:
			return
		}
	}
}

func (c *conn) resync(last int64) bool {
	c.s.met.resyncs.Inc()
	if !c.sendJSON(resyncFrame{Type: frameResync, Seq: last}) {
		return false
	}
	c.setLastSent(last)
	return true
}

func (c *conn) sendJSON(v any) bool {
	b, err := json.Marshal(v)
	if err != nil {
		c.fail(fmt.Errorf("stream: encode frame: %w", err))
		return false
	}
	return c.send(b)
}

// send writes one frame, unless the connection is ending: once a close
// reason is set nothing but the close frame may follow.
func (c *conn) send(frame []byte) bool {
	select {
	case <-c.done:
		return false
	default:
	}
	// Not bounded by c.ctx: cancelling a write makes the library cut the
	// connection, and a write under way when a close reason arrives must
	// finish so the close frame can follow it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), c.s.o.WriteTimeout)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, frame); err != nil {
		if c.drop("write failed") {
			c.log.Debug("stream: write failed", "err", err)
		}
		return false
	}
	return true
}

// readLoop reads the client's frames. It must keep reading for the
// library to answer pings and complete the close handshake.
func (c *conn) readLoop() {
	// Not c.ctx: a cancelled read cuts the connection before the close
	// frame could be sent. Close (or the peer) ends the read.
	ctx := context.WithoutCancel(c.ctx)
	for {
		typ, r, err := c.ws.Reader(ctx)
		if err != nil {
			// The peer closed or vanished, or our own close completed.
			c.drop("read ended")
			return
		}
		b, err := io.ReadAll(io.LimitReader(r, MaxClientFrameBytes+1))
		if err != nil {
			c.drop("read ended")
			return
		}
		if typ != websocket.MessageText {
			c.kill(websocket.StatusUnsupportedData, "binary frames are not supported")
			return
		}
		if len(b) > MaxClientFrameBytes {
			c.kill(websocket.StatusMessageTooBig, "frame larger than 4096 bytes")
			return
		}
		f, err := DecodeClientFrame(b)
		if err != nil {
			c.kill(websocket.StatusInvalidFramePayloadData, "frame is not a UTF-8 JSON object")
			return
		}
		switch f.Type {
		case clientPing:
			select {
			case c.pong <- struct{}{}:
			default: // a client flooding pings gets fewer pongs, not more memory
			}
		default:
			if !c.dispatchFrame(f) {
				c.log.Debug("stream: ignoring client frame", "type", clip(f.Type, 64))
			}
		}
	}
}

// pingLoop sends WebSocket pings; a client that does not answer within
// WriteTimeout is gone (or not reading) and is dropped.
func (c *conn) pingLoop() {
	t := time.NewTicker(c.s.o.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), c.s.o.WriteTimeout)
			err := c.ws.Ping(ctx)
			cancel()
			if err != nil {
				if c.drop("no pong") {
					c.log.Debug("stream: ping failed", "err", err)
				}
				return
			}
		}
	}
}

// watch ends the connection when the server drains or the session is
// revoked. Either channel may be nil.
func (c *conn) watch(draining, revoked <-chan struct{}) {
	select {
	case <-draining:
		c.kill(closeGoingAway, "server shutting down")
	case <-revoked:
		c.kill(closeRevoked, "session revoked")
	case <-c.done:
	}
}

// clip cuts s to at most n bytes for logging.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
