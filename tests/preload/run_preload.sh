#!/usr/bin/env bash
# run_preload.sh SHIM PROBE CASE [TOUCH [UFAULTD]] - a real program with and without
# libufault_preload.so (SHIM): the two runs must give identical results,
# and, for the programs that make large private anonymous mappings, the
# shim's UFAULT_TRACE report must show regions made and faults served.
#
# CASE:
#   probe        tests/preload/preload_probe.c (PROBE): every kind of call;
#                the report's region lines; the same in each other
#                UFAULT_LOCK_MODE (region, range, global); UFAULT_MIN_BYTES above every
#                mapping (no region) and not a size (reported)
#   python       a memory-heavy python3 script (private anonymous mmap of
#                256 MiB and many 1 MiB obmalloc arenas), its digest
#   python_mmap  python3's own test suite for the mmap module
#                (test.test_mmap, libpython3.11-testsuite), test by test
#   sqlite       sqlite3 with mmap_size 256 MiB over a 200k-row database
#   stress_ng    stress-ng --mmap with its own verification (--verify):
#                its stressors are forked children, which the shim leaves
#                to the kernel (no regions in a child without exec: see
#                preload/state.c); the verdict must be the same
#   java         java -version, and GcHeavy.java (a seeded allocation-heavy
#                program) on a 256 MiB heap: the JVM reserves its heap
#                PROT_NONE and commits it piecewise
#   unprivileged the probe as user nobody, where its userfaultfd would take
#                user-mode faults only: the shim says so and makes no
#                regions (a read(2) into fresh memory would fail), and
#                the probe's output is the same
#   redis        redis-server filled by DEBUG POPULATE and redis-benchmark
#                (every client and the server under the shim), DEBUG
#                DIGEST and DBSIZE compared
#   memory_limit tests/preload/preload_touch.c (TOUCH) writing and checking
#                1 GiB of private anonymous memory (16 mappings of 64 MiB;
#                munmap, MADV_DONTNEED, mremap, MAP_FIXED between; a
#                forked child checks every page), with UFAULT_MEMORY_LIMIT=
#                256M under the shim: the same output, a peak RSS of at
#                least 1 GiB without the shim and at most 256 + 64 MiB
#                with it, pages evicted and written to the swap file; then
#                heavy.py (python) under UFAULT_MEMORY_LIMIT=32M: its digest
#   java_limit   GcHeavy.java on a 256 MiB heap under UFAULT_MEMORY_LIMIT=
#                64M: the JVM commits its heap with MAP_FIXED over the
#                reservation; the same checksum, pages evicted
#   daemon       a ufaultd (UFAULTD) started on a socket of its own, and
#                UFAULT_DAEMON pointing at it: the probe (every kind of
#                call, fork, exec), heavy.py and GcHeavy.java give the same
#                output, and the report says the regions were served by
#                the daemon, with the daemon's own count of faults
#
# Exit 0, 1 (a difference or a check failed) or 77 (the program is not
# installed: scripts/deps.sh installs it).
set -u
shim=$(readlink -f "${1:?usage: run_preload.sh SHIM PROBE CASE [TOUCH]}") probe=${2:?} case=${3:?}
touch=${4:-} ufaultd=${5:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail()
{
	echo "run_preload[$case]: FAIL: $*"
	exit 1
}

need()
{
	command -v "$1" >/dev/null || {
		echo "run_preload[$case]: $1 not installed (scripts/deps.sh): skipped"
		exit 77
	}
}

# run NAME CMD...: without the shim into $tmp/NAME.0, with it into
# $tmp/NAME.1 (its report in $tmp/NAME.trace); each run's status in .rc.
run()
{
	local name=$1
	shift
	"$@" >"$tmp/$name.0" 2>&1
	echo $? >"$tmp/$name.0.rc"
	UFAULT_TRACE="$tmp/$name.trace" LD_PRELOAD="$shim" "$@" >"$tmp/$name.1" 2>&1
	echo $? >"$tmp/$name.1.rc"
}

same()
{
	local name=$1
	if ! cmp -s "$tmp/$name.0.rc" "$tmp/$name.1.rc"; then
		fail "$name: exit status $(cat "$tmp/$name.0.rc") without the shim, $(cat "$tmp/$name.1.rc") with it"
	fi
	if ! diff -u "$tmp/$name.0" "$tmp/$name.1"; then
		fail "$name: output differs with the shim"
	fi
}

# evicted NAME: the report's memory-limit line shows pages evicted and
# written to the swap file (in the process that made the regions).
evicted()
{
	local name=$1 n w
	n=$(awk '/memory limit/ {for (i = 1; i < NF; i++) if ($i == "evicted") n += $(i + 1)} END {print n + 0}' "$tmp/$name.trace")
	w=$(awk '/memory limit/ {for (i = 2; i <= NF; i++) if ($i == "writes") n += $(i - 1)} END {print n + 0}' "$tmp/$name.trace")
	echo "run_preload[$case]: $name: $n pages evicted, $w written to the swap file"
	[ "$n" -gt 0 ] || fail "$name: nothing evicted under the memory limit"
	[ "$w" -gt 0 ] || fail "$name: nothing written to the swap file"
}

# served NAME MIN_REGIONS: the report shows at least MIN_REGIONS regions
# made and some faults served, summed over the processes it lists.
served()
{
	local name=$1 min=$2 regions faults
	[ -s "$tmp/$name.trace" ] || fail "$name: no UFAULT_TRACE report"
	regions=$(awk '/^ufault_preload pid/ {n += $4} END {print n + 0}' "$tmp/$name.trace")
	faults=$(awk '/^ufault_preload pid/ {for (i = 1; i < NF; i++) if ($i == "faults") n += $(i + 1)} END {print n + 0}' "$tmp/$name.trace")
	echo "run_preload[$case]: $name: $regions regions made, $faults faults served"
	[ "$regions" -ge "$min" ] || fail "$name: $regions regions made, expected at least $min"
	[ "$faults" -gt 0 ] || fail "$name: no fault served"
}

case $case in
probe)
	run probe "$probe"
	same probe
	grep -q '^failures 0$' "$tmp/probe.1" || fail "probe: its own checks failed"
	# large, fixed, reserve, remap (2), advise, hole, errno, 80 from the
	# threads, fork, spawn, shm; the spawned and exec'd children one each.
	served probe 90
	grep -qE '^[0-9]+ 0x[0-9a-f]+ [0-9]+ (pages touched [0-9]+/[0-9]+ \|.{64}\||unmapped, pages touched [0-9]+)$' \
		"$tmp/probe.trace" || fail "probe: no region line in the report"
	# UFAULT_LOCK_MODE (read by libufault): the other three modes, the
	# same output, regions made and faults served in each.
	for m in region range global; do
		UFAULT_LOCK_MODE=$m UFAULT_TRACE="$tmp/mode_$m.trace" LD_PRELOAD="$shim" "$probe" \
			>"$tmp/mode_$m.out" 2>&1 || fail "probe: failed with UFAULT_LOCK_MODE=$m"
		cmp -s "$tmp/probe.0" "$tmp/mode_$m.out" || fail "probe: output differs with UFAULT_LOCK_MODE=$m"
		cp "$tmp/mode_$m.trace" "$tmp/mode.trace"
		served mode 90
		grep -q "lock mode $m," "$tmp/mode.trace" || fail "probe: UFAULT_LOCK_MODE=$m not in force"
	done
	# UFAULT_MIN_BYTES above every mapping the probe makes: no region,
	# the same output.
	UFAULT_MIN_BYTES=1G UFAULT_TRACE="$tmp/min.trace" LD_PRELOAD="$shim" "$probe" \
		>"$tmp/min.out" 2>&1 || fail "probe: failed with UFAULT_MIN_BYTES=1G"
	cmp -s "$tmp/probe.0" "$tmp/min.out" || fail "probe: output differs with UFAULT_MIN_BYTES=1G"
	[ "$(awk '/^ufault_preload pid/ {n += $4} END {print n + 0}' "$tmp/min.trace")" = 0 ] ||
		fail "probe: regions made under UFAULT_MIN_BYTES=1G"
	# A value that is not a size is reported, and the default kept.
	UFAULT_MIN_BYTES=lots LD_PRELOAD="$shim" "$probe" >"$tmp/bad.out" 2>"$tmp/bad.err" ||
		fail "probe: failed with UFAULT_MIN_BYTES=lots"
	grep -q 'UFAULT_MIN_BYTES=lots: not a size' "$tmp/bad.err" ||
		fail "probe: UFAULT_MIN_BYTES=lots not reported"
	;;
