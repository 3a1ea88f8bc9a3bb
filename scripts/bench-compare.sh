#!/usr/bin/env bash
# bench-compare.sh — runs scenarios S1–S5 of ../shared/mqttload/README.md (same parameters) with
# tools/loadgen against three brokers, one at a time, each a fresh process for the whole set:
#   ours       bin/broker (services/broker)
#   mosquitto  Debian's mosquitto, with a generated config of the same limits (below)
#   mochi      tools/bench/mochi: mochi-mqtt/server v2, default options, allow-all auth
# and prints ONE table, with the ratio of ours to each peer. Raw loadgen output goes to $RESULTS.
# Started by `make bench-compare`; runs standalone too. Takes about 6 minutes on 2 cores.
#
# "Same limits" — what our broker is being built to, and what mosquitto is configured to match:
#   receive maximum / inflight    65535 QoS>0 messages per client in each direction
#                                 (mosquitto: max_inflight_messages 65535; it also enforces it on
#                                 incoming QoS 2, and advertises it to v5 clients)
#   queue per client              1000 QoS>0 messages above the inflight ones, then drop
#                                 (mosquitto: max_queued_messages 1000, max_queued_bytes 0)
#   connections                   unlimited (mosquitto: max_connections -1)
#   packet size                   no limit beyond the protocol's (mosquitto: message_size_limit 0)
#   TCP_NODELAY                   on (Go's default; mosquitto: set_tcp_nodelay true)
#   persistence / logging         none / warnings and errors only
# mochi keeps its defaults as asked (receive maximum 1024, 8192 pending writes per client, after
# which it drops QoS 0), except its log level, which is warn like ours.
#
# S5 (latency at a paced 1000 msg/s) is run in S5_ROUNDS interleaved rounds, each broker a fresh
# process every round and the brokers' order rotated from round to round; the table shows, per
# broker, the round with the median p99 and lists every round's p99. On a small virtual machine the
# p99 of one 10 s run moves by ±15% from minute to minute, more than brokers differ, and now and
# then the whole machine stalls for 10–20 ms (both vCPUs at once, whatever runs), which puts one
# run's p99 far out. One run per broker, minutes apart, would compare the machine's moods rather
# than the brokers.
#
# Environment: GO (go), BIN (bin), RESULTS (bin/bench-results/<time>), BROKERS ("ours mosquitto
# mochi"; "base" is a second build of ours, $BIN/broker-base, for a before/after comparison), SCENARIOS ("S1 S2 S3 S5 S4"), S5_ROUNDS (5), BUDGET (540: seconds for all runs; later
# runs are skipped, and each run's -timeout is cut to what is left), SKIP_BUILD (1: use the
# binaries in $BIN).
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
BIN=${BIN:-bin}
RESULTS=${RESULTS:-$BIN/bench-results/$(date +%Y%m%d-%H%M%S)}
BROKERS=${BROKERS:-ours mosquitto mochi}
# S4 runs last: closing 10k connections leaves a broker busy (and a Go heap large) for seconds,
# which would land in S5's latency. The table is printed in S1..S5 order.
SCENARIOS=${SCENARIOS:-S1 S2 S3 S5 S4}
BUDGET=${BUDGET:-540}
S5_ROUNDS=${S5_ROUNDS:-5}

RECEIVE_MAXIMUM=65535
QUEUE_LIMIT=1000

# The anchors, exactly as in ../shared/mqttload/README.md (-addr and -broker-pid are added per run).
declare -A SCEN=(
  [S1]="-topology fanin -pubs 10 -subs 1 -n 20000 -size 64 -qos 0 -timeout 60s"
  [S2]="-topology fanout -pubs 1 -subs 100 -n 10000 -size 64 -qos 0 -timeout 60s"
  [S3]="-topology pairwise -pubs 20 -subs 20 -n 5000 -size 64 -qos 1 -inflight 64 -timeout 60s"
  [S4]="-mode conns -conns 10000 -dial-par 32 -settle 5s -timeout 90s"
  [S5]="-topology fanin -pubs 1 -subs 1 -n 10000 -rate 1000 -size 64 -qos 0 -timeout 60s"
)
declare -A SCEN_TIMEOUT=([S1]=60 [S2]=60 [S3]=60 [S4]=90 [S5]=60)

mkdir -p "$RESULTS"
log() { echo "bench-compare: $*" >&2; }

# S4 opens 10k connections: each side needs that many descriptors. Raise the limit for everything
# started from here; without CAP_SYS_RESOURCE the hard limit is as far as it goes.
if ! ulimit -n 65536 2>/dev/null; then
  ulimit -n "$(ulimit -Hn)"
  log "ulimit -n 65536 not permitted; using the hard limit $(ulimit -n) (S4 needs > 10000)"
fi

