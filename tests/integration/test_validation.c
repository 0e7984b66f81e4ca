/* SPDX-License-Identifier: MIT */
/*
 * test_validation.c - every argument check of the public constructors and
 * registration calls, and the promise that a failed call changes nothing:
 * after each failure a region registered earlier still serves faults, the
 * range the failed call named is not registered with the kernel (no "um" in
 * its VmFlags) and reads as ordinary zero-filled anonymous memory, and a
 * later valid registration of that range succeeds (no stale index entry).
 * Each failure must also be logged through the context's log callback.
 */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/vfs.h>

#include <cmocka.h>

#include "../testutil.h"

#define SEED_GOOD 0x600d
#define SEED_VICTIM 0xf00
#define GOOD_PAGES 256

/* ------------------------------------------------------------------ */
/* Kernel-side view: is any part of a range registered for MISSING?     */
/* ------------------------------------------------------------------ */

/*
 * Returns 1 if a VMA overlapping [addr, addr + len) carries the "um"
 * (userfaultfd missing) VmFlag, 0 if none does. Reading smaps never faults
 * on the memory, so this cannot hang even if a failed call leaked a kernel
 * registration.
 */
static int range_has_uffd(const void *addr, size_t len)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	uintptr_t lo = (uintptr_t)addr, hi = lo + len;
	int in = 0, found = 0;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;

		if (sscanf(line, "%lx-%lx ", &s, &e) == 2) {
			in = s < hi && e > lo;
			continue;
		}
		if (in && !strncmp(line, "VmFlags:", 8)) {
			char *save = NULL;

			for (char *t = strtok_r(line + 8, " \n", &save); t;
			     t = strtok_r(NULL, " \n", &save))
				if (!strcmp(t, "um"))
					found = 1;
		}
	}
	fclose(f);
	return found;
}

/* ------------------------------------------------------------------ */
/* Log capture                                                          */
/* ------------------------------------------------------------------ */

static unsigned long log_lines;

static void count_log(void *arg, enum ufault_log_level level, const char *msg)
{
	(void)arg;
	(void)level;
	assert_non_null(msg);
	__atomic_fetch_add(&log_lines, 1, __ATOMIC_RELAXED);
}

