package chat

import (
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/elph-server/elph/platform/httpx"
)

// Limits of one message.
const (
	MaxClientIDBytes = 64
	MaxMentions      = 50
	MaxFiles         = 10
	MaxFileIDBytes   = 64
)

// SendRequest is the body of POST /v1/conversations/{id}/messages.
type SendRequest struct {
	// ClientID is the client's id of this send, unique per sender: a
	// retried send with the same ClientID is stored once.
	ClientID      string   `json:"client_id"`
	Body          string   `json:"body"`
	ReplyToID     int64    `json:"reply_to_id,omitempty"`
	ForwardFromID int64    `json:"forward_from_id,omitempty"`
	Mentions      []int64  `json:"mentions,omitempty"`
	FileIDs       []string `json:"file_ids,omitempty"`
}

// EditRequest is the body of PATCH /v1/conversations/{id}/messages/{mid}.
// Mentions, when present, replace the message's mentions.
type EditRequest struct {
	Body     string   `json:"body"`
	Mentions *[]int64 `json:"mentions,omitempty"`
}

// decodeSend reads and checks a send request.
func decodeSend(r *http.Request, maxBody int) (SendRequest, error) {
	var req SendRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return SendRequest{}, err
	}
	if err := req.check(maxBody); err != nil {
		return SendRequest{}, err
	}
	return req, nil
}

// check validates a send request on its own (what needs the database is
// checked by Send) and normalises its lists: mentions and file ids
// deduplicated, mentions sorted.
func (r *SendRequest) check(maxBody int) error {
	if err := checkClientID(r.ClientID); err != nil {
		return err
	}
	if err := checkBody(r.Body, maxBody); err != nil {
		return err
	}
	switch {
	case r.ReplyToID < 0:
		return invalidf("reply_to_id must be a message id")
	case r.ForwardFromID < 0:
		return invalidf("forward_from_id must be a message id")
	case r.ForwardFromID > 0 && (r.Body != "" || len(r.FileIDs) > 0):
		return invalidf("a forward copies the forwarded message: body and file_ids must be empty")
	case r.ForwardFromID == 0 && strings.TrimSpace(r.Body) == "" && len(r.FileIDs) == 0:
		return invalidf("a message needs a body, files or a message to forward")
	}
	m, err := checkMentions(r.Mentions)
	if err != nil {
		return err
	}
	r.Mentions = m
	if len(r.FileIDs) > MaxFiles {
		return invalidf("at most %d files per message", MaxFiles)
	}
	seen := make(map[string]bool, len(r.FileIDs))
	for _, id := range r.FileIDs {
		if !validToken(id, MaxFileIDBytes) {
			return invalidf("file ids are 1 to %d characters of A-Z a-z 0-9 . _ : -", MaxFileIDBytes)
		}
		if seen[id] {
			return invalidf("file %s is attached twice", id)
		}
		seen[id] = true
	}
	return nil
}

func (r *EditRequest) check(maxBody int) error {
	if err := checkBody(r.Body, maxBody); err != nil {
		return err
	}
	if r.Mentions != nil {
		m, err := checkMentions(*r.Mentions)
		if err != nil {
			return err
		}
		r.Mentions = &m
	}
	return nil
}

func checkClientID(id string) error {
	if !validToken(id, MaxClientIDBytes) {
		return invalidf("client_id must be 1 to %d characters of A-Z a-z 0-9 . _ : -", MaxClientIDBytes)
	}
	return nil
}

// checkBody checks a message text: at most maxBody bytes of UTF-8 without
// NUL (which MySQL's text columns and many clients mishandle).
func checkBody(body string, maxBody int) error {
	switch {
	case len(body) > maxBody:
		return clientError(ErrTooLarge, "message_too_large", "the message is longer than %d bytes", maxBody)
	case !utf8.ValidString(body):
		return invalidf("body is not valid UTF-8")
	case strings.IndexByte(body, 0) >= 0:
		return invalidf("body contains a NUL character")
	}
	return nil
}

// checkMentions returns the mentioned ids sorted and deduplicated.
func checkMentions(ids []int64) ([]int64, error) {
	if len(ids) > MaxMentions {
		return nil, invalidf("at most %d mentions per message", MaxMentions)
	}
	out := slices.Clone(ids)
	for _, id := range out {
		if id <= 0 {
			return nil, invalidf("mention %d is not a user id", id)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// validToken reports whether s is 1..max bytes of [A-Za-z0-9._:-].
func validToken(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}
