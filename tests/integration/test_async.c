/* SPDX-License-Identifier: MIT */
/*
 * test_async.c - asynchronous sources (UFAULT_SOURCE_ASYNC): the fill
 * function only starts a fill, ufault_complete() ends it, from any thread.
 *
 * The source here is a small harness: its fill function queues (completion,
 * offset, buffer) to a completer thread, which writes tu_pattern() into the
 * buffer and completes, optionally after a short batching delay or only once
 * the test opens a gate; per page it can also complete inline (inside the
 * fill function), fail to start, or complete with -EIO or a positive value.
 * The harness counts the fills started, and the most it ever saw in flight
 * at once (decremented just before ufault_complete(), so the count never
 * exceeds what is truly in flight).
 *
 * What is checked, in every lock mode:
 *  - oracle: 16 threads fault on distinct pages while fills are in flight
 *    on 2 workers with max_inflight 8: every byte is right, fills overlap
 *    (more than one in flight at once) and never exceed 2 * 8;
 *  - join: faults on a page whose fill is in flight wait for it (one fill,
 *    stats.joined counts them), also on another system page of a larger
 *    region page; and a region page cut behind ufault's back (plain
 *    mprotect(2)) while a joiner waits still serves the joiner;
 *  - inline completion, one request slot (max_inflight 1): nothing leaks;
 *  - errors (start fails, completes with -EIO, completes with a positive
 *    value): zeros with UFAULT_REGION_ON_ERROR_ZERO, SIGBUS by default (in
 *    forked children), counted in source_errors;
 *  - ufault_ctx_destroy() waits for a pending fill, and leaves no thread
 *    parked;
 *  - back-pressure: with max_inflight 2 and one worker, exactly two fills
 *    are started while both are held;
 *  - proxies: ufault_region_unregister() with a fill in flight (spec: it
 *    returns at once, the release hook waits for the completion; other
 *    modes: it waits), ufault_munmap() of the page being filled (waits in
 *    region, range and global mode; not in spec mode), MAP_FIXED over a
 *    page being filled and joined (old or new bytes, never zeros);
 *  - the latency histogram counts every fault once, joined and completed
 *    asynchronously included: its sum equals stats.faults once quiet.
 *
 * Assertions are on behaviour only. The short sleeps before "has not
 * returned / has not started more" checks give a wrong implementation the
 * chance to show itself; bounded waits (joins with a deadline, polls of the
 * stats) and the watchdog only turn a hang into a failure.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <linux/userfaultfd.h>

#include <cmocka.h>

#include "../modes.h"

#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif

#define MODE ufault_lock_mode_name(tu_mode)
/* How long "has not returned yet" is watched before it is checked. */
#define SETTLE_US 50000
/* Bound on waits that only keep a hang from stalling the run. */
#define BOUND_S 10

static size_t ps;

/* ------------------------------------------------------------------ */
/* The asynchronous source harness                                      */
/* ------------------------------------------------------------------ */

enum act {
	ACT_OK,		  /* queued to the completer: pattern, then complete(0) */
	ACT_INLINE,	  /* pattern and complete(0) inside the fill function */
	ACT_START_FAIL,	  /* the fill function returns -EIO, no completion */
	ACT_COMPLETE_EIO, /* the completer completes with -EIO */
	ACT_COMPLETE_POS, /* the completer completes with 5 (counts as -EIO) */
};

struct job {
	struct ufault_completion *c;
	void *buf;
	size_t len;
	uint64_t off;
	int result;
};

#define QCAP 1024
#define CALLS_MAX 512

struct afill {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* broadcast on every change */
	/* settings: before afill_start() */
	uint64_t seed;
	uint64_t base_off; /* source offset of the region start */
	size_t rpage;	   /* region page size */
	size_t npages;	   /* region pages counted in calls[] */
	unsigned int delay_us;
	bool gated;	   /* the completer waits for afill_open() */
	bool hold_overlap; /* the first completion waits until 2 are in flight */
	enum act (*act_of)(uint64_t idx);
	/* under lock */
	bool open, stop;
	struct job q[QCAP];
	unsigned int qn;
	unsigned int started, start_failed, completed;
	unsigned int returned; /* ufault_complete() calls that returned */
	unsigned int outstanding, max_outstanding;
	unsigned int calls[CALLS_MAX]; /* fills started per region page */
	unsigned int releases;
	pthread_t thread;
};

static void afill_init(struct afill *h, uint64_t seed, size_t npages)
{
	memset(h, 0, sizeof(*h));
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	h->seed = seed;
	h->rpage = ps;
	h->npages = npages;
	assert_true(npages <= CALLS_MAX);
}

static void job_finish(struct afill *h, struct job *j)
{
	if (!j->result)
		tu_pattern_fill(j->buf, j->len, j->off, h->seed);
	pthread_mutex_lock(&h->lock);
	h->outstanding--; /* before the completion: never counts too many */
	h->completed++;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	ufault_complete(j->c, j->result);
	pthread_mutex_lock(&h->lock);
	h->returned++;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
}

static int afill_fill(void *arg, uint64_t offset, void *buf, size_t len,
		      struct ufault_completion *c)
{
	struct afill *h = arg;
	uint64_t idx = (offset - h->base_off) / h->rpage;
	enum act a = h->act_of ? h->act_of(idx) : ACT_OK;
	struct job j = {.c = c, .buf = buf, .len = len, .off = offset};

	pthread_mutex_lock(&h->lock);
	h->started++;
	if (idx < h->npages)
		h->calls[idx]++;
	if (a == ACT_START_FAIL) {
		h->start_failed++;
		pthread_cond_broadcast(&h->cond);
		pthread_mutex_unlock(&h->lock);
		return -EIO;
	}
	if (++h->outstanding > h->max_outstanding)
		h->max_outstanding = h->outstanding;
	pthread_cond_broadcast(&h->cond);
	if (a == ACT_INLINE) {
		pthread_mutex_unlock(&h->lock);
		job_finish(h, &j);
		return 0;
	}
	j.result = a == ACT_COMPLETE_EIO ? -EIO : a == ACT_COMPLETE_POS ? 5 : 0;
	if (h->qn == QCAP) {
		fprintf(stderr, "afill: queue overflow\n");
		abort();
	}
	h->q[h->qn++] = j;
	pthread_mutex_unlock(&h->lock);
	return 0;
}

static void afill_release(void *arg)
{
	struct afill *h = arg;

	pthread_mutex_lock(&h->lock);
	h->releases++;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
}

