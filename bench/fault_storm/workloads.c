// SPDX-License-Identifier: MIT
/*
 * workloads.c - the threads of each workload, and one measurement of one
 * workload in one mode (run_one): a fresh backend, the threads, their
 * histograms merged after the join.
 *
 * Fault latency is measured end to end in the faulting thread (a clock read
 * before and after the first write to each page); proxy calls are timed
 * around the call, and a proxy's time is split into its calls and its own
 * faults (touching the arenas it maps).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "fault_storm.h"

const char *const proxy_op_names[PO_NR] = {"mmap", "munmap", "mprotect", "madvise"};

struct shared;

struct thr {
	struct shared *sh;
	pthread_t tid;
	int idx;
	bool proxy;
	char *base; /* fault threads: their region (pft: their share) */
	size_t len;
	uint64_t faults;
	uint64_t proxy_ops;
	uint64_t fallbacks;
	uint64_t begin_ns, cycle_end_ns; /* proxies: rate over whole cycles only */
	uint64_t cycle_ops;		 /* ops in the completed cycles */
	uint64_t call_ns, fault_ns;	 /* proxies: in proxy calls, in their own faults */
	struct hist *hist;		 /* fault threads: first touches */
	struct hist *op_hist[PO_NR];	 /* restore proxies: each call type */
} __attribute__((aligned(64)));

struct shared {
	const struct run_cfg *rc;
	struct backend *be;
	pthread_barrier_t start, end;
	int stop;	      /* free-running workloads: set by main */
	int quit;	      /* pft: no more rounds */
	uint64_t deadline_ns; /* pft: end of this round's time budget */
	char *area;	      /* mixed: the whole reserved layout */
	size_t stride;	      /* mixed adjacent: region + proxy slot */
	struct thr *thr;      /* fault threads first, then proxies */
};

static bool stopped(const struct shared *sh)
{
	return __atomic_load_n(&sh->stop, __ATOMIC_RELAXED);
}

/* Touch one page for the first time, timing the write. Returns the end time. */
static inline uint64_t touch_timed(struct thr *t, char *p)
{
	uint64_t t0 = now_ns(), t1;

	*(volatile char *)p = 1;
	t1 = now_ns();
	hist_add(t->hist, t1 - t0);
	t->faults++;
	return t1;
}

/*
 * A proxy call returned: count it if the measurement was still running.
 * @cycle_end: it closed a whole map/write/unmap cycle.
 */
static void proxy_op_done(struct thr *t, bool cycle_end)
{
	if (stopped(t->sh))
		return;
	t->proxy_ops++;
	if (cycle_end) {
		t->cycle_ops = t->proxy_ops;
		t->cycle_end_ns = now_ns();
	}
}

static void touch_untimed(char *p)
{
	*(volatile char *)p = 2;
}

static void *pft_thread(void *arg)
{
	struct thr *t = arg;
	struct shared *sh = t->sh;

	for (;;) {
		uint64_t deadline;
		size_t off;

		barrier_wait(&sh->start);
		if (__atomic_load_n(&sh->quit, __ATOMIC_ACQUIRE))
			break;
		deadline = sh->deadline_ns;
		for (off = 0; off < t->len; off += (size_t)page_size)
			if (touch_timed(t, t->base + off) >= deadline)
				break;
		barrier_wait(&sh->end);
	}
	return NULL;
}

/* page_fault1 and ebizzy: map, touch every page, unmap, again. */
static void *churn_thread(void *arg)
{
	struct thr *t = arg;
	struct shared *sh = t->sh;
	size_t len = sh->rc->size;

	barrier_wait(&sh->start);
	while (!stopped(sh)) {
		char *p = be_map(sh->be, NULL, len, 0, 0, false);
		size_t off;

		if (p == MAP_FAILED)
			die("map %zu bytes: %s", len, strerror(errno));
		for (off = 0; off < len && !stopped(sh); off += (size_t)page_size)
			touch_timed(t, p + off);
		be_unmap(sh->be, p, len);
	}
	return NULL;
}

/*
 * mixed and restore: fault in every page of our own region, drop it, again.
 * restore: a lazily restored heap, each page a fill from the slow source
 * (its latency drawn from --latency-dist).
 */
