// Package app wires the BigQuery adapter together: configuration, logging, the export feed on
// Redis, the BigQuery client, the HTTP endpoints (health, readiness, metrics), the heartbeat on
// the bus, and the lifecycle from start to graceful stop (SIGTERM writes the open batches and
// acknowledges them).
package app

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/redisconn"
	"github.com/mcloudtt/mcloudtt/pkg/service"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/adapter"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/bq"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/config"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/feed"
)

// Name is the service name written into every log line.
const Name = "bigquery-adapter"

// Version is the adapter's version, announced in its heartbeat (set with -ldflags -X).
var Version = "dev"

// Run loads the configuration from the environment and serves until ctx is cancelled.
func Run(ctx context.Context) error {
	return service.Run(config.Load, func(cfg config.Config) error {
		log := service.Logger(Name, cfg.LogLevel, cfg.LogFormat)
		bus.SetRedisLogger(log)
		return Serve(ctx, cfg, log)
	})
}

// Serve runs the adapter with cfg until ctx is cancelled, then stops within cfg.ShutdownTimeout.
// Neither Redis nor BigQuery needs to be reachable at start: the adapter retries in the
// background and reports not ready meanwhile.
func Serve(ctx context.Context, cfg config.Config, log zerolog.Logger) error {
	log = log.With().Str("adapter_id", cfg.ID).Logger()
	h, err := service.Listen(cfg.HTTPAddr)
	if err != nil {
		return err
	}
	var b backends
	defer b.close()
	if err := b.open(ctx, cfg, log); err != nil {
		_ = h.Close()
		return err
	}

	reg := service.NewRegistry(service.RedisLink(func() bool { return b.bus.Status().Connected }))
	metrics := adapter.NewMetrics(reg)
	ad := adapter.New(adapter.Options{BatchRows: cfg.BatchRows, BatchBytes: cfg.BatchBytes, BatchDelay: cfg.BatchDelay,
		Writers: cfg.Writers, RequestTimeout: cfg.RequestTimeout, RetryMin: cfg.RetryMin, RetryMax: cfg.RetryMax,
		ClaimIdle: cfg.ClaimIdle, DedupCache: cfg.DedupCache, ShutdownTimeout: cfg.ShutdownTimeout},
		b.feed, b.client, metrics, log)

	// The checks and the heartbeat go on while the open batches are written, until Serve returns.
	hctx, stopChecks := context.WithCancel(context.WithoutCancel(ctx))
	defer stopChecks()
	chk := newChecks(ad)
	go chk.run(hctx, &b, cfg, log)
	service.Heartbeats(hctx, b.bus, cfg.HeartbeatInterval, heartbeat(b.feed, metrics, cfg, h.Addr(), log))

	h.Start(handler(cfg, reg, chk.ready))
	log.Info().Str("http_addr", h.Addr()).Strs("redis", cfg.RedisAddrs).Str("redis_security", cfg.Env.Describe()).
		Str("table", cfg.Project+"."+cfg.Dataset+"."+cfg.Table).Str("events_table", cfg.EventsTable).
		Str("api", cfg.API).Str("endpoint", cfg.Endpoint).Msg("BigQuery adapter started")

	runDone := make(chan error, 1)
	go func() { runDone <- ad.Run(ctx) }()
	return stop(service.Wait(ctx, h.Failed()), runDone, h, log)
}

