/* SPDX-License-Identifier: MIT */
/*
 * test_sources.c - every source type serves the right bytes under concurrent
 * faults. NR_THREADS threads touch NR_REGIONS adjacent regions (system pages
 * and 64 KiB region pages; zero, snapshot covering the region, snapshot
 * ending mid-region, callback; non-zero source offsets), each thread its own
 * interleaved share of the system pages, checking each page it touched; then
 * the main thread checks every byte. Runs in every lock mode with
 * (workers, uffds) = (1, 1), (3, 1), (3, 3).
 *
 * Stats: every system page of every region is touched, nothing was
 * populated before registration and no proxy runs, so the kernel installs
 * each system page exactly once: pages_installed must equal the total
 * number of system pages, whatever the EEXIST races (a losing install
 * installs nothing) or the region page size (one 64 KiB fault installs 16
 * pages). faults is at least 1 and at most the number of touches.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "../testutil.h"

#define NR_THREADS 4
#define NR_REGIONS 8
#define BIG_SHIFT 16

enum kind { K_ZERO, K_SNAP_FULL, K_SNAP_SHORT, K_CALLBACK, K_NR };

struct reg {
	enum kind kind;
	unsigned int shift; /* region page shift, 0 = system page */
	char *addr;
	size_t len;
	uint64_t offset; /* source offset */
	uint64_t seed;
	unsigned char *snap; /* snapshot buffer (malloc, not registered) */
	size_t snap_len;
	struct ufault_region *r;
};

struct run {
	struct reg regs[NR_REGIONS];
	char *base;
	size_t total;
	size_t sys_pages;
	unsigned long bad; /* mismatches seen by the touch threads */
	char *first_bad;
};

struct toucher {
	struct run *run;
	unsigned int id;
	pthread_t t;
};

/* What the byte at region distance @d must be. */
static unsigned char expect_byte(const struct reg *g, size_t d)
{
	uint64_t so = g->offset + d;

	switch (g->kind) {
	case K_ZERO:
		return 0;
	case K_SNAP_FULL:
	case K_SNAP_SHORT:
		return so < g->snap_len ? g->snap[so] : 0;
	default:
		return tu_pattern(so, g->seed);
	}
}

/* Index of the first wrong byte of [d, d + len) of @g, or -1. */
static long check_range(const struct reg *g, size_t d, size_t len)
{
	const volatile unsigned char *p = (const volatile unsigned char *)g->addr + d;

	if (g->kind == K_CALLBACK)
		return tu_pattern_check(g->addr + d, len, g->offset + d, g->seed);
	for (size_t i = 0; i < len; i++)
		if (p[i] != expect_byte(g, d + i))
			return (long)i;
	return -1;
}

static void *touch_thread(void *arg)
{
	struct toucher *tc = arg;
	struct run *run = tc->run;
	size_t ps = tu_page_size();
	size_t n = 0;

	/* Interleave: thread id takes global system page n when n % T == id. */
	for (unsigned int i = 0; i < NR_REGIONS; i++) {
		const struct reg *g = &run->regs[i];

		for (size_t d = 0; d < g->len; d += ps, n++) {
			if (n % NR_THREADS != tc->id)
				continue;
			/* Touch at a varying byte inside the page. */
			(void)tu_read_byte(g->addr + d + (n * 97) % ps);
			if (check_range(g, d, ps) != -1) {
				__atomic_fetch_add(&run->bad, 1, __ATOMIC_RELAXED);
				__atomic_store_n(&run->first_bad, g->addr + d, __ATOMIC_RELAXED);
			}
		}
	}
	return NULL;
}

/*
 * The fill contract: len is one whole region page, offset is the source
 * offset of a region page inside the region, buf is not registered memory.
 */
static unsigned long contract_violations;
static char *reg_lo, *reg_hi; /* registered memory of the current run */

static int checking_fill(void *arg, uint64_t offset, void *buf, size_t len)
{
	const struct reg *g = arg;
	size_t rp = g->shift ? (size_t)1 << g->shift : tu_page_size();

	if (len != rp || offset < g->offset || offset - g->offset >= g->len ||
	    (offset - g->offset) % rp || ((char *)buf < reg_hi && (char *)buf + len > reg_lo))
		__atomic_fetch_add(&contract_violations, 1, __ATOMIC_RELAXED);
	tu_pattern_fill(buf, len, offset, g->seed);
	return 0;
}

