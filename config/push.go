package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Push configures the push gateway: how notifications reach Apple (APNs)
// and Google (FCM), directly or through a relay node.
type Push struct {
	// Mode is direct (this node talks to APNs and FCM) or relay (this node
	// hands every push to another Elph node's push module, relay.url,
	// typically in the DMZ with internet access).
	Mode  string    `koanf:"mode"`
	APNs  APNs      `koanf:"apns"`
	FCM   FCM       `koanf:"fcm"`
	Relay PushRelay `koanf:"relay"`
	// Workers send queued pushes in parallel. Each waits for Apple's or
	// Google's answer (a round trip over the internet, 50-200 ms), so
	// they bound the rate: 32 send some 150-600 pushes a second; APNs and
	// FCM take many requests at once over one HTTP/2 connection.
	Workers int `koanf:"workers"`
	// MaxAttempts bounds the tries of one push before it is dropped.
	MaxAttempts int `koanf:"max_attempts"`
	// MessageTTL drops a chat or missed-call push not sent within it.
	MessageTTL time.Duration `koanf:"message_ttl"`
	// CallTTL drops an incoming-call (VoIP) push not sent within it: the
	// call has stopped ringing.
	CallTTL time.Duration `koanf:"call_ttl"`
	// RequestTimeout bounds one request to APNs, FCM or the relay.
	RequestTimeout time.Duration `koanf:"request_timeout"`
	// Preview puts the message text in chat pushes; off, the push says
	// only who wrote (the text never leaves for Apple's or Google's servers).
	Preview bool `koanf:"preview"`
}

// APNs is Apple's push service with token (.p8) authentication.
type APNs struct {
	// KeyFile is the .p8 signing key from the Apple developer account;
	// empty disables APNs on this node.
	KeyFile string `koanf:"key_file"`
	KeyID   string `koanf:"key_id"`
	TeamID  string `koanf:"team_id"`
	// URL is the APNs base address: production
	// https://api.push.apple.com or development
	// https://api.sandbox.push.apple.com.
	URL string `koanf:"url"`
}

// FCM is Firebase Cloud Messaging through the HTTP v1 API.
type FCM struct {
	// CredentialsFile is the service account's JSON key; empty disables
	// FCM on this node.
	CredentialsFile string `koanf:"credentials_file"`
	// URL is the FCM base address (https://fcm.googleapis.com).
	URL string `koanf:"url"`
	// TokenURL overrides the OAuth token endpoint; empty means the
	// credentials file's token_uri.
	TokenURL string `koanf:"token_url"`
}

// PushRelay is both sides of relay mode.
type PushRelay struct {
	// URL is the push module of the relay node (mode relay), e.g.
	// https://dmz.corp.example/push/.
	URL string `koanf:"url"`
	// Token is what this node presents to the relay node (mode relay).
	Token string `koanf:"token" secret:"true"`
	// CAFile verifies the relay node's certificate; empty means the system
	// roots.
	CAFile string `koanf:"ca_file"`
	// AcceptToken lets other nodes push through this one when they present
	// it; empty turns the relay endpoint off.
	AcceptToken string `koanf:"accept_token" secret:"true"`
}

func defaultPush() Push {
	return Push{
		Mode:           "direct",
		APNs:           APNs{URL: "https://api.push.apple.com"},
		FCM:            FCM{URL: "https://fcm.googleapis.com"},
		Workers:        32,
		MaxAttempts:    8,
		MessageTTL:     time.Hour,
		CallTTL:        30 * time.Second,
		RequestTimeout: 10 * time.Second,
		Preview:        true,
	}
}

// minRelayToken is the shortest relay token accepted: 128 bits in hex.
const minRelayToken = 32

func (p *Push) validate() Problems {
	var ps Problems
	add := func(key, format string, args ...any) {
		ps = append(ps, Problem{Key: "push." + key, Message: fmt.Sprintf(format, args...)})
	}
	switch p.Mode {
	case "direct":
	case "relay":
		if p.Relay.URL == "" {
			add("relay.url", "is required when push.mode is relay, e.g. https://dmz.corp.example/push/")
		}
		if p.Relay.Token == "" {
			add("relay.token", "is required when push.mode is relay (the relay node's push.relay.accept_token)")
		}
	default:
		add("mode", "%q is not a mode; use direct or relay", p.Mode)
	}
	checkHTTPS := func(key, v string, required bool) {
		if v == "" {
			if required {
				add(key, "must not be empty")
			}
			return
		}
		u, err := url.Parse(v)
		switch {
		case err != nil || u.Host == "":
			add(key, "%q is not an absolute URL", v)
		case u.Scheme != "https":
			add(key, "%q must use https: pushes leave the host", v)
		}
	}
	checkHTTPS("apns.url", p.APNs.URL, true)
	checkHTTPS("fcm.url", p.FCM.URL, true)
	checkHTTPS("fcm.token_url", p.FCM.TokenURL, false)
	checkHTTPS("relay.url", p.Relay.URL, false)
	if p.APNs.KeyFile != "" {
		if len(p.APNs.KeyID) != 10 {
			add("apns.key_id", "%q is not a 10-character APNs key id", p.APNs.KeyID)
		}
		if len(p.APNs.TeamID) != 10 {
			add("apns.team_id", "%q is not a 10-character Apple team id", p.APNs.TeamID)
		}
	}
	for key, tok := range map[string]string{"relay.token": p.Relay.Token, "relay.accept_token": p.Relay.AcceptToken} {
		if tok != "" && len(strings.TrimSpace(tok)) < minRelayToken {
			add(key, "must be at least %d characters (e.g. openssl rand -hex 32)", minRelayToken)
		}
	}
	if p.Workers < 1 || p.Workers > 256 {
		add("workers", "%d is outside 1..256", p.Workers)
	}
	if p.MaxAttempts < 1 || p.MaxAttempts > 100 {
		add("max_attempts", "%d is outside 1..100", p.MaxAttempts)
	}
	checkDuration(add, "message_ttl", p.MessageTTL, time.Minute, 28*24*time.Hour)
	checkDuration(add, "call_ttl", p.CallTTL, 5*time.Second, 10*time.Minute)
	checkDuration(add, "request_timeout", p.RequestTimeout, time.Second, 2*time.Minute)
	return ps
}
