/* SPDX-License-Identifier: MIT */
/*
 * rangelock_bench.c - the range lock against pthread locks, in the spirit of
 * locktorture's 1:1 comparisons.
 *
 *  1. uncontended acquire+release cost (ns/op), median of several runs;
 *  2. T threads looping lock -> ~5 us of calibrated busy work -> unlock for a
 *     fixed time: range write lock on disjoint ranges, on one shared range,
 *     range read lock on one shared range, one pthread_rwlock in write and in
 *     read mode. Reports ops/s and the disjoint-range / rwlock-write ratio.
 *
 * Usage: rangelock_bench [--threads 1,2,4,8] [--seconds S] [--work-us U] [--json]
 */
#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ufault/rangelock.h>

#define MAX_THREADS 64
#define UNCONTENDED_ITERS 2000000
#define UNCONTENDED_RUNS 7

static bool json;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* ---- uncontended ----------------------------------------------------------- */

enum lock_kind {
	K_RANGE_READ,
	K_RANGE_WRITE,
	K_RWLOCK_RD,
	K_RWLOCK_WR,
	K_MUTEX,
	K_NR,
};

static const char *const kind_names[K_NR] = {"range_read", "range_write", "rwlock_rdlock",
					     "rwlock_wrlock", "mutex"};

static struct ufault_rangelock g_rl;
static pthread_rwlock_t g_rw = PTHREAD_RWLOCK_INITIALIZER;
static pthread_mutex_t g_mx = PTHREAD_MUTEX_INITIALIZER;

static double uncontended_once(enum lock_kind k)
{
	struct ufault_range r;
	uint64_t t0 = now_ns();

	for (int i = 0; i < UNCONTENDED_ITERS; i++) {
		switch (k) {
		case K_RANGE_READ:
			ufault_range_read_lock(&g_rl, &r, 4096, 8192);
			ufault_range_read_unlock(&g_rl, &r);
			break;
		case K_RANGE_WRITE:
			ufault_range_write_lock(&g_rl, &r, 4096, 8192);
			ufault_range_write_unlock(&g_rl, &r);
			break;
		case K_RWLOCK_RD:
			pthread_rwlock_rdlock(&g_rw);
			pthread_rwlock_unlock(&g_rw);
			break;
		case K_RWLOCK_WR:
			pthread_rwlock_wrlock(&g_rw);
			pthread_rwlock_unlock(&g_rw);
			break;
		default:
			pthread_mutex_lock(&g_mx);
			pthread_mutex_unlock(&g_mx);
			break;
		}
		__asm__ __volatile__("" ::: "memory");
	}
	return (double)(now_ns() - t0) / UNCONTENDED_ITERS;
}

static double uncontended(enum lock_kind k)
{
	double v[UNCONTENDED_RUNS];

	uncontended_once(k); /* warm up */
	for (int i = 0; i < UNCONTENDED_RUNS; i++)
		v[i] = uncontended_once(k);
	qsort(v, UNCONTENDED_RUNS, sizeof(v[0]), cmp_double);
	return v[UNCONTENDED_RUNS / 2];
}

/* ---- contended ------------------------------------------------------------- */

enum scenario {
	S_RANGE_DISJOINT,
	S_RANGE_SAME_WRITE,
	S_RANGE_SAME_READ,
	S_RWLOCK_WRITE,
	S_RWLOCK_READ,
	S_NR,
};

static const char *const scen_names[S_NR] = {"range_write_disjoint", "range_write_same",
					     "range_read_same", "rwlock_write", "rwlock_read"};
static const char *const scen_labels[S_NR] = {"(a) range W disjoint", "(b) range W same",
					      "(c) range R same", "(d) rwlock W", "(e) rwlock R"};

static uint64_t work_iters; /* busy-loop iterations for the requested work time */

static void busy_work(uint64_t n)
{
	for (volatile uint64_t i = 0; i < n; i++)
		;
}

static void calibrate(double work_us)
{
	uint64_t n = 100000, t;

	for (;;) {
		t = now_ns();
		busy_work(n);
		t = now_ns() - t;
		if (t > 20000000)
			break;
		n *= 2;
	}
	work_iters = (uint64_t)((double)n * work_us * 1000.0 / (double)t);
	if (!work_iters)
		work_iters = 1;
}

struct worker {
	enum scenario s;
	int id;
	uint64_t ops;
	pthread_t tid;
};

