package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The admin token: checked like the API token, never equal to it, from the environment or a
// file, and a file that does not exist yet is allowed (an optional Secret not created).
func TestAdminToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "admin")
	if err := os.WriteFile(file, []byte("admin-token-from-file-0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		set     func(*Config)
		wantErr string
	}{
		{"none", func(*Config) {}, ""},
		{"env", func(c *Config) { c.AdminToken = "admin-token-0123456789" }, ""},
		{"short", func(c *Config) { c.AdminToken = "short" }, "GATEWAY_ADMIN_TOKEN:"},
		{"same as the API token", func(c *Config) { c.APIToken, c.AdminToken = "same-token-0123456789", "same-token-0123456789" },
			"must differ"},
		{"both", func(c *Config) { c.AdminToken, c.AdminTokenFile = "admin-token-0123456789", file }, "not both"},
		{"file", func(c *Config) { c.AdminTokenFile = file }, ""},
		{"file not there yet", func(c *Config) { c.AdminTokenFile = filepath.Join(dir, "later") }, ""},
		{"timeout", func(c *Config) { c.APITimeout = 0 }, "GATEWAY_API_TIMEOUT"},
		{"no device keys", func(c *Config) { c.JWTMaxKeys = 0 }, "GATEWAY_JWT_MAX_KEYS: must be at least 1"},
	} {
		c := Default()
		tc.set(&c)
		err := c.Validate()
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.wantErr)
		}
	}
}
