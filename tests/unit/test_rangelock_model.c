/* SPDX-License-Identifier: MIT */
/*
 * test_rangelock_model.c - exhaustive small-scope check of the range lock's
 * queueing logic.
 *
 * Three simulated threads run scripts of lock / trylock / unlock requests. A
 * deterministic scheduler drives the lock's step functions
 * (lib/rangelock_internal.h) and explores every interleaving of the threads'
 * atomic steps: the enqueue (one critical section of the internal spinlock), the
 * return from a wait once granted, the dequeue, and each grant+wake that the
 * unlocker performs after dropping the mutex. Every reachable state is
 * checked against a specification kept by the model itself (arrival order and
 * the set of active requests), not against the lock's own bookkeeping:
 *  (1) exclusion: no two owners (granted or returned) conflict;
 *  (2) FIFO: a request acquires only after every earlier conflicting one;
 *      trylock succeeds exactly when nothing queued conflicts;
 *  (3) no lost wake-up: a waiter whose earlier conflicting requests are all
 *      gone has been granted or sits in an unlocker's wake list (and one that
 *      still has some is not granted); every execution ends with all threads
 *      finished and the queue empty (no deadlock).
 * States are memoised (the future depends only on the state), so each state
 * is checked once while the number of complete interleavings is counted
 * exactly. Deliberately broken variants of the step functions must be caught,
 * which shows the checker can fail.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <ufault/rangelock.h>

#include "rangelock_internal.h"

#define NTHREADS 3
#define MAX_OPS 6
#define MAX_SLOTS 3
#define NREQ (NTHREADS * MAX_SLOTS)
#define MAX_DEPTH 64
#define KEY_LEN 96

enum op_kind { OP_LOCK, OP_TRY, OP_UNLOCK };

struct op {
	uint8_t kind;
	uint8_t slot;
	uint8_t writer;
	uint8_t start, end;
};

struct script {
	const char *name;
	int nr_ops[NTHREADS];
	struct op ops[NTHREADS][MAX_OPS];
};

/* The step functions under test, replaceable by broken variants. */
struct lock_ops {
	const char *name;
	unsigned int (*enqueue)(struct ufault_rangelock *rl, struct ufault_range *r);
	bool (*tryenqueue)(struct ufault_rangelock *rl, struct ufault_range *r);
	struct ufault_range *(*dequeue)(struct ufault_rangelock *rl, struct ufault_range *r);
};

enum prop { PROP_OK = 0, PROP_EXCLUSION, PROP_FIFO, PROP_TRYLOCK, PROP_WAKEUP, PROP_DEADLOCK };

static const char *const prop_names[] = {"ok",	    "exclusion",    "fifo",
					 "trylock", "lost wake-up", "deadlock"};

enum req_state { RQ_IDLE, RQ_WAITING, RQ_HELD, RQ_DONE, RQ_TRYFAIL };

struct req {
	struct ufault_range node;
	uint8_t state;
	int arrival;
};

struct thr {
	int pc;
	int phase; /* 0: at op start, 1: waiting for grant, 2: delivering wakes */
	struct ufault_range *pending;
};

struct world {
	struct ufault_rangelock rl;
	struct req req[NREQ];
	struct thr th[NTHREADS];
	int arrivals;
};

struct memo_entry {
	uint8_t key[KEY_LEN];
	uint64_t paths;
	bool used;
};

#define MEMO_SIZE (1u << 18)

static struct checker {
	const struct script *sc;
	const struct lock_ops *ops;
	struct world w;
	uint8_t path[MAX_DEPTH];
	struct memo_entry *memo;
	uint32_t *used_slots; /* to clear the table in O(states) */
	uint64_t states;
	enum prop fail;
	char msg[256];
	bool verbose;
	bool no_memo; /* plain enumeration of every interleaving, for cross-checking */
} C;

static uint64_t total_states, total_paths;

static struct req *req_of(struct world *w, const struct ufault_range *n)
{
	return (struct req *)((char *)n - offsetof(struct req, node));
}

static int req_id(struct world *w, const struct ufault_range *n)
{
	return (int)(req_of(w, n) - w->req);
}

static bool active(const struct req *q)
{
	return q->state == RQ_WAITING || q->state == RQ_HELD;
}

