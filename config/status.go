package config

import (
	"fmt"
	"time"
)

// Status configures presence.
type Status struct {
	// AwayAfter is how long a device may be idle (as its client reports)
	// before it counts as away; a user whose every device is idle is away.
	AwayAfter time.Duration `koanf:"away_after"`
	// DeviceTimeout is how long a connected device stays counted after its
	// node last vouched for it; it only matters when a node dies without
	// closing its connections (its users then go offline after this).
	DeviceTimeout time.Duration `koanf:"device_timeout"`
	// MaxWatch bounds how many people one connection may watch.
	MaxWatch int `koanf:"max_watch"`
	// MaxCallDuration ends an "in a call" whose call.ended never came.
	MaxCallDuration time.Duration `koanf:"max_call_duration"`
}

func defaultStatus() Status {
	return Status{AwayAfter: 5 * time.Minute, DeviceTimeout: 90 * time.Second, MaxWatch: 2000, MaxCallDuration: 12 * time.Hour}
}

func (s *Status) validate() Problems {
	var ps Problems
	add := func(key, format string, args ...any) {
		ps = append(ps, Problem{Key: "status." + key, Message: fmt.Sprintf(format, args...)})
	}
	checkDuration(add, "away_after", s.AwayAfter, 10*time.Second, 24*time.Hour)
	checkDuration(add, "device_timeout", s.DeviceTimeout, 15*time.Second, time.Hour)
	if s.MaxWatch < 1 || s.MaxWatch > 100_000 {
		add("max_watch", "%d is outside 1..100000", s.MaxWatch)
	}
	checkDuration(add, "max_call_duration", s.MaxCallDuration, time.Minute, 7*24*time.Hour)
	return ps
}