python)
	need python3
	run python python3 "$(dirname "$0")/heavy.py"
	same python
	served python 2
	;;
python_mmap)
	need python3
	python3 -c 'import test.test_mmap' 2>/dev/null || {
		echo "run_preload[$case]: test.test_mmap not installed (libpython3.11-testsuite): skipped"
		exit 77
	}
	# Test by test (the timings line differs from run to run).
	run python_mmap python3 -m unittest -v test.test_mmap
	for s in 0 1; do
		grep -E ' \.\.\. ' "$tmp/python_mmap.$s" | sort >"$tmp/python_mmap.$s.tests"
		cp "$tmp/python_mmap.$s.tests" "$tmp/python_mmap.$s"
	done
	same python_mmap
	grep -q ' \.\.\. ok$' "$tmp/python_mmap.1" || fail "python_mmap: no test ran"
	served python_mmap 1
	;;
sqlite)
	need sqlite3
	rm -f "$tmp/db.0" "$tmp/db.1"
	sqlite3 "$tmp/db.0" <"$(dirname "$0")/rows.sql" >"$tmp/sqlite.0" 2>&1
	echo $? >"$tmp/sqlite.0.rc"
	UFAULT_TRACE="$tmp/sqlite.trace" LD_PRELOAD="$shim" sqlite3 "$tmp/db.1" <"$(dirname "$0")/rows.sql" >"$tmp/sqlite.1" 2>&1
	echo $? >"$tmp/sqlite.1.rc"
	same sqlite
	# sqlite3 maps its database file (shared) and allocates with malloc:
	# it may make no region at all; its report is shown, not required.
	cat "$tmp/sqlite.trace" 2>/dev/null | head -1
	;;
