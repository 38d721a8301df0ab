#!/usr/bin/env bash
# kernel/matrix.sh - `make -C kernel matrix`: the conformance suite on this
# kernel and on Debian's 6.1 LTS cloud kernel booted under qemu (TCG), with
# both PASS/FAIL tables printed side by side.
#
# The 6.1 kernel package is fetched with `apt-get download` and unpacked
# with `dpkg -x` into kernel/.cache/ - never installed on the host.  The
# guest's initramfs holds build/init (PID 1), build/kt (the static suite)
# and the modules zram needs, loaded by init with finit_module.
#
# Exit status: 0 when both tables were produced and this kernel passes
# every case (the 6.1 kernel is expected to fail some: kernel/README.md).
#   KT_MATRIX_PKG=linux-image-...-unsigned   pick the package (default: newest 6.1 cloud)
#   KT_QEMU_TIMEOUT=seconds                  bound on the guest run (default 1200)
#   KT_CASES=a,g                             run only these cases (prefixes), on both kernels
set -euo pipefail
cd "$(dirname "$0")"
B=${B:-build}
CACHE=.cache
mkdir -p "$B" "$CACHE"

die() { echo "matrix: $*" >&2; exit 2; }

for tool in qemu-system-x86_64 cpio gzip apt-get dpkg; do
	command -v "$tool" >/dev/null || die "$tool is missing (apt-get install qemu-system-x86 cpio)"
done
[ -x "$B/kt" ] && [ -x "$B/init" ] || die "run make -C kernel first"

# --- the 6.1 kernel ---------------------------------------------------------
pkg=${KT_MATRIX_PKG:-}
if [ -z "$pkg" ]; then
	pkg=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$' 2>/dev/null |
		awk '{print $1}' | sort -t- -k4,4n | tail -n 1)
	# offline: fall back to what the cache already holds
	[ -n "$pkg" ] || pkg=$(ls -d "$CACHE"/linux-image-6.1.0-*-unsigned 2>/dev/null | sort -t- -k4,4n |
		tail -n 1 | xargs -r basename)
	[ -n "$pkg" ] || die "no linux-image-6.1.0-*-cloud-amd64-unsigned package found (apt-get update?)"
fi
root="$CACHE/$pkg"
if [ ! -d "$root/boot" ]; then
	echo "matrix: fetching $pkg (apt-get download, unpacked into kernel/$root, not installed)"
	rm -rf "$root.tmp" && mkdir -p "$root.tmp"
	(cd "$root.tmp" && apt-get download "$pkg" >/dev/null 2>&1) || die "apt-get download $pkg failed"
	dpkg -x "$root.tmp"/*.deb "$root.tmp/root"
	rm -rf "$root" && mv "$root.tmp/root" "$root" && rm -rf "$root.tmp"
fi
vmlinuz=$(ls "$root"/boot/vmlinuz-* | head -n 1)
kver=${vmlinuz##*/vmlinuz-}
moddir="$root/lib/modules/$kver"

# --- the initramfs ----------------------------------------------------------
stage="$B/initramfs-$kver"
rm -rf "$stage" && mkdir -p "$stage/mod"
cp "$B/init" "$stage/init"
cp "$B/kt" "$stage/kt"
: >"$stage/modules.load"

