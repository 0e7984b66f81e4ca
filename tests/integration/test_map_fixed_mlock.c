/* SPDX-License-Identifier: MIT */
/*
 * test_map_fixed_mlock.c - a MAP_FIXED ufault_mmap over locked memory either
 * replaces the region completely or changes nothing.
 *
 * MAP_FIXED over a region keeps its registered VMAs and gives them new
 * contents: protection first, then the old pages are dropped. On memory
 * locked with mlock2(MLOCK_ONFAULT), plain MADV_DONTNEED fails (EINVAL),
 * and a library that did not undo its mprotect left the old region
 * read-only behind a failed call: the application's next write got
 * SIGSEGV. The contract: a failure leaves regions, contents and
 * protections as they were. The library drops locked pages with
 * MADV_DONTNEED_LOCKED, so the call is expected to succeed here; either
 * way the invariant is asserted:
 *
 *  - success: every page reads the new source, protection is PROT_READ and
 *    a write gets SIGSEGV;
 *  - failure: protection is still PROT_READ | PROT_WRITE, a write works,
 *    and every page reads the old source.
 *
 * Protection is read from /proc/self/maps and probed with a real write (a
 * SIGSEGV handler jumps back). Runs in every lock mode.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include <cmocka.h>

#include "../modes.h"

#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif

#define RW (PROT_READ | PROT_WRITE)
#define PA (MAP_PRIVATE | MAP_ANONYMOUS)
#define NPAGES 8
#define SEED_OLD 1
#define SEED_NEW 2

static size_t ps;

/*
 * True if every byte of [addr, addr + len) is covered by VMAs whose
 * permissions start with @want ("rw-", "r--"); /proc/self/maps never
 * faults on the memory.
 */
static bool prot_is(const void *addr, size_t len, const char *want)
{
	FILE *f = fopen("/proc/self/maps", "r");
	uintptr_t lo = (uintptr_t)addr, hi = lo + len, covered = lo;
	char line[512];
	bool ok = true;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		char perms[5];

		if (sscanf(line, "%lx-%lx %4s", &s, &e, perms) != 3 || e <= lo || s >= hi)
			continue;
		if (s > covered || strncmp(perms, want, 3))
			ok = false;
		covered = e;
	}
	fclose(f);
	return ok && covered >= hi;
}

static sigjmp_buf probe_jmp;
static volatile sig_atomic_t probing;

static void probe_segv(int sig)
{
	if (probing) {
		probing = 0;
		siglongjmp(probe_jmp, 1);
	}
	signal(sig, SIG_DFL);
}

/* Write a byte of @p back to itself; true if the write got SIGSEGV. */
static bool write_faults(char *p)
{
	volatile char *q = p;
	struct sigaction sa, old;
	volatile bool segv = false;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = probe_segv;
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGSEGV, &sa, &old), 0);
	if (sigsetjmp(probe_jmp, 1)) {
		segv = true;
	} else {
		char v = *q; /* a read first: it may fault the page in */

		probing = 1;
		*q = v;
		probing = 0;
	}
	assert_int_equal(sigaction(SIGSEGV, &old, NULL), 0);
	return segv;
}

static void check_pages(const char *p, uint64_t seed, const char *what)
{
	for (size_t pg = 0; pg < NPAGES; pg++) {
		long bad = tu_pattern_check(p + pg * ps, ps, pg * ps, seed);

		if (bad >= 0)
			fail_msg(
			    "[%s] %s: page %zu byte %ld is 0x%02x, expected 0x%02x (seed %llu)",
			    ufault_lock_mode_name(tu_mode), what, pg, bad,
			    (unsigned char)p[pg * ps + (size_t)bad],
			    tu_pattern(pg * ps + (uint64_t)bad, seed), (unsigned long long)seed);
	}
}

