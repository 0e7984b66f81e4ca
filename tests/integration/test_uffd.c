/* SPDX-License-Identifier: MIT */
/*
 * test_uffd.c - the kernel-interface layer (lib/uffd.c) against a real
 * userfaultfd: open, the UFFDIO_API handshake and probe, and every ioctl
 * wrapper (register, copy, zeropage, poison, wake), plus
 * ufault__uffd_classify. Each test asserts what the kernel
 * really did (bytes, residency, fault messages, signals), not only return
 * codes.
 *
 * Never hangs: the main thread never touches a registered page that could
 * fault to userspace. Where a fault is the point (WP, poison), a second
 * thread takes it, the main thread resolves it, and a watchdog bounds the run.
 * CMocka asserts run on the main thread only; helper threads report results.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "../testutil.h"
#include "uffd.h"

#define WATCHDOG_SECS 30

static uint64_t page;

static uint64_t addr_of(const void *p)
{
	return (uint64_t)(uintptr_t)p;
}

/* A fresh uffd with the handshake done, asking for @want. */
static int open_api(uint64_t want, struct ufault__uffd_caps *caps)
{
	struct ufault__uffd_caps unused;
	int fd = ufault__uffd_open();

	assert_true(fd >= 0);
	assert_int_equal(ufault__uffd_api(fd, want, caps ? caps : &unused), 0);
	return fd;
}

static bool kernel_has(uint64_t feature)
{
	struct ufault__uffd_caps caps;

	assert_int_equal(ufault__uffd_probe(&caps), 0);
	return (caps.features & feature) == feature;
}

/* ------------------------------------------------------------------ */
/* open, probe, API handshake                                           */
/* ------------------------------------------------------------------ */

static void test_open_probe_api(void **state)
{
	struct ufault__uffd_caps probe, again, caps;
	const uint64_t base =
	    (1ull << _UFFDIO_REGISTER) | (1ull << _UFFDIO_UNREGISTER) | (1ull << _UFFDIO_API);
	int fd, ret;

	assert_int_equal(ufault__uffd_probe(&probe), 0);
	assert_int_equal(ufault__uffd_probe(&again), 0); /* cached, stable */
	assert_memory_equal(&probe, &again, sizeof(probe));
	assert_true(probe.features != 0);
	assert_int_equal(probe.ioctls & base, base);
	if (!(probe.features & UFFD_FEATURE_POISON))
		print_message("note: kernel lacks UFFD_FEATURE_POISON\n");
	assert_false(probe.features & (1ull << 62));

	fd = ufault__uffd_open();
	assert_true(fd >= 0);
	/* The library promises a non-blocking, close-on-exec fd. */
	assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);

	memset(&caps, 0, sizeof(caps));
	assert_int_equal(ufault__uffd_api(fd, UFFD_FEATURE_MISSING_SHMEM, &caps), 0);
	assert_int_equal(caps.ioctls & base, base);

	/* The kernel accepts one handshake per fd: a negative errno, no crash. */
	ret = ufault__uffd_api(fd, 0, &caps);
	assert_true(ret < 0);
	assert_int_equal(ret, -EINVAL);
	assert_int_equal(ufault__uffd_classify(ret), UFAULT__UFFD_FATAL);
	close(fd);

	/* A feature the kernel lacks is masked off by the probe, not refused. */
	fd = ufault__uffd_open();
	assert_true(fd >= 0);
	memset(&caps, 0, sizeof(caps));
	assert_int_equal(ufault__uffd_api(fd, (1ull << 62) | UFFD_FEATURE_THREAD_ID, &caps), 0);
	assert_false(caps.features & (1ull << 62));
	/* What is reported is what this fd got, not all the kernel has. */
	assert_int_equal(caps.features, UFFD_FEATURE_THREAD_ID);
	assert_int_equal(caps.ioctls & base, base);
	close(fd);

	/* NULL @got is allowed by api_call. */
	fd = ufault__uffd_open();
	assert_true(fd >= 0);
	assert_int_equal(ufault__uffd_api(fd, 0, NULL), 0);
	close(fd);
}

/* ------------------------------------------------------------------ */
/* register / unregister                                                */
/* ------------------------------------------------------------------ */

