// Package app wires a broker replica together: configuration, logging, the MQTT listener, the
// HTTP endpoints, and the lifecycle from start to graceful drain.
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

	"github.com/mcloudtt/mcloudtt/pkg/logging"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/broker"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
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

// Addrs are the addresses a running broker listens on.
type Addrs struct {
	MQTT, HTTP string
}

// Serve runs a broker with cfg until ctx is cancelled, then drains within cfg.ShutdownTimeout.
// started, if not nil, is called with the listening addresses once the broker is ready.
func Serve(ctx context.Context, cfg config.Config, log zerolog.Logger, started func(Addrs)) error {
	log = log.With().Str("broker_id", cfg.ID).Logger()
	ln, err := net.Listen("tcp", cfg.MQTTAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.MQTTAddr, err)
	}
	srv := broker.New(cfg, log)
	var ready atomic.Bool
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()

	addrs := Addrs{MQTT: ln.Addr().String()}
	var hs *http.Server
	if cfg.HTTPAddr != "" {
		hln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
			if !ready.Load() {
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
		hs = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := hs.Serve(hln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("http server: %w", err)
			}
		}()
		addrs.HTTP = hln.Addr().String()
		log.Info().Str("http_addr", addrs.HTTP).Msg("http listening")
	}
	ready.Store(true)
	log.Info().Str("mqtt_addr", addrs.MQTT).Msg("broker started")
	if started != nil {
		started(addrs)
	}

	var runErr error
	select {
	case err := <-errc:
		runErr = err
	case <-ctx.Done():
	}
	ready.Store(false)
	log.Info().Msg("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Close(sctx); err != nil {
		log.Warn().Err(err).Msg("drain did not finish in time")
	}
	if hs != nil {
		_ = hs.Shutdown(sctx)
	}
	log.Info().Msg("stopped")
	return runErr
}
