package chat

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	messages *prometheus.CounterVec
	replays  prometheus.Counter
	searches prometheus.Counter
	purged   prometheus.Counter
	busFails prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_chat_messages_total", Help: "Messages stored, by kind (text, system).",
		}, []string{"kind"}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "elph_chat_send_replays_total", Help: "Sends answered with the message an earlier send with the same client_id stored.",
		}),
		searches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "elph_chat_searches_total", Help: "Full-text searches run.",
		}),
		purged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "elph_chat_messages_purged_total", Help: "Messages emptied by the retention policy.",
		}),
		busFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "elph_chat_bus_publish_failures_total", Help: "Chat events the bus refused after commit (the stream has them; bus consumers miss them).",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.messages, m.replays, m.searches, m.purged, m.busFails} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
