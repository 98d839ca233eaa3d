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
	serveErr chan error
}

// drain is what a long-lived handler needs to know about its listener.
type drain struct {
	ch   chan struct{}
	once sync.Once
	wg   sync.WaitGroup
	gone func(delta float64)
}

// NewServer prepares a listener; Start binds it.
func NewServer(o ServerOptions) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	d := &drain{ch: make(chan struct{}), gone: func(float64) {}}
	if o.Metrics != nil {
		g := o.Metrics.longLive.WithLabelValues(o.Name)
		d.gone = g.Add
	}
	s := &Server{o: o, drain: d, serveErr: make(chan error, 1)}
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
	if s.o.TLS != nil {
		ln = tls.NewListener(ln, s.o.TLS)
	}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.serveErr <- err
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
	waited := make(chan struct{})
	go func() { s.drain.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	if err != nil {
		// Deadline passed: cut what is left rather than hang the process.
		_ = s.srv.Close()
		return fmt.Errorf("listener %s did not drain in time: %w", s.o.Name, err)
	}
	if serr := <-s.serveErr; serr != nil {
		return fmt.Errorf("listener %s: %w", s.o.Name, serr)
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
	d.wg.Add(1)
	d.gone(1)
	var once sync.Once
	return d.ch, func() {
		once.Do(func() {
			d.gone(-1)
			d.wg.Done()
		})
	}
}
