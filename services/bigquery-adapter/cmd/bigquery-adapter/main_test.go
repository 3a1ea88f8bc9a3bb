package main

import (
	"testing"

	"github.com/mcloudtt/mcloudtt/pkg/proctest"
)

func TestStopsCleanlyOnSIGTERM(t *testing.T) {
	// Neither Redis nor BigQuery answers: the adapter starts anyway, retries, and stops cleanly.
	proctest.CheckStopsOnSIGTERM(t, proctest.Build(t, "."), "ADAPTER_HTTP_ADDR=127.0.0.1:0", "ADAPTER_LOG_FORMAT=json",
		"ADAPTER_BIGQUERY_PROJECT=p", "ADAPTER_REDIS_ADDRS=127.0.0.1:1", "ADAPTER_BIGQUERY_ENDPOINT=http://127.0.0.1:1",
		"ADAPTER_BIGQUERY_GRPC_ENDPOINT=127.0.0.1:1")
}

func TestBadConfigNamesTheField(t *testing.T) {
	proctest.CheckBadConfigNamesField(t, proctest.Build(t, "."), map[string]string{
		"ADAPTER_LOG_LEVEL=loud":                   "ADAPTER_LOG_LEVEL",
		"ADAPTER_SHUTDOWN_TIMEOUT=soon":            "ADAPTER_SHUTDOWN_TIMEOUT",
		"ADAPTER_BATCH_ROWS=0":                     "ADAPTER_BATCH_ROWS",
		"ADAPTER_BATCH_BYTES=100000000":            "ADAPTER_BATCH_BYTES",
		"ADAPTER_CLAIM_IDLE=1s":                    "ADAPTER_CLAIM_IDLE",
		"ADAPTER_BIGQUERY_ENDPOINT=localhost:9050": "ADAPTER_BIGQUERY_ENDPOINT",
		"ADAPTER_ID=a:b":                           "ADAPTER_ID",
		"ADAPTER_BIGQUERY_ENDPOINT=http://e:9050":  "ADAPTER_BIGQUERY_PROJECT",
		"ADAPTER_REDIS_TLS_CA_FILE=/etc/ca.crt":    "ADAPTER_REDIS_TLS_CA_FILE",
		"ADAPTER_REDIS_PASSWORD_FILE=/nonexistent": "ADAPTER_REDIS_PASSWORD_FILE",
		"ADAPTER_BIGQUERY_API=rest":                "ADAPTER_BIGQUERY_API",
		"ADAPTER_BIGQUERY_GRPC_ENDPOINT=e":         "ADAPTER_BIGQUERY_GRPC_ENDPOINT",
		"ADAPTER_BIGQUERY_EVENTS_TABLE=messages":   "ADAPTER_BIGQUERY_EVENTS_TABLE",
	})
}

func TestCommandLine(t *testing.T) {
	proctest.CheckCommandLine(t, proctest.Build(t, "."), "bigquery-adapter query", "ADAPTER_REDIS_ADDRS", "ADAPTER_BIGQUERY_PROJECT", "README.md")
}