static void *completer_main(void *arg)
{
	struct afill *h = arg;
	struct job *batch = calloc(QCAP, sizeof(*batch));

	if (!batch)
		abort();
	pthread_mutex_lock(&h->lock);
	for (;;) {
		unsigned int n;

		while (!h->stop && (!h->qn || (h->gated && !h->open)))
			pthread_cond_wait(&h->cond, &h->lock);
		if (!h->qn && h->stop)
			break;
		if (h->hold_overlap) {
			/* Make overlap certain rather than likely: hold the
			 * first completion until a second fill started (or,
			 * with too few faults, for a bounded while). */
			struct timespec dl;

			clock_gettime(CLOCK_REALTIME, &dl);
			dl.tv_sec += 2 * tu_slowdown();
			while (!h->stop && h->max_outstanding < 2 &&
			       pthread_cond_timedwait(&h->cond, &h->lock, &dl) != ETIMEDOUT)
				;
			h->hold_overlap = false;
		}
		if (h->delay_us) {
			/* Batch: completions arrive in bursts, as from I/O. */
			pthread_mutex_unlock(&h->lock);
			usleep(h->delay_us);
			pthread_mutex_lock(&h->lock);
		}
		n = h->qn;
		memcpy(batch, h->q, n * sizeof(*batch));
		h->qn = 0;
		pthread_mutex_unlock(&h->lock);
		for (unsigned int i = 0; i < n; i++)
			job_finish(h, &batch[i]);
		pthread_mutex_lock(&h->lock);
	}
	pthread_mutex_unlock(&h->lock);
	free(batch);
	return NULL;
}

static void afill_start(struct afill *h)
{
	if (pthread_create(&h->thread, NULL, completer_main, h))
		tu_die("pthread_create", errno);
}

static void afill_open(struct afill *h)
{
	pthread_mutex_lock(&h->lock);
	h->open = true;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
}

/* Completes whatever is queued, then ends the thread. Call after the
 * context is destroyed: a fill started later would never complete. */
static void afill_stop(struct afill *h)
{
	pthread_mutex_lock(&h->lock);
	h->open = true;
	h->stop = true;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	pthread_join(h->thread, NULL);
}

static unsigned int afill_get(struct afill *h, const unsigned int *field)
{
	unsigned int v;

	pthread_mutex_lock(&h->lock);
	v = *field;
	pthread_mutex_unlock(&h->lock);
	return v;
}

/* Block until @n fills were started (the watchdog bounds it). */
static void afill_wait_started(struct afill *h, unsigned int n)
{
	pthread_mutex_lock(&h->lock);
	while (h->started < n)
		pthread_cond_wait(&h->cond, &h->lock);
	pthread_mutex_unlock(&h->lock);
}

/* Wait, bounded, until the release hook ran @n times; returns the count. */
static unsigned int afill_wait_releases(struct afill *h, unsigned int n)
{
	uint64_t end = tu_now_ns() + (uint64_t)BOUND_S * tu_slowdown() * 1000000000ull;
	unsigned int v;

	while ((v = afill_get(h, &h->releases)) < n && tu_now_ns() < end)
		usleep(1000);
	return v;
}

static struct ufault_source afill_source(struct afill *h)
{
	struct ufault_source s;

	ufault_source_init(&s, UFAULT_SOURCE_ASYNC);
	s.offset = h->base_off;
	s.async.fill = afill_fill;
	s.async.arg = h;
	return s;
}

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */
/* ------------------------------------------------------------------ */

static struct ufault_ctx *new_ctx(unsigned int workers, size_t max_inflight)
{
	struct ufault_ctx *ctx = NULL;
	struct ufault_config cfg;

	ufault_config_init(&cfg);
	cfg.lock_mode = tu_mode;
	cfg.nr_workers = workers;
	cfg.nr_uffds = 1;
	cfg.max_inflight = max_inflight;
	assert_int_equal(tu_ctx_create_cfg(&ctx, &cfg), 0);
	return ctx;
}

static struct ufault_stats get_stats(struct ufault_ctx *ctx)
{
	struct ufault_stats st;

	memset(&st, 0, sizeof(st));
	st.size = sizeof(st);
	assert_int_equal(ufault_stats(ctx, &st), 0);
	return st;
}

static uint64_t deadline(void)
{
	return tu_now_ns() + (uint64_t)BOUND_S * tu_slowdown() * 1000000000ull;
}

/* Poll until stats.joined >= @n (bounded); returns the last value. */
static uint64_t wait_joined(struct ufault_ctx *ctx, uint64_t n)
{
	uint64_t end = deadline(), v;

	while ((v = get_stats(ctx).joined) < n && tu_now_ns() < end)
		usleep(1000);
	return v;
}

/* Join @t within @secs (scaled): 0, or ETIMEDOUT (the thread is still
 * parked). */
static int join_within(pthread_t t, unsigned int secs)
{
	struct timespec dl;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += secs * tu_slowdown();
	return pthread_timedjoin_np(t, NULL, &dl);
}

static int join_bounded(pthread_t t)
{
	return join_within(t, BOUND_S);
}

static uint64_t hist_sum(struct ufault_ctx *ctx)
{
	int n = ufault_stats_histogram(ctx, NULL, 0);
	uint64_t *b, sum = 0;

	assert_true(n > 0);
	b = calloc((size_t)n, sizeof(*b));
	assert_non_null(b);
	assert_int_equal(ufault_stats_histogram(ctx, b, (unsigned int)n), n);
	for (int i = 0; i < n; i++)
		sum += b[i];
	free(b);
	return sum;
}

/*
 * Before ufault_ctx_destroy() in the tests that are not about it: wait
 * (bounded) until every fault message read was settled (one histogram
 * sample each) and every fill started was completed and its
 * ufault_complete() call has returned. A destroy that races a completion
 * still inside ufault_complete() is test_destroy_waits' subject.
 */
static void afill_quiesce(struct afill *h, struct ufault_ctx *ctx)
{
	uint64_t end = deadline();

	do {
		bool idle;

		pthread_mutex_lock(&h->lock);
		idle = !h->qn && h->returned == h->started - h->start_failed;
		pthread_mutex_unlock(&h->lock);
		if (idle && hist_sum(ctx) == get_stats(ctx).faults)
			return;
		usleep(1000);
	} while (tu_now_ns() < end);
}

static void check_page(const char *base, size_t pg, size_t rpage, uint64_t off, uint64_t seed)
{
	const char *p = base + pg * rpage;
	long bad = tu_pattern_check(p, rpage, off, seed);

	if (bad >= 0)
		fail_msg("[%s] page %zu byte %ld is 0x%02x, expected 0x%02x%s", MODE, pg, bad,
			 (unsigned char)p[bad], tu_pattern(off + (uint64_t)bad, seed),
			 tu_zero_check(p, rpage) == -1 ? " (all zeros)" : "");
}

/* A thread that touches one byte (a read, or a write of the byte the
 * pattern has there) and keeps what it read. With @guard, a SIGSEGV (the
 * page unmapped under it) is caught and recorded. */
struct touch {
	const char *p;
	bool write;
	unsigned char wval;
	bool guard;
	unsigned char got;
	bool segv;
	unsigned int done; /* atomic */
};

static __thread sigjmp_buf segv_jmp;
static __thread volatile sig_atomic_t segv_armed;

