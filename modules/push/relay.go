package push

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/platform/httpx"
)

// Relay protocol bounds.
const (
	maxRelayItems = 100
	maxRelayBody  = 1 << 20
	maxRelayID    = 64
	// relayConcurrency bounds the sends of the relay endpoint, across
	// requests.
	relayConcurrency = 32
)

// Statuses of a relay result.
const (
	relaySent    = "sent"
	relayInvalid = "invalid_token" // remove the device
	relayRetry   = "retry"         // try again, after retry_after seconds when given
	relayDrop    = "drop"          // give up
)

// relayItem is one push of a relay request: a queue row of the sending
// node.
type relayItem struct {
	ID           string       `json:"id"`
	Platform     string       `json:"platform"`
	AppID        string       `json:"app_id"`
	Token        string       `json:"token"`
	Kind         string       `json:"kind"`
	Priority     int          `json:"priority"`
	CollapseID   string       `json:"collapse_id,omitempty"`
	ExpiresAt    time.Time    `json:"expires_at"`
	Notification notification `json:"notification"`
}

type relayRequest struct {
	Items []relayItem `json:"items"`
}

// relayResult is the outcome of one item.
type relayResult struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	// Reason is the APNs reason or FCM error code (or timeout, network…).
	Reason string `json:"reason,omitempty"`
	// RetryAfter is in seconds.
	RetryAfter int64 `json:"retry_after,omitempty"`
}

type relayResponse struct {
	Results []relayResult `json:"results"`
}

// relayClient hands this node's pushes to the relay node.
type relayClient struct {
	http  *http.Client
	url   string
	token string
}

func newRelayClient(c config.PushRelay, roots *x509.CertPool, timeout time.Duration) (*relayClient, error) {
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" || u.Scheme != "https" {
		return nil, fmt.Errorf("push.relay.url: %q is not an https URL", c.URL)
	}
	return &relayClient{
		http:  httpClient(roots, timeout, false),
		url:   u.JoinPath("v1", "relay").String(),
		token: strings.TrimSpace(c.Token),
	}, nil
}

// send posts items as one relay request and returns a result for each,
// in order. A failure of the request is a retry of every item.
func (c *relayClient) send(ctx context.Context, items []item) ([]result, string) {
	all := func(r result) []result {
		out := make([]result, len(items))
		for i := range out {
			out[i] = r
		}
		return out
	}
	req := relayRequest{Items: make([]relayItem, len(items))}
	for i, it := range items {
		req.Items[i] = relayItem{
			ID: strconv.FormatInt(it.ID, 10), Platform: it.Platform, AppID: it.AppID, Token: it.Token, Kind: it.Kind,
			Priority: it.Priority, CollapseID: it.CollapseID, ExpiresAt: it.ExpiresAt.UTC(), Notification: it.Note,
		}
	}
	body, err := marshal(req)
	if err != nil {
		return all(drop(dropInvalid, reasonOther, err.Error())), "encode"
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return all(retry(reasonOther, err.Error(), 0)), "error"
	}
	hr.Header.Set("Authorization", "Bearer "+c.token)
	hr.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(hr)
	if err != nil {
		return all(transportFailure(ctx, err)), "error"
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxRelayBody))
	after := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	switch {
	case resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden:
		return all(retry("unauthorized", fmt.Sprintf("the relay node refused push.relay.token (%d)", resp.StatusCode), after)), "unauthorized"
	case resp.StatusCode == http.StatusNotFound:
		return all(retry("not_found", "the relay node does not accept relaying (push.relay.accept_token unset, or a wrong push.relay.url)", after)), "not_found"
	case resp.StatusCode != http.StatusOK:
		return all(retry(fmt.Sprintf("http_%d", resp.StatusCode), fmt.Sprintf("the relay node answered %d", resp.StatusCode), after)), "error"
	}
	var rr relayResponse
	if err := json.Unmarshal(b, &rr); err != nil {
		return all(retry(reasonOther, "the relay node's answer is not JSON", after)), "error"
	}
	byID := make(map[string]relayResult, len(rr.Results))
	for _, r := range rr.Results {
		byID[r.ID] = r
	}
	out := make([]result, len(items))
	for i, it := range items {
		r, ok := byID[strconv.FormatInt(it.ID, 10)]
		if !ok {
			out[i] = retry(reasonOther, "the relay node answered no result for the item", 0)
			continue
		}
		reason := r.Reason
		if reason == "" || len(reason) > 40 || !validDataKeyish(reason) {
			reason = reasonOther
		}
		detail := "relay: " + clip(r.Reason)
		switch r.Status {
		case relaySent:
			out[i] = sent()
		case relayInvalid:
			out[i] = invalid(reason, detail)
		case relayDrop:
			why := dropRejected
			if reason == reasonPayload {
				why = dropPayload
			}
			out[i] = drop(why, reason, detail)
		default:
			ra := time.Duration(min(max(r.RetryAfter, 0), int64(maxRetryAfter/time.Second))) * time.Second
			out[i] = retry(reason, detail, ra)
		}
	}
	return out, "ok"
}

