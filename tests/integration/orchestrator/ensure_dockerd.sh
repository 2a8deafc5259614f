#!/usr/bin/env bash
# Makes sure a Docker daemon answers on the socket of DOCKER_HOST (default
# /var/run/docker.sock), for the docker runtime's integration tests
# (ARCHITECTURE.md §10).
#
#   exit 0   a daemon answers; the last line says whether it was already
#            running or started here ("started pid N, log FILE")
#   exit 77  no daemon can be had; the last line is "SKIPPED: <reason>"
#   other    a bug in this script
#
# A daemon started here runs `dockerd --bridge=none --iptables=false` (no
# network setup on the host: connectors use host networking), in its own
# session with its own log file, and is left running for the next test
# process: stopping it under a concurrent test run would break that run.
# Stop it with `kill $(cat /var/run/docker.pid)` when done.
set -u

socket="${DOCKER_HOST:-unix:///var/run/docker.sock}"
if [[ "$socket" != unix://* ]]; then
  echo "SKIPPED: DOCKER_HOST=$socket is not a unix socket"
  exit 77
fi
socket="${socket#unix://}"
export PATH="$PATH:/usr/sbin:/sbin:/usr/bin:/bin"

ping_daemon() {
  [[ -S "$socket" ]] &&
    curl -sf --max-time 2 --unix-socket "$socket" http://docker/_ping \
      >/dev/null 2>&1
}

if ping_daemon; then
  echo "dockerd: already answering on $socket"
  exit 0
fi
if ! command -v dockerd >/dev/null; then
  echo "SKIPPED: dockerd is not installed (deploy/local/setup.sh installs docker.io)"
  exit 77
fi
if ! command -v curl >/dev/null; then
  echo "SKIPPED: curl is not installed (deploy/local/setup.sh installs it)"
  exit 77
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "SKIPPED: no daemon answers on $socket and starting dockerd needs root"
  exit 77
fi

# One starter at a time: parallel test processes wait for the first.
lock="${TMPDIR:-/tmp}/iot2mqtt-dockerd.lock"
exec 9>"$lock"
if ! flock -w 90 9; then
  echo "SKIPPED: another test process holds $lock for more than 90 s"
  exit 77
fi
if ping_daemon; then
  echo "dockerd: started by another test process, answering on $socket"
  exit 0
fi

log="${TMPDIR:-/tmp}/iot2mqtt-dockerd.log"
# setsid: its own session, so the test's process group can be killed
# without it; every descriptor redirected (CTest waits for its pipes).
setsid dockerd --bridge=none --iptables=false -H "unix://$socket" \
  </dev/null >"$log" 2>&1 9>&- &
pid=$!

# Up to 30 s for the API to come up.
for _ in $(seq 1 60); do
  if ping_daemon; then
    echo "dockerd: started pid $pid, log $log"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    break
  fi
  sleep 0.5
done
kill "$pid" 2>/dev/null
reason=$(grep -E 'level=(fatal|error)|failed' "$log" | tail -n 1 | cut -c1-300)
echo "SKIPPED: dockerd could not start (log $log): ${reason:-no answer within 30 s}"
exit 77
