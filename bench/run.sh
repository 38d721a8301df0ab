#!/usr/bin/env bash
# bench/run.sh - libckpt against what users would use instead, on this machine,
# in one run (issue 6).  Ratios between methods are the result; absolute
# times on a shared VM are noise.
#
#   bench/run.sh            quick: a few minutes on 2 cores
#   bench/run.sh --full     bigger heaps, more repetitions, 4 GiB pause point
#   options: --no-redis  --only faultlat,pause,memgrowth,throughput,alloc,redis,restart,loaded
#            --seed N    --out DIR (default bench/results)  --reps N (loaded)
#
# loaded (issue 10): redis-server and redis-ckpt in each snapshot mode, one
# after the other: N keys of 100 bytes (quick 2M, --full 20M), a
# redis-benchmark writer overwriting random existing keys, a 2,000 SET/s
# open-loop probe, BGSAVE; the probe's 5 s windows before and from BGSAVE,
# the server's INFO (ckpt_* / rdb_*) and the extra Pss.  --reps N times
# (default 1 quick, 3 full).
#
# Writes DIR/<date>-<host>.md (every figure, each comparison as a ratio to its
# baseline, the goals of issue 6 marked met/missed) and PNG plots next to it,
# and prints the summary table.  Raw program output is kept in
# DIR/tmp/<date>-<host>.raw/ (not committed).  Every process it starts is stopped on exit;
# hugetlb reservations are made and put back by bench/pause itself under the
# machine lock.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)

full=0 redis=1 only="" seed=${CKPT_SEED:-$(date +%s)} out=bench/results
while [ $# -gt 0 ]; do
	case $1 in
	--full) full=1 ;;
	--no-redis) redis=0 ;;
	--only) only=$2; shift ;;
	--seed) seed=$2; shift ;;
	--out) out=$2; shift ;;
	--reps) L_REPS=$2; shift ;;
	-h|--help) sed -n '2,24p' "$0"; exit 0 ;;
	*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
want() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }

if [ $full = 1 ]; then
	FL_PAGES=32768 FL_REPS=5 PAUSE_SIZES=256m,1g,4g MG_SIZE=1g TP_SIZE=1g
	R_KEYS=4000000 R_RATE=10000 R_DUR=20 R_SAVE_AT=4 R_REPS=3
	L_KEYS=20000000 L_HEAP=8gb L_REPS=${L_REPS:-3} PL_SIZES=1g,4g,8g
else
	FL_PAGES=8192 FL_REPS=5 PAUSE_SIZES=256m,1g MG_SIZE=256m TP_SIZE=256m
	R_KEYS=1000000 R_RATE=10000 R_DUR=8 R_SAVE_AT=2 R_REPS=3
	L_KEYS=2000000 L_HEAP=2gb L_REPS=${L_REPS:-1} PL_SIZES=1g,2g
fi
L_WIN=5 L_RATE=2000

# overrides for trying things out (the committed results use the defaults)
FL_PAGES=${BENCH_FL_PAGES:-$FL_PAGES} R_KEYS=${BENCH_REDIS_KEYS:-$R_KEYS} R_DUR=${BENCH_REDIS_DUR:-$R_DUR}
R_SAVE_AT=${BENCH_REDIS_SAVE_AT:-$R_SAVE_AT} R_RATE=${BENCH_REDIS_RATE:-$R_RATE}
R_REPS=${BENCH_REDIS_REPS:-$R_REPS}
L_KEYS=${BENCH_LOADED_KEYS:-$L_KEYS} PL_SIZES=${BENCH_PAUSE_LOADED_SIZES:-$PL_SIZES}

B=build
stamp=$(date -u +%Y-%m-%d)
host=$(hostname -s)
name="$stamp-$host"
mkdir -p "$out"
out=$(cd "$out" && pwd)
raw="$out/tmp/$name.raw"   # raw output: not committed (.gitignore)
rm -rf "$raw"
mkdir -p "$raw"
W=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-bench.XXXXXX")

