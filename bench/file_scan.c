/* SPDX-License-Identifier: MIT */
/*
 * file_scan.c - scan a data file through a mapping: T threads touch one byte
 * of every page, sequentially (contiguous chunks from a shared cursor) or in
 * a random order, with the file's pages in the page cache (warm) or not
 * (cold: caches dropped before the measurement).
 *
 * Modes, each a fresh mapping (and, for ufault, a fresh context) per
 * measurement:
 *  - "mmap": the kernel's own file mapping, mmap(MAP_PRIVATE, PROT_READ);
 *  - "ufault-pread": an anonymous ufault region whose CALLBACK source
 *    pread(2)s each page into the worker's bounce buffer (installed with
 *    UFFDIO_COPY): the hand-written synchronous baseline that the library's
 *    file sources are to beat;
 *  - "ufault-file": an anonymous region with the io_uring file source;
 *  - "ufault-memfd": a private mapping of a fresh memfd with the memfd
 *    source filled from the file source (each page read once into the
 *    shared page cache, then mapped with UFFDIO_CONTINUE);
 *  - "ufault-memfd-shared": the same over a memfd whose cache was filled
 *    before the measurement (a clone of a snapshot already loaded): MINOR
 *    faults only, no read, no copy.
 *
 * The file's byte at offset o is a function of o (file_scan_util.h), so
 * every touch is checked; a single wrong byte fails the run (exit 1).
 * Each touch is timed in the touching thread (a clock read before and after
 * the first access of the page) into per-thread histograms in the library's
 * bucketing (bench_hist.h), merged after the run.
 *
 * Only the public API (include/ufault/ufault.h) is used. The program writes
 * nothing but its data file and /proc/sys/vm/drop_caches (cold runs).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <ufault/ufault.h>

#include "bench_util.h"
#include "file_scan_util.h"
#include "bench_hist.h"

/* ------------------------------------------------------------------ */
/* Modes, patterns, options                                             */
/* ------------------------------------------------------------------ */

enum mode {
	M_MMAP,
	M_UFAULT_PREAD,
	/* ufault_mmap of an anonymous region whose source is the io_uring
	 * file source reading the data file, with fault-around up to
	 * --fault-around (default 1 MiB). */
	M_UFAULT_FILE,
	/* A private mapping of a fresh memfd, registered with the memfd
	 * source whose inner source is the file source above: each page is
	 * read once into the memfd's page cache and mapped from there
	 * (UFFDIO_COPY into the cache, then UFFDIO_CONTINUE). */
	M_UFAULT_MEMFD,
	/* The same, over a memfd whose cache an earlier mapping filled (a
	 * clone of a snapshot another VM already loaded): every fault is a
	 * MINOR fault mapped with UFFDIO_CONTINUE, no read and no copy. The
	 * data file is not read: cold and warm differ only in the memfd
	 * being filled before the measurement either way. */
	M_UFAULT_MEMFD_SHARED,
	M_NR
};
static const char *const mode_names[M_NR] = {"mmap", "ufault-pread", "ufault-file", "ufault-memfd",
					     "ufault-memfd-shared"};

enum pattern { P_SEQ, P_RAND, P_NR };
static const char *const pattern_names[P_NR] = {"seq", "rand"};

enum cache { C_COLD, C_WARM, C_NR };
static const char *const cache_names[C_NR] = {"cold", "warm"};

#define MAX_LIST 16
#define MAX_RUNS 99
#define DROP_CACHES "/proc/sys/vm/drop_caches"

struct opts {
	size_t size;
	const char *file;
	int nr_threads;
	int threads[MAX_LIST];
	int nr_patterns;
	enum pattern patterns[P_NR];
	int nr_caches;
	enum cache caches[C_NR];
	int nr_modes;
	enum mode modes[M_NR];
	int runs;
	unsigned int workers; /* 0: the library's default */
	size_t chunk;	      /* seq: bytes a thread takes from the cursor at once */
	size_t ufault_page;   /* ufault region page: bytes filled per fault; 0: system page */
	size_t fault_around;  /* ufault-file: fault_around_max */
	bool json;
};

static struct opts opt = {
    .size = 1ul << 30,
    .file = "/var/tmp/ufault_file_scan.dat",
    .nr_threads = 2,
    .threads = {1, 2},
    .nr_patterns = 2,
    .patterns = {P_SEQ, P_RAND},
    .nr_caches = 2,
    .caches = {C_COLD, C_WARM},
    .nr_modes = 5,
    .modes = {M_MMAP, M_UFAULT_PREAD, M_UFAULT_FILE, M_UFAULT_MEMFD, M_UFAULT_MEMFD_SHARED},
    .runs = 3,
    .chunk = 2ul << 20,
    .fault_around = 1ul << 20,
};

static unsigned int page_shift;
static unsigned int nr_cpus;
static uint64_t nr_pages;
static uint32_t *perm;		     /* rand: a permutation of the file's pages */
static unsigned char *mincore_vec;   /* nr_pages entries */
static const char *cold_skip_reason; /* non-NULL: cold runs skipped, why */
static const char *file_state = "";
static unsigned int ufault_workers, ufault_uffds; /* what a context of ours gets */

/* ------------------------------------------------------------------ */
/* The data file                                                        */
/* ------------------------------------------------------------------ */