stress_ng)
	need stress-ng
	for s in 0 1; do
		pre=()
		[ $s = 1 ] && pre=(env UFAULT_TRACE="$tmp/stress.trace" LD_PRELOAD="$shim")
		"${pre[@]}" stress-ng --mmap 2 --mmap-bytes 64M --mmap-ops 16 --verify \
			--timeout 60s >"$tmp/stress.$s.log" 2>&1
		echo $? >"$tmp/stress.$s.rc"
		# Its verdict, not its timings.
		grep -Eo 'successful run completed|unsuccessful run completed|fail[a-z]*:.*' \
			"$tmp/stress.$s.log" | sort -u >"$tmp/stress.$s"
	done
	same stress
	grep -q 'successful run completed' "$tmp/stress.1" || fail "stress_ng: not successful with the shim"
	head -1 "$tmp/stress.trace" 2>/dev/null
	;;
unprivileged)
	need runuser
	[ "$(id -u)" = 0 ] || {
		echo "run_preload[$case]: not root: skipped"
		exit 77
	}
	[ "$(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null)" = 0 ] &&
		! runuser -u nobody -- test -w /dev/userfaultfd || {
		echo "run_preload[$case]: nobody gets a full userfaultfd here: nothing to show: skipped"
		exit 77
	}
	chmod 755 "$tmp"
	mkdir -m 777 "$tmp/u"
	cp "$probe" "$tmp/probe"
	chmod 755 "$tmp/probe"
	runuser -u nobody -- test -r "$shim" || {
		echo "run_preload[$case]: nobody cannot read $shim: skipped"
		exit 77
	}
	(cd "$tmp/u" && runuser -u nobody -- "$tmp/probe" >"$tmp/unpriv.0" 2>"$tmp/unpriv.0.err")
	echo $? >"$tmp/unpriv.0.rc"
	(cd "$tmp/u" && runuser -u nobody -- env LD_PRELOAD="$shim" UFAULT_TRACE="$tmp/u/trace" \
		"$tmp/probe" >"$tmp/unpriv.1" 2>"$tmp/unpriv.1.err")
	echo $? >"$tmp/unpriv.1.rc"
	same unpriv
	grep -q 'user-mode faults only' "$tmp/unpriv.1.err" || fail "unprivileged: the shim did not say why"
	regions=$(awk '/^ufault_preload pid/ {n += $4} END {print n + 0}' "$tmp/u/trace")
	[ "$regions" = 0 ] || fail "unprivileged: $regions regions made"
	;;
