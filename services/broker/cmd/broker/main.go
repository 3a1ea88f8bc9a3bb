// Command broker runs the MCloudTT broker service. See the repository README for its configuration.
package main

import (
	"os"

	"github.com/mcloudtt/mcloudtt/pkg/cli"
	"github.com/mcloudtt/mcloudtt/pkg/service"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/app"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/auth"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/devices"
)

var program = cli.Program{
	Name:    "broker",
	Summary: "one MCloudTT MQTT broker replica (MQTT 3.1, 3.1.1 and 5.0)",
	Commands: []cli.Command{{
		Name: "passwd", Args: "[-c|-D] [-b] [-H alg] FILE USER [PASSWORD]",
		Summary: "add, change or delete a user in a mosquitto-format password file",
		Run:     func(args []string) int { return auth.RunPasswd(args, os.Stdin, os.Stdout, os.Stderr) },
	}, {
		Name: "devices", Args: "add [-expires TIME] DEVICE KEYFILE | remove DEVICE KEYID|all | list [-pem] DEVICE",
		Summary: "manage the public keys devices sign their JWT passwords with (the device registry in Redis)",
		Run:     func(args []string) int { return devices.RunDevices(args, os.Stdin, os.Stdout, os.Stderr) },
	}},
	Env:  config.Usage,
	More: "Every variable is explained in README.md, section Configuration.",
}

func main() {
	if code, serve := cli.Dispatch(program, os.Args[1:], os.Stdout, os.Stderr); !serve {
		os.Exit(code)
	}
	// Until SIGTERM or an interrupt; a failure is logged ("broker failed") and exits 1.
	service.Main(app.Name, app.Run)
}
