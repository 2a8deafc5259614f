#!/usr/bin/env bash
# Installs every Debian package the build, the tests and `make run` need.
# Idempotent and non-interactive: packages already present are skipped, so a
# second run costs one dpkg query. Needs root (or sudo) only when something is
# missing.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config ccache git
  # gRPC, protobuf, Abseil (ARCHITECTURE.md §9)
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev libprotoc-dev protobuf-compiler
  libabsl-dev grpc-proto golang-github-gogo-googleapis-dev
  # JSON, HTTP, metrics, MQTT, crypto, archives, Docker API
  rapidjson-dev libboost-dev prometheus-cpp-dev libmosquitto-dev mosquitto
  mosquitto-clients libsodium-dev libarchive-dev libcurl4-openssl-dev
  # tests and benchmarks
  catch2 curl wrk procps
  # the docker runtime and its tests (dockerd --bridge=none --iptables=false)
  docker.io
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists yet; refresh them once before installing.
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
