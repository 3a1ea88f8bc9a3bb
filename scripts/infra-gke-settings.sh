#!/usr/bin/env bash
# infra-gke-settings.sh — writes deploy/overlays/gke/settings.env from terraform's outputs, so the
# gke overlay points at this project's Memorystore and binds the adapter to its Google service
# account. Run it after `terraform apply`, before `make deploy`:
#
#   scripts/infra-gke-settings.sh            (uses tofu or terraform, whichever is installed)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TF=${TF:-$(command -v terraform || command -v tofu || true)}
[ -n "$TF" ] || { echo "infra-gke-settings: neither terraform nor tofu is installed" >&2; exit 1; }
out() { "$TF" -chdir="$ROOT/terraform" output -raw "$1"; }

gsa=$(out adapter_service_account)
host=$(out redis_host)
cidr=$(out redis_reserved_ip_range)
cat >"$ROOT/deploy/overlays/gke/settings.env" <<EOF
# Values from \`terraform output\`, written by scripts/infra-gke-settings.sh. Nothing here is a secret.
# Google service account of the adapter, bound to its Kubernetes ServiceAccount by Workload Identity.
ADAPTER_GSA=$gsa
# Memorystore for Redis: the instance's address and the range it was given.
REDIS_HOST=$host
REDIS_CIDR=$cidr
EOF
echo "infra-gke-settings: deploy/overlays/gke/settings.env: ADAPTER_GSA=$gsa REDIS_HOST=$host REDIS_CIDR=$cidr"
