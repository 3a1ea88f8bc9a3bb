// Command bigquery-adapter runs the MCloudTT bigquery-adapter service. See the repository README for its configuration.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mcloudtt/mcloudtt/pkg/cli"
	"github.com/mcloudtt/mcloudtt/pkg/logging"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/app"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/config"
)

var program = cli.Program{
	Name:    "bigquery-adapter",
	Summary: "moves the brokers' export stream from Redis into BigQuery",
	Commands: []cli.Command{{
		Name: "query", Args: "[-project P] [-endpoint URL] [-file F] SQL|NAME",
		Summary: "run one query (or a named one from docs/queries.sql) and print the rows",
		Run:     func(args []string) int { return runQuery(args, os.Stdout, os.Stderr) },
	}},
	Env:  config.Usage,
	More: "Every variable is explained in README.md, section The BigQuery export.",
}

func main() {
	if code, serve := cli.Dispatch(program, os.Args[1:], os.Stdout, os.Stderr); !serve {
		os.Exit(code)
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
