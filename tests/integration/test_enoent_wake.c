/* SPDX-License-Identifier: MIT */
/*
 * test_enoent_wake.c - no thread stays parked after UFFDIO_COPY says ENOENT.
 *
 * UFFDIO_COPY fails with ENOENT when its destination is not inside one VMA,
 * or is not mapped any more, while the thread that faulted there is still
 * parked in the kernel. Dropping that error silently leaves the thread
 * parked forever. Three ways to get there, each checked in every lock mode:
 *
 *  - ufault_mremap() of a region with 64 KiB region pages to a destination
 *    aligned to 4 KiB only: a fault there would install a 64 KiB page that
 *    starts outside the moved VMA. MREMAP_FIXED to such an address fails with
 *    EINVAL and leaves the region served where it was; a move the kernel
 *    places (MREMAP_MAYMOVE alone) lands on a 64 KiB boundary and every page
 *    then reads from the source.
 *  - ufault_mprotect() / ufault_madvise() of one 4 KiB page inside a 64 KiB
 *    region page: the kernel would split the VMA inside a page ufault
 *    installs whole. EINVAL, nothing changed (one VMA, same protection,
 *    same contents), and the region still serves faults.
 *  - a plain munmap(2) of region memory while a thread is parked on it and
 *    its fill is running: the install gets ENOENT, the thread must be woken
 *    (it then faults on an unmapped address and gets SIGSEGV).
 *
 * A hang is what the old library did in each case; the process watchdog
 * turns it into a failure.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include <cmocka.h>

#include "../modes.h"

#define RW (PROT_READ | PROT_WRITE)
#define PA (MAP_PRIVATE | MAP_ANONYMOUS)
#define RP_SHIFT 16
#define RP ((size_t)1 << RP_SHIFT) /* region page: 64 KiB */
#define RFLAGS UFAULT_REGION_PAGE_SHIFT(RP_SHIFT)

static size_t ps;

/*
 * Number of VMAs overlapping [addr, addr + len), from /proc/self/maps (which
 * never faults on the memory); @perms receives the first one's permissions
 * ("rw-p").
 */
static int vmas(const void *addr, size_t len, char perms[5])
{
	FILE *f = fopen("/proc/self/maps", "r");
	uintptr_t lo = (uintptr_t)addr, hi = lo + len;
	char line[512];
	int n = 0;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		char p[5];

		if (sscanf(line, "%lx-%lx %4s", &s, &e, p) != 3)
			continue;
		if (s < hi && e > lo) {
			if (!n && perms)
				memcpy(perms, p, 5);
			n++;
		}
	}
	fclose(f);
	return n;
}

/* Region page @i of @base holds the pattern at source offset @i * RP. The
 * first touch of a missing page is a fault: under the watchdog. */
static void check_rpage(const char *base, size_t i, uint64_t seed)
{
	const char *p = base + i * RP;
	long bad = tu_pattern_check(p, RP, i * RP, seed);

	if (bad >= 0)
		fail_msg("region page %zu at %p: byte %ld is 0x%02x, expected 0x%02x", i,
			 (const void *)p, bad, (unsigned char)p[bad],
			 tu_pattern(i * RP + (uint64_t)bad, seed));
}

static char *map_region(struct ufault_ctx *ctx, size_t len, uint64_t seed)
{
	struct ufault_source s = tu_pattern_source(0, seed);
	char *p = ufault_mmap(ctx, NULL, len, RW, PA, &s, RFLAGS);

	assert_ptr_not_equal(p, MAP_FAILED);
	assert_int_equal((uintptr_t)p % RP, 0);
	return p;
}

/* ------------------------------------------------------------------ */
/* ufault_mremap to a destination aligned to 4 KiB only                 */
/* ------------------------------------------------------------------ */

