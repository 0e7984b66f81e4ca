/* SPDX-License-Identifier: MIT */
/*
 * test_release.c - a source is released only when no fill can touch it.
 *
 * A source's release hook (ufault_release_fn) tells the caller it may free
 * the callback's argument or the snapshot buffer. So it must run exactly
 * once per successful registration, only after the last region piece made
 * from it is gone (unregistered, unmapped, replaced; a region split by a
 * partial ufault_munmap keeps its source until every piece is gone), and
 * never while a fill that looked the region up is still running. It never
 * runs for a failed registration, runs for every pending source before
 * ufault_ctx_destroy() returns, and never runs in a forked child.
 *
 * The hook records whether a fill of its source was running when it ran
 * (the slow fill blocks on a gate the test opens), and the snapshot hooks
 * free their buffer, so a late read by the library is a use-after-free the
 * sanitizer builds catch. Waiting for a hook to run is a bounded poll; the
 * process watchdog bounds everything else. Every test runs in every lock
 * mode.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/wait.h>

#include <linux/userfaultfd.h>

#include <cmocka.h>

#include "../modes.h"

#define RW (PROT_READ | PROT_WRITE)
#define PA (MAP_PRIVATE | MAP_ANONYMOUS)

static size_t ps;

/* ------------------------------------------------------------------ */
/* Hook bookkeeping                                                     */
/* ------------------------------------------------------------------ */

struct rel {
	unsigned int calls;	    /* atomic: times the hook ran */
	unsigned int fills_running; /* atomic: gated fills of this source inside the callback */
	unsigned int early;	    /* atomic: the hook ran while one was */
	void *free_me;		    /* snapshot buffer the hook frees */
};

static void rel_hook(void *arg)
{
	struct rel *r = arg;

	if (__atomic_load_n(&r->fills_running, __ATOMIC_ACQUIRE))
		__atomic_store_n(&r->early, 1, __ATOMIC_RELEASE);
	free(r->free_me);
	r->free_me = NULL;
	__atomic_fetch_add(&r->calls, 1, __ATOMIC_ACQ_REL);
}

static unsigned int calls(struct rel *r)
{
	return __atomic_load_n(&r->calls, __ATOMIC_ACQUIRE);
}

/* The hook has not run (yet). */
static void assert_no_release(struct rel *r, const char *when)
{
	if (calls(r))
		fail_msg("[%s] the release hook ran %u time(s) %s", ufault_lock_mode_name(tu_mode),
			 calls(r), when);
}

/*
 * Poll until the hook ran @want times in all, then check it ran exactly
 * that often. The bound only keeps a missing call from stalling the run.
 */
static void wait_calls(struct rel *r, unsigned int want, const char *after)
{
	uint64_t deadline = tu_now_ns() + 10ull * tu_slowdown() * 1000000000ull;

	while (calls(r) < want && tu_now_ns() < deadline)
		usleep(1000);
	if (calls(r) != want)
		fail_msg("[%s] after %s the release hook ran %u time(s), expected %u",
			 ufault_lock_mode_name(tu_mode), after, calls(r), want);
	if (__atomic_load_n(&r->early, __ATOMIC_ACQUIRE))
		fail_msg("[%s] the release hook ran while a fill of its source was running",
			 ufault_lock_mode_name(tu_mode));
}

/* A pattern callback source with @r's hook. */
static struct ufault_source cb_src(uint64_t seed, struct rel *r)
{
	struct ufault_source s = tu_pattern_source(0, seed);

	s.release = rel_hook;
	s.release_arg = r;
	return s;
}

/* A snapshot source of @len pattern bytes in a malloc'd buffer that the
 * hook frees. */
static struct ufault_source snap_src(uint64_t seed, size_t len, struct rel *r)
{
	struct ufault_source s;
	void *buf = malloc(len);

	assert_non_null(buf);
	tu_pattern_fill(buf, len, 0, seed);
	r->free_me = buf;
	ufault_source_init(&s, UFAULT_SOURCE_SNAPSHOT);
	s.snapshot.data = buf;
	s.snapshot.len = len;
	s.release = rel_hook;
	s.release_arg = r;
	return s;
}

