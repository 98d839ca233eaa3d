package bus

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// On the wire an event is one NATS message: the subject is the bus's prefix
// and the topic, the data is the payload as it is (so `nats sub 'elph.>'`
// shows the JSON), and headers carry the rest.
const (
	headerID   = "Elph-Id"
	headerKey  = "Elph-Key"  // absent when the key is empty
	headerTime = "Elph-Time" // RFC 3339 with nanoseconds
)

// encodeMsg builds the message for ev, whose ID and Time are set. ID and Key
// are escaped because nats.go trims header values and turns CR and LF into
// spaces: without it a key with a trailing space or a newline would not
// survive the trip.
func encodeMsg(subject string, ev Event) *nats.Msg {
	h := nats.Header{
		headerID:   {headerEscape(ev.ID)},
		headerTime: {ev.Time.Format(time.RFC3339Nano)},
	}
	if ev.Key != "" {
		h[headerKey] = []string{headerEscape(ev.Key)}
	}
	return &nats.Msg{Subject: subject, Header: h, Data: ev.Payload}
}

// decodeMsg turns a received message back into an event on topic (the
// subject without the prefix). A message that something other than a bus
// published (`nats pub`, another program) may lack the headers: it gets an
// empty key, a new ID and the time it was received, like an event
// published without them. The result is checked like a published event, so
// handlers see the same contract whoever sent it; a malformed header is an
// error rather than a silently different event.
func decodeMsg(topic string, msg *nats.Msg, now func() time.Time) (Event, error) {
	ev := Event{Topic: topic}
	if len(msg.Data) > 0 {
		// nats.go gives each message its own copy of the data, and a
		// subscription's handlers only read it.
		ev.Payload = msg.Data
	}
	var err error
	if ev.ID, err = headerUnescape(msg.Header.Get(headerID)); err != nil {
		return Event{}, fmt.Errorf("bus: %s header: %w", headerID, err)
	}
	if ev.Key, err = headerUnescape(msg.Header.Get(headerKey)); err != nil {
		return Event{}, fmt.Errorf("bus: %s header: %w", headerKey, err)
	}
	if v := msg.Header.Get(headerTime); v != "" {
		if ev.Time, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return Event{}, fmt.Errorf("bus: %s header: %w", headerTime, err)
		}
	}
	if ev.ID == "" {
		ev.ID = newID()
	}
	if ev.Time.IsZero() {
		ev.Time = now().UTC()
	}
	if err := validateEvent(&ev); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// headerEscape percent-encodes the bytes that would not pass through a
// NATS header value unchanged: anything but printable ASCII, and '%'
// itself. Ordinary ids and keys pass as they are.
func headerEscape(s string) string {
	i := 0
	for i < len(s) && headerSafe(s[i]) {
		i++
	}
	if i == len(s) {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 2*(len(s)-i))
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		if c := s[i]; headerSafe(c) {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		}
	}
	return b.String()
}

func headerSafe(c byte) bool {
	return '!' <= c && c <= '~' && c != '%'
}

// headerUnescape reverses headerEscape.
func headerUnescape(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	// PathUnescape decodes %XX and leaves '+' alone, which is exactly the
	// inverse of headerEscape.
	return url.PathUnescape(s)
}