# ---- build ------------------------------------------------------------------------------------
declare -A BROKEN=() # broker -> why its rows fail
if [ -z "${SKIP_BUILD:-}" ]; then
  mkdir -p "$BIN"
  bin_abs=$(cd "$BIN" && pwd)
  log "building loadgen, mochi-bench, broker"
  "$GO" build -o "$BIN/loadgen" ./tools/loadgen
  (cd tools/bench/mochi && GOWORK=off "$GO" build -o "$bin_abs/mochi-bench" .)
  if ! "$GO" build -o "$BIN/broker" ./services/broker/cmd/broker 2>"$RESULTS/broker-build.log"; then
    rm -f "$BIN/broker"
    BROKEN[ours]="go build failed (see $RESULTS/broker-build.log)"
  fi
fi

# ---- process handling -------------------------------------------------------------------------
BPID="" # the broker now running (its real PID, for /proc)
WRAP="" # the `timeout` process around it: the broker dies with the budget even if we are killed
cleanup() {
  if [ -n "$WRAP" ]; then
    kill -TERM "$WRAP" 2>/dev/null || true
    if [ -n "$BPID" ]; then kill -TERM "$BPID" 2>/dev/null || true; fi
    wait "$WRAP" 2>/dev/null || true
  fi
  WRAP="" BPID=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port prints a loopback port this run has not handed out before (scripts/free-port.py).
free_port() { python3 scripts/free-port.py "$RESULTS/ports.given"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

T0=$SECONDS
left() { echo $((BUDGET - (SECONDS - T0))); }

# start_broker NAME: starts it on a fresh port; sets BPID, ADDR; returns 1 with WHY set on failure.
start_broker() {
  local name=$1 port http
  port=$(free_port)
  ADDR=127.0.0.1:$port
  local life=$(($(left) + 60)) # outlives every run, never the budget by much
  case $name in
    ours | base)
      local bin=$BIN/broker
      [ "$name" = base ] && bin=$BIN/broker-base
      [ -x "$bin" ] || { WHY="no $bin"; return 1; }
      http=$(free_port)
      BROKER_MQTT_ADDR=$ADDR BROKER_HTTP_ADDR=127.0.0.1:$http BROKER_LOG_LEVEL=warn \
        timeout -k 5 "$life" "$bin" >"$RESULTS/broker-$name.log" 2>&1 &
      ;;
    mosquitto)
      command -v mosquitto >/dev/null || { WHY="mosquitto not installed (make deps)"; return 1; }
      cat >"$RESULTS/mosquitto.conf" <<EOF
# generated by scripts/bench-compare.sh: the limits written at the top of that script
listener $port 127.0.0.1
allow_anonymous true
max_connections -1
max_inflight_messages $RECEIVE_MAXIMUM
max_queued_messages $QUEUE_LIMIT
max_queued_bytes 0
message_size_limit 0
set_tcp_nodelay true
persistence false
log_dest stderr
log_type error
log_type warning
EOF
      timeout -k 5 "$life" mosquitto -c "$RESULTS/mosquitto.conf" >"$RESULTS/broker-$name.log" 2>&1 &
      ;;
    mochi)
      [ -x "$BIN/mochi-bench" ] || { WHY="no $BIN/mochi-bench"; return 1; }
      timeout -k 5 "$life" "$BIN/mochi-bench" -addr "$ADDR" -log-level warn >"$RESULTS/broker-$name.log" 2>&1 &
      ;;
  esac
  WRAP=$!
  BPID=""
  for _ in $(seq 100); do
    [ -z "$BPID" ] && BPID=$(pgrep -P "$WRAP" | head -1 || true)
    if [ -n "$BPID" ] && port_open "$port"; then break; fi
    if ! kill -0 "$WRAP" 2>/dev/null; then WHY="exited at start: $(tail -c 300 "$RESULTS/broker-$name.log" | tr '\n' ' ')"; cleanup; return 1; fi
    sleep 0.1
  done
  if [ -z "$BPID" ] || ! port_open "$port"; then
    WHY="nothing listening on $ADDR after 10s (no MQTT listener yet?)"
    cleanup
    return 1
  fi
  # Does it speak MQTT? One CONNECT/CONNACK.
  if ! "$BIN/loadgen" -q -addr "$ADDR" -mode conns -conns 1 -settle 0s -timeout 5s -conn-timeout 3s \
      >"$RESULTS/probe-$name.json" 2>&1; then
    WHY="no CONNACK on $ADDR: $(tail -1 "$RESULTS/probe-$name.json" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("first_error",""))' 2>/dev/null || echo '?')"
    cleanup
    return 1
  fi
  return 0
}

