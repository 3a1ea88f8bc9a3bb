//go:build tools

// Package prometheus pins promtool, which the monitoring tests run on deploy/monitoring's alert
// rules (promtool check rules, promtool test rules). scripts/deps.sh builds it with GOWORK=off
// from this module, so the version is exactly this go.mod's requirement.
package prometheus

import (
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
