#!/usr/bin/env bash
# Installs the Debian packages libckpt needs, only those that are missing.
# Idempotent: checks with pkg-config / command -v first; apt-get runs only if
# something is missing (and `apt-get update` once, before the first install).
set -euo pipefail

missing=()
need_pc() { pkg-config --exists "$1" 2>/dev/null || missing+=("$2"); }
need_cmd() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }

need_cmd pkg-config pkg-config
if command -v pkg-config >/dev/null 2>&1; then
	need_pc liburing liburing-dev
	need_pc libzstd libzstd-dev
	need_pc libxxhash libxxhash-dev
	need_pc criterion libcriterion-dev
fi
need_cmd clang clang
need_cmd redis-server redis-server
need_cmd redis-cli redis-tools
need_cmd redis-benchmark redis-tools
# Debian's python3-redis installs into Debian's python3, which may not be the
# first python3 on PATH (pyenv): ask dpkg, not an interpreter.
dpkg -s python3-redis >/dev/null 2>&1 || missing+=(python3-redis)
need_cmd gnuplot gnuplot-nox
need_cmd qemu-system-x86_64 qemu-system-x86
need_cmd cpio cpio
need_cmd mkswap util-linux
need_cmd zstd zstd

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
# de-duplicate
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "deps: installing missing Debian packages: ${missing[*]}"
if [ "$(id -u)" != 0 ]; then
	echo "deps: not root; install them with: sudo apt-get install ${missing[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
