package history

import "github.com/prometheus/client_golang/prometheus"

// Results of a call event, the label values of elph_history_events_total.
const (
	resultApplied   = "applied"   // the record changed
	resultDuplicate = "duplicate" // the record already had it
	resultInvalid   = "invalid"   // the payload was unusable; skipped
	resultIgnored   = "ignored"   // a call topic this version does not know
	resultError     = "error"     // the database failed
)

// topicOther labels events of unknown call topics, so producers cannot
// grow the label set.
const topicOther = "other"

type metrics struct {
	events   *prometheus.CounterVec
	records  prometheus.Gauge
	missed   prometheus.Counter
	purged   prometheus.Counter
	busFails prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_history_events_total",
			Help: "Call events consumed, by topic and result (applied, duplicate, invalid, ignored, error).",
		}, []string{"topic", "result"}),
		records: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "elph_history_records", Help: "Call records kept (users' deleted ones included).",
		}),
		missed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "elph_history_missed_calls_total", Help: "Records that became missed calls.",
		}),
		purged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "elph_history_records_purged_total", Help: "Records deleted by the retention policy.",
		}),
		busFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "elph_history_bus_publish_failures_total", Help: "History events the bus refused after commit (the stream has them; bus consumers miss them).",
		}),
	}
	// The known series exist from the start, so rates over them are
	// defined before the first event.
	for _, t := range []string{TopicCallStarted, TopicCallRinging, TopicCallAnswered, TopicCallEnded} {
		for _, r := range []string{resultApplied, resultDuplicate, resultInvalid, resultError} {
			m.events.WithLabelValues(t, r)
		}
	}
	m.events.WithLabelValues(topicOther, resultIgnored)
	if reg != nil {
		for _, c := range []prometheus.Collector{m.events, m.records, m.missed, m.purged, m.busFails} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// event counts one call event. topic is one of the four known ones or
// topicOther.
func (m *metrics) event(topic, result string) { m.events.WithLabelValues(topic, result).Inc() }
