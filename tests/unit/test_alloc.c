/* SPDX-License-Identifier: MIT */
/*
 * test_alloc.c - raw-syscall pages and the fixed-size slab: zeroing, reuse,
 * ownership checks, and a multi-thread alloc/free stress with an oracle
 * (each live object carries its owner's tag, checked before free).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "alloc.h"

static int all_zero(const void *p, size_t n)
{
	const unsigned char *c = p;
	size_t i;

	for (i = 0; i < n; i++)
		if (c[i])
			return 0;
	return 1;
}

static void test_pages(void **state)
{
	char *p;

	errno = 0;
	assert_null(ufault__pages_map(0));
	assert_int_equal(errno, EINVAL);
	p = ufault__pages_map(10000);
	assert_non_null(p);
	assert_int_equal((uintptr_t)p % 4096, 0);
	assert_true(all_zero(p, 12288)); /* rounded up to whole pages */
	memset(p, 0x5a, 12288);
	ufault__pages_unmap(p, 10000);
	ufault__pages_unmap(NULL, 0); /* harmless */
}

static void test_init_einval(void **state)
{
	struct ufault__slab s;

	assert_int_equal(ufault__slab_init(&s, 0), -EINVAL);
	assert_int_equal(ufault__slab_init(&s, SIZE_MAX), -EINVAL);
}

static void test_alloc_free_reuse_zero(void **state)
{
	enum { N = 5000 };
	struct ufault__slab s;
	void **v = calloc(N, sizeof(*v));
	size_t i, j;

	assert_non_null(v);
	assert_int_equal(ufault__slab_init(&s, 100), 0);
	for (i = 0; i < N; i++) {
		v[i] = ufault__slab_alloc(&s);
		assert_non_null(v[i]);
		assert_int_equal((uintptr_t)v[i] % 64, 0);
		assert_true(all_zero(v[i], 100));
		memset(v[i], 0xa5, 100);
		assert_true(ufault__slab_owns(&s, v[i]));
	}
	assert_int_equal(s.nr_live, N);
	/* Distinct and non-overlapping. */
	for (i = 1; i < N; i++)
		for (j = i < 64 ? 0 : i - 64; j < i; j++)
			assert_true((char *)v[i] >= (char *)v[j] + 100 ||
				    (char *)v[j] >= (char *)v[i] + 100);
	for (i = 0; i < N; i += 2)
		ufault__slab_free(&s, v[i]);
	assert_int_equal(s.nr_live, N / 2);
	/* Freed slots are still owned slots and still readable. */
	assert_true(ufault__slab_owns(&s, v[0]));
	assert_int_equal(((unsigned char *)v[0])[99], 0xa5);
	/* Reuse: the freed slots come back, zeroed. */
	for (i = 0; i < N; i += 2) {
		void *p = ufault__slab_alloc(&s);
		int found = 0;

		assert_true(all_zero(p, 100));
		for (j = 0; j < N && !found; j += 2)
			found = p == v[j];
		assert_true(found);
		memset(p, 0xa5, 100);
	}
	assert_int_equal(s.nr_live, N);
	ufault__slab_free(&s, NULL); /* harmless */
	ufault__slab_destroy(&s);
	free(v);
}

static void test_owns(void **state)
{
	struct ufault__slab a, b;
	int on_stack;
	char *p, *q;

	assert_int_equal(ufault__slab_init(&a, 48), 0);
	assert_int_equal(ufault__slab_init(&b, 48), 0);
	assert_false(ufault__slab_owns(&a, NULL)); /* no chunks yet */
	p = ufault__slab_alloc(&a);
	q = ufault__slab_alloc(&b);
	assert_true(ufault__slab_owns(&a, p));
	assert_false(ufault__slab_owns(&a, q));
	assert_false(ufault__slab_owns(&b, p));
	assert_false(ufault__slab_owns(&a, p + 1));
	assert_false(ufault__slab_owns(&a, p + 16));
	assert_false(ufault__slab_owns(&a, p - 64)); /* the chunk header */
	assert_false(ufault__slab_owns(&a, NULL));
	assert_false(ufault__slab_owns(&a, &on_stack));
	assert_false(ufault__slab_owns(&a, (void *)(uintptr_t)-64));
	ufault__slab_free(&a, p);
	assert_true(ufault__slab_owns(&a, p)); /* a free slot is a slot */
	ufault__slab_destroy(&a);
	ufault__slab_destroy(&b);
}

