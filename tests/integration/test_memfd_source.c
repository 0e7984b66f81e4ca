/* SPDX-License-Identifier: MIT */
/*
 * test_memfd_source.c - UFAULT_SOURCE_MEMFD: a shared page cache mapped
 * with MINOR faults and UFFDIO_CONTINUE, in every lock mode.
 *
 *  - Oracle: a memfd filled from a file source (shorter than the memfd,
 *    ending inside a page: zeros past its end), 8 threads faulting a
 *    region mapped at a memfd offset, in system pages and in 16 KiB region
 *    pages: every byte is the file's. The page cache holds them too, a
 *    write stays private, and a second region over the same memfd maps
 *    every page from the cache (no fill: cache_filled unchanged,
 *    cache_mapped counts them) and sees the file's bytes, not the write.
 *  - Two processes, each with its own context: the first fills half the
 *    pages from a callback; the second maps them without calling its
 *    callback (it counts its calls) and fills only the other half.
 *  - Proxies churning: threads check bytes against the oracle while
 *    ufault_madvise(MADV_DONTNEED) drops pages (they come back from the
 *    cache) and ufault_mprotect() flips protections, on random ranges.
 *  - Inner source errors follow the error policy (zeros, counted; SIGBUS in
 *    a child) and nothing failing is put in the page cache.
 *  - Validation: not a memfd, read-only, a mapping that is not the memfd
 *    (anonymous, wrong offset, MAP_SHARED), past the memfd's end, a memfd
 *    inner source, ufault_mmap() with this source, MAP_FIXED over a memfd
 *    region: EINVAL, nothing changed, no fd left behind.
 *  - Release: once the region is gone, ufault's mapping and userfaultfd of
 *    the memfd are closed.
 */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "../modes.h"
#include "../churn.h"

#define FILE_PAGES 37
#define TAIL_BYTES 1234 /* the file ends this far into its last page */
#define MEMFD_PAGES 64
#define REGION_PAGES 48
#define SEED 57
#define NR_THREADS 8

static size_t ps;
static char file_path[64];

static int memfd_new(size_t pages)
{
	int fd = memfd_create("ufault-test", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)(pages * ps)), 0);
	return fd;
}

/* The caller's part: a private mapping of the memfd at @off, aligned to
 * 16 KiB (the largest region page used here). */
static unsigned char *map_memfd(int fd, size_t len, uint64_t off)
{
	unsigned char *p = tu_map_anon(len, 16384);

	p = mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, (off_t)off);

	assert_ptr_not_equal(p, MAP_FAILED);
	return p;
}

static struct ufault_source memfd_source(int fd, uint64_t off, const struct ufault_source *from)
{
	struct ufault_source s;

	ufault_source_init(&s, UFAULT_SOURCE_MEMFD);
	s.memfd.fd = fd;
	s.memfd.from = from;
	s.offset = off;
	return s;
}

static struct ufault_source file_source(int fd)
{
	struct ufault_source s;

	ufault_source_init(&s, UFAULT_SOURCE_FILE);
	s.file.fd = fd;
	return s;
}

/* The byte at memfd offset @o when it is filled from the file. */
static unsigned char expected(uint64_t o)
{
	return o < FILE_PAGES * ps + TAIL_BYTES ? tu_pattern(o, SEED) : 0;
}

static void check_bytes(const unsigned char *p, size_t len, uint64_t off)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != expected(off + i))
			fail_msg("[%s] byte %zu (memfd offset %llu) is 0x%02x, expected 0x%02x",
				 ufault_lock_mode_name(tu_mode), i, (unsigned long long)(off + i),
				 p[i], expected(off + i));
}

static struct ufault_stats stats_of(struct ufault_ctx *ctx)
{
	struct ufault_stats st = {.size = sizeof(st)};

	assert_int_equal(ufault_stats(ctx, &st), 0);
	return st;
}

/* cache_mapped once it reaches @want: the worker counts after the ioctl
 * that woke the touching thread (poll, bounded). */
static uint64_t cache_mapped_reaching(struct ufault_ctx *ctx, uint64_t want)
{
	uint64_t got = 0;

	for (int i = 0; i < 2000; i++) {
		got = stats_of(ctx).cache_mapped;
		if (got >= want)
			break;
		usleep(1000);
	}
	return got;
}

