package push_test

// Stand-ins for Apple's and Google's push endpoints: HTTP/2 TLS servers
// on loopback that check what the real ones check (protocol, paths,
// authentication, headers, payload shape and size) and answer with the
// real error bodies. Nothing else in these tests is a stand-in.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Identity of the test Apple key and Google service account.
const (
	apnsKeyID  = "ABC123DEFG"
	apnsTeamID = "TEAM123456"
	fcmProject = "elph-test"
	fcmEmail   = "push@elph-test.iam.gserviceaccount.com"
	fcmKeyID   = "0123456789abcdef"
)

// answer is a scripted error answer of a fake; status 0 is success.
type answer struct {
	status     int
	reason     string // APNs reason or FCM errorCode
	retryAfter string
}

// apnsPush is one push the fake APNs accepted.
type apnsPush struct {
	Token, Topic, PushType, CollapseID string
	Priority                           int
	Expiration                         int64
	Payload                            map[string]any
	Size                               int
}

// aps returns the payload's aps dictionary (nil when absent).
func (p apnsPush) aps() map[string]any {
	a, _ := p.Payload["aps"].(map[string]any)
	return a
}

type fakeAPNs struct {
	srv *httptest.Server
	pub *ecdsa.PublicKey

	mu       sync.Mutex
	got      []apnsPush
	requests int
	script   map[string][]answer // by token, consumed in order
	always   map[string]answer   // by token, every time
	problems []string            // what a real APNs would have refused
	hold     chan struct{}       // when set, requests wait for it to close
}

// holdAll makes every request wait until hang is closed (or the client
// gives up): an APNs that stopped answering.
func (f *fakeAPNs) holdAll(hang chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hold = hang
}

func newFakeAPNs(t *testing.T) (*fakeAPNs, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "AuthKey_"+apnsKeyID+".p8")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	f := &fakeAPNs{pub: &key.PublicKey, script: map[string][]answer{}, always: map[string]answer{}}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.EnableHTTP2 = true
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	t.Cleanup(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, p := range f.problems {
			t.Errorf("fake APNs: %s", p)
		}
	})
	return f, path
}

var hexToken = regexp.MustCompile(`^[0-9a-f]{64,200}$`)

