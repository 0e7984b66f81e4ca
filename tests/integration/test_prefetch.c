/* SPDX-License-Identifier: MIT */
/*
 * test_prefetch.c - ufault_prefetch(), in every lock mode:
 *  - it returns at once, and the pages arrive without faults: once the
 *    workers have filled them, touching the range faults no more, and
 *    every byte is the source's;
 *  - pages already there are skipped (a byte written before survives), a
 *    range partly outside any region is fine;
 *  - the queue is bounded: with the workers' spare requests all in use
 *    (fills held by a gate) it fills up and says -EAGAIN;
 *  - bad arguments are -EINVAL.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "../modes.h"

#define PAGES 128

static size_t ps;

static void stats(struct ufault_ctx *ctx, struct ufault_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	assert_int_equal(ufault_stats(ctx, st), 0);
}

static void test_prefetch_fills(void **state)
{
	struct ufault_ctx *ctx = ((struct tu_fx *)*state)->ctx;
	struct ufault_source s = tu_pattern_source(0, 31);
	unsigned char vec[PAGES];
	struct ufault_stats st;
	char *p;
	size_t resident = 0;

	p = ufault_mmap(ctx, NULL, PAGES * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			&s, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	p[3 * ps + 9] = 0x33; /* a page already there: skipped */
	/* The range runs past the region into nothing: skipped there. */
	assert_int_equal(ufault_prefetch(ctx, p + ps / 2, PAGES * ps + 8 * ps), 0);
	for (int i = 0; i < 5000 && resident < PAGES; i++) {
		assert_int_equal(mincore(p, PAGES * ps, vec), 0);
		resident = 0;
		for (size_t pg = 0; pg < PAGES; pg++)
			resident += vec[pg] & 1;
		if (resident < PAGES)
			usleep(1000);
	}
	assert_int_equal(resident, PAGES);
	stats(ctx, &st);
	{
		uint64_t faults = st.faults;

		for (size_t pg = 0; pg < PAGES; pg++)
			if (pg != 3 && tu_pattern_check(p + pg * ps, ps, pg * ps, 31) != -1)
				fail_msg("[%s] page %zu", ufault_lock_mode_name(tu_mode), pg);
		assert_int_equal((unsigned char)p[3 * ps + 9], 0x33);
		stats(ctx, &st);
		assert_int_equal(st.faults, faults); /* no fault: all were there */
	}
	assert_true(st.prefetched >= PAGES - 1);
	assert_int_equal(ufault_munmap(ctx, p, PAGES * ps), 0);
}

/* An async fill held by the gate on another thread. */
struct held {
	struct ufault_completion *c;
	void *buf;
	uint64_t off;
	size_t len;
};
static struct held held[PAGES];
static unsigned int nr_held;
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;

static int held_fill(void *arg, uint64_t off, void *buf, size_t len, struct ufault_completion *c)
{
	(void)arg;
	pthread_mutex_lock(&held_lock);
	held[nr_held++] = (struct held){.c = c, .buf = buf, .off = off, .len = len};
	pthread_mutex_unlock(&held_lock);
	return 0;
}

static void release_held(void)
{
	pthread_mutex_lock(&held_lock);
	for (unsigned int i = 0; i < nr_held; i++) {
		tu_pattern_fill(held[i].buf, held[i].len, held[i].off, 32);
		ufault_complete(held[i].c, 0);
	}
	nr_held = 0;
	pthread_mutex_unlock(&held_lock);
}

static int releasing;

/* Completes held fills until told to stop. */
static void *releaser_main(void *arg)
{
	(void)arg;
	while (__atomic_load_n(&releasing, __ATOMIC_ACQUIRE)) {
		release_held();
		usleep(500);
	}
	return NULL;
}

static void test_queue_bounded(void **state)
{
	pthread_t releaser;
	struct ufault_config cfg;
	struct ufault_source s;
	struct ufault_ctx *ctx;
	char *p;
	int ret = 0, n;

	(void)state;
	ufault_config_init(&cfg);
	cfg.lock_mode = tu_mode;
	cfg.nr_workers = 1;
	cfg.max_inflight = 2; /* one request to spare for prefetch */
	assert_int_equal(tu_ctx_create_cfg(&ctx, &cfg), 0);
	ufault_source_init(&s, UFAULT_SOURCE_ASYNC);
	s.async.fill = held_fill;
	p = ufault_mmap(ctx, NULL, PAGES * ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, &s, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	/* Each range is one page; the first takes the spare request and
	 * stays in flight, the rest queue up until the queue is full. */
	for (n = 0; n < 1000 && !ret; n++)
		ret = ufault_prefetch(ctx, p + (size_t)(n % PAGES) * ps, ps);
	assert_int_equal(ret, -EAGAIN);
	assert_true(n > 200);
	/* Complete everything from now on; the pages read right, whether a
	 * prefetch or a fault brought them. */
	__atomic_store_n(&releasing, 1, __ATOMIC_RELEASE);
	assert_int_equal(pthread_create(&releaser, NULL, releaser_main, NULL), 0);
	for (size_t pg = 0; pg < PAGES; pg++)
		if (tu_pattern_check(p + pg * ps, ps, pg * ps, 32) != -1)
			fail_msg("[%s] page %zu", ufault_lock_mode_name(tu_mode), pg);
	assert_int_equal(ufault_munmap(ctx, p, PAGES * ps), 0);
	ufault_ctx_destroy(ctx); /* waits for the fills in flight */
	__atomic_store_n(&releasing, 0, __ATOMIC_RELEASE);
	assert_int_equal(pthread_join(releaser, NULL), 0);
}

static void test_bad_args(void **state)
{
	struct ufault_ctx *ctx = ((struct tu_fx *)*state)->ctx;
	char c;

	assert_int_equal(ufault_prefetch(NULL, &c, 1), -EINVAL);
	assert_int_equal(ufault_prefetch(ctx, &c, 0), -EINVAL);
	assert_int_equal(ufault_prefetch(ctx, (void *)(uintptr_t)(UINT64_MAX - 10), 100), -EINVAL);
	assert_int_equal(ufault_prefetch(ctx, (void *)(uintptr_t)(UINT64_MAX - 10), 5), -EINVAL);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    tu_fx_test(test_prefetch_fills),
	    tu_watchdog_test(test_queue_bounded),
	    tu_fx_test(test_bad_args),
	};

	ps = tu_page_size();
	return tu_run_every_mode("prefetch", tests, sizeof(tests) / sizeof(tests[0]), argc, argv)
		   ? 1
		   : 0;
}
