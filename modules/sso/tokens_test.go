package sso

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/elph-server/elph/platform/auth"
)

// The real store must satisfy what the issuer needs.
var _ KeyStore = (*Store)(nil)

const (
	tokensIssuer   = "elph-test"
	tokensTTL      = 5 * time.Minute
	tokensRotation = 24 * time.Hour
)

var tokensT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// tokensClock is a settable clock, safe for concurrent use (the reload for
// an unknown kid reads it from its own goroutine).
type tokensClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *tokensClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *tokensClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// tokensKeyStore is an in-memory KeyStore; the SQL store has its own tests.
type tokensKeyStore struct {
	mu    sync.Mutex
	keys  []SigningKey
	reads int           // SigningKeys calls
	err   error         // returned by SigningKeys when set
	gate  chan struct{} // when set, SigningKeys waits for it to close
}

func (s *tokensKeyStore) InsertSigningKey(_ context.Context, k SigningKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, have := range s.keys {
		if have.KID == k.KID {
			return ErrConflict
		}
	}
	s.keys = append(s.keys, k)
	return nil
}

func (s *tokensKeyStore) SigningKeys(ctx context.Context, now time.Time) ([]SigningKey, error) {
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	if s.err != nil {
		return nil, s.err
	}
	var out []SigningKey
	for _, k := range s.keys {
		if k.ExpireAt.After(now) {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(a, b SigningKey) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out, nil
}

func (s *tokensKeyStore) DeleteExpiredKeys(_ context.Context, now time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.keys)
	s.keys = slices.DeleteFunc(s.keys, func(k SigningKey) bool { return !k.ExpireAt.After(now) })
	return n - len(s.keys), nil
}

func (s *tokensKeyStore) kids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var kids []string
	for _, k := range s.keys {
		kids = append(kids, k.KID)
	}
	return kids
}

func (s *tokensKeyStore) readCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

type tokensFixture struct {
	clock  *tokensClock
	store  *tokensKeyStore
	tokens *Tokens
	v      *auth.Verifier
}

func newTokensFixture(t *testing.T) *tokensFixture {
	t.Helper()
	f := &tokensFixture{clock: &tokensClock{t: tokensT0}, store: &tokensKeyStore{}}
	f.tokens = f.node()
	f.v = f.verifier(f.tokens)
	return f
}

// node is another Tokens on the same store and clock, as a second server
// node would be.
func (f *tokensFixture) node() *Tokens {
	return NewTokens(f.store, TokenOptions{
		Issuer: tokensIssuer, AccessTTL: tokensTTL, Rotation: tokensRotation, Now: f.clock.Now,
	})
}

func (f *tokensFixture) verifier(ks auth.KeySet) *auth.Verifier {
	return auth.NewVerifier(auth.VerifierOptions{Keys: ks, Issuer: tokensIssuer, Now: f.clock.Now})
}

func (f *tokensFixture) issue(t *testing.T) string {
	t.Helper()
	tok, _, err := f.tokens.Issue(context.Background(), 42, "ivan", "user", "sess-1")
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return tok
}

// kidOf reads the kid from a token's header without verifying it.
func kidOf(t *testing.T, tok string) string {
	t.Helper()
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, &auth.Claims{})
	if err != nil {
		t.Fatalf("ParseUnverified: %v", err)
	}
	kid, _ := parsed.Header["kid"].(string)
	return kid
}

