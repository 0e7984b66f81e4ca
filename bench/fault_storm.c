/* SPDX-License-Identifier: MIT */
/*
 * fault_storm.c - ufault's headline benchmark: T threads fault in pages
 * while (optionally) proxy threads churn mappings beside or over them.
 *
 * Every measurement is taken in one process against three kinds of handler:
 *  - the four ufault lock modes (spec, region, range, global), one fresh
 *    context per measurement so the library's counters belong to it alone;
 *  - "minimal": a single-thread hand-written userfaultfd handler that resolves
 *    each fault with the same ioctl ufault's source uses (bench/fault_storm_minimal.h);
 *  - "native": plain kernel anonymous faults, no userfaultfd at all.
 *
 * Fault latency is measured end to end in the faulting thread (a clock read
 * before and after the first write to each page) into per-thread histograms
 * (bench/fault_storm_hist.h, in the library's bucketing), merged after the
 * run.
 *
 * Only the public API (include/ufault/ufault.h) is used. The program touches
 * nothing outside its own mappings and the contexts it creates.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <ufault/ufault.h>

#define BENCH_NAME "fault_storm"
#include "bench_util.h"
#include "fault_storm_util.h"
#include "fault_storm_hist.h"
#include "fault_storm_minimal.h"

/* ------------------------------------------------------------------ */
/* Modes, workloads, options                                            */
/* ------------------------------------------------------------------ */

enum mode { M_SPEC, M_REGION, M_RANGE, M_GLOBAL, M_MINIMAL, M_NATIVE, M_NR };
static const char *const mode_names[M_NR] = {"spec",   "region",  "range",
					     "global", "minimal", "native"};

static bool mode_is_ufault(enum mode m)
{
	return m <= M_GLOBAL;
}

static enum ufault_lock_mode mode_lock(enum mode m)
{
	static const enum ufault_lock_mode map[] = {UFAULT_LOCK_SPEC, UFAULT_LOCK_REGION,
						    UFAULT_LOCK_RANGE, UFAULT_LOCK_GLOBAL};
	return map[m];
}

enum workload { W_PFT, W_CHECK, W_PAGE_FAULT1, W_EBIZZY, W_MIXED, W_NR };
static const char *const wl_names[W_NR] = {"pft", "check", "page_fault1", "ebizzy", "mixed"};

/* slow: a synchronous fill that sleeps its latency; async: an asynchronous
 * fill completed by a delay line after its latency (fault_storm_util.h). */
enum source { S_ZERO, S_SLOW, S_ASYNC };
static const char *const src_names[] = {"zero", "slow", "async"};

enum variant { V_ADJACENT, V_SAME };
static const char *const variant_names[] = {"adjacent", "same"};

#define MAX_LIST 16
#define MAX_RUNS 99

struct opts {
	bool workloads_set;
	int nr_workloads;
	enum workload workloads[W_NR];

	bool modes_set;
	int nr_modes;
	enum mode modes[M_NR];

	bool threads_set;
	int nr_threads;
	int threads[MAX_LIST];

	int proxies; /* -1: workload default */
	int source;  /* -1: workload default */
	unsigned int latency_us;
	double seconds; /* 0: workload default */
	size_t size;	/* 0: workload default */
	size_t proxy_size;
	int runs; /* 0: workload default */
	bool pin;
	bool json;
	unsigned int workers; /* 0: policy below */
	unsigned int uffds;   /* 0: policy below */
	size_t fault_around;  /* ufault fault_around_max; 0: none */
	enum variant variant;
};

static struct opts opt = {
    .proxies = -1,
    .source = -1,
    .latency_us = 50,
    .proxy_size = 16ul << 20,
    .variant = V_ADJACENT,
};

static unsigned int nr_cpus;

/* ------------------------------------------------------------------ */
/* One measurement                                                      */
/* ------------------------------------------------------------------ */

/* What one measurement runs. */
struct run_cfg {
	enum workload wl;
	enum mode mode;
	int threads;
	int proxies;
	enum source src;
	unsigned int latency_us;
	double seconds;
	size_t size;
	size_t proxy_size;
	enum variant variant;
};

/* What one measurement produced. */
struct result {
	double elapsed_s;
	uint64_t faults;	  /* first-touch faults timed by the fault threads */
	uint64_t proxy_ops;	  /* completed proxy calls (mmap and munmap each count) */
	uint64_t proxy_fallbacks; /* adjacent slot taken: mapped at a kernel-chosen address */
	double faults_per_s;
	double proxy_ops_per_s;
	double us_mean; /* threads * elapsed / faults: time per fault per thread */
	double us_p50, us_p99;
	uint64_t spec_aborts;
	uint64_t lib_faults; /* ufault_stats().faults or the minimal handler's count */
	unsigned int workers, uffds;
	bool valid;
};

/*
 * A "backend" is the handler under test: a ufault context, the minimal
 * handler, or nothing (native). The workloads only call these.
 */
struct backend {
	enum mode mode;
	struct ufault_ctx *ctx;
	struct minimal *min;
	enum source src;
	struct slow_src slow;
	struct delay_line *dl; /* async source */
};

