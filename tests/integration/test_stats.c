/* SPDX-License-Identifier: MIT */
/*
 * test_stats.c - ufault_stats() and the latency histogram.
 *
 * Relationships asserted (one thread touches, one page at a time, so there
 * are no install races and every fault message is resolved by one install):
 *  - a fresh context reads all zeros, histogram included;
 *  - every counter and every histogram bucket is monotonic across reads;
 *  - once quiet (all touched pages installed and the counters stable):
 *      pages_installed == system pages of the region (all were touched),
 *      1 <= faults <= touches, sum(histogram) == faults (one latency
 *      sample per handled fault message), no errors;
 *  - p50 <= p99, both inside [lower bound of the lowest non-empty bucket,
 *    lower bound of the bucket after the highest non-empty one], and equal
 *    to ufault_stats_quantile_ns() of the histogram they came from;
 *  - spec_aborts stay 0 outside spec mode;
 *  - proxy_ops counts successful proxy calls only;
 *  - ufault_stats_histogram() fills min(nr, buckets) entries and returns the
 *    bucket count; ufault_stats_bucket_ns() is non-decreasing, spans a wide
 *    range, has the documented resolution, and ufault_stats_bucket_of() is
 *    its inverse (bucket_of(bucket_ns(i)) == i for every bucket);
 *  - ufault_stats_quantile_ns() on a hand-made histogram.
 *
 * ufault_stats() and ufault_stats_histogram() are two reads, not one
 * snapshot: stats_read() brackets the first with two of the second and
 * retries until they agree, so the histogram it returns is the one the
 * percentiles were computed from.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "../testutil.h"

#define SEED 0x57a7

/* Number of histogram buckets, from the library. */
static unsigned int nr_buckets(struct ufault_ctx *ctx)
{
	int n = ufault_stats_histogram(ctx, NULL, 0);

	assert_true(n > 0);
	return (unsigned int)n;
}

/* The same, without a context: the bucket of the largest duration. */
static unsigned int nr_buckets_static(void)
{
	return ufault_stats_bucket_of(UINT64_MAX) + 1;
}

/* One reading: the counters and the histogram they were computed from. */
struct snap {
	struct ufault_stats st;
	unsigned int nr;
	uint64_t *hist;
};

static void snap_init(struct snap *s, struct ufault_ctx *ctx)
{
	memset(s, 0, sizeof(*s));
	s->nr = nr_buckets(ctx);
	s->hist = calloc(s->nr, sizeof(*s->hist));
	assert_non_null(s->hist);
}

static void snap_fini(struct snap *s)
{
	free(s->hist);
	s->hist = NULL;
}

static void snap_copy(struct snap *dst, const struct snap *src)
{
	assert_int_equal(dst->nr, src->nr);
	dst->st = src->st;
	memcpy(dst->hist, src->hist, src->nr * sizeof(*src->hist));
}

static void hist_read(struct ufault_ctx *ctx, uint64_t *buf, unsigned int nr)
{
	assert_int_equal(ufault_stats_histogram(ctx, buf, nr), (int)nr);
}

/*
 * Buckets are monotonic, so if two histogram reads around ufault_stats()
 * agree, every bucket ufault_stats() read had that value too.
 */
static void stats_read(struct ufault_ctx *ctx, struct snap *s)
{
	uint64_t *after = calloc(s->nr, sizeof(*after));
	uint64_t end = tu_now_ns() + 5000000000ull * tu_slowdown();

	assert_non_null(after);
	for (;;) {
		hist_read(ctx, s->hist, s->nr);
		memset(&s->st, 0, sizeof(s->st));
		s->st.size = sizeof(s->st);
		assert_int_equal(ufault_stats(ctx, &s->st), 0);
		assert_int_equal(s->st.size, sizeof(s->st));
		hist_read(ctx, after, s->nr);
		if (!memcmp(s->hist, after, s->nr * sizeof(*after)))
			break;
		if (tu_now_ns() > end)
			fail_msg("the histogram never stayed still across ufault_stats()");
		usleep(100);
	}
	free(after);
}

