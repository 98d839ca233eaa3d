package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// newTransport is one load client's connection: HTTP/1.1 or HTTP/2 only
// (no fallback, so a run says what it measured), no compression.
func newTransport(tlsCfg *tls.Config, h2 bool) *http.Transport {
	var p http.Protocols
	if h2 {
		p.SetHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	return &http.Transport{
		TLSClientConfig:       tlsCfg.Clone(),
		Protocols:             &p,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConnsPerHost:   4,
		DisableCompression:    true,
	}
}

// httpResult is one timed run of C clients against one target.
type httpResult struct {
	n, bytes, errs int64
	firstErr       string
	window         time.Duration
	lat            []float64 // ms, requests started and finished in the window
}

// errCounter keeps the number of errors and the first message.
type errCounter struct {
	n     atomic.Int64
	mu    sync.Mutex
	first string
}

func (e *errCounter) add(format string, args ...any) {
	if e.n.Add(1) == 1 {
		e.mu.Lock()
		e.first = fmt.Sprintf(format, args...)
		e.mu.Unlock()
	}
}

func (e *errCounter) firstErr() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.first
}

// hooks let the caller take its readings at the edges of the measured
// window: begin when it opens (after the warm-up or the connecting), end
// when the load stops, connections still open.
type hooks struct{ begin, end func() }

// httpLoad runs conc closed-loop clients, each on its own kept-alive
// connection, issuing GET url back to back for warm+dur. Requests that
// start and finish inside the dur window after the warm-up are counted.
func httpLoad(ctx context.Context, url string, conc int, warm, dur time.Duration, tlsCfg *tls.Config, h2 bool, want int64, hk hooks) httpResult {
	base := time.Now()
	wStart, wEnd := base.Add(warm), base.Add(warm+dur)
	// Bounded: nothing outlives the window by more than 30s.
	ctx, cancel := context.WithDeadline(ctx, wEnd.Add(30*time.Second))
	defer cancel()
	began := make(chan struct{})
	go func() {
		defer close(began)
		t := time.NewTimer(time.Until(wStart))
		defer t.Stop()
		select {
		case <-t.C:
			hk.begin()
		case <-ctx.Done():
		}
	}()
	var errs errCounter
	lats := make([][]time.Duration, conc)
	byts := make([]int64, conc)
	trs := make([]*http.Transport, conc)
	var wg sync.WaitGroup
	for i := range conc {
		trs[i] = newTransport(tlsCfg, h2)
		wg.Go(func() {
			tr := trs[i]
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				errs.add("%v", err)
				return
			}
			lat := make([]time.Duration, 0, 4096)
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(wEnd) {
					break
				}
				in := !t0.Before(wStart)
				resp, err := tr.RoundTrip(req)
				if err != nil {
					if in && ctx.Err() == nil {
						errs.add("%v", err)
					}
					// Do not spin on a refused connection.
					time.Sleep(10 * time.Millisecond)
					continue
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				t1 := time.Now()
				switch {
				case !in || t1.After(wEnd):
				case err != nil:
					errs.add("reading the body: %v", err)
				case resp.StatusCode != http.StatusOK:
					errs.add("HTTP %d", resp.StatusCode)
				case n != want:
					errs.add("body of %d bytes, want %d", n, want)
				default:
					lat = append(lat, t1.Sub(t0))
					byts[i] += n
				}
			}
			lats[i] = lat
		})
	}
	wg.Wait()
	<-began
	hk.end()
	for _, tr := range trs {
		tr.CloseIdleConnections()
	}
	r := httpResult{errs: errs.n.Load(), firstErr: errs.firstErr(), window: dur}
	for i, l := range lats {
		r.n += int64(len(l))
		r.bytes += byts[i]
		for _, d := range l {
			r.lat = append(r.lat, float64(d.Nanoseconds())/1e6)
		}
	}
	return r
}

// wsResult is one WebSocket echo run against one target.
type wsResult struct {
	conns, msgs, errs int64
	firstErr          string
	span              time.Duration // first send to last echo
	handshake         []float64     // ms
	rtt               []float64     // ms
}