static void test_mremap_fixed_unaligned(void **state)
{
	struct tu_fx *f = *state;
	const size_t n = 8, len = n * RP;
	const uint64_t seed = 21;
	size_t rlen = len + 4 * RP;
	char *p = map_region(f->ctx, len, seed);
	char *res = tu_reserve(rlen);
	char *dst = (char *)(((uintptr_t)res + RP - 1) & ~(uintptr_t)(RP - 1)) + ps;
	char perms[5];
	void *q;

	/* Half the pages present before the move attempt, half missing. */
	for (size_t i = 0; i < n / 2; i++)
		check_rpage(p, i, seed);

	/* Same size, grown, shrunk: every destination is 4 KiB past a 64 KiB
	 * boundary, so a 64 KiB page installed there would cross the VMA. */
	const size_t new_lens[] = {len, len + RP, len - RP};

	for (size_t k = 0; k < sizeof(new_lens) / sizeof(new_lens[0]); k++) {
		errno = 0;
		q = ufault_mremap(f->ctx, p, len, new_lens[k], MREMAP_MAYMOVE | MREMAP_FIXED, dst);
		if (q != MAP_FAILED)
			fail_msg("[%s] ufault_mremap(MREMAP_FIXED, new_len %zu) to %p (not 64 KiB "
				 "aligned) returned %p; expected EINVAL",
				 ufault_lock_mode_name(tu_mode), new_lens[k], (void *)dst, q);
		assert_int_equal(errno, EINVAL);
	}

	/* Nothing changed: the reservation is untouched, the region is one
	 * VMA where it was, and every page still reads from the source. */
	assert_int_equal(vmas(res, rlen, perms), 1);
	assert_string_equal(perms, "---p");
	assert_int_equal(vmas(p, len, perms), 1);
	assert_string_equal(perms, "rw-p");
	for (size_t i = 0; i < n; i++)
		check_rpage(p, i, seed);
	assert_int_equal(ufault_munmap(f->ctx, p, len), 0);
	tu_unmap(res, rlen);
}

/*
 * Grow with MREMAP_MAYMOVE while something sits right after the region, so
 * the kernel must move it: the result must be aligned to the region page,
 * and every page must then read from the source at its offset (those that
 * were present moved with the memory; the missing and the new ones fill).
 */
static void test_mremap_maymove_aligned(void **state)
{
	struct tu_fx *f = *state;
	const uint64_t seed = 22;
	size_t len = 8 * RP;
	char *cur = map_region(f->ctx, len, seed);

	for (size_t i = 0; i < 4; i++)
		check_rpage(cur, i, seed);

	/* Several moves: a kernel-placed destination is aligned to 64 KiB
	 * only by chance (and often so when it reuses a gap an earlier
	 * aligned mapping left), so one move alone proves little. */
	for (unsigned int round = 0; round < 16; round++) {
		size_t nlen = len + RP;
		char *guard = mmap(cur + len, ps, PROT_NONE, PA | MAP_FIXED_NOREPLACE, -1, 0);
		char *q;

		if (guard == MAP_FAILED && errno != EEXIST)
			tu_die("mmap guard", errno);
		/* EEXIST: something else is there already, a move all the same. */
		if (guard != MAP_FAILED && guard != cur + len) {
			munmap(guard, ps); /* kernel without MAP_FIXED_NOREPLACE */
			guard = MAP_FAILED;
		}
		errno = 0;
		q = ufault_mremap(f->ctx, cur, len, nlen, MREMAP_MAYMOVE, NULL);
		if (q == MAP_FAILED)
			fail_msg("[%s] round %u: ufault_mremap(MREMAP_MAYMOVE) %zu -> %zu: %s",
				 ufault_lock_mode_name(tu_mode), round, len, nlen, strerror(errno));
		if (guard != MAP_FAILED)
			tu_unmap(guard, ps);
		if ((uintptr_t)q % RP)
			fail_msg("[%s] round %u: the kernel-placed move landed at %p, not aligned "
				 "to the 64 KiB region page (a fault there would get ENOENT and "
				 "park forever)",
				 ufault_lock_mode_name(tu_mode), round, (void *)q);
		for (size_t i = 0; i < nlen / RP; i++)
			check_rpage(q, i, seed);
		cur = q;
		len = nlen;
	}
	assert_int_equal(ufault_munmap(f->ctx, cur, len), 0);
}

/* ------------------------------------------------------------------ */
/* mprotect / madvise of part of a region page                          */
/* ------------------------------------------------------------------ */

struct cut_range {
	size_t off, len;
};

