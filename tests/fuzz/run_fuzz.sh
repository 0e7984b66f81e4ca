#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Run a libFuzzer target over a scratch copy of the seed corpus (so the
# committed corpus only grows by hand), print libFuzzer's summary line,
# and fail on a crash. Builds nothing.
#
# Usage: run_fuzz.sh FUZZER [RUNS] [CORPUS]   (RUNS: 1000000; CORPUS: corpus/ here)
# Extra libFuzzer flags: FUZZ_FLAGS="-max_len=70000 -seed=1" run_fuzz.sh ...
# A crash leaves its input as crash-* in the current directory: fix it, then
# add it to corpus/ as native-bad-*.bin, fc-bad-*.json or zlog-bad-*.bin
# (or ok-).
set -euo pipefail

fuzzer=${1:?usage: run_fuzz.sh FUZZER [RUNS] [CORPUS]}
runs=${2:-1000000}
seeds=${3:-$(dirname "$(readlink -f "$0")")/corpus}

[ -x "$fuzzer" ] || { echo "run_fuzz: $fuzzer is not an executable" >&2; exit 2; }
[ -d "$seeds" ] || { echo "run_fuzz: no corpus at $seeds" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/ufault-fuzz.XXXXXX")
log=$(mktemp "${TMPDIR:-/tmp}/ufault-fuzz-log.XXXXXX")
trap 'rm -rf "$work" "$log"' EXIT
cp -- "$seeds"/* "$work"/

# The dictionary next to the corpus (fuzz_proto.dict for corpus/), if any.
dict=()
[ -f "$(dirname "$seeds")/$(basename "$fuzzer").dict" ] &&
	dict=(-dict="$(dirname "$seeds")/$(basename "$fuzzer").dict")

rc=0
# shellcheck disable=SC2086 # FUZZ_FLAGS is a list of flags
"$fuzzer" -runs="$runs" -print_final_stats=1 "${dict[@]}" ${FUZZ_FLAGS:-} "$work" \
	>"$log" 2>&1 || rc=$?

# The summary: "Done N runs in S second(s)" on success, the crash report
# (and the input's file name) otherwise.
if ((rc == 0)) && grep -q '^Done [0-9]* runs' "$log"; then
	grep '^Done [0-9]* runs' "$log" | tail -n 1
	grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
	echo "run_fuzz: crashes 0"
	exit 0
fi
tail -n 60 "$log"
grep -E 'Test unit written to' "$log" || true
echo "run_fuzz: FAILED (libFuzzer exit $rc)" >&2
exit $((rc ? rc : 1))
