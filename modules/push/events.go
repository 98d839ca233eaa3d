package push

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"

	"github.com/elph-server/elph/platform/bus"
)

// The payloads consumed, mirrored from their producers (a module never
// imports another): only the fields push uses. Unknown fields are
// ignored.

// chatEvent is chat's BusEvent of chat.message.created.
type chatEvent struct {
	ConversationID int64   `json:"conversation_id"`
	ActorID        int64   `json:"actor_id"`
	UserIDs        []int64 `json:"user_ids"`
	MutedIDs       []int64 `json:"muted_ids"`
	Data           struct {
		ConversationID int64 `json:"conversation_id"`
		Message        struct {
			ID       int64           `json:"id"`
			SenderID int64           `json:"sender_id"`
			Kind     string          `json:"kind"`
			Body     string          `json:"body"`
			System   json.RawMessage `json:"system"`
			Deleted  bool            `json:"deleted"`
			Files    []struct {
				Name string `json:"name"`
			} `json:"files"`
		} `json:"message"`
	} `json:"data"`
}

// callEvent is the payload of call.* (from the SIP edge and the ECSS
// bridge).
type callEvent struct {
	CallID      string    `json:"call_id"`
	UserID      int64     `json:"user_id"`
	At          time.Time `json:"at"`
	Direction   string    `json:"direction"`
	LocalNumber string    `json:"local_number"`
	PeerNumber  string    `json:"peer_number"`
	PeerName    string    `json:"peer_name"`
}

// missedEvent is history's RecordEvent of history.call.missed.
type missedEvent struct {
	UserID int64 `json:"user_id"`
	Call   struct {
		ID         int64     `json:"id"`
		CallID     string    `json:"call_id"`
		Direction  string    `json:"direction"`
		PeerNumber string    `json:"peer_number"`
		PeerName   string    `json:"peer_name"`
		StartedAt  time.Time `json:"started_at"`
	} `json:"call"`
	UnseenMissed int `json:"unseen_missed"`
}

// sessionRevoked is sso's SessionRevoked.
type sessionRevoked struct {
	SessionID string `json:"session_id"`
	UserID    int64  `json:"user_id"`
	Reason    string `json:"reason"`
}

// Generic texts (the app may localise by the data's type).
const (
	titleMessage    = "New message"
	bodyNoPreview   = "New message"
	titleMissedCall = "Missed call"
	unknownCaller   = "Unknown number"
)

// Bounds of what the events carry into pushes.
const (
	maxCallID = 128
	maxNumber = 64
)

// errInvalidEvent marks an unusable payload: counted, logged, not
// returned (redelivery would not help).
var errInvalidEvent = errors.New("invalid event")

// handled counts an event's outcome; errors of the queue are returned to
// the bus, which logs and counts them too.
func (m *Module) handled(ctx context.Context, be bus.Event, queued int64, err error) error {
	switch {
	case errors.Is(err, errInvalidEvent):
		m.met.event(be.Topic, resultInvalid)
		m.log.WarnContext(ctx, "push: invalid event skipped", "topic", be.Topic, "event_id", be.ID, "err", err)
		return nil
	case errors.Is(err, errDuplicate):
		m.met.event(be.Topic, resultDuplicate)
		return nil
	case err != nil:
		m.met.event(be.Topic, resultError)
		m.met.queueErrors.Inc()
		m.log.ErrorContext(ctx, "push: queueing pushes failed", "topic", be.Topic, "event_id", be.ID, "err", err)
		return fmt.Errorf("push: %s: %w", be.Topic, err)
	case queued > 0:
		m.met.event(be.Topic, resultQueued)
		m.signal()
	default:
		m.met.event(be.Topic, resultNone)
	}
	return nil
}

var errDuplicate = errors.New("duplicate event")

// onMessage queues a chat message's pushes.
func (m *Module) onMessage(ctx context.Context, be bus.Event) error {
	n, err := m.messagePushes(ctx, be.Payload)
	return m.handled(ctx, be, n, err)
}

