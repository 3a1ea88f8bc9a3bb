// Package app wires the health gateway together: configuration, logging, the Redis bus (heartbeats
// in, the gateway's own heartbeat out), the probe connections, the monitor, the HTTP server, and
// the lifecycle from start to graceful stop.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/logging"
	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/config"
	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/monitor"
	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/probe"
	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/web"
)

// Name is the service name written into every log line.
const Name = "health-gateway"

// Version is the gateway's version, sent in its heartbeat.
const Version = "0.1.0"

// Run loads the configuration from the environment and serves until ctx is cancelled.
func Run(ctx context.Context) error {
	cfg, err := config.Load()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := logging.New(logging.Options{Level: cfg.LogLevel, Format: logging.Format(cfg.LogFormat), Service: Name})
	return Serve(ctx, cfg, log, nil)
}

// Serve runs the gateway with cfg until ctx is cancelled, then stops within cfg.ShutdownTimeout.
// started, when not nil, is called with the HTTP address once the gateway serves.
//
// The gateway is ready (/readyz) while its own Redis subscription is up: then it sees the
// heartbeats and its judgement means something. It does not follow the cluster's status: when the
// cluster is red, the page and the API that say why must stay reachable.
func Serve(ctx context.Context, cfg config.Config, log zerolog.Logger, started func(httpAddr string)) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	prober := probe.New(probe.Options{
		GatewayID: cfg.ID, Username: cfg.MQTTUsername, Password: cfg.MQTTPassword,
		ConnectTimeout: cfg.ProbeTimeout, RetryInterval: cfg.ProbeInterval,
		Log: log.With().Str("component", "probe").Logger(),
	})
	// The bus calls the monitor, which asks for the bus's status: the pointer is set once New returns.
	var busp atomic.Pointer[bus.Bus]
	busStatus := func() bus.Status {
		if b := busp.Load(); b != nil {
			return b.Status()
		}
		return bus.Status{}
	}
	mon := monitor.New(monitor.Options{
		GatewayID: cfg.ID, HeartbeatInterval: cfg.HeartbeatInterval, DownAfter: cfg.DownAfter(),
		ForgetAfter: cfg.ForgetAfter, ProbeInterval: cfg.ProbeInterval, ProbeTimeout: cfg.ProbeTimeout,
		FailAfter: cfg.FailAfter, RecoverAfter: cfg.RecoverAfter, AdapterMaxLag: cfg.AdapterMaxLag,
		BusStatus: busStatus, Registerer: reg, Log: log,
	}, prober)
	ro := cfg.Env.Options()
	rbus, err := bus.New(ctx, bus.Options{
		Addrs: cfg.RedisAddrs, Username: ro.Username, Password: ro.Password, PasswordFile: ro.PasswordFile,
		TLS: ro.TLS, ReplicaID: cfg.ID,
		Logger: log.With().Str("component", "bus").Logger(), OnHeartbeat: mon.OnHeartbeat,
	})
	if err != nil {
		ln.Close()
		prober.Close()
		return fmt.Errorf("bus: %w", err)
	}
	busp.Store(rbus)

	ready := func() (bool, string) {
		st := rbus.Status()
		if !st.Connected {
			return false, "no Redis subscription (" + st.LastError + ")"
		}
		return true, ""
	}
	var handler http.Handler = web.Handler(mon, ready, reg)
	switch {
	case cfg.APIToken != "":
		handler = web.RequireToken(func() string { return cfg.APIToken }, handler)
	case cfg.APITokenFile != "":
		ts := &tokenFile{path: cfg.APITokenFile, log: log}
		if _, err := ts.load(); err != nil {
			ln.Close()
			prober.Close()
			_ = rbus.Close()
			return fmt.Errorf("%s_API_TOKEN_FILE: %w", config.Prefix, err)
		}
		handler = web.RequireToken(ts.get, handler)
	default:
		log.Warn().Msg("GATEWAY_API_TOKEN is not set: the status page and /api/v1/cluster answer anyone " +
			"who reaches GATEWAY_HTTP_ADDR; keep it inside the cluster or set a token")
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	wctx, stopWork := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { mon.Run(wctx) })
	wg.Go(func() { heartbeats(wctx, rbus, cfg, mon) })
	log.Info().Str("http_addr", ln.Addr().String()).Str("id", cfg.ID).Strs("redis", cfg.RedisAddrs).
		Str("redis_security", cfg.Env.Describe()).Bool("api_token", cfg.APIToken != "" || cfg.APITokenFile != "").
		Msg("health gateway started")
	if started != nil {
		started(ln.Addr().String())
	}

	var runErr error
	select {
	case err := <-errc:
		runErr = fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info().Msg("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	stopWork()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) && runErr == nil {
		runErr = fmt.Errorf("http shutdown: %w", err)
	}
	wg.Wait()
	prober.Close()
	if err := rbus.Close(); err != nil {
		log.Warn().Err(err).Msg("closing the bus")
	}
	log.Info().Msg("stopped")
	return runErr
}

// heartbeats announces the gateway on the bus every HeartbeatInterval with the cluster's status,
// so other gateways list it.
func heartbeats(ctx context.Context, b *bus.Bus, cfg config.Config, mon *monitor.Monitor) {
	started := time.Now()
	b.RunHeartbeats(ctx, cfg.HeartbeatInterval, func(context.Context, time.Time) bus.Heartbeat {
		st, _ := mon.Status()
		return bus.Heartbeat{Kind: bus.KindGateway, Version: Version, Started: started,
			Extra: map[string]any{"cluster_status": string(st)}}
	})
}

// tokenFile is the API token read from a file, read again whenever the file changes (a rotated
// Kubernetes Secret). A file that turns unreadable or invalid keeps the last good token in force.
type tokenFile struct {
	path string
	log  zerolog.Logger

	mu      sync.Mutex // guards what follows
	token   string
	mod     time.Time
	size    int64
	lastErr string // the last load error logged, so each is logged once
}

func (f *tokenFile) load() (string, error) {
	fi, err := os.Stat(f.path)
	if err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.token != "" && fi.ModTime().Equal(f.mod) && fi.Size() == f.size {
		return f.token, nil
	}
	t, err := config.ReadToken(f.path)
	if err != nil {
		return "", err
	}
	if f.token != "" && t != f.token {
		f.log.Info().Str("file", f.path).Msg("API token reloaded")
	}
	f.token, f.mod, f.size = t, fi.ModTime(), fi.Size()
	return t, nil
}

func (f *tokenFile) get() string {
	t, err := f.load()
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		if err.Error() != f.lastErr {
			f.log.Warn().Err(err).Msg("API token file unreadable; the previous token stays in force")
			f.lastErr = err.Error()
		}
		return f.token
	}
	f.lastErr = ""
	return t
}
