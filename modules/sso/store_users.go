package sso

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"

	"github.com/elph-server/elph/platform/store"
)

// userColumns selects a User from "users u". external_id is NULL for local
// accounts and comes back as "".
const userColumns = `u.id, u.login, u.display_name, u.email, u.department, u.title,
	u.avatar_ref, u.role, u.source, COALESCE(u.external_id, '') AS external_id, u.dn,
	u.disabled, u.disabled_reason, u.disabled_locally, u.created_at, u.updated_at, u.synced_at`

// userRow is a User with its password hash, NULL for directory accounts.
type userRow struct {
	User
	PasswordHash sql.NullString `db:"password_hash"`
}

// Phone number bounds of NormalizePhone.
const (
	minPhoneDigits   = 2
	maxPhoneDigits   = 20
	maxPhoneInputLen = 64
)

// NormalizePhone returns the stored form of a phone number: its digits,
// with a leading "+" if it had one. Spaces, dashes and parentheses are
// dropped, so "+7 (495) 123-45-67" becomes "+74951234567". Anything else
// (letters, dots, a "+" not in front, fewer than 2 or more than 20 digits)
// is an error. Short numbers are allowed: extensions are phone numbers too.
func NormalizePhone(s string) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) > maxPhoneInputLen {
		return "", fmt.Errorf("sso: phone number %.24q...: too long", s)
	}
	var b strings.Builder
	digits := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case '0' <= c && c <= '9':
			b.WriteByte(c)
			digits++
		case c == '+' && i == 0:
			b.WriteByte(c)
		case c == ' ' || c == '-' || c == '(' || c == ')':
		default:
			return "", fmt.Errorf("sso: phone number %q: only digits, a leading +, spaces, dashes and parentheses are allowed", s)
		}
	}
	if digits < minPhoneDigits || digits > maxPhoneDigits {
		return "", fmt.Errorf("sso: phone number %q: want %d to %d digits, have %d", s, minPhoneDigits, maxPhoneDigits, digits)
	}
	return b.String(), nil
}

// normalizePhones normalises every number, defaults an empty kind to
// PhoneWork and drops repeated numbers (the first kind wins). The result is
// sorted the way the store returns phones. With skipInvalid, numbers that
// do not normalise are left out instead of failing: directory data is
// typed by hand and one odd number must not stop a person from syncing.
func normalizePhones(in []Phone, skipInvalid bool) ([]Phone, error) {
	out := make([]Phone, 0, len(in))
	seen := make(map[string]bool, len(in))
	for _, p := range in {
		n, err := NormalizePhone(p.Number)
		if err == nil {
			switch p.Kind {
			case "":
				p.Kind = PhoneWork
			case PhoneExtension, PhoneWork, PhoneMobile:
			default:
				err = fmt.Errorf("sso: phone number %s: unknown kind %.20q", n, p.Kind)
			}
		}
		if err != nil {
			if skipInvalid {
				continue
			}
			return nil, err
		}
		if seen[n] {
			continue
		}
		seen[n] = true
		out = append(out, Phone{Number: n, Kind: p.Kind})
	}
	sortPhones(out)
	return out, nil
}

// sortPhones orders phones as loadPhones returns them.
func sortPhones(p []Phone) {
	slices.SortFunc(p, func(a, b Phone) int {
		if c := strings.Compare(string(a.Kind), string(b.Kind)); c != 0 {
			return c
		}
		return strings.Compare(a.Number, b.Number)
	})
}

// checkLogin trims login and returns it with its key, store.Fold(login),
// which the unique index compares.
func checkLogin(login string) (string, string, error) {
	login = strings.TrimSpace(login)
	key := store.Fold(login)
	switch {
	case key == "":
		return "", "", errors.New("empty login")
	case !utf8.ValidString(login):
		return "", "", fmt.Errorf("login %q is not valid UTF-8", login)
	case utf8.RuneCountInString(login) > maxLoginChars || utf8.RuneCountInString(key) > maxLoginChars:
		return "", "", fmt.Errorf("login %.20q... longer than %d characters", login, maxLoginChars)
	}
	return login, key, nil
}

func checkRole(r Role) error {
	switch r {
	case RoleUser, RoleAdmin:
		return nil
	default:
		return fmt.Errorf("unknown role %.20q", r)
	}
}

