#!/usr/bin/env bash
# `make demo`: redis-ckpt, a Redis-protocol server whose keyspace lives in a
# libckpt heap, takes a BGSAVE under write load and restarts from the image.
#
#  1. start redis-ckpt on a free port in a temp dir
#  2. load a few hundred MB with redis-benchmark, plus 1000 sample keys
#  3. BGSAVE while redis-benchmark keeps writing; right after BGSAVE's reply
#     the samples and loaded keys are overwritten; show progress
#  4. restart the server from the image (mapped back, not parsed)
#  5. check DBSIZE and values against what was written before the BGSAVE
#  6. print a summary; everything started here is stopped on every exit path
#
# Builds nothing (make demo builds first).  Environment: DEMO_KEYS (distinct
# keys to aim for, default 1000000), DEMO_VALUE (value bytes, default 256),
# DEMO_MODE (thread|sigbus|fork, default thread).
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1
cd "$(dirname "$0")"
HERE=$(pwd)
BIN=$HERE/redis-ckpt
KEYS=${DEMO_KEYS:-1000000}
VAL=${DEMO_VALUE:-256}
MODE=${DEMO_MODE:-thread}
[ -x "$BIN" ] || { echo "demo: $BIN is not built (run make demo)"; exit 1; }
command -v redis-benchmark >/dev/null || { echo "demo: redis-benchmark missing (apt-get install redis-tools)"; exit 1; }

