#!/usr/bin/env bash
# infra-gke-secrets.sh — creates (or updates) the Kubernetes Secrets of the gke overlay that come from
# terraform or need no human choice. Run it after `terraform apply`, with kubectl pointed at the
# cluster, before `make deploy`:
#
#   scripts/infra-gke-secrets.sh            (uses tofu or terraform, whichever is installed)
#
#   redis-auth          password  Memorystore's AUTH string (terraform output redis_auth_string)
#   redis-ca            ca.crt    Memorystore's server CAs (terraform output redis_server_ca)
#   health-gateway-api  token     a random token for the gateway's page and API (kept if it exists)
#   health-gateway-admin token    a random admin token for the management API's changes (kept if it exists)
#   broker-tls-tickets  keys      TLS session ticket keys shared by the broker replicas: a random key
#                                 (kept if it exists; ROTATE_TICKET_KEYS=1 puts a new key on top and
#                                 keeps the two before it, so tickets of the last two rotations resume)
#
# The values go from terraform to kubectl through pipes, never through a file or a command line.
# broker-tls, broker-auth and health-gateway-mqtt hold choices of yours: see the README.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TF=${TF:-$(command -v terraform || command -v tofu || true)}
NS=${NAMESPACE:-mcloudtt}
[ -n "$TF" ] || { echo "infra-gke-secrets: neither terraform nor tofu is installed" >&2; exit 1; }
command -v kubectl >/dev/null || { echo "infra-gke-secrets: kubectl is not installed" >&2; exit 1; }
out() { "$TF" -chdir="$ROOT/terraform" output -raw "$1"; }

kubectl get namespace "$NS" >/dev/null 2>&1 || kubectl create namespace "$NS"

# apply_secret NAME KEY: creates or updates a generic Secret with one key, its value read from stdin.
apply_secret() {
  kubectl -n "$NS" create secret generic "$1" --from-file="$2"=/dev/stdin --dry-run=client -o yaml |
    kubectl -n "$NS" apply -f - >/dev/null
  echo "infra-gke-secrets: Secret $NS/$1 ($2) applied"
}

out redis_auth_string | apply_secret redis-auth password
ca=$(out redis_server_ca)
case "$ca" in
  *"BEGIN CERTIFICATE"*) printf '%s\n' "$ca" | apply_secret redis-ca ca.crt ;;
  *)
    echo "infra-gke-secrets: terraform output redis_server_ca holds no certificate: is in-transit encryption on?" >&2
    exit 1
    ;;
esac
if kubectl -n "$NS" get secret health-gateway-api >/dev/null 2>&1; then
  echo "infra-gke-secrets: Secret $NS/health-gateway-api exists and is kept (delete it for a new token)"
else
  openssl rand -hex 32 | apply_secret health-gateway-api token
  echo "infra-gke-secrets: the token: kubectl -n $NS get secret health-gateway-api -o jsonpath='{.data.token}' | base64 -d"
fi
# Rotating weekly keeps every ticket resumable for its whole life (Go's tickets live 7 days): a
# ticket made with a key that is no longer on top is still accepted while the key is in the file.
if kubectl -n "$NS" get secret broker-tls-tickets >/dev/null 2>&1; then
  if [ "${ROTATE_TICKET_KEYS:-}" = 1 ]; then
    { openssl rand -base64 32
      kubectl -n "$NS" get secret broker-tls-tickets -o jsonpath='{.data.keys}' | base64 -d | { grep -v '^#' | grep . || true; } | head -n 2
    } | apply_secret broker-tls-tickets keys
  else
    echo "infra-gke-secrets: Secret $NS/broker-tls-tickets exists and is kept (ROTATE_TICKET_KEYS=1 rotates it)"
  fi
else
  openssl rand -base64 32 | apply_secret broker-tls-tickets keys
fi
if kubectl -n "$NS" get secret health-gateway-admin >/dev/null 2>&1; then
  echo "infra-gke-secrets: Secret $NS/health-gateway-admin exists and is kept (delete it for a new token)"
else
  openssl rand -hex 32 | apply_secret health-gateway-admin token
  echo "infra-gke-secrets: the admin token: kubectl -n $NS get secret health-gateway-admin -o jsonpath='{.data.token}' | base64 -d"
fi