static void test_register_unregister(void **state)
{
	const uint64_t need =
	    (1ull << _UFFDIO_COPY) | (1ull << _UFFDIO_ZEROPAGE) | (1ull << _UFFDIO_WAKE);
	int fd = open_api(0, NULL);
	uint64_t ioctls = 0;
	char *p = tu_map_anon(4 * page, 0);
	char *gone;
	int ret;

	assert_int_equal(
	    ufault__uffd_register(fd, addr_of(p), 4 * page, UFFDIO_REGISTER_MODE_MISSING, &ioctls),
	    0);
	assert_int_equal(ioctls & need, need);
	/* NULL @ioctls is allowed. */
	assert_int_equal(ufault__uffd_unregister(fd, addr_of(p), 4 * page), 0);
	assert_int_equal(
	    ufault__uffd_register(fd, addr_of(p), 4 * page, UFFDIO_REGISTER_MODE_MISSING, NULL), 0);
	assert_int_equal(ufault__uffd_unregister(fd, addr_of(p), 4 * page), 0);
	/* Unregistered again: an ordinary zero page, safe to touch. */
	assert_int_equal(tu_read_byte(p), 0);

	/* Misaligned start: the kernel's EINVAL comes back negated. */
	ret = ufault__uffd_register(fd, addr_of(p) + 1, page, UFFDIO_REGISTER_MODE_MISSING, NULL);
	assert_int_equal(ret, -EINVAL);

	/* No VMA at all: this kernel answers EINVAL (older ones ENOMEM). */
	gone = tu_map_anon(4 * page, 0);
	tu_unmap(gone, 4 * page);
	ret = ufault__uffd_register(fd, addr_of(gone), 4 * page, UFFDIO_REGISTER_MODE_MISSING,
				    &ioctls);
	assert_true(ret == -EINVAL || ret == -ENOMEM);
	assert_int_equal(ufault__uffd_classify(ret), UFAULT__UFFD_FATAL);

	tu_unmap(p, 4 * page);
	close(fd);
}

/* ------------------------------------------------------------------ */
/* copy                                                                 */
/* ------------------------------------------------------------------ */

static void test_copy(void **state)
{
	const uint64_t n = 4;
	int fd = open_api(0, NULL);
	char *dst = tu_map_anon(n * page, 0);
	char *src = tu_map_anon(n * page, 0);
	uint64_t done = 12345;
	int ret;

	assert_int_equal(
	    ufault__uffd_register(fd, addr_of(dst), n * page, UFFDIO_REGISTER_MODE_MISSING, NULL),
	    0);
	tu_pattern_fill(src, n * page, 0, 1);
	assert_int_equal(ufault__uffd_copy(fd, addr_of(dst), src, n * page, true, &done), 0);
	assert_int_equal(done, n * page);
	assert_int_equal(tu_pattern_check(dst, n * page, 0, 1), -1);

	/* Again over installed pages: EEXIST, nothing done, a benign race. */
	tu_pattern_fill(src, n * page, 0, 2);
	done = 12345;
	ret = ufault__uffd_copy(fd, addr_of(dst) + page, src, page, true, &done);
	assert_int_equal(ret, -EEXIST);
	assert_int_equal(done, 0);
	assert_int_equal(ufault__uffd_classify(ret), UFAULT__UFFD_RESOLVED);
	assert_int_equal(tu_pattern_check(dst, n * page, 0, 1), -1); /* unchanged */

	/* Misaligned destination is a real error, and done says nothing moved. */
	done = 12345;
	ret = ufault__uffd_copy(fd, addr_of(dst) + 1, src, page, true, &done);
	assert_int_equal(ret, -EINVAL);
	assert_int_equal(done, 0);

	tu_unmap(dst, n * page);
	tu_unmap(src, n * page);
	close(fd);
}

/*
 * Copy of 3 pages where one already exists: the others are filled, the
 * result is -EEXIST, and done counts only the pages really installed.
 * @existing is the index of the page installed beforehand (first, middle,
 * last exercise every branch of the skip in fill_loop).
 */
