package chat

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/elph-server/elph/platform/store"
)

// Limits of message operations.
const (
	defaultHistoryLimit = 50
	MaxHistoryLimit     = 100
	defaultSearchLimit  = 20
	maxSearchLimit      = 100
	// MaxEmojiBytes and MaxEmojiRunes bound a reaction: enough for any
	// emoji sequence (a family with skin tones is about 35 bytes).
	MaxEmojiBytes = 64
	MaxEmojiRunes = 16
	// MaxReactionsPerUser bounds the different reactions of one user on
	// one message.
	MaxReactionsPerUser = 20
	// MaxPins bounds the pinned messages of a conversation.
	MaxPins = 100
)

// errDuplicateSend is how a send transaction says the client_id was used
// already: the caller answers with the original message.
var errDuplicateSend = errors.New("chat: duplicate client_id")

// Send stores a message from userID in a conversation and delivers it to
// every member. A send repeating an earlier one's client_id stores
// nothing and returns the earlier message with created false.
func (m *Module) Send(ctx context.Context, userID, convID int64, req SendRequest) (Message, bool, error) {
	if err := req.check(m.maxBody); err != nil {
		return Message{}, false, err
	}
	if _, err := m.store.member(ctx, m.db, convID, userID); err != nil {
		return Message{}, false, err
	}
	if msg, err := m.replay(ctx, userID, convID, req.ClientID); !errors.Is(err, ErrNotFound) {
		return msg, false, err
	}

	row := messageRow{
		ConversationID: convID, SenderID: userID, Kind: MessageText, Body: req.Body,
		ClientID:  sql.NullString{String: req.ClientID, Valid: true},
		ReplyToID: sql.NullInt64{Int64: req.ReplyToID, Valid: req.ReplyToID != 0},
	}
	files, err := m.attachable(ctx, userID, req.FileIDs)
	if err != nil {
		return Message{}, false, err
	}
	if req.ForwardFromID != 0 {
		src, srcFiles, err := m.forwardSource(ctx, userID, req.ForwardFromID)
		if err != nil {
			return Message{}, false, err
		}
		row.Body, files = src.Body, srcFiles
		row.ForwardedFromID = sql.NullInt64{Int64: src.ID, Valid: true}
		row.ForwardedSenderID = sql.NullInt64{Int64: src.SenderID, Valid: true}
		if src.ForwardedFromID.Valid {
			// A forward of a forward names the original.
			row.ForwardedFromID, row.ForwardedSenderID = src.ForwardedFromID, src.ForwardedSenderID
		}
	}

	var msg Message
	err = m.write(ctx, func(t *wtx) error {
		_, _, err := t.enter(convID, userID)
		if err != nil {
			return err
		}
		// Inside the conversation's lock a concurrent duplicate has
		// committed or not started: this finds it.
		if _, err := m.store.messageByClientID(ctx, t.Tx, userID, req.ClientID); err == nil {
			return errDuplicateSend
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		if req.ReplyToID != 0 {
			if _, err := m.store.visibleMessage(ctx, t.Tx, convID, req.ReplyToID, userID); err != nil {
				return invalidf("reply_to_id is not a message of this conversation")
			}
		}
		members, err := m.store.members(ctx, t.Tx, convID)
		if err != nil {
			return err
		}
		ids, muted := memberSets(members, m.now())
		for _, u := range req.Mentions {
			if _, ok := slices.BinarySearch(ids, u); !ok {
				return invalidf("user %d is not a member of this conversation", u)
			}
		}
		r := row
		r.CreatedAt = store.Time(m.now())
		if err := m.store.insertMessage(ctx, t.Tx, &r); err != nil {
			if m.db.Dialect.IsUniqueViolation(err) {
				// The same client_id was used in another conversation,
				// or a duplicate committed on another path.
				return errDuplicateSend
			}
			return err
		}
		if err := m.store.insertMentions(ctx, t.Tx, r.ID, req.Mentions); err != nil {
			return err
		}
		if err := m.store.insertFiles(ctx, t.Tx, r.ID, files); err != nil {
			return err
		}
		// Sending reads everything before: the sender's marker follows.
		if _, err := m.store.advanceRead(ctx, t.Tx, convID, userID, r.ID); err != nil {
			return err
		}
		msg = r.message()
		msg.Mentions = req.Mentions
		msg.Files = files
		return t.emitMuted(ids, muted, TopicMessageCreated, convID, userID, MessageEvent{ConversationID: convID, Message: msg})
	})
	if errors.Is(err, errDuplicateSend) {
		msg, err := m.replay(ctx, userID, convID, req.ClientID)
		return msg, false, err
	}
	if err != nil {
		return Message{}, false, err
	}
	m.met.messages.WithLabelValues(MessageText).Inc()
	return msg, true, nil
}

// memberSets returns the sorted ids of members and of those who muted the
// conversation at now.
func memberSets(members []memberRow, now time.Time) (ids, muted []int64) {
	ids = make([]int64, len(members))
	for i, mr := range members {
		ids[i] = mr.UserID
		if mr.MutedUntil != nil && mr.MutedUntil.After(now) {
			muted = append(muted, mr.UserID)
		}
	}
	slices.Sort(ids)
	slices.Sort(muted)
	return ids, muted
}

// replay returns the message userID sent with clientID, ErrNotFound when
// there is none, or a conflict when it went to another conversation.
func (m *Module) replay(ctx context.Context, userID, convID int64, clientID string) (Message, error) {
	r, err := m.store.messageByClientID(ctx, m.db, userID, clientID)
	if err != nil {
		return Message{}, err
	}
	if r.ConversationID != convID {
		return Message{}, conflictf("client_id_conflict", "client_id %s was used for a message in another conversation", clientID)
	}
	msgs, err := m.store.details(ctx, m.db, []messageRow{r})
	if err != nil {
		return Message{}, err
	}
	m.met.replays.Inc()
	return msgs[0], nil
}

// attachable asks the files module for each file's metadata.
func (m *Module) attachable(ctx context.Context, userID int64, ids []string) ([]FileRef, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	if m.files == nil {
		return nil, clientError(ErrInvalid, "attachments_disabled", "attachments are not enabled on this server")
	}
	out := make([]FileRef, 0, len(ids))
	for _, id := range ids {
		f, err := m.files.Attachable(ctx, userID, id)
		if errors.Is(err, ErrFileUnavailable) {
			return nil, clientError(ErrInvalid, "file_unavailable", "file %s does not exist or cannot be attached", id)
		}
		if err != nil {
			return nil, fmt.Errorf("chat: file %s: %w", id, err)
		}
		f.ID = id
		f.Name = store.Clip(f.Name, 255)
		f.ContentType = store.Clip(f.ContentType, 255)
		out = append(out, f)
	}
	return out, nil
}

// forwardSource returns a message userID may forward (visible to them,
// not deleted, text) with its files.
func (m *Module) forwardSource(ctx context.Context, userID, msgID int64) (messageRow, []FileRef, error) {
	rows, err := m.store.messagesByID(ctx, m.db, []int64{msgID})
	if err != nil {
		return messageRow{}, nil, err
	}
	notFound := clientError(ErrInvalid, "bad_request", "forward_from_id is not a message you can forward")
	if len(rows) == 0 {
		return messageRow{}, nil, notFound
	}
	src := rows[0]
	if _, err := m.store.member(ctx, m.db, src.ConversationID, userID); err != nil {
		return messageRow{}, nil, notFound
	}
	if _, err := m.store.visibleMessage(ctx, m.db, src.ConversationID, src.ID, userID); err != nil || src.DeletedAt != nil || src.Kind != MessageText {
		return messageRow{}, nil, notFound
	}
	msgs, err := m.store.details(ctx, m.db, rows)
	if err != nil {
		return messageRow{}, nil, err
	}
	return src, msgs[0].Files, nil
}

// HistoryQuery selects a page of history: the messages before a message
// id, after one (After 0: from the oldest), or around one (the page holds
// it); with none of them the newest. Limit is at most 100.
type HistoryQuery struct {
	Before, After, Around *int64
	Limit                 int
}

// HistoryPage is a page of history, oldest first, and whether there is
// more on either side of it.
type HistoryPage struct {
	Messages      []Message `json:"messages"`
	HasMoreBefore bool      `json:"has_more_before"`
	HasMoreAfter  bool      `json:"has_more_after"`
}

// History returns a page of a conversation's messages as userID sees
// them: without those they deleted for themselves, deleted ones as
// tombstones.
func (m *Module) History(ctx context.Context, userID, convID int64, q HistoryQuery) (HistoryPage, error) {
	set := 0
	for _, v := range []*int64{q.Before, q.After, q.Around} {
		if v == nil {
			continue
		}
		if *v < 0 {
			return HistoryPage{}, invalidf("before, after and around are message ids")
		}
		set++
	}
	if set > 1 {
		return HistoryPage{}, invalidf("use one of before, after and around")
	}
	limit := store.PageLimit(q.Limit, defaultHistoryLimit, MaxHistoryLimit)
	if _, err := m.store.member(ctx, m.db, convID, userID); err != nil {
		return HistoryPage{}, err
	}
	// page reads up to n messages beyond from, oldest first, and whether
	// there are more.
	page := func(from int64, desc bool, n int) ([]messageRow, bool, error) {
		rows, err := m.store.pageMessages(ctx, m.db, convID, userID, from, desc, n+1)
		if err != nil {
			return nil, false, err
		}
		more := len(rows) > n
		if more {
			rows = rows[:n]
		}
		if desc {
			slices.Reverse(rows)
		}
		return rows, more, nil
	}
	exists := func(from int64, desc bool) (bool, error) {
		rows, err := m.store.pageMessages(ctx, m.db, convID, userID, from, desc, 1)
		return len(rows) > 0, err
	}

	var (
		rows []messageRow
		err  error
		p    HistoryPage
	)
	switch {
	case q.Around != nil:
		around := *q.Around
		if _, err := m.store.visibleMessage(ctx, m.db, convID, around, userID); err != nil {
			return HistoryPage{}, err
		}
		var older, newer []messageRow
		older, p.HasMoreBefore, err = page(around, true, (limit-1)/2)
		if err != nil {
			return HistoryPage{}, err
		}
		// The rest of the page starts with the message itself.
		newer, p.HasMoreAfter, err = page(around-1, false, limit-len(older))
		rows = append(older, newer...)
	case q.After != nil:
		rows, p.HasMoreAfter, err = page(*q.After, false, limit)
		if err == nil {
			// Anything at or before the cursor is before this page.
			p.HasMoreBefore, err = exists(*q.After+1, true)
		}
	case q.Before != nil:
		rows, p.HasMoreBefore, err = page(*q.Before, true, limit)
		if err == nil {
			p.HasMoreAfter, err = exists(*q.Before-1, false)
		}
	default:
		rows, p.HasMoreBefore, err = page(math.MaxInt64, true, limit)
	}
	if err != nil {
		return HistoryPage{}, err
	}
	if p.Messages, err = m.store.details(ctx, m.db, rows); err != nil {
		return HistoryPage{}, err
	}
	return p, nil
}

// Message returns one message as userID sees it.
func (m *Module) Message(ctx context.Context, userID, convID, msgID int64) (Message, error) {
	if _, err := m.store.member(ctx, m.db, convID, userID); err != nil {
		return Message{}, err
	}
	r, err := m.store.visibleMessage(ctx, m.db, convID, msgID, userID)
	if err != nil {
		return Message{}, err
	}
	msgs, err := m.store.details(ctx, m.db, []messageRow{r})
	if err != nil {
		return Message{}, err
	}
	return msgs[0], nil
}

// Edit replaces the text (and, when given, the mentions) of userID's own
// message and marks it edited.
func (m *Module) Edit(ctx context.Context, userID, convID, msgID int64, req EditRequest) (Message, error) {
	if err := req.check(m.maxBody); err != nil {
		return Message{}, err
	}
	var msg Message
	err := m.write(ctx, func(t *wtx) error {
		_, _, err := t.enter(convID, userID)
		if err != nil {
			return err
		}
		r, err := m.store.visibleMessage(ctx, t.Tx, convID, msgID, userID)
		if err != nil {
			return err
		}
		switch {
		case r.DeletedAt != nil:
			return conflictf("message_deleted", "the message was deleted")
		case r.SenderID != userID || r.Kind != MessageText:
			return forbiddenf("only the sender can edit a message")
		case r.ForwardedFromID.Valid:
			return forbiddenf("a forwarded message cannot be edited")
		}
		msgs, err := m.store.details(ctx, t.Tx, []messageRow{r})
		if err != nil {
			return err
		}
		if strings.TrimSpace(req.Body) == "" && len(msgs[0].Files) == 0 {
			return invalidf("a message without files needs a body")
		}
		ids, err := m.store.memberIDs(ctx, t.Tx, convID)
		if err != nil {
			return err
		}
		now := store.Time(m.now())
		if err := m.store.editMessage(ctx, t.Tx, msgID, req.Body, now); err != nil {
			return err
		}
		msg = msgs[0]
		msg.Body, msg.EditedAt = req.Body, &now
		if req.Mentions != nil {
			for _, u := range *req.Mentions {
				if _, ok := slices.BinarySearch(ids, u); !ok {
					return invalidf("user %d is not a member of this conversation", u)
				}
			}
			if err := m.store.deleteMentions(ctx, t.Tx, msgID); err != nil {
				return err
			}
			if err := m.store.insertMentions(ctx, t.Tx, msgID, *req.Mentions); err != nil {
				return err
			}
			msg.Mentions = *req.Mentions
		}
		return t.emit(ids, TopicMessageUpdated, convID, userID, MessageEvent{ConversationID: convID, Message: msg})
	})
	return msg, err
}

// Delete deletes a message for userID only (forEveryone false: any
// message they see) or for everyone (their own, or any as a group's admin
// or owner), leaving a tombstone. Deleting again is not an error.
func (m *Module) Delete(ctx context.Context, userID, convID, msgID int64, forEveryone bool) error {
	return m.write(ctx, func(t *wtx) error {
		c, me, err := t.enter(convID, userID)
		if err != nil {
			return err
		}
		r, err := m.store.visibleMessage(ctx, t.Tx, convID, msgID, userID)
		if errors.Is(err, ErrNotFound) && !forEveryone {
			// Hidden already? Then deleting it for me again is done.
			rows, err := m.store.messagesByID(ctx, t.Tx, []int64{msgID})
			if err == nil && len(rows) == 1 && rows[0].ConversationID == convID {
				return nil
			}
			return errMessageNotFound
		}
		if err != nil {
			return err
		}
		ev := MessageDeleted{ConversationID: convID, MessageID: msgID, ForEveryone: forEveryone, By: userID}
		if !forEveryone {
			if err := m.store.hide(ctx, t.Tx, userID, msgID); err != nil {
				return err
			}
			return t.emit([]int64{userID}, TopicMessageDeleted, convID, userID, ev)
		}
		if r.DeletedAt != nil {
			return nil
		}
		if r.SenderID != userID && (c.Kind != KindGroup || rank(me.Role) < rank(RoleAdmin)) {
			return forbiddenf("only the sender or a group admin can delete a message for everyone")
		}
		if err := m.store.tombstone(ctx, t.Tx, []int64{msgID}, m.now()); err != nil {
			return err
		}
		ids, err := m.store.memberIDs(ctx, t.Tx, convID)
		if err != nil {
			return err
		}
		return t.emit(ids, TopicMessageDeleted, convID, userID, ev)
	})
}

// checkEmoji checks a reaction: a short run of printable characters
// without spaces. Which emoji exist is for clients to know.
func checkEmoji(e string) error {
	switch {
	case e == "" || !utf8.ValidString(e):
		return invalidf("emoji must be non-empty UTF-8")
	case len(e) > MaxEmojiBytes || utf8.RuneCountInString(e) > MaxEmojiRunes:
		return invalidf("emoji is longer than %d bytes or %d characters", MaxEmojiBytes, MaxEmojiRunes)
	case strings.ContainsFunc(e, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
		return invalidf("emoji must not contain spaces or control characters")
	}
	return nil
}

// React adds (add true) or removes userID's reaction emoji on a message
// and returns the message's reactions.
func (m *Module) React(ctx context.Context, userID, convID, msgID int64, emoji string, add bool) ([]Reaction, error) {
	if err := checkEmoji(emoji); err != nil {
		return nil, err
	}
	var out []Reaction
	err := m.write(ctx, func(t *wtx) error {
		_, _, err := t.enter(convID, userID)
		if err != nil {
			return err
		}
		r, err := m.store.visibleMessage(ctx, t.Tx, convID, msgID, userID)
		if err != nil {
			return err
		}
		if r.DeletedAt != nil {
			return conflictf("message_deleted", "the message was deleted")
		}
		var changed bool
		if add {
			n, err := m.store.countUserReactions(ctx, t.Tx, msgID, userID)
			if err != nil {
				return err
			}
			if changed, err = m.store.addReaction(ctx, t.Tx, msgID, userID, emoji, m.now()); err != nil {
				return err
			}
			if changed && n >= MaxReactionsPerUser {
				return conflictf("too_many_reactions", "at most %d different reactions per message", MaxReactionsPerUser)
			}
		} else if changed, err = m.store.removeReaction(ctx, t.Tx, msgID, userID, emoji); err != nil {
			return err
		}
		rs, err := m.store.reactionsOf(ctx, t.Tx, []int64{msgID})
		if err != nil {
			return err
		}
		out = rs[msgID]
		if !changed {
			return nil
		}
		ids, err := m.store.memberIDs(ctx, t.Tx, convID)
		if err != nil {
			return err
		}
		return t.emit(ids, TopicReactionChanged, convID, userID, ReactionChanged{
			ConversationID: convID, MessageID: msgID, UserID: userID, Emoji: emoji, Added: add, Reactions: nonNil(out),
		})
	})
	return nonNil(out), err
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// SetPinned pins or unpins a message: in a group admins and the owner
// may, in a direct conversation both members.
func (m *Module) SetPinned(ctx context.Context, userID, convID, msgID int64, pinned bool) error {
	return m.write(ctx, func(t *wtx) error {
		c, me, err := t.enter(convID, userID)
		if err != nil {
			return err
		}
		r, err := m.store.visibleMessage(ctx, t.Tx, convID, msgID, userID)
		if err != nil {
			return err
		}
		if c.Kind == KindGroup && rank(me.Role) < rank(RoleAdmin) {
			return forbiddenf("only the group's admins can pin messages")
		}
		now := store.Time(m.now())
		var changed bool
		if pinned {
			if r.DeletedAt != nil {
				return conflictf("message_deleted", "the message was deleted")
			}
			n, err := m.store.countPins(ctx, t.Tx, convID)
			if err != nil {
				return err
			}
			if changed, err = m.store.pin(ctx, t.Tx, convID, msgID, userID, now); err != nil {
				return err
			}
			if changed && n >= MaxPins {
				return conflictf("too_many_pins", "at most %d pinned messages per conversation", MaxPins)
			}
		} else if changed, err = m.store.unpin(ctx, t.Tx, convID, msgID); err != nil {
			return err
		}
		if !changed {
			return nil
		}
		ids, err := m.store.memberIDs(ctx, t.Tx, convID)
		if err != nil {
			return err
		}
		return t.emit(ids, TopicPinChanged, convID, userID, PinChanged{ConversationID: convID, MessageID: msgID, Pinned: pinned, By: userID, At: now})
	})
}

// Pins lists a conversation's pinned messages, newest pin first.
func (m *Module) Pins(ctx context.Context, userID, convID int64) ([]Pin, error) {
	if _, err := m.store.member(ctx, m.db, convID, userID); err != nil {
		return nil, err
	}
	rows, err := m.store.pins(ctx, m.db, convID, userID)
	if err != nil {
		return nil, err
	}
	mrows := make([]messageRow, len(rows))
	for i, r := range rows {
		mrows[i] = r.messageRow
	}
	msgs, err := m.store.details(ctx, m.db, mrows)
	if err != nil {
		return nil, err
	}
	out := make([]Pin, len(rows))
	for i, r := range rows {
		out[i] = Pin{Message: msgs[i], PinnedBy: r.PinnedBy, PinnedAt: r.PinnedAt.UTC()}
	}
	return out, nil
}

// ReadState is a member's read marker and what is left unread.
type ReadState struct {
	LastReadMessageID int64 `json:"last_read_message_id"`
	Unread            int   `json:"unread"`
	UnreadMentions    int   `json:"unread_mentions"`
}

// MarkRead moves userID's read marker in a conversation forward to
// msgID; a marker never moves back. When it moves every member gets a
// read receipt (chat.read.updated).
func (m *Module) MarkRead(ctx context.Context, userID, convID, msgID int64) (ReadState, error) {
	if msgID <= 0 {
		return ReadState{}, invalidf("message_id must be a message id")
	}
	err := m.write(ctx, func(t *wtx) error {
		_, _, err := t.enter(convID, userID)
		if err != nil {
			return err
		}
		rows, err := m.store.messagesByID(ctx, t.Tx, []int64{msgID})
		if err != nil {
			return err
		}
		if len(rows) == 0 || rows[0].ConversationID != convID {
			return errMessageNotFound
		}
		moved, err := m.store.advanceRead(ctx, t.Tx, convID, userID, msgID)
		if err != nil || !moved {
			return err
		}
		ids, err := m.store.memberIDs(ctx, t.Tx, convID)
		if err != nil {
			return err
		}
		return t.emit(ids, TopicReadUpdated, convID, userID, ReadUpdated{ConversationID: convID, UserID: userID, LastReadMessageID: msgID})
	})
	if err != nil {
		return ReadState{}, err
	}
	rows, err := m.store.views(ctx, m.db, userID, viewFilter{convID: convID})
	if err != nil {
		return ReadState{}, err
	}
	if len(rows) == 0 {
		return ReadState{}, errConversationNotFound
	}
	return ReadState{LastReadMessageID: rows[0].LastReadMessageID, Unread: rows[0].Unread, UnreadMentions: rows[0].UnreadMentions}, nil
}

// Typing tells the other members' open connections that userID is
// typing. Nothing is stored.
func (m *Module) Typing(ctx context.Context, userID, convID int64) error {
	if _, err := m.store.member(ctx, m.db, convID, userID); err != nil {
		return err
	}
	ids, err := m.store.memberIDs(ctx, m.db, convID)
	if err != nil {
		return err
	}
	ids = slices.DeleteFunc(ids, func(id int64) bool { return id == userID })
	if err := m.stream.Signal(ctx, ids, SignalTyping, Typing{ConversationID: convID, UserID: userID}); err != nil {
		return fmt.Errorf("chat: typing: %w", err)
	}
	return nil
}

// SearchQuery is a full-text search: words of Text, each a prefix, all
// required; in one conversation when ConversationID is set; below message
// id Before when set (the next page).
type SearchQuery struct {
	Text           string
	ConversationID int64
	Before         int64
	Limit          int
}

// SearchResult is a page of search hits, newest first. NextBefore is the
// Before of the next page, 0 at the end.
type SearchResult struct {
	Messages   []Message `json:"messages"`
	NextBefore int64     `json:"next_before,omitempty"`
}

// Search finds messages of userID's conversations: case-insensitive,
// Cyrillic included, ё = е, each word a prefix. Deleted messages and
// messages the user deleted for themselves are not found.
func (m *Module) Search(ctx context.Context, userID int64, q SearchQuery) (SearchResult, error) {
	if q.ConversationID < 0 || q.Before < 0 {
		return SearchResult{}, invalidf("conversation_id and before are ids")
	}
	expr, ok := m.db.Dialect.FullTextQuery(q.Text)
	if !ok {
		return SearchResult{}, invalidf("nothing to search for: q needs letters or digits")
	}
	if q.ConversationID != 0 {
		if _, err := m.store.member(ctx, m.db, q.ConversationID, userID); err != nil {
			return SearchResult{}, err
		}
	}
	limit := store.PageLimit(q.Limit, defaultSearchLimit, maxSearchLimit)
	m.met.searches.Inc()
	rows, err := m.store.search(ctx, userID, expr, q.ConversationID, q.Before, limit)
	if err != nil {
		return SearchResult{}, err
	}
	msgs, err := m.store.details(ctx, m.db, rows)
	if err != nil {
		return SearchResult{}, err
	}
	res := SearchResult{Messages: msgs}
	if len(rows) == limit {
		res.NextBefore = rows[len(rows)-1].ID
	}
	return res, nil
}
