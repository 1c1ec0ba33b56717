#!/usr/bin/env bash
# Order analytics on a broker of its own, in one command.
here=$(dirname "$0")
exec "$here/../run-on-own-broker.sh" "$here/job.sql" --topic orders --tag-field category "$here/orders.jsonl"
