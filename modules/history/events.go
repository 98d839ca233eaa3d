package history

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Topics of the call events the module consumes. The SIP edge and the
// ECSS bridge publish them (key: the call id; payload: a CallEvent).
const (
	TopicCallStarted  = "call.started"
	TopicCallRinging  = "call.ringing"
	TopicCallAnswered = "call.answered"
	TopicCallEnded    = "call.ended"
)

// Topics the module publishes on the bus (key: the user id). The same
// type names the event appended to the user's stream.
const (
	// TopicCallUpdated: a record was created or changed (payload:
	// RecordEvent).
	TopicCallUpdated = "history.call.updated"
	// TopicCallMissed: a record became a missed call, once per record
	// (payload: RecordEvent); push sends the missed-call notification.
	TopicCallMissed = "history.call.missed"
)

// Types of stream-only events, for the user's other devices.
const (
	// TypeCallDeleted: the user deleted a record (data: CallDeleted).
	TypeCallDeleted = "history.call.deleted"
	// TypeMissedSeen: the user marked missed calls seen (data:
	// MissedSeen).
	TypeMissedSeen = "history.missed.seen"
)

// subject is what Start subscribes to: every call event, including ones
// this version does not know (they are counted and skipped).
const subject = "call.>"

// Directions of a call leg, seen from its user.
const (
	DirectionInbound  = "inbound"
	DirectionOutbound = "outbound"
)

// Causes of call.ended.
const (
	CauseNormal    = "normal"
	CauseBusy      = "busy"
	CauseRejected  = "rejected"
	CauseNoAnswer  = "no_answer"
	CauseCancelled = "cancelled"
	CauseFailed    = "failed"
)

// Bounds of the fields of a CallEvent, the widths of their columns.
const (
	MaxCallIDLen    = 128 // bytes
	MaxNumberLen    = 64  // bytes
	MaxPeerNameRune = 255 // characters
)

// CallEvent is the payload of every call.* topic. Which fields a topic
// carries:
//
//	call.started   call_id, user_id, at, direction, local_number, peer_number, peer_name (optional)
//	call.ringing   call_id, user_id, at
//	call.answered  call_id, user_id, at
//	call.ended     call_id, user_id, at, cause
//
// user_id is the Elph user the leg belongs to: a call between two Elph
// users is published as two legs, one per user, with the same call_id.
// Events are delivered at least once and may arrive in any order.
// Unknown fields are ignored, so producers may add some.
type CallEvent struct {
	// Topic is the bus topic the event came on; not part of the JSON.
	Topic       string    `json:"-"`
	CallID      string    `json:"call_id"`
	UserID      int64     `json:"user_id"`
	At          time.Time `json:"at"`
	Direction   string    `json:"direction,omitempty"`
	LocalNumber string    `json:"local_number,omitempty"`
	PeerNumber  string    `json:"peer_number,omitempty"`
	PeerName    string    `json:"peer_name,omitempty"`
	Cause       string    `json:"cause,omitempty"`
}

// ErrInvalidEvent is wrapped by DecodeCallEvent's errors about the
// payload.
var ErrInvalidEvent = errors.New("history: invalid call event")

// ErrUnknownTopic: the topic is not one of the four call events (a newer
// producer's); the event is skipped, not an error of the producer.
var ErrUnknownTopic = errors.New("history: unknown call topic")

// The range of times accepted: outside it a clock is broken, and MySQL's
// datetime could not hold it anyway.
var (
	minEventTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxEventTime = time.Date(9000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// DecodeCallEvent parses and validates the payload of topic. Fields a
// topic does not carry are cleared, so a record only takes from an event
// what that event is about.
func DecodeCallEvent(topic string, payload []byte) (CallEvent, error) {
	switch topic {
	case TopicCallStarted, TopicCallRinging, TopicCallAnswered, TopicCallEnded:
	default:
		return CallEvent{}, fmt.Errorf("%w %q", ErrUnknownTopic, topic)
	}
	var ev CallEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		return CallEvent{}, fmt.Errorf("%w: %s: %v", ErrInvalidEvent, topic, err)
	}
	ev.Topic = topic
	if err := ev.validate(); err != nil {
		return CallEvent{}, fmt.Errorf("%w: %s: %v", ErrInvalidEvent, topic, err)
	}
	return ev, nil
}

func (ev *CallEvent) validate() error {
	switch {
	case ev.CallID == "" || len(ev.CallID) > MaxCallIDLen || !printable(ev.CallID):
		return fmt.Errorf("call_id must be 1 to %d bytes of printable UTF-8", MaxCallIDLen)
	case ev.UserID <= 0:
		return fmt.Errorf("user_id %d is not a user id", ev.UserID)
	case ev.At.Before(minEventTime) || !ev.At.Before(maxEventTime):
		return errors.New("at is missing or out of range")
	}
	ev.At = ev.At.UTC()
	if ev.Topic != TopicCallStarted {
		ev.Direction, ev.LocalNumber, ev.PeerNumber, ev.PeerName = "", "", "", ""
	}
	if ev.Topic != TopicCallEnded {
		ev.Cause = ""
	}
	switch ev.Topic {
	case TopicCallStarted:
		if ev.Direction != DirectionInbound && ev.Direction != DirectionOutbound {
			return fmt.Errorf("direction %q, want %q or %q", clip(ev.Direction), DirectionInbound, DirectionOutbound)
		}
		for _, n := range []string{ev.LocalNumber, ev.PeerNumber} {
			// An empty peer number is a withheld caller id.
			if len(n) > MaxNumberLen || !printable(n) {
				return fmt.Errorf("a number must be at most %d bytes of printable UTF-8", MaxNumberLen)
			}
		}
		if utf8.RuneCountInString(ev.PeerName) > MaxPeerNameRune || !printable(ev.PeerName) {
			return fmt.Errorf("peer_name must be at most %d characters of printable UTF-8", MaxPeerNameRune)
		}
	case TopicCallEnded:
		switch ev.Cause {
		case CauseNormal, CauseBusy, CauseRejected, CauseNoAnswer, CauseCancelled, CauseFailed:
		default:
			return fmt.Errorf("unknown cause %q", clip(ev.Cause))
		}
	}
	return nil
}

// printable reports whether s is valid UTF-8 without control characters:
// what is stored ends up in JSON, CSV and on screens.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || 0x80 <= r && r < 0xa0 {
			return false
		}
	}
	return true
}

// clip shortens a value quoted in an error, which ends up in logs.
func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

// RecordEvent is the payload of history.call.updated and
// history.call.missed on the bus.
type RecordEvent struct {
	UserID int64 `json:"user_id"`
	Call   Call  `json:"call"`
	// UnseenMissed is the user's count of unseen missed calls after the
	// change (the badge a push carries).
	UnseenMissed int `json:"unseen_missed"`
}

// CallDeleted is the data of the history.call.deleted stream event.
type CallDeleted struct {
	ID int64 `json:"id"`
}

// MissedSeen is the data of the history.missed.seen stream event.
type MissedSeen struct {
	// UpToID is the id given to mark seen, 0 for all.
	UpToID       int64 `json:"up_to_id,omitempty"`
	UnseenMissed int   `json:"unseen_missed"`
}
