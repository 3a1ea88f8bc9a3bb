// Package config holds the health gateway's configuration, read from the environment (prefix
// GATEWAY_).
//
// Every field documents its default in the `default` tag; README's configuration table lists them.
// Validate names the environment variable of the first bad field, so a bad value stops the gateway
// at start with a message an operator can act on.
package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/mcloudtt/mcloudtt/pkg/cli"
	"github.com/mcloudtt/mcloudtt/pkg/logging"
	"github.com/mcloudtt/mcloudtt/pkg/redisconn"
	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

// Prefix is the environment prefix of every setting: GATEWAY_HTTP_ADDR and so on.
const Prefix = "GATEWAY"

// Config is the gateway's whole configuration. Each field's default is in its tag.
type Config struct {
	// HTTPAddr is where /healthz, /readyz, /metrics, the JSON API and the status page are served.
	HTTPAddr string `envconfig:"HTTP_ADDR" default:":8090"`
	// LogLevel is trace, debug, info, warn or error.
	LogLevel string `envconfig:"LOG_LEVEL" default:"info"`
	// LogFormat is auto (console on a terminal, JSON otherwise), json or console.
	LogFormat string `envconfig:"LOG_FORMAT" default:"auto"`
	// ShutdownTimeout bounds the graceful stop after SIGTERM.
	ShutdownTimeout time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"10s"`

	// ID names the gateway on the bus and in its probe topics. Default: "gateway-" and the host
	// name (the pod name in Kubernetes), so it never equals a broker's id on the same host.
	ID string `envconfig:"ID"`
	// RedisAddrs are the Redis addresses of the cluster bus (comma-separated; several mean a Redis
	// Cluster), where the heartbeats are read.
	RedisAddrs []string `envconfig:"REDIS_ADDRS" default:"127.0.0.1:6379"`
	// Env is how to log in to Redis and whether to speak TLS: REDIS_USERNAME, REDIS_PASSWORD or
	// REDIS_PASSWORD_FILE, REDIS_TLS, REDIS_TLS_CA_FILE, REDIS_TLS_SERVER_NAME, REDIS_TLS_CERT_FILE
	// and REDIS_TLS_KEY_FILE (see package redisconn).
	redisconn.Env

	// HeartbeatInterval is how often members send heartbeats (BROKER_HEARTBEAT_INTERVAL), and how
	// often the gateway sends its own.
	HeartbeatInterval time.Duration `envconfig:"HEARTBEAT_INTERVAL" default:"1s"`
	// MissedHeartbeats is how many heartbeat intervals may pass without one before a member is down.
	MissedHeartbeats int `envconfig:"MISSED_HEARTBEATS" default:"3"`
	// ForgetAfter is how long a down member stays listed (red, and probed) before the gateway
	// forgets it, as after a scale-down.
	ForgetAfter time.Duration `envconfig:"FORGET_AFTER" default:"2m"`

	// ProbeInterval is how often every pair of the ring is probed.
	ProbeInterval time.Duration `envconfig:"PROBE_INTERVAL" default:"2s"`
	// ProbeTimeout is how long a probe message may take from replica A to replica B.
	ProbeTimeout time.Duration `envconfig:"PROBE_TIMEOUT" default:"1s"`
	// FailAfter is how long a failure (of a pair, a member or an adapter's lag) must last before it
	// turns red.
	FailAfter time.Duration `envconfig:"FAIL_AFTER" default:"10s"`
	// RecoverAfter is how long a red pair or member must be healthy again before it turns green.
	RecoverAfter time.Duration `envconfig:"RECOVER_AFTER" default:"10s"`
	// AdapterMaxLag is the export lag (age of the oldest entry not yet in BigQuery) beyond which an
	// adapter fails; 0 only shows the lag.
	AdapterMaxLag time.Duration `envconfig:"ADAPTER_MAX_LAG" default:"60s"`

	// APIToken, when set, is required by the status page and the JSON API (Authorization: Bearer
	// <token>, or a browser's Basic authentication with the token as password); /healthz,
	// /readyz and /metrics stay open. At least 16 characters. Empty (and no APITokenFile): the
	// page and API answer anyone who reaches HTTPAddr, so keep it cluster-internal.
	APIToken string `envconfig:"API_TOKEN"`
	// APITokenFile holds the token instead (a mounted Kubernetes Secret); it is read again when
	// the file changes, so a rotated Secret takes effect without a restart.
	APITokenFile string `envconfig:"API_TOKEN_FILE"`

	// AdminToken, when set, is the token of the admin role: everything the API token allows, and
	// the management API's changes (kick, ban, retained deletes, publish). At least 16
	// characters, different from the API token. Empty (and no AdminTokenFile): every change is
	// refused (403), whatever token a request carries.
	AdminToken string `envconfig:"ADMIN_TOKEN"`
	// AdminTokenFile holds the admin token instead (a mounted Secret), read again when it changes.
	// A file that does not exist yet is allowed (an optional Secret not created): changes are
	// refused until it appears.
	AdminTokenFile string `envconfig:"ADMIN_TOKEN_FILE"`
	// APITimeout bounds how long the management API waits for the broker replicas' answers; a
	// replica that has not answered by then is named in the answer as unreachable.
	APITimeout time.Duration `envconfig:"API_TIMEOUT" default:"3s"`
	// JWTMaxKeys is how many public keys a device of the JWT device registry may have when one is
	// added through the API (as the broker's BROKER_JWT_MAX_KEYS; set both alike).
	JWTMaxKeys int `envconfig:"JWT_MAX_KEYS" default:"3"`

	// MQTTUsername and MQTTPassword are the probe clients' credentials (empty: anonymous). The ACL
	// must let this user publish and subscribe under $mcloudtt/probe/.
	MQTTUsername string `envconfig:"MQTT_USERNAME"`
	MQTTPassword string `envconfig:"MQTT_PASSWORD"`
}

// Load reads the configuration from the environment and validates it.
func Load() (Config, error) {
	var c Config
	if err := envconfig.Process(Prefix, &c); err != nil {
		return c, err
	}
	if c.ID == "" {
		if h, err := os.Hostname(); err == nil && h != "" {
			c.ID = "gateway-" + h
		}
	}
	return c, c.Validate()
}

// Default returns the configuration with every default applied, as Load would with an empty
// environment, and the id "gateway-test". Tests start from it.
func Default() Config {
	var c Config
	_ = envconfig.Process("MCLOUDTT_UNSET_PREFIX_FOR_DEFAULTS", &c)
	c.ID = "gateway-test"
	return c
}

// DownAfter is how long a member may be silent before it is down.
func (c Config) DownAfter() time.Duration {
	return time.Duration(c.MissedHeartbeats) * c.HeartbeatInterval
}

// Validate reports the first invalid field by its environment variable name.
func (c Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%s_%s: %s", Prefix, field, fmt.Sprintf(format, args...))
	}
	if err := logging.ValidateLevel(c.LogLevel); err != nil {
		return bad("LOG_LEVEL", "%v", err)
	}
	if err := logging.ValidateFormat(c.LogFormat); err != nil {
		return bad("LOG_FORMAT", "%v", err)
	}
	positive := []struct {
		name string
		d    time.Duration
	}{
		{"SHUTDOWN_TIMEOUT", c.ShutdownTimeout}, {"HEARTBEAT_INTERVAL", c.HeartbeatInterval},
		{"FORGET_AFTER", c.ForgetAfter}, {"PROBE_INTERVAL", c.ProbeInterval}, {"PROBE_TIMEOUT", c.ProbeTimeout},
		{"API_TIMEOUT", c.APITimeout},
	}
	for _, p := range positive {
		if p.d <= 0 {
			return bad(p.name, "must be positive, got %s", p.d)
		}
	}
	switch {
	case c.HTTPAddr == "":
		return bad("HTTP_ADDR", "must not be empty")
	case len(c.RedisAddrs) == 0:
		return bad("REDIS_ADDRS", "must name at least one Redis address")
	case c.JWTMaxKeys < 1:
		return bad("JWT_MAX_KEYS", "must be at least 1, got %d", c.JWTMaxKeys)
	case c.MissedHeartbeats < 1:
		return bad("MISSED_HEARTBEATS", "must be at least 1, got %d", c.MissedHeartbeats)
	case c.FailAfter < 0:
		return bad("FAIL_AFTER", "must not be negative, got %s", c.FailAfter)
	case c.RecoverAfter < 0:
		return bad("RECOVER_AFTER", "must not be negative, got %s", c.RecoverAfter)
	case c.AdapterMaxLag < 0:
		return bad("ADAPTER_MAX_LAG", "must not be negative, got %s", c.AdapterMaxLag)
	case c.ForgetAfter < c.DownAfter():
		return bad("FORGET_AFTER", "must be at least MISSED_HEARTBEATS x HEARTBEAT_INTERVAL (%s), got %s",
			c.DownAfter(), c.ForgetAfter)
	case c.MQTTPassword != "" && c.MQTTUsername == "":
		return bad("MQTT_USERNAME", "required with MQTT_PASSWORD")
	}
	switch {
	case c.APIToken != "" && c.APITokenFile != "":
		return bad("API_TOKEN_FILE", "set API_TOKEN or API_TOKEN_FILE, not both")
	case c.APIToken != "":
		if err := CheckToken(c.APIToken); err != nil {
			return bad("API_TOKEN", "%v", err)
		}
	case c.APITokenFile != "":
		if _, err := ReadToken(c.APITokenFile); err != nil {
			return bad("API_TOKEN_FILE", "%v", err)
		}
	}
	if err := c.validateAdminToken(); err != nil {
		return err
	}
	if err := c.Env.Validate(Prefix); err != nil {
		return err
	}
	for i, a := range c.RedisAddrs {
		if a == "" {
			return bad("REDIS_ADDRS", "address %d is empty", i+1)
		}
	}
	if err := wire.ValidateReplicaID(c.ID); err != nil {
		return bad("ID", "%v (the id names the gateway's Redis channels and probe topics)", err)
	}
	return nil
}

// validateAdminToken checks GATEWAY_ADMIN_TOKEN(_FILE): one of them, a good token, not the API
// token (a role would then be ambiguous).
func (c Config) validateAdminToken() error {
	var admin string
	switch {
	case c.AdminToken != "" && c.AdminTokenFile != "":
		return fmt.Errorf("%s_ADMIN_TOKEN_FILE: set ADMIN_TOKEN or ADMIN_TOKEN_FILE, not both", Prefix)
	case c.AdminToken != "":
		if err := CheckToken(c.AdminToken); err != nil {
			return fmt.Errorf("%s_ADMIN_TOKEN: %w", Prefix, err)
		}
		admin = c.AdminToken
	case c.AdminTokenFile != "":
		t, err := ReadToken(c.AdminTokenFile)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s_ADMIN_TOKEN_FILE: %w", Prefix, err)
		}
		admin = t
	default:
		return nil
	}
	read := c.APIToken
	if c.APITokenFile != "" {
		read, _ = ReadToken(c.APITokenFile)
	}
	if read == admin {
		return fmt.Errorf("%s_ADMIN_TOKEN: must differ from the API token (GATEWAY_API_TOKEN), which is read-only", Prefix)
	}
	return nil
}

// Usage writes every environment variable the service reads, with its default (for --help).
func Usage(w io.Writer) {
	_ = envconfig.Usagef(Prefix, &Config{}, w, cli.EnvFormat)
}

// MinTokenLength is the shortest API token accepted.
const MinTokenLength = 16

// CheckToken refuses a token too short to resist guessing, or one with spaces or control
// characters, which no Authorization header carries intact.
func CheckToken(t string) error {
	if len(t) < MinTokenLength {
		return fmt.Errorf("the token has %d characters; use at least %d (openssl rand -hex 32)", len(t), MinTokenLength)
	}
	for _, r := range t {
		if r <= ' ' || r == 0x7f {
			return fmt.Errorf("the token holds a space or control character")
		}
	}
	return nil
}

// ReadToken reads a token file (one trailing newline is ignored) and checks the token.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	t := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if err := CheckToken(t); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}
