#!/usr/bin/env bash
# Connector SDK benchmarks (issue 3). Builds nothing: build first with
#   ninja -C build sdk_publish_bench sdk_roundtrip_bench sdk_idle_bench \
#     iot2mqtt-connector-demo
# Each benchmark starts its own Mosquitto on a free loopback port.
#
#   publish    MosquittoClient vs `mosquitto_pub -l`, same messages, QoS 0/1,
#              end to end to a counting subscriber (target: >= 90 % of
#              mosquitto_pub at QoS 0, >= 10,000 msg/s at QoS 1)
#   roundtrip  cmd -> cmd/response against the demo connector process
#              (target: p50 <= 2 ms, p99 <= 10 ms)
#   idle       RSS and CPU of the demo connector with 10 devices, idle
#              (target: RSS <= 8 MB, CPU ~ 0)
#
# Environment: BUILD_DIR (default build), MESSAGES (20000; at 100000
# Debian's mosquitto_pub stalls at QoS 1, see docs/performance.md), RUNS (3),
# COMMANDS (2000), IDLE_SECONDS (30).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${BUILD_DIR:-$ROOT/build}"
BIN="$BUILD/bin"
export IOT2MQTT_BINARY_DIR="$BUILD"
for b in sdk_publish_bench sdk_roundtrip_bench sdk_idle_bench iot2mqtt-connector-demo; do
  [[ -x "$BIN/$b" ]] || { echo "run_sdk_bench: $BIN/$b is missing (build it first)" >&2; exit 1; }
done
command -v mosquitto_pub >/dev/null || { echo "run_sdk_bench: mosquitto_pub is missing (apt-get install mosquitto-clients)" >&2; exit 1; }

echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores, $(uname -r)"
echo
"$BIN/sdk_publish_bench" "${MESSAGES:-20000}" "${RUNS:-3}"
echo
"$BIN/sdk_roundtrip_bench" "${COMMANDS:-2000}"
echo
"$BIN/sdk_idle_bench" "${IDLE_SECONDS:-30}"
