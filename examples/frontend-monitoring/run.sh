#!/usr/bin/env bash
# Front-end monitoring on a broker of its own, in one command.
here=$(dirname "$0")
exec "$here/../run-on-own-broker.sh" "$here/job.sql" --topic beacons "$here/beacons.jsonl"