func (m *Module) messagePushes(ctx context.Context, payload []byte) (int64, error) {
	var ev chatEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		return 0, fmt.Errorf("%w: %v", errInvalidEvent, err)
	}
	msg := ev.Data.Message
	convID := ev.ConversationID
	if convID == 0 {
		convID = ev.Data.ConversationID
	}
	switch {
	case convID <= 0 || msg.ID <= 0:
		return 0, fmt.Errorf("%w: no conversation or message id", errInvalidEvent)
	case msg.Kind == "system" || len(msg.System) > 0 && string(msg.System) != "null" || msg.Deleted:
		return 0, nil // system messages do not notify
	}
	sender := msg.SenderID
	if sender == 0 {
		sender = ev.ActorID
	}
	var users []int64
	for _, u := range ev.UserIDs {
		switch {
		case u <= 0 || u == ev.ActorID || u == sender || slices.Contains(users, u):
		case slices.Contains(ev.MutedIDs, u):
			m.met.skipped.WithLabelValues(skipMuted).Inc()
		default:
			users = append(users, u)
		}
	}
	if users = m.reachable(ctx, users); len(users) == 0 || !m.enabledAny(PlatformAPNs, PlatformFCM) {
		return 0, nil
	}
	note := notification{
		Title:  m.displayName(ctx, sender),
		Body:   bodyNoPreview,
		Thread: "conv-" + strconv.FormatInt(convID, 10),
		Data: map[string]string{
			"conversation_id": strconv.FormatInt(convID, 10),
			"message_id":      strconv.FormatInt(msg.ID, 10),
			"sender_id":       strconv.FormatInt(sender, 10),
		},
	}
	if m.cfg.Preview {
		switch {
		case clean(msg.Body) != "":
			note.Body = preview(clean(msg.Body))
		case len(msg.Files) > 0:
			note.Body = "📎 " + truncate(cleanLine(msg.Files[0].Name), 200)
			if len(msg.Files) > 1 {
				note.Body += fmt.Sprintf(" (+%d)", len(msg.Files)-1)
			}
		}
	}
	now := m.now()
	t := template{
		Kind: KindMessage, CollapseID: note.Thread, Priority: priorityHigh,
		Next: now, Expires: now.Add(m.cfg.MessageTTL), Created: now,
	}
	var err error
	if t.Payload, err = json.Marshal(note); err != nil {
		return 0, err
	}
	var total int64
	err = m.db.InTx(ctx, func(tx *sqlx.Tx) error {
		total = 0
		for _, p := range []string{PlatformAPNs, PlatformFCM} {
			if !m.enabled[p] {
				continue
			}
			n, err := enqueueTx(ctx, tx, users, p, t)
			if err != nil {
				return err
			}
			total += n
		}
		return nil
	})
	if err == nil {
		m.met.enqueued.WithLabelValues(KindMessage).Add(float64(total))
	}
	return total, err
}

// reachable drops the users who are connected now or do not want to be
// disturbed. Without an answer from presence everybody is pushed to: a
// push too many beats a message missed.
func (m *Module) reachable(ctx context.Context, users []int64) []int64 {
	if m.presence == nil || len(users) == 0 {
		return users
	}
	reach, err := m.presence.Reachability(ctx, users)
	if err != nil {
		m.log.WarnContext(ctx, "push: presence did not answer; pushing to everybody", "err", err)
		return users
	}
	out := users[:0:0]
	for _, u := range users {
		r := reach[u]
		switch {
		case r.Live:
			m.met.skipped.WithLabelValues(skipLive).Inc()
		case r.DND:
			m.met.skipped.WithLabelValues(skipDND).Inc()
		default:
			out = append(out, u)
		}
	}
	return out
}

func (m *Module) displayName(ctx context.Context, userID int64) string {
	if m.names == nil || userID <= 0 {
		return titleMessage
	}
	names, err := m.names.DisplayNames(ctx, []int64{userID})
	if err != nil {
		m.log.WarnContext(ctx, "push: display names did not answer", "err", err)
		return titleMessage
	}
	if n := cleanLine(names[userID]); n != "" {
		return truncateRunes(n, maxTitleRunes)
	}
	return titleMessage
}

