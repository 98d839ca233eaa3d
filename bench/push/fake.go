package main

// The fake APNs: an HTTP/2 TLS server on loopback that checks what Apple
// checks (protocol, path, device token shape, the ES256 provider token of
// the team's key, topic, push type, priority, expiration, payload shape
// and size), as the push module's tests' fake does, and records when each
// push arrives. A provider token is verified once and remembered: apns2
// reuses one for most of an hour, and verifying an ECDSA signature per
// push would take this process's share of the two cores from the server.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Identity of the bench's Apple key (10 characters each, as APNs wants).
const (
	keyID  = "BENCHKEY01"
	teamID = "BENCHTEAM1"
	appID  = "ru.eltex.elph"
)

// arrival is one push the fake accepted.
type arrival struct {
	msg   int64  // the payload's message_id
	token string // the device
	at    time.Time
	conv  string // the payload's conversation_id
	from  string // the payload's sender_id
}

type fakeAPNs struct {
	srv   *httptest.Server
	pub   *ecdsa.PublicKey
	delay time.Duration

	received atomic.Int64 // accepted pushes
	requests atomic.Int64

	mu       sync.Mutex
	bearers  map[string]time.Time // verified provider tokens → their iat
	arrivals []arrival
	refused  map[string]int // by APNs reason
	problems []string       // the first few refusals, for the report
	connErrs int            // TLS handshake and connection errors
	connErr  string         // the first
}

// connErrors counts the HTTP server's error log lines (failed TLS
// handshakes: a node that does not trust the fake) instead of printing
// each.
type connErrors struct{ f *fakeAPNs }

func (c connErrors) Write(p []byte) (int, error) {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	if c.f.connErrs == 0 {
		c.f.connErr = strings.TrimSpace(string(p))
	}
	c.f.connErrs++
	return len(p), nil
}

// connErrors returns how many connection errors there were, and the first.
func (f *fakeAPNs) connErrors() (int, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.connErrs, f.connErr
}

// newFakeAPNs generates the Apple key, writes it as dir/AuthKey_<id>.p8
// and starts the fake.
func newFakeAPNs(dir string, delay time.Duration) (*fakeAPNs, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, "", err
	}
	p8 := filepath.Join(dir, "AuthKey_"+keyID+".p8")
	if err := os.WriteFile(p8, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, "", err
	}
	f := &fakeAPNs{pub: &key.PublicKey, delay: delay, bearers: map[string]time.Time{}, refused: map[string]int{}}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.EnableHTTP2 = true
	f.srv.Config.ErrorLog = log.New(connErrors{f}, "", 0)
	f.srv.StartTLS()
	return f, p8, nil
}

// writeCert writes the fake's certificate (PEM) to path: the node trusts
// it as its only system root through SSL_CERT_FILE.
func (f *fakeAPNs) writeCert(path string) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw}), 0o600)
}

var hexToken = regexp.MustCompile(`^[0-9a-f]{64,200}$`)

