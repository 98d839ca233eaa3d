// Package systemd speaks the sd_notify protocol, so a Type=notify unit
// knows when Elph is ready, reloading or stopping, and its watchdog sees it
// alive. It is a few lines over a unix datagram socket; no library needed.
package systemd

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// Notifier sends states to systemd. The zero value (outside systemd) does
// nothing, so callers never need to ask whether they run under systemd.
type Notifier struct {
	socket   string
	watchdog time.Duration
}

// FromEnv reads NOTIFY_SOCKET and WATCHDOG_USEC from the environment as the
// service manager set them.
func FromEnv(getenv func(string) string) *Notifier {
	n := &Notifier{socket: getenv("NOTIFY_SOCKET")}
	if usec, err := strconv.ParseInt(getenv("WATCHDOG_USEC"), 10, 64); err == nil && usec > 0 {
		// WATCHDOG_PID, when set, names the process meant to ping.
		if pid := getenv("WATCHDOG_PID"); pid == "" || pid == strconv.Itoa(os.Getpid()) {
			n.watchdog = time.Duration(usec) * time.Microsecond
		}
	}
	return n
}

// Enabled reports whether a notify socket is set.
func (n *Notifier) Enabled() bool { return n != nil && n.socket != "" }

// Notify sends one state string ("READY=1", "STOPPING=1", ...).
func (n *Notifier) Notify(state string) error {
	if !n.Enabled() {
		return nil
	}
	addr := &net.UnixAddr{Name: n.socket, Net: "unixgram"}
	if addr.Name[0] == '@' {
		// An abstract socket: the leading @ stands for a NUL byte.
		addr.Name = "\x00" + addr.Name[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return fmt.Errorf("sd_notify %s: %w", n.socket, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %s: %w", n.socket, err)
	}
	return nil
}

// Ready tells systemd start-up is done.
func (n *Notifier) Ready() error { return n.Notify("READY=1\nSTATUS=serving") }

// Reloading tells systemd a reload began; MONOTONIC_USEC is required by
// Type=notify-reload and harmless otherwise.
func (n *Notifier) Reloading(now time.Duration) error {
	return n.Notify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", now.Microseconds()))
}

// Stopping tells systemd shutdown began.
func (n *Notifier) Stopping() error { return n.Notify("STOPPING=1\nSTATUS=draining") }

// RunWatchdog pings the watchdog at half its interval until ctx ends. alive
// is asked first, so a process that cannot serve is not kept alive.
func (n *Notifier) RunWatchdog(ctx context.Context, alive func(context.Context) error) {
	if !n.Enabled() || n.watchdog == 0 {
		return
	}
	t := time.NewTicker(n.watchdog / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if alive(ctx) == nil {
				_ = n.Notify("WATCHDOG=1")
			}
		}
	}
}
