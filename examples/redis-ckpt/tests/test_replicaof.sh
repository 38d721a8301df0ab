#!/usr/bin/env bash
# REPLICAOF: redis-ckpt as a replica of redis-server 7.0 matches it after
# the full sync and after 100k writes; READONLY; ACKs; REPLICAOF NO ONE.
set -u
. "$(dirname "$0")/lib.bash"
rc_run replicaof.py
