package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Limits on what an event may carry. They keep one bad publisher from
// exhausting memory, and they fit NATS's defaults (1 MiB max payload) so the
// NATS implementation can enforce the same contract.
const (
	MaxSubjectLen = 255
	MaxKeyLen     = 255
	MaxPayload    = 1 << 20
)

// Errors returned by a Bus. They are wrapped with context (subscriber, topic),
// so compare with errors.Is.
var (
	// ErrBackpressure means a Block subscriber's queue stayed full for the
	// whole publish timeout (or until the caller's context ended), so the
	// event was not queued for it.
	ErrBackpressure = errors.New("bus: backpressure")
	// ErrClosed means the bus has been closed.
	ErrClosed = errors.New("bus: closed")
	// ErrInvalidSubject means a topic or subscription subject is malformed.
	ErrInvalidSubject = errors.New("bus: invalid subject")
	// ErrTooLarge means an event's key or payload exceeds MaxKeyLen or
	// MaxPayload.
	ErrTooLarge = errors.New("bus: too large")
	// ErrDuplicateName means a subscription with that name already exists.
	ErrDuplicateName = errors.New("bus: duplicate subscriber name")
	// ErrUnavailable means the bus cannot carry events right now: the NATS
	// bus is disconnected (reconnecting) and its reconnect buffer is full,
	// or its connection is gone. The in-memory bus never returns it.
	ErrUnavailable = errors.New("bus: unavailable")
)

// Event is one message on the bus.
type Event struct {
	ID      string          // set by Publish when empty (random 128-bit hex)
	Topic   string          // "<module>.<noun>.<verb>", e.g. "chat.message.created"
	Key     string          // ordering key: user, conversation or call id; may be empty (then ordering is per topic)
	Time    time.Time       // set by Publish when zero (UTC)
	Payload json.RawMessage // shared by every subscriber: handlers must not modify it
}

// Handler consumes events for a subscription. A returned error is logged
// and counted; the event is not redelivered, because neither the in-memory
// nor the NATS bus keeps events anywhere durable. Handlers that need
// retries keep their own state in the database.
type Handler func(ctx context.Context, ev Event) error

// Policy says what Publish does when a subscriber's queue is full.
type Policy int

const (
	// Block makes the publisher wait for room in the subscriber's queue up
	// to the publish timeout (or its context), then fail with an error
	// wrapping ErrBackpressure. Events are never dropped silently. This is
	// the default: most events (messages, call state) must not be lost.
	//
	// On the NATS bus the publisher may be on another node, so it cannot
	// be made to wait: the receiving node waits for room up to the publish
	// timeout instead, then drops the event for that subscriber, counts it
	// in elph_bus_backpressure_total and logs it.
	Block Policy = iota
	// DropNewest discards the new event for that subscriber when its queue
	// is full. Only for ephemeral events (typing, presence pings) where a
	// slow consumer must not slow the publisher down.
	DropNewest
)