func (f *fakeAPNs) refuse(w http.ResponseWriter, status int, reason, problem string) {
	f.mu.Lock()
	f.problems = append(f.problems, problem)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"reason":%q}`, reason)
}

func (f *fakeAPNs) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests++
	hold := f.hold
	f.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
	}
	if r.ProtoMajor != 2 {
		f.refuse(w, http.StatusBadRequest, "BadPath", "request over "+r.Proto+", APNs speaks HTTP/2 only")
		return
	}
	tok, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	if r.Method != http.MethodPost || !ok {
		f.refuse(w, http.StatusNotFound, "BadPath", r.Method+" "+r.URL.Path)
		return
	}
	if !hexToken.MatchString(tok) {
		f.refuse(w, http.StatusBadRequest, "BadDeviceToken", "device token "+tok+" is not lower-case hex")
		return
	}
	// The provider token: an ES256 JWT of the team, signed by the key.
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "bearer ")
	if !ok {
		f.refuse(w, http.StatusForbidden, "MissingProviderToken", "no bearer provider token")
		return
	}
	var claims jwt.MapClaims
	parsed, err := jwt.ParseWithClaims(bearer, &claims, func(tk *jwt.Token) (any, error) {
		if tk.Header["kid"] != apnsKeyID {
			return nil, fmt.Errorf("kid %v", tk.Header["kid"])
		}
		return f.pub, nil
	}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuedAt())
	if err != nil || !parsed.Valid || claims["iss"] != apnsTeamID {
		f.refuse(w, http.StatusForbidden, "InvalidProviderToken", fmt.Sprintf("provider token: %v (iss %v)", err, claims["iss"]))
		return
	}
	if iat, _ := claims.GetIssuedAt(); iat == nil || time.Since(iat.Time) > time.Hour {
		f.refuse(w, http.StatusForbidden, "ExpiredProviderToken", "provider token without a recent iat")
		return
	}
	topic := r.Header.Get("apns-topic")
	pushType := r.Header.Get("apns-push-type")
	prio, _ := strconv.Atoi(r.Header.Get("apns-priority"))
	limit := 4096
	switch {
	case topic == "":
		f.refuse(w, http.StatusBadRequest, "MissingTopic", "no apns-topic")
		return
	case pushType == "voip":
		limit = 5120
		if !strings.HasSuffix(topic, ".voip") {
			f.refuse(w, http.StatusBadRequest, "BadTopic", "voip push on topic "+topic)
			return
		}
	case pushType == "alert" || pushType == "background":
		if strings.HasSuffix(topic, ".voip") {
			f.refuse(w, http.StatusBadRequest, "BadTopic", pushType+" push on topic "+topic)
			return
		}
	default:
		f.refuse(w, http.StatusBadRequest, "InvalidPushType", "apns-push-type "+pushType)
		return
	}
	if prio != 5 && prio != 10 || pushType == "background" && prio != 5 {
		f.refuse(w, http.StatusBadRequest, "BadPriority", fmt.Sprintf("priority %d for %s", prio, pushType))
		return
	}
	exp, err := strconv.ParseInt(r.Header.Get("apns-expiration"), 10, 64)
	if err != nil || exp <= 0 {
		f.refuse(w, http.StatusBadRequest, "BadExpirationDate", "apns-expiration "+r.Header.Get("apns-expiration"))
		return
	}
	if c := r.Header.Get("apns-collapse-id"); len(c) > 64 {
		f.refuse(w, http.StatusBadRequest, "BadCollapseId", "collapse id of "+strconv.Itoa(len(c))+" bytes")
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if len(body) > limit {
		f.refuse(w, http.StatusRequestEntityTooLarge, "PayloadTooLarge", fmt.Sprintf("%d bytes for %s", len(body), pushType))
		return
	}
	var payload map[string]any
	if err := json.Unmarshal(body, &payload); err != nil {
		f.refuse(w, http.StatusBadRequest, "PayloadEmpty", "payload is not a JSON object")
		return
	}
	p := apnsPush{Token: tok, Topic: topic, PushType: pushType, CollapseID: r.Header.Get("apns-collapse-id"),
		Priority: prio, Expiration: exp, Payload: payload, Size: len(body)}
	switch pushType {
	case "alert":
		if _, ok := p.aps()["alert"].(map[string]any); !ok {
			f.refuse(w, http.StatusBadRequest, "PayloadEmpty", "alert push without aps.alert")
			return
		}
	case "background":
		if p.aps()["content-available"] != float64(1) || p.aps()["alert"] != nil {
			f.refuse(w, http.StatusBadRequest, "PayloadEmpty", "background push must be content-available only")
			return
		}
	}

	f.mu.Lock()
	a, scripted := f.always[tok]
	if q := f.script[tok]; !scripted && len(q) > 0 {
		a, scripted, f.script[tok] = q[0], true, q[1:]
	}
	if !scripted || a.status == 0 {
		f.got = append(f.got, p)
	}
	f.mu.Unlock()
	w.Header().Set("apns-id", "7e5b0a53-1c3a-4b6f-9d1e-"+strconv.Itoa(f.requestsNow()))
	if !scripted || a.status == 0 {
		w.WriteHeader(http.StatusOK)
		return
	}
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.status)
	if a.status == http.StatusGone {
		fmt.Fprintf(w, `{"reason":%q,"timestamp":%d}`, a.reason, time.Now().UnixMilli())
		return
	}
	fmt.Fprintf(w, `{"reason":%q}`, a.reason)
}

func (f *fakeAPNs) requestsNow() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

// answer scripts the next answers to token; always answers every time.
func (f *fakeAPNs) answer(token string, as ...answer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.script[token] = append(f.script[token], as...)
}

func (f *fakeAPNs) answerAlways(token string, a answer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.always[token] = a
}

// pushes returns what was accepted so far.
func (f *fakeAPNs) pushes() []apnsPush {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]apnsPush(nil), f.got...)
}

// wait returns once n pushes were accepted.
func (f *fakeAPNs) wait(t testing.TB, n int) []apnsPush {
	t.Helper()
	eventually(t, fmt.Sprintf("APNs accepted %d pushes", n), func() bool { return len(f.pushes()) >= n })
	return f.pushes()
}

// fcmPush is one message the fake FCM accepted.
type fcmPush struct {
	Message struct {
		Token        string `json:"token"`
		Notification *struct {
			Title string `json:"title"`
			Body  string `json:"body"`
		} `json:"notification"`
		Data    map[string]string `json:"data"`
		Android struct {
			Priority     string `json:"priority"`
			TTL          string `json:"ttl"`
			CollapseKey  string `json:"collapse_key"`
			Notification *struct {
				NotificationCount *int `json:"notification_count"`
			} `json:"notification"`
		} `json:"android"`
	} `json:"message"`
	Size int `json:"-"`
}

type fakeFCM struct {
	srv *httptest.Server
	pub *rsa.PublicKey

	mu       sync.Mutex
	issued   map[string]bool
	minted   int
	got      []fcmPush
	requests int
	script   map[string][]answer
	always   map[string]answer
	problems []string
}

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

// testRSAKey is generated once per test binary: it is slow.
func testRSAKey(t testing.TB) *rsa.PrivateKey {
	rsaOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		rsaKey = k
	})
	return rsaKey
}

// newFakeFCM starts the fake and writes a service-account file whose
// token_uri is the fake's token endpoint.
func newFakeFCM(t *testing.T) (*fakeFCM, string) {
	t.Helper()
	key := testRSAKey(t)
	f := &fakeFCM{pub: &key.PublicKey, issued: map[string]bool{}, script: map[string][]answer{}, always: map[string]answer{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/token", f.token)
	mux.HandleFunc("/v1/projects/{project}/{method}", f.send)
	f.srv = httptest.NewUnstartedServer(mux)
	f.srv.EnableHTTP2 = true
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	t.Cleanup(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, p := range f.problems {
			t.Errorf("fake FCM: %s", p)
		}
	})
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	sa, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": fcmProject, "private_key_id": fcmKeyID,
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": fcmEmail, "client_id": "1234567890",
		"auth_uri":  "https://accounts.google.com/o/oauth2/auth",
		"token_uri": f.srv.URL + "/token",
	})
	path := filepath.Join(t.TempDir(), "service-account.json")
	if err := os.WriteFile(path, sa, 0o600); err != nil {
		t.Fatal(err)
	}
	return f, path
}

func (f *fakeFCM) problem(w http.ResponseWriter, status int, code, problem string) {
	f.mu.Lock()
	f.problems = append(f.problems, problem)
	f.mu.Unlock()
	writeFCMError(w, status, code, problem)
}

// writeFCMError answers FCM's error body.
func writeFCMError(w http.ResponseWriter, status int, code, msg string) {
	st := map[int]string{400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
		429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}[status]
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	details := "[]"
	if code != "" {
		details = fmt.Sprintf(`[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":%q}]`, code)
	}
	fmt.Fprintf(w, `{"error":{"code":%d,"message":%q,"status":%q,"details":%s}}`, status, msg, st, details)
}

