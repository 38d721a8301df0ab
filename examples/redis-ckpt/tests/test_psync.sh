#!/usr/bin/env bash
# Partial resync: a redis-server 7.0 replica whose link breaks gets
# +CONTINUE and the backlog (sync_partial_ok), and a full resync when it
# missed more than the backlog holds; consistent after each.
set -u
. "$(dirname "$0")/lib.bash"
rc_run psync.py
