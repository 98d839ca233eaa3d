package sso

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/elph-server/elph/platform/auth"
)

// KeyStore is the part of the sso store the token issuer needs.
type KeyStore interface {
	InsertSigningKey(ctx context.Context, k SigningKey) error
	// SigningKeys returns the keys not yet expired at now, newest first.
	SigningKeys(ctx context.Context, now time.Time) ([]SigningKey, error)
	// DeleteExpiredKeys deletes the keys expired at now and returns how many.
	DeleteExpiredKeys(ctx context.Context, now time.Time) (int, error)
}

// TokenOptions configures Tokens.
type TokenOptions struct {
	Issuer    string        // "iss" of every token; required
	AccessTTL time.Duration // lifetime of an access token; required
	Rotation  time.Duration // how long a key signs before the next one takes over; required
	// Leeway is the clock skew the verifiers tolerate: a key stays trusted
	// that much longer than the last token it signed. Zero means
	// auth.DefaultLeeway.
	Leeway time.Duration
	Now    func() time.Time // nil means time.Now
	Log    *slog.Logger     // nil discards
}

// An unknown kid usually means another node rotated; these bound what such
// lookups, which anyone can cause with a made-up token, cost.
const (
	missReloadEvery   = 10 * time.Second // at most one store read per this
	missReloadWait    = time.Second      // how long PublicKey waits for it
	missReloadTimeout = 5 * time.Second  // how long the read itself may take
)

// Tokens issues access tokens signed with rotating Ed25519 keys and, as an
// auth.KeySet, gives verifiers their public keys. Keys live in the store so
// every node signs and verifies with the same set; each node caches them.
// Tokens is safe for concurrent use.
type Tokens struct {
	ks       KeyStore
	issuer   string
	ttl      time.Duration
	rotation time.Duration
	leeway   time.Duration
	now      func() time.Time
	log      *slog.Logger
	missWait time.Duration // missReloadWait; tests shorten it

	mu   sync.RWMutex
	keys []cachedKey // newest first

	loadMu   sync.Mutex // so an older read never overwrites a newer one
	rotateMu sync.Mutex // so concurrent rotations on this node make one key

	missMu   sync.Mutex
	lastMiss time.Time     // when an unknown kid last caused a reload
	inflight chan struct{} // closed when that reload ends; nil when none runs
}

var _ auth.KeySet = (*Tokens)(nil)

type cachedKey struct {
	kid      string
	priv     ed25519.PrivateKey
	pub      ed25519.PublicKey
	created  time.Time
	retireAt time.Time
	expireAt time.Time
}

