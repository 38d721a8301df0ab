#!/usr/bin/env bash
# The test runner behind `make test`.
#   tests/run.sh            everything: kernel suite, unit tests, script tests
#   tests/run.sh --unit     only the criterion unit tests (used by `make asan`)
# Each suite runs under a timeout; as root, dmesg is scanned for kernel
# WARNING/BUG/Oops after the run (as liburing's runner does).  The last line is
# "N passed, N failed, N skipped" (test cases, criterion counts each test).
# Exit status: 0 when nothing failed.
set -u
cd "$(dirname "$0")/.."
B=${CKPT_BUILD:-build}
only_unit=0
[ "${1:-}" = "--unit" ] && only_unit=1

passed=0 failed=0 skipped=0
failures=()
log_dir=$(mktemp -d /tmp/ckpt-tests.XXXXXX)
trap 'rm -rf "$log_dir"' EXIT

dmesg_mark=""
if [ "$(id -u)" = 0 ]; then dmesg_mark=$(dmesg 2>/dev/null | wc -l); fi

# run NAME TIMEOUT CMD... : a test program that exits 0 pass, 77 skip, else fail
run() {
	local name=$1 tmo=$2; shift 2
	local log="$log_dir/$(echo "$name" | tr '/ ' '__').log" rc t0 t1
	t0=$(date +%s)
	timeout -k 10 "$tmo" "$@" >"$log" 2>&1
	rc=$?
	t1=$(date +%s)
	# criterion prints a synthesis line: count its test cases
	local syn
	syn=$(grep -a 'Synthesis: Tested:' "$log" | tail -n 1)
	if [ -n "$syn" ]; then
		local p f c s
		p=$(echo "$syn" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
		f=$(echo "$syn" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
		c=$(echo "$syn" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
		s=$(echo "$syn" | sed -n 's/.*Skipped: \([0-9]*\).*/\1/p')
		passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
		skipped=$((skipped + ${s:-0}))
		if [ "$rc" != 0 ] || [ "${f:-0}" != 0 ] || [ "${c:-0}" != 0 ]; then
			[ "$rc" != 0 ] && [ "${f:-0}" = 0 ] && failed=$((failed + 1))
			failures+=("$name")
			echo "FAIL  $name ($((t1 - t0))s, rc=$rc): $syn"
			grep -a -E '\[----\]|\[FAIL\]|\[SKIP\]|Assertion|CRASH|signal|Timed out' "$log" | head -n 40 | sed 's/^/      /'
		else
			echo "ok    $name ($((t1 - t0))s): $syn"
			grep -a -E '\[SKIP\]' "$log" | head -n 10 | sed 's/^/      /'
		fi
		return
	fi
	case $rc in
	0) passed=$((passed + 1)); echo "ok    $name ($((t1 - t0))s)" ;;
	77) skipped=$((skipped + 1)); echo "skip  $name: $(tail -n 1 "$log")" ;;
	124|137) failed=$((failed + 1)); failures+=("$name"); echo "FAIL  $name: timed out after ${tmo}s"; tail -n 30 "$log" | sed 's/^/      /' ;;
	*) failed=$((failed + 1)); failures+=("$name"); echo "FAIL  $name (rc=$rc)"; tail -n 40 "$log" | sed 's/^/      /' ;;
	esac
	# the kernel suite prints its own table: show it
	if [ "$name" = kernel-suite ]; then grep -a -E '^(PASS|FAIL|SKIP)' "$log" | sed 's/^/      /'; fi
}

if [ $only_unit = 0 ] && [ -f kernel/Makefile ]; then
	run kernel-suite 300 make -s -C kernel check
fi

# sanitizer builds run the same cases 2-4x slower (test_checkpoint's
# consistency rounds took ~150 s of the 300 s in the plain build)
unit_tmo=300
case $B in *asan*|*tsan*) unit_tmo=900 ;; esac
for t in "$B"/tests/test_* "$B"/tests/fi_test_*; do
	[ -x "$t" ] || continue
	case $t in *.d|*.o) continue ;; esac
	# --jobs 2: two cores; tests that change machine state take tests/util's lock
	run "unit/$(basename "$t")" "$unit_tmo" "$t" --jobs 2
done

if [ $only_unit = 0 ]; then
	for t in tests/sh/*.sh examples/redis-ckpt/tests/*.sh; do
		[ -f "$t" ] || continue
		run "script/$t" 300 bash "$t"
	done
fi

if [ -n "$dmesg_mark" ]; then
	if dmesg 2>/dev/null | tail -n +"$((dmesg_mark + 1))" | grep -E 'WARNING:|BUG:|Oops|general protection' >"$log_dir/dmesg"; then
		echo "FAIL  dmesg: the kernel complained during the tests:"
		head -n 20 "$log_dir/dmesg" | sed 's/^/      /'
		failed=$((failed + 1)); failures+=(dmesg)
	fi
fi

[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
