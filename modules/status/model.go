package status

import (
	"time"
)

// States a user is seen in, the "state" of a Presence.
const (
	StateOnline  = "online"  // at least one device in use
	StateAway    = "away"    // every device idle, or the user chose away
	StateDND     = "dnd"     // the user chose do-not-disturb
	StateInCall  = "in_call" // on a call (from the call.* events)
	StateOffline = "offline" // no device connected, or the user chose offline
)

// Choices a user makes, the "choice" of Me. What is stored is the
// manual* value.
const (
	ChoiceOnline  = "online"  // automatic: from devices and calls
	ChoiceAway    = "away"    // away whatever the devices say
	ChoiceDND     = "dnd"     // do not disturb: no pushes for messages
	ChoiceOffline = "offline" // invisible: seen offline by everybody
)

// The stored forms of the choices (status_users.manual).
const (
	manualAuto      = ""
	manualAway      = "away"
	manualDND       = "dnd"
	manualInvisible = "invisible"
)

// MaxTextRunes bounds a personal status text (the column's width).
const MaxTextRunes = 255

// MaxQueryUsers bounds one bulk query.
const MaxQueryUsers = 1000

// Presence is what others see of a user.
type Presence struct {
	UserID int64  `json:"user_id"`
	State  string `json:"state"`
	// Text is the personal status line; empty when none or expired.
	Text          string     `json:"text,omitempty"`
	TextExpiresAt *time.Time `json:"text_expires_at,omitempty"`
	// InCall is whether the user is on a call, also when the state shows
	// dnd (never when the user chose offline).
	InCall bool `json:"in_call"`
	// LastSeenAt is when the user was last seen in any other state than
	// offline; only set while offline (and not for a user never seen).
	LastSeenAt *time.Time `json:"last_seen_at,omitempty"`
	// UpdatedAt orders changes: a client keeps the newest it got.
	UpdatedAt time.Time `json:"updated_at"`
}

// Me is a user's own presence with what only they see.
type Me struct {
	Presence
	// Choice is what the user chose (online meaning automatic).
	Choice string `json:"choice"`
	// Devices are the connected clients; ActiveDevices those not idle.
	Devices       int `json:"devices"`
	ActiveDevices int `json:"active_devices"`
}

// inputs are what a user's state is computed from.
type inputs struct {
	manual  string
	devices int // connected devices, on every node
	active  int // of them, those not idle
	inCall  bool
}

// resolve computes the state. The order is the precedence: a choice of
// offline hides everything; do-not-disturb shows over a call; a call
// shows without any device (a desk phone); then devices decide, unless
// the user chose away.
func resolve(in inputs) string {
	switch {
	case in.manual == manualInvisible:
		return StateOffline
	case in.manual == manualDND:
		return StateDND
	case in.inCall:
		return StateInCall
	case in.devices == 0:
		return StateOffline
	case in.manual == manualAway:
		return StateAway
	case in.active > 0:
		return StateOnline
	}
	return StateAway
}

// choiceOf and manualOf translate between the API's choice and the
// stored form.
func choiceOf(manual string) string {
	switch manual {
	case manualAway:
		return ChoiceAway
	case manualDND:
		return ChoiceDND
	case manualInvisible:
		return ChoiceOffline
	}
	return ChoiceOnline
}

func manualOf(choice string) (string, bool) {
	switch choice {
	case ChoiceOnline, "auto":
		return manualAuto, true
	case ChoiceAway:
		return manualAway, true
	case ChoiceDND:
		return manualDND, true
	case ChoiceOffline, "invisible":
		return manualInvisible, true
	}
	return "", false
}
