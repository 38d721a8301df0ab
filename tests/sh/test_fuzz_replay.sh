#!/usr/bin/env bash
# test_fuzz_replay.sh - every committed fuzz input (the seed corpus and each
# regression found so far, fuzz/corpus/* and fuzz/regressions/*) still runs
# cleanly through the fuzz harnesses, built without libFuzzer but with
# ASan/UBSan (build/fuzz/replay_*).  A crash the fuzzer once found comes
# back as a failure here.  Needs root for the harnesses' libckpt heaps
# (userfaultfd).
set -eu
cd "$(dirname "$0")/../.."
B=${CKPT_BUILD:-build}
if [ "$(id -u)" != 0 ]; then
	# the harnesses' libckpt heaps need userfaultfd
	[ "${CI:-}" = true ] && { echo "FAIL: needs root (CI=true)"; exit 1; }
	echo "skip: needs root (userfaultfd heaps)"; exit 77
fi
make -s "$B/fuzz/replay_image" "$B/fuzz/replay_resp" "$B/fuzz/replay_lazy" >/dev/null
# LSan: the harnesses free what they allocate per input; the library's
# once-per-process probe state is reachable
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
total=0
for name in image resp lazy; do
	dirs=()
	seeds=$name
	[ "$name" = lazy ] && seeds=image # the lazy reader replays the image corpus
	cands=("fuzz/corpus/$seeds" "fuzz/regressions/$seeds")
	[ "$seeds" != "$name" ] && cands+=("fuzz/regressions/$name")
	for d in "${cands[@]}"; do
		[ -n "$(ls -A "$d" 2>/dev/null | grep -v '^README')" ] && dirs+=("$d")
	done
	[ ${#dirs[@]} -gt 0 ] || continue
	out=$("$B/fuzz/replay_$name" "${dirs[@]}" 2>&1) || {
		echo "$out" | tail -n 40
		echo "FAIL: an input of the $name harness crashed (the last 'replay:' line above names it)"
		exit 1
	}
	n=$(echo "$out" | sed -n 's/^replay: \([0-9]*\) inputs ran/\1/p')
	echo "$name: ${n:-0} inputs replayed cleanly"
	total=$((total + ${n:-0}))
done
[ "$total" -gt 0 ] || { echo "FAIL: no fuzz inputs found"; exit 1; }
echo "$total fuzz inputs replayed"
