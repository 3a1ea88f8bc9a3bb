#!/usr/bin/env bash
# bench-cluster.sh — what the Redis bus costs and what it can carry, in one run and one table:
#   single     one stand-alone replica (no Redis): S1 and S3 of ../shared/mqttload/README.md
#   cross      two replicas on one redis-server: publishers on replica A, subscribers on replica B
#   ceiling    redis-server alone: publish -> subscriber delivery of 64-byte messages
#              (tools/loadgen -mode redis, 10 publishers pipelining 64 deep, 1 subscriber)
#   persistent the same two replicas, subscribers with persistent sessions (clean session 0): every
#              QoS 1 message is appended to the subscriber's log in Redis before the PUBACK and
#              read from it by the subscriber's replica. S3p: S3 with persistent subscribers;
#              F100: one publisher to 100 persistent subscribers on the other replica.
# For the cross-replica runs it also reports the Redis commands per delivered message (every
# command redis-server ran during the run, from INFO commandstats, heartbeats included). The
# replicas run with the BigQuery export off (BROKER_EXPORT_FILTERS empty): this is the bus.
# Started by `make bench-cluster`; raw loadgen output in $RESULTS. Takes about a minute.
#
# Environment: GO (go), BIN (bin), RESULTS (bin/bench-results/cluster-<time>), SKIP_BUILD (1),
# BASELINE: another broker binary (an earlier build) whose S1/S3 rows are measured in the same run,
# alternating with this one's, for a before/after comparison.
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
  [S3p]="-topology pairwise -pubs 20 -subs 20 -n 5000 -size 64 -qos 1 -inflight 64 -timeout 120s -sub-persistent"
  [F100]="-topology fanout -pubs 1 -subs 100 -n 2000 -size 64 -qos 1 -inflight 64 -timeout 120s -sub-persistent"
)

if [ -z "${SKIP_BUILD:-}" ]; then
  log "building broker and loadgen"
  "$GO" build -o "$BIN/broker" ./services/broker/cmd/broker
  "$GO" build -o "$BIN/loadgen" ./tools/loadgen
fi

# free_port prints a loopback port this run has not handed out before (scripts/free-port.py).
free_port() { python3 scripts/free-port.py "$RESULTS/ports.given"; }
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