static void copy_over_existing(uint64_t existing)
{
	int fd = open_api(0, NULL);
	char *dst = tu_map_anon(3 * page, 0);
	char *src = tu_map_anon(3 * page, 0);
	uint64_t done = 12345;
	int ret;

	assert_int_equal(
	    ufault__uffd_register(fd, addr_of(dst), 3 * page, UFFDIO_REGISTER_MODE_MISSING, NULL),
	    0);
	tu_pattern_fill(src, 3 * page, 0, 7);
	assert_int_equal(ufault__uffd_copy(fd, addr_of(dst) + existing * page,
					   src + existing * page, page, true, &done),
			 0);
	assert_int_equal(done, page);

	tu_pattern_fill(src, 3 * page, 0, 8);
	done = 12345;
	ret = ufault__uffd_copy(fd, addr_of(dst), src, 3 * page, true, &done);
	assert_int_equal(ret, -EEXIST);
	assert_int_equal(done, 2 * page);
	for (uint64_t i = 0; i < 3; i++)
		assert_int_equal(
		    tu_pattern_check(dst + i * page, page, i * page, i == existing ? 7 : 8), -1);

	tu_unmap(dst, 3 * page);
	tu_unmap(src, 3 * page);
	close(fd);
}

static void test_copy_partial_eexist(void **state)
{
	copy_over_existing(1);
	copy_over_existing(0);
	copy_over_existing(2);
}

/* ------------------------------------------------------------------ */
/* zeropage                                                             */
/* ------------------------------------------------------------------ */

static void test_zeropage(void **state)
{
	int fd = open_api(0, NULL);
	char *dst = tu_map_anon(3 * page, 0);
	char *src = tu_map_anon(page, 0);
	uint64_t done = 12345;
	int ret;

	assert_int_equal(
	    ufault__uffd_register(fd, addr_of(dst), 3 * page, UFFDIO_REGISTER_MODE_MISSING, NULL),
	    0);
	/* Page 1 holds data first, so zeros seen later are the zeropage's. */
	tu_pattern_fill(src, page, 0, 3);
	assert_int_equal(ufault__uffd_copy(fd, addr_of(dst) + page, src, page, true, &done), 0);

	done = 12345;
	assert_int_equal(ufault__uffd_zeropage(fd, addr_of(dst), page, true, &done), 0);
	assert_int_equal(done, page);
	assert_int_equal(tu_zero_check(dst, page), -1);

	/* Over the whole range: pages 0 and 1 exist, so both are skipped. */
	done = 12345;
	ret = ufault__uffd_zeropage(fd, addr_of(dst), 3 * page, true, &done);
	assert_int_equal(ret, -EEXIST);
	assert_int_equal(done, page); /* only page 2 was new */
	assert_int_equal(tu_zero_check(dst + 2 * page, page), -1);
	assert_int_equal(tu_pattern_check(dst + page, page, 0, 3), -1);

	tu_unmap(dst, 3 * page);
	tu_unmap(src, page);
	close(fd);
}

/* ------------------------------------------------------------------ */
/* poison                                                               */
/* ------------------------------------------------------------------ */

static __thread sigjmp_buf poison_jmp;
static __thread volatile sig_atomic_t poison_armed;
static void *volatile poison_addr;
static volatile int poison_code;

static void poison_handler(int sig, siginfo_t *si, void *uc)
{
	if (!poison_armed) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	poison_addr = si->si_addr;
	poison_code = si->si_code;
	siglongjmp(poison_jmp, 1);
}

/* Returns (void *)1 if the read of @arg raised SIGBUS, NULL if it returned. */
static void *poison_reader(void *arg)
{
	void *caught = NULL;

	if (sigsetjmp(poison_jmp, 1) == 0) {
		poison_armed = 1;
		(void)tu_read_byte(arg);
	} else {
		caught = (void *)1;
	}
	poison_armed = 0;
	return caught;
}

