#!/usr/bin/env bash
# MQTT device readings → per-device 1-minute aggregates, in one command.
# Makes sure Mosquitto runs on 127.0.0.1:1883 (installing mosquitto and
# mosquitto-clients when root with apt-get), builds the example (release)
# and runs it.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
RILL_SCRIPT=example
. scripts/lib/services.sh
need_debs mosquitto_pub:mosquitto-clients
mosquitto_up
say "building and running the example (release; the first build takes a while)"
exec cargo run --release --quiet --example iot-mqtt
