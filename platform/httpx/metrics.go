package httpx

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the HTTP metrics of every listener in the process.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight *prometheus.GaugeVec
	panics   *prometheus.CounterVec
	longLive *prometheus.GaugeVec
}

// NewMetrics registers the HTTP metrics with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_http_requests_total", Help: "HTTP requests served, by listener, method, route pattern and status.",
		}, []string{"listener", "method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "elph_http_request_duration_seconds", Help: "Time to serve an HTTP request.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"listener", "method", "route"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "elph_http_requests_in_flight", Help: "HTTP requests being served.",
		}, []string{"listener"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_http_panics_total", Help: "Handler panics recovered.",
		}, []string{"listener"}),
		longLive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "elph_http_long_lived_connections", Help: "Open long-lived connections (WebSockets, streams) that shutdown drains.",
		}, []string{"listener"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.duration, m.inFlight, m.panics, m.longLive} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
