/* SPDX-License-Identifier: MIT */
/*
 * test_rangelock.c - range lock behaviour with real threads: exclusion,
 * sharing, disjoint and adjacent ranges, trylock, FIFO without stealing, and
 * a randomised stress run checked by per-slot counters.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <ufault/rangelock.h>

#include "rangelock_internal.h"

#define WAIT_TIMEOUT_MS 5000
#define SETTLE_MS 30

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned int ms)
{
	usleep(ms * 1000);
}

/* Wait until @waiting requests are queued behind a conflict. */
static void wait_for_waiters(struct ufault_rangelock *rl, unsigned int waiting)
{
	uint64_t deadline = now_ms() + WAIT_TIMEOUT_MS;
	unsigned int w = 0;

	for (;;) {
		ufault__rangelock_count(rl, NULL, &w);
		if (w == waiting)
			return;
		if (now_ms() > deadline)
			fail_msg("expected %u waiters, have %u", waiting, w);
		sleep_ms(1);
	}
}

/* A thread that takes one range, reports it, and holds it until told. */
struct locker {
	struct ufault_rangelock *rl;
	uint64_t start, end;
	bool writer;
	int acquired; /* order of acquisition, 0 = not yet */
	int release;
	pthread_t tid;
};

static int acquire_seq;

static void *locker_main(void *arg)
{
	struct locker *l = arg;
	struct ufault_range r;

	if (l->writer)
		ufault_range_write_lock(l->rl, &r, l->start, l->end);
	else
		ufault_range_read_lock(l->rl, &r, l->start, l->end);
	__atomic_store_n(&l->acquired, __atomic_add_fetch(&acquire_seq, 1, __ATOMIC_SEQ_CST),
			 __ATOMIC_RELEASE);
	while (!__atomic_load_n(&l->release, __ATOMIC_ACQUIRE))
		sleep_ms(1);
	if (l->writer)
		ufault_range_write_unlock(l->rl, &r);
	else
		ufault_range_read_unlock(l->rl, &r);
	return NULL;
}

static void locker_start(struct locker *l, struct ufault_rangelock *rl, uint64_t start,
			 uint64_t end, bool writer)
{
	*l = (struct locker){.rl = rl, .start = start, .end = end, .writer = writer};
	assert_int_equal(pthread_create(&l->tid, NULL, locker_main, l), 0);
}

static int locker_acquired(struct locker *l)
{
	return __atomic_load_n(&l->acquired, __ATOMIC_ACQUIRE);
}

static int locker_wait_acquired(struct locker *l)
{
	uint64_t deadline = now_ms() + WAIT_TIMEOUT_MS;

	while (!locker_acquired(l)) {
		if (now_ms() > deadline)
			fail_msg("locker [%llu,%llu) never acquired", (unsigned long long)l->start,
				 (unsigned long long)l->end);
		sleep_ms(1);
	}
	return locker_acquired(l);
}

static void locker_finish(struct locker *l)
{
	__atomic_store_n(&l->release, 1, __ATOMIC_RELEASE);
	assert_int_equal(pthread_join(l->tid, NULL), 0);
}

static void test_init_destroy(void **state)
{
	struct ufault_rangelock rl;
	unsigned int q = 99, w = 99;

	assert_int_equal(ufault_rangelock_init(NULL), -EINVAL);
	assert_int_equal(ufault_rangelock_init(&rl), 0);
	ufault__rangelock_count(&rl, &q, &w);
	assert_int_equal(q, 0);
	assert_int_equal(w, 0);
	ufault_rangelock_destroy(&rl);
	ufault_rangelock_destroy(NULL);
}

