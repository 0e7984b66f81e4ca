#!/usr/bin/env bash
# preload_programs.sh [BUILD_DIR] [RUNS] - the preload shim's cost on real
# programs' run times: each program runs RUNS times (default 3) without and
# with libufault_preload.so, alternated (ABBA), and the table shows the
# median wall time of each and their ratio. The programs are those of
# tests/preload (python3 with a 256 MiB script, java with GcHeavy.java,
# sqlite3 over a 200k-row database, redis-server under redis-benchmark,
# whose requests per second are shown instead of a time). A program that is
# not installed is left out (scripts/deps.sh installs them all).
# Then UFAULT_MEMORY_LIMIT: tests/preload/preload_touch (1 GiB written and
# checked twice, built with the tests), heavy.py and GcHeavy under a limit
# against the same program without the shim, and preload_touch's peak RSS
# (VmHWM before its fork) without the shim and under the limit. Then
# UFAULT_DAEMON: heavy.py and GcHeavy with their regions served by a
# ufaultd this script starts (build/daemon/ufaultd).
set -u
build=${1:-build} runs=${2:-3}
src=$(cd "$(dirname "$0")/.." && pwd)
shim=$(readlink -f "$build/preload/libufault_preload.so")
[ -r "$shim" ] || {
	echo "preload_programs: no $build/preload/libufault_preload.so (build it first)"
	exit 2
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT


# seconds NAME CMD...: the wall time of CMD (its output discarded).
seconds()
{
	local t0 t1
	t0=$(date +%s.%N)
	"$@" >/dev/null 2>&1 || echo "preload_programs: '$*' failed" >&2
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}'
}

median()
{
	sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

# time_program LABEL CMD...: RUNS pairs, alternated; prints a table row.
time_program()
{
	local label=$1 a=() b=() r
	shift
	for ((r = 0; r < runs; r++)); do
		if ((r % 2)); then
			b+=("$(seconds env LD_PRELOAD="$shim" "$@")")
			a+=("$(seconds env -u LD_PRELOAD "$@")")
		else
			a+=("$(seconds env -u LD_PRELOAD "$@")")
			b+=("$(seconds env LD_PRELOAD="$shim" "$@")")
		fi
		rm -f "$tmp/db"
	done
	ma=$(printf '%s\n' "${a[@]}" | median)
	mb=$(printf '%s\n' "${b[@]}" | median)
	printf '%-28s %10.3f s %10.3f s %8.3f\n' "$label" "$ma" "$mb" \
		"$(awk -v a="$ma" -v b="$mb" 'BEGIN {print b / a}')"
}

# redis_rps [shim]: SET requests per second of redis-benchmark against a
# redis-server, both with the shim or both without.
redis_rps()
{
	local pre=() port=$((7300 + RANDOM % 500)) pid rps
	[ "${1:-}" = shim ] && pre=(env LD_PRELOAD="$shim")
	"${pre[@]}" redis-server --port $port --bind 127.0.0.1 --save '' --appendonly no \
		--dir "$tmp" >/dev/null 2>&1 &
	pid=$!
	for i in $(seq 200); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.05; done
	rps=$("${pre[@]}" redis-benchmark -p $port -n 100000 -t set -d 256 -q 2>/dev/null |
		tr '\r' '\n' | awk '/^SET:/ {print $2}' | tail -1)
	redis-cli -p $port shutdown nosave >/dev/null 2>&1
	wait $pid 2>/dev/null
	echo "${rps:-0}"
}

echo "preload_programs: $runs runs each, alternated; shim $shim"
printf '%-28s %12s %12s %8s\n' program "without" "with" ratio
command -v python3 >/dev/null && time_program "python3 heavy.py" python3 "$src/tests/preload/heavy.py"
command -v python3 >/dev/null &&
	time_program "  UFAULT_FAULT_AROUND=1M" env UFAULT_FAULT_AROUND=1M python3 "$src/tests/preload/heavy.py"
command -v java >/dev/null &&
	time_program "java GcHeavy (256 MiB heap)" java -Xmx256m -XX:+UseParallelGC \
		"$src/tests/preload/GcHeavy.java"
command -v java >/dev/null && time_program "java -version" java -version
command -v sqlite3 >/dev/null && time_program "sqlite3 200k rows" sh -c "rm -f '$tmp/db'; sqlite3 '$tmp/db' <'$src/tests/preload/rows.sql'"
if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
	a=() b=()
	for ((r = 0; r < runs; r++)); do
		a+=("$(redis_rps)")
		b+=("$(redis_rps shim)")
	done
	ma=$(printf '%s\n' "${a[@]}" | median)
	mb=$(printf '%s\n' "${b[@]}" | median)
	printf '%-28s %10.0f/s %10.0f/s %8.3f\n' "redis SET (requests/s)" "$ma" "$mb" \
		"$(awk -v a="$ma" -v b="$mb" 'BEGIN {print (a > 0) ? b / a : 0}')"
fi

touch=$build/tests/preload/preload_touch
echo "UFAULT_MEMORY_LIMIT ('with': the shim and the limit; 'without': neither)"
if [ -x "$touch" ]; then
	time_program "touch 1 GiB, limit 256M" env UFAULT_MEMORY_LIMIT=256M "$touch" 1024 64 "$tmp/rss"
	"$touch" 1024 64 "$tmp/rss.0" >/dev/null 2>&1
	env UFAULT_MEMORY_LIMIT=256M LD_PRELOAD="$shim" "$touch" 1024 64 "$tmp/rss.1" >/dev/null 2>&1
	printf '%-28s %8d MiB %8d MiB\n' "  peak RSS (VmHWM)" $(($(cat "$tmp/rss.0") / 1024)) \
		$(($(cat "$tmp/rss.1") / 1024))
else
	echo "(no $touch: build the tests for the 1 GiB row)"
fi
command -v python3 >/dev/null &&
	time_program "python3 heavy.py, limit 32M" env UFAULT_MEMORY_LIMIT=32M python3 \
		"$src/tests/preload/heavy.py"
command -v java >/dev/null &&
	time_program "java GcHeavy, limit 64M" env UFAULT_MEMORY_LIMIT=64M java -Xmx256m \
		-XX:+UseParallelGC "$src/tests/preload/GcHeavy.java"

ufaultd=$build/daemon/ufaultd
echo "UFAULT_DAEMON ('with': the shim, regions served by a ufaultd of this script's; 'without': no shim)"
if [ -x "$ufaultd" ]; then
	"$ufaultd" --socket "$tmp/ufaultd.sock" --no-keeper --log-level warn >"$tmp/ufaultd.log" 2>&1 &
	dpid=$!
	for i in $(seq 200); do [ -S "$tmp/ufaultd.sock" ] && break; sleep 0.05; done
	command -v python3 >/dev/null &&
		time_program "python3 heavy.py, daemon" env UFAULT_DAEMON="$tmp/ufaultd.sock" \
			python3 "$src/tests/preload/heavy.py"
	command -v java >/dev/null &&
		time_program "java GcHeavy, daemon" env UFAULT_DAEMON="$tmp/ufaultd.sock" java \
			-Xmx256m -XX:+UseParallelGC "$src/tests/preload/GcHeavy.java"
	kill $dpid
	wait $dpid 2>/dev/null
else
	echo "(no $ufaultd: build the daemon for these rows)"
fi
