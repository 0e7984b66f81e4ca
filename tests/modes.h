/* SPDX-License-Identifier: MIT */
/*
 * modes.h - the CMocka side of the test programs that run every test once
 * per lock mode: the mode of the group running now, a fixture that gives
 * each test a fresh context in that mode, and the main() loop that runs a
 * table of tests as one CMocka group per mode. Header-only (everything is
 * static or static inline). It needs CMocka: include <setjmp.h>,
 * <stdarg.h>, <stddef.h> and <cmocka.h> first, then "../modes.h" (it
 * includes "testutil.h" itself).
 *
 * What is here, and the contract each helper keeps (keep it stable: other
 * test files depend on these names):
 *
 *  Settings (per program: each test_*.c has its own copy; set them in
 *  main() before the first group runs)
 *    tu_modes_cfg.nr_workers     workers of the fixture's context
 *                                (default 2; 0 = library default).
 *    tu_modes_cfg.test_watchdog  seconds each fixture setup arms
 *                                tu_watchdog() for; its teardown disarms
 *                                it (default 30). 0: the fixtures leave the
 *                                alarm alone (a program-wide watchdog the
 *                                program armed itself stays armed).
 *    tu_modes_cfg.group_watchdog seconds tu_run_modes() arms tu_watchdog()
 *                                for before each mode's group; it disarms it
 *                                after the last group (default 0: it does
 *                                not touch the alarm).
 *
 *  The current mode
 *    tu_mode             the lock mode of the group running now; set by
 *                        tu_run_modes() before each group. A program that
 *                        runs a group of its own outside tu_run_modes()
 *                        sets it for that group.
 *
 *  Fixtures (CMocka setup / teardown functions)
 *    struct tu_fx        { struct ufault_ctx *ctx; }
 *    tu_fx_setup(state)  *state = the program's one struct tu_fx, its ctx
 *                        a fresh context made by tu_fx_ctx_open(); returns
 *                        -1 (CMocka: setup failed) if that fails.
 *    tu_fx_teardown(state)  tu_fx_ctx_close() on it; returns 0.
 *    tu_fx_ctx_open(&ctx)   the setup half, for a program with a fixture
 *                        struct of its own: tu_ctx_create(&ctx, tu_mode,
 *                        tu_modes_cfg.nr_workers, 0) (so it exits 77 when
 *                        userfaultfd is unavailable); any other failure
 *                        prints "ufault_ctx_create(<mode>): <error>" on
 *                        stderr and returns -1. On success it arms the
 *                        test watchdog and returns 0.
 *    tu_fx_ctx_close(&ctx)  ufault_ctx_destroy(ctx), ctx = NULL, then
 *                        disarms the test watchdog.
 *    tu_watchdog_setup(state), tu_watchdog_teardown(state)
 *                        only arm / disarm the test watchdog, for tests
 *                        that make their own contexts; state untouched.
 *    tu_fx_test(fn), tu_watchdog_test(fn)  a struct CMUnitTest entry for
 *                        test function @fn (named after it) with the
 *                        tu_fx_* or the tu_watchdog_* setup and teardown.
 *
 *  Running (main)
 *    tu_modes_begin(argc, argv)  argv[1], if given, becomes the CMocka test
 *                        filter (only the tests whose name matches it run);
 *                        stdout is made line-buffered. Call once, before
 *                        any output.
 *    tu_run_modes(prog, tests, n)  runs tests[0..n) once per lock mode
 *                        (tu_lock_mode(0..TU_NR_LOCK_MODES-1)), each run a
 *                        CMocka group named "<prog>/<mode name>" with
 *                        tu_mode set to that mode, no group fixtures;
 *                        returns the number of failed tests, all groups
 *                        together.
 *    tu_run_every_mode(prog, tests, n, argc, argv)  tu_modes_begin() then
 *                        tu_run_modes(); main() returns its result ? 1 : 0.
 *
 *  Statistics
 *    tu_proxy_ops(ctx)   ufault_stats(ctx).proxy_ops; asserts that
 *                        ufault_stats() succeeds.
 */
#ifndef UFAULT_TEST_MODES_H
#define UFAULT_TEST_MODES_H

#include <stdio.h>
#include <string.h>

#include "testutil.h"

