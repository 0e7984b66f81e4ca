/* SPDX-License-Identifier: MIT */
/*
 * test_foreign.c - foreign contexts (ufault_config.foreign_uffd): a context
 * that serves another process's userfaultfd, as ufaultd does, in every
 * lock mode.
 *
 *  - Serve: a child process (the owner) opens a uffd with
 *    UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP, maps and
 *    registers memory itself, and hands the uffd to this process over a
 *    socketpair (SCM_RIGHTS). It touches its first page at once, before
 *    this process has registered any region (the fault waits, deferred),
 *    then reads every byte: each equals the pattern file at the region's
 *    offset. It then drops pages with madvise(MADV_DONTNEED)
 *    (UFFD_EVENT_REMOVE): those read as zeros afterwards, the others keep
 *    their bytes, and pages never touched before the removal but next to
 *    it still come from the file. The context is made with a range given
 *    as removed already (config.zeroed, as a restarted ufaultd does): it
 *    reads zeros; its on_remove hears the removal and the unmapping. It unmaps a range (UFFD_EVENT_UNMAP) and
 *    exits 0 only if every check held. The context keeps a dup of the uffd:
 *    the owner's copy and this process's copy stay open, and destroying the
 *    context leaves the caller's fd open.
 *  - Refusals: a foreign_uffd that is not a userfaultfd (a pipe) is
 *    -EINVAL, and so are on_remove or zeroed without a foreign_uffd, and
 *    a zeroed entry that is not a range (or a NULL array); in a foreign context the proxies fail with EOPNOTSUPP,
 *    ufault_flush() and the budgets with -EOPNOTSUPP, a write-back region
 *    with -EOPNOTSUPP; nothing changes.
 */
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "../modes.h"

#define SEED 0xf0e1
#define PAGES 64
#define OFF_PAGES 3 /* the region starts at this page of the file */
#define FILE_PAGES (PAGES + 8)
#define DROP_FIRST 16 /* pages [DROP_FIRST, DROP_FIRST + DROP_N) are removed */
#define DROP_N 8
#define UNMAP_FIRST 48 /* pages [UNMAP_FIRST, PAGES) are unmapped at the end */
#define GIVEN_FIRST 36 /* pages [GIVEN_FIRST, GIVEN_FIRST + GIVEN_N): config.zeroed */
#define GIVEN_N 4

static size_t ps;
static char file_path[64];

/* Send @fd with @data over @sock. */
static int send_fd(int sock, int fd, const void *data, size_t len)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *c;

	memset(cbuf, 0, sizeof(cbuf));
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &mh, 0) == (ssize_t)len ? 0 : -1;
}

/* Receive @len bytes and one fd; the fd, or -1. */
static int recv_fd(int sock, void *data, size_t len)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {.iov_base = data, .iov_len = len};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *c;
	int fd = -1;

	if (recvmsg(sock, &mh, MSG_CMSG_CLOEXEC) != (ssize_t)len)
		return -1;
	c = CMSG_FIRSTHDR(&mh);
	if (c && c->cmsg_type == SCM_RIGHTS)
		memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

struct hello {
	uint64_t addr;
	uint64_t features;
};