static unsigned long logged(void)
{
	return __atomic_load_n(&log_lines, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------ */
/* Per-mode state: a context and a region known to work                 */
/* ------------------------------------------------------------------ */

struct vstate {
	struct ufault_ctx *ctx;
	enum ufault_lock_mode mode;
	char *good;
	size_t good_len;
	struct ufault_region *good_r;
	uint64_t good_off;
	size_t next; /* next good page to touch */
};

static void vstate_init(struct vstate *st, enum ufault_lock_mode mode, size_t max_page_size)
{
	struct ufault_config cfg;
	struct ufault_source src;
	size_t ps = tu_page_size();

	memset(st, 0, sizeof(*st));
	ufault_config_init(&cfg);
	cfg.lock_mode = mode;
	cfg.nr_workers = 2;
	cfg.max_page_size = max_page_size;
	cfg.log_fn = count_log;
	cfg.log_level = UFAULT_LOG_DEBUG;
	assert_int_equal(tu_ctx_create_cfg(&st->ctx, &cfg), 0);
	assert_int_equal(ufault_ctx_lock_mode(st->ctx), mode);
	st->mode = mode;
	st->good_len = GOOD_PAGES * ps;
	/* 4 unregistered pages on each side for the straddling cases. */
	st->good = (char *)tu_map_anon(st->good_len + 8 * ps, 0) + 4 * ps;
	st->good_off = 5 * ps;
	src = tu_pattern_source(st->good_off, SEED_GOOD);
	assert_int_equal(
	    ufault_region_register(st->ctx, st->good, st->good_len, &src, 0, &st->good_r), 0);
	assert_non_null(st->good_r);
	assert_true(range_has_uffd(st->good, st->good_len));
}

/* The region registered first still serves faults with the right bytes. */
static void check_good(struct vstate *st)
{
	size_t ps = tu_page_size();
	size_t pg = st->next++ % GOOD_PAGES;
	char *p = st->good + pg * ps;

	assert_int_equal(tu_pattern_check(p, ps, st->good_off + pg * ps, SEED_GOOD), -1);
}

static void vstate_fini(struct vstate *st)
{
	size_t ps = tu_page_size();

	ufault_ctx_destroy(st->ctx);
	tu_unmap(st->good - 4 * ps, st->good_len + 8 * ps);
}

/*
 * After a failed call on [p, p + len): not registered with the kernel, every
 * page reads as zeros (ordinary anonymous memory; touching only after the
 * smaps check means a leaked registration cannot hang us).
 */
static void check_unregistered(const void *p, size_t len)
{
	size_t ps = tu_page_size();

	assert_false(range_has_uffd(p, len));
	for (size_t i = 0; i < len; i += ps)
		assert_int_equal(tu_zero_check((const char *)p + i, ps), -1);
}

/* Call register, expect @want, and that the failure was logged. */
static void expect_reg(struct vstate *st, struct ufault_ctx *ctx, void *addr, size_t len,
		       const struct ufault_source *src, unsigned int flags, int want)
{
	struct ufault_region *r = (struct ufault_region *)(uintptr_t)0x1;
	unsigned long before = logged();
	int rc = ufault_region_register(ctx, addr, len, src, flags, &r);

	if (rc != want)
		fprintf(stderr, "register(%p, %zu, flags %#x) = %d (%s), want %d\n", addr, len,
			flags, rc, ufault_strerror(rc), want);
	assert_int_equal(rc, want);
	if (ctx)
		assert_true(logged() > before);
	check_good(st);
}

/*
 * A fresh victim mapping: a failed registration of (a subrange of) it must
 * leave it unregistered; then registering all but its first page (which the
 * check populated) must succeed and serve pattern bytes.
 */
static char *victim_map(size_t len, size_t align)
{
	return tu_map_anon(len, align);
}

static void victim_check(struct vstate *st, char *v, size_t len, size_t align, unsigned int flags)
{
	struct ufault_source src = tu_pattern_source(0, SEED_VICTIM);
	struct ufault_region *r = NULL;
	size_t ps = tu_page_size();

	check_unregistered(v, align);
	assert_false(range_has_uffd(v, len));
	if (len > align) {
		assert_int_equal(
		    ufault_region_register(st->ctx, v + align, len - align, &src, flags, &r), 0);
		assert_int_equal(tu_pattern_check(v + len - ps, ps, len - align - ps, SEED_VICTIM),
				 -1);
		assert_int_equal(ufault_region_unregister(st->ctx, r), 0);
	}
	tu_unmap(v, len);
}

/* ------------------------------------------------------------------ */
/* ufault_ctx_create                                                    */
/* ------------------------------------------------------------------ */

static void test_ctx_create_args(void **state)
{
	struct ufault_config cfg;
	struct ufault_ctx *ctx = NULL;

	(void)state;
	/* userfaultfd availability first, so a missing uffd skips. */
	assert_int_equal(tu_ctx_create(&ctx, UFAULT_LOCK_SPEC, 1, 1), 0);
	ufault_ctx_destroy(ctx);
	ctx = NULL;

	assert_int_equal(ufault_ctx_create(NULL, NULL), -EINVAL);
	ufault_config_init(&cfg);
	assert_int_equal(cfg.size, sizeof(cfg));
	assert_int_equal(ufault_ctx_create(NULL, &cfg), -EINVAL);

	cfg.size = 0;
	assert_int_equal(ufault_ctx_create(&ctx, &cfg), -EINVAL);
	cfg.size = 4;
	assert_int_equal(ufault_ctx_create(&ctx, &cfg), -EINVAL);

	/*
	 * The smallest struct any release defined (0.1's) is accepted; a
	 * prefix shorter than it is not a struct of any release.
	 */
	ufault_config_init(&cfg);
	cfg.nr_workers = 2;
	cfg.nr_uffds = 2;
	cfg.size = UFAULT_CONFIG_SIZE_VER0;
	assert_int_equal(ufault_ctx_create(&ctx, &cfg), 0);
	assert_int_equal(ufault_ctx_nr_workers(ctx), 2);
	assert_int_equal(ufault_ctx_nr_uffds(ctx), 2);
	assert_int_equal(ufault_ctx_lock_mode(ctx), UFAULT_LOCK_SPEC);
	ufault_ctx_destroy(ctx);
	cfg.size = offsetof(struct ufault_config, lock_mode);
	assert_int_equal(ufault_ctx_create(&ctx, &cfg), -EINVAL);

	ufault_config_init(&cfg);
	cfg.nr_workers = 100000;
	assert_int_equal(ufault_ctx_create(&ctx, &cfg), -EINVAL);
	cfg.nr_workers = UINT32_MAX;
	assert_int_equal(ufault_ctx_create(&ctx, &cfg), -EINVAL);

	ufault_config_init(&cfg);
	cfg.lock_mode = (enum ufault_lock_mode)99;
	assert_int_equal(ufault_ctx_create(&ctx, &cfg), -EINVAL);
	cfg.lock_mode = (enum ufault_lock_mode)(UFAULT_LOCK_GLOBAL + 1);
	assert_int_equal(ufault_ctx_create(&ctx, &cfg), -EINVAL);
	cfg.lock_mode = (enum ufault_lock_mode) - 1;
	assert_int_equal(ufault_ctx_create(&ctx, &cfg), -EINVAL);

	/* max_page_size: a power of two, at least the system page. */
	ufault_config_init(&cfg);
	cfg.max_page_size = 12345 * tu_page_size();
	assert_int_equal(ufault_ctx_create(&ctx, &cfg), -EINVAL);
	cfg.max_page_size = tu_page_size() / 2;
	assert_int_equal(ufault_ctx_create(&ctx, &cfg), -EINVAL);

	/* Defaults and clamping. */
	ufault_config_init(&cfg);
	assert_int_equal(ufault_ctx_create(&ctx, &cfg), 0);
	assert_int_equal(ufault_ctx_lock_mode(ctx), UFAULT_LOCK_SPEC);
	assert_true(ufault_ctx_nr_workers(ctx) >= 1);
	assert_int_equal(ufault_ctx_nr_uffds(ctx), 1);
	ufault_ctx_destroy(ctx);

	assert_int_equal(ufault_ctx_create(&ctx, NULL), 0);
	assert_int_equal(ufault_ctx_lock_mode(ctx), UFAULT_LOCK_SPEC);
	/* nr_workers 0 means one per uffd. */
	assert_int_equal(ufault_ctx_nr_workers(ctx), 1);
	ufault_ctx_destroy(ctx);
	ufault_config_init(&cfg);
	cfg.nr_uffds = 3;
	assert_int_equal(ufault_ctx_create(&ctx, &cfg), 0);
	assert_int_equal(ufault_ctx_nr_workers(ctx), 3);
	assert_int_equal(ufault_ctx_nr_uffds(ctx), 3);
	ufault_ctx_destroy(ctx);

	ufault_config_init(&cfg);
	cfg.nr_workers = 2;
	cfg.nr_uffds = 8;
	assert_int_equal(ufault_ctx_create(&ctx, &cfg), 0);
	assert_int_equal(ufault_ctx_nr_workers(ctx), 2);
	assert_int_equal(ufault_ctx_nr_uffds(ctx), 2);
	ufault_ctx_destroy(ctx);

	for (unsigned int i = 0; i < TU_NR_LOCK_MODES; i++) {
		assert_int_equal(tu_ctx_create(&ctx, tu_lock_mode(i), 3, 0), 0);
		assert_int_equal(ufault_ctx_lock_mode(ctx), tu_lock_mode(i));
		assert_int_equal(ufault_ctx_nr_workers(ctx), 3);
		assert_int_equal(ufault_ctx_nr_uffds(ctx), 1);
		ufault_ctx_destroy(ctx);
	}
}

static void test_env_lock_mode(void **state)
{
	struct ufault_ctx *ctx = NULL;

	(void)state;
	for (unsigned int i = 0; i < TU_NR_LOCK_MODES; i++) {
		enum ufault_lock_mode m = tu_lock_mode(i);

		assert_int_equal(setenv("UFAULT_LOCK_MODE", ufault_lock_mode_name(m), 1), 0);
		assert_int_equal(tu_ctx_create(&ctx, UFAULT_LOCK_DEFAULT, 1, 1), 0);
		assert_int_equal(ufault_ctx_lock_mode(ctx), m);
		ufault_ctx_destroy(ctx);
	}

	/* An explicit mode in the config wins over the environment. */
	assert_int_equal(setenv("UFAULT_LOCK_MODE", "global", 1), 0);
	assert_int_equal(tu_ctx_create(&ctx, UFAULT_LOCK_RANGE, 1, 1), 0);
	assert_int_equal(ufault_ctx_lock_mode(ctx), UFAULT_LOCK_RANGE);
	ufault_ctx_destroy(ctx);

	/* A typo must not silently select another mode. */
	ctx = NULL;
	assert_int_equal(setenv("UFAULT_LOCK_MODE", "rnage", 1), 0);
	assert_int_equal(ufault_ctx_create(&ctx, NULL), -EINVAL);
	assert_int_equal(unsetenv("UFAULT_LOCK_MODE"), 0);

	assert_int_equal(ufault_ctx_create(&ctx, NULL), 0);
	assert_int_equal(ufault_ctx_lock_mode(ctx), UFAULT_LOCK_SPEC);
	ufault_ctx_destroy(ctx);
}

/* ------------------------------------------------------------------ */
/* ufault_region_register: bad arguments                                */
/* ------------------------------------------------------------------ */

static void register_bad_args_mode(enum ufault_lock_mode mode)
{
	struct vstate st;
	size_t ps = tu_page_size();
	size_t big = 1 << 16, len = 4 * big;
	struct ufault_source src = tu_pattern_source(0, SEED_VICTIM), bad;
	char *v;

	vstate_init(&st, mode, 0);

	/* NULLs. */
	v = victim_map(len, big);
	assert_int_equal(ufault_region_register(NULL, v, len, &src, 0, NULL), -EINVAL);
	check_good(&st);
	expect_reg(&st, st.ctx, v, len, NULL, 0, -EINVAL);
	expect_reg(&st, st.ctx, NULL, len, &src, 0, -EINVAL);
	expect_reg(&st, st.ctx, NULL, 0, &src, 0, -EINVAL);
	victim_check(&st, v, len, ps, 0);

	/* Zero length, unaligned start or length. */
	v = victim_map(len, big);
	expect_reg(&st, st.ctx, v, 0, &src, 0, -EINVAL);
	expect_reg(&st, st.ctx, v + 1, len - ps, &src, 0, -EINVAL);
	expect_reg(&st, st.ctx, v + ps / 2, ps, &src, 0, -EINVAL);
	expect_reg(&st, st.ctx, v, len - 1, &src, 0, -EINVAL);
	expect_reg(&st, st.ctx, v, ps + 8, &src, 0, -EINVAL);
	expect_reg(&st, st.ctx, v, 7, &src, 0, -EINVAL);
	/* A length that wraps the address space. */
	expect_reg(&st, st.ctx, v, (size_t)0 - ps, &src, 0, -EINVAL);
	victim_check(&st, v, len, ps, 0);

	/* 64 KiB region pages: start and length must be 64 KiB multiples. */
	v = victim_map(len, big);
	expect_reg(&st, st.ctx, v + ps, len - big, &src, UFAULT_REGION_PAGE_SHIFT(16), -EINVAL);
	expect_reg(&st, st.ctx, v, big + ps, &src, UFAULT_REGION_PAGE_SHIFT(16), -EINVAL);
	expect_reg(&st, st.ctx, v, ps, &src, UFAULT_REGION_PAGE_SHIFT(16), -EINVAL);
	victim_check(&st, v, len, big, UFAULT_REGION_PAGE_SHIFT(16));

	/* Flag bits outside the mask. */
	v = victim_map(len, big);
	expect_reg(&st, st.ctx, v, len, &src, 1u << 1, -EINVAL);
	expect_reg(&st, st.ctx, v, len, &src, 1u << 25, -EINVAL);
	expect_reg(&st, st.ctx, v, len, &src, ~UFAULT_REGION_FLAGS_MASK, -EINVAL);
	victim_check(&st, v, len, ps, 0);

	/* Page shift below the system page or above max_page_size (2 MiB). */
	v = victim_map(len, big);
	expect_reg(&st, st.ctx, v, len, &src, UFAULT_REGION_PAGE_SHIFT(1), -EINVAL);
	expect_reg(&st, st.ctx, v, len, &src, UFAULT_REGION_PAGE_SHIFT(__builtin_ctzl(ps) - 1),
		   -EINVAL);
	expect_reg(&st, st.ctx, v, len, &src, UFAULT_REGION_PAGE_SHIFT(22), -EINVAL);
	expect_reg(&st, st.ctx, v, len, &src, UFAULT_REGION_PAGE_SHIFT(40), -EINVAL);
	expect_reg(&st, st.ctx, v, len, &src, UFAULT_REGION_PAGE_SHIFT(63), -EINVAL);
	/* The system page size spelled explicitly is fine. */
	{
		struct ufault_region *r = NULL;

		assert_int_equal(
		    ufault_region_register(st.ctx, v + big, big, &src,
					   UFAULT_REGION_PAGE_SHIFT(__builtin_ctzl(ps)), &r),
		    0);
		assert_int_equal(tu_pattern_check(v + big, ps, 0, SEED_VICTIM), -1);
		assert_int_equal(ufault_region_unregister(st.ctx, r), 0);
	}
	tu_unmap(v, len);

	/* Bad sources. */
	v = victim_map(len, big);
	bad = src;
	bad.type = (enum ufault_source_type)0;
	expect_reg(&st, st.ctx, v, len, &bad, 0, -EINVAL);
	bad.type = (enum ufault_source_type)99;
	expect_reg(&st, st.ctx, v, len, &bad, 0, -EINVAL);
	/* A source not sized by ufault_source_init() (e.g. memset to 0). */
	bad = src;
	bad.size = 0;
	expect_reg(&st, st.ctx, v, len, &bad, 0, -EINVAL);
	bad.size = UFAULT_SOURCE_SIZE_VER0 - 1;
	expect_reg(&st, st.ctx, v, len, &bad, 0, -EINVAL);
	bad.size = sizeof(bad) + 8;
	expect_reg(&st, st.ctx, v, len, &bad, 0, -EINVAL);
	ufault_source_init(&bad, UFAULT_SOURCE_SNAPSHOT);
	bad.snapshot.data = NULL;
	bad.snapshot.len = ps;
	expect_reg(&st, st.ctx, v, len, &bad, 0, -EINVAL);
	ufault_source_init(&bad, UFAULT_SOURCE_CALLBACK);
	bad.callback.fill = NULL;
	bad.callback.arg = &bad;
	expect_reg(&st, st.ctx, v, len, &bad, 0, -EINVAL);
	victim_check(&st, v, len, ps, 0);

	vstate_fini(&st);
}

static void test_register_bad_args(void **state)
{
	(void)state;
	for (unsigned int i = 0; i < TU_NR_LOCK_MODES; i++)
		register_bad_args_mode(tu_lock_mode(i));
}

/* max_page_size bounds the region page size. */
static void test_register_max_page_size(void **state)
{
	struct vstate st;
	size_t big = 1 << 16, len = 8 * big;
	struct ufault_source src = tu_pattern_source(0, SEED_VICTIM);
	struct ufault_region *r = NULL;
	char *v;

	(void)state;
	vstate_init(&st, UFAULT_LOCK_SPEC, big);
	v = victim_map(len, 2 * big);
	expect_reg(&st, st.ctx, v, len, &src, UFAULT_REGION_PAGE_SHIFT(17), -EINVAL);
	check_unregistered(v, len);
	tu_unmap(v, len);

	v = victim_map(len, big);
	assert_int_equal(
	    ufault_region_register(st.ctx, v, len, &src, UFAULT_REGION_PAGE_SHIFT(16), &r), 0);
	assert_int_equal(tu_pattern_check(v + big + 100, 1000, big + 100, SEED_VICTIM), -1);
	assert_int_equal(ufault_region_unregister(st.ctx, r), 0);
	tu_unmap(v, len);
	vstate_fini(&st);
}

/* ------------------------------------------------------------------ */
/* ufault_region_register: overlap, unmapped, memory type               */
/* ------------------------------------------------------------------ */

static void register_overlap_mode(enum ufault_lock_mode mode)
{
	struct vstate st;
	size_t ps = tu_page_size();
	struct ufault_source src = tu_pattern_source(0, SEED_VICTIM);
	struct ufault_region *r = NULL;
	char *g;
	char *mid;

	vstate_init(&st, mode, 0);
	g = st.good;
	mid = g + st.good_len / 2;

	/* Same range, inside, straddling either end, covering all. */
	expect_reg(&st, st.ctx, g, st.good_len, &src, 0, -EEXIST);
	expect_reg(&st, st.ctx, mid, ps, &src, 0, -EEXIST);
	expect_reg(&st, st.ctx, g + st.good_len - ps, ps, &src, 0, -EEXIST);

	{
		/* The guard pages around the good region (vstate_init). */
		char *before = g - 4 * ps;
		char *after = g + st.good_len;

		expect_reg(&st, st.ctx, before, 6 * ps, &src, 0, -EEXIST);
		expect_reg(&st, st.ctx, g + st.good_len - 2 * ps, 6 * ps, &src, 0, -EEXIST);
		expect_reg(&st, st.ctx, before, st.good_len + 8 * ps, &src, 0, -EEXIST);
		assert_false(range_has_uffd(before, 4 * ps));
		assert_false(range_has_uffd(after, 4 * ps));
		check_unregistered(before, ps);
		check_unregistered(after, ps);
		/* Adjacent on both sides is not an overlap. */
		assert_int_equal(ufault_region_register(st.ctx, after + ps, 3 * ps, &src, 0, &r),
				 0);
		assert_int_equal(tu_pattern_check(after + ps, ps, 0, SEED_VICTIM), -1);
		assert_int_equal(ufault_region_unregister(st.ctx, r), 0);
		assert_int_equal(ufault_region_register(st.ctx, before + ps, 3 * ps, &src, 0, &r),
				 0);
		assert_int_equal(tu_pattern_check(before + 3 * ps, ps, 2 * ps, SEED_VICTIM), -1);
		assert_int_equal(ufault_region_unregister(st.ctx, r), 0);
	}
	check_good(&st);

	/* The good region itself is still registered and whole. */
	assert_true(range_has_uffd(st.good, st.good_len));
	for (size_t i = 0; i < 8; i++)
		check_good(&st);
	vstate_fini(&st);
}

/*
 * A range another context already handles: the kernel refuses a second
 * uffd on the same memory. The call must fail (the header does not list
 * this case; -EEXIST or -EBUSY are both sensible) and change nothing in
 * either context.
 */
static void register_other_ctx_mode(enum ufault_lock_mode mode)
{
	struct vstate a, b;
	struct ufault_source src = tu_pattern_source(0, SEED_VICTIM);
	unsigned long before;
	int rc;

	vstate_init(&a, mode, 0);
	vstate_init(&b, mode, 0);
	before = logged();
	rc = ufault_region_register(b.ctx, a.good, a.good_len, &src, 0, NULL);
	if (rc != -EEXIST && rc != -EBUSY)
		fprintf(stderr,
			"register over another context's region: %d "
			"(%s)\n",
			rc, ufault_strerror(rc));
	assert_true(rc == -EEXIST || rc == -EBUSY);
	assert_true(logged() > before);
	check_good(&a);
	check_good(&b);
	/* b has no stale entry for a's range: unregistering a and then
	 * registering the same range in b works. */
	assert_int_equal(ufault_region_unregister(a.ctx, a.good_r), 0);
	{
		size_t ps = tu_page_size();
		struct ufault_region *r = NULL;
		char *last = a.good + a.good_len - ps;

		assert_int_equal(ufault_region_register(b.ctx, last, ps, &src, 0, &r), 0);
		assert_int_equal(tu_pattern_check(last, ps, 0, SEED_VICTIM), -1);
		assert_int_equal(ufault_region_unregister(b.ctx, r), 0);
	}
	vstate_fini(&b);
	vstate_fini(&a);
}

static void test_register_other_ctx(void **state)
{
	(void)state;
	for (unsigned int i = 0; i < TU_NR_LOCK_MODES; i++)
		register_other_ctx_mode(tu_lock_mode(i));
}

static void test_register_overlap(void **state)
{
	(void)state;
	for (unsigned int i = 0; i < TU_NR_LOCK_MODES; i++)
		register_overlap_mode(tu_lock_mode(i));
}

static void register_unmapped_mode(enum ufault_lock_mode mode)
{
	struct vstate st;
	size_t ps = tu_page_size();
	struct ufault_source src = tu_pattern_source(0, SEED_VICTIM);
	size_t len = 16 * ps;
	char *v;

	vstate_init(&st, mode, 0);

	/* A hole in the middle. */
	v = victim_map(len, ps);
	tu_unmap(v + 8 * ps, ps);
	expect_reg(&st, st.ctx, v, len, &src, 0, -ENOMEM);
	check_unregistered(v, 8 * ps);
	check_unregistered(v + 9 * ps, 7 * ps);
	tu_unmap(v, len);

	/* A hole at the start, at the end, and nothing mapped at all. */
	v = victim_map(len, ps);
	tu_unmap(v, ps);
	expect_reg(&st, st.ctx, v, len, &src, 0, -ENOMEM);
	tu_unmap(v + len - ps, ps);
	expect_reg(&st, st.ctx, v + ps, len - ps, &src, 0, -ENOMEM);
	check_unregistered(v + ps, len - 2 * ps);
	tu_unmap(v, len);
	expect_reg(&st, st.ctx, v, len, &src, 0, -ENOMEM);

	vstate_fini(&st);
}

static void test_register_unmapped(void **state)
{
	(void)state;
	for (unsigned int i = 0; i < TU_NR_LOCK_MODES; i++)
		register_unmapped_mode(tu_lock_mode(i));
}

/*
 * Memory a uffd in MISSING mode cannot register: a file on a disk
 * filesystem, shared or private. The header documents -EOPNOTSUPP.
 */
static void test_register_file_mapping(void **state)
{
	static const char *dirs[] = {".", "/var/tmp", "/tmp"};
	struct vstate st;
	size_t ps = tu_page_size(), len = 8 * ps;
	struct ufault_source src = tu_pattern_source(0, SEED_VICTIM);
	char path[512];
	int fd = -1;

	(void)state;
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]) && fd < 0; i++) {
		struct statfs sfs;

		if (statfs(dirs[i], &sfs) || sfs.f_type == 0x01021994 /* tmpfs */)
			continue;
		snprintf(path, sizeof(path), "%s/ufault-validation-XXXXXX", dirs[i]);
		fd = mkstemp(path);
	}
	if (fd < 0) {
		fprintf(stderr, "note: no disk filesystem for a file mapping\n");
		skip();
	}
	unlink(path);
	assert_int_equal(ftruncate(fd, (off_t)len), 0);

	for (unsigned int m = 0; m < TU_NR_LOCK_MODES; m++) {
		int types[] = {MAP_SHARED, MAP_PRIVATE};

		vstate_init(&st, tu_lock_mode(m), 0);
		for (unsigned int t = 0; t < 2; t++) {
			char *f = mmap(NULL, len, PROT_READ | PROT_WRITE, types[t], fd, 0);

			assert_true(f != MAP_FAILED);
			expect_reg(&st, st.ctx, f, len, &src, 0, -EOPNOTSUPP);
			assert_false(range_has_uffd(f, len));
			assert_int_equal(tu_zero_check(f, len), -1);
			tu_unmap(f, len);
		}
		vstate_fini(&st);
	}
	close(fd);
}

