/* SPDX-License-Identifier: MIT */
/*
 * test_stats.c - ufault_stats() and the latency histogram.
 *
 * Relationships asserted (one thread touches, one page at a time, so there
 * are no install races and every fault message is resolved by one install):
 *  - a fresh context reads all zeros;
 *  - every counter and every histogram bucket is monotonic across reads;
 *  - once quiet (all touched pages installed and the counters stable):
 *      pages_installed == system pages of the region (all were touched),
 *      1 <= faults <= touches, sum(latency_hist) == faults (one latency
 *      sample per handled fault message), no errors;
 *  - p50 <= p99, both inside [lower bound of the lowest non-empty bucket,
 *    lower bound of the bucket after the highest non-empty one];
 *  - spec_aborts stay 0 outside spec mode;
 *  - proxy_ops counts successful proxy calls only;
 *  - ufault_stats_bucket_ns() is non-decreasing and spans a wide range.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "../testutil.h"

#define SEED 0x57a7

static void stats_read(struct ufault_ctx *ctx, struct ufault_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	assert_int_equal(ufault_stats(ctx, st), 0);
	assert_int_equal(st->size, sizeof(*st));
}

static uint64_t hist_total(const struct ufault_stats *st)
{
	uint64_t t = 0;

	for (unsigned int i = 0; i < UFAULT_HIST_BUCKETS; i++)
		t += st->latency_hist[i];
	return t;
}

static void assert_monotonic(const struct ufault_stats *a, const struct ufault_stats *b)
{
	assert_true(b->faults >= a->faults);
	assert_true(b->pages_installed >= a->pages_installed);
	assert_true(b->eexist_races >= a->eexist_races);
	assert_true(b->retries >= a->retries);
	assert_true(b->deferred >= a->deferred);
	assert_true(b->source_errors >= a->source_errors);
	assert_true(b->poisoned >= a->poisoned);
	assert_true(b->zero_filled >= a->zero_filled);
	assert_true(b->proxy_ops >= a->proxy_ops);
	for (unsigned int i = 0; i < UFAULT_SPEC_ABORT_NR; i++)
		assert_true(b->spec_aborts[i] >= a->spec_aborts[i]);
	for (unsigned int i = 0; i < UFAULT_HIST_BUCKETS; i++)
		assert_true(b->latency_hist[i] >= a->latency_hist[i]);
}

static void assert_percentiles(const struct ufault_stats *st)
{
	int lo = -1, hi = -1;

	for (unsigned int i = 0; i < UFAULT_HIST_BUCKETS; i++)
		if (st->latency_hist[i]) {
			if (lo < 0)
				lo = (int)i;
			hi = (int)i;
		}
	if (lo < 0)
		return;
	assert_true(st->latency_p50_ns <= st->latency_p99_ns);
	assert_true(st->latency_p50_ns > 0);
	assert_true(st->latency_p50_ns >= ufault_stats_bucket_ns((unsigned)lo));
	if (hi + 1 < UFAULT_HIST_BUCKETS)
		assert_true(st->latency_p99_ns <= ufault_stats_bucket_ns((unsigned)hi + 1));
}

static void test_stats_args(void **state)
{
	struct ufault_ctx *ctx = NULL;
	struct ufault_stats st, copy;

	(void)state;
	assert_int_equal(tu_ctx_create(&ctx, UFAULT_LOCK_SPEC, 1, 1), 0);
	memset(&st, 0, sizeof(st));
	st.size = sizeof(st);
	assert_int_equal(ufault_stats(NULL, &st), -EINVAL);
	assert_int_equal(ufault_stats(ctx, NULL), -EINVAL);

	/* Too small: rejected and nothing written. */
	memset(&st, 0xab, sizeof(st));
	st.size = 0;
	memcpy(&copy, &st, sizeof(st));
	assert_int_equal(ufault_stats(ctx, &st), -EINVAL);
	assert_memory_equal(&st, &copy, sizeof(st));
	st.size = sizeof(size_t);
	memcpy(&copy, &st, sizeof(st));
	assert_int_equal(ufault_stats(ctx, &st), -EINVAL);
	assert_memory_equal(&st, &copy, sizeof(st));

	/* Fresh context: zeros everywhere. */
	memset(&st, 0xab, sizeof(st));
	st.size = sizeof(st);
	assert_int_equal(ufault_stats(ctx, &st), 0);
	assert_int_equal(st.faults, 0);
	assert_int_equal(st.pages_installed, 0);
	assert_int_equal(st.eexist_races, 0);
	assert_int_equal(st.retries, 0);
	assert_int_equal(st.deferred, 0);
	assert_int_equal(st.source_errors, 0);
	assert_int_equal(st.poisoned, 0);
	assert_int_equal(st.zero_filled, 0);
	assert_int_equal(st.proxy_ops, 0);
	for (unsigned int i = 0; i < UFAULT_SPEC_ABORT_NR; i++)
		assert_int_equal(st.spec_aborts[i], 0);
	assert_int_equal(hist_total(&st), 0);
	assert_int_equal(st.latency_p50_ns, 0);
	assert_int_equal(st.latency_p99_ns, 0);
	ufault_ctx_destroy(ctx);
}

