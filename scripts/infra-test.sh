#!/usr/bin/env bash
# infra-test.sh — the real validators for deploy/, terraform/ and the images, offline and on loopback.
#
# Usage: scripts/deps.sh infra && scripts/infra-test.sh      (what `make test-infra` runs)
#
#   1. etcd and a real kube-apiserver (pinned in tools/infra/pins) start on free 127.0.0.1 ports with
#      a CA, serving certificate and service-account keys made here, and a static admin token.
#   2. The monitoring CRDs (PodMonitoring, Rules, ServiceMonitor, PrometheusRule) are installed. Every
#      overlay, and the local one with deploy/components/prometheus-operator, is rendered by kubectl's
#      kustomize, applied with --dry-run=server (admission included: a restricted Pod Security
#      warning fails), then created for real and read back. Each goes into its own copy of the
#      namespace (mcloudtt-local, mcloudtt-gke, ...) so all fit on one apiserver. There are no nodes,
#      so nothing schedules.
#   3. terraform/: `tofu fmt -check`; `tofu validate`, `tofu test` (mock_provider "google") and a fresh
#      extract of the schema fixture compared with the committed one when a google provider binary is
#      at hand (TF_GOOGLE_PROVIDER_DIR, or $CACHE/bin/terraform-provider-google*), through
#      dev_overrides; otherwise they are reported as skipped, with the reason.
#   4. Each service's image is assembled offline (imagekit: the Dockerfile's USER, EXPOSE and
#      ENTRYPOINT on a base of CA certificates and the non-root user) from the same static build the
#      Dockerfile makes, and inspected against the Dockerfile and the Deployment the apiserver stored.
#   5. Each binary starts with the configuration the local overlay stored, and drains on SIGTERM.
#   6. tools/monitoring: promtool check rules and test rules on deploy/monitoring/rules, and every
#      metric the rules and dashboards name looked up in the /metrics of live services.
#
# Everything it starts is killed on exit. It ends with one line: N passed, M failed[, K skipped].
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${MCLOUDTT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mcloudtt}
BIN="$CACHE/bin"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mcloudtt-infra.XXXXXX")
KEEP=${INFRA_KEEP:-}   # set to keep $WORK for a post-mortem

passed=0 failed=0 skipped=0
pids=()

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null
  done
  for pid in "${pids[@]}"; do
    # Give each a few seconds to exit, then make sure.
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null
  done
  if [ -n "$KEEP" ]; then echo "infra-test: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s\n' "$*" >&2; }
pass() { passed=$((passed + 1)); printf 'PASS  %s\n' "$1"; }
# fail NAME [LOG]: the log's warnings and errors if it has any, else its last 40 lines.
fail() {
  failed=$((failed + 1))
  printf 'FAIL  %s\n' "$1"
  [ -n "${2:-}" ] || return 0
  if grep -qiE '^(warning|error)' "$2"; then
    grep -iE '^(warning|error)' "$2" | head -40 | sed 's/^/      /'
  else
    tail -40 "$2" | sed 's/^/      /'
  fi
  return 0
}
skip() { skipped=$((skipped + 1)); printf 'SKIP  %s: %s\n' "$1" "$2"; }

# check NAME CMD...: runs CMD with its output in a file, PASS or FAIL with that output.
check() {
  local name=$1 out="$WORK/out.$RANDOM"
  shift
  if "$@" >"$out" 2>&1; then pass "$name"; else fail "$name" "$out"; fi
}

finish() {
  local line="$passed passed, $failed failed"
  [ "$skipped" -gt 0 ] && line+=", $skipped skipped"
  echo "$line"
  [ "$failed" -eq 0 ]
  exit $?
}

for tool in etcd kube-apiserver kubectl tofu imagekit promtool; do
  if [ ! -x "$BIN/$tool" ]; then
    log "infra-test: $BIN/$tool is missing: run scripts/deps.sh infra first"
    fail "validators built ($tool)"
    finish
  fi