static int open_file(void)
{
	int fd = open(opt.file, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		die("open %s: %s", opt.file, strerror(errno));
	return fd;
}

/* Fraction of the file's pages in the page cache (mincore of a mapping never touched). */
static double cached_fraction(void)
{
	int fd = open_file();
	void *p = mmap(NULL, opt.size, PROT_READ, MAP_SHARED, fd, 0);
	uint64_t i, n = 0;

	if (p == MAP_FAILED)
		die("mmap %s for mincore: %s", opt.file, strerror(errno));
	if (mincore(p, opt.size, mincore_vec))
		die("mincore %s: %s", opt.file, strerror(errno));
	for (i = 0; i < nr_pages; i++)
		n += mincore_vec[i] & 1;
	munmap(p, opt.size);
	close(fd);
	return (double)n / (double)nr_pages;
}

/*
 * CPU time the whole machine spent busy so far, in seconds (/proc/stat: user,
 * nice, system, irq, softirq, steal; not idle or iowait); -1 if unknown. Set
 * against this process's own CPU time it tells how much else ran during a
 * measurement: on 2 CPUs, a test suite next door halves the numbers.
 */
static double machine_busy_s(void)
{
	unsigned long long v[8];
	long hz = sysconf(_SC_CLK_TCK);
	FILE *f = fopen("/proc/stat", "r");
	int n;

	if (!f)
		return -1;
	n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
		   &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	if (n != 8 || hz <= 0)
		return -1;
	return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)hz;
}

static double own_cpu_s(const struct rusage *ru)
{
	return (double)ru->ru_utime.tv_sec + (double)ru->ru_utime.tv_usec / 1e6 +
	       (double)ru->ru_stime.tv_sec + (double)ru->ru_stime.tv_usec / 1e6;
}

/* Share of all CPUs used by others over [@busy0, @busy1] / [@w0, @w1]; -1 if unknown. */
static double other_share(double busy0, double busy1, const struct rusage *ru0,
			  const struct rusage *ru1, uint64_t w0, uint64_t w1)
{
	double wall = (double)(w1 - w0) / 1e9, other;

	if (busy0 < 0 || busy1 < 0 || wall <= 0)
		return -1;
	other = (busy1 - busy0 - (own_cpu_s(ru1) - own_cpu_s(ru0))) / (wall * nr_cpus);
	return other < 0 ? 0 : other > 1 ? 1 : other;
}

/* What else uses the CPUs while this process sleeps @ms. */
static double idle_machine_other_share(unsigned int ms)
{
	struct rusage ru0, ru1;
	double b0, b1;
	uint64_t w0, w1;

	getrusage(RUSAGE_SELF, &ru0);
	b0 = machine_busy_s();
	w0 = now_ns();
	usleep(ms * 1000);
	getrusage(RUSAGE_SELF, &ru1);
	b1 = machine_busy_s();
	w1 = now_ns();
	return other_share(b0, b1, &ru0, &ru1, w0, w1);
}

/* Read the whole file once, so that every page is in the page cache. */
static void warm_cache(void)
{
	const size_t buf_len = 1ul << 20;
	char *buf = xcalloc(1, buf_len);
	int fd = open_file();
	uint64_t off;

	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	for (off = 0; off < opt.size; off += buf_len) {
		size_t len = opt.size - off < buf_len ? (size_t)(opt.size - off) : buf_len;

		bench_pread_all(fd, opt.file, buf, len, off);
	}
	close(fd);
	free(buf);
}

/* ------------------------------------------------------------------ */
/* The ufault-pread source                                              */
/* ------------------------------------------------------------------ */

/*
 * What the fill callback shares with the benchmark. Fills run on several
 * workers at once, so the time-in-pread histogram is updated atomically.
 */
struct pread_src {
	int fd;
	struct hist *fill;
};

/* The hand-written baseline: one synchronous pread per page; zeros past EOF, like mmap. */
static int pread_fill(void *arg, uint64_t offset, void *buf, size_t len)
{
	struct pread_src *s = arg;
	uint64_t t0 = now_ns();
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(s->fd, (char *)buf + done, len - done, (off_t)(offset + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) {
			memset((char *)buf + done, 0, len - done);
			break;
		}
		done += (size_t)n;
	}
	__atomic_fetch_add(&s->fill->b[ufault_stats_bucket_of(now_ns() - t0)], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&s->fill->n, 1, __ATOMIC_RELAXED);
	return 0;
}

/* ------------------------------------------------------------------ */
/* One measurement                                                      */
/* ------------------------------------------------------------------ */

/* What one measurement produced. */
struct result {
	double elapsed_s;
	uint64_t pages; /* touches */
	double pages_per_s;
	double us_p50, us_p99;		     /* per touch, in the touching thread */
	double vs_mmap;			     /* pages/s / mmap's pages/s in the same run; 0: none */
	uint64_t mismatches;		     /* touches that read a byte other than the oracle's */
	uint64_t first_bad;		     /* offset of the first mismatch */
	uint64_t minflt, majflt;	     /* getrusage(RUSAGE_SELF) over the scan */
	uint64_t handler_faults;	     /* ufault_stats().faults */
	uint64_t source_errors;		     /* ufault_stats().source_errors */
	double fill_us_p50, fill_us_p99;     /* ufault-pread: time in pread per fill */
	double worker_us_p50, worker_us_p99; /* ufault: message read to install */
	double cached;			     /* fraction of the file in the page cache before */
	double other_cpu; /* share of all CPUs used by others in the measurement; -1: unknown */
	unsigned int workers;
};

/* What the touching threads of one measurement share. */
struct scan {
	const unsigned char *base;
	enum pattern pat;
	int threads;
	uint64_t chunk_pages;
	uint64_t cursor; /* seq: next page to hand out; atomic */
	pthread_barrier_t start;
};

struct toucher {
	struct scan *sc;
	pthread_t tid;
	int idx;
	struct hist *h;
	uint64_t pages, mismatches, first_bad;
	uint64_t t0, t1;
};

/* Which byte of a page is touched: varies with the page, the same every run. */
static inline uint64_t touch_offset(uint64_t page)
{
	return (page << page_shift) | (mix64(page) & (uint64_t)(page_size - 1));
}

static inline void touch(struct toucher *t, uint64_t page)
{
	uint64_t off = touch_offset(page);
	const volatile unsigned char *p = t->sc->base + off;
	uint64_t a, b;
	unsigned char v;

	a = now_ns();
	v = *p;
	b = now_ns();
	hist_add(t->h, b - a);
	t->pages++;
	if (v != oracle_byte(off)) {
		if (!t->mismatches++)
			t->first_bad = off;
	}
}