static uint64_t hist_total(const struct snap *s)
{
	uint64_t t = 0;

	for (unsigned int i = 0; i < s->nr; i++)
		t += s->hist[i];
	return t;
}

static void assert_monotonic(const struct snap *sa, const struct snap *sb)
{
	const struct ufault_stats *a = &sa->st, *b = &sb->st;

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
	assert_int_equal(sa->nr, sb->nr);
	for (unsigned int i = 0; i < sa->nr; i++)
		assert_true(sb->hist[i] >= sa->hist[i]);
}

static void assert_percentiles(const struct snap *s)
{
	const struct ufault_stats *st = &s->st;
	int lo = -1, hi = -1;

	for (unsigned int i = 0; i < s->nr; i++)
		if (s->hist[i]) {
			if (lo < 0)
				lo = (int)i;
			hi = (int)i;
		}
	/* The percentiles are those of the histogram read with them. */
	assert_int_equal(st->latency_p50_ns, ufault_stats_quantile_ns(s->hist, s->nr, 500));
	assert_int_equal(st->latency_p99_ns, ufault_stats_quantile_ns(s->hist, s->nr, 990));
	if (lo < 0) {
		assert_int_equal(st->latency_p50_ns, 0);
		assert_int_equal(st->latency_p99_ns, 0);
		return;
	}
	assert_true(st->latency_p50_ns <= st->latency_p99_ns);
	assert_true(st->latency_p50_ns > 0);
	assert_true(st->latency_p50_ns >= ufault_stats_bucket_ns((unsigned)lo));
	if ((unsigned int)hi + 1 < s->nr)
		assert_true(st->latency_p99_ns <= ufault_stats_bucket_ns((unsigned)hi + 1));
}

static void test_stats_args(void **state)
{
	struct ufault_ctx *ctx = NULL;
	struct ufault_stats st, copy;
	struct snap sn;
	uint64_t *buf;
	unsigned int nr;

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
	st.size = UFAULT_STATS_SIZE_VER0 - 1;
	memcpy(&copy, &st, sizeof(st));
	assert_int_equal(ufault_stats(ctx, &st), -EINVAL);
	assert_memory_equal(&st, &copy, sizeof(st));

	/* A newer caller's larger struct: our fields, then zeros. */
	{
		struct {
			struct ufault_stats st;
			uint64_t more[4];
		} big;

		memset(&big, 0xab, sizeof(big));
		big.st.size = sizeof(big);
		assert_int_equal(ufault_stats(ctx, &big.st), 0);
		assert_int_equal(big.st.faults, 0);
		for (unsigned int i = 0; i < 4; i++)
			assert_int_equal(big.more[i], 0);
	}

	/* ufault_stats_histogram(): bad arguments. */
	nr = nr_buckets(ctx);
	assert_int_equal(nr, nr_buckets_static());
	buf = calloc(nr + 2, sizeof(*buf));
	assert_non_null(buf);
	assert_int_equal(ufault_stats_histogram(NULL, buf, nr), -EINVAL);
	assert_int_equal(ufault_stats_histogram(NULL, NULL, 0), -EINVAL);
	assert_int_equal(ufault_stats_histogram(ctx, NULL, 1), -EINVAL);

	/* It fills min(nr, buckets) entries and never more. */
	for (unsigned int i = 0; i < nr + 2; i++)
		buf[i] = 0xabababababababab;
	assert_int_equal(ufault_stats_histogram(ctx, buf, 3), (int)nr);
	for (unsigned int i = 0; i < 3; i++)
		assert_int_equal(buf[i], 0);
	for (unsigned int i = 3; i < nr + 2; i++)
		assert_int_equal(buf[i], 0xabababababababab);
	assert_int_equal(ufault_stats_histogram(ctx, buf, nr + 1), (int)nr);
	for (unsigned int i = 0; i < nr; i++)
		assert_int_equal(buf[i], 0);
	assert_int_equal(buf[nr], 0xabababababababab);
	assert_int_equal(buf[nr + 1], 0xabababababababab);
	free(buf);

	/* Fresh context: zeros everywhere. */
	snap_init(&sn, ctx);
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
	assert_int_equal(st.latency_p50_ns, 0);
	assert_int_equal(st.latency_p99_ns, 0);
	stats_read(ctx, &sn);
	assert_int_equal(hist_total(&sn), 0);
	assert_percentiles(&sn);
	snap_fini(&sn);
	ufault_ctx_destroy(ctx);
}

