#!/usr/bin/env bash
# deps.sh — installs what MCloudTT's builds, tests and local stack need and is missing.
#
# Usage: scripts/deps.sh [GROUP ...]     (default: base)
#   base   redis-server, mosquitto (broker and clients, for interop and benchmarks), python3
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

groups=("$@")
[ ${#groups[@]} -eq 0 ] && groups=(base)
for g in "${groups[@]}"; do
  case "$g" in
    base) group_base ;;
    *) echo "deps: unknown group $g" >&2; exit 2 ;;
  esac
done
