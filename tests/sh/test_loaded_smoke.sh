#!/usr/bin/env bash
# A snapshot of a loaded redis-ckpt (default snapshot mode) is consistent and
# does not stall the server (issue 10's method, small): 200k keys of 100
# bytes, a background writer overwriting random existing keys with values
# that carry a write counter, an open-loop probe at 2,000 SET/s, BGSAVE; then
#   - the snapshot completes (rdb_last_bgsave_status ok);
#   - INFO persistence shows the pause fields (pause, preparation, pages left
#     for the cut), and BGSAVE was prepared in passes;
#   - the server restarted on the image has every key, and the values are one
#     point in time: with M the highest write counter found in the image,
#     every key holds exactly its last write numbered <= M (the writer uses one
#     pipelined connection, so the server applied writes in counter order), and
#     the image was cut while the writer ran (0 < M < writes acknowledged);
#   - the probe's max latency in the window from BGSAVE is not catastrophically
#     above the window before it (bound explained at LAT_BOUND below).
# The same method at scale, with figures instead of bounds: bench/run.sh's
# loaded section.
# Exit 0 pass, 1 fail.
set -u
cd "$(dirname "$0")/../.."
B=${CKPT_BUILD:-build}
RC=examples/redis-ckpt/redis-ckpt
NKEYS=200000 VSIZE=100 SEED=$$
T=$(mktemp -d /tmp/ckpt-loaded-smoke.XXXXXX)
srv="" wpid=""
stop_pid() {
	[ -n "$1" ] || return 0
	kill "$1" 2>/dev/null
	for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}
cleanup() {
	stop_pid "$wpid"
	stop_pid "$srv"
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }
# field FILE REGEX KEY: value of KEY= on the first line matching REGEX
field() { grep -E "$2" "$1" | head -n 1 | tr ' ' '\n' | sed -n "s/^$3=//p"; }

for p in "$B/bench/loadgen" "$RC"; do
	[ -x "$p" ] || { echo "FAIL: $p not built (make builds it)"; exit 1; }
