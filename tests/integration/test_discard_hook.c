/* SPDX-License-Identifier: MIT */
/*
 * test_discard_hook.c - ufault_source.callback.discard (since 0.8): a
 * source is told which of its offsets left every region, in every lock
 * mode. The source here is a swap in miniature (what the preload shim's
 * UFAULT_MEMORY_LIMIT uses): write-back stores a page, a fill gives the
 * stored page or zeros, a discard forgets. So each case checks the call
 * (offsets, length) and what it is for: memory dropped or unmapped and
 * mapped again reads zeros, never the bytes stored before.
 *
 *  - ufault_munmap() of the middle of a region: one call, the middle's
 *    source offsets; the two pieces left keep their stored pages.
 *  - ufault_madvise(MADV_DONTNEED) of flushed pages: they read zeros, not
 *    what was stored; MADV_FREE too; MADV_WILLNEED and ufault_mprotect()
 *    tell nothing.
 *  - ufault_mremap() shrinking: the tail's offsets; grown again, the tail
 *    reads zeros. Moving (MREMAP_MAYMOVE | MREMAP_FIXED) over another
 *    region: that region's offsets, and the moved one keeps its pages.
 *  - ufault_mmap(MAP_FIXED) over a callback region (not write-back): its
 *    offsets.
 *  - A caller built against 0.7 (a struct ufault_source without the
 *    field, its size 64): no call, no crash.
 *  - Stress with an oracle (discard against eviction): a write-back region
 *    of STRESS_PAGES pages over the miniature swap, under a context budget
 *    of a quarter of it; two threads, each owning half the pages, loop
 *    for STRESS_MS: check a page of theirs whole against its generation,
 *    then either write the next generation or drop it with
 *    ufault_madvise(MADV_DONTNEED) (generation 0: zeros). The evictor
 *    writes pages back to the swap meanwhile; a discard ordered wrongly
 *    with an eviction would bring an old generation back after a drop.
 *    Every page is checked at the end; evictions and drops must both
 *    have happened.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "../modes.h"

#define PAGES 16
#define SOURCE_OFF (1u << 20) /* the region's source offset */
#define MAX_CALLS 16
#define STRESS_PAGES 256
#define STRESS_MS 1500
#define SLOTS (STRESS_PAGES * 2) /* pages the swap can hold */

static size_t ps;

/* The swap in miniature: PAGES pages from source offset SOURCE_OFF. */
static struct swap {
	pthread_mutex_t lock;
	unsigned char *page[SLOTS]; /* NULL: nothing stored */
	struct {
		uint64_t off, len;
	} call[MAX_CALLS];
	unsigned int nr_calls;
} sw = {.lock = PTHREAD_MUTEX_INITIALIZER};

static long slot(uint64_t off)
{
	uint64_t i = (off - SOURCE_OFF) / ps;

	return off >= SOURCE_OFF && i < SLOTS ? (long)i : -1;
}

static int swap_fill(void *arg, uint64_t off, void *buf, size_t len)
{
	(void)arg;
	pthread_mutex_lock(&sw.lock);
	for (size_t k = 0; k < len; k += ps) {
		long i = slot(off + k);

		if (i >= 0 && sw.page[i])
			memcpy((char *)buf + k, sw.page[i], ps);
		else
			memset((char *)buf + k, 0, ps);
	}
	pthread_mutex_unlock(&sw.lock);
	return 0;
}

static int swap_store(void *arg, uint64_t off, const void *buf, size_t len)
{
	(void)arg;
	pthread_mutex_lock(&sw.lock);
	for (size_t k = 0; k < len; k += ps) {
		long i = slot(off + k);

		if (i < 0)
			continue;
		if (!sw.page[i])
			sw.page[i] = malloc(ps);
		assert_non_null(sw.page[i]);
		memcpy(sw.page[i], (const char *)buf + k, ps);
	}
	pthread_mutex_unlock(&sw.lock);
	return 0;
}

static void swap_discard(void *arg, uint64_t off, uint64_t len)
{
	(void)arg;
	pthread_mutex_lock(&sw.lock);
	if (sw.nr_calls < MAX_CALLS) {
		sw.call[sw.nr_calls].off = off;
		sw.call[sw.nr_calls].len = len;
	}
	sw.nr_calls++;
	for (uint64_t k = 0; k < len; k += ps) {
		long i = slot(off + k);

		if (i >= 0) {
			free(sw.page[i]);
			sw.page[i] = NULL;
		}
	}
	pthread_mutex_unlock(&sw.lock);
}

