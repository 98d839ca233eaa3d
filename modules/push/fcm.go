package push

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/elph-server/elph/config"
)

// fcmScope is the OAuth scope of the FCM HTTP v1 API.
const fcmScope = "https://www.googleapis.com/auth/firebase.messaging"

// serviceAccount is the part of a Google service-account JSON key that
// FCM needs.
type serviceAccount struct {
	Type         string `json:"type"`
	ProjectID    string `json:"project_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	ClientEmail  string `json:"client_email"`
	TokenURI     string `json:"token_uri"`
}

// fcmClient sends through the FCM HTTP v1 API with an OAuth access token
// minted from the service account (JWT-bearer grant) and cached until
// shortly before it expires.
type fcmClient struct {
	http     *http.Client
	sendURL  string
	tokenURL string
	email    string
	keyID    string
	key      *rsa.PrivateKey

	mu     sync.Mutex
	access string
	expiry time.Time
}

func newFCM(c config.FCM, roots *x509.CertPool, timeout time.Duration) (*fcmClient, error) {
	const key = "push.fcm.credentials_file"
	b, err := os.ReadFile(c.CredentialsFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	var sa serviceAccount
	if err := json.Unmarshal(b, &sa); err != nil {
		return nil, fmt.Errorf("%s: %s is not a service-account JSON key: %v", key, c.CredentialsFile, err)
	}
	switch {
	case sa.Type != "service_account":
		return nil, fmt.Errorf("%s: %s has type %q, want \"service_account\"", key, c.CredentialsFile, clip(sa.Type))
	case sa.ProjectID == "" || strings.ContainsAny(sa.ProjectID, "/?#% "):
		return nil, fmt.Errorf("%s: %s has no usable project_id", key, c.CredentialsFile)
	case sa.ClientEmail == "":
		return nil, fmt.Errorf("%s: %s has no client_email", key, c.CredentialsFile)
	}
	rsaKey, err := parseRSAKey(sa.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: private_key: %w", key, c.CredentialsFile, err)
	}
	tokenURL := c.TokenURL
	if tokenURL == "" {
		tokenURL = sa.TokenURI
	}
	if u, err := url.Parse(tokenURL); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%s: the token endpoint %q (token_uri, or push.fcm.token_url) is not an https URL", key, clip(tokenURL))
	}
	base, err := url.Parse(c.URL)
	if err != nil || base.Host == "" {
		return nil, fmt.Errorf("push.fcm.url: %q is not an absolute URL", c.URL)
	}
	return &fcmClient{
		http:     httpClient(roots, timeout, false),
		sendURL:  base.JoinPath("v1", "projects", sa.ProjectID, "messages:send").String(),
		tokenURL: tokenURL, email: sa.ClientEmail, keyID: sa.PrivateKeyID, key: rsaKey,
	}, nil
}

func parseRSAKey(p string) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode([]byte(p))
	if block == nil {
		return nil, errors.New("not a PEM key")
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, errors.New("not an RSA key")
		}
		return rk, nil
	}
	k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("not a PKCS#8 or PKCS#1 RSA key")
	}
	return k, nil
}

// token returns a cached access token, or mints one. stale is a token
// FCM refused: it is not returned again.
func (c *fcmClient) token(ctx context.Context, stale string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Wall-clock time: Google checks iat and exp against its own.
	now := time.Now()
	if c.access != "" && c.access != stale && now.Before(c.expiry) {
		return c.access, nil
	}
	claims := jwt.MapClaims{
		"iss": c.email, "scope": fcmScope, "aud": c.tokenURL,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	if c.keyID != "" {
		t.Header["kid"] = c.keyID
	}
	assertion, err := t.SignedString(c.key)
	if err != nil {
		return "", fmt.Errorf("sign the token request: %w", err)
	}
	form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {assertion}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("token request: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		_ = json.Unmarshal(body, &e)
		return "", fmt.Errorf("token endpoint answered %d %s %s", resp.StatusCode, clip(e.Error), clip(e.Description))
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		return "", errors.New("token endpoint answered without an access_token")
	}
	life := time.Duration(tr.ExpiresIn) * time.Second
	if life <= 0 || life > 24*time.Hour {
		life = time.Hour
	}
	// Renew a minute early (or halfway through a short life).
	c.access, c.expiry = tr.AccessToken, now.Add(life-min(time.Minute, life/2))
	return c.access, nil
}

// fcmError is FCM's error body.
type fcmError struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []struct {
			Type      string `json:"@type"`
			ErrorCode string `json:"errorCode"`
		} `json:"details"`
	} `json:"error"`
}

// fcmCodes are the error codes FCM documents; others are labelled
// "other".
var fcmCodes = map[string]bool{
	"UNSPECIFIED_ERROR": true, "INVALID_ARGUMENT": true, "UNREGISTERED": true, "SENDER_ID_MISMATCH": true,
	"QUOTA_EXCEEDED": true, "UNAVAILABLE": true, "INTERNAL": true, "THIRD_PARTY_AUTH_ERROR": true,
	"UNAUTHENTICATED": true, "PERMISSION_DENIED": true, "NOT_FOUND": true, "RESOURCE_EXHAUSTED": true,
}

func (c *fcmClient) send(ctx context.Context, it item, now time.Time) result {
	body, err := renderFCM(it, now)
	if errors.Is(err, errTooLarge) {
		return drop(dropPayload, reasonPayload, "the payload exceeds the FCM limit")
	}
	if err != nil {
		return drop(dropInvalid, reasonOther, err.Error())
	}
	stale := ""
	for attempt := 0; ; attempt++ {
		tok, err := c.token(ctx, stale)
		if err != nil {
			if ctx.Err() != nil {
				return transportFailure(ctx, err)
			}
			return retry(reasonAuth, "FCM OAuth: "+err.Error(), 0)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.sendURL, bytes.NewReader(body))
		if err != nil {
			return drop(dropInvalid, reasonOther, err.Error())
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		resp, err := c.http.Do(req)
		if err != nil {
			return transportFailure(ctx, err)
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 {
			stale = tok // expired or revoked early: mint a new one, once
			continue
		}
		return classifyFCM(resp.StatusCode, b, parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()))
	}
}

// classifyFCM maps an FCM answer to what the queue does with the push.
func classifyFCM(status int, body []byte, after time.Duration) result {
	if status == http.StatusOK {
		return sent()
	}
	var e fcmError
	_ = json.Unmarshal(body, &e)
	code := e.Error.Status
	for _, d := range e.Error.Details {
		if strings.HasSuffix(d.Type, "google.firebase.fcm.v1.FcmError") && d.ErrorCode != "" {
			code = d.ErrorCode
		}
	}
	label := code
	switch {
	case label == "":
		label = fmt.Sprintf("http_%d", status)
	case !fcmCodes[label]:
		label = reasonOther
	}
	detail := fmt.Sprintf("FCM %d %s: %s", status, clip(code), clip(e.Error.Message))
	switch {
	case code == "UNREGISTERED", code == "SENDER_ID_MISMATCH":
		return invalid(label, detail)
	case code == "INVALID_ARGUMENT", code == "" && status == http.StatusBadRequest:
		return drop(dropRejected, label, detail)
	case code == "QUOTA_EXCEEDED", code == "UNAVAILABLE", code == "INTERNAL", code == "THIRD_PARTY_AUTH_ERROR",
		code == "UNAUTHENTICATED", code == "PERMISSION_DENIED",
		status == http.StatusTooManyRequests, status >= 500:
		return retry(label, detail, after)
	case status >= 400 && status < 500:
		return drop(dropRejected, label, detail)
	default:
		return retry(label, detail, after)
	}
}
