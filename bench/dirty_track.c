/* SPDX-License-Identifier: MIT */
/*
 * dirty_track.c - what tracking the writes of a write-back region
 * (UFAULT_REGION_WRITEBACK) costs the program that writes, and what a
 * flush costs. One writer thread writes one byte of every page of a region
 * (a different value each pass) while a flusher thread calls ufault_flush()
 * on the whole region every --interval ms, for --seconds.
 *
 * Modes, each a fresh context and region per measurement, interleaved
 * (plain async sync plain async sync ...), medians of --runs:
 *  - "plain": the same region without UFAULT_REGION_WRITEBACK; the flusher
 *    calls ufault_flush() anyway (it finds nothing to do): the baseline;
 *  - "async": UFAULT_DIRTY_ASYNC (the kernel marks written pages itself,
 *    a flush finds them with PAGEMAP_SCAN);
 *  - "sync": UFAULT_DIRTY_SYNC (the first write to a clean page is a
 *    write-protect fault a worker resolves).
 *
 * The region is faulted in (read) before the clock starts, so the writer
 * only ever touches pages that are there: what it pays is the tracking.
 * The write-back target is a CALLBACK source whose writeback memcpy()s into
 * a buffer (no disk I/O measured), or with --target file a file in
 * /var/tmp (io_uring writes and fdatasync included).
 *
 * After each write-back measurement a last flush runs and every page's
 * stored byte is checked against the last value the writer put there; a
 * single wrong byte fails the program (exit 1).
 *
 * Only the public API (include/ufault/ufault.h) is used.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <ufault/ufault.h>

#include "bench_util.h"
#include "bench_hist.h"

/* ------------------------------------------------------------------ */
/* Modes, options                                                       */
/* ------------------------------------------------------------------ */

enum mode { M_PLAIN, M_ASYNC, M_SYNC, M_NR };
static const char *const mode_names[M_NR] = {"plain", "async", "sync"};

enum target { T_CALLBACK, T_FILE, T_NR };
static const char *const target_names[T_NR] = {"callback", "file"};

#define MAX_RUNS 99

struct opts {
	size_t size;
	long interval_ms;
	long seconds_ms;
	int runs;
	enum target target;
	const char *file;
	int nr_modes;
	enum mode modes[M_NR];
	unsigned int workers; /* 0: the library's default */
	bool json;
};

static struct opts opt = {
    .size = 16ul << 20,
    .interval_ms = 10,
    .seconds_ms = 2000,
    .runs = 3,
    .target = T_CALLBACK,
    .file = "/var/tmp/ufault_dirty_track.dat",
    .nr_modes = M_NR,
    .modes = {M_PLAIN, M_ASYNC, M_SYNC},
};

static unsigned int page_shift;
static uint64_t nr_pages;
static unsigned char *store; /* callback target: the region's bytes, by source offset */
static int file_fd = -1;     /* file target */

/* ------------------------------------------------------------------ */
/* The write-back targets                                               */
/* ------------------------------------------------------------------ */

static int store_fill(void *arg, uint64_t offset, void *buf, size_t len)
{
	(void)arg;
	memcpy(buf, store + offset, len);
	return 0;
}

static int store_writeback(void *arg, uint64_t offset, const void *buf, size_t len)
{
	(void)arg;
	if (offset > opt.size || len > opt.size - offset)
		return -EINVAL;
	memcpy(store + offset, buf, len);
	return 0;
}