static void test_bucket_ns(void **state)
{
	unsigned int nr = nr_buckets_static();
	uint64_t prev = 0;

	(void)state;
	assert_true(nr > 1);
	for (unsigned int i = 0; i < nr; i++) {
		uint64_t b = ufault_stats_bucket_ns(i);

		assert_true(b >= prev);
		prev = b;
	}
	/* The range covers at least 1 us .. 1 s with distinct buckets. */
	assert_true(ufault_stats_bucket_ns(nr - 1) > 1000000000ull);
	{
		unsigned int distinct = 0;

		for (unsigned int i = 1; i < nr; i++)
			if (ufault_stats_bucket_ns(i) > ufault_stats_bucket_ns(i - 1))
				distinct++;
		assert_true(distinct >= nr / 2);
	}
	/*
	 * bucket_of() inverts bucket_ns(): a bucket's lower bound falls in it,
	 * and so does the nanosecond before the next bucket's.
	 */
	assert_int_equal(ufault_stats_bucket_of(0), 0);
	for (unsigned int i = 0; i < nr; i++) {
		uint64_t lo = ufault_stats_bucket_ns(i), hi = ufault_stats_bucket_ns(i + 1);

		if (ufault_stats_bucket_of(lo) != i)
			fail_msg("bucket_of(bucket_ns(%u) = %llu) = %u", i, (unsigned long long)lo,
				 ufault_stats_bucket_of(lo));
		assert_true(hi > lo);
		assert_int_equal(ufault_stats_bucket_of(hi - 1), i);
		/* 32 buckets per power of two: each at most 1/32 of its lower bound. */
		if (lo >= 1024 && i + 1 < nr)
			assert_true((hi - lo) * 32 <= lo);
	}
	/* The last bucket holds the largest duration; past it is UINT64_MAX. */
	assert_int_equal(ufault_stats_bucket_of(UINT64_MAX), nr - 1);
	assert_int_equal(ufault_stats_bucket_ns(nr), UINT64_MAX);
	/* Out of range must not crash. */
	(void)ufault_stats_bucket_ns(nr + 1);
	(void)ufault_stats_bucket_ns(~0u);
}

/* A quantile is the midpoint of bucket @i. */
static void assert_midpoint_of(uint64_t q, unsigned int i)
{
	uint64_t lo = ufault_stats_bucket_ns(i), hi = ufault_stats_bucket_ns(i + 1);
	uint64_t mid = lo + (hi - lo) / 2;

	if (q < lo || q >= hi || q + 1 < mid || q > mid + 1)
		fail_msg("quantile %llu is not the midpoint of bucket %u [%llu, %llu)",
			 (unsigned long long)q, i, (unsigned long long)lo, (unsigned long long)hi);
}

