package redisconn

import (
	"crypto/tls"
	"fmt"

	"github.com/kelseyhightower/envconfig"
)

// Env is the Redis connection settings as environment variables. Each service embeds it in its
// config struct, so that the variables are <PREFIX>_REDIS_USERNAME and so on; the addresses stay
// in the service's own struct (their defaults differ). Validate checks it and names the variable.
type Env struct {
	// RedisUsername is the Redis 6+ ACL user. Empty: the default user (AUTH with the password
	// alone, as Memorystore's AUTH string).
	RedisUsername string `envconfig:"REDIS_USERNAME"`
	// RedisPassword is the Redis password (AUTH string). Prefer RedisPasswordFile, which keeps it
	// out of the process environment.
	RedisPassword string `envconfig:"REDIS_PASSWORD"`
	// RedisPasswordFile holds the Redis password (a mounted Kubernetes Secret); it is read again
	// for every new connection, so a rotated Secret takes effect without a restart.
	RedisPasswordFile string `envconfig:"REDIS_PASSWORD_FILE"`
	// RedisTLS speaks TLS to Redis, never plain TCP.
	RedisTLS bool `envconfig:"REDIS_TLS" default:"false"`
	// RedisTLSCAFile holds the PEM CA certificates the Redis server's certificate must chain to
	// (Memorystore's server CA). Empty: the system's roots.
	RedisTLSCAFile string `envconfig:"REDIS_TLS_CA_FILE"`
	// RedisTLSServerName is the name or IP address the server's certificate must be valid for.
	// Empty: the host of each Redis address.
	RedisTLSServerName string `envconfig:"REDIS_TLS_SERVER_NAME"`
	// RedisTLSCertFile and RedisTLSKeyFile are an optional client certificate and key (PEM).
	RedisTLSCertFile string `envconfig:"REDIS_TLS_CERT_FILE"`
	RedisTLSKeyFile  string `envconfig:"REDIS_TLS_KEY_FILE"`
}

// Options returns the connection options Env describes.
func (e Env) Options() Options {
	o := Options{Username: e.RedisUsername, Password: e.RedisPassword, PasswordFile: e.RedisPasswordFile}
	if e.RedisTLS {
		o.TLS = &TLS{CAFile: e.RedisTLSCAFile, ServerName: e.RedisTLSServerName,
			CertFile: e.RedisTLSCertFile, KeyFile: e.RedisTLSKeyFile}
	}
	return o
}

// Validate reports the first bad setting by its variable name (prefix "BROKER" gives
// BROKER_REDIS_TLS_CA_FILE). It reads the files once: a password file that cannot be read, a CA
// file without a certificate or a client key that does not match its certificate stop the process
// at start. TLS files given without REDIS_TLS=true are refused rather than ignored, so a
// forgotten switch never means plain text.
func (e Env) Validate(prefix string) error {
	bad := func(name, format string, args ...any) error {
		return fmt.Errorf("%s_%s: %s", prefix, name, fmt.Sprintf(format, args...))
	}
	switch {
	case e.RedisPassword != "" && e.RedisPasswordFile != "":
		return bad("REDIS_PASSWORD_FILE", "set REDIS_PASSWORD or REDIS_PASSWORD_FILE, not both")
	case !e.RedisTLS && e.RedisTLSCAFile != "":
		return bad("REDIS_TLS_CA_FILE", "set, but %s_REDIS_TLS is not true: connections would be plain TCP", prefix)
	case !e.RedisTLS && e.RedisTLSServerName != "":
		return bad("REDIS_TLS_SERVER_NAME", "set, but %s_REDIS_TLS is not true: connections would be plain TCP", prefix)
	case !e.RedisTLS && (e.RedisTLSCertFile != "" || e.RedisTLSKeyFile != ""):
		return bad("REDIS_TLS_CERT_FILE", "set, but %s_REDIS_TLS is not true: connections would be plain TCP", prefix)
	case (e.RedisTLSCertFile == "") != (e.RedisTLSKeyFile == ""):
		return bad("REDIS_TLS_KEY_FILE", "REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together")
	}
	if e.RedisPasswordFile != "" {
		if _, err := readPassword(e.RedisPasswordFile); err != nil {
			return bad("REDIS_PASSWORD_FILE", "%v", err)
		}
	}
	if e.RedisTLSCAFile != "" {
		if _, err := LoadCAFile(e.RedisTLSCAFile); err != nil {
			return bad("REDIS_TLS_CA_FILE", "%v", err)
		}
	}
	if e.RedisTLSCertFile != "" {
		if _, err := tls.LoadX509KeyPair(e.RedisTLSCertFile, e.RedisTLSKeyFile); err != nil {
			return bad("REDIS_TLS_CERT_FILE", "%v", err)
		}
	}
	return nil
}

// LoadEnv reads Env from the environment under prefix and validates it, for the tools that have
// no config struct of their own to embed it in.
func LoadEnv(prefix string) (Env, error) {
	var e Env
	if err := envconfig.Process(prefix, &e); err != nil {
		return e, err
	}
	return e, e.Validate(prefix)
}

// Describe is a one-line summary for start-up logs: no secrets, only what is configured.
func (e Env) Describe() string {
	auth := "no AUTH"
	switch {
	case e.RedisPasswordFile != "":
		auth = "password from " + e.RedisPasswordFile
	case e.RedisPassword != "":
		auth = "password from the environment"
	}
	if e.RedisUsername != "" {
		auth = "user " + e.RedisUsername + ", " + auth
	}
	if !e.RedisTLS {
		return auth + ", plain TCP"
	}
	ca := "system roots"
	if e.RedisTLSCAFile != "" {
		ca = e.RedisTLSCAFile
	}
	s := auth + ", TLS verified against " + ca
	if e.RedisTLSCertFile != "" {
		s += ", client certificate " + e.RedisTLSCertFile
	}
	return s
}
