package bus

import (
	"fmt"
	"iter"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics holds the bus's Prometheus collectors. They always exist, even
// with no Registerer, so the hot path never checks whether metrics are on.
type metrics struct {
	published     *prometheus.CounterVec // topic
	delivered     *prometheus.CounterVec // subscriber
	dropped       *prometheus.CounterVec // subscriber
	backpressure  *prometheus.CounterVec // subscriber
	handlerErrors *prometheus.CounterVec // subscriber
	queueDepth    *depthCollector        // subscriber
	publishWait   prometheus.Histogram
}

// newMetrics builds the collectors and registers them on reg when it is not
// nil. subs lists the live subscriptions for the queue depth gauge.
//
// Memory and NATS export the same names, so one dashboard serves both. One
// bus per registry: a second one on the same registry fails with a
// registration error (never a panic) and leaves the first one's metrics
// registered.
func newMetrics(reg prometheus.Registerer, subs iter.Seq[*dispatcher]) (*metrics, error) {
	counter := func(name, help, label string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "elph", Subsystem: "bus", Name: name, Help: help,
		}, []string{label})
	}
	m := &metrics{
		// Topics are constants in module code, not user input, so the
		// topic label stays a small, fixed set.
		published:     counter("published_total", "Events accepted by Publish.", "topic"),
		delivered:     counter("delivered_total", "Events handed to a subscriber's handler.", "subscriber"),
		dropped:       counter("dropped_total", "Events a subscriber missed because its queue was full (DropNewest) or, on NATS, because the client's pending buffer overflowed (slow consumer).", "subscriber"),
		backpressure:  counter("backpressure_total", "Events a Block subscriber missed because its queue stayed full for the publish timeout.", "subscriber"),
		handlerErrors: counter("handler_errors_total", "Handler calls that returned an error or panicked.", "subscriber"),
		queueDepth: &depthCollector{
			desc: prometheus.NewDesc("elph_bus_queue_depth",
				"Events waiting in a subscriber's queues.", []string{"subscriber"}, nil),
			subs: subs,
		},
		publishWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "elph", Subsystem: "bus", Name: "publish_wait_seconds",
			Help: "Time spent waiting for room in a full Block subscriber's queue (only waits that happened): in Publish on the memory bus, in delivery on NATS.",
			// From "a worker was briefly busy" to the default 5s timeout.
			Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 2.5, 5, 10},
		}),
	}
	if reg == nil {
		return m, nil
	}
	var registered []prometheus.Collector
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			// Undo the partial registration so the caller can retry or
			// build another bus on the same registry.
			for _, r := range registered {
				reg.Unregister(r)
			}
			return nil, fmt.Errorf("bus: register metrics: %w", err)
		}
		registered = append(registered, c)
	}
	return m, nil
}

// unregister undoes a successful registration on reg, for a constructor
// that fails after registering, so that a retry can register again.
func (m *metrics) unregister(reg prometheus.Registerer) {
	if reg == nil {
		return
	}
	for _, c := range m.collectors() {
		reg.Unregister(c)
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		m.published, m.delivered, m.dropped, m.backpressure,
		m.handlerErrors, m.queueDepth, m.publishWait,
	}
}

// subMetrics are one subscriber's series, looked up once at Subscribe so
// the hot path does not hash label values per event.
type subMetrics struct {
	delivered     prometheus.Counter
	dropped       prometheus.Counter
	backpressure  prometheus.Counter
	handlerErrors prometheus.Counter
}

func (m *metrics) forSubscriber(name string) subMetrics {
	return subMetrics{
		delivered:     m.delivered.WithLabelValues(name),
		dropped:       m.dropped.WithLabelValues(name),
		backpressure:  m.backpressure.WithLabelValues(name),
		handlerErrors: m.handlerErrors.WithLabelValues(name),
	}
}

// deleteSubscriber removes a departed subscriber's series so that
// short-lived subscriptions do not accumulate in the registry.
func (m *metrics) deleteSubscriber(name string) {
	m.delivered.DeleteLabelValues(name)
	m.dropped.DeleteLabelValues(name)
	m.backpressure.DeleteLabelValues(name)
	m.handlerErrors.DeleteLabelValues(name)
}

// depthCollector reports queue depth at scrape time from the queues
// themselves, instead of a gauge updated on every send and receive: the
// publish path pays nothing for it, and a subscription that is gone simply
// stops being reported.
type depthCollector struct {
	desc *prometheus.Desc
	subs iter.Seq[*dispatcher]
}

func (c *depthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *depthCollector) Collect(ch chan<- prometheus.Metric) {
	for d := range c.subs {
		if d.stopped.Load() {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(d.depth()), d.name)
	}
}