# ------------------------------------------------------------ cleanup
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null && { sleep 0.2; kill -9 "$p" 2>/dev/null; }
	done
	wait 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "== $*" >&2; }
# 256m / 1g / bytes -> MiB
to_mib() {
	case $1 in
	*[kK]) echo $(( ${1%?} / 1024 )) ;;
	*[mM]) echo "${1%?}" ;;
	*[gG]) echo $(( ${1%?} * 1024 )) ;;
	*) echo $(( $1 / 1048576 )) ;;
	esac
}

# ------------------------------------------------------------ build
log "building"
targets="$B/libckpt.a $B/bench/faultlat $B/bench/pause $B/bench/memgrowth $B/bench/throughput $B/bench/loadgen"
[ -f bench/allocbench.c ] && targets="$targets $B/bench/allocbench"
ls libckpt/tool/*.c >/dev/null 2>&1 && targets="$targets $B/ckpt"
ls examples/redis-ckpt/*.c >/dev/null 2>&1 && targets="$targets examples/redis-ckpt/redis-ckpt"
if ! make -j2 -s $targets >"$raw/build.log" 2>&1; then
	# build what can be built: one broken target must not hide the others
	for t in $targets; do make -s "$t" >>"$raw/build.log" 2>&1 || echo "build failed: $t" >>"$raw/build.fail"; done
fi
[ -f "$raw/build.fail" ] && { log "some targets failed to build:"; cat "$raw/build.fail" >&2; }
for t in faultlat pause memgrowth throughput loadgen; do
	[ -x "$B/bench/$t" ] || { echo "run.sh: $B/bench/$t did not build (see $raw/build.log)" >&2; exit 1; }
done

if ! command -v gnuplot >/dev/null; then
	log "installing gnuplot-nox"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q gnuplot-nox >"$raw/apt.log" 2>&1 ||
		log "gnuplot-nox could not be installed: no plots"
fi

# ------------------------------------------------------------ environment
{
	echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "host=$host"
	echo "kernel=$(uname -r)"
	echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
	echo "ncpu=$(nproc)"
	echo "mem_kb=$(sed -n 's/^MemTotal: *\([0-9]*\).*/\1/p' /proc/meminfo)"
	echo "git=$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- libckpt bench 2>/dev/null || echo -dirty)"
	echo "seed=$seed"
	echo "mode=$([ $full = 1 ] && echo full || echo quick)"
	echo "thp=$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
	echo "loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
	echo "faultlat_pages=$FL_PAGES faultlat_reps=$FL_REPS pause_sizes=$PAUSE_SIZES memgrowth_size=$MG_SIZE throughput_size=$TP_SIZE redis_keys=$R_KEYS redis_rate=$R_RATE redis_reps=$R_REPS loaded_keys=$L_KEYS loaded_reps=$L_REPS loaded_window_s=$L_WIN loaded_probe_rate=$L_RATE pause_loaded_sizes=$PL_SIZES"
} >"$raw/env.txt"
if [ -x "$B/ckpt" ]; then
	"$B/ckpt" kcheck >"$raw/kcheck.txt" 2>&1
	echo "kcheck_rc=$?" >>"$raw/env.txt"
else
	echo "kcheck_rc=none (build/ckpt not built)" >>"$raw/env.txt"
fi
log "$(tr '\n' ' ' <"$raw/env.txt")"

# ------------------------------------------------------------ 1. fault latency
if want faultlat; then
	log "faultlat: $FL_PAGES pages x $FL_REPS reps"
	mkdir -p "$raw/cdf"
	timeout -k 10 1200 "$B/bench/faultlat" --pages "$FL_PAGES" --reps "$FL_REPS" --seed "$seed" --cdf "$raw/cdf" \
		>"$raw/faultlat.txt" 2>"$raw/faultlat.err"
	grep -c '^faultlat mode' "$raw/faultlat.txt" >&2
	# the same trap paths with the writer running into a real image and the
	# default 64 MiB pool, on a heap bigger than the pool: pool waits
	log "faultlat --live: $((FL_PAGES * 8)) pages, pool 64 MiB"
	TMPDIR=$W timeout -k 10 900 "$B/bench/faultlat" --live 64m --pages $((FL_PAGES * 8)) --reps 3 \
		--mode ckpt-sigbus,ckpt-thread --pattern seq,rand --seed "$seed" \
		>"$raw/faultlat-live.txt" 2>"$raw/faultlat-live.err"