static void test_quantile(void **state)
{
	unsigned int nr = nr_buckets_static();
	unsigned int a = ufault_stats_bucket_of(1000), b = ufault_stats_bucket_of(100000),
		     c = ufault_stats_bucket_of(10000000);
	uint64_t *h = calloc(nr, sizeof(*h));

	(void)state;
	assert_non_null(h);
	assert_true(a < b && b < c && c < nr);
	/* Empty: 0, whatever the quantile. */
	assert_int_equal(ufault_stats_quantile_ns(h, nr, 0), 0);
	assert_int_equal(ufault_stats_quantile_ns(h, nr, 500), 0);
	assert_int_equal(ufault_stats_quantile_ns(h, nr, 1000), 0);
	assert_int_equal(ufault_stats_quantile_ns(NULL, 0, 500), 0);

	/* One sample: every quantile is its bucket. */
	h[b] = 1;
	assert_midpoint_of(ufault_stats_quantile_ns(h, nr, 0), b);
	assert_midpoint_of(ufault_stats_quantile_ns(h, nr, 500), b);
	assert_midpoint_of(ufault_stats_quantile_ns(h, nr, 1000), b);

	/*
	 * 40 samples in a, 58 in b, 2 in c: no quantile below lands on a
	 * bucket edge, so any rounding convention gives the same bucket.
	 */
	h[a] = 40;
	h[b] = 58;
	h[c] = 2;
	assert_midpoint_of(ufault_stats_quantile_ns(h, nr, 0), a);
	assert_midpoint_of(ufault_stats_quantile_ns(h, nr, 100), a);
	assert_midpoint_of(ufault_stats_quantile_ns(h, nr, 500), b);
	assert_midpoint_of(ufault_stats_quantile_ns(h, nr, 900), b);
	assert_midpoint_of(ufault_stats_quantile_ns(h, nr, 990), c);
	assert_midpoint_of(ufault_stats_quantile_ns(h, nr, 1000), c);
	/* Non-decreasing in the quantile. */
	for (unsigned int pm = 1; pm <= 1000; pm++)
		assert_true(ufault_stats_quantile_ns(h, nr, pm) >=
			    ufault_stats_quantile_ns(h, nr, pm - 1));
	/* Only the first @nr buckets count: here just a. */
	assert_midpoint_of(ufault_stats_quantile_ns(h, b, 990), a);
	/* A histogram kept with bucket_of() gives back its own buckets. */
	memset(h, 0, nr * sizeof(*h));
	for (uint64_t ns = 1000; ns < 2000; ns++)
		h[ufault_stats_bucket_of(ns)]++;
	assert_midpoint_of(ufault_stats_quantile_ns(h, nr, 500), ufault_stats_bucket_of(1500));
	free(h);
}

