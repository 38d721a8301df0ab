#!/usr/bin/env bash
# test_ckpt_tool.sh - the `ckpt` command (man ckpt(1)) on real images:
# info shows header, counts and chain; verify exits 0 on a good image and 1
# naming the problem on a damaged one or a broken chain; merge folds a chain
# into a full image with the same contents; diff lists differing pages
# (exit 1) or none (exit 0); kcheck gives a verdict; progress appears on a
# terminal and never in a pipe; usage errors exit 2.
# Exit 0 pass, 1 fail, 77 skip (no userfaultfd to make images with).
set -u
cd "$(dirname "$0")/../.."
B=${CKPT_BUILD:-build}
CKPT=$B/ckpt
[ -x "$CKPT" ] || { echo "no $CKPT: run make first"; exit 1; }

T=$(mktemp -d /tmp/ckpt-tool.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# A generator of images: a full image, a chain of 3, a different heap.
cat >"$T/gen.c" <<'EOF'
#include <stdio.h>
#include <string.h>
#include "ckpt.h"
static int ck(ckpt_heap *h, const char *path, int level)
{
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = path };
	struct ckpt_begin_opts o;
	ckpt_begin_opts_init(&o);
	o.zstd_level = level;
	o.flags = CKPT_BEGIN_NO_FSYNC;
	int rc = ckpt_begin(h, &d, &o);
	return rc ? rc : ckpt_wait(h);
}
int main(int argc, char **argv)
{
	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.size = 64 << 20;
	ho.flags = CKPT_HEAP_INCREMENTAL;
	ckpt_heap *h;
	int rc = ckpt_heap_create(&ho, &h);
	if (rc) { fprintf(stderr, "heap: %s\n", ckpt_strerror(rc)); return 77; }
	unsigned char *p = ckpt_alloc(h, 8 << 20);
	for (int i = 0; i < (8 << 20); i++) p[i] = (unsigned char)(i * 7 / 4096);
	ckpt_root_set(h, p);
	if ((rc = ck(h, argv[1], 0))) goto bad;          /* full.ckpt */
	if ((rc = ck(h, argv[2], 1))) goto bad;          /* chain.ckpt: full */
	p[100] = 1; p[3 << 20] = 2;
	if ((rc = ck(h, argv[2], 1))) goto bad;          /* incremental */
	memset(p + (5 << 20), 0xab, 3 * 4096);
	if ((rc = ck(h, argv[2], 3))) goto bad;          /* incremental */
	ckpt_heap_destroy(h);
	return 0;
bad:
	fprintf(stderr, "checkpoint: %s\n", ckpt_strerror(rc));
	return 1;
}
EOF
cc -O1 -D_GNU_SOURCE -Ilibckpt/include -o "$T/gen" "$T/gen.c" "$B/libckpt.a" -pthread -luring -lzstd -lxxhash \
	|| fail "cannot build the generator"
"$T/gen" "$T/full.ckpt" "$T/chain.ckpt"
rc=$?
if [ $rc = 77 ]; then
	[ "${CI:-}" = true ] && fail "cannot create a heap under CI"
	echo "skip: cannot create a heap"; exit 77
fi
[ $rc = 0 ] || fail "generator exit $rc"

# info
out=$("$CKPT" info "$T/full.ckpt") || fail "info full exit $?"
echo "$out" | grep -q '^kind: *full' || fail "info: kind: $out"
echo "$out" | grep -q '^generation: *1$' || fail "info: generation: $out"
echo "$out" | grep -Eq '^pages: *[0-9]+ stored, [0-9]+ zero' || fail "info: counts: $out"
out=$("$CKPT" info "$T/chain.ckpt") || fail "info chain exit $?"
echo "$out" | grep -q '^kind: *incremental' || fail "info chain kind: $out"
echo "$out" | grep -q 'parent: *chain.ckpt.g000003' || fail "info chain parent: $out"
[ "$(echo "$out" | grep -cE 'gen [0-9]+ +(full|incremental)')" = 3 ] || fail "info chain: 3 links expected: $out"

