// Package monitoring checks deploy/monitoring with Prometheus's own code: promtool checks and
// unit-tests the alert rules, and every metric the rules and the Grafana dashboards name is
// looked up in the /metrics of real broker, adapter and gateway processes (make test-infra).
package monitoring