static struct ufault_ctx *new_ctx(unsigned int workers)
{
	struct ufault_ctx *ctx = NULL;

	assert_int_equal(tu_ctx_create(&ctx, tu_mode, workers, 0), 0);
	return ctx;
}

/* Page @pg of @base reads the pattern at source offset @off. */
static void check_page(const char *base, size_t pg, uint64_t off, uint64_t seed)
{
	const char *p = base + pg * ps;
	long bad = tu_pattern_check(p, ps, off, seed);

	if (bad >= 0)
		fail_msg("[%s] page %zu byte %ld is 0x%02x, expected 0x%02x",
			 ufault_lock_mode_name(tu_mode), pg, bad, (unsigned char)p[bad],
			 tu_pattern(off + (uint64_t)bad, seed));
}

/* ------------------------------------------------------------------ */

/* One call per registration, after its unregister; the same source
 * registered twice is two registrations. */
static void test_release_after_unregister(void **state)
{
	struct ufault_ctx *ctx = new_ctx(2);
	struct rel r = {0};
	struct ufault_source s = cb_src(41, &r);
	struct ufault_region *h1 = NULL, *h2 = NULL;
	char *p = tu_map_anon(8 * ps, 0);

	(void)state;
	assert_int_equal(ufault_region_register(ctx, p, 4 * ps, &s, 0, &h1), 0);
	assert_int_equal(ufault_region_register(ctx, p + 4 * ps, 4 * ps, &s, 0, &h2), 0);
	check_page(p, 0, 0, 41);
	check_page(p, 4, 0, 41);
	assert_no_release(&r, "while both regions were registered");

	assert_int_equal(ufault_region_unregister(ctx, h1), 0);
	wait_calls(&r, 1, "the first unregister");
	check_page(p, 5, ps, 41); /* the second region still serves */
	assert_int_equal(calls(&r), 1);

	assert_int_equal(ufault_region_unregister(ctx, h2), 0);
	wait_calls(&r, 2, "the second unregister");
	ufault_ctx_destroy(ctx);
	assert_int_equal(calls(&r), 2);
	tu_unmap(p, 8 * ps);
}

/* A region split by a partial ufault_munmap (and a piece moved by
 * ufault_mremap) keeps its source until every piece is gone. */