static void *region_fault_thread(void *arg)
{
	struct thr *t = arg;
	struct shared *sh = t->sh;

	barrier_wait(&sh->start);
	while (!stopped(sh)) {
		size_t off;

		for (off = 0; off < t->len && !stopped(sh); off += (size_t)page_size)
			touch_timed(t, t->base + off);
		if (stopped(sh))
			break;
		be_dontneed(sh->be, t->base, t->len);
	}
	return NULL;
}

/* mixed, adjacent: map a fresh arena in a slot beside a fault region, use it, unmap. */
static void *mixed_proxy_adjacent(void *arg)
{
	struct thr *t = arg;
	struct shared *sh = t->sh;
	const struct run_cfg *rc = sh->rc;
	size_t plen = rc->proxy_size;
	int slot = t->idx, nr_slots = rc->threads;

	barrier_wait(&sh->start);
	t->begin_ns = now_ns();
	while (!stopped(sh)) {
		char *want = sh->area + (size_t)slot * sh->stride + rc->size;
		uint64_t t0 = now_ns(), t1;
		char *p = be_map(sh->be, want, plen, MAP_FIXED_NOREPLACE, 0, true);
		size_t off;

		if (p == MAP_FAILED && errno == EEXIST) {
			/* Someone else took the hole: an ordinary kernel-chosen arena. */
			p = be_map(sh->be, NULL, plen, 0, 0, true);
			t->fallbacks++;
		}
		if (p == MAP_FAILED)
			die("proxy map %zu bytes at %p: %s", plen, (void *)want, strerror(errno));
		t1 = now_ns();
		t->call_ns += t1 - t0;
		proxy_op_done(t, false);
		for (off = 0; off < plen && !stopped(sh); off += (size_t)page_size)
			touch_untimed(p + off);
		t0 = now_ns();
		t->fault_ns += t0 - t1;
		be_unmap(sh->be, p, plen);
		t->call_ns += now_ns() - t0;
		proxy_op_done(t, true);
		slot += rc->proxies;
		if (slot >= nr_slots)
			slot = t->idx % nr_slots;
	}
	return NULL;
}

/*
 * mixed, same: replace a slice of a fault thread's region with a new mapping
 * of the same source (MAP_FIXED replaces atomically, so the fault thread
 * never meets unmapped memory), then write the slice.
 */
static void *mixed_proxy_same(void *arg)
{
	struct thr *t = arg;
	struct shared *sh = t->sh;
	const struct run_cfg *rc = sh->rc;
	size_t slice = rc->proxy_size, nslices;
	unsigned int k = (unsigned int)t->idx;

	if (slice > rc->size / 4)
		slice = rc->size / 4;
	slice &= ~((size_t)page_size - 1);
	if (slice < (size_t)page_size)
		slice = (size_t)page_size;
	nslices = rc->size / slice;

	barrier_wait(&sh->start);
	t->begin_ns = now_ns();
	while (!stopped(sh)) {
		int victim = (int)(k % (unsigned int)rc->threads);
		size_t soff = ((k / (unsigned int)rc->threads) % nslices) * slice;
		struct thr *v = &sh->thr[victim];
		uint64_t src_off = (uint64_t)victim * rc->size + soff;
		uint64_t t0 = now_ns(), t1;
		char *p = be_map(sh->be, v->base + soff, slice, MAP_FIXED, src_off, false);
		size_t off;

		if (p == MAP_FAILED)
			die("proxy MAP_FIXED over %p (+%zu): %s", (void *)(v->base + soff), slice,
			    strerror(errno));
		t1 = now_ns();
		t->call_ns += t1 - t0;
		for (off = 0; off < slice && !stopped(sh); off += (size_t)page_size)
			touch_untimed(p + off);
		t->fault_ns += now_ns() - t1;
		proxy_op_done(t, true); /* counts the mmap once its slice is written */
		k += (unsigned int)rc->proxies + 1;
	}
	return NULL;
}

#define RESTORE_ARENA_PAGES 16 /* a small allocation: 64 KiB with 4 KiB pages */
#define RESTORE_TOUCH_PAGES 4

/* One proxy call of @op, timed into its histogram (and the call time). */
static void proxy_timed(struct thr *t, enum proxy_op op, uint64_t t0)
{
	uint64_t dt = now_ns() - t0;

	t->call_ns += dt;
	if (stopped(t->sh))
		return;
	hist_add(t->op_hist[op], dt);
	t->proxy_ops++;
}