// token is the OAuth token endpoint: it checks the JWT-bearer assertion
// as Google does and issues an access token.
func (f *fakeFCM) token(w http.ResponseWriter, r *http.Request) {
	oauthError := func(problem string) {
		f.mu.Lock()
		f.problems = append(f.problems, "token endpoint: "+problem)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"error":"invalid_grant","error_description":%q}`, problem)
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		oauthError("want a form POST")
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(err.Error())
		return
	}
	if g := r.PostForm.Get("grant_type"); g != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		oauthError("grant_type " + g)
		return
	}
	var claims jwt.MapClaims
	parsed, err := jwt.ParseWithClaims(r.PostForm.Get("assertion"), &claims, func(tk *jwt.Token) (any, error) {
		if tk.Header["kid"] != fcmKeyID {
			return nil, fmt.Errorf("kid %v", tk.Header["kid"])
		}
		return f.pub, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(fcmEmail), jwt.WithAudience(f.srv.URL+"/token"),
		jwt.WithIssuedAt(), jwt.WithExpirationRequired())
	if err != nil || !parsed.Valid {
		oauthError(fmt.Sprintf("assertion: %v", err))
		return
	}
	iat, _ := claims.GetIssuedAt()
	exp, _ := claims.GetExpirationTime()
	if claims["scope"] != "https://www.googleapis.com/auth/firebase.messaging" || iat == nil || exp.Sub(iat.Time) != time.Hour {
		oauthError(fmt.Sprintf("scope %v, lifetime %v", claims["scope"], exp.Sub(iat.Time)))
		return
	}
	f.mu.Lock()
	f.minted++
	tok := "ya29.test-" + strconv.Itoa(f.minted)
	f.issued[tok] = true
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"access_token":%q,"expires_in":3599,"token_type":"Bearer"}`, tok)
}

