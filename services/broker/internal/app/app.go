// Package app wires a broker replica together: configuration, logging, the listeners (TCP, TLS,
// WebSocket, secure WebSocket), authentication, the HTTP endpoints, reloads on SIGHUP, and the
// lifecycle from start to graceful drain.
package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/service"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/auth"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/broker"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/cluster"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/iotcore"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/listener"
)

// Name is the service name written into every log line.
const Name = "broker"

// Run loads the broker's configuration (BROKER_*) from the environment and serves until ctx is
// cancelled.
func Run(ctx context.Context) error {
	return service.Run(config.Load, func(cfg config.Config) error {
		return Serve(ctx, cfg, service.Logger(Name, cfg.LogLevel, cfg.LogFormat), nil)
	})
}

// Addrs are the addresses a running broker listens on (empty when that listener is off).
type Addrs struct {
	MQTT, TLS, WS, WSS, HTTP string
}

// Serve runs a broker with cfg until ctx is cancelled, then drains within cfg.ShutdownTimeout.
// started, if not nil, is called with the listening addresses once the broker is ready.
func Serve(ctx context.Context, cfg config.Config, log zerolog.Logger, started func(Addrs)) error {
	r := &replica{cfg: cfg, log: log.With().Str("broker_id", cfg.ID).Logger()}
	startHeapHeadroom(cfg.HeapHeadroom)
	err := r.newServer(ctx)
	if r.jwtRedis != nil {
		defer r.jwtRedis.Close() // after the drain
	}
	if err != nil {
		return err
	}
	if err := r.startCluster(ctx); err != nil {
		return err
	}
	if r.bus != nil {
		defer r.bus.Close() // last: after the drain
	}
	if err := r.openListeners(); err != nil {
		return err
	}
	r.serveMQTT()
	if err := r.serveHTTP(); err != nil {
		r.closeListeners()
		return err
	}

	// SIGHUP reloads the password and ACL files and the certificates; the certificate files are
	// also watched.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	r.watchCerts(wctx)

	beatsDone := r.startHeartbeats(wctx)
	r.ready.Store(true)
	r.log.Info().Str("mqtt_addr", r.addrs.MQTT).Msg("broker started")
	if started != nil {
		started(r.addrs)
	}
	runErr := r.run(ctx, hup)
	r.drain(stopWatch, beatsDone)
	return runErr
}

// replica is a running broker replica's parts, from Serve's start to the end of its drain.
type replica struct {
	cfg   config.Config
	log   zerolog.Logger
	srv   *broker.Server
	store *auth.Store // nil: anonymous access and no ACL
	jwt   *auth.JWT   // nil: no JWT authentication
	// jwtRedis is the device registry's Redis client; nil without one.
	jwtRedis redis.UniversalClient
	certs    *listener.Certs // nil: no TLS listener

	// The cluster bus: without it (nil) the replica stands alone.
	bus       *bus.Bus
	cl        *cluster.Cluster
	started   time.Time    // this process's incarnation, in every heartbeat
	listening atomic.Value // Addrs, once the listeners are up

	lns   []net.Listener // the MQTT listeners, each optional
	errc  chan error     // why an MQTT listener stopped serving
	http  *service.HTTP  // nil: no HTTP endpoints
	addrs Addrs
	ready atomic.Bool
	// bansLoaded: the operators' bans were read from Redis once (refreshBans); until then the
	// replica is not ready, so no traffic is sent to it that a ban should refuse.
	bansLoaded atomic.Bool
}

