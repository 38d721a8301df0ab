#!/usr/bin/env bash
# A full sync read raw: nothing after the RDB's EOF mark before the first
# REPLCONF ACK, then exactly the writes after the sync's instant (RDB +
# stream replayed into redis-server = the primary, expiry times to the ms);
# rdb-only clients get no stream; redis-cli --rdb ends under writes.
set -u
. "$(dirname "$0")/lib.bash"
rc_run sync_stream.py
