/* SPDX-License-Identifier: MIT */
/*
 * buffer_pool.c - a database buffer pool's workload over a memory budget:
 * T threads read and update records of a data file through a mapping that
 * may keep only a quarter of the file resident, and the question is how
 * often the page wanted is still there (the hit ratio) and what an
 * operation costs.
 *
 * The data file holds 4 KiB pages of 64-byte records. An operation draws
 * a page from a Zipf distribution (theta 0.99, Gray et al., "Quickly
 * generating billion-record synthetic databases", SIGMOD 1994, as YCSB
 * does) whose ranks are spread over the file by a fixed random
 * permutation, and a record of it at random; it is a read (the record's
 * 64 bytes) or, with probability --update-pct, an update (its 56 value
 * bytes rewritten). Word 0 of every record is its key, a function of the
 * record's number that updates never change: every operation checks it.
 *
 * Configurations, interleaved run by run, each measurement cold (sync and
 * drop_caches first, so the file starts on disk):
 *  - "ufault-2q", "ufault-fifo": the file as a write-back region
 *    (UFAULT_SOURCE_FILE on a read-write fd, UFAULT_REGION_WRITEBACK) in a
 *    fresh context with ufault_ctx_set_budget(--budget, policy). The final
 *    ufault_flush() is timed apart (flush s), outside the operations.
 *  - "mmap-cgroup": the kernel's mmap(MAP_SHARED) of the file in a child
 *    process placed in a memory cgroup limited to the same budget (v2
 *    memory.max; where the memory controller is bound to cgroup v1, v1's
 *    memory.limit_in_bytes): the page cache is the buffer pool and the
 *    kernel's reclaim its policy. The mapping is madvise(MADV_RANDOM), as
 *    databases on mmap do: with the default read-around, each major fault
 *    reads 128 KiB into a cgroup that is full, and the kernel thrashes
 *    (--mmap-advice normal; two orders of magnitude slower on the machine
 *    this was written on). msync(MS_SYNC) is timed apart. Where no
 *    cgroup can be made (not root, no memory controller), it says why and
 *    measures "mmap-nolimit" instead.
 *
 * Hit ratio: 1 - misses / operations, where the misses are, for ufault,
 * the missing-page faults its workers handled (ufault_stats(): faults -
 * wp_faults) and, for mmap, the child's page faults (getrusage: minor +
 * major). The kernel's count differs in two ways: a first write to a clean
 * page is a fault on a resident page (counted as a miss), and fault-around
 * maps up to 16 cached pages per read fault (hits never counted as
 * misses). Its major faults (pages read from the disk) are shown apart.
 * "steady" is the same ratio over the second half of the run.
 *
 * Note what the two budgets bound: ufault's is the anonymous memory of
 * the region; its fills read the file through the page cache, which this
 * program does not limit, so once a page was read a miss costs a copy,
 * not a disk read (--direct reads with O_DIRECT instead). The cgroup
 * bounds the page cache itself: a miss past it reads the disk.
 *
 * Only the public API is used. The program writes its data file,
 * /proc/sys/vm/drop_caches and, for mmap-cgroup, a cgroup it removes.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
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
#include <sys/wait.h>
#include <unistd.h>

#include <ufault/ufault.h>

#include "bench_util.h"
#include "bench_file.h"
#include "bench_hist.h"

#define REC 64	    /* bytes a record */
#define VAL_WORDS 7 /* 64-bit words of a record's value */
#define MAX_RUNS 99
#define MAX_THREADS 256
#define SALT 0x6275665f706f6f6cull /* "buf_pool": change when the layout changes */

/* ------------------------------------------------------------------ */
/* Configurations and options                                           */
/* ------------------------------------------------------------------ */

enum config { C_2Q, C_FIFO, C_MMAP, C_NR };
static const char *const config_names[C_NR] = {"ufault-2q", "ufault-fifo", "mmap-cgroup"};

static const char *const dirty_names[] = {"auto", "async", "sync"};

struct opts {
	const char *file;
	size_t size;
	size_t budget; /* 0: size / 4 */
	int threads;
	double seconds;
	int update_pct;
	int runs;
	double theta;
	unsigned int workers; /* 0: the library's default */
	enum ufault_dirty_mode dirty;
	bool direct;
	bool mmap_random; /* madvise(MADV_RANDOM) on the kernel's mapping */
	int nr_configs;
	enum config configs[C_NR];
	bool json;
};

static struct opts opt = {
    .file = "/var/tmp/ufault_buffer_pool.dat",
    .size = 256ul << 20,
    .threads = 2,
    .seconds = 5,
    .update_pct = 50,
    .runs = 3,
    .theta = 0.99,
    .mmap_random = true,
    .nr_configs = C_NR,
    .configs = {C_2Q, C_FIFO, C_MMAP},
};

static unsigned int page_shift;
static uint64_t nr_pages;
static uint32_t *perm; /* Zipf rank -> page */
static const char *file_state = "";
static const char *cold_skip_reason; /* non-NULL: runs are warm, why */

/* Word 0 of record @r: its key. Never changed by an update. */
static inline uint64_t rec_key(uint64_t r)
{
	return mix64(r ^ SALT);
}

/* ------------------------------------------------------------------ */
/* Zipf                                                                 */
/* ------------------------------------------------------------------ */

/*
 * Gray et al.'s generator: ranks 0..n-1, rank i drawn with probability
 * proportional to 1 / (i + 1)^theta; O(1) a draw after an O(n) set-up.
 */
static struct {
	uint64_t n;
	double theta, alpha, zetan, eta, half_pow;
} Z;

static void zipf_init(uint64_t n, double theta)
{
	double zeta2 = 0;

	Z.n = n;
	Z.theta = theta;
	Z.zetan = 0;
	for (uint64_t i = 1; i <= n; i++)
		Z.zetan += 1.0 / pow((double)i, theta);
	for (uint64_t i = 1; i <= 2; i++)
		zeta2 += 1.0 / pow((double)i, theta);
	Z.alpha = 1.0 / (1.0 - theta);
	Z.eta = (1.0 - pow(2.0 / (double)n, 1.0 - theta)) / (1.0 - zeta2 / Z.zetan);
	Z.half_pow = 1.0 + pow(0.5, theta);
}

