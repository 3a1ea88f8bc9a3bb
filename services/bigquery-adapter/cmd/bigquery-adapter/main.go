// Command bigquery-adapter runs the MCloudTT bigquery-adapter service. See the repository README for its configuration.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mcloudtt/mcloudtt/pkg/logging"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/app"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "query" {
		os.Exit(runQuery(os.Args[2:], os.Stdout, os.Stderr))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := app.Run(ctx); err != nil {
		log := logging.New(logging.Options{Service: app.Name})
		log.Error().Err(err).Msg("bigquery-adapter failed")
		stop()
		os.Exit(1)
	}
}
