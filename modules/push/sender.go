package push

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// status is what became of one send.
type status int

const (
	statusSent    status = iota
	statusInvalid        // the token is invalid: remove the device, drop the push
	statusDrop           // give the push up (drop says why)
	statusRetry          // try again later (after retryAfter, when set)
)

// result is the outcome of one send.
type result struct {
	status status
	// reason labels elph_push_failures_total: the APNs reason, the FCM
	// error code, timeout, network… (a bounded set).
	reason string
	// drop labels elph_push_dropped_total when status is statusDrop.
	drop       string
	retryAfter time.Duration
	// detail is for the log and the row's last_error; never a token.
	detail string
}

func sent() result { return result{status: statusSent} }

func retry(reason, detail string, after time.Duration) result {
	return result{status: statusRetry, reason: reason, detail: detail, retryAfter: after}
}

func drop(why, reason, detail string) result {
	return result{status: statusDrop, drop: why, reason: reason, detail: detail}
}

func invalid(reason, detail string) result {
	return result{status: statusInvalid, reason: reason, detail: detail}
}

// Reasons of failures that are not the services' own.
const (
	reasonTimeout   = "timeout"
	reasonNetwork   = "network"
	reasonCancelled = "cancelled" // Stop cancelled the send; the row is released
	reasonAuth      = "auth"      // no OAuth token for FCM
	reasonPayload   = "payload"
	reasonOther     = "other"
)

// transportFailure classifies an error of the HTTP client.
func transportFailure(ctx context.Context, err error) result {
	var ne net.Error
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled):
		return retry(reasonCancelled, "send cancelled", 0)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return retry(reasonTimeout, err.Error(), 0)
	default:
		return retry(reasonNetwork, err.Error(), 0)
	}
}

// directSender sends to APNs and FCM from this node; a nil client is a
// platform this node has no credentials for.
type directSender struct {
	apns *apnsClient
	fcm  *fcmClient
	met  *metrics
	log  *slog.Logger
	now  func() time.Time
}

// send delivers one item and observes the request's duration.
func (d *directSender) send(ctx context.Context, it item) result {
	switch it.Platform {
	case PlatformAPNs, PlatformAPNsVoIP:
		if d.apns == nil {
			return drop(dropUnsupported, "not_configured", "APNs is not configured on this node (push.apns.key_file)")
		}
		start := time.Now()
		r := d.apns.send(ctx, it)
		d.met.latency.WithLabelValues(it.Platform).Observe(time.Since(start).Seconds())
		if r.status == statusRetry && isProviderAuth(r.reason) {
			d.met.providerAuth.WithLabelValues(PlatformAPNs).Inc()
			d.log.Error("push: APNs refused the provider token: check push.apns.key_file, key_id and team_id",
				"reason", r.reason, "detail", r.detail)
		}
		return r
	case PlatformFCM:
		if d.fcm == nil {
			return drop(dropUnsupported, "not_configured", "FCM is not configured on this node (push.fcm.credentials_file)")
		}
		start := time.Now()
		r := d.fcm.send(ctx, it, d.now())
		d.met.latency.WithLabelValues(it.Platform).Observe(time.Since(start).Seconds())
		if r.status == statusRetry && (r.reason == reasonAuth || r.reason == "UNAUTHENTICATED" || r.reason == "PERMISSION_DENIED") {
			d.met.providerAuth.WithLabelValues(PlatformFCM).Inc()
			d.log.Error("push: FCM refused this node's credentials: check push.fcm.credentials_file",
				"reason", r.reason, "detail", r.detail)
		}
		return r
	}
	return drop(dropInvalid, reasonOther, "unknown platform")
}

func isProviderAuth(reason string) bool {
	return reason == "InvalidProviderToken" || reason == "ExpiredProviderToken" || reason == "MissingProviderToken"
}

// httpClient is a client for the push services: TLS verified with roots
// (nil: the system's), the request timeout, HTTP/2 when the server offers
// it (only HTTP/2 when h2Only, as APNs requires).
func httpClient(roots *x509.CertPool, timeout time.Duration, h2Only bool) *http.Client {
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     5 * time.Minute,
		MaxIdleConnsPerHost: 16,
		// A dead connection is noticed by a ping, not by the next push.
		HTTP2: &http.HTTP2Config{SendPingTimeout: 15 * time.Second, PingTimeout: 10 * time.Second},
	}
	if h2Only {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetHTTP2(true)
	}
	return &http.Client{Transport: &headerCapture{base: tr}, Timeout: timeout}
}

// headerCapture copies the Retry-After of a response into the holder the
// request's context carries: apns2 hides the response's headers.
type headerCapture struct{ base http.RoundTripper }

type capturedKey struct{}

type captured struct{ retryAfter string }

func (h *headerCapture) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := h.base.RoundTrip(r)
	if c, ok := r.Context().Value(capturedKey{}).(*captured); ok && resp != nil {
		c.retryAfter = resp.Header.Get("Retry-After")
	}
	return resp, err
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transport.
func (h *headerCapture) CloseIdleConnections() {
	if c, ok := h.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// parseRetryAfter reads seconds or an HTTP date, capped; 0 when absent.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}
