package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/elph-server/elph/modules/addressbook"
	"github.com/elph-server/elph/modules/chat"
	"github.com/elph-server/elph/modules/files"
	"github.com/elph-server/elph/modules/push"
	"github.com/elph-server/elph/modules/sso"
	"github.com/elph-server/elph/modules/status"
)

// The small interfaces modules ask of each other, implemented here so no
// module imports another (DESIGN.md: modules talk through the bus or an
// interface the wiring hands in).

// people answers chat's "which of these are enabled accounts" from the sso
// store.
type people struct{ store *sso.Store }

func (p people) Existing(ctx context.Context, ids []int64) (map[int64]bool, error) {
	out := make(map[int64]bool, len(ids))
	for _, id := range ids {
		u, err := p.store.UserByID(ctx, id)
		switch {
		case errors.Is(err, sso.ErrNotFound):
			out[id] = false
		case err != nil:
			return nil, fmt.Errorf("look up user %d: %w", id, err)
		default:
			out[id] = !u.Disabled
		}
	}
	return out, nil
}

// attachments answers chat's "may this user attach this file" from the
// files module, set once that module is built (nil: attachments refused).
type attachments struct{ files **files.Module }

func (a attachments) Attachable(ctx context.Context, userID int64, fileID string) (chat.FileRef, error) {
	if *a.files == nil {
		return chat.FileRef{}, fmt.Errorf("the files module does not run on this node: %w", chat.ErrFileUnavailable)
	}
	r, err := (*a.files).Attachable(ctx, userID, fileID)
	if errors.Is(err, files.ErrNotFound) {
		return chat.FileRef{}, fmt.Errorf("file %s: %w", fileID, chat.ErrFileUnavailable)
	}
	if err != nil {
		return chat.FileRef{}, err
	}
	return chat.FileRef{ID: r.ID, Name: r.Name, ContentType: r.ContentType, Size: r.Size}, nil
}

// fileAccess answers files' "may this user read this file" from the chat
// module (nil chat: only uploaders read their files).
type fileAccess struct{ chat **chat.Module }

func (f fileAccess) CanReadFile(ctx context.Context, userID int64, fileID string) (bool, error) {
	if *f.chat == nil {
		return false, nil
	}
	return (*f.chat).CanReadFile(ctx, userID, fileID)
}

// directory names people from the company directory, the sso accounts
// (with the numbers LDAP sync brings): a call's peer for history, a
// message's sender for push. The address book module will widen it to
// external contacts.
type directory struct{ store *sso.Store }

// NameForNumber is history's PeerNames: the display name (else the login)
// of the account that has number.
func (d directory) NameForNumber(ctx context.Context, _ int64, number string) (string, bool) {
	u, err := d.store.UserByPhone(ctx, number)
	if err != nil {
		return "", false
	}
	return displayName(u), true
}

// DisplayNames is push's Names; unknown ids are left out.
func (d directory) DisplayNames(ctx context.Context, ids []int64) (map[int64]string, error) {
	out := make(map[int64]string, len(ids))
	for _, id := range ids {
		u, err := d.store.UserByID(ctx, id)
		switch {
		case errors.Is(err, sso.ErrNotFound):
			continue
		case err != nil:
			return nil, fmt.Errorf("look up user %d: %w", id, err)
		}
		out[id] = displayName(u)
	}
	return out, nil
}

func displayName(u sso.User) string {
	if u.DisplayName != "" {
		return u.DisplayName
	}
	return u.Login
}

// accounts is the address book's accounts source over the sso store.
type accounts struct{ store *sso.Store }

func (a accounts) EachAccount(ctx context.Context, fn func(addressbook.Account) error) error {
	var after int64
	for {
		users, err := a.store.ListUsers(ctx, sso.ListUsersOptions{After: after, Limit: 500, IncludeDisabled: true})
		if err != nil {
			return err
		}
		for _, u := range users {
			if err := fn(bookAccount(u)); err != nil {
				return err
			}
			after = u.ID
		}
		if len(users) < 500 {
			return nil
		}
	}
}

func (a accounts) Account(ctx context.Context, id int64) (addressbook.Account, bool, error) {
	u, err := a.store.UserByID(ctx, id)
	switch {
	case errors.Is(err, sso.ErrNotFound):
		return addressbook.Account{}, false, nil
	case err != nil:
		return addressbook.Account{}, false, err
	}
	return bookAccount(u), true, nil
}

func bookAccount(u sso.User) addressbook.Account {
	a := addressbook.Account{
		ID: u.ID, Login: u.Login, DisplayName: u.DisplayName, Email: u.Email,
		Department: u.Department, Title: u.Title, Disabled: u.Disabled,
	}
	for _, p := range u.Phones {
		kind := addressbook.PhoneWork
		switch p.Kind {
		case sso.PhoneExtension:
			kind = addressbook.PhoneExtension
		case sso.PhoneMobile:
			kind = addressbook.PhoneMobile
		}
		a.Phones = append(a.Phones, addressbook.Phone{Number: p.Number, Kind: kind})
	}
	return a
}

// peerNames names a call's peer from the address book when this node runs
// it (personal contacts first, then the directory), else from the
// accounts.
type peerNames struct {
	book **addressbook.Module
	dir  directory
}

func (p peerNames) NameForNumber(ctx context.Context, userID int64, number string) (string, bool) {
	if *p.book != nil {
		return (*p.book).NameForNumber(ctx, userID, number)
	}
	return p.dir.NameForNumber(ctx, userID, number)
}

// reachability answers push's "is this user looking, or in DND" from the
// status module; without it on this node every user counts as away and
// not in DND (pushes go out).
type reachability struct{ status **status.Module }

func (r reachability) Reachability(ctx context.Context, ids []int64) (map[int64]push.Reach, error) {
	out := make(map[int64]push.Reach, len(ids))
	if *r.status == nil {
		return out, nil
	}
	rs, err := (*r.status).Reachability(ctx, ids)
	if err != nil {
		return nil, err
	}
	for id, v := range rs {
		out[id] = push.Reach{Live: v.Live, DND: v.DND}
	}
	return out, nil
}