func checkSource(s Source) error {
	switch s {
	case SourceLocal, SourceLDAP:
		return nil
	default:
		return fmt.Errorf("unknown source %.20q", s)
	}
}

// searchText is what a later full-text search of people looks at, folded
// like store.FullTextQuery folds the query.
func searchText(login, displayName, email string, phones []Phone) string {
	parts := []string{login, displayName, email}
	for _, p := range phones {
		parts = append(parts, p.Number)
	}
	return store.Fold(strings.Join(parts, " "))
}

// CreateUser stores a new account with u's fields and phones, and a
// password hash ("" for none, as for directory accounts). It fills in
// u.ID, u.CreatedAt and u.UpdatedAt, trims u.Login, normalises u.Phones
// and defaults an empty u.Role to RoleUser and u.Source to SourceLocal.
//
// A login equal to an existing one without regard to case (or ё/е), an
// external id in use or a phone number of another user is ErrConflict.
func (s *Store) CreateUser(ctx context.Context, u *User, passwordHash string) error {
	login, key, err := checkLogin(u.Login)
	if err != nil {
		return fmt.Errorf("sso: create user: %w", err)
	}
	role, source := u.Role, u.Source
	if role == "" {
		role = RoleUser
	}
	if source == "" {
		source = SourceLocal
	}
	if err := errors.Join(checkRole(role), checkSource(source)); err != nil {
		return fmt.Errorf("sso: create user %q: %w", login, err)
	}
	phones, err := normalizePhones(u.Phones, false)
	if err != nil {
		return fmt.Errorf("sso: create user %q: %w", login, err)
	}
	reason := ""
	if u.Disabled {
		reason = store.Clip(u.DisabledReason, maxTextChars)
	}
	now := store.Time(time.Now())
	nu := *u
	nu.Login, nu.Role, nu.Source, nu.Phones = login, role, source, phones
	nu.DisplayName = store.Clip(u.DisplayName, maxTextChars)
	nu.Email = store.Clip(u.Email, maxTextChars)
	nu.Department = store.Clip(u.Department, maxTextChars)
	nu.Title = store.Clip(u.Title, maxTextChars)
	nu.AvatarRef = store.Clip(u.AvatarRef, maxTextChars)
	nu.DN = store.Clip(u.DN, maxDNChars)
	nu.DisabledReason = reason
	nu.CreatedAt, nu.UpdatedAt = now, now
	nu.SyncedAt = store.TimePtr(u.SyncedAt)

	err = s.db.InTx(ctx, func(tx *sqlx.Tx) error {
		id, err := s.insertUser(ctx, tx, &nu, key, passwordHash)
		if err != nil {
			return err
		}
		nu.ID = id
		return s.insertPhones(ctx, tx, id, phones)
	})
	if err != nil {
		return fmt.Errorf("sso: create user %q: %w", login, err)
	}
	*u = nu
	return nil
}

// insertUser inserts u (fields already checked) and returns its id.
func (s *Store) insertUser(ctx context.Context, tx *sqlx.Tx, u *User, key, passwordHash string) (int64, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO users (login, login_key, display_name, email,
		department, title, avatar_ref, role, source, external_id, dn, password_hash, disabled,
		disabled_reason, search_text, created_at, updated_at, synced_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		u.Login, key, u.DisplayName, u.Email, u.Department, u.Title, u.AvatarRef, u.Role, u.Source,
		nullIfEmpty(u.ExternalID), u.DN, nullIfEmpty(passwordHash), u.Disabled, u.DisabledReason,
		searchText(u.Login, u.DisplayName, u.Email, u.Phones), u.CreatedAt, u.UpdatedAt, u.SyncedAt)
	if err != nil {
		return 0, s.userConflict(err)
	}
	return res.LastInsertId()
}

// userConflict maps a unique violation on users to ErrConflict, saying
// which key collided. Both databases name the index or column in the
// message ("users_external_id", "users.external_id").
func (s *Store) userConflict(err error) error {
	if !s.db.Dialect.IsUniqueViolation(err) {
		return err
	}
	if strings.Contains(err.Error(), "external_id") {
		return fmt.Errorf("external id in use: %w", ErrConflict)
	}
	return fmt.Errorf("login in use: %w", ErrConflict)
}

