/* SPDX-License-Identifier: MIT */
/*
 * test_small_findings.c - the smaller contract points of ufault.h 0.2 that a
 * caller can observe, each with the behaviour it replaced:
 *
 *  - struct sizes: ufault_config below UFAULT_CONFIG_SIZE_VER0 is -EINVAL
 *    (a size of 55 used to be accepted), VER0 itself is accepted; a source
 *    whose size is 0, below UFAULT_SOURCE_SIZE_VER0 or above this
 *    library's is -EINVAL; ufault_stats() accepts UFAULT_STATS_SIZE_VER0,
 *    refuses less, and a newer caller's larger struct gets our fields and
 *    zeros past them (they used to be left as they were);
 *    ufault_stats_histogram() reports its bucket count and, once the
 *    faults have been handled, its buckets add up to stats.faults;
 *  - the environment: an unknown $UFAULT_LOG is reported (a warning naming
 *    it) and ignored, it used to be ignored silently; an empty
 *    $UFAULT_LOCK_MODE counts as unset; an unknown one is -EINVAL;
 *  - ufault_mmap(NULL, ..., MAP_FIXED) is EINVAL (it used to map wherever
 *    the kernel chose);
 *  - two contexts in one process: one may not unmap or map over the
 *    other's region (EBUSY), and that region keeps serving;
 *  - a worker whose read(2) of its uffd fails keeps serving: faults after
 *    the error are all resolved (it used to leave its loop, and every later
 *    fault on its uffd parked forever);
 *  - a system call that reads or writes a region page never touched
 *    (write(2) from it into a pipe, read(2) from a pipe into it) waits
 *    for the page like a thread's own access (0.7: the uffd used to be
 *    opened UFFD_USER_MODE_ONLY, and such calls failed with EFAULT);
 *  - ufault's threads block every signal (0.7): a context made while the
 *    creating thread takes SIGUSR1, which the thread then blocks, leaves a
 *    process-directed SIGUSR1 pending for the program (sigtimedwait gets
 *    it) instead of running its handler on a worker (it used to: workers
 *    inherited the creator's mask).
 *
 * Per-mode behaviour runs in every lock mode.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include <cmocka.h>

#include "../modes.h"
#include "worker.h" /* ufault__workers_inject_error() */

#define RW (PROT_READ | PROT_WRITE)
#define PA (MAP_PRIVATE | MAP_ANONYMOUS)

static size_t ps;

static struct ufault_ctx *new_ctx(unsigned int workers, unsigned int uffds)
{
	struct ufault_ctx *ctx = NULL;

	assert_int_equal(tu_ctx_create(&ctx, tu_mode, workers, uffds), 0);
	return ctx;
}

static void check_pages(const char *p, size_t first, size_t last, uint64_t seed)
{
	for (size_t pg = first; pg < last; pg++) {
		long bad = tu_pattern_check(p + pg * ps, ps, pg * ps, seed);

		if (bad >= 0)
			fail_msg("[%s] page %zu byte %ld is 0x%02x, expected 0x%02x",
				 ufault_lock_mode_name(tu_mode), pg, bad,
				 (unsigned char)p[pg * ps + (size_t)bad],
				 tu_pattern(pg * ps + (uint64_t)bad, seed));
	}
}

/* ------------------------------------------------------------------ */
/* Struct sizes                                                         */
/* ------------------------------------------------------------------ */

