#!/usr/bin/env bash
# bench/replsync.sh - the primary's latency while a real replica full-syncs
# from it, for redis-ckpt (checkpoint to a temporary image, a forked helper
# restores it and streams the RDB) and redis-server 7.0 (fork, diskless
# sync), in the same run, with the open-loop probe bench/loadgen (requests
# scheduled at a fixed rate, each charged from its scheduled send time, so
# a stall counts for every request it delays).
#
# For each primary: populate KEYS keys x 64 B, then loadgen windows of WIN
# seconds at RATE req/s (50% SET):
#   before  nothing else going on;
#   during  a `redis-server --replicaof` replica started 0.2 s in: the
#           primary snapshots, sends the RDB, then the held-back stream;
#           the sync ends when the replica reports master_link_status:up;
#   bgsave  a BGSAVE at 0.01 s, for scale (the primary's own snapshot).
# Each window reports exact p50/p99/max over all its requests; the sync's
# own interval (from its start to the replica's link up) is read from
# loadgen's 50 ms trace: the worst request in it, and how many of its
# 50 ms buckets had a p99 over 10 ms.  Then `redis-cli --rdb` (outside the
# windows) gives the RDB's size.  The load average is printed per server.
#
#   bench/replsync.sh [KEYS [RATE [WIN]]]     defaults 3000000 10000 20
# REDIS_CKPT=path: another redis-ckpt binary; REDIS_CKPT_BASE=path: also
# that one (e.g. main's, for a before/after pair in the same run), as
# "redis-ckpt-base" between redis-server and redis-ckpt; ONLY=redis-server|redis-ckpt: one primary only.
# WARM=1: a BGSAVE (waited for) after populating, so that the sync's
# checkpoint is not the heap's first (a heap's first checkpoint costs
# redis-ckpt's loop 100-450 ms in its first second, BGSAVE or sync alike).
set -u
cd "$(dirname "$0")/.."
KEYS=${1:-3000000} RATE=${2:-10000} WIN=${3:-20}
B=${CKPT_BUILD:-build}
LG=$B/bench/loadgen
RC=${REDIS_CKPT:-examples/redis-ckpt/redis-ckpt}
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
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
load() { cut -d' ' -f1-3 /proc/loadavg; }

# the sync's interval [$2, $3] ms from loadgen's start in trace $1:
# "max_us buckets stall_buckets"
sync_slice() {
	awk -v a="$2" -v b="$3" '!/^#/ && $1 + 50 > a && $1 < b {
		n++; if ($5 > m) m = $5; if ($4 > 10000) s++ }
		END { printf "%d %d %d\n", m, n, s }' "$1"
}

