// Command bigquery-adapter runs the MCloudTT bigquery-adapter service. See the repository README for its configuration.
package main

import (
	"os"

	"github.com/mcloudtt/mcloudtt/pkg/cli"
	"github.com/mcloudtt/mcloudtt/pkg/service"
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
	// Until SIGTERM or an interrupt; a failure is logged ("bigquery-adapter failed") and exits 1.
	service.Main(app.Name, app.Run)
}
