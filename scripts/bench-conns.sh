#!/usr/bin/env bash
# bench-conns.sh — `make bench-conns`: idle connections, ours and mosquitto side by side in one run.
#   For each size (SIZES, default 10,000 and 100,000) and each listener (MODES: plain TCP; TLS with
#   an RSA-2048 and with an ECDSA P-256 certificate, each with full handshakes and with session
#   resumption), a fresh broker takes that many idle connections (loadgen -mode conns: CONNECT,
#   CONNACK, then only PINGREQ at the keep alive) and the table gives the broker's RSS per
#   connection (RSS after - RSS before, over the connections), connects per second (dial to
#   CONNACK, 32 in parallel) and broker CPU per connect; then ours/mosquitto ratios.
# A size above what the open-files limit lets one process hold (broker and load generator each
# need a descriptor per connection) is cut to that limit, and the table says so. Beyond ~28,000
# connections the load generator dials from several loopback addresses (127.0.0.2, ...), each with
# its own ephemeral ports.
# Peers: mosquitto with its defaults plus the listener (allow_anonymous true, and certfile/keyfile
# for TLS). Ours: its defaults, stand-alone, plus the listener.
# Then a reconnect storm (STORM_MODES, default plain TCP and TLS ECDSA with resumption):
#   STORM_CLIENTS (50,000, cut to the open-files limit like the sizes) clients with persistent
#   sessions on one broker; it is killed (SIGKILL) and every client reconnects at once to the two
#   others (loadgen -mode storm): seconds until all are back, per-client p50/p99, refusing
#   CONNACKs, other failed attempts, clients never back, sessions found, and the survivors' peak
#   RSS. Ours: three replicas on one redis-server (the sessions move) with shared TLS ticket keys
#   (BROKER_TLS_TICKET_KEY_FILE); mosquitto: three separate brokers (their defaults plus the
#   listener; a session does not move, so none is found).
# Run it alone on the machine: flock /work/bench.lock make bench-conns.
# Environment: BIN (bin), SIZES, MODES, BROKERS ("ours mosquitto"), SETTLE (5s), STORM_MODES,
# STORM_CLIENTS.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
SIZES=${SIZES-10000 100000}
MODES=${MODES:-tcp rsa rsa-resume ecdsa ecdsa-resume}
BROKERS=${BROKERS:-ours mosquitto}
SETTLE=${SETTLE:-5s}
STORM_MODES=${STORM_MODES-tcp ecdsa-resume}
STORM_CLIENTS=${STORM_CLIENTS:-50000}
tmp=$(mktemp -d /tmp/mcloudtt-bench-conns.XXXXXX)
BPID=""
pids=()
cleanup() {
  if [ -n "$BPID" ]; then kill "$BPID" 2>/dev/null || true; fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 \
  -days 1 -keyout "$tmp/rsa.key" -out "$tmp/rsa.pem" 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -addext subjectAltName=IP:127.0.0.1 -days 1 -keyout "$tmp/ecdsa.key" -out "$tmp/ecdsa.pem" 2>/dev/null
# Shared TLS session ticket keys for our replicas (BROKER_TLS_TICKET_KEY_FILE), as the README
# advises, so a device resumes at whichever replica it reconnects to.
openssl rand -base64 32 >"$tmp/tickets"
# mosquitto started as root reads its files as the user it drops to: throwaway keys, readable.
chmod 755 "$tmp"; chmod 644 "$tmp"/*.pem "$tmp"/*.key "$tmp/tickets"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The most connections one process can hold here, keeping 200 descriptors for everything else.
nofile=$(ulimit -n)
maxconns=$((nofile - 200))

# start_broker NAME MODE PORT [REDIS_PORT ID]: starts the broker, sets BPID. With REDIS_PORT, ours
# is a replica of a cluster on that redis-server.
start_broker() {
  local name=$1 mode=$2 p=$3 rp=${4:-} id=${5:-bench} cert="" key=""
  case $mode in
    rsa*) cert=$tmp/rsa.pem key=$tmp/rsa.key ;;
    ecdsa*) cert=$tmp/ecdsa.pem key=$tmp/ecdsa.key ;;
  esac
  case $name in
    ours)
      local redis=""
      [ -n "$rp" ] && redis=127.0.0.1:$rp
      if [ -z "$cert" ]; then
        BROKER_ID=$id BROKER_REDIS_ADDRS=$redis BROKER_MQTT_ADDR=127.0.0.1:$p BROKER_HTTP_ADDR='' \
          BROKER_LOG_LEVEL=warn "$BIN/broker" >"$tmp/broker-$id.log" 2>&1 &
      else
        BROKER_ID=$id BROKER_REDIS_ADDRS=$redis BROKER_MQTT_ADDR='' BROKER_TLS_ADDR=127.0.0.1:$p BROKER_HTTP_ADDR='' \
          BROKER_LOG_LEVEL=warn BROKER_TLS_CERT_FILE=$cert BROKER_TLS_KEY_FILE=$key \
          BROKER_TLS_TICKET_KEY_FILE="$tmp/tickets" "$BIN/broker" >"$tmp/broker-$id.log" 2>&1 &
      fi
      ;;
    mosquitto)
      { echo "listener $p 127.0.0.1"; echo "allow_anonymous true"
        [ -n "$cert" ] && { echo "certfile $cert"; echo "keyfile $key"; }
      } >"$tmp/mosquitto-$id.conf"
      mosquitto -c "$tmp/mosquitto-$id.conf" >"$tmp/broker-$id.log" 2>&1 &
      ;;
  esac
  BPID=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "$name did not start:" >&2; cat "$tmp/broker-$id.log" >&2; return 1
}

printf '%-8s %-13s %-10s %12s %11s %14s %6s\n' conns listener broker "RSS/conn B" "connects/s" "CPU/connect µs" fails
declare -A rss rate cpu
notes=()
for size in $SIZES; do
  n=$size
  if [ "$n" -gt "$maxconns" ]; then
    n=$maxconns
    notes+=("$size connections: cut to $n, the open-files limit here is $nofile per process (ulimit -n; the hard limit cannot be raised without CAP_SYS_RESOURCE)")
  fi
  src=""
  if [ "$n" -gt 25000 ]; then
    src=$(python3 -c "import sys; n=int(sys.argv[1]); print(','.join('127.0.0.%d' % (2+i) for i in range(n // 25000 + 1)))" "$n")
  fi
  for mode in $MODES; do
    for name in $BROKERS; do
      if [ "$name" = mosquitto ] && ! command -v mosquitto >/dev/null; then
        notes+=("mosquitto not installed (make deps): no peer figures"); continue
      fi
      p=$(port)
      start_broker "$name" "$mode" "$p"
      args=(-addr "127.0.0.1:$p")
      case $mode in
        rsa) args+=(-tls -tls-ca "$tmp/rsa.pem") ;;
        rsa-resume) args+=(-tls -tls-ca "$tmp/rsa.pem" -tls-resume) ;;
        ecdsa) args+=(-tls -tls-ca "$tmp/ecdsa.pem") ;;
        ecdsa-resume) args+=(-tls -tls-ca "$tmp/ecdsa.pem" -tls-resume) ;;
      esac
      [ -n "$src" ] && args+=(-src "$src")
      json=$("$BIN/loadgen" -q -mode conns -conns "$n" -dial-par 32 -settle "$SETTLE" -timeout 600s \
        -broker-pid "$BPID" "${args[@]}" | tail -1)
      kill "$BPID"; wait "$BPID" 2>/dev/null || true; BPID=""
      read -r r c cs conns fails < <(python3 -c '
import json, sys
d = json.loads(sys.argv[1])
conns = d.get("conns", 0)
print(int(d.get("broker_rss_per_conn_b", 0)), int(d.get("conn_rate", 0)),
      int(d.get("broker_cpu_s", 0) * 1e6 / conns) if conns else 0, conns, d.get("conn_fail", 0))' "$json")
      printf '%-8s %-13s %-10s %12s %11s %14s %6s\n' "$conns" "$mode" "$name" "$r" "$c" "$cs" "$fails"
      rss[$size/$mode/$name]=$r; rate[$size/$mode/$name]=$c; cpu[$size/$mode/$name]=$cs
    done
  done
done
echo
echo "ours / mosquitto (RSS per connection: lower is better; connects/s: higher is better)"
printf '%-8s %-13s %14s %14s %16s\n' size listener "RSS/conn" "connects/s" "CPU/connect"
for size in $SIZES; do
  for mode in $MODES; do
    o=$size/$mode/ours m=$size/$mode/mosquitto
    if [ -z "${rss[$m]:-}" ] || [ -z "${rss[$o]:-}" ]; then continue; fi
    python3 -c '
import sys
size, mode, ro, rm, co, cm, uo, um = sys.argv[1:]
f = lambda a, b: "%.2f" % (float(a) / float(b)) if float(b) else "-"
print("%-8s %-13s %14s %14s %16s" % (size, mode, f(ro, rm), f(co, cm), f(uo, um)))' \
      "$size" "$mode" "${rss[$o]}" "${rss[$m]}" "${rate[$o]}" "${rate[$m]}" "${cpu[$o]}" "${cpu[$m]}"
  done
done

# tls_args MODE CERT_PREFIX: loadgen's TLS flags for a listener mode.
tls_args() {
  case $1 in
    rsa) echo "-tls -tls-ca $tmp/rsa.pem" ;;
    rsa-resume) echo "-tls -tls-ca $tmp/rsa.pem -tls-resume" ;;
    ecdsa) echo "-tls -tls-ca $tmp/ecdsa.pem" ;;
    ecdsa-resume) echo "-tls -tls-ca $tmp/ecdsa.pem -tls-resume" ;;
  esac
}

hwm() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

if [ -n "$STORM_MODES" ]; then
  n=$STORM_CLIENTS
  if [ "$n" -gt "$maxconns" ]; then
    n=$maxconns
    notes+=("storm of $STORM_CLIENTS clients: cut to $n, the open-files limit here is $nofile per process")
  fi
  echo
  echo "reconnect storm: $n clients with persistent sessions on one broker, SIGKILL, all reconnect to two others"
  printf '%-13s %-10s %9s %9s %9s %8s %7s %7s %9s %9s %13s\n' listener broker "all back s" "p50 ms" "p99 ms" refused errors "never" attempts sessions "peak RSS MiB"
  RP=$(port)
  redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" --logfile "$tmp/redis.log" &
  pids+=($!)
  for _ in $(seq 50); do redis-cli -p "$RP" ping >/dev/null 2>&1 && break; sleep 0.1; done
  for mode in $STORM_MODES; do
    for name in $BROKERS; do
      command -v "$name" >/dev/null || [ "$name" = ours ] || continue
      redis-cli -p "$RP" flushall >/dev/null
      ports=() bp=()
      for k in 1 2 3; do
        ports+=("$(port)")
        rp=""; [ "$name" = ours ] && rp=$RP
        start_broker "$name" "$mode" "${ports[$((k - 1))]}" "$rp" "storm-$k"
        # Not a job of this shell, so the SIGKILL below is not reported as one that died.
        disown "$BPID"
        bp+=("$BPID"); pids+=("$BPID"); BPID=""
      done
      for k in 1 2; do echo 5 >"/proc/${bp[$k]}/clear_refs" 2>/dev/null || true; done
      # shellcheck disable=SC2046
      json=$("$BIN/loadgen" -q -mode storm -conns "$n" -dial-par 32 -settle "$SETTLE" -timeout 600s \
        -addr "127.0.0.1:${ports[0]}" -storm-kill "${bp[0]}" \
        -reconnect-addrs "127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}" $(tls_args "$mode") | tail -1)
      peak=$(( ($(hwm "${bp[1]}") + $(hwm "${bp[2]}")) / 1024 ))
      for k in 1 2; do
        kill "${bp[$k]}" 2>/dev/null || true
        while kill -0 "${bp[$k]}" 2>/dev/null; do sleep 0.1; done
      done
      python3 -c '
import json, sys
d = json.loads(sys.argv[1])
print("%-13s %-10s %9s %9s %9s %8s %7s %7s %9s %9s %13s" % (sys.argv[2], sys.argv[3], d.get("storm_s", "-"),
      d.get("storm_p50_ms", "-"), d.get("storm_p99_ms", "-"), d.get("storm_refused", "-"), d.get("storm_errors", "-"),
      d.get("storm_failed", "-"), d.get("storm_attempts", "-"), d.get("storm_session_present", "-"), sys.argv[4]))
if d.get("conn_fail"): print("  (the initial connections failed: %s)" % d.get("first_error", ""))' "$json" "$mode" "$name" "$peak"
    done
  done
fi
for note in "${notes[@]}"; do echo "note: $note"; done
