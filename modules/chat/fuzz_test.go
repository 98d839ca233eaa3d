package chat

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/elph-server/elph/platform/httpx"
)

// FuzzSendRequest feeds arbitrary bodies to the send decoder: it must
// never panic, and whatever it accepts must satisfy every bound the
// service and the database rely on.
func FuzzSendRequest(f *testing.F) {
	for _, s := range []string{
		`{"client_id":"a1","body":"привет"}`,
		`{"client_id":"a1","body":"x","reply_to_id":5,"mentions":[1,2,2],"file_ids":["f1","f2"]}`,
		`{"client_id":"a1","forward_from_id":9}`,
		`{"client_id":"a1","body":"\u0000"}`,
		`{"client_id":"a1","body":"\ud800"}`,
		`{"client_id":"` + strings.Repeat("a", 65) + `","body":"x"}`,
		`{"client_id":"a1","body":"x","mentions":[-1]}`,
		`{"client_id":"a1","body":"x"} {}`,
		`{"client_id":"a1","body":"x","extra":1}`,
		`[]`, `null`, `{`, ``, "\xff",
	} {
		f.Add([]byte(s))
	}
	const maxBody = 64
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", "/v1/conversations/1/messages", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		req, err := decodeSend(r, maxBody)
		if err != nil {
			var ce *Error
			var he *httpx.Error
			if !errors.As(err, &ce) && !errors.As(err, &he) {
				t.Fatalf("error %v is neither a client error nor an HTTP error", err)
			}
			if err := httpError(err); err == nil || !errors.As(err, &he) || he.Status < 400 || he.Status > 499 {
				t.Fatalf("error %v does not answer 4xx", err)
			}
			return
		}
		switch {
		case !validToken(req.ClientID, MaxClientIDBytes):
			t.Fatalf("accepted client_id %q", req.ClientID)
		case len(req.Body) > maxBody || !utf8.ValidString(req.Body) || strings.IndexByte(req.Body, 0) >= 0:
			t.Fatalf("accepted body %q", req.Body)
		case req.ReplyToID < 0 || req.ForwardFromID < 0:
			t.Fatalf("accepted ids %d %d", req.ReplyToID, req.ForwardFromID)
		case req.ForwardFromID > 0 && (req.Body != "" || len(req.FileIDs) > 0):
			t.Fatal("accepted a forward with content")
		case req.ForwardFromID == 0 && strings.TrimSpace(req.Body) == "" && len(req.FileIDs) == 0:
			t.Fatal("accepted an empty message")
		case len(req.Mentions) > MaxMentions || len(req.FileIDs) > MaxFiles:
			t.Fatal("accepted too many mentions or files")
		case !slices.IsSorted(req.Mentions) || len(slices.Compact(slices.Clone(req.Mentions))) != len(req.Mentions):
			t.Fatalf("mentions not normalised: %v", req.Mentions)
		}
		for _, id := range req.Mentions {
			if id <= 0 {
				t.Fatalf("accepted mention %d", id)
			}
		}
		seen := map[string]bool{}
		for _, id := range req.FileIDs {
			if !validToken(id, MaxFileIDBytes) || seen[id] {
				t.Fatalf("accepted file ids %q", req.FileIDs)
			}
			seen[id] = true
		}
	})
}