static void *toucher_main(void *arg)
{
	/* Counted in a copy on this thread's stack: the array would share cache lines. */
	struct toucher me = *(struct toucher *)arg, *t = &me;
	struct scan *sc = t->sc;
	int err = pthread_barrier_wait(&sc->start);

	if (err && err != PTHREAD_BARRIER_SERIAL_THREAD)
		die("pthread_barrier_wait: %s", strerror(err));
	t->t0 = now_ns();
	if (sc->pat == P_SEQ) {
		for (;;) {
			uint64_t c =
			    __atomic_fetch_add(&sc->cursor, sc->chunk_pages, __ATOMIC_RELAXED);
			uint64_t end = c + sc->chunk_pages, pg;

			if (c >= nr_pages)
				break;
			if (end > nr_pages)
				end = nr_pages;
			for (pg = c; pg < end; pg++)
				touch(t, pg);
		}
	} else {
		uint64_t lo = nr_pages * (uint64_t)t->idx / (uint64_t)sc->threads;
		uint64_t hi = nr_pages * (uint64_t)(t->idx + 1) / (uint64_t)sc->threads, i;

		for (i = lo; i < hi; i++)
			touch(t, perm[i]);
	}
	t->t1 = now_ns();
	*(struct toucher *)arg = me;
	return NULL;
}

/* A mode's mapping of the file, and what it needs to be torn down. */
struct mapping {
	enum mode mode;
	int fd;
	unsigned char *base;
	struct ufault_ctx *ctx;
	struct pread_src src;
	int memfd; /* ufault-memfd*: the shared page cache */
};

/* A context as every ufault mode gets it: the default config, or --workers. */
static struct ufault_ctx *ctx_create(void)
{
	struct ufault_config cfg;
	struct ufault_ctx *ctx;
	int err;

	ufault_config_init(&cfg);
	cfg.nr_workers = opt.workers;
	err = ufault_ctx_create(&ctx, &cfg);
	if (err)
		die("ufault_ctx_create: %s", ufault_strerror(err));
	return ctx;
}

/* --ufault-page as region flags: 0 for the system page. */
static unsigned int region_page_flag(void)
{
	if (!opt.ufault_page || opt.ufault_page == (size_t)page_size)
		return 0;
	return UFAULT_REGION_PAGE_SHIFT(__builtin_ctzl((unsigned long)opt.ufault_page));
}

/* The file source's modes: fault_around_max from --fault-around. */
static struct ufault_ctx *ctx_create_fa(void)
{
	struct ufault_config cfg;
	struct ufault_ctx *ctx;
	int err;

	ufault_config_init(&cfg);
	cfg.nr_workers = opt.workers;
	cfg.fault_around_max = opt.fault_around;
	err = ufault_ctx_create(&ctx, &cfg);
	if (err)
		die("ufault_ctx_create: %s", ufault_strerror(err));
	return ctx;
}

/* Copy the data file into the memfd's page cache (ufault-memfd-shared). */
static void memfd_prefill(int memfd, int fd)
{
	const size_t step = 8ul << 20;
	char *buf = xcalloc(1, step);

	for (size_t off = 0; off < opt.size; off += step) {
		size_t n = opt.size - off < step ? opt.size - off : step;

		if (pread(fd, buf, n, (off_t)off) != (ssize_t)n ||
		    pwrite(memfd, buf, n, (off_t)off) != (ssize_t)n)
			die("filling the memfd: %s", strerror(errno));
	}
	free(buf);
}

/* A private read-only mapping of @fd, aligned to the region page. */
static void *map_aligned_file(int fd)
{
	size_t align = opt.ufault_page > (size_t)page_size ? opt.ufault_page : (size_t)page_size;
	char *r, *a, *p;

	r = mmap(NULL, opt.size + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
		 0);
	if (r == MAP_FAILED)
		die("reserving %zu bytes: %s", opt.size + align, strerror(errno));
	a = (char *)(((uintptr_t)r + align - 1) & ~(uintptr_t)(align - 1));
	p = mmap(a, opt.size, PROT_READ, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, fd, 0);
	if (p == MAP_FAILED)
		die("mmap of the memfd (%zu bytes): %s", opt.size, strerror(errno));
	if (a > r)
		munmap(r, (size_t)(a - r));
	munmap(a + opt.size, (size_t)(r + opt.size + align - (a + opt.size)));
	return p;
}

static void map_memfd(struct mapping *m)
{
	struct ufault_source s, from;
	void *p;
	int err;

	m->memfd = memfd_create("file_scan", MFD_CLOEXEC);
	if (m->memfd < 0 || ftruncate(m->memfd, (off_t)opt.size))
		die("memfd (%zu bytes): %s", opt.size, strerror(errno));
	if (m->mode == M_UFAULT_MEMFD_SHARED)
		memfd_prefill(m->memfd, m->fd);
	m->ctx = ctx_create_fa();
	ufault_source_init(&from, UFAULT_SOURCE_FILE);
	from.file.fd = m->fd;
	ufault_source_init(&s, UFAULT_SOURCE_MEMFD);
	s.memfd.fd = m->memfd;
	s.memfd.from = &from;
	p = map_aligned_file(m->memfd);
	err = ufault_region_register(m->ctx, p, opt.size, &s,
				     UFAULT_REGION_ON_ERROR_ZERO | region_page_flag(), NULL);
	if (err)
		die("ufault_region_register (memfd source): %s", ufault_strerror(err));
	m->base = p;
}

