package chat

import (
	"errors"
	"fmt"
	"time"
)

// Conversation kinds.
const (
	KindDirect = "direct"
	KindGroup  = "group"
)

// Message kinds.
const (
	MessageText   = "text"
	MessageSystem = "system"
)

// Member roles, from most to least powerful.
const (
	RoleOwner  = "owner"
	RoleAdmin  = "admin"
	RoleMember = "member"
)

// rank orders roles so that checks read "at least admin".
func rank(role string) int {
	switch role {
	case RoleOwner:
		return 3
	case RoleAdmin:
		return 2
	case RoleMember:
		return 1
	}
	return 0
}

// System message events.
const (
	SystemCreated = "created"
	SystemJoined  = "joined"
	SystemLeft    = "left"
	SystemRemoved = "removed"
	SystemRenamed = "renamed"
)

// Conversation is what every member sees of a conversation. Members is
// filled for direct conversations always, for groups only where the API
// says so (GET of one conversation).
type Conversation struct {
	ID            int64     `json:"id"`
	Kind          string    `json:"kind"`
	Title         string    `json:"title"`
	AvatarRef     string    `json:"avatar_ref"`
	CreatedBy     int64     `json:"created_by"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
	LastMessageID int64     `json:"last_message_id"`
	MemberCount   int       `json:"member_count"`
	Members       []Member  `json:"members,omitempty"`
}

// ConversationView is a conversation as one member sees it: with their own
// membership, unread counts and the last message they can see.
type ConversationView struct {
	Conversation
	Me             Me       `json:"me"`
	Unread         int      `json:"unread"`
	UnreadMentions int      `json:"unread_mentions"`
	LastMessage    *Message `json:"last_message"`
}

// Member is one member as every member sees them. The read marker is
// public: it is what read receipts are made of.
type Member struct {
	UserID            int64     `json:"user_id"`
	Role              string    `json:"role"`
	JoinedAt          time.Time `json:"joined_at"`
	LastReadMessageID int64     `json:"last_read_message_id"`
}

// Me is the requesting user's own membership, with what only they see.
type Me struct {
	Role              string     `json:"role"`
	JoinedAt          time.Time  `json:"joined_at"`
	MutedUntil        *time.Time `json:"muted_until"`
	LastReadMessageID int64      `json:"last_read_message_id"`
}

// Message is a message as every member sees it. A message deleted for
// everyone is a tombstone: Deleted is set and body, files, mentions and
// reactions are gone.
type Message struct {
	ID             int64        `json:"id"`
	ConversationID int64        `json:"conversation_id"`
	SenderID       int64        `json:"sender_id"`
	ClientID       string       `json:"client_id,omitempty"`
	Kind           string       `json:"kind"`
	Body           string       `json:"body"`
	System         *SystemEvent `json:"system,omitempty"`
	ReplyToID      int64        `json:"reply_to_id,omitempty"`
	ForwardedFrom  *Forwarded   `json:"forwarded_from,omitempty"`
	Mentions       []int64      `json:"mentions,omitempty"`
	Files          []FileRef    `json:"files,omitempty"`
	Reactions      []Reaction   `json:"reactions,omitempty"`
	EditedAt       *time.Time   `json:"edited_at,omitempty"`
	Deleted        bool         `json:"deleted,omitempty"`
	DeletedAt      *time.Time   `json:"deleted_at,omitempty"`
	CreatedAt      time.Time    `json:"created_at"`
}

// SystemEvent is what a system message records.
type SystemEvent struct {
	Event   string  `json:"event"` // SystemJoined, SystemLeft, …
	ActorID int64   `json:"actor_id"`
	UserIDs []int64 `json:"user_ids,omitempty"` // joined, left or removed
	Title   string  `json:"title,omitempty"`    // the new title of renamed
}

// Forwarded names the message a forward copies.
type Forwarded struct {
	MessageID int64 `json:"message_id"`
	SenderID  int64 `json:"sender_id"`
}

// Reaction is one emoji on a message and who put it there, in the order
// they did.
type Reaction struct {
	Emoji   string  `json:"emoji"`
	UserIDs []int64 `json:"user_ids"`
}

// FileRef is the public metadata of an attached file, as the files module
// describes it.
type FileRef struct {
	ID          string `json:"id" db:"id"`
	Name        string `json:"name" db:"name"`
	ContentType string `json:"content_type" db:"content_type"`
	Size        int64  `json:"size" db:"size"`
}

// Pin is a pinned message.
type Pin struct {
	Message  Message   `json:"message"`
	PinnedBy int64     `json:"pinned_by"`
	PinnedAt time.Time `json:"pinned_at"`
}

// Errors of the chat module. Client errors are wrapped in an *Error that
// carries the message a client sees; compare with errors.Is.
var (
	// ErrNotFound: no such conversation or message, or the user is not a
	// member (the two are never told apart).
	ErrNotFound = errors.New("chat: not found")
	// ErrForbidden: a member whose role does not allow the change.
	ErrForbidden = errors.New("chat: forbidden")
	// ErrInvalid: a malformed or inconsistent request.
	ErrInvalid = errors.New("chat: invalid request")
	// ErrConflict: the request contradicts the state (a client_id used in
	// another conversation, a limit reached, a deleted message).
	ErrConflict = errors.New("chat: conflict")
	// ErrTooLarge: a message body over the configured limit.
	ErrTooLarge = errors.New("chat: too large")
	// ErrFileUnavailable is what Files.Attachable returns (wrapped) for a
	// file that does not exist or that the user may not attach; the
	// wiring's adapter maps the files module's errors to it. Any other
	// error of Attachable is an internal error.
	ErrFileUnavailable = errors.New("chat: file not available")
)

// Error is a client error: Kind is one of the sentinel errors above, Code
// the stable code clients branch on, Message what they are told.
type Error struct {
	Kind    error
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Kind.Error() + ": " + e.Message }
func (e *Error) Unwrap() error { return e.Kind }

func clientError(kind error, code, format string, args ...any) error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

func invalidf(format string, args ...any) error {
	return clientError(ErrInvalid, "bad_request", format, args...)
}

func forbiddenf(format string, args ...any) error {
	return clientError(ErrForbidden, "forbidden", format, args...)
}

func conflictf(code, format string, args ...any) error {
	return clientError(ErrConflict, code, format, args...)
}

var (
	errConversationNotFound = clientError(ErrNotFound, "not_found", "conversation not found")
	errMessageNotFound      = clientError(ErrNotFound, "not_found", "message not found")
)