static void test_basic_exclusion(void **state)
{
	struct ufault_rangelock rl;
	struct ufault_range r, t;
	struct locker a;

	ufault_rangelock_init(&rl);
	ufault_range_write_lock(&rl, &r, 0, 10);
	locker_start(&a, &rl, 5, 15, true);
	wait_for_waiters(&rl, 1);
	sleep_ms(SETTLE_MS);
	assert_int_equal(locker_acquired(&a), 0);

	assert_false(ufault_range_read_trylock(&rl, &t, 9, 10));
	assert_false(ufault_range_write_trylock(&rl, &t, 0, 1));
	assert_false(ufault_range_write_trylock(&rl, &t, 12, 20)); /* the waiter's range */
	assert_true(ufault_range_write_trylock(&rl, &t, 20, 30));
	ufault_range_write_unlock(&rl, &t);

	ufault_range_write_unlock(&rl, &r);
	locker_wait_acquired(&a);
	assert_false(ufault_range_read_trylock(&rl, &t, 14, 15));
	assert_true(ufault_range_read_trylock(&rl, &t, 0, 5));
	ufault_range_read_unlock(&rl, &t);
	locker_finish(&a);
	ufault_rangelock_destroy(&rl);
}

static void test_readers_share(void **state)
{
	struct ufault_rangelock rl;
	struct ufault_range r, t;
	struct locker b;
	unsigned int q;

	ufault_rangelock_init(&rl);
	ufault_range_read_lock(&rl, &r, 0, 10);
	locker_start(&b, &rl, 5, 15, false);
	locker_wait_acquired(&b);
	assert_true(ufault_range_read_trylock(&rl, &t, 0, 100));
	ufault__rangelock_count(&rl, &q, NULL);
	assert_int_equal(q, 3);
	ufault_range_read_unlock(&rl, &t);
	assert_false(ufault_range_write_trylock(&rl, &t, 9, 10));
	assert_false(ufault_range_write_trylock(&rl, &t, 14, 15));
	ufault_range_read_unlock(&rl, &r);
	locker_finish(&b);
	assert_true(ufault_range_write_trylock(&rl, &t, 0, 100));
	ufault_range_write_unlock(&rl, &t);
	ufault_rangelock_destroy(&rl);
}

static void test_disjoint_and_adjacent(void **state)
{
	struct ufault_rangelock rl;
	struct ufault_range r, t;
	struct locker a, b;

	ufault_rangelock_init(&rl);
	ufault_range_write_lock(&rl, &r, 0, 10);
	locker_start(&a, &rl, 10, 20, true); /* adjacent: [0,10) and [10,20) */
	locker_start(&b, &rl, 100, 200, true);
	locker_wait_acquired(&a);
	locker_wait_acquired(&b);
	assert_false(ufault_range_write_trylock(&rl, &t, 9, 11));
	assert_true(ufault_range_read_trylock(&rl, &t, 20, 100)); /* both neighbours held */
	ufault_range_read_unlock(&rl, &t);
	locker_finish(&a);
	locker_finish(&b);
	ufault_range_write_unlock(&rl, &r);
	/* Same thread, adjacent: must not self-deadlock. */
	ufault_range_write_lock(&rl, &r, 0, 10);
	ufault_range_write_lock(&rl, &t, 10, 20);
	ufault_range_write_unlock(&rl, &r);
	ufault_range_write_unlock(&rl, &t);
	ufault_rangelock_destroy(&rl);
}

static void test_trylock_semantics(void **state)
{
	struct ufault_rangelock rl;
	struct ufault_range r1, t;
	struct locker w1;
	unsigned int q;

	ufault_rangelock_init(&rl);
	ufault_range_read_lock(&rl, &r1, 0, 10);
	locker_start(&w1, &rl, 5, 15, true);
	wait_for_waiters(&rl, 1);
	/* Compatible with the holder R1 but overlaps the waiting W1: no stealing. */
	assert_false(ufault_range_read_trylock(&rl, &t, 8, 9));
	assert_false(ufault_range_read_trylock(&rl, &t, 14, 15));
	/* Overlaps only R1, reader: shares. */
	assert_true(ufault_range_read_trylock(&rl, &t, 0, 5));
	ufault_range_read_unlock(&rl, &t);
	assert_false(ufault_range_write_trylock(&rl, &t, 0, 1));
	assert_true(ufault_range_write_trylock(&rl, &t, 15, 30));
	ufault_range_write_unlock(&rl, &t);
	/* Invalid ranges never succeed and leave the queue alone. */
	assert_false(ufault_range_read_trylock(&rl, &t, 50, 50));
	assert_false(ufault_range_write_trylock(&rl, &t, 60, 40));
	ufault__rangelock_count(&rl, &q, NULL);
	assert_int_equal(q, 2);
	/* A failed trylock never queued: the waiter is still the only one. */
	wait_for_waiters(&rl, 1);
	ufault_range_read_unlock(&rl, &r1);
	locker_wait_acquired(&w1);
	locker_finish(&w1);
	ufault_rangelock_destroy(&rl);
}

