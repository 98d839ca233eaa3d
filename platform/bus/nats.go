package bus

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for NATSOptions' zero values.
const (
	DefaultNATSURL       = "nats://127.0.0.1:4222"
	DefaultNATSPrefix    = "elph"
	DefaultNATSName      = "elph"
	DefaultReconnectWait = 2 * time.Second
)

const (
	// Limits of the NATS client's buffer of messages received for one
	// subscription and not yet taken by its callback. The callback only
	// stalls while a Block subscriber's queue is full, so these are far
	// above the local queues: a burst (a peer flushing what it buffered
	// while reconnecting) must not be dropped, yet a stuck handler must
	// not take all memory: a node has about ten subscriptions, so 64 MiB
	// each bounds the worst case near nats.go's own defaults. Beyond them
	// NATS drops messages and reports a slow consumer, which is counted as
	// dropped.
	natsPendingMsgs  = 512 << 10
	natsPendingBytes = 64 << 20

	// natsHeaderRoom is what the Elph-* headers may add to a payload of
	// MaxPayload bytes; a server whose max_payload leaves less than that
	// rejects the largest events.
	natsHeaderRoom = 4 << 10

	// A dead connection that the kernel does not report (a firewall that
	// forgets idle flows) is noticed after about interval*maxOut, instead
	// of nats.go's default of several minutes.
	natsPingInterval = 20 * time.Second
	natsMaxPingsOut  = 3
)

// NATSOptions configures NewNATS. The zero value connects to a NATS server
// on localhost.
type NATSOptions struct {
	// URL lists the servers, comma-separated, e.g.
	// "nats://nats1:4222,nats://nats2:4222". Default DefaultNATSURL. The
	// client learns the rest of a cluster from the servers themselves.
	URL string
	// TLS, when not nil, makes the connection use TLS with this
	// configuration (root CAs, client certificate, server name).
	TLS *tls.Config
	// User and Password, or Token, authenticate the connection; not both
	// kinds. They are never logged.
	User     string
	Password string
	Token    string
	// Prefix is put before every topic on the wire: topic T travels as
	// "<Prefix>.T", so several installations or test runs can share a NATS
	// server, and an account's permissions can be limited to "<Prefix>.>".
	// It must be a valid topic (lower-case tokens). Default "elph".
	Prefix string
	// Name is the connection name the NATS server reports (monitoring,
	// its logs), e.g. "elph-node2". Default "elph".
	Name string
	// ReconnectWait is the pause between reconnect attempts to one server
	// (nats.go adds up to 100ms of jitter, 1s with TLS). Reconnecting
	// never gives up. Default 2s.
	ReconnectWait time.Duration

	Logger         *slog.Logger          // nil -> slog.New(slog.DiscardHandler)
	Registerer     prometheus.Registerer // nil -> metrics not registered (still counted internally)
	QueueSize      int                   // default per-worker queue capacity, default 1024
	Workers        int                   // default workers per subscription, default 1
	PublishTimeout time.Duration         // max wait for room in a Block subscriber's queue, default 5s
}

// LogValue shows the options without secrets: the servers with any
// credentials in the URLs redacted, and which kind of authentication is
// set, never the password or token.
func (o NATSOptions) LogValue() slog.Value {
	auth := "none"
	switch {
	case o.Token != "":
		auth = "token"
	case o.User != "":
		auth = "user " + o.User
	}
	return slog.GroupValue(
		slog.String("url", redactURLs(cmp.Or(o.URL, DefaultNATSURL))),
		slog.String("prefix", cmp.Or(o.Prefix, DefaultNATSPrefix)),
		slog.String("name", cmp.Or(o.Name, DefaultNATSName)),
		slog.Bool("tls", o.TLS != nil),
		slog.String("auth", auth),
	)
}

// String is LogValue for fmt, so printing the options does not print the
// credentials either.
func (o NATSOptions) String() string {
	return fmt.Sprint(o.LogValue())
}

