/* SPDX-License-Identifier: MIT */
/*
 * test_fork_child.c - a child's copy of a context never drives the parent's.
 *
 * A forked child shares the parent's userfaultfds and eventfds (the same
 * open files), and a uffd ioctl acts on the mm of the process that created
 * the uffd, not the caller's. So a child that used its copy of a context
 * as if it were its own would unregister the parent's regions (the parent
 * then reads zeros for pages never filled) and stop the parent's workers
 * (the parent's next fault parks forever). The contract (ufault.h,
 * "Threads, callbacks and fork"):
 *
 *  - ufault_ctx_destroy() in the child, as an atexit handler or a static
 *    destructor would call it, frees only the child's copy: the parent's
 *    regions stay registered and its workers keep serving faults.
 *  - every other call on the context in the child fails with -ECHILD (the
 *    proxies: errno ECHILD) and changes nothing in the parent; the getters
 *    still answer.
 *
 * The child reports through its exit status (0: every check held; a bit
 * per failed check; 1: the child's watchdog fired, i.e. it hung). Every
 * test runs in every lock mode.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "../modes.h"

#define RW (PROT_READ | PROT_WRITE)
#define PA (MAP_PRIVATE | MAP_ANONYMOUS)
#define NPAGES 8

static size_t ps;

/* Page @pg of @base reads the pattern at source offset @pg * ps. */
static void check_page(const char *base, size_t pg, uint64_t seed, const char *what)
{
	const char *p = base + pg * ps;
	long bad = tu_pattern_check(p, ps, pg * ps, seed);

	if (bad >= 0)
		fail_msg("[%s] %s: page %zu byte %ld is 0x%02x, expected 0x%02x%s",
			 ufault_lock_mode_name(tu_mode), what, pg, bad, (unsigned char)p[bad],
			 tu_pattern(pg * ps + (uint64_t)bad, seed),
			 tu_zero_check(p, ps) == -1 ? " (the page reads zeros: the region was "
						      "unregistered behind the parent's back)"
						    : "");
}

/* fork() with stdio flushed, so buffered output is not written twice. */
static pid_t fork_flushed(void)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	return pid;
}

/* The child's exit status; 1 means its watchdog fired (it hung), 256 + n
 * that signal n killed it. */
static int wait_child(pid_t pid)
{
	int status;

	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFSIGNALED(status))
		return 256 + WTERMSIG(status);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static void check_child_destroy(int child)
{
	if (child == 1)
		fail_msg("[%s] the child's ufault_ctx_destroy() hung",
			 ufault_lock_mode_name(tu_mode));
	if (child > 256)
		fail_msg("[%s] the child's ufault_ctx_destroy() died of signal %d",
			 ufault_lock_mode_name(tu_mode), child - 256);
	if (child)
		fail_msg("[%s] the child exited %d", ufault_lock_mode_name(tu_mode), child);
}

/* ------------------------------------------------------------------ */
/* ufault_ctx_destroy() in the child, from an atexit handler            */
/* ------------------------------------------------------------------ */

static struct ufault_ctx *child_ctx;

static void child_atexit_destroy(void)
{
	ufault_ctx_destroy(child_ctx);
	/* Skip the rest of exit(): the parent's stdio buffers, sanitizer
	 * leak checks of memory only the parent's threads reach. */
	_exit(0);
}

/* Fork a child that exits through an atexit handler destroying @ctx. */
static int child_destroys(struct ufault_ctx *ctx)
{
	pid_t pid = fork_flushed();

	if (pid == 0) {
		tu_watchdog(10); /* a hang in destroy exits 1 */
		child_ctx = ctx;
		atexit(child_atexit_destroy);
		exit(0);
	}
	return wait_child(pid);
}

static void test_child_destroy_keeps_parent_regions(void **state)
{
	struct tu_fx *f = *state;
	const uint64_t seed = 31;
	struct ufault_source s = tu_pattern_source(0, seed);
	struct ufault_region *h = NULL;
	char *p = tu_map_anon(NPAGES * ps, 0);
	int child;

	assert_int_equal(ufault_region_register(f->ctx, p, NPAGES * ps, &s, 0, &h), 0);
	check_page(p, 0, seed, "before fork");

	child = child_destroys(f->ctx);

	/* Pages never filled still come from the source, not the kernel. */
	for (size_t pg = 1; pg < NPAGES; pg++)
		check_page(p, pg, seed, "after the child destroyed its copy");
	check_child_destroy(child);
	/* The handle is still live in the parent. */
	assert_int_equal(ufault_region_unregister(f->ctx, h), 0);
	tu_unmap(p, NPAGES * ps);
}

