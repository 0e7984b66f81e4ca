/* SPDX-License-Identifier: MIT */
/*
 * test_huge_len.c - lengths near SIZE_MAX are bad input, not a crash.
 *
 * Rounding a length up to the page size wraps to 0 (or to a small value)
 * for lengths within a page of SIZE_MAX, and start + length wraps around
 * the address space for huge ones. A library that rounded first and
 * checked later handed an empty or inverted range to its range lock (an
 * assertion failure in Debug builds: the process aborted on bad input) or
 * passed the wrapped length to the kernel. Every entry point that takes a
 * length must fail with EINVAL (errno for the proxies, -EINVAL for
 * ufault_region_register; a ufault_mmap without an address may answer
 * ENOMEM instead, as mmap(2) does, since nothing wraps there) and change
 * nothing: a region registered before still reads its pattern (pages
 * present and missing alike), no proxy call is counted, and the region is
 * still the library's to unmap.
 *
 * Lengths: SIZE_MAX, SIZE_MAX - page + 1, SIZE_MAX - page - 1, and one
 * that makes addr + len wrap to just past 0. One test per entry point, so
 * a crash names it; every test runs in every lock mode.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include <cmocka.h>

#include "../modes.h"

#define RW (PROT_READ | PROT_WRITE)
#define PA (MAP_PRIVATE | MAP_ANONYMOUS)
#define NPAGES 8
#define SEED 81
#define NR_LENS 4

static size_t ps;

struct fx {
	struct ufault_ctx *ctx;
	char *p;       /* a region of NPAGES pages, pages 0 and 1 present */
	char *scratch; /* plain memory, not registered */
	uint64_t ops;  /* proxy_ops after the setup */
	size_t lens[NR_LENS - 1];
};

static int setup(void **state)
{
	static struct fx f;
	struct ufault_source s = tu_pattern_source(0, SEED);

	if (tu_fx_ctx_open(&f.ctx))
		return -1;
	f.p = ufault_mmap(f.ctx, NULL, NPAGES * ps, RW, PA, &s, 0);
	if (f.p == MAP_FAILED)
		return -1;
	if (tu_pattern_check(f.p, 2 * ps, 0, SEED) != -1)
		return -1;
	f.scratch = tu_map_anon(NPAGES * ps, 0);
	f.ops = tu_proxy_ops(f.ctx);
	f.lens[0] = SIZE_MAX;
	f.lens[1] = SIZE_MAX - ps + 1;
	f.lens[2] = SIZE_MAX - ps - 1;
	*state = &f;
	return 0;
}

/*
 * Bad length @i for a call at @addr: the three near SIZE_MAX, then one
 * that makes @addr + len wrap around the top of the address space to just
 * past 0.
 */
static size_t bad_len(const struct fx *f, int i, const void *addr)
{
	if (i < NR_LENS - 1)
		return f->lens[i];
	return (size_t)(0 - (uintptr_t)addr) + ps;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	tu_unmap(f->scratch, NPAGES * ps);
	tu_fx_ctx_close(&f->ctx);
	return 0;
}

/* Nothing changed: every page reads the pattern (pages 2.. fill now), no
 * proxy call was counted, and the region is still the library's: its
 * ufault_munmap succeeds and leaves nothing mapped. */
static void check_unchanged(struct fx *f)
{
	unsigned char v;
	long bad = tu_pattern_check(f->p, NPAGES * ps, 0, SEED);

	if (bad >= 0)
		fail_msg("[%s] after the failed calls, byte %ld of the region is 0x%02x, "
			 "expected 0x%02x",
			 ufault_lock_mode_name(tu_mode), bad, (unsigned char)f->p[bad],
			 tu_pattern((uint64_t)bad, SEED));
	if (tu_proxy_ops(f->ctx) != f->ops)
		fail_msg("[%s] a failed call was counted as a proxy operation",
			 ufault_lock_mode_name(tu_mode));
	assert_int_equal(ufault_munmap(f->ctx, f->p, NPAGES * ps), 0);
	errno = 0;
	assert_int_equal(mincore(f->p, ps, &v), -1);
	assert_int_equal(errno, ENOMEM);
}

/* A proxy call must return @failed with errno EINVAL. */
#define expect_einval(call, failed, len)                                                           \
	do {                                                                                       \
		errno = 0;                                                                         \
		const void *r_ = (const void *)(intptr_t)(call);                                   \
		int e_ = errno;                                                                    \
		if (r_ != (const void *)(intptr_t)(failed) || e_ != EINVAL)                        \
			fail_msg("[%s] %s with len %#zx returned %p, errno %d (%s); "              \
				 "expected EINVAL",                                                \
				 ufault_lock_mode_name(tu_mode), #call, (size_t)(len), r_, e_,     \
				 strerror(e_));                                                    \
	} while (0)

static void test_munmap_huge(void **state)
{
	struct fx *f = *state;

	for (int i = 0; i < NR_LENS; i++) {
		expect_einval(ufault_munmap(f->ctx, f->p, bad_len(f, i, f->p)), -1,
			      bad_len(f, i, f->p));
		expect_einval(ufault_munmap(f->ctx, f->p + ps, bad_len(f, i, f->p + ps)), -1,
			      bad_len(f, i, f->p + ps));
	}
	check_unchanged(f);
}

