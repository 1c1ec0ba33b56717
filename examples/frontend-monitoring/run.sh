#!/usr/bin/env bash
# Front-end beacons over HTTP → per page and minute → MySQL + Parquet lake,
# in one command. Installs mariadb-server when root with apt-get, builds
# the example (release) and runs it: it starts its own MariaDB and the
# job's HTTP ingest on free loopback ports and leaves nothing behind.
# (run-from-topic.sh runs the same metrics from a topic instead.)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
RILL_SCRIPT=example
. scripts/lib/services.sh
need_debs mariadbd:mariadb-server mariadb-install-db:mariadb-server
say "building and running the example (release; the first build takes a while)"
exec cargo run --release --quiet --example frontend-monitoring
