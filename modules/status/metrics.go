package status

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	changes   *prometheus.CounterVec
	delivered prometheus.Counter
	devices   prometheus.Gauge
	watches   prometheus.Gauge
	frames    *prometheus.CounterVec
	calls     *prometheus.CounterVec
	busFails  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_status_changes_total", Help: "Presence changes announced, by the new state.",
		}, []string{"state"}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "elph_status_deliveries_total", Help: "Presence changes handed to this node's watching connections.",
		}),
		devices: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "elph_status_devices", Help: "Client connections counted for presence on this node.",
		}),
		watches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "elph_status_watches", Help: "(connection, watched user) pairs on this node.",
		}),
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_status_frames_total", Help: "status.* client frames, by result (ok, refused).",
		}, []string{"result"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_status_call_events_total", Help: "Call events consumed, by result (applied, ignored, invalid, error).",
		}, []string{"result"}),
		busFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "elph_status_bus_publish_failures_total", Help: "Presence changes stored but not announced on the bus.",
		}),
	}
	for _, s := range []string{StateOnline, StateAway, StateDND, StateInCall, StateOffline} {
		m.changes.WithLabelValues(s)
	}
	for _, r := range []string{"ok", "refused"} {
		m.frames.WithLabelValues(r)
	}
	for _, r := range []string{"applied", "ignored", "invalid", "error"} {
		m.calls.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.changes, m.delivered, m.devices, m.watches, m.frames, m.calls, m.busFails} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