done
command -v openssl >/dev/null || { log "infra-test: openssl is missing: run scripts/deps.sh infra"; fail "openssl"; finish; }
if [ ! -f "$CACHE/crds/.stamp" ]; then
  log "infra-test: $CACHE/crds is missing: run scripts/deps.sh infra first"
  fail "monitoring CRDs prepared"
  finish
fi


# ---------------------------------------------------------------------------------------------------
# 1. etcd + kube-apiserver on loopback
# ---------------------------------------------------------------------------------------------------
PKI="$WORK/pki"
mkdir -p "$PKI"
(
  set -e
  cd "$PKI"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=infra-test-ca \
    -keyout ca.key -out ca.crt
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=kube-apiserver \
    -keyout apiserver.key -out apiserver.csr
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' >ext.cnf
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -extfile ext.cnf -out apiserver.crt
  openssl genrsa -out sa.key 2048
  openssl rsa -in sa.key -pubout -out sa.pub
) >"$WORK/pki.log" 2>&1 || { fail "certificates for the apiserver" "$WORK/pki.log"; finish; }

TOKEN=$(openssl rand -hex 24)
echo "$TOKEN,infra-test-admin,infra-test-admin,system:masters" >"$WORK/tokens.csv"

read -r ETCD_PORT ETCD_PEER API_PORT <<<"$(python3 "$ROOT/scripts/free-port.py" "$WORK/ports.given" 3)"

"$BIN/etcd" --name infra-test --data-dir "$WORK/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
  --initial-cluster "infra-test=http://127.0.0.1:$ETCD_PEER" --listen-metrics-urls "" \
  --unsafe-no-fsync --log-level warn >"$WORK/etcd.log" 2>&1 &
pids+=($!)

"$BIN/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" --cert-dir "$PKI" \
  --token-auth-file "$WORK/tokens.csv" --authorization-mode RBAC \
  --service-account-issuer https://kubernetes.default.svc \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --service-cluster-ip-range 10.96.0.0/16 --endpoint-reconciler-type none \
  --profiling=false >"$WORK/apiserver.log" 2>&1 &
pids+=($!)

cat >"$WORK/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: infra-test
    cluster:
      server: https://127.0.0.1:$API_PORT
      certificate-authority: $PKI/ca.crt
users:
  - name: admin
    user:
      token: $TOKEN
contexts:
  - name: infra-test
    context: {cluster: infra-test, user: admin}
current-context: infra-test
EOF
export KUBECONFIG="$WORK/kubeconfig"
kubectl() { "$BIN/kubectl" --request-timeout=30s "$@"; }

ready=0
for _ in $(seq 1 120); do
  if kubectl get --raw /readyz >/dev/null 2>&1; then ready=1; break; fi
  if ! kill -0 "${pids[1]}" 2>/dev/null || ! kill -0 "${pids[0]}" 2>/dev/null; then break; fi
  sleep 1
done
if [ "$ready" -ne 1 ]; then
  tail -20 "$WORK/etcd.log" >"$WORK/start.log"
  tail -40 "$WORK/apiserver.log" >>"$WORK/start.log"
  fail "etcd and kube-apiserver ready on 127.0.0.1" "$WORK/start.log"
  finish