// newServer loads the authentication files and the certificates, sets up JWT authentication and
// makes the broker.
func (r *replica) newServer(ctx context.Context) (err error) {
	cfg := r.cfg
	var opts []broker.Option
	var deviceOf func(clientID string) (string, bool) // nil: the client id is the device id
	if cfg.IoTCoreEnabled {
		m, err := iotcore.New(cfg.IoTCoreProject, cfg.IoTCoreRegion, cfg.IoTCoreRegistry)
		if err != nil {
			return err
		}
		opts = append(opts, broker.WithIoTCore(m))
		deviceOf = m.DeviceOf // a registry token names the device of the long client id
		r.log.Info().Str("project", cfg.IoTCoreProject).Str("region", cfg.IoTCoreRegion).
			Str("registry", cfg.IoTCoreRegistry).Msg("Cloud IoT Core compatible mode on")
	}
	if r.jwt, r.jwtRedis, err = newJWT(ctx, cfg, r, deviceOf); err != nil {
		return fmt.Errorf("jwt: %w", err)
	}
	if cfg.PasswordFile != "" || cfg.ACLFile != "" || !cfg.AllowAnonymous || cfg.ProbeUsername != "" || r.jwt != nil {
		sopts := []auth.StoreOption{auth.WithProbeUser(cfg.ProbeUsername)}
		if r.jwt != nil {
			sopts = append(sopts, auth.WithTokens())
			opts = append(opts, broker.WithJWT(r.jwt))
		}
		if r.store, err = auth.NewStore(cfg.PasswordFile, cfg.ACLFile, cfg.AllowAnonymous, sopts...); err != nil {
			return fmt.Errorf("auth: %w", err)
		}
		opts = append(opts, broker.WithAuth(r.store))
	}
	logAuth(r.log, cfg, r.store)
	if cfg.TLSAddr != "" || cfg.WSSAddr != "" {
		r.certs, err = listener.LoadCerts(listener.TLSOptions{CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile,
			ClientCAFile: cfg.TLSClientCAFile, RequireClientCert: cfg.TLSRequireClientCert,
			TicketKeyFile: cfg.TLSTicketKeyFile})
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		opts = append(opts, broker.WithPeerName(listener.PeerCommonName))
	}
	r.srv = broker.New(cfg, r.log, opts...)
	return nil
}

// startCluster joins the cluster when Redis addresses are set. The bus connects in the background
// and keeps retrying, so a replica that starts before Redis runs and reports not ready.
func (r *replica) startCluster(ctx context.Context) error {
	cfg, log := r.cfg, r.log
	r.started = time.Now()
	if len(cfg.RedisAddrs) == 0 {
		return nil
	}
	bus.SetRedisLogger(log.With().Str("component", "redis").Logger())
	cl := cluster.New(cluster.Config{ID: cfg.ID, HeartbeatInterval: cfg.HeartbeatInterval, PeerTimeout: cfg.PeerTimeout,
		ExportFilters: cfg.ExportFilters, ExportMaxLen: cfg.ExportMaxLen,
		MaxQueued: cfg.MaxQueuedMessages + int(cfg.MaxInflight)}, r.srv.ClusterHost(), log.With().Str("component", "cluster").Logger())
	r.cl = cl
	r.srv.SetCluster(cl, cl.Store())
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
	bopts.OnRequest = r.srv.HandleAdmin // the operators' requests through the health gateway
	rbus, err := bus.New(ctx, bopts)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	r.bus = rbus
	cl.SetHeartbeat(func() bus.Heartbeat {
		a, _ := r.listening.Load().(Addrs)
		return baseHeartbeat(cfg, a, r.started)
	})
	cl.Start(rbus)
	go r.refreshBans(ctx)
	return nil
}

// banRefresh is how often a replica reads the bans from Redis again, to catch up on ban and
// unban requests it missed (cut off, restarting); the requests themselves apply at once.
const banRefresh = 5 * time.Second