static void test_config_size(void **state)
{
	const size_t bad[] = {0, 4, UFAULT_CONFIG_SIZE_VER0 - 1, sizeof(struct ufault_config) + 8};
	struct ufault_config cfg;
	struct ufault_ctx *ctx;
	int rc;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ufault_config_init(&cfg);
		cfg.size = bad[i];
		ctx = NULL;
		rc = tu_ctx_create_cfg(&ctx, &cfg);
		if (!rc)
			ufault_ctx_destroy(ctx);
		if (rc != -EINVAL)
			fail_msg("config size %zu: ufault_ctx_create returned %d (%s), expected "
				 "-EINVAL",
				 bad[i], rc, ufault_strerror(rc));
	}
	/* The smallest size any release accepts: 0.1's struct. */
	ufault_config_init(&cfg);
	cfg.size = UFAULT_CONFIG_SIZE_VER0;
	assert_int_equal(tu_ctx_create_cfg(&ctx, &cfg), 0);
	ufault_ctx_destroy(ctx);
}

static void test_source_size(void **state)
{
	struct ufault_ctx *ctx = new_ctx(1, 0);
	struct {
		struct ufault_source s;
		unsigned char newer[8]; /* a newer caller's fields */
	} big;
	const size_t bad[] = {0, UFAULT_SOURCE_SIZE_VER0 - 1, sizeof(struct ufault_source) + 8};
	char *p = tu_map_anon(4 * ps, 0);
	void *m;
	int rc;

	(void)state;
	memset(&big, 0, sizeof(big));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		big.s = tu_pattern_source(0, 91);
		big.s.size = bad[i];
		rc = ufault_region_register(ctx, p, 4 * ps, &big.s, 0, NULL);
		if (rc != -EINVAL)
			fail_msg("[%s] source size %zu: ufault_region_register returned %d (%s), "
				 "expected -EINVAL",
				 ufault_lock_mode_name(tu_mode), bad[i], rc, ufault_strerror(rc));
		errno = 0;
		m = ufault_mmap(ctx, NULL, 4 * ps, RW, PA, &big.s, 0);
		if (m != MAP_FAILED) {
			ufault_munmap(ctx, m, 4 * ps);
			fail_msg("[%s] source size %zu: ufault_mmap succeeded, expected EINVAL",
				 ufault_lock_mode_name(tu_mode), bad[i]);
		}
		assert_int_equal(errno, EINVAL);
	}
	/* Nothing was registered: the valid size registers the range. */
	big.s = tu_pattern_source(0, 91);
	assert_int_equal(big.s.size, sizeof(struct ufault_source));
	assert_int_equal(ufault_region_register(ctx, p, 4 * ps, &big.s, 0, NULL), 0);
	check_pages(p, 0, 4, 91);
	ufault_ctx_destroy(ctx);
	tu_unmap(p, 4 * ps);
}

static uint64_t hist_sum(struct ufault_ctx *ctx, uint64_t *buckets, unsigned int nr)
{
	uint64_t sum = 0;

	assert_int_equal(ufault_stats_histogram(ctx, buckets, nr), (int)nr);
	for (unsigned int i = 0; i < nr; i++)
		sum += buckets[i];
	return sum;
}

