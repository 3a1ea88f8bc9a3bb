package bus

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/redisconn"
)

// Sentinel errors. Publish's done callback receives one of them (possibly wrapping the cause),
// or nil.
var (
	// ErrUnavailable: Redis did not accept the message. Either the bus knew Redis was down and
	// failed the Publish at once, or the flush failed (the cause is wrapped too).
	ErrUnavailable = errors.New("bus: redis unavailable")
	// ErrNoReceiver: Redis accepted the PUBLISH but no client was subscribed to the destination
	// channel (the replica is gone or reconnecting), so nobody got the message.
	ErrNoReceiver = errors.New("bus: no receiver subscribed to the destination")
	// ErrOverloaded: Options.MaxPendingBytes are already queued or in flight.
	ErrOverloaded = errors.New("bus: too many bytes pending")
	// ErrClosed: the bus was closed.
	ErrClosed = errors.New("bus: closed")
)

// Stats are counters since the bus was made.
type Stats struct {
	Published  uint64 // messages Redis accepted and delivered to at least one receiver
	Failed     uint64 // messages whose done got an error (of any kind, including fail-fast)
	Commands   uint64 // PUBLISH/SPUBLISH commands sent by the flusher
	Flushes    uint64 // pipelines sent by the flusher
	Received   uint64 // payloads received on the subscription connections
	Discarded  uint64 // received payloads larger than MaxReceiveBytes, skipped
	RecvBytes  uint64 // bytes of received payloads
	SentBytes  uint64 // bytes of batches Redis accepted
	Reconnects uint64 // as Status.Reconnects

	// The export stream (Export).
	Exported        uint64 // messages in the entries Redis added to the export stream
	ExportEntries   uint64 // entries Redis added to the export stream (one envelope batch each)
	ExportDropped   uint64 // messages Export refused (queue full, closed) or Close gave up on
	ExportRetries   uint64 // export pipelines that had failed entries and were sent again
	ExportPipelines uint64 // export pipelines sent (attempts)
	ExportQueued    uint64 // messages and presence events queued or being written now (a gauge)
	// Presence events (ExportPresence) in entries Redis added, and refused or given up on.
	ExportPresence, ExportPresenceDropped uint64
}

// Bus connects one process to MCloudTT's Redis. Create it with New, stop it with Close.
// All methods are safe for concurrent use.
type Bus struct {
	opts  Options
	conn  *redisconn.Connector // dials Redis (TCP or TLS) and supplies the credentials
	names Names
	log   zerolog.Logger

	// pub sends the flusher's pipelines, heartbeats and route updates. It never retries: a
	// PUBLISH whose reply was lost may have been delivered, and a retry would duplicate it.
	// pub publishes (no retries: a retried PUBLISH could be delivered twice). It is replaced by
	// a fresh client whenever a subscription link reconnects, so that no publish goes out on a
	// pooled connection to a Redis that has since restarted. Read it with pubc.
	pubMu sync.RWMutex
	pub   redis.UniversalClient
	// client is for the broker's stores (Client): go-redis' default retries.
	client redis.UniversalClient

	ctx    context.Context // cancelled by Close after the last flush
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the bus started
	once   sync.Once

	links []*link
	up    atomic.Bool // Status.Connected, read by every Publish

	cbMu     sync.Mutex // held while computing a status change and calling OnStatus, to keep order
	statusMu sync.Mutex // guards status
	status   Status

	// mu guards everything that follows: the pending batches (see publish.go).
	mu     sync.Mutex
	closed bool
	dests  map[string]*dest
	ready  []*dest // destinations with pending batches, in the order they got them
	first  time.Time
	urgent bool // a batch reached BatchMaxBytes: flush without waiting for BatchMaxDelay
	// dueSignaled: a Publish saw BatchMaxDelay pass and woke the flusher (once per round).
	dueSignaled bool
	pending     int // encoded bytes queued or in flight
	free        []*batch
	lastSweep   time.Time

	kick        chan struct{} // wakes the flusher
	flusherDone chan struct{}

	export *exporter // the export stream's queue and writer (export.go)

	reqs requests // management requests waiting for replies, and those being handled (request.go)

	dsubsSeq atomic.Uint64 // sequence numbers of this process's durable-subscription notices

	stats struct {
		published, failed, commands, flushes, received, discarded, recvBytes, sentBytes,
		reconnects atomic.Uint64
	}
}

