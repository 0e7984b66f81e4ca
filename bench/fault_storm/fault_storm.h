/* SPDX-License-Identifier: MIT */
/*
 * fault_storm.h - what the files of bench/fault_storm/ share. One concern
 * per file:
 *
 *   fault_storm.c  main: the default plan, or the workloads asked for
 *   opts.c         the command line (struct opts)
 *   backend.c      the handlers under test, one ops table each: ufault (its
 *                  four lock modes), the minimal hand-written handler,
 *                  native kernel faults
 *   sources.c      the slow sources (a fill that sleeps, an asynchronous
 *                  fill completed by a delay line) and their latency
 *                  distributions; sleeping, barriers
 *   minimal.c      the minimal handler
 *   workloads.c    the threads of each workload, one measurement (run_one)
 *   report.c       sections (runs, medians), tables, JSON, the verdicts
 *
 * Only the public API (include/ufault/ufault.h) is used.
 */
#ifndef FAULT_STORM_H
#define FAULT_STORM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ufault/ufault.h>

#include "../bench_hist.h"
#include "../bench_util.h"

/* ------------------------------------------------------------------ */
/* Names                                                                */
/* ------------------------------------------------------------------ */

enum mode { M_SPEC, M_REGION, M_RANGE, M_GLOBAL, M_MINIMAL, M_NATIVE, M_NR };
extern const char *const mode_names[M_NR];

static inline bool mode_is_ufault(enum mode m)
{
	return m <= M_GLOBAL;
}

enum workload { W_PFT, W_CHECK, W_PAGE_FAULT1, W_EBIZZY, W_MIXED, W_RESTORE, W_NR };

/* zero; slow: a synchronous fill that sleeps its latency; async: an
 * asynchronous fill completed by a delay line after its latency. */
enum source { S_ZERO, S_SLOW, S_ASYNC, S_NR };
extern const char *const src_names[S_NR];

enum variant { V_ADJACENT, V_SAME };
extern const char *const variant_names[2];

/* A slow source's latency per fill: always @us (fixed), exponential with
 * mean @us (exp), or @slow_us with probability @slow_permille/1000 and
 * @fast_us otherwise (bimodal). */
enum latency_dist { LD_FIXED, LD_EXP, LD_BIMODAL, LD_NR };
extern const char *const dist_names[LD_NR];

struct latency {
	enum latency_dist dist;
	unsigned int us;
	unsigned int fast_us, slow_us, slow_permille;
};

/* Proxy calls timed by the restore workload. */
enum proxy_op { PO_MMAP, PO_MUNMAP, PO_MPROTECT, PO_MADVISE, PO_NR };
extern const char *const proxy_op_names[PO_NR];

#define MAX_LIST 16
#define MAX_RUNS 99

/* ------------------------------------------------------------------ */
/* Options (opts.c)                                                     */
/* ------------------------------------------------------------------ */

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

	int proxies;	    /* -1: workload default */
	int source;	    /* -1: workload default */
	struct latency lat; /* --latency-dist and its parameters */
	bool dist_set;	    /* --latency-dist given (else the workload's) */
	bool latency_set;   /* --latency-us given */
	double seconds;	    /* 0: workload default */
	size_t size;	    /* 0: workload default */
	size_t proxy_size;
	int runs; /* 0: workload default */
	bool pin;
	bool json;
	unsigned int workers; /* 0: policy in backend.c */
	unsigned int uffds;   /* 0: policy in backend.c */
	size_t fault_around;  /* ufault fault_around_max; 0: none */
	enum variant variant;
};

extern struct opts opt;
extern unsigned int nr_cpus;

void parse_args(int argc, char **argv);

/* ------------------------------------------------------------------ */
/* Sources and small helpers (sources.c)                                */
/* ------------------------------------------------------------------ */

/* Sleep without burning CPU (the timer slack is set to 1 ns in main). */
void sleep_ns(uint64_t ns);
void barrier_init(pthread_barrier_t *b, unsigned int n);
void barrier_wait(pthread_barrier_t *b);

/* THP "always" would give native runs 2 MiB pages; baselines opt out then. */
extern bool thp_always;
bool thp_is_always(void);

/* One fill's latency in ns, drawn from @l (thread-safe). */
uint64_t latency_draw_ns(const struct latency *l);
/* "fixed 50 us", "bimodal 95% 100 us / 5% 5000 us", ... */
void latency_describe(const struct latency *l, char *buf, size_t n);

/* The bytes every slow fill writes. */
void fill_pattern(void *buf, uint64_t offset, size_t len);
/* The synchronous slow source: sleep a drawn latency, write the pattern. */
int slow_fill(void *arg, uint64_t offset, void *buf, size_t len);

/* The asynchronous one: fills queue on a delay line, completed by its
 * thread when due (in due order, whatever the latency of each). */
struct delay_line;
struct delay_line *dl_start(const struct latency *lat);
/* After the context is destroyed (no fill can be queued any more). */
void dl_stop(struct delay_line *dl);
int async_fill(void *arg, uint64_t offset, void *buf, size_t len, struct ufault_completion *c);

