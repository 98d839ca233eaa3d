package sso

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/elph-server/elph/platform/store"
	"github.com/jmoiron/sqlx"
)

// defaultMissingReason is DisableMissingDirectoryUsers' reason when the
// caller gives none.
const defaultMissingReason = "missing from directory"

// memberBatch bounds the rows of one multi-row INSERT or IN list, well
// below both databases' limits on placeholders.
const memberBatch = 500

// UpsertDirectoryUser stores a person as the directory describes them,
// keyed by du.ExternalID, and records now as their sync time. The account
// is created (source ldap, no local password) or updated: a login renamed
// in the directory is followed, phones are replaced and the disabled state
// and reason are copied from du. role is applied too; "" leaves the role as
// it is (RoleUser for a new account), for a sync that does not manage
// roles.
//
// A login that, without regard to case, belongs to another account is
// ErrConflict and changes nothing: a local account is never taken over by
// the directory, and another directory account keeps its login until it is
// itself renamed or the conflict is resolved by an admin.
//
// Phone numbers that do not normalise, or that another account holds, are
// left out rather than failing the person: directory data is typed by hand
// and shared office numbers are common. A number moved between two people
// in the directory reaches the second one at the sync after the first has
// let go of it.
func (s *Store) UpsertDirectoryUser(ctx context.Context, du DirectoryUser, role Role, now time.Time) (UpsertResult, int64, error) {
	extID := strings.TrimSpace(du.ExternalID)
	if extID == "" || len(extID) > maxTextChars {
		return 0, 0, fmt.Errorf("sso: upsert directory user %q: external id must be 1 to %d bytes", du.Login, maxTextChars)
	}
	login, key, err := checkLogin(du.Login)
	if err != nil {
		return 0, 0, fmt.Errorf("sso: upsert directory user %s: %w", extID, err)
	}
	if role != "" {
		if err := checkRole(role); err != nil {
			return 0, 0, fmt.Errorf("sso: upsert directory user %q: %w", login, err)
		}
	}
	phones, _ := normalizePhones(du.Phones, true)
	reason := ""
	if du.Disabled {
		reason = store.Clip(du.DisabledReason, maxTextChars)
		if reason == "" {
			reason = "disabled"
		}
	}
	want := User{
		Login:          login,
		DisplayName:    store.Clip(du.DisplayName, maxTextChars),
		Email:          store.Clip(du.Email, maxTextChars),
		Department:     store.Clip(du.Department, maxTextChars),
		Title:          store.Clip(du.Title, maxTextChars),
		Role:           role,
		Source:         SourceLDAP,
		ExternalID:     extID,
		DN:             store.Clip(du.DN, maxDNChars),
		Disabled:       du.Disabled,
		DisabledReason: reason,
	}
	now = store.Time(now)

	var (
		result UpsertResult
		id     int64
	)
	err = s.db.InTx(ctx, func(tx *sqlx.Tx) error {
		result, id = UpsertUnchanged, 0
		old, _, err := getUser(ctx, tx, "WHERE u.external_id = ?", extID)
		exists := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}

		var holder int64
		err = tx.QueryRowxContext(ctx, "SELECT id FROM users WHERE login_key = ?", key).Scan(&holder)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if err == nil && (!exists || holder != old.ID) {
			return fmt.Errorf("login %q belongs to account %d: %w", login, holder, ErrConflict)
		}

		u := want
		if exists && old.DisabledLocally {
			// An admin's decision in Elph outlasts the directory's.
			u.Disabled, u.DisabledReason, u.DisabledLocally = true, old.DisabledReason, true
		}
		u.Phones, err = withoutForeignPhones(ctx, tx, phones, old.ID)
		if err != nil {
			return err
		}
		u.SyncedAt = &now

		if !exists {
			if u.Role == "" {
				u.Role = RoleUser
			}
			u.CreatedAt, u.UpdatedAt = now, now
			if id, err = s.insertUser(ctx, tx, &u, key, ""); err != nil {
				return err
			}
			result = UpsertCreated
			return s.insertPhones(ctx, tx, id, u.Phones)
		}

		id = old.ID
		if u.Role == "" {
			u.Role = old.Role
		}
		if sameDirectoryFields(old, u) && slices.Equal(old.Phones, u.Phones) {
			_, err := tx.ExecContext(ctx, "UPDATE users SET synced_at = ? WHERE id = ?", now, id)
			return err
		}
		result = UpsertUpdated
		// password_hash is cleared for the rare account that was local
		// and has been claimed by the directory through its external id:
		// from now on the directory checks its password.
		_, err = tx.ExecContext(ctx, `UPDATE users SET login = ?, login_key = ?, display_name = ?,
			email = ?, department = ?, title = ?, role = ?, source = ?, dn = ?, password_hash = NULL,
			disabled = ?, disabled_reason = ?, search_text = ?, updated_at = ?, synced_at = ?
			WHERE id = ?`,
			u.Login, key, u.DisplayName, u.Email, u.Department, u.Title, u.Role, u.Source, u.DN,
			u.Disabled, u.DisabledReason, searchText(u.Login, u.DisplayName, u.Email, u.Phones),
			now, now, id)
		if err != nil {
			return s.userConflict(err)
		}
		if slices.Equal(old.Phones, u.Phones) {
			return nil
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM user_phones WHERE user_id = ?", id); err != nil {
			return err
		}
		return s.insertPhones(ctx, tx, id, u.Phones)
	})
	if err != nil {
		return 0, 0, fmt.Errorf("sso: upsert directory user %q: %w", login, err)
	}
	return result, id, nil
}

