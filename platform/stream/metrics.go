package stream

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the stream's collectors. They exist even without a
// Registerer so the hot paths never check whether metrics are on.
type metrics struct {
	connections     prometheus.Gauge
	appended        prometheus.Counter
	delivered       prometheus.Counter
	replayed        prometheus.Counter
	resyncs         prometheus.Counter
	slowDisconnects prometheus.Counter
	signalsDropped  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "elph", Subsystem: "stream", Name: name, Help: help})
	}
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "elph", Subsystem: "stream", Name: "connections",
			Help: "Open stream WebSocket connections on this node.",
		}),
		appended:        counter("appended_total", "Events appended to user streams and announced (one per user)."),
		delivered:       counter("delivered_total", "Event frames written to WebSocket clients, live and replayed."),
		replayed:        counter("replayed_total", "Event frames written to WebSocket clients from the database (replay after connect or gap fill)."),
		resyncs:         counter("resyncs_total", "Resync frames sent because a client's position was beyond retention or unknown."),
		slowDisconnects: counter("slow_disconnects_total", "Connections closed with 4008 because their send queue was full."),
		signalsDropped:  counter("signals_dropped_total", "Signals not delivered to a connection because its signal queue was full."),
	}
	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{m.connections, m.appended, m.delivered, m.replayed, m.resyncs, m.slowDisconnects, m.signalsDropped}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			// Undo the partial registration so the caller can retry.
			for _, r := range cs[:i] {
				reg.Unregister(r)
			}
			return nil, fmt.Errorf("stream: register metrics: %w", err)
		}
	}
	return m, nil
}
