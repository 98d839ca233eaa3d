package main

import (
	"io"
	"time"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/modules/sso"
	"github.com/elph-server/elph/modules/webclient"
	"github.com/elph-server/elph/platform/auth"
	"github.com/elph-server/elph/platform/module"
	"github.com/elph-server/elph/web"
)

// wiring is what the module constructors share beyond module.Deps: the
// configuration and node-wide pieces such as the set of revoked sessions.
type wiring struct {
	cfg         *config.Config
	revocations *auth.Revocations
	out         io.Writer // the terminal, for one-time messages (a generated admin password)
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
				return sso.New(sso.Options{
					Config: w.cfg.SSO, Log: d.Logger, DB: d.DB, Bus: d.Bus, Metrics: d.Metrics,
					Revocations: w.revocations, Out: w.out,
				})
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

// disabled reports modules switched off with modules.<name>.enabled=false.
func disabled(c *config.Config) func(string) bool {
	return func(name string) bool {
		m := c.Modules.ByName(name)
		return m != nil && !m.Enabled
	}
}
