#!/usr/bin/env bash
# man_check.sh SRCDIR - check the man pages in SRCDIR/man.
#
#  - every page renders with man(1) without a groff warning or error (man
#    exits 0 even then, so anything on stderr is a failure), and every
#    ".so man3/x.3" alias resolves: pages are copied into man3/ and man7/
#    of a scratch directory first, the layout they are installed in;
#  - no page has trailing whitespace;
#  - every public function of include/ufault/ufault.h (UFAULT_API) and of
#    include/ufault/rangelock.h has a page named after it, whose NAME
#    section lists it (lexgrog, what mandb indexes) and whose rendered text
#    shows its prototype.
#
# Prints one line per failure and a summary; exits 0 or 1.
set -u

src=${1:?usage: man_check.sh SRCDIR}
mandir=$src/man
failures=0

fail()
{
	echo "man_check: FAIL: $*"
	failures=$((failures + 1))
}

for tool in man lexgrog groff; do
	if ! command -v "$tool" >/dev/null; then
		echo "man_check: FAIL: $tool not found (scripts/deps.sh installs man-db and groff-base)"
		exit 1
	fi
done
if [ ! -d "$mandir" ]; then
	echo "man_check: FAIL: no directory $mandir"
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/pages" "$tmp/txt"

shopt -s nullglob
npages=0
for f in "$mandir"/*.[1-9]; do
	sec=${f##*.}
	mkdir -p "$tmp/pages/man$sec" "$tmp/txt/man$sec"
	cp "$f" "$tmp/pages/man$sec/"
	npages=$((npages + 1))
done
if [ "$npages" -eq 0 ]; then
	echo "man_check: FAIL: no pages in $mandir"
	exit 1
fi

# --- rendering -------------------------------------------------------------
# A UTF-8 locale where there is one (Debian has C.UTF-8); man warns on stderr
# about a locale that does not exist.
if locale -a 2>/dev/null | grep -qix 'c\.utf-\?8'; then
	export LC_ALL=C.UTF-8
else
	export LC_ALL=C
fi
export MANWIDTH=80
unset MANPAGER PAGER MAN_KEEP_FORMATTING
cd "$tmp/pages" || exit 1
for p in man*/*; do
	if grep -qn '[[:space:]]$' "$p"; then
		fail "$p: trailing whitespace on line(s) $(grep -n '[[:space:]]$' "$p" | cut -d: -f1 | paste -sd, -)"
	fi
	man --warnings -E UTF-8 -l "$p" >"$tmp/txt/$p" 2>"$tmp/err"
	rc=$?
	if [ "$rc" -ne 0 ]; then
		fail "$p: man exited with $rc"
	fi
	if [ -s "$tmp/err" ]; then
		fail "$p: man/groff printed on stderr:"
		sed 's/^/    /' "$tmp/err"
	fi
	if [ ! -s "$tmp/txt/$p" ]; then
		fail "$p: rendered to nothing"
	fi
done

# --- one page per public function -------------------------------------------
# The name is the identifier just before the first "(" of a line that starts
# with UFAULT_API (or static inline: a public inline function).
functions()
{
	sed -n -e 's/^UFAULT_API[^(]*[^A-Za-z0-9_]\([A-Za-z_][A-Za-z0-9_]*\)(.*/\1/p' \
		-e 's/^static inline[^(]*[^A-Za-z0-9_]\([A-Za-z_][A-Za-z0-9_]*\)(.*/\1/p' "$1" |
		grep -v '^ufault__'
}

nfuncs=0
for h in ufault.h rangelock.h; do
	header=$src/include/ufault/$h
	if [ ! -r "$header" ]; then
		fail "cannot read $header"
		continue
	fi
	names=$(functions "$header")
	# A declaration this parser misses must fail loudly, not pass silently.
	declared=$(grep -c -E '^(UFAULT_API|static inline)' "$header")
	parsed=$(printf '%s\n' "$names" | grep -c .)
	if [ "$declared" -ne "$parsed" ] || [ "$parsed" -eq 0 ]; then
		fail "$h: $declared public declarations but $parsed function names parsed"
	fi
	for fn in $names; do
		nfuncs=$((nfuncs + 1))
		page=man3/$fn.3
		if [ ! -e "$page" ]; then
			fail "$fn ($h): no page man/$fn.3"
			continue
		fi
		if ! lexgrog "$page" 2>/dev/null | grep -q "\"$fn - "; then
			fail "$fn ($h): the NAME section of man/$fn.3 (or the page it .so's) does not list $fn"
		fi
		if ! grep -q "$fn(" "$tmp/txt/$page"; then
			fail "$fn ($h): man/$fn.3 does not show the prototype $fn(...)"
		fi
	done
done

if [ "$failures" -ne 0 ]; then
	echo "man_check: $failures failure(s); $npages pages, $nfuncs public functions"
	exit 1
fi
echo "man_check: OK: $npages pages render cleanly, $nfuncs public functions all have a page"
exit 0