/* @u uniform in [0, 1). */
static inline uint64_t zipf_next(double u)
{
	double uz = u * Z.zetan;
	uint64_t r;

	if (uz < 1.0)
		return 0;
	if (uz < Z.half_pow)
		return 1;
	r = (uint64_t)((double)Z.n * pow(Z.eta * u - Z.eta + 1.0, Z.alpha));
	return r < Z.n ? r : Z.n - 1;
}

/* Share of the operations that go to the hottest @pages pages (what an ideal cache of that size hits). */
static double zipf_top_share(uint64_t pages)
{
	double s = 0;

	for (uint64_t i = 1; i <= pages && i <= Z.n; i++)
		s += 1.0 / pow((double)i, Z.theta);
	return s / Z.zetan;
}

/* ------------------------------------------------------------------ */
/* The data file                                                        */
/* ------------------------------------------------------------------ */

/* Updates change records but never their keys: a page of this file has
 * its records' keys (a bench_page_ok_fn). */
static bool rec_keys_ok(const void *got, uint64_t off, size_t len)
{
	const uint64_t *w = got;

	for (size_t k = 0; k < len / REC; k++)
		if (w[k * REC / 8] != rec_key(off / REC + k))
			return false;
	return true;
}

/* The file's bytes (a bench_fill_fn): word 0 of each record its key, the
 * rest a function of the offset. */
static void rec_fill(void *out, uint64_t off, size_t len)
{
	uint64_t *buf = out;

	for (size_t w = 0; w < len / 8; w++) {
		uint64_t o = off + w * 8;

		buf[w] = o % REC ? mix64(o) : rec_key(o / REC);
	}
}

/* ------------------------------------------------------------------ */
/* The memory cgroup                                                    */
/* ------------------------------------------------------------------ */

/*
 * Where mmap-cgroup's child goes: a cgroup made under this process's own,
 * in the v2 hierarchy if its memory controller is there, else in v1's
 * memory hierarchy. why_not says what failed; mmap then runs unlimited.
 */
static struct {
	int version; /* 2, 1, or 0: none */
	char parent[PATH_MAX];
	char dir[PATH_MAX];
	char why_not[512];
} CG;

/* snprintf for paths and messages, where cutting a long one short is fine. */
static void __attribute__((format(printf, 3, 4))) fmt_to(char *buf, size_t n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, n, fmt, ap);
	va_end(ap);
}

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), err = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, s, strlen(s)) != (ssize_t)strlen(s))
		err = -errno;
	close(fd);
	return err;
}

/* The mount point of the hierarchy of type @fstype ("cgroup2", or "cgroup" with @opt). */
static bool cg_mount(const char *fstype, const char *opt_want, char *out, size_t n)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[1024];
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		char mnt[512], type[64], src[256], sopts[512];
		const char *dash = strstr(line, " - ");

		if (!dash || sscanf(line, "%*s %*s %*s %*s %511s", mnt) != 1 ||
		    sscanf(dash + 3, "%63s %255s %511s", type, src, sopts) != 3)
			continue;
		if (strcmp(type, fstype))
			continue;
		if (opt_want) {
			char *save = NULL, *tok;
			bool has = false;

			for (tok = strtok_r(sopts, ",", &save); tok;
			     tok = strtok_r(NULL, ",", &save))
				has |= !strcmp(tok, opt_want);
			if (!has)
				continue;
		}
		fmt_to(out, n, "%s", mnt);
		found = true;
	}
	fclose(f);
	return found;
}

/* This process's cgroup path in the hierarchy whose /proc/self/cgroup line starts with @prefix. */
static bool cg_own_path(const char *prefix, char *out, size_t n)
{
	FILE *f = fopen("/proc/self/cgroup", "r");
	char line[1024];
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		const char *p;

		if (strncmp(line, prefix, strlen(prefix)))
			continue;
		p = line + strlen(prefix);
		fmt_to(out, n, "%.*s", (int)strcspn(p, "\n"), p);
		found = true;
	}
	fclose(f);
	return found;
}

/* Make the cgroup directory with its limit; 0 or -errno, why_not filled. */
static int cg_make(void)
{
	char path[PATH_MAX + 32], val[32];
	int err;

	fmt_to(CG.dir, sizeof(CG.dir), "%s/ufault_buffer_pool_%d", CG.parent, (int)getpid());
	if (mkdir(CG.dir, 0755) && errno != EEXIST) {
		err = -errno;
		fmt_to(CG.why_not, sizeof(CG.why_not), "mkdir %s: %s", CG.dir, strerror(-err));
		return err;
	}
	fmt_to(path, sizeof(path), "%s/%s", CG.dir,
	       CG.version == 2 ? "memory.max" : "memory.limit_in_bytes");
	fmt_to(val, sizeof(val), "%zu", opt.budget);
	err = write_str(path, val);
	if (err) {
		fmt_to(CG.why_not, sizeof(CG.why_not), "write %s to %s: %s", val, path,
		       strerror(-err));
		rmdir(CG.dir);
	}
	return err;
}

static void cg_remove(void)
{
	/* A cgroup whose last task just exited may be busy for a moment. */
	for (int i = 0; i < 100; i++) {
		if (!rmdir(CG.dir) || errno == ENOENT)
			return;
		usleep(10000);
	}
	warnx("WARNING: could not remove %s: %s", CG.dir, strerror(errno));
}

/* Put @pid in the cgroup; 0 or -errno. */
static int cg_enter(pid_t pid)
{
	char path[PATH_MAX + 32], val[32];
	int err;

	fmt_to(path, sizeof(path), "%s/cgroup.procs", CG.dir);
	fmt_to(val, sizeof(val), "%d", (int)pid);
	err = write_str(path, val);
	if (err)
		fmt_to(CG.why_not, sizeof(CG.why_not), "write pid to %s: %s", path, strerror(-err));
	return err;
}

