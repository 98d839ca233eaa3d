// Command push measures the push queue: chat messages published on the
// bus become one queued push per recipient device, and the module's
// workers deliver them over HTTP/2 to a fake APNs (TLS, in this process,
// verifying the path and the provider token's presence). It prints the
// pushes per second through the durable queue (first publish → last push
// received) and the distribution of the publish → delivered latency of
// every push.
//
// It runs the push module in-process through its public API (New,
// Routes, Start, Stop) on a real database: a node started from the elph
// binary cannot be pointed at the fake, because no configuration key
// gives APNs a CA to trust (see the report of the push module). Devices
// are registered through the module's REST routes with locally signed
// access tokens.
//
//	go run ./bench/push [-n 20000 -users 100 -workers 16 -rate 0] [-apns-delay 2ms] [-dbdriver mysql -dsn …]
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/bench/benchkit"
	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/migrations"
	"github.com/elph-server/elph/modules/push"
	"github.com/elph-server/elph/platform/auth"
	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/store"
)

type options struct {
	n, users, workers int
	rate              int
	delay             time.Duration
	driver, dsn       string
	timeout           time.Duration
	cpuprofile        string
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 20000, "pushes to deliver (rounded up to whole messages)")
	flag.IntVar(&o.users, "users", 100, "recipients per chat message, one iPhone each (at most 1000)")
	flag.IntVar(&o.workers, "workers", 16, "push.workers")
	flag.IntVar(&o.rate, "rate", 0, "chat messages per second; 0 publishes them all at once (a burst)")
	flag.DurationVar(&o.delay, "apns-delay", 0, "how long the fake APNs takes to answer (Apple's round trip)")
	flag.StringVar(&o.driver, "dbdriver", "sqlite", "sqlite (a temp file) or mysql (with -dsn, a scratch database: its push tables are emptied)")
	flag.StringVar(&o.dsn, "dsn", "", "mysql DSN, e.g. root@tcp(127.0.0.1:3306)/elph_bench")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up waiting for the pushes after this")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the measured phase to this file")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "push bench:", err)
		os.Exit(1)
	}
}

const (
	keyID   = "BENCHKEY01"
	teamID  = "BENCHTEAM1"
	issuer  = "elph-bench"
	appID   = "ru.eltex.elph"
	sender  = int64(1)
	convs   = 64 // messages spread over conversations, so the bus handles them in parallel
	kidName = "bench"
)

type keySet map[string]ed25519.PublicKey

func (k keySet) PublicKey(kid string) (ed25519.PublicKey, bool) { p, ok := k[kid]; return p, ok }

// fakeAPNs accepts every push and records when each message's pushes
// arrive.
type fakeAPNs struct {
	srv      *httptest.Server
	delay    time.Duration
	received atomic.Int64
	refused  atomic.Int64
	mu       sync.Mutex
	arrivals map[int64][]time.Time // by message id
}

