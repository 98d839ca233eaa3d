package sso

import (
	"context"
	"fmt"
	"net/mail"
	"strings"
	"unicode/utf8"
)

// ValidationError is bad input to an account operation; its text is meant
// for the person who typed it.
type ValidationError struct{ msg string }

func (e *ValidationError) Error() string { return e.msg }

func invalid(format string, args ...any) error {
	return &ValidationError{msg: fmt.Sprintf(format, args...)}
}

// NewUser is a local account to create.
type NewUser struct {
	Login       string
	DisplayName string
	Email       string
	Department  string
	Title       string
	Phones      []Phone
	Role        Role
	Password    string
}

func (n *NewUser) validate() error {
	n.Login = strings.TrimSpace(n.Login)
	switch {
	case n.Login == "" || utf8.RuneCountInString(n.Login) > 128:
		return invalid("login must be 1..128 characters")
	case strings.ContainsAny(n.Login, " \t\r\n/\\:"):
		return invalid("login must not contain spaces, slashes or colons")
	}
	if _, err := NormalizePhone(n.Login); err == nil {
		return invalid("login must not be a phone number (phone numbers log in as themselves)")
	}
	if n.DisplayName = strings.TrimSpace(n.DisplayName); n.DisplayName == "" {
		n.DisplayName = n.Login
	}
	if utf8.RuneCountInString(n.DisplayName) > 255 || utf8.RuneCountInString(n.Department) > 255 || utf8.RuneCountInString(n.Title) > 255 {
		return invalid("display name, department and title must be at most 255 characters")
	}
	if n.Email != "" {
		a, err := mail.ParseAddress(n.Email)
		if err != nil || a.Address != n.Email {
			return invalid("e-mail %q is not an address", n.Email)
		}
	}
	if n.Role == "" {
		n.Role = RoleUser
	}
	if n.Role != RoleUser && n.Role != RoleAdmin {
		return invalid("role must be user or admin")
	}
	if len(n.Phones) > 16 {
		return invalid("at most 16 phone numbers")
	}
	for i, p := range n.Phones {
		num, err := NormalizePhone(p.Number)
		if err != nil {
			return invalid("phone %q: %v", p.Number, err)
		}
		n.Phones[i].Number = num
		if p.Kind == "" {
			n.Phones[i].Kind = PhoneExtension
		}
		switch n.Phones[i].Kind {
		case PhoneExtension, PhoneWork, PhoneMobile:
		default:
			return invalid("phone kind must be extension, work or mobile")
		}
	}
	if err := CheckPasswordPolicy(n.Password); err != nil {
		return invalid("%v", err)
	}
	return nil
}

// CreateLocalUser validates and creates a local account.
func (m *Module) CreateLocalUser(ctx context.Context, n NewUser) (User, error) {
	if err := n.validate(); err != nil {
		return User{}, err
	}
	hash, err := HashPassword(n.Password)
	if err != nil {
		return User{}, err
	}
	u := User{Login: n.Login, DisplayName: n.DisplayName, Email: n.Email, Department: n.Department,
		Title: n.Title, Phones: n.Phones, Role: n.Role, Source: SourceLocal}
	if err := m.store.CreateUser(ctx, &u, hash); err != nil {
		return User{}, err
	}
	m.log.Info("user created", "user_id", u.ID, "login", u.Login, "role", u.Role)
	m.publishUserChanged(ctx, u.ID, "created", false)
	return u, nil
}

// SetPassword changes a local account's password and ends its other
// sessions (keep names the caller's own session, "" for none).
func (m *Module) SetPassword(ctx context.Context, userID int64, password, keep string) error {
	u, err := m.store.UserByID(ctx, userID)
	if err != nil {
		return err
	}
	if u.Source != SourceLocal {
		return invalid("%s is a directory account: change the password in the directory", u.Login)
	}
	if err := CheckPasswordPolicy(password); err != nil {
		return invalid("%v", err)
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	if err := m.store.SetPassword(ctx, userID, hash); err != nil {
		return err
	}
	sessions, err := m.store.ListSessions(ctx, userID, false)
	if err != nil {
		return err
	}
	for _, s := range sessions {
		if s.ID != keep {
			m.revoke(ctx, s, "password changed")
		}
	}
	m.log.Info("password changed", "user_id", userID)
	return nil
}

// SetDisabled disables (ending every session) or enables an account. The
// last enabled admin cannot be disabled.
func (m *Module) SetDisabled(ctx context.Context, userID int64, disabled bool, reason string) error {
	u, err := m.store.UserByID(ctx, userID)
	if err != nil {
		return err
	}
	if disabled && u.Role == RoleAdmin && !u.Disabled {
		if err := m.keepOneAdmin(ctx); err != nil {
			return err
		}
	}
	if reason == "" && disabled {
		reason = "disabled by admin"
	}
	if !disabled {
		reason = ""
	}
	if err := m.store.SetDisabled(ctx, userID, disabled, reason); err != nil {
		return err
	}
	change := "enabled"
	if disabled {
		change = "disabled"
		m.endSessions(ctx, userID, "account disabled")
	}
	m.log.Info("user "+change, "user_id", userID, "login", u.Login)
	m.publishUserChanged(ctx, userID, change, disabled)
	return nil
}

// SetRole changes a role; the last enabled admin keeps theirs.
func (m *Module) SetRole(ctx context.Context, userID int64, role Role) error {
	if role != RoleUser && role != RoleAdmin {
		return invalid("role must be user or admin")
	}
	u, err := m.store.UserByID(ctx, userID)
	if err != nil {
		return err
	}
	if u.Role == RoleAdmin && role != RoleAdmin && !u.Disabled {
		if err := m.keepOneAdmin(ctx); err != nil {
			return err
		}
	}
	if err := m.store.SetRole(ctx, userID, role); err != nil {
		return err
	}
	m.publishUserChanged(ctx, userID, "updated", u.Disabled)
	return nil
}

func (m *Module) keepOneAdmin(ctx context.Context) error {
	n, err := m.store.CountAdmins(ctx)
	if err != nil {
		return err
	}
	if n <= 1 {
		return invalid("this is the last enabled admin; make another admin first")
	}
	return nil
}