/* Spec: is there an active request earlier than @b that conflicts with it? */
static bool spec_blocked(struct world *w, const struct req *b, unsigned int *count)
{
	unsigned int n = 0;

	for (int i = 0; i < NREQ; i++) {
		const struct req *x = &w->req[i];

		if (x != b && active(x) && x->arrival < b->arrival &&
		    ufault__range_conflict(&x->node, &b->node))
			n++;
	}
	if (count)
		*count = n;
	return n != 0;
}

static void violation(enum prop p, const char *fmt, ...)
{
	va_list ap;

	if (C.fail)
		return;
	C.fail = p;
	va_start(ap, fmt);
	vsnprintf(C.msg, sizeof(C.msg), fmt, ap);
	va_end(ap);
}

/* @b returns from its lock call: it owns its range from here on. */
static void acquire(struct world *w, struct req *b)
{
	for (int i = 0; i < NREQ; i++) {
		struct req *x = &w->req[i];

		if (x != b && x->state == RQ_HELD && ufault__range_conflict(&x->node, &b->node))
			violation(PROP_EXCLUSION, "req %d acquired while req %d holds",
				  (int)(b - w->req), i);
	}
	if (spec_blocked(w, b, NULL))
		violation(PROP_FIFO, "req %d acquired before an earlier conflicting request",
			  (int)(b - w->req));
	b->state = RQ_HELD;
}

static bool enabled(struct world *w, int t)
{
	const struct thr *th = &w->th[t];

	if (th->pc >= C.sc->nr_ops[t])
		return false;
	if (th->phase == 1) {
		const struct op *o = &C.sc->ops[t][th->pc];

		return ufault__range_is_granted(&w->req[t * MAX_SLOTS + o->slot].node);
	}
	return true;
}

static void step(struct world *w, int t)
{
	struct thr *th = &w->th[t];
	const struct op *o = &C.sc->ops[t][th->pc];
	struct req *q = &w->req[t * MAX_SLOTS + o->slot];
	bool ok, spec_ok;

	if (th->phase == 2) { /* grant + wake one waiter */
		struct ufault_range *n = th->pending;

		th->pending = n->wake_next;
		ufault__range_mark_granted(n);
		if (!th->pending) {
			th->phase = 0;
			th->pc++;
		}
		return;
	}
	if (th->phase == 1) { /* the waiter sees its grant and returns */
		acquire(w, q);
		th->phase = 0;
		th->pc++;
		return;
	}
	switch (o->kind) {
	case OP_LOCK:
		q->node.start = o->start;
		q->node.end = o->end;
		q->node.writer = o->writer;
		q->arrival = w->arrivals++;
		q->state = RQ_WAITING;
		if (C.ops->enqueue(&w->rl, &q->node) == 0) {
			acquire(w, q);
			th->pc++;
		} else {
			th->phase = 1;
		}
		break;
	case OP_TRY:
		q->node.start = o->start;
		q->node.end = o->end;
		q->node.writer = o->writer;
		q->arrival = w->arrivals;
		q->state = RQ_WAITING;
		spec_ok = !spec_blocked(w, q, NULL);
		ok = C.ops->tryenqueue(&w->rl, &q->node);
		if (ok != spec_ok)
			violation(PROP_TRYLOCK, "trylock req %d returned %d, spec says %d",
				  (int)(q - w->req), ok, spec_ok);
		if (ok) {
			w->arrivals++;
			acquire(w, q);
		} else {
			q->state = RQ_TRYFAIL;
		}
		th->pc++;
		break;
	case OP_UNLOCK:
		if (q->state == RQ_TRYFAIL) {
			q->state = RQ_DONE;
			th->pc++;
			break;
		}
		assert_int_equal(q->state, RQ_HELD); /* script error otherwise */
		q->state = RQ_DONE;
		th->pending = C.ops->dequeue(&w->rl, &q->node);
		if (th->pending)
			th->phase = 2;
		else
			th->pc++;
		break;
	}
}

static bool in_pending(struct world *w, const struct req *b)
{
	for (int t = 0; t < NTHREADS; t++)
		for (struct ufault_range *n = w->th[t].pending; n; n = n->wake_next)
			if (n == &b->node)
				return true;
	return false;
}