// NATS is the Bus for several nodes: events travel through a NATS server
// (or cluster), so a subscription on any node receives what any node
// publishes. It uses core NATS only, no JetStream: like the in-memory bus
// it keeps nothing, and events published while a subscriber's node is down
// are lost for it.
//
// Every node's subscription gets every event, unless it is Shared: then
// the subscriptions of that name on all nodes form a NATS queue group and
// each event goes to one of them. Received events are queued and handled
// exactly as on the in-memory bus (workers, per-key order, Policy), except
// that a full Block subscriber cannot slow down a publisher on another
// node: the receiving node waits up to PublishTimeout for room, then drops
// the event for that subscriber, counts it as backpressure and logs it.
// Order per key holds for events from one publishing node; events of one
// key published on different nodes have no order between them.
//
// The connection retries for ever; while it is down Publish buffers up to
// nats.go's reconnect buffer (8 MiB), then fails with ErrUnavailable, and
// Ping reports the state. The server's max_payload should be at least 2MB
// (an event carries up to MaxPayload bytes plus headers); NewNATS warns
// when it is smaller, and larger events then fail with ErrTooLarge.
type NATS struct {
	core
	nc      *nats.Conn
	prefix  string // Prefix plus '.'
	servers string // the configured URLs, redacted, for logs and errors
	// pendingMsgs and pendingBytes limit each subscription's buffer in
	// the client; tests lower them to provoke a slow consumer.
	pendingMsgs, pendingBytes int

	closed     atomic.Bool
	started    atomic.Bool            // NewNATS has returned the bus
	connClosed chan struct{}          // closed when the NATS connection has closed for good
	server     atomic.Pointer[string] // redacted URL of the server last connected to
	// reconnectWarned makes only the first failed reconnect attempt of an
	// outage a warning; the others, every ReconnectWait, are debug.
	reconnectWarned atomic.Bool

	mu      sync.Mutex // serialises Subscribe, Unsubscribe and Close
	names   map[string]*natsSubscription
	byNATS  map[*nats.Subscription]*natsSubscription // for the slow consumer callback
	drained chan struct{}                            // closed when Close has stopped every subscription
}

var _ Bus = (*NATS)(nil)

// NewNATS connects to NATS and returns the bus. ctx bounds the wait for the
// first connection: servers that are down are retried until then, so a
// node may start slightly before its NATS server. It fails on invalid
// options, when the metrics cannot be registered on o.Registerer (one bus
// per registry), and when no server accepted the connection before ctx
// ended.
func NewNATS(ctx context.Context, o NATSOptions) (*NATS, error) {
	prefix := cmp.Or(o.Prefix, DefaultNATSPrefix)
	if err := ValidateTopic(prefix); err != nil {
		return nil, fmt.Errorf("bus: NATS prefix: %w", err)
	}
	switch {
	case o.Token != "" && (o.User != "" || o.Password != ""):
		return nil, errors.New("bus: NATS: set a token or a user and password, not both")
	case o.Password != "" && o.User == "":
		return nil, errors.New("bus: NATS: password without a user")
	}
	n := &NATS{
		core:         newCore(o.Logger, o.QueueSize, o.Workers, o.PublishTimeout),
		prefix:       prefix + ".",
		servers:      redactURLs(cmp.Or(o.URL, DefaultNATSURL)),
		pendingMsgs:  natsPendingMsgs,
		pendingBytes: natsPendingBytes,
		connClosed:   make(chan struct{}),
		names:        make(map[string]*natsSubscription),
		byNATS:       make(map[*nats.Subscription]*natsSubscription),
		drained:      make(chan struct{}),
	}
	met, err := newMetrics(o.Registerer, n.dispatchers)
	if err != nil {
		n.cancelHandlers()
		return nil, err
	}
	n.metrics = met
	if n.nc, err = n.connect(ctx, o); err != nil {
		met.unregister(o.Registerer)
		n.cancelHandlers()
		return nil, err
	}
	n.started.Store(true)
	return n, nil
}