# run_scenario S B [OUT]: runs scenario S against broker B (BPID, ADDR) into $RESULTS/OUT.json
# (OUT defaults to S-B), or OUT.failed with the reason.
run_scenario() {
  local s=$1 b=$2 out=${3:-$1-$2} rem to args
  rem=$(left)
  if [ "$rem" -lt 10 ]; then
    echo "skipped: BUDGET=${BUDGET}s used up" >"$RESULTS/$out.failed"
    return
  fi
  to=${SCEN_TIMEOUT[$s]}
  [ "$rem" -lt "$to" ] && to=$rem
  # Same parameters as the anchors; only -timeout may shrink to the remaining budget.
  args="${SCEN[$s]/-timeout ${SCEN_TIMEOUT[$s]}s/-timeout ${to}s}"
  log "$b $s${3:+ ($3)}: loadgen $args"
  # shellcheck disable=SC2086
  timeout -k 5 $((to + 15)) "$BIN/loadgen" -addr "$ADDR" -broker-pid "$BPID" -label "$s/$b" $args \
    >"$RESULTS/$out.out" 2>"$RESULTS/$out.err" || true
  if tail -1 "$RESULTS/$out.out" | python3 -c 'import json,sys; json.load(sys.stdin)' 2>/dev/null; then
    tail -1 "$RESULTS/$out.out" >"$RESULTS/$out.json"
  else
    echo "loadgen gave no summary: $(tail -c 300 "$RESULTS/$out.err" | tr '\n' ' ')" >"$RESULTS/$out.failed"
  fi
}

S5_APART=""
case " $SCENARIOS " in *" S5 "*) [ "$S5_ROUNDS" -gt 0 ] && S5_APART=1 ;; esac
MAIN_SCENARIOS=$SCENARIOS # run one after another on one process per broker
[ -n "$S5_APART" ] && MAIN_SCENARIOS=$(echo " $SCENARIOS " | sed 's/ S5 / /; s/^ *//; s/ *$//')

# ---- runs -------------------------------------------------------------------------------------
for b in $BROKERS; do
  [ -z "$MAIN_SCENARIOS" ] && break
  if [ -z "${BROKEN[$b]:-}" ]; then
    log "== $b"
    if ! start_broker "$b"; then
      BROKEN[$b]=$WHY
    fi
  fi
  if [ -n "${BROKEN[$b]:-}" ]; then
    log "$b: all rows FAILED: ${BROKEN[$b]}"
    for s in $SCENARIOS; do echo "${BROKEN[$b]}" >"$RESULTS/$s-$b.failed"; done
    continue
  fi
  log "$b: pid $BPID on $ADDR"
  for s in $MAIN_SCENARIOS; do
    run_scenario "$s" "$b"
    if ! kill -0 "$BPID" 2>/dev/null; then
      log "$b died during $s"
      BROKEN[$b]="broker process died during $s"
      break
    fi
    # Let the broker finish tearing down (10k closes after S4) before the next scenario.
    if [ "$s" = S4 ]; then sleep 3; else sleep 1; fi
  done
  if [ -n "${BROKEN[$b]:-}" ]; then
    for s in $SCENARIOS; do
      [ -e "$RESULTS/$s-$b.json" ] || [ -e "$RESULTS/$s-$b.failed" ] || echo "${BROKEN[$b]}" >"$RESULTS/$s-$b.failed"
    done
  fi
  cleanup
done

# ---- S5 rounds --------------------------------------------------------------------------------
if [ -n "$S5_APART" ]; then
  read -r -a order <<<"$BROKERS"
  for r in $(seq "$S5_ROUNDS"); do
    for b in "${order[@]}"; do
      [ -n "${BROKEN[$b]:-}" ] && continue
      if ! start_broker "$b"; then
        echo "$WHY" >"$RESULTS/S5-$b.r$r.failed"
        continue
      fi
      run_scenario S5 "$b" "S5-$b.r$r"
      cleanup
      sleep 1
    done
    order=("${order[@]:1}" "${order[0]}") # rotate: no broker always runs first
  done
  # Per broker: the round with the median p99 becomes S5-<b>.json; every round's p99 is noted.
  python3 - "$RESULTS" "$BROKERS" "$S5_ROUNDS" <<'PY'
