package push

import (
	"context"
	"strings"
	"time"

	"github.com/elph-server/elph/platform/bus"
)

// SetPollInterval lets tests see retries without waiting a second per
// poll; call it before Start.
func SetPollInterval(m *Module, d time.Duration) { m.pollEvery = d }

// Handle feeds one bus event to the module as its subscriptions would,
// without Start: the restart tests queue pushes on a module that never
// sends them.
func Handle(ctx context.Context, m *Module, ev bus.Event) error {
	switch {
	case ev.Topic == TopicMessageCreated:
		return m.onMessage(ctx, ev)
	case strings.HasPrefix(ev.Topic, "call."):
		return m.onCall(ctx, ev)
	case ev.Topic == TopicCallMissed:
		return m.onMissed(ctx, ev)
	case ev.Topic == TopicSessionRevoked:
		return m.onSessionRevoked(ctx, ev)
	}
	return nil
}