static void swap_reset(void)
{
	for (unsigned int i = 0; i < SLOTS; i++) {
		free(sw.page[i]);
		sw.page[i] = NULL;
	}
	sw.nr_calls = 0;
}

static unsigned int stored(void)
{
	unsigned int n = 0;

	pthread_mutex_lock(&sw.lock);
	for (unsigned int i = 0; i < SLOTS; i++)
		n += sw.page[i] != NULL;
	pthread_mutex_unlock(&sw.lock);
	return n;
}

static struct ufault_source swap_source(void)
{
	struct ufault_source s;

	ufault_source_init(&s, UFAULT_SOURCE_CALLBACK);
	s.offset = SOURCE_OFF;
	s.callback.fill = swap_fill;
	s.callback.writeback = swap_store;
	s.callback.discard = swap_discard;
	return s;
}

/* A write-back region of @pages pages, each page's first byte written
 * (page + 1) and flushed: every page stored. */
static unsigned char *stored_region(struct ufault_ctx *ctx, size_t pages)
{
	struct ufault_source s = swap_source();
	unsigned char *p;

	swap_reset();
	p = ufault_mmap(ctx, NULL, pages * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			&s, UFAULT_REGION_WRITEBACK | UFAULT_REGION_DISCARD);
	assert_true(p != MAP_FAILED);
	for (size_t i = 0; i < pages; i++)
		p[i * ps] = (unsigned char)(i + 1);
	assert_int_equal(ufault_flush(ctx, p, pages * ps), 0);
	assert_int_equal(stored(), pages);
	return p;
}

static void expect_call(unsigned int i, uint64_t first_page, uint64_t pages)
{
	assert_true(sw.nr_calls > i);
	assert_int_equal(sw.call[i].off, SOURCE_OFF + first_page * ps);
	assert_int_equal(sw.call[i].len, pages * ps);
}

/* Page @i of @p reads @want in its first byte and zeros elsewhere. */
static void expect_page(const unsigned char *p, size_t i, unsigned char want)
{
	assert_int_equal(p[i * ps], want);
	assert_int_equal(tu_zero_check(p + i * ps + 1, ps - 1), -1);
}

static void test_munmap_middle(void **state)
{
	struct ufault_ctx *ctx = ((struct tu_fx *)*state)->ctx;
	unsigned char *p = stored_region(ctx, PAGES);

	assert_int_equal(ufault_munmap(ctx, p + 4 * ps, 8 * ps), 0);
	assert_int_equal(sw.nr_calls, 1);
	expect_call(0, 4, 8);
	assert_int_equal(stored(), PAGES - 8);
	/* The pieces keep their pages. */
	for (size_t i = 0; i < 4; i++)
		expect_page(p, i, (unsigned char)(i + 1));
	for (size_t i = 12; i < PAGES; i++)
		expect_page(p, i, (unsigned char)(i + 1));
	assert_int_equal(sw.nr_calls, 1);
	assert_int_equal(ufault_munmap(ctx, p, PAGES * ps), 0);
	assert_int_equal(sw.nr_calls, 3); /* one per piece */
	assert_int_equal(stored(), 0);
	swap_reset();
}

static void test_madvise(void **state)
{
	struct ufault_ctx *ctx = ((struct tu_fx *)*state)->ctx;
	unsigned char *p = stored_region(ctx, PAGES);

	/* Neither of these drops anything. */
	assert_int_equal(ufault_madvise(ctx, p, PAGES * ps, MADV_WILLNEED), 0);
	assert_int_equal(ufault_mprotect(ctx, p, PAGES * ps, PROT_READ), 0);
	assert_int_equal(ufault_mprotect(ctx, p, PAGES * ps, PROT_READ | PROT_WRITE), 0);
	assert_int_equal(sw.nr_calls, 0);

	/* Dropped, pages 2..5 read zeros: the stored copies are gone too. */
	assert_int_equal(ufault_madvise(ctx, p + 2 * ps, 4 * ps, MADV_DONTNEED), 0);
	assert_int_equal(sw.nr_calls, 1);
	expect_call(0, 2, 4);
	for (size_t i = 2; i < 6; i++)
		expect_page(p, i, 0);
	expect_page(p, 1, 2);
	expect_page(p, 6, 7);
	assert_int_equal(stored(), PAGES - 4);

	/* MADV_FREE: the kernel may keep a page or not; either way the
	 * source forgets it, and a page the kernel freed reads zeros. */
	assert_int_equal(ufault_madvise(ctx, p + 8 * ps, 2 * ps, MADV_FREE), 0);
	assert_int_equal(sw.nr_calls, 2);
	expect_call(1, 8, 2);
	for (size_t i = 8; i < 10; i++)
		assert_true(p[i * ps] == 0 || p[i * ps] == (unsigned char)(i + 1));
	assert_int_equal(ufault_munmap(ctx, p, PAGES * ps), 0);
	swap_reset();
}

