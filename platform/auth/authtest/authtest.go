// Package authtest mints access tokens for tests of modules that verify
// them, exactly as the sso module signs them, without running sso.
package authtest

import (
	"crypto/ed25519"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/elph-server/elph/platform/auth"
)

// Issuer and KID are the "iss" and key id of the tokens an Issuer signs.
const (
	Issuer = "elph-test"
	KID    = "test-key"
)

type keySet map[string]ed25519.PublicKey

func (k keySet) PublicKey(kid string) (ed25519.PublicKey, bool) {
	p, ok := k[kid]
	return p, ok
}

// Signer signs access tokens with a fixed Ed25519 key and verifies them
// with a real auth.Verifier that trusts only that key.
type Signer struct {
	priv     ed25519.PrivateKey
	revoked  *auth.Revocations
	verifier *auth.Verifier
}

// New returns a Signer whose verifier checks revocations in its own set.
func New(t testing.TB) *Signer { return withSeed(t, "s") }

// Forger returns a Signer with another key under the same key id: its
// tokens look right but no other Signer's verifier accepts them.
func Forger(t testing.TB) *Signer { return withSeed(t, "o") }

func withSeed(t testing.TB, seed string) *Signer {
	t.Helper()
	priv := ed25519.NewKeyFromSeed([]byte(strings.Repeat(seed, ed25519.SeedSize)))
	revoked := auth.NewRevocations(time.Hour, nil)
	return &Signer{
		priv:    priv,
		revoked: revoked,
		verifier: auth.NewVerifier(auth.VerifierOptions{
			Keys: keySet{KID: priv.Public().(ed25519.PublicKey)}, Issuer: Issuer, Revoked: revoked,
		}),
	}
}

// Verifier trusts the Signer's tokens.
func (s *Signer) Verifier() *auth.Verifier { return s.verifier }

// Revocations is the set the Verifier consults; Revoke a session id there
// to end its tokens and WebSockets.
func (s *Signer) Revocations() *auth.Revocations { return s.revoked }

// Token is an access token of userID (login "user<ID>", role "user") for
// session sid, valid for an hour from now; edit may change the claims
// (role, expiry, issuer…) before signing.
func (s *Signer) Token(t testing.TB, userID int64, sid string, edit func(*auth.Claims)) string {
	t.Helper()
	now := time.Now()
	c := auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    Issuer,
			Subject:   strconv.FormatInt(userID, 10),
			ID:        "jti-" + sid,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
		},
		SessionID: sid,
		Login:     "user" + strconv.FormatInt(userID, 10),
		Role:      "user",
	}
	if edit != nil {
		edit(&c)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	tok.Header["kid"] = KID
	signed, err := tok.SignedString(s.priv)
	if err != nil {
		t.Fatalf("authtest: sign: %v", err)
	}
	return signed
}
