package sso

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	logins    *prometheus.CounterVec
	refreshes *prometheus.CounterVec
	revoked   *prometheus.CounterVec
	syncRuns  *prometheus.CounterVec
	syncUsers *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_sso_logins_total", Help: "Login attempts by result code (ok, bad_credentials, locked_out, …) and account source.",
		}, []string{"result", "source"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_sso_token_refreshes_total", Help: "Refresh-token exchanges by result.",
		}, []string{"result"}),
		revoked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_sso_sessions_revoked_total", Help: "Sessions revoked, by reason.",
		}, []string{"reason"}),
		syncRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_sso_directory_syncs_total", Help: "Directory sync runs by result.",
		}, []string{"result"}),
		syncUsers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "elph_sso_directory_last_sync_users", Help: "Users seen by the last directory sync, by outcome.",
		}, []string{"outcome"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.logins, m.refreshes, m.revoked, m.syncRuns, m.syncUsers} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