// New returns a bus and starts its goroutines. It does not wait for Redis: the subscription
// connections are made in the background, retried until they succeed, and Status (or OnStatus)
// says when the bus is connected. It fails only for invalid options. ctx is used for its values
// only; the bus runs until Close.
func New(ctx context.Context, opts Options) (*Bus, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	conn, err := redisconn.New(o.connOptions())
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	b := &Bus{
		opts:        o,
		conn:        conn,
		names:       NewNames(o.Prefix),
		log:         o.Logger,
		dests:       make(map[string]*dest),
		kick:        make(chan struct{}, 1),
		flusherDone: make(chan struct{}),
		lastSweep:   time.Now(),
		export:      newExporter(),
	}
	b.reqs.handling = make(chan struct{}, maxHandling)
	b.reqs.prefix = rand.Text()[:10] + "-"
	b.status.Since = time.Now()
	b.ctx, b.cancel = context.WithCancel(context.WithoutCancel(ctx))
	b.pub = newClient(o, conn, -1)
	b.client = newClient(o, conn, 0)

	b.links = b.makeLinks()
	for _, l := range b.links {
		b.wg.Add(1)
		go l.run()
	}
	b.wg.Add(1)
	go b.flushLoop()
	go b.exportLoop() // waited for by closeExport
	return b, nil
}

// pubc returns the publishing client.
func (b *Bus) pubc() redis.UniversalClient {
	b.pubMu.RLock()
	defer b.pubMu.RUnlock()
	return b.pub
}

// renewPub replaces the publishing client; the old one is closed once what it is running has
// had time to finish (or fail).
func (b *Bus) renewPub() {
	nc := newClient(b.opts, b.conn, -1)
	b.pubMu.Lock()
	old := b.pub
	b.pub = nc
	b.pubMu.Unlock()
	time.AfterFunc(b.opts.ReadTimeout+b.opts.WriteTimeout, func() { _ = old.Close() })
}

// newClient makes the go-redis client; maxRetries 0 keeps go-redis' default. conn dials (TCP or
// TLS) and supplies the credentials.
func newClient(o Options, conn *redisconn.Connector, maxRetries int) redis.UniversalClient {
	name := "mcloudtt-" + o.ReplicaID
	maint := &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	if o.Cluster {
		co := &redis.ClusterOptions{
			Addrs: o.Addrs, ClientName: name,
			DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
			PoolSize: o.PoolSize, MaxRetries: maxRetries, DialerRetries: 1, DisableIdentity: true,
			MaintNotificationsConfig: maint,
		}
		conn.ClusterClient(co)
		return redis.NewClusterClient(co)
	}
	so := &redis.Options{
		Addr: o.Addrs[0], ClientName: name,
		DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
		PoolSize: o.PoolSize, MaxRetries: maxRetries, DialerRetries: 1, DisableIdentity: true,
		MaintNotificationsConfig: maint,
	}
	conn.Client(so)
	return redis.NewClient(so)
}

// Names returns the names the bus uses.
func (b *Bus) Names() Names { return b.names }

// ReplicaID returns Options.ReplicaID.
func (b *Bus) ReplicaID() string { return b.opts.ReplicaID }

// Client returns a go-redis client on the bus's Redis for the broker's stores (route table,
// retained messages, sessions). It retries failed commands as go-redis does by default (up to 3
// times), so use it for idempotent commands or mind the retries. Close closes it.
func (b *Bus) Client() redis.UniversalClient { return b.client }

// Status returns the current status.
func (b *Bus) Status() Status {
	b.statusMu.Lock()
	defer b.statusMu.Unlock()
	return b.status
}

