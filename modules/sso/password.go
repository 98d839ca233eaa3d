package sso

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Parameters of new password hashes: argon2id with 64 MiB, 3 passes and 2
// lanes, the OWASP-style interactive setting, about 50-100 ms on a server
// core. Changing them makes VerifyPassword report needsRehash for old
// hashes, so they are upgraded at the next successful login.
const (
	// OWASP's argon2id baseline (19 MiB, 2 passes, 1 lane): about 25 ms
	// per check here, so a login storm stays cheap while a stolen hash
	// stays expensive to attack. The login path also bounds how many run
	// at once, which bounds their memory.
	argonMemory  = 19 * 1024 // KiB
	argonTime    = 2
	argonThreads = 1
	argonSaltLen = 16
	argonKeyLen  = 32
)

// Bounds on parameters read from a stored hash. A hash comes from our own
// database, but a bad row (or an attacker who can write one) must not make
// a single login allocate gigabytes or run for minutes.
const (
	maxArgonMemory  = 1024 * 1024 // KiB: 1 GiB
	maxArgonTime    = 10
	maxArgonThreads = 16
	minArgonSaltLen = 8
	maxArgonSaltLen = 64
	minArgonKeyLen  = 16
	maxArgonKeyLen  = 64
)

// Password limits. The upper bound keeps argon2's input hashing cheap and
// the request small; the policy's lower bound is counted in characters.
const (
	maxPasswordBytes = 1024
	minPasswordChars = 12
)

// dummyHash is an argon2id hash, with the current parameters, of a random
// password nobody knows. DummyVerify checks against it so that a login for
// an unknown user costs as much as one for a known user. It is made once,
// on first use, so it always follows the parameters above.
var dummyHash = sync.OnceValue(func() string {
	h, err := HashPassword(rand.Text())
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return h
})

// ErrPasswordPolicy is wrapped by CheckPasswordPolicy's errors, whose
// messages say what is wrong and can be shown to the user.
var ErrPasswordPolicy = errors.New("password does not meet the policy")

// errInvalidHash is wrapped by VerifyPassword's errors about the stored
// hash (never about the password).
var errInvalidHash = errors.New("invalid password hash")

