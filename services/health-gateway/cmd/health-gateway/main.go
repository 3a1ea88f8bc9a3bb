// Command health-gateway runs the MCloudTT health-gateway service. See the repository README for its configuration.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mcloudtt/mcloudtt/pkg/cli"
	"github.com/mcloudtt/mcloudtt/pkg/logging"
	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/app"
	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/config"
)

var program = cli.Program{
	Name:    "health-gateway",
	Summary: "end-to-end health of an MCloudTT cluster: heartbeats, probes between replicas, status page",
	Env:     config.Usage,
	More:    "Every variable is explained in README.md, section Configuration.",
}

func main() {
	if code, serve := cli.Dispatch(program, os.Args[1:], os.Stdout, os.Stderr); !serve {
		os.Exit(code)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := app.Run(ctx); err != nil {
		log := logging.New(logging.Options{Service: app.Name})
		log.Error().Err(err).Msg("health-gateway failed")
		stop()
		os.Exit(1)
	}
}
