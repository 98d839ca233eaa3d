package stream

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Conn names one open WebSocket connection of this node to a Listener.
type Conn struct {
	// ID is unique among this node's connections for the life of the
	// process.
	ID        uint64
	UserID    int64
	SessionID string
}

// Listener hears of this node's connections, for modules that keep state
// per connection (status: which devices are online and whom each watches).
// The stream calls it from the connection's own goroutines, so a method
// may block briefly (that connection waits) but must not wait on the
// connection itself. For one connection, Opened comes first, then Frames
// in the order the client sent them, then Closed exactly once.
type Listener interface {
	// Opened: the connection is registered and about to get its hello.
	Opened(c Conn)
	// Frame: the client sent a frame whose type is dotted and starts with
	// the listener's prefix ("status." for Watch("status", l)); data is
	// the frame's "data" member (nil when absent).
	Frame(c Conn, typ string, data json.RawMessage)
	// Closed: the connection ended; no frame of it follows. shutdown is
	// true when it ended because this node is shutting down (close code
	// 1001): the client is about to reconnect, here after a restart or to
	// another node.
	Closed(c Conn, shutdown bool)
}

// Watch registers l for every connection opened from now on, and for the
// client frames whose type starts with prefix + ".". Call it before Start;
// a prefix is taken once.
func (s *Stream) Watch(prefix string, l Listener) error {
	if err := validType(prefix, false); err != nil || strings.Contains(prefix, ".") {
		return fmt.Errorf("%w: listener prefix %q is not one token", ErrInvalidEvent, prefix)
	}
	if l == nil {
		return errors.New("stream: nil listener")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateNew {
		return errors.New("stream: Watch after Start")
	}
	for _, w := range s.listeners {
		if w.prefix == prefix {
			return fmt.Errorf("stream: listener prefix %q taken", prefix)
		}
	}
	s.listeners = append(s.listeners, listener{prefix: prefix, l: l})
	return nil
}

type listener struct {
	prefix string
	l      Listener
}

func (c *conn) info() Conn { return Conn{ID: c.id, UserID: c.userID, SessionID: c.sessionID} }

func (c *conn) notifyOpened() {
	for _, w := range c.s.listeners {
		w.l.Opened(c.info())
	}
}

func (c *conn) notifyClosed() {
	// code is set before done is closed, and the handler calls this
	// after the connection's goroutines are done.
	shutdown := c.code == closeGoingAway
	for _, w := range c.s.listeners {
		w.l.Closed(c.info(), shutdown)
	}
}

// dispatchFrame hands a client frame to the listener of its prefix, and
// reports whether one took it.
func (c *conn) dispatchFrame(f ClientFrame) bool {
	prefix, _, ok := strings.Cut(f.Type, ".")
	if !ok {
		return false
	}
	for _, w := range c.s.listeners {
		if w.prefix == prefix {
			w.l.Frame(c.info(), f.Type, f.Data)
			return true
		}
	}
	return false
}

// SignalLocal is Signal for this node's connections only: a module that
// runs on every node and has already heard of a change on the bus (as
// status does) delivers it to its own node's connections without a second
// trip over the bus.
func (s *Stream) SignalLocal(userIDs []int64, name string, data any) error {
	frame, err := s.signalFrame(name, data)
	if err != nil {
		return err
	}
	for _, uid := range userIDs {
		s.hub.each(uid, func(c *conn) { c.offerSignal(frame) })
	}
	return nil
}

// SignalConns sends a signal to the given connections of this node; those
// that have closed are skipped. The frame is encoded once.
func (s *Stream) SignalConns(conns []Conn, name string, data any) error {
	if len(conns) == 0 {
		return nil
	}
	frame, err := s.signalFrame(name, data)
	if err != nil {
		return err
	}
	for _, target := range conns {
		s.hub.each(target.UserID, func(c *conn) {
			if c.id == target.ID {
				c.offerSignal(frame)
			}
		})
	}
	return nil
}

// signalFrame encodes a signal frame ready to write.
func (s *Stream) signalFrame(name string, data any) ([]byte, error) {
	if err := validType(name, false); err != nil {
		return nil, err
	}
	raw, err := s.encodeData(data)
	if err != nil {
		return nil, err
	}
	frame, err := json.Marshal(signalFrame{Type: frameSignal, Signal: name, Data: raw})
	if err != nil {
		return nil, fmt.Errorf("stream: encode signal %q: %w", name, err)
	}
	return frame, nil
}