static int stop_flag;
static pthread_barrier_t start_barrier;

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct ufault_range r;
	uint64_t start = (uint64_t)w->id << 20, ops = 0;

	pthread_barrier_wait(&start_barrier);
	while (!__atomic_load_n(&stop_flag, __ATOMIC_RELAXED)) {
		switch (w->s) {
		case S_RANGE_DISJOINT:
			ufault_range_write_lock(&g_rl, &r, start, start + 4096);
			busy_work(work_iters);
			ufault_range_write_unlock(&g_rl, &r);
			break;
		case S_RANGE_SAME_WRITE:
			ufault_range_write_lock(&g_rl, &r, 0, 4096);
			busy_work(work_iters);
			ufault_range_write_unlock(&g_rl, &r);
			break;
		case S_RANGE_SAME_READ:
			ufault_range_read_lock(&g_rl, &r, 0, 4096);
			busy_work(work_iters);
			ufault_range_read_unlock(&g_rl, &r);
			break;
		case S_RWLOCK_WRITE:
			pthread_rwlock_wrlock(&g_rw);
			busy_work(work_iters);
			pthread_rwlock_unlock(&g_rw);
			break;
		default:
			pthread_rwlock_rdlock(&g_rw);
			busy_work(work_iters);
			pthread_rwlock_unlock(&g_rw);
			break;
		}
		ops++;
	}
	w->ops = ops;
	return NULL;
}

static double run_contended(enum scenario s, int nthreads, double seconds)
{
	struct worker w[MAX_THREADS];
	uint64_t total = 0, t0, t1;

	__atomic_store_n(&stop_flag, 0, __ATOMIC_RELAXED);
	pthread_barrier_init(&start_barrier, NULL, (unsigned int)nthreads + 1);
	for (int i = 0; i < nthreads; i++) {
		w[i] = (struct worker){.s = s, .id = i};
		if (pthread_create(&w[i].tid, NULL, worker_main, &w[i]) != 0) {
			perror("pthread_create");
			exit(1);
		}
	}
	pthread_barrier_wait(&start_barrier);
	t0 = now_ns();
	usleep((useconds_t)(seconds * 1e6));
	__atomic_store_n(&stop_flag, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < nthreads; i++) {
		pthread_join(w[i].tid, NULL);
		total += w[i].ops;
	}
	t1 = now_ns();
	pthread_barrier_destroy(&start_barrier);
	return (double)total / ((double)(t1 - t0) / 1e9);
}