static void check_state(struct world *w)
{
	for (int i = 0; i < NREQ; i++) {
		struct req *b = &w->req[i];
		bool owner = active(b) && ufault__range_is_granted(&b->node);

		if (!active(b))
			continue;
		/* (1) owners, whether returned or only granted, never conflict. */
		for (int j = i + 1; j < NREQ; j++) {
			struct req *x = &w->req[j];

			if (owner && active(x) && ufault__range_is_granted(&x->node) &&
			    ufault__range_conflict(&x->node, &b->node))
				violation(PROP_EXCLUSION, "reqs %d and %d both own", i, j);
		}
		if (b->state != RQ_WAITING)
			continue;
		/* (3) runnable per spec <=> granted or about to be. */
		if (!spec_blocked(w, b, NULL)) {
			if (!owner && !in_pending(w, b))
				violation(PROP_WAKEUP,
					  "req %d has no blockers left but nobody will wake it", i);
		} else if (owner || in_pending(w, b)) {
			violation(PROP_FIFO, "req %d granted while an earlier conflict is queued",
				  i);
		}
	}
}

static size_t state_key(struct world *w, uint8_t *key)
{
	size_t n = 0;
	int rank[NREQ];

	memset(key, 0, KEY_LEN);
	for (int t = 0; t < NTHREADS; t++) {
		key[n++] = (uint8_t)w->th[t].pc;
		key[n++] = (uint8_t)w->th[t].phase;
		for (struct ufault_range *p = w->th[t].pending; p; p = p->wake_next)
			key[n++] = (uint8_t)(1 + req_id(w, p));
		key[n++] = 0xff;
	}
	/* Arrival rank among active requests (absolute numbers differ by path). */
	for (int i = 0; i < NREQ; i++) {
		rank[i] = 0;
		for (int j = 0; j < NREQ; j++)
			rank[i] += active(&w->req[i]) && active(&w->req[j]) &&
				   w->req[j].arrival < w->req[i].arrival;
	}
	for (int i = 0; i < NREQ; i++) {
		const struct req *q = &w->req[i];

		key[n++] = q->state;
		key[n++] = (uint8_t)(active(q) ? rank[i] : 0);
		key[n++] = active(q) ? (uint8_t)(q->node.blocking | q->node.granted << 7) : 0;
	}
	for (struct ufault_range *p = w->rl.head; p; p = p->next)
		key[n++] = (uint8_t)(1 + req_id(w, p));
	assert_true(n <= KEY_LEN);
	return n;
}

static uint64_t key_hash(const uint8_t *key)
{
	uint64_t h = 1469598103934665603ull;

	for (int i = 0; i < KEY_LEN; i++)
		h = (h ^ key[i]) * 1099511628211ull;
	return h;
}

static struct memo_entry *memo_slot(const uint8_t *key)
{
	for (uint64_t i = key_hash(key);; i++) {
		struct memo_entry *e = &C.memo[i & (MEMO_SIZE - 1)];

		if (!e->used || memcmp(e->key, key, KEY_LEN) == 0)
			return e;
	}
}

static void replay(int depth)
{
	memset(&C.w, 0, sizeof(C.w));
	ufault_rangelock_init(&C.w.rl);
	for (int d = 0; d < depth; d++)
		step(&C.w, C.path[d]);
}

static void report_path(int depth)
{
	char buf[MAX_DEPTH * 2 + 1];

	for (int d = 0; d < depth; d++) {
		buf[2 * d] = (char)('0' + C.path[d]);
		buf[2 * d + 1] = ' ';
	}
	buf[depth * 2] = 0;
	snprintf(C.msg + strlen(C.msg), sizeof(C.msg) - strlen(C.msg), " [schedule: %s]", buf);
}

