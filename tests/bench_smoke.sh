#!/bin/bash
# SPDX-License-Identifier: MIT
#
# bench_smoke.sh - fault_storm does what its options say, in every workload
# (no timing is checked: benchmarks measure, tests assert behaviour):
#  - every workload runs in a short plan and exits 0; every measurement line
#    has faults; restore's lines with proxies have proxy calls of every type;
#  - the verdicts come out for check, restore and mixed, one per claim;
#  - bad options exit 2 with a message; --help exits 0;
#  - the plot script turns the JSON into PNGs where gnuplot is installed.
# usage: bench_smoke.sh BUILD_DIR SOURCE_DIR
set -euo pipefail

fs=$1/bench/fault_storm
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "bench_smoke: $*" >&2; exit 1; }

"$fs" --help > "$tmp/help" || fail "--help exited $?"
grep -q restore "$tmp/help" || fail "--help does not list restore"
for bad in "--latency-dist nope" "--workload nope" "--latency-dist bimodal:1:2:2000" "--threads 0"; do
	rc=0
	# shellcheck disable=SC2086
	"$fs" $bad > /dev/null 2> "$tmp/err" || rc=$?
	[ "$rc" = 2 ] || fail "'$bad' exited $rc, expected 2"
	[ -s "$tmp/err" ] || fail "'$bad' gave no message"
done

"$fs" --workload pft,check,page_fault1,ebizzy,mixed,restore --threads 2 --seconds 0.1 \
	--runs 1 --size 256K --proxy-size 64K --json > "$tmp/out.jsonl" \
	|| fail "the short plan exited $?"
results=$(grep -c '"faults_per_s"' "$tmp/out.jsonl")
# pft, page_fault1, ebizzy: 6 modes; check: 3; mixed, restore: 4 modes + spec P=0.
[ "$results" = $((6 * 3 + 3 + 5 * 2)) ] || fail "$results measurement lines, expected 31"
if grep '"faults_per_s"' "$tmp/out.jsonl" | grep -q '"faults":0,'; then
	fail "a measurement with no faults: $(grep '"faults":0,' "$tmp/out.jsonl" | head -1)"
fi
grep '"workload":"restore"' "$tmp/out.jsonl" | grep '"proxies":2' > "$tmp/restore"
[ "$(wc -l < "$tmp/restore")" = 4 ] || fail "restore: expected 4 lines with proxies"
for op in mmap munmap mprotect madvise; do
	if grep -q "\"$op\":{\"n\":0," "$tmp/restore"; then
		fail "restore: no $op call was timed"
	fi
done
grep -q '"latency":"bimodal 95.0% 100 us / 5.0% 5000 us"' "$tmp/restore" \
	|| fail "restore: not the bimodal default latency"
verdicts() { grep '"verdict"' "$tmp/out.jsonl" | grep -c "$1" || true; }
[ "$(verdicts '"verdict":"check')" = 1 ] || fail "check: expected 1 verdict"
[ "$(verdicts '"verdict":"restore')" = 3 ] || fail "restore: expected 3 verdicts"
[ "$(verdicts '"verdict":"mixed')" = 2 ] || fail "mixed: expected 2 verdicts"
if grep '"verdict"' "$tmp/out.jsonl" | grep -q '"result":"SKIP"'; then
	fail "a verdict was skipped: $(grep '"SKIP"' "$tmp/out.jsonl" | head -1)"
fi

# Another latency distribution, and the synchronous slow source.
"$fs" --workload restore --modes spec --threads 2 --seconds 0.1 --size 256K \
	--latency-dist exp --latency-us 20 --source slow --json > "$tmp/exp.jsonl" \
	|| fail "restore with exp/slow exited $?"
grep -q '"source":"slow","latency_us":0,"latency":"exp mean 20 us"' "$tmp/exp.jsonl" \
	|| fail "restore: --latency-dist exp --latency-us 20 --source slow not honoured"

if command -v gnuplot > /dev/null; then
	sh "$src/bench/plot_fault_storm.sh" "$tmp/out.jsonl" "$tmp/png" > /dev/null 2>&1 \
		|| fail "plot_fault_storm.sh failed"
	ls "$tmp/png"/fault_storm-restore-*-proxy-p99.png > /dev/null \
		|| fail "no restore proxy-p99 plot"
fi
echo "bench_smoke: ok ($results measurements)"