// NewTokens returns an issuer with an empty key cache: call Load (or
// Rotate) before serving. It panics on a missing store, issuer or duration,
// which config validation rules out.
func NewTokens(ks KeyStore, o TokenOptions) *Tokens {
	switch {
	case ks == nil:
		panic("sso: NewTokens without a KeyStore")
	case o.Issuer == "":
		panic("sso: NewTokens without an Issuer")
	case o.AccessTTL <= 0 || o.Rotation <= 0:
		panic("sso: NewTokens with a non-positive AccessTTL or Rotation")
	}
	if o.Leeway <= 0 {
		o.Leeway = auth.DefaultLeeway
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Tokens{
		ks:       ks,
		issuer:   o.Issuer,
		ttl:      o.AccessTTL,
		rotation: o.Rotation,
		leeway:   o.Leeway,
		now:      o.Now,
		log:      o.Log,
		missWait: missReloadWait,
	}
}

// Load replaces the cached keys with the store's unexpired ones. Call it at
// start and periodically: other nodes may have rotated.
func (t *Tokens) Load(ctx context.Context) error {
	t.loadMu.Lock()
	defer t.loadMu.Unlock()
	rows, err := t.ks.SigningKeys(ctx, t.now())
	if err != nil {
		return fmt.Errorf("sso: load signing keys: %w", err)
	}
	keys := make([]cachedKey, 0, len(rows))
	for _, row := range rows {
		k, err := parseSigningKey(row)
		if err != nil {
			// One bad row must not stop the other keys from verifying.
			t.log.ErrorContext(ctx, "skipping an unusable signing key", "kid", row.KID, "err", err)
			continue
		}
		keys = append(keys, k)
	}
	// The store sorts too; the cache relies on it, so do not trust it.
	slices.SortStableFunc(keys, func(a, b cachedKey) int { return b.created.Compare(a.created) })
	t.mu.Lock()
	t.keys = keys
	t.mu.Unlock()
	return nil
}

// Rotate makes a new signing key when the newest one is older than the
// rotation period or already retired (or there is none), then reloads the
// cache and deletes expired keys. Call it at start and periodically; with
// several nodes, whichever rotates first wins and the others load its key.
func (t *Tokens) Rotate(ctx context.Context) error {
	t.rotateMu.Lock()
	defer t.rotateMu.Unlock()
	if err := t.Load(ctx); err != nil {
		return err
	}
	return t.rotateLocked(ctx)
}

// rotateLocked is Rotate after the cache is fresh; rotateMu is held.
func (t *Tokens) rotateLocked(ctx context.Context) error {
	now := t.now()
	t.mu.RLock()
	due := len(t.keys) == 0 || now.Sub(t.keys[0].created) >= t.rotation || !now.Before(t.keys[0].retireAt)
	t.mu.RUnlock()
	if due {
		row, err := newSigningKey(now, t.rotation, t.ttl+t.leeway)
		if err != nil {
			return err
		}
		if err := t.ks.InsertSigningKey(ctx, row); err != nil {
			return fmt.Errorf("sso: store new signing key: %w", err)
		}
		t.log.InfoContext(ctx, "signing key rotated", "kid", row.KID, "retire_at", row.RetireAt, "expire_at", row.ExpireAt)
		if err := t.Load(ctx); err != nil {
			return err
		}
	}
	// Housekeeping: an expired key is already ignored, so a failure here
	// must not fail the rotation.
	if n, err := t.ks.DeleteExpiredKeys(ctx, now); err != nil {
		t.log.WarnContext(ctx, "deleting expired signing keys failed", "err", err)
	} else if n > 0 {
		t.log.InfoContext(ctx, "expired signing keys deleted", "count", n)
	}
	return nil
}

// Issue signs an access token for the user's session with the newest key
// not yet retired. The token carries kid in its header and iss, sub (the
// user id), jti, iat, nbf, exp, sid, login and role as claims (auth.Claims).
// It returns the token and its expiry.
func (t *Tokens) Issue(ctx context.Context, userID int64, login, role, sessionID string) (string, time.Time, error) {
	if userID <= 0 || role == "" || sessionID == "" {
		return "", time.Time{}, fmt.Errorf("sso: issue token: user id %d, role %q and session %q must all be set", userID, role, sessionID)
	}
	k, ok := t.signer(t.now())
	if !ok {
		// The periodic Rotate has not run since the last key retired (or
		// never ran): make a key now rather than fail the login.
		if err := t.ensureSigner(ctx); err != nil {
			return "", time.Time{}, err
		}
		if k, ok = t.signer(t.now()); !ok {
			return "", time.Time{}, errors.New("sso: issue token: no signing key")
		}
	}
	now := t.now()
	exp := now.Add(t.ttl)
	// A token must not outlive trust in its key; only a changed AccessTTL
	// can make it, and then the token is just shorter.
	if limit := k.expireAt.Add(-t.leeway); exp.After(limit) {
		exp = limit
	}
	c := auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.issuer,
			Subject:   strconv.FormatInt(userID, 10),
			ID:        rand.Text(),
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
		SessionID: sessionID,
		Login:     login,
		Role:      role,
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	tok.Header["kid"] = k.kid
	s, err := tok.SignedString(k.priv)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sso: sign token: %w", err)
	}
	if len(s) > auth.MaxTokenSize {
		// Verifiers would refuse it; fail here where the cause is visible.
		return "", time.Time{}, fmt.Errorf("sso: issue token: %d bytes, over the %d verifiers accept", len(s), auth.MaxTokenSize)
	}
	return s, c.ExpiresAt.Time, nil
}

// ensureSigner rotates when no cached key may sign. Concurrent callers
// wait for the first one instead of each making a key.
func (t *Tokens) ensureSigner(ctx context.Context) error {
	t.rotateMu.Lock()
	defer t.rotateMu.Unlock()
	if _, ok := t.signer(t.now()); ok {
		return nil
	}
	if err := t.Load(ctx); err != nil {
		return err
	}
	return t.rotateLocked(ctx)
}

// signer returns the newest cached key that is not retired at now.
func (t *Tokens) signer(now time.Time) (cachedKey, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, k := range t.keys {
		if now.Before(k.retireAt) {
			return k, true
		}
	}
	return cachedKey{}, false
}

// PublicKey returns the key that verifies tokens with this kid, as long as
// it has not expired. A kid the cache does not hold may come from a key
// another node just made, so it triggers a reload from the store, at most
// once per missReloadEvery; the caller waits for that reload at most
// missWait and otherwise gets false (its client retries).
func (t *Tokens) PublicKey(kid string) (ed25519.PublicKey, bool) {
	if pub, held := t.cached(kid); held {
		return pub, pub != nil
	}
	done := t.reloadForMiss()
	if done == nil {
		return nil, false
	}
	timer := time.NewTimer(t.missWait)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		return nil, false
	}
	pub, _ := t.cached(kid)
	return pub, pub != nil
}