// connect dials NATS and waits for the first connection.
func (n *NATS) connect(ctx context.Context, o NATSOptions) (*nats.Conn, error) {
	connected := make(chan struct{})
	var connectedOnce, closedOnce sync.Once
	var (
		mu      sync.Mutex
		lastErr error // of the latest failed attempt, for the error if none succeeds
	)
	opts := []nats.Option{
		nats.Name(cmp.Or(o.Name, DefaultNATSName)),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(cmp.Or(o.ReconnectWait, DefaultReconnectWait)),
		nats.PingInterval(natsPingInterval),
		nats.MaxPingsOutstanding(natsMaxPingsOut),
		nats.ConnectHandler(func(nc *nats.Conn) {
			n.onConnect(nc, "bus: connected to NATS")
			connectedOnce.Do(func() { close(connected) })
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { n.onConnect(nc, "bus: reconnected to NATS") }),
		nats.DisconnectErrHandler(n.onDisconnect),
		nats.ReconnectErrHandler(func(nc *nats.Conn, err error) {
			mu.Lock()
			lastErr = err
			mu.Unlock()
			n.onReconnectErr(err)
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			closedOnce.Do(func() { close(n.connClosed) })
			n.onClosed(nc)
		}),
		nats.ErrorHandler(n.onAsyncError),
	}
	if o.TLS != nil {
		opts = append(opts, nats.Secure(o.TLS))
	}
	if o.User != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.Token != "" {
		opts = append(opts, nats.Token(o.Token))
	}
	nc, err := nats.Connect(cmp.Or(o.URL, DefaultNATSURL), opts...)
	if err != nil {
		return nil, fmt.Errorf("bus: connect to NATS %s: %w", n.servers, err)
	}
	select {
	case <-connected:
	case <-n.connClosed:
		return nil, fmt.Errorf("bus: connect to NATS %s: connection closed: %w", n.servers, cmp.Or(nc.LastError(), nats.ErrConnectionClosed))
	case <-ctx.Done():
		n.closed.Store(true) // a close of our own: not worth an error log
		nc.Close()
		mu.Lock()
		defer mu.Unlock()
		if lastErr != nil {
			return nil, fmt.Errorf("bus: connect to NATS %s: %w (last attempt: %v)", n.servers, ctx.Err(), lastErr)
		}
		return nil, fmt.Errorf("bus: connect to NATS %s: %w", n.servers, ctx.Err())
	}
	if mp := nc.MaxPayload(); mp < MaxPayload+natsHeaderRoom {
		n.log.Warn("bus: NATS server max_payload is below the largest event plus headers; such events will fail with ErrTooLarge (set max_payload: 2MB)",
			"max_payload", mp, "want", MaxPayload+natsHeaderRoom)
	}
	return nc, nil
}

func (n *NATS) onConnect(nc *nats.Conn, msg string) {
	server := redactURL(nc.ConnectedUrl())
	n.server.Store(&server)
	n.reconnectWarned.Store(false)
	n.log.Info(msg, "server", server)
}

func (n *NATS) onDisconnect(_ *nats.Conn, err error) {
	if n.closed.Load() {
		return // our own Close
	}
	var server string
	if p := n.server.Load(); p != nil {
		server = *p
	}
	n.log.Warn("bus: disconnected from NATS, reconnecting", "server", server, "err", err)
}

func (n *NATS) onReconnectErr(err error) {
	if n.reconnectWarned.Swap(true) {
		n.log.Debug("bus: NATS reconnect attempt failed", "servers", n.servers, "err", err)
		return
	}
	n.log.Warn("bus: NATS reconnect attempt failed, retrying", "servers", n.servers, "err", err)
}

func (n *NATS) onClosed(nc *nats.Conn) {
	if n.closed.Load() || !n.started.Load() {
		return // our own Close, or NewNATS returns the error
	}
	// Reconnects never give up, so this is something like an
	// authorization the server no longer accepts.
	n.log.Error("bus: NATS connection closed for good; the bus is unavailable", "servers", n.servers, "err", nc.LastError())
}

// onAsyncError gets what nats.go reports outside any call: slow consumers
// (the client dropped messages for a subscription whose pending buffer was
// full) and errors such as permission violations.
func (n *NATS) onAsyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrSlowConsumer) && sub != nil {
		n.mu.Lock()
		s := n.byNATS[sub]
		n.mu.Unlock()
		if s != nil {
			s.countSlowDrops(sub)
			return
		}
	}
	var subject string
	if sub != nil {
		subject = sub.Subject
	}
	n.log.Warn("bus: NATS error", "nats_subject", subject, "err", err)
}

