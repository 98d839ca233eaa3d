package chat

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/elph-server/elph/platform/store"
)

// Limits of conversations.
const (
	MaxTitleChars     = 255
	MaxAvatarRefBytes = 255
	// MaxMembers bounds a group.
	MaxMembers = 1000
	// MaxMembersPerRequest bounds the users added (or invited at creation)
	// by one request.
	MaxMembersPerRequest = 200
	// Conversation list pages.
	defaultListLimit = 50
	maxListLimit     = 200
)

// checkTitle trims a group title and checks it.
func checkTitle(s string) (string, error) {
	s = strings.TrimSpace(s)
	switch {
	case !utf8.ValidString(s):
		return "", invalidf("title is not valid UTF-8")
	case s == "":
		return "", invalidf("a group needs a title")
	case utf8.RuneCountInString(s) > MaxTitleChars:
		return "", invalidf("title is longer than %d characters", MaxTitleChars)
	case strings.ContainsFunc(s, isControl):
		return "", invalidf("title contains control characters")
	}
	return s, nil
}

func checkAvatarRef(s string) error {
	switch {
	case len(s) > MaxAvatarRefBytes:
		return invalidf("avatar_ref is longer than %d bytes", MaxAvatarRefBytes)
	case !utf8.ValidString(s) || strings.ContainsFunc(s, isControl):
		return invalidf("avatar_ref holds invalid characters")
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// checkPeople dedupes ids, drops self and checks that the rest are
// existing accounts.
func (m *Module) checkPeople(ctx context.Context, self int64, ids []int64) ([]int64, error) {
	out := make([]int64, 0, len(ids))
	for _, id := range ids {
		if id <= 0 {
			return nil, invalidf("user id %d is not valid", id)
		}
		if id != self {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > MaxMembersPerRequest {
		return nil, invalidf("at most %d users per request", MaxMembersPerRequest)
	}
	if len(out) == 0 {
		return out, nil
	}
	exist, err := m.people.Existing(ctx, out)
	if err != nil {
		return nil, fmt.Errorf("chat: look up users: %w", err)
	}
	var unknown []string
	for _, id := range out {
		if !exist[id] {
			unknown = append(unknown, fmt.Sprint(id))
		}
	}
	if len(unknown) > 0 {
		return nil, clientError(ErrInvalid, "unknown_users", "no such users: %s", strings.Join(unknown, ", "))
	}
	return out, nil
}

// CreateDirect returns the direct conversation of userID and peerID,
// creating it when there is none; created reports which.
func (m *Module) CreateDirect(ctx context.Context, userID, peerID int64) (ConversationView, bool, error) {
	if peerID == userID {
		return ConversationView{}, false, invalidf("a direct conversation needs another user")
	}
	peers, err := m.checkPeople(ctx, userID, []int64{peerID})
	if err != nil {
		return ConversationView{}, false, err
	}
	key := directKey(userID, peers[0])
	if c, err := m.store.conversationByDirectKey(ctx, m.db, key); err == nil {
		v, err := m.View(ctx, userID, c.ID)
		return v, false, err
	} else if !errors.Is(err, ErrNotFound) {
		return ConversationView{}, false, err
	}

	now := store.Time(m.now())
	var id int64
	err = m.write(ctx, func(t *wtx) error {
		c := convRow{Kind: KindDirect, DirectKey: sql.NullString{String: key, Valid: true}, CreatedBy: userID, CreatedAt: now, UpdatedAt: now}
		if err := m.store.insertConversation(ctx, t.Tx, &c); err != nil {
			return err
		}
		id = c.ID
		users := []int64{min(userID, peerID), max(userID, peerID)}
		conv := c.conversation()
		conv.MemberCount = 2
		for _, u := range users {
			mr := memberRow{ConversationID: c.ID, UserID: u, Role: RoleMember, JoinedAt: now}
			if err := m.store.insertMember(ctx, t.Tx, mr); err != nil {
				return err
			}
			conv.Members = append(conv.Members, mr.member())
		}
		return t.emit(users, TopicConversationCreated, c.ID, userID, ConversationEvent{Conversation: conv, By: userID})
	})
	if m.db.Dialect.IsUniqueViolation(err) {
		// The peer created it at the same moment.
		c, err := m.store.conversationByDirectKey(ctx, m.db, key)
		if err != nil {
			return ConversationView{}, false, err
		}
		v, err := m.View(ctx, userID, c.ID)
		return v, false, err
	}
	if err != nil {
		return ConversationView{}, false, err
	}
	v, err := m.View(ctx, userID, id)
	return v, true, err
}

// CreateGroup creates a group owned by userID with the given members.
func (m *Module) CreateGroup(ctx context.Context, userID int64, title, avatarRef string, memberIDs []int64) (ConversationView, error) {
	title, err := checkTitle(title)
	if err != nil {
		return ConversationView{}, err
	}
	if err := checkAvatarRef(avatarRef); err != nil {
		return ConversationView{}, err
	}
	others, err := m.checkPeople(ctx, userID, memberIDs)
	if err != nil {
		return ConversationView{}, err
	}
	now := store.Time(m.now())
	var id int64
	err = m.write(ctx, func(t *wtx) error {
		c := convRow{Kind: KindGroup, Title: title, AvatarRef: avatarRef, CreatedBy: userID, CreatedAt: now, UpdatedAt: now}
		if err := m.store.insertConversation(ctx, t.Tx, &c); err != nil {
			return err
		}
		id = c.ID
		if err := m.store.insertMember(ctx, t.Tx, memberRow{ConversationID: c.ID, UserID: userID, Role: RoleOwner, JoinedAt: now}); err != nil {
			return err
		}
		for _, u := range others {
			if err := m.store.insertMember(ctx, t.Tx, memberRow{ConversationID: c.ID, UserID: u, Role: RoleMember, JoinedAt: now}); err != nil {
				return err
			}
		}
		all := append([]int64{userID}, others...)
		conv := c.conversation()
		conv.MemberCount = len(all)
		if err := t.emit(all, TopicConversationCreated, c.ID, userID, ConversationEvent{Conversation: conv, By: userID}); err != nil {
			return err
		}
		_, err := t.system(c.ID, all, SystemEvent{Event: SystemCreated, ActorID: userID, UserIDs: others, Title: title}, now)
		return err
	})
	if err != nil {
		return ConversationView{}, err
	}
	return m.View(ctx, userID, id)
}

// system stores a system message and announces it to users.
func (t *wtx) system(convID int64, users []int64, ev SystemEvent, now time.Time) (Message, error) {
	raw, err := json.Marshal(ev)
	if err != nil {
		return Message{}, fmt.Errorf("chat: encode system message: %w", err)
	}
	r := messageRow{ConversationID: convID, SenderID: ev.ActorID, Kind: MessageSystem, SystemEvent: sql.NullString{String: string(raw), Valid: true}, CreatedAt: now}
	if err := t.m.store.insertMessage(t.ctx, t.Tx, &r); err != nil {
		return Message{}, err
	}
	t.onCommit(func() { t.m.met.messages.WithLabelValues(MessageSystem).Inc() })
	msg := r.message()
	return msg, t.emit(users, TopicMessageCreated, convID, ev.ActorID, MessageEvent{ConversationID: convID, Message: msg})
}

// View returns one conversation as userID sees it, with its members.
func (m *Module) View(ctx context.Context, userID, convID int64) (ConversationView, error) {
	rows, err := m.store.views(ctx, m.db, userID, viewFilter{convID: convID})
	if err != nil {
		return ConversationView{}, err
	}
	if len(rows) == 0 {
		return ConversationView{}, errConversationNotFound
	}
	vs, err := m.buildViews(ctx, rows, true)
	if err != nil {
		return ConversationView{}, err
	}
	return vs[0], nil
}

// listCursor is the position in the conversation list.
type listCursor struct {
	A int64 `json:"a"` // last_message_id
	I int64 `json:"i"` // id
}

// List returns a page of userID's conversations, most recently active
// first, and the cursor of the next page ("" at the end).
func (m *Module) List(ctx context.Context, userID int64, cursor string, limit int) ([]ConversationView, string, error) {
	f := viewFilter{limit: store.PageLimit(limit, defaultListLimit, maxListLimit)}
	if cursor != "" {
		var c listCursor
		if err := store.DecodeCursor(cursor, &c); err != nil || c.I <= 0 {
			return nil, "", invalidf("cursor is not valid")
		}
		f.afterActivity, f.afterID = c.A, c.I
	}
	rows, err := m.store.views(ctx, m.db, userID, f)
	if err != nil {
		return nil, "", err
	}
	vs, err := m.buildViews(ctx, rows, false)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(rows) == f.limit {
		last := rows[len(rows)-1]
		if next, err = store.EncodeCursor(listCursor{A: last.LastMessageID, I: last.ID}); err != nil {
			return nil, "", err
		}
	}
	return vs, next, nil
}

// buildViews completes view rows with last messages and members: of
// every conversation with allMembers, of direct ones only otherwise.
func (m *Module) buildViews(ctx context.Context, rows []viewRow, allMembers bool) ([]ConversationView, error) {
	var lastIDs, memberConvs []int64
	for _, r := range rows {
		if r.LastVisibleID != 0 {
			lastIDs = append(lastIDs, r.LastVisibleID)
		}
		if allMembers || r.Kind == KindDirect {
			memberConvs = append(memberConvs, r.ID)
		}
	}
	lastRows, err := m.store.messagesByID(ctx, m.db, lastIDs)
	if err != nil {
		return nil, err
	}
	lastMsgs, err := m.store.details(ctx, m.db, lastRows)
	if err != nil {
		return nil, err
	}
	byID := make(map[int64]*Message, len(lastMsgs))
	for i := range lastMsgs {
		byID[lastMsgs[i].ID] = &lastMsgs[i]
	}
	members, err := m.store.membersOf(ctx, m.db, memberConvs)
	if err != nil {
		return nil, err
	}
	out := make([]ConversationView, len(rows))
	for i, r := range rows {
		v := ConversationView{
			Conversation:   r.conversation(),
			Me:             memberRow{Role: r.Role, JoinedAt: r.JoinedAt, MutedUntil: r.MutedUntil, LastReadMessageID: r.LastReadMessageID}.me(),
			Unread:         r.Unread,
			UnreadMentions: r.UnreadMentions,
			LastMessage:    byID[r.LastVisibleID],
		}
		v.MemberCount = r.MemberCount
		for _, mr := range members[r.ID] {
			v.Members = append(v.Members, mr.member())
		}
		out[i] = v
	}
	return out, nil
}

// ConversationUpdate is a change of a group's title or avatar; nil fields
// stay as they are.
type ConversationUpdate struct {
	Title     *string
	AvatarRef *string
}

// Update changes a group's title or avatar (admins and the owner). A new
// title leaves a "renamed" system message.
func (m *Module) Update(ctx context.Context, userID, convID int64, u ConversationUpdate) (ConversationView, error) {
	if u.Title != nil {
		t, err := checkTitle(*u.Title)
		if err != nil {
			return ConversationView{}, err
		}
		u.Title = &t
	}
	if u.AvatarRef != nil {
		if err := checkAvatarRef(*u.AvatarRef); err != nil {
			return ConversationView{}, err
		}
	}
	now := store.Time(m.now())
	err := m.write(ctx, func(t *wtx) error {
		c, me, err := t.enter(convID, userID)
		if err != nil {
			return err
		}
		if err := requireGroupRole(c, me, RoleAdmin, "change the title or avatar"); err != nil {
			return err
		}
		renamed := u.Title != nil && *u.Title != c.Title
		changed := renamed || (u.AvatarRef != nil && *u.AvatarRef != c.AvatarRef)
		if !changed {
			return nil
		}
		if u.Title != nil {
			c.Title = *u.Title
		}
		if u.AvatarRef != nil {
			c.AvatarRef = *u.AvatarRef
		}
		c.UpdatedAt = now
		if err := m.store.updateConversation(ctx, t.Tx, c); err != nil {
			return err
		}
		ids, err := m.store.memberIDs(ctx, t.Tx, convID)
		if err != nil {
			return err
		}
		conv := c.conversation()
		conv.MemberCount = len(ids)
		if err := t.emit(ids, TopicConversationUpdated, convID, userID, ConversationEvent{Conversation: conv, By: userID}); err != nil {
			return err
		}
		if renamed {
			_, err = t.system(convID, ids, SystemEvent{Event: SystemRenamed, ActorID: userID, Title: c.Title}, now)
		}
		return err
	})
	if err != nil {
		return ConversationView{}, err
	}
	return m.View(ctx, userID, convID)
}

// requireGroupRole checks that c is a group and me has at least role.
func requireGroupRole(c convRow, me memberRow, role, what string) error {
	if c.Kind != KindGroup {
		return forbiddenf("cannot %s in a direct conversation", what)
	}
	if rank(me.Role) < rank(role) {
		return forbiddenf("only the group's %ss can %s", role, what)
	}
	return nil
}

// AddMembers adds users to a group (admins and the owner) and returns the
// members added; users who are members already are skipped.
func (m *Module) AddMembers(ctx context.Context, userID, convID int64, userIDs []int64) ([]Member, error) {
	if len(userIDs) == 0 {
		return nil, invalidf("no users to add")
	}
	ids, err := m.checkPeople(ctx, userID, userIDs)
	if err != nil {
		return nil, err
	}
	now := store.Time(m.now())
	var added []Member
	err = m.write(ctx, func(t *wtx) error {
		added = nil
		c, me, err := t.enter(convID, userID)
		if err != nil {
			return err
		}
		if err := requireGroupRole(c, me, RoleAdmin, "add members"); err != nil {
			return err
		}
		old, err := m.store.memberIDs(ctx, t.Tx, convID)
		if err != nil {
			return err
		}
		var fresh []int64
		for _, id := range ids {
			if _, found := slices.BinarySearch(old, id); !found {
				fresh = append(fresh, id)
			}
		}
		if len(fresh) == 0 {
			return nil
		}
		if len(old)+len(fresh) > MaxMembers {
			return conflictf("too_many_members", "a group has at most %d members", MaxMembers)
		}
		for _, id := range fresh {
			// New members start with everything before read, so the
			// history they now see is not counted as unread.
			mr := memberRow{ConversationID: convID, UserID: id, Role: RoleMember, JoinedAt: now, LastReadMessageID: c.LastMessageID}
			if err := m.store.insertMember(ctx, t.Tx, mr); err != nil {
				return err
			}
			added = append(added, mr.member())
		}
		conv := c.conversation()
		conv.MemberCount = len(old) + len(fresh)
		if err := t.emit(fresh, TopicConversationCreated, convID, userID, ConversationEvent{Conversation: conv, By: userID}); err != nil {
			return err
		}
		if err := t.emit(old, TopicMemberAdded, convID, userID, MembersAdded{ConversationID: convID, Members: added, By: userID}); err != nil {
			return err
		}
		all := append(slices.Clone(old), fresh...)
		_, err = t.system(convID, all, SystemEvent{Event: SystemJoined, ActorID: userID, UserIDs: fresh}, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	if added == nil {
		added = []Member{}
	}
	return added, nil
}

// RemoveMember removes targetID from a group. The owner may remove anyone
// else, an admin only plain members.
func (m *Module) RemoveMember(ctx context.Context, userID, convID, targetID int64) error {
	if targetID == userID {
		return m.Leave(ctx, userID, convID)
	}
	now := store.Time(m.now())
	return m.write(ctx, func(t *wtx) error {
		c, me, err := t.enter(convID, userID)
		if err != nil {
			return err
		}
		if err := requireGroupRole(c, me, RoleAdmin, "remove members"); err != nil {
			return err
		}
		target, err := m.store.member(ctx, t.Tx, convID, targetID)
		if err != nil {
			return clientError(ErrNotFound, "not_found", "no such member")
		}
		if rank(target.Role) >= rank(me.Role) {
			return forbiddenf("cannot remove a member whose role is %s", target.Role)
		}
		before, err := m.store.memberIDs(ctx, t.Tx, convID)
		if err != nil {
			return err
		}
		if err := m.store.deleteMember(ctx, t.Tx, convID, targetID); err != nil {
			return err
		}
		if err := t.emit(before, TopicMemberRemoved, convID, userID, MemberRemoved{ConversationID: convID, UserID: targetID, By: userID}); err != nil {
			return err
		}
		rest := slices.DeleteFunc(slices.Clone(before), func(id int64) bool { return id == targetID })
		_, err = t.system(convID, rest, SystemEvent{Event: SystemRemoved, ActorID: userID, UserIDs: []int64{targetID}}, now)
		return err
	})
}

// Leave takes userID out of a group. An owner who leaves hands the group
// to the longest-standing admin, or else the longest-standing member.
func (m *Module) Leave(ctx context.Context, userID, convID int64) error {
	now := store.Time(m.now())
	return m.write(ctx, func(t *wtx) error {
		c, me, err := t.enter(convID, userID)
		if err != nil {
			return err
		}
		if c.Kind != KindGroup {
			return forbiddenf("cannot leave a direct conversation")
		}
		members, err := m.store.members(ctx, t.Tx, convID)
		if err != nil {
			return err
		}
		before := make([]int64, 0, len(members))
		var heir *memberRow
		for i, mr := range members {
			before = append(before, mr.UserID)
			if mr.UserID == userID {
				continue
			}
			// members are oldest first: the first admin, else the first.
			if heir == nil || (heir.Role != RoleAdmin && mr.Role == RoleAdmin) {
				heir = &members[i]
			}
		}
		slices.Sort(before)
		if err := m.store.deleteMember(ctx, t.Tx, convID, userID); err != nil {
			return err
		}
		rest := slices.DeleteFunc(slices.Clone(before), func(id int64) bool { return id == userID })
		if me.Role == RoleOwner && heir != nil {
			if err := m.store.setRole(ctx, t.Tx, convID, heir.UserID, RoleOwner); err != nil {
				return err
			}
			heir.Role = RoleOwner
			if err := t.emit(rest, TopicMemberUpdated, convID, userID, MemberUpdated{ConversationID: convID, Member: heir.member(), By: userID}); err != nil {
				return err
			}
		}
		if err := t.emit(before, TopicMemberRemoved, convID, userID, MemberRemoved{ConversationID: convID, UserID: userID, By: userID, Left: true}); err != nil {
			return err
		}
		_, err = t.system(convID, rest, SystemEvent{Event: SystemLeft, ActorID: userID, UserIDs: []int64{userID}}, now)
		return err
	})
}

// SetRole changes a member's role (the owner only). Making someone the
// owner hands the group over: the old owner becomes an admin.
func (m *Module) SetRole(ctx context.Context, userID, convID, targetID int64, role string) ([]Member, error) {
	if rank(role) == 0 {
		return nil, invalidf("role must be %s, %s or %s", RoleOwner, RoleAdmin, RoleMember)
	}
	var changed []Member
	err := m.write(ctx, func(t *wtx) error {
		changed = nil
		c, me, err := t.enter(convID, userID)
		if err != nil {
			return err
		}
		if err := requireGroupRole(c, me, RoleOwner, "change roles"); err != nil {
			return err
		}
		if targetID == userID {
			return forbiddenf("the owner hands the group over by making another member the owner")
		}
		target, err := m.store.member(ctx, t.Tx, convID, targetID)
		if err != nil {
			return clientError(ErrNotFound, "not_found", "no such member")
		}
		if target.Role == role {
			changed = []Member{target.member()}
			return nil
		}
		if err := m.store.setRole(ctx, t.Tx, convID, targetID, role); err != nil {
			return err
		}
		target.Role = role
		changed = append(changed, target.member())
		if role == RoleOwner {
			if err := m.store.setRole(ctx, t.Tx, convID, userID, RoleAdmin); err != nil {
				return err
			}
			me.Role = RoleAdmin
			changed = append(changed, me.member())
		}
		ids, err := m.store.memberIDs(ctx, t.Tx, convID)
		if err != nil {
			return err
		}
		for _, mb := range changed {
			if err := t.emit(ids, TopicMemberUpdated, convID, userID, MemberUpdated{ConversationID: convID, Member: mb, By: userID}); err != nil {
				return err
			}
		}
		return nil
	})
	return changed, err
}

// Mute mutes a conversation for userID until the given time; nil or a
// time in the past unmutes it.
func (m *Module) Mute(ctx context.Context, userID, convID int64, until *time.Time) (Me, error) {
	if until != nil && !until.After(m.now()) {
		until = nil
	}
	if until != nil && until.Year() > 9999 {
		return Me{}, invalidf("until is too far in the future")
	}
	var out Me
	err := m.write(ctx, func(t *wtx) error {
		_, me, err := t.enter(convID, userID)
		if err != nil {
			return err
		}
		me.MutedUntil = store.TimePtr(until)
		if err := m.store.setMuted(ctx, t.Tx, convID, userID, me.MutedUntil); err != nil {
			return err
		}
		out = me.me()
		return t.emit([]int64{userID}, TopicMemberUpdated, convID, userID, MemberUpdated{ConversationID: convID, Member: me.member(), Me: &out, By: userID})
	})
	return out, err
}
