#!/usr/bin/env bash
# MariaDB orders → CDC → enrich and aggregate → search index + MySQL table,
# in one command. Installs what it starts (mariadb-server when root with
# apt-get; osmem-server into Rill's Python venv), builds the example
# (release) and runs it: it starts its own MariaDB and search server on
# free loopback ports and leaves nothing behind.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
RILL_SCRIPT=example
. scripts/lib/services.sh
need_debs mariadbd:mariadb-server mariadb-install-db:mariadb-server
python_venv
say "building and running the example (release; the first build takes a while)"
exec cargo run --release --quiet --example cdc-to-es-and-mysql
