// Package obs is the process's observability: the structured logger, the
// Prometheus registry and the /livez and /readyz health endpoints.
package obs

import (
	"io"
	"log/slog"
	"strings"
)

// secretKeys are attribute names whose values never reach a log line, as a
// last line of defence: code should not log secrets in the first place.
var secretKeys = []string{"password", "passwd", "secret", "token", "authorization", "cookie", "dsn", "private_key"}

// NewLogger returns a slog logger writing text or JSON to w at the level
// held by level (so SIGHUP can change it while the process runs); a nil
// level means info.
func NewLogger(w io.Writer, format string, level *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{ReplaceAttr: redact}
	if level != nil {
		// Only when set: a nil *LevelVar in the Leveler interface is not a
		// nil interface, and slog would call Level on it and panic.
		opts.Level = level
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func redact(_ []string, a slog.Attr) slog.Attr {
	key := strings.ToLower(a.Key)
	for _, s := range secretKeys {
		if strings.Contains(key, s) {
			return slog.String(a.Key, "***")
		}
	}
	return a
}