// validDataKeyish: a label value made of letters, digits, _ and -.
func validDataKeyish(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// decodeRelay reads and checks a relay request's body. Errors are
// *httpx.Error (the whole request is refused); items are checked one by
// one by the caller.
func decodeRelay(r *http.Request) (relayRequest, error) {
	var req relayRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return relayRequest{}, err
	}
	if len(req.Items) == 0 || len(req.Items) > maxRelayItems {
		return relayRequest{}, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "items must hold 1 to %d pushes", maxRelayItems)
	}
	seen := make(map[string]bool, len(req.Items))
	for _, it := range req.Items {
		if it.ID == "" || len(it.ID) > maxRelayID || !asciiPrintable(it.ID) {
			return relayRequest{}, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "an item id must be 1 to %d printable ASCII characters", maxRelayID)
		}
		if seen[it.ID] {
			return relayRequest{}, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "item id %q is repeated", it.ID)
		}
		seen[it.ID] = true
	}
	return req, nil
}

// toItem turns a relayed item into an item, or says why it is not one.
func (ri relayItem) toItem() (item, error) {
	it := item{
		Platform: ri.Platform, AppID: ri.AppID, Token: ri.Token, Kind: ri.Kind, Priority: ri.Priority,
		CollapseID: ri.CollapseID, ExpiresAt: ri.ExpiresAt, Note: ri.Notification,
	}
	return it, it.validate()
}

// authorizedRelay checks the bearer token against accept in constant
// time (of the digests, so the length leaks nothing either).
func authorizedRelay(header, accept string) bool {
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	a := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	b := sha256.Sum256([]byte(strings.TrimSpace(accept)))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// handleRelay is POST /v1/relay: another node's pushes, sent from here to
// APNs and FCM. It keeps nothing: the sending node's queue is the durable
// one, and every item gets a result telling it what to do with its row.
func (m *Module) handleRelay(w http.ResponseWriter, r *http.Request) {
	accept := m.cfg.Relay.AcceptToken
	if accept == "" {
		httpx.NotFound(w, r)
		return
	}
	if !authorizedRelay(r.Header.Get("Authorization"), accept) {
		m.met.relay.WithLabelValues("in", "unauthorized").Inc()
		httpx.Logger(r.Context()).WarnContext(r.Context(), "push: relay request with a wrong token refused")
		w.Header().Set("WWW-Authenticate", `Bearer`)
		httpx.WriteError(w, r, httpx.Errorf(http.StatusUnauthorized, httpx.CodeUnauthorized, "invalid relay token"))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxRelayBody)
	req, err := decodeRelay(r)
	if err != nil {
		m.met.relay.WithLabelValues("in", "bad_request").Inc()
		httpx.WriteError(w, r, err)
		return
	}
	// The whole request stays within this node's request timeout; items
	// not done by then are answered retry.
	ctx, cancel := context.WithTimeout(r.Context(), m.cfg.RequestTimeout)
	defer cancel()
	now := m.now()
	results := make([]relayResult, len(req.Items))
	var wg sync.WaitGroup
	for i, ri := range req.Items {
		results[i] = relayResult{ID: ri.ID, Status: relayRetry, Reason: reasonTimeout}
		it, err := ri.toItem()
		if err != nil {
			results[i] = relayResult{ID: ri.ID, Status: relayDrop, Reason: dropInvalid}
			m.met.dropped.WithLabelValues(dropInvalid).Inc()
			httpx.Logger(ctx).WarnContext(ctx, "push: invalid relayed item dropped", "item", ri.ID, "err", err)
			continue
		}
		if !it.ExpiresAt.After(now) {
			results[i] = relayResult{ID: ri.ID, Status: relayDrop, Reason: dropExpired}
			m.met.dropped.WithLabelValues(dropExpired).Inc()
			continue
		}
		select {
		case m.relaySem <- struct{}{}:
		case <-ctx.Done():
			continue // answered retry
		}
		wg.Go(func() {
			defer func() { <-m.relaySem }()
			res := m.direct.send(ctx, it)
			m.count(it, res)
			results[i] = toRelayResult(ri.ID, res)
		})
	}
	wg.Wait()
	m.met.relay.WithLabelValues("in", "ok").Inc()
	httpx.WriteJSON(w, http.StatusOK, relayResponse{Results: results})
}

func toRelayResult(id string, r result) relayResult {
	out := relayResult{ID: id, Reason: r.reason}
	switch r.status {
	case statusSent:
		out.Status = relaySent
	case statusInvalid:
		out.Status = relayInvalid
	case statusDrop:
		out.Status = relayDrop
		if r.drop == dropPayload {
			out.Reason = reasonPayload
		}
	default:
		out.Status = relayRetry
		out.RetryAfter = int64((r.retryAfter + time.Second - 1) / time.Second)
	}
	return out
}
