package files

import "github.com/prometheus/client_golang/prometheus"

// Results of an upload, the label values of elph_files_uploads_total.
const (
	resultOK         = "ok"
	resultTooLarge   = "too_large"
	resultBadRequest = "bad_request"
	resultError      = "error"
)

type metrics struct {
	uploadedBytes prometheus.Counter
	uploads       *prometheus.CounterVec
	downloads     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		uploadedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "elph_files_uploaded_bytes_total", Help: "Bytes of files stored by successful uploads.",
		}),
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elph_files_uploads_total", Help: "Uploads by result (ok, too_large, bad_request, error).",
		}, []string{"result"}),
		downloads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "elph_files_downloads_total", Help: "Authorised downloads of file content, streamed or redirected to a presigned URL (thumbnails not counted).",
		}),
	}
	// Every result is exported from the start, so a rate over it is
	// defined before the first failure.
	for _, r := range []string{resultOK, resultTooLarge, resultBadRequest, resultError} {
		m.uploads.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.uploadedBytes, m.uploads, m.downloads} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
