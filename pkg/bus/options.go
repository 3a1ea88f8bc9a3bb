package bus

import (
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/redisconn"
)

// Options configure a Bus. Zero fields take the default written next to them; New applies the
// defaults to a copy and validates it, naming the field at fault.
type Options struct {
	// Addrs are Redis addresses (host:port). One address means a single Redis unless Cluster is
	// set; several mean a Redis Cluster (seed nodes). Default: 127.0.0.1:6379.
	Addrs []string
	// Cluster selects Redis Cluster mode: sharded pub/sub (SPUBLISH/SSUBSCRIBE) and a
	// go-redis ClusterClient. Set by New when len(Addrs) > 1.
	Cluster bool
	// Username is the Redis 6+ ACL user ("" = the default user).
	Username string
	// Password for AUTH ("" = none).
	Password string
	// PasswordFile holds the password instead; it is read again for every new connection (a
	// rotated Kubernetes Secret takes effect without a restart). Not together with Password.
	PasswordFile string
	// TLS, when set, makes every connection to Redis TLS, verified as it says; nil: plain TCP.
	// Never both: a failed handshake is an error, not a reason to try plain text.
	TLS *redisconn.TLS
	// Prefix starts every Redis name (see Names). Default: DefaultPrefix ("mcloudtt").
	Prefix string
	// ReplicaID names this process on the bus: its inbound and control channels, its route table,
	// the Origin of its messages. Required; see ValidateReplicaID.
	ReplicaID string

	// DialTimeout bounds a TCP connect to Redis. Default: 2s.
	DialTimeout time.Duration
	// ReadTimeout bounds waiting for a command's reply (a flush, a heartbeat, a route update),
	// so a half-open link fails in-flight publishes after this long. Default: 3s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a command. Default: 3s.
	WriteTimeout time.Duration
	// PoolSize is the most connections the command client keeps to a Redis node: how many
	// commands (or pipelines) are in flight at once. A command that finds every connection busy
	// waits for one, at most ReadTimeout plus a second. Default: DefaultPoolSize.
	PoolSize int
	// HealthInterval is how often a PING goes out on each subscription connection. Default: 1s.
	HealthInterval time.Duration
	// HealthTimeout: when nothing (message or PONG) arrives on a subscription connection for this
	// long, the connection is declared dead, dropped and made again. It also bounds connecting
	// and subscribing. Must exceed HealthInterval. Default: 3s.
	HealthTimeout time.Duration
	// BackoffMin and BackoffMax bound the delay between reconnection attempts; the delay doubles
	// per failed attempt and is drawn at random from its upper half (jitter). Defaults: 100ms, 5s.
	BackoffMin, BackoffMax time.Duration

	// BatchMaxBytes: a destination's batch is flushed once it holds this many bytes. A message
	// that would take a non-empty batch past it starts a new batch, so a batch is at most
	// max(BatchMaxBytes, 1 + one message). Default: 256 KiB.
	BatchMaxBytes int
	// BatchMaxDelay: pending batches are flushed at most this long after their oldest message was
	// published. 0 means "as soon as the flusher is free" (batches then grow only while a flush
	// is in flight). Default: 500µs; set a negative value for 0.
	BatchMaxDelay time.Duration
	// MaxPendingBytes bounds the encoded bytes queued or in flight across all destinations; a
	// Publish that would exceed it fails at once with ErrOverloaded. Default: 64 MiB.
	MaxPendingBytes int
	// MaxReceiveBytes bounds a received payload; a larger one is read and discarded (and
	// counted in Stats.Discarded) instead of being allocated. Default: 64 MiB.
	MaxReceiveBytes int

	// ExportMaxLen caps the export stream at about this many entries: every XADD carries
	// MAXLEN ~ ExportMaxLen, so Redis trims whole macro nodes past it. An entry holds 1 to
	// ExportBatch messages (more under load). Entries trimmed before the adapter read them are
	// lost, so keep it well above what the adapter may lag behind. Default: 1,000,000.
	ExportMaxLen int64
	// ExportBatch is the most messages in one export stream entry (one envelope batch of at most
	// about 256 KiB). Default: 512.
	ExportBatch int
	// ExportQueue bounds the messages Export has queued and the writer has not yet written;
	// Export refuses (and counts) messages beyond it. Default: 65,536.
	ExportQueue int
	// ExportQueueBytes bounds the encoded bytes of those messages in the same way. Default: 64 MiB.
	ExportQueueBytes int
	// ExportDelay is how long the writer lets a lone, not yet full entry fill before it sends it:
	// entries then carry many messages, and Redis does far fewer XADDs (each costs it several
	// microseconds whatever its size). The export is read by the BigQuery adapter in batches of
	// about a second, so a few milliseconds cost nothing. Negative: send at once. Default: 5 ms.
	ExportDelay time.Duration
	// ExportUncompressed stores message entries as plain envelope batches; by default an entry
	// is compressed (S2) when that saves at least an eighth (see export.go).
	ExportUncompressed bool

	// Logger receives the bus's log lines: every connection attempt and its outcome, lost
	// connections, discarded payloads. Default: zerolog's zero value, which logs nothing.
	Logger zerolog.Logger

	// OnBatch is called with every payload received on the replica's inbound channel, in order,
	// from the subscription goroutine: hand the batch over and return quickly, or Redis buffers
	// behind it (and disconnects a subscriber more than 32 MiB behind, by default). The batch is
	// the callback's to keep and is never reused; decode it with DecodeBatch. nil: discarded.
	OnBatch func(batch []byte)
	// OnControl is called with every payload received on the replica's control channel, in order,
	// except management requests and replies (wire.ControlRequest, wire.ControlReply), which the
	// bus handles itself (request.go).
	OnControl func(payload []byte)
	// OnRequest answers management requests (wire.AdminRequest) sent to this replica with
	// Request; each call runs on its own goroutine, at most 64 at once. nil: every request is
	// answered with wire.ErrTextUnknownOp.
	OnRequest RequestHandler
	// OnHeartbeat, when set, subscribes to the heartbeat channel too (WatchHeartbeats) and is
	// called with every heartbeat that decodes (undecodable ones are logged at debug level).
	OnHeartbeat func(Heartbeat)
	// OnRouteChange, when set, subscribes to the route-change channel too and is called with
	// every change that decodes.
	OnRouteChange func(RouteChange)
	// OnDurableSubs, when set, subscribes to the channel announcing changes of the persistent
	// subscription index (Names.DurableSubsChanges) and is called with every change that decodes.
	OnDurableSubs func(DurableSubsChange)
	// OnReconnect is called after the replica's channels have been subscribed again after a lost
	// connection, before any message received on the new connection is passed on: messages sent
	// to this replica in between are lost, so the broker resyncs its route table here (start the
	// work in a goroutine; the subscription waits for this call). Not called on the first connect
	// (OnStatus reports that one).
	OnReconnect func()
	// OnStatus is called whenever Status changes, one call at a time, in order.
	OnStatus func(Status)
}

