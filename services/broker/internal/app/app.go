// Package app wires a broker replica together: configuration, logging, the listeners (TCP, TLS,
// WebSocket, secure WebSocket), authentication, the HTTP endpoints, reloads on SIGHUP, and the
// lifecycle from start to graceful drain.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/logging"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/auth"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/broker"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/cluster"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/listener"
)

// Name is the service name written into every log line.
const Name = "broker"

// Run loads the configuration from the environment and serves until ctx is cancelled.
func Run(ctx context.Context) error {
	cfg, err := config.Load()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := logging.New(logging.Options{Level: cfg.LogLevel, Format: logging.Format(cfg.LogFormat), Service: Name})
	return Serve(ctx, cfg, log, nil)
}

// Addrs are the addresses a running broker listens on (empty when that listener is off).
type Addrs struct {
	MQTT, TLS, WS, WSS, HTTP string
}

// Serve runs a broker with cfg until ctx is cancelled, then drains within cfg.ShutdownTimeout.
// started, if not nil, is called with the listening addresses once the broker is ready.
func Serve(ctx context.Context, cfg config.Config, log zerolog.Logger, started func(Addrs)) (err error) {
	log = log.With().Str("broker_id", cfg.ID).Logger()

	var opts []broker.Option
	var store *auth.Store
	if cfg.PasswordFile != "" || cfg.ACLFile != "" || !cfg.AllowAnonymous || cfg.ProbeUsername != "" {
		if store, err = auth.NewStore(cfg.PasswordFile, cfg.ACLFile, cfg.AllowAnonymous,
			auth.WithProbeUser(cfg.ProbeUsername)); err != nil {
			return fmt.Errorf("auth: %w", err)
		}
		opts = append(opts, broker.WithAuth(store))
	}
	logAuth(log, cfg, store)
	var certs *listener.Certs
	if cfg.TLSAddr != "" || cfg.WSSAddr != "" {
		certs, err = listener.LoadCerts(listener.TLSOptions{CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile,
			ClientCAFile: cfg.TLSClientCAFile, RequireClientCert: cfg.TLSRequireClientCert})
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		opts = append(opts, broker.WithPeerName(listener.PeerCommonName))
	}
	srv := broker.New(cfg, log, opts...)

	// The cluster bus: without it the replica stands alone. It connects in the background and
	// keeps retrying, so a replica that starts before Redis runs and reports not ready.
	var rbus *bus.Bus
	var cl *cluster.Cluster
	beatsStarted := time.Now() // this process's incarnation, in every heartbeat
	var listening atomic.Value // Addrs, once the listeners are up
	if len(cfg.RedisAddrs) > 0 {
		bus.SetRedisLogger(log.With().Str("component", "redis").Logger())
		cl = cluster.New(cluster.Config{ID: cfg.ID, HeartbeatInterval: cfg.HeartbeatInterval, PeerTimeout: cfg.PeerTimeout,
			ExportFilters: cfg.ExportFilters, ExportMaxLen: cfg.ExportMaxLen,
			MaxQueued: cfg.MaxQueuedMessages + int(cfg.MaxInflight)}, srv.ClusterHost(), log.With().Str("component", "cluster").Logger())
		srv.SetCluster(cl, cl.Store())
		bopts := bus.Options{Addrs: cfg.RedisAddrs, Password: cfg.RedisPassword,
			Logger: log.With().Str("component", "bus").Logger(),
			OnStatus: func(st bus.Status) {
				if st.Connected {
					log.Info().Msg("redis connected")
				} else {
					log.Warn().Str("error", st.LastError).Msg("redis not connected")
				}
			}}
		// How to log in to Redis and whether to speak TLS (BROKER_REDIS_*, package redisconn).
		ro := cfg.Env.Options()
		bopts.Username, bopts.PasswordFile, bopts.TLS = ro.Username, ro.PasswordFile, ro.TLS
		log.Info().Strs("redis", cfg.RedisAddrs).Str("redis_security", cfg.Env.Describe()).Msg("cluster bus")
		cl.BusOptions(&bopts)
		rbus, err = bus.New(ctx, bopts)
		if err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		defer rbus.Close() // last: after the drain
		cl.SetHeartbeat(func() bus.Heartbeat {
			a, _ := listening.Load().(Addrs)
			return baseHeartbeat(cfg, a, beatsStarted)
		})
		cl.Start(rbus)
	}

	// Listeners: each optional; all up before the broker reports ready.
	var lns []net.Listener
	closeAll := func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}
	listen := func(kind, addr string, wrap func(net.Listener) net.Listener) (string, error) {
		if addr == "" {
			return "", nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return "", fmt.Errorf("%s listener %s: %w", kind, addr, err)
		}
		if wrap != nil {
			ln = wrap(ln)
		}
		lns = append(lns, ln)
		log.Info().Str("listener", kind).Str("addr", ln.Addr().String()).Msg("listening")
		return ln.Addr().String(), nil
	}
	var addrs Addrs
	var checkOrigin func(*http.Request) bool // nil: every origin
	if len(cfg.WSAllowedOrigins) > 0 {
		if checkOrigin, err = listener.OriginAllowList(cfg.WSAllowedOrigins); err != nil {
			return fmt.Errorf("%s_WS_ALLOWED_ORIGINS: %w", config.Prefix, err)
		}
	} else if cfg.WSAddr != "" || cfg.WSSAddr != "" {
		log.Warn().Msg("WebSocket listeners accept pages from every web origin; " +
			"set BROKER_WS_ALLOWED_ORIGINS to the sites that may connect")
	}
	ws := func(c *listener.Certs) func(net.Listener) net.Listener {
		return func(ln net.Listener) net.Listener {
			return listener.WebSocket(ln, listener.WebSocketOptions{Path: cfg.WSPath, TLS: c, CheckOrigin: checkOrigin})
		}
	}
	for _, l := range []struct {
		kind string
		addr string
		out  *string
		wrap func(net.Listener) net.Listener
	}{
		{"mqtt", cfg.MQTTAddr, &addrs.MQTT, nil},
		{"mqtts", cfg.TLSAddr, &addrs.TLS, func(ln net.Listener) net.Listener { return listener.TLS(ln, certs) }},
		{"ws", cfg.WSAddr, &addrs.WS, ws(nil)},
		{"wss", cfg.WSSAddr, &addrs.WSS, ws(certs)},
	} {
		if *l.out, err = listen(l.kind, l.addr, l.wrap); err != nil {
			closeAll()
			return err
		}
	}

	var ready atomic.Bool
	errc := make(chan error, len(lns)+1)
	for _, ln := range lns {
		go func() { errc <- srv.Serve(ln) }()
	}

	var hs *http.Server
	if cfg.HTTPAddr != "" {
		hln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			closeAll()
			return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
		}
		isReady := func() bool { return ready.Load() && (cl == nil || cl.Ready()) }
		hs = &http.Server{Handler: httpHandler(cfg, srv, isReady), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := hs.Serve(hln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("http server: %w", err)
			}
		}()
		addrs.HTTP = hln.Addr().String()
		log.Info().Str("http_addr", addrs.HTTP).Msg("http listening")
	}

	// SIGHUP reloads the password and ACL files and the certificates; the certificate files are
	// also watched.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := func() {
		if store != nil {
			if err := store.Reload(); err != nil {
				log.Error().Err(err).Msg("auth files not reloaded; the previous ones stay in force")
			} else {
				log.Info().Msg("auth files reloaded")
			}
		}
		if certs != nil {
			if err := certs.Reload(); err != nil {
				log.Error().Err(err).Msg("certificates not reloaded; the previous ones stay in force")
			} else {
				log.Info().Msg("certificates reloaded")
			}
		}
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	if certs != nil && cfg.CertReloadInterval > 0 {
		go certs.Watch(wctx, cfg.CertReloadInterval, func(err error) {
			if err != nil {
				log.Error().Err(err).Msg("changed certificate files not loaded; the previous ones stay in force")
				return
			}
			log.Info().Msg("certificates reloaded after a file change")
		})
	}

	listening.Store(addrs)
	beatsDone := make(chan struct{})
	if rbus != nil {
		go func() {
			defer close(beatsDone)
			heartbeats(wctx, rbus, srv, cfg, addrs, beatsStarted)
		}()
	} else {
		close(beatsDone)
	}
	ready.Store(true)
	log.Info().Str("mqtt_addr", addrs.MQTT).Msg("broker started")
	if started != nil {
		started(addrs)
	}

	var runErr error
