package main

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/modules/addressbook"
	"github.com/elph-server/elph/modules/chat"
	"github.com/elph-server/elph/modules/files"
	"github.com/elph-server/elph/modules/history"
	"github.com/elph-server/elph/modules/push"
	"github.com/elph-server/elph/modules/sso"
	"github.com/elph-server/elph/modules/status"
	"github.com/elph-server/elph/modules/webclient"
	"github.com/elph-server/elph/platform/auth"
	"github.com/elph-server/elph/platform/module"
	"github.com/elph-server/elph/platform/stream"
	"github.com/elph-server/elph/web"
	"github.com/prometheus/client_golang/prometheus"
)

// wiring is what the module constructors share beyond module.Deps: the
// configuration and node-wide pieces such as the set of revoked sessions.
type wiring struct {
	cfg         *config.Config
	revocations *auth.Revocations
	out         io.Writer // the terminal, for one-time messages (a generated admin password)

	// The modules built so far, for the interfaces others ask of them.
	sso      *sso.Module
	chat     *chat.Module
	files    *files.Module
	status   *status.Module
	book     *addressbook.Module
	verifier *auth.Verifier // without the sso module on this node
	stream   *stream.Stream // every module appends to the one per-user stream
}

func newWiring(cfg *config.Config, out io.Writer) *wiring {
	return &wiring{
		cfg:         cfg,
		revocations: auth.NewRevocations(cfg.SSO.AccessTokenTTL+time.Minute, time.Now),
		out:         out,
	}
}

// specs is the one place where the modules built into the binary are
// listed, with the roles that run them and how each is constructed from its
// configuration section. Adding a module means adding it here.
func (w *wiring) specs() []module.Spec {
	return []module.Spec{
		{
			Name:  sso.Name,
			Roles: []string{"server"},
			New: func(d module.Deps) (module.Module, error) {
				m, err := sso.New(sso.Options{
					Config: w.cfg.SSO, Log: d.Logger, DB: d.DB, Bus: d.Bus, Metrics: d.Metrics,
					Revocations: w.revocations, Out: w.out,
				})
				w.sso = m
				return m, err
			},
		},
		{
			Name:  chat.Name,
			Roles: []string{"server"},
			New: func(d module.Deps) (module.Module, error) {
				v := w.tokenVerifier(d)
				st, err := w.userStream(d)
				if err != nil {
					return nil, err
				}
				m, err := chat.New(chat.Options{
					Log: d.Logger, DB: d.DB, Bus: d.Bus, Stream: st, Verifier: v,
					People: people{store: sso.NewStore(d.DB)}, Files: attachments{files: &w.files},
					Metrics: d.Metrics, MaxMessageBytes: int(w.cfg.Chat.MaxMessageBytes), Retention: w.cfg.Chat.Retention,
				})
				w.chat = m
				return m, err
			},
		},
		{
			Name:  files.Name,
			Roles: []string{"server"},
			New: func(d module.Deps) (module.Module, error) {
				m, err := files.New(files.Options{
					Log: d.Logger, DB: d.DB, Blob: d.Blob, Verifier: w.tokenVerifier(d),
					Access: fileAccess{chat: &w.chat}, Metrics: d.Metrics,
					MaxUploadBytes: int64(w.cfg.Files.MaxUploadBytes), PresignTTL: w.cfg.Files.PresignTTL,
					ThumbnailSize: w.cfg.Files.ThumbnailSize, MaxImagePixels: w.cfg.Files.MaxImagePixels,
				})
				w.files = m
				return m, err
			},
		},
		{
			Name:  history.Name,
			Roles: []string{"server"},
			New: func(d module.Deps) (module.Module, error) {
				// The chat module starts and stops the stream; without chat
				// on this node history records calls but sends no live events.
				var st *stream.Stream
				if w.chat != nil {
					st = w.stream
				}
				return history.New(history.Options{
					Log: d.Logger, DB: d.DB, Bus: d.Bus, Stream: st, Verifier: w.tokenVerifier(d),
					Names:   peerNames{book: &w.book, dir: directory{store: sso.NewStore(d.DB)}},
					Metrics: d.Metrics, Retention: w.cfg.History.Retention,
				})
			},
		},
		{
			Name:  status.Name,
			Roles: []string{"server"},
			New: func(d module.Deps) (module.Module, error) {
				// Devices are the stream's connections, served by chat;
				// without chat on this node status answers REST only.
				var st *stream.Stream
				if w.chat != nil {
					st = w.stream
				}
				m, err := status.New(status.Options{
					Config: w.cfg.Status, Log: d.Logger, DB: d.DB, Bus: d.Bus, Stream: st,
					Verifier: w.tokenVerifier(d), Metrics: d.Metrics,
				})
				w.status = m
				return m, err
			},
		},
		{
			Name:  push.Name,
			Roles: []string{"server"},
			New: func(d module.Deps) (module.Module, error) {
				return push.New(push.Options{
					Config: w.cfg.Push, Log: d.Logger, DB: d.DB, Bus: d.Bus, Verifier: w.tokenVerifier(d),
					Metrics: d.Metrics, Presence: reachability{status: &w.status},
					Names:   directory{store: sso.NewStore(d.DB)},
					Numbers: peerNames{book: &w.book, dir: directory{store: sso.NewStore(d.DB)}},
				})
			},
		},
		{
			Name:  addressbook.Name,
			Roles: []string{"server"},
			New: func(d module.Deps) (module.Module, error) {
				m, err := addressbook.New(addressbook.Options{
					Config: w.cfg.Addressbook, Log: d.Logger, DB: d.DB, Bus: d.Bus, Blob: d.Blob,
					Verifier: w.tokenVerifier(d), Accounts: accounts{store: sso.NewStore(d.DB)}, Metrics: d.Metrics,
				})
				w.book = m
				return m, err
			},
		},
		{
			Name:  webclient.Name,
			Roles: []string{"server"},
			New: func(module.Deps) (module.Module, error) {
				return webclient.New(web.Static()), nil
			},
		},
	}
}