fi
server_version=$(kubectl version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')
pass "etcd and kube-apiserver $server_version ready on 127.0.0.1:$API_PORT"

# The monitoring components' kinds, as the clusters that run them have them: Google Managed
# Prometheus's PodMonitoring and Rules CRDs, prometheus-operator's ServiceMonitor and PrometheusRule
# (scripts/deps.sh prepares them from the pinned modules). Their schemas (and GMP's validation
# rules) then judge the components' objects below.
if kubectl apply --server-side -f "$CACHE/crds/" >"$WORK/crds.log" 2>&1 &&
  kubectl wait --for condition=Established --timeout=60s -f "$CACHE/crds/" >>"$WORK/crds.log" 2>&1; then
  pass "monitoring CRDs established: $(kubectl get crd -o jsonpath='{range .items[*]}{.spec.names.kind} {end}' | sed 's/ $//')"
else
  fail "monitoring CRDs" "$WORK/crds.log"
fi

# ---------------------------------------------------------------------------------------------------
# 2. Overlays: render, server dry-run, create, read back
# ---------------------------------------------------------------------------------------------------
apply_overlay() { # overlay [kustomization dir, default deploy/overlays/<overlay>]
  local o=$1 ns="mcloudtt-$1" dir="$WORK/ns-$1" out="$WORK/$1" src=${2:-$ROOT/deploy/overlays/$1}
  mkdir -p "$dir"
  # A kustomization on top of the overlay that only moves it into its own namespace.
  cat >"$dir/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: $ns
resources:
  - $(python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$src" "$dir")
EOF
  if ! kubectl kustomize "$dir" >"$out.yaml" 2>"$out.render.log"; then
    fail "$o: kubectl kustomize renders the overlay" "$out.render.log"
    return
  fi
  pass "$o: kubectl kustomize renders $(grep -c '^kind:' "$out.yaml") objects"

  # The Namespace must exist before a server-side dry run of what goes into it: split it off.
  python3 - "$out.yaml" "$out.ns.yaml" "$out.rest.yaml" <<'PY'
import sys
docs = open(sys.argv[1]).read().split("\n---\n")
ns = [d for d in docs if "\nkind: Namespace\n" in "\n" + d + "\n"]
open(sys.argv[2], "w").write("\n---\n".join(ns) + "\n")
open(sys.argv[3], "w").write("\n---\n".join(d for d in docs if d not in ns) + "\n")
PY
  if kubectl apply --dry-run=server -f "$out.ns.yaml" >"$out.dry.log" 2>&1 && kubectl apply -f "$out.ns.yaml" >>"$out.dry.log" 2>&1 &&
    kubectl apply --dry-run=server -f "$out.rest.yaml" >>"$out.dry.log" 2>&1 && ! grep -qi '^warning' "$out.dry.log"; then
    pass "$o: kubectl apply --dry-run=server (validation, admission, Pod Security restricted: no warnings)"
  else
    fail "$o: kubectl apply --dry-run=server" "$out.dry.log"
  fi

  if kubectl apply -f "$out.rest.yaml" >"$out.apply.log" 2>&1 && ! grep -qi '^warning' "$out.apply.log"; then
    pass "$o: kubectl apply creates every object"
  else
    fail "$o: kubectl apply" "$out.apply.log"
  fi

  # Read back: every rendered object exists, with the namespace and kinds the overlay gave it.
  local want got
  want=$(python3 - "$out.yaml" <<'PY'
import sys
kinds = {}
for doc in open(sys.argv[1]).read().split("\n---\n"):
    for line in doc.splitlines():
        if line.startswith("kind: "):
            k = line[6:].strip(); kinds[k] = kinds.get(k, 0) + 1
print(" ".join(f"{k}={kinds[k]}" for k in sorted(kinds)))
PY
)
  got=$(kubectl get -f "$out.yaml" -o jsonpath='{range .items[*]}{.kind}{"\n"}{end}' 2>"$out.get.log" | sort | uniq -c | awk '{printf "%s=%s ", $2, $1}' | sed 's/ $//')
  if [ "$want" = "$got" ]; then
    pass "$o: the apiserver holds every object ($got)"
  else
    echo "rendered: $want" >>"$out.get.log"; echo "stored:   $got" >>"$out.get.log"
    fail "$o: objects read back" "$out.get.log"
  fi

  # A few invariants on what the apiserver stored (after defaulting), not on our files.
  local rep
  rep=$(kubectl -n "$ns" get deploy broker -o jsonpath='{.spec.replicas} {.spec.template.spec.terminationGracePeriodSeconds} {.spec.template.spec.containers[0].lifecycle.preStop.sleep.seconds} {.spec.template.spec.containers[0].env[?(@.name=="BROKER_ID")].valueFrom.fieldRef.fieldPath}' 2>&1)
  if [ "$rep" = "2 35 5 metadata.name" ]; then
    pass "$o: stored broker Deployment: 2 replicas, grace 35 s = preStop 5 s + drain, BROKER_ID from the pod name"
  else
    echo "$rep" >"$out.broker.log"
    fail "$o: stored broker Deployment" "$out.broker.log"
  fi
  if kubectl -n "$ns" get hpa broker -o jsonpath='{.spec.metrics[0].resource.name}' 2>&1 | grep -qx cpu &&
    kubectl -n "$ns" get pdb broker >/dev/null 2>&1 &&
    [ "$(kubectl -n "$ns" get svc broker -o jsonpath='{.spec.type}')" = LoadBalancer ]; then
    pass "$o: HPA on CPU, PodDisruptionBudget and LoadBalancer Service for the broker"
  else
    fail "$o: broker HPA, PDB and LoadBalancer"
  fi
  # Redis's Service resolves: pods behind a selector (local) or Memorystore's EndpointSlice (gke).
  local eps
  eps=$(kubectl -n "$ns" get endpointslices -l kubernetes.io/service-name=redis -o jsonpath='{.items[*].endpoints[*].addresses[*]}' 2>&1)
  case "$o" in
    gke) if [ -n "$eps" ]; then pass "gke: redis Service points at Memorystore ($eps)"; else fail "gke: redis EndpointSlice"; fi ;;
    *) if [ -n "$(kubectl -n "$ns" get svc redis -o jsonpath='{.spec.selector}')" ]; then pass "$o: redis Service selects the in-cluster Redis"; else fail "$o: redis Service selector"; fi ;;
  esac
}