TMP=$(mktemp -d /tmp/redis-ckpt-demo.XXXXXX)
SERVER_PID="" W1_PID="" W2_PID=""
cleanup() {
	local p
	for p in $W1_PID $W2_PID $SERVER_PID; do
		kill -9 "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cli() { redis-cli -p "$PORT" "$@"; }
info() { cli INFO persistence | tr -d '\r' | sed -n "s/^$1://p"; }
now() { date +%s.%N; }
ms_since() { python3 -c "import sys; print('%.0f' % ((float(sys.argv[2]) - float(sys.argv[1])) * 1000))" "$1" "$(now)"; }

start_server() {
	"$BIN" --port "$PORT" --dir "$TMP" --logfile "$TMP/server.log" --save "" --heap-size 3gb \
		--snapshot-mode "$MODE" --incremental yes &
	SERVER_PID=$!
	local i
	for i in $(seq 1 600); do
		if [ "$(cli PING 2>/dev/null)" = PONG ]; then return 0; fi
		if ! kill -0 "$SERVER_PID" 2>/dev/null; then
			echo "demo: the server did not start:"; tail -n 20 "$TMP/server.log"; exit 1
		fi
		sleep 0.05
	done
	echo "demo: the server did not answer PING"; exit 1
}

echo "== redis-ckpt demo: port $PORT, dir $TMP, snapshot mode $MODE"
start_server

echo "== 1. loading ~$KEYS keys x $VAL bytes with redis-benchmark (pipelined)"
t0=$(now)
redis-benchmark -p "$PORT" -q -t set -n $((KEYS * 2)) -r "$KEYS" -d "$VAL" -P 32 -c 20 2>&1 | tr '\r' '\n' | grep -a "requests per second" || true
python3 "$HERE/demo_check.py" "$PORT" samples-write before 1000
load_ms=$(ms_since "$t0")
dbsize0=$(cli DBSIZE)
used=$(cli INFO memory | tr -d '\r' | sed -n 's/^used_memory://p')
echo "   $dbsize0 keys (incl. 1000 sample:* keys), heap extent $((used / 1048576)) MB, loaded in $((load_ms / 1000)).$(( (load_ms % 1000) / 100 )) s"

echo "== 2. BGSAVE while redis-benchmark keeps writing"
# writer 1 runs before, during and after the BGSAVE (new hot:* keys)
redis-benchmark -p "$PORT" -q -n 1000000000 -r 1000000 -P 16 -c 4 SET 'hot:__rand_int__' 'written-around-the-bgsave' >/dev/null 2>&1 &
W1_PID=$!
sleep 1
cmds0=$(cli INFO stats | tr -d '\r' | sed -n 's/^total_commands_processed://p')
t_bg=$(now)
# BGSAVE, and at once (same client) every sample key and as many loaded keys
# as the checkpoint's duration allows are overwritten with other values: none
# of this may reach the image.
python3 "$HERE/demo_check.py" "$PORT" bgsave-and-write after 1000 "$KEYS" >"$TMP/writes.txt" 2>&1 &
W2_PID=$!
while ! grep -q "^BGSAVE" "$TMP/writes.txt" 2>/dev/null; do
	kill -0 "$W2_PID" 2>/dev/null || break
	sleep 0.02
done
# one INFO per line of progress: its fields are from the same instant
field() { sed -n "s/^$1://p" <<<"$snap"; }
while :; do
	snap=$(cli INFO persistence | tr -d '\r')
	[ "$(field rdb_bgsave_in_progress)" = 1 ] || break
	done_b=$(field ckpt_progress_done_bytes) total_b=$(field ckpt_progress_total_bytes)
	pct=0
	[ "${total_b:-0}" -gt 0 ] && pct=$((done_b * 100 / total_b))
	printf "   progress %3d%%  %5d / %5d MB   traps %-7s pool peak %s KB\n" "$pct" $((done_b / 1048576)) \
		$((total_b / 1048576)) "$(field ckpt_traps)" $(( $(field ckpt_pool_peak_bytes) / 1024 ))
	sleep 0.1
done
ckpt_ms=$(ms_since "$t_bg")
wait "$W2_PID" || { cat "$TMP/writes.txt"; echo "demo: the BGSAVE client failed"; exit 1; }
W2_PID=""
sed 's/^/   /' "$TMP/writes.txt"
cmds1=$(cli INFO stats | tr -d '\r' | sed -n 's/^total_commands_processed://p')
kill "$W1_PID" 2>/dev/null || true
wait "$W1_PID" 2>/dev/null || true
W1_PID=""
status=$(info rdb_last_bgsave_status)
if [ "$status" != ok ]; then
	echo "demo: BGSAVE failed ($(info ckpt_last_error)):"; tail -n 20 "$TMP/server.log"; exit 1
fi
pause_us=$(info ckpt_pause_us) traps=$(info ckpt_traps) pool=$(info ckpt_pool_peak_bytes) pool_waits=$(info ckpt_pool_waits)
written=$(info ckpt_bytes_written) dur_us=$(info ckpt_duration_us) keys_at=$(info ckpt_keys_at_begin)
image_bytes=$(stat -c %s "$TMP/dump.ckpt")
echo "   done: pause ${pause_us} us, ${traps} traps, image $((image_bytes / 1048576)) MB in $((dur_us / 1000)) ms"
cli SHUTDOWN NOSAVE >/dev/null 2>&1 || true
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""

echo "== 3. restart from the image"
t_r=$(now)
start_server
up_ms=$(ms_since "$t_r")
restore_line=$(grep -a "DB loaded from checkpoint image" "$TMP/server.log" | tail -n 1)
echo "   ${restore_line#* * }"
restore_us=$(info ckpt_restore_us)

echo "== 4. checks against what was written before the BGSAVE"
dbsize1=$(cli DBSIZE)
ok=1
if [ "$dbsize1" = "$keys_at" ]; then
	echo "   DBSIZE $dbsize1 = keys at the BGSAVE instant"
else
	echo "   DBSIZE $dbsize1, but $keys_at keys existed at the BGSAVE instant: MISMATCH"; ok=0
fi
s1=$(python3 "$HERE/demo_check.py" "$PORT" samples-check before 1000) || ok=0
echo "   $s1"
s2=$(python3 "$HERE/demo_check.py" "$PORT" strlen-all "$VAL") || ok=0
echo "   $s2"
cli SHUTDOWN NOSAVE >/dev/null 2>&1 || true
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""

dur_s=$(python3 -c "print('%.2f' % ($dur_us / 1e6))")
rate=$(python3 -c "print('%.0f' % ($written / 1048576 / max($dur_us, 1) * 1e6))")
wrate=$(python3 -c "print('%.0f' % (($cmds1 - $cmds0) / max($ckpt_ms, 1) * 1000))")
cat <<EOF

==================== redis-ckpt demo summary ====================
 dataset         : $keys_at keys at BGSAVE (loaded key:*, sample:*, hot:*), heap $((used / 1048576)) MB
 snapshot mode   : $MODE ($( [ "$MODE" = fork ] && echo "libckpt's fork() backend, for comparison" || echo "libckpt userfaultfd write-protect, no fork()"))
 pause           : $pause_us us  (INFO latest_fork_usec)
 traps           : $traps writes trapped, pool peak $((pool / 1024)) KB, $pool_waits traps waited for a pool slot
 image           : $((image_bytes / 1048576)) MB, written in $dur_s s = $rate MB/s
 client writes   : $((cmds1 - cmds0)) commands served during the checkpoint window, ~$wrate/s
 restore         : $((restore_us / 1000)) ms to map the image back ($up_ms ms until PING answered)
 keys restored   : $dbsize1 (expected $keys_at)
 values          : $( [ $ok = 1 ] && echo "all checked values are those written before BGSAVE" || echo "MISMATCH (see above)")
=================================================================
EOF
[ $ok = 1 ] || exit 1
