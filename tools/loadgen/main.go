// Command loadgen is MCloudTT's MQTT and Redis load generator, in the spirit of
// emqtt-bench and mqtt-stresser. It writes the MQTT 3.1.1/5 and RESP wire formats
// itself, independent of the project's codec, so a codec bug cannot hide in the
// measurement. Run it with -h for the flags; the last line of stdout is a JSON summary.
//
//	loadgen -addr 127.0.0.1:1883 -broker-pid $PID -topology fanin -pubs 10 -subs 1 -n 20000 -qos 1
//	loadgen -mode conns -conns 10000 -dial-par 32 -settle 5s -broker-pid $PID
//	loadgen -mode redis -addr 127.0.0.1:6379 -pubs 10 -subs 1 -n 200000 -inflight 64
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mcloudtt/mcloudtt/tools/loadgen/internal/load"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := load.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