// argonParams are the parameters encoded in a PHC string.
type argonParams struct {
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// HashPassword hashes pw with argon2id and a fresh random salt and returns
// it as a PHC string:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//
// with salt and hash in unpadded standard base64. It refuses an empty
// password and one over 1024 bytes; it does not check the policy (see
// CheckPasswordPolicy).
func HashPassword(pw string) (string, error) {
	if pw == "" {
		return "", errors.New("sso: hash password: empty password")
	}
	if len(pw) > maxPasswordBytes {
		return "", fmt.Errorf("sso: hash password: longer than %d bytes", maxPasswordBytes)
	}
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("sso: hash password: salt: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// VerifyPassword reports whether pw matches hash, a PHC string made by
// HashPassword, comparing in constant time. needsRehash is true when pw
// matches but hash was made with other parameters than HashPassword uses
// now; the caller should then store a new hash. err is about hash only:
// malformed, another algorithm, or parameters out of bounds. A password
// over 1024 bytes never matches (HashPassword refuses to hash one).
func VerifyPassword(hash, pw string) (ok, needsRehash bool, err error) {
	p, err := parseArgonHash(hash)
	if err != nil {
		return false, false, fmt.Errorf("sso: verify password: %w", err)
	}
	if len(pw) > maxPasswordBytes {
		return false, false, nil
	}
	key := argon2.IDKey([]byte(pw), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
	if subtle.ConstantTimeCompare(key, p.key) != 1 {
		return false, false, nil
	}
	needsRehash = p.memory != argonMemory || p.time != argonTime || p.threads != argonThreads ||
		len(p.salt) != argonSaltLen || len(p.key) != argonKeyLen
	return true, needsRehash, nil
}

// DummyVerify verifies pw against a fixed hash of an unknown password and
// discards the result. Call it when a login names no known account (or one
// without a local password) so that the answer takes as long as a real
// verification and timing does not tell which logins exist.
func DummyVerify(pw string) {
	_, _, _ = VerifyPassword(dummyHash(), pw)
}

// parseArgonHash parses and bounds-checks a PHC argon2id string. It is
// strict (fixed field order, canonical numbers and base64) because there is
// exactly one writer, HashPassword, and leniency only helps a forged hash.
func parseArgonHash(s string) (argonParams, error) {
	var p argonParams
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" {
		return p, fmt.Errorf("%w: not a PHC string", errInvalidHash)
	}
	if f[1] != "argon2id" {
		return p, fmt.Errorf("%w: algorithm %.20q is not argon2id", errInvalidHash, f[1])
	}
	if f[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, fmt.Errorf("%w: unsupported version %.20q", errInvalidHash, f[2])
	}
	params := strings.Split(f[3], ",")
	if len(params) != 3 {
		return p, fmt.Errorf("%w: want m, t and p parameters", errInvalidHash)
	}
	m, err := hashParam(params[0], "m", 1, maxArgonMemory)
	if err != nil {
		return p, err
	}
	t, err := hashParam(params[1], "t", 1, maxArgonTime)
	if err != nil {
		return p, err
	}
	th, err := hashParam(params[2], "p", 1, maxArgonThreads)
	if err != nil {
		return p, err
	}
	if m < 8*th {
		// argon2 needs 8 KiB per lane; IDKey would silently raise it, and
		// then the stored parameters would not describe the hash.
		return p, fmt.Errorf("%w: m below 8 KiB per lane", errInvalidHash)
	}
	b64 := base64.RawStdEncoding.Strict()
	salt, err := b64.DecodeString(f[4])
	if err != nil || len(salt) < minArgonSaltLen || len(salt) > maxArgonSaltLen {
		return p, fmt.Errorf("%w: salt must be %d to %d bytes of unpadded base64", errInvalidHash, minArgonSaltLen, maxArgonSaltLen)
	}
	// The key length bounds matter for safety too: a zero-length key would
	// compare equal to any zero-length derivation.
	key, err := b64.DecodeString(f[5])
	if err != nil || len(key) < minArgonKeyLen || len(key) > maxArgonKeyLen {
		return p, fmt.Errorf("%w: hash must be %d to %d bytes of unpadded base64", errInvalidHash, minArgonKeyLen, maxArgonKeyLen)
	}
	p.memory, p.time, p.threads, p.salt, p.key = m, t, uint8(th), salt, key
	return p, nil
}

// hashParam parses "name=value" with value a canonical decimal in
// [lo, hi].
func hashParam(s, name string, lo, hi uint32) (uint32, error) {
	v, ok := strings.CutPrefix(s, name+"=")
	if !ok {
		return 0, fmt.Errorf("%w: want parameter %s", errInvalidHash, name)
	}
	// Canonical: no sign, no leading zeros, not empty; ParseUint alone
	// would take "+3" or "003".
	if v == "" || len(v) > 10 || (v[0] == '0' && len(v) > 1) || strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return 0, fmt.Errorf("%w: parameter %s is not a number", errInvalidHash, name)
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || uint32(n) < lo || uint32(n) > hi {
		return 0, fmt.Errorf("%w: parameter %s out of range %d..%d", errInvalidHash, name, lo, hi)
	}
	return uint32(n), nil
}

// CheckPasswordPolicy reports whether pw may be set as a local password:
// at least 12 characters, at most 1024 bytes, valid UTF-8, and not one
// character repeated. The error wraps ErrPasswordPolicy and its message
// can be shown as is.
func CheckPasswordPolicy(pw string) error {
	if !utf8.ValidString(pw) {
		return fmt.Errorf("%w: it must be valid UTF-8 text", ErrPasswordPolicy)
	}
	n := utf8.RuneCountInString(pw)
	if n < minPasswordChars {
		return fmt.Errorf("%w: it must be at least %d characters long (it has %d)", ErrPasswordPolicy, minPasswordChars, n)
	}
	if len(pw) > maxPasswordBytes {
		return fmt.Errorf("%w: it must be at most %d bytes long", ErrPasswordPolicy, maxPasswordBytes)
	}
	first, size := utf8.DecodeRuneInString(pw)
	if strings.Count(pw, string(first))*size == len(pw) {
		return fmt.Errorf("%w: it must not be one character repeated", ErrPasswordPolicy)
	}
	return nil
}
