package chat

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/elph-server/elph/platform/store"
)

// Store keeps the chat module's data (see migrations/*/00004_chat.sql). It
// works the same on SQLite and MySQL/MariaDB. Methods take the queryer to
// run on, the database or a transaction, because the service composes
// several of them with stream appends in one transaction.
//
// The store checks nothing about who may do what: that is the service's
// job. It does guarantee what the schema guarantees (one direct
// conversation per pair, one message per client_id of a sender).
type Store struct {
	db *store.DB
}

// NewStore returns a Store on db, which must be migrated.
func NewStore(db *store.DB) *Store {
	return &Store{db: db}
}

func (s *Store) isMySQL() bool { return s.db.Dialect.Name() == store.DriverMySQL }

// directKey is the unique key of the direct conversation of two users.
func directKey(a, b int64) string {
	return fmt.Sprintf("%d:%d", min(a, b), max(a, b))
}

// convRow is a row of chat_conversations.
type convRow struct {
	ID            int64          `db:"id"`
	Kind          string         `db:"kind"`
	DirectKey     sql.NullString `db:"direct_key"`
	Title         string         `db:"title"`
	AvatarRef     string         `db:"avatar_ref"`
	CreatedBy     int64          `db:"created_by"`
	LastMessageID int64          `db:"last_message_id"`
	CreatedAt     time.Time      `db:"created_at"`
	UpdatedAt     time.Time      `db:"updated_at"`
}

const convColumns = `c.id, c.kind, c.direct_key, c.title, c.avatar_ref, c.created_by, c.last_message_id, c.created_at, c.updated_at`

func (c convRow) conversation() Conversation {
	return Conversation{
		ID: c.ID, Kind: c.Kind, Title: c.Title, AvatarRef: c.AvatarRef, CreatedBy: c.CreatedBy,
		CreatedAt: c.CreatedAt.UTC(), UpdatedAt: c.UpdatedAt.UTC(), LastMessageID: c.LastMessageID,
	}
}

// memberRow is a row of chat_members.
type memberRow struct {
	ConversationID    int64      `db:"conversation_id"`
	UserID            int64      `db:"user_id"`
	Role              string     `db:"role"`
	JoinedAt          time.Time  `db:"joined_at"`
	MutedUntil        *time.Time `db:"muted_until"`
	LastReadMessageID int64      `db:"last_read_message_id"`
}

const memberColumns = `conversation_id, user_id, role, joined_at, muted_until, last_read_message_id`

func (m memberRow) member() Member {
	return Member{UserID: m.UserID, Role: m.Role, JoinedAt: m.JoinedAt.UTC(), LastReadMessageID: m.LastReadMessageID}
}

func (m memberRow) me() Me {
	var muted *time.Time
	if m.MutedUntil != nil {
		t := m.MutedUntil.UTC()
		muted = &t
	}
	return Me{Role: m.Role, JoinedAt: m.JoinedAt.UTC(), MutedUntil: muted, LastReadMessageID: m.LastReadMessageID}
}

// lockConversation reads a conversation and, on MySQL, locks its row until
// the transaction ends (SQLite's write transactions lock the whole
// database already). Every transaction that changes a conversation calls
// it first, before any other read: concurrent changes of one conversation
// then take turns, so message ids grow in commit order and membership
// read afterwards is the membership the change applies to. It must be the
// transaction's first read: under REPEATABLE READ the snapshot of later
// plain reads starts after the lock is granted.
func (s *Store) lockConversation(ctx context.Context, tx *sqlx.Tx, id int64) (convRow, error) {
	q := "SELECT " + convColumns + " FROM chat_conversations c WHERE c.id = ?"
	if s.isMySQL() {
		q += " FOR UPDATE"
	}
	var c convRow
	err := tx.GetContext(ctx, &c, q, id)
	if errors.Is(err, sql.ErrNoRows) {
		return convRow{}, errConversationNotFound
	}
	if err != nil {
		return convRow{}, fmt.Errorf("chat: lock conversation %d: %w", id, err)
	}
	return c, nil
}