static void test_small_and_large_objects(void **state)
{
	struct ufault__slab s;
	char *p[3];
	int i;

	assert_int_equal(ufault__slab_init(&s, 1), 0);
	p[0] = ufault__slab_alloc(&s);
	p[1] = ufault__slab_alloc(&s);
	assert_int_equal((uintptr_t)p[0] % 16, 0);
	assert_true(p[1] - p[0] >= 16 || p[0] - p[1] >= 16);
	ufault__slab_destroy(&s);

	/* Larger than a chunk: one object per chunk. */
	assert_int_equal(ufault__slab_init(&s, 200000), 0);
	for (i = 0; i < 3; i++) {
		p[i] = ufault__slab_alloc(&s);
		assert_non_null(p[i]);
		assert_true(all_zero(p[i], 200000));
		memset(p[i], i + 1, 200000);
		assert_true(ufault__slab_owns(&s, p[i]));
	}
	assert_int_equal(p[0][199999], 1);
	assert_int_equal(p[2][0], 3);
	ufault__slab_free(&s, p[1]);
	assert_ptr_equal(ufault__slab_alloc(&s), p[1]);
	assert_true(all_zero(p[1], 200000));
	ufault__slab_destroy(&s);
}

/* --- threads: each keeps a working set, tags objects, checks tags ------- */

#define NR_THREADS 4
#define ITERS 1000000
#define SET 256

struct stress {
	struct ufault__slab *s;
	uint64_t tag;
	int bad;
};

struct tobj {
	uint64_t tag;
	uint64_t seq;
	char pad[40];
};

static void *stress_thread(void *p)
{
	struct stress *st = p;
	struct tobj *set[SET] = {0};
	uint64_t r = st->tag * 0x9e3779b97f4a7c15ULL;
	int i;

	for (i = 0; i < ITERS; i++) {
		unsigned int k;

		r ^= r << 13;
		r ^= r >> 7;
		r ^= r << 17;
		k = (unsigned int)(r % SET);
		if (set[k]) {
			if (set[k]->tag != st->tag || set[k]->seq != (uint64_t)k ||
			    !ufault__slab_owns(st->s, set[k]))
				st->bad++;
			ufault__slab_free(st->s, set[k]);
			set[k] = NULL;
		} else {
			set[k] = ufault__slab_alloc(st->s);
			if (!set[k] || set[k]->tag || set[k]->seq) {
				st->bad++;
				continue;
			}
			set[k]->tag = st->tag;
			set[k]->seq = k;
		}
	}
	for (i = 0; i < SET; i++)
		if (set[i])
			ufault__slab_free(st->s, set[i]);
	return NULL;
}

static void test_threads(void **state)
{
	struct ufault__slab s;
	struct stress st[NR_THREADS];
	pthread_t t[NR_THREADS];
	int i;

	assert_int_equal(ufault__slab_init(&s, sizeof(struct tobj)), 0);
	for (i = 0; i < NR_THREADS; i++) {
		st[i].s = &s;
		st[i].tag = (uint64_t)i + 1;
		st[i].bad = 0;
		assert_int_equal(pthread_create(&t[i], NULL, stress_thread, &st[i]), 0);
	}
	for (i = 0; i < NR_THREADS; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(st[i].bad, 0);
	}
	assert_int_equal(s.nr_live, 0);
	ufault__slab_destroy(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pages),
	    cmocka_unit_test(test_init_einval),
	    cmocka_unit_test(test_alloc_free_reuse_zero),
	    cmocka_unit_test(test_owns),
	    cmocka_unit_test(test_small_and_large_objects),
	    cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