static void test_child_destroy_keeps_parent_workers(void **state)
{
	struct tu_fx *f = *state;
	const uint64_t seed = 32;
	struct ufault_source s = tu_pattern_source(0, seed);
	char *p;
	int child;

	child = child_destroys(f->ctx);

	/* A region registered after the child is gone: its faults need the
	 * parent's workers (stopped ones would leave this read parked; the
	 * watchdog fails the test then). */
	p = tu_map_anon(NPAGES * ps, 0);
	assert_int_equal(ufault_region_register(f->ctx, p, NPAGES * ps, &s, 0, NULL), 0);
	for (size_t pg = 0; pg < NPAGES; pg++)
		check_page(p, pg, seed, "fault after the child destroyed its copy");
	check_child_destroy(child);
	assert_int_equal(ufault_munmap(f->ctx, p, NPAGES * ps), 0);
}

/* ------------------------------------------------------------------ */
/* Every other call fails with ECHILD in the child                      */
/* ------------------------------------------------------------------ */

enum child_check {
	CC_MMAP = 1,   /* bit 0 is the watchdog's exit status 1 */
	CC_MUNMAP,     /* 2 */
	CC_REGISTER,   /* 3 */
	CC_UNREGISTER, /* 4 */
	CC_STATS,      /* 5 */
	CC_OTHER_PROXIES,
	CC_GETTERS,
	CC_NR,
};

static const char *const check_names[CC_NR] = {
    [CC_MMAP] = "ufault_mmap",
    [CC_MUNMAP] = "ufault_munmap",
    [CC_REGISTER] = "ufault_region_register",
    [CC_UNREGISTER] = "ufault_region_unregister",
    [CC_STATS] = "ufault_stats / ufault_stats_histogram",
    [CC_OTHER_PROXIES] = "ufault_mremap / ufault_mprotect / ufault_madvise",
    [CC_GETTERS] = "the getters",
};

/* Runs in the child; returns the exit status (a bit per failed check). */
static int child_calls(struct ufault_ctx *ctx, char *region, struct ufault_region *h, char *plain)
{
	struct ufault_source s = tu_pattern_source(0, 34);
	struct ufault_stats st;
	int bad = 0, rc;
	void *m;

	errno = 0;
	m = ufault_mmap(ctx, NULL, 4 * ps, RW, PA, &s, 0);
	if (m != MAP_FAILED || errno != ECHILD)
		bad |= 1 << CC_MMAP;
	errno = 0;
	m = ufault_mmap(ctx, plain, 4 * ps, RW, PA | MAP_FIXED, &s, 0);
	if (m != MAP_FAILED || errno != ECHILD)
		bad |= 1 << CC_MMAP;

	errno = 0;
	rc = ufault_munmap(ctx, region + ps, ps);
	if (rc != -1 || errno != ECHILD)
		bad |= 1 << CC_MUNMAP;

	if (ufault_region_register(ctx, plain, 4 * ps, &s, 0, NULL) != -ECHILD)
		bad |= 1 << CC_REGISTER;
	if (ufault_region_unregister(ctx, h) != -ECHILD)
		bad |= 1 << CC_UNREGISTER;

	memset(&st, 0, sizeof(st));
	st.size = sizeof(st);
	if (ufault_stats(ctx, &st) != -ECHILD || ufault_stats_histogram(ctx, NULL, 0) != -ECHILD)
		bad |= 1 << CC_STATS;

	errno = 0;
	m = ufault_mremap(ctx, region, 2 * ps, ps, 0, NULL);
	if (m != MAP_FAILED || errno != ECHILD)
		bad |= 1 << CC_OTHER_PROXIES;
	errno = 0;
	if (ufault_mprotect(ctx, plain, ps, PROT_READ) != -1 || errno != ECHILD)
		bad |= 1 << CC_OTHER_PROXIES;
	errno = 0;
	if (ufault_madvise(ctx, plain, ps, MADV_DONTNEED) != -1 || errno != ECHILD)
		bad |= 1 << CC_OTHER_PROXIES;

	if (ufault_ctx_lock_mode(ctx) != tu_mode || ufault_ctx_nr_workers(ctx) != 2)
		bad |= 1 << CC_GETTERS;
	return bad;
}