static void setup_regions(struct run *run)
{
	size_t ps = tu_page_size(), big = (size_t)1 << BIG_SHIFT;
	char *p;

	memset(run, 0, sizeof(*run));
	for (unsigned int i = 0; i < NR_REGIONS; i++) {
		struct reg *g = &run->regs[i];

		g->kind = (enum kind)(i % K_NR);
		g->shift = (i / K_NR) % 2 ? BIG_SHIFT : 0;
		/* 128 KiB, 192 KiB, ...: several region pages each. */
		g->len = (2 + i % 3) * big;
		g->seed = 1000 + i;
		/* Page-aligned source offsets, different per region. */
		g->offset = (uint64_t)(i + 1) * 3 * ps;
		if (g->shift)
			g->offset = (uint64_t)(i + 1) * big;
		run->total += g->len;
	}
	run->base = tu_map_anon(run->total, big);
	p = run->base;
	for (unsigned int i = 0; i < NR_REGIONS; i++) {
		struct reg *g = &run->regs[i];

		g->addr = p;
		p += g->len;
		if (g->kind == K_SNAP_FULL)
			g->snap_len = g->offset + g->len + ps;
		else if (g->kind == K_SNAP_SHORT)
			/* Ends mid-region and mid-page. */
			g->snap_len = g->offset + g->len / 2 + 100;
		if (g->snap_len) {
			g->snap = malloc(g->snap_len);
			assert_non_null(g->snap);
			tu_pattern_fill(g->snap, g->snap_len, 0, g->seed);
		}
	}
	run->sys_pages = run->total / ps;
	reg_lo = run->base;
	reg_hi = run->base + run->total;
}

static void teardown_regions(struct run *run)
{
	for (unsigned int i = 0; i < NR_REGIONS; i++)
		free(run->regs[i].snap);
	tu_unmap(run->base, run->total);
}

static struct ufault_source make_source(const struct reg *g)
{
	struct ufault_source s;

	switch (g->kind) {
	case K_ZERO:
		ufault_source_init(&s, UFAULT_SOURCE_ZERO);
		break;
	case K_SNAP_FULL:
	case K_SNAP_SHORT:
		ufault_source_init(&s, UFAULT_SOURCE_SNAPSHOT);
		s.snapshot.data = g->snap;
		s.snapshot.len = g->snap_len;
		break;
	default:
		ufault_source_init(&s, UFAULT_SOURCE_CALLBACK);
		s.callback.fill = checking_fill;
		s.callback.arg = (void *)g;
		break;
	}
	s.offset = g->offset;
	return s;
}