static int parse_threads(const char *arg, int *out, int max)
{
	char *copy = strdup(arg), *tok, *save = NULL;
	int n = 0;

	for (tok = strtok_r(copy, ",", &save); tok && n < max; tok = strtok_r(NULL, ",", &save)) {
		int v = atoi(tok);

		if (v < 1 || v > MAX_THREADS) {
			fprintf(stderr, "bad thread count '%s' (1..%d)\n", tok, MAX_THREADS);
			free(copy);
			return -1;
		}
		out[n++] = v;
	}
	free(copy);
	return n;
}

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s [--threads 1,2,4,8] [--seconds S] [--work-us U] [--json]\n"
		"  --threads   thread counts for the contended runs (default 1,2,4,8)\n"
		"  --seconds   duration of each contended run (default 1)\n"
		"  --work-us   busy work inside each critical section (default 5)\n"
		"  --json      one JSON object per line instead of tables\n",
		prog);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"threads", required_argument, NULL, 't'}, {"seconds", required_argument, NULL, 's'},
	    {"work-us", required_argument, NULL, 'w'}, {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},	       {NULL, 0, NULL, 0},
	};
	int threads[16] = {1, 2, 4, 8}, nthr = 4, c;
	double seconds = 1.0, work_us = 5.0, unc[K_NR], ops[16][S_NR];
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;
	int avail = 0;

	while ((c = getopt_long(argc, argv, "t:s:w:jh", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			nthr = parse_threads(optarg, threads, 16);
			if (nthr <= 0)
				return 2;
			break;
		case 's':
			seconds = atof(optarg);
			if (seconds <= 0) {
				fprintf(stderr, "bad --seconds\n");
				return 2;
			}
			break;
		case 'w':
			work_us = atof(optarg);
			if (work_us < 0) {
				fprintf(stderr, "bad --work-us\n");
				return 2;
			}
			break;
		case 'j':
			json = true;
			break;
		default:
			usage(argv[0]);
			return c == 'h' ? 0 : 2;
		}
	}
	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		avail = CPU_COUNT(&set);

	ufault_rangelock_init(&g_rl);
	calibrate(work_us);

	for (int k = 0; k < K_NR; k++)
		unc[k] = uncontended((enum lock_kind)k);
	for (int i = 0; i < nthr; i++)
		for (int s = 0; s < S_NR; s++)
			ops[i][s] = run_contended((enum scenario)s, threads[i], seconds);

	double r_read = unc[K_RANGE_READ] / unc[K_RWLOCK_RD];
	double r_write = unc[K_RANGE_WRITE] / unc[K_RWLOCK_WR];
	int i4 = -1;

	for (int i = 0; i < nthr; i++)
		if (threads[i] == 4)
			i4 = i;

	if (json) {
		printf("{\"bench\":\"config\",\"cpus_online\":%ld,\"cpus_allowed\":%d,"
		       "\"seconds\":%g,\"work_us\":%g,\"work_iters\":%llu}\n",
		       ncpu, avail, seconds, work_us, (unsigned long long)work_iters);
		for (int k = 0; k < K_NR; k++)
			printf("{\"bench\":\"uncontended\",\"lock\":\"%s\",\"ns_per_op\":%.2f}\n",
			       kind_names[k], unc[k]);
		for (int i = 0; i < nthr; i++) {
			for (int s = 0; s < S_NR; s++)
				printf("{\"bench\":\"contended\",\"threads\":%d,\"case\":\"%s\","
				       "\"ops_per_s\":%.0f}\n",
				       threads[i], scen_names[s], ops[i][s]);
			printf("{\"bench\":\"ratio\",\"threads\":%d,\"disjoint_over_rwlock_write\":"
			       "%.3f}\n",
			       threads[i], ops[i][S_RANGE_DISJOINT] / ops[i][S_RWLOCK_WRITE]);
		}
		printf("{\"bench\":\"verdict\",\"target\":\"uncontended_le_2x_rwlock\","
		       "\"read_ratio\":%.3f,\"write_ratio\":%.3f,\"pass\":%s}\n",
		       r_read, r_write, r_read <= 2.0 && r_write <= 2.0 ? "true" : "false");
		if (i4 >= 0) {
			double r4 = ops[i4][S_RANGE_DISJOINT] / ops[i4][S_RWLOCK_WRITE];

			printf("{\"bench\":\"verdict\",\"target\":\"4t_disjoint_ge_1.5x_rwlock_"
			       "write\","
			       "\"ratio\":%.3f,\"pass\":%s}\n",
			       r4, r4 >= 1.5 ? "true" : "false");
		}
		return 0;
	}

	printf("rangelock_bench: %ld CPUs online, %d allowed; %g s per run; %g us work "
	       "(%llu iters)\n\n",
	       ncpu, avail, seconds, work_us, (unsigned long long)work_iters);
	printf("uncontended acquire+release (median of %d x %d)\n", UNCONTENDED_RUNS,
	       UNCONTENDED_ITERS);
	printf("  %-16s %10s\n", "lock", "ns/op");
	for (int k = 0; k < K_NR; k++)
		printf("  %-16s %10.2f\n", kind_names[k], unc[k]);
	printf("\ncontended: lock, %g us work, unlock (ops/s, all threads)\n", work_us);
	printf("  %7s", "threads");
	for (int s = 0; s < S_NR; s++)
		printf(" %21s", scen_labels[s]);
	printf(" %10s\n", "(a)/(d)");
	for (int i = 0; i < nthr; i++) {
		printf("  %7d", threads[i]);
		for (int s = 0; s < S_NR; s++)
			printf(" %21.0f", ops[i][s]);
		printf(" %10.2f\n", ops[i][S_RANGE_DISJOINT] / ops[i][S_RWLOCK_WRITE]);
	}
	printf("\nverdict: uncontended range read %.2fx rwlock rdlock, range write %.2fx "
	       "rwlock wrlock (target <= 2x): %s\n",
	       r_read, r_write, r_read <= 2.0 && r_write <= 2.0 ? "PASS" : "FAIL");
	if (i4 >= 0) {
		double r4 = ops[i4][S_RANGE_DISJOINT] / ops[i4][S_RWLOCK_WRITE];

		printf(
		    "verdict: 4 threads disjoint range W %.2fx one rwlock W (target >= 1.5x): %s\n",
		    r4, r4 >= 1.5 ? "PASS" : "FAIL");
		if (avail && avail < 4)
			printf("note: %d CPU(s) allowed, so CPU-bound work on disjoint ranges can "
			       "scale to at most %dx one thread\n",
			       avail, avail);
	} else {
		printf("verdict: 4-thread target not measured (no 4 in --threads)\n");
	}
	ufault_rangelock_destroy(&g_rl);
	return 0;
}
