#!/usr/bin/env bash
# README command 1: install what is missing, build, run bench/fault_storm on
# its default workload (a readable table and verdict lines). Extra arguments
# go to fault_storm.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target fault_storm >/dev/null
exec build/bench/fault_storm "$@"
