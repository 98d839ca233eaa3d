package systemd

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func listen(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, path
}

func read(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 512)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

func TestNotifyStates(t *testing.T) {
	conn, path := listen(t)
	n := FromEnv(func(k string) string {
		if k == "NOTIFY_SOCKET" {
			return path
		}
		return ""
	})
	if !n.Enabled() {
		t.Fatal("notifier not enabled with NOTIFY_SOCKET set")
	}
	tests := []struct {
		send func() error
		want string
	}{
		{n.Ready, "READY=1\nSTATUS=serving"},
		{func() error { return n.Reloading(1500 * time.Microsecond) }, "RELOADING=1\nMONOTONIC_USEC=1500"},
		{n.Stopping, "STOPPING=1\nSTATUS=draining"},
	}
	for _, tt := range tests {
		if err := tt.send(); err != nil {
			t.Fatal(err)
		}
		if got := read(t, conn); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func TestOutsideSystemdDoesNothing(t *testing.T) {
	n := FromEnv(func(string) string { return "" })
	if n.Enabled() {
		t.Fatal("enabled without NOTIFY_SOCKET")
	}
	if err := n.Ready(); err != nil {
		t.Fatal(err)
	}
	if err := (&Notifier{socket: filepath.Join(t.TempDir(), "absent")}).Ready(); err == nil {
		t.Error("a missing socket must be reported")
	}
}

func TestWatchdogPings(t *testing.T) {
	conn, path := listen(t)
	env := map[string]string{"NOTIFY_SOCKET": path, "WATCHDOG_USEC": strconv.Itoa(20_000)}
	n := FromEnv(func(k string) string { return env[k] })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.RunWatchdog(ctx, func(context.Context) error { return nil })
	if got := read(t, conn); got != "WATCHDOG=1" {
		t.Errorf("got %q", got)
	}
	// A watchdog meant for another process is not ours to ping.
	env["WATCHDOG_PID"] = "1"
	if FromEnv(func(k string) string { return env[k] }).watchdog != 0 {
		t.Error("watchdog taken for another pid")
	}
}