java)
	need java
	run java_version java -version
	same java_version
	run java_gc java -Xmx256m -XX:+UseParallelGC "$(dirname "$0")/GcHeavy.java"
	same java_gc
	grep -q '^checksum ' "$tmp/java_gc.1" || fail "java: GcHeavy printed no checksum"
	served java_gc 10
	;;
redis)
	need redis-server
	need redis-cli
	need redis-benchmark
	cat >"$tmp/redis.sh" <<'EOF'
port=$1 dir=$2
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
	--enable-debug-command local >"$dir/server.log" 2>&1 &
pid=$!
for i in $(seq 200); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
redis-cli -p "$port" DEBUG POPULATE 200000 key 128
redis-benchmark -p "$port" -n 20000 -t set,lpush,sadd,hset -d 64 -q >"$dir/bench.log" 2>&1 ||
	echo "redis-benchmark failed"
redis-cli -p "$port" DEBUG DIGEST
redis-cli -p "$port" DBSIZE
redis-cli -p "$port" shutdown nosave
wait "$pid"
echo "server exit $?"
EOF
	# A port pair per run.
	port=$((6900 + $$ % 1000 * 2))
	mkdir "$tmp/r0" "$tmp/r1"
	bash "$tmp/redis.sh" "$port" "$tmp/r0" >"$tmp/redis.0" 2>&1
	echo $? >"$tmp/redis.0.rc"
	UFAULT_TRACE="$tmp/redis.trace" LD_PRELOAD="$shim" bash "$tmp/redis.sh" $((port + 1)) "$tmp/r1" \
		>"$tmp/redis.1" 2>&1
	echo $? >"$tmp/redis.1.rc"
	same redis
	grep -q 'redis-benchmark failed' "$tmp/redis.1" && fail "redis: the benchmark failed"
	served redis 1
	;;
