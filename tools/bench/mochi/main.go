// Command mochi runs github.com/mochi-mqtt/server/v2 as a reference broker for
// scripts/bench-compare.sh: default options, allow-all auth, one TCP listener.
//
// It is a separate module on purpose (not in go.work, built with GOWORK=off), so the
// peer broker's dependencies never leak into MCloudTT's modules. Nothing imports it.
//
// The only deviation from mochi's defaults is the log level (default warn), so that
// per-connection info lines do not cost mochi CPU that our broker, run with
// BROKER_LOG_LEVEL=warn, does not pay either.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := Run(ctx, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "mochi:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		stop()
		os.Exit(1)
	}
}

// errUsage is a bad command line (exit code 2).
var errUsage = errors.New("bad command line")

// Run serves MQTT on -addr until ctx is cancelled.
func Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("mochi", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:1883", "TCP listener address")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}

	server := mqtt.New(&mqtt.Options{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	})
	if err := server.AddHook(new(auth.AllowHook), nil); err != nil {
		return fmt.Errorf("allow-all hook: %w", err)
	}
	if err := server.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: *addr})); err != nil {
		return fmt.Errorf("listener %s: %w", *addr, err)
	}
	// Serve starts the listeners and returns; the server runs until Close.
	if err := server.Serve(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	<-ctx.Done()
	if err := server.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}