static void backend_open(struct backend *b, const struct run_cfg *rc)
{
	memset(b, 0, sizeof(*b));
	b->mode = rc->mode;
	b->src = rc->src;
	b->slow.latency_us = rc->latency_us;

	if (mode_is_ufault(rc->mode)) {
		struct ufault_config cfg;
		int err;

		ufault_config_init(&cfg);
		cfg.lock_mode = mode_lock(rc->mode);
		if (rc->src == S_ASYNC && !(b->dl = dl_start(rc->latency_us)))
			die("starting the delay line: %s", strerror(errno));
		if (rc->src == S_SLOW) {
			/* Fills sleep: give every fault thread a worker and a uffd. */
			unsigned int w = (unsigned int)rc->threads;

			if (w < nr_cpus)
				w = nr_cpus;
			cfg.nr_workers = w;
			cfg.nr_uffds = w;
		}
		if (opt.workers)
			cfg.nr_workers = opt.workers;
		if (opt.uffds)
			cfg.nr_uffds = opt.uffds;
		cfg.fault_around_max = opt.fault_around;
		err = ufault_ctx_create(&b->ctx, &cfg);
		if (err)
			die("ufault_ctx_create(%s): %s", mode_names[rc->mode],
			    ufault_strerror(err));
		if (ufault_ctx_lock_mode(b->ctx) != cfg.lock_mode)
			warnx("WARNING: asked for lock mode %s, context runs %s",
			      mode_names[rc->mode],
			      ufault_lock_mode_name(ufault_ctx_lock_mode(b->ctx)));
	} else if (rc->mode == M_MINIMAL) {
		/* The hand-written handler has only the synchronous slow fill. */
		b->min = minimal_start(rc->src != S_ZERO, rc->latency_us, (size_t)page_size);
	}
}

/* Close the backend; fill in the library-side counters of @res. */
static void backend_close(struct backend *b, struct result *res)
{
	if (b->ctx) {
		struct ufault_stats st;
		int err, i;

		memset(&st, 0, sizeof(st));
		st.size = sizeof(st);
		err = ufault_stats(b->ctx, &st);
		if (err)
			die("ufault_stats: %s", ufault_strerror(err));
		res->lib_faults = st.faults;
		res->spec_aborts = 0;
		for (i = 0; i < UFAULT_SPEC_ABORT_NR; i++)
			res->spec_aborts += st.spec_aborts[i];
		res->workers = ufault_ctx_nr_workers(b->ctx);
		res->uffds = ufault_ctx_nr_uffds(b->ctx);
		ufault_ctx_destroy(b->ctx); /* waits for the fills in flight */
		b->ctx = NULL;
		if (b->dl)
			dl_stop(b->dl);
		b->dl = NULL;
	} else if (b->min) {
		res->lib_faults = minimal_stop(b->min);
		res->workers = 1;
		res->uffds = 1;
		b->min = NULL;
	}
}

static void fill_source(const struct backend *b, struct ufault_source *s, uint64_t offset)
{
	if (b->src == S_SLOW) {
		ufault_source_init(s, UFAULT_SOURCE_CALLBACK);
		s->callback.fill = slow_fill;
		s->callback.arg = (void *)&b->slow;
	} else if (b->src == S_ASYNC) {
		ufault_source_init(s, UFAULT_SOURCE_ASYNC);
		s->async.fill = async_fill;
		s->async.arg = b->dl;
	} else {
		ufault_source_init(s, UFAULT_SOURCE_ZERO);
	}
	s->offset = offset;
}

/*
 * Map @len bytes of handled memory. @fixed is 0, MAP_FIXED or
 * MAP_FIXED_NOREPLACE. @zero_src forces the zero source (proxies' arenas).
 * Returns MAP_FAILED with errno set on failure; the caller decides.
 */
static void *be_map(struct backend *b, void *hint, size_t len, int fixed, uint64_t src_off,
		    bool zero_src)
{
	const int prot = PROT_READ | PROT_WRITE;
	const int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | fixed;
	void *p;

	if (b->ctx) {
		struct ufault_source s;

		fill_source(b, &s, src_off);
		return ufault_mmap(b->ctx, hint, len, prot, flags, zero_src ? NULL : &s, 0);
	}
	p = mmap(hint, len, prot, flags, -1, 0);
	if (p == MAP_FAILED)
		return p;
	if (thp_always)
		(void)madvise(p, len, MADV_NOHUGEPAGE);
	if (b->min && !zero_src)
		minimal_register(b->min, p, len);
	return p;
}

static void be_unmap(struct backend *b, void *p, size_t len)
{
	int r = b->ctx ? ufault_munmap(b->ctx, p, len) : munmap(p, len);

	if (r)
		die("%s(%p, %zu): %s", b->ctx ? "ufault_munmap" : "munmap", p, len,
		    strerror(errno));
}

static void be_dontneed(struct backend *b, void *p, size_t len)
{
	int r =
	    b->ctx ? ufault_madvise(b->ctx, p, len, MADV_DONTNEED) : madvise(p, len, MADV_DONTNEED);

	if (r)
		die("%s(%p, %zu, MADV_DONTNEED): %s", b->ctx ? "ufault_madvise" : "madvise", p, len,
		    strerror(errno));
}

/* ------------------------------------------------------------------ */
/* Threads                                                              */
/* ------------------------------------------------------------------ */

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
	struct hist *hist;
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

