/* SPDX-License-Identifier: MIT */
/*
 * test_source_errors.c - a source that fails never hangs the faulting
 * thread; the region's error policy decides what it sees.
 *
 *  SIGBUS policy (default, needs UFFDIO_POISON): run in forked children, each
 *  creating its own context after fork. (a) With a handler, the thread that
 *  touched the page gets SIGBUS with si_addr inside the touched system page,
 *  again on a second touch of the same region page, pages whose fill works
 *  are unaffected, and the stats count source_errors and poisoned pages.
 *  (b) With the default action the child dies of SIGBUS.
 *  If the kernel lacks UFFD_FEATURE_POISON, registering with the SIGBUS
 *  policy must fail with -EOPNOTSUPP and the SIGBUS cases are skipped
 *  (exit 77 if nothing failed).
 *
 *  ZERO policy: in process; failing pages read as zeros (the whole region
 *  page), others carry the source bytes, stats count zero_filled.
 *
 * Every child arms its own watchdog: a hang fails the test.
 */
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "../testutil.h"

#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif

#define SEED 0xe770
#define NR_RPAGES 8

static int sigbus_skipped;

/*
 * Callback that fails with -EIO (or the errno in .err) for region pages
 * whose index is in .bad_mask, and fills the pattern otherwise.
 */
struct failing {
	uint64_t base_off; /* source offset of the region start */
	size_t rpage;	   /* region page size */
	unsigned int bad_mask;
	int err;
	unsigned int calls;
};

static int failing_fill(void *arg, uint64_t offset, void *buf, size_t len)
{
	struct failing *f = arg;
	uint64_t idx = (offset - f->base_off) / f->rpage;

	__atomic_fetch_add(&f->calls, 1, __ATOMIC_RELAXED);
	if (idx < 32 && (f->bad_mask & (1u << idx)))
		return f->err;
	tu_pattern_fill(buf, len, offset, SEED);
	return 0;
}

static struct ufault_source failing_source(struct failing *f)
{
	struct ufault_source s;

	ufault_source_init(&s, UFAULT_SOURCE_CALLBACK);
	s.offset = f->base_off;
	s.callback.fill = failing_fill;
	s.callback.arg = f;
	return s;
}

/* ------------------------------------------------------------------ */
/* Child side (no CMocka: report with exit codes)                      */
/* ------------------------------------------------------------------ */

static __thread sigjmp_buf bus_jmp;
static __thread volatile int bus_armed;
static volatile sig_atomic_t bus_count;
static void *volatile bus_addr;
static volatile pid_t bus_tid;

static void bus_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	bus_addr = si->si_addr;
	bus_tid = (pid_t)syscall(SYS_gettid);
	bus_count++;
	if (bus_armed)
		siglongjmp(bus_jmp, 1);
	_exit(40); /* SIGBUS outside a guarded touch */
}

/* Touch @p in the calling thread: 1 if it got SIGBUS, 0 if it read fine. */
static int touch_guarded(const char *p)
{
	if (sigsetjmp(bus_jmp, 1)) {
		bus_armed = 0;
		return 1;
	}
	bus_armed = 1;
	(void)tu_read_byte(p);
	bus_armed = 0;
	return 0;
}

struct child_cfg {
	enum ufault_lock_mode mode;
	unsigned int shift;
};

static struct ufault_ctx *child_ctx(enum ufault_lock_mode mode)
{
	struct ufault_ctx *ctx = NULL;
	struct ufault_config cfg;
	int rc;

	ufault_config_init(&cfg);
	cfg.lock_mode = mode;
	cfg.nr_workers = 2;
	rc = ufault_ctx_create(&ctx, &cfg);
	if (tu_is_unavailable(rc))
		_exit(TU_SKIP);
	TU_CHILD_CHECK(rc == 0, 10);
	return ctx;
}

/* Register with the SIGBUS policy, or exit 77 if the kernel cannot. */
static struct ufault_region *child_register(struct ufault_ctx *ctx, char *a, size_t len,
					    struct failing *f, unsigned int shift)
{
	struct ufault_source s = failing_source(f);
	struct ufault_region *r = NULL;
	int rc = ufault_region_register(
	    ctx, a, len, &s, UFAULT_REGION_ON_ERROR_SIGBUS | UFAULT_REGION_PAGE_SHIFT(shift), &r);

	if (!(ufault_ctx_features(ctx) & UFFD_FEATURE_POISON)) {
		TU_CHILD_CHECK(rc == -EOPNOTSUPP, 11);
		_exit(TU_SKIP);
	}
	TU_CHILD_CHECK(rc == 0, 12);
	return r;
}