fi

# ------------------------------------------------------------ 2. pause
if want pause; then
	log "pause: $PAUSE_SIZES"
	timeout -k 10 900 "$B/bench/pause" --sizes "$PAUSE_SIZES" --reps 3 --seed "$seed" >"$raw/pause.txt" 2>"$raw/pause.err"
	# issue 10: the pause while a writer thread dirties random pages
	# throughout, fork() / full protect / prepare+cut, and incremental
	log "pause --loaded: $PL_SIZES"
	timeout -k 10 1800 "$B/bench/pause" --loaded --sizes "$PL_SIZES" --reps 3 --seed "$seed" \
		>"$raw/pause-loaded.txt" 2>"$raw/pause-loaded.err"
fi

# ------------------------------------------------------------ 3. memory
if want memgrowth; then
	log "memgrowth: $MG_SIZE"
	TMPDIR=$W timeout -k 10 600 "$B/bench/memgrowth" --size "$MG_SIZE" --trace "$raw" >"$raw/memgrowth.txt" 2>"$raw/memgrowth.err"
fi

# ------------------------------------------------------------ 4. throughput
if want throughput; then
	log "throughput: $TP_SIZE (and dd to the same filesystem)"
	timeout -k 10 900 "$B/bench/throughput" --size "$TP_SIZE" --dir "$W" --reps 3 --seed "$seed" \
		>"$raw/throughput.txt" 2>"$raw/throughput.err"
	# dd: the same number of bytes, the same filesystem, made durable the
	# same way (fsync at the end); median of 3
	mib=$(to_mib "$TP_SIZE")
	for i in 1 2 3; do
		head -c $((mib * 1048576)) /dev/urandom >"$W/dd.src" 2>/dev/null || true
		t0=$(date +%s%N)
		dd if="$W/dd.src" of="$W/dd.out" bs=1M conv=fsync status=none
		t1=$(date +%s%N)
		echo "dd bytes=$((mib * 1048576)) ns=$((t1 - t0)) mibs=$(python3 -c "print(round($mib/(($t1-$t0)/1e9),1))")"
		rm -f "$W/dd.out"
	done >"$raw/dd.txt"
	# Paired: this VM's disk swings 3x within a minute (host-side cache),
	# so a median of checkpoints against a median of dd runs taken minutes
	# apart compares two different disks.  Each pair runs a stored
	# checkpoint (incompressible heap), dd of the same bytes, and a zstd-1
	# checkpoint (compressible heap) back to back, alternating the order;
	# the goals use the median of the per-pair ratios (heap bytes per
	# second against dd's bytes per second).
	# zcli: zstd's own CLI, -1 on every core, over the bytes the zstd-1
	# checkpoint saves (then fsync'ed): this machine's compression ceiling.
	"$B/bench/throughput" --size "$TP_SIZE" --seed "$seed" --data compressible --emit-data "$W/z.src"
	for i in 1 2 3 4 5; do
		for step in $( [ $((i % 2)) = 1 ] && echo "stored dd direct zstd zcli shm" ||
				echo "shm zcli zstd direct dd stored"); do
			case $step in
			direct) # CKPT_BEGIN_DIRECT against dd oflag=direct: no page
				# cache on either side, so no fresh pages to allocate
				"$B/bench/throughput" --size "$TP_SIZE" --dir "$W" --reps 1 --seed "$seed" \
					--codec stored --data incompressible --direct 2>/dev/null |
					sed -n "s/^throughput data=/throughput pair=$i io=direct data=/p"
				t0=$(date +%s%N)
				dd if="$W/dd.src" of="$W/dd.out" bs=1M oflag=direct conv=fsync status=none
				t1=$(date +%s%N)
				rm -f "$W/dd.out"
				echo "dd pair=$i io=direct bytes=$((mib * 1048576)) ns=$((t1 - t0)) mibs=$(python3 -c "print(round($mib/(($t1-$t0)/1e9),1))")" ;;
			stored) "$B/bench/throughput" --size "$TP_SIZE" --dir "$W" --reps 1 --seed "$seed" \
					--codec stored --data incompressible 2>/dev/null |
					sed -n "s/^throughput /throughput pair=$i /p" ;;
			zstd) "$B/bench/throughput" --size "$TP_SIZE" --dir "$W" --reps 1 --seed "$seed" \
					--codec zstd-1 --data compressible 2>/dev/null |
					sed -n "s/^throughput /throughput pair=$i /p" ;;
			dd) t0=$(date +%s%N)
				dd if="$W/dd.src" of="$W/dd.out" bs=1M conv=fsync status=none
				t1=$(date +%s%N)
				rm -f "$W/dd.out"
				echo "dd pair=$i bytes=$((mib * 1048576)) ns=$((t1 - t0)) mibs=$(python3 -c "print(round($mib/(($t1-$t0)/1e9),1))")" ;;
			shm) # the same stored checkpoint and dd into tmpfs: no disk, the
				# library's own path against a plain copy
				S=$(mktemp -d /dev/shm/ckpt-tp.XXXXXX)
				"$B/bench/throughput" --size "$TP_SIZE" --dir "$S" --reps 1 --seed "$seed" \
					--codec stored --data incompressible 2>/dev/null |
					sed -n "s/^throughput data=/throughput pair=$i fs=tmpfs data=/p"
				t0=$(date +%s%N)
				dd if="$W/dd.src" of="$S/dd.out" bs=1M conv=fsync status=none
				t1=$(date +%s%N)
				echo "dd pair=$i fs=tmpfs bytes=$((mib * 1048576)) ns=$((t1 - t0)) mibs=$(python3 -c "print(round($mib/(($t1-$t0)/1e9),1))")"
				rm -rf "$S" ;;
			zcli) t0=$(date +%s%N)
				zstd -q -1 -T0 -f "$W/z.src" -o "$W/z.out" && sync "$W/z.out"
				t1=$(date +%s%N)
				echo "zcli pair=$i bytes=$((mib * 1048576)) out_bytes=$(stat -c %s "$W/z.out") ns=$((t1 - t0)) mibs=$(python3 -c "print(round($mib/(($t1-$t0)/1e9),1))")"
				rm -f "$W/z.out" ;;
			esac
		done
	done >"$raw/throughput-pairs.txt" 2>>"$raw/throughput.err"
	rm -f "$W/dd.src" "$W/z.src"
