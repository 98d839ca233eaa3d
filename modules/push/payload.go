package push

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/sideshow/apns2"
)

// notification is the platform-neutral content of a push: what a queue
// row holds and what a relay request carries. It is rendered for APNs or
// FCM only when sent.
type notification struct {
	Title  string            `json:"title,omitempty"`
	Body   string            `json:"body,omitempty"`
	Badge  *int              `json:"badge,omitempty"`
	Thread string            `json:"thread,omitempty"`
	Data   map[string]string `json:"data,omitempty"`
}

// item is one push to one device: a claimed queue row, or an item of a
// relay request.
type item struct {
	ID         int64
	DeviceID   int64
	UserID     int64
	Platform   string
	AppID      string
	Token      string
	Kind       string
	Priority   int
	CollapseID string
	ExpiresAt  time.Time
	CreatedAt  time.Time
	Attempts   int
	Note       notification
}

// Priorities (APNs' numbers; FCM: 10 is HIGH, 5 NORMAL).
const (
	priorityHigh = 10
	priorityLow  = 5
)

// Payload limits of the services.
const (
	apnsLimit     = 4096
	apnsVoIPLimit = 5120
	fcmLimit      = 4096
)

// Bounds of a notification (checked on relayed items; what this node
// builds is well inside them).
const (
	maxTitleRunes  = 256
	maxBodyBytes   = 2048
	maxThread      = 64
	maxCollapseID  = 64
	maxDataEntries = 16
	maxDataKey     = 32
	maxDataValue   = 512
	maxBadge       = 1_000_000
	// previewRunes is how much of a message's text a push shows.
	previewRunes = 240
)

// errTooLarge: the payload does not fit even with the text cut away.
var errTooLarge = errors.New("push: payload too large")

// kindAllowed says which kinds a platform carries.
func kindAllowed(platform, kind string) bool {
	switch platform {
	case PlatformAPNs:
		return kind == KindMessage || kind == KindMissedCall || kind == KindCallCancelled
	case PlatformAPNsVoIP:
		return kind == KindCall
	case PlatformFCM:
		return kind == KindMessage || kind == KindMissedCall || kind == KindCall || kind == KindCallCancelled
	}
	return false
}

// validate checks an item as the relay endpoint receives it.
func (it *item) validate() error {
	if _, err := validateDevice(it.Platform, it.AppID, it.Token); err != nil {
		return err
	}
	if it.Platform != PlatformFCM && it.Token != toLowerASCII(it.Token) {
		return errors.New("APNs token must be lower case")
	}
	if !kindAllowed(it.Platform, it.Kind) {
		return fmt.Errorf("kind %q is not sent to %s", clip(it.Kind), it.Platform)
	}
	if it.Priority != priorityHigh && it.Priority != priorityLow {
		return fmt.Errorf("priority %d, want 5 or 10", it.Priority)
	}
	if len(it.CollapseID) > maxCollapseID || !asciiPrintable(it.CollapseID) {
		return fmt.Errorf("collapse_id must be at most %d printable ASCII characters", maxCollapseID)
	}
	if it.ExpiresAt.IsZero() {
		return errors.New("expires_at is missing")
	}
	return it.Note.validate()
}

func (n *notification) validate() error {
	switch {
	case utf8.RuneCountInString(n.Title) > maxTitleRunes || !printable(n.Title):
		return fmt.Errorf("title must be at most %d characters of printable UTF-8", maxTitleRunes)
	case len(n.Body) > maxBodyBytes || !utf8.ValidString(n.Body) || bytes.IndexByte([]byte(n.Body), 0) >= 0:
		return fmt.Errorf("body must be at most %d bytes of UTF-8", maxBodyBytes)
	case len(n.Thread) > maxThread || !asciiPrintable(n.Thread):
		return fmt.Errorf("thread must be at most %d printable ASCII characters", maxThread)
	case n.Badge != nil && (*n.Badge < 0 || *n.Badge > maxBadge):
		return fmt.Errorf("badge must be 0 to %d", maxBadge)
	case len(n.Data) > maxDataEntries:
		return fmt.Errorf("data has more than %d entries", maxDataEntries)
	}
	for k, v := range n.Data {
		if !validDataKey(k) {
			return fmt.Errorf("data key %q is not allowed", clip(k))
		}
		if len(v) > maxDataValue || !printable(v) {
			return fmt.Errorf("data value of %q must be at most %d bytes of printable UTF-8", k, maxDataValue)
		}
	}
	return nil
}