loop:
	for {
		select {
		case err := <-errc:
			runErr = err
			break loop
		case <-hup:
			reload()
		case <-ctx.Done():
			break loop
		}
	}
	// Drain: not ready at once, then stop accepting, tell v5 clients, flush, close.
	ready.Store(false)
	stopWatch() // heartbeats stop; the last one says this replica leaves
	<-beatsDone
	if rbus != nil && rbus.Status().Connected {
		// Tell the health gateway this replica leaves on purpose (not a crash).
		hctx, hcancel := context.WithTimeout(context.Background(), time.Second)
		hb := baseHeartbeat(cfg, addrs, beatsStarted)
		hb.Leaving = true
		_ = rbus.PublishHeartbeat(hctx, hb)
		hcancel()
	}
	log.Info().Msg("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Close(sctx); err != nil {
		log.Warn().Err(err).Msg("drain did not finish in time")
	}
	if cl != nil {
		cl.Stop() // after the drain: offline sessions and routes reach Redis first
	}
	closeAll()
	if hs != nil {
		_ = hs.Shutdown(sctx)
	}
	log.Info().Msg("stopped")
	return runErr
}

// logAuth says at start who may connect, and why nobody may when that is so.
func logAuth(log zerolog.Logger, cfg config.Config, store *auth.Store) {
	switch {
	case store == nil:
		log.Warn().Msg("anonymous access is on and no password file or ACL is set: " +
			"every client may connect and use every topic (BROKER_ALLOW_ANONYMOUS, BROKER_PASSWORD_FILE)")
		return
	case store.RefusesEveryone():
		ev := log.Error()
		if cfg.TLSCNAsUsername {
			ev = log.Warn()
		}
		msg := "BROKER_ALLOW_ANONYMOUS is false and BROKER_PASSWORD_FILE is not set: there is no way to " +
			"authenticate, so every client is refused (CONNACK v5 0x86, 3.x 0x05)"
		if cfg.TLSCNAsUsername {
			msg += ", except TLS clients whose verified certificate names them (BROKER_TLS_CN_AS_USERNAME)"
		}
		ev.Msg(msg)
	case cfg.PasswordFile == "":
		log.Warn().Msg("anonymous access is on and no password file is set: user names are not checked")
	}
	if cfg.ProbeUsername == "" {
		log.Warn().Msg("BROKER_PROBE_USERNAME is not set: no client may use the health gateway's probe " +
			"topics ($mcloudtt/probe/#), so the gateway's probes through this broker fail")
	} else {
		log.Info().Str("probe_user", cfg.ProbeUsername).Msg("only this user may use the probe topics ($mcloudtt/probe/#)")
	}
}