static void mode_map(struct mapping *m, enum mode mode)
{
	memset(m, 0, sizeof(*m));
	m->mode = mode;
	/* A fresh open per measurement: no readahead state carried over. */
	m->fd = open_file();

	switch (mode) {
	case M_MMAP: {
		void *p = mmap(NULL, opt.size, PROT_READ, MAP_PRIVATE, m->fd, 0);

		if (p == MAP_FAILED)
			die("mmap %s (%zu bytes): %s", opt.file, opt.size, strerror(errno));
		m->base = p;
		break;
	}
	case M_UFAULT_PREAD: {
		struct ufault_source s;
		void *p;

		m->ctx = ctx_create();
		m->src.fd = m->fd;
		m->src.fill = hist_new();
		ufault_source_init(&s, UFAULT_SOURCE_CALLBACK);
		s.callback.fill = pread_fill;
		s.callback.arg = &m->src;
		/*
		 * Zero policy, not SIGBUS: a failed fill is counted by
		 * ufault_stats() and its page fails the oracle, which this
		 * program reports, instead of killing it.
		 */
		p = ufault_mmap(m->ctx, NULL, opt.size, PROT_READ,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, &s,
				UFAULT_REGION_ON_ERROR_ZERO | region_page_flag());
		if (p == MAP_FAILED)
			die("ufault_mmap (%zu bytes): %s", opt.size, strerror(errno));
		m->base = p;
		break;
	}
	case M_UFAULT_FILE: {
		struct ufault_source s;
		void *p;

		m->ctx = ctx_create_fa();
		ufault_source_init(&s, UFAULT_SOURCE_FILE);
		s.file.fd = m->fd;
		p = ufault_mmap(m->ctx, NULL, opt.size, PROT_READ,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, &s,
				UFAULT_REGION_ON_ERROR_ZERO | region_page_flag());
		if (p == MAP_FAILED)
			die("ufault_mmap (%zu bytes): %s", opt.size, strerror(errno));
		m->base = p;
		break;
	}
	case M_UFAULT_MEMFD:
	case M_UFAULT_MEMFD_SHARED:
		map_memfd(m);
		break;
	default:
		die("internal: mode %d has no mapping", (int)mode);
	}
}

/* Unmap; fill in the handler's side of @r. */
static void mode_unmap(struct mapping *m, struct result *r)
{
	switch (m->mode) {
	case M_MMAP:
		if (munmap(m->base, opt.size))
			die("munmap: %s", strerror(errno));
		break;
	case M_UFAULT_PREAD:
	case M_UFAULT_FILE:
	case M_UFAULT_MEMFD:
	case M_UFAULT_MEMFD_SHARED: {
		struct ufault_stats st;
		int err;

		memset(&st, 0, sizeof(st));
		st.size = sizeof(st);
		err = ufault_stats(m->ctx, &st);
		if (err)
			die("ufault_stats: %s", ufault_strerror(err));
		r->handler_faults = st.faults;
		r->source_errors = st.source_errors;
		r->worker_us_p50 = (double)st.latency_p50_ns / 1e3;
		r->worker_us_p99 = (double)st.latency_p99_ns / 1e3;
		r->workers = ufault_ctx_nr_workers(m->ctx);
		if (m->src.fill) {
			r->fill_us_p50 = hist_quantile_ns(m->src.fill, 500) / 1e3;
			r->fill_us_p99 = hist_quantile_ns(m->src.fill, 990) / 1e3;
		}
		if (ufault_munmap(m->ctx, m->base, opt.size))
			die("ufault_munmap: %s", strerror(errno));
		ufault_ctx_destroy(m->ctx);
		free(m->src.fill);
		if (m->mode == M_UFAULT_MEMFD || m->mode == M_UFAULT_MEMFD_SHARED)
			close(m->memfd); /* the last reference: its pages are freed */
		break;
	}
	default:
		die("internal: mode %d has no mapping", (int)m->mode);
	}
	close(m->fd);
}

static void run_one(enum mode mode, enum cache cache, enum pattern pat, int threads,
		    struct result *r)
{
	struct toucher *t = xcalloc((size_t)threads, sizeof(*t));
	struct hist *all = hist_new();
	struct rusage ru0, ru1, rua, rub;
	struct mapping m;
	struct scan sc;
	uint64_t t0 = UINT64_MAX, t1 = 0, wa, wb;
	double busya, busyb;
	int i, err;

	/*
	 * The window for the CPU share of other processes is the whole
	 * measurement, preparation included (all of it this process's work):
	 * /proc/stat counts in 10 ms ticks, too coarse for a 0.1 s scan alone.
	 */
	if (getrusage(RUSAGE_SELF, &rua))
		die("getrusage: %s", strerror(errno));
	busya = machine_busy_s();
	wa = now_ns();
	memset(r, 0, sizeof(*r));
	if (cache == C_COLD)
		bench_drop_caches();
	else
		warm_cache();
	r->cached = cached_fraction();
	mode_map(&m, mode);

	memset(&sc, 0, sizeof(sc));
	sc.base = m.base;
	sc.pat = pat;
	sc.threads = threads;
	sc.chunk_pages = opt.chunk >> page_shift;
	err = pthread_barrier_init(&sc.start, NULL, (unsigned int)threads);
	if (err)
		die("pthread_barrier_init: %s", strerror(err));
	if (getrusage(RUSAGE_SELF, &ru0))
		die("getrusage: %s", strerror(errno));
	for (i = 0; i < threads; i++) {
		t[i].sc = &sc;
		t[i].idx = i;
		t[i].h = hist_new();
		err = pthread_create(&t[i].tid, NULL, toucher_main, &t[i]);
		if (err)
			die("pthread_create: %s", strerror(err));
	}
	for (i = 0; i < threads; i++) {
		err = pthread_join(t[i].tid, NULL);
		if (err)
			die("pthread_join: %s", strerror(err));
	}
	if (getrusage(RUSAGE_SELF, &ru1))
		die("getrusage: %s", strerror(errno));
	pthread_barrier_destroy(&sc.start);
	mode_unmap(&m, r);
	if (getrusage(RUSAGE_SELF, &rub))
		die("getrusage: %s", strerror(errno));
	busyb = machine_busy_s();
	wb = now_ns();

