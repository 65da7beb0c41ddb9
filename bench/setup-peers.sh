#!/usr/bin/env bash
# Installs the peers `palio-bench compare` measures Palio against, from Debian's packages:
#   nats-server  NATS core, NATS with TLS, a 3-server NATS cluster and JetStream (2.9)
#   mosquitto    an MQTT 3.1.1/5 broker (2.0)
# The peers' clients (async-nats, rumqttc) are compiled into palio-bench; nothing else is needed.
# Run as root, or with sudo available. Idempotent.
set -eu
packages=(nats-server mosquitto)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "peers already installed: ${packages[*]}" >&2
else
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Debian starts mosquitto as a system service on port 1883; the benchmark starts its own on an
# ephemeral port, so the service is only in the way.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
  ${sudo:-} systemctl stop mosquitto || true
fi
nats-server --version
mosquitto -h 2>/dev/null | head -1 || true
