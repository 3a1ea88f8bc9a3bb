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
# Environment: GO (go), BIN (bin), RUNS (5), PARTS ("adapter broker": which of the two to run),
# REDIS_STATE (warm: Redis keeps its memory between runs, as in service; cold: FLUSHALL between
# runs hands it back to the kernel, see empty_redis).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
BIN=${BIN:-bin}
RUNS=${RUNS:-5}
PARTS=${PARTS:-adapter broker}
REDIS_STATE=${REDIS_STATE:-warm}
tmp=$(mktemp -d /tmp/mcloudtt-bench-adapter.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

if [[ " $PARTS " == *" adapter "* ]]; then
  echo "== adapter: 200,000 rows into the BigQuery emulator (Storage Write API and insertAll)"
  $GO test -run '^$' -bench BenchmarkAdapterDrain -benchtime 1x ./services/bigquery-adapter/cmd/bigquery-adapter 2>&1 |
    grep '^bench-adapter:' | sed 's/^bench-adapter: /  /'
fi
[[ " $PARTS " == *" broker "* ]] || exit 0

echo "== broker: S1 with the export off and on ($RUNS alternating runs each, Redis $REDIS_STATE)"
# free_port prints a loopback port this run has not handed out before (scripts/free-port.py).
free_port() { python3 scripts/free-port.py "$tmp/ports.given"; }
RP=$(free_port)
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" --logfile "$tmp/redis.log" &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$RP" ping >/dev/null 2>&1 && break; sleep 0.1; done
S1="-topology fanin -pubs 10 -subs 1 -n 20000 -size 64 -qos 0 -timeout 60s"
RPID=${pids[0]}
# empty_redis removes what the run before left. warm (the default): the keys are deleted and
# Redis keeps the memory it had, as a Redis in service does, where the adapter trims the stream's
# consumed entries and new entries reuse their memory. cold: FLUSHALL, which also hands the
# memory back to the kernel (jemalloc purge), so the next run's stream grows into fresh pages, as
# on a new Redis or while the stream grows towards its MAXLEN.
empty_redis() {
  if [ "$REDIS_STATE" = cold ]; then
    redis-cli -p "$RP" flushall >/dev/null
  else
    redis-cli -p "$RP" eval "for _, k in ipairs(redis.call('KEYS', '*')) do redis.call('DEL', k) end return 0" 0 >/dev/null
  fi
}
# s1 MODE LABEL: one S1 run against a fresh broker with the export MODE (off/on); prints its line
# and sets rate and dropped.
s1() {
  local mode=$1 label=$2 mp hp filters bpid r0 r1 json mem metrics lost p99 cpu exported redis
  empty_redis
  mp=$(free_port); hp=$(free_port)
  filters=""; [ "$mode" = on ] && filters="#"
  BROKER_ID=bench-1 BROKER_MQTT_ADDR=127.0.0.1:$mp BROKER_HTTP_ADDR=127.0.0.1:$hp BROKER_LOG_LEVEL=warn \
    BROKER_REDIS_ADDRS=127.0.0.1:$RP BROKER_EXPORT_FILTERS="$filters" "$BIN/broker" >"$tmp/broker.log" 2>&1 &
  bpid=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$hp/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  r0=$(awk '{print $14+$15}' "/proc/$RPID/stat")
  # shellcheck disable=SC2086
  json=$("$BIN/loadgen" -q -broker-pid $bpid -addr 127.0.0.1:$mp $S1 | tail -1)
  sleep 1 # let the export queue drain before reading the counters
  r1=$(awk '{print $14+$15}' "/proc/$RPID/stat")
  mem=$(redis-cli -p "$RP" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p')
  metrics=$(curl -fs "http://127.0.0.1:$hp/metrics" || true)
  kill "$bpid"; wait "$bpid" 2>/dev/null || true
  read -r rate lost p99 cpu < <(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(int(d.get("deliv_rate",0)), d.get("lost",0), int(d.get("p99_us",0)), d.get("broker_cpu_s",0))' "$json")
  exported=$(echo "$metrics" | sed -n 's/^mcloudtt_broker_export_messages_total{result="written"} //p')
  dropped=$(echo "$metrics" | sed -n 's/^mcloudtt_broker_export_messages_total{result="dropped"} //p')
  dropped=${dropped:-0}
  redis=$(python3 -c 'import sys; print("%.2f" % (int(sys.argv[1]) / 100))' "$((r1 - r0))")
  printf '  %-7s %-8s %12s %6s %10s %8s %8s %8s %10s %9s\n' "$mode" "$label" "$rate" "$lost" "$p99" "$cpu" "$redis" \
    "$(python3 -c 'import sys; print("%.1f" % (int(sys.argv[1] or 0) / 1e6))' "$mem")" "${exported:-0}" "$dropped"
}
printf '  %-7s %-8s %12s %6s %10s %8s %8s %8s %10s %9s\n' export run "deliv msg/s" lost "p99 µs" "cpu s" "redis s" "redis MB" exported dropped
# One run with the export on first, not counted: Redis has then held a stream before, as in
# service (with REDIS_STATE=cold the next FLUSHALL hands that memory back anyway).
s1 on warm-up
declare -A best all
totaldropped=0
for r in $(seq "$RUNS"); do
  for mode in off on; do
    s1 "$mode" "$r"
    totaldropped=$((totaldropped + dropped))
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
