package main

import (
	"testing"

	"github.com/mcloudtt/mcloudtt/pkg/proctest"
)

func TestStopsCleanlyOnSIGTERM(t *testing.T) {
	proctest.CheckStopsOnSIGTERM(t, proctest.Build(t, "."), "GATEWAY_HTTP_ADDR=127.0.0.1:0", "GATEWAY_LOG_FORMAT=json")
}

func TestBadConfigNamesTheField(t *testing.T) {
	proctest.CheckBadConfigNamesField(t, proctest.Build(t, "."), map[string]string{
		"GATEWAY_LOG_LEVEL=loud":        "GATEWAY_LOG_LEVEL",
		"GATEWAY_SHUTDOWN_TIMEOUT=soon": "GATEWAY_SHUTDOWN_TIMEOUT",
	})
}