static void oracle(struct ufault_ctx *ctx, unsigned int region_flags)
{
	const uint64_t off = 4 * ps, len = REGION_PAGES * ps;
	struct ufault_source from, s;
	struct ufault_stats st0, st1, st2;
	unsigned char *a, *b, *check;
	int base_fds = tu_count_fds(), mfd, ffd;

	mfd = memfd_new(MEMFD_PAGES);
	ffd = open(file_path, O_RDONLY | O_CLOEXEC);
	assert_true(ffd >= 0);
	from = file_source(ffd);
	s = memfd_source(mfd, off, &from);
	a = map_memfd(mfd, len, off);
	st0 = stats_of(ctx);
	assert_int_equal(ufault_region_register(ctx, a, len, &s, region_flags, NULL), 0);
	tu_touch_spread(a, REGION_PAGES, ps, NR_THREADS);
	check_bytes(a, len, off);
	st1 = stats_of(ctx);
	assert_int_equal(st1.cache_filled - st0.cache_filled, REGION_PAGES);

	/* The page cache holds the file's bytes. */
	check = malloc(len);
	assert_non_null(check);
	assert_int_equal(pread(mfd, check, len, (off_t)off), (ssize_t)len);
	check_bytes(check, len, off);

	/* A write stays private to its mapping. */
	a[5] = (unsigned char)~a[5];
	assert_int_equal(a[5], (unsigned char)~expected(off + 5));
	assert_int_equal(pread(mfd, check, 1, (off_t)(off + 5)), 1);
	assert_int_equal(check[0], expected(off + 5));
	free(check);

	/* A second region over the same pages maps them, filling nothing. */
	b = map_memfd(mfd, len, off);
	assert_int_equal(ufault_region_register(ctx, b, len, &s, region_flags, NULL), 0);
	close(ffd); /* ufault holds its own duplicates */
	close(mfd); /* and its own mapping of the memfd */
	tu_touch_spread(b, REGION_PAGES, ps, NR_THREADS);
	check_bytes(b, len, off);
	assert_true(cache_mapped_reaching(ctx, st1.cache_mapped + REGION_PAGES) >=
		    st1.cache_mapped + REGION_PAGES);
	st2 = stats_of(ctx);
	assert_int_equal(st2.cache_filled, st1.cache_filled);

	assert_int_equal(ufault_munmap(ctx, a, len), 0);
	assert_int_equal(ufault_munmap(ctx, b, len), 0);
	/* Released: the file's duplicate, the alias's userfaultfd. */
	assert_int_equal(tu_wait_fds(base_fds), base_fds);
}

static void test_oracle(void **state)
{
	oracle(((struct tu_fx *)*state)->ctx, 0);
}

static void test_oracle_16k(void **state)
{
	oracle(((struct tu_fx *)*state)->ctx, UFAULT_REGION_PAGE_SHIFT(14));
}

/* --- two processes, one page cache --------------------------------------- */

static unsigned int fills; /* the child's callback calls (pages) */

static int counting_fill(void *arg, uint64_t offset, void *buf, size_t len)
{
	__atomic_fetch_add(&fills, (unsigned int)(len / ps), __ATOMIC_RELAXED);
	return tu_pattern_fill_cb(arg, offset, buf, len);
}

/* In a child: map the memfd, touch pages [first, first + n), check them;
 * exit 0 if exactly @want_fills pages came from the callback. */
static void child_touch(int mfd, size_t first, size_t n, unsigned int want_fills)
{
	struct ufault_source from = tu_pattern_source(0, SEED), s;
	struct ufault_config cfg;
	struct ufault_ctx *ctx;
	unsigned char *p;

	tu_watchdog(30);
	from.callback.fill = counting_fill;
	s = memfd_source(mfd, 0, &from);
	/* No fault-around: each touch fills exactly its own page. */
	ufault_config_init(&cfg);
	cfg.lock_mode = tu_mode;
	cfg.nr_workers = 1;
	cfg.fault_around_max = ps;
	TU_CHILD_CHECK(tu_ctx_create_cfg(&ctx, &cfg) == 0, 2);
	p = mmap(NULL, MEMFD_PAGES * ps, PROT_READ, MAP_PRIVATE, mfd, 0);
	TU_CHILD_CHECK(p != MAP_FAILED, 3);
	TU_CHILD_CHECK(ufault_region_register(ctx, p, MEMFD_PAGES * ps, &s, 0, NULL) == 0, 4);
	for (size_t pg = first; pg < first + n; pg++)
		TU_CHILD_CHECK(tu_pattern_check(p + pg * ps, ps, pg * ps, SEED) == -1, 5);
	TU_CHILD_CHECK(__atomic_load_n(&fills, __ATOMIC_RELAXED) == want_fills, 6);
	ufault_ctx_destroy(ctx);
	tu_child_exit(0);
}

