#!/usr/bin/env bash
# Rotated application logs → file tail → search index + Parquet lake, in
# one command. Installs osmem-server into Rill's Python venv, builds the
# example (release) and runs it: it starts its own search server on a free
# loopback port, writes and rotates logs in a temp dir, and leaves nothing
# behind.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
RILL_SCRIPT=example
. scripts/lib/services.sh
python_venv
say "building and running the example (release; the first build takes a while)"
exec cargo run --release --quiet --example logs-to-es-and-lake