static void test_fifo_no_stealing(void **state)
{
	struct ufault_rangelock rl;
	struct ufault_range r1;
	struct locker w1, r2, w2, w3;
	int a, b;

	ufault_rangelock_init(&rl);
	ufault_range_read_lock(&rl, &r1, 0, 10);
	locker_start(&w1, &rl, 0, 10, true);
	wait_for_waiters(&rl, 1);
	locker_start(&r2, &rl, 5, 15, false); /* compatible with R1, not with W1 */
	wait_for_waiters(&rl, 2);
	sleep_ms(SETTLE_MS);
	assert_int_equal(locker_acquired(&w1), 0);
	assert_int_equal(locker_acquired(&r2), 0);

	ufault_range_read_unlock(&rl, &r1);
	a = locker_wait_acquired(&w1);
	sleep_ms(SETTLE_MS);
	assert_int_equal(locker_acquired(&r2), 0);
	locker_finish(&w1);
	b = locker_wait_acquired(&r2);
	assert_true(a < b);

	/* Writers queued on one range are served in arrival order. */
	locker_start(&w2, &rl, 0, 20, true);
	wait_for_waiters(&rl, 1);
	locker_start(&w3, &rl, 10, 11, true);
	wait_for_waiters(&rl, 2);
	locker_finish(&r2);
	a = locker_wait_acquired(&w2);
	sleep_ms(SETTLE_MS);
	assert_int_equal(locker_acquired(&w3), 0);
	locker_finish(&w2);
	b = locker_wait_acquired(&w3);
	assert_true(a < b);
	locker_finish(&w3);
	ufault_rangelock_destroy(&rl);
}

static void test_invalid_range_lock(void **state)
{
#ifdef NDEBUG
	struct ufault_rangelock rl;
	struct ufault_range r, t;
	unsigned int q;

	ufault_rangelock_init(&rl);
	ufault_range_write_lock(&rl, &r, 0, 10);
	/* Release build: empty / inverted ranges cover nothing and never block. */
	ufault_range_write_lock(&rl, &t, 5, 5);
	ufault_range_write_unlock(&rl, &t);
	ufault_range_read_lock(&rl, &t, 9, 1);
	ufault_range_read_unlock(&rl, &t);
	ufault__rangelock_count(&rl, &q, NULL);
	assert_int_equal(q, 1);
	ufault_range_write_unlock(&rl, &r);
	assert_true(ufault_range_write_trylock(&rl, &t, 0, 10));
	ufault_range_write_unlock(&rl, &t);
	ufault_rangelock_destroy(&rl);
#else
	skip(); /* debug build: invalid ranges trip an assert() by design */
#endif
}

/* ---- stress with an oracle ---------------------------------------------- */

#define STRESS_THREADS 4
#define STRESS_SLOTS 32
#define STRESS_MS 1500

struct stress {
	struct ufault_rangelock rl;
	int readers[STRESS_SLOTS];
	int writers[STRESS_SLOTS];
	int violations;
	int stop;
};

struct stress_thread {
	struct stress *s;
	unsigned int seed;
	unsigned long ops, tries;
	pthread_t tid;
};