import json, os, sys
res, brokers, rounds = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
for b in brokers:
    if os.path.exists(os.path.join(res, f"S5-{b}.json")) or os.path.exists(os.path.join(res, f"S5-{b}.failed")):
        continue
    got, why = [], "not run"
    for r in range(1, rounds + 1):
        p = os.path.join(res, f"S5-{b}.r{r}")
        if os.path.exists(p + ".json"):
            j = json.load(open(p + ".json"))
            if j.get("ok"):
                got.append(j)
                continue
            why = j.get("first_error") or "run not ok"
        elif os.path.exists(p + ".failed"):
            why = open(p + ".failed").read().strip()
    if len(got) < rounds:
        # A failed round fails the row: the median of the rest would hide it.
        open(os.path.join(res, f"S5-{b}.failed"), "w").write(f"{rounds - len(got)} of {rounds} rounds failed: {why}")
        continue
    by_p99 = sorted(got, key=lambda j: j["p99_us"])
    med = dict(by_p99[(len(by_p99) - 1) // 2])
    med["rounds_p99_us"] = [j["p99_us"] for j in got]
    json.dump(med, open(os.path.join(res, f"S5-{b}.json"), "w"))
PY
fi

# ---- table ------------------------------------------------------------------------------------
python3 - "$RESULTS" "$SCENARIOS" "$BROKERS" <<'PY' | tee "$RESULTS/table.txt"
import json, os, sys
res, scens, brokers = sys.argv[1], sorted(sys.argv[2].split()), sys.argv[3].split()

def load(s, b):
    p = os.path.join(res, f"{s}-{b}")
    if os.path.exists(p + ".json"):
        return json.load(open(p + ".json")), None
    if os.path.exists(p + ".failed"):
        return None, open(p + ".failed").read().strip()
    return None, "not run"

# (header, key, format) — key is a summary field or a function of the summary.
cols = [
    ("deliv msg/s", "deliv_rate", "{:.0f}"),
    ("lost", "lost", "{:d}"),
    ("dup", "dup", "{:d}"),
    ("p50 µs", "p50_us", "{:.0f}"),
    ("p99 µs", "p99_us", "{:.0f}"),
    ("cpu s", "broker_cpu_s", "{:.2f}"),
    ("deliv/cpu-s", "deliv_per_cpu_s", "{:.0f}"),
    ("rss MiB", lambda j: j.get("broker_rss_after_kb", 0) / 1024, "{:.1f}"),
    ("peak MiB", lambda j: j.get("broker_hwm_kb", 0) / 1024, "{:.1f}"),
    ("B/idle conn", "broker_rss_per_conn_b", "{:.0f}"),
]
def val(j, key):
    if j.get("mode") == "conns" and key in ("lost", "dup"):
        return None
    v = key(j) if callable(key) else j.get(key)
    return v if v not in (None, 0, 0.0) or key in ("lost", "dup") else None

def cell(j, key, fmt):
    v = val(j, key)
    if v is None:
        return "-"
    return fmt.format(int(v) if fmt == "{:d}" else v)

head = ["scenario", "broker"] + [c[0] for c in cols] + ["note"]
rows, notes = [], []
def footnote(text):
    if text not in notes:
        notes.append(text)
    return f"FAILED [{notes.index(text) + 1}]"

for s in scens:
    got = {b: load(s, b) for b in brokers}
    for b in brokers:
        j, err = got[b]
        if j is None:
            rows.append([s, b] + [""] * len(cols) + [footnote(f"{b}: {err}")])
            continue
        note = []
        if not j.get("ok"):
            why = j.get("first_error") or ("timed out" if j.get("timed_out") else "?")
            note.append(footnote(f"{b} {s}: {j.get('errors', 0)} errors, timed out {j.get('timed_out')}: {why}"))
        if j.get("mode") == "conns":
            note.append(f"{j.get('conns', 0)} conns, {j.get('conn_fail', 0)} failed, {j.get('conn_rate', 0):.0f} conn/s")
        if j.get("rounds_p99_us"):
            note.append("median of " + str(len(j["rounds_p99_us"])) + " rounds; p99 " + "/".join(f"{v:.0f}" for v in j["rounds_p99_us"]))
        if j.get("other_cpu_s", 0) > 0.5:
            note.append(f"noisy: other cpu {j['other_cpu_s']:.1f}s")
        rows.append([s, b] + [cell(j, k, f) for _, k, f in cols] + ["; ".join(note)])
    ours = got.get("ours", (None, None))[0]
    if not (ours and ours.get("ok")):
        continue  # no ratios against a failed run
    for b in brokers:
        peer = got[b][0]
        if b == "ours" or not (peer and peer.get("ok")):
            continue
        r = [s, f"ours/{b}"]
        for _, k, _ in cols:
            a, p = val(ours, k), val(peer, k)
            r.append(f"{a / p:.2f}x" if a is not None and p else "-")
        r.append("")
        rows.append(r)

w = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
line = lambda r: "  ".join(str(x).ljust(w[i]) if i < 2 or i == len(r) - 1 else str(x).rjust(w[i]) for i, x in enumerate(r)).rstrip()
print(line(head))
print(line(["-" * x for x in w]))
for r in rows:
    print(line(r))
print()
print("ours/peer rows: ours divided by the peer (only where both runs succeeded); above 1 is better for")
print("msg/s and deliv/cpu-s, worse for latency, cpu s and memory. '-': a value the run does not produce.")
for i, n in enumerate(notes):
    print(f"[{i + 1}] {n}")
print(f"raw loadgen output and JSON: {res}/")
PY
log "done in $((SECONDS - T0))s"
