#!/usr/bin/env bash
# Platform benchmarks (issues #5 mqtt-bridge and #6 orchestrator, and the
# discovery service). Run by hand, never by ctest. Builds the service
# binaries and the bench programs (tests/bench/platform/), then runs them on
# 127.0.0.1 against the real binaries from build/bin; each program starts its
# own Mosquitto, config, bridge, gateway (and orchestrator or discovery
# service), logs in with WEB_ACCESS_KEY and uses the token.
#
#   run_platform_bench.sh [--ingest] [--command] [--memory] [--startup]
#                         [--fleet] [--tool-latency] [--tool-parallel]
#                         [--discover] [--discovery-memory] [--discovery-idle]
#                         [--discovery] [--no-docker] [--no-build]
#   (no selection: all of them; --discovery: the five discovery ones)
#
#   ingest   libmosquitto flood of <base>/v1/instances/... topics (QoS 0 and
#            1) with and without one /ws/mqtt client; the bridge's
#            messages_received over a 10 s window (target >= 20,000 msg/s
#            with the WebSocket client)
#   command  POST /api/devices/{i}/{d}/command through the gateway, keep-alive,
#            sequential, vs the bridge's SendCommand over gRPC and bare MQTT
#            (target p50 <= 5 ms through the gateway)
#   memory   100,000 distinct retained topics: the bridge's RSS and cache_bytes
#   startup  POST /api/instances -> retained `online`, process and docker
#            (targets 1 s and 3 s)
#   fleet    50 demo instances at once, process and docker (docker: all
#            online <= 30 s; orchestrator RSS <= 30 MB)
#   tool-latency      POST /api/integrations/{c}/tools/execute of a trivial
#            /bin/sh tool (network local and none), sequential, vs
#            ExecuteTool over gRPC and the bare spawn of the same script
#   tool-parallel     20 and 32 concurrent 1 s tools (ideal 1 s), and a 33rd
#            call while 32 run (429 TOO_MANY_TOOLS expected)
#   discover          Yeelight discovery {"timeout":1} against the bulb
#            simulator with 1, 20 and 100 bulbs; a second scan adds nothing
#   discovery-memory  iot2mqtt-discovery RSS idle and with 32 tools running
#   discovery-idle    the first call after 0-2 s without traffic (gRPC's
#            callback threads sleep 100 ms after 1 s idle)
#   (no targets for these; docs/performance.md "Discovery service")
#
# Environment: BUILD_DIR (build), RUNS (3: repetitions of every program
# whose figure is a median), INGEST_SECONDS (10), INGEST_TOPICS (1000),
# COMMANDS (1000 per path and round), STARTUP_INSTANCES (5), FLEET (50),
# TOOL_CALLS (200 per path and run), DISCOVER_BULBS (1,20,100),
# IDLE_REPEATS (5 per probe and quiet period),
# BENCH_BROKER_CONFIG (extra mosquitto.conf lines, `;`-separated:
# a diagnostic knob).
#
# Docker: tests/integration/orchestrator/ensure_dockerd.sh makes sure a daemon
# runs. An orchestrator in docker mode removes every container labelled
# iot2mqtt.type=connector that its own config does not name ("orphans"), so
# the docker runs wait until no such container of anyone else exists (up to
# DOCKER_WAIT seconds, default 300) and are skipped with the reason
# otherwise. Containers of these runs are named iot2mqtt_demo_pb<pid>-<n>;
# any left behind (a crashed run) are removed at the end.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${BUILD_DIR:-$ROOT/build}"
BIN="$BUILD/bin"
RUNS="${RUNS:-3}"
export IOT2MQTT_BINARY_DIR="$BUILD"
export IOT2MQTT_SOURCE_DIR="$ROOT"

selected=()
docker=1
build=1
for arg in "$@"; do
  case "$arg" in
    --ingest|--command|--memory|--startup|--fleet|--tool-latency|\
    --tool-parallel|--discover|--discovery-memory|--discovery-idle)
      selected+=("${arg#--}") ;;
    --discovery) selected+=(tool-latency tool-parallel discover discovery-memory
                            discovery-idle) ;;
    --no-docker) docker=0 ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,53p' "$0"; exit 0 ;;
    *) echo "run_platform_bench: unknown argument $arg" >&2; exit 2 ;;
  esac