// stop waits for the adapter to write and acknowledge the open batches, then shuts the HTTP
// server down. runErr is why it stops (nil: ctx was cancelled); the first error wins.
func stop(runErr error, runDone <-chan error, h *service.HTTP, log zerolog.Logger) error {
	log.Info().Msg("shutting down: writing the open batches")
	// Run returns once the open batches are written and acknowledged (or ShutdownTimeout passed).
	if err := <-runDone; err != nil && runErr == nil {
		runErr = err
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := h.Shutdown(sctx); err != nil && runErr == nil {
		runErr = err
	}
	log.Info().Msg("stopped")
	return runErr
}

// backends are the adapter's connections: BigQuery, the export feed on Redis, and the bus, which
// carries only the heartbeat (the adapter neither publishes nor receives messages).
type backends struct {
	client *bq.Client
	feed   *feed.Feed
	bus    *bus.Bus
}

// open connects the backends; on an error, those already open stay for close.
func (b *backends) open(ctx context.Context, cfg config.Config, log zerolog.Logger) error {
	var err error
	b.client, err = bq.New(ctx, bq.Options{Project: cfg.Project, Dataset: cfg.Dataset, Table: cfg.Table,
		EventsTable: cfg.EventsTable, Location: cfg.Location, Endpoint: cfg.Endpoint, GRPCEndpoint: cfg.GRPCEndpoint,
		CreateTable: cfg.CreateTable, API: bq.API(cfg.API)})
	if err != nil {
		return err
	}
	ro := cfg.Env.Options()
	ro.DialTimeout = 2 * time.Second
	conn, err := redisconn.New(ro)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	b.feed = feed.New(feed.Options{Addrs: cfg.RedisAddrs, Conn: conn, Group: cfg.Group,
		Consumer: cfg.ID, DeadLetterMaxLen: cfg.DeadLetterMaxLen})
	b.bus, err = bus.New(ctx, bus.Options{Addrs: cfg.RedisAddrs, Username: ro.Username, Password: ro.Password,
		PasswordFile: ro.PasswordFile, TLS: ro.TLS, ReplicaID: cfg.ID,
		Logger: log.With().Str("component", "bus").Logger()})
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// close closes what open opened, the last first.
func (b *backends) close() {
	if b.bus != nil {
		b.bus.Close()
	}
	if b.feed != nil {
		b.feed.Close()
	}
	if b.client != nil {
		b.client.Close()
	}
}

// checks are the readiness checks: Redis and BigQuery answered within the last checks, and the
// adapter has its consumer group and table set up.
type checks struct {
	ad            *adapter.Adapter
	redisOK, bqOK atomic.Bool
	redisErr      atomic.Value // string: why Redis is not reachable
}

func newChecks(ad *adapter.Adapter) *checks {
	c := &checks{ad: ad}
	c.redisErr.Store("not checked yet")
	return c
}

// run pings Redis and BigQuery every 2 s until ctx ends.
func (c *checks) run(ctx context.Context, b *backends, cfg config.Config, log zerolog.Logger) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	last := ""
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := b.feed.Ping(pctx)
		cancel()
		c.redisOK.Store(err == nil)
		// Log each change of the Redis link once: a wrong password or an untrusted certificate
		// is named here, and the check goes on every 2 s until it passes.
		switch msg := fmt.Sprint(err); {
		case err == nil && last != "":
			log.Info().Msg("redis reachable")
			last = ""
		case err != nil && msg != last && ctx.Err() == nil:
			log.Warn().Err(err).Msg("redis not reachable; not ready, retrying")
			last = msg
			c.redisErr.Store(msg)
		}
		pctx, cancel = context.WithTimeout(ctx, cfg.RequestTimeout)
		c.bqOK.Store(b.client.Ping(pctx) == nil)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ready is the adapter's readiness and, when not ready, why (the body of /readyz's 503).
func (c *checks) ready() (bool, string) {
	switch {
	case !c.redisOK.Load():
		return false, "redis not reachable: " + c.redisErr.Load().(string)
	case !c.bqOK.Load():
		return false, "bigquery not reachable"
	}
	if ok, err := c.ad.Ready(); !ok {
		msg := "consumer group or table not set up"
		if err != nil {
			msg += ": " + err.Error()
		}
		return false, msg
	}
	return true, ""
}

// handler serves health, readiness, metrics and, with cfg.Pprof, the profiles.
func handler(cfg config.Config, reg *prometheus.Registry, ready service.Ready) http.Handler {
	mux := http.NewServeMux()
	service.Routes(mux, ready, reg)
	if cfg.Pprof {
		service.Pprof(mux)
	}
	return mux
}

// heartbeat is the adapter's heartbeat with its lag, sent every HeartbeatInterval; with
// cfg.ReleaseAcked it also removes the entries every group has acknowledged (feed.Release).
func heartbeat(f *feed.Feed, m *adapter.Metrics, cfg config.Config, addr string,
	log zerolog.Logger) func(context.Context, time.Time) bus.Heartbeat {
	started := time.Now()
	var releaseWarned time.Time // a failing release is a warning once a minute, else debug
	return func(ctx context.Context, now time.Time) bus.Heartbeat {
		hb := bus.Heartbeat{ReplicaID: cfg.ID, Kind: bus.KindAdapter, Version: Version, Address: addr,
			Started: started, Sent: now}
		c, cancel := context.WithTimeout(ctx, cfg.HeartbeatInterval)
		lag, oldest, err := f.Lag(c)
		cancel()
		if err != nil {
			log.Debug().Err(err).Msg("export lag not measured")
			return hb
		}
		hb.ExportLag = lag
		if !oldest.IsZero() {
			hb.ExportLagSeconds = max(0, now.Sub(oldest).Seconds())
		}
		m.Lag.Set(float64(lag))
		m.LagSeconds.Set(hb.ExportLagSeconds)
		if cfg.ReleaseAcked {
			c, cancel := context.WithTimeout(ctx, cfg.HeartbeatInterval)
			n, err := f.Release(c)
			cancel()
			if err != nil {
				ev := log.Debug()
				if now.Sub(releaseWarned) >= time.Minute {
					ev, releaseWarned = log.Warn(), now
				}
				ev.Err(err).Msg("acknowledged export entries not released: the stream keeps them until MAXLEN")
			}
			m.Released.Add(float64(n))
		}
		return hb
	}
}