static void test_bucket_ns(void **state)
{
	uint64_t prev = 0;

	(void)state;
	for (unsigned int i = 0; i < UFAULT_HIST_BUCKETS; i++) {
		uint64_t b = ufault_stats_bucket_ns(i);

		assert_true(b >= prev);
		prev = b;
	}
	/* The range covers at least 1 us .. 1 s with distinct buckets. */
	assert_true(ufault_stats_bucket_ns(UFAULT_HIST_BUCKETS - 1) > 1000000000ull);
	{
		unsigned int distinct = 0;

		for (unsigned int i = 1; i < UFAULT_HIST_BUCKETS; i++)
			if (ufault_stats_bucket_ns(i) > ufault_stats_bucket_ns(i - 1))
				distinct++;
		assert_true(distinct >= UFAULT_HIST_BUCKETS / 2);
	}
	/* Out of range must not crash. */
	(void)ufault_stats_bucket_ns(UFAULT_HIST_BUCKETS);
	(void)ufault_stats_bucket_ns(~0u);
}

static void counters_mode(enum ufault_lock_mode mode, unsigned int workers)
{
	size_t ps = tu_page_size();
	const size_t npages = 64;
	size_t len = npages * ps;
	struct ufault_ctx *ctx = NULL;
	struct ufault_stats prev, cur;
	struct ufault_source src;
	uint64_t end;
	char *a;

	assert_int_equal(tu_ctx_create(&ctx, mode, workers, 1), 0);
	a = tu_map_anon(len, 0);
	memset(&src, 0, sizeof(src));
	src.type = UFAULT_SOURCE_CALLBACK;
	src.callback.fill = tu_pattern_fill_cb;
	src.callback.arg = (void *)(uintptr_t)SEED;
	assert_int_equal(ufault_region_register(ctx, a, len, &src, 0, NULL), 0);
	stats_read(ctx, &prev);

	/* Touch in batches of 8 pages, reading stats in between. */
	for (size_t b = 0; b < npages; b += 8) {
		for (size_t pg = b; pg < b + 8; pg++)
			assert_int_equal(tu_pattern_check(a + pg * ps, ps, pg * ps, SEED), -1);
		stats_read(ctx, &cur);
		assert_monotonic(&prev, &cur);
		assert_percentiles(&cur);
		prev = cur;
	}

	/* Wait until quiet, then the exact relationships. */
	end = tu_now_ns() + 5000000000ull * tu_slowdown();
	for (;;) {
		stats_read(ctx, &cur);
		assert_monotonic(&prev, &cur);
		prev = cur;
		if ((cur.pages_installed >= npages && hist_total(&cur) == cur.faults) ||
		    tu_now_ns() > end)
			break;
		usleep(1000);
	}
	if (cur.pages_installed != npages || hist_total(&cur) != cur.faults)
		fprintf(stderr,
			"mode %s: pages_installed %llu (want %zu) "
			"faults %llu hist total %llu\n",
			ufault_lock_mode_name(mode), (unsigned long long)cur.pages_installed,
			npages, (unsigned long long)cur.faults,
			(unsigned long long)hist_total(&cur));
	assert_int_equal(cur.pages_installed, npages);
	assert_true(cur.faults >= 1);
	assert_true(cur.faults <= npages);
	assert_int_equal(hist_total(&cur), cur.faults);
	assert_int_equal(cur.source_errors, 0);
	assert_int_equal(cur.poisoned, 0);
	assert_int_equal(cur.zero_filled, 0);
	assert_int_equal(cur.proxy_ops, 0);
	assert_percentiles(&cur);
	if (mode != UFAULT_LOCK_SPEC)
		for (unsigned int i = 0; i < UFAULT_SPEC_ABORT_NR; i++)
			assert_int_equal(cur.spec_aborts[i], 0);

	/* Reading installed pages again changes nothing. */
	assert_int_equal(tu_pattern_check(a, len, 0, SEED), -1);
	stats_read(ctx, &cur);
	assert_int_equal(cur.pages_installed, npages);
	assert_true(cur.faults <= npages);

	ufault_ctx_destroy(ctx);
	tu_unmap(a, len);
}

