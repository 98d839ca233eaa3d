package store

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// Paging in Elph is keyset paging: a page is the rows after the last key
// the client saw ("WHERE (sort, id) > (?, ?) ORDER BY sort, id LIMIT ?"),
// which stays right while rows are added and costs the same on page 1 and
// page 1000, unlike OFFSET. Both dialects share that SQL; what they share
// too is handled here: bounding the page size and carrying the position to
// the client as an opaque cursor it must not parse.

// MaxCursorLen bounds a cursor a client sends back.
const MaxCursorLen = 512

// ErrBadCursor is returned for a cursor this server did not make.
var ErrBadCursor = errors.New("invalid page cursor")

// PageLimit bounds a requested page size: n <= 0 gives def, and n above
// max gives max.
func PageLimit(n, def, max int) int {
	switch {
	case n <= 0:
		return def
	case n > max:
		return max
	}
	return n
}

// EncodeCursor turns a page position (a small struct of the last row's
// sort key) into an opaque, URL-safe string.
func EncodeCursor(pos any) (string, error) {
	b, err := json.Marshal(pos)
	if err != nil {
		return "", fmt.Errorf("encode cursor: %w", err)
	}
	s := base64.RawURLEncoding.EncodeToString(b)
	if len(s) > MaxCursorLen {
		return "", fmt.Errorf("encode cursor: %d bytes, more than %d", len(s), MaxCursorLen)
	}
	return s, nil
}

// DecodeCursor reads a cursor made by EncodeCursor into pos. Anything
// else (too long, not base64, not the expected shape) is ErrBadCursor.
func DecodeCursor(s string, pos any) error {
	if len(s) > MaxCursorLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrBadCursor, MaxCursorLen)
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return fmt.Errorf("%w: not base64url", ErrBadCursor)
	}
	if err := json.Unmarshal(b, pos); err != nil {
		return fmt.Errorf("%w: %v", ErrBadCursor, err)
	}
	return nil
}
