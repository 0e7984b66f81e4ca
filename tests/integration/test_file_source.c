/* SPDX-License-Identifier: MIT */
/*
 * test_file_source.c - UFAULT_SOURCE_FILE: a file read through the
 * worker's io_uring, in every lock mode.
 *
 *  - Oracle: a file whose byte at offset o is tu_pattern(o, seed), shorter
 *    than the region and ending inside a page; 8 threads fault it in at
 *    once (reads in flight), with a source offset: every byte is the
 *    file's, every byte past the end of the file is 0.
 *  - The caller may close its fd right after registering (ufault has its
 *    own), and ufault's copy is closed once the source is released.
 *  - Proxies churning (churn.h): a region over the file's end, checked
 *    against the oracle while madvise(MADV_DONTNEED) makes pages be read
 *    again and mprotect flips protections.
 *  - Read errors follow the error policy: /proc/self/mem is a regular file
 *    whose reads at an unmapped address fail with EIO; the zero policy
 *    reads zeros, the SIGBUS policy kills a child with SIGBUS; the errors
 *    are counted.
 *  - Validation: a write-only fd, a directory, unknown flags, O_DIRECT with
 *    an unaligned offset are refused with EINVAL, changing nothing.
 *  - UFAULT_FILE_DIRECT reads the same bytes (where the file system
 *    supports O_DIRECT).
 */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "../modes.h"
#include "../churn.h"

#define FILE_PAGES 37
#define TAIL_BYTES 1234 /* the file ends this far into its last page */
#define REGION_PAGES 48
#define SEED 91
#define NR_THREADS 8

static size_t ps;
static char file_path[64];

static struct ufault_source file_source(int fd, uint64_t offset, unsigned int flags)
{
	struct ufault_source s;

	ufault_source_init(&s, UFAULT_SOURCE_FILE);
	s.file.fd = fd;
	s.file.flags = flags;
	s.offset = offset;
	return s;
}

/* What byte @i of a region whose source starts at @off must hold. */
static unsigned char expected(uint64_t off, size_t i)
{
	uint64_t o = off + i;

	return o < FILE_PAGES * ps + TAIL_BYTES ? tu_pattern(o, SEED) : 0;
}

static void check_region(const unsigned char *p, uint64_t off)
{
	for (size_t i = 0; i < REGION_PAGES * ps; i++)
		if (p[i] != expected(off, i))
			fail_msg("[%s] byte %zu (file offset %llu) is 0x%02x, expected 0x%02x",
				 ufault_lock_mode_name(tu_mode), i, (unsigned long long)(off + i),
				 p[i], expected(off, i));
}