/* Try v2, then v1; every step done once with a child that only waits. */
static void cg_probe(void)
{
	char mnt[512], own[512], path[PATH_MAX + 32], buf[512] = "", why2[512] = "";
	int p[2], err, st;
	pid_t pid;
	FILE *f;

	CG.version = 0;
	if (cg_mount("cgroup2", NULL, mnt, sizeof(mnt)) && cg_own_path("0::", own, sizeof(own))) {
		fmt_to(CG.parent, sizeof(CG.parent), "%s%s", mnt, strcmp(own, "/") ? own : "");
		fmt_to(path, sizeof(path), "%s/cgroup.controllers", CG.parent);
		f = fopen(path, "r");
		if (f) {
			if (!fgets(buf, sizeof(buf), f))
				buf[0] = 0;
			fclose(f);
		}
		if (!strstr(buf, "memory")) {
			fmt_to(why2, sizeof(why2),
			       "cgroup v2 at %s has no memory controller (controllers: %.*s)",
			       CG.parent, (int)strcspn(buf, "\n"), buf);
		} else {
			fmt_to(path, sizeof(path), "%s/cgroup.subtree_control", CG.parent);
			err = write_str(path, "+memory");
			if (err)
				fmt_to(why2, sizeof(why2), "write +memory to %s: %s", path,
				       strerror(-err));
			else
				CG.version = 2;
		}
	} else {
		fmt_to(why2, sizeof(why2), "no cgroup v2 hierarchy");
	}
	if (!CG.version && cg_mount("cgroup", "memory", mnt, sizeof(mnt))) {
		char line[1024];

		/* The v1 line of the memory hierarchy: "N:memory:/path" (or "N:...,memory,...:"). */
		f = fopen("/proc/self/cgroup", "r");
		while (f && fgets(line, sizeof(line), f)) {
			char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;

			if (a && b && strstr(a, "memory") && strstr(a, "memory") < b) {
				*b = 0;
				fmt_to(buf, sizeof(buf), "%s:", line);
				break;
			}
		}
		if (f)
			fclose(f);
		if (buf[0] && cg_own_path(buf, own, sizeof(own))) {
			fmt_to(CG.parent, sizeof(CG.parent), "%s%s", mnt,
			       strcmp(own, "/") ? own : "");
			CG.version = 1;
		}
	}
	if (!CG.version) {
		fmt_to(CG.why_not, sizeof(CG.why_not), "%s; no cgroup v1 memory hierarchy", why2);
		return;
	}
	if (cg_make()) {
		CG.version = 0;
		return;
	}
	if (pipe(p))
		die("pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (!pid) {
		char c;

		close(p[1]);
		_exit(read(p[0], &c, 1) < 0);
	}
	close(p[0]);
	err = cg_enter(pid);
	close(p[1]);
	waitpid(pid, &st, 0);
	cg_remove();
	if (err)
		CG.version = 0;
	else if (why2[0] && CG.version == 1)
		fmt_to(CG.why_not, sizeof(CG.why_not), "%s: cgroup v1 used", why2);
}

/* ------------------------------------------------------------------ */
/* The operations                                                       */
/* ------------------------------------------------------------------ */

struct result {
	double elapsed_s;
	uint64_t ops;
	double ops_per_s;
	double us_p50, us_p99;
	double hit, hit_steady; /* 1 - misses / ops: whole run, second half */
	double hit_major;	/* mmap: 1 - major faults / ops (ufault: = hit) */
	uint64_t misses;	/* ufault: faults - wp_faults; mmap: minflt + majflt */
	uint64_t majflt;	/* mmap: of those, major */
	uint64_t evicted, evicted_dirty, refaults;
	double flush_s; /* ufault_flush / msync after the run */
	uint64_t bad;	/* operations that found a wrong key */
	uint64_t updates;
};

/* What the operating threads share. */
struct work {
	unsigned char *base;
	int stop; /* atomic */
	int half; /* atomic: set at half time */
	pthread_barrier_t start;
};

struct opthread {
	struct work *w;
	pthread_t tid;
	int idx;
	struct hist *h;
	uint64_t ops, updates, bad;
	uint64_t ops_half; /* operations done when it saw the half-time mark */
	/* This thread's page faults (getrusage(RUSAGE_THREAD): minor + major,
	 * and major) from its start to the half-time mark and to its end. */
	uint64_t flt_half, flt, maj;
	uint64_t t0, t1;
} __attribute__((aligned(64)));

static void thread_faults(uint64_t *all, uint64_t *major)
{
	struct rusage ru;

	if (getrusage(RUSAGE_THREAD, &ru))
		die("getrusage: %s", strerror(errno));
	*all = (uint64_t)ru.ru_minflt + (uint64_t)ru.ru_majflt;
	*major = (uint64_t)ru.ru_majflt;
}

static inline uint64_t rnd(uint64_t *s)
{
	return mix64((*s)++);
}

static void *op_main(void *arg)
{
	struct opthread *t = arg;
	struct work *w = t->w;
	const uint64_t per_page = (uint64_t)page_size / REC;
	uint64_t s = 0x5eed0000ull + (uint64_t)t->idx * 0x100000000ull + (uint64_t)now_ns();
	uint64_t ops = 0, updates = 0, bad = 0, flt0, maj0, flt1, maj1;
	bool half = false;
	int err = pthread_barrier_wait(&w->start);

	if (err && err != PTHREAD_BARRIER_SERIAL_THREAD)
		die("pthread_barrier_wait: %s", strerror(err));
	thread_faults(&flt0, &maj0);
	t->t0 = now_ns();
	while (!__atomic_load_n(&w->stop, __ATOMIC_RELAXED)) {
		uint64_t r = rnd(&s), r2 = rnd(&s);
		uint64_t pg = perm[zipf_next((double)(r >> 11) * 0x1.0p-53)];
		uint64_t rec = (pg << page_shift) / REC + r2 % per_page;
		volatile uint64_t *p = (volatile uint64_t *)(w->base + rec * REC);
		bool update = (int)((r2 >> 32) % 100) < opt.update_pct;
		uint64_t a = now_ns(), b, sum = 0;

		if (update) {
			if (p[0] != rec_key(rec))
				bad++;
			for (int i = 1; i <= VAL_WORDS; i++)
				p[i] = r2 + (uint64_t)i;
			updates++;
		} else {
			for (int i = 0; i <= VAL_WORDS; i++)
				sum += p[i];
			if (p[0] != rec_key(rec))
				bad++;
		}
		b = now_ns();
		(void)sum;
		hist_add(t->h, b - a);
		ops++;
		if (!half && __atomic_load_n(&w->half, __ATOMIC_RELAXED)) {
			half = true;
			t->ops_half = ops;
			thread_faults(&flt1, &maj1);
			t->flt_half = flt1 - flt0;
		}
	}
	t->t1 = now_ns();
	thread_faults(&flt1, &maj1);
	t->flt = flt1 - flt0;
	t->maj = maj1 - maj0;
	if (!half) {
		t->ops_half = ops;
		t->flt_half = t->flt;
	}
	t->ops = ops;
	t->updates = updates;
	t->bad = bad;
	return NULL;
}

