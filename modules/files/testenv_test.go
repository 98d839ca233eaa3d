package files_test

// The module-level test environment: a real files.Module on a real
// database of each dialect (storetest) and a real blob store of each kind
// (a local directory in t.TempDir, a versitygw S3 server from blobtest),
// its routes behind the standard httpx router on a loopback httptest
// server, and access tokens signed with a test Ed25519 key that the
// module's auth.Verifier trusts.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/elph-server/elph/modules/files"
	"github.com/elph-server/elph/platform/auth/authtest"
	"github.com/elph-server/elph/platform/blob"
	"github.com/elph-server/elph/platform/blob/blobtest"
	"github.com/elph-server/elph/platform/httpx"
	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
)

const (
	// testMaxUpload is the modules's upload limit in the tests: above the
	// router's default body limit (64 KiB), so uploads prove that the
	// route raises it.
	testMaxUpload = 1 << 20
)

// The users of the tests.
const (
	owner    int64 = 1 // uploads the files
	stranger int64 = 2 // shares no conversation with the owner
	friend   int64 = 3 // the fake Access lets them read what they are granted
	broken   int64 = 4 // the fake Access fails for them
)

// fakeAccess stands in for the chat module: it lets a user read the files
// a test granted them, and fails for the user broken.
type fakeAccess struct {
	mu     sync.Mutex
	grants map[string]bool
}

var errAccessDown = errors.New("chat database unavailable")

func (a *fakeAccess) allow(userID int64, fileID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.grants == nil {
		a.grants = map[string]bool{}
	}
	a.grants[fmt.Sprint(userID, "/", fileID)] = true
}

