#!/usr/bin/env bash
# Install the Debian packages ufault needs, if any is missing. Idempotent.
set -euo pipefail
pkgs=(build-essential cmake pkg-config liburing-dev libuv1-dev libcmocka-dev libjemalloc-dev gnuplot-nox clang libclang-rt-14-dev
	libnbd-dev nbdkit # the NBD source; nbdkit serves exports to its test
	man-db groff-base # man-db, groff-base: tests/man_check.sh renders the man pages
	systemd # tests/daemon/test_systemd runs ufaultd under a systemd manager of its own
	# tests/preload: real programs run with and without libufault_preload.so
	python3 libpython3.11-testsuite sqlite3 stress-ng redis-server redis-tools
	openjdk-17-jdk-headless)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "deps: installing ${missing[*]}"
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
