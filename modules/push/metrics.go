package push

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Results of a trigger event, the label values of elph_push_events_total.
const (
	resultQueued    = "queued"    // pushes were queued
	resultNone      = "none"      // nobody to push to (live, DND, muted, no device…)
	resultDuplicate = "duplicate" // a redelivered call event
	resultInvalid   = "invalid"   // the payload was unusable; skipped
	resultError     = "error"     // the database failed: returned to the bus
)

// Reasons a recipient is skipped, elph_push_skipped_total.
const (
	skipLive  = "live"
	skipDND   = "dnd"
	skipMuted = "muted"
	skipStale = "stale" // a call event older than the call TTL
)

// Reasons a push is dropped, elph_push_dropped_total.
const (
	dropExpired     = "expired"     // not sent before its expiry
	dropAttempts    = "attempts"    // max_attempts reached
	dropPayload     = "payload"     // too large even with the text cut
	dropRejected    = "rejected"    // the service refused it for good (400)
	dropInvalid     = "invalid"     // a relayed item that does not validate
	dropUnsupported = "unsupported" // no credentials for its platform here
)

// platformRelay labels what the relay client sends.
const platformRelay = "relay"

type metrics struct {
	events       *prometheus.CounterVec
	enqueued     *prometheus.CounterVec
	skipped      *prometheus.CounterVec
	sent         *prometheus.CounterVec
	failures     *prometheus.CounterVec
	invalid      *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	depth        prometheus.Gauge
	latency      *prometheus.HistogramVec
	relay        *prometheus.CounterVec
	devices      *prometheus.CounterVec
	queueErrors  prometheus.Counter
	providerAuth *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_push_events_total",
			Help: "Trigger events consumed, by topic and result (queued, none, duplicate, invalid, error).",
		}, []string{"topic", "result"}),
		enqueued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_push_enqueued_total", Help: "Pushes queued (one per device), by kind.",
		}, []string{"kind"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_push_skipped_total", Help: "Recipients not pushed to, by reason (live, dnd, muted, stale).",
		}, []string{"reason"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_push_sent_total", Help: "Pushes accepted by APNs or FCM (or the relay node), by platform and kind.",
		}, []string{"platform", "kind"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_push_failures_total", Help: "Failed send attempts, by platform and reason (the APNs reason, the FCM error code, timeout, network…).",
		}, []string{"platform", "reason"}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_push_invalid_tokens_total", Help: "Devices removed because APNs or FCM called their token invalid, by platform.",
		}, []string{"platform"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_push_dropped_total", Help: "Pushes given up, by reason (expired, attempts, payload, rejected, invalid, unsupported).",
		}, []string{"reason"}),
		depth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "elph_push_queue_depth", Help: "Rows in the push queue (all nodes), refreshed on every poll.",
		}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "elph_push_send_seconds", Help: "Duration of one request to APNs, FCM or the relay node, by platform.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"platform"}),
		relay: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_push_relay_requests_total",
			Help: "Relay requests, by side (out: this node to its relay; in: the relay endpoint) and result.",
		}, []string{"side", "result"}),
		devices: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_push_device_changes_total", Help: "Device registrations and removals, by change (created, updated, deleted, revoked, replaced).",
		}, []string{"change"}),
		queueErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "elph_push_queue_errors_total", Help: "Database errors of the queue (enqueue, claim, bookkeeping).",
		}),
		providerAuth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_push_provider_auth_failures_total",
			Help: "APNs or FCM refused this node's credentials (misconfiguration), by platform.",
		}, []string{"platform"}),
	}
	for _, t := range []string{TopicMessageCreated, TopicCallStarted, TopicCallAnswered, TopicCallEnded, TopicCallMissed} {
		for _, r := range []string{resultQueued, resultNone, resultInvalid, resultError} {
			m.events.WithLabelValues(t, r)
		}
	}
	for _, r := range []string{dropExpired, dropAttempts, dropPayload, dropRejected} {
		m.dropped.WithLabelValues(r)
	}
	return m
}

// register registers the metrics on reg (nil: nowhere).
func (m *metrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.events, m.enqueued, m.skipped, m.sent, m.failures, m.invalid,
		m.dropped, m.depth, m.latency, m.relay, m.devices, m.queueErrors, m.providerAuth} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *metrics) event(topic, result string) { m.events.WithLabelValues(topic, result).Inc() }