static void segv_handler(int sig)
{
	if (segv_armed) {
		segv_armed = 0;
		siglongjmp(segv_jmp, 1);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static void *touch_main(void *arg)
{
	struct touch *t = arg;

	if (t->guard) {
		if (sigsetjmp(segv_jmp, 1)) {
			t->segv = true;
			goto out;
		}
		segv_armed = 1;
	}
	if (t->write) {
		*(volatile unsigned char *)t->p = t->wval;
		t->got = tu_read_byte(t->p);
	} else {
		t->got = tu_read_byte(t->p);
	}
	segv_armed = 0;
out:
	__atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static pthread_t touch_start(struct touch *t, const char *p)
{
	pthread_t th;

	t->p = p;
	t->done = 0;
	t->segv = false;
	if (pthread_create(&th, NULL, touch_main, t))
		tu_die("pthread_create", errno);
	return th;
}

static bool touch_done(struct touch *t)
{
	return __atomic_load_n(&t->done, __ATOMIC_ACQUIRE);
}

/* ------------------------------------------------------------------ */
/* 1. Oracle with fills in flight                                       */
/* ------------------------------------------------------------------ */

#define ORACLE_PAGES 512
#define ORACLE_THREADS 16
#define ORACLE_WORKERS 2
#define ORACLE_INFLIGHT 8

struct oracle {
	char *base;
	unsigned int id;
	uint64_t seed;
};

/* Thread id touches pages id, id + 16, ...: distinct from every other
 * thread's; odd threads write (the byte the pattern has), even ones read. */
static void *oracle_main(void *arg)
{
	struct oracle *o = arg;

	for (size_t pg = o->id; pg < ORACLE_PAGES; pg += ORACLE_THREADS) {
		size_t at = pg * ps + (pg * 37) % ps;

		if (o->id & 1)
			*(volatile char *)(o->base + at) = (char)tu_pattern(at, o->seed);
		else
			(void)tu_read_byte(o->base + at);
	}
	return NULL;
}

static void test_oracle_in_flight(void **state)
{
	struct ufault_ctx *ctx = new_ctx(ORACLE_WORKERS, ORACLE_INFLIGHT);
	struct oracle o[ORACLE_THREADS];
	pthread_t th[ORACLE_THREADS];
	struct afill h;
	struct ufault_source s;
	struct ufault_stats st;
	unsigned int never = 0, max;
	char *base = tu_map_anon(ORACLE_PAGES * ps, 0);

	(void)state;
	afill_init(&h, 0xa51, ORACLE_PAGES);
	h.delay_us = 1000;
	h.hold_overlap = true;
	afill_start(&h);
	s = afill_source(&h);
	assert_int_equal(ufault_region_register(ctx, base, ORACLE_PAGES * ps, &s, 0, NULL), 0);

	for (unsigned int i = 0; i < ORACLE_THREADS; i++) {
		o[i] = (struct oracle){.base = base, .id = i, .seed = h.seed};
		assert_int_equal(pthread_create(&th[i], NULL, oracle_main, &o[i]), 0);
	}
	for (unsigned int i = 0; i < ORACLE_THREADS; i++)
		if (join_bounded(th[i]))
			fail_msg("[%s] faulting thread %u is still parked", MODE, i);
	for (size_t pg = 0; pg < ORACLE_PAGES; pg++)
		check_page(base, pg, ps, pg * ps, h.seed);

	st = get_stats(ctx);
	if (st.faults < ORACLE_PAGES)
		fail_msg("[%s] stats.faults %llu < %u pages first touched", MODE,
			 (unsigned long long)st.faults, ORACLE_PAGES);
	assert_int_equal(st.source_errors, 0);
	pthread_mutex_lock(&h.lock);
	max = h.max_outstanding;
	for (size_t pg = 0; pg < ORACLE_PAGES; pg++)
		never += !h.calls[pg];
	pthread_mutex_unlock(&h.lock);
	printf("  [%s] %u fills started, at most %u in flight at once\n", MODE,
	       afill_get(&h, &h.started), max);
	if (never)
		fail_msg("[%s] %u pages read right but were never filled", MODE, never);
	if (max < 2)
		fail_msg("[%s] fills never overlapped (at most %u in flight)", MODE, max);
	if (max > ORACLE_WORKERS * ORACLE_INFLIGHT)
		fail_msg("[%s] %u fills in flight at once, more than %u workers * max_inflight %u",
			 MODE, max, ORACLE_WORKERS, ORACLE_INFLIGHT);

	afill_quiesce(&h, ctx);
	ufault_ctx_destroy(ctx);
	afill_stop(&h);
	/* Every started fill was completed exactly once (none left over). */
	assert_int_equal(h.completed, h.started - h.start_failed);
	assert_int_equal(h.outstanding, 0);
	tu_unmap(base, ORACLE_PAGES * ps);
}

/* ------------------------------------------------------------------ */
/* 2. Join                                                              */
/* ------------------------------------------------------------------ */

/*
 * One worker (two sharing a uffd could each read one of the faults: the
 * second would then fill again and find EEXIST instead of joining). A
 * touches region page 1, its fill is held; B and C touch the same region
 * page at other bytes (with 64 KiB region pages, B on another system page).
 */
static void join_case(unsigned int shift)
{
	size_t rp = shift ? (size_t)1 << shift : ps;
	size_t len = 4 * rp;
	struct ufault_ctx *ctx = new_ctx(1, 0);
	struct touch a = {0}, b = {0}, c = {0};
	pthread_t ta, tb, tc;
	struct afill h;
	struct ufault_source s;
	uint64_t joined;
	char *base = tu_map_anon(len, rp);
	char *pg = base + rp;
	size_t ob = shift ? 5 * ps + 7 : 3000, oc = shift ? 3000 : ps - 1;
	int ra, rb, rc;

	afill_init(&h, 0x101 + shift, 4);
	h.rpage = rp;
	h.gated = true;
	afill_start(&h);
	s = afill_source(&h);
	assert_int_equal(
	    ufault_region_register(ctx, base, len, &s, UFAULT_REGION_PAGE_SHIFT(shift), NULL), 0);

	ta = touch_start(&a, pg + 10);
	afill_wait_started(&h, 1);
	tb = touch_start(&b, pg + ob);
	tc = touch_start(&c, pg + oc);
	joined = wait_joined(ctx, 2);
	/* Still held: nobody got the page, and no second fill started. */
	usleep(SETTLE_US);
	assert_false(touch_done(&a) || touch_done(&b) || touch_done(&c));
	assert_int_equal(afill_get(&h, &h.started), 1);
	afill_open(&h);
	ra = join_bounded(ta);
	rb = join_bounded(tb);
	rc = join_bounded(tc);
	if (ra || rb || rc) {
		ufault_ctx_destroy(ctx); /* wakes them: the joins below end */
		afill_stop(&h);
		fail_msg("[%s] shift %u: a thread is still parked after the fill completed (A %s, "
			 "B %s, C %s)",
			 MODE, shift, ra ? "parked" : "ok", rb ? "parked" : "ok",
			 rc ? "parked" : "ok");
	}
	if (joined < 2)
		fail_msg("[%s] shift %u: stats.joined %llu, expected >= 2", MODE, shift,
			 (unsigned long long)joined);
	assert_int_equal(a.got, tu_pattern(rp + 10, h.seed));
	assert_int_equal(b.got, tu_pattern(rp + ob, h.seed));
	assert_int_equal(c.got, tu_pattern(rp + oc, h.seed));
	check_page(base, 1, rp, rp, h.seed);
	assert_int_equal(afill_get(&h, &h.calls[1]), 1);
	assert_int_equal(afill_get(&h, &h.started), 1);
	check_page(base, 2, rp, 2 * rp, h.seed);

	afill_quiesce(&h, ctx);
	ufault_ctx_destroy(ctx);
	afill_stop(&h);
	tu_unmap(base, len);
}

static void test_join(void **state)
{
	(void)state;
	join_case(0);
	join_case(16);
}

/*
 * The README: if the application cuts a region page behind ufault's back
 * (plain mprotect(2)), the fault path installs just the faulting system
 * page. A joiner waiting on another system page of that region page must
 * then not be left parked: its own page has to be served (or it woken to
 * fault again).
 */
static void test_join_region_page_cut(void **state)
{
	const unsigned int shift = 16;
	size_t rp = (size_t)1 << shift, len = 4 * rp;
	struct ufault_ctx *ctx = new_ctx(1, 0);
	struct touch a = {0}, b = {0};
	pthread_t ta, tb;
	struct afill h;
	struct ufault_source s;
	char *base = tu_map_anon(len, rp);
	char *pg = base + rp;
	int ra, rb;

	(void)state;
	afill_init(&h, 0x1c7, 4);
	h.rpage = rp;
	h.gated = true;
	afill_start(&h);
	s = afill_source(&h);
	assert_int_equal(ufault_region_register(
			     ctx, base, len, &s,
			     UFAULT_REGION_ON_ERROR_ZERO | UFAULT_REGION_PAGE_SHIFT(shift), NULL),
			 0);
	ta = touch_start(&a, pg + 10);
	afill_wait_started(&h, 1);
	tb = touch_start(&b, pg + 3 * ps + 10);
	if (wait_joined(ctx, 1) < 1) {
		afill_open(&h);
		ufault_ctx_destroy(ctx);
		afill_stop(&h);
		fail_msg("[%s] B did not join A's fill", MODE);
	}
	/* Cut the region page: its second half read-only, A's and B's system
	 * pages stay writable. */
	assert_int_equal(mprotect(pg + rp / 2, rp / 2, PROT_READ), 0);
	afill_open(&h);
	/* A short bound: a thread parked here stays parked for good. */
	ra = join_within(ta, 2);
	rb = join_within(tb, 2);
	if (ra || rb) {
		ufault_ctx_destroy(ctx); /* unregisters: wakes whoever is parked */
		pthread_join(ta, NULL);
		pthread_join(tb, NULL);
		afill_stop(&h);
		fail_msg("[%s] after the region page was cut, %s%s still parked once the fill it "
			 "waited for had completed",
			 MODE, ra ? "A (the filling fault) " : "",
			 rb ? "B (the joined fault, on another system page)" : "");
	}
	assert_int_equal(a.got, tu_pattern(rp + 10, h.seed));
	assert_int_equal(b.got, tu_pattern(rp + 3 * ps + 10, h.seed));
	afill_quiesce(&h, ctx);
	ufault_ctx_destroy(ctx);
	afill_stop(&h);
	tu_unmap(base, len);
}

/* ------------------------------------------------------------------ */
/* 3. Inline completion                                                 */
/* ------------------------------------------------------------------ */

static enum act act_inline_even(uint64_t idx)
{
	return idx % 2 ? ACT_OK : ACT_INLINE;
}

static enum act act_inline_all(uint64_t idx)
{
	(void)idx;
	return ACT_INLINE;
}

/* Touch pages first, first + step, ... (n of them, modulo total). */
struct span {
	char *base;
	size_t first, n, step, total;
};

static void *span_main(void *arg)
{
	struct span *sp = arg;

	for (size_t i = 0; i < sp->n; i++)
		(void)tu_read_byte(sp->base + (sp->first + i * sp->step) % sp->total * ps + i % ps);
	return NULL;
}

/*
 * One worker with one request slot: a completion that leaks its slot
 * (inline or not) stops every later fault, so all pages are served only if
 * each one gives its slot back.
 */
static void inline_case(enum act (*act_of)(uint64_t), const char *what)
{
	enum { NPG = 64, NTHR = 4 };
	struct ufault_ctx *ctx = new_ctx(1, 1);
	struct span sp[NTHR];
	pthread_t th[NTHR];
	struct afill h;
	struct ufault_source s;
	char *base = tu_map_anon(NPG * ps, 0);

	afill_init(&h, 0x111, NPG);
	h.act_of = act_of;
	afill_start(&h);
	s = afill_source(&h);
	assert_int_equal(ufault_region_register(ctx, base, NPG * ps, &s, 0, NULL), 0);
	for (unsigned int i = 0; i < NTHR; i++) {
		sp[i] = (struct span){
		    .base = base, .first = i, .n = NPG / NTHR, .step = NTHR, .total = NPG};
		assert_int_equal(pthread_create(&th[i], NULL, span_main, &sp[i]), 0);
	}
	for (unsigned int i = 0; i < NTHR; i++)
		if (join_bounded(th[i]))
			fail_msg("[%s] %s: a faulting thread is still parked", MODE, what);
	for (size_t pg = 0; pg < NPG; pg++)
		check_page(base, pg, ps, pg * ps, h.seed);
	assert_int_equal(get_stats(ctx).source_errors, 0);
	afill_quiesce(&h, ctx);
	ufault_ctx_destroy(ctx);
	afill_stop(&h);
	assert_int_equal(h.completed, h.started);
	assert_true(h.max_outstanding <= 1);
	tu_unmap(base, NPG * ps);
}

static void test_inline_completion(void **state)
{
	(void)state;
	inline_case(act_inline_all, "all inline");
	inline_case(act_inline_even, "inline and completer");
}

/* ------------------------------------------------------------------ */
/* 4. Errors                                                            */
/* ------------------------------------------------------------------ */

/* Region page idx: 0 mod 4 works; 1 fails to start; 2 completes with
 * -EIO; 3 completes with a positive value. */
static enum act act_errors(uint64_t idx)
{
	static const enum act acts[] = {ACT_OK, ACT_START_FAIL, ACT_COMPLETE_EIO, ACT_COMPLETE_POS};

	return acts[idx % 4];
}

static const char *act_name(enum act a)
{
	switch (a) {
	case ACT_START_FAIL:
		return "fill returned -EIO";
	case ACT_COMPLETE_EIO:
		return "completed with -EIO";
	case ACT_COMPLETE_POS:
		return "completed with 5";
	default:
		return "ok";
	}
}

static void test_errors_zero_policy(void **state)
{
	enum { NPG = 16 };
	struct ufault_ctx *ctx = new_ctx(2, 0);
	struct ufault_stats st;
	struct afill h;
	struct ufault_source s;
	unsigned int nbad = 0;
	uint64_t end;
	char *base = tu_map_anon(NPG * ps, 0);

	(void)state;
	afill_init(&h, 0xe10, NPG);
	h.base_off = 3 * ps;
	h.act_of = act_errors;
	afill_start(&h);
	s = afill_source(&h);
	assert_int_equal(
	    ufault_region_register(ctx, base, NPG * ps, &s, UFAULT_REGION_ON_ERROR_ZERO, NULL), 0);
	for (size_t pg = 0; pg < NPG; pg++) {
		struct touch t = {0};
		pthread_t th = touch_start(&t, base + pg * ps + 99);

		if (join_bounded(th))
			fail_msg("[%s] page %zu (%s): the faulting thread is still parked", MODE,
				 pg, act_name(act_errors(pg)));
		if (act_errors(pg) == ACT_OK) {
			check_page(base, pg, ps, h.base_off + pg * ps, h.seed);
		} else {
			nbad++;
			if (tu_zero_check(base + pg * ps, ps) != -1)
				fail_msg("[%s] page %zu (%s) is not zero-filled", MODE, pg,
					 act_name(act_errors(pg)));
		}
	}
	end = deadline();
	do {
		st = get_stats(ctx);
		if (st.source_errors >= nbad && st.zero_filled >= nbad)
			break;
		usleep(1000);
	} while (tu_now_ns() < end);
	if (st.source_errors != nbad || st.zero_filled != nbad)
		fail_msg("[%s] source_errors %llu, zero_filled %llu; expected %u each", MODE,
			 (unsigned long long)st.source_errors, (unsigned long long)st.zero_filled,
			 nbad);
	assert_int_equal(st.poisoned, 0);
	afill_quiesce(&h, ctx);
	ufault_ctx_destroy(ctx);
	afill_stop(&h);
	assert_int_equal(h.start_failed, NPG / 4);
	assert_int_equal(h.completed, h.started - h.start_failed);
	tu_unmap(base, NPG * ps);
}

/* --- SIGBUS policy, in forked children (no CMocka there: exit codes) --- */

static __thread sigjmp_buf bus_jmp;
static __thread volatile sig_atomic_t bus_armed;
static void *volatile bus_addr;

static void bus_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	bus_addr = si->si_addr;
	if (bus_armed) {
		bus_armed = 0;
		siglongjmp(bus_jmp, 1);
	}
	_exit(40); /* SIGBUS outside a guarded touch */
}

/* 1 if touching @p raised SIGBUS, 0 if it read fine. */
static int touch_bus(const char *p)
{
	if (sigsetjmp(bus_jmp, 1))
		return 1;
	bus_armed = 1;
	(void)tu_read_byte(p);
	bus_armed = 0;
	return 0;
}

/* afill_quiesce() without CMocka: every completion has returned. */
static void child_quiesce(struct afill *h)
{
	uint64_t end = tu_now_ns() + 5000000000ull * tu_slowdown();
	bool idle;

	do {
		pthread_mutex_lock(&h->lock);
		idle = !h->qn && h->returned == h->started - h->start_failed;
		pthread_mutex_unlock(&h->lock);
		if (!idle)
			usleep(1000);
	} while (!idle && tu_now_ns() < end);
}

/* A context, the harness and a SIGBUS-policy region of @npg pages; exits
 * 77 if the kernel cannot poison. */
static char *child_setup(enum ufault_lock_mode mode, struct ufault_ctx **ctx, struct afill *h,
			 size_t npg)
{
	struct ufault_config cfg;
	struct ufault_source s;
	char *base;
	int rc;

	ufault_config_init(&cfg);
	cfg.lock_mode = mode;
	cfg.nr_workers = 2;
	rc = ufault_ctx_create(ctx, &cfg);
	if (tu_is_unavailable(rc))
		tu_child_exit(TU_SKIP);
	TU_CHILD_CHECK(rc == 0, 10);
	memset(h, 0, sizeof(*h));
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	h->seed = 0xb05;
	h->rpage = ps;
	h->npages = npg;
	h->act_of = act_errors;
	afill_start(h);
	s = afill_source(h);
	base = tu_map_anon(npg * ps, 0);
	rc = ufault_region_register(*ctx, base, npg * ps, &s, UFAULT_REGION_ON_ERROR_SIGBUS, NULL);
	if (!(ufault_ctx_features(*ctx) & UFFD_FEATURE_POISON)) {
		TU_CHILD_CHECK(rc == -EOPNOTSUPP, 12);
		tu_child_exit(TU_SKIP);
	}
	TU_CHILD_CHECK(rc == 0, 13);
	return base;
}

/* With a handler: each failing page raises SIGBUS at its address, good
 * pages read the pattern, the stats count every failure. */
static void child_sigbus_handler(enum ufault_lock_mode mode)
{
	enum { NPG = 8 };
	struct ufault_ctx *ctx;
	struct ufault_stats st;
	struct afill h;
	struct sigaction sa;
	unsigned int nbad = 0;
	uint64_t end;
	char *base;

	tu_watchdog(20);
	base = child_setup(mode, &ctx, &h, NPG);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = bus_handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	TU_CHILD_CHECK(sigaction(SIGBUS, &sa, NULL) == 0, 20);
	for (size_t pg = 0; pg < NPG; pg++) {
		char *p = base + pg * ps + 321;

		if (act_errors(pg) == ACT_OK) {
			TU_CHILD_CHECK(touch_bus(p) == 0, 21);
			TU_CHILD_CHECK(tu_pattern_check(base + pg * ps, ps, pg * ps, h.seed) == -1,
				       22);
		} else {
			nbad++;
			TU_CHILD_CHECK(touch_bus(p) == 1, 23);
			TU_CHILD_CHECK(
			    (char *)bus_addr >= p - 321 && (char *)bus_addr < p - 321 + ps, 24);
			/* Poisoned, not left parked: again SIGBUS. */
			TU_CHILD_CHECK(touch_bus(p) == 1, 25);
		}
	}
	end = tu_now_ns() + 5000000000ull * tu_slowdown();
	do {
		st.size = sizeof(st);
		TU_CHILD_CHECK(ufault_stats(ctx, &st) == 0, 30);
		if (st.source_errors >= nbad && st.poisoned >= nbad)
			break;
		usleep(1000);
	} while (tu_now_ns() < end);
	if (st.source_errors != nbad || st.poisoned != nbad)
		fprintf(stderr, "child stats: source_errors %llu poisoned %llu, expected %u\n",
			(unsigned long long)st.source_errors, (unsigned long long)st.poisoned,
			nbad);
	TU_CHILD_CHECK(st.source_errors == nbad, 31);
	TU_CHILD_CHECK(st.poisoned == nbad, 32);
	TU_CHILD_CHECK(st.zero_filled == 0, 33);
	child_quiesce(&h);
	ufault_ctx_destroy(ctx);
	afill_stop(&h);
	TU_CHILD_CHECK(h.completed == h.started - h.start_failed, 34);
	tu_child_exit(0);
}

/* With the default action, touching a failing page of kind @kind kills the
 * process with SIGBUS. */
static void child_sigbus_default(enum ufault_lock_mode mode, unsigned int kind)
{
	struct rlimit nocore = {0, 0};
	struct ufault_ctx *ctx;
	struct afill h;
	char *base;

	tu_watchdog(20);
	setrlimit(RLIMIT_CORE, &nocore);
	base = child_setup(mode, &ctx, &h, 4);
	signal(SIGBUS, SIG_DFL);
	TU_CHILD_CHECK(tu_pattern_check(base, ps, 0, h.seed) == -1, 50);
	(void)tu_read_byte(base + kind * ps + 1);
	fprintf(stderr, "child survived a failed fill (%s)\n", act_name(act_errors(kind)));
	tu_child_exit(52);
}

static int fork_child(void (*fn)(enum ufault_lock_mode, unsigned int), unsigned int kind)
{
	int status = 0;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fn(tu_mode, kind);
		tu_child_exit(99);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static void child_handler_shim(enum ufault_lock_mode mode, unsigned int kind)
{
	(void)kind;
	child_sigbus_handler(mode);
}

static void test_errors_sigbus(void **state)
{
	int st;

	(void)state;
	/* The children start threads: fork from a single-threaded parent. */
	st = fork_child(child_handler_shim, 0);
	if (WIFEXITED(st) && WEXITSTATUS(st) == TU_SKIP)
		skip();
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		fail_msg("[%s] SIGBUS handler child: %s %d", MODE,
			 WIFEXITED(st) ? "exit" : "signal",
			 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	for (unsigned int kind = 1; kind < 4; kind++) {
		st = fork_child(child_sigbus_default, kind);
		if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGBUS)
			fail_msg("[%s] default action, %s: child %s %d, expected SIGBUS", MODE,
				 act_name(act_errors(kind)), WIFEXITED(st) ? "exit" : "signal",
				 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	}
}

/* ------------------------------------------------------------------ */
/* 5. Destroy waits for a pending fill                                  */
/* ------------------------------------------------------------------ */

struct destroyer {
	struct ufault_ctx *ctx;
	unsigned int done; /* atomic */
};

static void *destroy_main(void *arg)
{
	struct destroyer *d = arg;

	ufault_ctx_destroy(d->ctx);
	__atomic_store_n(&d->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void test_destroy_waits(void **state)
{
	struct ufault_ctx *ctx = new_ctx(2, 0);
	struct destroyer d = {.ctx = ctx};
	struct touch t = {0};
	pthread_t tt, td;
	struct afill h;
	struct ufault_source s;
	char *base = tu_map_anon(4 * ps, 0);
	bool early;

	(void)state;
	afill_init(&h, 0xde5, 4);
	h.gated = true;
	afill_start(&h);
	s = afill_source(&h);
	s.release = afill_release;
	s.release_arg = &h;
	assert_int_equal(ufault_region_register(ctx, base, 4 * ps, &s, 0, NULL), 0);

	tt = touch_start(&t, base + ps + 17);
	afill_wait_started(&h, 1);
	assert_int_equal(pthread_create(&td, NULL, destroy_main, &d), 0);
	usleep(SETTLE_US);
	early = __atomic_load_n(&d.done, __ATOMIC_ACQUIRE);
	afill_open(&h);
	if (join_bounded(td))
		fail_msg("[%s] ufault_ctx_destroy() did not return after the fill completed", MODE);
	if (early)
		fail_msg("[%s] ufault_ctx_destroy() returned while a fill was still pending", MODE);
	if (join_bounded(tt))
		fail_msg("[%s] the faulting thread is still parked after destroy", MODE);
	/* The pattern (installed before the unregister) or zeros (woken by
	 * it, then an ordinary page): either, but it returned. */
	if (t.got != tu_pattern(ps + 17, h.seed) && t.got != 0)
		fail_msg("[%s] the faulting thread read 0x%02x", MODE, t.got);
	assert_int_equal(afill_get(&h, &h.releases), 1);
	afill_stop(&h);
	assert_int_equal(h.completed, 1);
	tu_unmap(base, 4 * ps);
}

/* ------------------------------------------------------------------ */
/* 6. Back-pressure                                                     */
/* ------------------------------------------------------------------ */

static void test_back_pressure(void **state)
{
	enum { NPG = 6 };
	struct ufault_ctx *ctx = new_ctx(1, 2);
	struct touch t[NPG];
	pthread_t th[NPG];
	struct afill h;
	struct ufault_source s;
	unsigned int started, released = 0;
	char *base = tu_map_anon(NPG * ps, 0);

	(void)state;
	afill_init(&h, 0xbac, NPG);
	h.gated = true;
	afill_start(&h);
	s = afill_source(&h);
	assert_int_equal(ufault_region_register(ctx, base, NPG * ps, &s, 0, NULL), 0);
	memset(t, 0, sizeof(t));
	for (unsigned int i = 0; i < NPG; i++)
		th[i] = touch_start(&t[i], base + i * ps + 5 * i);
	afill_wait_started(&h, 2);
	usleep(SETTLE_US);
	started = afill_get(&h, &h.started);
	for (unsigned int i = 0; i < NPG; i++)
		released += touch_done(&t[i]);
	afill_open(&h);
	for (unsigned int i = 0; i < NPG; i++)
		if (join_bounded(th[i]))
			fail_msg("[%s] faulting thread %u is still parked", MODE, i);
	if (started != 2)
		fail_msg("[%s] %u fills started while 2 were held with max_inflight 2", MODE,
			 started);
	assert_int_equal(released, 0);
	for (unsigned int i = 0; i < NPG; i++) {
		assert_int_equal(t[i].got, tu_pattern(i * ps + 5 * i, h.seed));
		check_page(base, i, ps, i * ps, h.seed);
	}
	afill_quiesce(&h, ctx);
	ufault_ctx_destroy(ctx);
	afill_stop(&h);
	assert_int_equal(h.max_outstanding, 2);
	assert_int_equal(h.completed, h.started);
	for (unsigned int i = 0; i < NPG; i++)
		assert_true(h.calls[i] >= 1);
	tu_unmap(base, NPG * ps);
}

/* ------------------------------------------------------------------ */
/* 7. Proxies with a fill in flight                                     */
/* ------------------------------------------------------------------ */

struct unreg {
	struct ufault_ctx *ctx;
	struct ufault_region *r;
	void *addr;
	size_t len;
	int rc;
	unsigned int done; /* atomic */
};

static void *unreg_main(void *arg)
{
	struct unreg *u = arg;

	u->rc = ufault_region_unregister(u->ctx, u->r);
	__atomic_store_n(&u->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void *munmap_main(void *arg)
{
	struct unreg *u = arg;

	u->rc = ufault_munmap(u->ctx, u->addr, u->len) ? -errno : 0;
	__atomic_store_n(&u->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * Spec mode: unregister holds nothing a pending fill holds, so it returns;
 * the release hook waits for the completion, then runs once. Other modes:
 * the pending fill holds what unregister needs, so unregister waits.
 */
static void test_unregister_in_flight(void **state)
{
	struct ufault_ctx *ctx = new_ctx(2, 0);
	struct unreg u = {.ctx = ctx};
	struct touch t = {0};
	pthread_t tt, tu;
	struct afill h;
	struct ufault_source s;
	char *base = tu_map_anon(4 * ps, 0);
	unsigned int rel_before, rel;
	bool returned;

	(void)state;
	afill_init(&h, 0x7a, 4);
	h.gated = true;
	afill_start(&h);
	s = afill_source(&h);
	s.release = afill_release;
	s.release_arg = &h;
	assert_int_equal(ufault_region_register(ctx, base, 4 * ps, &s, 0, &u.r), 0);
	tt = touch_start(&t, base + 2 * ps + 1);
	afill_wait_started(&h, 1);
	assert_int_equal(pthread_create(&tu, NULL, unreg_main, &u), 0);
	if (tu_mode == UFAULT_LOCK_SPEC) {
		if (join_bounded(tu)) {
			afill_open(&h);
			pthread_join(tu, NULL);
			fail_msg("[%s] ufault_region_unregister() waited for a pending fill", MODE);
		}
		assert_int_equal(u.rc, 0);
		usleep(SETTLE_US);
		rel_before = afill_get(&h, &h.releases);
		afill_open(&h);
		if (rel_before)
			fail_msg("[%s] the release hook ran while a fill of its source was pending",
				 MODE);
	} else {
		usleep(SETTLE_US);
		returned = __atomic_load_n(&u.done, __ATOMIC_ACQUIRE);
		rel_before = afill_get(&h, &h.releases);
		afill_open(&h);
		if (join_bounded(tu))
			fail_msg("[%s] ufault_region_unregister() did not return after the "
				 "completion",
				 MODE);
		if (returned)
			fail_msg("[%s] ufault_region_unregister() returned while a fill holding "
				 "its lock was pending",
				 MODE);
		assert_int_equal(u.rc, 0);
		assert_int_equal(rel_before, 0);
	}
	rel = afill_wait_releases(&h, 1);
	if (rel != 1)
		fail_msg("[%s] the release hook ran %u times after the completion, expected 1",
			 MODE, rel);
	if (join_bounded(tt))
		fail_msg("[%s] the faulting thread is still parked", MODE);
	if (tu_mode == UFAULT_LOCK_SPEC)
		assert_true(t.got == 0 || t.got == tu_pattern(2 * ps + 1, h.seed));
	else
		assert_int_equal(t.got, tu_pattern(2 * ps + 1, h.seed));
	afill_quiesce(&h, ctx);
	ufault_ctx_destroy(ctx);
	assert_int_equal(afill_get(&h, &h.releases), 1);
	afill_stop(&h);
	tu_unmap(base, 4 * ps);
}

/*
 * ufault_munmap() of the page being filled. Region, range, global: the
 * pending fill holds the region's read lock / the page's range read lock /
 * the global read lock, so the munmap waits for the completion. Spec: it
 * holds nothing, the munmap returns. The faulting thread may lose its page
 * under it: it catches SIGSEGV.
 */
static void test_munmap_in_flight(void **state)
{
	struct ufault_ctx *ctx = new_ctx(2, 0);
	struct unreg u = {.ctx = ctx};
	struct sigaction sa, old;
	struct touch t = {.guard = true};
	pthread_t tt, tm;
	struct afill h;
	struct ufault_source s;
	char *base;
	bool returned;

	(void)state;
	afill_init(&h, 0x3a, 4);
	h.gated = true;
	afill_start(&h);
	s = afill_source(&h);
	base = ufault_mmap(ctx, NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			   &s, 0);
	assert_ptr_not_equal(base, MAP_FAILED);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = segv_handler;
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGSEGV, &sa, &old), 0);

	tt = touch_start(&t, base + ps + 77);
	afill_wait_started(&h, 1);
	u.addr = base + ps;
	u.len = ps;
	assert_int_equal(pthread_create(&tm, NULL, munmap_main, &u), 0);
	if (tu_mode == UFAULT_LOCK_SPEC) {
		if (join_bounded(tm)) {
			afill_open(&h);
			pthread_join(tm, NULL);
			sigaction(SIGSEGV, &old, NULL);
			fail_msg("[%s] ufault_munmap() waited for a pending fill", MODE);
		}
		afill_open(&h);
	} else {
		usleep(SETTLE_US);
		returned = __atomic_load_n(&u.done, __ATOMIC_ACQUIRE);
		afill_open(&h);
		if (join_bounded(tm))
			fail_msg("[%s] ufault_munmap() did not return after the completion", MODE);
		if (returned)
			fail_msg("[%s] ufault_munmap() returned while the fill of its page was "
				 "pending",
				 MODE);
	}
	assert_int_equal(u.rc, 0);
	if (join_bounded(tt))
		fail_msg("[%s] the faulting thread is still parked", MODE);
	sigaction(SIGSEGV, &old, NULL);
	/* Spec: woken by the unregister, it found zeros or nothing; others:
	 * the page arrived, then may have gone under it. */
	if (tu_mode == UFAULT_LOCK_SPEC)
		assert_true(t.segv || t.got == 0);
	else
		assert_true(t.segv || t.got == tu_pattern(ps + 77, h.seed));
	/* The pieces left still fill. */
	check_page(base, 0, ps, 0, h.seed);
	check_page(base, 2, ps, 2 * ps, h.seed);
	check_page(base, 3, ps, 3 * ps, h.seed);
	assert_int_equal(ufault_munmap(ctx, base, 4 * ps), 0);
	afill_quiesce(&h, ctx);
	ufault_ctx_destroy(ctx);
	afill_stop(&h);
	assert_int_equal(h.completed, h.started);
}

struct remap {
	struct ufault_ctx *ctx;
	void *addr;
	size_t len;
	const struct ufault_source *src;
	void *ret;
	unsigned int done; /* atomic */
};

static void *map_fixed_main(void *arg)
{
	struct remap *m = arg;

	m->ret = ufault_mmap(m->ctx, m->addr, m->len, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, m->src, 0);
	__atomic_store_n(&m->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * MAP_FIXED over a region while a fill of it is in flight and another
 * fault joined it. The thread touching the range meanwhile "sees old
 * bytes, or waits and sees new ones; never zeros" (ufault_mmap()): in
 * spec mode the replacement goes ahead and the pending fault is served
 * from the new source; in the other modes the replacement waits for the
 * completion. Either way both faulting threads return, and afterwards the
 * whole range reads the new source.
 */
static void test_map_fixed_in_flight(void **state)
{
	struct ufault_ctx *ctx = new_ctx(1, 0);
	struct ufault_source s_old, s_new;
	struct touch a = {0}, b = {0};
	struct remap m = {.ctx = ctx, .len = 4 * ps};
	pthread_t ta, tb, tm;
	struct afill h_old, h_new;
	unsigned char ao, an, bo, bn;
	bool returned;
	char *base;

	(void)state;
	afill_init(&h_old, 0xf1d, 4);
	h_old.gated = true;
	afill_start(&h_old);
	afill_init(&h_new, 0xf1e, 4);
	afill_start(&h_new);
	s_old = afill_source(&h_old);
	s_new = afill_source(&h_new);
	base = ufault_mmap(ctx, NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			   &s_old, 0);
	assert_ptr_not_equal(base, MAP_FAILED);
	ta = touch_start(&a, base + ps + 10);
	afill_wait_started(&h_old, 1);
	tb = touch_start(&b, base + ps + 20);
	if (wait_joined(ctx, 1) < 1)
		fail_msg("[%s] B did not join A's fill", MODE);

	m.addr = base;
	m.src = &s_new;
	assert_int_equal(pthread_create(&tm, NULL, map_fixed_main, &m), 0);
	if (tu_mode == UFAULT_LOCK_SPEC) {
		if (join_bounded(tm)) {
			afill_open(&h_old);
			pthread_join(tm, NULL);
			fail_msg("[%s] MAP_FIXED waited for a pending fill", MODE);
		}
		afill_open(&h_old);
	} else {
		usleep(SETTLE_US);
		returned = __atomic_load_n(&m.done, __ATOMIC_ACQUIRE);
		afill_open(&h_old);
		if (join_bounded(tm))
			fail_msg("[%s] MAP_FIXED did not return after the completion", MODE);
		if (returned)
			fail_msg(
			    "[%s] MAP_FIXED returned while a fill holding its lock was pending",
			    MODE);
	}
	assert_ptr_equal(m.ret, base);
	if (join_bounded(ta) || join_bounded(tb))
		fail_msg("[%s] a faulting thread is still parked after MAP_FIXED", MODE);
	ao = tu_pattern(ps + 10, h_old.seed);
	an = tu_pattern(ps + 10, h_new.seed);
	bo = tu_pattern(ps + 20, h_old.seed);
	bn = tu_pattern(ps + 20, h_new.seed);
	if ((a.got != ao && a.got != an) || (b.got != bo && b.got != bn))
		fail_msg("[%s] A read 0x%02x (old 0x%02x, new 0x%02x), B read 0x%02x (old 0x%02x, "
			 "new 0x%02x)",
			 MODE, a.got, ao, an, b.got, bo, bn);
	for (size_t pg = 0; pg < 4; pg++)
		check_page(base, pg, ps, pg * ps, h_new.seed);
	afill_quiesce(&h_old, ctx);
	afill_quiesce(&h_new, ctx);
	assert_int_equal(ufault_munmap(ctx, base, 4 * ps), 0);
	ufault_ctx_destroy(ctx);
	afill_stop(&h_old);
	afill_stop(&h_new);
	assert_int_equal(h_old.completed, h_old.started);
	assert_int_equal(h_new.completed, h_new.started);
}

/* ------------------------------------------------------------------ */
/* 8. The histogram counts every fault once                             */
/* ------------------------------------------------------------------ */

#define HIST_PAGES 256
#define HIST_THREADS 8

/*
 * Joins (held: certain) and fills completed asynchronously by the
 * completer (batched) and inline, from threads that touch overlapping
 * pages (joins likely there too): once quiet, the histogram holds exactly
 * one sample per fault.
 */
static void test_histogram_counts_async(void **state)
{
	struct ufault_ctx *ctx = new_ctx(1, 16);
	struct touch a = {0}, b = {0}, c = {0};
	struct span sp[HIST_THREADS];
	pthread_t ta, tb, tc, th[HIST_THREADS];
	struct ufault_stats st;
	struct afill h;
	struct ufault_source s;
	uint64_t end, sum;
	char *base = tu_map_anon(HIST_PAGES * ps, 0);

	(void)state;
	afill_init(&h, 0x415, HIST_PAGES);
	h.gated = true;
	h.delay_us = 1000;
	h.act_of = act_inline_even;
	afill_start(&h);
	s = afill_source(&h);
	assert_int_equal(ufault_region_register(ctx, base, HIST_PAGES * ps, &s, 0, NULL), 0);

	/* Page 1 (completer): A fills, B and C join. */
	ta = touch_start(&a, base + ps);
	afill_wait_started(&h, 1);
	tb = touch_start(&b, base + ps + 100);
	tc = touch_start(&c, base + ps + 200);
	wait_joined(ctx, 2);
	afill_open(&h);
	if (join_bounded(ta) || join_bounded(tb) || join_bounded(tc))
		fail_msg("[%s] a thread is still parked after the held fill completed", MODE);

	/* Every thread sweeps every page, from a different start: threads
	 * meet on pages whose fill is in flight. */
	for (unsigned int i = 0; i < HIST_THREADS; i++) {
		sp[i] = (struct span){.base = base,
				      .first = i * (HIST_PAGES / HIST_THREADS),
				      .n = HIST_PAGES,
				      .step = 1,
				      .total = HIST_PAGES};
		assert_int_equal(pthread_create(&th[i], NULL, span_main, &sp[i]), 0);
	}
	for (unsigned int i = 0; i < HIST_THREADS; i++)
		if (join_bounded(th[i]))
			fail_msg("[%s] sweeping thread %u is still parked", MODE, i);
	for (size_t pg = 0; pg < HIST_PAGES; pg++)
		check_page(base, pg, ps, pg * ps, h.seed);

	/* Quiet now; the last samples may still be on their way. */
	end = deadline();
	do {
		st = get_stats(ctx);
		sum = hist_sum(ctx);
		if (sum == st.faults && get_stats(ctx).faults == st.faults)
			break;
		usleep(1000);
	} while (tu_now_ns() < end);
	printf("  [%s] faults %llu, joined %llu, histogram %llu, fills %u\n", MODE,
	       (unsigned long long)st.faults, (unsigned long long)st.joined,
	       (unsigned long long)sum, afill_get(&h, &h.started));
	if (sum != st.faults)
		fail_msg("[%s] the histogram holds %llu samples for %llu faults", MODE,
			 (unsigned long long)sum, (unsigned long long)st.faults);
	if (st.joined < 2)
		fail_msg("[%s] stats.joined %llu, expected >= 2", MODE,
			 (unsigned long long)st.joined);
	assert_true(st.faults >= HIST_PAGES + st.joined);
	assert_true(st.latency_p99_ns >= st.latency_p50_ns);
	afill_quiesce(&h, ctx);
	ufault_ctx_destroy(ctx);
	afill_stop(&h);
	assert_int_equal(h.completed, h.started);
	tu_unmap(base, HIST_PAGES * ps);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    tu_watchdog_test(test_oracle_in_flight),
	    tu_watchdog_test(test_join),
	    tu_watchdog_test(test_join_region_page_cut),
	    tu_watchdog_test(test_inline_completion),
	    tu_watchdog_test(test_errors_zero_policy),
	    tu_watchdog_test(test_errors_sigbus),
	    tu_watchdog_test(test_destroy_waits),
	    tu_watchdog_test(test_back_pressure),
	    tu_watchdog_test(test_unregister_in_flight),
	    tu_watchdog_test(test_munmap_in_flight),
	    tu_watchdog_test(test_map_fixed_in_flight),
	    tu_watchdog_test(test_histogram_counts_async),
	};
	int failed;

	ps = tu_page_size();
	unsetenv("UFAULT_LOCK_MODE");
	tu_modes_cfg.test_watchdog = 60;
	/* An optional argument runs only the tests whose name matches it. */
	failed = tu_run_every_mode("async", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
	return failed ? 1 : 0;
}
