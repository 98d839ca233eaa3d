package main

import (
	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/modules/webclient"
	"github.com/elph-server/elph/platform/module"
	"github.com/elph-server/elph/web"
)

// specs is the one place where the modules built into the binary are
// listed, with the roles that run them and how each is constructed from its
// configuration section. Adding a module means adding it here.
func specs(_ *config.Config) []module.Spec {
	return []module.Spec{
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