// cached returns the public key for kid and whether the cache holds kid at
// all; a held key past its ExpireAt is no longer trusted (nil), and no
// reload would bring it back.
func (t *Tokens) cached(kid string) (ed25519.PublicKey, bool) {
	now := t.now()
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, k := range t.keys {
		if k.kid == kid {
			if !now.Before(k.expireAt) {
				return nil, true
			}
			return k.pub, true
		}
	}
	return nil, false
}

// reloadForMiss starts a reload unless one is running (then it returns
// that one's channel) or one started less than missReloadEvery ago (then
// nil). The reload runs detached from any request, so a caller that gives
// up does not cancel it for the others.
func (t *Tokens) reloadForMiss() <-chan struct{} {
	t.missMu.Lock()
	defer t.missMu.Unlock()
	if t.inflight != nil {
		return t.inflight
	}
	now := t.now()
	if !t.lastMiss.IsZero() && now.Sub(t.lastMiss) < missReloadEvery {
		return nil
	}
	t.lastMiss = now
	done := make(chan struct{})
	t.inflight = done
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), missReloadTimeout)
		defer cancel()
		if err := t.Load(ctx); err != nil {
			t.log.WarnContext(ctx, "reloading signing keys for an unknown kid failed", "err", err)
		}
		t.missMu.Lock()
		t.inflight = nil
		t.missMu.Unlock()
		close(done)
	}()
	return done
}

// newSigningKey makes a key that signs for rotation from now and verifies
// for trustAfter beyond that: the longest a token it signed can live.
func newSigningKey(now time.Time, rotation, trustAfter time.Duration) (SigningKey, error) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return SigningKey{}, fmt.Errorf("sso: generate signing key: %w", err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return SigningKey{}, fmt.Errorf("sso: encode signing key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return SigningKey{}, fmt.Errorf("sso: encode public key: %w", err)
	}
	retire := now.Add(rotation)
	return SigningKey{
		KID:       thumbprint(pub),
		Alg:       auth.Alg,
		Private:   privDER,
		Public:    pubDER,
		CreatedAt: now,
		RetireAt:  retire,
		ExpireAt:  retire.Add(trustAfter),
	}, nil
}

// thumbprint is the RFC 7638 JWK thumbprint of an Ed25519 key. Deriving
// the kid from the key keeps ids unique without coordination between nodes
// and matches what a JWKS endpoint would publish.
func thumbprint(pub ed25519.PublicKey) string {
	// Members in lexicographic order, no whitespace, as RFC 7638 requires.
	jwk := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(jwk))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func parseSigningKey(row SigningKey) (cachedKey, error) {
	if row.Alg != auth.Alg {
		return cachedKey{}, fmt.Errorf("algorithm %q, want %q", row.Alg, auth.Alg)
	}
	anyPriv, err := x509.ParsePKCS8PrivateKey(row.Private)
	if err != nil {
		return cachedKey{}, fmt.Errorf("private key: %w", err)
	}
	priv, ok := anyPriv.(ed25519.PrivateKey)
	if !ok {
		return cachedKey{}, fmt.Errorf("private key is a %T, not Ed25519", anyPriv)
	}
	anyPub, err := x509.ParsePKIXPublicKey(row.Public)
	if err != nil {
		return cachedKey{}, fmt.Errorf("public key: %w", err)
	}
	pub, ok := anyPub.(ed25519.PublicKey)
	if !ok {
		return cachedKey{}, fmt.Errorf("public key is a %T, not Ed25519", anyPub)
	}
	if !pub.Equal(priv.Public()) {
		return cachedKey{}, errors.New("public key does not match the private key")
	}
	return cachedKey{
		kid:      row.KID,
		priv:     priv,
		pub:      pub,
		created:  row.CreatedAt,
		retireAt: row.RetireAt,
		expireAt: row.ExpireAt,
	}, nil
}

// NewRefreshToken returns a new refresh token (32 random bytes, base64url
// without padding) and the hash to store in its place.
func NewRefreshToken() (token, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("sso: new refresh token: %w", err)
	}
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, HashRefreshToken(token), nil
}

// HashRefreshToken returns the stored form of a refresh token: hex SHA-256
// of the token string, so a leaked database holds no usable token. No salt
// or slow hash is needed: unlike a password, the token has 256 random bits.
func HashRefreshToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