// wsLoad opens conns WebSockets (over HTTP/1.1, as browsers do through
// both proxies), then each sends msgs messages of size bytes, one at a
// time, waiting for the echo of each. The measured window is the
// messages, not the connecting.
func wsLoad(ctx context.Context, wsURL string, conns, msgs, size int, tlsCfg *tls.Config, limit time.Duration, hk hooks) wsResult {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	hc := &http.Client{Transport: newTransport(tlsCfg, false)}
	defer hc.CloseIdleConnections()
	var errs errCounter
	cs := make([]*websocket.Conn, conns)
	hs := make([]float64, conns)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			t0 := time.Now()
			c, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: hc, CompressionMode: websocket.CompressionDisabled})
			if err != nil {
				errs.add("dial: %v", err)
				return
			}
			hs[i] = float64(time.Since(t0).Nanoseconds()) / 1e6
			cs[i] = c
		})
	}
	wg.Wait()
	r := wsResult{}
	for i, c := range cs {
		if c != nil {
			r.conns++
			r.handshake = append(r.handshake, hs[i])
		}
	}
	rtts := make([][]float64, conns)
	var last atomic.Int64
	hk.begin()
	start := time.Now()
	for i, c := range cs {
		if c == nil {
			continue
		}
		wg.Go(func() {
			msg := bytes.Repeat([]byte{'x'}, size)
			rtt := make([]float64, 0, msgs)
			for k := range msgs {
				copy(msg, fmt.Sprintf("%d/%d ", i, k))
				t0 := time.Now()
				if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
					errs.add("write: %v", err)
					break
				}
				_, got, err := c.Read(ctx)
				if err != nil {
					errs.add("read: %v", err)
					break
				}
				t1 := time.Now()
				if !bytes.Equal(got, msg) {
					errs.add("echo differs from the message sent")
					break
				}
				rtt = append(rtt, float64(t1.Sub(t0).Nanoseconds())/1e6)
			}
			rtts[i] = rtt
			for now := time.Since(start).Nanoseconds(); ; {
				if l := last.Load(); now <= l || last.CompareAndSwap(l, now) {
					break
				}
			}
		})
	}
	wg.Wait()
	r.span = time.Duration(last.Load())
	hk.end()
	for _, c := range cs {
		if c != nil {
			c.CloseNow()
		}
	}
	for _, l := range rtts {
		r.msgs += int64(len(l))
		r.rtt = append(r.rtt, l...)
	}
	r.errs, r.firstErr = errs.n.Load(), errs.firstErr()
	return r
}

// check makes sure a target answers every test path as expected before
// it is measured, and returns the response headers of the ping.
func check(ctx context.Context, base string, tlsCfg *tls.Config, h2 bool) (http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	tr := newTransport(tlsCfg, h2)
	defer tr.CloseIdleConnections()
	get := func(path string) (*http.Response, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			return nil, nil, err
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return nil, nil, fmt.Errorf("GET %s: %w", path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, nil, fmt.Errorf("GET %s: body: %w", path, err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, nil, fmt.Errorf("GET %s: HTTP %d: %s", path, resp.StatusCode, strings.TrimSpace(string(b[:min(len(b), 300)])))
		}
		if want := 1 + map[bool]int{true: 1}[h2]; resp.ProtoMajor != want {
			return nil, nil, fmt.Errorf("GET %s: answered over %s, want HTTP/%d", path, resp.Proto, want)
		}
		return resp, b, nil
	}
	resp, b, err := get("/chat/v1/ping")
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(b, pingBody) {
		return nil, fmt.Errorf("GET /chat/v1/ping: unexpected body %q", b)
	}
	if _, b, err = get("/files/v1/blob?size=100000"); err != nil {
		return nil, err
	}
	if len(b) != 100000 {
		return nil, fmt.Errorf("GET /files/v1/blob?size=100000: %d bytes", len(b))
	}
	wsURL := "wss" + strings.TrimPrefix(base, "https") + "/chat/v1/ws"
	hc := &http.Client{Transport: newTransport(tlsCfg, false)}
	defer hc.CloseIdleConnections()
	c, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		return nil, fmt.Errorf("WebSocket %s: %w", wsURL, err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		return nil, fmt.Errorf("WebSocket write: %w", err)
	}
	if _, got, err := c.Read(ctx); err != nil || string(got) != "hello" {
		return nil, fmt.Errorf("WebSocket echo: %q, %v", got, err)
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
	return resp.Header, nil
}

var errNotReady = errors.New("not ready")

// waitHTTPS polls url until it answers 200, the process exits or limit.
func waitHTTPS(ctx context.Context, url string, tlsCfg *tls.Config, limit time.Duration, exited func() bool) error {
	c := &http.Client{Timeout: time.Second, Transport: newTransport(tlsCfg, false)}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(limit)
	var last error = errNotReady
	var answering time.Time // first non-200 answer: up, but misconfigured?
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("HTTP %d", resp.StatusCode)
			if answering.IsZero() {
				answering = time.Now()
			}
		} else {
			last = err
		}
		switch {
		case exited():
			return fmt.Errorf("%w before it answered %s", errExited, url)
		case time.Now().After(deadline):
			return fmt.Errorf("%s not answering 200 after %s: %v", url, limit, last)
		case !answering.IsZero() && time.Since(answering) > 5*time.Second:
			return fmt.Errorf("%s answers, but not 200, for 5s: %v", url, last)
		case ctx.Err() != nil:
			return ctx.Err()
		}
		time.Sleep(20 * time.Millisecond)
	}
}