	for (i = 0; i < threads; i++) {
		hist_merge(all, t[i].h);
		r->pages += t[i].pages;
		if (t[i].mismatches && !r->mismatches)
			r->first_bad = t[i].first_bad;
		r->mismatches += t[i].mismatches;
		if (t[i].t0 < t0)
			t0 = t[i].t0;
		if (t[i].t1 > t1)
			t1 = t[i].t1;
		free(t[i].h);
	}
	r->elapsed_s = (double)(t1 - t0) / 1e9;
	r->pages_per_s = r->elapsed_s > 0 ? (double)r->pages / r->elapsed_s : 0;
	r->us_p50 = hist_quantile_ns(all, 500) / 1e3;
	r->us_p99 = hist_quantile_ns(all, 990) / 1e3;
	r->other_cpu = other_share(busya, busyb, &rua, &rub, wa, wb);
	r->minflt = (uint64_t)(ru1.ru_minflt - ru0.ru_minflt);
	r->majflt = (uint64_t)(ru1.ru_majflt - ru0.ru_majflt);
	if (r->pages != nr_pages)
		die("internal: %" PRIu64 " touches for %" PRIu64 " pages", r->pages, nr_pages);
	if (r->mismatches)
		warnx("FAILURE: %s %s %s T=%d: %" PRIu64 " of %" PRIu64
		      " touches read a wrong byte (first at file offset %" PRIu64 ")",
		      mode_names[mode], pattern_names[pat], cache_names[cache], threads,
		      r->mismatches, r->pages, r->first_bad);
	if (r->source_errors)
		warnx("FAILURE: %s %s %s T=%d: %" PRIu64 " fills failed", mode_names[mode],
		      pattern_names[pat], cache_names[cache], threads, r->source_errors);
	if (mode != M_MMAP && r->handler_faults == 0)
		warnx("WARNING: %s handled no faults: the numbers are meaningless",
		      mode_names[mode]);
	free(all);
	free(t);
}

/* ------------------------------------------------------------------ */
/* Cells, medians, output                                               */
/* ------------------------------------------------------------------ */

/* One line of the table: a mode at one (cache, pattern, threads). */
struct cell {
	enum mode mode;
	enum cache cache;
	enum pattern pat;
	int threads;
	int n;
	struct result r[MAX_RUNS];
	struct result med; /* medians over the runs, field by field */
};

static double median_of(const struct cell *c, size_t field)
{
	return median_field(c->r, sizeof(c->r[0]), c->n, field);
}

static uint64_t median_u64(const struct cell *c, size_t field)
{
	return median_field_u64(c->r, sizeof(c->r[0]), c->n, field);
}

#define MED(f) (d->f = median_of(c, offsetof(struct result, f)))
#define MEDU(f) (d->f = median_u64(c, offsetof(struct result, f)))

static void take_median(struct cell *c)
{
	struct result *d = &c->med;
	int i;

	memset(d, 0, sizeof(*d));
	MED(elapsed_s);
	MED(pages_per_s);
	MED(us_p50);
	MED(us_p99);
	MED(vs_mmap);
	MED(fill_us_p50);
	MED(fill_us_p99);
	MED(worker_us_p50);
	MED(worker_us_p99);
	MED(cached);
	MED(other_cpu);
	MEDU(minflt);
	MEDU(majflt);
	MEDU(handler_faults);
	d->pages = c->r[0].pages;
	d->workers = c->r[0].workers;
	/* Failures are summed, never hidden by a median. */
	for (i = 0; i < c->n; i++) {
		d->mismatches += c->r[i].mismatches;
		d->source_errors += c->r[i].source_errors;
	}
}

static void fmt_us(char *buf, size_t n, double us, bool have)
{
	if (!have)
		snprintf(buf, n, "-");
	else if (us >= 100)
		snprintf(buf, n, "%.0f", us);
	else
		snprintf(buf, n, "%.2f", us);
}

static void print_table_header(void)
{
	printf("\n%-19s %2s %-4s %-5s %9s %8s %8s %7s %8s %7s %8s %8s %6s %5s %5s\n", "mode", "T",
	       "pat", "cache", "pages/s", "p50 us", "p99 us", "vs mmap", "faults", "major",
	       "pread50", "wk p50", "cached", "other", "bad");
	fflush(stdout);
}

static void print_row(const struct cell *c)
{
	const struct result *r = &c->med;
	bool uf = c->mode != M_MMAP;
	char pps[16], ratio[16], flt[16], maj[16], p50[16], p99[16], f50[16], w50[16], oth[16];

	fmt_count(pps, sizeof(pps), r->pages_per_s);
	if (r->vs_mmap > 0)
		snprintf(ratio, sizeof(ratio), "%.3fx", r->vs_mmap);
	else
		snprintf(ratio, sizeof(ratio), "%s", c->mode == M_MMAP ? "" : "-");
	fmt_count(flt, sizeof(flt), (double)(r->minflt + r->majflt));
	fmt_count(maj, sizeof(maj), (double)r->majflt);
	fmt_us(p50, sizeof(p50), r->us_p50, true);
	fmt_us(p99, sizeof(p99), r->us_p99, true);
	fmt_us(f50, sizeof(f50), r->fill_us_p50, uf);
	fmt_us(w50, sizeof(w50), r->worker_us_p50, uf);
	if (r->other_cpu >= 0)
		snprintf(oth, sizeof(oth), "%.0f%%", 100 * r->other_cpu);
	else
		snprintf(oth, sizeof(oth), "?");
	printf("%-19s %2d %-4s %-5s %9s %8s %8s %7s %8s %7s %8s %8s %5.1f%% %5s %5" PRIu64 "\n",
	       mode_names[c->mode], c->threads, pattern_names[c->pat], cache_names[c->cache], pps,
	       p50, p99, ratio, flt, maj, f50, w50, 100 * r->cached, oth,
	       r->mismatches + r->source_errors);
	fflush(stdout);
}