static uint64_t explore(int depth)
{
	uint8_t key[KEY_LEN];
	struct memo_entry *e;
	uint64_t paths = 0;
	bool any = false;

	replay(depth);
	if (C.fail) {
		report_path(depth);
		return 0;
	}
	state_key(&C.w, key);
	e = memo_slot(key);
	if (e->used && !C.no_memo)
		return e->paths;
	check_state(&C.w);
	if (C.fail) {
		report_path(depth);
		return 0;
	}
	assert_true(depth < MAX_DEPTH);
	for (int t = 0; t < NTHREADS && !C.fail; t++) {
		if (!enabled(&C.w, t))
			continue;
		any = true;
		C.path[depth] = (uint8_t)t;
		paths += explore(depth + 1);
		replay(depth); /* the child changed the world */
	}
	if (C.fail)
		return 0;
	if (!any) {
		for (int t = 0; t < NTHREADS; t++)
			if (C.w.th[t].pc < C.sc->nr_ops[t])
				violation(PROP_DEADLOCK, "thread %d stuck at op %d", t,
					  C.w.th[t].pc);
		if (C.w.rl.head || C.w.rl.nr)
			violation(PROP_DEADLOCK, "queue not empty at the end");
		if (C.fail) {
			report_path(depth);
			return 0;
		}
		paths = 1;
	}
	/* Assert the slot is still free: the table must not fill up. */
	assert_true(C.states < MEMO_SIZE / 2);
	e = memo_slot(key); /* children may have taken the slot found above */
	if (e->used)
		return paths; /* no_memo: state seen on another interleaving */
	memcpy(e->key, key, KEY_LEN);
	e->paths = paths;
	e->used = true;
	C.used_slots[C.states++] = (uint32_t)(e - C.memo);
	return paths;
}

/* Returns the first violated property; counts states and interleavings. */
static enum prop check_script(const struct script *sc, const struct lock_ops *ops, uint64_t *states,
			      uint64_t *paths)
{
	uint64_t p;

	C.sc = sc;
	C.ops = ops;
	C.fail = PROP_OK;
	C.msg[0] = 0;
	for (uint64_t i = 0; i < C.states; i++)
		C.memo[C.used_slots[i]].used = false;
	C.states = 0;
	p = explore(0);
	if (states)
		*states = C.states;
	if (paths)
		*paths = p;
	if (C.fail && C.verbose)
		printf("  %s / %s: %s: %s\n", sc->name, ops->name, prop_names[C.fail], C.msg);
	return C.fail;
}

/* ---- scripts --------------------------------------------------------------- */

#define L(s, w, a, b)                                                                              \
	{                                                                                          \
		OP_LOCK, s, w, a, b                                                                \
	}
#define T(s, w, a, b)                                                                              \
	{                                                                                          \
		OP_TRY, s, w, a, b                                                                 \
	}
#define U(s)                                                                                       \
	{                                                                                          \
		OP_UNLOCK, s, 0, 0, 0                                                              \
	}
#define R 0
#define W 1

static const struct script scripts[] = {
    {"writers, one range",
     {4, 4, 4},
     {{L(0, W, 0, 2), U(0), L(1, W, 0, 2), U(1)},
      {L(0, W, 0, 2), U(0), L(1, W, 0, 2), U(1)},
      {L(0, W, 0, 2), U(0), L(1, W, 0, 2), U(1)}}},
    {"reader, writer, overlapping reader (no stealing)",
     {4, 4, 4},
     {{L(0, R, 0, 2), U(0), L(1, R, 0, 2), U(1)},
      {L(0, W, 0, 2), U(0), L(1, W, 1, 3), U(1)},
      {L(0, R, 1, 3), U(0), L(1, R, 0, 4), U(1)}}},
    {"overlap chain",
     {4, 4, 4},
     {{L(0, R, 0, 4), U(0), L(1, W, 1, 2), U(1)},
      {L(0, W, 1, 3), U(0), L(1, R, 0, 2), U(1)},
      {L(0, R, 2, 4), U(0), L(1, W, 0, 4), U(1)}}},
    {"nested overlap",
     {2, 4, 4},
     {{L(0, W, 0, 4), U(0)},
      {L(0, R, 1, 2), U(0), L(1, R, 0, 2), U(1)},
      {L(0, W, 1, 2), U(0), L(1, R, 0, 4), U(1)}}},
    {"disjoint and adjacent",
     {4, 4, 4},
     {{L(0, W, 0, 2), U(0), L(1, W, 0, 2), U(1)},
      {L(0, W, 2, 4), U(0), L(1, R, 2, 4), U(1)},
      {L(0, W, 4, 6), U(0), L(1, W, 0, 6), U(1)}}},
    {"trylock inside a held range",
     {4, 4, 4},
     {{L(0, R, 0, 4), T(1, W, 1, 2), U(1), U(0)},
      {L(0, W, 1, 3), U(0), T(1, R, 0, 1), U(1)},
      {T(0, R, 0, 2), U(0), L(1, W, 2, 4), U(1)}}},
    {"readers share, one writer",
     {4, 4, 4},
     {{L(0, R, 0, 4), U(0), L(1, R, 1, 3), U(1)},
      {L(0, R, 1, 2), U(0), L(1, R, 0, 2), U(1)},
      {L(0, W, 1, 3), U(0), L(1, R, 2, 4), U(1)}}},
    {"three requests each",
     {6, 6, 6},
     {{L(0, W, 0, 2), U(0), L(1, R, 0, 4), U(1), L(2, W, 2, 3), U(2)},
      {L(0, R, 1, 3), U(0), L(1, W, 3, 4), U(1), T(2, W, 0, 1), U(2)},
      {L(0, W, 1, 4), U(0), L(1, R, 0, 1), U(1), L(2, R, 2, 4), U(2)}}},
};