func (f *fakeAPNs) refuse(w http.ResponseWriter, status int, reason, problem string) {
	f.mu.Lock()
	f.refused[reason]++
	if len(f.problems) < 5 {
		f.problems = append(f.problems, reason+": "+problem)
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"reason":%q}`, reason)
}

// providerToken verifies bearer (once per distinct token) and returns
// its issue time.
func (f *fakeAPNs) providerToken(bearer string) (time.Time, error) {
	f.mu.Lock()
	iat, ok := f.bearers[bearer]
	f.mu.Unlock()
	if ok {
		return iat, nil
	}
	var claims jwt.MapClaims
	parsed, err := jwt.ParseWithClaims(bearer, &claims, func(tk *jwt.Token) (any, error) {
		if tk.Header["kid"] != keyID {
			return nil, fmt.Errorf("kid %v", tk.Header["kid"])
		}
		return f.pub, nil
	}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuedAt())
	if err != nil || !parsed.Valid || claims["iss"] != teamID {
		return time.Time{}, fmt.Errorf("provider token: %v (iss %v)", err, claims["iss"])
	}
	at, _ := claims.GetIssuedAt()
	if at == nil {
		return time.Time{}, fmt.Errorf("provider token without iat")
	}
	f.mu.Lock()
	f.bearers[bearer] = at.Time
	f.mu.Unlock()
	return at.Time, nil
}

func (f *fakeAPNs) serve(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
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
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "bearer ")
	if !ok {
		f.refuse(w, http.StatusForbidden, "MissingProviderToken", "no bearer provider token")
		return
	}
	iat, err := f.providerToken(bearer)
	if err != nil {
		f.refuse(w, http.StatusForbidden, "InvalidProviderToken", err.Error())
		return
	}
	if time.Since(iat) > time.Hour {
		f.refuse(w, http.StatusForbidden, "ExpiredProviderToken", "provider token issued "+iat.String())
		return
	}
	topic, pushType := r.Header.Get("apns-topic"), r.Header.Get("apns-push-type")
	prio, _ := strconv.Atoi(r.Header.Get("apns-priority"))
	switch {
	case topic != appID:
		f.refuse(w, http.StatusBadRequest, "BadTopic", "apns-topic "+topic)
		return
	case pushType != "alert":
		f.refuse(w, http.StatusBadRequest, "InvalidPushType", "apns-push-type "+pushType+" for a chat message")
		return
	case prio != 10 && prio != 5:
		f.refuse(w, http.StatusBadRequest, "BadPriority", "apns-priority "+r.Header.Get("apns-priority"))
		return
	}
	if exp, err := strconv.ParseInt(r.Header.Get("apns-expiration"), 10, 64); err != nil || exp <= 0 {
		f.refuse(w, http.StatusBadRequest, "BadExpirationDate", "apns-expiration "+r.Header.Get("apns-expiration"))
		return
	}
	if c := r.Header.Get("apns-collapse-id"); len(c) > 64 {
		f.refuse(w, http.StatusBadRequest, "BadCollapseId", "collapse id of "+strconv.Itoa(len(c))+" bytes")
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if len(body) > 4096 {
		f.refuse(w, http.StatusRequestEntityTooLarge, "PayloadTooLarge", strconv.Itoa(len(body))+" bytes")
		return
	}
	var p struct {
		APS struct {
			Alert *struct {
				Title string `json:"title"`
			} `json:"alert"`
		} `json:"aps"`
		Type           string `json:"type"`
		MessageID      string `json:"message_id"`
		ConversationID string `json:"conversation_id"`
		SenderID       string `json:"sender_id"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		f.refuse(w, http.StatusBadRequest, "PayloadEmpty", "payload is not a JSON object")
		return
	}
	id, err := strconv.ParseInt(p.MessageID, 10, 64)
	if p.APS.Alert == nil || p.Type != "message" || err != nil {
		f.refuse(w, http.StatusBadRequest, "PayloadEmpty", "not a chat message alert: "+string(body))
		return
	}
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	a := arrival{msg: id, token: tok, at: time.Now(), conv: p.ConversationID, from: p.SenderID}
	f.mu.Lock()
	f.arrivals = append(f.arrivals, a)
	f.mu.Unlock()
	n := f.received.Add(1)
	w.Header().Set("apns-id", fmt.Sprintf("00000000-0000-0000-0000-%012d", n))
	w.WriteHeader(http.StatusOK)
}

// since returns the arrivals after the first i.
func (f *fakeAPNs) since(i int) []arrival {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]arrival(nil), f.arrivals[min(i, len(f.arrivals)):]...)
}

// refusals returns the refusal counts and the first problems.
func (f *fakeAPNs) refusals() (int, map[string]int, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	out := make(map[string]int, len(f.refused))
	for k, v := range f.refused {
		out[k] = v
		n += v
	}
	return n, out, append([]string(nil), f.problems...)
}
