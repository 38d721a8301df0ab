#!/usr/bin/env bash
# redis-ckpt speaks Redis: every supported command replies byte-for-byte as a
# real redis-server 7.0 run side by side; pipelining, inline commands,
# malformed RESP (protocol error, client closed, server goes on), maxclients,
# OOM on a full heap, requirepass, bad options, an interactive redis-cli.
set -u
. "$(dirname "$0")/lib.bash"
rc_run protocol.py