/* Ranges that start or end inside region page 1 (or both). */
#define NR_CUTS 5
static void make_cuts(struct cut_range c[NR_CUTS])
{
	c[0] = (struct cut_range){RP + ps, ps};	    /* one page in the middle */
	c[1] = (struct cut_range){RP, ps};	    /* aligned start, end inside */
	c[2] = (struct cut_range){2 * RP - ps, ps}; /* start inside, aligned end */
	c[3] = (struct cut_range){RP - ps, 2 * ps}; /* across pages 0 and 1 */
	c[4] = (struct cut_range){0, RP + ps};	    /* a whole page and a bit */
}

static void test_mprotect_inside_region_page(void **state)
{
	struct tu_fx *f = *state;
	const size_t n = 4, len = n * RP;
	const uint64_t seed = 23;
	char *p = map_region(f->ctx, len, seed);
	struct cut_range cuts[NR_CUTS];
	char perms[5];
	int rc;

	make_cuts(cuts);
	check_rpage(p, 0, seed);
	for (size_t k = 0; k < NR_CUTS; k++) {
		errno = 0;
		rc = ufault_mprotect(f->ctx, p + cuts[k].off, cuts[k].len, PROT_READ);
		if (rc != -1)
			fail_msg("[%s] ufault_mprotect([+%#zx, +%zu), PROT_READ) cuts a 64 KiB "
				 "region page and returned %d; expected -1/EINVAL",
				 ufault_lock_mode_name(tu_mode), cuts[k].off, cuts[k].len, rc);
		assert_int_equal(errno, EINVAL);
		/* Nothing changed: still one VMA, still read-write. */
		assert_int_equal(vmas(p, len, perms), 1);
		assert_string_equal(perms, "rw-p");
	}
	/* The missing pages fill (a parked thread would trip the watchdog),
	 * and every 4 KiB page is still writable. */
	for (size_t i = 1; i < n; i++)
		check_rpage(p, i, seed);
	for (size_t o = 0; o < len; o += ps)
		p[o] = (char)0x5a;
	for (size_t o = 0; o < len; o += ps)
		assert_int_equal((unsigned char)p[o], 0x5a);

	/* Whole region pages are fine. */
	assert_int_equal(ufault_mprotect(f->ctx, p + RP, RP, PROT_READ), 0);
	assert_int_equal(vmas(p + RP, RP, perms), 1);
	assert_string_equal(perms, "r--p");
	assert_int_equal(ufault_mprotect(f->ctx, p + RP, RP, RW), 0);
	assert_int_equal(ufault_munmap(f->ctx, p, len), 0);
}

static void test_madvise_inside_region_page(void **state)
{
	struct tu_fx *f = *state;
	const size_t n = 4, len = n * RP;
	const uint64_t seed = 24;
	const int advice[] = {MADV_DONTNEED, MADV_RANDOM, MADV_NOHUGEPAGE, MADV_DONTFORK};
	char *p = map_region(f->ctx, len, seed);
	struct cut_range cuts[NR_CUTS];
	char perms[5];
	int rc;

	make_cuts(cuts);
	/* Region page 1 present, with the application's bytes in it: a
	 * MADV_DONTNEED that went through would lose them. */
	check_rpage(p, 1, seed);
	memset(p + RP, 0x6b, RP);
	for (size_t a = 0; a < sizeof(advice) / sizeof(advice[0]); a++) {
		for (size_t k = 0; k < NR_CUTS; k++) {
			errno = 0;
			rc = ufault_madvise(f->ctx, p + cuts[k].off, cuts[k].len, advice[a]);
			if (rc != -1)
				fail_msg("[%s] ufault_madvise([+%#zx, +%zu), %d) cuts a 64 KiB "
					 "region page and returned %d; expected -1/EINVAL",
					 ufault_lock_mode_name(tu_mode), cuts[k].off, cuts[k].len,
					 advice[a], rc);
			assert_int_equal(errno, EINVAL);
			assert_int_equal(vmas(p, len, perms), 1);
		}
	}
	for (size_t i = 0; i < RP; i++)
		if ((unsigned char)p[RP + i] != 0x6b)
			fail_msg("[%s] byte %zu of region page 1 is 0x%02x: a refused "
				 "MADV_DONTNEED dropped the application's data",
				 ufault_lock_mode_name(tu_mode), i, (unsigned char)p[RP + i]);
	for (size_t i = 0; i < n; i++)
		if (i != 1)
			check_rpage(p, i, seed);

	/* Whole region pages are fine: dropped, then filled again. */
	assert_int_equal(ufault_madvise(f->ctx, p + RP, RP, MADV_DONTNEED), 0);
	check_rpage(p, 1, seed);
	assert_int_equal(ufault_munmap(f->ctx, p, len), 0);
}