static void oracle(struct ufault_ctx *ctx, unsigned int flags)
{
	const uint64_t off = 3 * ps; /* the region starts 3 pages into the file */
	struct ufault_source s;
	unsigned char *p;
	int fd, base_fds;

	base_fds = tu_count_fds();
	fd = open(file_path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	s = file_source(fd, off, flags);
	p = ufault_mmap(ctx, NULL, REGION_PAGES * ps, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, &s, 0);
	if (p == MAP_FAILED && errno == EINVAL && (flags & UFAULT_FILE_DIRECT)) {
		close(fd);
		print_message("  [%s] O_DIRECT refused here: skipped\n",
			      ufault_lock_mode_name(tu_mode));
		return;
	}
	assert_ptr_not_equal(p, MAP_FAILED);
	close(fd); /* ufault holds its own */
	tu_touch_spread(p, REGION_PAGES, ps, NR_THREADS);
	check_region(p, off);
	/* A write stays in memory (the mapping is private). */
	p[5] = (unsigned char)~p[5];
	assert_int_equal(p[5], (unsigned char)~expected(off, 5));
	assert_int_equal(ufault_munmap(ctx, p, REGION_PAGES * ps), 0);
	/* Released: ufault's copy of the fd is closed (the release may wait
	 * for a worker to pass a quiescent state: poll, bounded). */
	assert_int_equal(tu_wait_fds(base_fds), base_fds);
}

static void test_oracle(void **state)
{
	oracle(((struct tu_fx *)*state)->ctx, 0);
}

#define CHURN_OFF ((FILE_PAGES - REGION_PAGES / 2) * ps) /* half past the end */

static unsigned char churn_expected(size_t i)
{
	return expected(CHURN_OFF, i);
}

static void test_proxies_churn(void **state)
{
	struct ufault_ctx *ctx = ((struct tu_fx *)*state)->ctx;
	struct tu_churn c = {
	    .ctx = ctx, .len = REGION_PAGES * ps, .page = ps, .expected = churn_expected};
	struct ufault_source s;
	int fd;

	fd = open(file_path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	s = file_source(fd, CHURN_OFF, 0);
	c.base = ufault_mmap(ctx, NULL, c.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			     &s, 0);
	assert_ptr_not_equal(c.base, MAP_FAILED);
	close(fd);
	tu_churn_run(&c, tu_test_seconds(1.0));
	assert_int_equal(ufault_munmap(ctx, c.base, c.len), 0);
}

static void test_direct(void **state)
{
	oracle(((struct tu_fx *)*state)->ctx, UFAULT_FILE_DIRECT);
}

/* /proc/self/mem read at an address nothing maps: EIO on every fill. */
static struct ufault_source error_source(int *fd)
{
	*fd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
	assert_true(*fd >= 0);
	return file_source(*fd, 0x1000, 0); /* address 4096: never mapped */
}

static void test_error_zero_policy(void **state)
{
	struct ufault_ctx *ctx = ((struct tu_fx *)*state)->ctx;
	struct ufault_stats st = {.size = sizeof(st)};
	struct ufault_source s;
	unsigned char *p;
	int fd;

	s = error_source(&fd);
	p = ufault_mmap(ctx, NULL, 4 * ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, &s,
			UFAULT_REGION_ON_ERROR_ZERO);
	assert_ptr_not_equal(p, MAP_FAILED);
	close(fd);
	for (size_t pg = 0; pg < 4; pg++)
		assert_int_equal(tu_zero_check(p + pg * ps, ps), -1);
	/* The worker counts a zero fill after the ioctl that woke us. */
	for (int i = 0; i < 2000; i++) {
		assert_int_equal(ufault_stats(ctx, &st), 0);
		if (st.zero_filled >= 4)
			break;
		usleep(1000);
	}
	assert_true(st.source_errors >= 4);
	assert_true(st.zero_filled >= 4);
	assert_int_equal(ufault_munmap(ctx, p, 4 * ps), 0);
}

static void test_error_sigbus_policy(void **state)
{
	int status;
	pid_t pid;

	(void)state; /* no fixture context: fork from a single-threaded parent */
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* A context of the child's own (the fixture's is the parent's). */
		struct ufault_ctx *ctx;
		struct ufault_source s;
		unsigned char *p;
		int fd;

		tu_watchdog(20);
		signal(SIGBUS, SIG_DFL); /* not CMocka's handler: die of it */
		if (tu_ctx_create(&ctx, tu_mode, 1, 0))
			_exit(2);
		s = error_source(&fd);
		p = ufault_mmap(ctx, NULL, ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, &s, 0);
		if (p == MAP_FAILED)
			_exit(errno == EOPNOTSUPP ? 77 : 3);
		(void)tu_read_byte(p); /* SIGBUS: the default action kills us */
		_exit(4);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
		skip(); /* the kernel lacks UFFDIO_POISON */
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGBUS)
		fail_msg("[%s] the child %s %d, expected death by SIGBUS",
			 ufault_lock_mode_name(tu_mode),
			 WIFSIGNALED(status) ? "died of signal" : "exited",
			 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

static void test_validation(void **state)
{
	struct ufault_ctx *ctx = ((struct tu_fx *)*state)->ctx;
	unsigned char *a = tu_map_anon(4 * ps, 0);
	struct ufault_source s;
	int fd;

	fd = open(file_path, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	s = file_source(fd, 0, 0);
	assert_int_equal(ufault_region_register(ctx, a, 4 * ps, &s, 0, NULL), -EINVAL);
	close(fd);
	fd = open("/var/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	s = file_source(fd, 0, 0);
	assert_int_equal(ufault_region_register(ctx, a, 4 * ps, &s, 0, NULL), -EINVAL);
	close(fd);
	fd = open(file_path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	s = file_source(fd, 0, 1u << 7);
	assert_int_equal(ufault_region_register(ctx, a, 4 * ps, &s, 0, NULL), -EINVAL);
	s = file_source(fd, 512, UFAULT_FILE_DIRECT);
	assert_int_equal(ufault_region_register(ctx, a, 4 * ps, &s, 0, NULL), -EINVAL);
	s = file_source(-1, 0, 0);
	assert_int_equal(ufault_region_register(ctx, a, 4 * ps, &s, 0, NULL), -EINVAL);
	/* Nothing was registered: the memory is ordinary (reads zeros). */
	assert_int_equal(tu_zero_check(a, 4 * ps), -1);
	close(fd);
	tu_unmap(a, 4 * ps);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    tu_fx_test(test_oracle),
	    tu_fx_test(test_proxies_churn),
	    tu_fx_test(test_direct),
	    tu_fx_test(test_error_zero_policy),
	    tu_watchdog_test(test_error_sigbus_policy),
	    tu_fx_test(test_validation),
	};
	int failed;

	ps = tu_page_size();
	snprintf(file_path, sizeof(file_path), "/var/tmp/ufault_file_source_%d", (int)getpid());
	tu_pattern_file(file_path, FILE_PAGES * ps + TAIL_BYTES, SEED);
	failed =
	    tu_run_every_mode("file_source", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
	unlink(file_path);
	return failed ? 1 : 0;
}