memory_limit)
	[ -x "$touch" ] || fail "no TOUCH program given"
	"$touch" 1024 64 "$tmp/rss.0" >"$tmp/limit.0" 2>&1
	echo $? >"$tmp/limit.0.rc"
	UFAULT_MEMORY_LIMIT=256M UFAULT_TRACE="$tmp/limit.trace" LD_PRELOAD="$shim" \
		"$touch" 1024 64 "$tmp/rss.1" >"$tmp/limit.1" 2>&1
	echo $? >"$tmp/limit.1.rc"
	same limit
	grep -q '^4 wrong words 0$' "$tmp/limit.1" || fail "limit: wrong bytes"
	rss0=$(cat "$tmp/rss.0") rss1=$(cat "$tmp/rss.1")
	echo "run_preload[$case]: limit: peak RSS $((rss0 / 1024)) MiB without the shim, $((rss1 / 1024)) MiB with UFAULT_MEMORY_LIMIT=256M"
	[ "$rss0" -ge $((1024 * 1024)) ] || fail "limit: peak RSS $rss0 KiB without the shim: 1 GiB not touched"
	[ "$rss1" -le $(((256 + 64) * 1024)) ] || fail "limit: peak RSS $rss1 KiB over 256 MiB + 64 MiB"
	served limit 16
	evicted limit
	need python3
	python3 "$(dirname "$0")/heavy.py" >"$tmp/plimit.0" 2>&1
	echo $? >"$tmp/plimit.0.rc"
	UFAULT_MEMORY_LIMIT=32M UFAULT_TRACE="$tmp/plimit.trace" LD_PRELOAD="$shim" \
		python3 "$(dirname "$0")/heavy.py" >"$tmp/plimit.1" 2>&1
	echo $? >"$tmp/plimit.1.rc"
	same plimit
	evicted plimit
	;;
java_limit)
	need java
	java -Xmx256m -XX:+UseParallelGC "$(dirname "$0")/GcHeavy.java" >"$tmp/jlimit.0" 2>&1
	echo $? >"$tmp/jlimit.0.rc"
	UFAULT_MEMORY_LIMIT=64M UFAULT_TRACE="$tmp/jlimit.trace" LD_PRELOAD="$shim" \
		java -Xmx256m -XX:+UseParallelGC "$(dirname "$0")/GcHeavy.java" >"$tmp/jlimit.1" 2>&1
	echo $? >"$tmp/jlimit.1.rc"
	same jlimit
	grep -q '^checksum ' "$tmp/jlimit.1" || fail "java_limit: GcHeavy printed no checksum"
	served jlimit 1
	evicted jlimit
	;;
daemon)
	[ -x "$ufaultd" ] || fail "no UFAULTD program given"
	"$ufaultd" --socket "$tmp/ufaultd.sock" --no-keeper --log-level warn >"$tmp/ufaultd.log" 2>&1 &
	dpid=$!
	trap 'kill $dpid 2>/dev/null; wait $dpid 2>/dev/null; rm -rf "$tmp"' EXIT
	for i in $(seq 200); do [ -S "$tmp/ufaultd.sock" ] && break; sleep 0.05; done
	[ -S "$tmp/ufaultd.sock" ] || fail "ufaultd did not start: $(cat "$tmp/ufaultd.log")"
	export UFAULT_DAEMON="$tmp/ufaultd.sock"
	run dprobe "$probe"
	same dprobe
	grep -q '^failures 0$' "$tmp/dprobe.1" || fail "dprobe: the probe's own checks failed"
	served dprobe 90
	need python3
	run dpython python3 "$(dirname "$0")/heavy.py"
	same dpython
	served dpython 2
	if command -v java >/dev/null; then
		run djava java -Xmx256m -XX:+UseParallelGC "$(dirname "$0")/GcHeavy.java"
		same djava
		served djava 1
	fi
	# Served by the daemon, in every process that made regions.
	for t in dprobe dpython; do
		made=$(awk '/^ufault_preload pid .* regions made/ && $4 > 0 {print $3}' "$tmp/$t.trace" | sort -u)
		by=$(awk '/regions served by ufaultd at/ {print $3}' "$tmp/$t.trace" | sort -u)
		[ -n "$made" ] || fail "$t: no process made a region"
		missing=$(comm -23 <(echo "$made") <(echo "$by"))
		[ -z "$missing" ] || fail "$t: processes with regions not served by ufaultd: $missing"
	done
	grep -q 'faults served in-process' "$tmp"/*.1 && fail "a process could not reach ufaultd"
	kill $dpid
	wait $dpid
	;;
*)
	fail "unknown case"
	;;
esac
echo "run_preload[$case]: OK"