fi

# ------------------------------------------------------------ 5. allocator
if want alloc && [ -x "$B/bench/allocbench" ]; then
	log "allocbench"
	timeout -k 10 600 "$B/bench/allocbench" >"$raw/allocbench.txt" 2>&1 || echo "allocbench exit $?" >>"$raw/allocbench.txt"
fi

# ------------------------------------------------------------ 6. redis
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_server NAME CMD... : starts a server in the background, waits until
# it answers PING; sets SRV_PID, SRV_PORT (the caller put --port in CMD via
# $PORT) and records the start-to-first-reply time in $raw/redis-NAME.txt
start_server() {
	local name=$1; shift
	local t0 t1
	t0=$(date +%s%N)
	"$@" >>"$raw/redis-$name.log" 2>&1 &
	SRV_PID=$!
	pids+=("$SRV_PID")
	if ! "$B/bench/loadgen" --port "$PORT" --ready --timeout 120 >"$W/ready" 2>&1; then
		log "$name did not answer on port $PORT"
		return 1
	fi
	t1=$(sed -n 's/.*realtime_ns=//p' "$W/ready")
	echo "loadgen start ms=$(( (t1 - t0) / 1000000 ))" >>"$raw/redis-$name.txt"
	return 0
}

stop_server() {
	kill "$SRV_PID" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$SRV_PID" 2>/dev/null
	wait "$SRV_PID" 2>/dev/null
}

