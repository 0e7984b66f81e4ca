/* SPDX-License-Identifier: MIT */
/*
 * test_handles.c - a region handle names one region, never another.
 *
 * A handle returned by ufault_region_register() is an opaque token. Once
 * its region is gone (unregistered, or changed by a proxy), the handle is
 * stale: ufault_region_unregister() refuses it with -ENOENT, even when a
 * new region now covers exactly the same range and the library reused the
 * old region's memory for it. A handle that was never returned (a small
 * integer, a pointer into some allocation, another context's handle) is
 * refused the same way, without a crash. Each refusal leaves the live
 * region registered: a page never touched before still fills from its
 * source. Cycles repeat many times so that slot reuse certainly happens.
 * Every test runs in every lock mode.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include <cmocka.h>

#include "../modes.h"

#define CYCLES 200
#define SEED_A 71
#define SEED_B 72

static size_t ps;

/* Page @pg of @base, never touched before, fills from @seed's pattern at
 * source offset @pg * ps: the region there is registered. */
static void check_fresh_page(const char *base, size_t pg, uint64_t seed, unsigned int cycle)
{
	const char *p = base + pg * ps;
	long bad = tu_pattern_check(p, ps, pg * ps, seed);

	if (bad >= 0)
		fail_msg("[%s] cycle %u: page %zu byte %ld is 0x%02x, expected 0x%02x%s",
			 ufault_lock_mode_name(tu_mode), cycle, pg, bad, (unsigned char)p[bad],
			 tu_pattern(pg * ps + (uint64_t)bad, seed),
			 tu_zero_check(p, ps) == -1 ? " (zeros: the region is no longer "
						      "registered)"
						    : "");
}

/*
 * Register A on [p, p + len), unregister it, register B on exactly the same
 * range: A's handle must not unregister B.
 */
static void test_stale_handle_same_range(void **state)
{
	struct tu_fx *f = *state;
	const size_t len = CYCLES * ps;
	struct ufault_source a = tu_pattern_source(0, SEED_A), b = tu_pattern_source(0, SEED_B);
	char *p = tu_map_anon(len, 0);
	unsigned int same_value = 0;

	for (unsigned int c = 0; c < CYCLES; c++) {
		struct ufault_region *ha = NULL, *hb = NULL;
		int rc;

		assert_int_equal(ufault_region_register(f->ctx, p, len, &a, 0, &ha), 0);
		assert_int_equal(ufault_region_unregister(f->ctx, ha), 0);
		assert_int_equal(ufault_region_register(f->ctx, p, len, &b, 0, &hb), 0);
		same_value += ha == hb;

		rc = ufault_region_unregister(f->ctx, ha);
		if (rc != -ENOENT)
			fail_msg("[%s] cycle %u: the stale handle of A %s returned %d (%s), "
				 "expected -ENOENT",
				 ufault_lock_mode_name(tu_mode), c,
				 ha == hb ? "(equal to B's handle: slot reused)" : "", rc,
				 ufault_strerror(rc));
		/* B is still registered: page c was never touched before. */
		check_fresh_page(p, c, SEED_B, c);
		assert_int_equal(ufault_region_unregister(f->ctx, hb), 0);
		assert_int_equal(ufault_region_unregister(f->ctx, hb), -ENOENT);
	}
	printf("  [%s] %u of %u cycles gave B the same handle value as A\n",
	       ufault_lock_mode_name(tu_mode), same_value, CYCLES);
	tu_unmap(p, len);
}

/*
 * A proxy that changes a region (a partial ufault_munmap) retires its
 * handle: the handle must not name the pieces left, nor regions made
 * later in the memory the old region object occupied.
 */
