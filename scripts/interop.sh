#!/usr/bin/env bash
# interop.sh — `make interop`: the Eclipse Paho interoperability suites against a fresh broker.
# The suite (paho.mqtt.testing) is not part of this repository; PAHO_TESTING_DIR points at a
# checkout of it (default /tmp/paho-testing). The broker runs with what the suites expect: an ACL
# file that refuses subscriptions to test/nosubscribe (answered 0x80, which the v5 suite checks for),
# Server Keep Alive 60, topic aliases allowed.
set -euo pipefail
cd "$(dirname "$0")/.."
SUITE=${PAHO_TESTING_DIR:-/tmp/paho-testing}
if [ ! -f "$SUITE/interoperability/client_test5.py" ]; then
  cat >&2 <<MSG
The Paho interoperability suite is missing at $SUITE.
Put a checkout of github.com/eclipse/paho.mqtt.testing there (outside this repository), or set
PAHO_TESTING_DIR to where it is, then run 'make interop' again.
MSG
  echo "0 passed, 1 failed"
  exit 2
fi
mkdir -p bin
go build -o bin/broker ./services/broker/cmd/broker
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LOG=$(mktemp /tmp/mcloudtt-interop-broker.XXXXXX.log)
ACL=$(mktemp /tmp/mcloudtt-interop-acl.XXXXXX)
cat >"$ACL" <<'EOF'
# The suite's clients have no user name: these lines are the anonymous section.
topic readwrite #
topic read $SYS/#
topic deny test/nosubscribe
EOF
BROKER_MQTT_ADDR=127.0.0.1:$PORT BROKER_HTTP_ADDR='' BROKER_LOG_LEVEL=${BROKER_LOG_LEVEL:-info} \
BROKER_LOG_FORMAT=json BROKER_MAX_KEEPALIVE=60 BROKER_TOPIC_ALIAS_MAXIMUM=10 \
BROKER_ACL_FILE=$ACL BROKER_SUBACK_DENIED=unspecified BROKER_ID=interop bin/broker >"$LOG" 2>&1 &
BPID=$!
trap 'kill -TERM $BPID 2>/dev/null || true; wait $BPID 2>/dev/null || true; rm -f "$ACL"' EXIT
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break
  sleep 0.05
done
echo "broker on 127.0.0.1:$PORT (log $LOG)"
# shellcheck disable=SC2086 # INTEROP_TESTS is a list of test names
python3 scripts/interop.py "$SUITE" 127.0.0.1 "$PORT" "${INTEROP_WHICH:-both}" ${INTEROP_TESTS:-}