/* ------------------------------------------------------------------ */
/* Settings and the current mode                                        */
/* ------------------------------------------------------------------ */

struct tu_modes_cfg {
	unsigned int nr_workers;     /* the fixture context's workers */
	unsigned int test_watchdog;  /* seconds, per test; 0: not armed */
	unsigned int group_watchdog; /* seconds, per mode group; 0: not armed */
};

static struct tu_modes_cfg tu_modes_cfg __attribute__((unused)) = {
    .nr_workers = 2,
    .test_watchdog = 30,
    .group_watchdog = 0,
};

static enum ufault_lock_mode tu_mode __attribute__((unused));

/* ------------------------------------------------------------------ */
/* Fixtures                                                             */
/* ------------------------------------------------------------------ */

struct tu_fx {
	struct ufault_ctx *ctx;
};

static inline int tu_fx_ctx_open(struct ufault_ctx **ctx)
{
	int rc = tu_ctx_create(ctx, tu_mode, tu_modes_cfg.nr_workers, 0);

	if (rc) {
		fprintf(stderr, "ufault_ctx_create(%s): %s\n", ufault_lock_mode_name(tu_mode),
			ufault_strerror(rc));
		return -1;
	}
	if (tu_modes_cfg.test_watchdog)
		tu_watchdog(tu_modes_cfg.test_watchdog);
	return 0;
}

static inline void tu_fx_ctx_close(struct ufault_ctx **ctx)
{
	ufault_ctx_destroy(*ctx);
	*ctx = NULL;
	if (tu_modes_cfg.test_watchdog)
		tu_watchdog(0);
}

static inline int tu_fx_setup(void **state)
{
	static struct tu_fx f;

	if (tu_fx_ctx_open(&f.ctx))
		return -1;
	*state = &f;
	return 0;
}

static inline int tu_fx_teardown(void **state)
{
	struct tu_fx *f = *state;

	tu_fx_ctx_close(&f->ctx);
	return 0;
}

static inline int tu_watchdog_setup(void **state)
{
	(void)state;
	if (tu_modes_cfg.test_watchdog)
		tu_watchdog(tu_modes_cfg.test_watchdog);
	return 0;
}

static inline int tu_watchdog_teardown(void **state)
{
	(void)state;
	if (tu_modes_cfg.test_watchdog)
		tu_watchdog(0);
	return 0;
}

#define tu_fx_test(fn) cmocka_unit_test_setup_teardown(fn, tu_fx_setup, tu_fx_teardown)
#define tu_watchdog_test(fn)                                                                       \
	cmocka_unit_test_setup_teardown(fn, tu_watchdog_setup, tu_watchdog_teardown)

/* ------------------------------------------------------------------ */
/* Running                                                              */
/* ------------------------------------------------------------------ */

static inline void tu_modes_begin(int argc, char **argv)
{
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	setvbuf(stdout, NULL, _IOLBF, 0);
}

static inline int tu_run_modes(const char *prog, const struct CMUnitTest *tests, size_t n)
{
	int failed = 0;

	for (unsigned int i = 0; i < TU_NR_LOCK_MODES; i++) {
		char name[64];

		tu_mode = tu_lock_mode(i);
		snprintf(name, sizeof(name), "%s/%s", prog, ufault_lock_mode_name(tu_mode));
		if (tu_modes_cfg.group_watchdog)
			tu_watchdog(tu_modes_cfg.group_watchdog);
		failed += _cmocka_run_group_tests(name, tests, n, NULL, NULL);
	}
	if (tu_modes_cfg.group_watchdog)
		tu_watchdog(0);
	return failed;
}

static inline int tu_run_every_mode(const char *prog, const struct CMUnitTest *tests, size_t n,
				    int argc, char **argv)
{
	tu_modes_begin(argc, argv);
	return tu_run_modes(prog, tests, n);
}

/* ------------------------------------------------------------------ */
/* Statistics                                                           */
/* ------------------------------------------------------------------ */

static inline uint64_t tu_proxy_ops(struct ufault_ctx *ctx)
{
	struct ufault_stats st;

	memset(&st, 0, sizeof(st));
	st.size = sizeof(st);
	assert_int_equal(ufault_stats(ctx, &st), 0);
	return st.proxy_ops;
}

#endif /* UFAULT_TEST_MODES_H */