static void run_config(enum ufault_lock_mode mode, unsigned int workers, unsigned int uffds,
		       unsigned int batch)
{
	struct ufault_ctx *ctx = NULL;
	struct ufault_config cfg;
	struct ufault_stats st;
	struct toucher tc[NR_THREADS];
	struct run run;

	ufault_config_init(&cfg);
	cfg.lock_mode = mode;
	cfg.nr_workers = workers;
	cfg.nr_uffds = uffds;
	cfg.batch = batch;
	assert_int_equal(tu_ctx_create_cfg(&ctx, &cfg), 0);
	__atomic_store_n(&contract_violations, 0, __ATOMIC_RELAXED);
	assert_int_equal(ufault_ctx_nr_workers(ctx), workers);
	assert_int_equal(ufault_ctx_nr_uffds(ctx), uffds);
	setup_regions(&run);

	for (unsigned int i = 0; i < NR_REGIONS; i++) {
		struct reg *g = &run.regs[i];
		struct ufault_source s = make_source(g);
		int rc = ufault_region_register(ctx, g->addr, g->len, &s,
						g->shift ? UFAULT_REGION_PAGE_SHIFT(g->shift) : 0,
						&g->r);

		assert_int_equal(rc, 0);
	}

	for (unsigned int i = 0; i < NR_THREADS; i++) {
		tc[i].run = &run;
		tc[i].id = i;
		assert_int_equal(pthread_create(&tc[i].t, NULL, touch_thread, &tc[i]), 0);
	}
	for (unsigned int i = 0; i < NR_THREADS; i++)
		assert_int_equal(pthread_join(tc[i].t, NULL), 0);

	if (run.bad)
		fprintf(stderr, "mode %s w%u u%u: %lu bad pages, e.g. %p\n",
			ufault_lock_mode_name(mode), workers, uffds, run.bad,
			(void *)run.first_bad);
	assert_int_equal(run.bad, 0);
	assert_int_equal(__atomic_load_n(&contract_violations, __ATOMIC_RELAXED), 0);

	for (unsigned int i = 0; i < NR_REGIONS; i++) {
		const struct reg *g = &run.regs[i];
		long at = check_range(g, 0, g->len);

		if (at != -1)
			fprintf(stderr,
				"mode %s region %u kind %d: byte %ld "
				"wrong\n",
				ufault_lock_mode_name(mode), i, g->kind, at);
		assert_int_equal(at, -1);
	}

	memset(&st, 0, sizeof(st));
	st.size = sizeof(st);
	assert_int_equal(ufault_stats(ctx, &st), 0);
	/*
	 * Every touching thread has been woken, so every install ioctl
	 * has returned; but a worker may still be accounting it. Poll until
	 * pages_installed reaches the total (at most a few seconds), then
	 * require equality.
	 */
	for (uint64_t end = tu_now_ns() + 5000000000ull * tu_slowdown();
	     st.pages_installed < run.sys_pages && tu_now_ns() < end;) {
		usleep(1000);
		assert_int_equal(ufault_stats(ctx, &st), 0);
	}
	if (st.pages_installed != run.sys_pages)
		fprintf(stderr,
			"mode %s w%u u%u: pages_installed %llu, "
			"want %zu\n",
			ufault_lock_mode_name(mode), workers, uffds,
			(unsigned long long)st.pages_installed, run.sys_pages);
	assert_int_equal(st.pages_installed, run.sys_pages);
	assert_true(st.faults > 0);
	assert_true(st.faults <= run.sys_pages);
	assert_int_equal(st.source_errors, 0);
	assert_int_equal(st.poisoned, 0);
	assert_int_equal(st.zero_filled, 0);
	if (mode != UFAULT_LOCK_SPEC)
		for (unsigned int i = 0; i < UFAULT_SPEC_ABORT_NR; i++)
			assert_int_equal(st.spec_aborts[i], 0);

	/* Unregister half explicitly, let destroy take the rest. */
	for (unsigned int i = 0; i < NR_REGIONS; i += 2)
		assert_int_equal(ufault_region_unregister(ctx, run.regs[i].r), 0);
	ufault_ctx_destroy(ctx);

	/* Installed pages are ordinary memory now and keep their bytes. */
	for (unsigned int i = 0; i < NR_REGIONS; i++)
		assert_int_equal(check_range(&run.regs[i], 0, run.regs[i].len), -1);
	teardown_regions(&run);
}

static void test_sources_all_modes(void **state)
{
	/* workers, uffds, batch (0 = default) */
	static const unsigned int cfgs[][3] = {
	    {1, 1, 0},
	    {3, 1, 1},
	    {3, 3, 0},
	    {2, 2, 2},
	};

	(void)state;
	for (unsigned int m = 0; m < TU_NR_LOCK_MODES; m++)
		for (unsigned int c = 0; c < 4; c++)
			run_config(tu_lock_mode(m), cfgs[c][0], cfgs[c][1], cfgs[c][2]);
}

/*
 * Snapshot edge cases, single thread: a region entirely past the end of its
 * snapshot reads as zeros; an empty snapshot (NULL, 0) is all zeros; a
 * snapshot ending on a page boundary mid-region gives whole zero pages after.
 */