static void test_mprotect_huge(void **state)
{
	struct fx *f = *state;

	for (int i = 0; i < NR_LENS; i++) {
		expect_einval(ufault_mprotect(f->ctx, f->p, bad_len(f, i, f->p), PROT_READ), -1,
			      bad_len(f, i, f->p));
		expect_einval(
		    ufault_mprotect(f->ctx, f->p + ps, bad_len(f, i, f->p + ps), PROT_NONE), -1,
		    bad_len(f, i, f->p + ps));
	}
	check_unchanged(f);
}

static void test_madvise_huge(void **state)
{
	struct fx *f = *state;

	for (int i = 0; i < NR_LENS; i++) {
		expect_einval(ufault_madvise(f->ctx, f->p, bad_len(f, i, f->p), MADV_DONTNEED), -1,
			      bad_len(f, i, f->p));
		expect_einval(
		    ufault_madvise(f->ctx, f->p + ps, bad_len(f, i, f->p + ps), MADV_DONTNEED), -1,
		    bad_len(f, i, f->p + ps));
	}
	check_unchanged(f);
}

static void test_mremap_huge(void **state)
{
	struct fx *f = *state;
	char *dst = f->scratch + 2 * ps;

	for (int i = 0; i < NR_LENS; i++) {
		size_t len = bad_len(f, i, f->p), dlen = bad_len(f, i, dst);

		/* old_len */
		expect_einval(ufault_mremap(f->ctx, f->p, len, ps, MREMAP_MAYMOVE, NULL),
			      MAP_FAILED, len);
		expect_einval(ufault_mremap(f->ctx, f->p, len, ps, 0, NULL), MAP_FAILED, len);
		/* new_len, in place and moved */
		expect_einval(ufault_mremap(f->ctx, f->p, ps, len, MREMAP_MAYMOVE, NULL),
			      MAP_FAILED, len);
		expect_einval(ufault_mremap(f->ctx, f->p, ps, len, 0, NULL), MAP_FAILED, len);
		expect_einval(
		    ufault_mremap(f->ctx, f->p, ps, dlen, MREMAP_MAYMOVE | MREMAP_FIXED, dst),
		    MAP_FAILED, dlen);
	}
	check_unchanged(f);
}

static void test_mmap_huge(void **state)
{
	struct fx *f = *state;
	struct ufault_source s = tu_pattern_source(0, SEED + 1);

	for (int i = 0; i < NR_LENS; i++) {
		size_t plen = bad_len(f, i, f->p), slen = bad_len(f, i, f->scratch);

		/*
		 * Without an address nothing wraps (the wrapping length needs
		 * an address to wrap from): the length is just larger than
		 * any address space, which mmap(2) itself answers with ENOMEM
		 * and the proxy may mirror. Either way: no crash, no change.
		 */
		if (i < NR_LENS - 1) {
			const struct ufault_source *srcs[] = {&s, NULL};

			for (int k = 0; k < 2; k++) {
				void *m;
				int e;

				errno = 0;
				m = ufault_mmap(f->ctx, NULL, plen, RW, PA, srcs[k], 0);
				e = errno;
				if (m != MAP_FAILED || (e != EINVAL && e != ENOMEM))
					fail_msg("[%s] ufault_mmap(NULL, len %#zx, %s source) "
						 "returned %p, errno %d (%s); expected EINVAL or "
						 "ENOMEM",
						 ufault_lock_mode_name(tu_mode), plen,
						 k ? "zero" : "callback", m, e, strerror(e));
			}
		}
		expect_einval(ufault_mmap(f->ctx, f->p, plen, RW, PA | MAP_FIXED, &s, 0),
			      MAP_FAILED, plen);
		expect_einval(ufault_mmap(f->ctx, f->scratch, slen, RW, PA | MAP_FIXED, &s, 0),
			      MAP_FAILED, slen);
	}
	/* The scratch memory is untouched: still mapped, still zeros. */
	assert_int_equal(tu_zero_check(f->scratch, NPAGES * ps), -1);
	check_unchanged(f);
}

static void test_register_huge(void **state)
{
	struct fx *f = *state;
	struct ufault_source s = tu_pattern_source(0, SEED + 1);
	struct ufault_region *h = NULL;

	for (int i = 0; i < NR_LENS; i++) {
		void *addrs[] = {f->scratch, f->p};

		for (int a = 0; a < 2; a++) {
			size_t len = bad_len(f, i, addrs[a]);
			int rc = ufault_region_register(f->ctx, addrs[a], len, &s, 0, NULL);

			if (rc != -EINVAL)
				fail_msg("[%s] ufault_region_register(%s) with len %#zx returned "
					 "%d (%s); expected -EINVAL",
					 ufault_lock_mode_name(tu_mode), a ? "region" : "scratch",
					 len, rc, ufault_strerror(rc));
		}
	}
	/* The scratch memory is still plain memory: a valid registration of
	 * it succeeds (no stale index entry), and unregisters. */
	assert_int_equal(ufault_region_register(f->ctx, f->scratch, NPAGES * ps, &s, 0, &h), 0);
	assert_int_equal(ufault_region_unregister(f->ctx, h), 0);
	check_unchanged(f);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_munmap_huge, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mprotect_huge, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_madvise_huge, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mremap_huge, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mmap_huge, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_register_huge, setup, teardown),
	};
	int failed;

	ps = tu_page_size();
	/* An optional argument runs only the tests whose name matches it. */
	failed = tu_run_every_mode("huge_len", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
	return failed ? 1 : 0;
}
