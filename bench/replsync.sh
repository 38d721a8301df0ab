#!/usr/bin/env bash
# bench/replsync.sh - the primary's latency while a replica full-syncs, for
# redis-ckpt (checkpoint to a pipe, helper process serialises the RDB) and
# redis-server (fork, diskless sync), measured in the same run with the
# open-loop probe bench/loadgen (the one bench/run.sh uses for BGSAVE).
#
# For each server: populate KEYS keys, then two back-to-back loadgen runs of
# WIN seconds at RATE req/s (50% SET): the first with nothing else going on
# (the window before), the second with `redis-cli --rdb /dev/null` started
# at its first instant (a full sync: SYNC, snapshot, RDB streamed).  Each
# loadgen run reports exact p50/p99/max over its whole window, charged from
# each request's scheduled send time (no coordinated omission).  A third
# window, with a BGSAVE at its start, shows each server's snapshot cost on
# the same dataset for scale.
#
#   bench/replsync.sh [KEYS [RATE [WIN]]]     defaults 1000000 10000 4
set -u
cd "$(dirname "$0")/.."
KEYS=${1:-1000000} RATE=${2:-10000} WIN=${3:-4}
B=${CKPT_BUILD:-build}
LG=$B/bench/loadgen
RC=examples/redis-ckpt/redis-ckpt
[ -x "$LG" ] && [ -x "$RC" ] || { echo "build first: make"; exit 1; }
W=$(mktemp -d /tmp/replsync.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
	rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

field() { sed -n "s/.*window=all .*$1=\([0-9.]*\).*/\1/p" "$2"; }

run() {
	local name=$1; shift
	PORT=$(free_port)
	mkdir -p "$W/$name"
	"$@" --port "$PORT" >"$W/$name/log" 2>&1 &
	local pid=$!
	pids+=("$pid")
	"$LG" --port "$PORT" --ready --timeout 120 >/dev/null || { echo "$name did not start"; return 1; }
	"$LG" --port "$PORT" --populate "$KEYS" --value-size 64 >/dev/null
	"$LG" --port "$PORT" --rate "$RATE" --duration "$WIN" --keys "$KEYS" >"$W/$name/before"
	"$LG" --port "$PORT" --rate "$RATE" --duration "$WIN" --keys "$KEYS" >"$W/$name/during" &
	local lg=$!
	local t0 t1
	t0=$(date +%s%N)
	redis-cli -p "$PORT" --rdb "$W/$name/sync.rdb" >"$W/$name/cli" 2>&1
	t1=$(date +%s%N)
	wait "$lg"
	# the same window around a BGSAVE (loadgen's own --save-at), for scale
	"$LG" --port "$PORT" --rate "$RATE" --duration "$WIN" --keys "$KEYS" --save-at 0.01 >"$W/$name/bgsave"
	local rdb
	rdb=$(stat -c %s "$W/$name/sync.rdb" 2>/dev/null || echo 0)
	printf '%-12s sync %6d ms, RDB %5d MB | before: p50 %6s us p99 %7s us max %8s us | during sync: p50 %6s us p99 %7s us max %8s us\n' \
		"$name" $(( (t1 - t0) / 1000000 )) $(( rdb >> 20 )) \
		"$(field p50_us "$W/$name/before")" "$(field p99_us "$W/$name/before")" "$(field max_us "$W/$name/before")" \
		"$(field p50_us "$W/$name/during")" "$(field p99_us "$W/$name/during")" "$(field max_us "$W/$name/during")"
	printf '%-12s %33s | during BGSAVE: p50 %6s us p99 %7s us max %8s us (%s)\n' "" "" \
		"$(field p50_us "$W/$name/bgsave")" "$(field p99_us "$W/$name/bgsave")" "$(field max_us "$W/$name/bgsave")" \
		"$(sed -n 's/.*snapshot .*duration_ms=\([0-9.]*\).*/BGSAVE \1 ms/p' "$W/$name/bgsave")"
	grep -E "Starting full sync|succeeded|fork" "$W/$name/log" | head -3 | sed 's/^/    /'
	# redis-ckpt: the sync's checkpoint as libckpt saw it (traps, pool)
	redis-cli -p "$PORT" info replication 2>/dev/null | tr -d '\r' | grep -E '^ckpt_sync_[a-z_]+:' |
		tr '\n' ' ' | sed 's/^./    &/'
	echo
	kill "$pid"
	wait "$pid" 2>/dev/null
}

echo "replsync: $KEYS keys x 64 B, $RATE req/s open loop (50% SET), ${WIN} s windows; load $(cut -d' ' -f1-3 /proc/loadavg)"
run redis-server redis-server --bind 127.0.0.1 --save "" --appendonly no --dir "$W" \
	--repl-diskless-sync yes --repl-diskless-sync-delay 0 --logfile ""
run redis-ckpt "$RC" --dir "$W" --save "" --heap-size 2gb
