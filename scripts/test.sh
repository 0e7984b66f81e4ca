#!/usr/bin/env bash
# README command 2 (and .ci/run): install what is missing, then build and run
# the whole suite three times: plain (-Werror), ASan+UBSan, TSan.
# UFAULT_TEST_BUILDS="plain" limits the builds; UFAULT_TEST_SECONDS scales
# the stress tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
builds=${UFAULT_TEST_BUILDS:-"plain asan tsan"}
jobs=$(nproc)
status=0
for b in $builds; do
	case $b in
	plain) opts=(-DUFAULT_WERROR=ON) ;;
	asan) opts=(-DUFAULT_WERROR=ON -DUFAULT_SANITIZE=address -DCMAKE_BUILD_TYPE=Debug) ;;
	tsan) opts=(-DUFAULT_WERROR=ON -DUFAULT_SANITIZE=thread -DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
	*) echo "unknown build $b" >&2; exit 2 ;;
	esac
	echo "=== build-$b: configure and build"
	cmake -S . -B "build-$b" "${opts[@]}" >/dev/null
	cmake --build "build-$b" -j"$jobs" >/dev/null
	echo "=== build-$b: ctest"
	export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
	export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
	export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
	if ! ctest --test-dir "build-$b" --output-on-failure -j"$jobs"; then
		echo "=== build-$b: FAILED"
		status=1
	fi
done
exit $status
