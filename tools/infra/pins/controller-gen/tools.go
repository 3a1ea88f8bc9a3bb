//go:build tools

// Package controllergen pins controller-gen and prometheus-operator's API types, from which
// scripts/deps.sh generates the ServiceMonitor and PrometheusRule CRDs that scripts/infra-test.sh
// installs into its kube-apiserver before it applies deploy/components/prometheus-operator
// (prometheus-operator publishes its CRDs as files of its main module, which the module proxy
// does not serve; the CRDs are generated from these types by controller-gen).
package controllergen

import (
	_ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	_ "sigs.k8s.io/controller-tools/cmd/controller-gen"
)
