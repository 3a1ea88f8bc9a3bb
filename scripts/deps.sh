#!/usr/bin/env bash
# deps.sh — installs what MCloudTT's builds, tests and local stack need and is missing.
#
# Usage: scripts/deps.sh [--packages-only] [GROUP ...]     (default: base)
#   --packages-only  install the groups' Debian packages and build nothing (.ci/run does this first,
#                    then builds the infra validators in the background while make test runs)
#   base   redis-server, mosquitto (broker and clients, for interop and benchmarks), python3
#   browser  chromium (headless, for the health gateway's status-page test)
#   infra  the validators of scripts/infra-test.sh, built from the Go module proxy: kube-apiserver and
#          kubectl (k8s.io/kubernetes), etcd, tofu (OpenTofu), promtool (Prometheus), controller-gen and
#          imagekit, the monitoring CRDs (PodMonitoring, Rules, ServiceMonitor, PrometheusRule), plus
#          openssl
#   bq     clang and the local BigQuery emulator (tools/bqemulator), built with cgo and clang
#   lint   shellcheck (make lint)
#   bench  base plus jq, bc, curl and time, which the benchmark scripts use
#   bq-sources  only the download-and-patch step of bq (the patched module copies; no compile)
#
# As root on Debian it installs missing packages with apt-get. For anyone else it prints the exact
# command to run and fails. Tools built from the Go module proxy are cached outside the repository in
# $MCLOUDTT_CACHE (default ~/.cache/mcloudtt), so a second run takes seconds.
set -euo pipefail

CACHE=${MCLOUDTT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mcloudtt}
mkdir -p "$CACHE/bin"

missing_pkgs=()
need_cmd() { # command debian-package
  command -v "$1" >/dev/null 2>&1 || missing_pkgs+=("$2")
}

