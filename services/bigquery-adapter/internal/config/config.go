// Package config holds the BigQuery adapter's configuration, read from the environment.
package config

import (
	"fmt"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/mcloudtt/mcloudtt/pkg/logging"
)

// Prefix is the environment prefix of every setting: ADAPTER_HTTP_ADDR and so on.
const Prefix = "ADAPTER"

// Config is the gateway's whole configuration. Each field's default is in its tag.
type Config struct {
	// HTTPAddr is where /healthz, /readyz, /metricsare served.
	HTTPAddr string `envconfig:"HTTP_ADDR" default:":8091"`
	// LogLevel is trace, debug, info, warn or error.
	LogLevel string `envconfig:"LOG_LEVEL" default:"info"`
	// LogFormat is auto (console on a terminal, JSON otherwise), json or console.
	LogFormat string `envconfig:"LOG_FORMAT" default:"auto"`
	// ShutdownTimeout bounds the graceful stop after SIGTERM.
	ShutdownTimeout time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"10s"`
}

// Load reads the configuration from the environment and validates it.
func Load() (Config, error) {
	var c Config
	if err := envconfig.Process(Prefix, &c); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Validate reports the first invalid field by its environment variable name.
func (c Config) Validate() error {
	if err := logging.ValidateLevel(c.LogLevel); err != nil {
		return fmt.Errorf("%s_LOG_LEVEL: %w", Prefix, err)
	}
	if err := logging.ValidateFormat(c.LogFormat); err != nil {
		return fmt.Errorf("%s_LOG_FORMAT: %w", Prefix, err)
	}
	if c.HTTPAddr == "" {
		return fmt.Errorf("%s_HTTP_ADDR: must not be empty", Prefix)
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("%s_SHUTDOWN_TIMEOUT: must be positive, got %s", Prefix, c.ShutdownTimeout)
	}
	return nil
}