// dispatchers lists the live subscriptions for the queue depth gauge.
func (n *NATS) dispatchers(yield func(*dispatcher) bool) {
	n.mu.Lock()
	subs := slices.Collect(maps.Values(n.names))
	n.mu.Unlock()
	for _, s := range subs {
		if !yield(s.dispatcher) {
			return
		}
	}
}

// Publish sends ev to every node's matching subscriptions, this node's
// included. It validates and completes ev like the in-memory bus and
// returns once the NATS client has accepted the message: it is buffered,
// not yet acknowledged by the server (core NATS has no acknowledgement).
// Subscribers' queues do not slow it down. ctx is not used: sending never
// waits for a subscriber, and nats.go bounds a blocked write itself.
//
// Errors: ErrClosed after Close; ErrUnavailable while NATS is disconnected
// and nats.go's reconnect buffer is full, or when the connection is gone;
// ErrTooLarge when the server's max_payload is smaller than the message.
func (n *NATS) Publish(_ context.Context, ev Event) error {
	if n.closed.Load() {
		return ErrClosed
	}
	if err := validateEvent(&ev); err != nil {
		return err
	}
	if ev.ID == "" {
		ev.ID = newID()
	}
	if ev.Time.IsZero() {
		ev.Time = n.now().UTC()
	}
	// nats.go copies the payload into its buffer before returning, so the
	// caller may reuse it as with the in-memory bus.
	if err := n.nc.PublishMsg(encodeMsg(n.prefix+ev.Topic, ev)); err != nil {
		return n.publishErr(ev, err)
	}
	n.metrics.published.WithLabelValues(ev.Topic).Inc()
	return nil
}

func (n *NATS) publishErr(ev Event, err error) error {
	switch {
	case n.closed.Load():
		// Close raced with this publish and closed the connection.
		return fmt.Errorf("%w: publish %s (id %s): %w", ErrClosed, ev.Topic, ev.ID, err)
	case errors.Is(err, nats.ErrReconnectBufExceeded):
		return fmt.Errorf("%w: publish %s (id %s): NATS is reconnecting and its reconnect buffer is full: %w",
			ErrUnavailable, ev.Topic, ev.ID, err)
	case errors.Is(err, nats.ErrConnectionClosed):
		return fmt.Errorf("%w: publish %s (id %s): %w", ErrUnavailable, ev.Topic, ev.ID, err)
	case errors.Is(err, nats.ErrMaxPayload):
		return fmt.Errorf("%w: publish %s (id %s): %d payload bytes plus headers exceed the NATS server's max_payload of %d: %w",
			ErrTooLarge, ev.Topic, ev.ID, len(ev.Payload), n.nc.MaxPayload(), err)
	}
	return fmt.Errorf("bus: publish %s (id %s) to NATS: %w", ev.Topic, ev.ID, err)
}

// Subscribe registers h under a name unique on this bus for the topics
// matching subject, published on any node. With Shared the name is also
// the NATS queue group, so it must not contain spaces. Once it returns
// (while connected) the server knows the subscription, so an event any
// node publishes afterwards reaches it; while disconnected the subscription
// starts when the connection is back.
func (n *NATS) Subscribe(subject, name string, h Handler, opts ...SubscribeOption) (Subscription, error) {
	if err := ValidateSubject(subject); err != nil {
		return nil, err
	}
	o, err := n.options(name, h, opts)
	if err != nil {
		return nil, err
	}
	s, err := n.subscribe(subject, name, h, o)
	if err != nil {
		return nil, err
	}
	// Outside mu: a round trip to the server, which must not hold up
	// other subscriptions or Close.
	if n.nc.IsConnected() {
		if err := n.nc.FlushTimeout(n.publishTimeout); err != nil {
			n.log.Warn("bus: NATS did not confirm a subscription in time; it is registered and will start when it does",
				"subscriber", name, "subject", subject, "err", err)
		}
	}
	return s, nil
}