apt_install() {
  [ ${#missing_pkgs[@]} -eq 0 ] && return 0
  # shellcheck disable=SC2207
  local pkgs=($(printf '%s\n' "${missing_pkgs[@]}" | sort -u))
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "deps: missing packages: ${pkgs[*]}" >&2
    echo "deps: run as root on Debian:  apt-get update && apt-get install -y ${pkgs[*]}" >&2
    exit 1
  fi
  echo "deps: installing ${pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # An empty package list means apt-get update never ran on this machine.
  if ! apt-cache show "${pkgs[0]}" >/dev/null 2>&1 || [ -n "${DEPS_APT_UPDATE:-}" ]; then
    apt-get update -q >&2
  fi
  if ! apt-get install -y -q --no-install-recommends "${pkgs[@]}" >&2; then
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "${pkgs[@]}" >&2
  fi
  missing_pkgs=()
}

group_base() {
  need_cmd redis-server redis-server
  need_cmd redis-cli redis-tools
  need_cmd mosquitto mosquitto
  need_cmd mosquitto_pub mosquitto-clients
  need_cmd mosquitto_sub mosquitto-clients
  need_cmd python3 python3
  need_cmd timeout coreutils
  apt_install
}

# --- browser -----------------------------------------------------------------------------------
# Debian's chromium, which the health gateway's status-page test drives headless (chromedp).
group_browser() {
  need_cmd chromium chromium
  apt_install
}

# --- infra -------------------------------------------------------------------------------------
# Each validator is built from a module under tools/infra whose go.mod pins it with an exact
# `require` (the proxy lists no versions for several of them), with GOWORK=off so the workspace
# cannot change a version. A binary is rebuilt only when it is missing or when its module's files or
# the Go version change: the stamp beside it records their hash. Cold builds take minutes and are
# run one package at a time (DEPS_BUILD_P, default 1) to bound memory; cached runs take seconds.
# Each build's wall time and peak memory go to $CACHE/bin/<name>.build.
build_pinned() { # module-dir binary package [extra ldflags]
  local dir=$1 bin=$2 pkg=$3 ldflags="-s -w ${4:-}"
  local out="$CACHE/bin/$bin" stamp="$CACHE/bin/.$bin.stamp" want
  want=$( (cd "$dir" && find . -maxdepth 1 -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) | LC_ALL=C sort | xargs cat; go env GOVERSION; echo "$pkg $ldflags") | sha256sum | cut -c1-16)
  if [ -x "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  echo "deps: building $bin from ${dir#"$REPO"/} (a cold build takes minutes)" >&2
  go_build_stamped "$dir" "$bin" "$pkg" "$ldflags" "$want" CGO_ENABLED=0
}

# go_build_stamped module-dir binary package ldflags stamp [VAR=value ... [-- go-build-args ...]]:
# builds package in module-dir (GOWORK=off, modules read-only, trimmed paths; the VAR=value pairs
# added to the environment) into $CACHE/bin/binary, timed, and records the stamp beside it.
go_build_stamped() {
  local dir=$1 bin=$2 pkg=$3 ldflags=$4 want=$5
  shift 5
  local out="$CACHE/bin/$bin" envs=() timing=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  [ -x /usr/bin/time ] && timing=(/usr/bin/time -f "$bin: %e s wall, %M KiB peak RSS" -o "$out.build")
  if ! (cd "$dir" && env GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false -trimpath" "${envs[@]}" \
      "${timing[@]}" go build -p "${DEPS_BUILD_P:-1}" "$@" -ldflags="$ldflags" -o "$out.tmp" "$pkg"); then
    rm -f "$out.tmp"
    echo "deps: building $bin failed" >&2
    return 1
  fi
  mv -f "$out.tmp" "$out"
  echo "$want" >"$CACHE/bin/.$bin.stamp"
  [ -f "$out.build" ] && cat "$out.build" >&2
  return 0
}

group_infra() {
  need_cmd openssl openssl
  need_cmd python3 python3
  need_cmd timeout coreutils
  need_cmd /usr/bin/time time
  apt_install
  [ -n "$PACKAGES_ONLY" ] && return 0
  command -v go >/dev/null 2>&1 || { echo "deps: infra needs Go (see go.work for the version)" >&2; exit 1; }
  local pins="$REPO/tools/infra/pins" kubever
  kubever=$(sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$pins/kube/go.mod")
  local kubeflags="-X k8s.io/component-base/version.gitVersion=$kubever -X k8s.io/component-base/version.gitMajor=1"
  kubeflags+=" -X k8s.io/component-base/version.gitMinor=$(echo "$kubever" | cut -d. -f2) -X k8s.io/component-base/version.gitTreeState=clean"
  local failed=0
  build_pinned "$REPO/tools/infra/imagekit" imagekit . || failed=1
  build_pinned "$pins/etcd" etcd go.etcd.io/etcd/server/v3 || failed=1
  build_pinned "$pins/kube" kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$kubeflags" || failed=1
  build_pinned "$pins/kube" kubectl k8s.io/kubernetes/cmd/kubectl "$kubeflags" || failed=1
  # dev=no is what OpenTofu's release builds set: the version is then 1.12.6, not 1.12.6-dev.
  build_pinned "$pins/tofu" tofu github.com/opentofu/opentofu/cmd/tofu "-X github.com/opentofu/opentofu/version.dev=no" || failed=1
  # promtool for the alert rules in deploy/monitoring (check rules, test rules). Module v0.316.0 is
  # Prometheus 3.16.0; the version string is what `promtool --version` prints.
  build_pinned "$pins/prometheus" promtool github.com/prometheus/prometheus/cmd/promtool "-X github.com/prometheus/common/version.Version=3.16.0" || failed=1
  build_pinned "$pins/controller-gen" controller-gen sigs.k8s.io/controller-tools/cmd/controller-gen || failed=1
  [ "$failed" -eq 0 ] || exit 1
  monitoring_crds || exit 1
}

# monitoring_crds: the CRDs of the monitoring components' kinds, into $CACHE/crds for
# scripts/infra-test.sh: PodMonitoring and Rules as Google Managed Prometheus ships them (the files
# of the module pinned in pins/gmp-crds), ServiceMonitor and PrometheusRule generated by
# controller-gen from prometheus-operator's API types (pinned in pins/controller-gen). Redone only
# when a pin changes.
monitoring_crds() {
  local pins="$REPO/tools/infra/pins" out="$CACHE/crds" want gmp
  want=$(cat "$pins/gmp-crds/go.mod" "$pins/controller-gen/go.mod" "$CACHE/bin/.controller-gen.stamp" | sha256sum | cut -c1-16)
  [ -d "$out" ] && [ "$(cat "$out/.stamp" 2>/dev/null)" = "$want" ] && return 0
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  gmp=$(module_dir "$pins/gmp-crds" github.com/GoogleCloudPlatform/prometheus-engine) || return 1
  cp "$gmp/charts/operator/crds/monitoring.googleapis.com_podmonitorings.yaml" \
    "$gmp/charts/operator/crds/monitoring.googleapis.com_rules.yaml" "$out.tmp/" || return 1
  if ! (cd "$pins/controller-gen" && GOWORK=off GOFLAGS=-mod=readonly "$CACHE/bin/controller-gen" \
      crd:crdVersions=v1,allowDangerousTypes=true \
      paths=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1 \
      output:crd:dir="$out.tmp/prometheus-operator") >"$out.tmp.log" 2>&1; then
    cat "$out.tmp.log" >&2
    echo "deps: controller-gen could not generate prometheus-operator's CRDs" >&2
    return 1
  fi
  mv "$out.tmp/prometheus-operator"/monitoring.coreos.com_{servicemonitors,prometheusrules}.yaml "$out.tmp/" || return 1
  rm -rf "$out.tmp/prometheus-operator" "$out.tmp.log" "$out"
  echo "$want" >"$out.tmp/.stamp"
  mv "$out.tmp" "$out"
  echo "deps: monitoring CRDs in $out" >&2
}

# --- bq ----------------------------------------------------------------------------------------
# The local BigQuery emulator (github.com/goccy/bigquery-emulator, pinned in tools/bqemulator) that
# `make run` and the bigquery-adapter's tests use. Its go-zetasql dependency is C++ built with cgo:
# g++ 12 fails on it, clang++ builds it (cold: ~16 minutes and ~7 GB of memory; cached: seconds).
# Same stamp rule as build_pinned, but with cgo on and clang as the C and C++ compiler, and the
# modules named by the *.patch files built from patched copies (patched_sources below).
build_pinned_cgo() { # module-dir binary package
  local dir=$1 bin=$2 pkg=$3 ldflags="-s -w"
  local out="$CACHE/bin/$bin" want
  want=$( (cd "$dir" && find . -maxdepth 1 -type f \( -name '*.go' -o -name go.mod -o -name go.sum -o -name '*.patch' \) | LC_ALL=C sort | xargs cat; go env GOVERSION; clang --version | head -1; echo "$pkg $ldflags cgo") | sha256sum | cut -c1-16)
  if [ -x "$out" ] && [ "$(cat "$CACHE/bin/.$bin.stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  local modfile=()
  if has_patches "$dir"; then
    patched_sources "$dir" "$bin" || return 1
    modfile=(-modfile "$CACHE/patched/$bin/go.mod")
  fi
  echo "deps: building $bin from ${dir#"$REPO"/} with clang (a cold build takes ~20 minutes and ~7 GB)" >&2
  go_build_stamped "$dir" "$bin" "$pkg" "$ldflags" "$want" CGO_ENABLED=1 CC=clang CXX=clang++ -- "${modfile[@]}"
}

has_patches() { # module-dir
  local patches=("$1"/*.patch)
  [ -e "${patches[0]}" ]
}

# module_dir module-dir module: downloads module at the version module-dir's go.mod selects and
# prints its directory in the module cache, after checking that it is one: an absolute path inside
# GOMODCACHE holding the module's files. `go list -m -f {{.Dir}}` prints an empty string for a module
# not downloaded yet, and copying from "" + "/." copies the root filesystem; hence the download
# first and the checks.
module_dir() {
  local dir=$1 mod=$2 json mdir err cache
  if ! json=$(cd "$dir" && GOWORK=off GOFLAGS=-mod=readonly go mod download -json "$mod" 2>&1); then
    echo "deps: go mod download $mod (in ${dir#"$REPO"/}) failed:" >&2
    printf '%s\n' "$json" | sed 's/^/deps:   /' >&2
    return 1
  fi
  err=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Error": "\(.*\)",*$/\1/p')
  mdir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
  cache=$(cd "$dir" && GOWORK=off go env GOMODCACHE)
  if [ -n "$err" ]; then
    echo "deps: go mod download $mod: $err" >&2
    return 1
  fi
  case "$mdir" in
    "$cache"/*) ;;
    *) echo "deps: go mod download $mod named the directory '$mdir', not one inside GOMODCACHE ($cache); not copying it" >&2
       return 1 ;;
  esac
  if [ ! -f "$mdir/go.mod" ] || ! grep -q "^module $mod\$" "$mdir/go.mod"; then
    echo "deps: $mdir does not hold module $mod (no go.mod naming it); not copying it" >&2
    return 1
  fi
  printf '%s\n' "$mdir"
}

# patched_sources module-dir binary: each *.patch in module-dir is a unified diff against one
# module's files, paths relative to that module's root, which its first line names
# ("# module: <path>"). That module is copied from the module cache into
# $CACHE/patched/<binary>/src/<module>, patched there, and replaced in a copy of module-dir's go.mod
# ($CACHE/patched/<binary>/go.mod, given to go build with -modfile), so neither the module cache nor
# the repository changes. (go build -overlay may not replace files in the module cache, hence the
# copy.) Nothing is compiled: this is the part of the bq group that a test runs on an empty cache.
patched_sources() {
  local dir=$1 bin=$2 p mod mdir dst
  local odir="$CACHE/patched/$bin"
  case "$odir" in /*/patched/*) ;; *) echo "deps: refusing to use '$odir' as the patched copy" >&2; return 1 ;; esac
  rm -rf "$odir" && mkdir -p "$odir/src"
  cp "$dir/go.mod" "$dir/go.sum" "$odir/"
  for p in "$dir"/*.patch; do
    mod=$(sed -n '1s/^# module: //p' "$p")
    [ -n "$mod" ] || { echo "deps: $p does not name its module on its first line (# module: <path>)" >&2; return 1; }
    mdir=$(module_dir "$dir" "$mod") || return 1
    dst="$odir/src/$mod"
    if [ ! -d "$dst" ]; then
      mkdir -p "$dst" && cp -r "$mdir"/. "$dst/" && chmod -R u+w "$dst"
      echo "replace $mod => $dst" >>"$odir/go.mod"
    fi
    patch -s -p1 --no-backup-if-mismatch -d "$dst" <"$p" || { echo "deps: $p does not apply to $mod" >&2; return 1; }
  done
  echo "deps: patched sources of $bin in $odir" >&2
}

group_bq() {
  need_cmd clang clang
  need_cmd clang++ clang
  need_cmd patch patch
  need_cmd /usr/bin/time time
  apt_install
  [ -n "$PACKAGES_ONLY" ] && return 0
  command -v go >/dev/null 2>&1 || { echo "deps: bq needs Go (see go.work for the version)" >&2; exit 1; }
  build_pinned_cgo "$REPO/tools/bqemulator" bigquery-emulator github.com/goccy/bigquery-emulator/cmd/bigquery-emulator || exit 1
}

REPO=$(cd "$(dirname "$0")/.." && pwd)

PACKAGES_ONLY=
if [ "${1:-}" = --packages-only ]; then
  PACKAGES_ONLY=1
  shift
fi
groups=("$@")
[ ${#groups[@]} -eq 0 ] && groups=(base)
for g in "${groups[@]}"; do
  case "$g" in
    base) group_base ;;
    browser) group_browser ;;
    infra) group_infra ;;
    bq) group_bq ;;
    lint) need_cmd shellcheck shellcheck; apt_install ;;
    bench) group_base; need_cmd jq jq; need_cmd bc bc; need_cmd curl curl; need_cmd /usr/bin/time time; apt_install ;;
    bq-sources) # the download-and-patch step of bq alone (no compile); tested on an empty cache
      need_cmd patch patch; apt_install
      patched_sources "$REPO/tools/bqemulator" bigquery-emulator ;;
    *) echo "deps: unknown group $g" >&2; exit 2 ;;
  esac
done