static void file_open(void)
{
	file_fd = open(opt.file, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (file_fd < 0)
		die("create %s: %s", opt.file, strerror(errno));
	if (ftruncate(file_fd, (off_t)opt.size))
		die("ftruncate %s: %s", opt.file, strerror(errno));
}

/* The stored byte of page @pg (the byte the writer writes). */
static unsigned char stored_byte(uint64_t pg)
{
	unsigned char c;

	if (opt.target == T_CALLBACK)
		return store[pg << page_shift];
	if (pread(file_fd, &c, 1, (off_t)(pg << page_shift)) != 1)
		die("read %s: %s", opt.file, strerror(errno));
	return c;
}

/* ------------------------------------------------------------------ */
/* One measurement                                                      */
/* ------------------------------------------------------------------ */

struct result {
	double elapsed_s;    /* the writer's time */
	uint64_t writes;     /* bytes written (one per page touched) */
	double writes_per_s; /* writes / elapsed_s */
	double vs_plain;     /* writes/s / plain's writes/s in the same run; 0: none */
	uint64_t flushes;    /* ufault_flush() calls in the window */
	double flush_us_p50; /* per ufault_flush() call */
	double flush_us_p99;
	double flush_us_max;
	uint64_t written_back; /* ufault_stats().written_back over the window */
	double wb_pages_per_s;
	uint64_t wp_faults; /* ufault_stats().wp_faults over the window */
	uint64_t flush_errors;
	uint64_t bad; /* pages whose stored byte is not the last one written */
};

struct shared {
	struct ufault_ctx *ctx;
	unsigned char *base;
	bool stop; /* atomic */
};

struct writer {
	struct shared *sh;
	uint64_t writes;
	uint64_t passes;  /* whole passes done */
	uint64_t stop_pg; /* pages of the last, partial pass */
	uint64_t t0, t1;
};

/* The value pass @pass writes: 1..255, never the fill's 0. */
static inline unsigned char pass_value(uint64_t pass)
{
	return (unsigned char)(pass % 255 + 1);
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	volatile unsigned char *base = w->sh->base;
	uint64_t pass = 0, pg = 0, writes = 0;

	w->t0 = now_ns();
	for (;;) {
		unsigned char v = pass_value(pass);

		for (pg = 0; pg < nr_pages; pg++) {
			if (!(pg & 63) && __atomic_load_n(&w->sh->stop, __ATOMIC_RELAXED))
				goto out;
			base[pg << page_shift] = v;
			writes++;
		}
		pass++;
	}
out:
	w->t1 = now_ns();
	w->writes = writes;
	w->passes = pass;
	w->stop_pg = pg;
	return NULL;
}

struct flusher {
	struct shared *sh;
	struct hist *h;
	uint64_t flushes, errors;
	int first_err;
};

static void *flusher_main(void *arg)
{
	struct flusher *f = arg;
	struct timespec ts;
	uint64_t next = now_ns() + (uint64_t)opt.interval_ms * 1000000ull;

	while (!__atomic_load_n(&f->sh->stop, __ATOMIC_RELAXED)) {
		uint64_t a, b;
		int rc;

		ts.tv_sec = (time_t)(next / 1000000000ull);
		ts.tv_nsec = (long)(next % 1000000000ull);
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
		if (__atomic_load_n(&f->sh->stop, __ATOMIC_RELAXED))
			break;
		a = now_ns();
		rc = ufault_flush(f->sh->ctx, f->sh->base, opt.size);
		b = now_ns();
		hist_add(f->h, b - a);
		f->flushes++;
		if (rc && !f->errors++)
			f->first_err = rc;
		/* A flush longer than the interval: the next one starts at once. */
		next += (uint64_t)opt.interval_ms * 1000000ull;
		if (next < b)
			next = b;
	}
	return NULL;
}

static struct ufault_ctx *ctx_create(enum mode mode)
{
	struct ufault_config cfg;
	struct ufault_ctx *ctx;
	int err;

	ufault_config_init(&cfg);
	cfg.nr_workers = opt.workers;
	cfg.dirty_tracking = mode == M_SYNC ? UFAULT_DIRTY_SYNC : UFAULT_DIRTY_ASYNC;
	if (mode == M_PLAIN)
		cfg.dirty_tracking = UFAULT_DIRTY_AUTO;
	err = ufault_ctx_create(&ctx, &cfg);
	if (err == -EOPNOTSUPP && mode == M_ASYNC)
		die("ufault_ctx_create(UFAULT_DIRTY_ASYNC): %s (the kernel lacks WP_ASYNC or "
		    "PAGEMAP_SCAN: try --modes plain,sync)",
		    ufault_strerror(err));
	if (err)
		die("ufault_ctx_create: %s", ufault_strerror(err));
	return ctx;
}

static struct ufault_stats stats_of(struct ufault_ctx *ctx)
{
	struct ufault_stats st;
	int err;

	memset(&st, 0, sizeof(st));
	st.size = sizeof(st);
	err = ufault_stats(ctx, &st);
	if (err)
		die("ufault_stats: %s", ufault_strerror(err));
	return st;
}

/* Every page's stored byte is the last value the writer put there. */
static uint64_t check_stored(const struct writer *w)
{
	uint64_t pg, bad = 0;

	for (pg = 0; pg < nr_pages; pg++) {
		uint64_t pass = pg < w->stop_pg ? w->passes : w->passes - 1;
		unsigned char got;

		if (pg >= w->stop_pg && !w->passes)
			continue; /* never written */
		got = stored_byte(pg);
		if (got != pass_value(pass)) {
			if (!bad)
				warnx("FAILURE: page %" PRIu64 " stored 0x%02x, the writer's "
				      "last value was 0x%02x",
				      pg, got, pass_value(pass));
			bad++;
		}
	}
	return bad;
}

static void run_one(enum mode mode, struct result *r)
{
	struct ufault_source src;
	struct ufault_stats s0, s1;
	struct shared sh;
	struct writer w;
	struct flusher f;
	pthread_t wt, ft;
	uint64_t pg;
	int err;

	memset(r, 0, sizeof(*r));
	memset(&sh, 0, sizeof(sh));
	sh.ctx = ctx_create(mode);
	if (opt.target == T_CALLBACK) {
		memset(store, 0, opt.size);
		ufault_source_init(&src, UFAULT_SOURCE_CALLBACK);
		src.callback.fill = store_fill;
		src.callback.writeback = store_writeback;
	} else {
		if (ftruncate(file_fd, 0) || ftruncate(file_fd, (off_t)opt.size))
			die("truncate %s: %s", opt.file, strerror(errno));
		ufault_source_init(&src, UFAULT_SOURCE_FILE);
		src.file.fd = file_fd;
	}
	sh.base = ufault_mmap(sh.ctx, NULL, opt.size, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, &src,
			      mode == M_PLAIN ? 0 : UFAULT_REGION_WRITEBACK);
	if (sh.base == MAP_FAILED)
		die("ufault_mmap (%zu bytes, %s): %s", opt.size, mode_names[mode], strerror(errno));
	/* Faulted in before the clock starts: every page there, clean. */
	for (pg = 0; pg < nr_pages; pg++)
		(void)*(volatile unsigned char *)(sh.base + (pg << page_shift));
	err = ufault_flush(sh.ctx, sh.base, opt.size);
	if (err)
		die("ufault_flush (before the run): %s", ufault_strerror(err));

	memset(&w, 0, sizeof(w));
	memset(&f, 0, sizeof(f));
	w.sh = f.sh = &sh;
	f.h = hist_new();
	s0 = stats_of(sh.ctx);
	err = pthread_create(&wt, NULL, writer_main, &w);
	if (!err)
		err = pthread_create(&ft, NULL, flusher_main, &f);
	if (err)
		die("pthread_create: %s", strerror(err));
	usleep((useconds_t)opt.seconds_ms * 1000);
	__atomic_store_n(&sh.stop, true, __ATOMIC_RELAXED);
	if ((err = pthread_join(wt, NULL)) || (err = pthread_join(ft, NULL)))
		die("pthread_join: %s", strerror(err));
	s1 = stats_of(sh.ctx);

	r->elapsed_s = (double)(w.t1 - w.t0) / 1e9;
	r->writes = w.writes;
	r->writes_per_s = r->elapsed_s > 0 ? (double)w.writes / r->elapsed_s : 0;
	r->flushes = f.flushes;
	r->flush_us_p50 = hist_quantile_ns(f.h, 500) / 1e3;
	r->flush_us_p99 = hist_quantile_ns(f.h, 990) / 1e3;
	r->flush_us_max = (double)f.h->max_ns / 1e3;
	/* Bucket midpoints may pass the exact maximum. */
	if (r->flush_us_p50 > r->flush_us_max)
		r->flush_us_p50 = r->flush_us_max;
	if (r->flush_us_p99 > r->flush_us_max)
		r->flush_us_p99 = r->flush_us_max;
	r->written_back = s1.written_back - s0.written_back;
	r->wb_pages_per_s = r->elapsed_s > 0 ? (double)r->written_back / r->elapsed_s : 0;
	r->wp_faults = s1.wp_faults - s0.wp_faults;
	r->flush_errors = f.errors;
	if (f.errors)
		warnx("FAILURE: %s: %" PRIu64 " of %" PRIu64 " flushes failed, the first with %s",
		      mode_names[mode], f.errors, f.flushes, ufault_strerror(f.first_err));

	/* The last flush, then every page's stored byte is checked. */
	err = ufault_flush(sh.ctx, sh.base, opt.size);
	if (err) {
		warnx("FAILURE: %s: the last ufault_flush: %s", mode_names[mode],
		      ufault_strerror(err));
		r->flush_errors++;
	}
	if (mode != M_PLAIN)
		r->bad = check_stored(&w);
	if (ufault_munmap(sh.ctx, sh.base, opt.size))
		die("ufault_munmap: %s", strerror(errno));
	ufault_ctx_destroy(sh.ctx);
	free(f.h);
}

/* ------------------------------------------------------------------ */
/* Cells, medians, output                                               */
/* ------------------------------------------------------------------ */

struct cell {
	enum mode mode;
	int n;
	struct result r[MAX_RUNS];
	struct result med;
};

#define MED(f) (d->f = median_field(c->r, sizeof(c->r[0]), c->n, offsetof(struct result, f)))
#define MEDU(f) (d->f = median_field_u64(c->r, sizeof(c->r[0]), c->n, offsetof(struct result, f)))

static void take_median(struct cell *c)
{
	struct result *d = &c->med;
	int i;

	memset(d, 0, sizeof(*d));
	MED(elapsed_s);
	MED(writes_per_s);
	MED(vs_plain);
	MED(flush_us_p50);
	MED(flush_us_p99);
	MED(flush_us_max);
	MED(wb_pages_per_s);
	MEDU(writes);
	MEDU(flushes);
	MEDU(written_back);
	MEDU(wp_faults);
	/* Failures are summed, never hidden by a median. */
	for (i = 0; i < c->n; i++) {
		d->flush_errors += c->r[i].flush_errors;
		d->bad += c->r[i].bad;
	}
}

static void fmt_us(char *buf, size_t n, double us)
{
	if (us >= 100)
		snprintf(buf, n, "%.0f", us);
	else
		snprintf(buf, n, "%.2f", us);
}

static void print_header(void)
{
	struct utsname u;
	int i;

	if (opt.json)
		return;
	if (uname(&u))
		die("uname: %s", strerror(errno));
	printf("dirty_track: ufault %d.%d.%d, kernel %s %s, %ld online CPUs, page %ld B\n",
	       UFAULT_VERSION_MAJOR, UFAULT_VERSION_MINOR, UFAULT_VERSION_PATCH, u.release,
	       u.machine, sysconf(_SC_NPROCESSORS_ONLN), page_size);
	printf("region %zu MiB (%" PRIu64 " pages, faulted in before the clock), one writer "
	       "writing one byte per page per pass;\nflusher: ufault_flush of the whole region "
	       "every %ld ms; %.1f s per measurement; target %s%s%s\n",
	       opt.size >> 20, nr_pages, opt.interval_ms, (double)opt.seconds_ms / 1e3,
	       target_names[opt.target], opt.target == T_FILE ? " " : " (memcpy into a buffer)",
	       opt.target == T_FILE ? opt.file : "");
	printf("modes:");
	for (i = 0; i < opt.nr_modes; i++)
		printf(" %s", mode_names[opt.modes[i]]);
	printf("; %d run%s, median reported%s\n", opt.runs, opt.runs > 1 ? "s" : "",
	       opt.runs > 1 ? ", modes interleaved" : "");
	printf("vs plain: median of per-run ratios of writes/s; wb pages/s: pages written back "
	       "per second;\nflush us: per ufault_flush call; bad: pages whose stored byte is "
	       "not the last written + failed flushes\n");
	printf("\n%-6s %9s %8s %11s %8s %10s %10s %10s %9s %5s\n", "mode", "writes/s", "vs plain",
	       "wb pages/s", "flushes", "flush p50", "flush p99", "flush max", "wp faults", "bad");
	fflush(stdout);
}

static void print_row(const struct cell *c)
{
	const struct result *r = &c->med;
	char wps[16], ratio[16], wbps[16], fl[16], p50[16], p99[16], mx[16], wpf[16];

	fmt_count(wps, sizeof(wps), r->writes_per_s);
	if (c->mode == M_PLAIN)
		snprintf(ratio, sizeof(ratio), "1");
	else if (r->vs_plain > 0)
		snprintf(ratio, sizeof(ratio), "%.3gx", r->vs_plain);
	else
		snprintf(ratio, sizeof(ratio), "-");
	fmt_count(wbps, sizeof(wbps), r->wb_pages_per_s);
	fmt_count(fl, sizeof(fl), (double)r->flushes);
	fmt_us(p50, sizeof(p50), r->flush_us_p50);
	fmt_us(p99, sizeof(p99), r->flush_us_p99);
	fmt_us(mx, sizeof(mx), r->flush_us_max);
	fmt_count(wpf, sizeof(wpf), (double)r->wp_faults);
	printf("%-6s %9s %8s %11s %8s %10s %10s %10s %9s %5" PRIu64 "\n", mode_names[c->mode], wps,
	       ratio, wbps, fl, p50, p99, mx, wpf, r->bad + r->flush_errors);
	fflush(stdout);
}

static void json_cell(const struct cell *c)
{
	const struct result *r = &c->med;

	printf("{\"bench\":\"dirty_track\",\"mode\":\"%s\",\"target\":\"%s\",\"size\":%zu,"
	       "\"page_size\":%ld,\"interval_ms\":%ld,\"seconds\":%.3f,\"runs\":%d,"
	       "\"writes\":%" PRIu64 ",\"writes_per_s\":%.1f,\"vs_plain\":%.4f,"
	       "\"written_back\":%" PRIu64 ",\"wb_pages_per_s\":%.1f,\"flushes\":%" PRIu64 ","
	       "\"flush_us_p50\":%.3f,\"flush_us_p99\":%.3f,\"flush_us_max\":%.3f,"
	       "\"wp_faults\":%" PRIu64 ",\"flush_errors\":%" PRIu64 ",\"bad\":%" PRIu64 ","
	       "\"elapsed_s\":%.4f}\n",
	       mode_names[c->mode], target_names[opt.target], opt.size, page_size, opt.interval_ms,
	       (double)opt.seconds_ms / 1e3, c->n, r->writes, r->writes_per_s, r->vs_plain,
	       r->written_back, r->wb_pages_per_s, r->flushes, r->flush_us_p50, r->flush_us_p99,
	       r->flush_us_max, r->wp_faults, r->flush_errors, r->bad, r->elapsed_s);
	fflush(stdout);
}

/* The median of the per-run ratios of writes/s, @a over @b; 0 if either
 * mode is not measured. */
static double ratio_median(const struct cell *cells, int nr, enum mode a, enum mode b)
{
	const struct cell *ca = NULL, *cb = NULL;
	double v[MAX_RUNS];
	int i, n = 0;

	for (i = 0; i < nr; i++) {
		if (cells[i].mode == a)
			ca = &cells[i];
		if (cells[i].mode == b)
			cb = &cells[i];
	}
	if (!ca || !cb)
		return 0;
	for (i = 0; i < ca->n && i < cb->n; i++)
		if (cb->r[i].writes_per_s > 0)
			v[n++] = ca->r[i].writes_per_s / cb->r[i].writes_per_s;
	return n ? median(v, n) : 0;
}

static void print_ratios(const struct cell *cells, int nr)
{
	static const enum mode pairs[][2] = {
	    {M_ASYNC, M_SYNC}, {M_ASYNC, M_PLAIN}, {M_SYNC, M_PLAIN}};
	size_t i;

	if (!opt.json)
		printf("\n");
	for (i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		double x = ratio_median(cells, nr, pairs[i][0], pairs[i][1]);

		if (x <= 0)
			continue;
		if (opt.json)
			printf("{\"bench\":\"dirty_track\",\"ratio\":\"%s/"
			       "%s\",\"of\":\"writes_per_s\","
			       "\"target\":\"%s\",\"runs\":%d,\"measured\":%.4f}\n",
			       mode_names[pairs[i][0]], mode_names[pairs[i][1]],
			       target_names[opt.target], opt.runs, x);
		else
			printf("%s/%s writes/s = %.4g (median of %d per-run ratios)\n",
			       mode_names[pairs[i][0]], mode_names[pairs[i][1]], x, opt.runs);
	}
	fflush(stdout);
}

/* ------------------------------------------------------------------ */
/* Command line                                                         */
/* ------------------------------------------------------------------ */

void usage(FILE *f)
{
	fprintf(f, "usage: dirty_track [options]\n"
		   "One writer writes one byte per page of a write-back region, pass after pass,\n"
		   "while a flusher calls ufault_flush on it every --interval ms: the writer's\n"
		   "writes/s, the pages written back per second and the flush latency, for\n"
		   "plain (no write-back), async (UFAULT_DIRTY_ASYNC) and sync\n"
		   "(UFAULT_DIRTY_SYNC) regions. The default run (3 modes x 3 runs x 2 s) takes\n"
		   "about 20 seconds.\n"
		   "\n"
		   "  --size N[KMG]    region size (default 16M)\n"
		   "  --interval MS    milliseconds between flushes (default 10)\n"
		   "  --seconds S      seconds per measurement (default 2)\n"
		   "  --ms MS          the same in milliseconds (short smoke runs)\n"
		   "  --runs N         repetitions per mode, median reported, modes interleaved\n"
		   "                   (default 3)\n"
		   "  --modes LIST     plain,async,sync (default all three)\n"
		   "  --target T       callback (writeback memcpy()s into a buffer; default) or\n"
		   "                   file (a file source over --file: io_uring writes and\n"
		   "                   fdatasync)\n"
		   "  --file PATH      the file target (default /var/tmp/ufault_dirty_track.dat;\n"
		   "                   created, and removed at the end)\n"
		   "  --workers N      ufault worker threads (default: the library's default)\n"
		   "  --json           one JSON object per line instead of the table\n"
		   "  --help\n"
		   "Exit status: 0, or 1 if a flush failed or a page's stored byte was not the\n"
		   "last one written.\n");
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

static void parse_args(int argc, char **argv)
{
	enum {
		O_SIZE = 256,
		O_INTERVAL,
		O_SECONDS,
		O_MS,
		O_RUNS,
		O_MODES,
		O_TARGET,
		O_FILE,
		O_WORKERS,
		O_JSON
	};
	static const struct option lo[] = {
	    {"size", required_argument, NULL, O_SIZE},
	    {"interval", required_argument, NULL, O_INTERVAL},
	    {"seconds", required_argument, NULL, O_SECONDS},
	    {"ms", required_argument, NULL, O_MS},
	    {"runs", required_argument, NULL, O_RUNS},
	    {"modes", required_argument, NULL, O_MODES},
	    {"target", required_argument, NULL, O_TARGET},
	    {"file", required_argument, NULL, O_FILE},
	    {"workers", required_argument, NULL, O_WORKERS},
	    {"json", no_argument, NULL, O_JSON},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c, t;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case O_SIZE:
			opt.size = parse_size(optarg, "size");
			break;
		case O_INTERVAL:
			opt.interval_ms = parse_long(optarg, "interval (ms)", 1, 60000);
			break;
		case O_SECONDS:
			opt.seconds_ms = 1000 * parse_long(optarg, "seconds", 1, 3600);
			break;
		case O_MS:
			opt.seconds_ms = parse_long(optarg, "milliseconds", 1, 3600000);
			break;
		case O_RUNS:
			opt.runs = (int)parse_long(optarg, "runs", 1, MAX_RUNS);
			break;
		case O_MODES:
			opt.nr_modes = 0;
			parse_list(optarg, add_mode);
			break;
		case O_TARGET:
			t = bench_lookup(optarg, target_names, T_NR);
			if (t < 0)
				bad_usage("unknown target '%s'", optarg);
			opt.target = (enum target)t;
			break;
		case O_FILE:
			if (!*optarg)
				bad_usage("empty --file");
			opt.file = optarg;
			break;
		case O_WORKERS:
			opt.workers = (unsigned int)parse_long(optarg, "workers", 1, 4096);
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
	if (!opt.nr_modes)
		bad_usage("empty --modes");
	if (!opt.size)
		bad_usage("--size must not be 0");
}

int main(int argc, char **argv)
{
	struct cell cells[M_NR];
	uint64_t failures = 0;
	int run, i;

	page_size = sysconf(_SC_PAGESIZE);
	if (page_size <= 0 || page_size & (page_size - 1))
		die("page size %ld is not a power of two", page_size);
	page_shift = (unsigned int)__builtin_ctzl((unsigned long)page_size);
	hist_setup();
	parse_args(argc, argv);
	nr_pages = opt.size >> page_shift;
	if (opt.target == T_CALLBACK)
		store = xcalloc(1, opt.size);
	else
		file_open();
	print_header();

	memset(cells, 0, sizeof(cells));
	for (i = 0; i < opt.nr_modes; i++)
		cells[i].mode = opt.modes[i];
	/* Runs outer, modes inner: drift of the machine spreads over every
	 * mode, and each run's ratios compare neighbours. */
	for (run = 0; run < opt.runs; run++) {
		const struct result *plain = NULL;

		for (i = 0; i < opt.nr_modes; i++) {
			run_one(cells[i].mode, &cells[i].r[cells[i].n++]);
			if (cells[i].mode == M_PLAIN)
				plain = &cells[i].r[cells[i].n - 1];
		}
		for (i = 0; i < opt.nr_modes && plain; i++) {
			struct result *r = &cells[i].r[cells[i].n - 1];

			if (plain->writes_per_s > 0)
				r->vs_plain = r->writes_per_s / plain->writes_per_s;
		}
	}
	for (i = 0; i < opt.nr_modes; i++) {
		take_median(&cells[i]);
		if (opt.json)
			json_cell(&cells[i]);
		else
			print_row(&cells[i]);
		failures += cells[i].med.bad + cells[i].med.flush_errors;
	}
	print_ratios(cells, opt.nr_modes);
	if (opt.target == T_FILE) {
		close(file_fd);
		unlink(opt.file);
	}
	free(store);
	if (failures) {
		fflush(stdout);
		fprintf(stderr, "dirty_track: FAILED: %" PRIu64 " wrong pages or failed flushes\n",
			failures);
		return 1;
	}
	return 0;
}