func (f *fakeAPNs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 2 || !strings.HasPrefix(r.URL.Path, "/3/device/") || !strings.HasPrefix(r.Header.Get("Authorization"), "bearer ") ||
		r.Header.Get("apns-topic") != appID {
		f.refused.Add(1)
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"reason":"BadPath"}`)
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 8<<10))
	var p struct {
		MessageID string `json:"message_id"`
	}
	_ = json.Unmarshal(body, &p)
	id, _ := strconv.ParseInt(p.MessageID, 10, 64)
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	at := time.Now()
	f.mu.Lock()
	f.arrivals[id] = append(f.arrivals[id], at)
	f.mu.Unlock()
	f.received.Add(1)
	w.Header().Set("apns-id", "00000000-0000-0000-0000-"+fmt.Sprintf("%012d", f.received.Load()))
	w.WriteHeader(http.StatusOK)
}

func run(o options) error {
	switch {
	case o.n < 1 || o.users < 1 || o.users > 1000 || o.workers < 1 || o.workers > 256 || o.rate < 0:
		return errors.New("need -n ≥ 1, 1 ≤ -users ≤ 1000, 1 ≤ -workers ≤ 256, -rate ≥ 0")
	case o.driver != store.DriverSQLite && o.driver != store.DriverMySQL:
		return fmt.Errorf("-dbdriver %q: sqlite or mysql", o.driver)
	case o.driver == store.DriverMySQL && o.dsn == "":
		return errors.New("-dbdriver mysql needs -dsn")
	}
	messages := (o.n + o.users - 1) / o.users
	total := messages * o.users
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "elph-bench-push-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

	// The Apple key and the fake APNs.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	p8 := filepath.Join(dir, "AuthKey_"+keyID+".p8")
	if err := os.WriteFile(p8, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	fake := &fakeAPNs{delay: o.delay, arrivals: make(map[int64][]time.Time, messages)}
	fake.srv = httptest.NewUnstartedServer(fake)
	fake.srv.EnableHTTP2 = true
	fake.srv.StartTLS()
	defer fake.srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(fake.srv.Certificate())

	// The database.
	dsn := o.dsn
	if o.driver == store.DriverSQLite {
		dsn = filepath.Join(dir, "elph.db")
	}
	db, err := store.Open(ctx, store.Options{Driver: o.driver, DSN: dsn, Logger: log})
	if err != nil {
		return err
	}
	defer db.Close()
	fsys, err := migrations.FS(o.driver)
	if err != nil {
		return err
	}
	if _, err := db.Migrate(ctx, fsys); err != nil {
		return err
	}
	for _, table := range []string{"push_queue", "push_devices", "push_call_log"} {
		if _, err := db.ExecContext(ctx, "DELETE FROM "+table); err != nil {
			return err
		}
	}

	// The module.
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	verifier := auth.NewVerifier(auth.VerifierOptions{Keys: keySet{kidName: pub}, Issuer: issuer})
	b, err := bus.NewMemory(bus.MemoryOptions{Logger: log, QueueSize: 4096})
	if err != nil {
		return err
	}
	defer func() { _ = b.Close(context.Background()) }()
	reg := prometheus.NewRegistry()
	mod, err := push.New(push.Options{
		Config: config.Push{
			Mode: push.ModeDirect, APNs: config.APNs{KeyFile: p8, KeyID: keyID, TeamID: teamID, URL: fake.srv.URL},
			Workers: o.workers, MaxAttempts: 8, MessageTTL: time.Hour, CallTTL: 30 * time.Second,
			RequestTimeout: 10 * time.Second, Preview: true,
		},
		Log: log, DB: db, Bus: b, Verifier: verifier, Metrics: reg, RootCAs: roots,
	})
	if err != nil {
		return err
	}
	routes := mod.Routes()

	// One iPhone per recipient, registered through the REST API.
	start := time.Now()
	for u := range o.users {
		user := int64(u + 2)
		if err := register(routes, priv, user); err != nil {
			return fmt.Errorf("register the device of user %d: %w", user, err)
		}
	}
	fmt.Printf("push bench: %d pushes (%d messages × %d recipients), %d workers, %s, fake APNs answers in %s, %s\n",
		total, messages, o.users, o.workers, o.driver, o.delay, rateText(o.rate))
	fmt.Printf("setup: %d devices registered in %.2fs; GOMAXPROCS %d\n", o.users, time.Since(start).Seconds(), runtime.GOMAXPROCS(0))
	if err := mod.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = mod.Stop(context.Background()) }()

	users := make([]int64, 0, o.users+1)
	users = append(users, sender)
	for u := range o.users {
		users = append(users, int64(u+2))
	}
	published := make([]time.Time, messages+1)
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	first := time.Now()
	var tick *time.Ticker
	if o.rate > 0 {
		tick = time.NewTicker(time.Second / time.Duration(o.rate))
		defer tick.Stop()
	}
	for i := 1; i <= messages; i++ {
		if tick != nil {
			<-tick.C
		}
		conv := int64(i%convs + 1)
		payload, _ := json.Marshal(map[string]any{
			"conversation_id": conv, "actor_id": sender, "user_ids": users,
			"data": map[string]any{"conversation_id": conv, "message": map[string]any{
				"id": i, "conversation_id": conv, "sender_id": sender, "kind": "text",
				"body": "bench message " + strconv.Itoa(i), "created_at": time.Now().UTC(),
			}},
		})
		published[i] = time.Now()
		if err := b.Publish(ctx, bus.Event{Topic: push.TopicMessageCreated, Key: strconv.FormatInt(conv, 10), Payload: payload}); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	publishedIn := time.Since(first)

	// Until every push has arrived.
	deadline := time.Now().Add(o.timeout)
	var enqueuedIn time.Duration
	for fake.received.Load() < int64(total) {
		if enqueuedIn == 0 && gauge(reg, "elph_push_enqueued_total") >= float64(total) {
			enqueuedIn = time.Since(first)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d pushes arrived within %s (refused by the fake: %d)", fake.received.Load(), total, o.timeout, fake.refused.Load())
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(first)
	if enqueuedIn == 0 {
		enqueuedIn = elapsed
	}

	var lat []time.Duration
	fake.mu.Lock()
	for id, ats := range fake.arrivals {
		for _, at := range ats {
			lat = append(lat, at.Sub(published[id]))
		}
	}
	fake.mu.Unlock()
	fmt.Printf("published %d messages in %.2fs; %d pushes queued within %.2fs (%.0f/s)\n",
		messages, publishedIn.Seconds(), total, enqueuedIn.Seconds(), float64(total)/enqueuedIn.Seconds())
	fmt.Printf("delivered %d pushes in %.2fs: %.0f pushes/s through the queue\n", total, elapsed.Seconds(), float64(total)/elapsed.Seconds())
	benchkit.Header(os.Stdout)
	benchkit.Row(os.Stdout, "publish → delivered", "ms", benchkit.Millis(lat))
	var sendSecs []float64
	if mfs, err := reg.Gather(); err == nil {
		for _, mf := range mfs {
			if mf.GetName() == "elph_push_send_seconds" {
				for _, m := range mf.GetMetric() {
					h := m.GetHistogram()
					if h.GetSampleCount() > 0 {
						sendSecs = append(sendSecs, h.GetSampleSum()/float64(h.GetSampleCount())*1000)
					}
				}
			}
		}
	}
	if len(sendSecs) > 0 {
		fmt.Printf("mean APNs request: %.2f ms; failures: %.0f; refused by the fake: %d\n",
			sendSecs[0], gauge(reg, "elph_push_failures_total"), fake.refused.Load())
	}
	return nil
}

func rateText(rate int) string {
	if rate == 0 {
		return "all messages at once"
	}
	return strconv.Itoa(rate) + " messages/s"
}

// register posts user's iPhone to the module's routes with a token the
// bench's verifier trusts.
func register(routes http.Handler, priv ed25519.PrivateKey, user int64) error {
	now := time.Now()
	sid := "bench-" + strconv.FormatInt(user, 10)
	claims := auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: issuer, Subject: strconv.FormatInt(user, 10), ID: "jti-" + sid,
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
		},
		SessionID: sid, Login: "bench" + strconv.FormatInt(user, 10), Role: "user",
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = kidName
	signed, err := tok.SignedString(priv)
	if err != nil {
		return err
	}
	token := make([]byte, 32)
	_, _ = rand.Read(token)
	body, _ := json.Marshal(map[string]string{"platform": push.PlatformAPNs, "app_id": appID, "token": hex.EncodeToString(token)})
	req := httptest.NewRequest(http.MethodPost, "/v1/devices", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+signed)
	rec := httptest.NewRecorder()
	routes.ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated {
		return fmt.Errorf("%d %s", rec.Code, strings.TrimSpace(rec.Body.String()))
	}
	return nil
}

// gauge sums every series of a counter or gauge.
func gauge(reg *prometheus.Registry, name string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if g := m.GetGauge(); g != nil {
				sum += g.GetValue()
			} else {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