static void json_cell(const struct cell *c)
{
	const struct result *r = &c->med;

	printf("{\"bench\":\"file_scan\",\"mode\":\"%s\",\"threads\":%d,\"pattern\":\"%s\","
	       "\"cache\":\"%s\",\"size\":%zu,\"page_size\":%ld,\"chunk\":%zu,\"runs\":%d,"
	       "\"workers\":%u,\"pages\":%" PRIu64 ",\"pages_per_s\":%.1f,"
	       "\"touch_us_p50\":%.3f,\"touch_us_p99\":%.3f,\"vs_mmap\":%.4f,"
	       "\"mismatches\":%" PRIu64 ",\"source_errors\":%" PRIu64 ",\"minflt\":%" PRIu64
	       ",\"majflt\":%" PRIu64 ",\"handler_faults\":%" PRIu64 ",\"fill_us_p50\":%.3f,"
	       "\"fill_us_p99\":%.3f,\"worker_us_p50\":%.3f,\"worker_us_p99\":%.3f,"
	       "\"cached_before\":%.4f,\"ufault_page\":%zu,\"other_cpu\":%.3f,"
	       "\"elapsed_s\":%.4f}\n",
	       mode_names[c->mode], c->threads, pattern_names[c->pat], cache_names[c->cache],
	       opt.size, page_size, opt.chunk, c->n, r->workers, r->pages, r->pages_per_s,
	       r->us_p50, r->us_p99, r->vs_mmap, r->mismatches, r->source_errors, r->minflt,
	       r->majflt, r->handler_faults, r->fill_us_p50, r->fill_us_p99, r->worker_us_p50,
	       r->worker_us_p99, r->cached, opt.ufault_page ? opt.ufault_page : (size_t)page_size,
	       r->other_cpu, r->elapsed_s);
	fflush(stdout);
}

/*
 * Run the cells of one (cache, pattern, threads) group: the runs are the
 * outer loop and the modes the inner one (A B A B ...), so drift of the
 * machine spreads over every mode, and each run's ratio against mmap
 * compares measurements taken next to each other.
 */
static void group_run(struct cell *cells, int nr)
{
	int run, j;

	for (run = 0; run < opt.runs; run++) {
		const struct result *base = NULL;

		for (j = 0; j < nr; j++) {
			struct cell *c = &cells[j];

			run_one(c->mode, c->cache, c->pat, c->threads, &c->r[c->n++]);
			if (c->mode == M_MMAP)
				base = &c->r[c->n - 1];
		}
		for (j = 0; j < nr && base; j++) {
			struct result *r = &cells[j].r[cells[j].n - 1];

			if (cells[j].mode != M_MMAP && base->pages_per_s > 0)
				r->vs_mmap = r->pages_per_s / base->pages_per_s;
		}
	}
	for (j = 0; j < nr; j++) {
		take_median(&cells[j]);
		if (opt.json)
			json_cell(&cells[j]);
		else
			print_row(&cells[j]);
	}
}

static const struct cell *find_cell(const struct cell *cells, int nr, enum mode mode,
				    enum cache cache, enum pattern pat, int threads)
{
	int i;

	for (i = 0; i < nr; i++)
		if (cells[i].mode == mode && cells[i].cache == cache && cells[i].pat == pat &&
		    cells[i].threads == threads && cells[i].n)
			return &cells[i];
	return NULL;
}

/*
 * Cold sequential scans: ufault-pread against mmap. Informational: the
 * pread baseline has no target; the file source the issue adds is to reach
 * >= 0.5x mmap (aim 0.7x) here.
 */
static void print_verdicts(const struct cell *cells, int nr)
{
	char upage[48] = "";
	int t;

	if (opt.ufault_page && opt.ufault_page != (size_t)page_size)
		snprintf(upage, sizeof(upage), " (region page %zu KiB)", opt.ufault_page >> 10);
	if (!opt.json)
		printf("\n== verdicts (informational) ==\n");
	for (t = 0; t < opt.nr_threads; t++) {
		int th = opt.threads[t];
		const struct cell *uf = find_cell(cells, nr, M_UFAULT_PREAD, C_COLD, P_SEQ, th);
		const struct cell *mm = find_cell(cells, nr, M_MMAP, C_COLD, P_SEQ, th);
		char text[192];
		const char *why = cold_skip_reason ? cold_skip_reason
				  : !uf || !mm ? "cold seq with mmap and ufault-pread not in this "
						 "run's --modes/--pattern/--cache"
					       : NULL;

		for (enum mode fm = M_UFAULT_FILE; fm <= M_UFAULT_MEMFD; fm++) {
			const struct cell *fs = find_cell(cells, nr, fm, C_COLD, P_SEQ, th);

			if (fs && mm && !cold_skip_reason && !opt.json)
				printf("cold seq T=%d: %s (fault-around %zu KiB) pages/s / "
				       "mmap pages/s = %.3f (target >= 0.5, aim 0.7): %s\n",
				       th, mode_names[fm], opt.fault_around >> 10, fs->med.vs_mmap,
				       fs->med.vs_mmap >= 0.5 ? "PASS" : "FAIL");
		}
		snprintf(text, sizeof(text),
			 "cold seq T=%d: ufault-pread%s pages/s / mmap pages/s (median of %d "
			 "per-run ratios)",
			 th, upage, opt.runs);
		if (opt.json) {
			printf("{\"verdict\":\"%s\",\"measured\":%.4f,\"op\":\">=\","
			       "\"target\":0.5,\"aim\":0.7,\"target_for\":\"ufault-file\","
			       "\"result\":\"%s\"}\n",
			       text, why ? 0.0 : uf->med.vs_mmap, why ? "SKIP" : "INFO");
			continue;
		}
		if (why) {
			printf("%s: SKIP (%s)\n", text, why);
			continue;
		}
		printf("%s = %.3f  [INFO: baseline; the ufault-file target is >= 0.5, aim 0.7]\n",
		       text, uf->med.vs_mmap);
		printf(
		    "    mmap %.0f pages/s (%.0f MiB/s), ufault-pread %.0f pages/s (%.0f MiB/s); "
		    "ufault-pread pread p50 %.2f us, worker p50 %.2f us, touch p50 %.2f us\n",
		    mm->med.pages_per_s, mm->med.pages_per_s * (double)page_size / 1048576.0,
		    uf->med.pages_per_s, uf->med.pages_per_s * (double)page_size / 1048576.0,
		    uf->med.fill_us_p50, uf->med.worker_us_p50, uf->med.us_p50);
	}
	fflush(stdout);
}

