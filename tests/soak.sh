#!/usr/bin/env bash
# tests/soak.sh [MINUTES] [--trials N] [--seed S] - randomized consistency
# trials in a loop (not part of `make test`).
#
# Runs build/tests/soak/soak_trial (tests/soak/soak_trial.c) in batches of
# 50 trials, alternating two kinds of batch until MINUTES have passed
# (default 10) or N trials have run:
#
#   plain     trap modes, fault-around, pool sizes, writer threads, full and
#             incremental chains, zstd, cancels and SIGKILLs at random
#             points (the trial program draws all of it from the seed)
#   pressure  the same, plus: zram swap on, a helper process swapping the
#             heap out with process_madvise(MADV_PAGEOUT) all the time, and
#             each trial inside a memory cgroup whose limit is below its
#             footprint, so the kernel reclaims (and may OOM-kill) under it
#
# A pressure batch holds the machine lock (/run/lock/libckpt-machine.lock)
# from set-up to tear-down, and its EXIT/INT/TERM trap switches the zram
# swap off, resets the device and removes the cgroup again; the lock is
# dropped between batches so that other tests can get in.
#
# (SOAK_FIRST_BATCH=1 starts with a pressure batch.)
#
# Every trial checks that the image at its path (if any) verifies and that
# restoring it gives exactly the heap as it was at that generation's
# ckpt_begin().  The last line is
#   "soak: trials N mismatches M (killed K, cancelled C, oom O) in S s"
# and the exit status is 1 when M > 0.
set -u
cd "$(dirname "$0")/.."
B=${CKPT_BUILD:-build}
TRIAL=$B/tests/soak/soak_trial
LOCK=/run/lock/libckpt-machine.lock
ZRAM=/dev/zram0
CG=/sys/fs/cgroup/memory/ckpt-soak.$$

minutes=10 max_trials=0 seed=$(( $(date +%s) * 1000 ))
while [ $# -gt 0 ]; do
	case $1 in
	--trials) max_trials=$2; shift 2 ;;
	--seed) seed=$2; shift 2 ;;
	[0-9]*) minutes=$1; shift ;;
	*) echo "usage: tests/soak.sh [MINUTES] [--trials N] [--seed S]"; exit 2 ;;
	esac
done

make -s "$TRIAL" || exit 2
[ "$(id -u)" = 0 ] || { echo "soak: needs root (userfaultfd heaps, zram, cgroups)"; exit 2; }

log=$(mktemp /tmp/ckpt-soak-log.XXXXXX)
trap 'rm -f "$log"' EXIT

trials=0 mismatches=0 killed=0 cancelled=0 oom=0 batches=${SOAK_FIRST_BATCH:-0}
t0=$(date +%s)
deadline=$((t0 + minutes * 60))

# adds the counts of a batch's last line to the totals
tally() {
	local line
	line=$(grep -a '^trials ' "$log" | tail -n 1)
	if [ -z "$line" ]; then
		echo "soak: a batch printed no summary (crashed?):"; tail -n 20 "$log"
		mismatches=$((mismatches + 1))
		return
	fi
	set -- $line
	trials=$((trials + $2)); mismatches=$((mismatches + $4)); killed=$((killed + $6))
	cancelled=$((cancelled + $8)); oom=$((oom + ${10}))
	grep -a '^MISMATCH' "$log"
}

plain_batch() {
	"$TRIAL" --dir "/tmp/ckpt-soak.$$" --seed "$1" --trials "$2" --kill-pct 20 --cancel-pct 10 \
		--quiet >"$log" 2>&1
}

# Runs in a subshell: the lock and the machine state live and die with it.
pressure_batch() (
	exec 9>"$LOCK"
	flock 9
	made_swap=0 made_cg=0
	cleanup() {
		if [ $made_swap = 1 ]; then
			swapoff "$ZRAM" 2>/dev/null
			echo 1 >/sys/block/zram0/reset 2>/dev/null
		fi
		if [ $made_cg = 1 ]; then
			# the trials have exited; anything left goes to the root
			for p in $(cat "$CG/cgroup.procs" 2>/dev/null); do
				echo "$p" >/sys/fs/cgroup/memory/cgroup.procs 2>/dev/null
			done
			rmdir "$CG" 2>/dev/null
		fi
	}
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	if ! swapon --show=NAME --noheadings | grep -q .; then
		if [ -b "$ZRAM" ] && [ "$(cat /sys/block/zram0/disksize)" = 0 ]; then
			echo 512M >/sys/block/zram0/disksize &&
				mkswap "$ZRAM" >/dev/null && swapon -p 100 "$ZRAM" && made_swap=1
		fi
	fi
	swapon --show=NAME --noheadings | grep -q . || { echo "soak: no swap could be set up" >"$log"; exit 1; }
	mkdir "$CG" && made_cg=1 || exit 1
	# below a trial's footprint (heap data up to 8 MiB, its reference copy,
	# pool up to 8 MiB, the image files in /tmp's page cache): reclaim has
	# to swap heap pages out while checkpoints run
	echo $(( (20 + RANDOM % 24) << 20 )) >"$CG/memory.limit_in_bytes"
	sw0=0 sw1=0
	sw0=$(awk '/^pswpout /{print $2}' /proc/vmstat)
	"$TRIAL" --dir "/tmp/ckpt-soak.$$" --seed "$1" --trials "$2" --kill-pct 20 --cancel-pct 10 \
		--pageout --cgroup "$CG" --quiet >"$log" 2>&1
	sw1=$(awk '/^pswpout /{print $2}' /proc/vmstat)
	echo "soak: pressure batch: $((sw1 - sw0)) pages swapped out, cgroup failcnt $(cat "$CG/memory.failcnt")"
)

while :; do
	now=$(date +%s)
	[ "$now" -ge "$deadline" ] && [ "$max_trials" = 0 ] && break
	[ "$max_trials" != 0 ] && [ "$trials" -ge "$max_trials" ] && break
	n=50
	[ "$max_trials" != 0 ] && [ $((max_trials - trials)) -lt $n ] && n=$((max_trials - trials))
	if [ $((batches % 2)) = 0 ]; then kind=plain; plain_batch "$seed" "$n"
	else kind=pressure; pressure_batch "$seed" "$n"; fi
	tally
	seed=$((seed + n))
	batches=$((batches + 1))
	echo "soak: batch $batches ($kind): $trials trials, $mismatches mismatches so far ($(( $(date +%s) - t0 )) s)"
done
echo "soak: trials $trials mismatches $mismatches (killed $killed, cancelled $cancelled, oom $oom) in $(( $(date +%s) - t0 )) s"
[ "$mismatches" = 0 ]
