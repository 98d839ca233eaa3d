package module

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// Group starts modules in order and stops them in reverse order.
type Group struct {
	log     *slog.Logger
	mods    []Module
	started int
}

// NewGroup returns a group over mods, in start order.
func NewGroup(log *slog.Logger, mods []Module) *Group {
	return &Group{log: log, mods: mods}
}

// Modules are the group's modules in start order.
func (g *Group) Modules() []Module { return g.mods }

// Start starts every module. If one fails, those already started are
// stopped (in reverse) and the first error is returned.
func (g *Group) Start(ctx context.Context) error {
	for _, m := range g.mods {
		if err := m.Start(ctx); err != nil {
			serr := g.Stop(ctx)
			return errors.Join(fmt.Errorf("start module %s: %w", m.Name(), err), serr)
		}
		g.started++
		g.log.Info("module started", "module", m.Name())
	}
	return nil
}

// Stop stops the started modules in reverse order; every module gets its
// Stop call even if an earlier one failed, and all errors are returned.
func (g *Group) Stop(ctx context.Context) error {
	var errs []error
	for i := g.started - 1; i >= 0; i-- {
		m := g.mods[i]
		if err := m.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop module %s: %w", m.Name(), err))
		} else {
			g.log.Info("module stopped", "module", m.Name())
		}
	}
	g.started = 0
	return errors.Join(errs...)
}
