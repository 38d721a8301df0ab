#!/usr/bin/env bash
# redis-benchmark -q -n 20000 with its default test list (PING, SET, GET,
# INCR, list, set, hash and zset commands, LRANGE_100..600, MSET) runs
# against redis-ckpt with zero errors.
set -u
. "$(dirname "$0")/lib.bash"
rc_run bench.py -n 20000