static void run_child(int mfd, size_t first, size_t n, unsigned int want_fills)
{
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		child_touch(mfd, first, n, want_fills);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail_msg("[%s] child touching pages [%zu, %zu) %s %d",
			 ufault_lock_mode_name(tu_mode), first, first + n,
			 WIFSIGNALED(status) ? "died of signal" : "exited",
			 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

static void test_two_processes(void **state)
{
	const size_t half = MEMFD_PAGES / 2;
	unsigned char *check;
	int mfd;

	(void)state; /* no fixture context: fork from a single-threaded parent */
	mfd = memfd_new(MEMFD_PAGES);
	/* The first fills the first half. */
	run_child(mfd, 0, half, half);
	check = malloc(MEMFD_PAGES * ps);
	assert_non_null(check);
	assert_int_equal(pread(mfd, check, half * ps, 0), (ssize_t)(half * ps));
	assert_int_equal(tu_pattern_check(check, half * ps, 0, SEED), -1);
	free(check);
	/* The second maps the first half (no fill), then fills the rest. */
	run_child(mfd, 0, half, 0);
	run_child(mfd, 0, MEMFD_PAGES, MEMFD_PAGES - half);
	close(mfd);
}

/* --- proxies churning ------------------------------------------------------ */

#define CHURN_OFF (2 * ps) /* the region's memfd offset */

static unsigned char churn_expected(size_t i)
{
	return expected(CHURN_OFF + i);
}

/* Dropped pages come back from the page cache (CONTINUE), checked. */
static void test_proxies_churn(void **state)
{
	struct ufault_ctx *ctx = ((struct tu_fx *)*state)->ctx;
	struct tu_churn c = {
	    .ctx = ctx, .len = REGION_PAGES * ps, .page = ps, .expected = churn_expected};
	struct ufault_source from, s;
	int mfd, ffd;

	mfd = memfd_new(MEMFD_PAGES);
	ffd = open(file_path, O_RDONLY | O_CLOEXEC);
	assert_true(ffd >= 0);
	from = file_source(ffd);
	s = memfd_source(mfd, CHURN_OFF, &from);
	c.base = map_memfd(mfd, c.len, CHURN_OFF);
	assert_int_equal(ufault_region_register(ctx, c.base, c.len, &s, 0, NULL), 0);
	close(ffd);
	tu_churn_run(&c, tu_test_seconds(1.0));
	assert_true(cache_mapped_reaching(ctx, 1) > 0);
	assert_int_equal(ufault_munmap(ctx, c.base, c.len), 0);
	close(mfd);
}

/* --- errors ---------------------------------------------------------------- */

/* /proc/self/mem read at an address nothing maps: EIO on every fill. */
static struct ufault_source error_source(int *fd)
{
	struct ufault_source s;

	*fd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
	assert_true(*fd >= 0);
	s = file_source(*fd);
	s.offset = 0x1000; /* address 4096: never mapped */
	return s;
}

static void test_error_zero_policy(void **state)
{
	struct ufault_ctx *ctx = ((struct tu_fx *)*state)->ctx;
	struct ufault_source from, s;
	struct ufault_stats st;
	unsigned char *p, *shared, c;
	int mfd, fd;

	mfd = memfd_new(4);
	from = error_source(&fd);
	s = memfd_source(mfd, 0, &from);
	p = map_memfd(mfd, 4 * ps, 0);
	assert_int_equal(
	    ufault_region_register(ctx, p, 4 * ps, &s, UFAULT_REGION_ON_ERROR_ZERO, NULL), 0);
	close(fd);
	for (size_t pg = 0; pg < 4; pg++)
		assert_int_equal(tu_zero_check(p + pg * ps, ps), -1);
	/* The worker counts after the ioctl that woke us. */
	for (int i = 0; i < 2000; i++) {
		st = stats_of(ctx);
		if (st.zero_filled >= 4)
			break;
		usleep(1000);
	}
	assert_true(st.source_errors >= 4);
	assert_true(st.zero_filled >= 4);
	assert_int_equal(st.cache_filled, 0);
	/* Nothing went into the page cache (a shared mapping's mincore() is
	 * the cache's): a later fill can still succeed. */
	shared = mmap(NULL, ps, PROT_READ, MAP_SHARED, mfd, 0);
	assert_ptr_not_equal(shared, MAP_FAILED);
	assert_int_equal(mincore(shared, ps, &c), 0);
	assert_int_equal(c & 1, 0);
	munmap(shared, ps);
	assert_int_equal(ufault_munmap(ctx, p, 4 * ps), 0);
	close(mfd);
}

static void test_error_sigbus_policy(void **state)
{
	int status, mfd;
	pid_t pid;

	(void)state; /* no fixture context: fork from a single-threaded parent */
	mfd = memfd_new(1);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct ufault_source from, s;
		struct ufault_ctx *ctx;
		unsigned char *p;
		int fd;

		tu_watchdog(20);
		signal(SIGBUS, SIG_DFL); /* not CMocka's handler: die of it */
		if (tu_ctx_create(&ctx, tu_mode, 1, 0))
			_exit(2);
		from = error_source(&fd);
		s = memfd_source(mfd, 0, &from);
		p = mmap(NULL, ps, PROT_READ, MAP_PRIVATE, mfd, 0);
		if (p == MAP_FAILED)
			_exit(3);
		if (ufault_region_register(ctx, p, ps, &s, 0, NULL))
			_exit(errno == EOPNOTSUPP ? 77 : 4);
		(void)tu_read_byte(p); /* SIGBUS: the default action kills us */
		_exit(5);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	close(mfd);
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGBUS)
		fail_msg("[%s] the child %s %d, expected death by SIGBUS",
			 ufault_lock_mode_name(tu_mode),
			 WIFSIGNALED(status) ? "died of signal" : "exited",
			 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

/* --- validation ------------------------------------------------------------ */

static void test_validation(void **state)
{
	struct ufault_ctx *ctx = ((struct tu_fx *)*state)->ctx;
	struct ufault_source s, inner;
	unsigned char *p, *q, *anon;
	int base_fds, mfd, fd;
	char path[64];

	mfd = memfd_new(8);
	p = map_memfd(mfd, 4 * ps, 0);
	anon = tu_map_anon(4 * ps, 0);
	base_fds = tu_count_fds();

	/* Not a memfd or tmpfs file. */
	fd = open(file_path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	s = memfd_source(fd, 0, NULL);
	assert_int_equal(ufault_region_register(ctx, p, 4 * ps, &s, 0, NULL), -EINVAL);
	close(fd);
	/* Read-only. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", mfd);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	s = memfd_source(fd, 0, NULL);
	assert_int_equal(ufault_region_register(ctx, p, 4 * ps, &s, 0, NULL), -EINVAL);
	close(fd);
	/* The range is not that memfd at that offset, or not MAP_PRIVATE. */
	s = memfd_source(mfd, 0, NULL);
	assert_int_equal(ufault_region_register(ctx, anon, 4 * ps, &s, 0, NULL), -EINVAL);
	s = memfd_source(mfd, ps, NULL);
	assert_int_equal(ufault_region_register(ctx, p, 4 * ps, &s, 0, NULL), -EINVAL);
	q = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	assert_ptr_not_equal(q, MAP_FAILED);
	s = memfd_source(mfd, 0, NULL);
	assert_int_equal(ufault_region_register(ctx, q, 4 * ps, &s, 0, NULL), -EINVAL);
	munmap(q, 4 * ps);
	/* Past the memfd's end (8 pages). */
	q = map_memfd(mfd, 4 * ps, 6 * ps);
	s = memfd_source(mfd, 6 * ps, NULL);
	assert_int_equal(ufault_region_register(ctx, q, 4 * ps, &s, 0, NULL), -EINVAL);
	munmap(q, 4 * ps);
	/* A memfd source cannot fill a memfd source; ufault_mmap cannot take one. */
	inner = memfd_source(mfd, 0, NULL);
	s = memfd_source(mfd, 0, &inner);
	assert_int_equal(ufault_region_register(ctx, p, 4 * ps, &s, 0, NULL), -EINVAL);
	s = memfd_source(mfd, 0, NULL);
	errno = 0;
	assert_ptr_equal(
	    ufault_mmap(ctx, NULL, 4 * ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, &s, 0),
	    MAP_FAILED);
	assert_int_equal(errno, EINVAL);
	/* Nothing registered, nothing left open. */
	assert_int_equal(tu_count_fds(), base_fds);
	assert_int_equal(tu_zero_check(anon, 4 * ps), -1);

	/* MAP_FIXED over a memfd region fails and leaves it serving. */
	s = memfd_source(mfd, 0, NULL);
	assert_int_equal(ufault_region_register(ctx, p, 4 * ps, &s, 0, NULL), 0);
	errno = 0;
	assert_ptr_equal(ufault_mmap(ctx, p, 4 * ps, PROT_READ,
				     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, NULL, 0),
			 MAP_FAILED);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(tu_zero_check(p, 4 * ps), -1); /* no inner source: zeros */
	assert_int_equal(stats_of(ctx).cache_filled, 4);
	assert_int_equal(ufault_munmap(ctx, p, 4 * ps), 0);
	assert_int_equal(tu_wait_fds(base_fds), base_fds);
	tu_unmap(anon, 4 * ps);
	close(mfd);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    tu_fx_test(test_oracle),
	    tu_fx_test(test_oracle_16k),
	    tu_watchdog_test(test_two_processes),
	    tu_fx_test(test_proxies_churn),
	    tu_fx_test(test_error_zero_policy),
	    tu_watchdog_test(test_error_sigbus_policy),
	    tu_fx_test(test_validation),
	};
	int failed;

	ps = tu_page_size();
	snprintf(file_path, sizeof(file_path), "/var/tmp/ufault_memfd_source_%d", (int)getpid());
	tu_pattern_file(file_path, FILE_PAGES * ps + TAIL_BYTES, SEED);
	failed =
	    tu_run_every_mode("memfd_source", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
	unlink(file_path);
	return failed ? 1 : 0;
}
