// Package app wires the health gateway together: configuration, logging, the Redis bus (heartbeats
// in, the gateway's own heartbeat out), the probe connections, the monitor, the HTTP server, and
// the lifecycle from start to graceful stop.
package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/devices"
	"github.com/mcloudtt/mcloudtt/pkg/service"
	"github.com/mcloudtt/mcloudtt/pkg/wire"
	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/api"
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
	return service.Run(config.Load, func(cfg config.Config) error {
		return Serve(ctx, cfg, service.Logger(Name, cfg.LogLevel, cfg.LogFormat), nil)
	})
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
	g, err := open(ctx, cfg, log)
	if err != nil {
		return err
	}
	handler, err := g.handler()
	if err != nil {
		g.http.Close()
		g.prober.Close()
		_ = g.bus.Close()
		return err
	}
	g.http.Start(handler)
	stopWork, waitWork := g.work(ctx)
	log.Info().Str("http_addr", g.http.Addr()).Str("id", cfg.ID).Strs("redis", cfg.RedisAddrs).
		Str("redis_security", cfg.Env.Describe()).Bool("api_token", cfg.APIToken != "" || cfg.APITokenFile != "").
		Msg("health gateway started")
	if started != nil {
		started(g.http.Addr())
	}
	return g.stop(service.Wait(ctx, g.http.Failed()), stopWork, waitWork)
}

// gateway is a gateway's parts, from open to stop.
type gateway struct {
	cfg    config.Config
	log    zerolog.Logger
	http   *service.HTTP
	reg    *prometheus.Registry
	prober *probe.Prober
	mon    *monitor.Monitor
	bus    *bus.Bus
}

