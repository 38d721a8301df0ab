#!/usr/bin/env bash
# SIGKILL in the middle of BGSAVE: the restart comes up from the previous
# image, consistent, and the dead checkpoint's temp file is cleaned by the
# next one; damaged images (flipped byte, truncated, not an image) make the
# server refuse to start with a message naming the file.
set -u
. "$(dirname "$0")/lib.bash"
for mode in thread sigbus; do
	rc_run crash.py "$mode" || exit 1
done
