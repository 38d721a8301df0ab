#!/usr/bin/env bash
# bench/plot/plots.sh RAWDIR OUTDIR NAME - the PNG plots of a bench/run.sh run
# (gnuplot, pngcairo or png terminal):
#   NAME-faultlat-{seq,rand,zipf}.png  first-write latency CDF per mode (fault-around off)
#   NAME-faultlat-fa.png               libckpt SIGBUS / thread modes per fault-around size
#   NAME-pause.png                     pause vs heap size per method
#   NAME-memory.png                    extra memory over time, fork vs libckpt
#   NAME-redis-SERVER.png              Redis latency over time, snapshot window shaded
#   NAME-loaded-SERVER.png             the same for the loaded-server runs (issue 10)
#   NAME-pause-loaded.png              pause vs heap size with a writer dirtying pages
set -u
raw=$1 out=$2 name=$3
term="pngcairo size 1000,600 font ',10'"
gnuplot -e "set terminal pngcairo" 2>/dev/null </dev/null || term="png size 1000,600"

# plot_cdf PATTERN: every mode with a CDF file for PATTERN at fa1
plot_cdf() {
	local pat=$1 files=() f m plots=""
	for m in plain copy4k copy4k-alias wp-unprot wpasync fork mprotect uffd-sigbus uffd-thread uffd-poll ckpt-sigbus ckpt-thread ckpt-poll; do
		f="$raw/cdf/faultlat-$m-$pat-fa1.cdf"
		[ -s "$f" ] && plots="$plots${plots:+, }'$f' using 1:2 with lines lw 2 title '$m'"
	done
	[ -n "$plots" ] || return 0
	gnuplot <<-EOF
	set terminal $term
	set output '$out/$name-faultlat-$pat.png'
	set title 'First write to a page during a snapshot: latency CDF ($pat, 4 KiB pages, fault-around off)'
	set logscale x
	set xlabel 'latency (ns, log scale)'
	set ylabel 'fraction of first writes'
	set key right bottom
	set grid
	set yrange [0:1]
	plot $plots
	EOF
}
for p in seq rand zipf; do plot_cdf $p; done

# fault-around: CDFs of libckpt modes, sequential, per fa
plots=""
for m in ckpt-sigbus ckpt-thread ckpt-poll; do
	for fa in 1 4 16 64; do
		f="$raw/cdf/faultlat-$m-seq-fa$fa.cdf"
		[ -s "$f" ] && plots="$plots${plots:+, }'$f' using 1:2 with lines lw 2 title '$m fa=$fa'"
	done
done
f="$raw/cdf/faultlat-fork-seq-fa1.cdf"
[ -s "$f" ] && plots="$plots${plots:+, }'$f' using 1:2 with lines lw 3 dt 2 lc rgb 'black' title 'fork COW'"
if [ -n "$plots" ]; then
	gnuplot <<-EOF
	set terminal $term
	set output '$out/$name-faultlat-fa.png'
	set title 'libckpt first-write latency by fault-around size (sequential writer)'
	set logscale x
	set xlabel 'latency (ns, log scale)'
	set ylabel 'fraction of first writes'
	set key right bottom
	set grid
	set yrange [0:1]
	plot $plots
	EOF
fi

# pause vs heap size
if [ -s "$raw/pause.txt" ]; then
	plots=""
	for m in fork wp-raw ckpt-full ckpt-incr1 ckpt-incr10 ckpt-huge; do
		sed -n "s/^pause method=$m size=\([0-9]*\) ns=\([0-9]*\).*/\1 \2/p" "$raw/pause.txt" |
			awk '{ printf "%.0f %.4f\n", $1 / 1048576, $2 / 1e6 }' >"$raw/pause-$m.dat"
		[ -s "$raw/pause-$m.dat" ] && plots="$plots${plots:+, }'$raw/pause-$m.dat' using 1:2 with linespoints lw 2 pt 7 title '$m'"
	done
	[ -n "$plots" ] && gnuplot <<-EOF
	set terminal $term
	set output '$out/$name-pause.png'
	set title 'Application pause at snapshot start vs heap size'
	set logscale xy
	set xlabel 'heap (MiB, log scale)'
	set ylabel 'pause (ms, log scale)'
	set key left top
	set grid
	plot $plots
	EOF