done
((${#selected[@]})) || selected=(ingest command memory startup fleet \
  tool-latency tool-parallel discover discovery-memory discovery-idle)
want() { [[ " ${selected[*]} " == *" $1 "* ]]; }

if ((build)); then
  ninja -C "$BUILD" iot2mqtt-config iot2mqtt-mqtt-bridge iot2mqtt-orchestrator \
    iot2mqtt-gateway iot2mqtt-connector-demo iot2mqtt-discovery \
    iot2mqtt-yeelight-discover bridge_bench orchestrator_bench discovery_bench \
    || { echo "run_platform_bench: build failed" >&2; exit 1; }
fi
for b in bridge_bench orchestrator_bench discovery_bench iot2mqtt-config \
  iot2mqtt-mqtt-bridge iot2mqtt-orchestrator iot2mqtt-gateway \
  iot2mqtt-connector-demo iot2mqtt-discovery iot2mqtt-yeelight-discover; do
  [[ -x "$BIN/$b" ]] || { echo "run_platform_bench: $BIN/$b is missing" >&2; exit 1; }
done

OUT="$(mktemp /tmp/iot2mqtt-platform-bench-XXXXXX.log)"
status=0
run() {  # label command...
  local label="$1"; shift
  echo "== $label ($(date -u +%H:%M:%SZ), load $(cut -d' ' -f1-3 /proc/loadavg))"
  "$@" 2>&1 | tee -a "$OUT"
  local rc=${PIPESTATUS[0]}
  ((rc == 0)) || { echo "!! $label exited $rc"; status=1; }
}

foreign_containers() {
  docker ps -a --filter label=iot2mqtt.type=connector --format '{{.Names}}' \
    2>/dev/null | grep -v '^iot2mqtt_demo_pb[0-9]*-[0-9]*$'
}
docker_ready() {
  local why
  why=$(bash "$ROOT/tests/integration/orchestrator/ensure_dockerd.sh" | tail -n 1)
  if [[ $? -ne 0 || "$why" == SKIPPED:* ]]; then
    echo "docker: $why"; return 1
  fi
  local deadline=$((SECONDS + ${DOCKER_WAIT:-300}))
  while [[ -n "$(foreign_containers)" ]]; do
    if ((SECONDS >= deadline)); then
      echo "docker: SKIPPED: containers labelled iot2mqtt.type=connector of another" \
        "run exist ($(foreign_containers | head -3 | tr '\n' ' ')); an orchestrator" \
        "would remove them as orphans"
      return 1
    fi
    sleep 5
  done
}
docker_cleanup() {
  local left
  left=$(docker ps -aq --filter 'name=^/iot2mqtt_demo_pb[0-9]+-[0-9]+$' 2>/dev/null)
  if [[ -n "$left" ]]; then
    echo "docker: removing $(wc -w <<< "$left") containers left by the bench"
    docker rm -f $left >/dev/null
  fi
}

echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(uname -r), RUNS=$RUNS"

want ingest && run "ingest" "$BIN/bridge_bench" ingest "$RUNS" "${INGEST_SECONDS:-10}" "${INGEST_TOPICS:-1000}"
want command && run "command" "$BIN/bridge_bench" command "${COMMANDS:-1000}" "$RUNS"
want memory && run "memory" "$BIN/bridge_bench" memory 100000

runtimes=(process)
if ((docker)) && { want startup || want fleet; }; then
  if docker_ready; then runtimes+=(docker); fi
fi
for runtime in "${runtimes[@]}"; do
  if want startup; then
    for ((r = 1; r <= RUNS; r++)); do
      [[ $runtime == docker ]] && { docker_ready || break; }
      run "startup $runtime $r/$RUNS" "$BIN/orchestrator_bench" startup "$runtime" "${STARTUP_INSTANCES:-5}"
    done
  fi
  if want fleet; then
    for ((r = 1; r <= RUNS; r++)); do
      [[ $runtime == docker ]] && { docker_ready || break; }
      run "fleet $runtime $r/$RUNS" "$BIN/orchestrator_bench" fleet "$runtime" "${FLEET:-50}"
    done
  fi
done
((docker)) && command -v docker >/dev/null && docker_cleanup

# Discovery service: each program repeats RUNS times itself and prints the
# medians (discover and discovery-memory start a fresh platform per run).
want tool-latency && run "tool-latency" "$BIN/discovery_bench" tool-latency "${TOOL_CALLS:-200}" "$RUNS"
want tool-parallel && run "tool-parallel" "$BIN/discovery_bench" tool-parallel "$RUNS"
want discover && run "discover" "$BIN/discovery_bench" discover "$RUNS" "${DISCOVER_BULBS:-1,20,100}"
want discovery-memory && run "discovery-memory" "$BIN/discovery_bench" memory "$RUNS"
want discovery-idle && run "discovery-idle" "$BIN/discovery_bench" idle "${IDLE_REPEATS:-5}"

echo
echo "== summary (full output: $OUT)"
grep '^RESULT' "$OUT" | sed 's/^RESULT /  /'
exit "$status"