func (m *Module) enabledAny(ps ...string) bool {
	for _, p := range ps {
		if m.enabled[p] {
			return true
		}
	}
	return false
}

// onCall queues the incoming-call push on call.started (inbound) and the
// call-cancelled push on call.answered and call.ended.
func (m *Module) onCall(ctx context.Context, be bus.Event) error {
	var (
		n   int64
		err error
	)
	switch be.Topic {
	case TopicCallStarted:
		n, err = m.callPushes(ctx, be.Payload)
	case TopicCallAnswered, TopicCallEnded:
		n, err = m.cancelPushes(ctx, be.Topic, be.Payload)
	default:
		return nil // call.ringing and newer topics
	}
	return m.handled(ctx, be, n, err)
}

func decodeCall(payload []byte) (callEvent, error) {
	var ev callEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		return ev, fmt.Errorf("%w: %v", errInvalidEvent, err)
	}
	switch {
	case ev.CallID == "" || len(ev.CallID) > maxCallID || !printable(ev.CallID):
		return ev, fmt.Errorf("%w: call_id must be 1 to %d bytes of printable UTF-8", errInvalidEvent, maxCallID)
	case ev.UserID <= 0:
		return ev, fmt.Errorf("%w: user_id %d", errInvalidEvent, ev.UserID)
	}
	return ev, nil
}

// callRef is a call's collapse id: APNs allows 64 bytes, call ids may be
// longer.
func callRef(callID string) string {
	if len("call-"+callID) <= maxCollapseID && asciiPrintable(callID) {
		return "call-" + callID
	}
	h := sha256.Sum256([]byte(callID))
	return "call-" + hex.EncodeToString(h[:16])
}

// callPushes rings the user's phones: a VoIP push to apns_voip devices
// and a high-priority data message to fcm devices. Live and DND do not
// apply: the phone rings like a desk phone, and the PBX owns DND for
// calls.
func (m *Module) callPushes(ctx context.Context, payload []byte) (int64, error) {
	ev, err := decodeCall(payload)
	if err != nil {
		return 0, err
	}
	if ev.Direction != "inbound" || !m.enabledAny(PlatformAPNsVoIP, PlatformFCM) {
		return 0, nil
	}
	now := m.now()
	// The call rings from its start: an event that waited in the bus
	// gets less time, a stale one none.
	base := now
	if !ev.At.IsZero() && ev.At.Before(now) {
		base = ev.At
	}
	expires := base.Add(m.cfg.CallTTL)
	if !expires.After(now) {
		m.met.skipped.WithLabelValues(skipStale).Inc()
		return 0, nil
	}
	if m.numbers != nil && ev.PeerNumber != "" {
		// The name the callee knows the caller by beats what the PBX sent.
		if name, ok := m.numbers.NameForNumber(ctx, ev.UserID, ev.PeerNumber); ok && name != "" {
			ev.PeerName = name
		}
	}
	note := notification{
		Data: map[string]string{
			"call_id":      ev.CallID,
			"caller":       callerName(ev.PeerName, ev.PeerNumber),
			"peer_number":  truncate(cleanLine(ev.PeerNumber), maxNumber),
			"peer_name":    truncateRunes(cleanLine(ev.PeerName), 128),
			"local_number": truncate(cleanLine(ev.LocalNumber), maxNumber),
			"expires_at":   expires.UTC().Format(time.RFC3339),
		},
	}
	t := template{
		Kind: KindCall, Ref: ev.CallID, CollapseID: callRef(ev.CallID), Priority: priorityHigh,
		Next: now, Expires: expires, Created: now,
	}
	if t.Payload, err = json.Marshal(note); err != nil {
		return 0, err
	}
	var total int64
	err = m.db.InTx(ctx, func(tx *sqlx.Tx) error {
		total = 0
		fresh, err := m.store.logCallTx(ctx, tx, ev.CallID, ev.UserID, logCall, now)
		if err != nil {
			return err
		}
		if !fresh {
			return errDuplicate
		}
		// call.answered or call.ended overtook call.started: do not ring.
		if over, err := hasCallLogTx(ctx, tx, ev.CallID, ev.UserID, logCancel); err != nil || over {
			return err
		}
		for _, p := range []string{PlatformAPNsVoIP, PlatformFCM} {
			if !m.enabled[p] {
				continue
			}
			n, err := enqueueTx(ctx, tx, []int64{ev.UserID}, p, t)
			if err != nil {
				return err
			}
			total += n
		}
		return setCallDevicesTx(ctx, tx, ev.CallID, ev.UserID, total)
	})
	if err == nil {
		m.met.enqueued.WithLabelValues(KindCall).Add(float64(total))
	}
	return total, err
}