// insertPhones adds phones to user id; a number held by another user is
// ErrConflict naming the number.
func (s *Store) insertPhones(ctx context.Context, tx *sqlx.Tx, id int64, phones []Phone) error {
	for _, p := range phones {
		_, err := tx.ExecContext(ctx, "INSERT INTO user_phones (number, user_id, kind) VALUES (?, ?, ?)", p.Number, id, p.Kind)
		if s.db.Dialect.IsUniqueViolation(err) {
			return fmt.Errorf("phone number %s in use: %w", p.Number, ErrConflict)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// getUser returns the one user that "SELECT ... FROM users u <where>"
// finds, with phones and password hash, or ErrNotFound.
func getUser(ctx context.Context, q sqlx.QueryerContext, where string, args ...any) (User, string, error) {
	var r userRow
	err := sqlx.GetContext(ctx, q, &r, "SELECT "+userColumns+", u.password_hash FROM users u "+where, args...)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, "", ErrNotFound
	}
	if err != nil {
		return User{}, "", err
	}
	phones, err := loadPhones(ctx, q, []int64{r.ID})
	if err != nil {
		return User{}, "", err
	}
	r.User.Phones = phones[r.ID]
	if r.User.Phones == nil {
		r.User.Phones = []Phone{}
	}
	return r.User, r.PasswordHash.String, nil
}

// loadPhones returns the phones of the given users, ordered by kind and
// number.
func loadPhones(ctx context.Context, q sqlx.QueryerContext, ids []int64) (map[int64][]Phone, error) {
	out := make(map[int64][]Phone, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	query, args, err := sqlx.In("SELECT user_id, number, kind FROM user_phones WHERE user_id IN (?) ORDER BY user_id, kind, number", ids)
	if err != nil {
		return nil, err
	}
	var rows []struct {
		UserID int64 `db:"user_id"`
		Phone
	}
	if err := sqlx.SelectContext(ctx, q, &rows, query, args...); err != nil {
		return nil, err
	}
	for _, r := range rows {
		out[r.UserID] = append(out[r.UserID], r.Phone)
	}
	return out, nil
}

// UserByID returns a user with phones, or ErrNotFound.
func (s *Store) UserByID(ctx context.Context, id int64) (User, error) {
	u, _, err := getUser(ctx, s.db, "WHERE u.id = ?", id)
	if err != nil {
		return User{}, fmt.Errorf("sso: user %d: %w", id, err)
	}
	return u, nil
}

// UserByLogin finds the account one logs in to as loginOrPhone: the user
// whose login equals it without regard to case (and ё/е), or else the one
// who has it as a phone number in any spelling NormalizePhone accepts. It
// returns the user with phones and the password hash ("" when the account
// has no local password), or ErrNotFound.
func (s *Store) UserByLogin(ctx context.Context, loginOrPhone string) (User, string, error) {
	if key := store.Fold(loginOrPhone); key != "" {
		u, hash, err := getUser(ctx, s.db, "WHERE u.login_key = ?", key)
		if !errors.Is(err, ErrNotFound) {
			if err != nil {
				return User{}, "", fmt.Errorf("sso: user by login: %w", err)
			}
			return u, hash, nil
		}
	}
	number, err := NormalizePhone(loginOrPhone)
	if err != nil {
		return User{}, "", fmt.Errorf("sso: user by login: %w", ErrNotFound)
	}
	u, hash, err := getUser(ctx, s.db, "JOIN user_phones p ON p.user_id = u.id WHERE p.number = ?", number)
	if err != nil {
		return User{}, "", fmt.Errorf("sso: user by login: %w", err)
	}
	return u, hash, nil
}

// UserByPhone returns the user who has number (in any spelling
// NormalizePhone accepts) among their phones, or ErrNotFound. The call
// history names a caller with it.
func (s *Store) UserByPhone(ctx context.Context, number string) (User, error) {
	n, err := NormalizePhone(number)
	if err != nil {
		return User{}, fmt.Errorf("sso: user by phone: %w", ErrNotFound)
	}
	u, _, err := getUser(ctx, s.db, "JOIN user_phones p ON p.user_id = u.id WHERE p.number = ?", n)
	if err != nil {
		return User{}, fmt.Errorf("sso: user by phone: %w", err)
	}
	return u, nil
}

// ListUsersOptions select a page of ListUsers.
type ListUsersOptions struct {
	// After is the last id of the previous page; 0 starts at the beginning.
	After int64
	// Limit is the page size, 1 to 500; 0 (or less) means 100 and more than
	// 500 means 500.
	Limit int
	// IncludeDisabled lists disabled accounts too.
	IncludeDisabled bool
	// Source, when set, lists only accounts of that source.
	Source Source
}

// Page sizes of ListUsers.
const (
	defaultListLimit = 100
	maxListLimit     = 500
)

// ListUsers returns users with ids above o.After in id order, with phones.
// A page shorter than the limit is the last one.
func (s *Store) ListUsers(ctx context.Context, o ListUsersOptions) ([]User, error) {
	limit := o.Limit
	if limit <= 0 {
		limit = defaultListLimit
	}
	limit = min(limit, maxListLimit)
	q := "SELECT " + userColumns + " FROM users u WHERE u.id > ?"
	args := []any{o.After}
	if !o.IncludeDisabled {
		q += " AND u.disabled = ?"
		args = append(args, false)
	}
	if o.Source != "" {
		if err := checkSource(o.Source); err != nil {
			return nil, fmt.Errorf("sso: list users: %w", err)
		}
		q += " AND u.source = ?"
		args = append(args, o.Source)
	}
	q += " ORDER BY u.id LIMIT ?"
	args = append(args, limit)

	users := []User{}
	if err := sqlx.SelectContext(ctx, s.db, &users, q, args...); err != nil {
		return nil, fmt.Errorf("sso: list users: %w", err)
	}
	ids := make([]int64, len(users))
	for i, u := range users {
		ids[i] = u.ID
	}
	phones, err := loadPhones(ctx, s.db, ids)
	if err != nil {
		return nil, fmt.Errorf("sso: list users: phones: %w", err)
	}
	for i := range users {
		users[i].Phones = phones[users[i].ID]
		if users[i].Phones == nil {
			users[i].Phones = []Phone{}
		}
	}
	return users, nil
}

// updateUser runs "UPDATE users SET <set>, updated_at = now WHERE id = ?"
// and returns ErrNotFound when there is no such user.
func (s *Store) updateUser(ctx context.Context, userID int64, set string, args ...any) error {
	args = append(args, store.Time(time.Now()), userID)
	res, err := s.db.ExecContext(ctx, "UPDATE users SET "+set+", updated_at = ? WHERE id = ?", args...)
	if err != nil {
		return err
	}
	return affectedOrMissing(ctx, s.db, res, "SELECT 1 FROM users WHERE id = ?", userID)
}

// SetPassword replaces a user's password hash; "" removes the local
// password. ErrNotFound when there is no such user.
func (s *Store) SetPassword(ctx context.Context, userID int64, hash string) error {
	if err := s.updateUser(ctx, userID, "password_hash = ?", nullIfEmpty(hash)); err != nil {
		return fmt.Errorf("sso: set password of user %d: %w", userID, err)
	}
	return nil
}

// SetDisabled disables a user, keeping reason, or enables it again (and
// forgets the reason). It does not end the user's sessions; see
// RevokeUserSessions. ErrNotFound when there is no such user.
//
// An account disabled here stays disabled through directory syncs until it
// is enabled here again.
func (s *Store) SetDisabled(ctx context.Context, userID int64, disabled bool, reason string) error {
	if !disabled {
		reason = ""
	}
	if err := s.updateUser(ctx, userID, "disabled = ?, disabled_reason = ?, disabled_locally = ?", disabled, store.Clip(reason, maxTextChars), disabled); err != nil {
		return fmt.Errorf("sso: set disabled of user %d: %w", userID, err)
	}
	return nil
}

// SetRole changes a user's role. ErrNotFound when there is no such user.
func (s *Store) SetRole(ctx context.Context, userID int64, role Role) error {
	if err := checkRole(role); err != nil {
		return fmt.Errorf("sso: set role of user %d: %w", userID, err)
	}
	if err := s.updateUser(ctx, userID, "role = ?", role); err != nil {
		return fmt.Errorf("sso: set role of user %d: %w", userID, err)
	}
	return nil
}

// CountAdmins returns how many enabled accounts have the admin role, so
// the last one is not demoted or disabled.
func (s *Store) CountAdmins(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM users WHERE role = ? AND disabled = ?", RoleAdmin, false).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("sso: count admins: %w", err)
	}
	return n, nil
}
