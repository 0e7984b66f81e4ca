/* SPDX-License-Identifier: MIT */
/*
 * test_proxies.c - the mmap-family proxies, one behaviour at a time, in every
 * lock mode (one CMocka group per mode, a fresh context per test).
 *
 * Every region's bytes are a known function of the source offset
 * (tu_pattern(offset, seed), never 0), so "this page filled from the right
 * source at the right offset" is checked byte for byte. Pages are touched for
 * the first time only after the proxy call under test wherever the point is
 * that the *fill* is right after the change; pages the application wrote
 * before the call check that its data survived where the syscall keeps it.
 * Unmapped ranges are checked with mincore() (ENOMEM), never by touching.
 *
 * Covered: mmap (kernel-chosen, MAP_FIXED, MAP_FIXED_NOREPLACE, zero,
 * snapshot and callback sources); munmap of a region's middle (both parts
 * keep their source offsets), munmap spanning two regions, a hole and
 * non-ufault mappings; mremap grow in place, shrink, grow with MAYMOVE, move
 * with MAYMOVE|FIXED (same size, grown, shrunk, part of a region);
 * mprotect; madvise(MADV_DONTNEED); MAP_FIXED over a region with another
 * source; bad arguments fail with the syscall's errno and change nothing
 * (mappings, contents still filling, proxy_ops unchanged).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include <cmocka.h>

#include "../modes.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define RW (PROT_READ | PROT_WRITE)
#define PA (MAP_PRIVATE | MAP_ANONYMOUS)

static size_t ps;

/* True if every page of [addr, addr+len) is unmapped (mincore: ENOMEM). */
static bool unmapped(const void *addr, size_t len)
{
	unsigned char v;

	for (size_t o = 0; o < len; o += ps) {
		errno = 0;
		if (mincore((char *)addr + o, ps, &v) != -1 || errno != ENOMEM)
			return false;
	}
	return true;
}

/* True if every page of [addr, addr+len) is mapped. */
static bool mapped(const void *addr, size_t len)
{
	unsigned char v;

	for (size_t o = 0; o < len; o += ps)
		if (mincore((char *)addr + o, ps, &v) != 0)
			return false;
	return true;
}

/* Check page @pg of @base (the first touch, if it was not populated) holds
 * the pattern at source offset @off. */
#define assert_page_pattern(base, pg, off, seed)                                                   \
	do {                                                                                       \
		const char *pp_ = (const char *)(base) + (size_t)(pg)*ps;                          \
		long bad_ = tu_pattern_check(pp_, ps, (off), (seed));                              \
		if (bad_ >= 0)                                                                     \
			fail_msg("page %zu at %p: byte %ld is 0x%02x, "                            \
				 "expected 0x%02x (source offset 0x%llx "                          \
				 "seed %llu)",                                                     \
				 (size_t)(pg), (const void *)pp_, bad_, (unsigned char)pp_[bad_],  \
				 tu_pattern((off) + (uint64_t)bad_, (seed)),                       \
				 (unsigned long long)(off), (unsigned long long)(seed));           \
	} while (0)

/* Pages [first, last) of @base fill from source offset @srcoff + pg * ps. */
static void check_range(const void *base, size_t first, size_t last, uint64_t srcoff, uint64_t seed)
{
	for (size_t pg = first; pg < last; pg++)
		assert_page_pattern(base, pg, srcoff + pg * ps, seed);
}

static void assert_page_bytes(const void *base, size_t pg, unsigned char c)
{
	const unsigned char *p = (const unsigned char *)base + pg * ps;

	for (size_t i = 0; i < ps; i++)
		if (p[i] != c)
			fail_msg("page %zu byte %zu is 0x%02x, expected the "
				 "application's 0x%02x",
				 pg, i, p[i], c);
}

/* ---------------------------------------------------------------- */

