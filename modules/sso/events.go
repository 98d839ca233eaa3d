package sso

import "time"

// Topics the sso module publishes. Payloads are JSON of the types below.
const (
	// TopicSessionRevoked: a session ended (logout, admin, reuse of a
	// refresh token, account disabled). Every node closes that session's
	// WebSockets and refuses its access tokens. Key: the user id.
	TopicSessionRevoked = "sso.session.revoked"
	// TopicDirectorySynced: a directory sync finished; the address book
	// refreshes from the accounts. Key: "directory".
	TopicDirectorySynced = "sso.directory.synced"
	// TopicUserChanged: an account was created, changed or disabled.
	// Key: the user id.
	TopicUserChanged = "sso.user.changed"
)

// SessionRevoked is the payload of TopicSessionRevoked.
type SessionRevoked struct {
	SessionID string    `json:"session_id"`
	UserID    int64     `json:"user_id"`
	Reason    string    `json:"reason"`
	At        time.Time `json:"at"`
}

// UserChanged is the payload of TopicUserChanged.
type UserChanged struct {
	UserID   int64  `json:"user_id"`
	Change   string `json:"change"` // created, updated, disabled, enabled
	Disabled bool   `json:"disabled"`
}