static void test_counters(void **state)
{
	(void)state;
	for (unsigned int m = 0; m < TU_NR_LOCK_MODES; m++) {
		counters_mode(tu_lock_mode(m), 1);
		counters_mode(tu_lock_mode(m), 2);
	}
}

/* 64 KiB region pages: one fault installs 16 system pages. */
static void test_big_pages(void **state)
{
	size_t ps = tu_page_size(), big = 1 << 16, len = 4 * big;
	struct ufault_ctx *ctx = NULL;
	struct ufault_stats st;
	struct ufault_source src;
	uint64_t end;
	char *a;

	(void)state;
	for (unsigned int m = 0; m < TU_NR_LOCK_MODES; m++) {
		assert_int_equal(tu_ctx_create(&ctx, tu_lock_mode(m), 1, 1), 0);
		a = tu_map_anon(len, big);
		memset(&src, 0, sizeof(src));
		src.type = UFAULT_SOURCE_ZERO;
		assert_int_equal(
		    ufault_region_register(ctx, a, len, &src, UFAULT_REGION_PAGE_SHIFT(16), NULL),
		    0);
		/* One touch per region page: 4 faults. */
		for (size_t i = 0; i < 4; i++)
			assert_int_equal(tu_read_byte(a + i * big + 5 * ps), 0);
		/* Now the whole region is present: no more faults. */
		assert_int_equal(tu_zero_check(a, len), -1);
		end = tu_now_ns() + 5000000000ull * tu_slowdown();
		do {
			stats_read(ctx, &st);
			if (st.pages_installed >= len / ps)
				break;
			usleep(1000);
		} while (tu_now_ns() < end);
		assert_int_equal(st.pages_installed, len / ps);
		assert_true(st.faults >= 1 && st.faults <= 4);
		ufault_ctx_destroy(ctx);
		tu_unmap(a, len);
	}
}

/* proxy_ops counts successful proxy calls, not failed ones. */
static void test_proxy_ops(void **state)
{
	size_t ps = tu_page_size();
	struct ufault_ctx *ctx = NULL;
	struct ufault_stats st;
	char *p;

	(void)state;
	assert_int_equal(tu_ctx_create(&ctx, UFAULT_LOCK_SPEC, 1, 1), 0);
	p = ufault_mmap(ctx, NULL, 8 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			NULL, 0);
	assert_true(p != MAP_FAILED);
	assert_int_equal(tu_zero_check(p, 8 * ps), -1);
	stats_read(ctx, &st);
	assert_int_equal(st.proxy_ops, 1);

	/* A failing proxy call (unaligned address) is not counted. */
	errno = 0;
	assert_int_equal(ufault_munmap(ctx, p + 1, ps), -1);
	assert_int_equal(errno, EINVAL);
	stats_read(ctx, &st);
	assert_int_equal(st.proxy_ops, 1);

	assert_int_equal(ufault_munmap(ctx, p, 8 * ps), 0);
	stats_read(ctx, &st);
	assert_int_equal(st.proxy_ops, 2);
	ufault_ctx_destroy(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stats_args), cmocka_unit_test(test_bucket_ns),
	    cmocka_unit_test(test_counters),   cmocka_unit_test(test_big_pages),
	    cmocka_unit_test(test_proxy_ops),
	};

	unsetenv("UFAULT_LOCK_MODE");
	tu_watchdog(50);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
