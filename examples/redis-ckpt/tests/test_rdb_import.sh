#!/usr/bin/env bash
# A dump.rdb written by redis-server 7.0 (every type and encoding, TTLs)
# loads into redis-ckpt with identical contents and is never overwritten;
# damaged RDBs are refused with an offset and a reason.
set -u
. "$(dirname "$0")/lib.bash"
rc_run rdb_import.py
