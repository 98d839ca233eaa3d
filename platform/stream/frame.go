package stream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxClientFrameBytes bounds a frame a client may send. Clients only send
// small control frames; anything larger is a broken or hostile client.
const MaxClientFrameBytes = 4096

// Errors of DecodeClientFrame.
var (
	ErrFrameTooLarge = errors.New("stream: client frame too large")
	ErrInvalidFrame  = errors.New("stream: client frame is not a JSON object")
)

// ClientFrame is a frame a client sends. Only "type" and "data" are read;
// other fields are allowed (and ignored) so clients can add to frames
// without breaking older servers.
type ClientFrame struct {
	Type string
	Data json.RawMessage // the "data" member, for a Listener; nil when absent
}

// Client frame types the server understands.
const clientPing = "ping"

// DecodeClientFrame parses a client's text frame: at most
// MaxClientFrameBytes of UTF-8 holding one JSON object whose "type", when
// present, is a string. A missing type decodes as "".
func DecodeClientFrame(b []byte) (ClientFrame, error) {
	if len(b) > MaxClientFrameBytes {
		return ClientFrame{}, fmt.Errorf("%w: %d bytes (max %d)", ErrFrameTooLarge, len(b), MaxClientFrameBytes)
	}
	// encoding/json lets invalid UTF-8 through inside strings; a text
	// frame must not hold any.
	if !utf8.Valid(b) {
		return ClientFrame{}, fmt.Errorf("%w: invalid UTF-8", ErrInvalidFrame)
	}
	trimmed := bytes.TrimLeft(b, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return ClientFrame{}, fmt.Errorf("%w: not an object", ErrInvalidFrame)
	}
	// A map, not the struct: encoding/json matches struct fields without
	// regard to case, and "TYPE" is not "type".
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return ClientFrame{}, fmt.Errorf("%w: %v", ErrInvalidFrame, err)
	}
	var f ClientFrame
	if raw, ok := m["type"]; ok {
		if err := json.Unmarshal(raw, &f.Type); err != nil {
			return ClientFrame{}, fmt.Errorf("%w: type is not a string", ErrInvalidFrame)
		}
	}
	if raw, ok := m["data"]; ok && string(raw) != "null" {
		f.Data = raw
	}
	return f, nil
}

// Server frame types besides events.
const (
	frameHello  = "hello"
	frameResync = "resync"
	frameSignal = "signal"
)

type helloFrame struct {
	Type   string `json:"type"`
	Seq    int64  `json:"seq"`
	Oldest int64  `json:"oldest"`
}

type resyncFrame struct {
	Type string `json:"type"`
	Seq  int64  `json:"seq"`
}

type signalFrame struct {
	Type   string          `json:"type"`
	Signal string          `json:"signal"`
	Data   json.RawMessage `json:"data"`
}

// pongFrame answers a client ping.
const pongFrame = `{"type":"pong"}`
