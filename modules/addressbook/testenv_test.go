package addressbook_test

// The module-level test environment: a real address book Module on a
// real database of each dialect, the in-memory bus, a local blob store
// in a temp directory, tokens from authtest and the routes on a loopback
// httptest server. The accounts source is a list the test controls (the
// interface the wiring implements over the sso store).

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/modules/addressbook"
	"github.com/elph-server/elph/platform/auth"
	"github.com/elph-server/elph/platform/auth/authtest"
	"github.com/elph-server/elph/platform/blob"
	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/httpx"
	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
)

const (
	alice int64 = 1
	bob   int64 = 2
	admin int64 = 99
)

// accountList is the accounts source of the tests.
type accountList struct {
	mu   sync.Mutex
	list map[int64]addressbook.Account
}

func (a *accountList) EachAccount(_ context.Context, fn func(addressbook.Account) error) error {
	a.mu.Lock()
	list := make([]addressbook.Account, 0, len(a.list))
	for _, acc := range a.list {
		list = append(list, acc)
	}
	a.mu.Unlock()
	for _, acc := range list {
		if err := fn(acc); err != nil {
			return err
		}
	}
	return nil
}

func (a *accountList) Account(_ context.Context, id int64) (addressbook.Account, bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	acc, ok := a.list[id]
	return acc, ok, nil
}

func (a *accountList) set(acc addressbook.Account) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.list[acc.ID] = acc
}

type env struct {
	db       *store.DB
	bus      *bus.Memory
	mod      *addressbook.Module
	dir      *addressbook.Directory
	accounts *accountList
	signer   *authtest.Signer
	reg      *prometheus.Registry
	srv      *httptest.Server
}

func forEachDialect(t *testing.T, accs []addressbook.Account, fn func(t *testing.T, e *env)) {
	t.Helper()
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		fn(t, newEnv(t, db, accs))
	})
}

func newEnv(t *testing.T, db *store.DB, accs []addressbook.Account) *env {
	t.Helper()
	log := storetest.Logger(t)
	e := &env{db: db, signer: authtest.New(t), reg: prometheus.NewRegistry(), accounts: &accountList{list: map[int64]addressbook.Account{}}}
	for _, a := range accs {
		e.accounts.set(a)
	}
	b, err := bus.NewMemory(bus.MemoryOptions{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	e.bus = b
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = b.Close(ctx)
	})
	bs, err := blob.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default().Addressbook
	cfg.MaxPersonal = 3
	e.mod, err = addressbook.New(addressbook.Options{
		Config: cfg, Log: log, DB: db, Bus: b, Blob: bs, Verifier: e.signer.Verifier(),
		Accounts: e.accounts, Metrics: e.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.mod.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.mod.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	e.dir = addressbook.NewDirectory(db, nil)
	r := httpx.NewRouter(httpx.RouterOptions{Listener: "addressbook-test", Logger: log, MaxBodyBytes: 64 << 10})
	r.Mount("/addressbook", e.mod.Routes())
	e.srv = httptest.NewServer(r)
	t.Cleanup(e.srv.Close)
	return e
}

// waitFor polls cond (the accounts sync runs in the background).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (e *env) token(t testing.TB, user int64) string {
	role := "user"
	if user == admin {
		role = auth.RoleAdmin
	}
	return e.signer.Token(t, user, "s", func(c *auth.Claims) { c.Role = role })
}

func (e *env) call(t testing.TB, user int64, method, path string, body any, header ...string) response {
	t.Helper()
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case []byte:
		rd, ct = bytes.NewReader(b), "application/octet-stream"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd, ct = bytes.NewReader(j), "application/json"
	}
	req, err := http.NewRequestWithContext(t.Context(), method, e.srv.URL+"/addressbook"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if user > 0 {
		req.Header.Set("Authorization", "Bearer "+e.token(t, user))
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (r response) want(t testing.TB, status int) response {
	t.Helper()
	if r.status != status {
		t.Fatalf("HTTP %d, want %d: %s", r.status, status, r.body)
	}
	return r
}

func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

type searchResult struct {
	Contacts []addressbook.Contact
	Total    int
}

func (e *env) search(t testing.TB, user int64, query string) searchResult {
	t.Helper()
	var res searchResult
	e.call(t, user, "GET", "/v1/contacts?"+query, nil).want(t, 200).decode(t, &res)
	return res
}
