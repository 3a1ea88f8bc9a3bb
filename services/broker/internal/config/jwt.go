package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"
)

// JWT is JWT authentication (README, section Security): the MQTT password is a token signed with
// a device's key from the registry in Redis, or with an identity provider's key from its JWKS URL.
type JWT struct {
	// JWTEnabled turns JWT authentication on; it needs JWT_REGISTRY or JWT_JWKS_URL.
	JWTEnabled bool `envconfig:"JWT_ENABLED" default:"false"`
	// JWTRegistry verifies tokens with the device registry in Redis (`broker devices`): the
	// device is the client id, and the token's aud must be JWT_PROJECT_ID. Needs REDIS_ADDRS.
	JWTRegistry bool `envconfig:"JWT_REGISTRY" default:"false"`
	// JWTProjectID is the aud of registry tokens (Cloud IoT Core's project id).
	JWTProjectID string `envconfig:"JWT_PROJECT_ID"`
	// JWTMaxKeys is how many keys `broker devices add` lets a device have.
	JWTMaxKeys int `envconfig:"JWT_MAX_KEYS" default:"3"`
	// JWTClockSkew is the clock difference tolerated on a token's iat, nbf and exp.
	JWTClockSkew time.Duration `envconfig:"JWT_CLOCK_SKEW" default:"1m"`
	// JWTMaxLifetime bounds a token's exp minus iat.
	JWTMaxLifetime time.Duration `envconfig:"JWT_MAX_LIFETIME" default:"24h"`
	// JWTJWKSURL is an identity provider's key set (https); its tokens must carry
	// JWT_JWKS_ISSUER and JWT_JWKS_AUDIENCE.
	JWTJWKSURL string `envconfig:"JWT_JWKS_URL"`
	// JWTJWKSCAFile holds PEM CA certificates the JWKS server's certificate must chain to; empty:
	// the system's roots.
	JWTJWKSCAFile string `envconfig:"JWT_JWKS_CA_FILE"`
	// JWTJWKSIssuer is the iss of the provider's tokens.
	JWTJWKSIssuer string `envconfig:"JWT_JWKS_ISSUER"`
	// JWTJWKSAudience is the aud the provider's tokens must carry (this broker).
	JWTJWKSAudience string `envconfig:"JWT_JWKS_AUDIENCE"`
	// JWTJWKSUsernameClaim is the claim of the provider's tokens that becomes the user name.
	JWTJWKSUsernameClaim string `envconfig:"JWT_JWKS_USERNAME_CLAIM" default:"sub"`
	// JWTJWKSRefreshInterval is how often the key set is fetched again.
	JWTJWKSRefreshInterval time.Duration `envconfig:"JWT_JWKS_REFRESH_INTERVAL" default:"1h"`
	// JWTJWKSRefreshMinInterval bounds the extra fetches that tokens with an unknown kid trigger.
	JWTJWKSRefreshMinInterval time.Duration `envconfig:"JWT_JWKS_REFRESH_MIN_INTERVAL" default:"5m"`
}

// validateJWT checks JWT authentication: a key source when on, none when off, and each source
// complete.
func (c Config) validateJWT() error {
	j := c.JWT
	if !j.JWTEnabled {
		if j.JWTRegistry || j.JWTJWKSURL != "" {
			return bad("JWT_ENABLED", "JWT_REGISTRY or JWT_JWKS_URL is set but JWT_ENABLED is not true")
		}
		return nil
	}
	switch {
	case !j.JWTRegistry && j.JWTJWKSURL == "":
		return bad("JWT_ENABLED", "no key source: set JWT_REGISTRY=true or JWT_JWKS_URL")
	case j.JWTRegistry && len(c.RedisAddrs) == 0:
		return bad("JWT_REGISTRY", "the device registry is in Redis: REDIS_ADDRS is required")
	case j.JWTRegistry && j.JWTProjectID == "":
		return bad("JWT_PROJECT_ID", "required with JWT_REGISTRY (the aud of device tokens)")
	case j.JWTMaxKeys < 1:
		return bad("JWT_MAX_KEYS", "must be at least 1, got %d", j.JWTMaxKeys)
	case j.JWTClockSkew < 0:
		return bad("JWT_CLOCK_SKEW", "must not be negative, got %s", j.JWTClockSkew)
	case j.JWTMaxLifetime <= 0:
		return bad("JWT_MAX_LIFETIME", "must be positive, got %s", j.JWTMaxLifetime)
	}
	if j.JWTJWKSURL == "" {
		return nil
	}
	return c.validateJWKS()
}

// validateJWKS checks the identity provider's settings.
func (c Config) validateJWKS() error {
	j := c.JWT
	u, err := url.Parse(j.JWTJWKSURL)
	switch {
	case err != nil:
		return bad("JWT_JWKS_URL", "%v", err)
	case u.Scheme != "https" || u.Host == "":
		return bad("JWT_JWKS_URL", "must be an https:// URL with a host, got %q", j.JWTJWKSURL)
	case j.JWTJWKSIssuer == "":
		return bad("JWT_JWKS_ISSUER", "required with JWT_JWKS_URL")
	case j.JWTJWKSAudience == "":
		return bad("JWT_JWKS_AUDIENCE", "required with JWT_JWKS_URL")
	case j.JWTJWKSUsernameClaim == "":
		return bad("JWT_JWKS_USERNAME_CLAIM", "must not be empty")
	case j.JWTJWKSRefreshInterval <= 0:
		return bad("JWT_JWKS_REFRESH_INTERVAL", "must be positive, got %s", j.JWTJWKSRefreshInterval)
	case j.JWTJWKSRefreshMinInterval <= 0:
		return bad("JWT_JWKS_REFRESH_MIN_INTERVAL", "must be positive, got %s", j.JWTJWKSRefreshMinInterval)
	}
	if j.JWTJWKSCAFile != "" {
		if _, err := loadCAs(j.JWTJWKSCAFile); err != nil {
			return bad("JWT_JWKS_CA_FILE", "%v", err)
		}
	}
	return nil
}

// JWKSClient is the HTTP client that fetches the key set: TLS 1.2 or later, verified against
// JWT_JWKS_CA_FILE when set.
func (j JWT) JWKSClient() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if j.JWTJWKSCAFile != "" {
		pool, err := loadCAs(j.JWTJWKSCAFile)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{Transport: tr}, nil
}

// loadCAs reads PEM certificates into a pool; a file without one is an error.
func loadCAs(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