// Defaults, as documented on Options.
const (
	DefaultDialTimeout     = 2 * time.Second
	DefaultReadTimeout     = 3 * time.Second
	DefaultWriteTimeout    = 3 * time.Second
	DefaultPoolSize        = 128
	DefaultHealthInterval  = time.Second
	DefaultHealthTimeout   = 3 * time.Second
	DefaultBackoffMin      = 100 * time.Millisecond
	DefaultBackoffMax      = 5 * time.Second
	DefaultBatchMaxBytes   = 256 << 10
	DefaultBatchMaxDelay   = 500 * time.Microsecond
	DefaultMaxPendingBytes = 64 << 20
	DefaultMaxReceiveBytes = 64 << 20

	DefaultExportMaxLen     = 1_000_000
	DefaultExportBatch      = 512
	DefaultExportQueue      = 65_536
	DefaultExportQueueBytes = 64 << 20
	DefaultExportDelay      = 5 * time.Millisecond
)

// withDefaults returns a copy of o with defaults applied, or an error naming the bad field.
func (o Options) withDefaults() (Options, error) {
	if len(o.Addrs) == 0 {
		o.Addrs = []string{"127.0.0.1:6379"}
	}
	o.Addrs = append([]string(nil), o.Addrs...)
	if len(o.Addrs) > 1 {
		o.Cluster = true
	}
	for i, a := range o.Addrs {
		if a == "" {
			return o, fmt.Errorf("bus: Options.Addrs[%d] is empty", i)
		}
	}
	if err := o.connOptions().Validate(); err != nil {
		return o, fmt.Errorf("bus: Options: %w", err)
	}
	if err := ValidatePrefix(o.Prefix); err != nil {
		return o, fmt.Errorf("Options.Prefix: %w", err)
	}
	if err := ValidateReplicaID(o.ReplicaID); err != nil {
		return o, fmt.Errorf("Options.ReplicaID: %w", err)
	}
	def(&o.DialTimeout, DefaultDialTimeout)
	def(&o.ReadTimeout, DefaultReadTimeout)
	def(&o.WriteTimeout, DefaultWriteTimeout)
	def(&o.PoolSize, DefaultPoolSize)
	def(&o.HealthInterval, DefaultHealthInterval)
	def(&o.HealthTimeout, DefaultHealthTimeout)
	def(&o.BackoffMin, DefaultBackoffMin)
	def(&o.BackoffMax, DefaultBackoffMax)
	def(&o.BatchMaxDelay, DefaultBatchMaxDelay)
	if o.BatchMaxDelay < 0 {
		o.BatchMaxDelay = 0
	}
	def(&o.BatchMaxBytes, DefaultBatchMaxBytes)
	def(&o.MaxPendingBytes, DefaultMaxPendingBytes)
	def(&o.MaxReceiveBytes, DefaultMaxReceiveBytes)
	def(&o.ExportMaxLen, DefaultExportMaxLen)
	def(&o.ExportBatch, DefaultExportBatch)
	def(&o.ExportQueue, DefaultExportQueue)
	def(&o.ExportQueueBytes, DefaultExportQueueBytes)
	def(&o.ExportDelay, DefaultExportDelay)
	if o.ExportDelay < 0 {
		o.ExportDelay = 0
	}
	if o.ExportMaxLen < 0 || o.ExportBatch < 0 || o.ExportQueue < 0 || o.ExportQueueBytes < 0 {
		return o, errors.New("bus: Options.ExportMaxLen, ExportBatch, ExportQueue and ExportQueueBytes must not be negative")
	}
	for _, c := range []struct {
		name string
		d    time.Duration
	}{{"DialTimeout", o.DialTimeout}, {"ReadTimeout", o.ReadTimeout}, {"WriteTimeout", o.WriteTimeout},
		{"HealthInterval", o.HealthInterval}, {"HealthTimeout", o.HealthTimeout},
		{"BackoffMin", o.BackoffMin}, {"BackoffMax", o.BackoffMax}} {
		if c.d < 0 {
			return o, fmt.Errorf("bus: Options.%s is negative (%v)", c.name, c.d)
		}
	}
	if o.PoolSize < 0 {
		return o, fmt.Errorf("bus: Options.PoolSize is negative (%d)", o.PoolSize)
	}
	if o.HealthTimeout <= o.HealthInterval {
		return o, fmt.Errorf("bus: Options.HealthTimeout (%v) must exceed HealthInterval (%v)",
			o.HealthTimeout, o.HealthInterval)
	}
	if o.BackoffMax < o.BackoffMin {
		return o, fmt.Errorf("bus: Options.BackoffMax (%v) is below BackoffMin (%v)", o.BackoffMax, o.BackoffMin)
	}
	if o.BatchMaxBytes < 0 || o.MaxPendingBytes < 0 || o.MaxReceiveBytes < 0 {
		return o, errors.New("bus: Options.BatchMaxBytes, MaxPendingBytes and MaxReceiveBytes must not be negative")
	}
	if o.MaxPendingBytes < o.BatchMaxBytes {
		return o, fmt.Errorf("bus: Options.MaxPendingBytes (%d) is below BatchMaxBytes (%d)", o.MaxPendingBytes, o.BatchMaxBytes)
	}
	return o, nil
}

// def sets *v to d when *v is the zero value (the option was left unset).
func def[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// connOptions are the options of the connections to Redis.
func (o *Options) connOptions() redisconn.Options {
	return redisconn.Options{Username: o.Username, Password: o.Password, PasswordFile: o.PasswordFile,
		TLS: o.TLS, DialTimeout: o.DialTimeout}
}