# module NAME: its .ko in the unpacked tree (dashes and underscores are one)
modpath() {
	local n=$1
	find "$moddir/kernel" \( -name "$n.ko" -o -name "$n.ko.xz" -o -name "${n//_/-}.ko" -o \
		-name "${n//-/_}.ko" -o -name "${n//_/-}.ko.xz" -o -name "${n//-/_}.ko.xz" \) | head -n 1
}
declare -A added=()
# add NAME: its dependencies (modinfo's depends=, read from the .ko) first
add() {
	local n=$1 p dep
	[ -n "${added[$n]:-}" ] && return 0
	added[$n]=1
	p=$(modpath "$n")
	if [ -z "$p" ]; then
		grep -q "/$n.ko\$" "$moddir/modules.builtin" 2>/dev/null || echo "matrix: module $n not found (built in?)"
		return 0
	fi
	local tmp="$stage/mod/$(basename "${p%.xz}")"
	case $p in *.xz) xz -dc "$p" >"$tmp" ;; *) cp "$p" "$tmp" ;; esac
	for dep in $(strings "$tmp" | sed -n 's/^depends=//p' | tr ',' ' '); do add "$dep"; done
	echo "/mod/$(basename "$tmp")" >>"$stage/modules.load"
}
# zram, and the compressor it uses by default in this kernel
add zram
comp=$(sed -n 's/^CONFIG_ZRAM_DEF_COMP="\(.*\)"/\1/p' "$root"/boot/config-* | head -n 1)
[ -n "$comp" ] && add "$comp"
[ "$comp" = lzo-rle ] && add lzo
initrd="$B/initramfs-$kver.cpio.gz"
(cd "$stage" && find . | cpio -o -H newc --quiet) | gzip -1 >"$initrd"

# --- run both ---------------------------------------------------------------
host_log="$B/matrix-host.log"
guest_log="$B/matrix-$kver.log"
echo "matrix: suite on this kernel ($(uname -r))"
host_rc=0
"$B/kt" ${KT_CASES:+${KT_CASES//,/ }} >"$host_log" 2>&1 || host_rc=$?

echo "matrix: suite on $kver under qemu-system-x86_64 -accel tcg (timeout ${KT_QEMU_TIMEOUT:-1200}s)"
t0=$(date +%s)
guest_rc=0
timeout -k 10 "${KT_QEMU_TIMEOUT:-1200}" qemu-system-x86_64 -accel tcg -m 2048 -smp 2 \
	-kernel "$vmlinuz" -initrd "$initrd" \
	-append "console=ttyS0 panic=-1 loglevel=4${KT_CASES:+ KT_CASES=$KT_CASES}" \
	-nographic -no-reboot -monitor none </dev/null >"$guest_log" 2>&1 || guest_rc=$?
echo "matrix: guest finished in $(($(date +%s) - t0)) s (qemu exit $guest_rc)"
tr -d '\r' <"$guest_log" >"$guest_log.txt" && mv "$guest_log.txt" "$guest_log"
grep -q '^KT-EXIT' "$guest_log" || { tail -n 40 "$guest_log"; die "the guest produced no result (log: kernel/$guest_log)"; }

# --- the table --------------------------------------------------------------
result() { # LOG CASE -> PASS / FAIL / SKIP / -
	local r
	r=$(grep -a -E "^(PASS|FAIL|SKIP) $2([ :]|\$)" "$1" | head -n 1 | cut -d' ' -f1)
	echo "${r:--}"
}
hk=$(uname -r)
echo
printf '%-40s %-22s %-22s\n' "case" "${hk:0:22}" "${kver:0:22}"
printf '%-40s %-22s %-22s\n' "----" "----" "----"
for c in $("$B/kt" -l); do
	printf '%-40s %-22s %-22s\n' "$c" "$(result "$host_log" "$c")" "$(result "$guest_log" "$c")"
done
echo
for pair in "this kernel:$host_log" "$kver:$guest_log"; do
	name=${pair%%:*} log=${pair#*:}
	grep -a -q -E '^(FAIL|SKIP)' "$log" || continue
	echo "$name:"
	grep -a -E '^(FAIL|SKIP)' "$log" | sed 's/^/  /'
done
grep -a '^# Linux' "$host_log" | sed 's/^# /this kernel: /'
grep -a '^# Linux' "$guest_log" | sed 's/^# /guest:       /'
echo "full logs: kernel/$host_log, kernel/$guest_log"
[ "$host_rc" = 0 ] || { echo "matrix: this kernel fails the suite"; exit 1; }
exit 0