// refreshBans reads the operators' bans from Redis until ctx ends: every 200 ms until the first
// read succeeds (a replica that just started learns them at once), then every banRefresh.
func (r *replica) refreshBans(ctx context.Context) {
	loaded := false
	for {
		rctx, cancel := context.WithTimeout(ctx, banRefresh)
		at := time.Now()
		if list, err := r.bus.Bans(rctx); err == nil {
			r.srv.SetBans(list, at)
			loaded = true
			r.bansLoaded.Store(true)
		} else if ctx.Err() == nil && loaded {
			r.log.Debug().Err(err).Msg("bans not read from Redis; the last copy stays in force")
		}
		cancel()
		wait := banRefresh
		if !loaded {
			wait = 200 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// openListeners opens the MQTT listeners (TCP, TLS, WebSocket, secure WebSocket), each optional;
// all are up before the broker reports ready. On an error, those already open are closed.
func (r *replica) openListeners() (err error) {
	cfg := r.cfg
	var checkOrigin func(*http.Request) bool // nil: every origin
	if len(cfg.WSAllowedOrigins) > 0 {
		if checkOrigin, err = listener.OriginAllowList(cfg.WSAllowedOrigins); err != nil {
			return fmt.Errorf("%s_WS_ALLOWED_ORIGINS: %w", config.Prefix, err)
		}
	} else if cfg.WSAddr != "" || cfg.WSSAddr != "" {
		r.log.Warn().Msg("WebSocket listeners accept pages from every web origin; " +
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
		{"mqtt", cfg.MQTTAddr, &r.addrs.MQTT, nil},
		{"mqtts", cfg.TLSAddr, &r.addrs.TLS, func(ln net.Listener) net.Listener { return listener.TLS(ln, r.certs) }},
		{"ws", cfg.WSAddr, &r.addrs.WS, ws(nil)},
		{"wss", cfg.WSSAddr, &r.addrs.WSS, ws(r.certs)},
	} {
		if *l.out, err = r.listen(l.kind, l.addr, l.wrap); err != nil {
			r.closeListeners()
			return err
		}
	}
	return nil
}

// listen opens one listener, wrapped by wrap when not nil; an empty addr leaves it off.
func (r *replica) listen(kind, addr string, wrap func(net.Listener) net.Listener) (string, error) {
	if addr == "" {
		return "", nil
	}
	// No TCP keep-alive on every accepted socket (Go's default costs four setsockopt calls per
	// connection, a tenth of a plain CONNECT's CPU): the MQTT keep alive finds dead peers, and a
	// client that asks for none gets TCP keep-alive after its CONNECT (broker.enableTCPKeepAlive).
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("%s listener %s: %w", kind, addr, err)
	}
	if wrap != nil {
		ln = wrap(ln)
	}
	r.lns = append(r.lns, ln)
	r.log.Info().Str("listener", kind).Str("addr", ln.Addr().String()).Msg("listening")
	return ln.Addr().String(), nil
}

func (r *replica) closeListeners() {
	for _, ln := range r.lns {
		_ = ln.Close()
	}
}

// serveMQTT serves MQTT on every listener; an error that stops one arrives on r.errc.
func (r *replica) serveMQTT() {
	r.errc = make(chan error, len(r.lns))
	for _, ln := range r.lns {
		go func() { r.errc <- r.srv.Serve(ln) }()
	}
}

// serveHTTP serves health, readiness, metrics and pprof when cfg.HTTPAddr is set. Ready means
// started and not draining, and in the cluster when there is one.
func (r *replica) serveHTTP() error {
	if r.cfg.HTTPAddr == "" {
		return nil
	}
	h, err := service.Listen(r.cfg.HTTPAddr)
	if err != nil {
		return err
	}
	ready := func() (bool, string) {
		if !r.ready.Load() || (r.cl != nil && !r.cl.Ready()) {
			return false, "not ready"
		}
		if r.bus != nil && !r.bansLoaded.Load() {
			return false, "the operators' bans not read from Redis yet"
		}
		return true, ""
	}
	cs := metricCollectors(r.cfg, r.srv, r.bus)
	if r.jwt != nil {
		cs = append(cs, r.jwt)
	}
	h.Start(httpHandler(r.cfg, ready, cs...))
	r.http = h
	r.addrs.HTTP = h.Addr()
	r.log.Info().Str("http_addr", r.addrs.HTTP).Msg("http listening")
	return nil
}

// watchCerts reloads the certificates when their files change, every cfg.CertReloadInterval
// until ctx ends.
func (r *replica) watchCerts(ctx context.Context) {
	if r.certs == nil || r.cfg.CertReloadInterval <= 0 {
		return
	}
	go r.certs.Watch(ctx, r.cfg.CertReloadInterval, func(err error) {
		if err != nil {
			r.log.Error().Err(err).Msg("changed certificate files not loaded; the previous ones stay in force")
			return
		}
		r.log.Info().Msg("certificates reloaded after a file change")
	})
}

// reload reloads the password and ACL files and the certificates (SIGHUP); what does not load
// leaves the previous in force.
func (r *replica) reload() {
	if r.store != nil {
		if err := r.store.Reload(); err != nil {
			r.log.Error().Err(err).Msg("auth files not reloaded; the previous ones stay in force")
		} else {
			r.log.Info().Msg("auth files reloaded")
		}
	}
	if r.certs != nil {
		if err := r.certs.Reload(); err != nil {
			r.log.Error().Err(err).Msg("certificates not reloaded; the previous ones stay in force")
		} else {
			r.log.Info().Msg("certificates reloaded")
		}
	}
}

// startHeartbeats publishes the listening addresses and, in a cluster, starts the heartbeats
// until ctx ends; the channel is closed once they have stopped (at once without a cluster).
func (r *replica) startHeartbeats(ctx context.Context) <-chan struct{} {
	r.listening.Store(r.addrs)
	var next func(context.Context, time.Time) bus.Heartbeat
	if r.bus != nil {
		next = heartbeat(r.bus, r.srv, r.cfg, r.addrs, r.started)
	}
	return service.Heartbeats(ctx, r.bus, r.cfg.HeartbeatInterval, next)
}

// run serves until ctx is cancelled (nil) or a server stops (its error), reloading on SIGHUP.
func (r *replica) run(ctx context.Context, hup <-chan os.Signal) error {
	for {
		select {
		case err := <-r.errc:
			return err
		case err := <-r.http.Failed():
			return err
		case <-hup:
			r.reload()
		case <-ctx.Done():
			return nil
		}
	}
}

// drain stops the replica within cfg.ShutdownTimeout: not ready at once, then stop accepting,
// tell v5 clients, flush, close. stopWatch ends the heartbeats and the certificate watch.
func (r *replica) drain(stopWatch func(), beatsDone <-chan struct{}) {
	r.ready.Store(false)
	stopWatch() // heartbeats stop; the last one says this replica leaves
	<-beatsDone
	if r.bus != nil && r.bus.Status().Connected {
		// Tell the health gateway this replica leaves on purpose (not a crash).
		hctx, hcancel := context.WithTimeout(context.Background(), time.Second)
		hb := baseHeartbeat(r.cfg, r.addrs, r.started)
		hb.Leaving = true
		_ = r.bus.PublishHeartbeat(hctx, hb)
		hcancel()
	}
	r.log.Info().Msg("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), r.cfg.ShutdownTimeout)
	defer cancel()
	if err := r.srv.Close(sctx); err != nil {
		r.log.Warn().Err(err).Msg("drain did not finish in time")
	}
	if r.cl != nil {
		r.cl.Stop() // after the drain: offline sessions and routes reach Redis first
	}
	r.closeListeners()
	if r.http != nil {
		_ = r.http.Shutdown(sctx)
	}
	r.log.Info().Msg("stopped")
}

// logAuth says at start who may connect, and why nobody may when that is so.
func logAuth(log zerolog.Logger, cfg config.Config, store *auth.Store) {
	switch {
	case store == nil:
		log.Warn().Msg("anonymous access is on and no password file or ACL is set: " +
			"every client may connect and use every topic (BROKER_ALLOW_ANONYMOUS, BROKER_PASSWORD_FILE)")
		return
	case store.RefusesEveryone(): // (never with JWT authentication: tokens are a way)
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

// heartbeat is the replica's heartbeat, sent every HeartbeatInterval: its id, version, address,
// uptime, clients and message rates (since the last one), which the health gateway reads.
func heartbeat(b *bus.Bus, srv *broker.Server, cfg config.Config, addrs Addrs,
	started time.Time) func(context.Context, time.Time) bus.Heartbeat {
	last, lastAt := srv.Stats(), started
	return func(_ context.Context, now time.Time) bus.Heartbeat {
		st := srv.Stats()
		secs := now.Sub(lastAt).Seconds()
		hb := baseHeartbeat(cfg, addrs, started)
		hb.Sent, hb.Clients = now, int(st.Clients)
		hb.MsgsInRate = float64(st.MessagesReceived-last.MessagesReceived) / secs
		hb.MsgsOutRate = float64(st.MessagesSent-last.MessagesSent) / secs
		hb.Redis = b.Status()
		last, lastAt = st, now
		return hb
	}
}
