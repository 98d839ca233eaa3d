package obs_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/elph-server/elph/platform/obs"
)

func TestNewLoggerRedacts(t *testing.T) {
	secrets := []struct{ key, value string }{
		{"password", "pw-hunter2"},
		{"db_password", "pw-dbsecret"},
		{"Passwd", "pw-passwd"},
		{"client_secret", "pw-clientsecret"},
		{"access_token", "pw-accesstoken"},
		{"refreshToken", "pw-refresh"},
		{"Authorization", "pw-bearer"},
		{"cookie", "pw-cookie"},
		{"dsn", "pw-mysql://root:x@db/elph"},
		{"private_key", "pw-privkey"},
	}
	kept := []struct{ key, value string }{
		{"user", "alice"},
		{"path", "/chat/v1/items"},
		{"status", "200"},
	}
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			lv := new(slog.LevelVar)
			log := obs.NewLogger(&buf, format, lv)
			var args []any
			for _, a := range secrets {
				args = append(args, a.key, a.value)
			}
			for _, a := range kept {
				args = append(args, a.key, a.value)
			}
			args = append(args, slog.Group("db", "dsn", "pw-grouped-dsn", "name", "elph"))
			log.With("token", "pw-with-token").WithGroup("req").Info("hello", args...)
			out := buf.String()
			if strings.Count(out, "\n") != 1 {
				t.Fatalf("want one line, got %q", out)
			}
			if strings.Contains(out, "pw-") {
				t.Errorf("a secret reached the log: %s", out)
			}
			for _, a := range kept {
				if !strings.Contains(out, a.value) {
					t.Errorf("kept attr %s=%s missing: %s", a.key, a.value, out)
				}
			}
			if !strings.Contains(out, "elph") || !strings.Contains(out, "hello") {
				t.Errorf("non-secret parts missing: %s", out)
			}
			if format == "json" {
				var m map[string]any
				if err := json.Unmarshal([]byte(out), &m); err != nil {
					t.Fatalf("not JSON: %v: %s", err, out)
				}
				req, _ := m["req"].(map[string]any)
				if req["password"] != "***" || req["user"] != "alice" {
					t.Errorf("req group = %v", req)
				}
				if m["token"] != "***" {
					t.Errorf("token = %v", m["token"])
				}
				if db, _ := req["db"].(map[string]any); db["dsn"] != "***" || db["name"] != "elph" {
					t.Errorf("db group = %v", req["db"])
				}
			} else if !strings.Contains(out, "req.password=***") || !strings.Contains(out, "req.user=alice") {
				t.Errorf("text output: %s", out)
			}
		})
	}
}

func TestNewLoggerLevelVar(t *testing.T) {
	var buf bytes.Buffer
	lv := new(slog.LevelVar)
	lv.Set(slog.LevelWarn)
	log := obs.NewLogger(&buf, "json", lv)

	log.Info("quiet")
	if buf.Len() != 0 {
		t.Fatalf("info logged at warn level: %s", buf.String())
	}
	log.Warn("loud")
	if !strings.Contains(buf.String(), "loud") {
		t.Fatalf("warn missing: %s", buf.String())
	}

	buf.Reset()
	lv.Set(slog.LevelDebug)
	log.Debug("now visible")
	if !strings.Contains(buf.String(), "now visible") {
		t.Errorf("debug not logged after lowering the level: %q", buf.String())
	}

	buf.Reset()
	lv.Set(slog.LevelError)
	log.Warn("hidden again")
	if buf.Len() != 0 {
		t.Errorf("warn logged after raising the level: %s", buf.String())
	}
}

func TestNewLoggerNilLevel(t *testing.T) {
	var buf bytes.Buffer
	log := obs.NewLogger(&buf, "text", nil)
	log.Debug("dropped")
	log.Info("kept")
	if strings.Contains(buf.String(), "dropped") || !strings.Contains(buf.String(), "kept") {
		t.Errorf("nil level should mean info: %q", buf.String())
	}
}
