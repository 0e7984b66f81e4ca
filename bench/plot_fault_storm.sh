#!/bin/sh
# SPDX-License-Identifier: MIT
#
# plot_fault_storm.sh - turn `fault_storm --json` output into PNGs: faults/s
# against fault threads, one line per mode, one PNG per workload/source (and
# mixed variant, pinned or not); for restore also the proxies' call p99.
# The "check" section (T=1 only) and verdict lines are skipped. Needs only awk and gnuplot (gnuplot-nox is enough).
#
# usage: bench/plot_fault_storm.sh RESULTS.jsonl [OUTDIR]
#        fault_storm --json | bench/plot_fault_storm.sh - [OUTDIR]
set -eu

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
	echo "usage: $0 RESULTS.jsonl|- [OUTDIR]" >&2
	exit 2
fi
in=$1
out=${2:-.}
command -v gnuplot >/dev/null 2>&1 || { echo "$0: gnuplot not found" >&2; exit 1; }
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# One directory per plot, one .dat file per line (mode, plus proxies for mixed).
awk -v dir="$tmp" '
function get(k,    v) {
	if (!match($0, "\"" k "\":(\"[^\"]*\"|[^,}]*)"))
		return ""
	v = substr($0, RSTART + length(k) + 3, RLENGTH - length(k) - 3)
	gsub(/"/, "", v)
	return v
}
/"faults_per_s"/ {
	sec = get("section"); wl = get("workload")
	if (sec == "check")
		next
	src = get("source"); var = get("variant"); pin = get("pinned")
	g = wl "-" src
	title = wl ", " src " source"
	if (src != "zero") {
		lat = get("latency"); tag = lat
		gsub(/[^A-Za-z0-9.]+/, "_", tag)
		g = g "-" tag; title = title " " lat
	}
	if (wl == "mixed") { g = g "-" var; title = title ", " var }
	if (pin == "true") { g = g "-pinned"; title = title ", pinned to CPU 0" }
	label = get("mode")
	if (wl == "mixed" || wl == "restore")
		label = label " P=" get("proxies")
	plot(g, title, "faults/s (log scale)", label, get("threads"), get("faults_per_s"))
	# restore: the proxy calls too (p99 of every call type together).
	if (wl == "restore" && get("proxies") > 0 && match($0, /"all":\{[^}]*\}/)) {
		all = substr($0, RSTART, RLENGTH)
		if (match(all, /"us_p99":[0-9.]+/)) {
			p99 = substr(all, RSTART + 9, RLENGTH - 9) # before get() moves RSTART
			plot(g "-proxy-p99", title ", proxy calls", "proxy-call p99, us (log scale)",
			     label, get("threads"), p99)
		}
	}
}
function plot(g, title, ylabel, label, x, y,    f) {
	if (!(g in seen)) {
		seen[g] = 1
		system("mkdir -p \"" dir "/" g "\"")
		print title > (dir "/" g "/title")
		close(dir "/" g "/title")
		print ylabel > (dir "/" g "/ylabel")
		close(dir "/" g "/ylabel")
	}
	f = dir "/" g "/" label ".dat"
	print x, y >> f
	close(f)
}
' "$([ "$in" = - ] && echo /dev/stdin || echo "$in")"

n=0
for gdir in "$tmp"/*/; do
	[ -d "$gdir" ] || continue
	g=$(basename "$gdir")
	title=$(cat "$gdir/title")
	ylabel=$(cat "$gdir/ylabel")
	plots=""
	for f in "$gdir"/*.dat; do
		sort -n -k1,1 "$f" -o "$f"
		label=$(basename "$f" .dat)
		[ -n "$plots" ] && plots="$plots, "
		plots="$plots'$f' using 1:2 with linespoints lw 2 pt 7 title '$label'"
	done
	gnuplot <<GP
set terminal pngcairo size 900,600 enhanced font ',11'
set output '$out/fault_storm-$g.png'
set title 'fault\\_storm: $title'
set xlabel 'fault threads'
set ylabel '$ylabel'
set logscale x 2
set xtics (1, 2, 4, 8, 16, 32, 64)
set format y '%.0s%c'
set logscale y 10
set grid
set key outside right top
plot $plots
GP
	echo "$out/fault_storm-$g.png"
	n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "$0: no fault_storm result lines in $in" >&2; exit 1; }