static void test_poison(void **state)
{
	struct sigaction sa, old;
	pthread_t t;
	void *caught = NULL;
	char *dst;
	uint64_t done = 12345;
	int fd, ret;

	if (!kernel_has(UFFD_FEATURE_POISON)) {
		print_message("skip: kernel lacks UFFD_FEATURE_POISON\n");
		skip();
	}
	fd = open_api(UFFD_FEATURE_POISON, NULL);
	dst = tu_map_anon(2 * page, 0);
	assert_int_equal(
	    ufault__uffd_register(fd, addr_of(dst), 2 * page, UFFDIO_REGISTER_MODE_MISSING, NULL),
	    0);
	assert_int_equal(ufault__uffd_poison(fd, addr_of(dst) + page, page, true, &done), 0);
	assert_int_equal(done, page);

	/* Poisoning it again finds the marker there. */
	done = 12345;
	ret = ufault__uffd_poison(fd, addr_of(dst) + page, page, true, &done);
	assert_int_equal(ret, -EEXIST);
	assert_int_equal(done, 0);

	/* If the poison did not take, the reader would park in a MISSING
	 * fault: the watchdog turns that into a failure. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = poison_handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGBUS, &sa, &old), 0);
	tu_watchdog(WATCHDOG_SECS);
	assert_int_equal(pthread_create(&t, NULL, poison_reader, dst + page + 17), 0);
	assert_int_equal(pthread_join(t, &caught), 0);
	tu_watchdog(0);
	assert_int_equal(sigaction(SIGBUS, &old, NULL), 0);

	assert_ptr_equal(caught, (void *)1);
	assert_true((char *)poison_addr >= dst + page && (char *)poison_addr < dst + 2 * page);
	/* The kernel's poison marker reports as a memory error or an address
	 * error depending on version; either is a SIGBUS for this page. */
	assert_true(poison_code == BUS_MCEERR_AR || poison_code == BUS_ADRERR);

	tu_unmap(dst, 2 * page);
	close(fd);
}

/* ------------------------------------------------------------------ */
/* wake                                                                 */
/* ------------------------------------------------------------------ */

static void test_wake(void **state)
{
	int fd = open_api(0, NULL);
	char *p = tu_map_anon(2 * page, 0);

	assert_int_equal(
	    ufault__uffd_register(fd, addr_of(p), 2 * page, UFFDIO_REGISTER_MODE_MISSING, NULL), 0);
	assert_int_equal(ufault__uffd_wake(fd, addr_of(p), 2 * page), 0);
	/* A misaligned range is refused, so the 0 above means something. */
	assert_int_equal(ufault__uffd_wake(fd, addr_of(p) + 1, page), -EINVAL);
	tu_unmap(p, 2 * page);
	close(fd);
}

/* ------------------------------------------------------------------ */

static void test_classify(void **state)
{
	static const struct {
		int err;
		enum ufault__uffd_verdict v;
	} cases[] = {
	    {0, UFAULT__UFFD_OK},	  {EEXIST, UFAULT__UFFD_RESOLVED},
	    {EAGAIN, UFAULT__UFFD_LATER}, {ENOENT, UFAULT__UFFD_NOVMA},
	    {ESRCH, UFAULT__UFFD_GONE},	  {EINVAL, UFAULT__UFFD_FATAL},
	    {EFAULT, UFAULT__UFFD_FATAL}, {ENOMEM, UFAULT__UFFD_FATAL},
	    {EPERM, UFAULT__UFFD_FATAL},  {EBUSY, UFAULT__UFFD_FATAL},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(ufault__uffd_classify(cases[i].err), cases[i].v);
		assert_int_equal(ufault__uffd_classify(-cases[i].err), cases[i].v);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_open_probe_api), cmocka_unit_test(test_register_unregister),
	    cmocka_unit_test(test_copy),	   cmocka_unit_test(test_copy_partial_eexist),
	    cmocka_unit_test(test_zeropage),	   cmocka_unit_test(test_poison),
	    cmocka_unit_test(test_wake),

	    cmocka_unit_test(test_classify),
	};
	struct ufault__uffd_caps caps;
	int fd;

	page = tu_page_size();
	fd = ufault__uffd_open();
	if (tu_is_unavailable(fd))
		tu_skip("userfaultfd is not available to this process");
	if (fd < 0)
		tu_die("ufault__uffd_open", fd);
	close(fd);
	if (tu_is_unavailable(ufault__uffd_probe(&caps)))
		tu_skip("userfaultfd handshake is not available to this process");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
