package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// forward sends a request that has no body, or a body read ahead, to an
// upstream over the pool and copies the answer back. It does for these
// requests (nearly all of them) what httputil.ReverseProxy does, hop-by-hop
// headers, X-Forwarded-*, trailers, a broken answer aborted, without
// copying the request: its head is written from the inbound request
// straight onto the upstream connection. Upgrades and streaming uploads go
// through ReverseProxy.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, st *reqState) {
	ctx := r.Context()
	uri := requestURI(r.URL)
	x := exchange{ctx: ctx, method: r.Method, write: func(bw *bufio.Writer, _ bool) error {
		return writeRequest(bw, r, st, uri)
	}}
	var body *pooledBody
	res, err := p.attempts(ctx, st, func(kind string) bool { return canRetry(r, kind, st) },
		func(u *upstream, _ int) (*http.Response, bool, error) {
			res, reused, err := p.pool.exchange(x, u)
			if err == nil {
				body, _ = res.Body.(*pooledBody)
			}
			return res, reused, err
		})
	if err != nil {
		p.failed(w, r, st, err)
		return
	}
	// Closing again is harmless; this one covers a panic on the way.
	defer res.Body.Close()
	if res.StatusCode == http.StatusSwitchingProtocols || body == nil {
		res.Body.Close()
		p.failed(w, r, st, errors.New("the upstream switched protocols without being asked"))
		return
	}

	removeHopByHop(res.Header)
	// The proxy has set the request id on the answer already.
	res.Header.Del("X-Request-Id")
	h := w.Header()
	for k, vv := range res.Header {
		h[k] = append(h[k], vv...)
	}
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		h.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(res.StatusCode)
	if err := copyAnswer(w, res, body); err != nil {
		// Half an answer is all the client can get: abort the response so
		// that it does not look complete.
		res.Body.Close()
		st.err = err
		panic(http.ErrAbortHandler)
	}
	res.Body.Close() // reads the trailers
	if len(res.Trailer) > 0 {
		// Trailers need a chunked answer: flushing now keeps net/http
		// from sending a Content-Length for a short body.
		_ = http.NewResponseController(w).Flush()
	}
	if len(res.Trailer) == announced {
		for k, vv := range res.Trailer {
			h[k] = append(h[k], vv...)
		}
		return
	}
	for k, vv := range res.Trailer {
		for _, v := range vv {
			h.Add(http.TrailerPrefix+k, v)
		}
	}
}

// copyAnswer streams an answer's body to the client: bytes are flushed as
// soon as nothing more is waiting on the upstream connection, so a slow or
// endless answer streams, while one read whole goes out in a single write
// with its head.
func copyAnswer(w http.ResponseWriter, res *http.Response, body *pooledBody) error {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	var written int64
	for {
		n, rerr := res.Body.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			written += int64(n)
			if (res.ContentLength < 0 || written < res.ContentLength) && body.pending() == 0 {
				if err := http.NewResponseController(w).Flush(); err != nil {
					return err
				}
			}
		}
		switch {
		case rerr == io.EOF:
			return nil
		case rerr != nil:
			return rerr
		}
	}
}

// hopHeaders are the hop-by-hop headers (RFC 9110 7.6.1 and the older
// ones still seen), never passed on.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// removeHopByHop drops the hop-by-hop headers and those Connection names.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		delete(h, name)
	}
}

// notForwarded are inbound headers the proxy never copies: hop-by-hop ones,
// the forwarding headers it sets itself, the request id it sets, and the
// framing it writes.
var notForwarded = func() map[string]bool {
	m := map[string]bool{"Forwarded": true, "X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true,
		"X-Request-Id": true, "Host": true, "Content-Length": true, "Expect": true}
	for _, h := range hopHeaders {
		m[h] = true
	}
	return m
}()

// writeRequest writes the request's head, as it goes upstream, and its
// read-ahead body.
func writeRequest(bw *bufio.Writer, r *http.Request, st *reqState, uri string) error {
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	connection := r.Header["Connection"]
	for k, vv := range r.Header {
		if notForwarded[k] || k == "X-Real-Ip" && !st.trusted || namedIn(connection, k) {
			continue
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	// Backends that care may learn that trailers reach the client.
	if headerHasToken(r.Header["Te"], "trailers") {
		writeField(bw, "Te", "trailers")
	}
	if peer, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := r.Header["X-Forwarded-For"]; st.trusted && len(prior) > 0 {
			peer = strings.Join(prior, ", ") + ", " + peer
		}
		writeField(bw, "X-Forwarded-For", peer)
	}
	fwdHost, proto := r.Host, "http"
	if r.TLS != nil {
		proto = "https"
	}
	if st.trusted {
		if v := strings.ToLower(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto"))); v == "http" || v == "https" {
			proto = v
		}
		if v := strings.TrimSpace(r.Header.Get("X-Forwarded-Host")); v != "" {
			fwdHost = v
		}
	}
	writeField(bw, "X-Forwarded-Host", fwdHost)
	writeField(bw, "X-Forwarded-Proto", proto)
	writeField(bw, "X-Request-Id", st.id)

	var body io.ReadCloser
	if r.GetBody != nil && r.ContentLength > 0 {
		var err error
		if body, err = r.GetBody(); err != nil {
			return err
		}
		defer body.Close()
	}
	if body != nil || r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
		n := int64(0)
		if body != nil {
			n = r.ContentLength
		}
		writeField(bw, "Content-Length", strconv.FormatInt(n, 10))
	}
	bw.WriteString("\r\n")
	if body != nil {
		if _, err := io.CopyN(bw, body, r.ContentLength); err != nil {
			return err
		}
	}
	return nil
}

func writeField(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// namedIn reports whether a Connection header names the header k.
func namedIn(connection []string, k string) bool {
	for _, v := range connection {
		for name := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(name), k) {
				return true
			}
		}
	}
	return false
}

// requestURI is the request target sent upstream: the path as the client
// escaped it, and the query without parameters that do not parse (as
// ReverseProxy sends it: a ";" or a bad escape would be read differently
// by different servers).
func requestURI(u *url.URL) string {
	if q := cleanQuery(u.RawQuery); q != u.RawQuery {
		u2 := *u
		u2.RawQuery = q
		return u2.RequestURI()
	}
	return u.RequestURI()
}

// cleanQuery re-encodes a query holding ";" or a bad escape, dropping what
// does not parse.
func cleanQuery(q string) string {
	for i := 0; i < len(q); i++ {
		switch q[i] {
		case ';':
			return reencodeQuery(q)
		case '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return reencodeQuery(q)
			}
			i += 2
		}
	}
	return q
}

func reencodeQuery(q string) string {
	v, _ := url.ParseQuery(q)
	return v.Encode()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