func (a *fakeAccess) CanReadFile(_ context.Context, userID int64, fileID string) (bool, error) {
	if userID == broken {
		return false, errAccessDown
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.grants[fmt.Sprint(userID, "/", fileID)], nil
}

// envOptions adjust an environment.
type envOptions struct {
	// noAccess leaves Options.Access nil: only uploaders read their files.
	noAccess bool
	// edit changes the module's options before New.
	edit func(*files.Options)
}

// env is one module on one database and one blob store, served over HTTP.
type env struct {
	backend string // "local" or "s3"
	mod     *files.Module
	db      *store.DB
	blob    blob.Store
	access  *fakeAccess
	reg     *prometheus.Registry
	srv     *httptest.Server
	iss     *authtest.Signer
	// client does not follow redirects, so tests see them.
	client *http.Client

	localDir string           // local: the store's directory
	gw       *blobtest.Server // s3: the server
	bucket   string           // s3: the bucket
}

// forEachEnv runs fn on every combination of database dialect (SQLite,
// MariaDB) and blob store (local, S3), each with a fresh database and an
// empty store.
func forEachEnv(t *testing.T, o envOptions, fn func(t *testing.T, e *env)) {
	t.Helper()
	gw := blobtest.Start(t)
	open := map[string]func(testing.TB) *store.DB{store.DriverSQLite: storetest.OpenSQLite, store.DriverMySQL: storetest.OpenMySQL}
	for _, dialect := range []string{store.DriverSQLite, store.DriverMySQL} {
		t.Run(dialect, func(t *testing.T) {
			for _, backend := range []string{"local", "s3"} {
				t.Run(backend, func(t *testing.T) {
					fn(t, newEnv(t, open[dialect](t), backend, gw, o))
				})
			}
		})
	}
}

func newEnv(t *testing.T, db *store.DB, backend string, gw *blobtest.Server, o envOptions) *env {
	t.Helper()
	e := &env{backend: backend, db: db, reg: prometheus.NewRegistry(), iss: authtest.New(t)}
	switch backend {
	case "local":
		e.localDir = filepath.Join(t.TempDir(), "blobs")
		s, err := blob.NewLocal(e.localDir)
		if err != nil {
			t.Fatal(err)
		}
		e.blob = s
	case "s3":
		e.gw, e.bucket = gw, "files-"+randomHex(t, 6)
		so := gw.Options(e.bucket)
		so.Logger = storetest.Logger(t)
		s, err := blob.NewS3(t.Context(), so)
		if err != nil {
			t.Fatal(err)
		}
		e.blob = s
	}
	opts := files.Options{
		Log: storetest.Logger(t), DB: db, Blob: e.blob, Verifier: e.iss.Verifier(), Metrics: e.reg,
		MaxUploadBytes: testMaxUpload,
	}
	if !o.noAccess {
		e.access = &fakeAccess{}
		opts.Access = e.access
	}
	if o.edit != nil {
		o.edit(&opts)
	}
	m, err := files.New(opts)
	if err != nil {
		t.Fatalf("files.New: %v", err)
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	e.mod = m

	httpMetrics, err := httpx.NewMetrics(e.reg)
	if err != nil {
		t.Fatal(err)
	}
	r := httpx.NewRouter(httpx.RouterOptions{Listener: "files-test", Logger: storetest.Logger(t), Metrics: httpMetrics, MaxBodyBytes: 64 << 10})
	r.Mount("/files", m.Routes())
	e.srv = httptest.NewServer(r)
	t.Cleanup(e.srv.Close)
	e.client = e.srv.Client()
	e.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return e
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// response is an answer of the HTTP API, read whole.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) String() string {
	body := r.Body
	if len(body) > 300 {
		body = body[:300]
	}
	return fmt.Sprintf("%d %q", r.Status, bytes.TrimSpace(body))
}

// wantStatus fails unless r has status.
func (r response) wantStatus(t testing.TB, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("got %s, want status %d", r, status)
	}
}

// wantError checks that r is the standard error body with status and
// code.
func (r response) wantError(t testing.TB, status int, code string) {
	t.Helper()
	var body struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil || body.Error == nil {
		t.Fatalf("want the standard error body %d %s, got %s (%v)", status, code, r, err)
	}
	if r.Status != status || body.Error.Code != code || body.Error.Message == "" {
		t.Fatalf("got %s, want %d %s", r, status, code)
	}
}

// request is one call of the API.
type request struct {
	method string
	path   string // below the server, e.g. "/files/v1/files"
	user   int64  // 0: no token
	body   io.Reader
	header map[string]string
}

func (e *env) do(t testing.TB, rq request) response {
	t.Helper()
	if rq.method == "" {
		rq.method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(t.Context(), rq.method, e.srv.URL+rq.path, rq.body)
	if err != nil {
		t.Fatal(err)
	}
	if rq.user != 0 {
		req.Header.Set("Authorization", "Bearer "+e.iss.Token(t, rq.user, fmt.Sprintf("s-%d", rq.user), nil))
	}
	for k, v := range rq.header {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", rq.method, rq.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", rq.method, rq.path, err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// get is a GET of path by user with extra headers (name, value, …).
func (e *env) get(t testing.TB, user int64, path string, header ...string) response {
	t.Helper()
	h := map[string]string{}
	for i := 0; i+1 < len(header); i += 2 {
		h[header[i]] = header[i+1]
	}
	return e.do(t, request{path: path, user: user, header: h})
}

// fileJSON is the metadata the API answers with.
type fileJSON struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Size        int64     `json:"size"`
	ContentType string    `json:"content_type"`
	SHA256      string    `json:"sha256"`
	OwnerID     int64     `json:"owner_id"`
	CreatedAt   time.Time `json:"created_at"`
	Width       int       `json:"width"`
	Height      int       `json:"height"`
	Thumbnail   bool      `json:"thumbnail"`
}

func (r response) file(t testing.TB) fileJSON {
	t.Helper()
	var f fileJSON
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("decode %s: %v", r, err)
	}
	return f
}

// tryUpload posts data as user with the query string query ("name=…")
// and headers (name, value, …).
func (e *env) tryUpload(t testing.TB, user int64, query string, body io.Reader, header ...string) response {
	t.Helper()
	h := map[string]string{}
	for i := 0; i+1 < len(header); i += 2 {
		h[header[i]] = header[i+1]
	}
	path := "/files/v1/files"
	if query != "" {
		path += "?" + query
	}
	return e.do(t, request{method: http.MethodPost, path: path, user: user, body: body, header: h})
}

// upload stores data as the owner's file name and returns its metadata.
func (e *env) upload(t testing.TB, name string, data []byte, header ...string) fileJSON {
	t.Helper()
	r := e.tryUpload(t, owner, "name="+url.QueryEscape(name), bytes.NewReader(data), header...)
	r.wantStatus(t, http.StatusCreated)
	return r.file(t)
}

// rows counts the rows of the files table.
func (e *env) rows(t testing.TB) int {
	t.Helper()
	var n int
	if err := e.db.GetContext(t.Context(), &n, "SELECT COUNT(*) FROM files"); err != nil {
		t.Fatal(err)
	}
	return n
}

// blobKeys returns the blob keys of file id, as the table holds them.
func (e *env) blobKeys(t testing.TB, id string) (content, thumb string) {
	t.Helper()
	var row struct {
		Blob  string  `db:"blob_key"`
		Thumb *string `db:"thumb_key"`
	}
	if err := e.db.GetContext(t.Context(), &row, "SELECT blob_key, thumb_key FROM files WHERE id = ?", id); err != nil {
		t.Fatalf("blob keys of %s: %v", id, err)
	}
	if row.Thumb != nil {
		thumb = *row.Thumb
	}
	return row.Blob, thumb
}

// objects counts what the blob store holds, looking behind its back: the
// files in the local directory, the objects in the bucket (temporary
// ones of unfinished uploads included).
func (e *env) objects(t testing.TB) int {
	t.Helper()
	n := 0
	switch e.backend {
	case "local":
		err := filepath.WalkDir(e.localDir, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				n++
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	case "s3":
		for o := range e.gw.Client(t).ListObjects(t.Context(), e.bucket, minio.ListObjectsOptions{Recursive: true}) {
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			n++
		}
	}
	return n
}

// counter reads a counter of the env's registry with the given labels
// (name, value, …); 0 when it has not been counted.
func (e *env) counter(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if labelValue(m, labels[i]) != labels[i+1] {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
