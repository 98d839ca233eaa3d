package auth

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxTokenSize bounds the tokens Verify accepts. The claims are decoded
// before the signature can be checked, so the bound caps the work an
// unauthenticated request can cause; real tokens are a few hundred bytes.
const MaxTokenSize = 4 << 10

// DefaultLeeway is the clock skew tolerated between the node that issued a
// token and the node that verifies it.
const DefaultLeeway = 30 * time.Second

// Alg is the only signing algorithm accepted. Pinning it is what defeats
// "alg":"none" and key-confusion (HS256 keyed with a public key) attacks.
const Alg = "EdDSA"

// KeySet gives the Ed25519 public key for a key id ("kid"). The sso module
// implements it from an in-memory cache, so a lookup does not hit the
// database.
type KeySet interface {
	PublicKey(kid string) (ed25519.PublicKey, bool)
}

// Claims is the payload of an access token. It is exported so the issuer
// signs exactly the layout Verify reads.
type Claims struct {
	jwt.RegisteredClaims
	SessionID string `json:"sid"`
	Login     string `json:"login"`
	Role      string `json:"role"`
}

// VerifierOptions configures a Verifier.
type VerifierOptions struct {
	Keys   KeySet // required
	Issuer string // required: the exact "iss" tokens must carry
	// Leeway is the clock skew tolerated on exp, nbf and iat. Zero means
	// DefaultLeeway; a negative value means none.
	Leeway time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Revoked, when set, rejects tokens of revoked sessions.
	Revoked *Revocations
}

// Verifier checks access tokens. It is safe for concurrent use.
type Verifier struct {
	keys    KeySet
	issuer  string
	now     func() time.Time
	revoked *Revocations
	parser  *jwt.Parser
	times   *jwt.Validator
}

// NewVerifier returns a Verifier. It panics when Keys or Issuer is missing,
// because a verifier without them could never accept a token and the
// mistake is the caller's.
func NewVerifier(o VerifierOptions) *Verifier {
	if o.Keys == nil {
		panic("auth: NewVerifier without Keys")
	}
	if o.Issuer == "" {
		panic("auth: NewVerifier without Issuer")
	}
	switch {
	case o.Leeway == 0:
		o.Leeway = DefaultLeeway
	case o.Leeway < 0:
		o.Leeway = 0
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Verifier{
		keys:    o.Keys,
		issuer:  o.Issuer,
		now:     o.Now,
		revoked: o.Revoked,
		// Claims are validated separately (below) so that an expired token
		// can be told apart from one that is wrong in some other way;
		// jwt joins every claim error into one.
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{Alg}),
			jwt.WithStrictDecoding(), // one encoding per token: no malleable trailing bits
			jwt.WithoutClaimsValidation(),
		),
		times: jwt.NewValidator(
			jwt.WithLeeway(o.Leeway),
			jwt.WithTimeFunc(o.Now),
			jwt.WithExpirationRequired(),
			jwt.WithNotBeforeRequired(),
			jwt.WithIssuedAt(),
		),
	}
}

var (
	errNoKID      = errors.New("no key id (kid) in the header")
	errUnknownKID = errors.New("unknown key id")
	errCritical   = errors.New("critical header extensions are not supported")
)

// Verify checks token and returns the principal it names. The token must be
// signed with EdDSA by a key the KeySet knows (header "kid"), carry the
// configured issuer, be within its exp/nbf/iat window (with leeway), name a
// positive integer user id in "sub", and carry "sid" and "role". Errors
// wrap ErrInvalidToken, ErrExpiredToken or ErrRevoked.
//
// ctx is accepted for symmetry with the rest of the request path; checking
// is in memory and does not block.
func (v *Verifier) Verify(ctx context.Context, token string) (*Principal, error) {
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("%w: token of %d bytes (max %d)", ErrInvalidToken, len(token), MaxTokenSize)
	}
	var c Claims
	if _, err := v.parser.ParseWithClaims(token, &c, v.key); err != nil {
		// The jwt error is kept as text only: callers branch on our
		// sentinels, not on the library's.
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	// The signature is good from here on, so the claims are ours; still,
	// check everything the Principal relies on.
	uid, err := strconv.ParseInt(c.Subject, 10, 64)
	switch {
	case c.Issuer != v.issuer:
		return nil, fmt.Errorf("%w: issuer %q, want %q", ErrInvalidToken, c.Issuer, v.issuer)
	case err != nil || uid <= 0 || strconv.FormatInt(uid, 10) != c.Subject:
		return nil, fmt.Errorf("%w: subject %q is not a positive user id", ErrInvalidToken, c.Subject)
	case c.SessionID == "":
		return nil, fmt.Errorf("%w: no session id (sid)", ErrInvalidToken)
	case c.Role == "":
		return nil, fmt.Errorf("%w: no role", ErrInvalidToken)
	case c.IssuedAt == nil:
		return nil, fmt.Errorf("%w: no issue time (iat)", ErrInvalidToken)
	}
	if err := v.times.Validate(c.RegisteredClaims); err != nil {
		// A token that is expired and also not valid yet is malformed,
		// not merely old.
		if errors.Is(err, jwt.ErrTokenExpired) &&
			!errors.Is(err, jwt.ErrTokenNotValidYet) && !errors.Is(err, jwt.ErrTokenUsedBeforeIssued) {
			return nil, fmt.Errorf("%w: at %s", ErrExpiredToken, c.ExpiresAt.UTC().Format(time.RFC3339))
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if v.revoked != nil && v.revoked.IsRevoked(c.SessionID) {
		return nil, fmt.Errorf("%w: session %s", ErrRevoked, c.SessionID)
	}
	return &Principal{
		UserID:    uid,
		Login:     c.Login,
		Role:      c.Role,
		SessionID: c.SessionID,
		TokenID:   c.ID,
		ExpiresAt: c.ExpiresAt.Time,
	}, nil
}

// key is the jwt.Keyfunc. The parser calls it only after the algorithm has
// been checked against Alg.
func (v *Verifier) key(t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, errCritical
	}
	kid, _ := t.Header["kid"].(string)
	if kid == "" {
		return nil, errNoKID
	}
	pub, ok := v.keys.PublicKey(kid)
	if !ok {
		return nil, errUnknownKID
	}
	return pub, nil
}
