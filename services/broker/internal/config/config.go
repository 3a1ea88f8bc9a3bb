// Package config holds the broker's configuration, read from the environment (prefix BROKER_).
//
// Every field documents its default in the `default` tag; README's configuration table lists them.
// Validate names the environment variable of the first bad field, so a bad value stops the broker at
// start with a message an operator can act on.
package config

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/mcloudtt/mcloudtt/pkg/cli"
	"github.com/mcloudtt/mcloudtt/pkg/logging"
	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/pkg/redisconn"
	"github.com/mcloudtt/mcloudtt/pkg/topic"
	"github.com/mcloudtt/mcloudtt/pkg/wire"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/listener"
)

// Prefix is the environment prefix of every setting: BROKER_MQTT_ADDR and so on.
const Prefix = "BROKER"

// Config is the broker's whole configuration.
type Config struct {
	// ID is this replica's unique id. Default: the host name (the pod name in Kubernetes).
	ID string `envconfig:"ID"`
	// MQTTAddr is the MQTT over TCP listener address; empty disables it.
	MQTTAddr string `envconfig:"MQTT_ADDR" default:":1883"`
	// TLSAddr is the MQTT over TLS listener address (usually :8883); empty disables it.
	TLSAddr string `envconfig:"TLS_ADDR"`
	// WSAddr is the MQTT over WebSocket listener address (usually :8083); empty disables it.
	WSAddr string `envconfig:"WS_ADDR"`
	// WSSAddr is the MQTT over secure WebSocket listener address (usually :8084); empty disables it.
	WSSAddr string `envconfig:"WSS_ADDR"`
	// WSPath is the URL path that upgrades to MQTT over WebSocket (subprotocol "mqtt").
	WSPath string `envconfig:"WS_PATH" default:"/mqtt"`
	// WSAllowedOrigins are the web origins (https://app.example.com, https://*.example.com;
	// comma-separated) whose pages may open MQTT over WebSocket; an upgrade from any other origin
	// is answered 403, one without an Origin header (not a browser) is accepted. Empty: every
	// origin, as in mosquitto and EMQX (MQTT authenticates in CONNECT, not with cookies).
	WSAllowedOrigins []string `envconfig:"WS_ALLOWED_ORIGINS"`
	// TLSCertFile and TLSKeyFile are the server certificate chain and key (PEM) for TLS and WSS.
	TLSCertFile string `envconfig:"TLS_CERT_FILE"`
	TLSKeyFile  string `envconfig:"TLS_KEY_FILE"`
	// TLSClientCAFile, when set, verifies client certificates against these CAs (PEM).
	TLSClientCAFile string `envconfig:"TLS_CLIENT_CA_FILE"`
	// TLSTicketKeyFile, when set, holds TLS session ticket keys shared by every replica (one
	// base64 32-byte key per line, newest first), so a device resumes its session at any replica.
	TLSTicketKeyFile string `envconfig:"TLS_TICKET_KEY_FILE"`
	// TLSRequireClientCert refuses TLS clients without a certificate signed by TLSClientCAFile.
	TLSRequireClientCert bool `envconfig:"TLS_REQUIRE_CLIENT_CERT" default:"false"`
	// TLSCNAsUsername makes the verified client certificate's common name the user name, and the
	// certificate the credential (mosquitto's use_identity_as_username).
	TLSCNAsUsername bool `envconfig:"TLS_CN_AS_USERNAME" default:"false"`
	// CertReloadInterval is how often the certificate files are checked for changes; 0 checks only
	// on SIGHUP.
	CertReloadInterval time.Duration `envconfig:"CERT_RELOAD_INTERVAL" default:"30s"`

	// AllowAnonymous accepts clients that send no user name.
	AllowAnonymous bool `envconfig:"ALLOW_ANONYMOUS" default:"true"`
	// PasswordFile is a mosquitto-format password file (PBKDF2 $7$, $6$ or bcrypt entries); empty:
	// no password check. Reloaded on SIGHUP.
	PasswordFile string `envconfig:"PASSWORD_FILE"`
	// ACLFile is a mosquitto-format ACL file; empty: every client may do everything. Reloaded on
	// SIGHUP.
	ACLFile string `envconfig:"ACL_FILE"`
	// ProbeUsername is the user (the health gateway's) that alone may publish, subscribe and
	// receive on the probe topics $mcloudtt/probe/...; empty: nobody may, once authentication or
	// an ACL is configured. Without a password file and with anonymous access, user names are
	// unchecked claims and every client may use every topic.
	ProbeUsername string `envconfig:"PROBE_USERNAME"`
	// SubackDenied is the v5 SUBACK reason for a subscription the ACL refuses: not_authorized
	// (0x87) or unspecified (0x80, which tells the client less). 3.x clients always get 0x80.
	SubackDenied string `envconfig:"SUBACK_DENIED" default:"not_authorized"`
	// JWT is JWT authentication: JWT_ENABLED, JWT_REGISTRY, JWT_PROJECT_ID, JWT_MAX_KEYS,
	// JWT_CLOCK_SKEW, JWT_MAX_LIFETIME and JWT_JWKS_* (jwt.go).
	JWT

	// RedisAddrs are the Redis addresses of the cluster bus (comma-separated; several mean a
	// Redis Cluster). Empty: a stand-alone replica without Redis.
	RedisAddrs []string `envconfig:"REDIS_ADDRS"`
	// Env is how to log in to Redis and whether to speak TLS: REDIS_USERNAME, REDIS_PASSWORD or
	// REDIS_PASSWORD_FILE, REDIS_TLS, REDIS_TLS_CA_FILE, REDIS_TLS_SERVER_NAME, REDIS_TLS_CERT_FILE
	// and REDIS_TLS_KEY_FILE (see package redisconn).
	redisconn.Env
	// IoTCore is the Cloud IoT Core compatible mode: IOTCORE, IOTCORE_PROJECT, IOTCORE_REGION,
	// IOTCORE_REGISTRY (iotcore.go).
	IoTCore
	// ExportFilters are the topic filters of the messages appended to the export stream that the
	// BigQuery adapter reads (comma-separated); empty turns the export off. $SYS and the health
	// probe topics are never exported. Needs REDIS_ADDRS.
	ExportFilters []string `envconfig:"EXPORT_FILTERS" default:"#"`
	// ExportMaxLen caps the export stream at about this many entries (XADD MAXLEN ~): the oldest
	// entries go when the adapter is that far behind.
	ExportMaxLen int64 `envconfig:"EXPORT_MAXLEN" default:"1000000"`
	// ExportPresence appends every accepted CONNECT and the end of every connection (with its
	// cause) to the export stream, for the BigQuery adapter's events table. Needs REDIS_ADDRS.
	ExportPresence bool `envconfig:"EXPORT_PRESENCE" default:"true"`
	// AdvertiseAddr is the MQTT address other services (the health gateway's probes) reach this
	// replica at, announced in its heartbeat: host:port, or a bare host (the pod IP in
	// Kubernetes) to which the MQTT listener's port is added. Default: the MQTT listener's address.
	AdvertiseAddr string `envconfig:"ADVERTISE_ADDR"`
	// HeartbeatInterval is how often the replica announces itself on the bus.
	HeartbeatInterval time.Duration `envconfig:"HEARTBEAT_INTERVAL" default:"1s"`
	// PeerTimeout is how long another replica may stay silent (no heartbeat) before this one
	// forgets its routes and removes it from Redis. Must exceed HEARTBEAT_INTERVAL.
	PeerTimeout time.Duration `envconfig:"PEER_TIMEOUT" default:"5s"`

	// HTTPAddr serves /healthz, /readyz and /metrics; empty disables it.
	HTTPAddr string `envconfig:"HTTP_ADDR" default:":8080"`

	// Pprof serves /debug/pprof on the HTTP listener.
	Pprof bool `envconfig:"PPROF" default:"false"`

	LogLevel  string `envconfig:"LOG_LEVEL" default:"info"`
	LogFormat string `envconfig:"LOG_FORMAT" default:"auto"`
	// ShutdownTimeout bounds the graceful drain after SIGTERM.
	ShutdownTimeout time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"10s"`

	// ConnectTimeout closes a connection that sends no CONNECT within it.
	ConnectTimeout time.Duration `envconfig:"CONNECT_TIMEOUT" default:"10s"`
	// ConnectConcurrency bounds the connecting clients (TLS handshake and CONNECT) handled at
	// once; the others wait their turn. 0: four per CPU.
	ConnectConcurrency int `envconfig:"CONNECT_CONCURRENCY" default:"0"`
	// ParkAfter is how long a connection may go without input before its reader goroutine is
	// given up (the connection is parked on the poller until input comes). Shorter: less memory
	// for many quiet devices; longer: less CPU for devices that send every few seconds.
	ParkAfter time.Duration `envconfig:"PARK_AFTER" default:"1s"`
	// MaxPacketSize is the largest packet accepted from clients, in bytes (announced to v5 clients).
	MaxPacketSize int `envconfig:"MAX_PACKET_SIZE" default:"1048576"`
	// MaxKeepAlive caps the keep alive of v5 clients, in seconds: one asking for more (or for 0) is
	// told the cap as Server Keep Alive. 3.x clients cannot be told and keep their own. 0: no cap.
	MaxKeepAlive uint16 `envconfig:"MAX_KEEPALIVE" default:"0"`
	// ReceiveMaximum is how many QoS 1/2 publishes a client may have unacknowledged towards the broker.
	ReceiveMaximum uint16 `envconfig:"RECEIVE_MAXIMUM" default:"1024"`
	// MaxInflight is how many QoS 1/2 messages the broker sends a client before waiting for acks (a v5
	// client's smaller Receive Maximum wins).
	MaxInflight uint16 `envconfig:"MAX_INFLIGHT" default:"1024"`
	// MaxQueuedMessages bounds the messages queued per session (offline, or beyond the inflight window).
	MaxQueuedMessages int `envconfig:"MAX_QUEUED_MESSAGES" default:"1000"`
	// MaxQueuedBytes bounds the payload bytes queued per session; 0 means no byte bound.
	MaxQueuedBytes int64 `envconfig:"MAX_QUEUED_BYTES" default:"0"`
	// TopicAliasMaximum is how many topic aliases a v5 client may set towards the broker.
	TopicAliasMaximum uint16 `envconfig:"TOPIC_ALIAS_MAXIMUM" default:"10"`
	// MaxSessionExpiry caps a v5 client's session expiry interval, in seconds; 0 means no cap.
	MaxSessionExpiry uint32 `envconfig:"MAX_SESSION_EXPIRY" default:"0"`
	// MaxPendingBytes is how much encoded output may wait for a slow client before QoS 0 messages to
	// it are dropped; at twice this the client is disconnected as a slow consumer.
	MaxPendingBytes int `envconfig:"MAX_PENDING_BYTES" default:"8388608"`
	// WriteTimeout is how long one write to a client may block before the client is dropped.
	WriteTimeout time.Duration `envconfig:"WRITE_TIMEOUT" default:"10s"`
	// SysInterval is how often $SYS/broker/... topics are refreshed; 0 disables them.
	SysInterval time.Duration `envconfig:"SYS_INTERVAL" default:"10s"`
	// MaxConnections bounds the connected clients; more are refused (v5 0x89 Server Busy, 3.x 0x03).
	// 0 means no limit.
	MaxConnections int `envconfig:"MAX_CONNECTIONS" default:"0"`
	// HeapHeadroom is how far, in percent of the live heap, the Go heap may grow before it is
	// collected once it is large (many connections): the replica keeps the runtime's soft memory
	// limit at the live heap plus this, plus 64 MiB and what is not heap. 0: Go's default
	// (GOGC, 100 percent). A GOMEMLIMIT stays the ceiling.
	HeapHeadroom int `envconfig:"HEAP_HEADROOM" default:"25"`
	// MaxTopicLength bounds topic names and filters, in bytes.
	MaxTopicLength int `envconfig:"MAX_TOPIC_LENGTH" default:"65535"`
	// MaxTopicLevels bounds the levels of topic names and filters; 0 means no limit.
	MaxTopicLevels int `envconfig:"MAX_TOPIC_LEVELS" default:"128"`
	// MaxSubscriptions bounds one session's subscriptions (v5 SUBACK 0x97); 0 means no limit.
	MaxSubscriptions int `envconfig:"MAX_SUBSCRIPTIONS" default:"10000"`
	// MaxPublishRate bounds one client's PUBLISH rate, messages per second: a v5 client beyond it
	// (and its burst) is disconnected with 0x96, a 3.x publisher is slowed down. 0: no limit.
	MaxPublishRate float64 `envconfig:"MAX_PUBLISH_RATE" default:"0"`
	// PublishBurst is how many publishes above the rate a client may send at once (default: the rate).
	PublishBurst int `envconfig:"PUBLISH_BURST" default:"0"`
}

// Load reads the configuration from the environment and validates it.
func Load() (Config, error) {
	var c Config
	if err := envconfig.Process(Prefix, &c); err != nil {
		return c, err
	}
	if c.ID == "" {
		c.ID, _ = os.Hostname()
	}
	return c, c.Validate()
}

// Default returns the configuration with every default applied, as Load would with an empty
// environment. Tests start from it.
func Default() Config {
	var c Config
	_ = envconfig.Process("MCLOUDTT_UNSET_PREFIX_FOR_DEFAULTS", &c)
	c.ID = "test"
	return c
}

// Validate reports the first invalid field by its environment variable name.
func (c Config) Validate() error {
	for _, check := range []func() error{
		c.validateLogging, c.validateLimits, c.validateListeners, c.validateCluster,
		c.validateOrigins, c.validateEnv, c.validateExport, c.validateReplicaID, c.validateIoTCore, c.validateJWT,
	} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// bad is a validation error for the variable field (given without the prefix).
func bad(field, format string, args ...any) error {
	return fmt.Errorf("%s_%s: %s", Prefix, field, fmt.Sprintf(format, args...))
}

// validateLogging checks the log level and format.
func (c Config) validateLogging() error {
	if err := logging.ValidateLevel(c.LogLevel); err != nil {
		return bad("LOG_LEVEL", "%v", err)
	}
	if err := logging.ValidateFormat(c.LogFormat); err != nil {
		return bad("LOG_FORMAT", "%v", err)
	}
	return nil
}

// validateLimits checks the timeouts, the connection, session, topic and rate limits, and
// the SUBACK code for a denied subscription.
func (c Config) validateLimits() error {
	switch {
	case c.ShutdownTimeout <= 0:
		return bad("SHUTDOWN_TIMEOUT", "must be positive, got %s", c.ShutdownTimeout)
	case c.ConnectTimeout <= 0:
		return bad("CONNECT_TIMEOUT", "must be positive, got %s", c.ConnectTimeout)
	case c.MaxPacketSize < 64 || c.MaxPacketSize > 268435460:
		return bad("MAX_PACKET_SIZE", "must be between 64 and 268435460 bytes, got %d", c.MaxPacketSize)
	case c.ReceiveMaximum == 0:
		return bad("RECEIVE_MAXIMUM", "must be at least 1")
	case c.MaxInflight == 0:
		return bad("MAX_INFLIGHT", "must be at least 1")
	case c.MaxQueuedMessages < 0:
		return bad("MAX_QUEUED_MESSAGES", "must not be negative, got %d", c.MaxQueuedMessages)
	case c.MaxQueuedBytes < 0:
		return bad("MAX_QUEUED_BYTES", "must not be negative, got %d", c.MaxQueuedBytes)
	case c.MaxPendingBytes < 64*1024:
		return bad("MAX_PENDING_BYTES", "must be at least 65536, got %d", c.MaxPendingBytes)
	case c.WriteTimeout <= 0:
		return bad("WRITE_TIMEOUT", "must be positive, got %s", c.WriteTimeout)
	case c.SysInterval < 0:
		return bad("SYS_INTERVAL", "must not be negative, got %s", c.SysInterval)
	case c.MaxConnections < 0:
		return bad("MAX_CONNECTIONS", "must not be negative, got %d", c.MaxConnections)
	case c.ParkAfter <= 0:
		return bad("PARK_AFTER", "must be positive, got %s", c.ParkAfter)
	case c.ConnectConcurrency < 0:
		return bad("CONNECT_CONCURRENCY", "must not be negative, got %d", c.ConnectConcurrency)
	case c.HeapHeadroom < 0 || c.HeapHeadroom > 1000:
		return bad("HEAP_HEADROOM", "must be between 0 and 1000 percent, got %d", c.HeapHeadroom)
	case c.MaxTopicLength < 1 || c.MaxTopicLength > 65535:
		return bad("MAX_TOPIC_LENGTH", "must be between 1 and 65535, got %d", c.MaxTopicLength)
	case c.MaxTopicLevels < 0:
		return bad("MAX_TOPIC_LEVELS", "must not be negative, got %d", c.MaxTopicLevels)
	case c.MaxSubscriptions < 0:
		return bad("MAX_SUBSCRIPTIONS", "must not be negative, got %d", c.MaxSubscriptions)
	case c.MaxPublishRate < 0:
		return bad("MAX_PUBLISH_RATE", "must not be negative, got %v", c.MaxPublishRate)
	case c.PublishBurst < 0:
		return bad("PUBLISH_BURST", "must not be negative, got %d", c.PublishBurst)
	case c.SubackDenied != "not_authorized" && c.SubackDenied != "unspecified":
		return bad("SUBACK_DENIED", "must be not_authorized or unspecified, got %q", c.SubackDenied)
	}
	return nil
}

// validateListeners checks that TLS has what it needs and that there is a listener.
func (c Config) validateListeners() error {
	switch {
	case (c.TLSAddr != "" || c.WSSAddr != "") && (c.TLSCertFile == "" || c.TLSKeyFile == ""):
		return bad("TLS_CERT_FILE", "TLS_CERT_FILE and TLS_KEY_FILE are required with TLS_ADDR or WSS_ADDR")
	case c.TLSTicketKeyFile != "" && c.TLSAddr == "" && c.WSSAddr == "":
		return bad("TLS_TICKET_KEY_FILE", "needs TLS_ADDR or WSS_ADDR")
	case c.TLSRequireClientCert && c.TLSClientCAFile == "":
		return bad("TLS_CLIENT_CA_FILE", "required with TLS_REQUIRE_CLIENT_CERT")
	case c.TLSCNAsUsername && c.TLSClientCAFile == "":
		return bad("TLS_CLIENT_CA_FILE", "required with TLS_CN_AS_USERNAME")
	case c.CertReloadInterval < 0:
		return bad("CERT_RELOAD_INTERVAL", "must not be negative, got %s", c.CertReloadInterval)
	case c.MQTTAddr == "" && c.TLSAddr == "" && c.WSAddr == "" && c.WSSAddr == "":
		return bad("MQTT_ADDR", "no listener: set at least one of MQTT_ADDR, TLS_ADDR, WS_ADDR, WSS_ADDR")
	}
	return nil
}

// validateCluster checks the peer heartbeat settings and that the replica has an id.
func (c Config) validateCluster() error {
	switch {
	case c.HeartbeatInterval <= 0:
		return bad("HEARTBEAT_INTERVAL", "must be positive, got %s", c.HeartbeatInterval)
	case c.PeerTimeout <= c.HeartbeatInterval:
		return bad("PEER_TIMEOUT", "must exceed HEARTBEAT_INTERVAL (%s), got %s", c.HeartbeatInterval, c.PeerTimeout)
	case c.ID == "":
		return bad("ID", "must not be empty (and the host name is unknown)")
	}
	return nil
}

// validateOrigins checks the WebSocket origins allowed.
func (c Config) validateOrigins() error {
	for _, o := range c.WSAllowedOrigins {
		if err := listener.ParseOrigin(o); err != nil {
			return bad("WS_ALLOWED_ORIGINS", "%v", err)
		}
	}
	return nil
}

// validateEnv checks the Redis login and TLS settings (redisconn.Env).
func (c Config) validateEnv() error {
	return c.Env.Validate(Prefix)
}

// validateExport checks the export filters and stream length.
func (c Config) validateExport() error {
	for _, f := range c.ExportFilters {
		if err := topic.ValidateFilter(f); err != nil {
			return bad("EXPORT_FILTERS", "%q: %v", f, err)
		}
	}
	if c.ExportMaxLen < 1 {
		return bad("EXPORT_MAXLEN", "must be positive, got %d", c.ExportMaxLen)
	}
	return nil
}

// validateReplicaID checks, when Redis is used, that the id can name the replica's
// Redis channels.
func (c Config) validateReplicaID() error {
	if len(c.RedisAddrs) > 0 {
		if err := wire.ValidateReplicaID(c.ID); err != nil {
			return bad("ID", "%v (the replica id names its Redis channels)", err)
		}
	}
	return nil
}

// SubackDeniedCode is the v5 SUBACK reason code for a subscription the ACL refuses.
func (c Config) SubackDeniedCode() mqtt.ReasonCode {
	if c.SubackDenied == "unspecified" {
		return mqtt.UnspecifiedError
	}
	return mqtt.NotAuthorized
}

// Usage writes every environment variable the service reads, with its default (for --help).
func Usage(w io.Writer) {
	_ = envconfig.Usagef(Prefix, &Config{}, w, cli.EnvFormat)
}
