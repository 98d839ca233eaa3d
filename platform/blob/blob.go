// Package blob stores files (chat attachments, avatars, exports) behind one
// interface with two backends: a directory on local disk, the default for a
// single node, and an S3 bucket (minio-go), for several nodes.
//
// Keys are chosen by the application, never by users: relative slash paths
// such as "files/2024/ab/0f3c.bin" (see ValidKey). Both backends enforce
// the same key rules, so an installation can move from disk to S3 without
// renaming anything.
package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Errors returned (wrapped) by the Store methods; test them with errors.Is.
var (
	// ErrNotFound: no object has the key.
	ErrNotFound = errors.New("blob: not found")
	// ErrTooLarge: the body is longer than Put's maxSize. Nothing was
	// stored and an object already under the key is left as it was.
	ErrTooLarge = errors.New("blob: too large")
	// ErrBadKey: the key breaks the rules of ValidKey.
	ErrBadKey = errors.New("blob: bad key")
	// ErrBadContentType: the content type given to Put is not a media type
	// (RFC 2045) or is longer than MaxContentTypeLen.
	ErrBadContentType = errors.New("blob: bad content type")
)

const (
	// MaxKeyLen is the longest key in bytes. S3 allows 1024; half of that
	// leaves room for a prefix should the bucket ever be shared.
	MaxKeyLen = 512
	// MaxContentTypeLen bounds the content type Put accepts; it is stored
	// in an xattr or an HTTP header, and real media types are far shorter.
	MaxContentTypeLen = 255
	// sniffLen is how much http.DetectContentType looks at.
	sniffLen = 512
)

// Info describes a stored object.
type Info struct {
	Key  string
	Size int64
	// SHA256 is the hex SHA-256 of the content, computed by Put. It is ""
	// for an object some other program stored.
	SHA256      string
	ContentType string
	ModTime     time.Time
}

// Object is an open object. It is seekable so that http.ServeContent can
// answer Range requests from it. Close it.
type Object interface {
	io.ReadSeekCloser
	Info() Info
}

// Store is the file storage the modules use. *Local and *S3 implement it.
type Store interface {
	// Put streams r to key, replacing any object there. The body is never
	// held in memory whole: Local writes it to disk as it arrives, S3 holds
	// at most one multipart part. Size and SHA-256 are computed on the way.
	// A body longer than maxSize bytes fails with ErrTooLarge. When
	// contentType is "" it is sniffed from the first 512 bytes
	// (http.DetectContentType). Readers see either the old object or the
	// whole new one, never a part; a failed Put leaves nothing behind.
	Put(ctx context.Context, key string, r io.Reader, maxSize int64, contentType string) (Info, error)
	// Open opens the object for reading; ErrNotFound when there is none.
	// The Object may read lazily: use it while ctx is live.
	Open(ctx context.Context, key string) (Object, error)
	// Stat describes the object; ErrNotFound when there is none.
	Stat(ctx context.Context, key string) (Info, error)
	// Delete removes the object. Deleting a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// PresignGet returns a download URL valid for ttl when the backend can
	// serve downloads itself (S3), or ok=false when it cannot (Local) and
	// the caller streams the object instead. A non-empty filename sets the
	// download's Content-Disposition (see ContentDisposition).
	PresignGet(ctx context.Context, key string, ttl time.Duration, filename string) (url string, ok bool, err error)
	// Ping reports whether the store is usable, for /readyz.
	Ping(ctx context.Context) error
}

// ValidKey reports, as an error wrapping ErrBadKey, why key is not
// acceptable. A key is a relative slash-separated path of non-empty
// segments made of [a-z0-9._-], without "." or ".." segments (nor ".."
// anywhere), at most MaxKeyLen bytes. The rules keep keys portable: the
// same name is a safe file name on any file system and an S3 key that
// needs no escaping, and it cannot climb out of the store's directory.
func ValidKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrBadKey)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: %d bytes, more than %d", ErrBadKey, len(key), MaxKeyLen)
	case strings.Contains(key, ".."):
		return fmt.Errorf("%w %q: contains \"..\"", ErrBadKey, key)
	}
	start := 0
	for i := 0; i <= len(key); i++ {
		if i < len(key) && key[i] != '/' {
			if !keyByte(key[i]) {
				return fmt.Errorf("%w %q: byte %q at %d is not one of [a-z0-9._-]", ErrBadKey, key, key[i], i)
			}
			continue
		}
		switch key[start:i] {
		case "":
			return fmt.Errorf("%w %q: empty segment at %d (leading, trailing or double slash)", ErrBadKey, key, start)
		case ".":
			return fmt.Errorf("%w %q: \".\" segment", ErrBadKey, key)
		}
		start = i + 1
	}
	return nil
}

func keyByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}

// ContentDisposition returns the Content-Disposition value that makes a
// browser save the download as filename (RFC 6266). A name that is plain
// ASCII goes into filename="..." alone; any other name also goes, exactly,
// into filename* (RFC 8187: UTF-8, percent-encoded), with an ASCII
// stand-in in filename for the clients that ignore filename*. Control characters and path
// separators become "_" so the name can neither break the header nor point
// into a directory. An empty name gives "attachment".
func ContentDisposition(filename string) string {
	name := strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '/' || r == '\\' || r == utf8.RuneError {
			return '_'
		}
		return r
	}, strings.ToValidUTF8(filename, "_")))
	if name == "" {
		return "attachment"
	}
	fallback := strings.Map(func(r rune) rune {
		// '"' would end the quoted string and some browsers
		// percent-decode filename= (RFC 6266 appendix D), so both go to
		// filename* only.
		if r > unicode.MaxASCII || r == '"' || r == '%' {
			return '_'
		}
		return r
	}, name)
	if fallback == name {
		return `attachment; filename="` + name + `"`
	}
	return `attachment; filename="` + fallback + `"; filename*=UTF-8''` + encodeExtValue(name)
}

// encodeExtValue percent-encodes s as the value-chars of an RFC 8187
// ext-value: attr-char stays, every other byte becomes %XX.
func encodeExtValue(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xf])
	}
	return b.String()
}

// checkPut validates Put's arguments before any byte is read and returns
// the content type in canonical form ("" when it is to be sniffed).
func checkPut(key string, maxSize int64, contentType string) (string, error) {
	if err := ValidKey(key); err != nil {
		return "", err
	}
	if maxSize < 0 {
		return "", fmt.Errorf("blob: put %q: negative maxSize %d", key, maxSize)
	}
	if contentType == "" {
		return "", nil
	}
	if len(contentType) > MaxContentTypeLen {
		return "", fmt.Errorf("%w: %d bytes, more than %d", ErrBadContentType, len(contentType), MaxContentTypeLen)
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", fmt.Errorf("%w %q: %v", ErrBadContentType, contentType, err)
	}
	// FormatMediaType lower-cases the type and parameter names and quotes
	// what needs quoting; it returns "" for anything it cannot write back
	// safely.
	ct := mime.FormatMediaType(mt, params)
	if ct == "" || len(ct) > MaxContentTypeLen {
		return "", fmt.Errorf("%w %q", ErrBadContentType, contentType)
	}
	return ct, nil
}

// sniff returns contentType, or the type detected from the head of the
// body when contentType is "".
func sniff(contentType string, head []byte) string {
	if contentType != "" {
		return contentType
	}
	return http.DetectContentType(head[:min(len(head), sniffLen)])
}

// body wraps Put's reader: it stops at ctx's end, refuses to read more
// than the size limit, and counts and hashes what passes. Its first error
// sticks, so whatever the backend does with it, Put can report the cause.
type body struct {
	ctx  context.Context
	r    io.Reader
	left int64 // bytes still allowed
	n    int64
	h    hash.Hash
	err  error
}

func newBody(ctx context.Context, r io.Reader, maxSize int64) *body {
	return &body{ctx: ctx, r: r, left: maxSize, h: sha256.New()}
}

func (b *body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if err := b.ctx.Err(); err != nil {
		b.err = err
		return 0, err
	}
	// Ask for one byte more than allowed so an over-long body is noticed
	// without reading further into it.
	if int64(len(p)) > b.left {
		p = p[:b.left+1]
	}
	n, err := b.r.Read(p)
	if int64(n) > b.left {
		b.err = ErrTooLarge
		return 0, b.err
	}
	b.left -= int64(n)
	b.n += int64(n)
	b.h.Write(p[:n])
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

func (b *body) sum() string { return hex.EncodeToString(b.h.Sum(nil)) }