for overlay in "$ROOT"/deploy/overlays/*/; do
  overlay=${overlay%/}
  apply_overlay "${overlay##*/}"
done
# The prometheus-operator component, as an operator adds it: here to the local overlay.
relpath() { python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$1" "$2"; }
mkdir -p "$WORK/with-prometheus-operator"
printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s\ncomponents:\n  - %s\n' \
  "$(relpath "$ROOT/deploy/overlays/local" "$WORK/with-prometheus-operator")" \
  "$(relpath "$ROOT/deploy/components/prometheus-operator" "$WORK/with-prometheus-operator")" \
  >"$WORK/with-prometheus-operator/kustomization.yaml"
apply_overlay local-prometheus-operator "$WORK/with-prometheus-operator"
for kind in podmonitorings.monitoring.googleapis.com/gke rules.monitoring.googleapis.com/gke \
  servicemonitors.monitoring.coreos.com/local-prometheus-operator prometheusrules.monitoring.coreos.com/local-prometheus-operator; do
  n=$(kubectl -n "mcloudtt-${kind#*/}" get "${kind%/*}" -o name 2>/dev/null | wc -l)
  if [ "$n" -gt 0 ]; then pass "${kind#*/}: the apiserver holds $n ${kind%%.*}"; else fail "${kind#*/}: no ${kind%%.*} stored"; fi
done

# ---------------------------------------------------------------------------------------------------
# 3. terraform/ with OpenTofu
# ---------------------------------------------------------------------------------------------------
# tofu reads TF_CLI_CONFIG_FILE: start from an empty one, not whatever the machine points it at.
: >"$WORK/tofurc"
export TF_CLI_CONFIG_FILE="$WORK/tofurc" TF_DATA_DIR="$WORK/tfdata" TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
check "tofu $("$BIN/tofu" version | sed -n '1s/^OpenTofu //p') fmt -check -recursive terraform/" \
  "$BIN/tofu" -chdir="$ROOT/terraform" fmt -check -recursive -diff

provider_dir=${TF_GOOGLE_PROVIDER_DIR:-}
if [ -z "$provider_dir" ] && compgen -G "$BIN/terraform-provider-google*" >/dev/null; then
  provider_dir=$BIN
fi
if [ -n "$provider_dir" ]; then
  cat >"$WORK/tofurc" <<EOF
provider_installation {
  dev_overrides {
    "hashicorp/google" = "$provider_dir"
  }
  direct {}
}
EOF
  check "tofu validate terraform/ (google provider from $provider_dir)" "$BIN/tofu" -chdir="$ROOT/terraform" validate -no-color
  check "tofu test terraform/ (mock_provider \"google\": plans the whole stack)" "$BIN/tofu" -chdir="$ROOT/terraform" test -no-color
  # The schema fixture make test checks terraform/ against is this provider's schema.
  # shellcheck disable=SC2317 # called through check
  fixture_matches() {
    FIXTURE_OUT="$WORK/fresh-schema.json" TOFU="$BIN/tofu" "$ROOT/scripts/tf-schema-fixture.sh" "$provider_dir" &&
      python3 - "$WORK/fresh-schema.json" "$ROOT/tools/infra/testdata/google-provider-schema.json" <<'PY'
import json, sys
fresh, committed = (json.load(open(p)) for p in sys.argv[1:])
for k in ("provider_version", "provider", "resource_schemas"):
    if fresh[k] != committed[k]:
        sys.exit(f"tools/infra/testdata/google-provider-schema.json: {k} differs from the provider's; run scripts/tf-schema-fixture.sh")
PY
  }
  check "tools/infra/testdata/google-provider-schema.json is this provider's schema" fixture_matches
else
  reason="no google provider binary: build it from github.com/hashicorp/terraform-provider-google at the pinned tag (see scripts/tf-schema-fixture.sh; about 25 minutes on 2 cores) and set TF_GOOGLE_PROVIDER_DIR to its directory"
  skip "tofu validate terraform/" "$reason"
  skip "tofu test terraform/" "$reason"
  skip "the schema fixture is the provider's schema" "$reason"
fi

# ---------------------------------------------------------------------------------------------------
# 4. Images, assembled offline and inspected
# ---------------------------------------------------------------------------------------------------
# The Dockerfile's final-stage instruction (each appears once there; tools/infra checks that).
dockerfile_arg() { # Dockerfile INSTRUCTION
  awk -v ins="$2" 'toupper($1)=="FROM"{stage++} stage>1 && toupper($1)==ins {sub(/^[^ ]+ +/, ""); v=$0} END{print v}' "$1"
}

IMG="$WORK/images"
mkdir -p "$IMG"
if "$BIN/imagekit" base -cacerts /etc/ssl/certs/ca-certificates.crt -uid 10001 -gid 10001 -o "$IMG/base.tar" >"$IMG/base.log" 2>&1; then
  pass "base image: CA certificates and user 10001 (mcloudtt)"
else
  fail "base image" "$IMG/base.log"
fi
for dir in "$ROOT"/services/*/; do
  svc=$(basename "$dir")
  [ -f "$dir/Dockerfile" ] || { fail "$svc: no Dockerfile"; continue; }
  df="$dir/Dockerfile"
  user=$(dockerfile_arg "$df" USER)
  expose=$(dockerfile_arg "$df" EXPOSE)
  entry=$(dockerfile_arg "$df" ENTRYPOINT)
  dest=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])[0])' "$entry" 2>/dev/null)
  log="$IMG/$svc.log"
  # The Dockerfile's build stage, step for step, in a scratch copy of what it COPYs (pkg/ and the
  # service): the service's own module, `go mod download` (which also records any go.sum line the
  # module lacks), then a static, stripped build.
  src="$IMG/src-$svc"
  mkdir -p "$src/services"
  cp -R "$ROOT/pkg" "$src/pkg"
  cp -R "$dir" "$src/services/$svc"
  if ! (cd "$src/services/$svc" && export GOWORK=off CGO_ENABLED=0 GOFLAGS=-buildvcs=false &&
    go mod download && go build -trimpath -ldflags="-s -w" -o "$IMG/$svc" "./cmd/$svc") >"$log" 2>&1; then
    fail "$svc: static build as in the Dockerfile" "$log"
    continue
  fi
  if ! "$BIN/imagekit" build -base "$IMG/base.tar" -binary "$IMG/$svc" -dest "$dest" -entrypoint "$entry" \
    -user "$user" -expose "$expose" -tag "mcloudtt-$svc:offline" -o "$IMG/$svc.tar" >>"$log" 2>&1; then
    fail "$svc: image assembled" "$log"
    continue
  fi
  if ! "$BIN/imagekit" inspect "$IMG/$svc.tar" >"$IMG/$svc.json" 2>>"$log"; then
    fail "$svc: image inspected" "$log"
    continue
  fi
  # Compare with the Dockerfile and with the Deployment the apiserver stored for the local overlay.
  ports=$(kubectl -n mcloudtt-local get deploy "$svc" -o jsonpath="{.spec.template.spec.containers[?(@.name==\"$svc\")].ports[*].containerPort}" 2>/dev/null)
  uid=$(kubectl -n mcloudtt-local get deploy "$svc" -o jsonpath='{.spec.template.spec.securityContext.runAsUser}' 2>/dev/null)
  if python3 - "$IMG/$svc.json" "$entry" "$user" "$expose" "$ports" "$uid" >"$IMG/$svc.check" 2>&1 <<'PY'; then
import json, sys
rep = json.load(open(sys.argv[1]))
entry, user, expose, ports, uid = json.loads(sys.argv[2]), sys.argv[3], sys.argv[4].split(), sys.argv[5].split(), sys.argv[6]
errs = []
if rep["entrypoint"] != entry: errs.append(f"entrypoint {rep['entrypoint']} != Dockerfile {entry}")
if rep["user"] != user: errs.append(f"user {rep['user']} != Dockerfile {user}")
if rep["user"].split(":")[0] in ("", "0", "root"): errs.append("runs as root")
if rep["user"].split(":")[0] != uid: errs.append(f"user {rep['user']} != Deployment runAsUser {uid}")
img_ports = sorted(p.split("/")[0] for p in rep["exposedPorts"])
if img_ports != sorted(expose): errs.append(f"exposed {img_ports} != Dockerfile EXPOSE {sorted(expose)}")
if img_ports != sorted(ports): errs.append(f"exposed {img_ports} != Deployment ports {sorted(ports)}")
if not rep["static"]: errs.append("the binary is dynamically linked")
extra = sorted(set(rep["files"]) - {"/etc", "/etc/passwd", "/etc/group", "/etc/ssl", "/etc/ssl/certs",
    "/etc/ssl/certs/ca-certificates.crt", "/tmp", "/usr", "/usr/local", "/usr/local/bin", entry[0]})
if extra: errs.append(f"unexpected files {extra}")
print("\n".join(errs) if errs else f"entrypoint {entry}, user {rep['user']}, ports {' '.join(img_ports)}, static, {len(rep['files'])} files")
sys.exit(1 if errs else 0)
PY
    pass "$svc: image $(cat "$IMG/$svc.check")"
  else
    fail "$svc: image matches its Dockerfile and Deployment" "$IMG/$svc.check"
  fi
done

# ---------------------------------------------------------------------------------------------------
# 5. Each binary starts with the configuration the local overlay stored, and drains on SIGTERM
# ---------------------------------------------------------------------------------------------------
# The ConfigMap the apiserver holds, with listener addresses moved to free loopback ports and the
# Secret mount paths pointed at the overlay's development files, so the service's own config
# validation judges the manifests' values.
for dir in "$ROOT"/services/*/; do
  svc=$(basename "$dir")
  [ -x "$IMG/$svc" ] || continue
  log="$IMG/$svc.run.log"
  if ! kubectl -n mcloudtt-local get configmap -l app.kubernetes.io/part-of=mcloudtt -o json >"$IMG/cms.json" 2>"$log"; then
    fail "$svc: read its ConfigMap back" "$log"
    continue
  fi
  envfile="$IMG/$svc.env"
  if ! python3 - "$IMG/cms.json" "$svc" "$ROOT/deploy/overlays/local/secrets" >"$envfile" 2>>"$log" <<'PY'; then
import json, socket, sys
cms, svc, secrets = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
data = next(cm["data"] for cm in cms["items"] if cm["metadata"]["name"].startswith(svc + "-config"))
# Each socket stays bound until every address is chosen: a port closed at once can be handed out
# again by the next bind, and two listeners on one port fail the start.
held = []
def free():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); held.append(s); return s.getsockname()[1]
for k, v in sorted(data.items()):
    if k.endswith("_ADDR") and v.startswith(":"):
        v = f"127.0.0.1:{free()}"
    # Each Secret mount and the development file a key of it comes from (secrets/<prefix><key>).
    for mount, prefix in (("/etc/mcloudtt/tls/", ""), ("/etc/mcloudtt/tls-tickets/", "tls-ticket-"),
                          ("/etc/mcloudtt/auth/", ""), ("/etc/mcloudtt/redis/", "redis-"),
                          ("/etc/mcloudtt/gateway-api/", "gateway-api-")):
        if v.startswith(mount):
            v = secrets + "/" + prefix + v[len(mount):]
    print(f"{k}={v}")
