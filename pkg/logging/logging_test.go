package logging

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestJSONUsesCloudLoggingKeys(t *testing.T) {
	var buf bytes.Buffer
	log := New(Options{Level: "debug", Format: FormatJSON, Service: "broker", Out: &buf})
	log.Warn().Str("k", "v").Msg("hello")
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("not JSON: %q: %v", buf.String(), err)
	}
	if m["severity"] != "WARNING" || m["message"] != "hello" || m["service"] != "broker" || m["k"] != "v" {
		t.Fatalf("unexpected line %v", m)
	}
	if _, ok := m["level"]; ok {
		t.Fatalf("level key must be replaced by severity: %v", m)
	}
}

func TestLevelFilters(t *testing.T) {
	var buf bytes.Buffer
	log := New(Options{Level: "error", Format: FormatJSON, Out: &buf})
	log.Info().Msg("dropped")
	if buf.Len() != 0 {
		t.Fatalf("info logged at error level: %q", buf.String())
	}
}

func TestConsoleFormat(t *testing.T) {
	var buf bytes.Buffer
	log := New(Options{Format: FormatConsole, Out: &buf})
	log.Info().Msg("hi there")
	if bytes.HasPrefix(buf.Bytes(), []byte("{")) || !bytes.Contains(buf.Bytes(), []byte("hi there")) {
		t.Fatalf("console output expected, got %q", buf.String())
	}
}

func TestValidate(t *testing.T) {
	for _, l := range []string{"", "trace", "debug", "info", "warn", "WARN", "error"} {
		if err := ValidateLevel(l); err != nil {
			t.Errorf("ValidateLevel(%q): %v", l, err)
		}
	}
	var buf bytes.Buffer
	l := New(Options{Level: "warn", Format: FormatJSON, Out: &buf})
	l.Info().Msg("hidden")
	if buf.Len() != 0 {
		t.Fatal("warn level let info through")
	}
	if ValidateLevel("loud") == nil {
		t.Fatal("ValidateLevel")
	}
	if ValidateFormat("xml") == nil || ValidateFormat("json") != nil {
		t.Fatal("ValidateFormat")
	}
}