// cancelPushes tells the devices that rang for a call to stop: an FCM
// data message and an APNs background push (the VoIP token must not be
// used for anything but a call CallKit shows).
func (m *Module) cancelPushes(ctx context.Context, topic string, payload []byte) (int64, error) {
	ev, err := decodeCall(payload)
	if err != nil {
		return 0, err
	}
	now := m.now()
	reason := "ended"
	if topic == TopicCallAnswered {
		reason = "answered"
	}
	note := notification{Data: map[string]string{"call_id": ev.CallID, "reason": reason}}
	var total int64
	err = m.db.InTx(ctx, func(tx *sqlx.Tx) error {
		total = 0
		fresh, err := m.store.logCallTx(ctx, tx, ev.CallID, ev.UserID, logCancel, now)
		if err != nil {
			return err
		}
		if !fresh {
			return errDuplicate // answered, then ended: one cancel
		}
		rang, found, err := callDevicesTx(ctx, tx, ev.CallID, ev.UserID)
		if err != nil || !found || rang == 0 {
			return err
		}
		if _, err := dropUnsentCallsTx(ctx, tx, ev.CallID, ev.UserID); err != nil {
			return err
		}
		for _, p := range []string{PlatformAPNs, PlatformFCM} {
			if !m.enabled[p] {
				continue
			}
			t := template{
				Kind: KindCallCancelled, Ref: ev.CallID, CollapseID: callRef(ev.CallID), Priority: priorityHigh,
				Next: now, Expires: now.Add(m.cfg.CallTTL), Created: now,
			}
			if p == PlatformAPNs {
				t.Priority = priorityLow // a background push must be priority 5
			}
			if t.Payload, err = json.Marshal(note); err != nil {
				return err
			}
			n, err := enqueueTx(ctx, tx, []int64{ev.UserID}, p, t)
			if err != nil {
				return err
			}
			total += n
		}
		return nil
	})
	if err == nil {
		m.met.enqueued.WithLabelValues(KindCallCancelled).Add(float64(total))
	}
	return total, err
}

// onMissed queues the missed-call alert, with the unseen count as badge.
func (m *Module) onMissed(ctx context.Context, be bus.Event) error {
	n, err := m.missedPushes(ctx, be.Payload)
	return m.handled(ctx, be, n, err)
}

