#!/usr/bin/env bash
# abi_check.sh SRC LIB - the shared library exports exactly the functions
# lib/libufault.map names, each in the node the map gives it, and every one
# of them is declared in a public header.
set -u
src=$1 lib=$2
map=$src/lib/libufault.map
fail=0
# "name node" pairs from the map (nodes are "UFAULT_x.y {" lines).
want=$(awk '/^UFAULT_[0-9.]+ *\{/ {node=$1} /^\t\t[a-z_0-9]+;/ {gsub(/[\t;]/, ""); print $0 " " node}' "$map" | sort)
got=$(nm -D --defined-only "$lib" | awk '$2 == "T" {split($3, a, "@@"); print a[1] " " a[2]}' | sort)
if [ -z "$want" ] || [ -z "$got" ]; then
	echo "abi_check: could not read the map or the library"
	exit 1
fi
while read -r line; do
	echo "abi_check: exported but not in the map (or in another node): $line"
	fail=1
done < <(comm -13 <(echo "$want") <(echo "$got"))
while read -r line; do
	echo "abi_check: in the map but not exported: $line"
	fail=1
done < <(comm -23 <(echo "$want") <(echo "$got"))
for fn in $(echo "$want" | cut -d' ' -f1); do
	if ! grep -qE "\b$fn\(" "$src"/include/ufault/*.h; then
		echo "abi_check: $fn is exported but no public header declares it"
		fail=1
	fi
done
n=$(echo "$want" | wc -l)
[ $fail -eq 0 ] && echo "abi_check: OK: $n functions, each in its node"
exit $fail