BROKER_BIN=$BIN/broker
start_broker() { # id mqtt-port http-port [redis-addr]
  local env=(BROKER_ID="$1" "BROKER_MQTT_ADDR=127.0.0.1:$2" "BROKER_HTTP_ADDR=127.0.0.1:$3" BROKER_LOG_LEVEL=warn
    BROKER_SYS_INTERVAL=0 BROKER_MAX_INFLIGHT=65535 BROKER_RECEIVE_MAXIMUM=65535 BROKER_MAX_QUEUED_MESSAGES=1000)
  # The export to BigQuery is off here: this measures the bus between replicas (make bench-adapter
  # measures the export's cost).
  [ -n "${4:-}" ] && env+=(BROKER_REDIS_ADDRS="$4" BROKER_EXPORT_FILTERS=)
  env "${env[@]}" "$BROKER_BIN" >"$RESULTS/$1.log" 2>&1 &
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
single() { # tag scenarios...
  local tag=$1; shift
  local mp hp s
  mp=$(free_port); hp=$(free_port)
  start_broker "single$tag" "$mp" "$hp"
  for s in "$@"; do
    log "$s single replica$tag"
    # shellcheck disable=SC2086
    run "$s-single$tag" -addr "127.0.0.1:$mp" -broker-pid "$LAST_PID" ${SCEN[$s]} -label "$s-single$tag"
  done
  kill -TERM "$LAST_PID"; wait "$LAST_PID" 2>/dev/null || true
}

# ---- two replicas on Redis ---------------------------------------------------------------------
declare -A CMDS=()
cross() { # tag scenarios...
  local tag=$1; shift
  local rp ap ah bp bh apid bpid s calls got
  rp=$(free_port)
  # A replica more than client-output-buffer-limit behind on its channel is disconnected by
  # Redis; 256 MiB hard / 64 MiB for 60 s is the README's recommendation for the cluster bus.
  # The append-only file as the README asks for persistent sessions (fsync before answering).
  redis-server --port "$rp" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always \
    --dir "$RESULTS" --appendfilename "bench$tag.aof" --appenddirname "aof$tag" \
    --client-output-buffer-limit "pubsub 256mb 64mb 60" >"$RESULTS/redis$tag.log" 2>&1 &
  pids+=($!)
  local rpid=$!
  for _ in $(seq 1 100); do redis-cli -p "$rp" ping >/dev/null 2>&1 && break; sleep 0.05; done
  ap=$(free_port); ah=$(free_port); bp=$(free_port); bh=$(free_port)
  start_broker "replica-a$tag" "$ap" "$ah" "127.0.0.1:$rp"; apid=$LAST_PID
  start_broker "replica-b$tag" "$bp" "$bh" "127.0.0.1:$rp"; bpid=$LAST_PID
  for s in "$@"; do
    log "$s cross-replica$tag"
    redis-cli -p "$rp" config resetstat >/dev/null
    # shellcheck disable=SC2086
    run "$s-cross$tag" -addr "127.0.0.1:$ap" -sub-addr "127.0.0.1:$bp" -broker-pid "$apid" ${SCEN[$s]} -label "$s-cross$tag"
    redis-cli -p "$rp" info commandstats >"$RESULTS/$s-cross$tag.commandstats"
    calls=$(sed -n 's/^cmdstat_[^:]*:calls=\([0-9]*\),.*/\1/p' "$RESULTS/$s-cross$tag.commandstats" | paste -sd+ | bc)
    got=$(field "$s-cross$tag" .received); got=${got:-0}
    CMDS[$s$tag]=$(python3 -c "print(f'{$calls/$got:.4f}' if $got else 'n/a')")
    echo "$calls" >"$RESULTS/$s-cross$tag.redis-calls"
  done
  if [ -z "$tag" ]; then
    log "redis ceiling"
    run ceiling -mode redis -addr "127.0.0.1:$rp" -pubs 10 -subs 1 -n 100000 -size 64 -inflight 64 -timeout 60s -label ceiling
  fi
  kill -TERM "$apid" "$bpid" "$rpid" 2>/dev/null || true
  wait "$apid" "$bpid" "$rpid" 2>/dev/null || true
}

if [ -n "${BASELINE:-}" ]; then
  # This build and the baseline alternate, so both see the machine in the same mood.
  BROKER_BIN=$BASELINE; single -base S1 S3; cross -base S1 S3
  BROKER_BIN=$BIN/broker
fi
single "" S1 S3 S3p
cross "" S1 S3 S3p F100
if [ -n "${BASELINE:-}" ]; then
  BROKER_BIN=$BASELINE; single -base2 S1 S3; cross -base2 S1 S3
  BROKER_BIN=$BIN/broker; single -2 S1 S3; cross -2 S1 S3
fi

# ---- table -------------------------------------------------------------------------------------
p99() { local v; v=$(field "$1" .p99_us); [ -n "$v" ] && printf '%.0f' "$v" || echo "n/a"; }
echo
echo "| scenario | single replica msg/s | cross-replica msg/s (pub on A, sub on B) | cross / single | lost (cross) | p99 µs (cross) | Redis commands per message (cross) |"
echo "|---|---|---|---|---|---|---|"
for s in S1 S3 S3p; do
  a=$(rate "$s-single"); b=$(rate "$s-cross")
  ratio=$(python3 -c "print(f'{$b/$a:.2f}')" 2>/dev/null || echo n/a)
  echo "| $s | $a | $b | $ratio | $(field "$s-cross" .lost) | $(p99 "$s-cross") | ${CMDS[$s]} |"
done
echo "| F100 (1 publisher, 100 persistent subscribers on B) | | $(rate F100-cross) | | $(field F100-cross .lost) | $(p99 F100-cross) | ${CMDS[F100]} |"
echo "| Redis Pub/Sub ceiling (64 B, redis-server alone) | | $(rate ceiling) | | $(field ceiling .lost) | | |"
s3=$(rate S3-cross); s3p=$(rate S3p-cross)
echo
echo "persistent S3 cross-replica / clean S3 cross-replica: $(python3 -c "print(f'{$s3p/$s3:.2f}')" 2>/dev/null || echo n/a)"
if [ -n "${BASELINE:-}" ]; then
  echo
  echo "Before/after (baseline $BASELINE), two alternating rounds each:"
  echo "| scenario | baseline msg/s (rounds) | this build msg/s (rounds) | this / baseline (means) |"
  echo "|---|---|---|---|"
  for s in S1-single S3-single S1-cross S3-cross; do
    b1=$(rate "${s}-base"); b2=$(rate "${s}-base2"); n1=$(rate "$s"); n2=$(rate "${s}-2")
    r=$(python3 -c "print(f'{($n1+$n2)/($b1+$b2):.2f}')" 2>/dev/null || echo n/a)
    echo "| $s | $b1, $b2 | $n1, $n2 | $r |"
  done
fi
echo
echo "raw results: $RESULTS"