static void counters_mode(enum ufault_lock_mode mode, unsigned int workers)
{
	size_t ps = tu_page_size();
	const size_t npages = 64;
	size_t len = npages * ps;
	struct ufault_ctx *ctx = NULL;
	struct snap prev, cur;
	struct ufault_source src;
	uint64_t end;
	char *a;

	assert_int_equal(tu_ctx_create(&ctx, mode, workers, 1), 0);
	snap_init(&prev, ctx);
	snap_init(&cur, ctx);
	a = tu_map_anon(len, 0);
	ufault_source_init(&src, UFAULT_SOURCE_CALLBACK);
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
		snap_copy(&prev, &cur);
	}

	/* Wait until quiet, then the exact relationships. */
	end = tu_now_ns() + 5000000000ull * tu_slowdown();
	for (;;) {
		stats_read(ctx, &cur);
		assert_monotonic(&prev, &cur);
		snap_copy(&prev, &cur);
		if ((cur.st.pages_installed >= npages && hist_total(&cur) == cur.st.faults) ||
		    tu_now_ns() > end)
			break;
		usleep(1000);
	}
	if (cur.st.pages_installed != npages || hist_total(&cur) != cur.st.faults ||
	    cur.st.faults > npages)
		fprintf(stderr,
			"mode %s: pages_installed %llu (want %zu) "
			"faults %llu hist total %llu eexist %llu retries %llu deferred %llu\n",
			ufault_lock_mode_name(mode), (unsigned long long)cur.st.pages_installed,
			npages, (unsigned long long)cur.st.faults,
			(unsigned long long)hist_total(&cur),
			(unsigned long long)cur.st.eexist_races, (unsigned long long)cur.st.retries,
			(unsigned long long)cur.st.deferred);
	assert_int_equal(cur.st.pages_installed, npages);
	assert_true(cur.st.faults >= 1);
	/* One message per page, except when the kernel wakes a parked thread
	 * before its page is in (it faults again): each such extra message
	 * ends as an EEXIST race once the first one installed the page. */
	assert_true(cur.st.faults <= npages + cur.st.eexist_races);
	assert_int_equal(hist_total(&cur), cur.st.faults);
	assert_int_equal(cur.st.source_errors, 0);
	assert_int_equal(cur.st.poisoned, 0);
	assert_int_equal(cur.st.zero_filled, 0);
	assert_int_equal(cur.st.proxy_ops, 0);
	assert_percentiles(&cur);
	if (mode != UFAULT_LOCK_SPEC)
		for (unsigned int i = 0; i < UFAULT_SPEC_ABORT_NR; i++)
			assert_int_equal(cur.st.spec_aborts[i], 0);

	/* Reading installed pages again changes nothing. */
	assert_int_equal(tu_pattern_check(a, len, 0, SEED), -1);
	stats_read(ctx, &cur);
	assert_monotonic(&prev, &cur);
	assert_int_equal(cur.st.pages_installed, npages);
	assert_true(cur.st.faults <= npages + cur.st.eexist_races);

	snap_fini(&prev);
	snap_fini(&cur);
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
	struct snap sn;
	struct ufault_source src;
	uint64_t end;
	char *a;

	(void)state;
	for (unsigned int m = 0; m < TU_NR_LOCK_MODES; m++) {
		assert_int_equal(tu_ctx_create(&ctx, tu_lock_mode(m), 1, 1), 0);
		snap_init(&sn, ctx);
		a = tu_map_anon(len, big);
		ufault_source_init(&src, UFAULT_SOURCE_ZERO);
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
			stats_read(ctx, &sn);
			if (sn.st.pages_installed >= len / ps && hist_total(&sn) == sn.st.faults)
				break;
			usleep(1000);
		} while (tu_now_ns() < end);
		assert_int_equal(sn.st.pages_installed, len / ps);
		assert_true(sn.st.faults >= 1 && sn.st.faults <= 4);
		assert_int_equal(hist_total(&sn), sn.st.faults);
		assert_percentiles(&sn);
		snap_fini(&sn);
		ufault_ctx_destroy(ctx);
		tu_unmap(a, len);
	}
}

/* proxy_ops counts successful proxy calls, not failed ones. */
static void test_proxy_ops(void **state)
{
	size_t ps = tu_page_size();
	struct ufault_ctx *ctx = NULL;
	struct snap sn;
	char *p;

	(void)state;
	assert_int_equal(tu_ctx_create(&ctx, UFAULT_LOCK_SPEC, 1, 1), 0);
	snap_init(&sn, ctx);
	p = ufault_mmap(ctx, NULL, 8 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			NULL, 0);
	assert_true(p != MAP_FAILED);
	assert_int_equal(tu_zero_check(p, 8 * ps), -1);
	stats_read(ctx, &sn);
	assert_int_equal(sn.st.proxy_ops, 1);

	/* A failing proxy call (unaligned address) is not counted. */
	errno = 0;
	assert_int_equal(ufault_munmap(ctx, p + 1, ps), -1);
	assert_int_equal(errno, EINVAL);
	stats_read(ctx, &sn);
	assert_int_equal(sn.st.proxy_ops, 1);

	assert_int_equal(ufault_munmap(ctx, p, 8 * ps), 0);
	stats_read(ctx, &sn);
	assert_int_equal(sn.st.proxy_ops, 2);
	snap_fini(&sn);
	ufault_ctx_destroy(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stats_args), cmocka_unit_test(test_bucket_ns),
	    cmocka_unit_test(test_quantile),   cmocka_unit_test(test_counters),
	    cmocka_unit_test(test_big_pages),  cmocka_unit_test(test_proxy_ops),
	};

	unsetenv("UFAULT_LOCK_MODE");
	tu_watchdog(50);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
