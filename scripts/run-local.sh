#!/usr/bin/env bash
# run-local.sh — the whole local MCloudTT stack on this machine, in the foreground. Ctrl-C stops it.
# Started by `make run` after `make build`. Ports can be moved with the variables below.
set -euo pipefail
cd "$(dirname "$0")/.."

REDIS_PORT=${REDIS_PORT:-6379}
BQ_PORT=${BQ_PORT:-9050}         # BigQuery emulator: REST (the adapter, make query)
BQ_GRPC_PORT=${BQ_GRPC_PORT:-9060} # and the Storage API over gRPC
BQ_PROJECT=${BQ_PROJECT:-mcloudtt-local}
BQ_EMULATOR=${MCLOUDTT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mcloudtt}/bin/bigquery-emulator
STATE=${MCLOUDTT_RUN_DIR:-$(mktemp -d /tmp/mcloudtt-run.XXXXXX)}
pids=()

stop() {
  trap - INT TERM EXIT
  echo "stopping..." >&2
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait || true
}
trap stop INT TERM EXIT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$STATE" \
  --logfile "$STATE/redis.log" &
pids+=($!)

# Two broker replicas sharing the Redis bus, as behind a Kubernetes Service.
BROKER_ID=broker-1 BROKER_MQTT_ADDR=:1883 BROKER_HTTP_ADDR=:8080 BROKER_ADVERTISE_ADDR=127.0.0.1:1883 \
  BROKER_REDIS_ADDRS=127.0.0.1:$REDIS_PORT bin/broker & pids+=($!)
BROKER_ID=broker-2 BROKER_MQTT_ADDR=:1884 BROKER_HTTP_ADDR=:8081 BROKER_ADVERTISE_ADDR=127.0.0.1:1884 \
  BROKER_REDIS_ADDRS=127.0.0.1:$REDIS_PORT bin/broker & pids+=($!)
# The local BigQuery emulator (scripts/deps.sh bq builds it) and the adapter writing into it:
# dataset mqtt, table messages, created by the adapter.
"$BQ_EMULATOR" --project="$BQ_PROJECT" --host=127.0.0.1 --port="$BQ_PORT" --grpc-port="$BQ_GRPC_PORT" \
  --log-level=warn >"$STATE/bigquery-emulator.log" 2>&1 & pids+=($!)
ADAPTER_HTTP_ADDR=:8091 ADAPTER_ID=adapter-1 ADAPTER_REDIS_ADDRS=127.0.0.1:$REDIS_PORT \
  ADAPTER_BIGQUERY_PROJECT=$BQ_PROJECT ADAPTER_BIGQUERY_ENDPOINT=http://127.0.0.1:$BQ_PORT \
  bin/bigquery-adapter & pids+=($!)
# The health gateway reads the heartbeats on Redis and probes every broker pair over MQTT.
GATEWAY_HTTP_ADDR=:8090 GATEWAY_REDIS_ADDRS=127.0.0.1:$REDIS_PORT bin/health-gateway & pids+=($!)

cat >&2 <<MSG
MCloudTT local stack (state in $STATE):
  redis            127.0.0.1:$REDIS_PORT
  broker-1         mqtt://127.0.0.1:1883  (health, readiness, metrics on http://127.0.0.1:8080)
  broker-2         mqtt://127.0.0.1:1884  (health, readiness, metrics on http://127.0.0.1:8081)
  bigquery         http://127.0.0.1:$BQ_PORT (emulator, project $BQ_PROJECT; log in $STATE)
  bigquery-adapter http://127.0.0.1:8091/readyz  (metrics at /metrics); query with make query Q=...
  health-gateway   http://127.0.0.1:8090/  (status page; JSON at /api/v1/cluster, metrics at /metrics)
Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
