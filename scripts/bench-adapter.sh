#!/usr/bin/env bash
# bench-adapter.sh — `make bench-adapter`:
#   1. the adapter binary draining 200,000 exported messages (JSON payloads of about 100 bytes)
#      into the local BigQuery emulator, with the Storage Write API and with insertAll, for batch
#      sizes 100, 500 and 2,000: rows per second, the adapter's CPU per 100,000 rows and rows per
#      adapter CPU-second (BenchmarkAdapterDrain in services/bigquery-adapter/cmd/bigquery-adapter);
#   2. scenario S1 (../shared/mqttload/README.md, as in bench-compare.sh) against one broker on a
#      local Redis with the export to the stream off (BROKER_EXPORT_FILTERS empty) and on (#),
#      alternating, RUNS times each, with the broker's and Redis' CPU and Redis' memory after the
#      run (the stream's entries, about 2 MB without them); the median and best of each,
#      and the ratio on/off (the budget: at least 0.9 of the median, nothing dropped).
# Run it alone on the machine (it measures CPU and throughput): flock /work/bench.lock make bench-adapter.
# Environment: GO (go), BIN (bin), RUNS (5).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
BIN=${BIN:-bin}
RUNS=${RUNS:-5}
tmp=$(mktemp -d /tmp/mcloudtt-bench-adapter.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "== adapter: 200,000 rows into the BigQuery emulator (Storage Write API and insertAll)"
$GO test -run '^$' -bench BenchmarkAdapterDrain -benchtime 1x ./services/bigquery-adapter/cmd/bigquery-adapter 2>&1 |
  grep '^bench-adapter:' | sed 's/^bench-adapter: /  /'

echo "== broker: S1 with the export off and on ($RUNS alternating runs each)"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RP=$(port)
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" --logfile "$tmp/redis.log" &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$RP" ping >/dev/null 2>&1 && break; sleep 0.1; done
S1="-topology fanin -pubs 10 -subs 1 -n 20000 -size 64 -qos 0 -timeout 60s"
printf '  %-7s %12s %6s %10s %8s %8s %8s %10s %9s\n' export "deliv msg/s" lost "p99 µs" "cpu s" "redis s" "redis MB" exported dropped
declare -A best all
RPID=${pids[0]}
totaldropped=0
for _ in $(seq "$RUNS"); do
  for mode in off on; do
    redis-cli -p "$RP" flushall >/dev/null
    MP=$(port); HP=$(port)
    filters=""; [ "$mode" = on ] && filters="#"
    BROKER_ID=bench-1 BROKER_MQTT_ADDR=127.0.0.1:$MP BROKER_HTTP_ADDR=127.0.0.1:$HP BROKER_LOG_LEVEL=warn \
      BROKER_REDIS_ADDRS=127.0.0.1:$RP BROKER_EXPORT_FILTERS="$filters" "$BIN/broker" >"$tmp/broker.log" 2>&1 &
    BPID=$!
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$HP/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
    r0=$(awk '{print $14+$15}' "/proc/$RPID/stat")
    # shellcheck disable=SC2086
    json=$("$BIN/loadgen" -q -broker-pid $BPID -addr 127.0.0.1:$MP $S1 | tail -1)
    sleep 1 # let the export queue drain before reading the counters
    r1=$(awk '{print $14+$15}' "/proc/$RPID/stat")
    mem=$(redis-cli -p "$RP" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p')
    metrics=$(curl -fs "http://127.0.0.1:$HP/metrics" || true)
    kill "$BPID"; wait "$BPID" 2>/dev/null || true
    read -r rate lost p99 cpu < <(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(int(d.get("deliv_rate",0)), d.get("lost",0), int(d.get("p99_us",0)), d.get("broker_cpu_s",0))' "$json")
    exported=$(echo "$metrics" | sed -n 's/^mcloudtt_broker_export_messages_total{result="written"} //p')
    dropped=$(echo "$metrics" | sed -n 's/^mcloudtt_broker_export_messages_total{result="dropped"} //p')
    redis=$(python3 -c 'import sys; print("%.2f" % (int(sys.argv[1]) / 100))' "$((r1 - r0))")
    printf '  %-7s %12s %6s %10s %8s %8s %8s %10s %9s\n' "$mode" "$rate" "$lost" "$p99" "$cpu" "$redis" \
      "$(python3 -c 'import sys; print("%.1f" % (int(sys.argv[1] or 0) / 1e6))' "$mem")" "${exported:-0}" "${dropped:-0}"
    totaldropped=$((totaldropped + ${dropped:-0}))
    [ "${best[$mode]:-0}" -lt "$rate" ] && best[$mode]=$rate
    all[$mode]+="$rate "
  done
done
python3 -c '
import statistics, sys
off, on = int(sys.argv[1]), int(sys.argv[2])
moff, mon = statistics.median(map(int, sys.argv[3].split())), statistics.median(map(int, sys.argv[4].split()))
dropped = int(sys.argv[5])
ok = moff and mon/moff >= 0.9 and dropped == 0
print("  median: export off %d msg/s, on %d msg/s: on/off = %.2f, %d dropped (%s the budget: 0.9, none dropped)" % (moff, mon, mon/moff if moff else 0, dropped, "within" if ok else "OUTSIDE"))
print("  best: off %d, on %d: on/off = %.2f" % (off, on, on/off if off else 0))' "${best[off]}" "${best[on]}" "${all[off]}" "${all[on]}" "$totaldropped"