/* mixed: fault in every page of our region, drop it, again. */
static void *mixed_fault_thread(void *arg)
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
		char *p = be_map(sh->be, want, plen, MAP_FIXED_NOREPLACE, 0, true);
		size_t off;

		if (p == MAP_FAILED && errno == EEXIST) {
			/* Someone else took the hole: an ordinary kernel-chosen arena. */
			p = be_map(sh->be, NULL, plen, 0, 0, true);
			t->fallbacks++;
		}
		if (p == MAP_FAILED)
			die("proxy map %zu bytes at %p: %s", plen, (void *)want, strerror(errno));
		proxy_op_done(t, false);
		for (off = 0; off < plen && !stopped(sh); off += (size_t)page_size)
			touch_untimed(p + off);
		be_unmap(sh->be, p, plen);
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
		char *p = be_map(sh->be, v->base + soff, slice, MAP_FIXED, src_off, false);
		size_t off;

		if (p == MAP_FAILED)
			die("proxy MAP_FIXED over %p (+%zu): %s", (void *)(v->base + soff), slice,
			    strerror(errno));
		for (off = 0; off < slice && !stopped(sh); off += (size_t)page_size)
			touch_untimed(p + off);
		proxy_op_done(t, true); /* counts the mmap once its slice is written */
		k += (unsigned int)rc->proxies + 1;
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
		start_thread(&sh->thr[i], mixed_fault_thread);
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