// signWith signs a token valid at now for a day with a stored key, as the
// node that made the key would.
func signWith(t *testing.T, row SigningKey, now time.Time) string {
	t.Helper()
	k, err := parseSigningKey(row)
	if err != nil {
		t.Fatalf("parseSigningKey: %v", err)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: tokensIssuer, Subject: "7", ID: "j",
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(24 * time.Hour)),
		},
		SessionID: "sess-x", Role: "user",
	})
	tok.Header["kid"] = k.kid
	s, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTokenIssueVerify(t *testing.T) {
	f := newTokensFixture(t)
	ctx := context.Background()
	if err := f.tokens.Rotate(ctx); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	f.clock.Advance(1500 * time.Millisecond) // exp is kept to whole seconds
	tok, exp, err := f.tokens.Issue(ctx, 42, "ivan.petrov", "admin", "sess-1")
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if want := f.clock.Now().Add(tokensTTL).Truncate(time.Second); !exp.Equal(want) {
		t.Errorf("expiresAt = %v, want %v", exp, want)
	}
	p, err := f.v.Verify(ctx, tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if p.UserID != 42 || p.Login != "ivan.petrov" || p.Role != "admin" || p.SessionID != "sess-1" || !p.ExpiresAt.Equal(exp) {
		t.Errorf("principal = %+v", p)
	}
	if p.TokenID == "" {
		t.Error("no jti")
	}
	if kids := f.store.kids(); len(kids) != 1 || kidOf(t, tok) != kids[0] {
		t.Errorf("token kid %q, stored keys %v", kidOf(t, tok), kids)
	}

	tok2, _, err := f.tokens.Issue(ctx, 42, "ivan.petrov", "admin", "sess-1")
	if err != nil {
		t.Fatal(err)
	}
	p2, err := f.v.Verify(ctx, tok2)
	if err != nil {
		t.Fatal(err)
	}
	if p2.TokenID == p.TokenID {
		t.Errorf("two tokens share jti %q", p.TokenID)
	}
}

func TestTokenIssueRefusesBadInput(t *testing.T) {
	f := newTokensFixture(t)
	tests := []struct {
		name             string
		userID           int64
		login, role, sid string
	}{
		{"no user", 0, "ivan", "user", "s"},
		{"negative user", -1, "ivan", "user", "s"},
		{"no role", 1, "ivan", "", "s"},
		{"no session", 1, "ivan", "user", ""},
		{"too long for verifiers", 1, strings.Repeat("x", auth.MaxTokenSize), "user", "s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tok, _, err := f.tokens.Issue(context.Background(), tt.userID, tt.login, tt.role, tt.sid); err == nil {
				t.Errorf("Issue = %q, want an error", tok)
			}
		})
	}
}

func TestTokenKeyMaterial(t *testing.T) {
	f := newTokensFixture(t)
	if err := f.tokens.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(f.store.keys) != 1 {
		t.Fatalf("%d keys stored, want 1", len(f.store.keys))
	}
	k := f.store.keys[0]
	if k.Alg != "EdDSA" {
		t.Errorf("Alg = %q", k.Alg)
	}
	priv, err := x509.ParsePKCS8PrivateKey(k.Private)
	if err != nil {
		t.Fatalf("private key is not PKCS#8: %v", err)
	}
	pub, err := x509.ParsePKIXPublicKey(k.Public)
	if err != nil {
		t.Fatalf("public key is not PKIX: %v", err)
	}
	edPriv, ok1 := priv.(ed25519.PrivateKey)
	edPub, ok2 := pub.(ed25519.PublicKey)
	if !ok1 || !ok2 || !edPub.Equal(edPriv.Public()) {
		t.Fatalf("keys are %T and %T, or do not match", priv, pub)
	}
	if k.KID != thumbprint(edPub) || len(k.KID) != 43 {
		t.Errorf("kid %q is not the key's RFC 7638 thumbprint", k.KID)
	}
	if !k.CreatedAt.Equal(tokensT0) || !k.RetireAt.Equal(tokensT0.Add(tokensRotation)) ||
		!k.ExpireAt.Equal(tokensT0.Add(tokensRotation+tokensTTL+auth.DefaultLeeway)) {
		t.Errorf("times created %v retire %v expire %v", k.CreatedAt, k.RetireAt, k.ExpireAt)
	}
}

func TestTokenThumbprintVector(t *testing.T) {
	// RFC 8037 appendix A.3: the thumbprint of the RFC's example key.
	x, err := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := thumbprint(ed25519.PublicKey(x)), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; got != want {
		t.Errorf("thumbprint = %s, want %s", got, want)
	}
}