func (m *Module) missedPushes(ctx context.Context, payload []byte) (int64, error) {
	var ev missedEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		return 0, fmt.Errorf("%w: %v", errInvalidEvent, err)
	}
	c := ev.Call
	switch {
	case ev.UserID <= 0:
		return 0, fmt.Errorf("%w: user_id %d", errInvalidEvent, ev.UserID)
	case c.CallID == "" || len(c.CallID) > maxCallID || !printable(c.CallID):
		return 0, fmt.Errorf("%w: call.call_id must be 1 to %d bytes of printable UTF-8", errInvalidEvent, maxCallID)
	}
	if len(m.reachable(ctx, []int64{ev.UserID})) == 0 || !m.enabledAny(PlatformAPNs, PlatformFCM) {
		return 0, nil
	}
	badge := min(max(ev.UnseenMissed, 0), maxBadge)
	note := notification{
		Title: titleMissedCall, Body: callerName(c.PeerName, c.PeerNumber), Badge: &badge, Thread: "missed-calls",
		Data: map[string]string{
			"call_id":       c.CallID,
			"record_id":     strconv.FormatInt(c.ID, 10),
			"peer_number":   truncate(cleanLine(c.PeerNumber), maxNumber),
			"peer_name":     truncateRunes(cleanLine(c.PeerName), 128),
			"unseen_missed": strconv.Itoa(badge),
		},
	}
	now := m.now()
	t := template{
		Kind: KindMissedCall, Ref: c.CallID, CollapseID: "missed-calls", Priority: priorityHigh,
		Next: now, Expires: now.Add(m.cfg.MessageTTL), Created: now,
	}
	var err error
	if t.Payload, err = json.Marshal(note); err != nil {
		return 0, err
	}
	var total int64
	err = m.db.InTx(ctx, func(tx *sqlx.Tx) error {
		total = 0
		fresh, err := m.store.logCallTx(ctx, tx, c.CallID, ev.UserID, logMissed, now)
		if err != nil {
			return err
		}
		if !fresh {
			return errDuplicate
		}
		for _, p := range []string{PlatformAPNs, PlatformFCM} {
			if !m.enabled[p] {
				continue
			}
			n, err := enqueueTx(ctx, tx, []int64{ev.UserID}, p, t)
			if err != nil {
				return err
			}
			total += n
		}
		return nil
	})
	if err == nil {
		m.met.enqueued.WithLabelValues(KindMissedCall).Add(float64(total))
	}
	return total, err
}

// onSessionRevoked removes the devices of a session that ended: a user
// who logs out stops getting pushes on that device.
func (m *Module) onSessionRevoked(ctx context.Context, be bus.Event) error {
	var ev sessionRevoked
	if err := json.Unmarshal(be.Payload, &ev); err != nil || ev.SessionID == "" {
		m.log.WarnContext(ctx, "push: invalid session revocation skipped", "event_id", be.ID)
		return nil
	}
	n, err := m.store.deleteSessionDevices(ctx, ev.UserID, ev.SessionID)
	if err != nil {
		m.met.queueErrors.Inc()
		return err
	}
	if n > 0 {
		m.met.devices.WithLabelValues("revoked").Add(float64(n))
		m.log.InfoContext(ctx, "push: devices of a revoked session removed", "user_id", ev.UserID, "devices", n, "reason", clip(ev.Reason))
	}
	return nil
}

// callerName is what a call push shows of the caller.
func callerName(name, number string) string {
	if n := truncateRunes(cleanLine(name), 128); n != "" {
		return n
	}
	if n := truncate(cleanLine(number), maxNumber); n != "" {
		return n
	}
	return unknownCaller
}

// clean makes text safe for a push: valid UTF-8 without control
// characters other than line breaks and tabs, trimmed.
func clean(s string) string {
	return trimSpace(strip(s, true))
}

// cleanLine is clean for a single line (names, numbers).
func cleanLine(s string) string {
	return trimSpace(strip(s, false))
}

func strip(s string, lines bool) string {
	if printable(s) {
		return s
	}
	out := make([]rune, 0, len(s))
	for _, r := range s {
		switch {
		case r == utf8.RuneError:
		case r == '\n' || r == '\t':
			if lines {
				out = append(out, r)
			} else {
				out = append(out, ' ')
			}
		case r < 0x20 || r == 0x7f || 0x80 <= r && r < 0xa0:
		default:
			out = append(out, r)
		}
	}
	return string(out)
}

func trimSpace(s string) string {
	start, end := 0, len(s)
	for start < end && (s[start] == ' ' || s[start] == '\n' || s[start] == '\t') {
		start++
	}
	for end > start && (s[end-1] == ' ' || s[end-1] == '\n' || s[end-1] == '\t') {
		end--
	}
	return s[start:end]
}

// truncateRunes cuts s to at most n characters.
func truncateRunes(s string, n int) string {
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}
