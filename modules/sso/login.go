package sso

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/elph-server/elph/platform/store"
)

// Input bounds: anything longer is refused before it reaches the store or
// the directory.
const (
	maxLoginLen    = 256
	maxPasswordLen = 1024
	maxDeviceLen   = 128
	maxAgentLen    = 512
)

// LoginRequest is one login attempt.
type LoginRequest struct {
	Login     string
	Password  string
	Device    string
	UserAgent string
	IP        netip.Addr
}

// LoginResult is what a successful login or refresh hands the client.
type LoginResult struct {
	User         User
	Session      Session
	AccessToken  string
	AccessExpiry time.Time
	RefreshToken string
}

// failureKeys are the limiter keys of an attempt: the account and the
// client IP. Every spelling that reaches one account shares its budget:
// a login Elph knows (by login in any case, or by any of its phone
// numbers) counts against that account's login, and otherwise the
// directory's aliases (DOMAIN\user, user@domain) count against the bare
// name. Keyed by what was typed, each alias would get a budget of its own
// and lockout could be bypassed (and an AD account locked) by rotating them.
func (m *Module) failureKeys(ctx context.Context, login string, ip netip.Addr) (acct, addr string) {
	login = strings.TrimSpace(login)
	key := store.Fold(login)
	if n, err := NormalizePhone(login); err == nil {
		key = n
	}
	if u, _, err := m.store.UserByLogin(ctx, login); err == nil {
		key = store.Fold(u.Login)
	} else if m.dir != nil {
		if c := loginCandidates(login, m.dir.domain); len(c) > 1 {
			key = store.Fold(c[len(c)-1])
		}
	}
	return "acct:" + key, "ip:" + ip.String()
}

// Login checks a login (or phone number) and password against the local
// accounts or the directory and opens a session. The failure limits are
// checked first, so a locked-out guesser never reaches the directory and
// Elph never locks an Active Directory account. Unknown logins and wrong
// passwords give the same error after the same work.
func (m *Module) Login(ctx context.Context, req LoginRequest) (LoginResult, error) {
	if req.Login == "" || req.Password == "" || len(req.Login) > maxLoginLen || len(req.Password) > maxPasswordLen {
		return LoginResult{}, ErrBadCredentials
	}
	now := m.now()
	acctKey, ipKey := m.failureKeys(ctx, req.Login, req.IP)
	if err := m.lockedOut(ctx, acctKey, ipKey, now); err != nil {
		if errors.Is(err, ErrTooManyFailures) {
			m.metrics.logins.WithLabelValues("locked_out", "").Inc()
		}
		return LoginResult{}, err
	}

	user, err := m.authenticate(ctx, req.Login, req.Password)
	if err != nil {
		code := errorCode(err)
		m.metrics.logins.WithLabelValues(code, string(user.Source)).Inc()
		if errors.Is(err, ErrBadCredentials) {
			m.countFailure(ctx, acctKey, ipKey, now)
		}
		m.log.Info("login refused", "login", clipLog(req.Login), "ip", req.IP.String(), "reason", code)
		return LoginResult{}, err
	}
	if err := m.store.ClearFailures(ctx, acctKey); err != nil {
		m.log.Warn("clear failed-login counter", "err", err)
	}
	res, err := m.openSession(ctx, user, req, now)
	if err != nil {
		return LoginResult{}, err
	}
	m.metrics.logins.WithLabelValues("ok", string(user.Source)).Inc()
	m.log.Info("login", "user_id", user.ID, "login", user.Login, "source", user.Source, "session_id", res.Session.ID, "ip", req.IP.String())
	return res, nil
}

// lockedOut is ErrTooManyFailures when the account or the address has used
// up its failures of the current window.
func (m *Module) lockedOut(ctx context.Context, acctKey, ipKey string, now time.Time) error {
	lo := m.cfg.Lockout
	if n, err := m.store.Failures(ctx, acctKey, now, lo.AccountWindow); err != nil {
		return err
	} else if n >= lo.AccountMaxFailures {
		return ErrTooManyFailures
	}
	if n, err := m.store.Failures(ctx, ipKey, now, lo.IPWindow); err != nil {
		return err
	} else if n >= lo.IPMaxFailures {
		return ErrTooManyFailures
	}
	return nil
}