# run_redis NAME IMAGE_FILE CMD... : populate, plain throughput, snapshot
# under load, image size, restart time (the same CMD on the same --dir)
run_redis() {
	local name=$1 image=$2; shift 2
	: >"$raw/redis-$name.txt"
	start_server "$name" "$@" || return 1
	# the first start is empty: not the restart figure
	sed -i 's/^loadgen start /loadgen coldstart /' "$raw/redis-$name.txt"
	timeout -k 5 600 "$B/bench/loadgen" --port "$PORT" --populate "$R_KEYS" --value-size 64 >>"$raw/redis-$name.txt"
	# plain throughput and latency, nothing being saved: redis-benchmark,
	# the same command for every server
	timeout -k 5 300 redis-benchmark -p "$PORT" -t set,get -n 100000 -c 50 -r "$R_KEYS" -d 64 -q 2>/dev/null |
		tr '\r' '\n' | grep -E '^(SET|GET): [0-9.]+ requests per second' |
		sed 's/^\(SET\|GET\): \([0-9.]*\) requests per second.*p50=\([0-9.]*\).*/rbench op=\1 rps=\2 p50_ms=\3/' \
		>>"$raw/redis-$name.txt"
	# the snapshot under open-loop load, R_REPS times (the report takes
	# medians: one snapshot on a shared VM is one sample of its neighbours);
	# the first repetition's trace is plotted
	local k
	for k in $(seq "$R_REPS"); do
		timeout -k 5 300 "$B/bench/loadgen" --port "$PORT" --rate "$R_RATE" --duration "$R_DUR" \
			--keys "$R_KEYS" --save-at "$R_SAVE_AT" --pid "$SRV_PID" \
			--trace "$raw/redis-$name.trace$([ "$k" = 1 ] || echo ".$k")" >>"$raw/redis-$name.txt"
		# the server's own account of the snapshot: fork pause, or
		# libckpt's pause / traps / pool figures
		echo "loadgen srvinfo $(redis-cli -p "$PORT" info 2>/dev/null | tr -d '\r' |
			grep -E '^(latest_fork_usec|ckpt_[a-z_]+):[0-9]+$' | tr ':' '=' | tr '\n' ' ')" \
			>>"$raw/redis-$name.txt"
		sleep 1
	done
	if [ -f "$image" ]; then
		echo "loadgen image bytes=$(stat -c %s "$image")" >>"$raw/redis-$name.txt"
	fi
	stop_server
	# restart: time from exec to the first PONG (RDB load / image restore)
	[ -f "$image" ] && start_server "$name" "$@" && {
		echo "loadgen dbsize n=$(redis-cli -p "$PORT" dbsize)" >>"$raw/redis-$name.txt"
		stop_server
	}
	return 0
}

if want redis && [ $redis = 1 ]; then
	if command -v redis-server >/dev/null; then
		log "redis-server (fork BGSAVE): $R_KEYS keys, $R_RATE req/s open loop"
		mkdir -p "$W/rs"
		PORT=$(free_port)
		run_redis server "$W/rs/dump.rdb" redis-server --port "$PORT" --bind 127.0.0.1 \
			--dir "$W/rs" --dbfilename dump.rdb --save '' --appendonly no \
			--protected-mode no || true
		rm -rf "$W/rs"
	fi
	RC=examples/redis-ckpt/redis-ckpt
	if [ -x "$RC" ]; then
		for mode in thread sigbus fork; do
			log "redis-ckpt --snapshot-mode $mode"
			mkdir -p "$W/rc-$mode"
			PORT=$(free_port)
			run_redis "ckpt-$mode" "$W/rc-$mode/dump.ckpt" "$RC" --port "$PORT" \
				--bind 127.0.0.1 --dir "$W/rc-$mode" --dbfilename dump.ckpt --save '' \
				--snapshot-mode "$mode" --incremental no --heap-size "${R_HEAP:-4gb}" || true
			rm -rf "$W/rc-$mode"
		done
	else
		log "examples/redis-ckpt/redis-ckpt not built: Redis comparison is redis-server only"
	fi
