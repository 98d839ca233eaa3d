package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/elph-server/elph/platform/bus"
)

// callEvent is the part of a call.* payload (docs/history.md) the module
// reads.
type callEvent struct {
	CallID    string    `json:"call_id"`
	UserID    int64     `json:"user_id"`
	At        time.Time `json:"at"`
	Direction string    `json:"direction"`
}

// maxCallIDLen is the width of status_calls.call_id.
const maxCallIDLen = 128

// callSkew bounds how far in the future a call event's time may be (a
// producer's clock running ahead); later times are taken as now.
const callSkew = time.Minute

// DecodeCallEvent parses a call.* payload; ok is false for events that
// do not change "in a call" (ringing, an inbound call.started).
func DecodeCallEvent(topic string, payload []byte) (ev callEvent, ok bool, err error) {
	switch topic {
	case "call.started", "call.answered", "call.ended":
	default:
		return callEvent{}, false, nil
	}
	if err := json.Unmarshal(payload, &ev); err != nil {
		return callEvent{}, false, fmt.Errorf("%w: %s: %v", ErrInvalid, topic, err)
	}
	switch {
	case ev.CallID == "" || len(ev.CallID) > maxCallIDLen:
		return callEvent{}, false, fmt.Errorf("%w: %s: call_id of %d bytes", ErrInvalid, topic, len(ev.CallID))
	case ev.UserID <= 0:
		return callEvent{}, false, fmt.Errorf("%w: %s: user_id %d", ErrInvalid, topic, ev.UserID)
	}
	if topic == "call.started" && ev.Direction != "outbound" {
		// An inbound call rings; it is a call once answered.
		return ev, false, nil
	}
	return ev, true, nil
}

// onCall is the bus handler of call.>: it starts and ends "in a call".
func (m *Module) onCall(ctx context.Context, be bus.Event) error {
	ev, ok, err := DecodeCallEvent(be.Topic, be.Payload)
	switch {
	case err != nil:
		m.met.calls.WithLabelValues("invalid").Inc()
		m.log.WarnContext(ctx, "status: invalid call event skipped", "topic", be.Topic, "event_id", be.ID, "err", err)
		return nil
	case !ok:
		m.met.calls.WithLabelValues("ignored").Inc()
		return nil
	}
	now := m.now()
	at := ev.At
	if at.IsZero() || at.After(now.Add(callSkew)) {
		at = now
	}
	_, err = m.change(ctx, ev.UserID, false, func(tx *sqlx.Tx, _ *userRow) error {
		if be.Topic == "call.ended" {
			return m.store.endCall(ctx, tx, ev.UserID, ev.CallID, at)
		}
		return m.store.startCall(ctx, tx, ev.UserID, ev.CallID, at)
	})
	if err != nil {
		m.met.calls.WithLabelValues("error").Inc()
		return err
	}
	m.met.calls.WithLabelValues("applied").Inc()
	return nil
}

// endedCallKeep is how long an ended call's tombstone is kept against
// late events.
const endedCallKeep = time.Hour

// sweep vouches for this node's devices and settles what time changed:
// devices of nodes that died, expired texts, calls whose end never came.
// For module.Every.
func (m *Module) sweep(ctx context.Context) error {
	now := m.now()
	var errs []error
	if err := m.store.touchNode(ctx, m.node, now); err != nil {
		errs = append(errs, err)
	}
	var users []int64
	if u, err := m.store.staleDevices(ctx, now.Add(-m.cfg.DeviceTimeout)); err != nil {
		errs = append(errs, err)
	} else {
		users = append(users, u...)
	}
	if u, err := m.store.expiredTexts(ctx, now); err != nil {
		errs = append(errs, err)
	} else {
		users = append(users, u...)
	}
	if u, err := m.store.overdueCalls(ctx, now.Add(-m.cfg.MaxCallDuration), now.Add(-endedCallKeep), now); err != nil {
		errs = append(errs, err)
	} else {
		users = append(users, u...)
	}
	for _, u := range users {
		if _, err := m.change(ctx, u, false, nil); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
