//go:build tools

// Package etcd pins the etcd server that backs scripts/infra-test.sh's kube-apiserver. The binary
// is the module's root main package: go build go.etcd.io/etcd/server/v3.
package etcd

import _ "go.etcd.io/etcd/server/v3"