static void test_map_fixed_over_mlocked(void **state)
{
	struct tu_fx *f = *state;
	const size_t len = NPAGES * ps;
	struct ufault_source s1 = tu_pattern_source(0, SEED_OLD),
			     s2 = tu_pattern_source(0, SEED_NEW);
	char *p, *q;
	int err;

	p = ufault_mmap(f->ctx, NULL, len, RW, PA, &s1, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	if (mlock2(p, len, MLOCK_ONFAULT))
		tu_die("mlock2(MLOCK_ONFAULT)", errno);
	/* Half the pages present (and so locked), half missing. */
	for (size_t pg = 0; pg < NPAGES; pg += 2)
		assert_int_equal(tu_pattern_check(p + pg * ps, ps, pg * ps, SEED_OLD), -1);

	errno = 0;
	q = ufault_mmap(f->ctx, p, len, PROT_READ, PA | MAP_FIXED, &s2, 0);
	err = errno;
	if (q == MAP_FAILED) {
		/* Allowed, but then nothing may have changed. */
		printf("  [%s] MAP_FIXED over mlocked memory failed: %s\n",
		       ufault_lock_mode_name(tu_mode), strerror(err));
		if (!prot_is(p, len, "rw-"))
			fail_msg("[%s] the failed MAP_FIXED left the old region's protection "
				 "changed (no longer PROT_READ|PROT_WRITE)",
				 ufault_lock_mode_name(tu_mode));
		check_pages(p, SEED_OLD, "after the failed MAP_FIXED");
		for (size_t pg = 0; pg < NPAGES; pg++)
			if (write_faults(p + pg * ps))
				fail_msg("[%s] page %zu: a write got SIGSEGV after the failed "
					 "MAP_FIXED",
					 ufault_lock_mode_name(tu_mode), pg);
	} else {
		assert_ptr_equal(q, p);
		assert_true(prot_is(q, len, "r--"));
		check_pages(q, SEED_NEW, "after MAP_FIXED");
		for (size_t pg = 0; pg < NPAGES; pg += 3)
			if (!write_faults(q + pg * ps))
				fail_msg("[%s] page %zu: a write to the PROT_READ replacement "
					 "did not fault",
					 ufault_lock_mode_name(tu_mode), pg);
	}
	assert_int_equal(ufault_munmap(f->ctx, p, len), 0);
}

/* The same with the new mapping read-write, and a source of the other
 * kind: the old bytes must be gone everywhere, locked or not. */
static void test_map_fixed_over_mlocked_rw(void **state)
{
	struct tu_fx *f = *state;
	const size_t len = NPAGES * ps;
	struct ufault_source s1 = tu_pattern_source(0, SEED_OLD), zero;
	char *p, *q;

	ufault_source_init(&zero, UFAULT_SOURCE_ZERO);
	p = ufault_mmap(f->ctx, NULL, len, RW, PA, &s1, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	if (mlock2(p, len, MLOCK_ONFAULT))
		tu_die("mlock2(MLOCK_ONFAULT)", errno);
	for (size_t pg = 0; pg < NPAGES; pg++)
		assert_int_equal(tu_pattern_check(p + pg * ps, ps, pg * ps, SEED_OLD), -1);
	memset(p + ps, 0x77, ps); /* the application's bytes on a locked page */

	errno = 0;
	q = ufault_mmap(f->ctx, p, len, RW, PA | MAP_FIXED, &zero, 0);
	if (q == MAP_FAILED) {
		printf("  [%s] MAP_FIXED (zero source) over mlocked memory failed: %s\n",
		       ufault_lock_mode_name(tu_mode), strerror(errno));
		assert_true(prot_is(p, len, "rw-"));
		for (size_t i = 0; i < ps; i++)
			assert_int_equal((unsigned char)p[ps + i], 0x77);
	} else {
		assert_ptr_equal(q, p);
		assert_true(prot_is(q, len, "rw-"));
		if (tu_zero_check(q, len) != -1)
			fail_msg("[%s] old bytes survived MAP_FIXED at offset %ld",
				 ufault_lock_mode_name(tu_mode), tu_zero_check(q, len));
	}
	assert_int_equal(ufault_munmap(f->ctx, p, len), 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    tu_fx_test(test_map_fixed_over_mlocked),
	    tu_fx_test(test_map_fixed_over_mlocked_rw),
	};
	int failed;

	ps = tu_page_size();
	/* An optional argument runs only the tests whose name matches it. */
	failed = tu_run_every_mode("map_fixed_mlock", tests, sizeof(tests) / sizeof(tests[0]), argc,
				   argv);
	return failed ? 1 : 0;
}