static void test_mremap(void **state)
{
	struct ufault_ctx *ctx = ((struct tu_fx *)*state)->ctx;
	unsigned char *p = stored_region(ctx, PAGES), *q, *r;
	struct ufault_source s = swap_source();

	/* Shrink by 4: their offsets. Grow back: the tail reads zeros. */
	q = ufault_mremap(ctx, p, PAGES * ps, (PAGES - 4) * ps, 0, NULL);
	assert_ptr_equal(q, p);
	assert_int_equal(sw.nr_calls, 1);
	expect_call(0, PAGES - 4, 4);
	q = ufault_mremap(ctx, p, (PAGES - 4) * ps, PAGES * ps, MREMAP_MAYMOVE, NULL);
	assert_true(q != MAP_FAILED);
	for (size_t i = PAGES - 4; i < PAGES; i++)
		expect_page(q, i, 0);
	expect_page(q, 0, 1);
	assert_int_equal(sw.nr_calls, 1);

	/* Moving q over another region (source offsets PAGES..2 PAGES)
	 * discards that region's offsets; q keeps its pages. */
	s.offset = SOURCE_OFF + PAGES * ps;
	r = ufault_mmap(ctx, NULL, PAGES * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			&s, UFAULT_REGION_WRITEBACK | UFAULT_REGION_DISCARD);
	assert_true(r != MAP_FAILED);
	sw.nr_calls = 0;
	p = ufault_mremap(ctx, q, PAGES * ps, PAGES * ps, MREMAP_MAYMOVE | MREMAP_FIXED, r);
	assert_ptr_equal(p, r);
	assert_int_equal(sw.nr_calls, 1);
	expect_call(0, PAGES, PAGES);
	for (size_t i = 0; i < PAGES - 4; i++)
		expect_page(p, i, (unsigned char)(i + 1));
	assert_int_equal(ufault_munmap(ctx, p, PAGES * ps), 0);
	swap_reset();
}

static void test_map_fixed(void **state)
{
	struct ufault_ctx *ctx = ((struct tu_fx *)*state)->ctx;
	struct ufault_source s = swap_source();
	unsigned char *p, *q;

	swap_reset();
	p = ufault_mmap(ctx, NULL, PAGES * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			&s, 0);
	assert_true(p != MAP_FAILED);
	q = ufault_mmap(ctx, p + 2 * ps, 3 * ps, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, NULL, 0);
	assert_ptr_equal(q, p + 2 * ps);
	assert_int_equal(sw.nr_calls, 1);
	expect_call(0, 2, 3);
	assert_int_equal(ufault_munmap(ctx, p, PAGES * ps), 0);
	assert_int_equal(sw.nr_calls, 3); /* the two pieces, not the zero region */
	swap_reset();
}

static void test_old_struct(void **state)
{
	struct ufault_ctx *ctx = ((struct tu_fx *)*state)->ctx;
	struct ufault_source s = swap_source();
	unsigned char *p;

	/* 0.7's struct ends before the field: whatever lies there is not
	 * read. */
	s.size = offsetof(struct ufault_source, callback.discard);
	assert_int_equal(s.size, 64);
	swap_reset();
	p = ufault_mmap(ctx, NULL, PAGES * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			&s, UFAULT_REGION_WRITEBACK | UFAULT_REGION_DISCARD);
	assert_true(p != MAP_FAILED);
	p[0] = 1;
	assert_int_equal(ufault_flush(ctx, p, ps), 0);
	assert_int_equal(ufault_madvise(ctx, p, ps, MADV_DONTNEED), 0);
	expect_page(p, 0, 1); /* no discard: the stored page comes back */
	assert_int_equal(ufault_munmap(ctx, p, PAGES * ps), 0);
	assert_int_equal(sw.nr_calls, 0);
	swap_reset();
}

