// Pins the Google Managed Prometheus release whose CRDs (charts/operator/crds: PodMonitoring,
// Rules) scripts/infra-test.sh installs into its kube-apiserver before it applies the gke overlay.
// Nothing is built from it: scripts/deps.sh only downloads the module.
module github.com/mcloudtt/mcloudtt/tools/infra/pins/gmp-crds

go 1.26.0

require github.com/GoogleCloudPlatform/prometheus-engine v0.17.2