/* ------------------------------------------------------------------ */
/* The minimal handler (minimal.c)                                      */
/* ------------------------------------------------------------------ */

struct minimal;
/* @lat NULL: zero source. */
struct minimal *minimal_start(const struct latency *lat, size_t page);
void minimal_register(struct minimal *m, void *addr, size_t len);
/* Stop it; the number of faults it resolved. */
uint64_t minimal_stop(struct minimal *m);

/* ------------------------------------------------------------------ */
/* One measurement: configuration, result                               */
/* ------------------------------------------------------------------ */

struct run_cfg {
	enum workload wl;
	enum mode mode;
	int threads;
	int proxies;
	enum source src;
	struct latency lat;
	double seconds;
	size_t size;
	size_t proxy_size;
	enum variant variant;
};

struct op_stats {
	uint64_t n;
	double us_p50, us_p99, us_max;
};

struct result {
	double elapsed_s;
	uint64_t faults;	  /* first-touch faults timed by the fault threads */
	uint64_t proxy_ops;	  /* completed proxy calls */
	uint64_t proxy_fallbacks; /* adjacent slot taken: mapped at a kernel-chosen address */
	double faults_per_s;
	double proxy_ops_per_s;
	double us_mean; /* threads * elapsed / faults: time per fault per thread */
	double us_p50, us_p99;
	/* Proxies: where their time went (seconds, summed over proxies). */
	double proxy_call_s;	   /* inside ufault_mmap/munmap/mprotect/madvise */
	double proxy_fault_s;	   /* faulting in their own arenas */
	struct op_stats op[PO_NR]; /* restore: per proxy call type */
	struct op_stats op_all;	   /* restore: every proxy call */
	uint64_t spec_aborts;
	uint64_t lib_faults; /* ufault_stats().faults or the minimal handler's count */
	unsigned int workers, uffds;
	bool valid;
};

/* ------------------------------------------------------------------ */
/* Backends (backend.c)                                                 */
/* ------------------------------------------------------------------ */

struct backend;

struct backend_ops {
	const char *kind;
	void (*open)(struct backend *b, const struct run_cfg *rc);
	/* Fill in the handler's counters of @res, release everything. */
	void (*close)(struct backend *b, struct result *res);
	/* @fixed: 0, MAP_FIXED or MAP_FIXED_NOREPLACE; @zero_src: the zero
	 * source whatever the run's (proxies' arenas). MAP_FAILED + errno. */
	void *(*map)(struct backend *b, void *hint, size_t len, int fixed, uint64_t src_off,
		     bool zero_src);
	/* 0 or -1 with errno. */
	int (*unmap)(struct backend *b, void *p, size_t len);
	int (*madvise)(struct backend *b, void *p, size_t len, int advice);
	int (*mprotect)(struct backend *b, void *p, size_t len, int prot);
};

struct backend {
	const struct backend_ops *ops;
	enum mode mode;
	enum source src;
	struct latency lat;
	struct ufault_ctx *ctx; /* ufault */
	struct minimal *min;	/* minimal */
	struct delay_line *dl;	/* async source */
};

void backend_open(struct backend *b, const struct run_cfg *rc);
void backend_close(struct backend *b, struct result *res);
/* These die on failure, naming the call. */
void *be_map(struct backend *b, void *hint, size_t len, int fixed, uint64_t src_off, bool zero_src);
void be_unmap(struct backend *b, void *p, size_t len);
void be_dontneed(struct backend *b, void *p, size_t len);
void be_mprotect(struct backend *b, void *p, size_t len, int prot);

/* ------------------------------------------------------------------ */
/* Workloads (workloads.c)                                              */
/* ------------------------------------------------------------------ */

struct shared;

struct workload_def {
	const char *name;
	double (*run)(struct shared *sh); /* the threads; returns the seconds measured */
	size_t default_size;		  /* per fault thread */
	enum source default_src;
	bool has_proxies;
	const char *what; /* one line for --help */
};

extern const struct workload_def workloads[W_NR];

void run_one(const struct run_cfg *rc, struct result *res);

/* ------------------------------------------------------------------ */
/* Sections and report (report.c)                                       */
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
	int proxies;	     /* the proxy count (spec also runs with 0) */
	int runs;
	int nr_meas;
	struct meas *meas;
};

/* A section of @wl: the given defaults unless the command line set them. */
struct section *make_section(enum workload wl, const char *name, enum source dsrc,
			     const struct latency *dlat, double dseconds, int druns,
			     const int *dthreads, int ndthreads, const enum mode *dmodes,
			     int ndmodes, int dproxies);
/* Run every measurement (runs interleaved over modes), print its table. */
void section_run(struct section *s);
void section_free(struct section *s);
void print_header(void);
/* The verdict table's rows for the sections run (@default_plan: only the
 * rows the default plan claims). */
void print_verdicts(struct section *const *sections, int n, bool default_plan);

#endif
