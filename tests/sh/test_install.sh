#!/usr/bin/env bash
# `make install` into a DESTDIR gives a tree where pkg-config finds libckpt,
# and a program compiled with `pkg-config --cflags --libs libckpt` against it
# links the shared library by its soname and runs: the README's example.
set -euo pipefail
cd "$(dirname "$0")/../.."
stage=$(mktemp -d /tmp/ckpt-install.XXXXXX)
trap 'rm -rf "$stage"' EXIT

make -s install DESTDIR="$stage" PREFIX=/usr >/dev/null
for f in usr/include/ckpt.h usr/lib/libckpt.so.0 usr/lib/libckpt.so usr/lib/libckpt.a \
	usr/lib/pkgconfig/libckpt.pc usr/bin/ckpt usr/share/man/man3/libckpt.3; do
	[ -e "$stage/$f" ] || { echo "missing after install: $f"; exit 1; }
done

export PKG_CONFIG_SYSROOT_DIR="$stage" PKG_CONFIG_LIBDIR="$stage/usr/lib/pkgconfig"
flags=$(pkg-config --cflags --libs libckpt)
echo "pkg-config: $flags"
case "$flags" in *"-I$stage/usr/include"*) ;; *) echo "cflags do not point into the staged tree"; exit 1 ;; esac

# the README's example, verbatim
sed -n '/^```c$/,/^```$/p' README.md | sed '1d;$d' > "$stage/example.c"
grep -q ckpt_begin "$stage/example.c" || { echo "README example not found"; exit 1; }
cc -Wall -Werror -o "$stage/example" "$stage/example.c" $flags
readelf -d "$stage/example" | grep -q 'NEEDED.*libckpt.so.0' || { echo "example does not link libckpt.so.0"; exit 1; }
readelf -d "$stage/usr/lib/libckpt.so.0" | grep -q 'SONAME.*libckpt.so.0' || { echo "wrong soname"; exit 1; }
# only ckpt_ symbols are exported
bad=$(nm -D --defined-only "$stage/usr/lib/libckpt.so.0" | awk '{print $3}' | grep -v -E '^(ckpt_[a-z]|LIBCKPT_)' || true)
[ -z "$bad" ] || { echo "exported symbols outside the API: $bad"; exit 1; }

# run it twice in a scratch dir: first creates, second restores the image
work=$(mktemp -d "$stage/run.XXXXXX")
( cd "$work" && LD_LIBRARY_PATH="$stage/usr/lib" "$stage/example" && LD_LIBRARY_PATH="$stage/usr/lib" "$stage/example" )
[ -f "$work/dump.ckpt" ] || { echo "example wrote no image"; exit 1; }
"$stage/usr/bin/ckpt" verify "$work/dump.ckpt"

# a damaged image is left untouched: the example refuses to start instead of
# treating the restore error as "no image" and checkpointing over it
size=$(stat -c %s "$work/dump.ckpt")
printf '\xff\xff\xff\xff' | dd of="$work/dump.ckpt" bs=1 seek=$((size / 2)) conv=notrunc status=none
before=$(sha256sum < "$work/dump.ckpt")
if ( cd "$work" && LD_LIBRARY_PATH="$stage/usr/lib" "$stage/example" ) 2>"$work/err"; then
	echo "example ran on a damaged image"; exit 1
fi
[ "$(sha256sum < "$work/dump.ckpt")" = "$before" ] || { echo "example overwrote a damaged image"; exit 1; }
grep -q 'dump.ckpt:' "$work/err" || { echo "example did not say why it stopped"; cat "$work/err"; exit 1; }

make -s uninstall DESTDIR="$stage" PREFIX=/usr >/dev/null
left=$(find "$stage/usr" -type f | head -5)
[ -z "$left" ] || { echo "left after uninstall: $left"; exit 1; }
echo "install test: ok"