fi

# ------------------------------------------------------------ restart
# (issue 12) start to first reply: redis-ckpt --restore lazy / eager and
# redis-server's RDB load on the same dataset; lazy warm-up rate and probe.
run_restart() {
	local sizes=512m,2g
	[ $full = 1 ] && sizes=512m,2g,8g
	log "restart: $sizes"
	python3 bench/restart.py --sizes "$sizes" --out "$raw/restart.md" --plot "$out/$name-restart.png" \
		>"$raw/restart.out" 2>&1 ||
		log "restart bench failed: $raw/restart.out"
	run_restart_warmup
}

# The lazy warm-up's tail with the open-loop C probe: a 1.2 M-key dataset
# (400-byte values, ~640 MB image) restarted lazily WU_REPS times; each time
# loadgen sends 2,000 GET/s from the first PING for 4 s (--trace: 50 ms
# buckets), then 2 s more for the steady state; the server log says when the
# warm-up ended.  Everything into $raw/restart-warmup.txt and its traces.
# WU_OTHER=another redis-ckpt binary (e.g. main's build): each rep restarts
# both on the same image, which goes first alternating, labelled
# "warmup run K this|other" with the load average.
run_restart_warmup() {
	local d="$W/warmup" rc=examples/redis-ckpt/redis-ckpt k bins who bin
	[ -x "$rc" ] || return 0
	mkdir -p "$d"
	PORT=$(free_port)
	start_server warmup "$rc" --port "$PORT" --bind 127.0.0.1 --dir "$d" --save "" --heap-size 2000m || return 0
	"$B/bench/loadgen" --port "$PORT" --populate 1200000 --value-size 400 >>"$raw/restart-warmup.txt"
	redis-cli -p "$PORT" save >/dev/null
	stop_server
	for k in $(seq "${WU_REPS:-3}"); do
		bins="this"
		if [ -n "${WU_OTHER:-}" ]; then
			bins="this other"
			[ $((k % 2)) = 0 ] && bins="other this"
		fi
		for who in $bins; do
			bin=$rc
			[ "$who" = other ] && bin=$WU_OTHER
			PORT=$(free_port)
			: >"$d/server.log"
			start_server warmup "$bin" --port "$PORT" --bind 127.0.0.1 --dir "$d" --save "" \
				--logfile "$d/server.log" --restore lazy || return 0
			echo "warmup run $k $who load $(cut -d' ' -f1 /proc/loadavg)" >>"$raw/restart-warmup.txt"
			"$B/bench/loadgen" --port "$PORT" --rate 2000 --duration 4 --conns 4 --keys 1200000 \
				--set-ratio 0 --trace "$raw/restart-warmup-$k-$who.trace" >>"$raw/restart-warmup.txt"
			echo "steady run $k $who" >>"$raw/restart-warmup.txt"
			"$B/bench/loadgen" --port "$PORT" --rate 2000 --duration 2 --conns 4 --keys 1200000 \
				--set-ratio 0 >>"$raw/restart-warmup.txt"
			grep -h "Warm-up done" "$d/server.log" >>"$raw/restart-warmup.txt"
			stop_server
		done
	done
	uptime >>"$raw/restart-warmup.txt"
}
if want restart && [ $redis = 1 ]; then
	run_restart
fi