static void test_snapshot_edges(void **state)
{
	size_t ps = tu_page_size(), len = 16 * ps;
	struct ufault_ctx *ctx = NULL;
	struct ufault_source s;
	unsigned char *snap = malloc(4 * ps);
	char *a, *b, *c;

	(void)state;
	assert_non_null(snap);
	tu_pattern_fill(snap, 4 * ps, 0, 77);
	for (unsigned int m = 0; m < TU_NR_LOCK_MODES; m++) {
		assert_int_equal(tu_ctx_create(&ctx, tu_lock_mode(m), 2, 1), 0);
		a = tu_map_anon(len, 0);
		b = tu_map_anon(len, 0);
		c = tu_map_anon(len, 0);

		ufault_source_init(&s, UFAULT_SOURCE_SNAPSHOT);
		s.snapshot.data = snap;
		s.snapshot.len = 4 * ps;
		s.offset = 10 * ps; /* already past the end */
		assert_int_equal(ufault_region_register(ctx, a, len, &s, 0, NULL), 0);
		assert_int_equal(tu_zero_check(a, len), -1);

		s.snapshot.data = NULL;
		s.snapshot.len = 0;
		s.offset = 0;
		assert_int_equal(ufault_region_register(ctx, b, len, &s, 0, NULL), 0);
		assert_int_equal(tu_zero_check(b, len), -1);

		s.snapshot.data = snap;
		s.snapshot.len = 4 * ps;
		s.offset = ps;
		assert_int_equal(ufault_region_register(ctx, c, len, &s, 0, NULL), 0);
		assert_int_equal(tu_pattern_check(c, ps, ps, 77), -1);
		assert_int_equal(tu_pattern_check(c + ps, 2 * ps, 2 * ps, 77), -1);
		assert_int_equal(tu_zero_check(c + 3 * ps, len - 3 * ps), -1);

		ufault_ctx_destroy(ctx);
		tu_unmap(a, len);
		tu_unmap(b, len);
		tu_unmap(c, len);
	}
	free(snap);
}

/*
 * Writes: a write as the first touch of a page installs the source page and
 * then applies the write (the rest of the page keeps the source bytes); a
 * zero-source page written after a read fault gets a private copy.
 */
static void test_write_faults(void **state)
{
	size_t ps = tu_page_size(), len = 8 * ps;
	struct ufault_ctx *ctx = NULL;
	struct ufault_source s;
	char *a, *z;

	(void)state;
	for (unsigned int m = 0; m < TU_NR_LOCK_MODES; m++) {
		assert_int_equal(tu_ctx_create(&ctx, tu_lock_mode(m), 1, 1), 0);
		a = tu_map_anon(len, 0);
		z = tu_map_anon(len, 0);
		ufault_source_init(&s, UFAULT_SOURCE_CALLBACK);
		s.callback.fill = tu_pattern_fill_cb;
		s.callback.arg = (void *)(uintptr_t)5;
		s.offset = 4 * ps;
		assert_int_equal(ufault_region_register(ctx, a, len, &s, 0, NULL), 0);
		ufault_source_init(&s, UFAULT_SOURCE_ZERO);
		assert_int_equal(ufault_region_register(ctx, z, len, &s, 0, NULL), 0);

		for (size_t pg = 0; pg < 8; pg++) {
			char *p = a + pg * ps;

			p[7] = 0; /* pattern is never 0 */
			assert_int_equal(p[7], 0);
			assert_int_equal(tu_pattern_check(p, 7, 4 * ps + pg * ps, 5), -1);
			assert_int_equal(tu_pattern_check(p + 8, ps - 8, 4 * ps + pg * ps + 8, 5),
					 -1);

			assert_int_equal(tu_read_byte(z + pg * ps), 0);
			z[pg * ps + 1] = 9;
			assert_int_equal(z[pg * ps + 1], 9);
			assert_int_equal(z[pg * ps], 0);
		}
		ufault_ctx_destroy(ctx);
		tu_unmap(a, len);
		tu_unmap(z, len);
	}
}

/*
 * Pages populated before registration stay as they are; a read-only
 * mapping is filled by a read fault like any other.
 */