// validDataKey: [a-z0-9_], not a key APNs or FCM reserve.
func validDataKey(k string) bool {
	if k == "" || len(k) > maxDataKey || k == "aps" || k == "from" || k == "message_type" || k == "notification" ||
		len(k) >= 6 && k[:6] == "google" || len(k) >= 3 && k[:3] == "gcm" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func asciiPrintable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func toLowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// marshal encodes v compactly without HTML escaping (payload bytes count).
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// fit renders n with render and, while the result is over limit, cuts
// the body (then the title) and tries again: a shorter preview beats a
// push that is refused.
func fit(n notification, limit int, render func(notification) ([]byte, int, error)) ([]byte, error) {
	for i := range 16 {
		// After a few tries, cut by raw bytes, which surely fits.
		scaled := i < 4
		b, size, err := render(n)
		if err != nil {
			return nil, err
		}
		if size <= limit {
			return b, nil
		}
		excess := size - limit
		switch {
		case n.Body != "":
			n.Body = shorten(n.Body, excess, scaled)
		case n.Title != "":
			n.Title = shorten(n.Title, excess, scaled)
		default:
			return nil, errTooLarge
		}
	}
	return nil, errTooLarge
}

// shorten cuts s so that its JSON form loses about excess bytes, and
// marks the cut with an ellipsis. Characters JSON escapes take more than
// one byte, so a scaled cut divides by how much s expands (it may fall
// short when the escapes are not evenly spread); an unscaled one cuts
// excess bytes of s, which surely takes excess bytes off its JSON form.
func shorten(s string, excess int, scaled bool) string {
	const ellipsis = "…"
	cut := excess + len(ellipsis)
	if scaled {
		enc, err := marshal(s)
		if err != nil {
			return ""
		}
		encoded := max(len(enc)-2, 1) // without the quotes
		cut = (excess*len(s)+encoded-1)/encoded + len(ellipsis)
	}
	keep := len(s) - cut
	if keep <= 0 {
		return ""
	}
	return truncate(s, keep) + ellipsis
}

// preview is the text a chat push shows: the first previewRunes
// characters, with an ellipsis when cut.
func preview(s string) string {
	n := 0
	for i := range s {
		if n == previewRunes {
			return s[:i] + "…"
		}
		n++
	}
	return s
}

// data is n's custom data with the kind added.
func (it *item) data() map[string]string {
	d := make(map[string]string, len(it.Note.Data)+1)
	for k, v := range it.Note.Data {
		d[k] = v
	}
	d["type"] = it.Kind
	return d
}

// apnsMessage is an item rendered for APNs.
type apnsMessage struct {
	Topic    string
	PushType apns2.EPushType
	Priority int
	Payload  []byte
}

type apsAlert struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body,omitempty"`
}

type aps struct {
	Alert            *apsAlert `json:"alert,omitempty"`
	Badge            *int      `json:"badge,omitempty"`
	Sound            string    `json:"sound,omitempty"`
	ThreadID         string    `json:"thread-id,omitempty"`
	ContentAvailable int       `json:"content-available,omitempty"`
}

