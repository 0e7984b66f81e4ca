/* SPDX-License-Identifier: MIT */
/*
 * test_index.c - the latched red-black index against a sorted-array model,
 * red-black invariants on both copies, and lockless lookups racing a writer
 * with QSBR-retired nodes that are poisoned when freed.
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

#include <cmocka.h>

#include "alloc.h"
#include "index.h"
#include "qsbr.h"

#define MAGIC_LIVE 0x4c4956454e4f4445ULL /* "LIVENODE" */
#define MAGIC_DEAD 0xdeaddeaddeaddeadULL

struct tnode {
	struct ufault__index_node ix;
	uint64_t magic;
	struct ufault__qsbr_item qi;
	struct ufault__slab *slab;
};

static struct tnode *tn(struct ufault__index_node *n)
{
	return n ? (struct tnode *)((char *)n - offsetof(struct tnode, ix)) : NULL;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(uint64_t *s)
{
	/* splitmix64 */
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* --- red-black invariant checker ---------------------------------------- */

#define RB_BLACK_BIT 1UL

static struct ufault__rb_node *rb_par(const struct ufault__rb_node *r)
{
	return (struct ufault__rb_node *)(r->parent_color & ~(uintptr_t)3);
}

static int is_red(const struct ufault__rb_node *r)
{
	return r && !(r->parent_color & RB_BLACK_BIT);
}

static struct ufault__index_node *node_of(const struct ufault__rb_node *r, int idx)
{
	return (struct ufault__index_node *)((char *)r - offsetof(struct ufault__index_node, rb) -
					     (size_t)idx * sizeof(struct ufault__rb_node));
}

/* Returns the black height; fails the test on any violation. Fills @out
 * with the in-order sequence. */
static int check_sub(const struct ufault__rb_node *r, const struct ufault__rb_node *parent, int idx,
		     uint64_t lo, uint64_t hi, struct ufault__index_node **out, size_t *pos,
		     size_t cap)
{
	struct ufault__index_node *n;
	int bl, br;

	if (!r)
		return 1;
	n = node_of(r, idx);
	assert_ptr_equal(rb_par(r), parent);
	assert_true(n->start < n->end);
	assert_true(n->start >= lo);
	assert_true(n->end <= hi);
	if (is_red(r)) {
		assert_false(is_red(r->left));
		assert_false(is_red(r->right));
	}
	bl = check_sub(r->left, r, idx, lo, n->start, out, pos, cap);
	assert_true(*pos < cap);
	out[(*pos)++] = n;
	br = check_sub(r->right, r, idx, n->end, hi, out, pos, cap);
	assert_int_equal(bl, br);
	return bl + !is_red(r);
}

static void check_tree(struct ufault__index *ix)
{
	size_t cap = ufault__index_count(ix) + 1, n0 = 0, n1 = 0;
	struct ufault__index_node **a = calloc(cap, sizeof(*a));
	struct ufault__index_node **b = calloc(cap, sizeof(*b));

	assert_non_null(a);
	assert_non_null(b);
	/* Writers are done: the latch is even (readers on copy 0). */
	assert_int_equal(ix->seq & 1, 0);
	assert_false(is_red(ix->root[0]));
	assert_false(is_red(ix->root[1]));
	check_sub(ix->root[0], NULL, 0, 0, UINT64_MAX, a, &n0, cap);
	check_sub(ix->root[1], NULL, 1, 0, UINT64_MAX, b, &n1, cap);
	assert_int_equal(n0, ufault__index_count(ix));
	assert_int_equal(n1, ufault__index_count(ix));
	assert_memory_equal(a, b, n0 * sizeof(*a));
	free(a);
	free(b);
}

/* --- reference model: sorted array of nodes ------------------------------ */

struct model {
	struct ufault__index_node **v;
	size_t n, cap;
};

/* First position whose node ends above @addr. */
static size_t model_lower(const struct model *m, uint64_t addr)
{
	size_t lo = 0, hi = m->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (m->v[mid]->end > addr)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

static struct ufault__index_node *model_find(const struct model *m, uint64_t addr)
{
	size_t i = model_lower(m, addr);

	return i < m->n && m->v[i]->start <= addr ? m->v[i] : NULL;
}

static struct ufault__index_node *model_first_overlap(const struct model *m, uint64_t s, uint64_t e)
{
	size_t i = model_lower(m, s);

	return s < e && i < m->n && m->v[i]->start < e ? m->v[i] : NULL;
}

static void model_insert(struct model *m, struct ufault__index_node *n)
{
	size_t i = model_lower(m, n->start);

	memmove(&m->v[i + 1], &m->v[i], (m->n - i) * sizeof(*m->v));
	m->v[i] = n;
	m->n++;
}

static void model_remove_at(struct model *m, size_t i)
{
	memmove(&m->v[i], &m->v[i + 1], (m->n - i - 1) * sizeof(*m->v));
	m->n--;
}

/* --- single-threaded tests ------------------------------------------------ */

static void test_einval_eexist(void **state)
{
	struct ufault__index ix;
	struct ufault__index_node a = {.start = 100, .end = 200};
	struct ufault__index_node b = {.start = 150, .end = 150};
	struct ufault__index_node c = {.start = 300, .end = 200};
	struct ufault__index_node d = {.start = 199, .end = 250};
	struct ufault__index_node e = {.start = 50, .end = 101};
	struct ufault__index_node f = {.start = 200, .end = 300};
	struct ufault__index_node g = {.start = 0, .end = 100};
	struct ufault__index_node h = {.start = 120, .end = 180};

	ufault__index_init(&ix);
	assert_null(ufault__index_lookup(&ix, 0, NULL));
	assert_null(ufault__index_first_overlap_locked(&ix, 0, UINT64_MAX));
	assert_int_equal(ufault__index_insert(&ix, &a), 0);
	assert_int_equal(ufault__index_insert(&ix, &b), -EINVAL);
	assert_int_equal(ufault__index_insert(&ix, &c), -EINVAL);
	assert_int_equal(ufault__index_insert(&ix, &d), -EEXIST);
	assert_int_equal(ufault__index_insert(&ix, &e), -EEXIST);
	assert_int_equal(ufault__index_insert(&ix, &f), 0); /* adjacent is fine */
	assert_int_equal(ufault__index_insert(&ix, &g), 0);
	assert_int_equal(ufault__index_count(&ix), 3);
	check_tree(&ix);

	assert_ptr_equal(ufault__index_lookup(&ix, 100, NULL), &a);
	assert_ptr_equal(ufault__index_lookup(&ix, 199, NULL), &a);
	assert_ptr_equal(ufault__index_lookup(&ix, 200, NULL), &f);
	assert_ptr_equal(ufault__index_lookup(&ix, 0, NULL), &g);
	assert_null(ufault__index_lookup(&ix, 300, NULL));
	assert_ptr_equal(ufault__index_find_locked(&ix, 99), &g);

	/* Iteration in address order over an overlap query. */
	assert_ptr_equal(ufault__index_first_overlap_locked(&ix, 99, 201), &g);
	assert_ptr_equal(ufault__index_next_locked(&ix, &g), &a);
	assert_ptr_equal(ufault__index_next_locked(&ix, &a), &f);
	assert_null(ufault__index_next_locked(&ix, &f));
	assert_ptr_equal(ufault__index_first_overlap_locked(&ix, 100, 101), &a);
	assert_null(ufault__index_first_overlap_locked(&ix, 300, 400));
	assert_null(ufault__index_first_overlap_locked(&ix, 150, 150));

	ufault__index_remove(&ix, &a);
	assert_null(ufault__index_lookup(&ix, 150, NULL));
	assert_int_equal(ufault__index_insert(&ix, &e), -EEXIST); /* still overlaps g */
	assert_int_equal(ufault__index_insert(&ix, &h), 0);	  /* the hole is free */
	assert_ptr_equal(ufault__index_lookup(&ix, 150, NULL), &h);
	check_tree(&ix);
	ufault__index_remove(&ix, &h);
	ufault__index_remove(&ix, &g);
	ufault__index_remove(&ix, &f);
	assert_int_equal(ufault__index_count(&ix), 0);
	assert_null(ix.root[0]);
	assert_null(ix.root[1]);
}

static void check_queries(struct ufault__index *ix, struct model *m, uint64_t space, uint64_t *s)
{
	int q;

	for (q = 0; q < 200; q++) {
		uint64_t addr = rnd(s) % space;
		uint64_t e = addr + 1 + rnd(s) % 5000;
		struct ufault__index_node *want = model_find(m, addr), *got;
		bool retried;
		size_t i;

		assert_ptr_equal(ufault__index_find_locked(ix, addr), want);
		assert_ptr_equal(ufault__index_lookup(ix, addr, NULL), want);
		assert_ptr_equal(ufault__index_lookup(ix, addr, &retried), want);
		assert_false(retried);

		got = ufault__index_first_overlap_locked(ix, addr, e);
		assert_ptr_equal(got, model_first_overlap(m, addr, e));
		if (!got)
			continue;
		/* Walk the overlap, and one past it, with next_locked. */
		for (i = model_lower(m, addr); got && got->start < e; i++) {
			assert_true(i < m->n);
			assert_ptr_equal(got, m->v[i]);
			got = ufault__index_next_locked(ix, got);
		}
		assert_ptr_equal(got, i < m->n ? m->v[i] : NULL);
	}
}

static void test_random_vs_model(void **state)
{
	enum { NODES = 4000, OPS = 40000, BATCH = 1000 };
	const uint64_t space = 4000000;
	struct ufault__index ix;
	struct ufault__index_node *pool = calloc(NODES, sizeof(*pool));
	struct ufault__index_node **freep = calloc(NODES, sizeof(*freep));
	struct model m = {calloc(NODES, sizeof(*m.v)), 0, NODES};
	size_t nfree = NODES, i;
	uint64_t s = rng_state;
	int op, eexist = 0;

	assert_non_null(pool);
	assert_non_null(freep);
	assert_non_null(m.v);
	for (i = 0; i < NODES; i++)
		freep[i] = &pool[i];
	ufault__index_init(&ix);

	for (op = 1; op <= OPS; op++) {
		/* Bias toward inserts while small, removals while large. */
		bool ins = nfree && (m.n == 0 || rnd(&s) % NODES >= m.n / 2);

		if (ins) {
			struct ufault__index_node *n = freep[nfree - 1];
			int want, got;

			n->start = rnd(&s) % space;
			n->end = n->start + 1 + rnd(&s) % 3000;
			want = model_first_overlap(&m, n->start, n->end) ? -EEXIST : 0;
			got = ufault__index_insert(&ix, n);
			assert_int_equal(got, want);
			if (!got) {
				model_insert(&m, n);
				nfree--;
			} else {
				eexist++;
			}
		} else {
			size_t k = rnd(&s) % m.n;

			ufault__index_remove(&ix, m.v[k]);
			freep[nfree++] = m.v[k];
			model_remove_at(&m, k);
		}
		assert_int_equal(ufault__index_count(&ix), m.n);
		if (op % BATCH == 0) {
			check_tree(&ix);
			check_queries(&ix, &m, space + 5000, &s);
		}
	}
	assert_true(eexist > 100); /* the overlap path was exercised */
	while (m.n) {
		ufault__index_remove(&ix, m.v[m.n - 1]);
		m.n--;
		if (m.n % 500 == 0)
			check_tree(&ix);
	}
	assert_int_equal(ufault__index_count(&ix), 0);
	free(pool);
	free(freep);
	free(m.v);
}

static void shuffle(uint32_t *a, size_t n, uint64_t *s)
{
	size_t i;

	for (i = n - 1; i > 0; i--) {
		size_t j = rnd(s) % (i + 1);
		uint32_t t = a[i];

		a[i] = a[j];
		a[j] = t;
	}
}

static void test_50k(void **state)
{
	enum { N = 50000 };
	struct ufault__index ix;
	struct ufault__index_node *pool = calloc(N, sizeof(*pool));
	uint32_t *order = calloc(N, sizeof(*order));
	uint64_t s = rng_state ^ 1;
	size_t i;

	assert_non_null(pool);
	assert_non_null(order);
	ufault__index_init(&ix);
	for (i = 0; i < N; i++) {
		order[i] = (uint32_t)i;
		pool[i].start = (uint64_t)i * 8192;
		pool[i].end = pool[i].start + 4096;
	}
	shuffle(order, N, &s);
	for (i = 0; i < N; i++)
		assert_int_equal(ufault__index_insert(&ix, &pool[order[i]]), 0);
	assert_int_equal(ufault__index_count(&ix), N);
	check_tree(&ix);
	for (i = 0; i < N; i++) {
		assert_ptr_equal(ufault__index_lookup(&ix, pool[i].start + 4095, NULL), &pool[i]);
		assert_null(ufault__index_lookup(&ix, pool[i].end, NULL));
	}
	shuffle(order, N, &s);
	for (i = 0; i < N; i++) {
		ufault__index_remove(&ix, &pool[order[i]]);
		assert_null(ufault__index_lookup(&ix, pool[order[i]].start, NULL));
		if (i % 10000 == 0)
			check_tree(&ix);
	}
	assert_int_equal(ufault__index_count(&ix), 0);
	check_tree(&ix);
	free(pool);
	free(order);
}

/* --- concurrent: lockless readers, one writer, QSBR ----------------------- */

/*
 * The address space is cut into 64 KiB slots. Slot k % 4 == 0 holds a
 * permanent node, k % 4 == 3 is never mapped, the others are churned by
 * the writer with slab nodes that are retired through QSBR and poisoned
 * when freed.
 */
#define SLOT 65536ULL
#define NR_SLOTS 4096
#define NR_READERS 3
#define RUN_NS (1500ULL * 1000 * 1000)

struct conc {
	struct ufault__index ix;
	pthread_mutex_t tree_lock;
	struct ufault__qsbr q;
	struct ufault__slab slab;
	struct tnode perm[NR_SLOTS / 4];
	int stop;
	/* reader results */
	uint64_t lookups, wrong_perm, wrong_absent, dead_seen, bad_range, retries;
	/* writer results */
	uint64_t inserts, removes, freed, werr; /* no cmocka asserts off the main thread */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static struct conc *g_conc;

static void tnode_free(struct ufault__qsbr_item *it)
{
	struct tnode *t = (struct tnode *)((char *)it - offsetof(struct tnode, qi));

	/* Poison everything a reader would look at, then recycle the slot. */
	t->magic = MAGIC_DEAD;
	t->ix.start = UINT64_MAX - 1;
	t->ix.end = 1;
	__atomic_add_fetch(&g_conc->freed, 1, __ATOMIC_RELAXED);
	ufault__slab_free(t->slab, t);
}

struct reader_arg {
	struct conc *c;
	unsigned int slot;
};

static void *reader(void *p)
{
	struct reader_arg *ra = p;
	struct conc *c = ra->c;
	uint64_t s = 0x1234567ULL * (ra->slot + 1);
	uint64_t n = 0, wp = 0, wa = 0, dead = 0, br = 0, retr = 0;
	/* Transient nodes found in this read-side section, checked again at
	 * its end: a node freed too early is poisoned or reused by then. */
	struct {
		struct tnode *t;
		uint64_t start, end;
	} held[64];
	int nheld;

	ufault__qsbr_online(&c->q, ra->slot);
	while (!__atomic_load_n(&c->stop, __ATOMIC_RELAXED)) {
		int i;

		nheld = 0;
		for (i = 0; i < 64; i++) {
			uint64_t k = rnd(&s) % NR_SLOTS;
			uint64_t addr = k * SLOT + rnd(&s) % SLOT;
			bool retried;
			struct ufault__index_node *got =
			    ufault__index_lookup(&c->ix, addr, &retried);
			struct tnode *t = tn(got);

			retr += retried;
			n++;
			switch (k % 4) {
			case 0:
				wp += t != &c->perm[k / 4];
				break;
			case 3:
				wa += t != NULL;
				break;
			default:
				if (!t)
					break;
				/* Plain reads: TSan checks they happen
				 * before the poisoning free. */
				dead += t->magic != MAGIC_LIVE;
				br += !(t->ix.start <= addr && addr < t->ix.end);
				held[nheld].t = t;
				held[nheld].start = t->ix.start;
				held[nheld].end = t->ix.end;
				nheld++;
				break;
			}
		}
		for (i = 0; i < nheld; i++) {
			struct tnode *t = held[i].t;

			dead += t->magic != MAGIC_LIVE;
			br += t->ix.start != held[i].start || t->ix.end != held[i].end;
		}
		ufault__qsbr_quiescent(&c->q, ra->slot);
		if ((n & 0xfff) == 0) {
			/* Sometimes sleep offline, as a worker in poll(2). */
			ufault__qsbr_offline(&c->q, ra->slot);
			sched_yield();
			ufault__qsbr_online(&c->q, ra->slot);
		}
	}
	ufault__qsbr_offline(&c->q, ra->slot);
	__atomic_add_fetch(&c->lookups, n, __ATOMIC_RELAXED);
	__atomic_add_fetch(&c->wrong_perm, wp, __ATOMIC_RELAXED);
	__atomic_add_fetch(&c->wrong_absent, wa, __ATOMIC_RELAXED);
	__atomic_add_fetch(&c->dead_seen, dead, __ATOMIC_RELAXED);
	__atomic_add_fetch(&c->bad_range, br, __ATOMIC_RELAXED);
	__atomic_add_fetch(&c->retries, retr, __ATOMIC_RELAXED);
	return NULL;
}

static void *writer(void *p)
{
	struct conc *c = p;
	static struct tnode *cur[NR_SLOTS];
	uint64_t s = 42, end = now_ns() + RUN_NS;
	unsigned int k;

	memset(cur, 0, sizeof(cur));
	while (now_ns() < end) {
		int i;

		for (i = 0; i < 32; i++) {
			uint64_t r = rnd(&s);

			k = (unsigned int)(r % NR_SLOTS);
			if (k % 4 == 0 || k % 4 == 3)
				continue;
			pthread_mutex_lock(&c->tree_lock);
			if (cur[k]) {
				ufault__index_remove(&c->ix, &cur[k]->ix);
				pthread_mutex_unlock(&c->tree_lock);
				ufault__qsbr_retire(&c->q, &cur[k]->qi);
				cur[k] = NULL;
				c->removes++;
			} else {
				struct tnode *t = ufault__slab_alloc(&c->slab);

				if (!t) {
					pthread_mutex_unlock(&c->tree_lock);
					c->werr++;
					continue;
				}
				t->slab = &c->slab;
				t->qi.free_fn = tnode_free;
				t->magic = MAGIC_LIVE;
				/* A random sub-range of the slot. */
				t->ix.start = k * SLOT + (r >> 32) % (SLOT / 2);
				t->ix.end = t->ix.start + 1 + (r >> 48) % (SLOT / 2);
				c->werr += ufault__index_insert(&c->ix, &t->ix) != 0;
				pthread_mutex_unlock(&c->tree_lock);
				cur[k] = t;
				c->inserts++;
			}
		}
		ufault__qsbr_poll(&c->q);
	}
	__atomic_store_n(&c->stop, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&c->tree_lock);
	for (k = 0; k < NR_SLOTS; k++) {
		if (cur[k]) {
			ufault__index_remove(&c->ix, &cur[k]->ix);
			ufault__qsbr_retire(&c->q, &cur[k]->qi);
			c->removes++;
		}
	}
	pthread_mutex_unlock(&c->tree_lock);
	return NULL;
}

static void test_concurrent(void **state)
{
	struct conc *c = calloc(1, sizeof(*c));
	struct reader_arg ra[NR_READERS];
	pthread_t rt[NR_READERS], wt;
	unsigned int i;

	assert_non_null(c);
	g_conc = c;
	ufault__index_init(&c->ix);
	pthread_mutex_init(&c->tree_lock, NULL);
	assert_int_equal(ufault__qsbr_init(&c->q, NR_READERS), 0);
	assert_int_equal(ufault__slab_init(&c->slab, sizeof(struct tnode)), 0);
	for (i = 0; i < NR_SLOTS / 4; i++) {
		c->perm[i].magic = MAGIC_LIVE;
		c->perm[i].ix.start = (uint64_t)i * 4 * SLOT;
		c->perm[i].ix.end = c->perm[i].ix.start + SLOT;
		assert_int_equal(ufault__index_insert(&c->ix, &c->perm[i].ix), 0);
	}
	for (i = 0; i < NR_READERS; i++) {
		ra[i].c = c;
		ra[i].slot = i;
		assert_int_equal(pthread_create(&rt[i], NULL, reader, &ra[i]), 0);
	}
	assert_int_equal(pthread_create(&wt, NULL, writer, c), 0);
	pthread_join(wt, NULL);
	for (i = 0; i < NR_READERS; i++)
		pthread_join(rt[i], NULL);
	ufault__qsbr_drain(&c->q);

	print_message("lookups %llu (retried %llu), inserts %llu, removes %llu, freed %llu\n",
		      (unsigned long long)c->lookups, (unsigned long long)c->retries,
		      (unsigned long long)c->inserts, (unsigned long long)c->removes,
		      (unsigned long long)c->freed);
	assert_int_equal(c->werr, 0);
	assert_int_equal(c->wrong_perm, 0);
	assert_int_equal(c->wrong_absent, 0);
	assert_int_equal(c->dead_seen, 0);
	assert_int_equal(c->bad_range, 0);
	assert_true(c->lookups > 1000);
	assert_true(c->inserts > 1000);
	assert_int_equal(c->freed, c->removes);
	assert_int_equal(c->slab.nr_live, 0);
	assert_int_equal(ufault__index_count(&c->ix), NR_SLOTS / 4);
	check_tree(&c->ix);

	ufault__qsbr_destroy(&c->q);
	ufault__slab_destroy(&c->slab);
	pthread_mutex_destroy(&c->tree_lock);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_einval_eexist),
	    cmocka_unit_test(test_random_vs_model),
	    cmocka_unit_test(test_50k),
	    cmocka_unit_test(test_concurrent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