/* ------------------------------------------------------------------ */
/* ufault_region_unregister                                             */
/* ------------------------------------------------------------------ */

static void unregister_mode(enum ufault_lock_mode mode)
{
	struct vstate st, other;
	size_t ps = tu_page_size(), len = 8 * ps;
	struct ufault_source src = tu_pattern_source(0, SEED_VICTIM);
	struct ufault_region *r = NULL, *r2 = NULL;
	unsigned long before;
	char *v;

	vstate_init(&st, mode, 0);
	vstate_init(&other, mode, 0);

	assert_int_equal(ufault_region_unregister(NULL, st.good_r), -EINVAL);
	check_good(&st);
	before = logged();
	assert_int_equal(ufault_region_unregister(st.ctx, NULL), -EINVAL);
	assert_true(logged() > before);
	check_good(&st);

	/* Another context's region is not ours: both stay registered. */
	before = logged();
	assert_int_equal(ufault_region_unregister(st.ctx, other.good_r), -ENOENT);
	assert_true(logged() > before);
	assert_int_equal(ufault_region_unregister(other.ctx, st.good_r), -ENOENT);
	check_good(&st);
	check_good(&other);
	assert_true(range_has_uffd(other.good, other.good_len));

	/* Unregister, touch (zeros, kernel behaviour), twice is -ENOENT. */
	v = victim_map(len, ps);
	assert_int_equal(ufault_region_register(st.ctx, v, len, &src, 0, &r), 0);
	assert_int_equal(tu_pattern_check(v, ps, 0, SEED_VICTIM), -1);
	assert_int_equal(ufault_region_unregister(st.ctx, r), 0);
	assert_false(range_has_uffd(v, len));
	/* The populated page keeps its bytes; the rest is plain memory. */
	assert_int_equal(tu_pattern_check(v, ps, 0, SEED_VICTIM), -1);
	check_unregistered(v + ps, len - ps);
	before = logged();
	assert_int_equal(ufault_region_unregister(st.ctx, r), -ENOENT);
	assert_true(logged() > before);
	check_good(&st);

	/* The range can be registered again. */
	tu_unmap(v, len);
	v = victim_map(len, ps);
	assert_int_equal(ufault_region_register(st.ctx, v, len, &src, 0, &r2), 0);
	assert_int_equal(tu_pattern_check(v + 3 * ps, ps, 3 * ps, SEED_VICTIM), -1);
	assert_int_equal(ufault_region_unregister(st.ctx, r2), 0);
	tu_unmap(v, len);

	/* out == NULL is allowed; the region is then released by destroy. */
	v = victim_map(len, ps);
	assert_int_equal(ufault_region_register(st.ctx, v, len, &src, 0, NULL), 0);
	assert_int_equal(tu_pattern_check(v + ps, ps, ps, SEED_VICTIM), -1);
	check_good(&st);

	vstate_fini(&other);
	check_good(&st);
	vstate_fini(&st);
	assert_false(range_has_uffd(v, len));
	tu_unmap(v, len);
}

