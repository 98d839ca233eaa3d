package status

import "context"

// Sweep and PromoteIdle run the periodic jobs once, for tests that move
// the clock instead of waiting.
func (m *Module) Sweep(ctx context.Context) error       { return m.sweep(ctx) }
func (m *Module) PromoteIdle(ctx context.Context) error { return m.promoteIdle(ctx) }