fi

# pause vs heap size with a writer dirtying pages (issue 10): linear axes, so
# a pause that does not grow with the heap is a flat line
if [ -s "$raw/pause-loaded.txt" ]; then
	plots=""
	for m in fork ckpt-full ckpt-cut ckpt-incr1 ckpt-incr1-cut; do
		# the library's pause_ns where it reports one, else the call's time
		sed -n "s/^pause loaded method=$m size=\([0-9]*\) ns=\([0-9]*\) stats_pause_ns=\([-0-9]*\) .*/\1 \2 \3/p" \
			"$raw/pause-loaded.txt" |
			awk '{ printf "%.3f %.4f\n", $1 / 1073741824, ($3 >= 0 ? $3 : $2) / 1e6 }' >"$raw/pause-loaded-$m.dat"
		[ -s "$raw/pause-loaded-$m.dat" ] && plots="$plots${plots:+, }'$raw/pause-loaded-$m.dat' using 1:2 with linespoints lw 2 pt 7 title '$m'"
	done
	[ -n "$plots" ] && gnuplot <<-EOF
	set terminal $term
	set output '$out/$name-pause-loaded.png'
	set title 'Application pause vs heap size, a writer dirtying random pages throughout'
	set xlabel 'heap (GiB)'
	set ylabel 'pause (ms)'
	set key left top
	set grid
	set xrange [0:*]
	set yrange [0:*]
	plot $plots
	EOF
fi

# memory over time
plots=""
[ -s "$raw/memgrowth-fork.dat" ] && plots="'$raw/memgrowth-fork.dat' using 1:(\$2/1048576) with lines lw 2 title 'fork: child-only (copied) pages'"
[ -s "$raw/memgrowth-ckpt.dat" ] && plots="$plots${plots:+, }'$raw/memgrowth-ckpt.dat' using 1:(\$2/1048576) with lines lw 2 title 'libckpt: pool peak'"
cap=$(sed -n 's/^memgrowth method=ckpt .*pool_cap=\([0-9]*\).*/\1/p' "$raw/memgrowth.txt" 2>/dev/null)
[ -n "$cap" ] && plots="$plots, $((cap / 1048576)) with lines dt 2 lc rgb 'red' title 'libckpt pool cap'"
if [ -n "$plots" ]; then
	gnuplot <<-EOF
	set terminal $term
	set output '$out/$name-memory.png'
	set title 'Extra memory during a snapshot, application writing every page'
	set xlabel 'time since snapshot start (ms)'
	set ylabel 'MiB'
	set key left top
	set grid
	plot $plots
	EOF
fi

# Redis latency over time
for t in "$raw"/redis-*.trace "$raw"/loaded-*.trace; do
	[ -s "$t" ] || continue
	srv=$(basename "$t" .trace)
	kind=${srv%%-*}
	srv=${srv#*-}
	win=$(sed -n 's/^# window //p' "$t")
	ws=${win% *} we=${win#* }
	rect=""
	[ -n "$win" ] && rect="set object 1 rect from $ws, graph 0 to $we, graph 1 fc rgb '#ffd0d0' fs solid 0.5 behind"
	gnuplot <<-EOF
	set terminal $term
	set output '$out/$name-$kind-$srv.png'
	set title 'Redis ($srv$([ "$kind" = loaded ] && echo ', loaded server')): request latency over time, open-loop load; snapshot window shaded'
	set xlabel 'time (ms)'
	set ylabel 'latency (us, log scale)'
	set logscale y
	set key left top
	set grid
	$rect
	plot '$t' using 1:5 with lines lw 1 title 'max per 50 ms', '' using 1:4 with lines lw 2 title 'p99 per 50 ms', '' using 1:3 with lines lw 2 title 'p50 per 50 ms'
	EOF
done
exit 0
