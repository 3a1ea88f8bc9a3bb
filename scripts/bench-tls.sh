#!/usr/bin/env bash
# bench-tls.sh — `make bench-tls`: scenario S1 (../shared/mqttload/README.md) against one broker
# process over plain TCP and over TLS, one after the other, and one table with the ratio. The
# certificate is a throwaway self-signed P-256 one made with openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
RUNS=${RUNS:-2}
tmp=$(mktemp -d /tmp/mcloudtt-bench-tls.XXXXXX)
trap 'kill $BPID 2>/dev/null || true; rm -rf "$tmp"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -addext subjectAltName=IP:127.0.0.1 -days 1 -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P1=$(port); P2=$(port)
BROKER_MQTT_ADDR=127.0.0.1:$P1 BROKER_TLS_ADDR=127.0.0.1:$P2 BROKER_HTTP_ADDR='' BROKER_LOG_LEVEL=warn \
  BROKER_TLS_CERT_FILE=$tmp/cert.pem BROKER_TLS_KEY_FILE=$tmp/key.pem "$BIN/broker" >"$tmp/broker.log" 2>&1 &
BPID=$!
sleep 0.5
S1="-topology fanin -pubs 10 -subs 1 -n 20000 -size 64 -qos 0 -timeout 60s"
printf '%-6s %12s %6s %10s %10s %8s\n' listener "deliv msg/s" lost "p50 µs" "p99 µs" "cpu s"
declare -A best
for _ in $(seq "$RUNS"); do
  for mode in tcp tls; do
    if [ $mode = tcp ]; then args="-addr 127.0.0.1:$P1"; else args="-addr 127.0.0.1:$P2 -tls -tls-ca $tmp/cert.pem"; fi
    # shellcheck disable=SC2086
    json=$("$BIN/loadgen" -q -broker-pid $BPID $args $S1 | tail -1)
    read -r rate lost p50 p99 cpu < <(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(int(d.get("deliv_rate",0)), d.get("lost",0), int(d.get("p50_us",0)), int(d.get("p99_us",0)), d.get("broker_cpu_s",0))' "$json")
    printf '%-6s %12s %6s %10s %10s %8s\n' $mode "$rate" "$lost" "$p50" "$p99" "$cpu"
    [ "${best[$mode]:-0}" -lt "$rate" ] && best[$mode]=$rate
  done
done
python3 -c 'import sys; t,s=int(sys.argv[1]),int(sys.argv[2]); print("best of %s: tcp %d msg/s, tls %d msg/s, tls/tcp = %.2fx" % (sys.argv[3], t, s, s/t if t else 0))' "${best[tcp]}" "${best[tls]}" "$RUNS"
