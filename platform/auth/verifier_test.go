package auth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/elph-server/elph/platform/auth"
)

const (
	testIssuer = "elph-test"
	testKID    = "k1"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable clock, safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// keySet is a fixed auth.KeySet.
type keySet map[string]ed25519.PublicKey

func (k keySet) PublicKey(kid string) (ed25519.PublicKey, bool) {
	p, ok := k[kid]
	return p, ok
}

type fixture struct {
	priv    ed25519.PrivateKey
	pub     ed25519.PublicKey
	clock   *clock
	revoked *auth.Revocations
	v       *auth.Verifier
}

// newFixture builds a verifier trusting one deterministic key (so fuzzing
// and benchmarks see stable tokens) with its clock at t0.
func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	priv := ed25519.NewKeyFromSeed([]byte(strings.Repeat("k", ed25519.SeedSize)))
	f := &fixture{priv: priv, pub: priv.Public().(ed25519.PublicKey), clock: &clock{t: t0}}
	f.revoked = auth.NewRevocations(10*time.Minute, f.clock.Now)
	f.v = auth.NewVerifier(auth.VerifierOptions{
		Keys:    keySet{testKID: f.pub},
		Issuer:  testIssuer,
		Now:     f.clock.Now,
		Revoked: f.revoked,
	})
	return f
}

// claims are valid at t0 for five minutes.
func claims() auth.Claims {
	return auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    testIssuer,
			Subject:   "42",
			ID:        "jti-1",
			IssuedAt:  jwt.NewNumericDate(t0),
			NotBefore: jwt.NewNumericDate(t0),
			ExpiresAt: jwt.NewNumericDate(t0.Add(5 * time.Minute)),
		},
		SessionID: "sess-1",
		Login:     "ivan.petrov",
		Role:      "user",
	}
}

// sign makes a token with method and key; kid is omitted from the header
// when it is nil.
func sign(tb testing.TB, method jwt.SigningMethod, key any, kid any, c jwt.Claims) string {
	tb.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != nil {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		tb.Fatalf("sign: %v", err)
	}
	return s
}

func (f *fixture) token(tb testing.TB, edit func(*auth.Claims)) string {
	tb.Helper()
	c := claims()
	if edit != nil {
		edit(&c)
	}
	return sign(tb, jwt.SigningMethodEdDSA, f.priv, testKID, c)
}

// tokensAroundLimit returns the largest valid token not over
// auth.MaxTokenSize and the smallest one over it, grown through the login.
func (f *fixture) tokensAroundLimit(tb testing.TB) (within, over string) {
	tb.Helper()
	// Start a little below the limit: base64 makes 4 bytes of 3.
	base := len(f.token(tb, func(c *auth.Claims) { c.Login = "" }))
	for n := (auth.MaxTokenSize-base)*3/4 - 8; ; n++ {
		tok := f.token(tb, func(c *auth.Claims) { c.Login = strings.Repeat("x", n) })
		if len(tok) > auth.MaxTokenSize {
			return within, tok
		}
		within = tok
	}
}

// replacePart swaps one dot-separated part of a token.
func replacePart(tok string, i int, part string) string {
	parts := strings.Split(tok, ".")
	parts[i] = part
	return strings.Join(parts, ".")
}

func TestVerifyValid(t *testing.T) {
	f := newFixture(t)
	p, err := f.v.Verify(context.Background(), f.token(t, nil))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := auth.Principal{
		UserID:    42,
		Login:     "ivan.petrov",
		Role:      "user",
		SessionID: "sess-1",
		TokenID:   "jti-1",
		ExpiresAt: t0.Add(5 * time.Minute),
	}
	if !p.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("ExpiresAt = %v, want %v", p.ExpiresAt, want.ExpiresAt)
	}
	p.ExpiresAt = want.ExpiresAt // compared above; Equal ignores the location
	if *p != want {
		t.Errorf("principal = %+v\nwant %+v", *p, want)
	}
}