// conversationByDirectKey finds the direct conversation of a pair.
func (s *Store) conversationByDirectKey(ctx context.Context, q sqlx.QueryerContext, key string) (convRow, error) {
	var c convRow
	err := sqlx.GetContext(ctx, q, &c, "SELECT "+convColumns+" FROM chat_conversations c WHERE c.direct_key = ?", key)
	if errors.Is(err, sql.ErrNoRows) {
		return convRow{}, errConversationNotFound
	}
	if err != nil {
		return convRow{}, fmt.Errorf("chat: direct conversation %s: %w", key, err)
	}
	return c, nil
}

// insertConversation stores c and sets its id. A direct conversation that
// exists already fails with an error the dialect calls a unique violation.
func (s *Store) insertConversation(ctx context.Context, tx *sqlx.Tx, c *convRow) error {
	res, err := tx.ExecContext(ctx, `INSERT INTO chat_conversations
		(kind, direct_key, title, avatar_ref, created_by, last_message_id, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, 0, ?, ?)`,
		c.Kind, c.DirectKey, c.Title, c.AvatarRef, c.CreatedBy, store.Time(c.CreatedAt), store.Time(c.UpdatedAt))
	if err != nil {
		return fmt.Errorf("chat: insert conversation: %w", err)
	}
	if c.ID, err = res.LastInsertId(); err != nil {
		return fmt.Errorf("chat: insert conversation: %w", err)
	}
	return nil
}

func (s *Store) updateConversation(ctx context.Context, tx *sqlx.Tx, c convRow) error {
	_, err := tx.ExecContext(ctx, "UPDATE chat_conversations SET title = ?, avatar_ref = ?, updated_at = ? WHERE id = ?",
		c.Title, c.AvatarRef, store.Time(c.UpdatedAt), c.ID)
	if err != nil {
		return fmt.Errorf("chat: update conversation %d: %w", c.ID, err)
	}
	return nil
}

// member returns the membership of userID, or errConversationNotFound: to
// a non-member a conversation does not exist.
func (s *Store) member(ctx context.Context, q sqlx.QueryerContext, convID, userID int64) (memberRow, error) {
	var m memberRow
	err := sqlx.GetContext(ctx, q, &m, "SELECT "+memberColumns+" FROM chat_members WHERE conversation_id = ? AND user_id = ?", convID, userID)
	if errors.Is(err, sql.ErrNoRows) {
		return memberRow{}, errConversationNotFound
	}
	if err != nil {
		return memberRow{}, fmt.Errorf("chat: member %d of %d: %w", userID, convID, err)
	}
	return m, nil
}

// members lists a conversation's members, oldest first.
func (s *Store) members(ctx context.Context, q sqlx.QueryerContext, convID int64) ([]memberRow, error) {
	var ms []memberRow
	err := sqlx.SelectContext(ctx, q, &ms, "SELECT "+memberColumns+" FROM chat_members WHERE conversation_id = ? ORDER BY joined_at, user_id", convID)
	if err != nil {
		return nil, fmt.Errorf("chat: members of %d: %w", convID, err)
	}
	return ms, nil
}

// membersOf lists the members of several conversations.
func (s *Store) membersOf(ctx context.Context, q sqlx.QueryerContext, convIDs []int64) (map[int64][]memberRow, error) {
	out := make(map[int64][]memberRow, len(convIDs))
	if len(convIDs) == 0 {
		return out, nil
	}
	query, args, err := sqlx.In("SELECT "+memberColumns+" FROM chat_members WHERE conversation_id IN (?) ORDER BY conversation_id, joined_at, user_id", convIDs)
	if err != nil {
		return nil, fmt.Errorf("chat: members: %w", err)
	}
	var ms []memberRow
	if err := sqlx.SelectContext(ctx, q, &ms, query, args...); err != nil {
		return nil, fmt.Errorf("chat: members: %w", err)
	}
	for _, m := range ms {
		out[m.ConversationID] = append(out[m.ConversationID], m)
	}
	return out, nil
}

func (s *Store) memberIDs(ctx context.Context, q sqlx.QueryerContext, convID int64) ([]int64, error) {
	var ids []int64
	if err := sqlx.SelectContext(ctx, q, &ids, "SELECT user_id FROM chat_members WHERE conversation_id = ? ORDER BY user_id", convID); err != nil {
		return nil, fmt.Errorf("chat: member ids of %d: %w", convID, err)
	}
	return ids, nil
}