static void print_header(double other)
{
	struct utsname u;
	int i;

	if (opt.json)
		return;
	if (uname(&u))
		die("uname: %s", strerror(errno));
	printf("file_scan: ufault %d.%d.%d, kernel %s %s, %u online CPUs, page %ld B, other "
	       "processes use %.0f%% of the CPUs\n",
	       UFAULT_VERSION_MAJOR, UFAULT_VERSION_MINOR, UFAULT_VERSION_PATCH, u.release,
	       u.machine, nr_cpus, page_size, 100 * other);
	printf("file %s, %zu MiB, %s; %" PRIu64 " pages, one byte touched per page, every "
	       "byte checked\n",
	       opt.file, opt.size >> 20, file_state, nr_pages);
	printf("modes:");
	for (i = 0; i < opt.nr_modes; i++)
		printf(" %s", mode_names[opt.modes[i]]);
	printf("\n");
	if (ufault_workers)
		printf("ufault: %u worker%s, %u uffd%s (%s); region page %zu KiB (one pread + "
		       "UFFDIO_COPY of that size per fault)\n",
		       ufault_workers, ufault_workers == 1 ? "" : "s", ufault_uffds,
		       ufault_uffds == 1 ? "" : "s", opt.workers ? "--workers" : "library default",
		       (opt.ufault_page ? opt.ufault_page : (size_t)page_size) >> 10);
	printf("seq: %zu KiB chunks from a shared cursor; rand: one fixed permutation of the "
	       "pages, split in T slices\n",
	       opt.chunk >> 10);
	printf("cold: sync + drop_caches before each measurement%s; warm: file read once "
	       "before each\n",
	       cold_skip_reason ? " (SKIPPED: see above)" : "");
	printf("%d run%s per cell, median reported%s; vs mmap = median of per-run ratios of "
	       "pages/s against mmap in the same run\n",
	       opt.runs, opt.runs > 1 ? "s" : "", opt.runs > 1 ? ", modes interleaved" : "");
	printf(
	    "p50/p99 us: per touch, clock read before and after; faults/major: getrusage "
	    "over the scan;\npread50: time in pread per fill; wk p50: ufault worker time "
	    "per fault (read to install);\ncached: file in page cache before; other: CPU "
	    "share of other processes, irqs and steal during the measurement; bad: wrong bytes + "
	    "failed fills\n");
	fflush(stdout);
}

/* ------------------------------------------------------------------ */
/* Command line                                                         */
/* ------------------------------------------------------------------ */

void usage(FILE *f)
{
	fprintf(f,
		"usage: file_scan [options]\n"
		"T threads touch one byte of every 4 KiB page of a data file through a mapping,\n"
		"cold (page cache dropped) and warm; each touch is timed and checked.\n"
		"The default run (1 GiB, threads 1,2, seq+rand, cold+warm, 3 runs: 48\n"
		"measurements) takes about 4 minutes on 2 CPUs and a virtio disk; the first\n"
		"run also writes the file (seconds).\n"
		"\n"
		"  --file PATH      data file (default /var/tmp/ufault_file_scan.dat); written\n"
		"                   once if missing, of another size or of other contents\n"
		"  --size N[KMG]    file size (default 1G)\n"
		"  --modes LIST     mmap,ufault-pread,ufault-file,ufault-memfd,\n"
		"                   ufault-memfd-shared (default all five)\n"
		"  --fault-around N ufault-file, ufault-memfd*: fault_around_max (default 1M;\n"
		"                   0: one page per fault)\n"
		"  --threads LIST   touching threads (default 1,2)\n"
		"  --pattern LIST   seq,rand (default both)\n"
		"  --cache LIST     cold,warm (default both; cold needs root to write\n"
		"                   " DROP_CACHES ", else it is skipped)\n"
		"  --runs N         repetitions per cell, median reported, modes interleaved\n"
		"                   (default 3)\n"
		"  --workers N      ufault worker threads (default: the library's default)\n"
		"  --chunk N[KMG]   seq: contiguous bytes a thread takes at once (default 2M)\n"
		"  --ufault-page N[KMG]  ufault region page: bytes one fault fills with one\n"
		"                   pread (power of two, 4K..2M; default the system page)\n"
		"  --json           one JSON object per line instead of the table\n"
		"  --help\n"
		"Exit status: 0, or 1 if any touch read a wrong byte or a fill failed.\n");
}

static void add_mode(const char *s)
{
	int i = bench_lookup(s, mode_names, M_NR), k;

	if (i < 0)
		bad_usage("unknown mode '%s'", s);
	for (k = 0; k < opt.nr_modes; k++)
		if (opt.modes[k] == (enum mode)i)
			return;
	opt.modes[opt.nr_modes++] = (enum mode)i;
}

static void add_pattern(const char *s)
{
	int i = bench_lookup(s, pattern_names, P_NR), k;

	if (i < 0)
		bad_usage("unknown pattern '%s'", s);
	for (k = 0; k < opt.nr_patterns; k++)
		if (opt.patterns[k] == (enum pattern)i)
			return;
	opt.patterns[opt.nr_patterns++] = (enum pattern)i;
}

