#!/usr/bin/env bash
# --restore lazy|eager: the same dataset, warm-up in INFO, damaged blocks
# never served (eager refuses to start, lazy logs and refuses to save).
set -u
. "$(dirname "$0")/lib.bash"
rc_run restart.py
