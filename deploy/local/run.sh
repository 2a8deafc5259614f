#!/usr/bin/env bash
# Starts the whole suite on this machine with embedded defaults and prints the
# URL. Used by `make run`; runs in the foreground until Ctrl-C (or SIGTERM),
# then stops every service gracefully.
#
# Configuration precedence: environment > ./.env > defaults below. Every
# variable is documented in .env.example.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
BIN="$BUILD_DIR/bin"
cd "$ROOT"

# --- .env: only for variables the environment does not already set ---------
load_dotenv() {
  local file="$1" line key value
  [[ -f "$file" ]] || return 0
  while IFS= read -r line || [[ -n "$line" ]]; do
    line="${line#"${line%%[![:space:]]*}"}"          # trim leading space
    [[ -z "$line" || "$line" == \#* ]] && continue
    line="${line#export }"
    [[ "$line" == *=* ]] || continue
    key="${line%%=*}"
    value="${line#*=}"
    [[ "$key" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { echo "run: ignoring bad .env line: $key" >&2; continue; }
    if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then
      value="${BASH_REMATCH[1]}"
    fi
    if [[ -z "${!key+x}" ]]; then
      export "$key=$value"
    fi
  done < "$file"
}
load_dotenv "$ROOT/.env"

# --- defaults ---------------------------------------------------------------
export IOT2MQTT_DATA_DIR="${IOT2MQTT_DATA_DIR:-$ROOT/data}"
mkdir -p "$IOT2MQTT_DATA_DIR"
IOT2MQTT_DATA_DIR="$(cd "$IOT2MQTT_DATA_DIR" && pwd)"
if [[ -z "${ESP32_CONFIGS_DIR:-}" ]]; then
  # The service never creates this directory (a missing one is reported as
  # unhealthy); the embedded default is provisioned here, like a mount would be.
  export ESP32_CONFIGS_DIR="$IOT2MQTT_DATA_DIR/esp32-configs"
  mkdir -p "$ESP32_CONFIGS_DIR"
fi
export IOT2MQTT_CONNECTORS_DIR="${IOT2MQTT_CONNECTORS_DIR:-$ROOT/connectors}"
export LOG_LEVEL="${LOG_LEVEL:-INFO}"
export CONFIG_LISTEN_ADDR="${CONFIG_LISTEN_ADDR:-127.0.0.1:50051}"
export CONFIG_SERVICE_ADDR="${CONFIG_SERVICE_ADDR:-127.0.0.1:50051}"
export GATEWAY_LISTEN_ADDR="${GATEWAY_LISTEN_ADDR:-0.0.0.0:8080}"
export MQTT_BRIDGE_LISTEN_ADDR="${MQTT_BRIDGE_LISTEN_ADDR:-127.0.0.1:50054}"
export MQTT_BRIDGE_ADDR="${MQTT_BRIDGE_ADDR:-127.0.0.1:50054}"
export ORCHESTRATOR_LISTEN_ADDR="${ORCHESTRATOR_LISTEN_ADDR:-127.0.0.1:50052}"
export ORCHESTRATOR_ADDR="${ORCHESTRATOR_ADDR:-127.0.0.1:50052}"
export DISCOVERY_LISTEN_ADDR="${DISCOVERY_LISTEN_ADDR:-127.0.0.1:50053}"
export DISCOVERY_ADDR="${DISCOVERY_ADDR:-127.0.0.1:50053}"
# auto: Docker when its socket answers, else local processes.
export IOT2MQTT_RUNTIME="${IOT2MQTT_RUNTIME:-auto}"
export MQTT_PORT="${MQTT_PORT:-1883}"
# Not exported as a default: the config service takes MQTT_* from the
# environment only when set, so settings saved in the UI survive a restart.
BASE_TOPIC_SHOWN="${MQTT_BASE_TOPIC:-IoT2mqtt}"
IOT2MQTT_RUN_DEMO="${IOT2MQTT_RUN_DEMO:-true}"
LOG_DIR="$IOT2MQTT_DATA_DIR/logs"
mkdir -p "$LOG_DIR"

for binary in iot2mqtt-config iot2mqtt-mqtt-bridge iot2mqtt-orchestrator iot2mqtt-discovery iot2mqtt-gateway iot2mqtt-connector-demo; do
  [[ -x "$BIN/$binary" ]] || { echo "run: $BIN/$binary is missing; run 'make build' first" >&2; exit 1; }
done

PIDS=()
NAMES=()
stop_all() {
  trap - INT TERM EXIT
  echo
  echo "run: stopping..."
  local i
  for ((i=${#PIDS[@]}-1; i>=0; i--)); do
    kill -TERM "${PIDS[$i]}" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  echo "run: stopped"
}
trap 'stop_all; exit 0' INT TERM
trap 'stop_all' EXIT

start() {  # start <name> <command...>; output to the terminal and $LOG_DIR/<name>.log
  local name="$1"; shift
  ( exec "$@" ) > >(tee -a "$LOG_DIR/$name.log") 2>&1 &
  PIDS+=("$!")
  NAMES+=("$name")
}

port_of() { echo "${1##*:}"; }
wait_port() {  # wait_port <host> <port> <seconds>
  local host="$1" port="$2" deadline=$((SECONDS + $3))
  until (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# --- MQTT broker: a local Mosquitto unless MQTT_HOST points elsewhere -------
if [[ -z "${MQTT_HOST:-}" ]]; then
  export MQTT_HOST=127.0.0.1
  if (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null; then
    echo "run: a broker already listens on 127.0.0.1:$MQTT_PORT; using it"
  else
    mkdir -p "$IOT2MQTT_DATA_DIR/mosquitto"
    sed -e "s|@PORT@|$MQTT_PORT|" -e "s|@DATA@|$IOT2MQTT_DATA_DIR/mosquitto|" -e "s|@USER@|$(id -un)|" \
      "$ROOT/deploy/mosquitto/mosquitto.conf.in" > "$IOT2MQTT_DATA_DIR/mosquitto/mosquitto.conf"
    start mosquitto mosquitto -c "$IOT2MQTT_DATA_DIR/mosquitto/mosquitto.conf"
    wait_port 127.0.0.1 "$MQTT_PORT" 10 || { echo "run: mosquitto did not start (see $LOG_DIR/mosquitto.log)" >&2; exit 1; }
  fi
fi

# --- demo instance: live data with no hardware -------------------------------
# On the first run (IOT2MQTT_RUN_DEMO=true) one demo instance is configured;
# the orchestrator runs it like any other instance. Delete it in the UI or
# with DELETE /api/integrations/instances/demo; it is not created again.
DEMO_LINE=""
if [[ "$IOT2MQTT_RUN_DEMO" == "true" ]]; then
  DEMO_MARK="$IOT2MQTT_DATA_DIR/.demo-created"
  DEMO_FILE="$IOT2MQTT_DATA_DIR/instances/demo/demo.json"
  if [[ ! -f "$DEMO_MARK" && ! -f "$DEMO_FILE" ]]; then
    mkdir -p "$(dirname "$DEMO_FILE")"
    cat > "$DEMO_FILE.tmp" <<'JSON'
{
  "instance_id": "demo",
  "connector_type": "demo",
  "friendly_name": "Demo devices",
  "enabled": true,
  "update_interval": 5,
  "devices": [
    {"device_id": "living-room-light", "type": "light"},
    {"device_id": "living-room-climate", "type": "climate"},
    {"device_id": "coffee-machine", "type": "switch"},
    {"device_id": "hallway-motion", "type": "motion", "zone": "hallway"}
  ],
  "groups": [{"group_id": "living-room", "devices": ["living-room-light", "coffee-machine"]}]
}
JSON
    mv "$DEMO_FILE.tmp" "$DEMO_FILE"
    touch "$DEMO_MARK"
  fi
  DEMO_LINE="    Demo devices   mosquitto_sub -h $MQTT_HOST -p $MQTT_PORT -t '$BASE_TOPIC_SHOWN/#' -v"
fi

# --- services ---------------------------------------------------------------
start config "$BIN/iot2mqtt-config"
wait_port 127.0.0.1 "$(port_of "$CONFIG_LISTEN_ADDR")" 15 || { echo "run: config service did not start (see $LOG_DIR/config.log)" >&2; exit 1; }
start mqtt-bridge "$BIN/iot2mqtt-mqtt-bridge"
wait_port 127.0.0.1 "$(port_of "$MQTT_BRIDGE_LISTEN_ADDR")" 15 || { echo "run: mqtt-bridge did not start (see $LOG_DIR/mqtt-bridge.log)" >&2; exit 1; }
start orchestrator "$BIN/iot2mqtt-orchestrator"
wait_port 127.0.0.1 "$(port_of "$ORCHESTRATOR_LISTEN_ADDR")" 15 || { echo "run: orchestrator did not start (see $LOG_DIR/orchestrator.log)" >&2; exit 1; }
start discovery "$BIN/iot2mqtt-discovery"
wait_port 127.0.0.1 "$(port_of "$DISCOVERY_LISTEN_ADDR")" 15 || { echo "run: discovery service did not start (see $LOG_DIR/discovery.log)" >&2; exit 1; }
start gateway "$BIN/iot2mqtt-gateway"
GATEWAY_PORT="$(port_of "$GATEWAY_LISTEN_ADDR")"
wait_port 127.0.0.1 "$GATEWAY_PORT" 15 || { echo "run: gateway did not start (see $LOG_DIR/gateway.log)" >&2; exit 1; }

cat <<INFO

  iot2mqtt is running.
    Web API        http://localhost:$GATEWAY_PORT/api/  (log in: POST /api/auth/login {"key": ...};
                   the first login from this machine sets the key, or set WEB_ACCESS_KEY)
    API docs       http://localhost:$GATEWAY_PORT/api/docs
    Health         http://localhost:$GATEWAY_PORT/api/health
    Metrics        http://localhost:$GATEWAY_PORT/metrics
    gRPC           config $CONFIG_SERVICE_ADDR, orchestrator $ORCHESTRATOR_ADDR,
                   mqtt-bridge $MQTT_BRIDGE_ADDR, discovery $DISCOVERY_ADDR
                   (reflection on)
    Runtime        $IOT2MQTT_RUNTIME (see $LOG_DIR/orchestrator.log for the one chosen)
    MQTT broker    $MQTT_HOST:$MQTT_PORT
$DEMO_LINE
    Data           $IOT2MQTT_DATA_DIR (ESP32 configs: $ESP32_CONFIGS_DIR)
    Logs           $LOG_DIR
  Press Ctrl-C to stop.

INFO

# Stop everything when any service exits on its own.
set +e
wait -n "${PIDS[@]}"
code=$?
echo "run: a service exited (code $code); stopping the suite" >&2
exit "$code"