static void test_unregister(void **state)
{
	(void)state;
	for (unsigned int i = 0; i < TU_NR_LOCK_MODES; i++)
		unregister_mode(tu_lock_mode(i));
}

/* ------------------------------------------------------------------ */
/* Names                                                                */
/* ------------------------------------------------------------------ */

static void test_strerror(void **state)
{
	static const int errs[] = {0,	    EINVAL,	 -EINVAL, -ENOENT,   -EEXIST,
				   -ENOMEM, -EOPNOTSUPP, -EPERM,  -ENOSYS,   -EAGAIN,
				   -EIO,    12345,	 -12345,  INT32_MIN, INT32_MAX};

	(void)state;
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		const char *s = ufault_strerror(errs[i]);

		assert_non_null(s);
		if (errs[i])
			assert_true(strlen(s) > 0);
	}
	assert_string_equal(ufault_strerror(-EINVAL), ufault_strerror(EINVAL));
}

static void test_lock_mode_names(void **state)
{
	static const char *names[] = {"spec", "region", "range", "global"};
	enum ufault_lock_mode m = UFAULT_LOCK_DEFAULT;

	(void)state;
	for (unsigned int i = 0; i < TU_NR_LOCK_MODES; i++) {
		const char *n = ufault_lock_mode_name(tu_lock_mode(i));

		assert_non_null(n);
		assert_string_equal(n, names[i]);
		assert_int_equal(ufault_lock_mode_parse(n, &m), 0);
		assert_int_equal(m, tu_lock_mode(i));
	}
	m = UFAULT_LOCK_GLOBAL;
	assert_int_equal(ufault_lock_mode_parse("bogus", &m), -EINVAL);
	assert_int_equal(m, UFAULT_LOCK_GLOBAL); /* unchanged on failure */
	assert_int_equal(ufault_lock_mode_parse("", &m), -EINVAL);
	assert_int_equal(ufault_lock_mode_parse("spec ", &m), -EINVAL);
	assert_int_equal(ufault_lock_mode_parse("specx", &m), -EINVAL);
	assert_int_equal(ufault_lock_mode_parse(NULL, &m), -EINVAL);
	assert_int_equal(ufault_lock_mode_parse("spec", NULL), -EINVAL);
	assert_int_equal(m, UFAULT_LOCK_GLOBAL);
	/* Out-of-range values must not crash; any text or NULL is fine. */
	(void)ufault_lock_mode_name((enum ufault_lock_mode)99);
	(void)ufault_lock_mode_name(UFAULT_LOCK_DEFAULT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ctx_create_args),   cmocka_unit_test(test_env_lock_mode),
	    cmocka_unit_test(test_register_bad_args), cmocka_unit_test(test_register_max_page_size),
	    cmocka_unit_test(test_register_overlap),  cmocka_unit_test(test_register_other_ctx),
	    cmocka_unit_test(test_register_unmapped), cmocka_unit_test(test_register_file_mapping),
	    cmocka_unit_test(test_unregister),	      cmocka_unit_test(test_lock_mode_names),
	    cmocka_unit_test(test_strerror),
	};

	unsetenv("UFAULT_LOCK_MODE");
	unsetenv("UFAULT_LOG");
	tu_watchdog(50);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