// Stats returns the counters.
func (b *Bus) Stats() Stats {
	s := &b.stats
	st := Stats{
		Published: s.published.Load(), Failed: s.failed.Load(), Commands: s.commands.Load(),
		Flushes: s.flushes.Load(), Received: s.received.Load(), Discarded: s.discarded.Load(),
		RecvBytes: s.recvBytes.Load(), SentBytes: s.sentBytes.Load(), Reconnects: s.reconnects.Load(),
	}
	b.export.stats(&st)
	return st
}

// Close stops the bus: Publish fails with ErrClosed from now on, pending batches are flushed (or
// failed, when Redis is down; this waits at most WriteTimeout+ReadTimeout), the export queue is
// written out (Redis down: waiting at most WriteTimeout+ReadTimeout more), the subscription
// connections are closed, every goroutine has returned, and the Redis clients are closed. Status
// then reports not connected (OnStatus is not called). It is idempotent. It must not be called
// from the bus's own callbacks.
func (b *Bus) Close() error {
	var err error
	b.once.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		b.wake()
		<-b.flusherDone
		b.closeExport()
		b.cancel()
		b.wg.Wait()
		b.up.Store(false)
		b.statusMu.Lock()
		if b.status.Connected {
			b.status.Connected, b.status.Since = false, time.Now()
		}
		b.status.LastError = ErrClosed.Error()
		b.statusMu.Unlock()
		err = errors.Join(b.pubc().Close(), b.client.Close())
	})
	return err
}

// setLink records a link's state and updates Status, calling OnStatus and OnReconnect.
func (b *Bus) setLink(l *link, up bool, err error) {
	b.cbMu.Lock()
	defer b.cbMu.Unlock()
	b.statusMu.Lock()
	l.up = up
	all := true
	for _, x := range b.links {
		all = all && x.up
	}
	s := &b.status
	changed := s.Connected != all
	if err != nil && s.LastError != err.Error() {
		s.LastError = err.Error()
		changed = true
	}
	reconnect := up && l.everUp
	if reconnect {
		s.Reconnects++
		b.stats.reconnects.Add(1)
		changed = true
	}
	if up {
		l.everUp = true
	}
	if s.Connected != all {
		s.Connected = all
		s.Since = time.Now()
	}
	st := *s
	b.statusMu.Unlock()
	if reconnect {
		// Redis may have restarted: publish on new connections, not on pooled dead ones
		// (each would fail one batch).
		b.renewPub()
	}
	b.up.Store(all)
	if !all {
		b.wake() // fail what is pending now rather than at its flush time
	}
	if changed && b.opts.OnStatus != nil {
		b.opts.OnStatus(st)
	}
	if reconnect && l.resync && b.opts.OnReconnect != nil {
		b.opts.OnReconnect()
	}
}

// backoff returns the delay before reconnection attempt n (1, 2, ...); see Backoff.
func (b *Bus) backoff(n int) time.Duration { return Backoff(n, b.opts.BackoffMin, b.opts.BackoffMax) }

// Backoff returns the delay before retry n (1, 2, ...): lo doubled per attempt, capped at hi, then
// drawn uniformly from its upper half (jitter), so that clients that failed together do not come
// back in lockstep.
func Backoff(n int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	if d <= 1 {
		return d
	}
	return d/2 + mathrand.N(d/2+1)
}

// sleep waits d or until the bus stops; it reports whether the bus is still running.
func (b *Bus) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-b.ctx.Done():
		return false
	}
}

// SetRedisLogger sends go-redis' own log lines (pool dial failures and the like), which it
// otherwise prints unstructured to stderr, to l at warn level. go-redis has one logger per
// process, so call this once, from main.
func SetRedisLogger(l zerolog.Logger) { redis.SetLogger(redisLogger{l}) }

type redisLogger struct{ l zerolog.Logger }

func (r redisLogger) Printf(_ context.Context, format string, v ...any) {
	r.l.Warn().Str("component", "go-redis").Msgf(format, v...)
}