/* The operating threads' page faults (getrusage), summed: what mmap's hit ratio counts. */
struct kfaults {
	uint64_t ops_half, flt_half, flt, maj;
};

/*
 * Run the threads over @base for --seconds; @half (may be NULL) is called
 * at half time, as the threads are told to note where they are (the
 * snapshot for the steady-state hit ratio).
 */
static void run_ops(unsigned char *base, struct result *r, struct kfaults *k, void (*half)(void *),
		    void *arg)
{
	struct opthread *t = aligned_alloc(64, sizeof(*t) * (size_t)opt.threads);
	struct hist *all = hist_new();
	struct work w = {.base = base};
	uint64_t t0 = UINT64_MAX, t1 = 0;
	int i, err;

	memset(k, 0, sizeof(*k));
	if (!t)
		die("out of memory");
	memset(t, 0, sizeof(*t) * (size_t)opt.threads);
	err = pthread_barrier_init(&w.start, NULL, (unsigned int)opt.threads + 1);
	if (err)
		die("pthread_barrier_init: %s", strerror(err));
	for (i = 0; i < opt.threads; i++) {
		t[i].w = &w;
		t[i].idx = i;
		t[i].h = hist_new();
		err = pthread_create(&t[i].tid, NULL, op_main, &t[i]);
		if (err)
			die("pthread_create: %s", strerror(err));
	}
	pthread_barrier_wait(&w.start);
	usleep((useconds_t)(opt.seconds * 5e5));
	__atomic_store_n(&w.half, 1, __ATOMIC_RELAXED);
	if (half)
		half(arg);
	usleep((useconds_t)(opt.seconds * 5e5));
	__atomic_store_n(&w.stop, 1, __ATOMIC_RELAXED);
	for (i = 0; i < opt.threads; i++) {
		err = pthread_join(t[i].tid, NULL);
		if (err)
			die("pthread_join: %s", strerror(err));
		hist_merge(all, t[i].h);
		r->ops += t[i].ops;
		r->updates += t[i].updates;
		r->bad += t[i].bad;
		k->ops_half += t[i].ops_half;
		k->flt_half += t[i].flt_half;
		k->flt += t[i].flt;
		k->maj += t[i].maj;
		if (t[i].t0 < t0)
			t0 = t[i].t0;
		if (t[i].t1 > t1)
			t1 = t[i].t1;
		free(t[i].h);
	}
	pthread_barrier_destroy(&w.start);
	r->elapsed_s = (double)(t1 - t0) / 1e9;
	r->ops_per_s = r->elapsed_s > 0 ? (double)r->ops / r->elapsed_s : 0;
	r->us_p50 = hist_quantile_ns(all, 500) / 1e3;
	r->us_p99 = hist_quantile_ns(all, 990) / 1e3;
	free(all);
	free(t);
}

/* ------------------------------------------------------------------ */
/* ufault                                                               */
/* ------------------------------------------------------------------ */

struct uf_half {
	struct ufault_ctx *ctx;
	uint64_t misses;
};

static uint64_t uf_misses(struct ufault_ctx *ctx, struct ufault_stats *st)
{
	int err;

	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	err = ufault_stats(ctx, st);
	if (err)
		die("ufault_stats: %s", ufault_strerror(err));
	return st->faults - st->wp_faults;
}

static void uf_half(void *arg)
{
	struct uf_half *h = arg;
	struct ufault_stats st;

	h->misses = uf_misses(h->ctx, &st);
}

/* Set when the library has no budgets here (-EOPNOTSUPP): the ufault configurations are skipped. */
static const char *ufault_skip_reason;

