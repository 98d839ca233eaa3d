package main

// The in-process mode (-inproc): the push module alone, through its
// public API (New, Routes, Start, Stop), on a real database, with chat
// messages published straight on an in-memory bus. It isolates the
// durable queue from chat, sso, status and HTTP: no presence lookups, no
// display names, no REST sends. Devices are registered through the
// module's routes with locally signed access tokens.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
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

const (
	issuer  = "elph-bench"
	sender  = int64(1)
	convs   = 64 // messages spread over conversations, so the bus handles them in parallel
	kidName = "bench"
)

type keySet map[string]ed25519.PublicKey

func (k keySet) PublicKey(kid string) (ed25519.PublicKey, bool) { p, ok := k[kid]; return p, ok }

func runInproc(o options) error {
	switch {
	case o.n < 1 || o.users < 1 || o.users > 1000 || o.workers < 1 || o.workers > 256 || o.rate < 0:
		return errors.New("-inproc needs -n ≥ 1, 1 ≤ -users ≤ 1000, 1 ≤ -workers ≤ 256, -rate ≥ 0")
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
	fake, p8, err := newFakeAPNs(dir, o.delay)
	if err != nil {
		return err
	}
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
	fmt.Printf("push bench (in-process module): %d pushes (%d messages × %d recipients), %d workers, %s, fake APNs answers in %s, %s\n",
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
			refused, _, problems := fake.refusals()
			return fmt.Errorf("%d of %d pushes arrived within %s (refused by the fake: %d %v)", fake.received.Load(), total, o.timeout, refused, problems)
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(first)
	if enqueuedIn == 0 {
		enqueuedIn = elapsed
	}

	var lat []time.Duration
	for _, a := range fake.since(0) {
		if a.msg >= 1 && a.msg <= int64(messages) {
			lat = append(lat, a.at.Sub(published[a.msg]))
		}
	}
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
	refused, _, _ := fake.refusals()
	if len(sendSecs) > 0 {
		fmt.Printf("mean APNs request: %.2f ms; failures: %.0f; refused by the fake: %d\n",
			sendSecs[0], gauge(reg, "elph_push_failures_total"), refused)
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
