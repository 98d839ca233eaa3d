package httpx

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// ServerOptions configure one listener.
type ServerOptions struct {
	Name              string // listener name in logs and metrics
	Addr              string // host:port; port 0 picks a free one
	Handler           http.Handler
	TLS               *tls.Config // nil: plaintext
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	Logger            *slog.Logger
	Metrics           *Metrics
	// WrapListener, when set, wraps the bound TCP listener before TLS
	// (per-client connection limits count raw connections).
	WrapListener func(net.Listener) net.Listener
}

// Server is an HTTP listener that drains gracefully: on Shutdown it stops
// accepting, tells long-lived handlers (WebSockets) to finish through
// TrackLongLived, and waits for them and for in-flight requests up to the
// caller's deadline, then closes what is left.
type Server struct {
	o        ServerOptions
	srv      *http.Server
	ln       net.Listener
	drain    *drain
	served   chan struct{} // closed when Serve has returned
	serveErr error         // what Serve returned, read after served is closed
}

// drain is what a long-lived handler needs to know about its listener.
type drain struct {
	ch   chan struct{}
	once sync.Once
	gone func(delta float64)

	mu      sync.Mutex
	active  map[*longLived]struct{}
	changed chan struct{} // closed (and replaced) whenever a handler finishes
}

// longLived is one tracked handler and the connection it serves, which
// Shutdown closes itself once the deadline passes: http.Server.Close does
// not know about hijacked connections such as WebSockets.
type longLived struct{ conn net.Conn }

func (d *drain) track(conn net.Conn) (done func()) {
	e := &longLived{conn: conn}
	d.mu.Lock()
	d.active[e] = struct{}{}
	d.mu.Unlock()
	d.gone(1)
	var once sync.Once
	return func() {
		once.Do(func() {
			d.mu.Lock()
			delete(d.active, e)
			close(d.changed)
			d.changed = make(chan struct{})
			d.mu.Unlock()
			d.gone(-1)
		})
	}
}

// wait returns nil once no tracked handler is left, or ctx's error.
func (d *drain) wait(ctx context.Context) error {
	for {
		d.mu.Lock()
		n, changed := len(d.active), d.changed
		d.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// closeConns closes the connections of the handlers still running.
func (d *drain) closeConns() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for e := range d.active {
		if e.conn != nil {
			_ = e.conn.Close()
		}
	}
}

// NewServer prepares a listener; Start binds it.
func NewServer(o ServerOptions) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	d := &drain{ch: make(chan struct{}), gone: func(float64) {}, active: make(map[*longLived]struct{}), changed: make(chan struct{})}
	if o.Metrics != nil {
		g := o.Metrics.longLive.WithLabelValues(o.Name)
		d.gone = g.Add
	}
	s := &Server{o: o, drain: d, served: make(chan struct{})}
	s.srv = &http.Server{
		Handler:           o.Handler,
		TLSConfig:         o.TLS,
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    o.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
		BaseContext: func(net.Listener) context.Context {
			return context.WithValue(context.Background(), keyDrain, d)
		},
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, keyConn, c)
		},
	}
	return s
}

// Start binds the address (so a port conflict fails start-up, not later)
// and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.o.Addr)
	if err != nil {
		return fmt.Errorf("listener %s: %w", s.o.Name, err)
	}
	s.ln = ln
	if s.o.WrapListener != nil {
		ln = s.o.WrapListener(ln)
	}
	if s.o.TLS != nil {
		ln = tls.NewListener(ln, s.o.TLS)
	}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.serveErr = err
		close(s.served)
	}()
	scheme := "http"
	if s.o.TLS != nil {
		scheme = "https"
	}
	s.o.Logger.Info("listening", "listener", s.o.Name, "addr", s.ln.Addr().String(), "scheme", scheme)
	return nil
}

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Name is the listener's name.
func (s *Server) Name() string { return s.o.Name }

// Shutdown drains the listener until ctx is done, then closes it.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.ln == nil {
		return nil
	}
	s.drain.once.Do(func() { close(s.drain.ch) })
	err := s.srv.Shutdown(ctx)
	if werr := s.drain.wait(ctx); err == nil {
		err = werr
	}
	if err != nil {
		// Deadline passed: cut what is left rather than hang the process.
		_ = s.srv.Close()
		s.drain.closeConns()
		return fmt.Errorf("listener %s did not drain in time: %w", s.o.Name, err)
	}
	<-s.served
	if s.serveErr != nil {
		return fmt.Errorf("listener %s: %w", s.o.Name, s.serveErr)
	}
	return nil
}

// TrackLongLived registers a long-lived handler (a WebSocket, a stream)
// with its listener's drain. The handler must select on draining and finish
// (for a WebSocket: close with status 1001, going away) when it is closed,
// and call done when it returns. Shutdown waits for every tracked handler.
// Outside a Server, draining never closes and done does nothing.
func TrackLongLived(r *http.Request) (draining <-chan struct{}, done func()) {
	d, ok := r.Context().Value(keyDrain).(*drain)
	if !ok {
		return nil, func() {}
	}
	conn, _ := r.Context().Value(keyConn).(net.Conn)
	return d.ch, d.track(conn)
}
