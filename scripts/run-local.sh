#!/usr/bin/env bash
# run-local.sh — the whole local MCloudTT stack on this machine, in the foreground. Ctrl-C stops it.
# Started by `make run` after `make build`.
#
# What needs no long build starts at once: redis-server, two broker replicas and the health
# gateway. The BigQuery emulator is built in the background (scripts/deps.sh bq: ~20 minutes and
# ~7 GB the first time on 2 cores, seconds once cached), with a progress line every
# RUN_PROGRESS_EVERY seconds; the emulator and the adapter start when it is ready.
#
# Ports and paths can be moved with the variables below (the tests run it on free ports).
set -euo pipefail
cd "$(dirname "$0")/.."

REDIS_PORT=${REDIS_PORT:-6379}
BROKER1_PORT=${BROKER1_PORT:-1883} BROKER1_HTTP=${BROKER1_HTTP:-8080}
BROKER2_PORT=${BROKER2_PORT:-1884} BROKER2_HTTP=${BROKER2_HTTP:-8081}
GATEWAY_PORT=${GATEWAY_PORT:-8090}
ADAPTER_HTTP=${ADAPTER_HTTP:-8091}
BQ_PORT=${BQ_PORT:-9050}           # BigQuery emulator: REST (the adapter, make query)
BQ_GRPC_PORT=${BQ_GRPC_PORT:-9060} # and the Storage API over gRPC
BQ_PROJECT=${BQ_PROJECT:-mcloudtt-local}
BIN=${BIN:-bin}
CACHE=${MCLOUDTT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mcloudtt}
BQ_EMULATOR=$CACHE/bin/bigquery-emulator
# The command that builds (or finds cached) the emulator at $BQ_EMULATOR.
BQ_BUILD=${MCLOUDTT_BQ_BUILD:-scripts/deps.sh bq}
RUN_PROGRESS_EVERY=${RUN_PROGRESS_EVERY:-15}
STATE=${MCLOUDTT_RUN_DIR:-$(mktemp -d /tmp/mcloudtt-run.XXXXXX)}
mkdir -p "$STATE"

# Every child runs in a process group of its own (job control on), so that stopping a child
# stops what it started too: go build's compilers, the emulator and adapter the build job starts.
set -m
pids=()

stop() {
  trap - INT TERM EXIT
  set +m # no job notices while stopping
  echo "run: stopping..." >&2
  local p
  for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
  # Give the services their drain time, then make sure nothing is left.
  for _ in $(seq 1 100); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 -- "-$p" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "run: stopped (state and logs kept in $STATE)" >&2
  exit "${1:-0}"
}
trap 'stop 130' INT
trap 'stop 143' TERM
trap 'stop $?' EXIT

wait_port() { # port seconds name
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "run: $3 is not listening on 127.0.0.1:$1 after $2 s (logs in $STATE)" >&2
  return 1
}

# Redis with what the cluster's durability needs: an append-only file fsynced before every answer and a
# pub/sub output limit that a busy replica does not hit (README, "What holds when something fails").
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$STATE" --logfile "$STATE/redis.log" \
  --save "" --appendonly yes --appendfsync always \
  --client-output-buffer-limit "pubsub 256mb 64mb 60" &
pids+=($!)
wait_port "$REDIS_PORT" 20 redis-server

# Two broker replicas sharing the Redis bus, as behind a Kubernetes Service.
BROKER_ID=broker-1 BROKER_MQTT_ADDR=127.0.0.1:$BROKER1_PORT BROKER_HTTP_ADDR=127.0.0.1:$BROKER1_HTTP \
  BROKER_REDIS_ADDRS=127.0.0.1:$REDIS_PORT "$BIN/broker" >"$STATE/broker-1.log" 2>&1 &
pids+=($!)
BROKER_ID=broker-2 BROKER_MQTT_ADDR=127.0.0.1:$BROKER2_PORT BROKER_HTTP_ADDR=127.0.0.1:$BROKER2_HTTP \
  BROKER_REDIS_ADDRS=127.0.0.1:$REDIS_PORT "$BIN/broker" >"$STATE/broker-2.log" 2>&1 &
pids+=($!)
# The health gateway reads the heartbeats on Redis and probes every broker pair over MQTT.
GATEWAY_HTTP_ADDR=127.0.0.1:$GATEWAY_PORT GATEWAY_REDIS_ADDRS=127.0.0.1:$REDIS_PORT \
  "$BIN/health-gateway" >"$STATE/health-gateway.log" 2>&1 &
pids+=($!)