static void test_release_split_by_munmap(void **state)
{
	struct ufault_ctx *ctx = new_ctx(2);
	struct rel r = {0};
	struct ufault_source s = cb_src(42, &r);
	bool can_move = ufault_ctx_features(ctx) & UFFD_FEATURE_EVENT_REMAP;
	char *res = NULL, *right;
	char *p;

	(void)state;
	p = ufault_mmap(ctx, NULL, 8 * ps, RW, PA, &s, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	check_page(p, 0, 0, 42);
	check_page(p, 7, 7 * ps, 42);

	/* [0,2) and [4,8) are left. */
	assert_int_equal(ufault_munmap(ctx, p + 2 * ps, 2 * ps), 0);
	check_page(p, 1, ps, 42);
	check_page(p, 5, 5 * ps, 42);
	assert_no_release(&r, "while two pieces were left");

	right = p + 4 * ps;
	if (can_move) {
		/* The right piece moves; it is still the same source. */
		res = mmap(NULL, 8 * ps, PROT_NONE, PA | MAP_NORESERVE, -1, 0);
		assert_ptr_not_equal(res, MAP_FAILED);
		right = ufault_mremap(ctx, p + 4 * ps, 4 * ps, 4 * ps,
				      MREMAP_MAYMOVE | MREMAP_FIXED, res + 2 * ps);
		assert_ptr_equal(right, res + 2 * ps);
		check_page(right, 2, 6 * ps, 42);
		assert_no_release(&r, "after a piece was moved");
	}

	assert_int_equal(ufault_munmap(ctx, p, 2 * ps), 0);
	check_page(right, 3, 7 * ps, 42);
	assert_no_release(&r, "while one piece was left");

	assert_int_equal(ufault_munmap(ctx, right, 4 * ps), 0);
	wait_calls(&r, 1, "the last piece was unmapped");
	ufault_ctx_destroy(ctx);
	assert_int_equal(calls(&r), 1);
	if (res)
		munmap(res, 8 * ps);
}

/* MAP_FIXED over a region replaces its source: the old one is released,
 * the new one only when its own region goes. */
static void test_release_map_fixed_replace(void **state)
{
	struct ufault_ctx *ctx = new_ctx(2);
	struct rel r1 = {0}, r2 = {0};
	struct ufault_source s1 = cb_src(43, &r1), s2 = cb_src(44, &r2);
	char *p, *q;

	(void)state;
	p = ufault_mmap(ctx, NULL, 8 * ps, RW, PA, &s1, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	check_page(p, 0, 0, 43);
	q = ufault_mmap(ctx, p, 8 * ps, RW, PA | MAP_FIXED, &s2, 0);
	assert_ptr_equal(q, p);
	wait_calls(&r1, 1, "MAP_FIXED replaced the region");
	for (size_t pg = 0; pg < 8; pg++)
		check_page(q, pg, pg * ps, 44);
	assert_no_release(&r2, "while its region was mapped");
	assert_int_equal(ufault_munmap(ctx, q, 8 * ps), 0);
	wait_calls(&r2, 1, "ufault_munmap");
	ufault_ctx_destroy(ctx);
	assert_int_equal(calls(&r1), 1);
	assert_int_equal(calls(&r2), 1);
}

/* ------------------------------------------------------------------ */
/* Never while a fill that looked the region up is running              */
/* ------------------------------------------------------------------ */

struct gate {
	struct tu_gate gate;
	struct rel *r;
};

static int gated_fill(void *arg, uint64_t offset, void *buf, size_t len)
{
	struct gate *g = arg;

	__atomic_fetch_add(&g->r->fills_running, 1, __ATOMIC_ACQ_REL);
	tu_gate_fill_cb(&g->gate, offset, buf, len);
	__atomic_fetch_sub(&g->r->fills_running, 1, __ATOMIC_ACQ_REL);
	return 0;
}

struct unreg {
	struct ufault_ctx *ctx;
	struct ufault_region *h;
	int rc;
	unsigned int done; /* atomic */
};

static void *unreg_main(void *arg)
{
	struct unreg *u = arg;

	u->rc = ufault_region_unregister(u->ctx, u->h);
	__atomic_store_n(&u->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void *touch_main(void *arg)
{
	(void)tu_read_byte(arg);
	return NULL;
}

static void test_release_waits_for_fill(void **state)
{
	struct ufault_ctx *ctx = new_ctx(2);
	struct rel r = {0};
	struct gate g = {.gate = TU_GATE_INIT(45), .r = &r};
	struct ufault_source s;
	struct unreg u = {.ctx = ctx};
	pthread_t toucher, unregisterer;
	char *p = tu_map_anon(4 * ps, 0);

	(void)state;
	ufault_source_init(&s, UFAULT_SOURCE_CALLBACK);
	s.callback.fill = gated_fill;
	s.callback.arg = &g;
	s.release = rel_hook;
	s.release_arg = &r;
	assert_int_equal(ufault_region_register(ctx, p, 4 * ps, &s, 0, &u.h), 0);

	/* A thread faults; the fill for it starts and blocks. */
	assert_int_equal(pthread_create(&toucher, NULL, touch_main, p), 0);
	tu_gate_wait_entered(&g.gate);

	/* Unregister from another thread. */
	assert_int_equal(pthread_create(&unregisterer, NULL, unreg_main, &u), 0);
	if (tu_mode == UFAULT_LOCK_SPEC) {
		/* The fill holds no lock: unregister returns while it runs. */
		struct ufault_source scratch_src = tu_pattern_source(0, 46);
		char *scratch = tu_map_anon(4 * ps, 0);

		assert_int_equal(pthread_join(unregisterer, NULL), 0);
		assert_int_equal(u.rc, 0);
		assert_no_release(&r, "while a fill that looked the region up was running");

		/*
		 * Let the library make progress elsewhere: the other worker
		 * serves faults, a proxy runs (and with them whatever deferred
		 * work the library does). Still no release.
		 */
		assert_int_equal(
		    ufault_region_register(ctx, scratch, 4 * ps, &scratch_src, 0, NULL), 0);
		for (size_t pg = 0; pg < 4; pg++)
			check_page(scratch, pg, pg * ps, 46);
		assert_int_equal(ufault_munmap(ctx, scratch, 4 * ps), 0);
		assert_no_release(&r, "while a fill that looked the region up was running");
	} else {
		/* The fill holds the read side: unregister waits for it. */
		assert_no_release(&r, "while a fill that looked the region up was running");
	}

	tu_gate_open(&g.gate);
	if (tu_mode != UFAULT_LOCK_SPEC) {
		assert_int_equal(pthread_join(unregisterer, NULL), 0);
		assert_int_equal(u.rc, 0);
	}
	assert_int_equal(pthread_join(toucher, NULL), 0);
	/* Runs once the fill returned (wait_calls checks it was not early). */
	wait_calls(&r, 1, "the fill returned");
	ufault_ctx_destroy(ctx);
	assert_int_equal(calls(&r), 1);
	tu_unmap(p, 4 * ps);
}

/* ------------------------------------------------------------------ */
/* Failed registrations, destroy, fork                                  */
/* ------------------------------------------------------------------ */

static void test_release_not_on_failure(void **state)
{
	struct ufault_ctx *ctx = new_ctx(2);
	struct rel r = {0}, r_live = {0};
	struct ufault_source s = cb_src(47, &r), live = cb_src(48, &r_live);
	char *p = tu_map_anon(8 * ps, 0);
	void *m;

	(void)state;
	assert_int_equal(ufault_region_register(ctx, p + 1, 4 * ps, &s, 0, NULL), -EINVAL);
	assert_int_equal(ufault_region_register(ctx, p, 0, &s, 0, NULL), -EINVAL);
	assert_int_equal(ufault_region_register(ctx, p, ps + 1, &s, 0, NULL), -EINVAL);
	assert_int_equal(ufault_region_register(ctx, p, 4 * ps, &s, 1u << 5, NULL), -EINVAL);
	assert_int_equal(
	    ufault_region_register(ctx, p, 4 * ps, &s, UFAULT_REGION_PAGE_SHIFT(3), NULL), -EINVAL);
	/* Overlapping a live region. */
	assert_int_equal(ufault_region_register(ctx, p, 4 * ps, &live, 0, NULL), 0);
	assert_int_equal(ufault_region_register(ctx, p + 2 * ps, 4 * ps, &s, 0, NULL), -EEXIST);
	/* The same through ufault_mmap. */
	m = ufault_mmap(ctx, NULL, 4 * ps, RW, MAP_SHARED | MAP_ANONYMOUS, &s, 0);
	assert_ptr_equal(m, MAP_FAILED);
	m = ufault_mmap(ctx, p, 4 * ps, RW, PA | MAP_FIXED_NOREPLACE, &s, 0);
	assert_ptr_equal(m, MAP_FAILED);
	m = ufault_mmap(ctx, NULL, 4 * ps, RW, PA, &s, UFAULT_REGION_PAGE_SHIFT(3));
	assert_ptr_equal(m, MAP_FAILED);
	check_page(p, 0, 0, 48);
	assert_no_release(&r, "for failed registrations");

	ufault_ctx_destroy(ctx);
	assert_no_release(&r, "for failed registrations");
	assert_int_equal(calls(&r_live), 1);
	tu_unmap(p, 8 * ps);
}

/* Destroy calls every pending hook before it returns: regions still
 * registered, and one unregistered just before. */
static void test_release_on_destroy(void **state)
{
	struct ufault_ctx *ctx = new_ctx(2);
	struct rel ra = {0}, rb = {0}, rc = {0};
	struct ufault_source sa = cb_src(49, &ra), sb = snap_src(50, 4 * ps, &rb),
			     sc = cb_src(51, &rc);
	struct ufault_region *hc = NULL;
	char *p = tu_map_anon(12 * ps, 0);

	(void)state;
	assert_int_equal(ufault_region_register(ctx, p, 4 * ps, &sa, 0, NULL), 0);
	assert_int_equal(ufault_region_register(ctx, p + 4 * ps, 4 * ps, &sb, 0, NULL), 0);
	assert_int_equal(ufault_region_register(ctx, p + 8 * ps, 4 * ps, &sc, 0, &hc), 0);
	check_page(p, 0, 0, 49);
	check_page(p, 4, 0, 50);
	check_page(p, 8, 0, 51);
	assert_int_equal(ufault_region_unregister(ctx, hc), 0);
	ufault_ctx_destroy(ctx);
	/* No waiting: destroy has returned. */
	assert_int_equal(calls(&ra), 1);
	assert_int_equal(calls(&rb), 1);
	assert_int_equal(calls(&rc), 1);
	assert_null(rb.free_me);
	tu_unmap(p, 12 * ps);
}

/* A snapshot source, split, read after the split (a buffer freed early is
 * a use-after-free under ASan), released after the last piece. */
static void test_release_snapshot(void **state)
{
	struct ufault_ctx *ctx = new_ctx(2);
	struct rel r = {0};
	struct ufault_source s = snap_src(52, 8 * ps, &r);
	char *p;

	(void)state;
	p = ufault_mmap(ctx, NULL, 8 * ps, PROT_READ, PA, &s, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	check_page(p, 2, 2 * ps, 52);
	assert_int_equal(ufault_munmap(ctx, p, 2 * ps), 0);
	assert_no_release(&r, "while a piece was left");
	for (size_t pg = 3; pg < 8; pg++)
		check_page(p, pg, pg * ps, 52);
	assert_int_equal(ufault_munmap(ctx, p + 2 * ps, 6 * ps), 0);
	wait_calls(&r, 1, "the last piece was unmapped");
	assert_null(r.free_me);
	ufault_ctx_destroy(ctx);
	assert_int_equal(calls(&r), 1);
}

/* A child's ufault_ctx_destroy() runs no hook (the counters live in shared
 * memory, so the parent would see a call made in the child). */
static void test_release_not_in_child(void **state)
{
	struct ufault_ctx *ctx = new_ctx(2);
	struct rel *r = mmap(NULL, sizeof(*r), RW, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct ufault_source s;
	struct ufault_region *h = NULL;
	char *p = tu_map_anon(4 * ps, 0);
	int status;
	pid_t pid;

	(void)state;
	assert_ptr_not_equal(r, MAP_FAILED);
	memset(r, 0, sizeof(*r));
	s = cb_src(53, r);
	assert_int_equal(ufault_region_register(ctx, p, 4 * ps, &s, 0, &h), 0);
	check_page(p, 0, 0, 53);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		tu_watchdog(10);
		ufault_ctx_destroy(ctx);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_no_release(r, "in a child's ufault_ctx_destroy()");
	check_page(p, 1, ps, 53);
	assert_int_equal(ufault_region_unregister(ctx, h), 0);
	wait_calls(r, 1, "the parent's unregister");
	ufault_ctx_destroy(ctx);
	assert_int_equal(calls(r), 1);
	munmap(r, sizeof(*r));
	tu_unmap(p, 4 * ps);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    tu_watchdog_test(test_release_after_unregister),
	    tu_watchdog_test(test_release_split_by_munmap),
	    tu_watchdog_test(test_release_map_fixed_replace),
	    tu_watchdog_test(test_release_waits_for_fill),
	    tu_watchdog_test(test_release_not_on_failure),
	    tu_watchdog_test(test_release_on_destroy),
	    tu_watchdog_test(test_release_snapshot),
	    tu_watchdog_test(test_release_not_in_child),
	};
	int failed;

	ps = tu_page_size();
	tu_modes_cfg.test_watchdog = 60;
	/* An optional argument runs only the tests whose name matches it. */
	failed = tu_run_every_mode("release", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
	return failed ? 1 : 0;
}