// countFailure counts a wrong password against both budgets. A failure to
// count must not turn into a success, so it is only logged.
func (m *Module) countFailure(ctx context.Context, acctKey, ipKey string, now time.Time) {
	lo := m.cfg.Lockout
	_, aerr := m.store.AddFailure(ctx, acctKey, now, lo.AccountWindow)
	_, ierr := m.store.AddFailure(ctx, ipKey, now, lo.IPWindow)
	if jerr := errors.Join(aerr, ierr); jerr != nil {
		m.log.Error("count failed login", "err", jerr)
	}
}

// authenticate decides who checks the password: the local hash for local
// accounts, the directory for directory accounts and for logins Elph does
// not know yet (first login of a directory user provisions the account).
func (m *Module) authenticate(ctx context.Context, login, password string) (User, error) {
	user, hash, err := m.store.UserByLogin(ctx, login)
	switch {
	case err == nil && user.Source == SourceLocal:
		var ok, rehash bool
		var verr error
		if herr := m.hashing(ctx, func() { ok, rehash, verr = VerifyPassword(hash, password) }); herr != nil {
			return user, herr
		}
		if verr != nil || !ok {
			if verr != nil {
				m.log.Error("stored password hash unusable", "user_id", user.ID, "err", verr)
			}
			return user, ErrBadCredentials
		}
		if user.Disabled {
			return user, ErrAccountDisabled
		}
		if rehash {
			if h, herr := HashPassword(password); herr == nil {
				if serr := m.store.SetPassword(ctx, user.ID, h); serr != nil {
					m.log.Warn("rehash password", "user_id", user.ID, "err", serr)
				}
			}
		}
		return user, nil
	case err == nil && user.Source == SourceLDAP:
		if m.dir == nil {
			// The directory was switched off: its accounts cannot log in.
			if herr := m.hashing(ctx, func() { DummyVerify(password) }); herr != nil {
				return user, herr
			}
			return user, ErrBadCredentials
		}
		// The user may have typed a phone number; the directory knows the login.
		return m.directoryLogin(ctx, user.Login, password)
	case errors.Is(err, ErrNotFound):
		if m.dir == nil {
			if herr := m.hashing(ctx, func() { DummyVerify(password) }); herr != nil {
				return User{}, herr
			}
			return User{}, ErrBadCredentials
		}
		return m.directoryLogin(ctx, login, password)
	default:
		return User{}, fmt.Errorf("look up login: %w", err)
	}
}

// hashing runs a password hash check in one of a few slots, so a login
// storm queues instead of running unboundedly many 19 MiB derivations at
// once.
func (m *Module) hashing(ctx context.Context, fn func()) error {
	select {
	case m.hashSlots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("wait for a password check slot: %w", ctx.Err())
	}
	defer func() { <-m.hashSlots }()
	fn()
	return nil
}

// directoryLogin binds as the user and brings the account up to date from
// the entry the directory returned.
func (m *Module) directoryLogin(ctx context.Context, login, password string) (User, error) {
	du, err := m.dir.Authenticate(ctx, login, password)
	if err != nil {
		return User{Source: SourceLDAP}, err
	}
	_, id, err := m.store.UpsertDirectoryUser(ctx, du, m.directoryRole(du), m.now())
	if err != nil {
		return User{Source: SourceLDAP}, fmt.Errorf("store directory account: %w", err)
	}
	user, err := m.store.UserByID(ctx, id)
	if err != nil {
		return User{Source: SourceLDAP}, err
	}
	if user.Disabled {
		return user, ErrAccountDisabled
	}
	return user, nil
}

// directoryRole makes members of the admin group (nested too) admins and
// everyone else a user. Without an admin group the directory does not
// manage roles: "" keeps the account's role (RoleUser for a new account),
// so an admin made in Elph is not demoted by the next login or sync.
func (m *Module) directoryRole(du DirectoryUser) Role {
	admin := m.cfg.LDAP.AdminGroupDN
	if admin == "" {
		return ""
	}
	for _, g := range du.Groups {
		if SameDN(g, admin) {
			return RoleAdmin
		}
	}
	return RoleUser
}