func TestVerifyRejects(t *testing.T) {
	f := newFixture(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024) // size is irrelevant: RS256 must be refused outright
	if err != nil {
		t.Fatal(err)
	}
	otherPriv := ed25519.NewKeyFromSeed([]byte(strings.Repeat("o", ed25519.SeedSize)))
	valid := f.token(t, nil)
	edit := func(e func(*auth.Claims)) func() string { return func() string { return f.token(t, e) } }
	largest, oversize := f.tokensAroundLimit(t)

	tests := []struct {
		name  string
		token func() string
		at    time.Time // zero: t0
		want  error     // nil: must verify
	}{
		{"valid", func() string { return valid }, time.Time{}, nil},
		{"empty", func() string { return "" }, time.Time{}, auth.ErrInvalidToken},
		{"garbage", func() string { return "not a token" }, time.Time{}, auth.ErrInvalidToken},
		{"two parts", func() string { return valid[:strings.LastIndex(valid, ".")] }, time.Time{}, auth.ErrInvalidToken},
		{"four parts", func() string { return valid + ".x" }, time.Time{}, auth.ErrInvalidToken},
		{"tampered payload", func() string {
			c := claims()
			c.Role = "admin"
			b, _ := json.Marshal(c)
			return replacePart(valid, 1, base64.RawURLEncoding.EncodeToString(b))
		}, time.Time{}, auth.ErrInvalidToken},
		{"tampered signature", func() string {
			sig, _ := base64.RawURLEncoding.DecodeString(strings.Split(valid, ".")[2])
			sig[10] ^= 0x01
			return replacePart(valid, 2, base64.RawURLEncoding.EncodeToString(sig))
		}, time.Time{}, auth.ErrInvalidToken},
		{"signature of another key", func() string {
			return sign(t, jwt.SigningMethodEdDSA, otherPriv, testKID, claims())
		}, time.Time{}, auth.ErrInvalidToken},
		{"non-canonical base64 signature", func() string {
			// The last character of an 86-char encoding of 64 bytes carries
			// two unused bits; setting one must not give a second valid form.
			sig := strings.Split(valid, ".")[2]
			last := strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", sig[len(sig)-1])
			alt := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last|1]
			return replacePart(valid, 2, sig[:len(sig)-1]+string(alt))
		}, time.Time{}, auth.ErrInvalidToken},
		{"alg none", func() string {
			return sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, testKID, claims())
		}, time.Time{}, auth.ErrInvalidToken},
		{"HS256 keyed with the public key (key confusion)", func() string {
			return sign(t, jwt.SigningMethodHS256, []byte(f.pub), testKID, claims())
		}, time.Time{}, auth.ErrInvalidToken},
		{"RS256", func() string {
			return sign(t, jwt.SigningMethodRS256, rsaKey, testKID, claims())
		}, time.Time{}, auth.ErrInvalidToken},
		{"missing kid", func() string {
			return sign(t, jwt.SigningMethodEdDSA, f.priv, nil, claims())
		}, time.Time{}, auth.ErrInvalidToken},
		{"kid not a string", func() string {
			return sign(t, jwt.SigningMethodEdDSA, f.priv, 1, claims())
		}, time.Time{}, auth.ErrInvalidToken},
		{"unknown kid", func() string {
			return sign(t, jwt.SigningMethodEdDSA, f.priv, "k2", claims())
		}, time.Time{}, auth.ErrInvalidToken},
		{"crit header", func() string {
			tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims())
			tok.Header["kid"], tok.Header["crit"] = testKID, []string{"exp"}
			s, _ := tok.SignedString(f.priv)
			return s
		}, time.Time{}, auth.ErrInvalidToken},
		{"wrong iss", edit(func(c *auth.Claims) { c.Issuer = "someone-else" }), time.Time{}, auth.ErrInvalidToken},
		{"no iss", edit(func(c *auth.Claims) { c.Issuer = "" }), time.Time{}, auth.ErrInvalidToken},
		{"sub zero", edit(func(c *auth.Claims) { c.Subject = "0" }), time.Time{}, auth.ErrInvalidToken},
		{"sub negative", edit(func(c *auth.Claims) { c.Subject = "-42" }), time.Time{}, auth.ErrInvalidToken},
		{"sub not a number", edit(func(c *auth.Claims) { c.Subject = "ivan" }), time.Time{}, auth.ErrInvalidToken},
		{"sub not canonical", edit(func(c *auth.Claims) { c.Subject = "+42" }), time.Time{}, auth.ErrInvalidToken},
		{"sub overflows", edit(func(c *auth.Claims) { c.Subject = "9223372036854775808" }), time.Time{}, auth.ErrInvalidToken},
		{"no sub", edit(func(c *auth.Claims) { c.Subject = "" }), time.Time{}, auth.ErrInvalidToken},
		{"no sid", edit(func(c *auth.Claims) { c.SessionID = "" }), time.Time{}, auth.ErrInvalidToken},
		{"no role", edit(func(c *auth.Claims) { c.Role = "" }), time.Time{}, auth.ErrInvalidToken},
		{"no exp", edit(func(c *auth.Claims) { c.ExpiresAt = nil }), time.Time{}, auth.ErrInvalidToken},
		{"no nbf", edit(func(c *auth.Claims) { c.NotBefore = nil }), time.Time{}, auth.ErrInvalidToken},
		{"no iat", edit(func(c *auth.Claims) { c.IssuedAt = nil }), time.Time{}, auth.ErrInvalidToken},
		{"expired within leeway", func() string { return valid }, t0.Add(5*time.Minute + 29*time.Second), nil},
		{"expired", func() string { return valid }, t0.Add(5*time.Minute + 30*time.Second), auth.ErrExpiredToken},
		{"expired long ago", func() string { return valid }, t0.Add(24 * time.Hour), auth.ErrExpiredToken},
		{"expired with a bad subject", edit(func(c *auth.Claims) { c.Subject = "x" }), t0.Add(time.Hour), auth.ErrInvalidToken},
		{"not yet valid within leeway", func() string { return valid }, t0.Add(-30 * time.Second), nil},
		{"not yet valid", func() string { return valid }, t0.Add(-31 * time.Second), auth.ErrInvalidToken},
		{"issued in the future", edit(func(c *auth.Claims) {
			c.IssuedAt = jwt.NewNumericDate(t0.Add(time.Minute))
		}), time.Time{}, auth.ErrInvalidToken},
		{"largest token within the size limit", func() string { return largest }, time.Time{}, nil},
		{"oversize by a byte or so", func() string { return oversize }, time.Time{}, auth.ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at := tt.at
			if at.IsZero() {
				at = t0
			}
			f.clock.Set(at)
			tok := tt.token()
			p, err := f.v.Verify(context.Background(), tok)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v (token of %d bytes)", err, len(tok))
				}
				if p.UserID != 42 {
					t.Errorf("UserID = %d, want 42", p.UserID)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify error = %v, want %v", err, tt.want)
			}
			if p != nil {
				t.Errorf("principal %+v returned with an error", p)
			}
			for _, other := range []error{auth.ErrInvalidToken, auth.ErrExpiredToken, auth.ErrRevoked} {
				if other != tt.want && errors.Is(err, other) {
					t.Errorf("error %v also matches %v", err, other)
				}
			}
		})
	}
}