/* ------------------------------------------------------------------ */
/* munmap(2) of region memory while a thread is parked on it            */
/* ------------------------------------------------------------------ */

enum touch_result { T_RUNNING, T_SEGV, T_READ };

struct toucher {
	const char *addr;
	int result; /* enum touch_result, atomic */
	unsigned char byte;
};

/* SIGSEGV on the toucher thread jumps back into it; anywhere else it is a
 * real crash and takes the default action. */
static __thread sigjmp_buf t_jmp;
static __thread volatile sig_atomic_t t_armed;

static void toucher_segv(int sig)
{
	if (t_armed) {
		t_armed = 0;
		siglongjmp(t_jmp, 1);
	}
	signal(sig, SIG_DFL);
}

static void *toucher_main(void *arg)
{
	struct toucher *t = arg;

	if (sigsetjmp(t_jmp, 1)) {
		__atomic_store_n(&t->result, T_SEGV, __ATOMIC_RELEASE);
		return NULL;
	}
	t_armed = 1;
	t->byte = tu_read_byte(t->addr);
	t_armed = 0;
	__atomic_store_n(&t->result, T_READ, __ATOMIC_RELEASE);
	return NULL;
}

static void test_munmap_while_parked(void **state)
{
	struct tu_fx *f = *state;
	const size_t len = 4 * ps;
	struct tu_gate g = TU_GATE_INIT(25);
	struct toucher t = {.result = T_RUNNING};
	struct sigaction sa, old;
	struct ufault_source s;
	pthread_t th;
	char *p = tu_map_anon(len, 0);

	ufault_source_init(&s, UFAULT_SOURCE_CALLBACK);
	s.callback.fill = tu_gate_fill_cb;
	s.callback.arg = &g;
	assert_int_equal(ufault_region_register(f->ctx, p, len, &s, 0, NULL), 0);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = toucher_segv;
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGSEGV, &sa, &old), 0);

	/* The toucher parks on page 1; its fill starts and blocks. */
	t.addr = p + ps;
	assert_int_equal(pthread_create(&th, NULL, toucher_main, &t), 0);
	tu_gate_wait_entered(&g);

	/* The memory goes away behind ufault's back, then the fill returns:
	 * its UFFDIO_COPY finds no VMA (ENOENT). */
	assert_int_equal(munmap(p, len), 0);
	tu_gate_open(&g);

	/* The toucher must be woken: it faults again on an unmapped address
	 * and gets SIGSEGV (or, if something else was mapped there meanwhile,
	 * reads it). Left parked, the watchdog fails the test. */
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(sigaction(SIGSEGV, &old, NULL), 0);
	assert_int_not_equal(__atomic_load_n(&t.result, __ATOMIC_ACQUIRE), T_RUNNING);
	if (t.result == T_READ)
		printf("  [%s] the toucher read 0x%02x: the range was mapped again meanwhile\n",
		       ufault_lock_mode_name(tu_mode), t.byte);
	/* The region itself is left to ufault_ctx_destroy() (teardown): its
	 * memory is gone and might be someone else's by now. */
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    tu_fx_test(test_mremap_fixed_unaligned),
	    tu_fx_test(test_mremap_maymove_aligned),
	    tu_fx_test(test_mprotect_inside_region_page),
	    tu_fx_test(test_madvise_inside_region_page),
	    tu_fx_test(test_munmap_while_parked),
	};
	int failed;

	ps = tu_page_size();
	tu_modes_cfg.test_watchdog = 30; /* a parked thread fails the test, it does not stall it */
	/* An optional argument runs only the tests whose name matches it. */
	failed =
	    tu_run_every_mode("enoent_wake", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
	return failed ? 1 : 0;
}
