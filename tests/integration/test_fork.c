// SPDX-License-Identifier: MIT
/*
 * test_fork.c - a child process never reads wrong bytes from ufault memory.
 *
 * A child does not inherit ufault's handling (its copy of a registered
 * range is unregistered by the kernel). For a zero source that is harmless:
 * the child reads zeros, the right bytes. For any other source, missing
 * pages would silently read as zeros, so such regions are MADV_DONTFORK
 * while handled: the child has no mapping there and gets SIGSEGV. Once
 * unregistered, the memory is inherited again like any other.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../testutil.h"

enum child_saw { SAW_SEGV = 10, SAW_ZEROS, SAW_SOURCE, SAW_OTHER };

static sigjmp_buf child_jmp;

static void child_segv(int sig)
{
	(void)sig;
	siglongjmp(child_jmp, 1);
}

/* Fork; the child reads one page at @p and exits with what it saw. */
static enum child_saw fork_and_read(const unsigned char *p, size_t len, uint64_t off, uint64_t seed)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		struct sigaction sa;

		alarm(20); /* a hang fails the test instead of blocking it */
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = child_segv;
		sigaction(SIGSEGV, &sa, NULL);
		if (sigsetjmp(child_jmp, 1))
			_exit(SAW_SEGV);
		if (tu_zero_check(p, len) == -1)
			_exit(SAW_ZEROS);
		if (tu_pattern_check(p, len, off, seed) == -1)
			_exit(SAW_SOURCE);
		_exit(SAW_OTHER);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return (enum child_saw)WEXITSTATUS(status);
}

static void test_callback_region_not_inherited(void **state)
{
	size_t ps = tu_page_size(), len = 4 * ps;
	struct ufault_source src = tu_pattern_source(0, 5);
	struct ufault_region *r = NULL;
	struct ufault_ctx *ctx;
	unsigned char *a;

	(void)state;
	assert_int_equal(tu_ctx_create(&ctx, UFAULT_LOCK_SPEC, 1, 1), 0);
	a = tu_map_anon(len, 0);
	assert_int_equal(ufault_region_register(ctx, a, len, &src, 0, &r), 0);
	/* Page 0 filled in the parent, page 1 still missing. */
	assert_int_equal(tu_pattern_check(a, ps, 0, 5), -1);
	assert_int_equal(fork_and_read(a + ps, ps, ps, 5), SAW_SEGV);
	assert_int_equal(fork_and_read(a, ps, 0, 5), SAW_SEGV);
	/* The parent is unaffected. */
	assert_int_equal(tu_pattern_check(a + ps, ps, ps, 5), -1);

	/* Unregistered, the memory is inherited again: filled pages keep
	 * their bytes, missing ones are ordinary zero pages. */
	assert_int_equal(ufault_region_unregister(ctx, r), 0);
	assert_int_equal(fork_and_read(a, ps, 0, 5), SAW_SOURCE);
	assert_int_equal(fork_and_read(a + 2 * ps, ps, 2 * ps, 5), SAW_ZEROS);
	ufault_ctx_destroy(ctx);
	tu_unmap(a, len);
}

static void test_zero_region_inherited(void **state)
{
	size_t ps = tu_page_size(), len = 4 * ps;
	struct ufault_source src;
	struct ufault_ctx *ctx;
	unsigned char *a;

	(void)state;
	ufault_source_init(&src, UFAULT_SOURCE_ZERO);
	assert_int_equal(tu_ctx_create(&ctx, UFAULT_LOCK_SPEC, 1, 1), 0);
	a = tu_map_anon(len, 0);
	assert_int_equal(ufault_region_register(ctx, a, len, &src, 0, NULL), 0);
	assert_int_equal(fork_and_read(a + ps, ps, ps, 0), SAW_ZEROS);
	ufault_ctx_destroy(ctx);
	tu_unmap(a, len);
}

static void test_proxy_mapping_not_inherited(void **state)
{
	size_t ps = tu_page_size(), len = 4 * ps;
	struct ufault_source src = tu_pattern_source(0, 9);
	struct ufault_ctx *ctx;
	unsigned char *a, *b;

	(void)state;
	assert_int_equal(tu_ctx_create(&ctx, UFAULT_LOCK_SPEC, 1, 1), 0);
	a = ufault_mmap(ctx, NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, &src,
			0);
	assert_ptr_not_equal(a, MAP_FAILED);
	assert_int_equal(fork_and_read(a, ps, 0, 9), SAW_SEGV);
	/* MAP_FIXED replacing it with a zero source: inherited again. */
	b = ufault_mmap(ctx, a, len, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, NULL, 0);
	assert_ptr_equal(b, a);
	assert_int_equal(fork_and_read(b, ps, 0, 0), SAW_ZEROS);
	assert_int_equal(ufault_munmap(ctx, b, len), 0);
	ufault_ctx_destroy(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_callback_region_not_inherited),
	    cmocka_unit_test(test_zero_region_inherited),
	    cmocka_unit_test(test_proxy_mapping_not_inherited),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
