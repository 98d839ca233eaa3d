package sso

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/platform/auth"
	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/httpx"
	"github.com/elph-server/elph/platform/module"
	"github.com/elph-server/elph/platform/obs"
	"github.com/elph-server/elph/platform/store"
)

// Name is the module's name in configuration and logs.
const Name = "sso"

// Options are what the wiring hands the module.
type Options struct {
	Config  config.SSO
	Log     *slog.Logger
	DB      *store.DB
	Bus     bus.Bus
	Metrics prometheus.Registerer
	// Revocations is the node's set of revoked sessions, shared with every
	// module's token verifier.
	Revocations *auth.Revocations
	// Out receives the one-time print of a generated admin password.
	Out io.Writer
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Module is the sso module.
type Module struct {
	cfg      config.SSO
	log      *slog.Logger
	store    *Store
	dir      *Directory // nil when LDAP is off
	tokens   *Tokens
	verifier *auth.Verifier
	revoked  *auth.Revocations
	bus      bus.Bus
	metrics  *metrics
	out      io.Writer
	now      func() time.Time
	health   *httpx.Server

	mu       sync.Mutex
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	sub      bus.Subscription
	syncLock sync.Mutex // one directory sync at a time per node
	// hashSlots bounds concurrent password hash checks (CPU and memory).
	hashSlots chan struct{}
}

// New provisions the module; it connects to nothing yet.
func New(o Options) (*Module, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Revocations == nil {
		o.Revocations = auth.NewRevocations(o.Config.AccessTokenTTL+time.Minute, o.Now)
	}
	met, err := newMetrics(o.Metrics)
	if err != nil {
		return nil, fmt.Errorf("sso metrics: %w", err)
	}
	m := &Module{
		cfg: o.Config, log: o.Log, store: NewStore(o.DB), revoked: o.Revocations, bus: o.Bus,
		metrics: met, out: o.Out, now: o.Now,
		hashSlots: make(chan struct{}, max(2, runtime.GOMAXPROCS(0))),
	}
	m.tokens = NewTokens(m.store, TokenOptions{
		Issuer: o.Config.Issuer, AccessTTL: o.Config.AccessTokenTTL, Rotation: o.Config.KeyRotation,
		Now: o.Now, Log: o.Log,
	})
	m.verifier = auth.NewVerifier(auth.VerifierOptions{Keys: m.tokens, Issuer: o.Config.Issuer, Now: o.Now, Revoked: o.Revocations})
	if o.Config.LDAP.Enabled {
		if m.dir, err = NewDirectory(o.Config.LDAP, o.Log.With("component", "ldap")); err != nil {
			return nil, fmt.Errorf("ldap: %w", err)
		}
	}
	return m, nil
}

func (m *Module) Name() string { return Name }

// Verifier checks access tokens; the wiring hands it to every module.
func (m *Module) Verifier() *auth.Verifier { return m.verifier }

// Store is the account store, for the CLI.
func (m *Module) Store() *Store { return m.store }

func (m *Module) Topics() module.Topics {
	return module.Topics{
		Publishes: []string{TopicSessionRevoked, TopicDirectorySynced, TopicUserChanged},
		Consumes:  []string{TopicSessionRevoked},
	}
}

// Start makes sure a signing key and an admin exist, listens for
// revocations from other nodes, opens the health port and starts the
// periodic work (key rotation, directory sync, purge).
func (m *Module) Start(ctx context.Context) error {
	if err := m.tokens.Rotate(ctx); err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	if err := m.EnsureAdmin(ctx); err != nil {
		return err
	}
	sub, err := m.bus.Subscribe(TopicSessionRevoked, "sso.revocations", m.onRevoked)
	if err != nil {
		return err
	}
	m.sub = sub
	if m.cfg.HealthListen != "" {
		h := obs.NewHealth()
		h.AddCheck("database", m.store.db.Ping)
		if m.dir != nil {
			h.AddCheck("directory", m.dir.Ping)
		}
		h.SetReady(true)
		mux := http.NewServeMux()
		mux.HandleFunc("GET /livez", h.Livez)
		mux.HandleFunc("GET /readyz", h.Readyz(true))
		m.health = httpx.NewServer(httpx.ServerOptions{Name: "sso-health", Addr: m.cfg.HealthListen, Handler: mux,
			ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute, Logger: m.log})
		if err := m.health.Start(); err != nil {
			sub.Unsubscribe()
			return err
		}
	}
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.mu.Lock()
	m.cancel = cancel
	m.mu.Unlock()
	m.runEvery(loopCtx, time.Minute, "signing keys", m.rotateKeys)
	m.runEvery(loopCtx, time.Hour, "purge", m.purge)
	if m.dir != nil && m.cfg.LDAP.SyncInterval > 0 {
		m.runEvery(loopCtx, m.cfg.LDAP.SyncInterval, "directory sync", func(ctx context.Context) error {
			_, err := m.SyncDirectory(ctx, SyncOptions{})
			return err
		})
	}
	return nil
}

// Stop ends the periodic work and the health port.
func (m *Module) Stop(ctx context.Context) error {
	m.mu.Lock()
	if m.cancel != nil {
		m.cancel()
	}
	m.mu.Unlock()
	m.wg.Wait()
	if m.sub != nil {
		m.sub.Unsubscribe()
	}
	if m.health != nil {
		return m.health.Shutdown(ctx)
	}
	return nil
}

// runEvery starts a background job that Stop waits for.
func (m *Module) runEvery(ctx context.Context, interval time.Duration, what string, fn func(context.Context) error) {
	m.wg.Go(func() { module.Every(ctx, interval, m.log, what, fn) })
}

func (m *Module) rotateKeys(ctx context.Context) error {
	if err := m.tokens.Rotate(ctx); err != nil {
		return err
	}
	return m.tokens.Load(ctx)
}

func (m *Module) purge(ctx context.Context) error {
	n, err := m.store.PurgeExpired(ctx, m.now())
	if err != nil {
		return err
	}
	if _, err := m.store.PurgeFailures(ctx, m.now().Add(-24*time.Hour)); err != nil {
		return err
	}
	if n > 0 {
		m.log.Info("purged expired sessions and refresh tokens", "rows", n)
	}
	return nil
}

func (m *Module) onRevoked(_ context.Context, ev bus.Event) error {
	var p SessionRevoked
	if err := json.Unmarshal(ev.Payload, &p); err != nil {
		return fmt.Errorf("decode %s: %w", ev.Topic, err)
	}
	m.revoked.Revoke(p.SessionID)
	return nil
}

// publishRevoked marks the session revoked on this node at once and tells
// the others. The bus may refuse (backpressure); the session is revoked in
// the database anyway, and access tokens expire within their TTL.
func (m *Module) publishRevoked(ctx context.Context, sessionID string, userID int64, reason string, at time.Time) {
	m.revoked.Revoke(sessionID)
	payload, _ := json.Marshal(SessionRevoked{SessionID: sessionID, UserID: userID, Reason: reason, At: at})
	if err := m.bus.Publish(ctx, bus.Event{Topic: TopicSessionRevoked, Key: fmt.Sprint(userID), Payload: payload}); err != nil {
		m.log.Error("publish session revocation", "session_id", sessionID, "err", err)
	}
}

func (m *Module) publishUserChanged(ctx context.Context, userID int64, change string, disabled bool) {
	payload, _ := json.Marshal(UserChanged{UserID: userID, Change: change, Disabled: disabled})
	if err := m.bus.Publish(ctx, bus.Event{Topic: TopicUserChanged, Key: fmt.Sprint(userID), Payload: payload}); err != nil {
		m.log.Error("publish user change", "user_id", userID, "err", err)
	}
}

// EnsureAdmin creates the first admin when there is none: with the
// configured password, or a generated one printed once.
func (m *Module) EnsureAdmin(ctx context.Context) error {
	n, err := m.store.CountAdmins(ctx)
	if err != nil {
		return fmt.Errorf("count admins: %w", err)
	}
	if n > 0 {
		return nil
	}
	pw, generated := m.cfg.InitialAdminPass, false
	if pw == "" {
		if pw, err = generatePassword(); err != nil {
			return err
		}
		generated = true
	}
	hash, err := HashPassword(pw)
	if err != nil {
		return err
	}
	u := User{Login: m.cfg.InitialAdmin, DisplayName: "Administrator", Role: RoleAdmin, Source: SourceLocal}
	if err := m.store.CreateUser(ctx, &u, hash); err != nil {
		if errors.Is(err, ErrConflict) {
			return fmt.Errorf("no enabled admin exists and the login %q is taken: make an admin with `elph user add --admin` or set sso.initial_admin", m.cfg.InitialAdmin)
		}
		return fmt.Errorf("create initial admin: %w", err)
	}
	m.log.Warn("created the initial admin account", "login", u.Login, "auto_generated", generated)
	if generated {
		fmt.Fprintf(m.out, "\n  Initial admin account created.\n    login:    %s\n    password: %s\n  This password is shown only once: change it with `elph user passwd %s`.\n\n", u.Login, pw, u.Login)
	}
	return nil
}

// generatePassword makes a random password: crypto/rand.Text gives 26
// base32 characters, about 130 bits.
func generatePassword() (string, error) { return rand.Text(), nil }

// newSessionID is 128 random bits, URL-safe.
func newSessionID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("session id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