/*
 * restore: what an allocator or a GC runtime does beside the faults, on
 * memory of its own: map a small zero-source arena and touch a few pages
 * of it, mprotect it read-only and back (a GC barrier), drop its pages
 * (MADV_DONTNEED, a free), unmap it. Every call is timed.
 */
static void *restore_proxy_thread(void *arg)
{
	struct thr *t = arg;
	struct shared *sh = t->sh;
	size_t len = RESTORE_ARENA_PAGES * (size_t)page_size;

	barrier_wait(&sh->start);
	t->begin_ns = now_ns();
	while (!stopped(sh)) {
		uint64_t t0 = now_ns();
		char *p = be_map(sh->be, NULL, len, 0, 0, true);

		if (p == MAP_FAILED)
			die("proxy map %zu bytes: %s", len, strerror(errno));
		proxy_timed(t, PO_MMAP, t0);
		t0 = now_ns();
		for (int i = 0; i < RESTORE_TOUCH_PAGES; i++)
			touch_untimed(p + (size_t)i * (size_t)page_size);
		t->fault_ns += now_ns() - t0;
		t0 = now_ns();
		be_mprotect(sh->be, p, len, PROT_READ);
		proxy_timed(t, PO_MPROTECT, t0);
		t0 = now_ns();
		be_mprotect(sh->be, p, len, PROT_READ | PROT_WRITE);
		proxy_timed(t, PO_MPROTECT, t0);
		t0 = now_ns();
		be_dontneed(sh->be, p, len);
		proxy_timed(t, PO_MADVISE, t0);
		t0 = now_ns();
		be_unmap(sh->be, p, len);
		proxy_timed(t, PO_MUNMAP, t0);
		if (!stopped(sh)) {
			t->cycle_ops = t->proxy_ops;
			t->cycle_end_ns = now_ns();
		}
	}
	return NULL;
}

static void start_thread(struct thr *t, void *(*fn)(void *))
{
	int err = pthread_create(&t->tid, NULL, fn, t);

	if (err)
		die("pthread_create: %s", strerror(err));
}

static void join_thread(struct thr *t)
{
	int err = pthread_join(t->tid, NULL);

	if (err)
		die("pthread_join: %s", strerror(err));
}

/* pft: one region, T shares, rounds until the time budget is spent. */
static double run_pft(struct shared *sh)
{
	const struct run_cfg *rc = sh->rc;
	size_t total = rc->size * (size_t)rc->threads;
	char *region = be_map(sh->be, NULL, total, 0, 0, false);
	uint64_t budget = (uint64_t)(rc->seconds * 1e9), spent = 0;
	int i;

	if (region == MAP_FAILED)
		die("map pft region of %zu bytes: %s", total, strerror(errno));
	barrier_init(&sh->start, (unsigned int)rc->threads + 1);
	barrier_init(&sh->end, (unsigned int)rc->threads + 1);
	for (i = 0; i < rc->threads; i++) {
		sh->thr[i].base = region + (size_t)i * rc->size;
		sh->thr[i].len = rc->size;
		start_thread(&sh->thr[i], pft_thread);
	}
	for (;;) {
		uint64_t t0 = now_ns(), t1;

		sh->deadline_ns = t0 + (budget - spent);
		barrier_wait(&sh->start);
		barrier_wait(&sh->end);
		t1 = now_ns();
		spent += t1 - t0;
		if (spent >= budget)
			break;
		/* Drop the pages outside the timed part: the next round faults again. */
		be_dontneed(sh->be, region, total);
	}
	__atomic_store_n(&sh->quit, 1, __ATOMIC_RELEASE);
	barrier_wait(&sh->start);
	for (i = 0; i < rc->threads; i++)
		join_thread(&sh->thr[i]);
	be_unmap(sh->be, region, total);
	pthread_barrier_destroy(&sh->start);
	pthread_barrier_destroy(&sh->end);
	return (double)spent / 1e9;
}

/* Free-running workloads: release everyone, sleep, stop, join. */
static double run_timed(struct shared *sh, int nthr)
{
	uint64_t t0, t1;
	int i;

	barrier_wait(&sh->start);
	t0 = now_ns();
	sleep_ns((uint64_t)(sh->rc->seconds * 1e9));
	__atomic_store_n(&sh->stop, 1, __ATOMIC_RELAXED);
	t1 = now_ns();
	for (i = 0; i < nthr; i++)
		join_thread(&sh->thr[i]);
	return (double)(t1 - t0) / 1e9;
}