func (n *NATS) subscribe(subject, name string, h Handler, o subscribeOptions) (*natsSubscription, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed.Load() {
		return nil, ErrClosed
	}
	if _, dup := n.names[name]; dup {
		return nil, fmt.Errorf("%w: %q", ErrDuplicateName, name)
	}
	log := n.log.With("subscriber", name, "subject", subject)
	if o.shared {
		log = log.With("shared", true)
	}
	s := &natsSubscription{
		dispatcher: n.newDispatcher(name, h, o, log),
		bus:        n,
		done:       make(chan struct{}),
	}
	wire := n.prefix + subject
	var err error
	if o.shared {
		s.sub, err = n.nc.QueueSubscribe(wire, name, s.receive)
	} else {
		s.sub, err = n.nc.Subscribe(wire, s.receive)
	}
	if err == nil {
		// nats.go calls it once the callback has returned for the last
		// time: after a drain, or when the connection closes.
		s.sub.SetClosedHandler(func(string) { close(s.done) })
		err = s.sub.SetPendingLimits(n.pendingMsgs, n.pendingBytes)
		if err != nil {
			_ = s.sub.Unsubscribe()
		}
	}
	if err != nil {
		s.dispatcher.stop()
		return nil, fmt.Errorf("bus: subscriber %q: subscribe to NATS %s: %w", name, wire, err)
	}
	n.names[name] = s
	n.byNATS[s.sub] = s
	return s, nil
}

// Ping reports nil while connected to a NATS server, ErrClosed after Close,
// and otherwise an error wrapping ErrUnavailable that names the
// connection's state (reconnecting, closed). It reads the client's state
// and does not send anything: nats.go pings the server itself and notices
// a dead connection within about a minute.
func (n *NATS) Ping(context.Context) error {
	if n.closed.Load() {
		return ErrClosed
	}
	if st := n.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("%w: NATS connection %s", ErrUnavailable, strings.ToLower(st.String()))
	}
	return nil
}

// Close stops accepting publishes and subscriptions, drains every NATS
// subscription (what the server already sent is still queued), then
// waits, until ctx is done, for the local queues to drain, and closes the
// connection after sending what Publish buffered. When ctx ends first it
// closes the connection at once, cancels the handlers' context and returns
// ctx's error; the local queues go on draining in the background, and
// calling Close again waits for them. While NATS is unreachable a
// subscription's drain waits about ten seconds for the server (nats.go's
// flush timeout) before giving up, so bound Close with ctx.
func (n *NATS) Close(ctx context.Context) error {
	n.mu.Lock()
	if !n.closed.Load() {
		n.closed.Store(true)
		// names holds subscriptions in the middle of Unsubscribe too,
		// whose drain Close must await.
		subs := slices.Collect(maps.Values(n.names))
		go n.shutdown(subs)
	}
	n.mu.Unlock()
	// Past ctx, nothing more arrives from NATS once the connection is
	// closed, and a delivery waiting for room gives up with the handlers.
	return n.awaitDrain(ctx, n.drained, n.nc.Close)
}

func (n *NATS) shutdown(subs []*natsSubscription) {
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Go(s.stop)
	}
	wg.Wait()
	// A round trip makes sure the server has what Publish buffered before
	// the connection goes; Close above interrupts it if ctx ends.
	if n.nc.IsConnected() {
		if err := n.nc.FlushTimeout(n.publishTimeout); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			n.log.Warn("bus: NATS flush on close", "err", err)
		}
	}
	n.nc.Close()
	close(n.drained)
}