/* Sanitizers slow the single-threaded search ~20x; keep the run to seconds. */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define NR_RANDOM_SCRIPTS 100
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define NR_RANDOM_SCRIPTS 100
#endif
#endif
#if NR_RANDOM_SCRIPTS == 100
#define UNMEMO_MAX 15000
#else
#define UNMEMO_MAX 40000
#endif
#ifndef NR_RANDOM_SCRIPTS
#define NR_RANDOM_SCRIPTS 600
#endif

static void random_script(struct script *sc, unsigned int *seed)
{
	static const uint8_t ranges[][2] = {{0, 2}, {1, 3}, {2, 4}, {0, 4}, {1, 2}, {3, 4}};

	sc->name = "generated";
	for (int t = 0; t < NTHREADS; t++) {
		int n = 0;
		uint8_t nr_req = 2 + rand_r(seed) % 2;

		for (uint8_t s = 0; s < nr_req; s++) {
			const uint8_t *rg = ranges[rand_r(seed) % 6];
			uint8_t w = rand_r(seed) % 2;

			if (rand_r(seed) % 4 == 0)
				sc->ops[t][n++] = (struct op)T(s, w, rg[0], rg[1]);
			else
				sc->ops[t][n++] = (struct op)L(s, w, rg[0], rg[1]);
			sc->ops[t][n++] = (struct op)U(s);
		}
		sc->nr_ops[t] = n;
	}
}

/* ---- broken variants: the checker must catch each ------------------------- */

static unsigned int real_enqueue(struct ufault_rangelock *rl, struct ufault_range *r)
{
	return ufault__rangelock_enqueue(rl, r);
}

static bool real_tryenqueue(struct ufault_rangelock *rl, struct ufault_range *r)
{
	return ufault__rangelock_tryenqueue(rl, r);
}

static struct ufault_range *real_dequeue(struct ufault_rangelock *rl, struct ufault_range *r)
{
	return ufault__rangelock_dequeue(rl, r);
}

/* Forgets to wake the waiters that became runnable. */
static struct ufault_range *lost_wake_dequeue(struct ufault_rangelock *rl, struct ufault_range *r)
{
	ufault__rangelock_dequeue(rl, r);
	return NULL;
}

/* Grants every request at once. */
static unsigned int no_exclusion_enqueue(struct ufault_rangelock *rl, struct ufault_range *r)
{
	ufault__rangelock_enqueue(rl, r);
	ufault__range_mark_granted(r);
	return 0;
}

/* Counts only owners: a reader slips past a waiting writer (lock stealing). */
static bool conflicts_with_owner(struct ufault_rangelock *rl, struct ufault_range *r)
{
	for (struct ufault_range *e = rl->head; e; e = e->next)
		if (e != r && e->granted && ufault__range_conflict(e, r))
			return true;
	return false;
}

static unsigned int stealing_enqueue(struct ufault_rangelock *rl, struct ufault_range *r)
{
	unsigned int n = ufault__rangelock_enqueue(rl, r);

	if (n && !conflicts_with_owner(rl, r)) {
		ufault__range_mark_granted(r); /* blocking stays n: dequeue remains consistent */
		return 0;
	}
	return n;
}

static bool stealing_tryenqueue(struct ufault_rangelock *rl, struct ufault_range *r)
{
	if (conflicts_with_owner(rl, r))
		return false;
	ufault__rangelock_enqueue(rl, r);
	ufault__range_mark_granted(r);
	return true;
}

