#!/usr/bin/env bash
# Runs an example job on a broker of its own: starts `rill standalone` on
# free loopback ports with a fresh data directory, sends the example's
# sample data with `rill produce`, runs the job file to the end of that data
# (its rows go to standard output), and stops the broker.
#
#   examples/run-on-own-broker.sh JOB.sql [rill produce options…] DATA.jsonl
#
# RILL_BIN names a built `rill` to use; otherwise it is built (release).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
job=$1; shift

if [ -z "${RILL_BIN:-}" ]; then
  echo "[example] building rill (release; the first build takes a while)" >&2
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
  RILL_BIN="${CARGO_TARGET_DIR:-$root/target}/release/rill"
fi

data=$(mktemp -d)
state="$data/state.json"
"$RILL_BIN" --log-level warn standalone --json --grpc-addr 127.0.0.1:0 --namesrv-addr 127.0.0.1:0 \
  --data-dir "$data/broker" >"$state" &
broker=$!
trap 'kill "$broker" 2>/dev/null; wait "$broker" 2>/dev/null; rm -rf "$data"' EXIT

# The broker prints one line of state (with its address) once it listens.
for _ in $(seq 1 300); do
  [ -s "$state" ] && break
  kill -0 "$broker" 2>/dev/null || { echo "[example] the broker did not start" >&2; exit 1; }
  sleep 0.1
done
addr=$(sed -n 's/.*"grpc_addr":"\([^"]*\)".*/\1/p' "$state")
[ -n "$addr" ] || { echo "[example] the broker did not report its address" >&2; exit 1; }
echo "[example] broker on $addr" >&2

"$RILL_BIN" --log-level warn produce --server "$addr" "$@"
RILL_SERVER=$addr "$RILL_BIN" --log-level warn run --set "state.checkpoints.dir=$data/checkpoints" "$job"
