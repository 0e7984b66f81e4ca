/* SPDX-License-Identifier: MIT */
/*
 * test_witness.c - the lock-order checker (lib/witness.h) itself. It is
 * compiled in here whatever the build (the library has it only in Debug
 * and ASan builds), and each violation is provoked in a child process,
 * which must die of SIGABRT; the allowed patterns must not.
 */
#define UFAULT_WITNESS 1
#include "../../lib/witness.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

/* Run @fn in a child; returns the signal that killed it, 0 if it exited 0. */
static int in_child(void (*fn)(void))
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		fail_msg("fork failed");
	if (pid == 0) {
		/* The violation message is expected: keep it out of the log. */
		if (!freopen("/dev/null", "w", stderr))
			_exit(3);
		fn();
		_exit(0);
	}
	if (waitpid(pid, &status, 0) != pid)
		fail_msg("waitpid failed");
	if (WIFSIGNALED(status))
		return WTERMSIG(status);
	return WEXITSTATUS(status) ? -1 : 0;
}

static void in_order(void)
{
	ufault__witness_acquire(UFAULT__RANK_MM, false);
	ufault__witness_acquire(UFAULT__RANK_TREE, false);
	ufault__witness_acquire(UFAULT__RANK_REGION, false);
	ufault__witness_acquire(UFAULT__RANK_SLAB, false);
	ufault__witness_release(UFAULT__RANK_SLAB);
	ufault__witness_release(UFAULT__RANK_REGION);
	ufault__witness_release(UFAULT__RANK_TREE);
	ufault__witness_assert_held(UFAULT__RANK_MM, "test");
	ufault__witness_release(UFAULT__RANK_MM);
	ufault__witness_assert_unlocked("test");
}

static void reversed(void)
{
	ufault__witness_acquire(UFAULT__RANK_REGION, false);
	ufault__witness_acquire(UFAULT__RANK_TREE, false);
}

static void same_rank_twice(void)
{
	ufault__witness_acquire(UFAULT__RANK_TREE, false);
	ufault__witness_acquire(UFAULT__RANK_TREE, false);
}

static void worker_trylocks_mm(void)
{
	ufault__witness_set_worker();
	ufault__witness_acquire(UFAULT__RANK_MM, true);
	ufault__witness_release(UFAULT__RANK_MM);
	ufault__witness_acquire(UFAULT__RANK_REGION, false); /* may wait: short */
	ufault__witness_release(UFAULT__RANK_REGION);
}

static void worker_waits_for_mm(void)
{
	ufault__witness_set_worker();
	ufault__witness_acquire(UFAULT__RANK_MM, false);
}

static void hook_under_lock(void)
{
	ufault__witness_acquire(UFAULT__RANK_QSBR, false);
	ufault__witness_assert_unlocked("calling a release hook");
}

static void release_unheld(void)
{
	ufault__witness_release(UFAULT__RANK_REMAP);
}

static void assert_unheld(void)
{
	ufault__witness_assert_held(UFAULT__RANK_MM, "changing regions");
}

static void test_allowed(void **state)
{
	(void)state;
	assert_int_equal(in_child(in_order), 0);
	assert_int_equal(in_child(worker_trylocks_mm), 0);
}

static void test_violations_abort(void **state)
{
	(void)state;
	assert_int_equal(in_child(reversed), SIGABRT);
	assert_int_equal(in_child(same_rank_twice), SIGABRT);
	assert_int_equal(in_child(worker_waits_for_mm), SIGABRT);
	assert_int_equal(in_child(hook_under_lock), SIGABRT);
	assert_int_equal(in_child(release_unheld), SIGABRT);
	assert_int_equal(in_child(assert_unheld), SIGABRT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_allowed),
	    cmocka_unit_test(test_violations_abort),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