func (s *Store) insertMember(ctx context.Context, tx *sqlx.Tx, m memberRow) error {
	_, err := tx.ExecContext(ctx, "INSERT INTO chat_members ("+memberColumns+") VALUES (?, ?, ?, ?, ?, ?)",
		m.ConversationID, m.UserID, m.Role, store.Time(m.JoinedAt), store.TimePtr(m.MutedUntil), m.LastReadMessageID)
	if err != nil {
		return fmt.Errorf("chat: add member %d to %d: %w", m.UserID, m.ConversationID, err)
	}
	return nil
}

func (s *Store) deleteMember(ctx context.Context, tx *sqlx.Tx, convID, userID int64) error {
	if _, err := tx.ExecContext(ctx, "DELETE FROM chat_members WHERE conversation_id = ? AND user_id = ?", convID, userID); err != nil {
		return fmt.Errorf("chat: remove member %d from %d: %w", userID, convID, err)
	}
	return nil
}

func (s *Store) setRole(ctx context.Context, tx *sqlx.Tx, convID, userID int64, role string) error {
	if _, err := tx.ExecContext(ctx, "UPDATE chat_members SET role = ? WHERE conversation_id = ? AND user_id = ?", role, convID, userID); err != nil {
		return fmt.Errorf("chat: set role of %d in %d: %w", userID, convID, err)
	}
	return nil
}

func (s *Store) setMuted(ctx context.Context, tx *sqlx.Tx, convID, userID int64, until *time.Time) error {
	if _, err := tx.ExecContext(ctx, "UPDATE chat_members SET muted_until = ? WHERE conversation_id = ? AND user_id = ?", store.TimePtr(until), convID, userID); err != nil {
		return fmt.Errorf("chat: mute %d for %d: %w", convID, userID, err)
	}
	return nil
}

