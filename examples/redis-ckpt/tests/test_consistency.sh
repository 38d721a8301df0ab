#!/usr/bin/env bash
# The consistency cut of BGSAVE, in both userfaultfd trap modes with
# incremental checkpoints on (and the fork backend for comparison): a stream
# of pipelined SET key:(i mod K) i with BGSAVE at known positions; after a
# SIGKILL and restart from the image every key holds exactly the last value
# written before the BGSAVE.
set -u
. "$(dirname "$0")/lib.bash"
for mode in thread sigbus fork; do
	rc_run consistency.py "$mode" || exit 1
done