static double run_churn(struct shared *sh)
{
	int i, n = sh->rc->threads;

	barrier_init(&sh->start, (unsigned int)n + 1);
	for (i = 0; i < n; i++)
		start_thread(&sh->thr[i], churn_thread);
	return run_timed(sh, n);
}

static double run_mixed(struct shared *sh)
{
	const struct run_cfg *rc = sh->rc;
	int n = rc->threads, p = rc->proxies, i;
	size_t area_len;
	double elapsed;

	sh->stride = rc->size + (rc->variant == V_ADJACENT ? rc->proxy_size : 0);
	area_len = sh->stride * (size_t)n;
	/* Reserve the layout so nothing else lands between our regions. */
	sh->area =
	    mmap(NULL, area_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (sh->area == MAP_FAILED)
		die("reserve %zu bytes: %s", area_len, strerror(errno));
	for (i = 0; i < n; i++) {
		char *want = sh->area + (size_t)i * sh->stride;
		char *r = be_map(sh->be, want, rc->size, MAP_FIXED, (uint64_t)i * rc->size, false);

		if (r == MAP_FAILED)
			die("map fault region %d at %p: %s", i, (void *)want, strerror(errno));
		sh->thr[i].base = r;
		sh->thr[i].len = rc->size;
		/* Adjacent: the proxy slot after each region starts as a hole. */
		if (rc->variant == V_ADJACENT && munmap(r + rc->size, rc->proxy_size))
			die("munmap slot: %s", strerror(errno));
	}
	barrier_init(&sh->start, (unsigned int)(n + p) + 1);
	for (i = 0; i < n; i++)
		start_thread(&sh->thr[i], region_fault_thread);
	for (i = 0; i < p; i++) {
		sh->thr[n + i].proxy = true;
		start_thread(&sh->thr[n + i],
			     rc->variant == V_ADJACENT ? mixed_proxy_adjacent : mixed_proxy_same);
	}
	elapsed = run_timed(sh, n + p);
	for (i = 0; i < n; i++)
		be_unmap(sh->be, sh->thr[i].base, rc->size);
	return elapsed;
}

/* restore: T regions of the slow source, M proxies on arenas of their own. */
static double run_restore(struct shared *sh)
{
	const struct run_cfg *rc = sh->rc;
	int n = rc->threads, p = rc->proxies, i;
	double elapsed;

	for (i = 0; i < n; i++) {
		char *r = be_map(sh->be, NULL, rc->size, 0, (uint64_t)i * rc->size, false);

		if (r == MAP_FAILED)
			die("map restore region %d: %s", i, strerror(errno));
		sh->thr[i].base = r;
		sh->thr[i].len = rc->size;
	}
	barrier_init(&sh->start, (unsigned int)(n + p) + 1);
	for (i = 0; i < n; i++)
		start_thread(&sh->thr[i], region_fault_thread);
	for (i = 0; i < p; i++) {
		sh->thr[n + i].proxy = true;
		start_thread(&sh->thr[n + i], restore_proxy_thread);
	}
	elapsed = run_timed(sh, n + p);
	for (i = 0; i < n; i++)
		be_unmap(sh->be, sh->thr[i].base, rc->size);
	return elapsed;
}

const struct workload_def workloads[W_NR] = {
    [W_PFT] = {"pft", run_pft, 8ul << 20, S_ZERO, false,
	       "T threads fault in shares of one region (will-it-scale page_fault2)"},
    [W_CHECK] = {"check", run_pft, 8ul << 20, S_ZERO, false,
		 "pft at T=1: spec vs minimal vs native, interleaved runs"},
    [W_PAGE_FAULT1] = {"page_fault1", run_churn, 128ul << 20, S_ZERO, false,
		       "map, fault in, unmap a region per thread, again"},
    [W_EBIZZY] = {"ebizzy", run_churn, 512ul << 10, S_ZERO, false,
		  "as page_fault1 with small regions: mostly mmap/munmap"},
    [W_MIXED] = {"mixed", run_mixed, 4ul << 20, S_SLOW, true,
		 "fault threads on their regions, proxies map/unmap arenas beside them"},
    [W_RESTORE] = {"restore", run_restore, 64ul << 20, S_ASYNC, true,
		   "a lazily restored heap from slow storage, with an allocator's "
		   "mmap/mprotect/madvise/munmap beside it"},
};

static void op_stats(struct op_stats *o, const struct hist *h)
{
	o->n = h->n;
	o->us_p50 = hist_quantile_ns(h, 500) / 1e3;
	o->us_p99 = hist_quantile_ns(h, 990) / 1e3;
	o->us_max = (double)h->max_ns / 1e3;
}

void run_one(const struct run_cfg *rc, struct result *res)
{
	int nthr = rc->threads + (workloads[rc->wl].has_proxies ? rc->proxies : 0), i;
	struct backend be;
	struct shared sh;
	struct hist *merged, *ops[PO_NR], *all;

	memset(res, 0, sizeof(*res));
	memset(&sh, 0, sizeof(sh));
	sh.rc = rc;
	sh.be = &be;
	sh.thr = xcalloc((size_t)nthr, sizeof(*sh.thr));
	for (i = 0; i < nthr; i++) {
		sh.thr[i].sh = &sh;
		sh.thr[i].idx = i < rc->threads ? i : i - rc->threads;
		sh.thr[i].hist = hist_new();
		for (int k = 0; k < PO_NR; k++)
			sh.thr[i].op_hist[k] = hist_new();
	}

	backend_open(&be, rc);
	/* mixed: every piece of the layout is unmapped by then; slots are holes. */
	res->elapsed_s = workloads[rc->wl].run(&sh);
	backend_close(&be, res);

	merged = hist_new();
	for (int k = 0; k < PO_NR; k++)
		ops[k] = hist_new();
	for (i = 0; i < nthr; i++) {
		if (!sh.thr[i].proxy) {
			hist_merge(merged, sh.thr[i].hist);
			res->faults += sh.thr[i].faults;
		}
		for (int k = 0; k < PO_NR; k++) {
			hist_merge(ops[k], sh.thr[i].op_hist[k]);
			free(sh.thr[i].op_hist[k]);
		}
		res->proxy_call_s += (double)sh.thr[i].call_ns / 1e9;
		res->proxy_fault_s += (double)sh.thr[i].fault_ns / 1e9;
		res->proxy_ops += sh.thr[i].proxy_ops;
		res->proxy_fallbacks += sh.thr[i].fallbacks;
		/*
		 * A proxy cycle can take a large part of a second; dividing
		 * whole ops by the run time would quantise the rate. Each proxy
		 * contributes the ops of its completed cycles over the time they
		 * took; one that completed none, its ops over the run time.
		 */
		if (sh.thr[i].cycle_ops)
			res->proxy_ops_per_s +=
			    (double)sh.thr[i].cycle_ops * 1e9 /
			    (double)(sh.thr[i].cycle_end_ns - sh.thr[i].begin_ns);
		else if (sh.thr[i].proxy && res->elapsed_s > 0)
			res->proxy_ops_per_s += (double)sh.thr[i].proxy_ops / res->elapsed_s;
		free(sh.thr[i].hist);
	}
	free(sh.thr);
	res->faults_per_s = res->elapsed_s > 0 ? (double)res->faults / res->elapsed_s : 0;
	res->us_mean = res->faults ? res->elapsed_s * 1e6 * rc->threads / (double)res->faults : 0;
	res->us_p50 = hist_quantile_ns(merged, 500) / 1e3;
	res->us_p99 = hist_quantile_ns(merged, 990) / 1e3;
	free(merged);
	all = hist_new();
	for (int k = 0; k < PO_NR; k++) {
		op_stats(&res->op[k], ops[k]);
		hist_merge(all, ops[k]);
		free(ops[k]);
	}
	op_stats(&res->op_all, all);
	free(all);
	res->valid = true;

	if (mode_is_ufault(rc->mode) && res->lib_faults == 0)
		warnx("WARNING: %s %s T=%d: ufault_stats().faults == 0 -- the library handled "
		      "no faults, these numbers are MEANINGLESS",
		      workloads[rc->wl].name, mode_names[rc->mode], rc->threads);
	else if (rc->mode != M_NATIVE && !workloads[rc->wl].has_proxies &&
		 res->lib_faults * 2 < res->faults)
		warnx("WARNING: %s %s T=%d: handler saw %" PRIu64
		      " faults but threads timed %" PRIu64
		      " first touches -- most faults bypassed the handler",
		      workloads[rc->wl].name, mode_names[rc->mode], rc->threads, res->lib_faults,
		      res->faults);
}
