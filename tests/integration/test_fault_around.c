/* SPDX-License-Identifier: MIT */
/*
 * test_fault_around.c - the adaptive fault-around window
 * (struct ufault_config.fault_around_max), in every lock mode:
 *  - a sequential run takes fewer faults than pages, every byte right, and
 *    the pages installed ahead are counted;
 *  - a random order reads right too;
 *  - a window never crosses its region's end (the next region, another
 *    source, keeps its own bytes), never overwrites a page already there
 *    (a byte written ahead of the run survives), and falls back to one page
 *    at a VMA boundary (ufault_mprotect in the middle of the region);
 *  - 64 KiB region pages grow windows in whole region pages;
 *  - bad settings are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "../modes.h"

#define PAGES 256
#define FA_MAX (256u << 10)

static size_t ps;

static struct ufault_ctx *fa_ctx(void)
{
	struct ufault_config cfg;
	struct ufault_ctx *ctx;

	ufault_config_init(&cfg);
	cfg.lock_mode = tu_mode;
	cfg.nr_workers = 1;
	cfg.fault_around_max = FA_MAX;
	assert_int_equal(tu_ctx_create_cfg(&ctx, &cfg), 0);
	return ctx;
}

static void stats(struct ufault_ctx *ctx, struct ufault_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	assert_int_equal(ufault_stats(ctx, st), 0);
}

static void check_pages(const char *p, size_t first, size_t n, uint64_t seed)
{
	for (size_t pg = first; pg < first + n; pg++)
		if (tu_pattern_check(p + pg * ps, ps, pg * ps, seed) != -1)
			fail_msg("[%s] page %zu does not read its source",
				 ufault_lock_mode_name(tu_mode), pg);
}

static void test_sequential(void **state)
{
	struct ufault_ctx *ctx = fa_ctx();
	struct ufault_source s = tu_pattern_source(0, 11);
	struct ufault_stats st;
	char *p;

	(void)state;
	p = ufault_mmap(ctx, NULL, PAGES * ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, &s, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	for (size_t pg = 0; pg < PAGES; pg++)
		(void)tu_read_byte(p + pg * ps);
	check_pages(p, 0, PAGES, 11);
	stats(ctx, &st);
	/* Windows double up to 64 pages: far fewer faults than pages. */
	assert_true(st.faults < PAGES / 4);
	assert_true(st.fault_around_pages >= PAGES / 2);
	assert_int_equal(ufault_munmap(ctx, p, PAGES * ps), 0);
	ufault_ctx_destroy(ctx);
}

static void test_random(void **state)
{
	struct ufault_ctx *ctx = fa_ctx();
	struct ufault_source s = tu_pattern_source(0, 12);
	size_t order[PAGES];
	char *p;

	(void)state;
	for (size_t i = 0; i < PAGES; i++)
		order[i] = i;
	for (size_t i = PAGES - 1; i > 0; i--) {
		size_t j = (size_t)rand() % (i + 1), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	p = ufault_mmap(ctx, NULL, PAGES * ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, &s, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	for (size_t i = 0; i < PAGES; i++)
		(void)tu_read_byte(p + order[i] * ps);
	check_pages(p, 0, PAGES, 12);
	assert_int_equal(ufault_munmap(ctx, p, PAGES * ps), 0);
	ufault_ctx_destroy(ctx);
}

/* Two regions back to back, a byte written ahead, a VMA split. */
static void test_boundaries(void **state)
{
	struct ufault_ctx *ctx = fa_ctx();
	struct ufault_source a = tu_pattern_source(0, 13), b = tu_pattern_source(0, 14);
	char *p = tu_map_anon(2 * PAGES * ps, 0);

	(void)state;
	assert_int_equal(ufault_region_register(ctx, p, PAGES * ps, &a, 0, NULL), 0);
	assert_int_equal(ufault_region_register(ctx, p + PAGES * ps, PAGES * ps, &b, 0, NULL), 0);
	/* A page written ahead of the run, and a VMA split at page 100. */
	p[200 * ps + 7] = 0x5a;
	assert_int_equal(ufault_mprotect(ctx, p + 100 * ps, 20 * ps, PROT_READ), 0);
	for (size_t pg = 0; pg < 2 * PAGES; pg++)
		if (pg != 200)
			(void)tu_read_byte(p + pg * ps);
	assert_int_equal((unsigned char)p[200 * ps + 7], 0x5a);
	check_pages(p, 0, 200, 13);
	check_pages(p, 201, PAGES - 201, 13);
	check_pages(p + PAGES * ps, 0, PAGES, 14);
	assert_int_equal(ufault_munmap(ctx, p, 2 * PAGES * ps), 0);
	ufault_ctx_destroy(ctx);
}

static void test_big_region_pages(void **state)
{
	struct ufault_ctx *ctx = fa_ctx();
	struct ufault_source s = tu_pattern_source(0, 15);
	const size_t big = 64 << 10, n = 32;
	struct ufault_stats st;
	char *p;

	(void)state;
	p = ufault_mmap(ctx, NULL, n * big, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, &s,
			UFAULT_REGION_PAGE_SHIFT(16));
	assert_ptr_not_equal(p, MAP_FAILED);
	assert_int_equal((uintptr_t)p % big, 0);
	for (size_t i = 0; i < n * big; i += ps)
		(void)tu_read_byte(p + i);
	check_pages(p, 0, n * big / ps, 15);
	stats(ctx, &st);
	assert_true(st.faults < n);
	assert_int_equal(st.fault_around_pages % (big / ps), 0);
	assert_int_equal(ufault_munmap(ctx, p, n * big), 0);
	ufault_ctx_destroy(ctx);
}

static void test_bad_settings(void **state)
{
	struct ufault_config cfg;
	struct ufault_ctx *ctx = NULL;

	(void)state;
	ufault_config_init(&cfg);
	cfg.fault_around_max = ps + 1;
	assert_int_equal(ufault_ctx_create(&ctx, &cfg), -EINVAL);
	cfg.fault_around_max = 4u << 20; /* above the default max_page_size */
	assert_int_equal(ufault_ctx_create(&ctx, &cfg), -EINVAL);
	assert_null(ctx);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    tu_watchdog_test(test_sequential),	 tu_watchdog_test(test_random),
	    tu_watchdog_test(test_boundaries),	 tu_watchdog_test(test_big_region_pages),
	    tu_watchdog_test(test_bad_settings),
	};

	ps = tu_page_size();
	return tu_run_every_mode("fault_around", tests, sizeof(tests) / sizeof(tests[0]), argc,
				 argv)
		   ? 1
		   : 0;
}