done
command -v redis-cli >/dev/null || { echo "FAIL: needs redis-cli (Debian redis-tools: make deps)"; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_server() {
	"$RC" --port "$port" --bind 127.0.0.1 --dir "$T" --dbfilename dump.ckpt --save '' \
		--heap-size 512mb >>"$T/server.log" 2>&1 &
	srv=$!
	timeout 60 "$B/bench/loadgen" --port "$port" --ready --timeout 50 >"$T/ready.txt" ||
		{ echo "FAIL: redis-ckpt did not answer: $(tail -n 5 "$T/server.log")"; exit 1; }
}
start_server
timeout 120 "$B/bench/loadgen" --port "$port" --populate "$NKEYS" --value-size "$VSIZE" >"$T/pop.txt" &&
	timeout 60 "$B/bench/loadgen" --port "$port" --populate 1000 --value-size "$VSIZE" --key-prefix probe: >>"$T/pop.txt" ||
	{ echo "FAIL: populate: $(cat "$T/pop.txt")"; exit 1; }

# the writer runs through the probe and stops when told (duration is a bound)
timeout -k 5 120 "$B/bench/loadgen" --port "$port" --writer --rate 20000 --duration 90 --keys "$NKEYS" \
	--value-size "$VSIZE" --seed "$SEED" >"$T/writer.txt" 2>&1 &
wpid=$!
sleep 0.5
# the probe writes its own probe:* keys (all created above: no dictionary
# growth), so the writer's counter check sees only the writer's writes
timeout -k 5 90 "$B/bench/loadgen" --port "$port" --rate 2000 --conns 4 --set-ratio 1 --duration 6.5 \
	--keys 1000 --key-prefix probe: --value-size "$VSIZE" --save-at 3 --window 3 --save-wait 40 \
	--pid "$srv" >"$T/probe.txt" 2>&1 || fail "probe: $(cat "$T/probe.txt")"
info=$(redis-cli -p "$port" info persistence | tr -d '\r')
stop_pid "$wpid"; wpid=""
cat "$T/probe.txt"
grep -E '^(ckpt_|rdb_|latest_fork)' <<<"$info" | tr '\n' ' '; echo

# ------------------------------------------------------------ the snapshot
st=$(field "$T/probe.txt" "^loadgen snapshot " status)
[ "$st" = ok ] || fail "snapshot did not complete: $(grep snapshot "$T/probe.txt"); $(grep -E 'rdb_last_bgsave_status|ckpt_last_error' <<<"$info")"
grep -q '^rdb_last_bgsave_status:ok$' <<<"$info" || fail "INFO: $(grep rdb_last_bgsave_status <<<"$info")"
# the pause fields: the cut's pause, the preparation's duration and passes,
# the pages the cut had to protect (BGSAVE prepares in the background and the
# event loop cuts: a BGSAVE that skipped preparation has no passes)
for f in ckpt_pause_us latest_fork_usec ckpt_prepare_us ckpt_prep_passes ckpt_cut_pages; do
	grep -qE "^$f:[0-9]+$" <<<"$info" || fail "INFO persistence has no $f"
done
grep -qE '^ckpt_prep_passes:[1-9][0-9]*$' <<<"$info" || fail "BGSAVE was not prepared in passes: $(grep ckpt_prep_passes <<<"$info")"
[ -s "$T/dump.ckpt" ] || fail "no image written"
[ $fails = 0 ] && ok "snapshot under load completed ($(grep -E '^(ckpt_pause_us|ckpt_prepare_us|ckpt_prep_passes|ckpt_cut_pages|ckpt_duration_us):' <<<"$info" | tr '\n' ' '))"

# ------------------------------------------------------------ latency
# LAT_BOUND: after-window max <= min(2 x before-window max + 500 ms, 900 ms).
# Why: at 200k keys (~40 MB heap) the pause is 1-12 ms, yet with the two CPUs
# shared (load ~8) the probe's max was 5-35 ms before BGSAVE and 33-141 ms
# after it (trap path and writer competing with the server: issue 10's part
# 1), so a tight relative bound would fail on a busy CI VM for reasons this
# test is not about; 2x plus half a second passes that with margin.  The
# 900 ms cap keeps it meaningful on a noisy run: a one-second stall of the
# server (what issue 10 measured at 4 GB) fails whatever the before-window
# showed (checked with a 1 s SIGSTOP of the server after BGSAVE).
bmax=$(field "$T/probe.txt" "^loadgen window=before " max_us)
amax=$(field "$T/probe.txt" "^loadgen window=after " max_us)
bcnt=$(field "$T/probe.txt" "^loadgen window=before " count)
acnt=$(field "$T/probe.txt" "^loadgen window=after " count)
# 2,000/s over 3 s is 6,000 probes per window: a window that lost a third
# of them (unanswered when the probe gave up) is a failure
if [ "${bcnt:-0}" -lt 4000 ] 2>/dev/null || [ "${acnt:-0}" -lt 4000 ] 2>/dev/null; then
	fail "probe windows too small: before $bcnt after $acnt requests"
elif [ -z "$bmax" ] || [ -z "$amax" ]; then
	fail "probe printed no before/after windows: $(cat "$T/probe.txt")"
else
	bound=$(( bmax * 2 + 500000 )); [ $bound -gt 900000 ] && bound=900000
	if [ "$amax" -le "$bound" ]; then
		ok "probe max: before ${bmax} us, after ${amax} us (bound ${bound} us)"
	else
		fail "probe max after BGSAVE ${amax} us > bound ${bound} us (before: ${bmax} us)"
	fi
fi

# ------------------------------------------------------------ restore
f0=$fails
redis-cli -p "$port" shutdown nosave >/dev/null 2>&1
wait "$srv" 2>/dev/null; srv=""
start_server
python3 - "$port" "$NKEYS" "$VSIZE" "$SEED" "$T/writer.txt" <<'EOF' || fail "restored image is not one point in time"
import re, socket, sys
port, nkeys, vsize, seed, wfile = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
M64 = (1 << 64) - 1
sock = socket.create_connection(("127.0.0.1", port), timeout=30)
rf = sock.makefile("rb")

def cmd(*args):
    """One command, its reply: int, bytes, None or a list of those (RESP2)."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    sock.sendall(out)
    return reply()

def reply():
    line = rf.readline()
    t, rest = line[:1], line[1:-2]
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        return None if n < 0 else rf.read(n + 2)[:-2]
    if t == b"*":
        return [reply() for _ in range(int(rest))]
    if t == b"-":
        sys.exit("error reply: %r" % rest)
    return rest

acked = int(re.search(r"acked=(\d+)", open(wfile).read()).group(1))
dbsize = cmd("DBSIZE")
if dbsize != nkeys + 1000:
    sys.exit("dbsize %d, want %d" % (dbsize, nkeys + 1000))
vals = []
for lo in range(0, nkeys, 2000):
    vals += cmd("MGET", *["key:%012d" % i for i in range(lo, min(nkeys, lo + 2000))])
pop = bytes((ord("a") + i % 26) for i in range(vsize))   # loadgen --populate's value
ctr = []
for i, v in enumerate(vals):
    if v is None:
        sys.exit("key:%012d missing" % i)
    if v == pop:
        ctr.append(0)
        continue
    m = re.fullmatch(rb"c=(\d+);x*", v)
    if not m or len(v) != vsize:
        sys.exit("key:%012d holds %r" % (i, v[:40]))
    ctr.append(int(m.group(1)))
M = max(ctr)
# replay the writer's key sequence (bench_rand, splitmix64) up to write M
last = {}
s = seed
for c in range(1, M + 1):
    s = (s + 0x9e3779b97f4a7c15) & M64
    z = s
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    last[(z ^ (z >> 31)) % nkeys] = c
bad = [i for i in range(nkeys) if ctr[i] != last.get(i, 0)]
print("image cut at write %d of %d acknowledged; %d keys overwritten before it" % (M, acked, len(last)))
if bad:
    i = bad[0]
    sys.exit("%d keys not at the cut, e.g. key:%012d holds write %d, its last write <= %d is %d"
             % (len(bad), i, ctr[i], M, last.get(i, 0)))
if not (0 < M < acked):
    sys.exit("the cut (write %d) was not taken while the writer ran (%d writes)" % (M, acked))
EOF
[ $fails = $f0 ] && ok "restart on the image: $NKEYS keys, every value as of one write of the writer"

echo "$fails failure(s)"
[ $fails = 0 ]
