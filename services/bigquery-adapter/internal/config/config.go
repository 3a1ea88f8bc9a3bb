// Package config holds the BigQuery adapter's configuration, read from the environment (prefix
// ADAPTER_).
//
// Every field documents its default in the `default` tag; README's adapter table lists them.
// Validate names the environment variable of the first bad field.
package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/mcloudtt/mcloudtt/pkg/cli"
	"github.com/mcloudtt/mcloudtt/pkg/logging"
	"github.com/mcloudtt/mcloudtt/pkg/redisconn"
	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

// Prefix is the environment prefix of every setting: ADAPTER_HTTP_ADDR and so on.
const Prefix = "ADAPTER"

// Config is the adapter's whole configuration. Each field's default is in its tag.
type Config struct {
	// ID names this replica: its consumer in the group, its heartbeat. Default: the host name
	// (the pod name in Kubernetes). A replica restarted under the same id takes its own pending
	// entries back at once; under a new id, another replica claims them after ClaimIdle.
	ID string `envconfig:"ID"`

	// RedisAddrs are the Redis addresses (comma-separated; several mean a Redis Cluster).
	RedisAddrs []string `envconfig:"REDIS_ADDRS" default:"127.0.0.1:6379"`
	// Env is how to log in to Redis and whether to speak TLS: REDIS_USERNAME, REDIS_PASSWORD or
	// REDIS_PASSWORD_FILE, REDIS_TLS, REDIS_TLS_CA_FILE, REDIS_TLS_SERVER_NAME, REDIS_TLS_CERT_FILE
	// and REDIS_TLS_KEY_FILE (see package redisconn).
	redisconn.Env
	// Group is the consumer group on the export stream that every adapter replica joins.
	Group string `envconfig:"GROUP" default:"bigquery-adapter"`

	// Project is the Google Cloud project of the table (and of the query jobs). Empty: the
	// project of the credentials or of the metadata server (GKE); required with Endpoint.
	Project string `envconfig:"BIGQUERY_PROJECT"`
	// Dataset, Table and EventsTable name the tables: messages, and presence (connects and
	// disconnects).
	Dataset     string `envconfig:"BIGQUERY_DATASET" default:"mqtt"`
	Table       string `envconfig:"BIGQUERY_TABLE" default:"messages"`
	EventsTable string `envconfig:"BIGQUERY_EVENTS_TABLE" default:"events"`
	// API is how rows are written: storage (the Storage Write API, gRPC: committed streams with
	// offsets, exactly-once without queries) or insertall (the legacy tabledata.insertAll over
	// HTTP/1.1 REST, for networks that let no gRPC/HTTP2 through to bigquerystorage.googleapis.com).
	API string `envconfig:"BIGQUERY_API" default:"storage"`
	// Location is where a missing dataset is created (empty: BigQuery's default, US).
	Location string `envconfig:"BIGQUERY_LOCATION"`
	// Endpoint overrides the BigQuery REST endpoint (the local emulator: http://127.0.0.1:9050)
	// and turns authentication off. Empty: Google's endpoint with Application Default
	// Credentials (Workload Identity in GKE).
	Endpoint string `envconfig:"BIGQUERY_ENDPOINT"`
	// GRPCEndpoint is the emulator's Storage Write API address (host:port, plain text), needed
	// with Endpoint when API is storage. Empty without Endpoint: Google's.
	GRPCEndpoint string `envconfig:"BIGQUERY_GRPC_ENDPOINT"`
	// CreateTable creates the dataset and the table when they are missing; otherwise a missing
	// table keeps the adapter not ready. An existing table's schema is always checked.
	CreateTable bool `envconfig:"CREATE_TABLE" default:"true"`

	// BatchRows, BatchBytes and BatchDelay close a batch: at this many rows, at about this many
	// bytes of row JSON, or this long after its first entry was read, whichever comes first.
	BatchRows  int           `envconfig:"BATCH_ROWS" default:"500"`
	BatchBytes int           `envconfig:"BATCH_BYTES" default:"5242880"`
	BatchDelay time.Duration `envconfig:"BATCH_DELAY" default:"1s"`
	// Writers is how many batches may be written to BigQuery at once.
	Writers int `envconfig:"WRITERS" default:"2"`
	// RequestTimeout bounds one BigQuery request.
	RequestTimeout time.Duration `envconfig:"REQUEST_TIMEOUT" default:"30s"`
	// RetryMin and RetryMax bound the delay between attempts of a failed batch: it doubles per
	// attempt and is drawn at random from its upper half.
	RetryMin time.Duration `envconfig:"RETRY_MIN" default:"200ms"`
	RetryMax time.Duration `envconfig:"RETRY_MAX" default:"20s"`

	// ClaimIdle: entries delivered to another replica and not acknowledged for this long are
	// claimed (XAUTOCLAIM) and written by this one. Must exceed RequestTimeout: a replica
	// refreshes its entries' idle time before every attempt, so ClaimIdle must exceed
	// RequestTimeout + RetryMax (one wait and one attempt).
	ClaimIdle time.Duration `envconfig:"CLAIM_IDLE" default:"60s"`
	// DeadLetterMaxLen caps the dead-letter stream (MAXLEN ~).
	DeadLetterMaxLen int64 `envconfig:"DEAD_LETTER_MAXLEN" default:"100000"`
	// DedupCache is how many recently written message ids the replica remembers, to skip an
	// export entry the broker wrote twice (a retried XADD).
	DedupCache int `envconfig:"DEDUP_CACHE" default:"262144"`
	// HeartbeatInterval is how often the adapter announces itself and its lag on the bus.
	HeartbeatInterval time.Duration `envconfig:"HEARTBEAT_INTERVAL" default:"1s"`
	// ReleaseAcked removes, once a heartbeat, the export stream's entries that every consumer
	// group has acknowledged (feed.Release), so the stream holds what is still to be written
	// rather than the last BROKER_EXPORT_MAXLEN entries. Off: entries stay until MAXLEN trims
	// them (for a consumer that reads the stream without a group).
	ReleaseAcked bool `envconfig:"RELEASE_ACKED" default:"true"`

	// HTTPAddr is where /healthz, /readyz and /metrics are served.
	HTTPAddr string `envconfig:"HTTP_ADDR" default:":8091"`
	// Pprof serves /debug/pprof on the HTTP listener.
	Pprof bool `envconfig:"PPROF" default:"false"`
	// LogLevel is trace, debug, info, warn or error.
	LogLevel string `envconfig:"LOG_LEVEL" default:"info"`
	// LogFormat is auto (console on a terminal, JSON otherwise), json or console.
	LogFormat string `envconfig:"LOG_FORMAT" default:"auto"`
	// ShutdownTimeout bounds the graceful stop after SIGTERM: writing the open batch and
	// acknowledging it.
	ShutdownTimeout time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"10s"`
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

// Validate reports the first invalid field by its environment variable name.
func (c Config) Validate() error {
	for _, check := range []func() error{
		c.validateLogging, c.validateBus, c.validateBigQuery, c.validateBatches,
		c.validateDurations, c.validateWriters, c.validateHTTP,
		// Last, so that a bad value elsewhere is reported even where the project is not set yet.
		c.validateEmulator,
	} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// bad wraps err as a validation error for the variable name (given without the prefix).
func bad(name string, err error) error { return fmt.Errorf("%s_%s: %w", Prefix, name, err) }

// validateLogging checks the log level and format.
func (c Config) validateLogging() error {
	if err := logging.ValidateLevel(c.LogLevel); err != nil {
		return bad("LOG_LEVEL", err)
	}
	if err := logging.ValidateFormat(c.LogFormat); err != nil {
		return bad("LOG_FORMAT", err)
	}
	return nil
}

// validateBus checks the replica id, the Redis addresses and login, and the consumer group.
func (c Config) validateBus() error {
	if err := wire.ValidateReplicaID(c.ID); err != nil {
		return bad("ID", err)
	}
	if len(c.RedisAddrs) == 0 {
		return bad("REDIS_ADDRS", errors.New("must not be empty"))
	}
	for _, a := range c.RedisAddrs {
		if a == "" {
			return bad("REDIS_ADDRS", errors.New("empty address"))
		}
	}
	if err := c.Env.Validate(Prefix); err != nil {
		return err
	}
	if c.Group == "" {
		return bad("GROUP", errors.New("must not be empty"))
	}
	return nil
}

// validateBigQuery checks the dataset, the tables, the API and the endpoints.
func (c Config) validateBigQuery() error {
	if c.Dataset == "" {
		return bad("BIGQUERY_DATASET", errors.New("must not be empty"))
	}
	if c.Table == "" {
		return bad("BIGQUERY_TABLE", errors.New("must not be empty"))
	}
	if c.EventsTable == "" || c.EventsTable == c.Table {
		return bad("BIGQUERY_EVENTS_TABLE", fmt.Errorf("must be set and differ from ADAPTER_BIGQUERY_TABLE, got %q", c.EventsTable))
	}
	if c.API != "storage" && c.API != "insertall" {
		return bad("BIGQUERY_API", fmt.Errorf("want storage or insertall, got %q", c.API))
	}
	if c.GRPCEndpoint != "" {
		if _, port, err := net.SplitHostPort(c.GRPCEndpoint); err != nil || port == "" {
			return bad("BIGQUERY_GRPC_ENDPOINT", fmt.Errorf("want host:port, got %q", c.GRPCEndpoint))
		}
		if c.Endpoint == "" {
			return bad("BIGQUERY_GRPC_ENDPOINT", errors.New("is for an emulator: set ADAPTER_BIGQUERY_ENDPOINT too"))
		}
	}
	if c.Endpoint != "" {
		if u, err := url.Parse(c.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad("BIGQUERY_ENDPOINT", fmt.Errorf("want an http(s) URL, got %q", c.Endpoint))
		}
	}
	return nil
}

// validateBatches checks the batch limits.
func (c Config) validateBatches() error {
	if c.BatchRows < 1 || c.BatchRows > 50000 {
		return bad("BATCH_ROWS", fmt.Errorf("want 1 to 50000 (insertAll's limit), got %d", c.BatchRows))
	}
	if c.BatchBytes < 1024 || c.BatchBytes > 9<<20 {
		return bad("BATCH_BYTES", fmt.Errorf("want 1024 to 9437184 (insertAll and an append take 10 MB a request), got %d", c.BatchBytes))
	}
	return nil
}

// validateDurations checks that the durations are positive and that a claim outlasts a
// request with its retries.
func (c Config) validateDurations() error {
	pos := []struct {
		name string
		d    time.Duration
	}{{"BATCH_DELAY", c.BatchDelay}, {"REQUEST_TIMEOUT", c.RequestTimeout}, {"RETRY_MIN", c.RetryMin},
		{"RETRY_MAX", c.RetryMax}, {"CLAIM_IDLE", c.ClaimIdle}, {"HEARTBEAT_INTERVAL", c.HeartbeatInterval},
		{"SHUTDOWN_TIMEOUT", c.ShutdownTimeout}}
	for _, p := range pos {
		if p.d <= 0 {
			return bad(p.name, fmt.Errorf("must be positive, got %s", p.d))
		}
	}
	if c.RetryMax < c.RetryMin {
		return bad("RETRY_MAX", fmt.Errorf("below ADAPTER_RETRY_MIN (%s)", c.RetryMin))
	}
	if c.ClaimIdle <= c.RequestTimeout+c.RetryMax {
		return bad("CLAIM_IDLE", fmt.Errorf("must exceed ADAPTER_REQUEST_TIMEOUT + ADAPTER_RETRY_MAX (%s)", c.RequestTimeout+c.RetryMax))
	}
	return nil
}

// validateWriters checks the writer count, the dead-letter stream length and the dedup
// cache size.
func (c Config) validateWriters() error {
	if c.Writers < 1 || c.Writers > 64 {
		return bad("WRITERS", fmt.Errorf("want 1 to 64, got %d", c.Writers))
	}
	if c.DeadLetterMaxLen < 1 {
		return bad("DEAD_LETTER_MAXLEN", fmt.Errorf("must be positive, got %d", c.DeadLetterMaxLen))
	}
	if c.DedupCache < 0 {
		return bad("DEDUP_CACHE", fmt.Errorf("must not be negative, got %d", c.DedupCache))
	}
	return nil
}

// validateHTTP checks the HTTP address.
func (c Config) validateHTTP() error {
	if c.HTTPAddr == "" {
		return bad("HTTP_ADDR", errors.New("must not be empty"))
	}
	return nil
}

// validateEmulator checks that an emulator endpoint comes with its project and, for the
// Storage Write API, its gRPC endpoint.
func (c Config) validateEmulator() error {
	if c.Project == "" && c.Endpoint != "" {
		return bad("BIGQUERY_PROJECT", errors.New("must be set with ADAPTER_BIGQUERY_ENDPOINT (the emulator's project)"))
	}
	if c.Endpoint != "" && c.API == "storage" && c.GRPCEndpoint == "" {
		return bad("BIGQUERY_GRPC_ENDPOINT", errors.New("must be set with ADAPTER_BIGQUERY_ENDPOINT for the Storage Write API (the emulator's gRPC port), or set ADAPTER_BIGQUERY_API=insertall"))
	}
	return nil
}

// Usage writes every environment variable the service reads, with its default (for --help).
func Usage(w io.Writer) {
	_ = envconfig.Usagef(Prefix, &Config{}, w, cli.EnvFormat)
}
