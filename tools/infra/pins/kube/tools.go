//go:build tools

// Package kube pins the Kubernetes binaries scripts/infra-test.sh runs against the rendered
// overlays: a real kube-apiserver (with etcd from ../etcd) and kubectl. scripts/deps.sh builds them
// with GOWORK=off from this module, so the versions are exactly these go.mod requirements.
package kube

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