func (p Policy) String() string {
	switch p {
	case Block:
		return "block"
	case DropNewest:
		return "drop-newest"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// SubscribeOption configures one subscription.
type SubscribeOption func(*subscribeOptions)

type subscribeOptions struct {
	policy    Policy
	queueSize int
	workers   int
	shared    bool
}

// WithPolicy sets what happens when the subscription's queue is full.
func WithPolicy(p Policy) SubscribeOption {
	return func(o *subscribeOptions) { o.policy = p }
}

// WithQueueSize sets the capacity of each worker's queue (n >= 1).
func WithQueueSize(n int) SubscribeOption {
	return func(o *subscribeOptions) { o.queueSize = n }
}

// WithWorkers sets how many goroutines run the handler in parallel (n >= 1).
// Events with the same key always go to the same worker, so per-key order is
// kept while different keys proceed in parallel.
func WithWorkers(n int) SubscribeOption {
	return func(o *subscribeOptions) { o.workers = n }
}

// Shared makes one subscriber of the group handle each event: the
// subscriptions with this name on every node form a NATS queue group. It is
// for work that must happen once per cluster, such as writing call history
// or queuing a push. Order per key holds within a node, not across nodes, so
// a shared handler must tolerate events of one key handled on different
// nodes. Every node's subscription in the group must use the same subject.
// Without Shared every node's subscription gets every event (fan-out). The
// in-memory bus accepts and ignores it: one process is one node.
func Shared() SubscribeOption {
	return func(o *subscribeOptions) { o.shared = true }
}

func (o subscribeOptions) validate() error {
	switch {
	case o.policy != Block && o.policy != DropNewest:
		return fmt.Errorf("unknown policy %v", o.policy)
	case o.queueSize < 1:
		return fmt.Errorf("queue size %d, want at least 1", o.queueSize)
	case o.workers < 1:
		return fmt.Errorf("%d workers, want at least 1", o.workers)
	}
	return nil
}

// Subscription is a registered consumer.
type Subscription interface {
	// Unsubscribe stops delivery; events already queued are still handled
	// (drained) before it returns. It must not be called from the
	// subscription's own handler, which would wait for itself.
	Unsubscribe()
}

// Bus carries events between modules.
type Bus interface {
	// Publish delivers ev to every subscription whose subject matches its
	// topic. It fills in ID and Time when they are empty. It returns once
	// the event is queued for every matching subscriber (or dropped for a
	// DropNewest one); handlers run later in their own goroutines.
	//
	// An error may be partial: when one Block subscriber is full the event
	// is still queued for the others, and the error names the subscriber
	// that missed it. That subscriber then has a gap; later events still
	// reach it in order.
	Publish(ctx context.Context, ev Event) error
	// Subscribe registers a named consumer (name is used in metrics/logs;
	// unique per bus, duplicate -> error) for a subject.
	// Subjects use NATS syntax, so the NATS implementation passes them on
	// as they are: tokens separated by '.', '*' matches exactly one token,
	// '>' (last token only) matches one or more tokens.
	Subscribe(subject, name string, h Handler, opts ...SubscribeOption) (Subscription, error)
	// Ping reports nil when the bus can accept events, ErrClosed after
	// Close, and an error wrapping ErrUnavailable while it cannot carry
	// them (NATS disconnected). Used by /readyz.
	Ping(ctx context.Context) error
	// Close stops accepting publishes (they fail with ErrClosed) and drains
	// every queue until ctx is done; it returns ctx's error if it could not
	// drain in time. Handlers' contexts are cancelled when ctx ends.
	Close(ctx context.Context) error
}

// ValidateTopic reports whether topic is a valid concrete topic for
// Publish: 1..MaxSubjectLen bytes, tokens separated by '.', each token
// non-empty and made of [a-z0-9_-]. Wildcards are not allowed.
// Lower case only, so "Chat.x" and "chat.x" cannot be two topics.
func ValidateTopic(topic string) error {
	return validate(topic, false)
}

// ValidateSubject reports whether subject is valid for Subscribe: like a
// topic, but a token may be '*' (exactly one token) and the last token may
// be '>' (one or more tokens).
func ValidateSubject(subject string) error {
	return validate(subject, true)
}

func validate(s string, wildcards bool) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrInvalidSubject)
	}
	if len(s) > MaxSubjectLen {
		// Quote only a prefix: the value may be huge and ends up in logs.
		return fmt.Errorf("%w %q...: longer than %d bytes", ErrInvalidSubject, s[:32], MaxSubjectLen)
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			continue
		}
		tok := s[start:i]
		switch {
		case tok == "":
			return fmt.Errorf("%w %q: empty token at byte %d", ErrInvalidSubject, s, start)
		case tok == "*" || tok == ">":
			if !wildcards {
				return fmt.Errorf("%w %q: wildcard %q in a topic", ErrInvalidSubject, s, tok)
			}
			if tok == ">" && i != len(s) {
				return fmt.Errorf("%w %q: '>' must be the last token", ErrInvalidSubject, s)
			}
		default:
			for j := start; j < i; j++ {
				if !tokenByte(s[j]) {
					return fmt.Errorf("%w %q: invalid character %q at byte %d", ErrInvalidSubject, s, s[j], j)
				}
			}
		}
		start = i + 1
	}
	return nil
}

func tokenByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// Match reports whether topic matches subject. It is false when either is
// invalid. Implementations call matchTokens on a pre-split subject instead,
// which does not allocate.
func Match(subject, topic string) bool {
	if ValidateSubject(subject) != nil || ValidateTopic(topic) != nil {
		return false
	}
	return matchTokens(strings.Split(subject, "."), topic)
}

// matchTokens matches a valid topic against a valid subject split into
// tokens, walking the topic in place so a publish allocates nothing per
// subscription.
func matchTokens(pattern []string, topic string) bool {
	rest, more := topic, true
	for _, p := range pattern {
		if !more {
			return false // topic has fewer tokens than the pattern
		}
		if p == ">" {
			return true // at least one token remains, which '>' requires
		}
		tok, after, found := strings.Cut(rest, ".")
		if p != "*" && p != tok {
			return false
		}
		rest, more = after, found
	}
	return !more
}

func validateEvent(ev *Event) error {
	if err := ValidateTopic(ev.Topic); err != nil {
		return err
	}
	if len(ev.Key) > MaxKeyLen {
		return fmt.Errorf("%w: key of %d bytes (max %d) on %s", ErrTooLarge, len(ev.Key), MaxKeyLen, ev.Topic)
	}
	if len(ev.Payload) > MaxPayload {
		return fmt.Errorf("%w: payload of %d bytes (max %d) on %s", ErrTooLarge, len(ev.Payload), MaxPayload, ev.Topic)
	}
	return nil
}