static void test_populated_and_readonly(void **state)
{
	size_t ps = tu_page_size(), len = 8 * ps;
	struct ufault_ctx *ctx = NULL;
	struct ufault_source s;
	char *a, *ro;

	(void)state;
	ufault_source_init(&s, UFAULT_SOURCE_CALLBACK);
	s.callback.fill = tu_pattern_fill_cb;
	s.callback.arg = (void *)(uintptr_t)21;
	for (unsigned int m = 0; m < TU_NR_LOCK_MODES; m++) {
		assert_int_equal(tu_ctx_create(&ctx, tu_lock_mode(m), 2, 1), 0);
		a = tu_map_anon(len, 0);
		memset(a + 2 * ps, 0x33, ps);
		assert_int_equal(ufault_region_register(ctx, a, len, &s, 0, NULL), 0);
		for (size_t pg = 0; pg < 8; pg++) {
			if (pg == 2) {
				for (size_t i = 0; i < ps; i++)
					assert_int_equal(tu_read_byte(a + 2 * ps + i), 0x33);
				continue;
			}
			assert_int_equal(tu_pattern_check(a + pg * ps, ps, pg * ps, 21), -1);
		}

		ro = tu_map_anon(len, 0);
		assert_int_equal(mprotect(ro, len, PROT_READ), 0);
		assert_int_equal(ufault_region_register(ctx, ro, len, &s, 0, NULL), 0);
		assert_int_equal(tu_pattern_check(ro, len, 0, 21), -1);

		ufault_ctx_destroy(ctx);
		tu_unmap(a, len);
		tu_unmap(ro, len);
	}
}

/*
 * Source offsets near the top of the 64-bit range must not wrap: a
 * snapshot region there is either refused (-EINVAL) or reads as zeros
 * (everything is past the end of the snapshot).
 */
static void test_offset_overflow(void **state)
{
	size_t ps = tu_page_size(), len = 4 * ps;
	unsigned char *snap = malloc(len);
	struct ufault_ctx *ctx = NULL;
	struct ufault_source s;
	long at = -1;
	char *a;
	int rc;

	(void)state;
	assert_non_null(snap);
	tu_pattern_fill(snap, len, 0, 3);
	assert_int_equal(tu_ctx_create(&ctx, UFAULT_LOCK_SPEC, 1, 1), 0);
	a = tu_map_anon(len, 0);
	ufault_source_init(&s, UFAULT_SOURCE_SNAPSHOT);
	s.snapshot.data = snap;
	s.snapshot.len = len;
	s.offset = UINT64_MAX - ps + 1; /* region page 1 wraps to 0 */
	rc = ufault_region_register(ctx, a, len, &s, 0, NULL);
	if (!rc) {
		at = tu_zero_check(a, len);
		if (at != -1)
			fprintf(stderr,
				"offset wrapped: byte %ld of a region at "
				"source offset 2^64 - %zu is not zero\n",
				at, ps);
	}
	ufault_ctx_destroy(ctx);
	tu_unmap(a, len);
	free(snap);
	if (rc)
		assert_int_equal(rc, -EINVAL);
	else
		assert_int_equal(at, -1);
}

/*
 * Many small regions: 2048 adjacent one-page regions, each with its own
 * seed and source offset, touched by 2 threads; then every other one is
 * unregistered and the rest still serve faults.
 */
#define NR_SMALL 2048

struct small_arg {
	char *base;
	unsigned int id;
	unsigned long bad;
};

static void *small_thread(void *arg)
{
	struct small_arg *sa = arg;
	size_t ps = tu_page_size();

	for (unsigned int i = sa->id; i < NR_SMALL; i += 2)
		if (tu_pattern_check(sa->base + (size_t)i * ps, ps, (uint64_t)i * 7 * ps, i) != -1)
			sa->bad++;
	return NULL;
}