run() {
	local name=$1; shift
	local port rport
	port=$(free_port)
	mkdir -p "$W/$name/rep"
	"$@" --port "$port" >"$W/$name/log" 2>&1 &
	local pid=$!
	pids+=("$pid")
	"$LG" --port "$port" --ready --timeout 120 >/dev/null || { echo "$name did not start"; return 1; }
	local tp0 tp1
	tp0=$(now_ms)
	"$LG" --port "$port" --populate "$KEYS" --value-size 64 >/dev/null
	tp1=$(now_ms)
	if [ "${WARM:-0}" = 1 ]; then
		redis-cli -p "$port" bgsave >/dev/null
		sleep 0.5
		while redis-cli -p "$port" info persistence | grep -q '^rdb_bgsave_in_progress:1'; do sleep 0.1; done
	fi
	local l_before l_during
	l_before=$(load)
	"$LG" --port "$port" --rate "$RATE" --duration "$WIN" --keys "$KEYS" >"$W/$name/before"

	# the sync window
	rport=$(free_port)
	local tl t0 t1 up=0
	tl=$(now_ms)
	"$LG" --port "$port" --rate "$RATE" --duration "$WIN" --keys "$KEYS" --trace "$W/$name/trace" \
		>"$W/$name/during" &
	local lg=$!
	sleep 0.2
	t0=$(now_ms)
	redis-server --port "$rport" --replicaof 127.0.0.1 "$port" --save "" --appendonly no \
		--dir "$W/$name/rep" --logfile "$W/$name/rep/log" --daemonize no >/dev/null 2>&1 &
	local rpid=$!
	pids+=("$rpid")
	while [ $(( $(now_ms) - t0 )) -lt 600000 ]; do
		if redis-cli -p "$rport" info replication 2>/dev/null | grep -q '^master_link_status:up'; then
			up=1
			break
		fi
		sleep 0.05
	done
	t1=$(now_ms)
	wait "$lg"
	l_during=$(load)
	local slice
	slice=$(sync_slice "$W/$name/trace" $((t0 - tl)) $((t1 - tl)))
	kill "$rpid"
	wait "$rpid" 2>/dev/null

	"$LG" --port "$port" --rate "$RATE" --duration "$WIN" --keys "$KEYS" --save-at 0.01 >"$W/$name/bgsave"
	redis-cli -p "$port" --rdb "$W/$name/sync.rdb" >/dev/null 2>&1
	local rdb
	rdb=$(stat -c %s "$W/$name/sync.rdb" 2>/dev/null || echo 0)

	printf '%s: populate %d keys %d ms; RDB %d MB; load before %s, after the sync window %s\n' "$name" "$KEYS" \
		$((tp1 - tp0)) $((rdb >> 20)) "$l_before" "$l_during"
	printf '  before        p50 %7s us  p99 %8s us  max %9s us\n' \
		"$(field p50_us "$W/$name/before")" "$(field p99_us "$W/$name/before")" "$(field max_us "$W/$name/before")"
	printf '  sync window   p50 %7s us  p99 %8s us  max %9s us   sync %d ms%s; in the sync: max %s us, %s of %s 50-ms buckets p99 > 10 ms\n' \
		"$(field p50_us "$W/$name/during")" "$(field p99_us "$W/$name/during")" "$(field max_us "$W/$name/during")" \
		$((t1 - t0)) "$([ "$up" = 1 ] || echo ' (NOT DONE)')$([ $((t1 - tl)) -gt $((WIN * 1000)) ] && echo ' (longer than the window)')" \
		$(echo "$slice" | awk '{print $1, $3, $2}' | { read -r m s n; echo "$m $s $n"; })
	printf '  BGSAVE window p50 %7s us  p99 %8s us  max %9s us   (%s)\n' \
		"$(field p50_us "$W/$name/bgsave")" "$(field p99_us "$W/$name/bgsave")" "$(field max_us "$W/$name/bgsave")" \
		"$(sed -n 's/.*snapshot .*duration_ms=\([0-9.]*\).*/BGSAVE \1 ms/p' "$W/$name/bgsave")"
	# where in the sync the slow requests were: the worst per 5 s from its start
	printf '  worst request per 5 s from the sync start (ms):'
	awk -v a=$((t0 - tl)) '!/^#/ && $1 + 50 > a { k = int(($1 - a) / 5000); if ($5 > m[k]) m[k] = $5; if (k > n) n = k }
		END { for (i = 0; i <= n; i++) printf " %d", m[i] / 1000; print "" }' "$W/$name/trace"
	grep -E "Starting full sync|checkpoint cut|Sync helper|RDB transfer|succeeded|fork|Background" "$W/$name/log" | head -7 | sed 's/^/    /'
	# redis-ckpt: the sync's checkpoint as libckpt saw it (pause, traps, pool)
	redis-cli -p "$port" info replication 2>/dev/null | tr -d '\r' | grep -E '^ckpt_sync_[a-z_]+:' |
		tr '\n' ' ' | sed 's/^./    &/'
	echo
	kill "$pid"
	wait "$pid" 2>/dev/null
}

echo "replsync: $KEYS keys x 64 B, $RATE req/s open loop (50% SET), ${WIN} s windows; $(nproc) CPUs; load $(load)"
[ "${ONLY:-redis-server}" = redis-server ] &&
run redis-server redis-server --bind 127.0.0.1 --save "" --appendonly no --dir "$W" \
	--repl-diskless-sync yes --repl-diskless-sync-delay 0 --logfile ""
[ -n "${REDIS_CKPT_BASE:-}" ] && [ "${ONLY:-redis-ckpt}" = redis-ckpt ] &&
run redis-ckpt-base "$REDIS_CKPT_BASE" --dir "$W" --save "" --heap-size 4gb
[ "${ONLY:-redis-ckpt}" = redis-ckpt ] &&
run redis-ckpt "$RC" --dir "$W" --save "" --heap-size 4gb
