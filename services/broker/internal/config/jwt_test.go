package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Bad JWT settings stop the broker at start, naming the variable.
func TestValidateJWT(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	jwks := func(c *Config) {
		c.JWTEnabled, c.JWTJWKSURL, c.JWTJWKSIssuer, c.JWTJWKSAudience = true, "https://idp.example/jwks", "https://idp.example", "broker"
	}
	registry := func(c *Config) {
		c.JWTEnabled, c.JWTRegistry, c.JWTProjectID, c.RedisAddrs = true, true, "p", []string{"127.0.0.1:6379"}
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string // "": valid
	}{
		{"off", func(*Config) {}, ""},
		{"registry", registry, ""},
		{"jwks", jwks, ""},
		{"no key source", func(c *Config) { c.JWTEnabled = true }, "BROKER_JWT_ENABLED"},
		{"source without enabled", func(c *Config) { c.JWTJWKSURL = "https://idp.example/jwks" }, "BROKER_JWT_ENABLED"},
		{"registry without redis", func(c *Config) { registry(c); c.RedisAddrs = nil }, "BROKER_JWT_REGISTRY"},
		{"registry without project", func(c *Config) { registry(c); c.JWTProjectID = "" }, "BROKER_JWT_PROJECT_ID"},
		{"negative skew", func(c *Config) { registry(c); c.JWTClockSkew = -time.Second }, "BROKER_JWT_CLOCK_SKEW"},
		{"zero lifetime", func(c *Config) { registry(c); c.JWTMaxLifetime = 0 }, "BROKER_JWT_MAX_LIFETIME"},
		{"max keys", func(c *Config) { registry(c); c.JWTMaxKeys = 0 }, "BROKER_JWT_MAX_KEYS"},
		{"http URL", func(c *Config) { jwks(c); c.JWTJWKSURL = "http://idp.example/jwks" }, "BROKER_JWT_JWKS_URL"},
		{"bad URL", func(c *Config) { jwks(c); c.JWTJWKSURL = "https://[::1" }, "BROKER_JWT_JWKS_URL"},
		{"no host", func(c *Config) { jwks(c); c.JWTJWKSURL = "https:///jwks" }, "BROKER_JWT_JWKS_URL"},
		{"no issuer", func(c *Config) { jwks(c); c.JWTJWKSIssuer = "" }, "BROKER_JWT_JWKS_ISSUER"},
		{"no audience", func(c *Config) { jwks(c); c.JWTJWKSAudience = "" }, "BROKER_JWT_JWKS_AUDIENCE"},
		{"no claim", func(c *Config) { jwks(c); c.JWTJWKSUsernameClaim = "" }, "BROKER_JWT_JWKS_USERNAME_CLAIM"},
		{"refresh", func(c *Config) { jwks(c); c.JWTJWKSRefreshInterval = 0 }, "BROKER_JWT_JWKS_REFRESH_INTERVAL"},
		{"CA file missing", func(c *Config) { jwks(c); c.JWTJWKSCAFile = "/nonexistent/ca.pem" }, "BROKER_JWT_JWKS_CA_FILE"},
		{"CA file not PEM", func(c *Config) { jwks(c); c.JWTJWKSCAFile = notPEM }, "BROKER_JWT_JWKS_CA_FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mod(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want+":")):
				t.Fatalf("got %v, want an error naming %s", err, tc.want)
			}
		})
	}
}
