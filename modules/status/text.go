package status

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ErrInvalid is a request or frame the module refuses; its message says
// why and is safe to show the client.
var ErrInvalid = errors.New("status: invalid")

func isInvalid(err error) bool { return errors.Is(err, ErrInvalid) }

// maxTextTTL bounds how far ahead a status text may expire.
const maxTextTTL = 366 * 24 * time.Hour

// checkText validates a personal status text: trimmed, UTF-8, at most
// MaxTextRunes characters, no control characters; an expiry must be in
// the future and within a year.
func checkText(text string, expires *time.Time, now time.Time) (string, error) {
	text = strings.TrimSpace(text)
	switch {
	case !utf8.ValidString(text):
		return "", fmt.Errorf("%w: text is not UTF-8", ErrInvalid)
	case utf8.RuneCountInString(text) > MaxTextRunes:
		return "", fmt.Errorf("%w: text is longer than %d characters", ErrInvalid, MaxTextRunes)
	case strings.ContainsFunc(text, unicode.IsControl):
		return "", fmt.Errorf("%w: text contains control characters", ErrInvalid)
	}
	if expires != nil && text != "" {
		switch {
		case !expires.After(now):
			return "", fmt.Errorf("%w: expires_at is not in the future", ErrInvalid)
		case expires.Sub(now) > maxTextTTL:
			return "", fmt.Errorf("%w: expires_at is more than a year ahead", ErrInvalid)
		}
	}
	return text, nil
}

// decodeStrict decodes a frame's data object into v, refusing unknown
// fields, trailing data and a missing object.
func decodeStrict(data json.RawMessage, v any) error {
	if len(data) == 0 {
		return fmt.Errorf("%w: the frame has no data", ErrInvalid)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: data: %v", ErrInvalid, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: data has trailing content", ErrInvalid)
	}
	return nil
}

func sqlNull() sql.NullTime { return sql.NullTime{} }

func sqlTime(t time.Time) sql.NullTime {
	return sql.NullTime{Time: t.UTC().Truncate(time.Microsecond), Valid: true}
}

func sameTime(a, b sql.NullTime) bool {
	return a.Valid == b.Valid && (!a.Valid || a.Time.Equal(b.Time))
}
