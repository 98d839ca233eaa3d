package proxy

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the proxy's elph_proxy_* series.
type metrics struct {
	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	inFlight       *prometheus.GaugeVec
	healthy        *prometheus.GaugeVec
	upstreamErrors *prometheus.CounterVec
	retries        *prometheus.CounterVec
	rejected       *prometheus.CounterVec
}

// newMetrics registers the metrics with reg (nil: unregistered). Metrics
// already registered by an earlier Proxy (a reload) are reused.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_proxy_requests_total", Help: "Requests routed by the proxy, by route prefix and status class.",
		}, []string{"prefix", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "elph_proxy_request_duration_seconds", Help: "Time to serve a routed request (WebSockets excluded).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"prefix"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "elph_proxy_upstream_in_flight", Help: "Requests in flight to an upstream, streaming responses and WebSockets included.",
		}, []string{"upstream"}),
		healthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "elph_proxy_upstream_healthy", Help: "1 when the upstream is taking requests, 0 when it is marked down.",
		}, []string{"upstream"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_proxy_upstream_errors_total", Help: "Failed attempts to reach an upstream, by kind (dial, reset, timeout, other).",
		}, []string{"upstream", "kind"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_proxy_retries_total", Help: "Requests sent to a second upstream after a failed connection.",
		}, []string{"prefix"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_proxy_rejected_total", Help: "Requests and connections refused by a limit (rate, connections, body_too_large, body_timeout).",
		}, []string{"reason"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.requests, err = register(reg, m.requests)
	if err == nil {
		m.duration, err = register(reg, m.duration)
	}
	if err == nil {
		m.inFlight, err = register(reg, m.inFlight)
	}
	if err == nil {
		m.healthy, err = register(reg, m.healthy)
	}
	if err == nil {
		m.upstreamErrors, err = register(reg, m.upstreamErrors)
	}
	if err == nil {
		m.retries, err = register(reg, m.retries)
	}
	if err == nil {
		m.rejected, err = register(reg, m.rejected)
	}
	return m, err
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

// codeClasses are the status labels, indexed by classIndex.
var codeClasses = [...]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

// classIndex is the index in codeClasses of a status.
func classIndex(status int) int {
	if status < 100 || status > 599 {
		return 0
	}
	return status / 100
}

// codeClass is the status label: "2xx" and so on.
func codeClass(status int) string { return codeClasses[classIndex(status)] }

// bindRoute resolves a route's series once, not on every request.
func (m *metrics) bindRoute(rt *route) {
	for i, class := range codeClasses {
		rt.requests[i] = m.requests.WithLabelValues(rt.prefix, class)
	}
	rt.duration = m.duration.WithLabelValues(rt.prefix)
}

// observe writes the access log line and the request metrics.
func (p *Proxy) observe(rec *recorder, r *http.Request, st *reqState) {
	status := rec.status
	if st.status != 0 {
		status = st.status
	} else if status == 0 {
		status = http.StatusOK // nothing written: the server sends 200
	}
	d := p.now().Sub(st.start)
	prefix := "unmatched"
	if st.route != nil {
		prefix = st.route.prefix
	}
	if st.route != nil {
		st.route.requests[classIndex(status)].Inc()
		if status != http.StatusSwitchingProtocols {
			st.route.duration.Observe(d.Seconds())
		}
	} else {
		p.m.requests.WithLabelValues(prefix, codeClass(status)).Inc()
		p.m.duration.WithLabelValues(prefix).Observe(d.Seconds())
	}
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelWarn
	}
	if !p.log.Enabled(r.Context(), level) {
		return
	}
	attrs := make([]slog.Attr, 0, 16)
	attrs = append(attrs,
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
	)
	if q := loggedQuery(r.URL.RawQuery); q != "" {
		attrs = append(attrs, slog.String("query", q))
	}
	attrs = append(attrs,
		slog.Int("status", status),
		slog.Int64("bytes", rec.bytes),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
		slog.String("prefix", prefix),
	)
	switch {
	case st.upstream != nil:
		attrs = append(attrs, slog.String("upstream", st.upstream.key))
	case st.local:
		attrs = append(attrs, slog.String("upstream", "local"))
	}
	if st.retries > 0 {
		attrs = append(attrs, slog.Int("retries", st.retries))
	}
	attrs = append(attrs,
		slog.String("client_ip", st.client.String()),
		slog.String("request_id", st.id),
		slog.String("proto", r.Proto),
	)
	if st.err != nil {
		attrs = append(attrs, slog.String("err", st.err.Error()))
	}
	if st.aborted {
		attrs = append(attrs, slog.Bool("aborted", true))
	}
	p.log.LogAttrs(r.Context(), level, "proxy request", attrs...)
}

// secretParams are query parameters never logged: tokens and signatures.
var secretParams = map[string]bool{
	"access_token": true, "refresh_token": true, "id_token": true, "token": true, "code": true,
	"password": true, "secret": true, "sig": true, "signature": true, "key": true,
	"x-amz-signature": true, "x-amz-credential": true, "x-amz-security-token": true,
}

// loggedQuery is the query without secret parameters; a query that does
// not parse is not logged at all.
func loggedQuery(raw string) string {
	if raw == "" {
		return ""
	}
	v, err := url.ParseQuery(raw)
	if err != nil {
		return ""
	}
	for k := range v {
		if secretParams[strings.ToLower(k)] {
			delete(v, k)
		}
	}
	return v.Encode()
}

// recorder notes the status and size of a response. It unwraps for
// http.ResponseController (flush, deadlines) and hijacks for WebSockets.
type recorder struct {
	http.ResponseWriter
	status   int
	bytes    int64
	hijacked bool
}

func (w *recorder) WriteHeader(code int) {
	// 1xx informational answers (103) come from the transport's goroutine
	// and are not the final status; 101 is.
	if code >= 200 || code == http.StatusSwitchingProtocols {
		if w.status == 0 {
			w.status = code
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *recorder) Flush() { _ = w.FlushError() }

func (w *recorder) FlushError() error { return http.NewResponseController(w.ResponseWriter).Flush() }

func (w *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.hijacked = true
		if w.status == 0 {
			w.status = http.StatusSwitchingProtocols
		}
	}
	return c, brw, err
}

func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// requestID keeps a well-formed X-Request-Id (the rules of httpx) or makes
// one.
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); validRequestID(id) {
		return id
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func validRequestID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}
