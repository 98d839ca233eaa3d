// Package proxy routes requests by path prefix to in-process handlers or to
// sets of upstream HTTP servers. It is the DMZ node (`elph serve
// --role=proxy`), the only port reachable from outside, and the same
// routing serves the in-process gateway in --all, where a route's target is
// an http.Handler and no network hop happens.
//
// # Routing
//
// The longest matching prefix wins. A prefix always ends with "/"; a path
// equal to a prefix without its trailing slash ("/chat" for "/chat/")
// belongs to that prefix and is passed on unchanged, without a redirect:
// the gateway behind it (a chi Mount) serves "/chat" itself, so the answer
// is the same with or without the proxy, and a POST is never bounced. The
// request path is never rewritten. Matching uses the path as the upstream
// router sees it (the escaped form when the client escaped it), and a path
// holding a "." or ".." segment, even percent-encoded, is refused with 400,
// so a path cannot match one prefix and be resolved under another further
// on. No matching route answers 404 in the standard JSON error shape.
//
// # Upstreams
//
// Each upstream is checked actively (GET HealthPath, 2xx is up, every
// HealthInterval, HealthTimeout each) once Start has been called, and
// passively: a dial failure, or a fresh connection reset or closed before
// any response byte, marks it down at once, until the next good check,
// which then comes within a second (a passing fault or a quick restart
// costs little). A kept-alive connection that breaks does not mark it down:
// the upstream may just have closed it as idle. An
// upstream is presumed up until a check or a request says otherwise, and
// Start runs the first round of checks before it returns. The same upstream
// URL in several routes is one upstream: one health state, one in-flight
// count.
//
// Requests reach upstreams over kept-alive HTTP/1.1 connections (connPool),
// one request at a time per connection, sent and answered on the request's
// own goroutine. An idempotent request that finds its kept-alive connection
// closed before any answer (the upstream's idle timeout, a restart) is sent
// again on a fresh one; any other request checks the connection first. A
// connection goes back to the pool only when its answer was read to the
// end; an answer the client abandons closes it. Bodies of known length up
// to 64 KiB are read before the upstream is contacted (so they can be sent
// again); larger or streaming bodies go through Options.Transport, which
// sends the body while it reads an early answer. The pool takes its TLS
// settings, dialer, timeouts and idle limits from Options.Transport.
//
// A request goes to the healthy upstream with the fewest requests in flight
// (responses still streaming and proxied WebSockets count), ties taken in
// turn. A request whose connection attempt fails is retried once on another
// healthy upstream when its body can be sent again: a dial failure retries
// any method (nothing was sent); a reset before any response byte retries
// only idempotent methods without a body. Small chunked bodies are read
// ahead (see below), so they replay too. No healthy upstream answers 503
// with Retry-After; a failed connection 502 (with Retry-After); a timeout
// 504.
//
// # Headers
//
// The inbound Host header is kept (upstream Origin checks compare against
// it); TLS to the upstream still verifies the upstream URL's host name.
// Hop-by-hop headers, and those named in Connection, are dropped both ways
// (httputil.ReverseProxy); Upgrade is kept for WebSockets. X-Forwarded-For,
// -Proto and -Host from a peer outside TrustedProxies are dropped and set
// from the real peer; a trusted peer's X-Forwarded-For is extended and its
// -Proto and -Host kept. Forwarded is always dropped (Elph reads the X-
// headers only) and X-Real-IP is dropped from untrusted peers. An
// upstream must list this node in its own trusted proxies to believe the
// headers. A well-formed X-Request-Id is kept, otherwise one is made; it is
// sent upstream and answered to the client.
//
// # Limits
//
// Request bodies are limited per route (413). A body announced larger than
// the limit is refused before any upstream is contacted; a chunked body is
// read ahead into memory when the route's limit is at most 1 MiB, so an
// oversized one never reaches the upstream either (and a small one is sent
// with a Content-Length and can be retried). Larger routes (uploads) stream
// and are cut at the limit. A body must arrive within BodyReadTimeout, plus
// the time its received bytes take at MinBodyRate, so a slow-body attacker
// is cut (408) while a large upload that keeps moving is not. The deadline
// is the connection's read deadline (http.ResponseController); it is
// cleared as soon as the body has been read.
//
// Per client IP (IPv6 by /64) the proxy limits the request rate (token
// bucket, 429 with Retry-After) and, through LimitListener, concurrent
// connections: the excess is closed at accept. The client IP is the peer,
// or behind a trusted proxy the nearest untrusted X-Forwarded-For entry;
// trusted proxies' own connections are never limited.
//
// # What the http.Server in front must do
//
// The proxy assumes the server it runs in (httpx.Server) sets
// ReadHeaderTimeout (slow headers, slowloris: the proxy never sees a request
// whose headers are incomplete), IdleTimeout and MaxHeaderBytes, and does
// not set ReadTimeout or WriteTimeout, which would cut WebSockets, long
// downloads and large uploads; bodies are bounded here instead.
// LimitListener must wrap the raw TCP listener, under TLS. HTTP/2's
// extended CONNECT (GODEBUG http2xconnect=1) must stay off, so browsers open
// WebSockets over HTTP/1.1. Proxied WebSockets register with the server's
// drain (httpx.TrackLongLived): on shutdown their tunnels are closed and
// clients reconnect elsewhere. /livez and /readyz of the proxy node itself
// (Healthy) are served in front of the proxy by the caller.
//
// # Observability
//
// One access log line per request (method, path, query without tokens,
// status, bytes, duration, route prefix, upstream, retries, client IP,
// request id) and the elph_proxy_* metrics: requests by prefix and code
// class, duration by prefix, in-flight and health by upstream, upstream
// errors, retries and rejections by reason.
package proxy