static void run_ufault(enum config c, struct result *r)
{
	struct ufault_config cfg;
	struct ufault_budget b;
	struct ufault_source s;
	struct ufault_stats st;
	struct uf_half h = {0};
	struct kfaults k;
	unsigned char *p;
	uint64_t t0, m1;
	int fd, err;

	ufault_config_init(&cfg);
	cfg.nr_workers = opt.workers;
	cfg.dirty_tracking = opt.dirty;
	err = ufault_ctx_create(&h.ctx, &cfg);
	if (err)
		die("ufault_ctx_create: %s", ufault_strerror(err));
	fd = open(opt.file, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		die("open %s: %s", opt.file, strerror(errno));
	ufault_source_init(&s, UFAULT_SOURCE_FILE);
	s.file.fd = fd;
	s.file.flags = opt.direct ? UFAULT_FILE_DIRECT : 0;
	p = ufault_mmap(h.ctx, NULL, opt.size, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, &s, UFAULT_REGION_WRITEBACK);
	if (p == MAP_FAILED)
		die("ufault_mmap (write-back, %zu bytes): %s", opt.size, strerror(errno));
	memset(&b, 0, sizeof(b));
	b.size = sizeof(b);
	b.bytes = opt.budget;
	b.policy = c == C_2Q ? UFAULT_EVICT_2Q : UFAULT_EVICT_FIFO;
	err = ufault_ctx_set_budget(h.ctx, &b);
	if (err)
		die("ufault_ctx_set_budget(%zu bytes, %s): %s", opt.budget,
		    c == C_2Q ? "2q" : "fifo", ufault_strerror(err));

	run_ops(p, r, &k, uf_half, &h);
	m1 = uf_misses(h.ctx, &st);
	r->misses = m1;
	r->evicted = st.evicted;
	r->evicted_dirty = st.evicted_dirty;
	r->refaults = st.refaults;
	r->hit = r->ops ? 1.0 - (double)m1 / (double)r->ops : 0;
	r->hit_major = r->hit;
	r->hit_steady =
	    r->ops > k.ops_half ? 1.0 - (double)(m1 - h.misses) / (double)(r->ops - k.ops_half) : 0;
	if (st.source_errors)
		warnx("FAILURE: %s: %" PRIu64 " fills failed", config_names[c], st.source_errors);
	r->bad += st.source_errors;

	t0 = now_ns();
	err = ufault_flush(h.ctx, p, opt.size);
	if (err)
		die("ufault_flush: %s", ufault_strerror(err));
	r->flush_s = (double)(now_ns() - t0) / 1e9;
	if (ufault_munmap(h.ctx, p, opt.size))
		die("ufault_munmap: %s", strerror(errno));
	ufault_ctx_destroy(h.ctx);
	close(fd);
}

/* ------------------------------------------------------------------ */
/* Kernel mmap in a (limited) child                                      */
/* ------------------------------------------------------------------ */

/* The child: map, wait to be placed in the cgroup, run, report through @out. */
static void mmap_child(int go, int out)
{
	struct result r;
	struct kfaults k;
	unsigned char *p;
	uint64_t t0;
	char c;
	int fd;

	if (read(go, &c, 1) != 1)
		_exit(3); /* the parent gave up */
	memset(&r, 0, sizeof(r));
	fd = open(opt.file, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		die("open %s: %s", opt.file, strerror(errno));
	p = mmap(NULL, opt.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("mmap %s (%zu bytes, MAP_SHARED): %s", opt.file, opt.size, strerror(errno));
	if (opt.mmap_random && madvise(p, opt.size, MADV_RANDOM))
		die("madvise(MADV_RANDOM): %s", strerror(errno));
	run_ops(p, &r, &k, NULL, NULL);
	r.misses = k.flt;
	r.majflt = k.maj;
	r.hit = r.ops ? 1.0 - (double)r.misses / (double)r.ops : 0;
	r.hit_major = r.ops ? 1.0 - (double)r.majflt / (double)r.ops : 0;
	r.hit_steady = r.ops > k.ops_half
			   ? 1.0 - (double)(k.flt - k.flt_half) / (double)(r.ops - k.ops_half)
			   : 0;
	t0 = now_ns();
	if (msync(p, opt.size, MS_SYNC))
		die("msync: %s", strerror(errno));
	r.flush_s = (double)(now_ns() - t0) / 1e9;
	munmap(p, opt.size);
	close(fd);
	if (write(out, &r, sizeof(r)) != (ssize_t)sizeof(r))
		_exit(4);
	_exit(0);
}

static void run_mmap(struct result *r)
{
	int go[2], out[2], st;
	pid_t pid;
	ssize_t n;

	if (pipe(go) || pipe(out))
		die("pipe: %s", strerror(errno));
	if (CG.version && cg_make())
		die("mmap-cgroup: %s", CG.why_not);
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (!pid) {
		close(go[1]);
		close(out[0]);
		mmap_child(go[0], out[1]);
	}
	close(go[0]);
	close(out[1]);
	if (CG.version && cg_enter(pid)) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		cg_remove();
		die("mmap-cgroup: %s", CG.why_not);
	}
	if (write(go[1], "g", 1) != 1)
		die("write to the child: %s", strerror(errno));
	close(go[1]);
	n = read(out[0], r, sizeof(*r));
	close(out[0]);
	if (waitpid(pid, &st, 0) < 0)
		die("waitpid: %s", strerror(errno));
	if (CG.version)
		cg_remove();
	if (n != (ssize_t)sizeof(*r) || !WIFEXITED(st) || WEXITSTATUS(st))
		die("the mmap child failed (%s %d)%s", WIFSIGNALED(st) ? "signal" : "exit status",
		    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st),
		    WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL && CG.version
			? ": killed, by the cgroup's OOM killer? (the budget must hold the "
			  "child's own memory too)"
			: "");
}

/* ------------------------------------------------------------------ */
/* Cells, output                                                        */
/* ------------------------------------------------------------------ */

struct cell {
	enum config c;
	int n;
	struct result r[MAX_RUNS];
	struct result med;
};

static const char *cfg_name(enum config c)
{
	return c == C_MMAP && !CG.version ? "mmap-nolimit" : config_names[c];
}

#define MED(f) (d->f = median_field(c->r, sizeof(c->r[0]), c->n, offsetof(struct result, f)))
#define MEDU(f) (d->f = median_field_u64(c->r, sizeof(c->r[0]), c->n, offsetof(struct result, f)))

static void take_median(struct cell *c)
{
	struct result *d = &c->med;

	memset(d, 0, sizeof(*d));
	MED(elapsed_s);
	MED(ops_per_s);
	MED(us_p50);
	MED(us_p99);
	MED(hit);
	MED(hit_steady);
	MED(hit_major);
	MED(flush_s);
	MEDU(ops);
	MEDU(misses);
	MEDU(majflt);
	MEDU(evicted);
	MEDU(evicted_dirty);
	MEDU(refaults);
	MEDU(updates);
	for (int i = 0; i < c->n; i++)
		d->bad += c->r[i].bad; /* failures are summed, never hidden by a median */
}

static void fmt_us(char *buf, size_t n, double us)
{
	snprintf(buf, n, us >= 100 ? "%.0f" : "%.2f", us);
}

static void print_table_header(void)
{
	printf("\n%-13s %9s %8s %8s %7s %7s %7s %8s %8s %8s %8s %8s %7s %4s\n", "config", "ops/s",
	       "p50 us", "p99 us", "hit %", "steady", "hit-maj", "misses", "major", "evicted",
	       "dirty ev", "refaults", "flush s", "bad");
}

static void print_row(const struct cell *c)
{
	const struct result *r = &c->med;
	bool uf = c->c != C_MMAP;
	char ops[16], p50[16], p99[16], mis[16], maj[16], ev[16], dev[16], ref[16];

	fmt_count(ops, sizeof(ops), r->ops_per_s);
	fmt_us(p50, sizeof(p50), r->us_p50);
	fmt_us(p99, sizeof(p99), r->us_p99);
	fmt_count(mis, sizeof(mis), (double)r->misses);
	if (uf)
		snprintf(maj, sizeof(maj), "-");
	else
		fmt_count(maj, sizeof(maj), (double)r->majflt);
	if (uf) {
		fmt_count(ev, sizeof(ev), (double)r->evicted);
		fmt_count(dev, sizeof(dev), (double)r->evicted_dirty);
		fmt_count(ref, sizeof(ref), (double)r->refaults);
	} else {
		snprintf(ev, sizeof(ev), "-");
		snprintf(dev, sizeof(dev), "-");
		snprintf(ref, sizeof(ref), "-");
	}
	printf("%-13s %9s %8s %8s %7.2f %7.2f %7.2f %8s %8s %8s %8s %8s %7.2f %4" PRIu64 "\n",
	       cfg_name(c->c), ops, p50, p99, 100 * r->hit, 100 * r->hit_steady, 100 * r->hit_major,
	       mis, maj, ev, dev, ref, r->flush_s, r->bad);
	fflush(stdout);
}

static void json_cell(const struct cell *c)
{
	const struct result *r = &c->med;

	printf("{\"bench\":\"buffer_pool\",\"config\":\"%s\",\"threads\":%d,\"size\":%zu,"
	       "\"budget\":%zu,\"page_size\":%ld,\"theta\":%.3f,\"update_pct\":%d,"
	       "\"seconds\":%.3f,\"runs\":%d,\"dirty\":\"%s\",\"direct\":%s,\"ops\":%" PRIu64
	       ",\"ops_per_s\":%.1f,\"op_us_p50\":%.3f,\"op_us_p99\":%.3f,\"hit\":%.5f,"
	       "\"hit_steady\":%.5f,\"hit_major\":%.5f,\"misses\":%" PRIu64 ",\"majflt\":%" PRIu64
	       ",\"evicted\":%" PRIu64 ",\"evicted_dirty\":%" PRIu64 ",\"refaults\":%" PRIu64
	       ",\"updates\":%" PRIu64 ",\"flush_s\":%.4f,\"bad\":%" PRIu64
	       ",\"elapsed_s\":%.4f,\"cgroup\":%d}\n",
	       cfg_name(c->c), opt.threads, opt.size, opt.budget, page_size, opt.theta,
	       opt.update_pct, opt.seconds, c->n, dirty_names[opt.dirty],
	       opt.direct ? "true" : "false", r->ops, r->ops_per_s, r->us_p50, r->us_p99, r->hit,
	       r->hit_steady, r->hit_major, r->misses, r->majflt, r->evicted, r->evicted_dirty,
	       r->refaults, r->updates, r->flush_s, r->bad, r->elapsed_s,
	       c->c == C_MMAP ? CG.version : 0);
	fflush(stdout);
}

static const struct cell *find_cell(const struct cell *cells, int nr, enum config c)
{
	for (int i = 0; i < nr; i++)
		if (cells[i].c == c && cells[i].n)
			return &cells[i];
	return NULL;
}

static void print_verdicts(const struct cell *cells, int nr)
{
	const struct cell *q = find_cell(cells, nr, C_2Q), *f = find_cell(cells, nr, C_FIFO);
	const struct cell *m = find_cell(cells, nr, C_MMAP);

	if (!opt.json)
		printf("\n== verdicts ==\n");
	if (q && f) {
		double d = 100 * (q->med.hit - f->med.hit);
		double ds = 100 * (q->med.hit_steady - f->med.hit_steady);

		if (opt.json)
			printf("{\"verdict\":\"2Q hit ratio - FIFO hit ratio, points\","
			       "\"measured\":%.2f,\"steady\":%.2f,\"op\":\">=\",\"target\":10,"
			       "\"result\":\"%s\"}\n",
			       d, ds, d >= 10 ? "PASS" : "FAIL");
		else
			printf("2Q hit ratio - FIFO hit ratio = %.2f points (target >= 10): %s "
			       "[2Q %.2f%%, FIFO %.2f%%; steady state (second half) %.2f points: "
			       "2Q %.2f%%, FIFO %.2f%%]\n",
			       d, d >= 10 ? "PASS" : "FAIL", 100 * q->med.hit, 100 * f->med.hit, ds,
			       100 * q->med.hit_steady, 100 * f->med.hit_steady);
	} else if (!opt.json) {
		printf("2Q - FIFO: SKIP (%s)\n",
		       ufault_skip_reason ? ufault_skip_reason
					  : "ufault-2q and ufault-fifo not both in --configs");
	}
	if (q && m) {
		if (opt.json)
			printf("{\"verdict\":\"ufault-2q vs %s\",\"ops_per_s\":[%.1f,%.1f],"
			       "\"op_us_p99\":[%.3f,%.3f],\"ratio_ops\":%.4f,\"ratio_p99\":%.4f,"
			       "\"result\":\"INFO\"}\n",
			       cfg_name(C_MMAP), q->med.ops_per_s, m->med.ops_per_s, q->med.us_p99,
			       m->med.us_p99,
			       m->med.ops_per_s > 0 ? q->med.ops_per_s / m->med.ops_per_s : 0,
			       m->med.us_p99 > 0 ? q->med.us_p99 / m->med.us_p99 : 0);
		else
			printf("ufault-2q vs %s: %.0f vs %.0f ops/s (%.2fx), p99 %.2f vs %.2f us "
			       "(%.2fx); hit %.2f%% vs %.2f%%\n",
			       cfg_name(C_MMAP), q->med.ops_per_s, m->med.ops_per_s,
			       m->med.ops_per_s > 0 ? q->med.ops_per_s / m->med.ops_per_s : 0,
			       q->med.us_p99, m->med.us_p99,
			       m->med.us_p99 > 0 ? q->med.us_p99 / m->med.us_p99 : 0,
			       100 * q->med.hit, 100 * m->med.hit);
	}
	fflush(stdout);
}

static void print_header(void)
{
	bool has_mmap = false;
	struct utsname u;
	uint64_t bp = opt.budget >> page_shift;

	for (int k = 0; k < opt.nr_configs; k++)
		has_mmap |= opt.configs[k] == C_MMAP;
	if (opt.json)
		return;
	if (uname(&u))
		die("uname: %s", strerror(errno));
	printf("buffer_pool: ufault %d.%d.%d, kernel %s %s, %ld online CPUs, page %ld B\n",
	       UFAULT_VERSION_MAJOR, UFAULT_VERSION_MINOR, UFAULT_VERSION_PATCH, u.release,
	       u.machine, sysconf(_SC_NPROCESSORS_ONLN), page_size);
	printf("file %s, %zu MiB (%" PRIu64 " pages of %d records of %d B), %s\n", opt.file,
	       opt.size >> 20, nr_pages, (int)(page_size / REC), REC, file_state);
	printf("budget %zu MiB (%" PRIu64 " pages, %.0f%% of the file); Zipf theta %.2f over "
	       "pages (scrambled): an ideal cache of the budget's hottest pages hits %.1f%%\n",
	       opt.budget >> 20, bp, 100.0 * (double)bp / (double)nr_pages, opt.theta,
	       100 * zipf_top_share(bp));
	printf("%d threads, %.1f s a measurement, %d%% updates (56 B of a 64 B record), "
	       "%d run%s interleaved, median reported; each measurement cold (%s)\n",
	       opt.threads, opt.seconds, opt.update_pct, opt.runs, opt.runs > 1 ? "s" : "",
	       cold_skip_reason ? cold_skip_reason : "sync + drop_caches before it");
	printf("ufault: write-back file region, dirty tracking %s, %s; fills read %s\n",
	       dirty_names[opt.dirty], opt.workers ? "--workers" : "library default workers",
	       opt.direct ? "with O_DIRECT (every miss reads the disk)"
			  : "through the page cache, which is NOT limited (a miss after "
			    "the first read of a page costs a copy; --direct to read the disk)");
	if (!has_mmap)
		;
	else if (CG.version)
		printf("mmap-cgroup: MAP_SHARED%s in a child process in a memory cgroup v%d "
		       "(%s = budget, under %s)%s%s\n",
		       opt.mmap_random ? " + MADV_RANDOM" : "", CG.version,
		       CG.version == 2 ? "memory.max" : "memory.limit_in_bytes", CG.parent,
		       CG.why_not[0] ? "; " : "", CG.why_not);
	else
		printf("mmap-cgroup: NOT MEASURED: no memory cgroup could be made (%s); "
		       "mmap-nolimit measures MAP_SHARED with no limit instead\n",
		       CG.why_not);
	printf("hit %%: 1 - misses / ops; misses: ufault: faults - wp_faults (ufault_stats); mmap: "
	       "minor + major faults of the operating threads (getrusage RUSAGE_THREAD; a first "
	       "write to a clean page counts, a page mapped by fault-around does not); steady: "
	       "the second half of the run; hit-maj: mmap counting only major faults (pages "
	       "read from the disk)\n");
	fflush(stdout);
}

/* ------------------------------------------------------------------ */
/* Command line                                                         */
/* ------------------------------------------------------------------ */

void usage(FILE *f)
{
	fprintf(
	    f, "usage: buffer_pool [options]\n"
	       "A database buffer pool's workload (Zipf 0.99 over 4 KiB pages of 64 B\n"
	       "records, reads and updates) through a mapping held to a memory budget:\n"
	       "ufault write-back regions with the 2Q and FIFO policies, and the kernel's\n"
	       "mmap in a memory cgroup of the same size. The default run (256 MiB, 3\n"
	       "configurations, 3 runs of 5 s) takes about a minute; the first also writes\n"
	       "the file.\n"
	       "\n"
	       "  --file PATH       data file (default /var/tmp/ufault_buffer_pool.dat);\n"
	       "                    written once if missing or of another size or layout\n"
	       "  --size N[KMG]     file size (default 256M)\n"
	       "  --budget N[KMG]   memory budget (default a quarter of --size)\n"
	       "  --configs LIST    ufault-2q,ufault-fifo,mmap-cgroup (default all)\n"
	       "  --threads N       operating threads (default 2)\n"
	       "  --seconds S       per measurement (default 5)\n"
	       "  --update-pct P    share of updates, 0..100 (default 50)\n"
	       "  --theta T         Zipf skew, 0 < T < 1 (default 0.99)\n"
	       "  --runs N          repetitions, configurations interleaved, median reported\n"
	       "                    (default 3)\n"
	       "  --workers N       ufault worker threads (default: the library's)\n"
	       "  --dirty MODE      ufault dirty tracking: auto, async, sync (default auto)\n"
	       "  --direct          ufault fills read with O_DIRECT (UFAULT_FILE_DIRECT)\n"
	       "  --mmap-advice A   random (default: madvise(MADV_RANDOM), as databases on\n"
	       "                    mmap do) or normal (the kernel's read-around: in a\n"
	       "                    small memory cgroup it can thrash, 100x slower here)\n"
	       "  --json            one JSON object per line instead of the table\n"
	       "  --help\n"
	       "Cold runs and mmap-cgroup need root (drop_caches, cgroups).\n"
	       "Exit status: 0, or 1 if an operation found a wrong record key or a fill failed.\n");
}

static void add_config(const char *s)
{
	int i = strcmp(s, "mmap-nolimit") ? bench_lookup(s, config_names, C_NR) : C_MMAP;

	if (i < 0)
		bad_usage("unknown configuration '%s'", s);
	for (int k = 0; k < opt.nr_configs; k++)
		if (opt.configs[k] == (enum config)i)
			return;
	opt.configs[opt.nr_configs++] = (enum config)i;
}

static double parse_double(const char *s, const char *what, double lo, double hi)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v > lo) || !(v < hi))
		bad_usage("bad %s '%s' (want %g < x < %g)", what, s, lo, hi);
	return v;
}