struct toucher {
	const char *addr;
	pid_t tid;
	int got_bus;
};

static void *toucher_thread(void *arg)
{
	struct toucher *t = arg;

	t->tid = (pid_t)syscall(SYS_gettid);
	t->got_bus = touch_guarded(t->addr);
	return NULL;
}

/* Touch from a fresh thread; checks SIGBUS went to that thread. */
static int touch_in_thread(const char *p)
{
	struct toucher t = {.addr = p};
	pthread_t th;

	TU_CHILD_CHECK(pthread_create(&th, NULL, toucher_thread, &t) == 0, 13);
	TU_CHILD_CHECK(pthread_join(th, NULL) == 0, 14);
	if (t.got_bus)
		TU_CHILD_CHECK(bus_tid == t.tid, 15);
	return t.got_bus;
}

static void child_sigbus_handler(const struct child_cfg *cc)
{
	size_t ps = tu_page_size();
	size_t rp = cc->shift ? (size_t)1 << cc->shift : ps;
	size_t len = NR_RPAGES * rp;
	struct failing f = {
	    .base_off = 7 * rp, .rpage = rp, .bad_mask = (1u << 2) | (1u << 5), .err = -EIO};
	struct ufault_ctx *ctx;
	struct ufault_stats st;
	struct sigaction sa;
	char *a, *p;
	uint64_t end;

	tu_watchdog(20);
	ctx = child_ctx(cc->mode);
	a = tu_map_anon(len, rp);
	child_register(ctx, a, len, &f, cc->shift);

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = bus_handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	TU_CHILD_CHECK(sigaction(SIGBUS, &sa, NULL) == 0, 16);

	/* Region page 2, last system page, odd byte: SIGBUS there. */
	p = a + 2 * rp + (rp - ps) + 123;
	TU_CHILD_CHECK(touch_in_thread(p) == 1, 20);
	TU_CHILD_CHECK((char *)bus_addr >= p - 123 && (char *)bus_addr < p - 123 + ps, 21);
	/* A good page next to it works. */
	TU_CHILD_CHECK(tu_pattern_check(a + 3 * rp, rp, f.base_off + 3 * rp, SEED) == -1, 22);
	TU_CHILD_CHECK(tu_pattern_check(a + 1 * rp, rp, f.base_off + 1 * rp, SEED) == -1, 23);
	/* Another system page of the same region page, then the same byte. */
	p = a + 2 * rp + 5;
	TU_CHILD_CHECK(touch_in_thread(p) == 1, 24);
	TU_CHILD_CHECK((char *)bus_addr >= p - 5 && (char *)bus_addr < p - 5 + ps, 25);
	TU_CHILD_CHECK(touch_guarded(a + 2 * rp + (rp - ps) + 123) == 1, 26);
	/* Region page 5, from the main thread this time. */
	p = a + 5 * rp;
	TU_CHILD_CHECK(touch_guarded(p) == 1, 27);
	TU_CHILD_CHECK((char *)bus_addr >= p && (char *)bus_addr < p + ps, 28);
	TU_CHILD_CHECK(bus_tid == (pid_t)syscall(SYS_gettid), 29);

	memset(&st, 0, sizeof(st));
	st.size = sizeof(st);
	end = tu_now_ns() + 5000000000ull * tu_slowdown();
	do {
		TU_CHILD_CHECK(ufault_stats(ctx, &st) == 0, 30);
		if (st.source_errors >= 2 && st.poisoned >= 2)
			break;
		usleep(1000);
	} while (tu_now_ns() < end);
	if (st.source_errors < 2 || st.poisoned < 2)
		fprintf(stderr, "stats: source_errors %llu poisoned %llu\n",
			(unsigned long long)st.source_errors, (unsigned long long)st.poisoned);
	TU_CHILD_CHECK(st.source_errors >= 2, 31);
	TU_CHILD_CHECK(st.poisoned >= 2, 32);
	TU_CHILD_CHECK(st.zero_filled == 0, 33);

	ufault_ctx_destroy(ctx);
	_exit(0);
}

static void child_sigbus_default(const struct child_cfg *cc)
{
	size_t ps = tu_page_size();
	size_t rp = cc->shift ? (size_t)1 << cc->shift : ps;
	size_t len = NR_RPAGES * rp;
	struct failing f = {.base_off = 0, .rpage = rp, .bad_mask = 1u << 4, .err = -EIO};
	struct rlimit nocore = {0, 0};
	struct ufault_ctx *ctx;
	struct sigaction sa;
	char *a;

	tu_watchdog(20);
	setrlimit(RLIMIT_CORE, &nocore);
	ctx = child_ctx(cc->mode);
	a = tu_map_anon(len, rp);
	child_register(ctx, a, len, &f, cc->shift);
	TU_CHILD_CHECK(tu_pattern_check(a, rp, 0, SEED) == -1, 50);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	TU_CHILD_CHECK(sigaction(SIGBUS, &sa, NULL) == 0, 51);
	(void)tu_read_byte(a + 4 * rp + 1);
	fprintf(stderr, "child survived a failed fill\n");
	_exit(52);
}