// revokeTokens makes every access token issued so far invalid, as an
// early expiry would.
func (f *fakeFCM) revokeTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.issued = map[string]bool{}
}

func (f *fakeFCM) mintedTokens() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.minted
}

func (f *fakeFCM) send(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests++
	f.mu.Unlock()
	if r.ProtoMajor != 2 {
		f.problem(w, http.StatusBadRequest, "", "request over "+r.Proto+", want HTTP/2")
		return
	}
	if r.Method != http.MethodPost || r.PathValue("project") != fcmProject || r.PathValue("method") != "messages:send" {
		f.problem(w, http.StatusNotFound, "", r.Method+" "+r.URL.Path)
		return
	}
	bearer, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	authorized := f.issued[bearer]
	f.mu.Unlock()
	if !authorized {
		// Not a problem of the client: it must refresh and retry.
		writeFCMError(w, http.StatusUnauthorized, "", "Request had invalid authentication credentials.")
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var p fcmPush
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		f.problem(w, http.StatusBadRequest, "INVALID_ARGUMENT", "body: "+err.Error())
		return
	}
	m := p.Message
	size, _ := json.Marshal(struct {
		N any `json:"notification,omitempty"`
		D any `json:"data,omitempty"`
	}{m.Notification, m.Data})
	p.Size = len(size)
	switch {
	case m.Token == "":
		f.problem(w, http.StatusBadRequest, "INVALID_ARGUMENT", "no token")
	case m.Android.Priority != "HIGH" && m.Android.Priority != "NORMAL":
		f.problem(w, http.StatusBadRequest, "INVALID_ARGUMENT", "android.priority "+m.Android.Priority)
	case !regexp.MustCompile(`^[0-9]+(\.[0-9]{1,9})?s$`).MatchString(m.Android.TTL):
		f.problem(w, http.StatusBadRequest, "INVALID_ARGUMENT", "android.ttl "+m.Android.TTL)
	case p.Size > 4096:
		f.problem(w, http.StatusBadRequest, "INVALID_ARGUMENT", fmt.Sprintf("message of %d bytes", p.Size))
	default:
		f.mu.Lock()
		a, scripted := f.always[m.Token]
		if q := f.script[m.Token]; !scripted && len(q) > 0 {
			a, scripted, f.script[m.Token] = q[0], true, q[1:]
		}
		if !scripted || a.status == 0 {
			f.got = append(f.got, p)
		}
		f.mu.Unlock()
		if scripted && a.status != 0 {
			if a.retryAfter != "" {
				w.Header().Set("Retry-After", a.retryAfter)
			}
			writeFCMError(w, a.status, a.reason, "scripted "+a.reason)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		fmt.Fprintf(w, `{"name":"projects/%s/messages/0:%d%%%s"}`, fcmProject, time.Now().UnixNano(), "31bd1c9631bd1c96")
	}
}

func (f *fakeFCM) answer(token string, as ...answer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.script[token] = append(f.script[token], as...)
}

func (f *fakeFCM) answerAlways(token string, a answer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.always[token] = a
}

func (f *fakeFCM) pushes() []fcmPush {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fcmPush(nil), f.got...)
}

func (f *fakeFCM) wait(t testing.TB, n int) []fcmPush {
	t.Helper()
	eventually(t, fmt.Sprintf("FCM accepted %d messages", n), func() bool { return len(f.pushes()) >= n })
	return f.pushes()
}

// apnsToken is a device token of the right shape derived from name.
func apnsToken(name string) string {
	h := sha256.Sum256([]byte(name))
	return hex.EncodeToString(h[:])
}

// fcmToken is an FCM registration token of the usual shape.
func fcmToken(name string) string {
	return "f" + apnsToken(name)[:10] + ":APA91b" + strings.Repeat("Xy_-", 34)
}

// eventually polls cond until it holds or 15 s have passed.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