static void test_child_calls_fail_echild(void **state)
{
	struct tu_fx *f = *state;
	const uint64_t seed = 33;
	struct ufault_source s = tu_pattern_source(0, seed);
	struct ufault_region *h = NULL;
	char *p = tu_map_anon(NPAGES * ps, 0);
	char *plain = tu_map_anon(4 * ps, 0);
	int child;
	pid_t pid;

	assert_int_equal(ufault_region_register(f->ctx, p, NPAGES * ps, &s, 0, &h), 0);
	check_page(p, 0, seed, "before fork");
	memset(plain, 0x3c, 4 * ps);

	pid = fork_flushed();
	if (pid == 0) {
		tu_watchdog(10);
		_exit(child_calls(f->ctx, p, h, plain));
	}
	child = wait_child(pid);
	if (child) {
		char msg[512];
		size_t n = 0;

		n += (size_t)snprintf(msg + n, sizeof(msg) - n, "[%s] in the child, ",
				      ufault_lock_mode_name(tu_mode));
		if (child == 1)
			n += (size_t)snprintf(msg + n, sizeof(msg) - n, "a call hung");
		if (child > 256)
			n += (size_t)snprintf(msg + n, sizeof(msg) - n, "a call died of signal %d",
					      child - 256);
		for (int c = CC_MMAP; c < CC_NR && child != 1 && child < 256; c++)
			if (child & (1 << c))
				n += (size_t)snprintf(msg + n, sizeof(msg) - n, "%s; ",
						      check_names[c]);
		if (child != 1 && child < 256)
			snprintf(msg + n, sizeof(msg) - n, "did not fail with ECHILD");
		fail_msg("%s", msg);
	}

	/* Nothing changed in the parent: the region still serves its missing
	 * pages, its handle is live, the plain memory is untouched and not
	 * registered (a read that parked there would trip the watchdog). */
	for (size_t pg = 1; pg < NPAGES; pg++)
		check_page(p, pg, seed, "after the child's calls");
	for (size_t i = 0; i < 4 * ps; i++)
		assert_int_equal((unsigned char)plain[i], 0x3c);
	assert_int_equal(ufault_region_unregister(f->ctx, h), 0);
	tu_unmap(p, NPAGES * ps);
	tu_unmap(plain, 4 * ps);
}

/*
 * A child that drops its copy of the parent's context and then makes its
 * own: the new context works (regions served, munmap not refused as
 * another context's), and never looks at the parent's copy, which the
 * child freed.
 */
static int child_own_context(struct ufault_ctx *parent, char *parent_mem)
{
	struct ufault_source s = tu_pattern_source(0, 71);
	struct ufault_ctx *own;
	char *m;

	ufault_ctx_destroy(parent);
	if (tu_ctx_create(&own, tu_mode, 1, 1))
		return 2;
	m = ufault_mmap(own, NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, &s,
			0);
	if (m == MAP_FAILED)
		return 3;
	if (tu_pattern_check(m + ps, ps, ps, 71) != -1)
		return 4;
	/*
	 * The parent's region is not there in the child (MADV_DONTFORK), and
	 * its range is the child's business alone: unmapping it through the
	 * child's context is not refused as another context's. (Claimed with
	 * MAP_FIXED_NOREPLACE: the child's own allocations may have landed
	 * there, and then there is nothing to check.)
	 */
	if (mmap(parent_mem, ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1,
		 0) == parent_mem &&
	    ufault_munmap(own, parent_mem, ps))
		return 5;
	if (ufault_munmap(own, m, 4 * ps))
		return 6;
	ufault_ctx_destroy(own);
	return 0;
}

static void test_child_own_context(void **state)
{
	struct tu_fx *f = *state;
	struct ufault_source s = tu_pattern_source(0, 72);
	char *p;
	pid_t pid;
	int child;

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
	/* The sanitizer runtimes do not support starting threads in a child
	 * of a multithreaded process (TSan refuses, LSan's exit check stops
	 * threads that are not there): the plain build runs this one. */
	skip();
#endif
	p = tu_map_anon(NPAGES * ps, 0);
	assert_int_equal(ufault_region_register(f->ctx, p, NPAGES * ps, &s, 0, NULL), 0);
	pid = fork_flushed();
	if (pid == 0) {
		tu_watchdog(10);
		_exit(child_own_context(f->ctx, p));
	}
	child = wait_child(pid);
	if (child)
		fail_msg("[%s] the child's own context failed: %d (1: hung, >256: signal)",
			 ufault_lock_mode_name(tu_mode), child);
	/* And the parent's region is still served. */
	for (size_t pg = 0; pg < NPAGES; pg++)
		check_page(p, pg, 72, "after the child's own context");
	assert_int_equal(ufault_munmap(f->ctx, p, NPAGES * ps), 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    tu_fx_test(test_child_destroy_keeps_parent_regions),
	    tu_fx_test(test_child_destroy_keeps_parent_workers),
	    tu_fx_test(test_child_calls_fail_echild),
	    tu_fx_test(test_child_own_context),
	};
	int failed;

	ps = tu_page_size();
	/* An optional argument runs only the tests whose name matches it. */
	failed =
	    tu_run_every_mode("fork_child", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
	return failed ? 1 : 0;
}