if svc == "broker":
    print("BROKER_ID=infra-test")
for s in held:
    s.close()
PY
    fail "$svc: environment from its ConfigMap" "$log"
    continue
  fi
  http=$(sed -n 's/^[A-Z]*_HTTP_ADDR=//p' "$envfile")
  drain=$(sed -n 's/^[A-Z]*_SHUTDOWN_TIMEOUT=\([0-9]*\)s$/\1/p' "$envfile")
  # shellcheck disable=SC2046 # one VAR=value word per line of the env file
  (exec env -i PATH=/usr/bin:/bin $(cat "$envfile") "$IMG/$svc") >>"$log" 2>&1 &
  pid=$!
  pids+=("$pid")
  ok=0
  for _ in $(seq 1 50); do
    if python3 -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "http://$http/healthz" 2>/dev/null; then ok=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if [ "$ok" -ne 1 ]; then
    kill "$pid" 2>/dev/null
    fail "$svc: starts with the local overlay's configuration and answers /healthz" "$log"
    continue
  fi
  kill -TERM "$pid"
  code=124
  for _ in $(seq 1 $(((${drain:-10} + 5) * 5))); do
    if ! kill -0 "$pid" 2>/dev/null; then wait "$pid"; code=$?; break; fi
    sleep 0.2
  done
  if [ "$code" -eq 0 ]; then
    pass "$svc: starts with the local overlay's configuration, answers /healthz on $http, exits 0 on SIGTERM"
  else
    echo "exit status $code" >>"$log"
    fail "$svc: run with the overlay's configuration" "$log"
  fi
done

# ---------------------------------------------------------------------------------------------------
# 6. Monitoring: promtool on the alert rules; the metrics they and the dashboards name, in live processes
# ---------------------------------------------------------------------------------------------------
# tools/monitoring (outside go.work: it builds with Prometheus's own code) runs promtool check rules
# and test rules, and starts two brokers, the adapter (on the BigQuery emulator of scripts/deps.sh bq)
# and the gateway on a real redis-server to look up every metric name.
mon_log="$WORK/monitoring.log"
if (cd "$ROOT/tools/monitoring" && MCLOUDTT_CACHE="$CACHE" GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false" \
  go test -count=1 -v ./...) >"$mon_log" 2>&1; then
  while read -r name; do pass "monitoring: $name"; done < <(sed -n 's/^--- PASS: \([^ ]*\) .*/\1/p' "$mon_log")
else
  fail "monitoring: tools/monitoring (promtool check/test rules, metrics named by rules and dashboards)" "$mon_log"
fi

finish
