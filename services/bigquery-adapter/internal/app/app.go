// Package app wires the BigQuery adapter together: configuration, logging, the export feed on
// Redis, the BigQuery client, the HTTP endpoints (health, readiness, metrics), the heartbeat on
// the bus, and the lifecycle from start to graceful stop (SIGTERM writes the open batches and
// acknowledges them).
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/logging"
	"github.com/mcloudtt/mcloudtt/pkg/redisconn"
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
	cfg, err := config.Load()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := logging.New(logging.Options{Level: cfg.LogLevel, Format: logging.Format(cfg.LogFormat), Service: Name})
	bus.SetRedisLogger(log)
	return Serve(ctx, cfg, log)
}

// Serve runs the adapter with cfg until ctx is cancelled, then stops within cfg.ShutdownTimeout.
// Neither Redis nor BigQuery needs to be reachable at start: the adapter retries in the
// background and reports not ready meanwhile.
func Serve(ctx context.Context, cfg config.Config, log zerolog.Logger) error {
	log = log.With().Str("adapter_id", cfg.ID).Logger()
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}

	client, err := bq.New(ctx, bq.Options{Project: cfg.Project, Dataset: cfg.Dataset, Table: cfg.Table,
		EventsTable: cfg.EventsTable, Location: cfg.Location, Endpoint: cfg.Endpoint, GRPCEndpoint: cfg.GRPCEndpoint,
		CreateTable: cfg.CreateTable, API: bq.API(cfg.API)})
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer client.Close()
	ro := cfg.Env.Options()
	ro.DialTimeout = 2 * time.Second
	conn, err := redisconn.New(ro)
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("redis: %w", err)
	}
	f := feed.New(feed.Options{Addrs: cfg.RedisAddrs, Conn: conn, Group: cfg.Group,
		Consumer: cfg.ID, DeadLetterMaxLen: cfg.DeadLetterMaxLen})
	defer f.Close()
	// The bus carries only the heartbeat: the adapter neither publishes nor receives messages.
	hbus, err := bus.New(ctx, bus.Options{Addrs: cfg.RedisAddrs, Username: ro.Username, Password: ro.Password,
		PasswordFile: ro.PasswordFile, TLS: ro.TLS, ReplicaID: cfg.ID,
		Logger: log.With().Str("component", "bus").Logger()})
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("redis: %w", err)
	}
	defer hbus.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := adapter.NewMetrics(reg)
	ad := adapter.New(adapter.Options{BatchRows: cfg.BatchRows, BatchBytes: cfg.BatchBytes, BatchDelay: cfg.BatchDelay,
		Writers: cfg.Writers, RequestTimeout: cfg.RequestTimeout, RetryMin: cfg.RetryMin, RetryMax: cfg.RetryMax,
		ClaimIdle: cfg.ClaimIdle, DedupCache: cfg.DedupCache, ShutdownTimeout: cfg.ShutdownTimeout},
		f, client, metrics, log)

	// Readiness: Redis and BigQuery answered within the last checks, and the table is set up.
	var redisOK, bqOK atomic.Bool
	var redisErr atomic.Value // string: why Redis is not reachable
	redisErr.Store("not checked yet")
	hctx, stopChecks := context.WithCancel(context.WithoutCancel(ctx))
	defer stopChecks()
	go func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		last := ""
		for {
			c, cancel := context.WithTimeout(hctx, 2*time.Second)
			err := f.Ping(c)
			cancel()
			redisOK.Store(err == nil)
			// Log each change of the Redis link once: a wrong password or an untrusted certificate
			// is named here, and the check goes on every 2 s until it passes.
			switch msg := fmt.Sprint(err); {
			case err == nil && last != "":
				log.Info().Msg("redis reachable")
				last = ""
			case err != nil && msg != last && hctx.Err() == nil:
				log.Warn().Err(err).Msg("redis not reachable; not ready, retrying")
				last = msg
				redisErr.Store(msg)
			}
			c, cancel = context.WithTimeout(hctx, cfg.RequestTimeout)
			bqOK.Store(client.Ping(c) == nil)
			cancel()
			select {
			case <-hctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	go heartbeats(hctx, hbus, f, metrics, cfg, ln.Addr().String(), log)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case !redisOK.Load():
			http.Error(w, "redis not reachable: "+redisErr.Load().(string), http.StatusServiceUnavailable)
		case !bqOK.Load():
			http.Error(w, "bigquery not reachable", http.StatusServiceUnavailable)
		default:
			if ok, err := ad.Ready(); !ok {
				msg := "consumer group or table not set up"
				if err != nil {
					msg += ": " + err.Error()
				}
				http.Error(w, msg, http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ready\n"))
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info().Str("http_addr", ln.Addr().String()).Strs("redis", cfg.RedisAddrs).Str("redis_security", cfg.Env.Describe()).
		Str("table", cfg.Project+"."+cfg.Dataset+"."+cfg.Table).Str("events_table", cfg.EventsTable).
		Str("api", cfg.API).Str("endpoint", cfg.Endpoint).Msg("BigQuery adapter started")

	runDone := make(chan error, 1)
	go func() { runDone <- ad.Run(ctx) }()

	var runErr error
	select {
	case err := <-errc:
		runErr = fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info().Msg("shutting down: writing the open batches")
	// Run returns once the open batches are written and acknowledged (or ShutdownTimeout passed).
	if err := <-runDone; err != nil && runErr == nil {
		runErr = err
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) && runErr == nil {
		runErr = fmt.Errorf("http shutdown: %w", err)
	}
	log.Info().Msg("stopped")
	return runErr
}

// heartbeats announces the adapter and its lag on the bus every HeartbeatInterval.
func heartbeats(ctx context.Context, b *bus.Bus, f *feed.Feed, m *adapter.Metrics, cfg config.Config, addr string, log zerolog.Logger) {
	started := time.Now()
	b.RunHeartbeats(ctx, cfg.HeartbeatInterval, func(ctx context.Context, now time.Time) bus.Heartbeat {
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
		return hb
	})
}
