#!/usr/bin/env bash
# redis-ckpt as a primary: redis-cli --rdb gives a file redis-check-rdb and
# redis-server accept; real redis-server replicas match it after a full sync
# and after 100k writes.
set -u
. "$(dirname "$0")/lib.bash"
rc_run replication.py