/* The stress: one thread's pages and what each must hold. */
struct owner {
	struct ufault_ctx *ctx;
	unsigned char *base;
	size_t first, n; /* its pages */
	uint64_t *gen;	 /* each page's generation (0: zeros) */
	unsigned int seed;
	uint64_t checks, drops, wrong;
	const int *stop;
};

static bool page_holds(const unsigned char *base, size_t pg, uint64_t gen)
{
	const unsigned char *p = base + pg * ps;

	return gen ? tu_gen_holds(p, ps, pg, gen, 0, 0) : tu_zero_check(p, ps) == -1;
}

static void *owner_main(void *arg)
{
	struct owner *o = arg;

	while (!__atomic_load_n(o->stop, __ATOMIC_RELAXED)) {
		size_t pg = o->first + (size_t)rand_r(&o->seed) % o->n;
		unsigned char *p = o->base + pg * ps;

		o->checks++;
		if (!page_holds(o->base, pg, o->gen[pg]))
			o->wrong++;
		if (rand_r(&o->seed) % 8 == 0) {
			if (ufault_madvise(o->ctx, p, ps, MADV_DONTNEED))
				o->wrong++;
			o->gen[pg] = 0;
			o->drops++;
		} else {
			o->gen[pg]++;
			tu_gen_write(p, pg, o->gen[pg], 0, ps / 8);
		}
	}
	return NULL;
}

static void test_stress(void **state)
{
	struct ufault_ctx *ctx = ((struct tu_fx *)*state)->ctx;
	struct ufault_budget b = {.size = sizeof(b), .bytes = STRESS_PAGES / 4 * ps};
	struct ufault_stats st = {.size = sizeof(st)};
	struct ufault_source s = swap_source();
	struct owner o[2];
	pthread_t t[2];
	uint64_t *gen = calloc(STRESS_PAGES, sizeof(*gen)), wrong = 0;
	unsigned char *p;
	int stop = 0, rc;

	assert_non_null(gen);
	swap_reset();
	p = ufault_mmap(ctx, NULL, STRESS_PAGES * ps, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, &s,
			UFAULT_REGION_WRITEBACK | UFAULT_REGION_DISCARD);
	assert_true(p != MAP_FAILED);
	rc = ufault_ctx_set_budget(ctx, &b);
	if (rc == -EOPNOTSUPP) {
		print_message("  no UFFD_FEATURE_MOVE: no budget, skipped\n");
		assert_int_equal(ufault_munmap(ctx, p, STRESS_PAGES * ps), 0);
		free(gen);
		return;
	}
	assert_int_equal(rc, 0);
	for (int i = 0; i < 2; i++) {
		o[i] = (struct owner){.ctx = ctx,
				      .base = p,
				      .first = (size_t)i * STRESS_PAGES / 2,
				      .n = STRESS_PAGES / 2,
				      .gen = gen,
				      .seed = 1234u + (unsigned int)i,
				      .stop = &stop};
		assert_int_equal(pthread_create(&t[i], NULL, owner_main, &o[i]), 0);
	}
	usleep(STRESS_MS * 1000u);
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		wrong += o[i].wrong;
	}
	for (size_t pg = 0; pg < STRESS_PAGES; pg++)
		wrong += !page_holds(p, pg, gen[pg]);
	assert_int_equal(ufault_stats(ctx, &st), 0);
	print_message("  [%s] %llu checks, %llu drops, %llu evicted (%llu written), %llu wrong\n",
		      ufault_lock_mode_name(tu_mode),
		      (unsigned long long)(o[0].checks + o[1].checks),
		      (unsigned long long)(o[0].drops + o[1].drops), (unsigned long long)st.evicted,
		      (unsigned long long)st.evicted_dirty, (unsigned long long)wrong);
	assert_int_equal(wrong, 0);
	assert_true(st.evicted_dirty > 0);
	assert_true(o[0].drops + o[1].drops > 0);
	assert_int_equal(ufault_munmap(ctx, p, STRESS_PAGES * ps), 0);
	swap_reset();
	free(gen);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    tu_fx_test(test_munmap_middle), tu_fx_test(test_madvise),	 tu_fx_test(test_mremap),
	    tu_fx_test(test_map_fixed),	    tu_fx_test(test_old_struct), tu_fx_test(test_stress),
	};

	ps = tu_page_size();
	return tu_run_every_mode("discard_hook", tests, sizeof(tests) / sizeof(tests[0]), argc,
				 argv);
}