static const struct lock_ops real_ops = {"real", real_enqueue, real_tryenqueue, real_dequeue};

static int setup(void **state)
{
	C.memo = calloc(MEMO_SIZE, sizeof(*C.memo));
	C.used_slots = calloc(MEMO_SIZE / 2, sizeof(*C.used_slots));
	return C.memo && C.used_slots ? 0 : -1;
}

static int teardown(void **state)
{
	free(C.memo);
	free(C.used_slots);
	printf("model: %llu states checked, %llu complete interleavings covered in total\n",
	       (unsigned long long)total_states, (unsigned long long)total_paths);
	return 0;
}

static void test_model_scripts(void **state)
{
	C.verbose = true;
	for (size_t i = 0; i < sizeof(scripts) / sizeof(scripts[0]); i++) {
		uint64_t s, p;
		enum prop f = check_script(&scripts[i], &real_ops, &s, &p);

		printf("  %-50s %8llu states %14llu interleavings\n", scripts[i].name,
		       (unsigned long long)s, (unsigned long long)p);
		assert_int_equal(f, PROP_OK);
		assert_true(p > 0);
		total_states += s;
		total_paths += p;
	}
}

static void test_model_generated(void **state)
{
	unsigned int seed = 20240601;
	uint64_t states = 0, paths = 0;
	struct script sc;

	C.verbose = true;
	for (int i = 0; i < NR_RANDOM_SCRIPTS; i++) {
		uint64_t s, p;

		random_script(&sc, &seed);
		assert_int_equal(check_script(&sc, &real_ops, &s, &p), PROP_OK);
		states += s;
		paths += p;
	}
	printf("  %d generated scripts: %llu states, %llu interleavings\n", NR_RANDOM_SCRIPTS,
	       (unsigned long long)states, (unsigned long long)paths);
	total_states += states;
	total_paths += paths;
}

/*
 * Memoisation is sound only if the state key captures everything the future
 * depends on: on the smaller scripts, walk every interleaving one by one
 * (checking every state on every path) and compare the counts.
 */
static void test_model_unmemoised(void **state)
{
	uint64_t walked = 0;

	C.verbose = true;
	for (size_t i = 0; i < sizeof(scripts) / sizeof(scripts[0]); i++) {
		uint64_t s1, p1, s2, p2;

		assert_int_equal(check_script(&scripts[i], &real_ops, &s1, &p1), PROP_OK);
		if (p1 > UNMEMO_MAX)
			continue;
		C.no_memo = true;
		assert_int_equal(check_script(&scripts[i], &real_ops, &s2, &p2), PROP_OK);
		C.no_memo = false;
		assert_int_equal(p1, p2);
		assert_int_equal(s1, s2);
		walked += p2;
	}
	printf("  %llu interleavings walked one by one, counts match\n",
	       (unsigned long long)walked);
}

/* Each broken variant must be caught by the property it breaks. */
static void test_model_catches_bugs(void **state)
{
	static const struct {
		struct lock_ops ops;
		enum prop expect;
	} mutants[] = {
	    {{"lost wake-up", real_enqueue, real_tryenqueue, lost_wake_dequeue}, PROP_WAKEUP},
	    {{"no exclusion", no_exclusion_enqueue, real_tryenqueue, real_dequeue}, PROP_EXCLUSION},
	    {{"stealing lock", stealing_enqueue, real_tryenqueue, real_dequeue}, PROP_FIFO},
	    {{"stealing trylock", real_enqueue, stealing_tryenqueue, real_dequeue}, PROP_TRYLOCK},
	};

	C.verbose = true;
	for (size_t m = 0; m < sizeof(mutants) / sizeof(mutants[0]); m++) {
		bool caught = false;

		for (size_t i = 0; i < sizeof(scripts) / sizeof(scripts[0]); i++) {
			enum prop f = check_script(&scripts[i], &mutants[m].ops, NULL, NULL);

			if (f != PROP_OK) {
				assert_string_equal(prop_names[f], prop_names[mutants[m].expect]);
				caught = true;
			}
		}
		assert_true(caught);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_model_scripts),
	    cmocka_unit_test(test_model_generated),
	    cmocka_unit_test(test_model_unmemoised),
	    cmocka_unit_test(test_model_catches_bugs),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
