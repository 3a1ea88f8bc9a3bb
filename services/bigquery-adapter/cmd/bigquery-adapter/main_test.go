package main

import (
	"testing"

	"github.com/mcloudtt/mcloudtt/pkg/proctest"
)

func TestStopsCleanlyOnSIGTERM(t *testing.T) {
	proctest.CheckStopsOnSIGTERM(t, proctest.Build(t, "."), "ADAPTER_HTTP_ADDR=127.0.0.1:0", "ADAPTER_LOG_FORMAT=json")
}

func TestBadConfigNamesTheField(t *testing.T) {
	proctest.CheckBadConfigNamesField(t, proctest.Build(t, "."), map[string]string{
		"ADAPTER_LOG_LEVEL=loud":        "ADAPTER_LOG_LEVEL",
		"ADAPTER_SHUTDOWN_TIMEOUT=soon": "ADAPTER_SHUTDOWN_TIMEOUT",
	})
}