func TestTokenRotation(t *testing.T) {
	f := newTokensFixture(t)
	ctx := context.Background()
	if err := f.tokens.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	keyA := f.store.keys[0]

	// Rotating again before the period is up makes no key.
	f.clock.Advance(tokensRotation - time.Hour)
	if err := f.tokens.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(f.store.kids()); n != 1 {
		t.Fatalf("%d keys after an early Rotate, want 1", n)
	}

	// A's last tokens, signed just before it retires.
	f.clock.Advance(time.Hour - time.Minute)
	lastOfA := f.issue(t)
	longA := signWith(t, keyA, f.clock.Now()) // outlives A, to see A's own expiry
	if kidOf(t, lastOfA) != keyA.KID {
		t.Fatal("token not signed with the only key")
	}

	f.clock.Advance(time.Minute) // A retires
	if err := f.tokens.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(f.store.kids()); n != 2 {
		t.Fatalf("%d keys after rotation, want 2", n)
	}
	fresh := f.issue(t)
	if kidOf(t, fresh) == keyA.KID {
		t.Error("a token was signed with the retired key")
	}

	steps := []struct {
		name    string
		at      time.Duration // after A retired
		reload  bool          // Rotate (thus Load) first
		lastOfA error
		longA   error
		fresh   error
	}{
		{"A retired, its tokens valid", 3 * time.Minute, false, nil, nil, nil},
		{"A's last token expired, A still trusted", tokensTTL - time.Minute + auth.DefaultLeeway, false, auth.ErrExpiredToken, nil, nil},
		// Past ExpireAt the signature cannot be checked, so even a token
		// that is merely old is refused as invalid, not as expired.
		{"A expired, cache not reloaded", tokensTTL + auth.DefaultLeeway, false, auth.ErrInvalidToken, auth.ErrInvalidToken, auth.ErrExpiredToken},
		{"A expired and deleted", tokensTTL + auth.DefaultLeeway + time.Minute, true, auth.ErrInvalidToken, auth.ErrInvalidToken, auth.ErrExpiredToken},
	}
	retired := f.clock.Now()
	for _, st := range steps {
		f.clock.Advance(retired.Add(st.at).Sub(f.clock.Now()))
		if st.reload {
			if err := f.tokens.Rotate(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range []struct {
			name string
			tok  string
			want error
		}{{"last of A", lastOfA, st.lastOfA}, {"long A", longA, st.longA}, {"fresh", fresh, st.fresh}} {
			_, err := f.v.Verify(ctx, c.tok)
			if !errors.Is(err, c.want) { // errors.Is(nil, nil) is true
				t.Errorf("%s: %s: Verify error = %v, want %v", st.name, c.name, err, c.want)
			}
		}
	}
	if kids := f.store.kids(); slices.Contains(kids, keyA.KID) || len(kids) != 1 {
		t.Errorf("stored keys %v: A should be deleted, B kept", kids)
	}
	if _, ok := f.tokens.PublicKey(keyA.KID); ok {
		t.Error("PublicKey still trusts the expired key")
	}
}

func TestTokenIssueRotatesWhenNoKeyMaySign(t *testing.T) {
	f := newTokensFixture(t)
	ctx := context.Background()
	// No Rotate ever ran: concurrent logins must make exactly one key.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, _, err := f.tokens.Issue(ctx, 1, "a", "user", "s"); err != nil {
				t.Errorf("Issue: %v", err)
			}
		})
	}
	wg.Wait()
	if n := len(f.store.kids()); n != 1 {
		t.Fatalf("%d keys made, want 1", n)
	}
	// The key retired and the periodic Rotate has not run yet.
	f.clock.Advance(tokensRotation)
	tok := f.issue(t)
	if n := len(f.store.kids()); n != 2 {
		t.Fatalf("%d keys, want 2", n)
	}
	if _, err := f.v.Verify(ctx, tok); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestTokenKeyFromAnotherNode(t *testing.T) {
	f := newTokensFixture(t)
	ctx := context.Background()
	if err := f.tokens.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	readsAfterStart := f.store.readCount()

	// Another node made a key this node has not loaded.
	row, err := newSigningKey(f.clock.Now(), tokensRotation, tokensTTL+auth.DefaultLeeway)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.InsertSigningKey(ctx, row); err != nil {
		t.Fatal(err)
	}
	tok := signWith(t, row, f.clock.Now())
	if _, err := f.v.Verify(ctx, tok); err != nil {
		t.Fatalf("token of the other node's key: %v", err)
	}
	if got := f.store.readCount() - readsAfterStart; got != 1 {
		t.Errorf("%d store reads for the unknown kid, want 1", got)
	}

	// Made-up kids reload at most once per missReloadEvery.
	for range 5 {
		if _, ok := f.tokens.PublicKey("made-up"); ok {
			t.Fatal("made-up kid found")
		}
	}
	if got := f.store.readCount() - readsAfterStart; got != 1 {
		t.Errorf("%d store reads after made-up kids within %v, want still 1", got, missReloadEvery)
	}
	f.clock.Advance(missReloadEvery)
	f.tokens.PublicKey("made-up")
	if got := f.store.readCount() - readsAfterStart; got != 2 {
		t.Errorf("%d store reads after %v, want 2", got, missReloadEvery)
	}
}

