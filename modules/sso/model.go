// Package sso owns who a user is: accounts (local or from Active Directory /
// LDAP), logins, signed access tokens, refresh-token sessions per device,
// and the directory sync that feeds the address book.
package sso

import (
	"errors"
	"time"
)

// Role is what a user may do across Elph.
type Role string

const (
	RoleUser  Role = "user"
	RoleAdmin Role = "admin"
)

// Source says where an account is managed.
type Source string

const (
	SourceLocal Source = "local"
	SourceLDAP  Source = "ldap"
)

// PhoneKind tells an extension (the softswitch number a user logs in with)
// from other numbers.
type PhoneKind string

const (
	PhoneExtension PhoneKind = "extension"
	PhoneWork      PhoneKind = "work"
	PhoneMobile    PhoneKind = "mobile"
)

// Phone is one of a user's numbers. Numbers are stored normalised (digits
// and a leading +) and are unique across users, so one may log in with it.
type Phone struct {
	Number string    `db:"number" json:"number"`
	Kind   PhoneKind `db:"kind" json:"kind"`
}

// User is an account.
type User struct {
	ID          int64  `db:"id" json:"id"`
	Login       string `db:"login" json:"login"` // unique without regard to case (Cyrillic too)
	DisplayName string `db:"display_name" json:"display_name"`
	Email       string `db:"email" json:"email,omitempty"`
	Department  string `db:"department" json:"department,omitempty"`
	Title       string `db:"title" json:"title,omitempty"`
	AvatarRef   string `db:"avatar_ref" json:"avatar_ref,omitempty"`
	Role        Role   `db:"role" json:"role"`
	Source      Source `db:"source" json:"source"`
	// ExternalID is the directory's stable id: AD objectGUID in its
	// canonical text form, or OpenLDAP entryUUID. Empty for local accounts.
	ExternalID     string `db:"external_id" json:"-"`
	DN             string `db:"dn" json:"-"`
	Disabled       bool   `db:"disabled" json:"disabled"`
	DisabledReason string `db:"disabled_reason" json:"disabled_reason,omitempty"`
	// DisabledLocally: an admin disabled the account in Elph. A directory
	// sync keeps it disabled whatever the directory says.
	DisabledLocally bool       `db:"disabled_locally" json:"-"`
	CreatedAt       time.Time  `db:"created_at" json:"created_at"`
	UpdatedAt       time.Time  `db:"updated_at" json:"updated_at"`
	SyncedAt        *time.Time `db:"synced_at" json:"synced_at,omitempty"`
	Phones          []Phone    `db:"-" json:"phones"`
}

// Group is a directory group; membership is resolved (nested groups
// flattened) by the directory sync.
type Group struct {
	ID         int64     `db:"id" json:"id"`
	ExternalID string    `db:"external_id" json:"-"`
	Name       string    `db:"name" json:"name"`
	DN         string    `db:"dn" json:"-"`
	UpdatedAt  time.Time `db:"updated_at" json:"updated_at"`
}

// Session is one device's login. Access tokens carry its id, so revoking
// it ends every token and WebSocket of that device.
type Session struct {
	ID            string     `db:"id" json:"id"`
	UserID        int64      `db:"user_id" json:"user_id"`
	Device        string     `db:"device" json:"device"`
	UserAgent     string     `db:"user_agent" json:"user_agent"`
	IP            string     `db:"ip" json:"ip"`
	CreatedAt     time.Time  `db:"created_at" json:"created_at"`
	LastSeenAt    time.Time  `db:"last_seen_at" json:"last_seen_at"`
	ExpiresAt     time.Time  `db:"expires_at" json:"expires_at"`
	RevokedAt     *time.Time `db:"revoked_at" json:"revoked_at,omitempty"`
	RevokedReason string     `db:"revoked_reason" json:"revoked_reason,omitempty"`
}

// SigningKey is an Ed25519 key that signs access tokens. A key signs until
// RetireAt and is still trusted for verification until ExpireAt.
type SigningKey struct {
	KID       string    `db:"kid"`
	Alg       string    `db:"alg"`         // "EdDSA"
	Private   []byte    `db:"private_key"` // PKCS#8 DER
	Public    []byte    `db:"public_key"`  // PKIX DER
	CreatedAt time.Time `db:"created_at"`
	RetireAt  time.Time `db:"retire_at"`
	ExpireAt  time.Time `db:"expire_at"`
}

// DirectoryUser is a person as the directory describes them, before it is
// stored as a User.
type DirectoryUser struct {
	DN          string
	ExternalID  string
	Login       string // sAMAccountName (AD) or uid
	UPN         string // userPrincipalName, also accepted at login
	DisplayName string
	Email       string
	Department  string
	Title       string
	Phones      []Phone
	Disabled    bool
	// DisabledReason explains Disabled: "disabled", "expired", "locked".
	DisabledReason string
	// Groups are the DNs of every group the user is in, nested ones too.
	Groups []string
}

// DirectoryGroup is a group as the directory describes it.
type DirectoryGroup struct {
	DN         string
	ExternalID string
	Name       string
}

// Errors shared by the store, the directory and the login flow. Handlers
// map each to its own stable error code; none of them tells a client
// whether a login exists.
var (
	ErrNotFound        = errors.New("not found")
	ErrConflict        = errors.New("already exists")
	ErrBadCredentials  = errors.New("bad credentials")
	ErrAccountDisabled = errors.New("account disabled")
	ErrPasswordExpired = errors.New("password expired")
	ErrMustChange      = errors.New("password must be changed")
	ErrAccountLocked   = errors.New("account locked in the directory")
	ErrAccountExpired  = errors.New("account expired")
	ErrLoginNotAllowed = errors.New("login not allowed now") // AD logon hours / workstation restrictions
	ErrDirectoryDown   = errors.New("directory unavailable")
	ErrRefreshReused   = errors.New("refresh token reused")
	ErrSessionRevoked  = errors.New("session revoked")
	ErrSessionExpired  = errors.New("session expired")
	ErrTooManyFailures = errors.New("too many failed logins")
)