static void run_one(const struct run_cfg *rc, struct result *res)
{
	int nthr = rc->threads + (rc->wl == W_MIXED ? rc->proxies : 0), i;
	struct backend be;
	struct shared sh;
	struct hist *merged;

	memset(res, 0, sizeof(*res));
	memset(&sh, 0, sizeof(sh));
	sh.rc = rc;
	sh.be = &be;
	sh.thr = xcalloc((size_t)nthr, sizeof(*sh.thr));
	for (i = 0; i < nthr; i++) {
		sh.thr[i].sh = &sh;
		sh.thr[i].idx = i < rc->threads ? i : i - rc->threads;
		sh.thr[i].hist = hist_new();
	}

	backend_open(&be, rc);
	switch (rc->wl) {
	case W_PFT:
	case W_CHECK:
		res->elapsed_s = run_pft(&sh);
		break;
	case W_PAGE_FAULT1:
	case W_EBIZZY:
		res->elapsed_s = run_churn(&sh);
		break;
	case W_MIXED:
		/* Every piece of the layout is unmapped by then; slots are holes. */
		res->elapsed_s = run_mixed(&sh);
		break;
	default:
		die("internal: bad workload");
	}
	backend_close(&be, res);

	merged = hist_new();
	for (i = 0; i < nthr; i++) {
		if (!sh.thr[i].proxy) {
			hist_merge(merged, sh.thr[i].hist);
			res->faults += sh.thr[i].faults;
		}
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
	res->valid = true;

	if (mode_is_ufault(rc->mode) && res->lib_faults == 0)
		warnx("WARNING: %s %s T=%d: ufault_stats().faults == 0 -- the library handled "
		      "no faults, these numbers are MEANINGLESS",
		      wl_names[rc->wl], mode_names[rc->mode], rc->threads);
	else if (rc->mode != M_NATIVE && rc->wl != W_MIXED && res->lib_faults * 2 < res->faults)
		warnx("WARNING: %s %s T=%d: handler saw %" PRIu64
		      " faults but threads timed %" PRIu64
		      " first touches -- most faults bypassed the handler",
		      wl_names[rc->wl], mode_names[rc->mode], rc->threads, res->lib_faults,
		      res->faults);
}

/* ------------------------------------------------------------------ */
/* Sections: a workload over modes x threads, runs interleaved          */
/* ------------------------------------------------------------------ */

struct meas {
	enum mode mode;
	int threads;
	int proxies;
	int n;
	struct result r[MAX_RUNS];
	struct result med;
};

struct section {
	const char *name;    /* "pft", "check", ... for JSON and titles */
	struct run_cfg base; /* mode, threads, proxies vary */
	int proxies;	     /* mixed: the proxy count (spec also runs with 0) */
	int runs;
	int nr_meas;
	struct meas *meas;
};

static double median_of(const struct meas *m, size_t field_off)
{
	double v[MAX_RUNS];
	int i;

	for (i = 0; i < m->n; i++)
		v[i] = *(const double *)((const char *)&m->r[i] + field_off);
	return median(v, m->n);
}

static uint64_t median_u64(const struct meas *m, size_t field_off)
{
	uint64_t v[MAX_RUNS], tmp;
	int i, j;

	for (i = 0; i < m->n; i++)
		v[i] = *(const uint64_t *)((const char *)&m->r[i] + field_off);
	for (i = 1; i < m->n; i++)
		for (j = i; j > 0 && v[j - 1] > v[j]; j--) {
			tmp = v[j];
			v[j] = v[j - 1];
			v[j - 1] = tmp;
		}
	return v[m->n / 2];
}

static void take_median(struct meas *m)
{
	struct result *d = &m->med;

	*d = m->r[0];
	d->elapsed_s = median_of(m, offsetof(struct result, elapsed_s));
	d->faults_per_s = median_of(m, offsetof(struct result, faults_per_s));
	d->proxy_ops_per_s = median_of(m, offsetof(struct result, proxy_ops_per_s));
	d->us_mean = median_of(m, offsetof(struct result, us_mean));
	d->us_p50 = median_of(m, offsetof(struct result, us_p50));
	d->us_p99 = median_of(m, offsetof(struct result, us_p99));
	d->faults = median_u64(m, offsetof(struct result, faults));
	d->proxy_ops = median_u64(m, offsetof(struct result, proxy_ops));
	d->spec_aborts = median_u64(m, offsetof(struct result, spec_aborts));
	d->lib_faults = median_u64(m, offsetof(struct result, lib_faults));
	d->proxy_fallbacks = median_u64(m, offsetof(struct result, proxy_fallbacks));
}

static struct meas *find_meas(const struct section *s, enum mode mode, int threads, int proxies)
{
	int i;

	if (!s)
		return NULL;
	for (i = 0; i < s->nr_meas; i++) {
		struct meas *m = &s->meas[i];

		if (m->mode == mode && m->threads == threads && m->proxies == proxies && m->n)
			return m;
	}
	return NULL;
}

static void json_result(const struct section *s, const struct meas *m)
{
	const struct run_cfg *b = &s->base;
	const struct result *r = &m->med;

	printf("{\"section\":\"%s\",\"workload\":\"%s\",\"variant\":\"%s\",\"mode\":\"%s\","
	       "\"threads\":%d,\"proxies\":%d,\"source\":\"%s\",\"latency_us\":%u,"
	       "\"size\":%zu,\"seconds\":%.3f,\"runs\":%d,\"pinned\":%s,\"workers\":%u,"
	       "\"uffds\":%u,\"faults\":%" PRIu64 ",\"faults_per_s\":%.1f,"
	       "\"proxy_ops\":%" PRIu64 ",\"proxy_ops_per_s\":%.2f,\"fault_us_mean\":%.3f,"
	       "\"fault_us_p50\":%.3f,\"fault_us_p99\":%.3f,\"spec_aborts\":%" PRIu64 ","
	       "\"handler_faults\":%" PRIu64 ",\"proxy_fallbacks\":%" PRIu64
	       ",\"elapsed_s\":%.4f}\n",
	       s->name, wl_names[b->wl], b->wl == W_MIXED ? variant_names[b->variant] : "",
	       mode_names[m->mode], m->threads, m->proxies, src_names[b->src],
	       b->src != S_ZERO ? b->latency_us : 0, b->size, b->seconds, m->n,
	       opt.pin ? "true" : "false", r->workers, r->uffds, r->faults, r->faults_per_s,
	       r->proxy_ops, r->proxy_ops_per_s, r->us_mean, r->us_p50, r->us_p99, r->spec_aborts,
	       r->lib_faults, r->proxy_fallbacks, r->elapsed_s);
	fflush(stdout);
}

static void fmt_ratio(char *buf, size_t n, double num, double den)
{
	if (den > 0 && num > 0)
		snprintf(buf, n, "%.2fx", num / den);
	else
		snprintf(buf, n, "-");
}

static void fmt_count(char *buf, size_t n, double v)
{
	if (v >= 1e6)
		snprintf(buf, n, "%.2fM", v / 1e6);
	else if (v >= 1e4)
		snprintf(buf, n, "%.1fk", v / 1e3);
	else
		snprintf(buf, n, "%.1f", v);
}

static void section_title(const struct section *s)
{
	const struct run_cfg *b = &s->base;

	printf("\n== %s: workload %s", s->name, wl_names[b->wl]);
	if (b->wl == W_MIXED)
		printf(" (%s)", variant_names[b->variant]);
	printf(", source %s", src_names[b->src]);
	if (b->src != S_ZERO)
		printf(" %u us", b->latency_us);
	printf(", %zu KiB per thread", b->size >> 10);
	if (b->wl == W_MIXED)
		printf(", proxy arena %zu KiB", b->proxy_size >> 10);
	printf(", %.2f s x %d run%s (median%s) ==\n", b->seconds, s->runs, s->runs > 1 ? "s" : "",
	       s->runs > 1 ? ", modes interleaved" : "");
}

static void print_table(const struct section *s)
{
	bool mixed = s->base.wl == W_MIXED;
	int i;

	section_title(s);
	printf("%-8s %3s %3s %10s %10s %9s %9s %9s %8s %7s %9s %8s %8s\n", "mode", "T", "P",
	       "faults/s", "proxyops/s", "us/f mean", "us/f p50", "us/f p99", "aborts", "wk/uffd",
	       "hndl flts", "vs min", "vs glob");
	for (i = 0; i < s->nr_meas; i++) {
		const struct meas *m = &s->meas[i];
		const struct meas *mn = find_meas(s, M_MINIMAL, m->threads, m->proxies);
		const struct meas *gl = find_meas(s, M_GLOBAL, m->threads, m->proxies);
		char fps[16], pps[16], vmin[16], vgl[16], wu[16], hf[16];
		const struct result *r = &m->med;

		if (!m->n)
			continue;
		fmt_count(fps, sizeof(fps), r->faults_per_s);
		if (mixed)
			snprintf(pps, sizeof(pps), "%.2f", r->proxy_ops_per_s);
		else
			snprintf(pps, sizeof(pps), "-");
		fmt_ratio(vmin, sizeof(vmin), r->faults_per_s, mn ? mn->med.faults_per_s : 0);
		fmt_ratio(vgl, sizeof(vgl), r->faults_per_s, gl ? gl->med.faults_per_s : 0);
		if (m->mode == M_NATIVE) {
			snprintf(wu, sizeof(wu), "-");
			snprintf(hf, sizeof(hf), "-");
		} else {
			snprintf(wu, sizeof(wu), "%u/%u", r->workers, r->uffds);
			fmt_count(hf, sizeof(hf), (double)r->lib_faults);
		}
		printf("%-8s %3d %3d %10s %10s %9.2f %9.2f %9.2f %8" PRIu64 " %7s %9s %8s %8s\n",
		       mode_names[m->mode], m->threads, m->proxies, fps, pps, r->us_mean, r->us_p50,
		       r->us_p99, mode_is_ufault(m->mode) ? r->spec_aborts : 0, wu, hf,
		       m->mode == M_MINIMAL ? "" : vmin, m->mode == M_GLOBAL ? "" : vgl);
		if (r->proxy_fallbacks)
			printf("         (%" PRIu64 " proxy maps fell back to a kernel-chosen "
			       "address: slot was taken)\n",
			       r->proxy_fallbacks);
	}
	if (s->base.wl == W_CHECK) {
		printf("per-run us/fault (mean):\n");
		for (i = 0; i < s->nr_meas; i++) {
			const struct meas *m = &s->meas[i];
			int k;

			printf("  %-8s", mode_names[m->mode]);
			for (k = 0; k < m->n; k++)
				printf(" %7.3f", m->r[k].us_mean);
			printf("\n");
		}
	}
	fflush(stdout);
}

static void add_meas(struct section *s, enum mode mode, int threads, int proxies)
{
	struct meas *m;

	s->meas = realloc(s->meas, (size_t)(s->nr_meas + 1) * sizeof(*s->meas));
	if (!s->meas)
		die("out of memory");
	m = &s->meas[s->nr_meas++];
	memset(m, 0, sizeof(*m));
	m->mode = mode;
	m->threads = threads;
	m->proxies = proxies;
}

/*
 * Run every measurement of @s. For each thread count, the runs are the outer
 * loop and the modes the inner one (A B C A B C ...), so slow drift of the
 * machine spreads over all modes instead of biasing one.
 */
static void section_run(struct section *s)
{
	int i, run;

	for (i = 0; i < s->nr_meas;) {
		int j, first = i, threads = s->meas[i].threads;

		while (i < s->nr_meas && s->meas[i].threads == threads)
			i++;
		for (run = 0; run < s->runs; run++)
			for (j = first; j < i; j++) {
				struct meas *m = &s->meas[j];
				struct run_cfg rc = s->base;

				rc.mode = m->mode;
				rc.threads = m->threads;
				rc.proxies = m->proxies;
				run_one(&rc, &m->r[m->n++]);
			}
		for (j = first; j < i; j++) {
			take_median(&s->meas[j]);
			if (opt.json)
				json_result(s, &s->meas[j]);
		}
	}
	if (!opt.json)
		print_table(s);
}

/* ------------------------------------------------------------------ */
/* Plans and verdicts                                                   */
/* ------------------------------------------------------------------ */

static size_t default_size(enum workload wl)
{
	switch (wl) {
	case W_PAGE_FAULT1:
		return 128ul << 20;
	case W_EBIZZY:
		return 512ul << 10;
	case W_MIXED:
		return 4ul << 20;
	default:
		return 8ul << 20;
	}
}

/*
 * Build a section. The default plan passes its own defaults; anything the
 * user set on the command line wins.
 */
static struct section *make_section(enum workload wl, const char *name, enum source dsrc,
				    double dseconds, int druns, const int *dthreads, int ndthreads,
				    const enum mode *dmodes, int ndmodes, int dproxies)
{
	struct section *s = xcalloc(1, sizeof(*s));
	const int *threads = opt.threads_set ? opt.threads : dthreads;
	int nthreads = opt.threads_set ? opt.nr_threads : ndthreads;
	const enum mode *modes = opt.modes_set ? opt.modes : dmodes;
	int nmodes = opt.modes_set ? opt.nr_modes : ndmodes;
	int proxies = wl == W_MIXED ? (opt.proxies >= 0 ? opt.proxies : dproxies) : 0;
	int t, k;

	s->name = name;
	s->base.wl = wl;
	s->base.src = opt.source >= 0 ? (enum source)opt.source : dsrc;
	s->base.latency_us = opt.latency_us;
	s->base.seconds = opt.seconds > 0 ? opt.seconds : dseconds;
	s->base.size = opt.size ? opt.size : default_size(wl);
	s->base.proxy_size = opt.proxy_size;
	s->base.variant = opt.variant;
	s->runs = opt.runs ? opt.runs : druns;
	s->proxies = proxies;
	if (wl == W_CHECK) {
		static const int one[] = {1};

		threads = one;
		nthreads = 1;
	}
	for (t = 0; t < nthreads; t++) {
		for (k = 0; k < nmodes; k++)
			add_meas(s, modes[k], threads[t], proxies);
		/* mixed: spec without proxies, the reference for the proxy cost */
		if (wl == W_MIXED && proxies > 0)
			for (k = 0; k < nmodes; k++)
				if (modes[k] == M_SPEC)
					add_meas(s, M_SPEC, threads[t], 0);
	}
	return s;
}

static void verdict(const char *text, double measured, const char *op, double target, bool have)
{
	bool pass = have && (strcmp(op, "<=") == 0 ? measured <= target : measured >= target);

	if (opt.json) {
		printf("{\"verdict\":\"%s\",\"measured\":%.4f,\"op\":\"%s\",\"target\":%.4f,"
		       "\"result\":\"%s\"}\n",
		       text, have ? measured : 0.0, op, target,
		       !have  ? "SKIP"
		       : pass ? "PASS"
			      : "FAIL");
		return;
	}
	if (!have) {
		printf("%s: not measured in this run: SKIP\n", text);
		return;
	}
	printf("%s = %.3f (target %s %.2f): %s\n", text, measured, op, target,
	       pass ? "PASS" : "FAIL");
}

static void print_verdicts(const struct section *check, const struct section *mixed)
{
	char text[256];

	if (!opt.json)
		printf("\n== verdicts ==\n");
	if (check) {
		const struct meas *sp = find_meas(check, M_SPEC, 1, 0);
		const struct meas *mn = find_meas(check, M_MINIMAL, 1, 0);
		const struct meas *nt = find_meas(check, M_NATIVE, 1, 0);

		if (sp && mn) {
			snprintf(
			    text, sizeof(text),
			    "pft %s T=1: ufault(spec) us/fault %.3f / minimal %.3f (median of %d)",
			    src_names[check->base.src], sp->med.us_mean, mn->med.us_mean,
			    check->runs);
			verdict(text, sp->med.us_mean / mn->med.us_mean, "<=", 1.15, true);
		}
		if (sp && nt && !opt.json)
			printf("  (for reference: ufault(spec) us/fault = %.2fx native %.3f us, "
			       "minimal = %.2fx native; p50 spec %.2f / minimal %.2f / native %.2f "
			       "us)\n",
			       sp->med.us_mean / nt->med.us_mean, nt->med.us_mean,
			       mn ? mn->med.us_mean / nt->med.us_mean : 0, sp->med.us_p50,
			       mn ? mn->med.us_p50 : 0, nt->med.us_p50);
	}
	if (mixed && mixed->nr_meas &&
	    (find_meas(mixed, M_SPEC, mixed->meas[0].threads, mixed->proxies) ||
	     find_meas(mixed, M_GLOBAL, mixed->meas[0].threads, mixed->proxies))) {
		const struct run_cfg *b = &mixed->base;
		int t, i;
		int tlist[MAX_LIST], nt = 0;

		for (i = 0; i < mixed->nr_meas; i++) {
			int th = mixed->meas[i].threads, seen = 0;

			for (t = 0; t < nt; t++)
				seen |= tlist[t] == th;
			if (!seen && nt < MAX_LIST)
				tlist[nt++] = th;
		}
		for (t = 0; t < nt; t++) {
			int th = tlist[t], P = mixed->proxies;
			const struct meas *sp = find_meas(mixed, M_SPEC, th, P);
			const struct meas *gl = find_meas(mixed, M_GLOBAL, th, P);
			const struct meas *sp0 = find_meas(mixed, M_SPEC, th, 0);
			char src[32];

			if (b->src != S_ZERO)
				snprintf(src, sizeof(src), "%s %uus", src_names[b->src],
					 b->latency_us);
			else
				snprintf(src, sizeof(src), "zero");
			snprintf(text, sizeof(text),
				 "mixed(%s) %s T=%d P=%d: spec faults/s / global",
				 variant_names[b->variant], src, th, P);
			verdict(text, sp && gl ? sp->med.faults_per_s / gl->med.faults_per_s : 0,
				">=", 3.0, sp && gl && gl->med.faults_per_s > 0);
			snprintf(text, sizeof(text),
				 "mixed(%s) %s T=%d: spec faults/s with %d proxies / without",
				 variant_names[b->variant], src, th, P);
			verdict(text, sp && sp0 ? sp->med.faults_per_s / sp0->med.faults_per_s : 0,
				">=", 0.8, sp && sp0 && sp0->med.faults_per_s > 0 && P > 0);
			snprintf(text, sizeof(text),
				 "mixed(%s) %s T=%d P=%d: spec proxy ops/s / global proxy ops/s",
				 variant_names[b->variant], src, th, P);
			verdict(text,
				sp && gl && gl->med.proxy_ops_per_s > 0
				    ? sp->med.proxy_ops_per_s / gl->med.proxy_ops_per_s
				    : (sp && sp->med.proxy_ops_per_s > 0 ? INFINITY : 0),
				">=", 1.0, sp && gl && P > 0);
		}
	}
	fflush(stdout);
}

static void print_header(void)
{
	struct utsname u;

	if (opt.json)
		return;
	if (uname(&u))
		die("uname: %s", strerror(errno));
	printf("fault_storm: ufault %d.%d.%d, kernel %s %s, %u online CPUs, page %ld B, "
	       "THP %s\n",
	       UFAULT_VERSION_MAJOR, UFAULT_VERSION_MINOR, UFAULT_VERSION_PATCH, u.release,
	       u.machine, nr_cpus, page_size,
	       thp_always ? "always (NOHUGEPAGE on baselines)" : "not always");
	printf("pinned: %s; timer slack 1 ns (so a 50 us fill sleeps ~50 us, not 100)\n",
	       opt.pin ? "yes, every thread on CPU 0 (workers inherit it)" : "no");
	printf("workers/uffds: zero and async sources -> %s; slow source -> %s\n",
	       opt.workers || opt.uffds ? "as --workers/--uffds say"
					: "ufault defaults (1 worker, 1 uffd)",
	       opt.workers || opt.uffds ? "as --workers/--uffds say"
					: "nr_workers = nr_uffds = max(fault threads, CPUs)");
	printf("minimal: one handler thread, poll -> read 1 msg -> zero: UFFDIO_COPY of a zeroed "
	       "page on a write fault (UFFDIO_ZEROPAGE on a read), as ufault; slow: sleep + "
	       "UFFDIO_COPY; EEXIST = resolved (+UFFDIO_WAKE)\n");
	printf("us/f mean = T x elapsed / faults (per-thread time per fault); p50/p99 from "
	       "per-thread histograms of each first write, clock read before and after\n");
	printf("proxy ops/s = ufault_mmap+ufault_munmap calls of whole map/write/unmap cycles over "
	       "their time (mixed); aborts = sum of ufault_stats().spec_aborts[];\n"
	       "hndl flts = faults the handler reported; vs min / vs glob = faults/s ratio "
	       "(higher is better)\n");
	fflush(stdout);
}

/* ------------------------------------------------------------------ */
/* Command line                                                         */
/* ------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: fault_storm [options]\n"
	    "With no --workload, runs the default plan (< 2 min on 2 CPUs):\n"
	    "  1. pft, zero source, modes spec,region,range,global,minimal,native,\n"
	    "     threads 1,2,4,8,16, 0.5 s each\n"
	    "  2. check: pft T=1 spec vs minimal vs native, median of 5 interleaved runs\n"
	    "  3. mixed (adjacent), slow 50 us source, 8 fault threads, 2 proxies,\n"
	    "     the four ufault modes, plus spec with 0 proxies; 3 runs of 2 s\n"
	    "  then verdict lines.\n"
	    "\n"
	    "  --workload LIST     pft,check,page_fault1,ebizzy,mixed (or 'default')\n"
	    "  --modes LIST        spec,region,range,global,minimal,native (default all)\n"
	    "  --threads LIST      fault threads (default 1,2,4,8,16; mixed in the default plan "
	    "8)\n"
	    "  --proxies M         mixed: proxy threads (default 2); other workloads: 0\n"
	    "  --mixed-variant V   adjacent (proxies churn slots beside the fault regions)\n"
	    "                      or same (proxies MAP_FIXED over slices of them)\n"
	    "  --source S          zero, slow (a fill that sleeps the latency) or async (an\n"
	    "                      asynchronous fill completed after the latency; the minimal\n"
	    "                      handler sleeps instead) (default zero; mixed: slow)\n"
	    "  --latency-us N      slow source fill latency, slept not spun (default 50)\n"
	    "  --seconds X         seconds per measurement (default 1; default plan: see above)\n"
	    "  --size N[KMG]       per-thread region (pft/check 8M, page_fault1 128M,\n"
	    "                      ebizzy 512K, mixed 4M)\n"
	    "  --proxy-size N      mixed: proxy arena size (default 16M)\n"
	    "  --runs N            repetitions, median reported (default 1, check 5)\n"
	    "  --workers N         ufault nr_workers (default: the library's, 1 per uffd;\n"
	    "                      slow source: max(T, CPUs))\n"
	    "  --uffds N           ufault nr_uffds (default: 1; slow source: = workers)\n"
	    "  --fault-around N[K|M]  ufault fault_around_max: sequential faults install\n"
	    "                      windows growing up to N (default 0: one page per fault,\n"
	    "                      as the minimal handler)\n"
	    "  --pin               pin every thread (ufault workers too) to CPU 0\n"
	    "  --json              one JSON object per line instead of tables\n"
	    "  --help\n");
}

static void add_workload(const char *s)
{
	int i;

	if (!strcmp(s, "default") || !strcmp(s, "all")) {
		opt.workloads_set = false;
		return;
	}
	for (i = 0; i < W_NR; i++)
		if (!strcmp(s, wl_names[i]))
			break;
	if (i == W_NR)
		bad_usage("unknown workload '%s'", s);
	if (opt.nr_workloads < W_NR)
		opt.workloads[opt.nr_workloads++] = (enum workload)i;
	opt.workloads_set = true;
}

static void add_mode(const char *s)
{
	int i;

	for (i = 0; i < M_NR; i++)
		if (!strcmp(s, mode_names[i]))
			break;
	if (i == M_NR)
		bad_usage("unknown mode '%s'", s);
	if (opt.nr_modes >= M_NR)
		bad_usage("too many modes");
	opt.modes[opt.nr_modes++] = (enum mode)i;
}

static void add_threads(const char *s)
{
	if (opt.nr_threads >= MAX_LIST)
		bad_usage("at most %d thread counts", MAX_LIST);
	opt.threads[opt.nr_threads++] = (int)parse_long(s, "thread count", 1, 1024);
}

static void parse_args(int argc, char **argv)
{
	enum {
		O_WL = 256,
		O_MODES,
		O_THREADS,
		O_PROXIES,
		O_VARIANT,
		O_SOURCE,
		O_LAT,
		O_SECS,
		O_SIZE,
		O_PSIZE,
		O_RUNS,
		O_WORKERS,
		O_UFFDS,
		O_FAULT_AROUND,
		O_PIN,
		O_JSON
	};
	static const struct option lo[] = {
	    {"workload", required_argument, NULL, O_WL},
	    {"modes", required_argument, NULL, O_MODES},
	    {"threads", required_argument, NULL, O_THREADS},
	    {"proxies", required_argument, NULL, O_PROXIES},
	    {"mixed-variant", required_argument, NULL, O_VARIANT},
	    {"source", required_argument, NULL, O_SOURCE},
	    {"latency-us", required_argument, NULL, O_LAT},
	    {"seconds", required_argument, NULL, O_SECS},
	    {"size", required_argument, NULL, O_SIZE},
	    {"proxy-size", required_argument, NULL, O_PSIZE},
	    {"runs", required_argument, NULL, O_RUNS},
	    {"workers", required_argument, NULL, O_WORKERS},
	    {"uffds", required_argument, NULL, O_UFFDS},
	    {"fault-around", required_argument, NULL, O_FAULT_AROUND},
	    {"pin", no_argument, NULL, O_PIN},
	    {"json", no_argument, NULL, O_JSON},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case O_WL:
			parse_list(optarg, add_workload);
			break;
		case O_MODES:
			opt.nr_modes = 0;
			parse_list(optarg, add_mode);
			opt.modes_set = opt.nr_modes > 0;
			break;
		case O_THREADS:
			opt.nr_threads = 0;
			parse_list(optarg, add_threads);
			opt.threads_set = opt.nr_threads > 0;
			break;
		case O_PROXIES:
			opt.proxies = (int)parse_long(optarg, "proxy count", 0, 256);
			break;
		case O_VARIANT:
			if (!strcmp(optarg, "adjacent"))
				opt.variant = V_ADJACENT;
			else if (!strcmp(optarg, "same"))
				opt.variant = V_SAME;
			else
				bad_usage("unknown mixed variant '%s'", optarg);
			break;
		case O_SOURCE:
			if (!strcmp(optarg, "zero"))
				opt.source = S_ZERO;
			else if (!strcmp(optarg, "slow"))
				opt.source = S_SLOW;
			else if (!strcmp(optarg, "async"))
				opt.source = S_ASYNC;
			else
				bad_usage("unknown source '%s'", optarg);
			break;
		case O_LAT:
			opt.latency_us = (unsigned int)parse_long(optarg, "latency", 0, 10000000);
			break;
		case O_SECS: {
			char *end;

			opt.seconds = strtod(optarg, &end);
			if (end == optarg || *end || !(opt.seconds > 0) || opt.seconds > 3600)
				bad_usage("bad seconds '%s'", optarg);
			break;
		}
		case O_SIZE:
			opt.size = parse_size(optarg, "size");
			break;
		case O_PSIZE:
			opt.proxy_size = parse_size(optarg, "proxy size");
			break;
		case O_RUNS:
			opt.runs = (int)parse_long(optarg, "runs", 1, MAX_RUNS);
			break;
		case O_WORKERS:
			opt.workers = (unsigned int)parse_long(optarg, "workers", 1, 4096);
			break;
		case O_FAULT_AROUND:
			opt.fault_around = parse_size(optarg, "fault-around window");
			break;
		case O_UFFDS:
			opt.uffds = (unsigned int)parse_long(optarg, "uffds", 1, 4096);
			break;
		case O_PIN:
			opt.pin = true;
			break;
		case O_JSON:
			opt.json = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc)
		bad_usage("unexpected argument '%s'", argv[optind]);
}

int main(int argc, char **argv)
{
	static const int all_threads[] = {1, 2, 4, 8, 16};
	static const int eight[] = {8};
	static const enum mode all_modes[] = {M_SPEC,	M_REGION,  M_RANGE,
					      M_GLOBAL, M_MINIMAL, M_NATIVE};
	static const enum mode check_modes[] = {M_SPEC, M_MINIMAL, M_NATIVE};
	struct section *check = NULL, *mixed = NULL;
	uint64_t t0 = now_ns();
	long ncpu;
	int i;

	page_size = sysconf(_SC_PAGESIZE);
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (page_size <= 0 || ncpu <= 0)
		die("sysconf: %s", strerror(errno));
	nr_cpus = (unsigned int)ncpu;
	hist_setup();
	parse_args(argc, argv);
	thp_always = thp_is_always();

	/* Inherited by every thread created later, ufault's workers included. */
	if (prctl(PR_SET_TIMERSLACK, 1ul, 0ul, 0ul, 0ul))
		die("prctl(PR_SET_TIMERSLACK): %s", strerror(errno));
	if (opt.pin) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(0, &set);
		if (sched_setaffinity(0, sizeof(set), &set))
			die("sched_setaffinity(CPU 0): %s", strerror(errno));
	}
	print_header();

	if (!opt.workloads_set) {
		struct section *pft;

		pft = make_section(W_PFT, "pft", S_ZERO, 0.5, 1, all_threads, 5, all_modes, 6, 0);
		section_run(pft);
		/* The key check keeps its three modes even if --modes narrowed the rest. */
		{
			bool ms = opt.modes_set;

			opt.modes_set = false;
			check = make_section(W_CHECK, "check", S_ZERO, 0.5, 5, all_threads, 1,
					     check_modes, 3, 0);
			opt.modes_set = ms;
		}
		section_run(check);
		mixed = make_section(W_MIXED, "mixed", S_SLOW, 2.0, 3, eight, 1, all_modes, 4, 2);
		section_run(mixed);
	} else {
		for (i = 0; i < opt.nr_workloads; i++) {
			enum workload wl = opt.workloads[i];
			struct section *s;

			if (wl == W_CHECK)
				s = make_section(wl, "check", S_ZERO, 1, 5, all_threads, 1,
						 check_modes, 3, 0);
			else
				s = make_section(wl, wl_names[wl], wl == W_MIXED ? S_SLOW : S_ZERO,
						 1, 1, all_threads, 5, all_modes,
						 wl == W_MIXED ? 4 : 6, 2);
			section_run(s);
			if (wl == W_CHECK)
				check = s;
			if (wl == W_MIXED)
				mixed = s;
		}
	}
	if (check || mixed)
		print_verdicts(check, mixed);
	if (!opt.json)
		printf("\nwall time %.1f s\n", (double)(now_ns() - t0) / 1e9);
	return 0;
}