static void test_stats_size(void **state)
{
	struct ufault_ctx *ctx = new_ctx(2, 0);
	struct ufault_source s = tu_pattern_source(0, 92);
	const size_t extra = 64;
	unsigned char *big = malloc(sizeof(struct ufault_stats) + extra);
	struct ufault_stats st, *bs = (struct ufault_stats *)(void *)big;
	uint64_t *buckets, deadline;
	char *p;
	int nr;

	(void)state;
	assert_non_null(big);
	p = ufault_mmap(ctx, NULL, 32 * ps, RW, PA, &s, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	check_pages(p, 0, 32, 92);

	memset(&st, 0, sizeof(st));
	st.size = UFAULT_STATS_SIZE_VER0;
	assert_int_equal(ufault_stats(ctx, &st), 0);
	assert_true(st.faults >= 32);
	assert_true(st.proxy_ops >= 1);

	st.size = UFAULT_STATS_SIZE_VER0 - 8;
	assert_int_equal(ufault_stats(ctx, &st), -EINVAL);
	st.size = 0;
	assert_int_equal(ufault_stats(ctx, &st), -EINVAL);

	/* A newer caller's struct: ours filled, the rest zeroed. */
	memset(big, 0xff, sizeof(struct ufault_stats) + extra);
	bs->size = sizeof(struct ufault_stats) + extra;
	assert_int_equal(ufault_stats(ctx, bs), 0);
	assert_int_equal(bs->faults, st.faults); /* no fault since */
	assert_int_equal(bs->proxy_ops, st.proxy_ops);
	assert_int_equal(bs->source_errors, 0);
	for (size_t i = 0; i < extra; i++)
		if (big[sizeof(struct ufault_stats) + i])
			fail_msg("[%s] byte %zu past struct ufault_stats is 0x%02x, expected 0",
				 ufault_lock_mode_name(tu_mode), i,
				 big[sizeof(struct ufault_stats) + i]);

	/* The histogram: its size first, then its counts. A fault's latency is
	 * recorded after its thread was woken, so wait for the last ones. */
	nr = ufault_stats_histogram(ctx, NULL, 0);
	assert_true(nr > 0);
	buckets = calloc((size_t)nr, sizeof(*buckets));
	assert_non_null(buckets);
	deadline = tu_now_ns() + 10ull * tu_slowdown() * 1000000000ull;
	while (hist_sum(ctx, buckets, (unsigned int)nr) != st.faults && tu_now_ns() < deadline)
		usleep(1000);
	assert_int_equal(hist_sum(ctx, buckets, (unsigned int)nr), st.faults);

	assert_int_equal(ufault_munmap(ctx, p, 32 * ps), 0);
	ufault_ctx_destroy(ctx);
	free(buckets);
	free(big);
}

/* ------------------------------------------------------------------ */
/* Environment                                                          */
/* ------------------------------------------------------------------ */

struct log_capture {
	pthread_mutex_t lock;
	unsigned int warnings_naming_env; /* warnings or worse that name UFAULT_LOG */
};

static void capture_log(void *arg, enum ufault_log_level level, const char *msg)
{
	struct log_capture *c = arg;

	pthread_mutex_lock(&c->lock);
	if (level <= UFAULT_LOG_WARN && strstr(msg, "UFAULT_LOG"))
		c->warnings_naming_env++;
	pthread_mutex_unlock(&c->lock);
}

/* Set (or with NULL unset) an environment variable; returns a copy of the
 * previous value (NULL if unset) for restore_env(). */
static char *set_env(const char *name, const char *value)
{
	const char *old = getenv(name);
	char *saved = old ? strdup(old) : NULL;

	if (value)
		assert_int_equal(setenv(name, value, 1), 0);
	else
		assert_int_equal(unsetenv(name), 0);
	return saved;
}

static void restore_env(const char *name, char *saved)
{
	if (saved)
		setenv(name, saved, 1);
	else
		unsetenv(name);
	free(saved);
}

static void test_env_log_bogus(void **state)
{
	struct log_capture c = {.lock = PTHREAD_MUTEX_INITIALIZER};
	char *old_log = set_env("UFAULT_LOG", "bogus");
	char *old_mode = set_env("UFAULT_LOCK_MODE", NULL);
	struct ufault_config cfg;
	struct ufault_ctx *ctx = NULL;
	int rc;

	(void)state;
	ufault_config_init(&cfg);
	cfg.log_fn = capture_log;
	cfg.log_arg = &c;
	rc = tu_ctx_create_cfg(&ctx, &cfg);
	restore_env("UFAULT_LOG", old_log);
	restore_env("UFAULT_LOCK_MODE", old_mode);
	assert_int_equal(rc, 0);
	ufault_ctx_destroy(ctx);
	if (!c.warnings_naming_env)
		fail_msg("UFAULT_LOG=bogus was ignored without a warning naming UFAULT_LOG");
}

static void test_env_lock_mode(void **state)
{
	enum ufault_lock_mode empty_mode = UFAULT_LOCK_DEFAULT, range_mode = UFAULT_LOCK_DEFAULT;
	struct ufault_config cfg;
	struct ufault_ctx *ctx = NULL;
	char *old = set_env("UFAULT_LOCK_MODE", "");
	int rc_empty, rc_bogus, rc_range;

	(void)state;
	ufault_config_init(&cfg); /* lock_mode UFAULT_LOCK_DEFAULT: the variable decides */

	/* Empty: as if unset, so the default mode, spec. */
	rc_empty = tu_ctx_create_cfg(&ctx, &cfg);
	if (!rc_empty) {
		empty_mode = ufault_ctx_lock_mode(ctx);
		ufault_ctx_destroy(ctx);
	}
	/* Unknown: -EINVAL. */
	assert_int_equal(setenv("UFAULT_LOCK_MODE", "bogus", 1), 0);
	rc_bogus = tu_ctx_create_cfg(&ctx, &cfg);
	if (!rc_bogus)
		ufault_ctx_destroy(ctx);
	/* A valid one is used. */
	assert_int_equal(setenv("UFAULT_LOCK_MODE", "range", 1), 0);
	rc_range = tu_ctx_create_cfg(&ctx, &cfg);
	if (!rc_range) {
		range_mode = ufault_ctx_lock_mode(ctx);
		ufault_ctx_destroy(ctx);
	}
	restore_env("UFAULT_LOCK_MODE", old);

	if (rc_empty || empty_mode != UFAULT_LOCK_SPEC)
		fail_msg("UFAULT_LOCK_MODE=\"\": ufault_ctx_create returned %d (%s), mode %s; "
			 "expected 0 and spec",
			 rc_empty, ufault_strerror(rc_empty), ufault_lock_mode_name(empty_mode));
	assert_int_equal(rc_bogus, -EINVAL);
	assert_int_equal(rc_range, 0);
	assert_int_equal(range_mode, UFAULT_LOCK_RANGE);
}

/* ------------------------------------------------------------------ */
/* Proxies                                                              */
/* ------------------------------------------------------------------ */

static void test_mmap_null_fixed(void **state)
{
	struct ufault_ctx *ctx = new_ctx(1, 0);
	struct ufault_source s = tu_pattern_source(0, 93);
	void *m;

	(void)state;
	errno = 0;
	m = ufault_mmap(ctx, NULL, 4 * ps, RW, PA | MAP_FIXED, &s, 0);
	if (m != MAP_FAILED) {
		ufault_munmap(ctx, m, 4 * ps);
		ufault_ctx_destroy(ctx);
		fail_msg("[%s] ufault_mmap(NULL, MAP_FIXED) mapped at %p, expected EINVAL",
			 ufault_lock_mode_name(tu_mode), m);
	}
	assert_int_equal(errno, EINVAL);
	errno = 0;
	m = ufault_mmap(ctx, NULL, 4 * ps, RW, PA | MAP_FIXED, NULL, 0);
	assert_ptr_equal(m, MAP_FAILED);
	assert_int_equal(errno, EINVAL);
	ufault_ctx_destroy(ctx);
}

static void test_two_contexts(void **state)
{
	struct ufault_ctx *a = new_ctx(1, 0), *b = new_ctx(1, 0);
	struct ufault_source sa = tu_pattern_source(0, 94), sb = tu_pattern_source(0, 95);
	const size_t len = 8 * ps;
	char *p = tu_map_anon(len, 0);
	void *m;
	int rc;

	(void)state;
	assert_int_equal(ufault_region_register(a, p, len, &sa, 0, NULL), 0);
	check_pages(p, 0, 1, 94);

	/* B may not unmap A's region, nor part of it. */
	errno = 0;
	rc = ufault_munmap(b, p, len);
	if (rc != -1 || errno != EBUSY)
		fail_msg("[%s] context B's ufault_munmap over A's region returned %d, errno %d "
			 "(%s); expected EBUSY",
			 ufault_lock_mode_name(tu_mode), rc, errno, strerror(errno));
	errno = 0;
	rc = ufault_munmap(b, p + 2 * ps, ps);
	assert_int_equal(rc, -1);
	assert_int_equal(errno, EBUSY);

	/* Nor map over it. */
	errno = 0;
	m = ufault_mmap(b, p, len, RW, PA | MAP_FIXED, &sb, 0);
	if (m != MAP_FAILED || errno != EBUSY)
		fail_msg("[%s] context B's MAP_FIXED over A's region returned %p, errno %d "
			 "(%s); expected EBUSY",
			 ufault_lock_mode_name(tu_mode), m, errno, strerror(errno));
	errno = 0;
	m = ufault_mmap(b, p + 4 * ps, 2 * ps, RW, PA | MAP_FIXED, NULL, 0);
	assert_ptr_equal(m, MAP_FAILED);
	assert_int_equal(errno, EBUSY);

	/* A's region is intact and still A's. */
	check_pages(p, 1, 8, 94);
	assert_int_equal(ufault_munmap(a, p, len), 0);
	ufault_ctx_destroy(b);
	ufault_ctx_destroy(a);
}

/* ------------------------------------------------------------------ */
/* A failed read(2) of the uffd                                         */
/* ------------------------------------------------------------------ */

struct quiet_log {
	unsigned int errors; /* atomic: error lines (the injected read errors) */
};

static void quiet(void *arg, enum ufault_log_level level, const char *msg)
{
	struct quiet_log *q = arg;

	(void)msg;
	if (level == UFAULT_LOG_ERROR)
		__atomic_fetch_add(&q->errors, 1, __ATOMIC_RELAXED);
}

static void test_worker_read_error(void **state)
{
	enum { NR_REGIONS = 4, PAGES = 8 };
	struct quiet_log q = {0};
	struct ufault_config cfg;
	struct ufault_ctx *ctx = NULL;
	char *p[NR_REGIONS];

	(void)state;
	/* Two workers, each reading its own uffd; regions go to both. */
	ufault_config_init(&cfg);
	cfg.lock_mode = tu_mode;
	cfg.nr_workers = 2;
	cfg.nr_uffds = 2;
	cfg.log_fn = quiet;
	cfg.log_arg = &q;
	assert_int_equal(tu_ctx_create_cfg(&ctx, &cfg), 0);
	for (int r = 0; r < NR_REGIONS; r++) {
		struct ufault_source s = tu_pattern_source(0, 96 + (uint64_t)r);

		p[r] = ufault_mmap(ctx, NULL, PAGES * ps, RW, PA, &s, 0);
		assert_ptr_not_equal(p[r], MAP_FAILED);
	}
	/* Twice: a worker that survived one error must survive the next. */
	for (int round = 0; round < 2; round++) {
		ufault__workers_inject_error(ctx, -EIO);
		/* Every fault after the error is served (a worker that gave
		 * up would leave these reads parked: the watchdog fires). */
		for (size_t pg = (size_t)round * PAGES / 2; pg < (size_t)(round + 1) * PAGES / 2;
		     pg++)
			for (int r = 0; r < NR_REGIONS; r++)
				if (tu_pattern_check(p[r] + pg * ps, ps, pg * ps,
						     96 + (uint64_t)r) != -1)
					fail_msg("[%s] round %d: region %d page %zu has wrong "
						 "bytes",
						 ufault_lock_mode_name(tu_mode), round, r, pg);
		/* The injected error did happen (and was reported). */
		assert_true(__atomic_load_n(&q.errors, __ATOMIC_RELAXED) >=
			    (unsigned int)round + 1);
	}
	for (int r = 0; r < NR_REGIONS; r++)
		assert_int_equal(ufault_munmap(ctx, p[r], PAGES * ps), 0);
	ufault_ctx_destroy(ctx);
}

static void test_kernel_access(void **state)
{
	struct ufault_source src = tu_pattern_source(0, 77);
	unsigned char *p = tu_map_anon(4 * ps, 0), *buf = malloc(ps);
	struct ufault_ctx *ctx;
	int pfd[2];

	(void)state;
	assert_non_null(buf);
	assert_int_equal(tu_ctx_create(&ctx, tu_mode, 2, 1), 0);
	assert_int_equal(ufault_region_register(ctx, p, 4 * ps, &src, 0, NULL), 0);
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	/* The kernel reads page 1 for write(2): filled from the source. */
	assert_int_equal(write(pfd[1], p + ps, ps), (ssize_t)ps);
	assert_int_equal(read(pfd[0], buf, ps), (ssize_t)ps);
	assert_int_equal(tu_pattern_check(buf, ps, ps, 77), -1);
	/* The kernel writes page 2 for read(2): filled first, then
	 * overwritten with the pipe's bytes. */
	memset(buf, 0x5a, ps);
	assert_int_equal(write(pfd[1], buf, ps / 2), (ssize_t)(ps / 2));
	assert_int_equal(read(pfd[0], p + 2 * ps, ps / 2), (ssize_t)(ps / 2));
	assert_int_equal(memcmp(p + 2 * ps, buf, ps / 2), 0);
	assert_int_equal(tu_pattern_check(p + 2 * ps + ps / 2, ps / 2, 2 * ps + ps / 2, 77), -1);
	close(pfd[0]);
	close(pfd[1]);
	ufault_ctx_destroy(ctx);
	tu_unmap(p, 4 * ps);
	free(buf);
}

static volatile sig_atomic_t usr1_handled;

static void on_usr1(int sig)
{
	(void)sig;
	usr1_handled = 1;
}

static void test_thread_signals(void **state)
{
	struct sigaction sa = {.sa_handler = on_usr1}, old_sa;
	struct timespec wait = {.tv_sec = 5};
	struct ufault_ctx *ctx;
	sigset_t usr1, old;

	(void)state;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	assert_int_equal(sigaction(SIGUSR1, &sa, &old_sa), 0);
	assert_int_equal(pthread_sigmask(SIG_UNBLOCK, &usr1, &old), 0);
	assert_int_equal(tu_ctx_create(&ctx, tu_mode, 4, 1), 0);
	assert_int_equal(pthread_sigmask(SIG_BLOCK, &usr1, NULL), 0);
	usr1_handled = 0;
	for (int i = 0; i < 20; i++) {
		assert_int_equal(kill(getpid(), SIGUSR1), 0);
		assert_int_equal(sigtimedwait(&usr1, NULL, &wait), SIGUSR1);
	}
	assert_int_equal(usr1_handled, 0);
	ufault_ctx_destroy(ctx);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	sigaction(SIGUSR1, &old_sa, NULL);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest once[] = {
	    tu_watchdog_test(test_config_size),
	    tu_watchdog_test(test_env_log_bogus),
	    tu_watchdog_test(test_env_lock_mode),
	    tu_watchdog_test(test_thread_signals),
	};
	const struct CMUnitTest per_mode[] = {
	    tu_watchdog_test(test_source_size),	      tu_watchdog_test(test_stats_size),
	    tu_watchdog_test(test_mmap_null_fixed),   tu_watchdog_test(test_two_contexts),
	    tu_watchdog_test(test_worker_read_error), tu_watchdog_test(test_kernel_access),
	};
	int failed = 0;

	/* An optional argument runs only the tests whose name matches it. */
	tu_modes_begin(argc, argv);
	ps = tu_page_size();
	tu_mode = UFAULT_LOCK_SPEC;
	failed += cmocka_run_group_tests_name("small_findings", once, NULL, NULL);
	failed += tu_run_modes("small_findings", per_mode, sizeof(per_mode) / sizeof(per_mode[0]));
	return failed ? 1 : 0;
}
