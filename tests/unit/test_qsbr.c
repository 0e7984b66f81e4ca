/* SPDX-License-Identifier: MIT */
/*
 * test_qsbr.c - grace periods: online readers hold retired items until
 * they pass a quiescent state or go offline; offline readers hold nothing;
 * drain frees everything.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "qsbr.h"

struct obj {
	struct ufault__qsbr_item qi;
	int freed; /* set by free_fn */
	int value;
};

static int nr_freed;

static void obj_free(struct ufault__qsbr_item *it)
{
	struct obj *o = (struct obj *)((char *)it - offsetof(struct obj, qi));

	__atomic_store_n(&o->freed, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&nr_freed, 1, __ATOMIC_RELAXED);
}

static void obj_init(struct obj *o)
{
	o->qi.free_fn = obj_free;
	o->freed = 0;
	o->value = 7;
}

static int setup(void **state)
{
	struct ufault__qsbr *q = calloc(1, sizeof(*q));

	if (!q || ufault__qsbr_init(q, 3))
		return -1;
	nr_freed = 0;
	*state = q;
	return 0;
}

static int teardown(void **state)
{
	ufault__qsbr_destroy(*state);
	free(*state);
	return 0;
}

static void test_online_reader_holds(void **state)
{
	struct ufault__qsbr *q = *state;
	struct obj o;
	int i;

	obj_init(&o);
	ufault__qsbr_online(q, 0);
	ufault__qsbr_retire(q, &o.qi);
	for (i = 0; i < 5; i++)
		assert_int_equal(ufault__qsbr_poll(q), 0);
	assert_false(o.freed);
	/* Another reader's quiescent state does not help. */
	ufault__qsbr_online(q, 1);
	ufault__qsbr_quiescent(q, 1);
	assert_int_equal(ufault__qsbr_poll(q), 0);
	assert_false(o.freed);
	ufault__qsbr_offline(q, 1);

	ufault__qsbr_quiescent(q, 0);
	assert_int_equal(ufault__qsbr_poll(q), 1);
	assert_true(o.freed);
	assert_int_equal(ufault__qsbr_poll(q), 0);
	ufault__qsbr_offline(q, 0);
}

static void test_going_offline_releases(void **state)
{
	struct ufault__qsbr *q = *state;
	struct obj o;

	obj_init(&o);
	ufault__qsbr_online(q, 2);
	ufault__qsbr_retire(q, &o.qi);
	assert_int_equal(ufault__qsbr_poll(q), 0);
	ufault__qsbr_offline(q, 2);
	assert_int_equal(ufault__qsbr_poll(q), 1);
	assert_true(o.freed);
}

static void test_offline_readers_hold_nothing(void **state)
{
	struct ufault__qsbr *q = *state;
	struct obj o[4];
	int i;

	/* Slots start offline; one that came and went is offline too. */
	ufault__qsbr_online(q, 1);
	ufault__qsbr_quiescent(q, 1);
	ufault__qsbr_offline(q, 1);
	for (i = 0; i < 4; i++) {
		obj_init(&o[i]);
		ufault__qsbr_retire(q, &o[i].qi);
	}
	assert_int_equal(ufault__qsbr_poll(q), 4);
	for (i = 0; i < 4; i++)
		assert_true(o[i].freed);
}

static void test_retired_later_waits_again(void **state)
{
	struct ufault__qsbr *q = *state;
	struct obj a, b;

	obj_init(&a);
	obj_init(&b);
	ufault__qsbr_online(q, 0);
	ufault__qsbr_retire(q, &a.qi);
	assert_int_equal(ufault__qsbr_poll(q), 0);
	ufault__qsbr_quiescent(q, 0);
	/* b is retired after the quiescent state that releases a. */
	ufault__qsbr_retire(q, &b.qi);
	assert_int_equal(ufault__qsbr_poll(q), 1);
	assert_true(a.freed);
	assert_false(b.freed);
	assert_int_equal(ufault__qsbr_poll(q), 0);
	ufault__qsbr_quiescent(q, 0);
	assert_int_equal(ufault__qsbr_poll(q), 1);
	assert_true(b.freed);
	ufault__qsbr_offline(q, 0);
}

static void test_destroy_frees_leftovers(void **state)
{
	struct ufault__qsbr q;
	struct obj a, b;

	nr_freed = 0;
	obj_init(&a);
	obj_init(&b);
	assert_int_equal(ufault__qsbr_init(&q, 1), 0);
	ufault__qsbr_online(&q, 0);
	ufault__qsbr_retire(&q, &a.qi);
	ufault__qsbr_poll(&q);
	ufault__qsbr_retire(&q, &b.qi);
	ufault__qsbr_offline(&q, 0);
	ufault__qsbr_destroy(&q);
	assert_int_equal(nr_freed, 2);
}

/* --- threads ------------------------------------------------------------ */

struct shared {
	struct ufault__qsbr *q;
	struct obj *ptr; /* what a lockless reader finds */
	int phase;
	int bad;   /* reader saw a freed object */
	int loops; /* churn readers: next slot to take */
};

