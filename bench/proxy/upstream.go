package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/elph-server/elph/platform/httpx"
)

// The fixed upstream runs as a child process of this binary (the same
// executable, selected by upstreamEnv), not in the load generator's
// process: its CPU is then its own, read from /proc like the proxies', and
// its garbage collector and scheduler do not share the generator's.
const (
	upstreamEnv     = "ELPH_BENCH_PROXY_UPSTREAM" // listen address
	upstreamCertEnv = "ELPH_BENCH_PROXY_UPSTREAM_CERT"
	upstreamKeyEnv  = "ELPH_BENCH_PROXY_UPSTREAM_KEY"
	upstreamH1Env   = "ELPH_BENCH_PROXY_UPSTREAM_H1" // "1": offer HTTP/1.1 only
	maxBlob         = 64 << 20
)

// pingBody is the small JSON answer of GET /chat/v1/ping (~100 B).
var pingBody = []byte(`{"ok":true,"service":"chat","version":"v1","time":"2025-01-01T00:00:00Z","note":"bench proxy ping"}` + "\n")

// upstreamStats is what GET /bench/stats answers: counters since start and
// the headers of the first ping after the last ?reset=1.
type upstreamStats struct {
	Conns  int64     `json:"conns"` // TCP connections accepted
	H1     int64     `json:"h1"`    // requests over HTTP/1.x
	H2     int64     `json:"h2"`    // requests over HTTP/2
	WS     int64     `json:"ws"`    // WebSocket sessions
	WSMsgs int64     `json:"ws_msgs"`
	Seen   *seenPing `json:"seen,omitempty"`
	ALPN   []string  `json:"alpn"`
}

// seenPing is what one proxied ping looked like to the upstream.
type seenPing struct {
	Proto, Host, XFF, XFProto, XFHost, RequestID, Forwarded, XRealIP, Connection string
}

func serveUpstream() int {
	addr := os.Getenv(upstreamEnv)
	cert, err := httpx.LoadCertificate(os.Getenv(upstreamCertEnv), os.Getenv(upstreamKeyEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		return 1
	}
	h1only := os.Getenv(upstreamH1Env) == "1"
	blob := make([]byte, maxBlob)
	_, _ = rand.Read(blob)

	var conns, h1, h2, wsN, wsMsgs atomic.Int64
	var seen atomic.Pointer[seenPing]
	armed := atomic.Bool{}
	count := func(r *http.Request) {
		if r.ProtoMajor == 2 {
			h2.Add(1)
		} else {
			h1.Add(1)
		}
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		count(r)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /chat/v1/ping", func(w http.ResponseWriter, r *http.Request) {
		count(r)
		if armed.Load() && armed.CompareAndSwap(true, false) {
			seen.Store(&seenPing{
				Proto: r.Proto, Host: r.Host, XFF: r.Header.Get("X-Forwarded-For"),
				XFProto: r.Header.Get("X-Forwarded-Proto"), XFHost: r.Header.Get("X-Forwarded-Host"),
				RequestID: r.Header.Get("X-Request-Id"), Forwarded: r.Header.Get("Forwarded"),
				XRealIP: r.Header.Get("X-Real-Ip"), Connection: r.Header.Get("Connection"),
			})
		}
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{strconv.Itoa(len(pingBody))}
		_, _ = w.Write(pingBody)
	})
	mux.HandleFunc("GET /files/v1/blob", func(w http.ResponseWriter, r *http.Request) {
		count(r)
		n, err := strconv.Atoi(r.URL.Query().Get("size"))
		if err != nil || n < 0 || n > maxBlob {
			http.Error(w, "size: 0.."+strconv.Itoa(maxBlob), http.StatusBadRequest)
			return
		}
		h := w.Header()
		h["Content-Type"] = []string{"application/octet-stream"}
		h["Content-Length"] = []string{strconv.Itoa(n)}
		_, _ = w.Write(blob[:n])
	})
	mux.HandleFunc("GET /chat/v1/ws", func(w http.ResponseWriter, r *http.Request) {
		count(r)
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
			InsecureSkipVerify: true, // any origin: the bench client sends none
			CompressionMode:    websocket.CompressionDisabled,
		})
		if err != nil {
			return
		}
		defer c.CloseNow()
		wsN.Add(1)
		ctx := context.Background()
		for {
			typ, b, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, b); err != nil {
				return
			}
			wsMsgs.Add(1)
		}
	})
	mux.HandleFunc("GET /bench/stats", func(w http.ResponseWriter, r *http.Request) {
		alpn := []string{"h2", "http/1.1"}
		if h1only {
			alpn = alpn[1:]
		}
		st := upstreamStats{Conns: conns.Load(), H1: h1.Load(), H2: h2.Load(), WS: wsN.Load(), WSMsgs: wsMsgs.Load(),
			Seen: seen.Load(), ALPN: alpn}
		if r.URL.Query().Get("reset") == "1" {
			seen.Store(nil)
			armed.Store(true)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})

	tlsCfg := cert.TLSConfig()
	var protos http.Protocols
	protos.SetHTTP1(true)
	tlsCfg.NextProtos = []string{"http/1.1"}
	if !h1only {
		protos.SetHTTP2(true)
		tlsCfg.NextProtos = []string{"h2", "http/1.1"}
	}
	srv := &http.Server{
		Handler: mux, TLSConfig: tlsCfg, Protocols: &protos,
		ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = srv.Close()
	}()
	// ServeTLS adds h2 to the ALPN list when Protocols allow it.
	err = srv.ServeTLS(ln, "", "")
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		return 1
	}
	return 0
}
