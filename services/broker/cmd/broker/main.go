// Command broker runs the MCloudTT broker service. See the repository README for its configuration.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mcloudtt/mcloudtt/pkg/logging"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/app"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/auth"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "passwd" {
		os.Exit(auth.RunPasswd(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := app.Run(ctx); err != nil {
		log := logging.New(logging.Options{Service: app.Name})
		log.Error().Err(err).Msg("broker failed")
		stop()
		os.Exit(1)
	}
}