static void wait_phase(struct shared *s, int ph)
{
	struct timespec ts = {0, 100 * 1000};

	while (__atomic_load_n(&s->phase, __ATOMIC_ACQUIRE) < ph)
		nanosleep(&ts, NULL);
}

static void *holder(void *p)
{
	struct shared *s = p;
	struct obj *o;

	ufault__qsbr_online(s->q, 0);
	o = __atomic_load_n(&s->ptr, __ATOMIC_ACQUIRE);
	__atomic_store_n(&s->phase, 1, __ATOMIC_RELEASE);
	wait_phase(s, 2); /* main has unlinked, retired and polled */
	if (__atomic_load_n(&o->freed, __ATOMIC_RELAXED) || o->value != 7)
		s->bad = 1;
	ufault__qsbr_quiescent(s->q, 0);
	/* Keep reading (nothing) and passing quiescent states until told. */
	while (__atomic_load_n(&s->phase, __ATOMIC_ACQUIRE) < 3) {
		(void)__atomic_load_n(&s->ptr, __ATOMIC_ACQUIRE);
		ufault__qsbr_quiescent(s->q, 0);
		sched_yield();
	}
	ufault__qsbr_offline(s->q, 0);
	return NULL;
}

static void test_thread_holds_until_quiescent(void **state)
{
	struct ufault__qsbr *q = *state;
	struct shared s = {.q = q};
	struct timespec ts = {0, 1000 * 1000};
	struct obj *o = malloc(sizeof(*o));
	pthread_t t;
	int i;

	assert_non_null(o);
	obj_init(o);
	s.ptr = o;
	assert_int_equal(pthread_create(&t, NULL, holder, &s), 0);
	wait_phase(&s, 1);
	__atomic_store_n(&s.ptr, NULL, __ATOMIC_RELEASE); /* unlink */
	ufault__qsbr_retire(q, &o->qi);
	for (i = 0; i < 10; i++) {
		assert_int_equal(ufault__qsbr_poll(q), 0);
		nanosleep(&ts, NULL);
	}
	assert_false(__atomic_load_n(&o->freed, __ATOMIC_RELAXED));
	__atomic_store_n(&s.phase, 2, __ATOMIC_RELEASE);
	/* Drain waits for the holder's quiescent state (it stays online). */
	ufault__qsbr_drain(q);
	assert_true(__atomic_load_n(&o->freed, __ATOMIC_RELAXED));
	__atomic_store_n(&s.phase, 3, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	assert_int_equal(s.bad, 0);
	free(o);
}

static void *churn_reader(void *p)
{
	struct shared *s = p;
	unsigned int slot = (unsigned int)__atomic_fetch_add(&s->loops, 1, __ATOMIC_RELAXED);

	ufault__qsbr_online(s->q, slot);
	while (!__atomic_load_n(&s->phase, __ATOMIC_ACQUIRE)) {
		struct obj *o = __atomic_load_n(&s->ptr, __ATOMIC_ACQUIRE);

		if (o && (__atomic_load_n(&o->freed, __ATOMIC_RELAXED) || o->value != 7))
			__atomic_store_n(&s->bad, 1, __ATOMIC_RELAXED);
		ufault__qsbr_quiescent(s->q, slot);
	}
	ufault__qsbr_offline(s->q, slot);
	return NULL;
}

static void test_drain_frees_everything(void **state)
{
	enum { N = 20000 };
	struct ufault__qsbr *q = *state;
	struct obj *objs = calloc(N, sizeof(*objs));
	struct shared s = {.q = q};
	pthread_t t[2];
	int i;

	assert_non_null(objs);
	for (i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, churn_reader, &s), 0);
	for (i = 0; i < N; i++) {
		obj_init(&objs[i]);
		__atomic_store_n(&s.ptr, &objs[i], __ATOMIC_RELEASE);
		if (i > 0) {
			ufault__qsbr_retire(q, &objs[i - 1].qi);
			if (i % 64 == 0)
				ufault__qsbr_poll(q);
		}
	}
	__atomic_store_n(&s.ptr, NULL, __ATOMIC_RELEASE);
	ufault__qsbr_retire(q, &objs[N - 1].qi);
	ufault__qsbr_drain(q); /* readers are still online */
	for (i = 0; i < N; i++)
		assert_true(__atomic_load_n(&objs[i].freed, __ATOMIC_RELAXED));
	assert_int_equal(nr_freed, N);
	__atomic_store_n(&s.phase, 1, __ATOMIC_RELEASE);
	for (i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(s.bad, 0);
	assert_int_equal(ufault__qsbr_poll(q), 0);
	free(objs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_online_reader_holds, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_going_offline_releases, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_offline_readers_hold_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_retired_later_waits_again, setup, teardown),
	    cmocka_unit_test(test_destroy_frees_leftovers),
	    cmocka_unit_test_setup_teardown(test_thread_holds_until_quiescent, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_drain_frees_everything, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