func httpHandler(cfg config.Config, srv *broker.Server, ready func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(srv.Collector(), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// baseHeartbeat is the replica's heartbeat without its counters: id, version, the address
// probes reach it at, and when this process started.
func baseHeartbeat(cfg config.Config, addrs Addrs, started time.Time) bus.Heartbeat {
	advertise := cfg.AdvertiseAddr
	if advertise == "" {
		advertise = addrs.MQTT
	} else if _, _, err := net.SplitHostPort(advertise); err != nil {
		// A bare host (the pod IP): the MQTT listener's port.
		if _, port, err := net.SplitHostPort(addrs.MQTT); err == nil {
			advertise = net.JoinHostPort(advertise, port)
		}
	}
	return bus.Heartbeat{ReplicaID: cfg.ID, Kind: bus.KindBroker, Version: broker.Version, Address: advertise, Started: started}
}

// heartbeats announces the replica on the bus every HeartbeatInterval until ctx ends: its id,
// version, address, uptime, clients and message rates, which the health gateway reads.
func heartbeats(ctx context.Context, b *bus.Bus, srv *broker.Server, cfg config.Config, addrs Addrs, started time.Time) {
	last, lastAt := srv.Stats(), started
	b.RunHeartbeats(ctx, cfg.HeartbeatInterval, func(_ context.Context, now time.Time) bus.Heartbeat {
		st := srv.Stats()
		secs := now.Sub(lastAt).Seconds()
		hb := baseHeartbeat(cfg, addrs, started)
		hb.Sent, hb.Clients = now, int(st.Clients)
		hb.MsgsInRate = float64(st.MessagesReceived-last.MessagesReceived) / secs
		hb.MsgsOutRate = float64(st.MessagesSent-last.MessagesSent) / secs
		hb.Redis = b.Status()
		last, lastAt = st, now
		return hb
	})
}