static void test_mmap_kernel_chosen(void **state)
{
	struct tu_fx *f = *state;
	struct ufault_source s = tu_pattern_source(5 * ps + 64, 11);
	uint64_t ops = tu_proxy_ops(f->ctx);
	char *p;

	p = ufault_mmap(f->ctx, NULL, 16 * ps, RW, PA, &s, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	assert_int_equal((uintptr_t)p % ps, 0);
	assert_int_equal(tu_proxy_ops(f->ctx), ops + 1);
	/* Touch in reverse order: every page is its own fault. */
	for (size_t pg = 16; pg-- > 0;)
		assert_page_pattern(p, pg, 5 * ps + 64 + pg * ps, 11);
	/* The memory is ordinary private memory afterwards. */
	memset(p + 3 * ps, 0x5c, ps);
	assert_page_bytes(p, 3, 0x5c);
	assert_int_equal(ufault_munmap(f->ctx, p, 16 * ps), 0);
	assert_int_equal(tu_proxy_ops(f->ctx), ops + 2);
	assert_true(unmapped(p, 16 * ps));

	/* NULL source = zeros; MAP_NORESERVE accepted. */
	p = ufault_mmap(f->ctx, NULL, 4 * ps, RW, PA | MAP_NORESERVE, NULL, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	assert_int_equal(tu_zero_check(p, 4 * ps), -1);
	assert_int_equal(ufault_munmap(f->ctx, p, 4 * ps), 0);
}

static void test_mmap_snapshot(void **state)
{
	struct tu_fx *f = *state;
	size_t snap_len = 3 * ps + 100;
	unsigned char *snap = malloc(snap_len);
	struct ufault_source s;
	char *p;

	assert_non_null(snap);
	tu_pattern_fill(snap, snap_len, 0, 42);
	ufault_source_init(&s, UFAULT_SOURCE_SNAPSHOT);
	s.offset = ps; /* region byte 0 = snapshot byte ps */
	s.snapshot.data = snap;
	s.snapshot.len = snap_len;
	p = ufault_mmap(f->ctx, NULL, 4 * ps, PROT_READ, PA, &s, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	/* Pages 0, 1 come from the snapshot, page 2 holds its last 100 bytes
	 * then zeros, page 3 is past the end: zeros. */
	for (size_t i = 0; i < 4 * ps; i++) {
		size_t so = ps + i;
		unsigned char want = so < snap_len ? snap[so] : 0;

		if ((unsigned char)p[i] != want)
			fail_msg("snapshot byte %zu: 0x%02x, expected 0x%02x", i,
				 (unsigned char)p[i], want);
	}
	assert_int_equal(ufault_munmap(f->ctx, p, 4 * ps), 0);
	free(snap);
}

static void test_mmap_fixed(void **state)
{
	struct tu_fx *f = *state;
	struct ufault_source s = tu_pattern_source(0, 7), s2 = tu_pattern_source(100 * ps, 8);
	char *r = tu_reserve(8 * ps);
	char *p, *q;
	uint64_t ops;

	p = ufault_mmap(f->ctx, r + 2 * ps, 4 * ps, RW, PA | MAP_FIXED, &s, 0);
	assert_ptr_equal(p, r + 2 * ps);
	check_range(p, 0, 2, 0, 7);
	/* The reservation around it is untouched. */
	assert_true(mapped(r, 8 * ps));

	/* MAP_FIXED_NOREPLACE over the region: EEXIST, nothing changes. */
	ops = tu_proxy_ops(f->ctx);
	errno = 0;
	q = ufault_mmap(f->ctx, p, 2 * ps, RW, PA | MAP_FIXED_NOREPLACE, &s2, 0);
	assert_ptr_equal(q, MAP_FAILED);
	assert_int_equal(errno, EEXIST);
	assert_int_equal(tu_proxy_ops(f->ctx), ops);
	check_range(p, 2, 4, 0, 7); /* first touch after the failure */
	check_range(p, 0, 2, 0, 7);

	/*
	 * MAP_FIXED_NOREPLACE over memory that is not ufault's (the
	 * reservation, with data written to it): EEXIST, and that mapping
	 * and its data stay (a failed call once unmapped what it did not
	 * map, a thread stack in fault_storm).
	 */
	assert_int_equal(mprotect(r + 6 * ps, 2 * ps, RW), 0);
	memset(r + 6 * ps, 0x5a, 2 * ps);
	errno = 0;
	q = ufault_mmap(f->ctx, r + 6 * ps, 2 * ps, RW, PA | MAP_FIXED_NOREPLACE, &s2, 0);
	assert_ptr_equal(q, MAP_FAILED);
	assert_int_equal(errno, EEXIST);
	assert_true(mapped(r + 6 * ps, 2 * ps));
	for (size_t i = 0; i < 2 * ps; i++)
		assert_int_equal((unsigned char)r[6 * ps + i], 0x5a);
	assert_int_equal(tu_proxy_ops(f->ctx), ops);

	/* MAP_FIXED_NOREPLACE into free space succeeds. */
	tu_unmap(r + 6 * ps, 2 * ps);
	q = ufault_mmap(f->ctx, r + 6 * ps, 2 * ps, RW, PA | MAP_FIXED_NOREPLACE, &s2, 0);
	assert_ptr_equal(q, r + 6 * ps);
	check_range(q, 0, 2, 100 * ps, 8);

	assert_int_equal(ufault_munmap(f->ctx, r, 8 * ps), 0);
	assert_true(unmapped(r, 8 * ps));
}

static void test_munmap_middle(void **state)
{
	struct tu_fx *f = *state;
	uint64_t o = 17 * ps;
	struct ufault_source s = tu_pattern_source(o, 3);
	char *p;

	p = ufault_mmap(f->ctx, NULL, 12 * ps, RW, PA, &s, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	memset(p + ps, 0xab, ps); /* populated before the split */

	assert_int_equal(ufault_munmap(f->ctx, p + 4 * ps, 4 * ps), 0);
	assert_true(unmapped(p + 4 * ps, 4 * ps));
	assert_true(mapped(p, 4 * ps));
	assert_true(mapped(p + 8 * ps, 4 * ps));
	/* Left part: first touches after the split. */
	assert_page_pattern(p, 0, o, 3);
	assert_page_bytes(p, 1, 0xab);
	check_range(p, 2, 4, o, 3);

	/* Split the right part again, then touch what is left of it. */
	assert_int_equal(ufault_munmap(f->ctx, p + 9 * ps, ps), 0);
	assert_true(unmapped(p + 9 * ps, ps));
	check_range(p, 8, 9, o, 3);
	check_range(p, 10, 12, o, 3);

	/* munmap of a range that is already a hole succeeds, as munmap(2). */
	assert_int_equal(ufault_munmap(f->ctx, p + 4 * ps, 4 * ps), 0);

	/* The parts are regions: dropping their pages refills them. */
	assert_int_equal(ufault_madvise(f->ctx, p, 4 * ps, MADV_DONTNEED), 0);
	check_range(p, 0, 4, o, 3);
	assert_int_equal(ufault_madvise(f->ctx, p + 10 * ps, 2 * ps, MADV_DONTNEED), 0);
	check_range(p, 10, 12, o, 3);

	assert_int_equal(ufault_munmap(f->ctx, p, 12 * ps), 0);
	assert_true(unmapped(p, 12 * ps));
}

static void test_munmap_span(void **state)
{
	struct tu_fx *f = *state;
	struct ufault_source a = tu_pattern_source(1000 * ps, 21),
			     b = tu_pattern_source(3 * ps, 22);
	char *r = tu_reserve(20 * ps);

	/* [0,6) region A, [6,7) reservation, [7,9) hole, [9,10) reservation,
	 * [10,16) region B, [16,20) reservation. */
	assert_ptr_equal(ufault_mmap(f->ctx, r, 6 * ps, RW, PA | MAP_FIXED, &a, 0), r);
	assert_ptr_equal(ufault_mmap(f->ctx, r + 10 * ps, 6 * ps, RW, PA | MAP_FIXED, &b, 0),
			 r + 10 * ps);
	tu_unmap(r + 7 * ps, 2 * ps);
	assert_page_pattern(r, 4, 1000 * ps + 4 * ps, 21); /* populated */

	assert_int_equal(ufault_munmap(f->ctx, r + 3 * ps, 10 * ps), 0);
	assert_true(unmapped(r + 3 * ps, 10 * ps));
	assert_true(mapped(r + 16 * ps, 4 * ps));
	check_range(r, 0, 3, 1000 * ps, 21);
	/* B's remaining part keeps its source offsets: page 13 of the
	 * reservation is B's page 3. */
	for (size_t pg = 13; pg < 16; pg++)
		assert_page_pattern(r, pg, 3 * ps + (pg - 10) * ps, 22);

	assert_int_equal(ufault_munmap(f->ctx, r, 20 * ps), 0);
	assert_true(unmapped(r, 20 * ps));
}

static void test_mremap_grow_shrink(void **state)
{
	struct tu_fx *f = *state;
	uint64_t o = 64 * ps;
	struct ufault_source s = tu_pattern_source(o, 5);
	char *r = tu_reserve(16 * ps);
	char *p, *q;
	uint64_t ops;

	p = ufault_mmap(f->ctx, r, 8 * ps, RW, PA | MAP_FIXED, &s, 0);
	assert_ptr_equal(p, r);
	memset(p, 0x11, ps);		      /* written by the application */
	assert_page_pattern(p, 1, o + ps, 5); /* populated from the source */
	tu_unmap(r + 8 * ps, 8 * ps);	      /* room to grow in place */

	ops = tu_proxy_ops(f->ctx);
	q = ufault_mremap(f->ctx, p, 8 * ps, 16 * ps, 0, NULL);
	if (q == MAP_FAILED)
		fail_msg("grow in place: %s", strerror(errno));
	assert_ptr_equal(q, p);
	assert_int_equal(tu_proxy_ops(f->ctx), ops + 1);
	assert_true(mapped(p, 16 * ps));
	assert_page_bytes(p, 0, 0x11);
	check_range(p, 1, 16, o, 5); /* 8..15: grown pages, matching offsets */

	/* Shrink in place. */
	q = ufault_mremap(f->ctx, p, 16 * ps, 5 * ps, 0, NULL);
	assert_ptr_equal(q, p);
	assert_true(unmapped(p + 5 * ps, 11 * ps));
	assert_page_bytes(p, 0, 0x11);
	check_range(p, 1, 5, o, 5);

	/* Grow again, the kernel may move it. */
	q = ufault_mremap(f->ctx, p, 5 * ps, 10 * ps, MREMAP_MAYMOVE, NULL);
	assert_ptr_not_equal(q, MAP_FAILED);
	assert_page_bytes(q, 0, 0x11);
	check_range(q, 1, 10, o, 5);
	/* Still a region: dropped pages refill (the app's page 0 too). */
	assert_int_equal(ufault_madvise(f->ctx, q, 10 * ps, MADV_DONTNEED), 0);
	check_range(q, 0, 10, o, 5);
	assert_int_equal(ufault_munmap(f->ctx, q, 10 * ps), 0);
}

static void test_mremap_move(void **state)
{
	struct tu_fx *f = *state;
	uint64_t o = 9 * ps;
	struct ufault_source s = tu_pattern_source(o, 6);
	char *p, *q, *t, *t2, *t3, *t4;

	p = ufault_mmap(f->ctx, NULL, 8 * ps, RW, PA, &s, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	memset(p + 2 * ps, 0x5a, ps);
	assert_page_pattern(p, 3, o + 3 * ps, 6);

	/* Same size move onto a reservation of ours. */
	t = tu_reserve(8 * ps);
	q = ufault_mremap(f->ctx, p, 8 * ps, 8 * ps, MREMAP_MAYMOVE | MREMAP_FIXED, t);
	if (q == MAP_FAILED)
		fail_msg("mremap move: %s", strerror(errno));
	assert_ptr_equal(q, t);
	assert_true(unmapped(p, 8 * ps));
	assert_page_bytes(t, 2, 0x5a);
	check_range(t, 0, 2, o, 6);
	check_range(t, 3, 8, o, 6);

	/* Move and grow: grown pages fill at matching offsets. */
	t2 = tu_reserve(12 * ps);
	q = ufault_mremap(f->ctx, t, 8 * ps, 12 * ps, MREMAP_MAYMOVE | MREMAP_FIXED, t2);
	if (q == MAP_FAILED)
		fail_msg("mremap move+grow %p -> %p: %s", (void *)t, (void *)t2, strerror(errno));
	assert_ptr_equal(q, t2);
	assert_true(unmapped(t, 8 * ps));
	assert_page_bytes(t2, 2, 0x5a);
	check_range(t2, 8, 12, o, 6);
	check_range(t2, 0, 2, o, 6);

	/* Move and shrink. */
	t3 = tu_reserve(4 * ps);
	q = ufault_mremap(f->ctx, t2, 12 * ps, 4 * ps, MREMAP_MAYMOVE | MREMAP_FIXED, t3);
	assert_ptr_equal(q, t3);
	assert_true(unmapped(t2, 12 * ps));
	assert_page_bytes(t3, 2, 0x5a);
	assert_int_equal(ufault_madvise(f->ctx, t3, 4 * ps, MADV_DONTNEED), 0);
	check_range(t3, 0, 4, o, 6);
	assert_int_equal(ufault_munmap(f->ctx, t3, 4 * ps), 0);

	/* Move part of a region: both the rest and the moved part fill. */
	p = ufault_mmap(f->ctx, NULL, 8 * ps, RW, PA, &s, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	t4 = tu_reserve(4 * ps);
	q = ufault_mremap(f->ctx, p + 4 * ps, 4 * ps, 4 * ps, MREMAP_MAYMOVE | MREMAP_FIXED, t4);
	assert_ptr_equal(q, t4);
	assert_true(unmapped(p + 4 * ps, 4 * ps));
	check_range(p, 0, 4, o, 6);
	for (size_t pg = 0; pg < 4; pg++)
		assert_page_pattern(t4, pg, o + (4 + pg) * ps, 6);
	assert_int_equal(ufault_munmap(f->ctx, p, 4 * ps), 0);
	assert_int_equal(ufault_munmap(f->ctx, t4, 4 * ps), 0);

	/* Move and grow to right behind the old range: the ranges
	 * [old, old + old_len) and [new, new + new_len) do not overlap, so
	 * mremap(2) allows it. */
	t = tu_reserve(20 * ps);
	p = ufault_mmap(f->ctx, t, 8 * ps, RW, PA | MAP_FIXED, &s, 0);
	assert_ptr_equal(p, t);
	memset(p + ps, 0x6b, ps);
	errno = 0;
	q = ufault_mremap(f->ctx, p, 8 * ps, 12 * ps, MREMAP_MAYMOVE | MREMAP_FIXED, p + 8 * ps);
	if (q == MAP_FAILED)
		fail_msg("mremap 8 -> 12 pages to old + 8 pages: %s "
			 "(mremap(2) allows it)",
			 strerror(errno));
	assert_ptr_equal(q, p + 8 * ps);
	assert_true(unmapped(p, 8 * ps));
	assert_page_bytes(q, 1, 0x6b);
	check_range(q, 2, 12, o, 6);
	assert_int_equal(ufault_munmap(f->ctx, t, 20 * ps), 0);
}

/* Does a write to @p fault (SIGSEGV)? */
static sigjmp_buf probe_jb;
static void probe_segv(int sig)
{
	(void)sig;
	siglongjmp(probe_jb, 1);
}

static bool write_faults(char *p)
{
	struct sigaction sa, old;
	volatile bool faulted = false;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = probe_segv;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old);
	if (sigsetjmp(probe_jb, 1))
		faulted = true;
	else
		*(volatile char *)p = 1;
	sigaction(SIGSEGV, &old, NULL);
	return faulted;
}

static void test_mprotect(void **state)
{
	struct tu_fx *f = *state;
	uint64_t o = 3 * ps;
	struct ufault_source s = tu_pattern_source(o, 9);
	uint64_t ops;
	char *p;

	p = ufault_mmap(f->ctx, NULL, 4 * ps, RW, PA, &s, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	ops = tu_proxy_ops(f->ctx);
	assert_int_equal(ufault_mprotect(f->ctx, p, 4 * ps, PROT_READ), 0);
	assert_int_equal(tu_proxy_ops(f->ctx), ops + 1);
	check_range(p, 0, 4, o, 9); /* read faults on read-only memory */
	assert_true(write_faults(p + ps));
	assert_int_equal(ufault_mprotect(f->ctx, p, 4 * ps, RW), 0);
	memset(p, 0x77, ps);
	assert_page_bytes(p, 0, 0x77);
	assert_int_equal(ufault_munmap(f->ctx, p, 4 * ps), 0);

	/* Part of a region (the VMA splits), never touched before. */
	p = ufault_mmap(f->ctx, NULL, 4 * ps, RW, PA, &s, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	assert_int_equal(ufault_mprotect(f->ctx, p + ps, 2 * ps, PROT_NONE), 0);
	assert_int_equal(ufault_mprotect(f->ctx, p + ps, 2 * ps, PROT_READ), 0);
	check_range(p, 0, 4, o, 9);
	assert_true(write_faults(p + 2 * ps));
	assert_false(write_faults(p + 3 * ps));
	assert_int_equal(ufault_munmap(f->ctx, p, 4 * ps), 0);
}

static void test_madvise_dontneed(void **state)
{
	struct tu_fx *f = *state;
	uint64_t o = 77 * ps;
	struct ufault_source s = tu_pattern_source(o, 10);
	char *p;

	p = ufault_mmap(f->ctx, NULL, 4 * ps, RW, PA, &s, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	memset(p + ps, 0xee, ps);
	assert_page_pattern(p, 2, o + 2 * ps, 10);
	memset(p + 2 * ps, 0xdd, 16);
	memset(p + 3 * ps, 0x33, ps);

	assert_int_equal(ufault_madvise(f->ctx, p + ps, 2 * ps, MADV_DONTNEED), 0);
	check_range(p, 0, 3, o, 10);   /* writes to 1 and 2 are gone */
	assert_page_bytes(p, 3, 0x33); /* outside the range: kept */

	assert_int_equal(ufault_madvise(f->ctx, p, 4 * ps, MADV_DONTNEED), 0);
	check_range(p, 0, 4, o, 10);
	assert_int_equal(ufault_munmap(f->ctx, p, 4 * ps), 0);
}

static void test_map_fixed_replace(void **state)
{
	struct tu_fx *f = *state;
	struct ufault_source a = tu_pattern_source(0, 31), b = tu_pattern_source(500 * ps, 32),
			     c = tu_pattern_source(7 * ps, 33);
	char *p, *q;

	p = ufault_mmap(f->ctx, NULL, 8 * ps, RW, PA, &a, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	assert_page_pattern(p, 0, 0, 31);
	assert_page_pattern(p, 3, 3 * ps, 31); /* populated from A */
	memset(p + 4 * ps, 0x44, ps);	       /* written by the app */

	q = ufault_mmap(f->ctx, p + 2 * ps, 4 * ps, RW, PA | MAP_FIXED, &b, 0);
	assert_ptr_equal(q, p + 2 * ps);
	/* The new mapping is B's, populated pages included. */
	for (size_t pg = 0; pg < 4; pg++)
		assert_page_pattern(q, pg, 500 * ps + pg * ps, 32);
	/* What is left of A keeps A's offsets. */
	check_range(p, 0, 2, 0, 31);
	check_range(p, 6, 8, 0, 31);

	/* Over all of it (three regions) with a third source. */
	q = ufault_mmap(f->ctx, p, 8 * ps, RW, PA | MAP_FIXED, &c, 0);
	assert_ptr_equal(q, p);
	check_range(p, 0, 8, 7 * ps, 33);
	/* ... and MAP_FIXED with the zero source. */
	q = ufault_mmap(f->ctx, p + ps, ps, RW, PA | MAP_FIXED, NULL, 0);
	assert_ptr_equal(q, p + ps);
	assert_int_equal(tu_zero_check(p + ps, ps), -1);
	assert_int_equal(ufault_munmap(f->ctx, p, 8 * ps), 0);
}

#define assert_mmap_fails(call, err)                                                               \
	do {                                                                                       \
		void *r_;                                                                          \
		errno = 0;                                                                         \
		r_ = (call);                                                                       \
		if (r_ != MAP_FAILED)                                                              \
			fail_msg("%s succeeded (%p), expected %s", #call, r_, strerror(err));      \
		if (errno != (err))                                                                \
			fail_msg("%s: errno %d (%s), expected %d (%s)", #call, errno,              \
				 strerror(errno), err, strerror(err));                             \
	} while (0)

#define assert_int_fails(call, err)                                                                \
	do {                                                                                       \
		int r_;                                                                            \
		errno = 0;                                                                         \
		r_ = (call);                                                                       \
		if (r_ != -1)                                                                      \
			fail_msg("%s returned %d, expected -1/%s", #call, r_, strerror(err));      \
		if (errno != (err))                                                                \
			fail_msg("%s: errno %d (%s), expected %d (%s)", #call, errno,              \
				 strerror(errno), err, strerror(err));                             \
	} while (0)

/* The header does not name the errno: failure, errno set, nothing changed. */
#define assert_mremap_fails_any(call)                                                              \
	do {                                                                                       \
		void *r_;                                                                          \
		errno = 0;                                                                         \
		r_ = (call);                                                                       \
		if (r_ != MAP_FAILED)                                                              \
			fail_msg("%s succeeded (%p), expected a failure", #call, r_);              \
		if (errno == 0)                                                                    \
			fail_msg("%s failed with errno 0", #call);                                 \
		printf("  [%s] %s -> %s\n", ufault_lock_mode_name(tu_mode), #call,                 \
		       strerror(errno));                                                           \
	} while (0)

static void test_bad_args_change_nothing(void **state)
{
	struct tu_fx *f = *state;
	struct ufault_ctx *ctx = f->ctx;
	uint64_t o = 40 * ps;
	struct ufault_source s = tu_pattern_source(o, 50), bad = tu_pattern_source(0, 1);
	char *r = tu_reserve(8 * ps);
	char *p;
	uint64_t ops;
	struct ufault_stats st;

	/* [0,4) region, [4,6) reservation, [6,8) hole. */
	p = ufault_mmap(ctx, r, 4 * ps, RW, PA | MAP_FIXED, &s, 0);
	assert_ptr_equal(p, r);
	tu_unmap(r + 6 * ps, 2 * ps);
	assert_page_pattern(p, 0, o, 50);
	ops = tu_proxy_ops(ctx);

	/* ufault_mmap */
	assert_mmap_fails(ufault_mmap(ctx, p + 1, ps, RW, PA | MAP_FIXED, &s, 0), EINVAL);
	assert_mmap_fails(ufault_mmap(ctx, NULL, 0, RW, PA, &s, 0), EINVAL);
	assert_mmap_fails(ufault_mmap(ctx, NULL, ps, RW, MAP_SHARED | MAP_ANONYMOUS, &s, 0),
			  EINVAL);
	assert_mmap_fails(ufault_mmap(ctx, NULL, ps, RW, MAP_PRIVATE, &s, 0), EINVAL);
	assert_mmap_fails(ufault_mmap(ctx, NULL, ps, RW, PA, &s, 1u << 7), EINVAL);
	assert_mmap_fails(ufault_mmap(ctx, NULL, ps, RW, PA, &s, UFAULT_REGION_PAGE_SHIFT(63)),
			  EINVAL);
	bad.type = (enum ufault_source_type)99;
	assert_mmap_fails(ufault_mmap(ctx, NULL, ps, RW, PA, &bad, 0), EINVAL);
	bad = tu_pattern_source(0, 1);
	bad.size = 0; /* not made by ufault_source_init() */
	assert_mmap_fails(ufault_mmap(ctx, NULL, ps, RW, PA, &bad, 0), EINVAL);
	bad.size = sizeof(bad) + 8;
	assert_mmap_fails(ufault_mmap(ctx, NULL, ps, RW, PA, &bad, 0), EINVAL);
	bad = tu_pattern_source(0, 1);
	bad.callback.fill = NULL;
	assert_mmap_fails(ufault_mmap(ctx, NULL, ps, RW, PA, &bad, 0), EINVAL);
	assert_mmap_fails(ufault_mmap(NULL, NULL, ps, RW, PA, &s, 0), EINVAL);
	/* A failing MAP_FIXED over the region must not unmap it first. */
	assert_mmap_fails(
	    ufault_mmap(ctx, p, 2 * ps, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, &s, 0), EINVAL);
	assert_mmap_fails(ufault_mmap(ctx, p, 2 * ps, RW, PA | MAP_FIXED, &bad, 0), EINVAL);
	assert_mmap_fails(ufault_mmap(ctx, p, 2 * ps, RW, PA | MAP_FIXED, &s, 1u << 9), EINVAL);
	assert_mmap_fails(ufault_mmap(ctx, p + ps, ps, RW, PA | MAP_FIXED_NOREPLACE, &s, 0),
			  EEXIST);

	/* ufault_munmap */
	assert_int_fails(ufault_munmap(ctx, p + 1, ps), EINVAL);
	assert_int_fails(ufault_munmap(ctx, p, 0), EINVAL);
	assert_int_fails(ufault_munmap(NULL, p, ps), EINVAL);

	/* ufault_mremap */
	assert_mmap_fails(ufault_mremap(ctx, p + 1, ps, 2 * ps, MREMAP_MAYMOVE, NULL), EINVAL);
	assert_mmap_fails(ufault_mremap(ctx, p, 4 * ps, 0, MREMAP_MAYMOVE, NULL), EINVAL);
	assert_mmap_fails(ufault_mremap(ctx, p, 4 * ps, 4 * ps, MREMAP_FIXED, r + 6 * ps), EINVAL);
	assert_mmap_fails(ufault_mremap(ctx, p, 4 * ps, 4 * ps, 0x1000, NULL), EINVAL);
	/* overlapping source and destination */
	assert_mmap_fails(
	    ufault_mremap(ctx, p, 2 * ps, 2 * ps, MREMAP_MAYMOVE | MREMAP_FIXED, p + ps), EINVAL);
	assert_mmap_fails(ufault_mremap(NULL, p, ps, 2 * ps, MREMAP_MAYMOVE, NULL), EINVAL);
	/* not within one region: region + reservation, a hole, zero length */
	assert_mremap_fails_any(ufault_mremap(ctx, p, 6 * ps, 6 * ps, MREMAP_MAYMOVE, NULL));
	assert_mremap_fails_any(ufault_mremap(ctx, r + 6 * ps, ps, 2 * ps, MREMAP_MAYMOVE, NULL));
	assert_mremap_fails_any(ufault_mremap(ctx, r + 4 * ps, ps, 2 * ps, MREMAP_MAYMOVE, NULL));
	assert_mremap_fails_any(ufault_mremap(ctx, p, 0, ps, MREMAP_MAYMOVE, NULL));

	/* ufault_mprotect / ufault_madvise */
	assert_int_fails(ufault_mprotect(ctx, p + 1, ps, PROT_READ), EINVAL);
	assert_int_fails(ufault_mprotect(ctx, p, ps, 0x1000), EINVAL);
	assert_int_fails(ufault_mprotect(NULL, p, ps, PROT_READ), EINVAL);
	assert_int_fails(ufault_madvise(ctx, p + 1, ps, MADV_DONTNEED), EINVAL);
	assert_int_fails(ufault_madvise(ctx, p, ps, 9999), EINVAL);
	assert_int_fails(ufault_madvise(NULL, p, ps, MADV_DONTNEED), EINVAL);

	/* ufault_stats */
	assert_int_equal(ufault_stats(ctx, NULL), -EINVAL);
	memset(&st, 0, sizeof(st));
	st.size = 8;
	assert_int_equal(ufault_stats(ctx, &st), -EINVAL);

	/* Nothing changed. */
	assert_int_equal(tu_proxy_ops(ctx), ops);
	assert_true(mapped(r, 6 * ps));
	assert_true(unmapped(r + 6 * ps, 2 * ps));
	assert_true(write_faults(r + 4 * ps)); /* still PROT_NONE */
	check_range(p, 1, 4, o, 50);	       /* first touches after the failures */
	assert_page_pattern(p, 0, o, 50);
	memset(p, 0x12, ps); /* still writable */
	assert_int_equal(ufault_madvise(ctx, p, 4 * ps, MADV_DONTNEED), 0);
	check_range(p, 0, 4, o, 50);
	assert_int_equal(ufault_munmap(ctx, r, 8 * ps), 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    tu_fx_test(test_mmap_kernel_chosen),
	    tu_fx_test(test_mmap_snapshot),
	    tu_fx_test(test_mmap_fixed),
	    tu_fx_test(test_munmap_middle),
	    tu_fx_test(test_munmap_span),
	    tu_fx_test(test_mremap_grow_shrink),
	    tu_fx_test(test_mremap_move),
	    tu_fx_test(test_mprotect),
	    tu_fx_test(test_madvise_dontneed),
	    tu_fx_test(test_map_fixed_replace),
	    tu_fx_test(test_bad_args_change_nothing),
	};
	int failed;

	ps = tu_page_size();
	/* One watchdog for the whole program; the fixtures leave it alone. */
	tu_modes_cfg.test_watchdog = 0;
	tu_watchdog(120);
	/* An optional argument runs only the tests whose name matches it. */
	failed = tu_run_every_mode("proxies", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
	return failed ? 1 : 0;
}
