// Package module is the contract every Elph module fulfils and the
// lifecycle runner that starts and stops them. Modules are plain values
// wired by hand in main: no reflection, no plugin loading, no registry
// hidden in init functions.
package module

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/platform/blob"
	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/store"
)

// Module is one component of the server (sso, chat, status…).
//
// The lifecycle is fixed: the constructor (Spec.New) provisions and
// validates with everything the module needs, Start begins background work
// (consumers, timers) and must not block, Stop ends it within ctx. Routes is
// served both on the module's own listener (at /) and under its prefix on
// the gateway.
type Module interface {
	Name() string
	// Routes is the module's HTTP API, or nil when it has none.
	Routes() http.Handler
	// Topics lists the bus topics the module publishes and consumes, so the
	// wiring can be read and checked in one place.
	Topics() Topics
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// Topics is what a module says about its use of the bus.
type Topics struct {
	Publishes []string
	Consumes  []string
}

// Deps are the shared services handed to every module's constructor.
// Module-specific configuration is captured by the constructor itself.
type Deps struct {
	Logger  *slog.Logger
	DB      *store.DB
	Bus     bus.Bus
	Blob    blob.Store
	Metrics prometheus.Registerer
	// DataDir is the node's state directory.
	DataDir string
}

// Spec describes a module that is built into the binary.
type Spec struct {
	Name string
	// Roles are the node roles that run this module (besides "all", which
	// runs every module).
	Roles []string
	New   func(Deps) (Module, error)
}
