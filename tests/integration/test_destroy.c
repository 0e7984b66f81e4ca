/* SPDX-License-Identifier: MIT */
/*
 * test_destroy.c - shutdown never strands a thread. Threads parked in
 * faults whose fills are slow or blocked when ufault_ctx_destroy() runs must
 * all return, each page reading either its source bytes or zeros (ordinary
 * anonymous memory once unregistered), never a mix within a system page.
 * Also: destroy with no regions, with regions never touched, and touching
 * memory after ufault_region_unregister() or destroy gives zeros without
 * hanging; installed pages keep their bytes after both.
 *
 * Nothing here is timed: sleeps only make the interesting interleavings
 * likely; hangs are caught by timed joins and the watchdog.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "../testutil.h"

#define SEED 0xde57
#define K 4

/* ------------------------------------------------------------------ */
/* A callback source that blocks until released                         */
/* ------------------------------------------------------------------ */

struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int open;
	unsigned int sleep_ms; /* if non-zero: sleep instead of waiting */
	unsigned int entered;
	unsigned int returned;
};

static int gated_fill(void *arg, uint64_t offset, void *buf, size_t len)
{
	struct gate *g = arg;
	struct timespec dl;

	pthread_mutex_lock(&g->lock);
	g->entered++;
	pthread_cond_broadcast(&g->cond);
	if (g->sleep_ms) {
		pthread_mutex_unlock(&g->lock);
		usleep(g->sleep_ms * 1000);
		pthread_mutex_lock(&g->lock);
	} else {
		/* Bounded: a library that waits for us forever still ends. */
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += 20 * tu_slowdown();
		while (!g->open)
			if (pthread_cond_timedwait(&g->cond, &g->lock, &dl))
				break;
	}
	g->returned++;
	pthread_mutex_unlock(&g->lock);
	tu_pattern_fill(buf, len, offset, SEED);
	return 0;
}

static void gate_init(struct gate *g, unsigned int sleep_ms)
{
	memset(g, 0, sizeof(*g));
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
	g->sleep_ms = sleep_ms;
}

