// Command sso measures the sso module from outside: logins per second
// (argon2id password checks, session and token issue), token
// verifications per second (signature only, no database), and refresh
// exchanges per second (a rotation in the database each). It starts
// `elph serve --all`, creates users through the admin API and drives the
// load from this process over loopback, for a bounded time per phase.
package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elph-server/elph/bench/benchkit"
)

const adminPassword = "bench-admin-password-1"

func main() {
	bin := flag.String("bin", "./bin/elph", "elph binary to measure")
	users := flag.Int("users", 50, "accounts to create")
	conc := flag.Int("c", 8, "concurrent clients")
	dur := flag.Duration("d", 5*time.Second, "duration of each phase")
	viaGateway := flag.Bool("gateway", false, "go through the TLS gateway instead of the module's own loopback port")
	flag.Parse()
	if _, err := os.Stat(*bin); err != nil {
		fail(fmt.Errorf("build the binary first (make build): %w", err))
	}
	n, err := benchkit.Start(*bin, []string{"serve", "--all"},
		"ELPH_SSO_INITIAL_ADMIN_PASSWORD="+adminPassword, "ELPH_DATABASE_MAX_OPEN_CONNS=8")
	if err != nil {
		fail(err)
	}
	if _, err := n.WaitReady(60 * time.Second); err != nil {
		fail(err)
	}
	defer func() {
		if _, err := n.Stop(30 * time.Second); err != nil {
			fmt.Fprintln(os.Stderr, "sso bench:", err)
		}
	}()

	base := "http://" + n.Env("ELPH_MODULES_SSO_LISTEN")
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: *conc * 2}}
	if *viaGateway {
		base = "https://" + n.Gateway + "/sso"
		client.Transport = &http.Transport{MaxIdleConnsPerHost: *conc * 2, ForceAttemptHTTP2: true,
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // loopback, self-signed
	}
	c := &api{base: base, http: client}

	admin, err := c.login("admin", adminPassword)
	if err != nil {
		fail(fmt.Errorf("admin login: %w", err))
	}
	for i := range *users {
		body := map[string]any{"login": fmt.Sprintf("bench%04d", i), "password": password(i), "display_name": fmt.Sprintf("Bench User %d", i)}
		if err := c.call("POST", "/v1/users", admin.AccessToken, body, nil, http.StatusCreated); err != nil {
			fail(fmt.Errorf("create user %d: %w", i, err))
		}
	}
	fmt.Printf("sso bench: %s, %d users, %d clients, %s per phase, via %s\n\n", *bin, *users, *conc, *dur, base)

	var mu sync.Mutex
	var tokens []tokenPair
	logins := phase(*conc, *dur, func(w int) error {
		i := rand.IntN(*users)
		t, err := c.login(fmt.Sprintf("bench%04d", i), password(i))
		if err == nil {
			mu.Lock()
			if len(tokens) < 1000 {
				tokens = append(tokens, t)
			}
			mu.Unlock()
		}
		return err
	})
	if len(tokens) == 0 {
		fail(fmt.Errorf("no login succeeded"))
	}
	verifies := phase(*conc, *dur, func(w int) error {
		t := tokens[rand.IntN(len(tokens))]
		return c.call("GET", "/v1/introspect", t.AccessToken, nil, nil, http.StatusOK)
	})
	// Each client walks its own session's refresh chain.
	chains := make([]tokenPair, *conc)
	for w := range chains {
		chains[w] = tokens[w%len(tokens)]
		if w >= len(tokens) {
			i := w % *users
			if chains[w], err = c.login(fmt.Sprintf("bench%04d", i), password(i)); err != nil {
				fail(err)
			}
		}
	}
	refreshes := phase(*conc, *dur, func(w int) error {
		var next tokenPair
		if err := c.call("POST", "/v1/token", "", map[string]string{"refresh_token": chains[w].RefreshToken}, &next, http.StatusOK); err != nil {
			return err
		}
		chains[w] = next
		return nil
	})
	rss, _ := n.RSSKiB()

	fmt.Printf("%-28s %10s %8s\n", "phase", "ops/s", "errors")
	for _, p := range []struct {
		name string
		r    result
	}{{"login (argon2id)", logins}, {"verify (introspect)", verifies}, {"refresh (rotation)", refreshes}} {
		fmt.Printf("%-28s %10.1f %8d\n", p.name, float64(len(p.r.lat))/p.r.took.Seconds(), p.r.errors)
	}
	fmt.Println()
	benchkit.Header(os.Stdout)
	benchkit.Row(os.Stdout, "login latency", "ms", benchkit.Millis(logins.lat))
	benchkit.Row(os.Stdout, "verify latency", "ms", benchkit.Millis(verifies.lat))
	benchkit.Row(os.Stdout, "refresh latency", "ms", benchkit.Millis(refreshes.lat))
	fmt.Printf("\nserver RSS after the run: %.1f MiB\n", float64(rss)/1024)
}

func password(i int) string { return fmt.Sprintf("bench-password-%06d", i) }

type result struct {
	lat    []time.Duration
	errors int64
	took   time.Duration
}

// phase runs op from conc workers until d has passed and collects the
// latency of each successful call.
func phase(conc int, d time.Duration, op func(worker int) error) result {
	var (
		mu   sync.Mutex
		res  result
		errs atomic.Int64
		wg   sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []time.Duration
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := op(w); err != nil {
					if errs.Add(1) == 1 {
						fmt.Fprintln(os.Stderr, "first error:", err)
					}
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			res.lat = append(res.lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.took, res.errors = time.Since(start), errs.Load()
	return res
}

type tokenPair struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

type api struct {
	base string
	http *http.Client
}

func (a *api) login(login, pw string) (tokenPair, error) {
	var t tokenPair
	err := a.call("POST", "/v1/login", "", map[string]string{"login": login, "password": pw, "device": "bench"}, &t, http.StatusOK)
	return t, err
}

func (a *api) call(method, path, token string, body, out any, want int) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "sso bench:", err)
	os.Exit(1)
}