static void test_many_regions(void **state)
{
	size_t ps = tu_page_size(), len = NR_SMALL * ps;
	struct ufault_region **r = calloc(NR_SMALL, sizeof(*r));
	struct ufault_ctx *ctx = NULL;
	struct small_arg sa[2];
	pthread_t t[2];
	char *a, *b;

	(void)state;
	assert_non_null(r);
	for (unsigned int m = 0; m < TU_NR_LOCK_MODES; m++) {
		assert_int_equal(tu_ctx_create(&ctx, tu_lock_mode(m), 2, 2), 0);
		a = tu_map_anon(len, 0);
		b = tu_map_anon(len, 0);
		/* Register in a scattered order. */
		for (unsigned int k = 0; k < NR_SMALL; k++) {
			unsigned int i = (k * 1031u) % NR_SMALL;
			struct ufault_source s;

			ufault_source_init(&s, UFAULT_SOURCE_CALLBACK);
			s.offset = (uint64_t)i * 7 * ps;
			s.callback.fill = tu_pattern_fill_cb;
			s.callback.arg = (void *)(uintptr_t)i;
			assert_int_equal(
			    ufault_region_register(ctx, a + (size_t)i * ps, ps, &s, 0, &r[i]), 0);
		}
		for (unsigned int i = 0; i < 2; i++) {
			sa[i].base = a;
			sa[i].id = i;
			sa[i].bad = 0;
			assert_int_equal(pthread_create(&t[i], NULL, small_thread, &sa[i]), 0);
		}
		for (unsigned int i = 0; i < 2; i++) {
			assert_int_equal(pthread_join(t[i], NULL), 0);
			assert_int_equal(sa[i].bad, 0);
		}
		for (unsigned int i = 0; i < NR_SMALL; i += 2)
			assert_int_equal(ufault_region_unregister(ctx, r[i]), 0);
		/* Move the odd ones' neighbours: register b's odd pages. */
		for (unsigned int i = 1; i < NR_SMALL; i += 2) {
			struct ufault_source s;

			ufault_source_init(&s, UFAULT_SOURCE_CALLBACK);
			s.offset = (uint64_t)i * 7 * ps;
			s.callback.fill = tu_pattern_fill_cb;
			s.callback.arg = (void *)(uintptr_t)i;
			assert_int_equal(
			    ufault_region_register(ctx, b + (size_t)i * ps, ps, &s, 0, NULL), 0);
		}
		for (unsigned int i = 0; i < NR_SMALL; i++) {
			if (i % 2)
				assert_int_equal(tu_pattern_check(b + (size_t)i * ps, ps,
								  (uint64_t)i * 7 * ps, i),
						 -1);
			else
				assert_int_equal(tu_zero_check(b + (size_t)i * ps, ps), -1);
		}
		ufault_ctx_destroy(ctx);
		tu_unmap(a, len);
		tu_unmap(b, len);
	}
	free(r);
}

/* The largest default region page, 2 MiB (== max_page_size), works. */
static void test_max_region_page(void **state)
{
	size_t ps = tu_page_size(), huge = (size_t)2 << 20, len = 2 * huge;
	struct ufault_ctx *ctx = NULL;
	struct ufault_source s;
	char *a;

	(void)state;
	ufault_source_init(&s, UFAULT_SOURCE_CALLBACK);
	s.offset = huge;
	s.callback.fill = tu_pattern_fill_cb;
	s.callback.arg = (void *)(uintptr_t)31;
	for (unsigned int m = 0; m < TU_NR_LOCK_MODES; m += 3) {
		assert_int_equal(tu_ctx_create(&ctx, tu_lock_mode(m), 1, 1), 0);
		a = tu_map_anon(len, huge);
		assert_int_equal(
		    ufault_region_register(ctx, a, len, &s, UFAULT_REGION_PAGE_SHIFT(21), NULL), 0);
		assert_int_equal(tu_pattern_check(a + huge + 77 * ps, ps, 2 * huge + 77 * ps, 31),
				 -1);
		assert_int_equal(tu_pattern_check(a, len, huge, 31), -1);
		ufault_ctx_destroy(ctx);
		tu_unmap(a, len);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sources_all_modes), cmocka_unit_test(test_snapshot_edges),
	    cmocka_unit_test(test_write_faults),      cmocka_unit_test(test_populated_and_readonly),
	    cmocka_unit_test(test_offset_overflow),   cmocka_unit_test(test_many_regions),
	    cmocka_unit_test(test_max_region_page),
	};

	unsetenv("UFAULT_LOCK_MODE");
	tu_watchdog(50);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
