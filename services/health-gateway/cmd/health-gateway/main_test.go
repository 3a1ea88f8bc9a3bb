package main

import (
	"testing"

	"github.com/mcloudtt/mcloudtt/pkg/proctest"
)

func TestStopsCleanlyOnSIGTERM(t *testing.T) {
	proctest.CheckStopsOnSIGTERM(t, proctest.Build(t, "."), "GATEWAY_HTTP_ADDR=127.0.0.1:0", "GATEWAY_LOG_FORMAT=json",
		// Nothing listens there: the gateway starts without Redis (not ready) and still stops cleanly.
		"GATEWAY_REDIS_ADDRS=127.0.0.1:1")
}

func TestBadConfigNamesTheField(t *testing.T) {
	proctest.CheckBadConfigNamesField(t, proctest.Build(t, "."), map[string]string{
		"GATEWAY_LOG_LEVEL=loud":              "GATEWAY_LOG_LEVEL",
		"GATEWAY_SHUTDOWN_TIMEOUT=soon":       "GATEWAY_SHUTDOWN_TIMEOUT",
		"GATEWAY_PROBE_INTERVAL=0s":           "GATEWAY_PROBE_INTERVAL",
		"GATEWAY_PROBE_TIMEOUT=-1s":           "GATEWAY_PROBE_TIMEOUT",
		"GATEWAY_MISSED_HEARTBEATS=0":         "GATEWAY_MISSED_HEARTBEATS",
		"GATEWAY_FAIL_AFTER=-1s":              "GATEWAY_FAIL_AFTER",
		"GATEWAY_FORGET_AFTER=1s":             "GATEWAY_FORGET_AFTER",
		"GATEWAY_ID=gate{way}":                "GATEWAY_ID",
		"GATEWAY_REDIS_ADDRS=":                "GATEWAY_REDIS_ADDRS",
		"GATEWAY_MQTT_PASSWORD=secret":        "GATEWAY_MQTT_USERNAME",
		"GATEWAY_API_TOKEN=short":             "GATEWAY_API_TOKEN",
		"GATEWAY_API_TOKEN_FILE=/nonexistent": "GATEWAY_API_TOKEN_FILE",
		"GATEWAY_REDIS_TLS_SERVER_NAME=redis": "GATEWAY_REDIS_TLS_SERVER_NAME",
	})
}

func TestCommandLine(t *testing.T) {
	proctest.CheckCommandLine(t, proctest.Build(t, "."), "GATEWAY_HTTP_ADDR", "GATEWAY_PROBE_INTERVAL", "README.md")
}