// natsSubscription is one consumer on the NATS bus: the NATS subscription
// that receives its events and the dispatcher that queues and handles them.
type natsSubscription struct {
	*dispatcher
	bus       *NATS
	sub       *nats.Subscription
	done      chan struct{} // closed once the NATS callback has returned for the last time
	slowDrops atomic.Int64  // messages nats.go dropped that are already counted
	halt      sync.Once
}

// receive is the NATS callback. nats.go calls it from one goroutine per
// subscription, in the order the server delivered, which keeps per-key
// order into the dispatcher's queues.
func (s *natsSubscription) receive(msg *nats.Msg) {
	s.countSlowDrops(msg.Sub)
	n := s.bus
	topic, ok := strings.CutPrefix(msg.Subject, n.prefix)
	if !ok {
		s.log.Warn("bus: dropping NATS message outside the bus's prefix", "nats_subject", msg.Subject)
		return
	}
	ev, err := decodeMsg(topic, msg, n.now)
	if err != nil {
		s.log.Warn("bus: dropping malformed NATS message", "nats_subject", msg.Subject, "err", err)
		return
	}
	h := keyHash(ev.Key, ev.Topic)
	if s.offer(ev, h) != offerFull {
		return // queued, or dropped and counted (DropNewest), or stopping
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(n.handlerCtx, n.publishTimeout)
	res := s.wait(ctx, ev, h)
	cancel()
	waited := time.Since(start)
	n.metrics.publishWait.Observe(waited.Seconds())
	if res == offerTimeout {
		// The publisher is elsewhere and cannot be told: log what was
		// lost, one line per event, which a full queue limits to one per
		// publish timeout.
		s.log.Warn("bus: subscriber queue full, event dropped",
			"topic", ev.Topic, "key", ev.Key, "event_id", ev.ID, "waited", waited)
	}
}

// countSlowDrops counts the messages nats.go dropped for sub since the last
// count. It runs on every message and from the slow consumer callback: the
// callback comes once per episode, the messages after it catch up with the
// drops that followed.
func (s *natsSubscription) countSlowDrops(sub *nats.Subscription) {
	total, err := sub.Dropped()
	if err != nil {
		return // closed: nothing more to count
	}
	for {
		last := s.slowDrops.Load()
		if int64(total) <= last {
			return
		}
		if s.slowDrops.CompareAndSwap(last, int64(total)) {
			s.noteDrops(int64(total)-last, "bus: NATS slow consumer, client buffer full, dropping events",
				"pending_limit_msgs", s.bus.pendingMsgs, "pending_limit_bytes", s.bus.pendingBytes)
			return
		}
	}
}

// Unsubscribe stops delivery: the NATS subscription is drained (what the
// server already sent is still queued), then the local queues. The name
// can be reused once it returns.
func (s *natsSubscription) Unsubscribe() {
	s.stop()
	n := s.bus
	n.mu.Lock()
	if n.names[s.name] == s {
		delete(n.names, s.name)
	}
	delete(n.byNATS, s.sub)
	n.mu.Unlock()
}

func (s *natsSubscription) stop() {
	s.halt.Do(func() {
		if err := s.sub.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			s.log.Warn("bus: drain NATS subscription", "err", err)
			_ = s.sub.Unsubscribe()
		}
		// Drain ends on its own (nats.go bounds its round trip), and a
		// closed connection ends every subscription.
		select {
		case <-s.done:
		case <-s.bus.connClosed:
		}
		s.dispatcher.stop()
	})
}

// redactURLs redacts each of a comma-separated list of server URLs.
func redactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		parts[i] = redactURL(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

// redactURL hides a URL's user information whole: NATS accepts a token in
// the user name's place ("nats://TOKEN@host"), which url.URL.Redacted
// would show.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.Host != "" {
		if u.User != nil {
			u.User = url.User("redacted")
		}
		return u.String()
	}
	// "host:port" without a scheme, or unparsable: cut any user part.
	if i := strings.LastIndex(s, "@"); i >= 0 {
		return "redacted@" + s[i+1:]
	}
	return s
}
