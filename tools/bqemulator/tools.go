//go:build tools

// Package bqemulator pins the local BigQuery emulator that `make run` and the bigquery-adapter's
// tests use (github.com/goccy/bigquery-emulator). scripts/deps.sh (group bq) builds its command
// with cgo and clang: go build github.com/goccy/bigquery-emulator/cmd/bigquery-emulator.
package bqemulator

import _ "github.com/goccy/bigquery-emulator/cmd/bigquery-emulator"
