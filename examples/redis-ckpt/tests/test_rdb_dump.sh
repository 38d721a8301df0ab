#!/usr/bin/env bash
# DUMP/RESTORE between redis-ckpt and redis-server 7.0 both ways; errors and
# options reply as redis-server's.
set -u
. "$(dirname "$0")/lib.bash"
rc_run rdb_dump.py
