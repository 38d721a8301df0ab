#!/usr/bin/env bash
# libckpt's source files form layers with one direction of dependency
# (docs/design.md, "Layers"): checked on the object files with nm, so a call
# that closes a circle fails here, whatever the headers say.
#  1. no dependency cycle between libckpt/src's objects (scripts/depcycles.py);
#  2. the file sink needs only the public API, the image format and util.c
#     (it proves the public sink API is enough to write an image);
#  3. util.c, image.c, error.c and faultinject.c use nothing else of libckpt;
#  4. no function in libckpt/src is over 80 lines unless its comment says
#     why ("Long:"), scripts/funclen.py.
# Exit 0 pass, 1 fail.
set -u
cd "$(dirname "$0")/../.."
B=${CKPT_BUILD:-build}
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

[ -f "$B/obj/util.o" ] || { echo "FAIL: $B/obj not built"; exit 1; }
python3 scripts/depcycles.py "$B/obj" || fail "dependency cycle between object files"

graph=$(python3 scripts/depcycles.py "$B/obj" --graph | grep -v '^depcycles:\|^cycle\|^  ')
deps_of() { echo "$graph" | sed -n "s/^$1: *//p"; }
allowed_only() { # FILE ALLOWED...
	local f=$1; shift
	for d in $(deps_of "$f"); do
		case " $* " in *" $d "*) ;; *) fail "$f.o uses $d.o (allowed: $*)" ;; esac
	done
}
allowed_only filesink image util error faultinject
allowed_only util faultinject
allowed_only image util
allowed_only error
allowed_only faultinject
# the sink reaches the engine only through the public API: no ckpt__ symbol
# it uses may come from outside image/util/error/faultinject (checked above),
# and the public ones it uses must be ckpt_* functions
for s in $(nm -u "$B/obj/filesink.o" | awk '{print $2}' | grep '^ckpt_[a-z]' ); do
	grep -q "\b$s\b" libckpt/include/ckpt.h || fail "filesink.o uses $s, not in ckpt.h"
done
python3 scripts/funclen.py libckpt/src/*.c || fail "functions over 80 lines in libckpt/src"
[ "$fails" = 0 ] && echo "ok: layers hold" && exit 0
exit 1
