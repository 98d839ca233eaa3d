package addressbook

import "context"

// Follow applies the change log to the index now, for tests that write
// through another Directory (as the import command does).
func (m *Module) Follow(ctx context.Context) error { return m.follow(ctx) }
