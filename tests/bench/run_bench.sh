#!/usr/bin/env bash
# Device-config API benchmark (issue: foundation). Run by hand: `make bench`.
#
# Starts iot2mqtt-config + iot2mqtt-gateway from the build tree on free
# loopback ports with 200 configs of about 1 KiB, then drives the gateway with
# wrk (16 connections, 2 threads) and prints throughput and latency for:
#   single  GET /api/configs/{mac}        (random MAC per request)
#   list    GET /api/configs
#   static  GET /api/docs/openapi.json    (same-run baseline: the gateway alone,
#                                          no backend hop)
# Each scenario runs RUNS times (default 5); the median run is reported.
# Also prints the idle RSS of both processes. Loopback only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${BUILD_DIR:-$ROOT/build}/bin"
RUNS="${RUNS:-5}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-16}"
THREADS="${THREADS:-2}"
CONFIGS="${CONFIGS:-200}"
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)" >&2; exit 1; }

WORK="$(mktemp -d /tmp/iot2mqtt-bench-XXXXXX)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
  || shuf -i 20000-60000 -n 1; }
wait_port() { local deadline=$((SECONDS + 15)); until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do ((SECONDS < deadline)) || return 1; sleep 0.1; done; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

mkdir -p "$WORK/configs"
# 200 configs of ~1 KiB: the summary keys plus a realistic body of settings.
MACS=()
for ((i = 0; i < CONFIGS; i++)); do
  mac=$(printf 'a4-cf-12-%02x-%02x-%02x' $((i / 65536 % 256)) $((i / 256 % 256)) $((i % 256)))
  MACS+=("$mac")
  {
    printf '{\n  "deviceName": "Device %d",\n  "deviceEntityId": "sensor.device_%d",\n  "enableOTA": %s,\n' "$i" "$i" "$([[ $((i % 2)) == 0 ]] && echo true || echo false)"
    printf '  "mqtt": {"host": "broker.local", "port": 1883, "topic": "home/device_%d", "qos": 1},\n' "$i"
    printf '  "wifi": {"ssid": "homelab", "hostname": "esp32-%d", "static_ip": null},\n' "$i"
    printf '  "sensors": ['
    for ((s = 0; s < 7; s++)); do
      printf '{"type": "dht22", "pin": %d, "interval_ms": 30000, "offset": 0.%d, "name": "sensor %d-%d"}%s' $((s + 4)) "$s" "$i" "$s" "$([[ $s -lt 6 ]] && echo ', ' || echo '')"
    done
    printf '],\n  "calibration": {"a": 1.0002, "b": -0.013, "c": 12345678901234567890}\n}\n'
  } > "$WORK/configs/$mac.json"
done
avg_size=$(( $(cat "$WORK"/configs/*.json | wc -c) / CONFIGS ))

CONFIG_PORT=$(free_port)
GATEWAY_PORT=$(free_port)
BENCH_KEY="bench-access-key"
ESP32_CONFIGS_DIR="$WORK/configs" IOT2MQTT_DATA_DIR="$WORK/data" WEB_ACCESS_KEY="$BENCH_KEY" \
  CONFIG_LISTEN_ADDR="127.0.0.1:$CONFIG_PORT" LOG_LEVEL=WARNING \
  "$BIN/iot2mqtt-config" > "$WORK/config.log" 2>&1 &
PIDS+=("$!"); CONFIG_PID=$!
wait_port "$CONFIG_PORT"
GATEWAY_LISTEN_ADDR="127.0.0.1:$GATEWAY_PORT" CONFIG_SERVICE_ADDR="127.0.0.1:$CONFIG_PORT" LOG_LEVEL=WARNING \
  "$BIN/iot2mqtt-gateway" > "$WORK/gateway.log" 2>&1 &
PIDS+=("$!"); GATEWAY_PID=$!
wait_port "$GATEWAY_PORT"
# Every request carries a bearer token, as a real client's does.
TOKEN=$(curl -fsS -X POST -d "{\"key\":\"$BENCH_KEY\"}" "http://127.0.0.1:$GATEWAY_PORT/api/auth/login" \
  | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
[[ -n "$TOKEN" ]] || { echo "bench: login failed" >&2; exit 1; }
AUTH="Authorization: Bearer $TOKEN"
curl -fsS -H "$AUTH" "http://127.0.0.1:$GATEWAY_PORT/api/configs" > /dev/null

# Idle RSS after one warm-up request per route.
curl -fsS -H "$AUTH" "http://127.0.0.1:$GATEWAY_PORT/api/configs/${MACS[0]}" > /dev/null
curl -fsS "http://127.0.0.1:$GATEWAY_PORT/api/docs/openapi.json" > /dev/null
sleep 1
IDLE_CONFIG_KB=$(rss_kb "$CONFIG_PID")
IDLE_GATEWAY_KB=$(rss_kb "$GATEWAY_PID")

cat > "$WORK/single.lua" <<LUA
local macs = { $(printf '"%s",' "${MACS[@]}") }
request = function()
  return wrk.format("GET", "/api/configs/" .. macs[math.random(#macs)])
end
LUA
cat > "$WORK/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT %.1f %.3f %.3f %.3f %d %d\n",
      summary.requests / (summary.duration / 1e6),
      latency:percentile(50) / 1000, latency:percentile(99) / 1000,
      latency.max / 1000, summary.requests, errors))
end
LUA
cat "$WORK/single.lua" "$WORK/report.lua" > "$WORK/single_report.lua"

run_scenario() {  # name path script
  local name="$1" path="$2" script="$3" line results=()
  for ((r = 1; r <= RUNS; r++)); do
    line=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$script" -H "$AUTH" \
      "http://127.0.0.1:$GATEWAY_PORT$path" | grep '^RESULT')
    results+=("${line#RESULT }")
    echo "  $name run $r: ${line#RESULT }" >&2
  done
  # Median by throughput.
  printf '%s\n' "${results[@]}" | sort -n -k1 | sed -n "$(( (RUNS + 1) / 2 ))p"
}

echo "bench: $CONFIGS configs of ~$avg_size bytes, $CONNECTIONS connections, $THREADS wrk threads, $RUNS x $DURATION per scenario" >&2
SINGLE=$(run_scenario single "/api/configs/${MACS[0]}" "$WORK/single_report.lua")
LIST=$(run_scenario list "/api/configs" "$WORK/report.lua")
STATIC=$(run_scenario static "/api/docs/openapi.json" "$WORK/report.lua")
BUSY_CONFIG_KB=$(rss_kb "$CONFIG_PID")
BUSY_GATEWAY_KB=$(rss_kb "$GATEWAY_PID")
LIST_BYTES=$(curl -fsS -H "$AUTH" "http://127.0.0.1:$GATEWAY_PORT/api/configs" | wc -c)

echo
printf '%-8s %12s %10s %10s %10s %10s %8s\n' scenario "req/s" "p50 ms" "p99 ms" "max ms" requests errors
for row in "single:$SINGLE" "list:$LIST" "static:$STATIC"; do
  name="${row%%:*}"; read -r rps p50 p99 max n err <<< "${row#*:}"
  printf '%-8s %12s %10s %10s %10s %10s %8s\n' "$name" "$rps" "$p50" "$p99" "$max" "$n" "$err"
done
echo
echo "list response: $LIST_BYTES bytes"
echo "idle RSS: config $((IDLE_CONFIG_KB / 1024)) MiB ($IDLE_CONFIG_KB kB), gateway $((IDLE_GATEWAY_KB / 1024)) MiB ($IDLE_GATEWAY_KB kB), together $(((IDLE_CONFIG_KB + IDLE_GATEWAY_KB) / 1024)) MiB"
echo "RSS after load: config $((BUSY_CONFIG_KB / 1024)) MiB, gateway $((BUSY_GATEWAY_KB / 1024)) MiB"