# The emulator: built (or found in the cache) in the background, then started with the adapter
# writing into it (dataset mqtt, table messages, made by the adapter).
bq_chain() {
  trap - INT TERM EXIT
  set +m
  local start=$SECONDS build log="$STATE/bigquery-emulator-build.log"
  # shellcheck disable=SC2086 # BQ_BUILD is a command line
  $BQ_BUILD >"$log" 2>&1 &
  build=$!
  while ! wait_exited "$build" "$RUN_PROGRESS_EVERY"; do
    echo "run: bigquery-emulator still building, $((SECONDS - start)) s so far (log: $log)" >&2
  done
  if ! wait "$build" || [ ! -x "$BQ_EMULATOR" ]; then
    echo "run: building the bigquery-emulator failed after $((SECONDS - start)) s; MQTT keeps running without the export to BigQuery (log: $log)" >&2
    return 1
  fi
  "$BQ_EMULATOR" --project="$BQ_PROJECT" --host=127.0.0.1 --port="$BQ_PORT" --grpc-port="$BQ_GRPC_PORT" \
    --log-level=warn >"$STATE/bigquery-emulator.log" 2>&1 &
  local emu=$!
  wait_port "$BQ_PORT" 60 bigquery-emulator || return 1
  ADAPTER_HTTP_ADDR=127.0.0.1:$ADAPTER_HTTP ADAPTER_ID=adapter-1 ADAPTER_REDIS_ADDRS=127.0.0.1:$REDIS_PORT \
    ADAPTER_BIGQUERY_PROJECT=$BQ_PROJECT ADAPTER_BIGQUERY_ENDPOINT=http://127.0.0.1:$BQ_PORT \
    ADAPTER_BIGQUERY_GRPC_ENDPOINT=127.0.0.1:$BQ_GRPC_PORT "$BIN/bigquery-adapter" >"$STATE/bigquery-adapter.log" 2>&1 &
  local adapter=$!
  cat >&2 <<MSG
run: bigquery-emulator ready after $((SECONDS - start)) s: http://127.0.0.1:$BQ_PORT (project $BQ_PROJECT)
run: bigquery-adapter started (http://127.0.0.1:$ADAPTER_HTTP/readyz); every message now flows into
     the table mqtt.messages. Try:
       make query Q='SELECT topic, payload_text, published_at FROM mqtt.messages ORDER BY published_at DESC LIMIT 10'
MSG
  wait "$emu" "$adapter"
}

# wait_exited pid seconds: true once pid has exited, false if it still runs after seconds.
wait_exited() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.1
  done
  ! kill -0 "$1" 2>/dev/null
}

bq_chain &
pids+=($!)

for p in "$BROKER1_PORT" "$BROKER2_PORT"; do wait_port "$p" 30 "broker on :$p"; done
wait_port "$GATEWAY_PORT" 30 health-gateway
bq_status="being built in the background (a line every ${RUN_PROGRESS_EVERY}s; the first build takes ~25 minutes and up to 7 GB of memory)"
[ -x "$BQ_EMULATOR" ] && bq_status="starting (found in $CACHE/bin)"

cat >&2 <<MSG
MCloudTT local stack (state and logs in $STATE):
  up now:
    redis            127.0.0.1:$REDIS_PORT (append-only file in $STATE)
    broker-1         mqtt://127.0.0.1:$BROKER1_PORT  (health, readiness, metrics: http://127.0.0.1:$BROKER1_HTTP)
    broker-2         mqtt://127.0.0.1:$BROKER2_PORT  (health, readiness, metrics: http://127.0.0.1:$BROKER2_HTTP)
    health-gateway   http://127.0.0.1:$GATEWAY_PORT/  (status page; JSON at /api/v1/cluster)
  still to come:
    bigquery-emulator and bigquery-adapter: $bq_status

  Try, in another terminal (subscribe on one replica, publish on the other):
    mosquitto_sub -h 127.0.0.1 -p $BROKER2_PORT -t 'demo/#' -v
    mosquitto_pub -h 127.0.0.1 -p $BROKER1_PORT -t demo/hello -m 'hi from broker-1' -q 1
  Status page: http://127.0.0.1:$GATEWAY_PORT/
Ctrl-C stops everything.
MSG

# A service that dies takes the stack down (its log says why); the emulator's build job ending,
# successfully or not, does not.
while true; do
  set +e
  wait -n "${pids[@]:0:4}"
  set -e
  for p in "${pids[@]:0:4}"; do
    if ! kill -0 "$p" 2>/dev/null; then
      echo "run: a service exited (pid $p); see the logs in $STATE" >&2
      stop 1
    fi
  done
done