# verify: good, chain, damaged, broken chain
"$CKPT" verify "$T/full.ckpt" >"$T/v.out" 2>"$T/v.err" || fail "verify good exit $?"
grep -q ': ok$' "$T/v.out" || fail "verify good output: $(cat "$T/v.out")"
[ -s "$T/v.err" ] && fail "progress or noise on a piped stderr: $(cat "$T/v.err")"
"$CKPT" verify "$T/chain.ckpt" >/dev/null || fail "verify chain exit $?"
cp "$T/full.ckpt" "$T/bad.ckpt"
size=$(stat -c %s "$T/bad.ckpt")
printf '\xff' | dd of="$T/bad.ckpt" bs=1 seek=$((size / 2)) conv=notrunc status=none
out=$("$CKPT" verify "$T/bad.ckpt")
[ $? = 1 ] || fail "verify damaged: exit not 1"
echo "$out" | grep -q 'CKPT_E_CORRUPT' || fail "verify damaged: $out"
head -c $((size - 10)) "$T/full.ckpt" >"$T/short.ckpt"
out=$("$CKPT" verify "$T/short.ckpt")
[ $? = 1 ] || fail "verify truncated: exit not 1"
echo "$out" | grep -q 'CKPT_E_TRUNCATED' || fail "verify truncated: $out"
mv "$T/chain.ckpt.g000002" "$T/moved"
out=$("$CKPT" verify "$T/chain.ckpt")
[ $? = 1 ] || fail "verify broken chain: exit not 1"
echo "$out" | grep -q 'CKPT_E_PARENT' || fail "verify broken chain: $out"
"$CKPT" verify -n "$T/chain.ckpt" >/dev/null || fail "verify -n (tip only) of a broken chain should pass"
mv "$T/moved" "$T/chain.ckpt.g000002"

# merge, then diff
"$CKPT" merge -l 1 "$T/merged.ckpt" "$T/chain.ckpt" 2>"$T/m.err" || fail "merge exit $?: $(cat "$T/m.err")"
"$CKPT" info "$T/merged.ckpt" | grep -q '^kind: *full' || fail "merged image not full"
"$CKPT" verify "$T/merged.ckpt" >/dev/null || fail "merged image does not verify"
out=$("$CKPT" diff "$T/chain.ckpt" "$T/merged.ckpt") || fail "diff chain merged: exit $?: $out"
echo "$out" | grep -q '^0 of [0-9]* pages differ' || fail "diff chain merged: $out"
out=$("$CKPT" diff "$T/full.ckpt" "$T/chain.ckpt")
[ $? = 1 ] || fail "diff full chain: exit not 1: $out"
echo "$out" | grep -Eq '^[56] of [0-9]+ pages differ' || fail "diff full chain: want 5 pages (6 if unaligned): $out"
echo "$out" | grep -Eq '^pages [0-9]+-[0-9]+ ' || fail "diff: no page range listed: $out"

# merge of a chain given file by file (renamed copies), full image first
cp "$T/chain.ckpt.g000002" "$T/a"; cp "$T/chain.ckpt.g000003" "$T/b"; cp "$T/chain.ckpt" "$T/c"
"$CKPT" merge "$T/merged2.ckpt" "$T/a" "$T/b" "$T/c" 2>"$T/m.err" || fail "merge list exit $?: $(cat "$T/m.err")"
out=$("$CKPT" diff "$T/merged2.ckpt" "$T/merged.ckpt") || fail "merge list differs: $out"
"$CKPT" merge "$T/merged3.ckpt" "$T/a" "$T/c" 2>"$T/m.err"
[ $? = 2 ] || fail "merge of a chain with a missing link: exit not 2"
grep -q CKPT_E_PARENT "$T/m.err" || fail "merge with a missing link: $(cat "$T/m.err")"
[ -e "$T/merged3.ckpt" ] && fail "a failed merge left its output"

# kcheck gives a verdict (0 safe, 1 unsafe), never a usage error
"$CKPT" kcheck >/dev/null 2>&1
rc=$?
[ $rc = 0 ] || [ $rc = 1 ] || fail "kcheck exit $rc"

# usage
"$CKPT" >/dev/null 2>&1; [ $? = 2 ] || fail "no command: exit not 2"
"$CKPT" frobnicate >/dev/null 2>&1; [ $? = 2 ] || fail "unknown command: exit not 2"
"$CKPT" merge "$T/x" >/dev/null 2>&1; [ $? = 2 ] || fail "merge with one argument: exit not 2"
"$CKPT" --help | grep -q verify || fail "--help"

# progress on a terminal (script(1) gives the command a pty)
if command -v script >/dev/null; then
	# a bigger image so that progress is reported at least once
	script -qec "$CKPT verify $T/chain.ckpt" /dev/null >"$T/tty.out" 2>&1 || fail "verify under a pty"
	grep -q 'verifying:' "$T/tty.out" || fail "no progress on a terminal: $(cat -v "$T/tty.out")"
fi
echo "ok"
exit 0