// sameDirectoryFields reports whether the directory-managed fields of old
// already are those of u.
func sameDirectoryFields(old, u User) bool {
	return old.Login == u.Login && old.DisplayName == u.DisplayName && old.Email == u.Email &&
		old.Department == u.Department && old.Title == u.Title && old.Role == u.Role &&
		old.Source == u.Source && old.DN == u.DN && old.Disabled == u.Disabled && old.DisabledLocally == u.DisabledLocally &&
		old.DisabledReason == u.DisabledReason
}

// withoutForeignPhones returns phones minus the numbers that belong to an
// account other than userID (0: any account).
func withoutForeignPhones(ctx context.Context, tx *sqlx.Tx, phones []Phone, userID int64) ([]Phone, error) {
	if len(phones) == 0 {
		return []Phone{}, nil
	}
	numbers := make([]string, len(phones))
	for i, p := range phones {
		numbers[i] = p.Number
	}
	q, args, err := sqlx.In("SELECT number FROM user_phones WHERE number IN (?) AND user_id <> ?", numbers, userID)
	if err != nil {
		return nil, err
	}
	var taken []string
	if err := sqlx.SelectContext(ctx, tx, &taken, q, args...); err != nil {
		return nil, err
	}
	out := make([]Phone, 0, len(phones))
	for _, p := range phones {
		if !slices.Contains(taken, p.Number) {
			out = append(out, p)
		}
	}
	return out, nil
}