/* The owner: exit codes name the check that failed. */
static __attribute__((noreturn)) void owner(int sock)
{
	struct uffdio_api api = {.api = UFFD_API,
				 .features = UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP};
	struct uffdio_register reg;
	unsigned char *p;
	struct hello h;
	char go;
	int uffd;

	tu_watchdog(30);
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	TU_CHILD_CHECK(uffd >= 0, 2);
	TU_CHILD_CHECK(ioctl(uffd, UFFDIO_API, &api) == 0, 3);
	p = mmap(NULL, PAGES * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TU_CHILD_CHECK(p != MAP_FAILED, 4);
	reg.range.start = (uint64_t)(uintptr_t)p;
	reg.range.len = PAGES * ps;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	TU_CHILD_CHECK(ioctl(uffd, UFFDIO_REGISTER, &reg) == 0, 5);
	h.addr = (uint64_t)(uintptr_t)p;
	h.features = api.features;
	TU_CHILD_CHECK(send_fd(sock, uffd, &h, sizeof(h)) == 0, 6);
	/* Before the server has a region here: this waits. */
	TU_CHILD_CHECK(tu_pattern_check(p, ps, OFF_PAGES * ps, SEED) == -1, 7);
	TU_CHILD_CHECK(read(sock, &go, 1) == 1, 8);
	/* Every byte, except the pages left untouched for later. */
	TU_CHILD_CHECK(tu_pattern_check(p, DROP_FIRST * ps, OFF_PAGES * ps, SEED) == -1, 9);
	/* A balloon: the first half of the dropped range was read (resident),
	 * the second half never was; both read zeros from now on. */
	TU_CHILD_CHECK(madvise(p + DROP_FIRST * ps, DROP_N * ps, MADV_DONTNEED) == 0, 10);
	TU_CHILD_CHECK(tu_zero_check(p + DROP_FIRST * ps, DROP_N * ps) == -1, 11);
	/* Writes there stay (zero-filled pages are ordinary pages). */
	p[DROP_FIRST * ps + 5] = 0x5a;
	TU_CHILD_CHECK(p[DROP_FIRST * ps + 5] == 0x5a, 12);
	/* The rest still comes from the file, around the removed range,
	 * but for the range the context was given as removed already. */
	TU_CHILD_CHECK(tu_pattern_check(p + (DROP_FIRST + DROP_N) * ps,
					(GIVEN_FIRST - DROP_FIRST - DROP_N) * ps,
					(OFF_PAGES + DROP_FIRST + DROP_N) * ps, SEED) == -1,
		       13);
	TU_CHILD_CHECK(tu_zero_check(p + GIVEN_FIRST * ps, GIVEN_N * ps) == -1, 16);
	TU_CHILD_CHECK(tu_pattern_check(p + (GIVEN_FIRST + GIVEN_N) * ps,
					(PAGES - GIVEN_FIRST - GIVEN_N) * ps,
					(OFF_PAGES + GIVEN_FIRST + GIVEN_N) * ps, SEED) == -1,
		       17);
	TU_CHILD_CHECK(tu_pattern_check(p, DROP_FIRST * ps, OFF_PAGES * ps, SEED) == -1, 14);
	TU_CHILD_CHECK(munmap(p + UNMAP_FIRST * ps, (PAGES - UNMAP_FIRST) * ps) == 0, 15);
	tu_child_exit(0);
}

/* What on_remove heard. */
static struct {
	pthread_mutex_t lock;
	struct ufault_zeroed v[8];
	unsigned int n;
} heard = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void on_remove(void *arg, uint64_t start, uint64_t end)
{
	assert_ptr_equal(arg, &heard);
	pthread_mutex_lock(&heard.lock);
	if (heard.n < 8)
		heard.v[heard.n] = (struct ufault_zeroed){start, end};
	heard.n++;
	pthread_mutex_unlock(&heard.lock);
}

static unsigned int heard_n(void)
{
	unsigned int n;

	pthread_mutex_lock(&heard.lock);
	n = heard.n;
	pthread_mutex_unlock(&heard.lock);
	return n;
}

static void test_serve(void **state)
{
	struct ufault_config cfg;
	struct ufault_source src;
	struct ufault_ctx *ctx;
	struct ufault_stats st;
	struct ufault_zeroed given;
	int sv[2], uffd, fd, status, rc;
	struct hello h;
	pid_t pid;

	(void)state;
	tu_pattern_file(file_path, FILE_PAGES * ps, SEED);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		close(sv[0]);
		owner(sv[1]);
	}
	close(sv[1]);
	uffd = recv_fd(sv[0], &h, sizeof(h));
	assert_true(uffd >= 0);
	assert_true(h.features & UFFD_FEATURE_EVENT_REMOVE);

	ufault_config_init(&cfg);
	cfg.lock_mode = tu_mode;
	cfg.nr_workers = 2;
	cfg.foreign_uffd = uffd;
	cfg.foreign_features = h.features;
	/* As a restarted ufaultd gives a context what the last one heard. */
	given.start = h.addr + GIVEN_FIRST * ps;
	given.end = given.start + GIVEN_N * ps;
	cfg.zeroed = &given;
	cfg.nr_zeroed = 1;
	cfg.on_remove = on_remove;
	cfg.on_remove_arg = &heard;
	heard.n = 0;
	rc = tu_ctx_create_cfg(&ctx, &cfg);
	assert_int_equal(rc, 0);
	/* The owner faults on its first page before this: it waits. */
	usleep(20000);
	fd = open(file_path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	ufault_source_init(&src, UFAULT_SOURCE_FILE);
	src.file.fd = fd;
	src.offset = OFF_PAGES * ps;
	assert_int_equal(
	    ufault_region_register(ctx, (void *)(uintptr_t)h.addr, PAGES * ps, &src, 0, NULL), 0);
	close(fd);
	assert_int_equal(write(sv[0], "g", 1), 1);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail_msg("[%s] the owner %s %d", ufault_lock_mode_name(tu_mode),
			 WIFSIGNALED(status) ? "died of signal" : "failed check",
			 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	memset(&st, 0, sizeof(st));
	st.size = sizeof(st);
	assert_int_equal(ufault_stats(ctx, &st), 0);
	assert_true(st.faults > 0);
	/* on_remove heard the removal and the unmapping (the owner's munmap
	 * returned once the event was read: the worker may still be in it). */
	for (int i = 0; i < 5000 && heard_n() < 2; i++)
		usleep(1000);
	assert_int_equal(heard_n(), 2);
	assert_int_equal(heard.v[0].start, h.addr + DROP_FIRST * ps);
	assert_int_equal(heard.v[0].end, h.addr + (DROP_FIRST + DROP_N) * ps);
	assert_int_equal(heard.v[1].start, h.addr + UNMAP_FIRST * ps);
	assert_int_equal(heard.v[1].end, h.addr + PAGES * ps);
	ufault_ctx_destroy(ctx);
	/* The caller's fd is still its own. */
	assert_true(fcntl(uffd, F_GETFD) >= 0);
	close(uffd);
	close(sv[0]);
	unlink(file_path);
}

static void test_refusals(void **state)
{
	struct ufault_config cfg;
	struct ufault_source src;
	struct ufault_ctx *ctx;
	struct ufault_budget b;
	unsigned char *a = tu_map_anon(4 * ps, 0);
	int pfd[2], uffd, fd;

	(void)state;
	/* on_remove and zeroed are for foreign contexts; a range is one. */
	ufault_config_init(&cfg);
	cfg.lock_mode = tu_mode;
	cfg.on_remove = on_remove;
	assert_int_equal(ufault_ctx_create(&ctx, &cfg), -EINVAL);
	cfg.on_remove = NULL;
	cfg.zeroed = &(struct ufault_zeroed){0, ps};
	cfg.nr_zeroed = 1;
	assert_int_equal(ufault_ctx_create(&ctx, &cfg), -EINVAL);
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	ufault_config_init(&cfg);
	cfg.lock_mode = tu_mode;
	cfg.foreign_uffd = pfd[0];
	assert_int_equal(ufault_ctx_create(&ctx, &cfg), -EINVAL);
	close(pfd[0]);
	close(pfd[1]);

	/* A uffd of this process, as if it were another's. */
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0)
		skip();
	{
		struct uffdio_api api = {.api = UFFD_API};

		assert_int_equal(ioctl(uffd, UFFDIO_API, &api), 0);
	}
	cfg.foreign_uffd = uffd;
	cfg.zeroed = &(struct ufault_zeroed){2 * ps, ps};
	cfg.nr_zeroed = 1;
	assert_int_equal(ufault_ctx_create(&ctx, &cfg), -EINVAL);
	cfg.zeroed = NULL;
	assert_int_equal(ufault_ctx_create(&ctx, &cfg), -EINVAL);
	cfg.nr_zeroed = 0;
	assert_int_equal(tu_ctx_create_cfg(&ctx, &cfg), 0);
	assert_ptr_equal(
	    ufault_mmap(ctx, NULL, ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, NULL, 0),
	    MAP_FAILED);
	assert_int_equal(errno, EOPNOTSUPP);
	assert_int_equal(ufault_munmap(ctx, a, ps), -1);
	assert_int_equal(errno, EOPNOTSUPP);
	assert_int_equal(ufault_mprotect(ctx, a, ps, PROT_READ), -1);
	assert_int_equal(errno, EOPNOTSUPP);
	assert_int_equal(ufault_madvise(ctx, a, ps, MADV_DONTNEED), -1);
	assert_int_equal(errno, EOPNOTSUPP);
	assert_int_equal(ufault_flush(ctx, a, ps), -EOPNOTSUPP);
	memset(&b, 0, sizeof(b));
	b.size = sizeof(b);
	b.bytes = 16 * ps;
	assert_int_equal(ufault_ctx_set_budget(ctx, &b), -EOPNOTSUPP);
	assert_int_equal(ufault_region_set_budget(ctx, a, &b), -EOPNOTSUPP);
	tu_pattern_file(file_path, 4 * ps, SEED);
	fd = open(file_path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	ufault_source_init(&src, UFAULT_SOURCE_FILE);
	src.file.fd = fd;
	assert_int_equal(
	    ufault_region_register(ctx, a, 4 * ps, &src, UFAULT_REGION_WRITEBACK, NULL),
	    -EOPNOTSUPP);
	close(fd);
	unlink(file_path);
	/* Untouched: a's pages are ordinary memory (never registered). */
	assert_int_equal(tu_zero_check(a, 4 * ps), -1);
	ufault_ctx_destroy(ctx);
	close(uffd);
	tu_unmap(a, 4 * ps);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    tu_watchdog_test(test_serve),
	    tu_watchdog_test(test_refusals),
	};

	ps = tu_page_size();
	snprintf(file_path, sizeof(file_path), "/tmp/ufault_foreign_%d", (int)getpid());
	return tu_run_every_mode("foreign", tests, sizeof(tests) / sizeof(tests[0]), argc, argv)
		   ? 1
		   : 0;
}
