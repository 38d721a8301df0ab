#!/usr/bin/env bash
# fuzz/run.sh SECONDS [HARNESS...] - runs each libFuzzer harness for SECONDS,
# one after the other (a 2-core machine: one fuzzing process at a time).
# Behind `make fuzz FUZZ_SECONDS=N`; harnesses default to "image resp lazy"
# (lazy is seeded from the image corpus).
#
# Each harness fuzzes a working corpus in build-fuzz/corpus-NAME, seeded
# from fuzz/corpus/NAME and fuzz/regressions/NAME (the committed corpus is
# not written to; `fuzz/run.sh --merge NAME` folds the working corpus back
# into it, minimised).  A crash, leak or timeout leaves its input in
# build-fuzz/artifacts-NAME/ and a copy in fuzz/regressions/NAME/, which
# `make test` replays from then on.  The summary line per harness gives
# executions and libFuzzer's coverage figures (cov = edges, ft = features).
# Exit status 1 when any harness found something.
set -u
cd "$(dirname "$0")/.."
FZ=build-fuzz

if [ "${1:-}" = --merge ]; then
	name=$2
	mkdir -p "$FZ/merged-$name"
	"$FZ/fuzz_$name" -merge=1 "$FZ/merged-$name" "fuzz/corpus/$name" "$FZ/corpus-$name"
	echo "minimised corpus in $FZ/merged-$name: review, then copy into fuzz/corpus/$name"
	exit 0
fi

secs=${1:-60}
shift || true
names=${*:-image resp lazy}
found=0
for name in $names; do
	bin=$FZ/fuzz_$name
	[ -x "$bin" ] || { echo "$bin missing: make $bin"; exit 2; }
	work=$FZ/corpus-$name art=$FZ/artifacts-$name
	# findings of earlier runs were copied to fuzz/regressions already
	rm -rf "$art.old" && [ -d "$art" ] && mv "$art" "$art.old"
	mkdir -p "$work" "$art/"
	seeds=$name
	[ "$name" = lazy ] && seeds=image # the lazy reader reads the same files
	cp -n fuzz/corpus/"$seeds"/* "$work"/ 2>/dev/null
	mkdir -p fuzz/regressions/"$name"
	cp -n fuzz/regressions/"$name"/* "$work"/ 2>/dev/null
	log=$FZ/fuzz-$name.log
	echo "fuzzing $name for ${secs}s (log $log)"
	# -rss_limit_mb: the image harness maps heaps of up to the image's
	# size (sparse); -timeout: a slow input is a finding too.
	"$bin" -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
		-artifact_prefix="$art/" "$work" >"$log" 2>&1
	rc=$?
	last=$(grep -a -E '^#[0-9]+' "$log" | tail -n 1)
	execs=$(grep -a 'stat::number_of_executed_units' "$log" | awk '{print $2}')
	echo "  $name: rc=$rc, executions ${execs:-?}, last status: $last"
	for f in "$art"/crash-* "$art"/leak-* "$art"/timeout-* "$art"/oom-* "$art"/slow-unit-*; do
		[ -f "$f" ] || continue
		case $f in *slow-unit-*) echo "  slow input (not a failure): $f"; continue ;; esac
		cp "$f" "fuzz/regressions/$name/"
		echo "  FOUND: $f (copied to fuzz/regressions/$name/)"
		found=1
	done
	[ "$rc" != 0 ] && found=1
done
exit $found