func TestTokenUnknownKidDoesNotWaitForASlowStore(t *testing.T) {
	f := newTokensFixture(t)
	ctx := context.Background()
	if err := f.tokens.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	f.tokens.missWait = time.Millisecond

	row, err := newSigningKey(f.clock.Now(), tokensRotation, tokensTTL+auth.DefaultLeeway)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.InsertSigningKey(ctx, row); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	f.store.mu.Lock()
	f.store.gate = gate
	f.store.mu.Unlock()

	// The store cannot answer until the gate opens, so this can only
	// return by giving up on the reload.
	if _, ok := f.tokens.PublicKey(row.KID); ok {
		t.Fatal("key found while the store is blocked")
	}
	f.tokens.missMu.Lock()
	inflight := f.tokens.inflight
	f.tokens.missMu.Unlock()
	if inflight == nil {
		t.Fatal("no reload in flight")
	}
	close(gate)
	<-inflight
	// The reload the first caller gave up on still filled the cache.
	if _, ok := f.tokens.PublicKey(row.KID); !ok {
		t.Error("key not found after the reload finished")
	}
}

func TestTokenLoadSkipsUnusableKeys(t *testing.T) {
	f := newTokensFixture(t)
	ctx := context.Background()
	good, err := newSigningKey(tokensT0, tokensRotation, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := newSigningKey(tokensT0, tokensRotation, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	mismatched := other
	mismatched.KID, mismatched.Public = "mismatched", good.Public
	wrongAlg := other
	wrongAlg.KID, wrongAlg.Alg = "wrong-alg", "RS256"
	garbage := other
	garbage.KID, garbage.Private = "garbage", []byte("not DER")
	for _, k := range []SigningKey{good, mismatched, wrongAlg, garbage} {
		if err := f.store.InsertSigningKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.tokens.Load(ctx); err != nil {
		t.Fatalf("Load: %v", err)
	}
	f.tokens.missWait = 0 // no reload may rescue the bad ones
	if _, ok := f.tokens.PublicKey(good.KID); !ok {
		t.Error("good key not loaded")
	}
	for _, kid := range []string{"mismatched", "wrong-alg", "garbage"} {
		if _, ok := f.tokens.PublicKey(kid); ok {
			t.Errorf("unusable key %s loaded", kid)
		}
	}
}

func TestTokenStoreFailure(t *testing.T) {
	f := newTokensFixture(t)
	ctx := context.Background()
	broken := errors.New("database is down")
	f.store.err = broken
	if err := f.tokens.Load(ctx); !errors.Is(err, broken) {
		t.Errorf("Load error = %v, want it to wrap %v", err, broken)
	}
	if err := f.tokens.Rotate(ctx); !errors.Is(err, broken) {
		t.Errorf("Rotate error = %v, want it to wrap %v", err, broken)
	}
	if _, _, err := f.tokens.Issue(ctx, 1, "a", "user", "s"); !errors.Is(err, broken) {
		t.Errorf("Issue error = %v, want it to wrap %v", err, broken)
	}
	if n := len(f.store.kids()); n != 0 {
		t.Errorf("%d keys stored although the store could not be read", n)
	}
}

func TestRefreshToken(t *testing.T) {
	tok, hash, err := NewRefreshToken()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(tok)
	if err != nil || len(raw) != 32 {
		t.Errorf("token %q: %d bytes, %v; want 32 bytes of unpadded base64url", tok, len(raw), err)
	}
	if hash != HashRefreshToken(tok) {
		t.Error("returned hash differs from HashRefreshToken")
	}
	if b, err := hex.DecodeString(hash); err != nil || len(b) != 32 {
		t.Errorf("hash %q is not hex SHA-256", hash)
	}
	tok2, hash2, err := NewRefreshToken()
	if err != nil {
		t.Fatal(err)
	}
	if tok2 == tok || hash2 == hash {
		t.Error("two refresh tokens are equal")
	}
}

func TestHashRefreshTokenVector(t *testing.T) {
	// FIPS 180-2 example: SHA-256("abc").
	if got, want := HashRefreshToken("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("HashRefreshToken(abc) = %s, want %s", got, want)
	}
}
