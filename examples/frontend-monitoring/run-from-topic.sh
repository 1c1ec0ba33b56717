#!/usr/bin/env bash
# Front-end monitoring from a topic on a broker of its own (the sample
# beacons sent with `rill produce`), in one command.
here=$(dirname "$0")
exec "$here/../run-on-own-broker.sh" "$here/job.sql" --topic beacons "$here/beacons.jsonl"