static void parse_args(int argc, char **argv)
{
	enum {
		O_FILE = 256,
		O_SIZE,
		O_BUDGET,
		O_CONFIGS,
		O_THREADS,
		O_SECONDS,
		O_UPDATE,
		O_THETA,
		O_RUNS,
		O_WORKERS,
		O_DIRTY,
		O_DIRECTIO,
		O_ADVICE,
		O_JSON
	};
	static const struct option lo[] = {
	    {"file", required_argument, NULL, O_FILE},
	    {"size", required_argument, NULL, O_SIZE},
	    {"budget", required_argument, NULL, O_BUDGET},
	    {"configs", required_argument, NULL, O_CONFIGS},
	    {"threads", required_argument, NULL, O_THREADS},
	    {"seconds", required_argument, NULL, O_SECONDS},
	    {"update-pct", required_argument, NULL, O_UPDATE},
	    {"theta", required_argument, NULL, O_THETA},
	    {"runs", required_argument, NULL, O_RUNS},
	    {"workers", required_argument, NULL, O_WORKERS},
	    {"dirty", required_argument, NULL, O_DIRTY},
	    {"direct", no_argument, NULL, O_DIRECTIO},
	    {"mmap-advice", required_argument, NULL, O_ADVICE},
	    {"json", no_argument, NULL, O_JSON},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c, i;

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
		case O_BUDGET:
			opt.budget = parse_size(optarg, "budget");
			break;
		case O_CONFIGS:
			opt.nr_configs = 0;
			parse_list(optarg, add_config);
			break;
		case O_THREADS:
			opt.threads = (int)parse_long(optarg, "thread count", 1, MAX_THREADS);
			break;
		case O_SECONDS:
			opt.seconds = parse_double(optarg, "seconds", 0, 3600);
			break;
		case O_UPDATE:
			opt.update_pct = (int)parse_long(optarg, "update share", 0, 100);
			break;
		case O_THETA:
			opt.theta = parse_double(optarg, "theta", 0, 1);
			break;
		case O_RUNS:
			opt.runs = (int)parse_long(optarg, "runs", 1, MAX_RUNS);
			break;
		case O_WORKERS:
			opt.workers = (unsigned int)parse_long(optarg, "workers", 1, 4096);
			break;
		case O_DIRTY:
			for (i = 0; i < 3 && strcmp(optarg, dirty_names[i]); i++)
				;
			if (i == 3)
				bad_usage("unknown dirty mode '%s'", optarg);
			opt.dirty = (enum ufault_dirty_mode)i;
			break;
		case O_DIRECTIO:
			opt.direct = true;
			break;
		case O_ADVICE:
			if (strcmp(optarg, "random") && strcmp(optarg, "normal"))
				bad_usage("--mmap-advice: random or normal, not '%s'", optarg);
			opt.mmap_random = !strcmp(optarg, "random");
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
	if (!opt.nr_configs)
		bad_usage("empty --configs");
	if (!opt.budget)
		opt.budget = (opt.size / 4) & ~(size_t)(page_size - 1);
	if (!opt.budget || opt.budget > opt.size)
		bad_usage("--budget must be at most --size and at least a page");
	if ((opt.size >> __builtin_ctzl((unsigned long)page_size)) > UINT32_MAX)
		bad_usage("size too large (at most 2^32 pages)");
}

/* A budget of one page and no context: does this library and kernel have budgets? */
static void probe_budget(void)
{
	static char why[160];
	struct ufault_ctx *ctx;
	struct ufault_budget b;
	int err;

	err = ufault_ctx_create(&ctx, NULL);
	if (err)
		die("ufault_ctx_create: %s", ufault_strerror(err));
	memset(&b, 0, sizeof(b));
	b.size = sizeof(b);
	b.bytes = (size_t)page_size;
	err = ufault_ctx_set_budget(ctx, &b);
	ufault_ctx_destroy(ctx);
	if (err == -EOPNOTSUPP) {
		snprintf(why, sizeof(why),
			 "ufault_ctx_set_budget: -EOPNOTSUPP (no UFFD_FEATURE_MOVE here)");
		ufault_skip_reason = why;
	} else if (err) {
		die("ufault_ctx_set_budget (probe): %s", ufault_strerror(err));
	}
}

int main(int argc, char **argv)
{
	uint64_t t0 = now_ns(), failures = 0;
	struct cell *cells;
	int nr = 0, k;

	page_size = sysconf(_SC_PAGESIZE);
	if (page_size <= 0 || page_size & (page_size - 1))
		die("page size %ld", page_size);
	page_shift = (unsigned int)__builtin_ctzl((unsigned long)page_size);
	hist_setup();
	parse_args(argc, argv);
	nr_pages = opt.size >> page_shift;
	if ((cold_skip_reason = bench_drop_caches_probe()))
		warnx("%s: the measurements start warm", cold_skip_reason);
	file_state = bench_data_file(opt.file, opt.size, rec_fill, rec_keys_ok, opt.json);
	zipf_init(nr_pages, opt.theta);
	/* The ranks spread over the file. */
	perm = bench_shuffle(nr_pages, 0xb0f);
	for (k = 0; k < opt.nr_configs; k++)
		if (opt.configs[k] == C_MMAP)
			cg_probe();
	for (k = 0; k < opt.nr_configs; k++)
		if (opt.configs[k] != C_MMAP) {
			probe_budget();
			break;
		}
	if (ufault_skip_reason)
		warnx("%s: skipping the ufault configurations", ufault_skip_reason);
	if (!CG.version && CG.why_not[0])
		warnx("no memory cgroup: %s: measuring mmap-nolimit instead of mmap-cgroup",
		      CG.why_not);
	print_header();

	cells = xcalloc(C_NR, sizeof(*cells));
	for (k = 0; k < opt.nr_configs; k++)
		if (opt.configs[k] == C_MMAP || !ufault_skip_reason)
			cells[nr++].c = opt.configs[k];
	for (int run = 0; run < opt.runs; run++)
		for (k = 0; k < nr; k++) {
			struct cell *c = &cells[k];
			struct result *r = &c->r[c->n++];

			memset(r, 0, sizeof(*r));
			sync();
			if (!cold_skip_reason)
				bench_drop_caches();
			if (c->c == C_MMAP)
				run_mmap(r);
			else
				run_ufault(c->c, r);
			if (r->bad)
				warnx("FAILURE: %s run %d: %" PRIu64 " operations found a wrong "
				      "record key or fills failed",
				      cfg_name(c->c), run + 1, r->bad);
			if (!opt.json)
				fprintf(stderr, "  run %d %s: %.0f ops/s, hit %.2f%%\n", run + 1,
					cfg_name(c->c), r->ops_per_s, 100 * r->hit);
		}
	if (!opt.json)
		print_table_header();
	for (k = 0; k < nr; k++) {
		take_median(&cells[k]);
		if (opt.json)
			json_cell(&cells[k]);
		else
			print_row(&cells[k]);
		failures += cells[k].med.bad;
	}
	print_verdicts(cells, nr);
	if (!opt.json)
		printf("\nwall time %.1f s\n", (double)(now_ns() - t0) / 1e9);
	free(cells);
	if (failures) {
		fflush(stdout);
		fprintf(stderr, "buffer_pool: FAILED: %" PRIu64 " wrong keys or failed fills\n",
			failures);
		return 1;
	}
	return 0;
}