// userStream is the node's per-user event stream, made once. The chat
// module serves its WebSocket and owns its lifecycle.
func (w *wiring) userStream(d module.Deps) (*stream.Stream, error) {
	if w.stream != nil {
		return w.stream, nil
	}
	st, err := stream.New(stream.Options{
		DB: d.DB, Bus: d.Bus, Verifier: w.tokenVerifier(d), Revocations: w.revocations,
		Log: d.Logger.With("component", "stream"), Metrics: d.Metrics,
		Retention: w.cfg.Chat.StreamRetention, MaxPerUser: w.cfg.Chat.StreamMaxEvents,
		OriginPatterns: w.cfg.Chat.OriginPatterns,
		// A message's text may grow six-fold when escaped in JSON
		// (\u003c for <), plus the event around it.
		MaxEventBytes: 6*int(w.cfg.Chat.MaxMessageBytes) + 32<<10,
	})
	w.stream = st
	return st, err
}

// tokenVerifier is the sso module's verifier, or, on a node that runs
// modules without sso, one over the signing keys in the shared database.
// Such a node hears of revoked sessions only through the sso module, so
// there a revoked session keeps working until its access token expires
// (sso.access_token_ttl).
func (w *wiring) tokenVerifier(d module.Deps) *auth.Verifier {
	if w.sso != nil {
		return w.sso.Verifier()
	}
	if w.verifier == nil {
		keys := sso.NewTokens(sso.NewStore(d.DB), sso.TokenOptions{
			Issuer: w.cfg.SSO.Issuer, AccessTTL: w.cfg.SSO.AccessTokenTTL, Rotation: w.cfg.SSO.KeyRotation, Log: d.Logger,
		})
		w.verifier = auth.NewVerifier(auth.VerifierOptions{Keys: keys, Issuer: w.cfg.SSO.Issuer, Revoked: w.revocations})
	}
	return w.verifier
}

// disabled reports modules switched off with modules.<name>.enabled=false.
func disabled(c *config.Config) func(string) bool {
	return func(name string) bool {
		m := c.Modules.ByName(name)
		return m != nil && !m.Enabled
	}
}

// proxyRelay is the push relay of a DMZ proxy node: the push module
// without storage, sending what internal nodes hand it to APNs and FCM. It
// runs when push.relay.accept_token is set (and the push module is not
// disabled); nil otherwise.
func proxyRelay(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (module.Module, error) {
	if cfg.Push.Relay.AcceptToken == "" || !cfg.Modules.ByName(push.Name).Enabled {
		return nil, nil
	}
	m, err := push.New(push.Options{Config: cfg.Push, Log: log, Metrics: reg})
	if err != nil {
		return nil, fmt.Errorf("push relay: %w", err)
	}
	return m, nil
}