// DisableMissingDirectoryUsers disables the enabled directory accounts
// among ids (those a complete sync did not see), with reason ("missing
// from directory" when empty), and returns how many it disabled. The sync
// names them by id rather than by an age of synced_at, so a clock that
// steps during a sync cannot disable the wrong people. Local accounts and
// accounts disabled already are left alone. Accounts are never deleted:
// their messages and history stay attributed, and a person who reappears
// is enabled by the next UpsertDirectoryUser.
func (s *Store) DisableMissingDirectoryUsers(ctx context.Context, ids []int64, reason string, now time.Time) (int, error) {
	if reason == "" {
		reason = defaultMissingReason
	}
	total := 0
	for start := 0; start < len(ids); start += memberBatch {
		batch := ids[start:min(start+memberBatch, len(ids))]
		q, args, err := sqlx.In(`UPDATE users SET disabled = ?, disabled_reason = ?, updated_at = ?
			WHERE source = ? AND disabled = ? AND id IN (?)`,
			true, store.Clip(reason, maxTextChars), store.Time(now), SourceLDAP, false, batch)
		if err != nil {
			return total, fmt.Errorf("sso: disable missing directory users: %w", err)
		}
		res, err := s.db.ExecContext(ctx, s.db.Rebind(q), args...)
		if err != nil {
			return total, fmt.Errorf("sso: disable missing directory users: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("sso: disable missing directory users: %w", err)
		}
		total += int(n)
	}
	return total, nil
}

// UpsertGroup stores a directory group keyed by g.ExternalID and returns
// its id and what changed (name and DN are followed).
func (s *Store) UpsertGroup(ctx context.Context, g DirectoryGroup, now time.Time) (int64, UpsertResult, error) {
	extID := strings.TrimSpace(g.ExternalID)
	if extID == "" || len(extID) > maxTextChars {
		return 0, 0, fmt.Errorf("sso: upsert group %q: external id must be 1 to %d bytes", g.Name, maxTextChars)
	}
	name, dn := store.Clip(g.Name, maxTextChars), store.Clip(g.DN, maxDNChars)
	now = store.Time(now)

	var (
		id     int64
		result UpsertResult
	)
	err := s.db.InTx(ctx, func(tx *sqlx.Tx) error {
		id, result = 0, UpsertUnchanged
		var old Group
		err := sqlx.GetContext(ctx, tx, &old, "SELECT id, external_id, name, dn, updated_at FROM sso_groups WHERE external_id = ?", extID)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			res, err := tx.ExecContext(ctx, "INSERT INTO sso_groups (external_id, name, dn, updated_at) VALUES (?, ?, ?, ?)", extID, name, dn, now)
			if err != nil {
				return err
			}
			result = UpsertCreated
			id, err = res.LastInsertId()
			return err
		case err != nil:
			return err
		}
		id = old.ID
		if old.Name == name && old.DN == dn {
			return nil
		}
		result = UpsertUpdated
		_, err = tx.ExecContext(ctx, "UPDATE sso_groups SET name = ?, dn = ?, updated_at = ? WHERE id = ?", name, dn, now, id)
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("sso: upsert group %q: %w", name, err)
	}
	return id, result, nil
}

// SetGroupMembers makes userIDs the members of a group, adding and
// removing only the difference. ErrNotFound when there is no such group.
func (s *Store) SetGroupMembers(ctx context.Context, groupID int64, userIDs []int64) error {
	want := slices.Clone(userIDs)
	slices.Sort(want)
	want = slices.Compact(want)

	err := s.db.InTx(ctx, func(tx *sqlx.Tx) error {
		var one int
		err := tx.QueryRowxContext(ctx, "SELECT 1 FROM sso_groups WHERE id = ?", groupID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		var have []int64
		if err := sqlx.SelectContext(ctx, tx, &have, "SELECT user_id FROM group_members WHERE group_id = ? ORDER BY user_id", groupID); err != nil {
			return err
		}
		var add, drop []int64
		for _, id := range want {
			if _, found := slices.BinarySearch(have, id); !found {
				add = append(add, id)
			}
		}
		for _, id := range have {
			if _, found := slices.BinarySearch(want, id); !found {
				drop = append(drop, id)
			}
		}
		for chunk := range slices.Chunk(drop, memberBatch) {
			q, args, err := sqlx.In("DELETE FROM group_members WHERE group_id = ? AND user_id IN (?)", groupID, chunk)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				return err
			}
		}
		for chunk := range slices.Chunk(add, memberBatch) {
			q := "INSERT INTO group_members (group_id, user_id) VALUES " +
				strings.TrimSuffix(strings.Repeat("(?, ?), ", len(chunk)), ", ")
			args := make([]any, 0, 2*len(chunk))
			for _, id := range chunk {
				args = append(args, groupID, id)
			}
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sso: set members of group %d: %w", groupID, err)
	}
	return nil
}

// UserGroups returns the groups a user is a member of, by name.
func (s *Store) UserGroups(ctx context.Context, userID int64) ([]Group, error) {
	groups := []Group{}
	err := sqlx.SelectContext(ctx, s.db, &groups, `SELECT g.id, g.external_id, g.name, g.dn, g.updated_at
		FROM sso_groups g JOIN group_members m ON m.group_id = g.id
		WHERE m.user_id = ? ORDER BY g.name, g.id`, userID)
	if err != nil {
		return nil, fmt.Errorf("sso: groups of user %d: %w", userID, err)
	}
	return groups, nil
}
