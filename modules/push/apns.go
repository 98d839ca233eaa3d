package push

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/token"

	"github.com/elph-server/elph/config"
)

// apnsClient sends to APNs over HTTP/2 with a provider token signed by
// the team's .p8 key (apns2 refreshes it before its hour is up).
type apnsClient struct {
	client *apns2.Client
}

func newAPNs(c config.APNs, roots *x509.CertPool, timeout time.Duration) (*apnsClient, error) {
	key, err := token.AuthKeyFromFile(c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("push.apns.key_file: %s is not a usable APNs .p8 key: %w", c.KeyFile, err)
	}
	if len(c.KeyID) != 10 {
		return nil, fmt.Errorf("push.apns.key_id: %q is not a 10-character APNs key id", c.KeyID)
	}
	if len(c.TeamID) != 10 {
		return nil, fmt.Errorf("push.apns.team_id: %q is not a 10-character Apple team id", c.TeamID)
	}
	tok := &token.Token{AuthKey: key, KeyID: c.KeyID, TeamID: c.TeamID}
	if _, err := tok.Generate(); err != nil {
		return nil, fmt.Errorf("push.apns.key_file: signing with %s: %w", c.KeyFile, err)
	}
	client := apns2.NewTokenClient(tok)
	client.Host = strings.TrimRight(c.URL, "/")
	client.HTTPClient = httpClient(roots, timeout, true)
	return &apnsClient{client: client}, nil
}

// apnsReasons are the reasons APNs documents; others are labelled
// "other" so the metric's labels stay bounded.
var apnsReasons = map[string]bool{
	apns2.ReasonBadCollapseID: true, apns2.ReasonBadDeviceToken: true, apns2.ReasonBadExpirationDate: true,
	apns2.ReasonBadMessageID: true, apns2.ReasonBadPriority: true, apns2.ReasonBadTopic: true,
	apns2.ReasonDeviceTokenNotForTopic: true, apns2.ReasonDuplicateHeaders: true, apns2.ReasonIdleTimeout: true,
	apns2.ReasonInvalidPushType: true, apns2.ReasonMissingDeviceToken: true, apns2.ReasonMissingTopic: true,
	apns2.ReasonPayloadEmpty: true, apns2.ReasonTopicDisallowed: true, apns2.ReasonBadCertificate: true,
	apns2.ReasonBadCertificateEnvironment: true, apns2.ReasonExpiredProviderToken: true, apns2.ReasonForbidden: true,
	apns2.ReasonInvalidProviderToken: true, apns2.ReasonMissingProviderToken: true, apns2.ReasonBadPath: true,
	apns2.ReasonMethodNotAllowed: true, apns2.ReasonExpiredToken: true, apns2.ReasonUnregistered: true,
	apns2.ReasonPayloadTooLarge: true, apns2.ReasonTooManyProviderTokenUpdates: true, apns2.ReasonTooManyRequests: true,
	apns2.ReasonInternalServerError: true, apns2.ReasonServiceUnavailable: true, apns2.ReasonShutdown: true,
}

func (c *apnsClient) send(ctx context.Context, it item) result {
	msg, err := renderAPNs(it)
	if errors.Is(err, errTooLarge) {
		return drop(dropPayload, reasonPayload, "the payload exceeds the APNs limit")
	}
	if err != nil {
		return drop(dropInvalid, reasonOther, err.Error())
	}
	n := &apns2.Notification{
		DeviceToken: it.Token, Topic: msg.Topic, Expiration: it.ExpiresAt, Priority: msg.Priority,
		PushType: msg.PushType, Payload: msg.Payload,
	}
	if it.Kind != KindMessage {
		// Chat pushes are grouped by thread-id, not collapsed: each
		// message stays visible.
		n.CollapseID = it.CollapseID
	}
	hdr := &captured{}
	resp, err := c.client.PushWithContext(context.WithValue(ctx, capturedKey{}, hdr), n)
	if err != nil {
		return transportFailure(ctx, err)
	}
	return classifyAPNs(resp, parseRetryAfter(hdr.retryAfter, time.Now()))
}

// classifyAPNs maps an APNs answer to what the queue does with the push.
func classifyAPNs(resp *apns2.Response, after time.Duration) result {
	if resp.StatusCode == http.StatusOK {
		return sent()
	}
	reason := resp.Reason
	label := reason
	switch {
	case label == "":
		label = fmt.Sprintf("http_%d", resp.StatusCode)
	case !apnsReasons[label]:
		label = reasonOther
	}
	detail := fmt.Sprintf("APNs %d %s", resp.StatusCode, clip(reason))
	switch {
	case resp.StatusCode == http.StatusGone,
		reason == apns2.ReasonUnregistered, reason == apns2.ReasonExpiredToken,
		reason == apns2.ReasonBadDeviceToken, reason == apns2.ReasonDeviceTokenNotForTopic:
		return invalid(label, detail)
	case reason == apns2.ReasonPayloadTooLarge, resp.StatusCode == http.StatusRequestEntityTooLarge:
		return drop(dropPayload, label, detail)
	case resp.StatusCode == http.StatusBadRequest:
		return drop(dropRejected, label, detail)
	default:
		// 403 (provider token: misconfiguration, counted and logged by
		// the caller), 429, 500, 503 and anything unexpected.
		return retry(label, detail, after)
	}
}
