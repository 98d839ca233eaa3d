package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The shipped unit must pass systemd's own checks: `verify` (syntax,
// executables, directives) and `security --offline` with an exposure score
// no worse than 2.0 of 10 ("OK").
func TestSystemdUnit(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("ELPH_REQUIRE_SERVICES") == "1" {
			t.Fatal("systemd-analyze not found (apt-get install systemd)")
		}
		t.Skip("systemd-analyze not found; install systemd to check deploy/elph.service")
	}
	unit, err := os.ReadFile("deploy/elph.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "User=elph", "ProtectSystem=strict", "CAP_NET_BIND_SERVICE", "StateDirectory=elph", "ConfigurationDirectory=elph", "/etc/elph/elph.yaml"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %s", want)
		}
	}
	// Point the unit at the binary under test so verify can check it.
	path := filepath.Join(t.TempDir(), "elph.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/bin/elph", elphBin)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sa, "verify", path).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err := exec.Command(sa, "security", "--offline=true", "--threshold=20", path).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: exposure above 2.0: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Overall exposure level") {
		t.Errorf("no exposure score:\n%s", out)
	}
}