// openSession creates the session, its first refresh token and an access
// token.
func (m *Module) openSession(ctx context.Context, user User, req LoginRequest, now time.Time) (LoginResult, error) {
	sid, err := newSessionID()
	if err != nil {
		return LoginResult{}, err
	}
	sess := Session{
		ID: sid, UserID: user.ID,
		Device:    store.Clip(strings.TrimSpace(req.Device), maxDeviceLen),
		UserAgent: store.Clip(req.UserAgent, maxAgentLen),
		IP:        req.IP.String(),
		CreatedAt: now, LastSeenAt: now,
		ExpiresAt: now.Add(m.cfg.SessionMaxAge),
	}
	if sess.Device == "" {
		sess.Device = "unknown"
	}
	if err := m.store.CreateSession(ctx, &sess); err != nil {
		return LoginResult{}, fmt.Errorf("create session: %w", err)
	}
	return m.issue(ctx, user, sess, now)
}

// issue makes a new refresh token for the session and an access token.
func (m *Module) issue(ctx context.Context, user User, sess Session, now time.Time) (LoginResult, error) {
	refresh, hash, err := NewRefreshToken()
	if err != nil {
		return LoginResult{}, err
	}
	exp := now.Add(m.cfg.RefreshTokenTTL)
	if exp.After(sess.ExpiresAt) {
		exp = sess.ExpiresAt
	}
	if err := m.store.InsertRefreshToken(ctx, hash, sess.ID, exp); err != nil {
		return LoginResult{}, fmt.Errorf("store refresh token: %w", err)
	}
	access, accessExp, err := m.tokens.Issue(ctx, user.ID, user.Login, string(user.Role), sess.ID)
	if err != nil {
		return LoginResult{}, fmt.Errorf("issue access token: %w", err)
	}
	return LoginResult{User: user, Session: sess, AccessToken: access, AccessExpiry: accessExp, RefreshToken: refresh}, nil
}

// Refresh exchanges a refresh token for a new pair. A token used twice
// means it was stolen: the whole session is revoked.
func (m *Module) Refresh(ctx context.Context, refreshToken string, ip netip.Addr) (LoginResult, error) {
	if refreshToken == "" || len(refreshToken) > 256 {
		return LoginResult{}, ErrNotFound
	}
	now := m.now()
	sess, err := m.store.UseRefreshToken(ctx, HashRefreshToken(refreshToken), now)
	if err != nil {
		result := errorCode(err)
		m.metrics.refreshes.WithLabelValues(result).Inc()
		if errors.Is(err, ErrRefreshReused) {
			m.log.Warn("refresh token reused: session revoked", "session_id", sess.ID, "user_id", sess.UserID, "ip", ip.String())
			m.metrics.revoked.WithLabelValues("refresh_reused").Inc()
			m.publishRevoked(ctx, sess.ID, sess.UserID, "refresh token reused", now)
		}
		return LoginResult{}, err
	}
	user, err := m.store.UserByID(ctx, sess.UserID)
	if err != nil {
		return LoginResult{}, err
	}
	if user.Disabled {
		m.revoke(ctx, sess, "account disabled")
		m.metrics.refreshes.WithLabelValues("account_disabled").Inc()
		return LoginResult{}, ErrAccountDisabled
	}
	if err := m.store.TouchSession(ctx, sess.ID, now, ip.String()); err != nil {
		m.log.Warn("touch session", "session_id", sess.ID, "err", err)
	}
	res, err := m.issue(ctx, user, sess, now)
	if err != nil {
		return LoginResult{}, err
	}
	m.metrics.refreshes.WithLabelValues("ok").Inc()
	return res, nil
}

// revoke ends a session and tells every node.
func (m *Module) revoke(ctx context.Context, sess Session, reason string) {
	now := m.now()
	revoked, err := m.store.RevokeSession(ctx, sess.ID, reason, now)
	if err != nil {
		m.log.Error("revoke session", "session_id", sess.ID, "err", err)
		return
	}
	if revoked {
		m.metrics.revoked.WithLabelValues(reasonLabel(reason)).Inc()
		m.publishRevoked(ctx, sess.ID, sess.UserID, reason, now)
	}
}

func reasonLabel(reason string) string {
	switch reason {
	case "logout", "revoked by user", "revoked by admin", "account disabled", "refresh token reused":
		return strings.ReplaceAll(reason, " ", "_")
	}
	return "other"
}

func clipLog(s string) string { return store.Clip(s, 64) }