// advanceRead moves a read marker forward to msgID; it never moves back.
// It reports whether the marker moved.
func (s *Store) advanceRead(ctx context.Context, tx *sqlx.Tx, convID, userID, msgID int64) (bool, error) {
	res, err := tx.ExecContext(ctx, `UPDATE chat_members SET last_read_message_id = ?
		WHERE conversation_id = ? AND user_id = ? AND last_read_message_id < ?`, msgID, convID, userID, msgID)
	if err != nil {
		return false, fmt.Errorf("chat: read marker of %d in %d: %w", userID, convID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("chat: read marker of %d in %d: %w", userID, convID, err)
	}
	return n > 0, nil
}

// viewFilter selects the conversations of views.
type viewFilter struct {
	convID int64 // one conversation; 0: all of the user's
	// Keyset position in the activity order (last_message_id, id)
	// descending: rows after it. Zero values start at the top.
	afterActivity, afterID int64
	limit                  int
}

// viewRow is a conversation with one member's state and counts.
type viewRow struct {
	convRow
	Role              string     `db:"role"`
	JoinedAt          time.Time  `db:"joined_at"`
	MutedUntil        *time.Time `db:"muted_until"`
	LastReadMessageID int64      `db:"last_read_message_id"`
	MemberCount       int        `db:"member_count"`
	Unread            int        `db:"unread"`
	UnreadMentions    int        `db:"unread_mentions"`
	LastVisibleID     int64      `db:"last_visible_id"`
}

// notHidden is the condition that the message m is not hidden for the
// member mb (delete for me).
const notHidden = `NOT EXISTS (SELECT 1 FROM chat_hidden h WHERE h.user_id = mb.user_id AND h.message_id = m.id)`

// viewQuery selects conversations with the state of one member. Unread
// counts are text messages of others after the read marker that are
// neither deleted nor hidden. The last visible message is found by
// walking the conversation's index from the newest (not MAX, which with
// the hidden condition would read the whole conversation).
const viewQuery = `SELECT ` + convColumns + `,
	mb.role, mb.joined_at, mb.muted_until, mb.last_read_message_id,
	(SELECT COUNT(*) FROM chat_members x WHERE x.conversation_id = c.id) AS member_count,
	(SELECT COUNT(*) FROM chat_messages m WHERE m.conversation_id = c.id AND m.id > mb.last_read_message_id
		AND m.sender_id <> mb.user_id AND m.kind = 'text' AND m.deleted_at IS NULL AND ` + notHidden + `) AS unread,
	(SELECT COUNT(*) FROM chat_mentions n JOIN chat_messages m ON m.id = n.message_id
		WHERE n.user_id = mb.user_id AND m.conversation_id = c.id AND m.id > mb.last_read_message_id
		AND m.deleted_at IS NULL AND ` + notHidden + `) AS unread_mentions,
	COALESCE((SELECT m.id FROM chat_messages m WHERE m.conversation_id = c.id AND ` + notHidden + `
		ORDER BY m.id DESC LIMIT 1), 0) AS last_visible_id
FROM chat_members mb JOIN chat_conversations c ON c.id = mb.conversation_id
WHERE mb.user_id = ?`

func (s *Store) views(ctx context.Context, q sqlx.QueryerContext, userID int64, f viewFilter) ([]viewRow, error) {
	query := viewQuery
	args := []any{userID}
	if f.convID != 0 {
		query += " AND c.id = ?"
		args = append(args, f.convID)
	}
	if f.afterID != 0 {
		query += " AND (c.last_message_id < ? OR (c.last_message_id = ? AND c.id < ?))"
		args = append(args, f.afterActivity, f.afterActivity, f.afterID)
	}
	query += " ORDER BY c.last_message_id DESC, c.id DESC"
	if f.limit > 0 {
		query += " LIMIT ?"
		args = append(args, f.limit)
	}
	var rows []viewRow
	if err := sqlx.SelectContext(ctx, q, &rows, query, args...); err != nil {
		return nil, fmt.Errorf("chat: conversations of %d: %w", userID, err)
	}
	return rows, nil
}

// messageRow is a row of chat_messages.
type messageRow struct {
	ID                int64          `db:"id"`
	ConversationID    int64          `db:"conversation_id"`
	SenderID          int64          `db:"sender_id"`
	ClientID          sql.NullString `db:"client_id"`
	Kind              string         `db:"kind"`
	Body              string         `db:"body"`
	SystemEvent       sql.NullString `db:"system_event"`
	ReplyToID         sql.NullInt64  `db:"reply_to_id"`
	ForwardedFromID   sql.NullInt64  `db:"forwarded_from_id"`
	ForwardedSenderID sql.NullInt64  `db:"forwarded_sender_id"`
	EditedAt          *time.Time     `db:"edited_at"`
	DeletedAt         *time.Time     `db:"deleted_at"`
	CreatedAt         time.Time      `db:"created_at"`
}

const messageColumns = `m.id, m.conversation_id, m.sender_id, m.client_id, m.kind, m.body, m.system_event,
	m.reply_to_id, m.forwarded_from_id, m.forwarded_sender_id, m.edited_at, m.deleted_at, m.created_at`

func (r messageRow) message() Message {
	m := Message{
		ID: r.ID, ConversationID: r.ConversationID, SenderID: r.SenderID, ClientID: r.ClientID.String,
		Kind: r.Kind, Body: r.Body, ReplyToID: r.ReplyToID.Int64, CreatedAt: r.CreatedAt.UTC(),
	}
	if r.SystemEvent.Valid {
		var ev SystemEvent
		if json.Unmarshal([]byte(r.SystemEvent.String), &ev) == nil {
			m.System = &ev
		}
	}
	if r.ForwardedFromID.Valid {
		m.ForwardedFrom = &Forwarded{MessageID: r.ForwardedFromID.Int64, SenderID: r.ForwardedSenderID.Int64}
	}
	if r.EditedAt != nil {
		t := r.EditedAt.UTC()
		m.EditedAt = &t
	}
	if r.DeletedAt != nil {
		t := r.DeletedAt.UTC()
		m.DeletedAt, m.Deleted = &t, true
	}
	return m
}

// insertMessage stores r (body_folded derived from its body) and sets its
// id. A client_id the sender used before fails with a unique violation.
func (s *Store) insertMessage(ctx context.Context, tx *sqlx.Tx, r *messageRow) error {
	res, err := tx.ExecContext(ctx, `INSERT INTO chat_messages
		(conversation_id, sender_id, client_id, kind, body, body_folded, system_event,
		 reply_to_id, forwarded_from_id, forwarded_sender_id, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ConversationID, r.SenderID, r.ClientID, r.Kind, r.Body, store.Fold(r.Body), r.SystemEvent,
		r.ReplyToID, r.ForwardedFromID, r.ForwardedSenderID, store.Time(r.CreatedAt))
	if err != nil {
		return fmt.Errorf("chat: insert message: %w", err)
	}
	if r.ID, err = res.LastInsertId(); err != nil {
		return fmt.Errorf("chat: insert message: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE chat_conversations SET last_message_id = ? WHERE id = ?", r.ID, r.ConversationID); err != nil {
		return fmt.Errorf("chat: conversation %d activity: %w", r.ConversationID, err)
	}
	return nil
}

func (s *Store) messageByClientID(ctx context.Context, q sqlx.QueryerContext, senderID int64, clientID string) (messageRow, error) {
	var r messageRow
	err := sqlx.GetContext(ctx, q, &r, "SELECT "+messageColumns+" FROM chat_messages m WHERE m.sender_id = ? AND m.client_id = ?", senderID, clientID)
	if errors.Is(err, sql.ErrNoRows) {
		return messageRow{}, errMessageNotFound
	}
	if err != nil {
		return messageRow{}, fmt.Errorf("chat: message of %d by client id: %w", senderID, err)
	}
	return r, nil
}

// visibleMessage returns message msgID of conversation convID unless the
// user hid it; errMessageNotFound otherwise.
func (s *Store) visibleMessage(ctx context.Context, q sqlx.QueryerContext, convID, msgID, userID int64) (messageRow, error) {
	var r messageRow
	err := sqlx.GetContext(ctx, q, &r, "SELECT "+messageColumns+` FROM chat_messages m
		WHERE m.id = ? AND m.conversation_id = ?
		AND NOT EXISTS (SELECT 1 FROM chat_hidden h WHERE h.user_id = ? AND h.message_id = m.id)`, msgID, convID, userID)
	if errors.Is(err, sql.ErrNoRows) {
		return messageRow{}, errMessageNotFound
	}
	if err != nil {
		return messageRow{}, fmt.Errorf("chat: message %d: %w", msgID, err)
	}
	return r, nil
}

// messagesByID returns the messages with ids, in no particular order.
func (s *Store) messagesByID(ctx context.Context, q sqlx.QueryerContext, ids []int64) ([]messageRow, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	query, args, err := sqlx.In("SELECT "+messageColumns+" FROM chat_messages m WHERE m.id IN (?)", ids)
	if err != nil {
		return nil, fmt.Errorf("chat: messages: %w", err)
	}
	var rows []messageRow
	if err := sqlx.SelectContext(ctx, q, &rows, query, args...); err != nil {
		return nil, fmt.Errorf("chat: messages: %w", err)
	}
	return rows, nil
}

// pageMessages returns up to limit messages of a conversation that userID
// has not hidden, with id below (desc) or above (asc) the given one.
func (s *Store) pageMessages(ctx context.Context, q sqlx.QueryerContext, convID, userID, from int64, desc bool, limit int) ([]messageRow, error) {
	cmp, order := ">", "ASC"
	if desc {
		cmp, order = "<", "DESC"
	}
	var rows []messageRow
	err := sqlx.SelectContext(ctx, q, &rows, "SELECT "+messageColumns+` FROM chat_messages m
		WHERE m.conversation_id = ? AND m.id `+cmp+` ?
		AND NOT EXISTS (SELECT 1 FROM chat_hidden h WHERE h.user_id = ? AND h.message_id = m.id)
		ORDER BY m.id `+order+` LIMIT ?`, convID, from, userID, limit)
	if err != nil {
		return nil, fmt.Errorf("chat: history of %d: %w", convID, err)
	}
	return rows, nil
}

// details turns rows into messages with their mentions, files and
// reactions, in the order of rows.
func (s *Store) details(ctx context.Context, q sqlx.QueryerContext, rows []messageRow) ([]Message, error) {
	out := make([]Message, len(rows))
	if len(rows) == 0 {
		return out, nil
	}
	ids := make([]int64, 0, len(rows))
	index := make(map[int64][]int, len(rows))
	for i, r := range rows {
		out[i] = r.message()
		if r.DeletedAt == nil {
			if _, ok := index[r.ID]; !ok {
				ids = append(ids, r.ID)
			}
			index[r.ID] = append(index[r.ID], i)
		}
	}
	if len(ids) == 0 {
		return out, nil
	}

	var mentions []struct {
		MessageID int64 `db:"message_id"`
		UserID    int64 `db:"user_id"`
	}
	if err := s.selectIn(ctx, q, &mentions, "SELECT message_id, user_id FROM chat_mentions WHERE message_id IN (?) ORDER BY message_id, user_id", ids); err != nil {
		return nil, fmt.Errorf("chat: mentions: %w", err)
	}
	for _, m := range mentions {
		for _, i := range index[m.MessageID] {
			out[i].Mentions = append(out[i].Mentions, m.UserID)
		}
	}

	var files []struct {
		MessageID int64 `db:"message_id"`
		FileRef
	}
	if err := s.selectIn(ctx, q, &files, `SELECT message_id, file_id AS id, name, content_type, size
		FROM chat_message_files WHERE message_id IN (?) ORDER BY message_id, position`, ids); err != nil {
		return nil, fmt.Errorf("chat: files: %w", err)
	}
	for _, f := range files {
		for _, i := range index[f.MessageID] {
			out[i].Files = append(out[i].Files, f.FileRef)
		}
	}

	reactions, err := s.reactionsOf(ctx, q, ids)
	if err != nil {
		return nil, err
	}
	for id, rs := range reactions {
		for _, i := range index[id] {
			out[i].Reactions = rs
		}
	}
	return out, nil
}

// selectIn runs a query with one "IN (?)" expanded to ids.
func (s *Store) selectIn(ctx context.Context, q sqlx.QueryerContext, dest any, query string, ids []int64) error {
	query, args, err := sqlx.In(query, ids)
	if err != nil {
		return err
	}
	return sqlx.SelectContext(ctx, q, dest, query, args...)
}

// reactionsOf returns the reactions of messages, each emoji in the order
// it was first used and its users in the order they reacted.
func (s *Store) reactionsOf(ctx context.Context, q sqlx.QueryerContext, ids []int64) (map[int64][]Reaction, error) {
	var rows []struct {
		MessageID int64  `db:"message_id"`
		UserID    int64  `db:"user_id"`
		Emoji     string `db:"emoji"`
	}
	if err := s.selectIn(ctx, q, &rows, `SELECT message_id, user_id, emoji FROM chat_reactions
		WHERE message_id IN (?) ORDER BY message_id, id`, ids); err != nil {
		return nil, fmt.Errorf("chat: reactions: %w", err)
	}
	out := make(map[int64][]Reaction)
	for _, r := range rows {
		rs := out[r.MessageID]
		i := 0
		for i < len(rs) && rs[i].Emoji != r.Emoji {
			i++
		}
		if i == len(rs) {
			rs = append(rs, Reaction{Emoji: r.Emoji})
		}
		rs[i].UserIDs = append(rs[i].UserIDs, r.UserID)
		out[r.MessageID] = rs
	}
	return out, nil
}

func (s *Store) insertMentions(ctx context.Context, tx *sqlx.Tx, msgID int64, userIDs []int64) error {
	for _, u := range userIDs {
		if _, err := tx.ExecContext(ctx, "INSERT INTO chat_mentions (message_id, user_id) VALUES (?, ?)", msgID, u); err != nil {
			return fmt.Errorf("chat: mention %d in %d: %w", u, msgID, err)
		}
	}
	return nil
}

func (s *Store) deleteMentions(ctx context.Context, tx *sqlx.Tx, msgID int64) error {
	if _, err := tx.ExecContext(ctx, "DELETE FROM chat_mentions WHERE message_id = ?", msgID); err != nil {
		return fmt.Errorf("chat: mentions of %d: %w", msgID, err)
	}
	return nil
}

func (s *Store) insertFiles(ctx context.Context, tx *sqlx.Tx, msgID int64, files []FileRef) error {
	for i, f := range files {
		_, err := tx.ExecContext(ctx, `INSERT INTO chat_message_files (message_id, file_id, position, name, content_type, size)
			VALUES (?, ?, ?, ?, ?, ?)`, msgID, f.ID, i, f.Name, f.ContentType, f.Size)
		if err != nil {
			return fmt.Errorf("chat: attach %s to %d: %w", f.ID, msgID, err)
		}
	}
	return nil
}

func (s *Store) editMessage(ctx context.Context, tx *sqlx.Tx, msgID int64, body string, at time.Time) error {
	_, err := tx.ExecContext(ctx, "UPDATE chat_messages SET body = ?, body_folded = ?, edited_at = ? WHERE id = ?",
		body, store.Fold(body), store.Time(at), msgID)
	if err != nil {
		return fmt.Errorf("chat: edit message %d: %w", msgID, err)
	}
	return nil
}

// tombstone deletes messages for everyone: their text, mentions, files,
// reactions and pins go, the rows stay so history keeps its shape.
func (s *Store) tombstone(ctx context.Context, tx *sqlx.Tx, ids []int64, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	for _, stmt := range []string{
		"UPDATE chat_messages SET body = '', body_folded = '', deleted_at = ? WHERE id IN (?) AND deleted_at IS NULL",
		"DELETE FROM chat_mentions WHERE message_id IN (?)",
		"DELETE FROM chat_message_files WHERE message_id IN (?)",
		"DELETE FROM chat_reactions WHERE message_id IN (?)",
		"DELETE FROM chat_pins WHERE message_id IN (?)",
	} {
		var (
			query string
			args  []any
			err   error
		)
		if strings.Contains(stmt, "deleted_at = ?") {
			query, args, err = sqlx.In(stmt, store.Time(at), ids)
		} else {
			query, args, err = sqlx.In(stmt, ids)
		}
		if err == nil {
			_, err = tx.ExecContext(ctx, query, args...)
		}
		if err != nil {
			return fmt.Errorf("chat: delete messages: %w", err)
		}
	}
	return nil
}

func (s *Store) hide(ctx context.Context, tx *sqlx.Tx, userID, msgID int64) error {
	if _, err := tx.ExecContext(ctx, s.db.Dialect.InsertIgnore("chat_hidden", []string{"user_id", "message_id"}), userID, msgID); err != nil {
		return fmt.Errorf("chat: hide %d for %d: %w", msgID, userID, err)
	}
	return nil
}

// addReaction adds one reaction and reports whether it was new.
func (s *Store) addReaction(ctx context.Context, tx *sqlx.Tx, msgID, userID int64, emoji string, at time.Time) (bool, error) {
	res, err := tx.ExecContext(ctx, s.db.Dialect.InsertIgnore("chat_reactions", []string{"message_id", "user_id", "emoji", "created_at"}),
		msgID, userID, emoji, store.Time(at))
	if err != nil {
		return false, fmt.Errorf("chat: react to %d: %w", msgID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("chat: react to %d: %w", msgID, err)
	}
	return n > 0, nil
}

// removeReaction removes one reaction and reports whether there was one.
func (s *Store) removeReaction(ctx context.Context, tx *sqlx.Tx, msgID, userID int64, emoji string) (bool, error) {
	res, err := tx.ExecContext(ctx, "DELETE FROM chat_reactions WHERE message_id = ? AND user_id = ? AND emoji = ?", msgID, userID, emoji)
	if err != nil {
		return false, fmt.Errorf("chat: remove reaction from %d: %w", msgID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("chat: remove reaction from %d: %w", msgID, err)
	}
	return n > 0, nil
}

func (s *Store) countUserReactions(ctx context.Context, q sqlx.QueryerContext, msgID, userID int64) (int, error) {
	var n int
	if err := sqlx.GetContext(ctx, q, &n, "SELECT COUNT(*) FROM chat_reactions WHERE message_id = ? AND user_id = ?", msgID, userID); err != nil {
		return 0, fmt.Errorf("chat: reactions of %d on %d: %w", userID, msgID, err)
	}
	return n, nil
}

// pin pins a message and reports whether it was not pinned before.
func (s *Store) pin(ctx context.Context, tx *sqlx.Tx, convID, msgID, by int64, at time.Time) (bool, error) {
	res, err := tx.ExecContext(ctx, s.db.Dialect.InsertIgnore("chat_pins", []string{"conversation_id", "message_id", "pinned_by", "pinned_at"}),
		convID, msgID, by, store.Time(at))
	if err != nil {
		return false, fmt.Errorf("chat: pin %d: %w", msgID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("chat: pin %d: %w", msgID, err)
	}
	return n > 0, nil
}

func (s *Store) unpin(ctx context.Context, tx *sqlx.Tx, convID, msgID int64) (bool, error) {
	res, err := tx.ExecContext(ctx, "DELETE FROM chat_pins WHERE conversation_id = ? AND message_id = ?", convID, msgID)
	if err != nil {
		return false, fmt.Errorf("chat: unpin %d: %w", msgID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("chat: unpin %d: %w", msgID, err)
	}
	return n > 0, nil
}

func (s *Store) countPins(ctx context.Context, q sqlx.QueryerContext, convID int64) (int, error) {
	var n int
	if err := sqlx.GetContext(ctx, q, &n, "SELECT COUNT(*) FROM chat_pins WHERE conversation_id = ?", convID); err != nil {
		return 0, fmt.Errorf("chat: pins of %d: %w", convID, err)
	}
	return n, nil
}

// pinRow is a pin with its message.
type pinRow struct {
	messageRow
	PinnedBy int64     `db:"pinned_by"`
	PinnedAt time.Time `db:"pinned_at"`
}

// pins lists a conversation's pinned messages the user has not hidden,
// newest pin first.
func (s *Store) pins(ctx context.Context, q sqlx.QueryerContext, convID, userID int64) ([]pinRow, error) {
	var rows []pinRow
	err := sqlx.SelectContext(ctx, q, &rows, "SELECT "+messageColumns+`, p.pinned_by, p.pinned_at
		FROM chat_pins p JOIN chat_messages m ON m.id = p.message_id
		WHERE p.conversation_id = ?
		AND NOT EXISTS (SELECT 1 FROM chat_hidden h WHERE h.user_id = ? AND h.message_id = m.id)
		ORDER BY p.pinned_at DESC, m.id DESC`, convID, userID)
	if err != nil {
		return nil, fmt.Errorf("chat: pins of %d: %w", convID, err)
	}
	return rows, nil
}

// search finds text messages of the user's conversations whose folded
// body matches the full-text expression expr (from FullTextQuery), newest
// first, below id before (0: from the newest), in one conversation when
// convID is not 0.
func (s *Store) search(ctx context.Context, userID int64, expr string, convID, before int64, limit int) ([]messageRow, error) {
	var from string
	if s.isMySQL() {
		from = "chat_messages m JOIN chat_members mb ON mb.conversation_id = m.conversation_id AND mb.user_id = ?" +
			" WHERE " + s.db.Dialect.FullTextWhere("", []string{"body_folded"})
	} else {
		from = "chat_messages_fts JOIN chat_messages m ON m.id = chat_messages_fts.rowid" +
			" JOIN chat_members mb ON mb.conversation_id = m.conversation_id AND mb.user_id = ?" +
			" WHERE " + s.db.Dialect.FullTextWhere("chat_messages_fts", nil)
	}
	query := "SELECT " + messageColumns + " FROM " + from + " AND m.kind = 'text' AND m.deleted_at IS NULL AND " + notHidden
	args := []any{userID, expr}
	if convID != 0 {
		query += " AND m.conversation_id = ?"
		args = append(args, convID)
	}
	if before != 0 {
		query += " AND m.id < ?"
		args = append(args, before)
	}
	query += " ORDER BY m.id DESC LIMIT ?"
	args = append(args, limit)
	var rows []messageRow
	if err := sqlx.SelectContext(ctx, s.db, &rows, query, args...); err != nil {
		return nil, fmt.Errorf("chat: search: %w", err)
	}
	return rows, nil
}

// canReadFile reports whether fileID is attached to a message, not
// deleted, of a conversation userID belongs to.
func (s *Store) canReadFile(ctx context.Context, userID int64, fileID string) (bool, error) {
	var one int
	err := s.db.GetContext(ctx, &one, `SELECT 1 FROM chat_message_files f
		JOIN chat_messages m ON m.id = f.message_id
		JOIN chat_members mb ON mb.conversation_id = m.conversation_id AND mb.user_id = ?
		WHERE f.file_id = ? AND m.deleted_at IS NULL LIMIT 1`, userID, fileID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("chat: file %q access of %d: %w", fileID, userID, err)
	}
	return true, nil
}

// expiredMessages returns up to limit ids of messages created before
// cutoff that are not tombstones yet, oldest first.
func (s *Store) expiredMessages(ctx context.Context, cutoff time.Time, limit int) ([]int64, error) {
	var ids []int64
	err := s.db.SelectContext(ctx, &ids, `SELECT id FROM chat_messages
		WHERE created_at < ? AND deleted_at IS NULL AND kind = 'text' ORDER BY created_at, id LIMIT ?`, store.Time(cutoff), limit)
	if err != nil {
		return nil, fmt.Errorf("chat: expired messages: %w", err)
	}
	return ids, nil
}