static void gate_open(struct gate *g)
{
	pthread_mutex_lock(&g->lock);
	g->open = 1;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

/* Wait until at least @n fills started; 0 on success, -1 after 10 s. */
static int gate_wait_entered(struct gate *g, unsigned int n)
{
	struct timespec dl;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 10 * tu_slowdown();
	pthread_mutex_lock(&g->lock);
	while (g->entered < n && !rc)
		rc = pthread_cond_timedwait(&g->cond, &g->lock, &dl);
	rc = g->entered >= n ? 0 : -1;
	pthread_mutex_unlock(&g->lock);
	return rc;
}

static void gate_destroy(struct gate *g)
{
	pthread_mutex_destroy(&g->lock);
	pthread_cond_destroy(&g->cond);
}

/* ------------------------------------------------------------------ */
/* Helpers                                                              */
/* ------------------------------------------------------------------ */

/* Join with a deadline; fails the test instead of hanging. */
static void join_within(pthread_t t, unsigned int secs, const char *what)
{
	struct timespec dl;
	int rc;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += secs * tu_slowdown();
	rc = pthread_timedjoin_np(t, NULL, &dl);
	if (rc)
		fprintf(stderr, "%s did not return: %s\n", what, strerror(rc));
	assert_int_equal(rc, 0);
}

/* Source bytes or zeros, consistently, over one system page. */
static int page_is_source_or_zero(const char *p, uint64_t off)
{
	size_t ps = tu_page_size();

	return tu_pattern_check(p, ps, off, SEED) == -1 || tu_zero_check(p, ps) == -1;
}

struct parked {
	char *page;
	uint64_t off;
	int ok;
	pthread_t t;
};

static void *park_thread(void *arg)
{
	struct parked *pk = arg;

	(void)tu_read_byte(pk->page + 17);
	pk->ok = page_is_source_or_zero(pk->page, pk->off);
	return NULL;
}

static void *destroy_thread(void *arg)
{
	ufault_ctx_destroy(arg);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Destroy while threads are parked                                     */
/* ------------------------------------------------------------------ */

/*
 * @sleep_ms == 0: fills block until the main thread opens the gate after
 * starting destroy (destroy must wait for running fills, so it cannot
 * return first). Otherwise fills sleep that long.
 */
static void parked_destroy(enum ufault_lock_mode mode, unsigned int workers, unsigned int shift,
			   unsigned int sleep_ms)
{
	size_t ps = tu_page_size();
	size_t rp = shift ? (size_t)1 << shift : ps;
	size_t len = 2 * K * rp;
	struct ufault_ctx *ctx = NULL;
	struct ufault_source src;
	struct parked pk[K];
	struct gate g;
	pthread_t dt;
	char *a;

	gate_init(&g, sleep_ms);
	assert_int_equal(tu_ctx_create(&ctx, mode, workers, 1), 0);
	a = tu_map_anon(len, rp);
	ufault_source_init(&src, UFAULT_SOURCE_CALLBACK);
	src.offset = 3 * rp;
	src.callback.fill = gated_fill;
	src.callback.arg = &g;
	assert_int_equal(
	    ufault_region_register(ctx, a, len, &src, UFAULT_REGION_PAGE_SHIFT(shift), NULL), 0);

	/* K threads, each on its own region page (every other one). */
	for (unsigned int i = 0; i < K; i++) {
		pk[i].page = a + 2 * i * rp + (rp - ps);
		pk[i].off = src.offset + 2 * i * rp + (rp - ps);
		pk[i].ok = 0;
		assert_int_equal(pthread_create(&pk[i].t, NULL, park_thread, &pk[i]), 0);
	}
	/* At least one fill is running; the others are parked or queued. */
	assert_int_equal(gate_wait_entered(&g, 1), 0);
	usleep(20000);

	assert_int_equal(pthread_create(&dt, NULL, destroy_thread, ctx), 0);
	if (!sleep_ms) {
		usleep(50000); /* let destroy reach its wait, if it has one */
		gate_open(&g);
	}
	join_within(dt, 20, "ufault_ctx_destroy");
	for (unsigned int i = 0; i < K; i++) {
		join_within(pk[i].t, 20, "a parked thread");
		if (!pk[i].ok)
			fprintf(stderr,
				"mode %s: page %u neither source nor "
				"zeros\n",
				ufault_lock_mode_name(mode), i);
		assert_true(pk[i].ok);
	}
	/* Every fill that started has returned: destroy waited for them. */
	pthread_mutex_lock(&g.lock);
	assert_int_equal(g.entered, g.returned);
	pthread_mutex_unlock(&g.lock);

	/* Untouched pages: ordinary memory now, zeros, no hang. */
	for (unsigned int i = 0; i < K; i++)
		assert_int_equal(tu_zero_check(a + (2 * i + 1) * rp, rp), -1);
	tu_unmap(a, len);
	gate_destroy(&g);
}

static void test_destroy_parked_blocked(void **state)
{
	(void)state;
	for (unsigned int m = 0; m < TU_NR_LOCK_MODES; m++) {
		parked_destroy(tu_lock_mode(m), 1, 0, 0);
		parked_destroy(tu_lock_mode(m), 2, 16, 0);
	}
}

static void test_destroy_parked_sleeping(void **state)
{
	(void)state;
	for (unsigned int m = 0; m < TU_NR_LOCK_MODES; m++) {
		parked_destroy(tu_lock_mode(m), 2, 0, 200);
		parked_destroy(tu_lock_mode(m), 1, 16, 100);
	}
}

/* ------------------------------------------------------------------ */
/* Unregister while threads are parked                                  */
/* ------------------------------------------------------------------ */

struct unreg_arg {
	struct ufault_ctx *ctx;
	struct ufault_region *r;
	int rc;
};

static void *unregister_thread(void *arg)
{
	struct unreg_arg *u = arg;

	u->rc = ufault_region_unregister(u->ctx, u->r);
	return NULL;
}

static void test_unregister_parked(void **state)
{
	size_t ps = tu_page_size(), len = 2 * K * ps;
	struct ufault_source src;
	struct parked pk[K];
	struct unreg_arg u;
	struct gate g;
	pthread_t ut;
	char *a;

	(void)state;
	for (unsigned int m = 0; m < TU_NR_LOCK_MODES; m++) {
		gate_init(&g, 0);
		memset(&u, 0, sizeof(u));
		assert_int_equal(tu_ctx_create(&u.ctx, tu_lock_mode(m), 2, 1), 0);
		a = tu_map_anon(len, 0);
		ufault_source_init(&src, UFAULT_SOURCE_CALLBACK);
		src.callback.fill = gated_fill;
		src.callback.arg = &g;
		assert_int_equal(ufault_region_register(u.ctx, a, len, &src, 0, &u.r), 0);
		for (unsigned int i = 0; i < K; i++) {
			pk[i].page = a + 2 * i * ps;
			pk[i].off = 2 * i * ps;
			assert_int_equal(pthread_create(&pk[i].t, NULL, park_thread, &pk[i]), 0);
		}
		assert_int_equal(gate_wait_entered(&g, 1), 0);
		usleep(20000);
		assert_int_equal(pthread_create(&ut, NULL, unregister_thread, &u), 0);
		usleep(50000);
		gate_open(&g);
		join_within(ut, 20, "ufault_region_unregister");
		assert_int_equal(u.rc, 0);
		for (unsigned int i = 0; i < K; i++) {
			join_within(pk[i].t, 20, "a parked thread");
			assert_true(pk[i].ok);
		}
		/* The context still works after that. */
		{
			char *b = tu_map_anon(len, 0);

			src.type = UFAULT_SOURCE_CALLBACK;
			src.callback.fill = tu_pattern_fill_cb;
			src.callback.arg = (void *)(uintptr_t)SEED;
			assert_int_equal(ufault_region_register(u.ctx, b, len, &src, 0, NULL), 0);
			assert_int_equal(tu_pattern_check(b, len, 0, SEED), -1);
			ufault_ctx_destroy(u.ctx);
			tu_unmap(b, len);
		}
		tu_unmap(a, len);
		gate_destroy(&g);
	}
}

/* ------------------------------------------------------------------ */
/* Simple lifecycles                                                    */
/* ------------------------------------------------------------------ */

static void test_destroy_empty(void **state)
{
	struct ufault_ctx *ctx = NULL;

	(void)state;
	for (unsigned int m = 0; m < TU_NR_LOCK_MODES; m++)
		for (unsigned int w = 1; w <= 3; w++)
			for (unsigned int i = 0; i < 5; i++) {
				assert_int_equal(tu_ctx_create(&ctx, tu_lock_mode(m), w, w), 0);
				ufault_ctx_destroy(ctx);
			}
	/* Several live contexts at once, destroyed out of order. */
	{
		struct ufault_ctx *c[4];

		for (unsigned int i = 0; i < 4; i++)
			assert_int_equal(tu_ctx_create(&c[i], tu_lock_mode(i), 1, 1), 0);
		ufault_ctx_destroy(c[2]);
		ufault_ctx_destroy(c[0]);
		ufault_ctx_destroy(c[3]);
		ufault_ctx_destroy(c[1]);
	}
}

static void test_destroy_untouched(void **state)
{
	size_t ps = tu_page_size(), big = 1 << 16, len = 4 * big;
	unsigned char *snap = malloc(len);
	struct ufault_ctx *ctx = NULL;
	struct ufault_source src;
	char *a[4];

	(void)state;
	assert_non_null(snap);
	tu_pattern_fill(snap, len, 0, SEED);
	for (unsigned int m = 0; m < TU_NR_LOCK_MODES; m++) {
		assert_int_equal(tu_ctx_create(&ctx, tu_lock_mode(m), 2, 2), 0);
		for (unsigned int i = 0; i < 4; i++) {
			a[i] = tu_map_anon(len, big);
			switch (i) {
			case 0:
				ufault_source_init(&src, UFAULT_SOURCE_ZERO);
				break;
			case 1:
				ufault_source_init(&src, UFAULT_SOURCE_SNAPSHOT);
				src.snapshot.data = snap;
				src.snapshot.len = len;
				break;
			default:
				ufault_source_init(&src, UFAULT_SOURCE_CALLBACK);
				src.callback.fill = tu_pattern_fill_cb;
				src.callback.arg = (void *)(uintptr_t)SEED;
				break;
			}
			assert_int_equal(
			    ufault_region_register(ctx, a[i], len, &src,
						   i == 3 ? UFAULT_REGION_PAGE_SHIFT(16) : 0, NULL),
			    0);
		}
		/* One page of region 2 touched: it must survive destroy. */
		assert_int_equal(tu_pattern_check(a[2] + ps, ps, ps, SEED), -1);
		ufault_ctx_destroy(ctx);
		assert_int_equal(tu_pattern_check(a[2] + ps, ps, ps, SEED), -1);
		for (unsigned int i = 0; i < 4; i++) {
			for (size_t d = 0; d < len; d += ps)
				if (i != 2 || d != ps)
					assert_int_equal(tu_zero_check(a[i] + d, ps), -1);
			tu_unmap(a[i], len);
		}
	}
	free(snap);
}

static void test_unregister_then_touch(void **state)
{
	size_t ps = tu_page_size(), len = 16 * ps;
	struct ufault_ctx *ctx = NULL;
	struct ufault_region *r = NULL;
	struct ufault_source src;
	char *a;

	(void)state;
	ufault_source_init(&src, UFAULT_SOURCE_CALLBACK);
	src.callback.fill = tu_pattern_fill_cb;
	src.callback.arg = (void *)(uintptr_t)SEED;
	for (unsigned int m = 0; m < TU_NR_LOCK_MODES; m++) {
		assert_int_equal(tu_ctx_create(&ctx, tu_lock_mode(m), 1, 1), 0);
		a = tu_map_anon(len, 0);
		assert_int_equal(ufault_region_register(ctx, a, len, &src, 0, &r), 0);
		for (size_t d = 0; d < len; d += 2 * ps)
			assert_int_equal(tu_pattern_check(a + d, ps, d, SEED), -1);
		assert_int_equal(ufault_region_unregister(ctx, r), 0);
		for (size_t d = 0; d < len; d += 2 * ps) {
			assert_int_equal(tu_pattern_check(a + d, ps, d, SEED), -1);
			assert_int_equal(tu_zero_check(a + d + ps, ps), -1);
		}
		/* Writes work as on any anonymous memory. */
		memset(a, 0x5a, len);
		assert_int_equal(tu_read_byte(a + len - 1), 0x5a);
		ufault_ctx_destroy(ctx);
		tu_unmap(a, len);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_destroy_empty),
	    cmocka_unit_test(test_destroy_untouched),
	    cmocka_unit_test(test_unregister_then_touch),
	    cmocka_unit_test(test_destroy_parked_blocked),
	    cmocka_unit_test(test_destroy_parked_sleeping),
	    cmocka_unit_test(test_unregister_parked),
	};

	unsetenv("UFAULT_LOCK_MODE");
	tu_watchdog(50);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