/* ------------------------------------------------------------------ */
/* Parent side                                                          */
/* ------------------------------------------------------------------ */

typedef void (*child_fn)(const struct child_cfg *cc);

/* Fork, run @fn in the child, return its wait status. */
static int run_child(child_fn fn, const struct child_cfg *cc)
{
	int status = 0;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fn(cc);
		_exit(99);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static void describe(const char *what, const struct child_cfg *cc, int status)
{
	if (WIFEXITED(status))
		fprintf(stderr, "%s mode %s shift %u: exit %d\n", what,
			ufault_lock_mode_name(cc->mode), cc->shift, WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		fprintf(stderr, "%s mode %s shift %u: signal %d\n", what,
			ufault_lock_mode_name(cc->mode), cc->shift, WTERMSIG(status));
}

static void test_sigbus_handler(void **state)
{
	(void)state;
	for (unsigned int m = 0; m < TU_NR_LOCK_MODES; m++)
		for (unsigned int s = 0; s < 2; s++) {
			struct child_cfg cc = {tu_lock_mode(m), s ? 16 : 0};
			int st = run_child(child_sigbus_handler, &cc);

			if (WIFEXITED(st) && WEXITSTATUS(st) == TU_SKIP) {
				sigbus_skipped = 1;
				skip();
			}
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
				describe("sigbus handler", &cc, st);
			assert_true(WIFEXITED(st));
			assert_int_equal(WEXITSTATUS(st), 0);
		}
}

static void test_sigbus_default_action(void **state)
{
	(void)state;
	for (unsigned int m = 0; m < TU_NR_LOCK_MODES; m++)
		for (unsigned int s = 0; s < 2; s++) {
			struct child_cfg cc = {tu_lock_mode(m), s ? 16 : 0};
			int st = run_child(child_sigbus_default, &cc);

			if (WIFEXITED(st) && WEXITSTATUS(st) == TU_SKIP) {
				sigbus_skipped = 1;
				skip();
			}
			if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGBUS)
				describe("sigbus default", &cc, st);
			assert_true(WIFSIGNALED(st));
			assert_int_equal(WTERMSIG(st), SIGBUS);
		}
}

/* ZERO policy, in process, all modes, both page sizes, several errnos. */
static void test_zero_policy(void **state)
{
	static const int errs[] = {-EIO, -ENOMEM, -EINVAL, -EFAULT};
	size_t ps = tu_page_size();

	(void)state;
	for (unsigned int m = 0; m < TU_NR_LOCK_MODES; m++)
		for (unsigned int s = 0; s < 2; s++) {
			size_t rp = s ? (size_t)1 << 16 : ps;
			size_t len = NR_RPAGES * rp;
			struct failing f = {.base_off = rp,
					    .rpage = rp,
					    .bad_mask = 0x5a,
					    .err = errs[(m + s) % 4]};
			struct ufault_source src = failing_source(&f);
			struct ufault_ctx *ctx = NULL;
			struct ufault_stats st;
			unsigned int nbad = 0;
			uint64_t end;
			char *a;

			assert_int_equal(tu_ctx_create(&ctx, tu_lock_mode(m), 2, 1), 0);
			a = tu_map_anon(len, rp);
			assert_int_equal(
			    ufault_region_register(ctx, a, len, &src,
						   UFAULT_REGION_ON_ERROR_ZERO |
						       UFAULT_REGION_PAGE_SHIFT(s ? 16 : 0),
						   NULL),
			    0);
			for (unsigned int i = 0; i < NR_RPAGES; i++) {
				char *p = a + i * rp;

				/* First touch mid region page. */
				(void)tu_read_byte(p + rp / 2 + 3);
				if (f.bad_mask & (1u << i)) {
					nbad++;
					assert_int_equal(tu_zero_check(p, rp), -1);
				} else {
					assert_int_equal(tu_pattern_check(p, rp, rp + i * rp, SEED),
							 -1);
				}
			}
			/* Zero-filled pages are ordinary, writable pages. */
			a[1 * rp + 9] = 1;
			assert_int_equal(tu_read_byte(a + 1 * rp + 9), 1);

			memset(&st, 0, sizeof(st));
			st.size = sizeof(st);
			end = tu_now_ns() + 5000000000ull * tu_slowdown();
			do {
				assert_int_equal(ufault_stats(ctx, &st), 0);
				if (st.source_errors >= nbad && st.zero_filled >= nbad)
					break;
				usleep(1000);
			} while (tu_now_ns() < end);
			assert_true(st.source_errors >= nbad);
			assert_true(st.zero_filled >= nbad);
			assert_int_equal(st.poisoned, 0);
			ufault_ctx_destroy(ctx);
			tu_unmap(a, len);
		}
}

/*
 * A fill that keeps returning an errno that sounds transient (-EAGAIN,
 * -EINTR) is still a failure: the policy applies, the thread is not left
 * parked. The touch runs in a thread joined with a deadline.
 */
struct touch_arg {
	const char *p;
	int zero;
};

static void *touch_zero_thread(void *arg)
{
	struct touch_arg *t = arg;

	t->zero = tu_zero_check(t->p, tu_page_size()) == -1;
	return NULL;
}

static void test_transient_errno(void **state)
{
	static const int errs[] = {-EAGAIN, -EINTR};
	size_t ps = tu_page_size(), len = 4 * ps;

	(void)state;
	for (unsigned int m = 0; m < TU_NR_LOCK_MODES; m++)
		for (unsigned int e = 0; e < 2; e++) {
			struct failing f = {
			    .base_off = 0, .rpage = ps, .bad_mask = 1u << 1, .err = errs[e]};
			struct ufault_source src = failing_source(&f);
			struct ufault_ctx *ctx = NULL;
			struct touch_arg ta;
			struct timespec dl;
			pthread_t t;
			char *a;
			int rc;

			assert_int_equal(tu_ctx_create(&ctx, tu_lock_mode(m), 1, 1), 0);
			a = tu_map_anon(len, 0);
			assert_int_equal(ufault_region_register(ctx, a, len, &src,
								UFAULT_REGION_ON_ERROR_ZERO, NULL),
					 0);
			ta.p = a + ps;
			ta.zero = 0;
			assert_int_equal(pthread_create(&t, NULL, touch_zero_thread, &ta), 0);
			clock_gettime(CLOCK_REALTIME, &dl);
			dl.tv_sec += 10 * tu_slowdown();
			rc = pthread_timedjoin_np(t, NULL, &dl);
			if (rc)
				fprintf(stderr,
					"mode %s: fill returning %d "
					"left the thread parked\n",
					ufault_lock_mode_name(tu_lock_mode(m)), errs[e]);
			assert_int_equal(rc, 0);
			assert_true(ta.zero);
			assert_int_equal(tu_pattern_check(a, ps, 0, SEED), -1);
			ufault_ctx_destroy(ctx);
			tu_unmap(a, len);
		}
}

/*
 * Without UFFD_FEATURE_POISON the SIGBUS policy is refused; with it,
 * registration succeeds. Either way the answer matches the features.
 */
static void test_poison_feature_gate(void **state)
{
	size_t ps = tu_page_size(), len = 4 * ps;
	struct failing f = {.base_off = 0, .rpage = ps, .bad_mask = 0, .err = -EIO};
	struct ufault_source src = failing_source(&f);
	struct ufault_ctx *ctx = NULL;
	char *a;
	int rc;

	(void)state;
	assert_int_equal(tu_ctx_create(&ctx, UFAULT_LOCK_SPEC, 1, 1), 0);
	a = tu_map_anon(len, 0);
	rc = ufault_region_register(ctx, a, len, &src, UFAULT_REGION_ON_ERROR_SIGBUS, NULL);
	if (ufault_ctx_features(ctx) & UFFD_FEATURE_POISON) {
		assert_int_equal(rc, 0);
		assert_int_equal(tu_pattern_check(a, len, 0, SEED), -1);
	} else {
		assert_int_equal(rc, -EOPNOTSUPP);
		assert_int_equal(tu_zero_check(a, len), -1);
		sigbus_skipped = 1;
	}
	ufault_ctx_destroy(ctx);
	tu_unmap(a, len);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_poison_feature_gate),	  cmocka_unit_test(test_zero_policy),
	    cmocka_unit_test(test_transient_errno),	  cmocka_unit_test(test_sigbus_handler),
	    cmocka_unit_test(test_sigbus_default_action),
	};
	int rc;

	unsetenv("UFAULT_LOCK_MODE");
	tu_watchdog(50);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	if (!rc && sigbus_skipped)
		tu_skip("kernel lacks UFFD_FEATURE_POISON: SIGBUS policy untested");
	return rc;
}
