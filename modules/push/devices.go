package push

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Platforms of a device.
const (
	// PlatformAPNs is an iOS app's APNs token: alert pushes (messages,
	// missed calls) and background pushes (call cancelled).
	PlatformAPNs = "apns"
	// PlatformAPNsVoIP is an iOS app's PushKit (VoIP) token: incoming
	// calls only, on the topic <app_id>.voip.
	PlatformAPNsVoIP = "apns_voip"
	// PlatformFCM is an Android app's FCM registration token.
	PlatformFCM = "fcm"
)

var platforms = []string{PlatformAPNs, PlatformAPNsVoIP, PlatformFCM}

// Kinds of push.
const (
	KindMessage       = "message"
	KindMissedCall    = "missed_call"
	KindCall          = "call"
	KindCallCancelled = "call_cancelled"
)

// Bounds of a device registration.
const (
	MaxDevicesPerUser = 20
	minAPNsToken      = 64
	maxAPNsToken      = 200
	maxFCMToken       = 4096
	maxAppID          = 255
	maxDeviceName     = 100 // characters
)

// Device is a registered device as its owner sees it.
type Device struct {
	ID       int64  `json:"id"`
	Platform string `json:"platform"`
	AppID    string `json:"app_id"`
	Name     string `json:"name"`
	// TokenHint is the end of the token, to tell devices apart; the
	// token itself is never shown again.
	TokenHint string `json:"token_hint"`
	// Current is true for the devices registered by the session making
	// the request.
	Current   bool      `json:"current"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`

	sessionID string
}

// invalidDevice is a client-facing reason validateDevice refuses a
// registration.
type invalidDevice string

func (e invalidDevice) Error() string { return string(e) }

// validateDevice checks a registration and returns the token as stored
// (APNs tokens lower-cased). Its errors are for the client.
func validateDevice(platform, appID, token string) (string, error) {
	switch platform {
	case PlatformAPNs, PlatformAPNsVoIP, PlatformFCM:
	default:
		return "", invalidDevice(fmt.Sprintf("platform must be %q, %q or %q", PlatformAPNs, PlatformAPNsVoIP, PlatformFCM))
	}
	if !validAppID(appID) {
		return "", invalidDevice(fmt.Sprintf("app_id must be a reverse-DNS identifier (com.example.app) of at most %d characters", maxAppID))
	}
	if platform == PlatformFCM {
		if !validFCMToken(token) {
			return "", invalidDevice(fmt.Sprintf("an FCM token is 1 to %d printable ASCII characters", maxFCMToken))
		}
		return token, nil
	}
	if !validAPNsToken(token) {
		return "", invalidDevice(fmt.Sprintf("an APNs token is %d to %d hexadecimal digits", minAPNsToken, maxAPNsToken))
	}
	return strings.ToLower(token), nil
}

// validAppID: dot-separated labels of [A-Za-z0-9_-], at least two, at
// most maxAppID bytes in all. It becomes an APNs topic, so no space, no
// slash, nothing a header or a path could misread.
func validAppID(s string) bool {
	if len(s) == 0 || len(s) > maxAppID {
		return false
	}
	labels := 1
	prev := byte('.')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if prev == '.' {
				return false
			}
			labels++
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
		prev = c
	}
	return prev != '.' && labels >= 2
}

func validAPNsToken(s string) bool {
	if len(s) < minAPNsToken || len(s) > maxAPNsToken {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func validFCMToken(s string) bool {
	if len(s) == 0 || len(s) > maxFCMToken {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// validName: at most maxDeviceName characters of printable UTF-8.
func validName(s string) bool {
	return utf8.RuneCountInString(s) <= maxDeviceName && printable(s)
}

// printable reports whether s is valid UTF-8 without control characters.
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

// tokenHint is what logs and clients see of a token: its last 8
// characters.
func tokenHint(tok string) string {
	if len(tok) <= 8 {
		return "…"
	}
	return "…" + tok[len(tok)-8:]
}

// clip shortens a value quoted in an error or a log line.
func clip(s string) string {
	if len(s) > 32 {
		return truncate(s, 32) + "…"
	}
	return s
}