static void test_stale_handle_after_munmap(void **state)
{
	struct tu_fx *f = *state;
	const size_t len = 8 * ps;
	struct ufault_source a = tu_pattern_source(0, SEED_A);
	struct ufault_region *stale[CYCLES];
	unsigned int nr_stale = 0;
	char *p = tu_map_anon(len, 0);

	for (unsigned int c = 0; c < CYCLES; c++) {
		struct ufault_region *h = NULL;
		bool seen = false;
		void *m;
		int rc;

		assert_int_equal(ufault_region_register(f->ctx, p, len, &a, 0, &h), 0);
		/* Every earlier cycle's handle is stale, whatever its value. */
		for (unsigned int i = 0; i < nr_stale; i++) {
			rc = ufault_region_unregister(f->ctx, stale[i]);
			if (rc != -ENOENT)
				fail_msg("[%s] cycle %u: a stale handle %s returned %d (%s), "
					 "expected -ENOENT",
					 ufault_lock_mode_name(tu_mode), c,
					 stale[i] == h ? "(equal to the new region's handle)" : "",
					 rc, ufault_strerror(rc));
		}
		/* Pieces [0, 2) and [4, 8) are left. */
		assert_int_equal(ufault_munmap(f->ctx, p + 2 * ps, 2 * ps), 0);
		rc = ufault_region_unregister(f->ctx, h);
		if (rc != -ENOENT)
			fail_msg("[%s] cycle %u: the handle of a region split by ufault_munmap "
				 "returned %d (%s), expected -ENOENT",
				 ufault_lock_mode_name(tu_mode), c, rc, ufault_strerror(rc));
		/* Both pieces still serve. */
		check_fresh_page(p, 1, SEED_A, c);
		check_fresh_page(p, 6, SEED_A, c);
		/* Unmap the rest, map the range again for the next cycle. */
		assert_int_equal(ufault_munmap(f->ctx, p, len), 0);
		m = mmap(p, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (m != p)
			tu_die("mmap the range again", m == MAP_FAILED ? errno : EEXIST);
		/* Remember each distinct stale value once. */
		for (unsigned int i = 0; i < nr_stale && !seen; i++)
			seen = stale[i] == h;
		if (!seen)
			stale[nr_stale++] = h;
	}
	tu_unmap(p, len);
}

/* Handles nobody was given. */
static void test_forged_handles(void **state)
{
	struct tu_fx *f = *state;
	const size_t len = 16 * ps;
	struct ufault_source b = tu_pattern_source(0, SEED_B);
	struct ufault_region *hb = NULL;
	char *p = tu_map_anon(len, 0);
	char *heap = malloc(4096);
	int on_stack = 0;
	struct ufault_region *forged[] = {
	    (struct ufault_region *)(uintptr_t)0x1234, (struct ufault_region *)(uintptr_t)1,
	    (struct ufault_region *)(heap + 40),       /* the middle of an allocation */
	    (struct ufault_region *)(void *)&on_stack, /* a stack address */
	    (struct ufault_region *)(void *)p,	       /* registered memory itself */
	    (struct ufault_region *)UINTPTR_MAX,
	};

	assert_non_null(heap);
	memset(heap, 0xa5, 4096);
	assert_int_equal(ufault_region_register(f->ctx, p, len, &b, 0, &hb), 0);
	for (size_t i = 0; i < sizeof(forged) / sizeof(forged[0]); i++) {
		int rc = ufault_region_unregister(f->ctx, forged[i]);

		if (rc != -ENOENT)
			fail_msg("[%s] forged handle %p returned %d (%s), expected -ENOENT",
				 ufault_lock_mode_name(tu_mode), (void *)forged[i], rc,
				 ufault_strerror(rc));
		check_fresh_page(p, i, SEED_B, 0);
	}
	assert_int_equal(ufault_region_unregister(f->ctx, NULL), -EINVAL);
	/* The library wrote nothing through the forged pointers. */
	for (size_t i = 0; i < 4096; i++)
		assert_int_equal((unsigned char)heap[i], 0xa5);
	assert_int_equal(on_stack, 0);
	assert_int_equal(ufault_region_unregister(f->ctx, hb), 0);
	free(heap);
	tu_unmap(p, len);
}

/* Another context's handle names nothing in this one. */
static void test_foreign_handle(void **state)
{
	struct tu_fx *f = *state;
	const size_t len = 8 * ps;
	struct ufault_source a = tu_pattern_source(0, SEED_A), b = tu_pattern_source(0, SEED_B);
	struct ufault_ctx *other = NULL;
	struct ufault_region *ha = NULL, *hb = NULL;
	char *pa = tu_map_anon(len, 0), *pb = tu_map_anon(len, 0);

	assert_int_equal(tu_ctx_create(&other, tu_mode, 1, 0), 0);
	assert_int_equal(ufault_region_register(f->ctx, pa, len, &a, 0, &ha), 0);
	assert_int_equal(ufault_region_register(other, pb, len, &b, 0, &hb), 0);
	assert_int_equal(ufault_region_unregister(f->ctx, hb), -ENOENT);
	assert_int_equal(ufault_region_unregister(other, ha), -ENOENT);
	check_fresh_page(pa, 0, SEED_A, 0);
	check_fresh_page(pb, 0, SEED_B, 0);
	assert_int_equal(ufault_region_unregister(other, hb), 0);
	assert_int_equal(ufault_region_unregister(f->ctx, ha), 0);
	ufault_ctx_destroy(other);
	tu_unmap(pa, len);
	tu_unmap(pb, len);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    tu_fx_test(test_stale_handle_same_range),
	    tu_fx_test(test_stale_handle_after_munmap),
	    tu_fx_test(test_forged_handles),
	    tu_fx_test(test_foreign_handle),
	};
	int failed;

	ps = tu_page_size();
	tu_modes_cfg.test_watchdog = 60;
	/* An optional argument runs only the tests whose name matches it. */
	failed = tu_run_every_mode("handles", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
	return failed ? 1 : 0;
}