static void add_cache(const char *s)
{
	int i = bench_lookup(s, cache_names, C_NR), k;

	if (i < 0)
		bad_usage("unknown cache state '%s'", s);
	for (k = 0; k < opt.nr_caches; k++)
		if (opt.caches[k] == (enum cache)i)
			return;
	opt.caches[opt.nr_caches++] = (enum cache)i;
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
		O_FILE = 256,
		O_SIZE,
		O_MODES,
		O_THREADS,
		O_PATTERN,
		O_CACHE,
		O_RUNS,
		O_WORKERS,
		O_CHUNK,
		O_UPAGE,
		O_FAROUND,
		O_JSON
	};
	static const struct option lo[] = {
	    {"file", required_argument, NULL, O_FILE},
	    {"size", required_argument, NULL, O_SIZE},
	    {"modes", required_argument, NULL, O_MODES},
	    {"threads", required_argument, NULL, O_THREADS},
	    {"pattern", required_argument, NULL, O_PATTERN},
	    {"cache", required_argument, NULL, O_CACHE},
	    {"runs", required_argument, NULL, O_RUNS},
	    {"workers", required_argument, NULL, O_WORKERS},
	    {"chunk", required_argument, NULL, O_CHUNK},
	    {"ufault-page", required_argument, NULL, O_UPAGE},
	    {"fault-around", required_argument, NULL, O_FAROUND},
	    {"json", no_argument, NULL, O_JSON},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case O_FILE:
			if (!*optarg)
				bad_usage("empty --file");
			opt.file = optarg;
			break;
		case O_SIZE:
			opt.size = parse_size(optarg, "size");
			break;
		case O_MODES:
			opt.nr_modes = 0;
			parse_list(optarg, add_mode);
			break;
		case O_THREADS:
			opt.nr_threads = 0;
			parse_list(optarg, add_threads);
			break;
		case O_PATTERN:
			opt.nr_patterns = 0;
			parse_list(optarg, add_pattern);
			break;
		case O_CACHE:
			opt.nr_caches = 0;
			parse_list(optarg, add_cache);
			break;
		case O_RUNS:
			opt.runs = (int)parse_long(optarg, "runs", 1, MAX_RUNS);
			break;
		case O_WORKERS:
			opt.workers = (unsigned int)parse_long(optarg, "workers", 1, 4096);
			break;
		case O_CHUNK:
			opt.chunk = parse_size(optarg, "chunk");
			break;
		case O_UPAGE:
			opt.ufault_page = parse_size(optarg, "ufault page");
			if (opt.ufault_page & (opt.ufault_page - 1) ||
			    opt.ufault_page > (2ul << 20))
				bad_usage("--ufault-page must be a power of two, at most 2M");
			break;
		case O_FAROUND:
			opt.fault_around = parse_size(optarg, "fault-around window");
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
	if (!opt.nr_modes || !opt.nr_threads || !opt.nr_patterns || !opt.nr_caches)
		bad_usage("empty list");
	if (opt.ufault_page && opt.size % opt.ufault_page)
		bad_usage("--size must be a multiple of --ufault-page");
	if ((opt.size >> __builtin_ctzl((unsigned long)page_size)) > UINT32_MAX)
		bad_usage("size too large (at most 2^32 pages)");
}

int main(int argc, char **argv)
{
	uint64_t t0 = now_ns(), failures = 0;
	double other, worst = 0;
	struct cell *cells;
	int nr = 0, ci, pi, ti, mi, k;
	long ncpu;

	page_size = sysconf(_SC_PAGESIZE);
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (page_size <= 0 || ncpu <= 0)
		die("sysconf: %s", strerror(errno));
	if (page_size & (page_size - 1))
		die("page size %ld is not a power of two", page_size);
	page_shift = (unsigned int)__builtin_ctzl((unsigned long)page_size);
	nr_cpus = (unsigned int)ncpu;
	hist_setup();
	parse_args(argc, argv);
	nr_pages = opt.size >> page_shift;
	if (opt.chunk < (size_t)page_size)
		opt.chunk = (size_t)page_size;
	mincore_vec = xcalloc(nr_pages, 1);

	for (k = 0; k < opt.nr_caches; k++)
		if (opt.caches[k] == C_COLD && (cold_skip_reason = bench_drop_caches_probe()))
			warnx("%s: skipping the cold measurements", cold_skip_reason);
	file_state = bench_data_file(opt.file, opt.size, oracle_fill, NULL, opt.json);
	/* The random order, the same every run. */
	perm = bench_shuffle(nr_pages, 0x5eed);
	for (k = 0; k < opt.nr_modes; k++)
		if (opt.modes[k] != M_MMAP) {
			struct ufault_ctx *ctx = ctx_create();

			ufault_workers = ufault_ctx_nr_workers(ctx);
			ufault_uffds = ufault_ctx_nr_uffds(ctx);
			ufault_ctx_destroy(ctx);
			break;
		}
	other = idle_machine_other_share(500);
	if (other > 0.1)
		warnx("WARNING: other processes use %.0f%% of the CPUs: timings will be noisy "
		      "(column 'other')",
		      100 * other);
	print_header(other);

	cells = xcalloc((size_t)(C_NR * P_NR * MAX_LIST * M_NR), sizeof(*cells));
	if (!opt.json)
		print_table_header();
	for (ci = 0; ci < opt.nr_caches; ci++) {
		if (opt.caches[ci] == C_COLD && cold_skip_reason)
			continue;
		for (pi = 0; pi < opt.nr_patterns; pi++)
			for (ti = 0; ti < opt.nr_threads; ti++) {
				int first = nr;

				for (mi = 0; mi < opt.nr_modes; mi++) {
					struct cell *c = &cells[nr++];

					c->mode = opt.modes[mi];
					c->cache = opt.caches[ci];
					c->pat = opt.patterns[pi];
					c->threads = opt.threads[ti];
				}
				group_run(&cells[first], nr - first);
			}
	}
	print_verdicts(cells, nr);
	for (k = 0; k < nr; k++) {
		failures += cells[k].med.mismatches + cells[k].med.source_errors;
		if (cells[k].med.other_cpu > worst)
			worst = cells[k].med.other_cpu;
	}
	if (!opt.json)
		printf("\nwall time %.1f s; other processes used at most %.0f%% of the CPUs "
		       "during a measurement (median of its runs)\n",
		       (double)(now_ns() - t0) / 1e9, 100 * worst);
	if (failures) {
		fflush(stdout);
		fprintf(stderr,
			"file_scan: FAILED: %" PRIu64 " wrong bytes or failed fills (see above)\n",
			failures);
		return 1;
	}
	return 0;
}
