package module

import (
	"context"
	"log/slog"
	"time"
)

// Every runs fn each interval until ctx ends: the shape of every module's
// background job (key rotation, retention, directory sync). A failure is
// logged as "<what> failed" and the job tries again at the next tick; an
// error caused by ctx ending is not a failure. Run it in a goroutine the
// module waits for on Stop.
func Every(ctx context.Context, interval time.Duration, log *slog.Logger, what string, fn func(context.Context) error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				log.ErrorContext(ctx, what+" failed", "err", err)
			}
		}
	}
}