static void oracle_enter(struct stress *s, uint64_t a, uint64_t b, bool writer)
{
	for (uint64_t i = a; i < b; i++) {
		if (writer) {
			if (__atomic_fetch_add(&s->writers[i], 1, __ATOMIC_SEQ_CST) != 0 ||
			    __atomic_load_n(&s->readers[i], __ATOMIC_SEQ_CST) != 0)
				__atomic_fetch_add(&s->violations, 1, __ATOMIC_RELAXED);
		} else {
			__atomic_fetch_add(&s->readers[i], 1, __ATOMIC_SEQ_CST);
			if (__atomic_load_n(&s->writers[i], __ATOMIC_SEQ_CST) != 0)
				__atomic_fetch_add(&s->violations, 1, __ATOMIC_RELAXED);
		}
	}
}

static void oracle_leave(struct stress *s, uint64_t a, uint64_t b, bool writer)
{
	for (uint64_t i = a; i < b; i++)
		__atomic_fetch_sub(writer ? &s->writers[i] : &s->readers[i], 1, __ATOMIC_SEQ_CST);
}

static void *stress_main(void *arg)
{
	struct stress_thread *t = arg;
	struct stress *s = t->s;
	struct ufault_range r;

	while (!__atomic_load_n(&s->stop, __ATOMIC_RELAXED)) {
		uint64_t a = rand_r(&t->seed) % STRESS_SLOTS;
		uint64_t len = 1 + rand_r(&t->seed) % 8;
		uint64_t b = a + len > STRESS_SLOTS ? STRESS_SLOTS : a + len;
		bool writer = rand_r(&t->seed) % 3 == 0;
		bool try = rand_r(&t->seed) % 4 == 0;

		if (try) {
			t->tries++;
			if (writer ? !ufault_range_write_trylock(&s->rl, &r, a, b)
				   : !ufault_range_read_trylock(&s->rl, &r, a, b))
				continue;
		} else if (writer) {
			ufault_range_write_lock(&s->rl, &r, a, b);
		} else {
			ufault_range_read_lock(&s->rl, &r, a, b);
		}
		oracle_enter(s, a, b, writer);
		for (volatile int k = 0; k < 50; k++)
			;
		oracle_leave(s, a, b, writer);
		if (writer)
			ufault_range_write_unlock(&s->rl, &r);
		else
			ufault_range_read_unlock(&s->rl, &r);
		t->ops++;
	}
	return NULL;
}

static void test_stress_oracle(void **state)
{
	static struct stress s;
	struct stress_thread th[STRESS_THREADS];
	unsigned long total = 0;
	unsigned int q;

	memset(&s, 0, sizeof(s));
	ufault_rangelock_init(&s.rl);
	for (int i = 0; i < STRESS_THREADS; i++) {
		th[i] = (struct stress_thread){.s = &s, .seed = 12345u + 77u * (unsigned int)i};
		assert_int_equal(pthread_create(&th[i].tid, NULL, stress_main, &th[i]), 0);
	}
	sleep_ms(STRESS_MS);
	__atomic_store_n(&s.stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < STRESS_THREADS; i++) {
		assert_int_equal(pthread_join(th[i].tid, NULL), 0);
		assert_true(th[i].ops > 0); /* nobody starved */
		total += th[i].ops;
	}
	printf("stress: %lu critical sections, %d violations\n", total, s.violations);
	assert_int_equal(s.violations, 0);
	ufault__rangelock_count(&s.rl, &q, NULL);
	assert_int_equal(q, 0);
	ufault_rangelock_destroy(&s.rl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_init_destroy),       cmocka_unit_test(test_basic_exclusion),
	    cmocka_unit_test(test_readers_share),      cmocka_unit_test(test_disjoint_and_adjacent),
	    cmocka_unit_test(test_trylock_semantics),  cmocka_unit_test(test_fifo_no_stealing),
	    cmocka_unit_test(test_invalid_range_lock), cmocka_unit_test(test_stress_oracle),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
