// Package app wires the health gateway together: configuration, logging, the HTTP server, and the
// lifecycle from start to graceful stop.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/logging"
	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/config"
)

// Name is the service name written into every log line.
const Name = "health-gateway"

// Run loads the configuration from the environment and serves until ctx is cancelled.
func Run(ctx context.Context) error {
	cfg, err := config.Load()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := logging.New(logging.Options{Level: cfg.LogLevel, Format: logging.Format(cfg.LogFormat), Service: Name})
	return Serve(ctx, cfg, log)
}

// Serve runs the gateway with cfg until ctx is cancelled, then stops within cfg.ShutdownTimeout.
func Serve(ctx context.Context, cfg config.Config, log zerolog.Logger) error {
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info().Str("http_addr", ln.Addr().String()).Msg("health gateway started")

	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info().Msg("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http shutdown: %w", err)
	}
	log.Info().Msg("stopped")
	return nil
}