# ------------------------------------------------------------ 7. loaded server
# run_loaded NAME CMD... (issue 10's method): one server, populated, with a
# writer on existing keys and the 2,000 SET/s probe around BGSAVE, L_REPS
# times; everything into $raw/loaded-NAME.txt.  The writer is redis-benchmark,
# as in the issue: -r N draws key:000000000000..N-1, every one loaded before.
run_loaded() {
	local name=$1; shift
	local f="$raw/loaded-$name.txt" k wpid
	: >"$f"
	"$@" >>"$raw/loaded-$name.log" 2>&1 &
	SRV_PID=$!
	pids+=("$SRV_PID")
	# a failed server is stopped here, not at exit: the next one must not
	# start beside it (at --full each holds ~4 GB)
	"$B/bench/loadgen" --port "$PORT" --ready --timeout 120 >/dev/null 2>&1 ||
		{ log "$name did not start"; stop_server; return 1; }
	timeout -k 5 1800 "$B/bench/loadgen" --port "$PORT" --populate "$L_KEYS" --value-size 100 >>"$f" ||
		{ log "$name: populate failed"; stop_server; return 1; }
	redis-benchmark -p "$PORT" -t set -r "$L_KEYS" -d 100 -c 4 -n 2000000000 -q >/dev/null 2>&1 &
	wpid=$!
	pids+=("$wpid")
	sleep 2
	for k in $(seq "$L_REPS"); do
		echo "loaded rep=$k" >>"$f"
		# BGSAVE at L_WIN+1 s (the before-window starts after the probe's
		# first second); the load goes on L_WIN+1 s past it (the send, and
		# so the after-window, may start a little late), then the probe
		# waits for the snapshot's end (and samples Pss) up to 30 min
		timeout -k 5 2000 "$B/bench/loadgen" --port "$PORT" --rate "$L_RATE" --conns 4 --set-ratio 1 \
			--value-size 100 --keys "$L_KEYS" --save-at $((L_WIN + 1)) --window "$L_WIN" \
			--duration $((2 * L_WIN + 2)) --save-wait 1800 --pid "$SRV_PID" \
			--trace "$raw/loaded-$name.trace$([ "$k" = 1 ] || echo ".$k")" >>"$f"
		# the server's own account: every INFO persistence field that starts
		# with ckpt_ or rdb_ (the pause, preparation, pages left for the cut),
		# and fork's duration (redis-server has it in INFO stats)
		echo "loadgen info $( { redis-cli -p "$PORT" info persistence; redis-cli -p "$PORT" info stats; } 2>/dev/null |
			tr -d '\r' | grep -E '^(ckpt_|rdb_|latest_fork_usec)[a-z0-9_]*:' | grep -v ':.* ' | sort -u -t: -k1,1 |
			tr ':' '=' | tr '\n' ' ')" >>"$f"
		sleep 2
	done
	kill "$wpid" 2>/dev/null; wait "$wpid" 2>/dev/null
	stop_server
}

if want loaded && [ $redis = 1 ]; then
	if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
		log "loaded: redis-server (fork BGSAVE), $L_KEYS keys, $L_REPS reps"
		mkdir -p "$W/ls"
		PORT=$(free_port)
		run_loaded server redis-server --port "$PORT" --bind 127.0.0.1 --dir "$W/ls" --dbfilename dump.rdb \
			--save '' --appendonly no --protected-mode no || log "loaded: redis-server failed"
		rm -rf "$W/ls"
	fi
	RC=examples/redis-ckpt/redis-ckpt
	if [ -x "$RC" ]; then
		# one server at a time, each stopped before the next: at --full each
		# holds ~4 GB
		for mode in thread sigbus fork; do
			log "loaded: redis-ckpt --snapshot-mode $mode"
			mkdir -p "$W/lc-$mode"
			PORT=$(free_port)
			run_loaded "ckpt-$mode" "$RC" --port "$PORT" --bind 127.0.0.1 --dir "$W/lc-$mode" \
				--dbfilename dump.ckpt --save '' --snapshot-mode "$mode" --heap-size "$L_HEAP" ||
				log "loaded: redis-ckpt $mode failed"
			rm -rf "$W/lc-$mode"
		done
	fi
fi

# ------------------------------------------------------------ report
log "report"
python3 bench/plot/report.py --raw "$raw" --out "$out/$name.md" --name "$name"
rc=$?
if command -v gnuplot >/dev/null; then
	bench/plot/plots.sh "$raw" "$out" "$name" 2>"$raw/gnuplot.err" || log "some plots failed: $raw/gnuplot.err"
fi
echo
sed -n '/^## Summary/,/^## Details/p' "$out/$name.md" | sed '$d'
echo "results: $out/$name.md"
exit $rc
