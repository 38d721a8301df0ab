#!/usr/bin/env bash
# `make demo`: the main job.  Runs the redis-ckpt demo when it is built,
# otherwise the kernel probe (`ckpt kcheck`).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x examples/redis-ckpt/redis-ckpt ] && [ -f examples/redis-ckpt/demo.sh ]; then
	exec bash examples/redis-ckpt/demo.sh
fi
exec build/ckpt kcheck
