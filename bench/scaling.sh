#!/bin/sh
# SPDX-License-Identifier: MIT
#
# scaling.sh - fault_storm's scaling plan, for a machine with more cores than
# the 2-CPU development VM: pft, restore and mixed at fault threads 1..64 in
# every mode, as JSON lines, plus the plots (bench/plot_fault_storm.sh) and
# a note of the machine. About 5 minutes. Tests never depend on it.
#
# usage: bench/scaling.sh [BUILD_DIR [OUTDIR]]   (defaults: build, scaling-<host>)
set -eu

build=${1:-build}
out=${2:-scaling-$(hostname -s 2>/dev/null || echo host)}
fs=$build/bench/fault_storm
here=$(dirname "$0")

[ -x "$fs" ] || { echo "$0: $fs not built (cmake --build $build --target fault_storm)" >&2; exit 1; }
mkdir -p "$out"
threads=1,2,4,8,16,32,64
{
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "kernel: $(uname -sr)"
	echo "cpus: $(nproc)"
	grep -m1 'model name' /proc/cpuinfo 2>/dev/null || true
	echo "commit: $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)"
} > "$out/machine.txt"
cat "$out/machine.txt"
: > "$out/scaling.jsonl"
for wl in pft restore mixed; do
	runs=1
	[ "$wl" = restore ] && runs=3
	echo "== $wl, threads $threads, $runs run(s)" >&2
	"$fs" --workload "$wl" --threads "$threads" --runs "$runs" --json >> "$out/scaling.jsonl"
done
if command -v gnuplot >/dev/null 2>&1; then
	sh "$here/plot_fault_storm.sh" "$out/scaling.jsonl" "$out"
else
	echo "$0: gnuplot not found: no plots (scripts/deps.sh installs gnuplot-nox)" >&2
fi
grep '"verdict"' "$out/scaling.jsonl" || true
echo "results: $out/scaling.jsonl, $out/*.png" >&2