func TestVerifyRevokedSession(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, nil)
	other := f.token(t, func(c *auth.Claims) { c.SessionID = "sess-2" })
	f.revoked.Revoke("sess-1")

	if _, err := f.v.Verify(context.Background(), tok); !errors.Is(err, auth.ErrRevoked) {
		t.Errorf("token of the revoked session: error = %v, want ErrRevoked", err)
	}
	if _, err := f.v.Verify(context.Background(), other); err != nil {
		t.Errorf("token of another session: %v", err)
	}
}

func TestNewVerifierPanicsWithoutRequiredOptions(t *testing.T) {
	tests := []struct {
		name string
		o    auth.VerifierOptions
	}{
		{"no keys", auth.VerifierOptions{Issuer: testIssuer}},
		{"no issuer", auth.VerifierOptions{Keys: keySet{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("NewVerifier did not panic")
				}
			}()
			auth.NewVerifier(tt.o)
		})
	}
}

func TestPrincipalContext(t *testing.T) {
	ctx := context.Background()
	if p, ok := auth.FromContext(ctx); ok || p != nil {
		t.Errorf("FromContext(empty) = %v, %v; want nil, false", p, ok)
	}
	if _, ok := auth.FromContext(auth.WithPrincipal(ctx, nil)); ok {
		t.Error("FromContext found a nil principal")
	}
	want := &auth.Principal{UserID: 7}
	if p, ok := auth.FromContext(auth.WithPrincipal(ctx, want)); !ok || p != want {
		t.Errorf("FromContext = %v, %v; want %v, true", p, ok, want)
	}
}

func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	valid := fx.token(f, nil)
	for _, s := range []string{
		valid,
		"",
		"..",
		"a.b.c",
		valid + ".",
		sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, testKID, claims()),
		sign(f, jwt.SigningMethodHS256, []byte(fx.pub), testKID, claims()),
		`eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.e30.`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := fx.v.Verify(context.Background(), tok)
		if err == nil {
			// Only the seed itself is signed; any change to it must fail.
			if tok != valid {
				t.Fatalf("verified a token that was never issued: %q -> %+v", tok, p)
			}
			return
		}
		if p != nil {
			t.Fatalf("principal returned with error %v", err)
		}
		if !errors.Is(err, auth.ErrInvalidToken) && !errors.Is(err, auth.ErrExpiredToken) && !errors.Is(err, auth.ErrRevoked) {
			t.Fatalf("error %v wraps none of the sentinels", err)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	f := newFixture(b)
	tok := f.token(b, nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := f.v.Verify(context.Background(), tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}
