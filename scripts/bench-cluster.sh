#!/usr/bin/env bash
# bench-cluster.sh — what the Redis bus costs and what it can carry, in one run and one table:
#   single     one stand-alone replica (no Redis): S1 and S3 of ../shared/mqttload/README.md
#   cross      two replicas on one redis-server: publishers on replica A, subscribers on replica B
#   ceiling    redis-server alone: publish -> subscriber delivery of 64-byte messages
#              (tools/loadgen -mode redis, 10 publishers pipelining 64 deep, 1 subscriber)
# For the cross-replica runs it also reports the Redis commands per delivered message (every
# command redis-server ran during the run, from INFO commandstats, heartbeats included). The
# replicas run with the BigQuery export off (BROKER_EXPORT_FILTERS empty): this is the bus.
# Started by `make bench-cluster`; raw loadgen output in $RESULTS. Takes about a minute.
#
# Environment: GO (go), BIN (bin), RESULTS (bin/bench-results/cluster-<time>), SKIP_BUILD (1).
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
BIN=${BIN:-bin}
RESULTS=${RESULTS:-$BIN/bench-results/cluster-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RESULTS"
log() { echo "bench-cluster: $*" >&2; }

declare -A SCEN=(
  [S1]="-topology fanin -pubs 10 -subs 1 -n 20000 -size 64 -qos 0 -timeout 60s"
  [S3]="-topology pairwise -pubs 20 -subs 20 -n 5000 -size 64 -qos 1 -inflight 64 -timeout 60s"
)

if [ -z "${SKIP_BUILD:-}" ]; then
  log "building broker and loadgen"
  "$GO" build -o "$BIN/broker" ./services/broker/cmd/broker
  "$GO" build -o "$BIN/loadgen" ./tools/loadgen
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_ready() { # http-addr
  for _ in $(seq 1 200); do
    curl -sf "http://$1/readyz" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  log "replica on $1 never ready"; return 1
}

start_broker() { # id mqtt-port http-port [redis-addr]
  local env=(BROKER_ID="$1" "BROKER_MQTT_ADDR=127.0.0.1:$2" "BROKER_HTTP_ADDR=127.0.0.1:$3" BROKER_LOG_LEVEL=warn
    BROKER_SYS_INTERVAL=0 BROKER_MAX_INFLIGHT=65535 BROKER_RECEIVE_MAXIMUM=65535 BROKER_MAX_QUEUED_MESSAGES=1000)
  # The export to BigQuery is off here: this measures the bus between replicas (make bench-adapter
  # measures the export's cost).
  [ -n "${4:-}" ] && env+=(BROKER_REDIS_ADDRS="$4" BROKER_EXPORT_FILTERS=)
  env "${env[@]}" "$BIN/broker" >"$RESULTS/$1.log" 2>&1 &
  pids+=($!)
  LAST_PID=$!
  wait_ready "127.0.0.1:$3"
}

run() { # name args...
  local name=$1; shift
  "$BIN/loadgen" -q "$@" >"$RESULTS/$name.out" 2>&1 || true
  tail -1 "$RESULTS/$name.out" >"$RESULTS/$name.json"
}
field() { jq -r "$2 // empty" "$RESULTS/$1.json" 2>/dev/null; }
rate() { local v; v=$(field "$1" .deliv_rate_start); [ -n "$v" ] && printf '%.0f' "$v" || echo "failed"; }

# ---- single replica ---------------------------------------------------------------------------
mp=$(free_port); hp=$(free_port)
start_broker single "$mp" "$hp"
for s in S1 S3; do
  log "$s single replica"
  # shellcheck disable=SC2086
  run "$s-single" -addr "127.0.0.1:$mp" -broker-pid "$LAST_PID" ${SCEN[$s]} -label "$s-single"
done
kill -TERM "$LAST_PID"; wait "$LAST_PID" 2>/dev/null || true

# ---- two replicas on Redis ---------------------------------------------------------------------
rp=$(free_port)
# A replica more than client-output-buffer-limit behind on its channel is disconnected by Redis;
# 256 MiB hard / 64 MiB for 60 s is the README's recommendation for the cluster bus.
redis-server --port "$rp" --bind 127.0.0.1 --save "" --appendonly no \
  --client-output-buffer-limit "pubsub 256mb 64mb 60" >"$RESULTS/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do redis-cli -p "$rp" ping >/dev/null 2>&1 && break; sleep 0.05; done
ap=$(free_port); ah=$(free_port); bp=$(free_port); bh=$(free_port)
start_broker replica-a "$ap" "$ah" "127.0.0.1:$rp"; apid=$LAST_PID
start_broker replica-b "$bp" "$bh" "127.0.0.1:$rp"
declare -A CMDS=()
for s in S1 S3; do
  log "$s cross-replica"
  redis-cli -p "$rp" config resetstat >/dev/null
  # shellcheck disable=SC2086
  run "$s-cross" -addr "127.0.0.1:$ap" -sub-addr "127.0.0.1:$bp" -broker-pid "$apid" ${SCEN[$s]} -label "$s-cross"
  redis-cli -p "$rp" info commandstats >"$RESULTS/$s-cross.commandstats"
  calls=$(sed -n 's/^cmdstat_[^:]*:calls=\([0-9]*\),.*/\1/p' "$RESULTS/$s-cross.commandstats" | paste -sd+ | bc)
  got=$(field "$s-cross" .received); got=${got:-0}
  CMDS[$s]=$(python3 -c "print(f'{$calls/$got:.4f}' if $got else 'n/a')")
  echo "$calls" >"$RESULTS/$s-cross.redis-calls"
done
log "redis ceiling"
run ceiling -mode redis -addr "127.0.0.1:$rp" -pubs 10 -subs 1 -n 100000 -size 64 -inflight 64 -timeout 60s -label ceiling

# ---- table -------------------------------------------------------------------------------------
echo
echo "| scenario | single replica msg/s | cross-replica msg/s (pub on A, sub on B) | cross / single | lost (cross) | Redis commands per message (cross) |"
echo "|---|---|---|---|---|---|"
for s in S1 S3; do
  a=$(rate "$s-single"); b=$(rate "$s-cross")
  ratio=$(python3 -c "print(f'{$b/$a:.2f}')" 2>/dev/null || echo n/a)
  echo "| $s | $a | $b | $ratio | $(field "$s-cross" .lost) | ${CMDS[$s]} |"
done
echo "| Redis Pub/Sub ceiling (64 B, redis-server alone) | | $(rate ceiling) | | $(field ceiling .lost) | |"
echo
echo "raw results: $RESULTS"
