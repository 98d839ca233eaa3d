package addressbook

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	contacts prometheus.Gauge
	searches prometheus.Histogram
	syncs    *prometheus.CounterVec
	rejected *prometheus.CounterVec
	lookups  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		contacts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "elph_addressbook_contacts", Help: "Contacts in this node's search index (personal ones included).",
		}),
		searches: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "elph_addressbook_search_seconds", Help: "Time to answer a search from the index.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_addressbook_syncs_total", Help: "Source syncs, by source and result (ok, error).",
		}, []string{"source", "result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_addressbook_records_rejected_total", Help: "Source records refused (invalid), by source.",
		}, []string{"source"}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_addressbook_number_lookups_total", Help: "Number resolutions (history, push, clients), by result (found, unknown).",
		}, []string{"result"}),
	}
	for _, s := range []string{SourceAccounts, SourceSoftswitch, SourceCSV} {
		for _, r := range []string{"ok", "error"} {
			m.syncs.WithLabelValues(s, r)
		}
		m.rejected.WithLabelValues(s)
	}
	m.lookups.WithLabelValues("found")
	m.lookups.WithLabelValues("unknown")
	if reg != nil {
		for _, c := range []prometheus.Collector{m.contacts, m.searches, m.syncs, m.rejected, m.lookups} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
