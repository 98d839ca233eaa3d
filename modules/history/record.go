package history

import (
	"time"
)

// Results of a call record.
const (
	ResultAnswered   = "answered"
	ResultMissed     = "missed"
	ResultRejected   = "rejected"
	ResultBusy       = "busy"
	ResultFailed     = "failed"
	ResultCancelled  = "cancelled"
	ResultInProgress = "in_progress"
)

// Call is one call record of one user, as the API shows it.
type Call struct {
	ID     int64  `json:"id"`
	CallID string `json:"call_id"`
	// Direction is "inbound" or "outbound"; "" while the call.started
	// event has not arrived (then the numbers are empty too).
	Direction   string `json:"direction"`
	LocalNumber string `json:"local_number"`
	PeerNumber  string `json:"peer_number"`
	PeerName    string `json:"peer_name"`
	// StartedAt is call.started's time, or the earliest time of the call
	// seen so far while call.started has not arrived.
	StartedAt  time.Time  `json:"started_at"`
	RingingAt  *time.Time `json:"ringing_at,omitempty"`
	AnsweredAt *time.Time `json:"answered_at,omitempty"`
	EndedAt    *time.Time `json:"ended_at,omitempty"`
	// DurationSeconds is the talk time, from answer to end; 0 when the
	// call was not answered or has not ended.
	DurationSeconds int64  `json:"duration_seconds"`
	Result          string `json:"result"`
	// Seen is whether a missed call was marked seen; false for other
	// results.
	Seen bool `json:"seen"`

	userID  int64
	cause   string
	deleted bool
}

// apply merges ev into c, which is the zero Call (with CallID and userID
// set) for a new record, and reports whether anything changed. Merging is
// commutative and idempotent, so duplicates and any order of arrival give
// the same record: each time keeps the earliest value seen, call.started's
// details win over nothing, and the result and duration are derived from
// the merged state.
func (c *Call) apply(ev CallEvent) bool {
	before := *c
	at := ev.At
	switch ev.Topic {
	case TopicCallStarted:
		if c.Direction == "" {
			c.Direction, c.LocalNumber, c.PeerNumber, c.PeerName = ev.Direction, ev.LocalNumber, ev.PeerNumber, ev.PeerName
			// call.started's time is the start, even when a later event
			// with a skewed clock arrived first.
			c.StartedAt = at
		} else if at.Before(c.StartedAt) {
			c.StartedAt = at
		}
		if c.PeerName == "" && ev.PeerName != "" {
			// A duplicate from a source that knows the name.
			c.PeerName = ev.PeerName
		}
	case TopicCallRinging:
		c.RingingAt = earliest(c.RingingAt, at)
	case TopicCallAnswered:
		c.AnsweredAt = earliest(c.AnsweredAt, at)
	case TopicCallEnded:
		if c.EndedAt == nil || at.Before(*c.EndedAt) {
			c.EndedAt, c.cause = &at, ev.Cause
		}
	}
	if c.Direction == "" && (c.StartedAt.IsZero() || at.Before(c.StartedAt)) {
		c.StartedAt = at
	}
	c.derive()
	return !c.equal(before)
}

// derive sets the result and the duration from the times and the cause.
func (c *Call) derive() {
	c.DurationSeconds = 0
	if c.AnsweredAt != nil && c.EndedAt != nil && c.EndedAt.After(*c.AnsweredAt) {
		c.DurationSeconds = int64(c.EndedAt.Sub(*c.AnsweredAt) / time.Second)
	}
	switch {
	case c.AnsweredAt != nil:
		c.Result = ResultAnswered
	case c.EndedAt == nil:
		c.Result = ResultInProgress
	case c.Direction == DirectionInbound:
		c.Result = inboundResult(c.cause)
	default:
		// Outbound, or not known yet: then the result is provisional and
		// is derived again when call.started arrives. Not "missed", so no
		// missed-call push goes out for a call that may be outbound.
		c.Result = outboundResult(c.cause)
	}
	if c.Result != ResultMissed {
		c.Seen = false
	}
}

// inboundResult is the result of an inbound call that ended unanswered.
func inboundResult(cause string) string {
	switch cause {
	case CauseRejected:
		return ResultRejected
	case CauseBusy:
		return ResultBusy
	case CauseFailed:
		return ResultFailed
	}
	// no_answer, cancelled (the caller gave up) and normal (the caller
	// hung up before an answer) are all calls the user missed.
	return ResultMissed
}

// outboundResult is the result of an outbound call that ended unanswered.
func outboundResult(cause string) string {
	switch cause {
	case CauseBusy, CauseRejected:
		// The callee declined: to the caller that is a busy line.
		return ResultBusy
	case CauseFailed:
		return ResultFailed
	}
	// normal, cancelled and no_answer: nobody picked up.
	return ResultCancelled
}

func earliest(t *time.Time, at time.Time) *time.Time {
	if t == nil || at.Before(*t) {
		return &at
	}
	return t
}

func (c *Call) equal(o Call) bool {
	return c.Direction == o.Direction && c.LocalNumber == o.LocalNumber && c.PeerNumber == o.PeerNumber &&
		c.PeerName == o.PeerName && c.StartedAt.Equal(o.StartedAt) && sameTime(c.RingingAt, o.RingingAt) &&
		sameTime(c.AnsweredAt, o.AnsweredAt) && sameTime(c.EndedAt, o.EndedAt) && c.cause == o.cause &&
		c.DurationSeconds == o.DurationSeconds && c.Result == o.Result && c.Seen == o.Seen
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}
