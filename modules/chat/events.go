package chat

import (
	"encoding/json"
	"time"
)

// Event types. Each is both the type of the event appended to the stream
// of every member who must see it and the bus topic of the same event
// (key: the conversation id), for push and status to consume.
const (
	TopicMessageCreated      = "chat.message.created"
	TopicMessageUpdated      = "chat.message.updated"
	TopicMessageDeleted      = "chat.message.deleted"
	TopicReactionChanged     = "chat.reaction.changed"
	TopicConversationCreated = "chat.conversation.created"
	TopicConversationUpdated = "chat.conversation.updated"
	TopicMemberAdded         = "chat.member.added"
	TopicMemberRemoved       = "chat.member.removed"
	TopicMemberUpdated       = "chat.member.updated"
	TopicReadUpdated         = "chat.read.updated"
	TopicPinChanged          = "chat.pin.changed"
)

// SignalTyping is the ephemeral signal of a member typing.
const SignalTyping = "typing"

var topics = []string{
	TopicMessageCreated, TopicMessageUpdated, TopicMessageDeleted, TopicReactionChanged,
	TopicConversationCreated, TopicConversationUpdated, TopicMemberAdded, TopicMemberRemoved,
	TopicMemberUpdated, TopicReadUpdated, TopicPinChanged,
}

// MessageEvent is the data of chat.message.created and chat.message.updated.
type MessageEvent struct {
	ConversationID int64   `json:"conversation_id"`
	Message        Message `json:"message"`
}

// MessageDeleted is the data of chat.message.deleted. A deletion for
// everyone goes to every member; a deletion for me only to that user (so
// their other devices hide the message too).
type MessageDeleted struct {
	ConversationID int64 `json:"conversation_id"`
	MessageID      int64 `json:"message_id"`
	ForEveryone    bool  `json:"for_everyone"`
	By             int64 `json:"by"`
}

// ReactionChanged is the data of chat.reaction.changed: the change and
// the message's reactions after it.
type ReactionChanged struct {
	ConversationID int64      `json:"conversation_id"`
	MessageID      int64      `json:"message_id"`
	UserID         int64      `json:"user_id"`
	Emoji          string     `json:"emoji"`
	Added          bool       `json:"added"`
	Reactions      []Reaction `json:"reactions"`
}

// ConversationEvent is the data of chat.conversation.created (to the
// creator and initial members, and to members added later) and
// chat.conversation.updated (title or avatar changed). Members is filled
// for direct conversations only; a client fetches a group's members with
// GET /v1/conversations/{id}.
type ConversationEvent struct {
	Conversation Conversation `json:"conversation"`
	By           int64        `json:"by"`
}

// MembersAdded is the data of chat.member.added, to the members who were
// there before (the added ones get chat.conversation.created).
type MembersAdded struct {
	ConversationID int64    `json:"conversation_id"`
	Members        []Member `json:"members"`
	By             int64    `json:"by"`
}

// MemberRemoved is the data of chat.member.removed, to the remaining
// members and to the one who left or was removed.
type MemberRemoved struct {
	ConversationID int64 `json:"conversation_id"`
	UserID         int64 `json:"user_id"`
	By             int64 `json:"by"`
	Left           bool  `json:"left"` // the user left by themselves
}

// MemberUpdated is the data of chat.member.updated: a role change, to
// every member; or the user's own mute, to that user only, with Me set.
type MemberUpdated struct {
	ConversationID int64  `json:"conversation_id"`
	Member         Member `json:"member"`
	Me             *Me    `json:"me,omitempty"`
	By             int64  `json:"by"`
}

// ReadUpdated is the data of chat.read.updated: a member's read marker
// moved. It goes to every member: it is the read receipt.
type ReadUpdated struct {
	ConversationID    int64 `json:"conversation_id"`
	UserID            int64 `json:"user_id"`
	LastReadMessageID int64 `json:"last_read_message_id"`
}

// PinChanged is the data of chat.pin.changed.
type PinChanged struct {
	ConversationID int64     `json:"conversation_id"`
	MessageID      int64     `json:"message_id"`
	Pinned         bool      `json:"pinned"`
	By             int64     `json:"by"`
	At             time.Time `json:"at"`
}

// Typing is the data of the typing signal.
type Typing struct {
	ConversationID int64 `json:"conversation_id"`
	UserID         int64 `json:"user_id"`
}

// BusEvent is the payload of every chat topic on the bus: the stream
// event's data and who it was delivered to, so a consumer (push) knows
// whom to notify without asking the chat module.
type BusEvent struct {
	ConversationID int64 `json:"conversation_id"`
	ActorID        int64 `json:"actor_id"`
	// UserIDs are the users whose streams got the event.
	UserIDs []int64 `json:"user_ids"`
	// MutedIDs are those of UserIDs who muted the conversation
	// (chat.message.created only).
	MutedIDs []int64         `json:"muted_ids,omitempty"`
	Data     json.RawMessage `json:"data"`
}
