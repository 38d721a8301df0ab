#!/usr/bin/env bash
# redis-py's everyday calls (Debian's python3-redis, so Debian's python3)
# give the same results against redis-ckpt as against redis-server 7.0.
set -u
. "$(dirname "$0")/lib.bash"
/usr/bin/python3 "$RC_TESTS_DIR/clients.py"
