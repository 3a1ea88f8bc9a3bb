// Command health-gateway runs the MCloudTT health-gateway service. See the repository README for its configuration.
package main

import (
	"os"

	"github.com/mcloudtt/mcloudtt/pkg/cli"
	"github.com/mcloudtt/mcloudtt/pkg/service"
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
	// Until SIGTERM or an interrupt; a failure is logged ("health-gateway failed") and exits 1.
	service.Main(app.Name, app.Run)
}
