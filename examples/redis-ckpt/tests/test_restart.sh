#!/usr/bin/env bash
# --restore lazy|eager: the same dataset, warm-up in INFO, damaged blocks
# never served (eager refuses to start, lazy stops when it finds the damage).
set -u
. "$(dirname "$0")/lib.bash"
rc_run restart.py