// open listens on the HTTP address and connects the prober, the monitor and the bus (which
// connects in the background: Redis need not run yet).
func open(ctx context.Context, cfg config.Config, log zerolog.Logger) (*gateway, error) {
	h, err := service.Listen(cfg.HTTPAddr)
	if err != nil {
		return nil, err
	}
	g := &gateway{cfg: cfg, log: log, http: h, reg: service.NewRegistry()}
	g.prober = probe.New(probe.Options{
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
	g.mon = monitor.New(monitor.Options{
		GatewayID: cfg.ID, HeartbeatInterval: cfg.HeartbeatInterval, DownAfter: cfg.DownAfter(),
		ForgetAfter: cfg.ForgetAfter, ProbeInterval: cfg.ProbeInterval, ProbeTimeout: cfg.ProbeTimeout,
		FailAfter: cfg.FailAfter, RecoverAfter: cfg.RecoverAfter, AdapterMaxLag: cfg.AdapterMaxLag,
		BusStatus: busStatus, Registerer: g.reg, Log: log,
	}, g.prober)
	ro := cfg.Env.Options()
	g.bus, err = bus.New(ctx, bus.Options{
		Addrs: cfg.RedisAddrs, Username: ro.Username, Password: ro.Password, PasswordFile: ro.PasswordFile,
		TLS: ro.TLS, ReplicaID: cfg.ID,
		Logger: log.With().Str("component", "bus").Logger(), OnHeartbeat: g.mon.OnHeartbeat,
	})
	if err != nil {
		g.http.Close()
		g.prober.Close()
		return nil, fmt.Errorf("bus: %w", err)
	}
	busp.Store(g.bus)
	g.reg.MustRegister(service.RedisLink(func() bool { return busStatus().Connected }))
	return g, nil
}

// handler is the status page, the API, health, readiness and metrics, behind the API token when
// one is set.
func (g *gateway) handler() (http.Handler, error) {
	ready := func() (bool, string) {
		st := g.bus.Status()
		if !st.Connected {
			return false, "no Redis subscription (" + st.LastError + ")"
		}
		return true, ""
	}
	mgmt := api.New(api.Options{Bus: g.bus, Brokers: g.brokers, Timeout: g.cfg.APITimeout,
		Devices: devices.New(g.bus.Client(), wire.NewNames("")), MaxDeviceKeys: g.cfg.JWTMaxKeys,
		Log: g.log.With().Str("component", "api").Logger()})
	tokens, err := g.tokens()
	if err != nil {
		return nil, err
	}
	handler := web.Authenticate(tokens, web.Handler(g.mon, ready, g.reg, mgmt.Register))
	return handler, nil
}

// tokens are the API token (read-only) and the admin token, each from the environment or a file.
func (g *gateway) tokens() (web.Tokens, error) {
	var t web.Tokens
	for _, tk := range []struct {
		name, value, file string
		out               *func() string
	}{
		{"API_TOKEN", g.cfg.APIToken, g.cfg.APITokenFile, &t.Read},
		{"ADMIN_TOKEN", g.cfg.AdminToken, g.cfg.AdminTokenFile, &t.Admin},
	} {
		switch {
		case tk.value != "":
			v := tk.value
			*tk.out = func() string { return v }
		case tk.file != "":
			ts := &tokenFile{path: tk.file, log: g.log}
			_, err := ts.load()
			switch {
			case tk.name == "ADMIN_TOKEN" && errors.Is(err, fs.ErrNotExist):
				g.log.Warn().Str("file", tk.file).Msg("GATEWAY_ADMIN_TOKEN_FILE does not exist (yet): " +
					"the management API's changes are refused until it does")
			case err != nil:
				return t, fmt.Errorf("%s_%s_FILE: %w", config.Prefix, tk.name, err)
			}
			*tk.out = ts.get
		}
	}
	if t.Read == nil {
		t.Open = true
		g.log.Warn().Msg("GATEWAY_API_TOKEN is not set: the status page and the read-only API answer anyone " +
			"who reaches GATEWAY_HTTP_ADDR; keep it inside the cluster or set a token")
	}
	if t.Admin == nil {
		g.log.Info().Msg("GATEWAY_ADMIN_TOKEN is not set: the management API's changes (kick, ban, retained deletes, publish) are refused")
	}
	return t, nil
}

// brokers are the broker replicas the gateway knows of, live or not yet forgotten, in id order.
func (g *gateway) brokers() []string {
	var out []string
	for _, m := range g.mon.Snapshot().Members {
		if m.Kind == bus.KindBroker {
			out = append(out, m.ReplicaID)
		}
	}
	return out
}

// work starts the monitor and the gateway's heartbeat; stop ends them, wait waits until they have.
func (g *gateway) work(ctx context.Context) (stop func(), wait func()) {
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { g.mon.Run(wctx) })
	beats := service.Heartbeats(wctx, g.bus, g.cfg.HeartbeatInterval, heartbeat(g.mon))
	return stop, func() {
		wg.Wait()
		<-beats
	}
}

// stop shuts the gateway down within cfg.ShutdownTimeout: the monitor and the heartbeat stop, the
// HTTP server finishes its requests, then the probes and the bus close. runErr is why it stops
// (nil: ctx was cancelled); the first error wins.
func (g *gateway) stop(runErr error, stopWork, waitWork func()) error {
	g.log.Info().Msg("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout)
	defer cancel()
	stopWork()
	if err := g.http.Shutdown(sctx); err != nil && runErr == nil {
		runErr = err
	}
	waitWork()
	g.prober.Close()
	if err := g.bus.Close(); err != nil {
		g.log.Warn().Err(err).Msg("closing the bus")
	}
	g.log.Info().Msg("stopped")
	return runErr
}

// heartbeat is the gateway's heartbeat, sent every HeartbeatInterval with the cluster's status,
// so other gateways list it.
func heartbeat(mon *monitor.Monitor) func(context.Context, time.Time) bus.Heartbeat {
	started := time.Now()
	return func(context.Context, time.Time) bus.Heartbeat {
		st, _ := mon.Status()
		return bus.Heartbeat{Kind: bus.KindGateway, Version: Version, Started: started,
			Extra: map[string]any{"cluster_status": string(st)}}
	}
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
