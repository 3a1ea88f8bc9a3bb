// Package service is what every MCloudTT service (broker, BigQuery adapter, health gateway) sets
// up the same way around its own work: the logger, the signals that stop it, the Prometheus
// registry, the health, readiness and metrics routes, the HTTP server and the heartbeat loop on
// the bus. Each service's internal/app keeps only what is particular to it; the routes, status
// codes, metric names and log messages here are the ones the services always had.
package service

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/logging"
)

// Logger is the service's logger: level and format as configured (LOG_LEVEL, LOG_FORMAT), and
// name in every line as "service".
func Logger(name, level, format string) zerolog.Logger {
	return logging.New(logging.Options{Level: level, Format: logging.Format(format), Service: name})
}

// Run is the start of a service's Run: it loads the configuration with load and serves it with
// serve. A configuration that does not load comes back as "config: ..." and nothing is served.
func Run[C any](load func() (C, error), serve func(C) error) error {
	cfg, err := load()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return serve(cfg)
}

// SignalContext is parent, cancelled when the process receives SIGTERM or an interrupt: the
// signals that start a service's graceful stop. stop releases the signals again.
func SignalContext(parent context.Context) (ctx context.Context, stop context.CancelFunc) {
	return signal.NotifyContext(parent, syscall.SIGTERM, os.Interrupt)
}

// Main runs a service's run until SIGTERM or an interrupt cancels its context. When run fails,
// the error is logged ("<name> failed") and the process exits with status 1.
func Main(name string, run func(context.Context) error) {
	ctx, stop := SignalContext(context.Background())
	defer stop()
	if err := run(ctx); err != nil {
		log := logging.New(logging.Options{Service: name})
		log.Error().Err(err).Msg(name + " failed")
		stop()
		os.Exit(1)
	}
}

// Wait blocks until ctx is cancelled (it returns nil) or failed delivers an error (it returns
// that error): the moment a service starts to stop.
func Wait(ctx context.Context, failed <-chan error) error {
	select {
	case err := <-failed:
		return err
	case <-ctx.Done():
		return nil
	}
}

// Heartbeats sends next's heartbeat on b every interval until ctx ends, in a goroutine of its
// own; the channel returned is closed once the loop has stopped. Without a bus (b nil) nothing is
// sent and the channel is closed already.
func Heartbeats(ctx context.Context, b *bus.Bus, interval time.Duration,
	next func(ctx context.Context, now time.Time) bus.Heartbeat) <-chan struct{} {
	done := make(chan struct{})
	if b == nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		b.RunHeartbeats(ctx, interval, next)
	}()
	return done
}
