#!/usr/bin/env bash
# --save rules, SAVE/BGSAVE/LASTSAVE/SHUTDOWN [NOSAVE], INFO persistence
# fields, every data type and TTLs across restarts, lazy expiry after restore.
set -u
. "$(dirname "$0")/lib.bash"
rc_run persistence.py
