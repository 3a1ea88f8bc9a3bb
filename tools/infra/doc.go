// Package infra checks MCloudTT's deployment files offline: the kustomize overlays in deploy/, the
// services' Dockerfiles, skaffold.yaml and the terraform in terraform/.
//
// The checks read the repository as it is, so they follow the services: the environment variables
// and listener ports a manifest may set come from each service's config struct, read from its Go
// source (internal packages cannot be imported from here), and the probe paths from the routes the
// service registers. The fast checks run in `go test ./tools/infra/...`; the real validators (a
// kube-apiserver, OpenTofu, image assembly) are scripts/infra-test.sh, built from the pinned modules
// under tools/infra/pins by scripts/deps.sh.
package infra
