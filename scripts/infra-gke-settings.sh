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
port=$(out redis_port)
ip=$(out broker_ip)
# deploy/overlays/gke/memorystore.yaml sends Redis traffic to 6378, where Memorystore speaks TLS.
if [ "$port" != 6378 ]; then
  echo "infra-gke-settings: Memorystore listens on $port, not 6378: is in-transit encryption off? The gke overlay expects TLS on 6378." >&2
  exit 1
fi
cat >"$ROOT/deploy/overlays/gke/settings.env" <<EOF
# Values from \`terraform output\`, written by scripts/infra-gke-settings.sh. Nothing here is a secret.
# Google service account of the adapter, bound to its Kubernetes ServiceAccount by Workload Identity.
ADAPTER_GSA=$gsa
# Memorystore for Redis: the instance's address and the range it was given.
REDIS_HOST=$host
REDIS_CIDR=$cidr
# The brokers' reserved public address (terraform output broker_ip): the LoadBalancer's IP.
BROKER_IP=$ip
EOF
echo "infra-gke-settings: deploy/overlays/gke/settings.env: ADAPTER_GSA=$gsa REDIS_HOST=$host REDIS_CIDR=$cidr BROKER_IP=$ip"