// renderAPNs builds the APNs request of it: an alert for messages and
// missed calls, a VoIP push for an incoming call, a background push for a
// cancelled call.
func renderAPNs(it item) (apnsMessage, error) {
	msg := apnsMessage{Topic: it.AppID, Priority: it.Priority}
	limit := apnsLimit
	var build func(n notification) map[string]any
	switch it.Kind {
	case KindMessage, KindMissedCall:
		msg.PushType = apns2.PushTypeAlert
		build = func(n notification) map[string]any {
			return map[string]any{"aps": aps{
				Alert: &apsAlert{Title: n.Title, Body: n.Body}, Badge: n.Badge, Sound: "default", ThreadID: n.Thread,
			}}
		}
	case KindCall:
		msg.PushType, msg.Topic, msg.Priority = apns2.PushTypeVOIP, it.AppID+".voip", priorityHigh
		limit = apnsVoIPLimit
		build = func(notification) map[string]any { return map[string]any{} }
	case KindCallCancelled:
		msg.PushType, msg.Priority = apns2.PushTypeBackground, priorityLow
		build = func(notification) map[string]any { return map[string]any{"aps": aps{ContentAvailable: 1}} }
	default:
		return msg, fmt.Errorf("push: kind %q has no APNs form", it.Kind)
	}
	data := it.data()
	var err error
	msg.Payload, err = fit(it.Note, limit, func(n notification) ([]byte, int, error) {
		p := build(n)
		for k, v := range data {
			p[k] = v
		}
		b, err := marshal(p)
		return b, len(b), err
	})
	return msg, err
}

// FCM HTTP v1 request body.
type fcmRequest struct {
	Message fcmMessage `json:"message"`
}

type fcmMessage struct {
	Token        string            `json:"token"`
	Notification *fcmNotification  `json:"notification,omitempty"`
	Data         map[string]string `json:"data,omitempty"`
	Android      fcmAndroid        `json:"android"`
}

type fcmNotification struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body,omitempty"`
}

type fcmAndroid struct {
	Priority     string                  `json:"priority"`
	TTL          string                  `json:"ttl"`
	CollapseKey  string                  `json:"collapse_key,omitempty"`
	Notification *fcmAndroidNotification `json:"notification,omitempty"`
}

type fcmAndroidNotification struct {
	NotificationCount *int `json:"notification_count,omitempty"`
}

// renderFCM builds the FCM request body of it at now: a notification
// message (title, body, data) for messages and missed calls, a
// data-only message for calls. Its size, as FCM counts it (notification
// and data), stays within fcmLimit.
func renderFCM(it item, now time.Time) ([]byte, error) {
	// FCM keeps a message at most 28 days.
	ttl := min(max(int64((it.ExpiresAt.Sub(now)+time.Second-1)/time.Second), 1), 28*24*3600)
	prio := "NORMAL"
	if it.Priority == priorityHigh {
		prio = "HIGH"
	}
	data := it.data()
	return fit(it.Note, fcmLimit, func(n notification) ([]byte, int, error) {
		msg := fcmMessage{
			Token: it.Token, Data: data,
			Android: fcmAndroid{Priority: prio, TTL: strconv.FormatInt(ttl, 10) + "s", CollapseKey: it.CollapseID},
		}
		if it.Kind == KindMessage || it.Kind == KindMissedCall {
			msg.Notification = &fcmNotification{Title: n.Title, Body: n.Body}
			if n.Badge != nil {
				msg.Android.Notification = &fcmAndroidNotification{NotificationCount: n.Badge}
			}
		}
		size, err := fcmSize(msg)
		if err != nil {
			return nil, 0, err
		}
		b, err := marshal(fcmRequest{Message: msg})
		return b, size, err
	})
}

// fcmSize is what FCM counts against its limit: the notification and the
// data.
func fcmSize(m fcmMessage) (int, error) {
	b, err := marshal(struct {
		Notification *fcmNotification  `json:"notification,omitempty"`
		Data         map[string]string `json:"data,omitempty"`
	}{m.Notification, m.Data})
	return len(b), err
}
