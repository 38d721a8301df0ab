#!/usr/bin/env bash
# Limits on unauthenticated clients (10 arguments, 16 KiB bulks) and AUTH.
set -u
. "$(dirname "$0")/lib.bash"
rc_run auth_limits.py
