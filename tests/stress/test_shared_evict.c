/* SPDX-License-Identifier: MIT */
/*
 * test_shared_evict.c - a foreign owner's shared memory
 * (ufault_region_register_shared()): write-back and eviction under a budget
 * with no access to the owner's address space, in every lock mode.
 *
 *  - Oracle (test_oracle): an owner process maps ST_PAGES pages of a memfd
 *    MAP_SHARED, registers them MISSING|WP on a uffd set up with
 *    UFFD_FEATURE_WP_HUGETLBFS_SHMEM and UFFD_FEATURE_EVENT_REMOVE, and
 *    hands the uffd and the memfd over (SCM_RIGHTS). This process serves it
 *    with a write-back region on the pattern file and a budget of BUDGET
 *    pages, far below what the owner touches. The owner's threads each own
 *    every ST_THREADS-th page and loop for $UFAULT_TEST_SECONDS (default
 *    0.5): pick one of theirs, check it whole against what it must hold
 *    (generation 0: the file's bytes; g: a function of the page and g),
 *    then write generation g + 1 in two halves (an eviction may come
 *    between them: both must stay); half the picks are among a few hot
 *    pages, so the evictor often takes a page while it is written. Then it drops every page
 *    (MADV_DONTNEED: UFFD_EVENT_REMOVE, which must not make them zeros) and
 *    checks every page again: the evicted ones come back from the file,
 *    so what eviction stored is checked too. This process then checks the
 *    evictor evicted and stored pages, that no more than the budget's
 *    limit stayed in the memfd, unregisters the region (which stores
 *    every page that differs) and checks the file holds every page's last
 *    generation.
 *  - Refusals (test_refusals): ufault_region_register_shared() on a
 *    context that is not foreign, or with a uffd lacking
 *    UFFD_FEATURE_WP_HUGETLBFS_SHMEM for a write-back region, is
 *    -EOPNOTSUPP; an fd that is not a memfd, a memfd too short, an
 *    unaligned offset or a region page other than the system page is
 *    -EINVAL; nothing is registered then (the same range registers
 *    afterwards).
 */
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "../modes.h"

#define SEED 0x5eed
#define ST_PAGES 1024u
#define ST_THREADS 4u
#define ST_HOT 4u /* hot pages per thread */
#define BUDGET 64u
#define OFF_PAGES 2u /* the region starts at this page of the file */

static size_t ps;
static char file_path[64];

struct hello {
	uint64_t addr;
	uint64_t features;
};

/* Does @p (page @page) hold generation @g? (0: the file's bytes.) */
static bool page_holds(const unsigned char *p, uint64_t page, uint32_t g)
{
	return tu_gen_holds(p, ps, page, g, (OFF_PAGES + page) * ps, SEED);
}

/* Write generation @g into page @page, in two halves. */
static void page_write(unsigned char *p, uint64_t page, uint32_t g)
{
	tu_gen_write(p, page, g, 0, ps / 16);
	sched_yield(); /* room for an eviction between the halves */
	tu_gen_write(p, page, g, ps / 16, ps / 8);
}

struct owner_state {
	unsigned char *p;
	uint32_t gen[ST_PAGES]; /* each written by its page's thread only */
	int stop;		/* atomic */
};

struct owner_thread {
	struct owner_state *o;
	pthread_t th;
	unsigned int id, seed;
	uint64_t steps, wrong;
};

static void *owner_loop(void *arg)
{
	struct owner_thread *t = arg;
	struct owner_state *o = t->o;

	while (!__atomic_load_n(&o->stop, __ATOMIC_ACQUIRE)) {
		unsigned int r = (unsigned int)rand_r(&t->seed);
		/* Half the steps on a few hot pages: written often, they are
		 * often being written when the evictor takes them. */
		uint64_t page =
		    (r % 2 ? (r >> 1) % ST_HOT : (r >> 1) % (ST_PAGES / ST_THREADS)) * ST_THREADS +
		    t->id;
		unsigned char *p = o->p + page * ps;

		if (!page_holds(p, page, o->gen[page]))
			t->wrong++;
		page_write(p, page, ++o->gen[page]);
		t->steps++;
	}
	return NULL;
}

/* The owner: exit codes name the check that failed; 100 + n: n pages wrong. */
static __attribute__((noreturn)) void owner(int sock)
{
	struct uffdio_api api = {.api = UFFD_API,
				 .features =
				     UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_EVENT_REMOVE};
	struct owner_thread th[ST_THREADS];
	struct uffdio_register reg;
	struct owner_state *o;
	uint64_t wrong = 0, steps = 0;
	struct hello h;
	int uffd, fds[2];
	char go;

	tu_watchdog(60);
	o = mmap(NULL, sizeof(*o), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TU_CHILD_CHECK(o != MAP_FAILED, 2);
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	TU_CHILD_CHECK(uffd >= 0, 3);
	TU_CHILD_CHECK(ioctl(uffd, UFFDIO_API, &api) == 0, 4);
	fds[0] = uffd;
	fds[1] = memfd_create("test_shared_evict", MFD_CLOEXEC);
	TU_CHILD_CHECK(fds[1] >= 0 && ftruncate(fds[1], (off_t)(ST_PAGES * ps)) == 0, 5);
	o->p = mmap(NULL, ST_PAGES * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fds[1], 0);
	TU_CHILD_CHECK(o->p != MAP_FAILED, 6);
	reg.range.start = (uint64_t)(uintptr_t)o->p;
	reg.range.len = ST_PAGES * ps;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP;
	TU_CHILD_CHECK(ioctl(uffd, UFFDIO_REGISTER, &reg) == 0, 7);
	h.addr = reg.range.start;
	/* What was asked for (UFFDIO_API answers with all the kernel has). */
	h.features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_EVENT_REMOVE;
	TU_CHILD_CHECK(tu_send_fds(sock, fds, 2, &h, sizeof(h)) == 0, 8);
	TU_CHILD_CHECK(read(sock, &go, 1) == 1, 9);

	for (unsigned int i = 0; i < ST_THREADS; i++) {
		th[i] = (struct owner_thread){.o = o, .id = i, .seed = 7 + i};
		TU_CHILD_CHECK(pthread_create(&th[i].th, NULL, owner_loop, &th[i]) == 0, 10);
	}
	usleep((useconds_t)(tu_test_seconds(0.5) * 1e6));
	__atomic_store_n(&o->stop, 1, __ATOMIC_RELEASE);
	for (unsigned int i = 0; i < ST_THREADS; i++) {
		pthread_join(th[i].th, NULL);
		wrong += th[i].wrong;
		steps += th[i].steps;
	}
	/* Dropped from the page tables, not from the memfd: every page still
	 * holds its last generation, from the memfd or (evicted) the file. */
	TU_CHILD_CHECK(madvise(o->p, ST_PAGES * ps, MADV_DONTNEED) == 0, 11);
	for (uint64_t page = 0; page < ST_PAGES; page++)
		if (!page_holds(o->p + page * ps, page, o->gen[page]))
			wrong++;
	fprintf(stderr, "owner: %llu steps, %llu wrong\n", (unsigned long long)steps,
		(unsigned long long)wrong);
	TU_CHILD_CHECK(steps > ST_PAGES, 12); /* far more than the budget touched */
	TU_CHILD_CHECK(tu_write_all(sock, o->gen, sizeof(o->gen)) == 0, 13);
	/* Until this process has checked the file (the memory is ours). */
	TU_CHILD_CHECK(read(sock, &go, 1) == 1, 14);
	tu_child_exit(wrong ? 100 + (int)(wrong > 100 ? 100 : wrong) : 0);
}

static void test_oracle(void **state)
{
	static uint32_t gen[ST_PAGES];
	unsigned char *buf = malloc(ps);
	struct ufault_region *region;
	struct ufault_config cfg;
	struct ufault_source src;
	struct ufault_stats st;
	struct ufault_budget b;
	struct ufault_ctx *ctx;
	struct hello h;
	int pair[2], fds[2], fd, status;
	uint64_t wrong = 0;
	struct stat sb;
	pid_t pid;

	(void)state;
	assert_non_null(buf);
	tu_pattern_file(file_path, (ST_PAGES + OFF_PAGES) * ps, SEED);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		close(pair[0]);
		owner(pair[1]);
	}
	close(pair[1]);
	assert_int_equal(tu_recv_fds(pair[0], fds, 2, &h, sizeof(h)), 2);

	ufault_config_init(&cfg);
	cfg.lock_mode = tu_mode;
	cfg.nr_workers = 2;
	cfg.foreign_uffd = fds[0];
	cfg.foreign_features = h.features;
	assert_int_equal(tu_ctx_create_cfg(&ctx, &cfg), 0);
	fd = open(file_path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	ufault_source_init(&src, UFAULT_SOURCE_FILE);
	src.file.fd = fd;
	src.offset = OFF_PAGES * ps;
	assert_int_equal(ufault_region_register_shared(ctx, (void *)(uintptr_t)h.addr,
						       ST_PAGES * ps, &src, UFAULT_REGION_WRITEBACK,
						       fds[1], 0, &region),
			 0);
	memset(&b, 0, sizeof(b));
	b.size = sizeof(b);
	b.bytes = BUDGET * ps;
	assert_int_equal(ufault_ctx_set_budget(ctx, &b), 0);
	assert_int_equal(write(pair[0], "g", 1), 1);

	assert_int_equal(tu_read_all(pair[0], gen, sizeof(gen)), 0);
	memset(&st, 0, sizeof(st));
	st.size = sizeof(st);
	assert_int_equal(ufault_stats(ctx, &st), 0);
	print_message("[%s] faults %llu, evicted %llu (%llu stored), resident %llu\n",
		      ufault_lock_mode_name(tu_mode), (unsigned long long)st.faults,
		      (unsigned long long)st.evicted, (unsigned long long)st.evicted_dirty,
		      (unsigned long long)st.resident);
	assert_true(st.evicted > 0);
	assert_true(st.evicted_dirty > 0);
	/* The owner's last sweep refaulted every page: the evictor keeps
	 * bringing the memfd back under the budget (and its limit). */
	for (int i = 0; i < 5000; i++) {
		assert_int_equal(fstat(fds[1], &sb), 0);
		if ((uint64_t)sb.st_blocks * 512 <= (BUDGET + 32) * ps)
			break;
		usleep(1000);
	}
	assert_true((uint64_t)sb.st_blocks * 512 <= (BUDGET + 32) * ps);

	/* Unregistered: every page that differs stored. */
	assert_int_equal(ufault_region_unregister(ctx, region), 0);
	for (uint64_t page = 0; page < ST_PAGES; page++) {
		assert_int_equal(pread(fd, buf, ps, (off_t)((OFF_PAGES + page) * ps)), (ssize_t)ps);
		if (!page_holds(buf, page, gen[page]))
			wrong++;
	}
	assert_int_equal(wrong, 0);
	assert_int_equal(write(pair[0], "e", 1), 1);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail_msg("[%s] the owner %s %d", ufault_lock_mode_name(tu_mode),
			 WIFSIGNALED(status) ? "died of signal" : "failed check",
			 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	ufault_ctx_destroy(ctx);
	close(fd);
	close(fds[0]);
	close(fds[1]);
	close(pair[0]);
	unlink(file_path);
	free(buf);
}

static void test_refusals(void **state)
{
	struct uffdio_api api = {.api = UFFD_API};
	struct uffdio_register reg;
	struct ufault_config cfg;
	struct ufault_source src;
	struct ufault_ctx *ctx;
	unsigned char *p;
	int uffd, mfd, pfd[2];

	(void)state;
	ufault_source_init(&src, UFAULT_SOURCE_ZERO);
	mfd = memfd_create("test_shared_refusals", MFD_CLOEXEC);
	assert_true(mfd >= 0);
	assert_int_equal(ftruncate(mfd, (off_t)(4 * ps)), 0);
	p = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	assert_true(p != MAP_FAILED);

	/* Not a foreign context: its memory is its own. */
	assert_int_equal(tu_ctx_create(&ctx, tu_mode, 1, 1), 0);
	assert_int_equal(ufault_region_register_shared(ctx, p, 4 * ps, &src, 0, mfd, 0, NULL),
			 -EOPNOTSUPP);
	ufault_ctx_destroy(ctx);

	/* A foreign context on a uffd of this process, without
	 * UFFD_FEATURE_WP_HUGETLBFS_SHMEM. */
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0)
		skip();
	assert_int_equal(ioctl(uffd, UFFDIO_API, &api), 0);
	reg.range.start = (uint64_t)(uintptr_t)p;
	reg.range.len = 4 * ps;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	assert_int_equal(ioctl(uffd, UFFDIO_REGISTER, &reg), 0);
	ufault_config_init(&cfg);
	cfg.lock_mode = tu_mode;
	cfg.foreign_uffd = uffd;
	cfg.foreign_features = api.features;
	assert_int_equal(tu_ctx_create_cfg(&ctx, &cfg), 0);
	tu_pattern_file(file_path, 4 * ps, SEED);
	src.type = UFAULT_SOURCE_FILE;
	src.file.fd = open(file_path, O_RDWR | O_CLOEXEC);
	assert_true(src.file.fd >= 0);
	assert_int_equal(ufault_region_register_shared(ctx, p, 4 * ps, &src,
						       UFAULT_REGION_WRITEBACK, mfd, 0, NULL),
			 -EOPNOTSUPP);
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	assert_int_equal(ufault_region_register_shared(ctx, p, 4 * ps, &src, 0, pfd[0], 0, NULL),
			 -EINVAL);
	close(pfd[0]);
	close(pfd[1]);
	/* The file itself is no tmpfs file unless /tmp is tmpfs: a memfd
	 * too short, an offset off a page, a region page of 64 KiB. */
	assert_int_equal(ufault_region_register_shared(ctx, p, 4 * ps, &src, 0, mfd, ps, NULL),
			 -EINVAL);
	assert_int_equal(ufault_region_register_shared(ctx, p, 4 * ps, &src, 0, mfd, 1, NULL),
			 -EINVAL);
	assert_int_equal(ufault_region_register_shared(ctx, p, 4 * ps, &src,
						       UFAULT_REGION_PAGE_SHIFT(16), mfd, 0, NULL),
			 -EINVAL);
	/* Nothing was registered: the range takes a region now, and is
	 * served (read through the memfd, filled from the file). */
	assert_int_equal(ufault_region_register_shared(ctx, p, 4 * ps, &src, 0, mfd, 0, NULL), 0);
	assert_int_equal(tu_pattern_check(p, 4 * ps, 0, SEED), -1);
	ufault_ctx_destroy(ctx);
	close(src.file.fd);
	unlink(file_path);
	close(uffd);
	munmap(p, 4 * ps);
	close(mfd);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    tu_watchdog_test(test_refusals),
	    tu_watchdog_test(test_oracle),
	};

	ps = tu_page_size();
	snprintf(file_path, sizeof(file_path), "/tmp/ufault_shared_%d", (int)getpid());
	return tu_run_every_mode("shared_evict", tests, sizeof(tests) / sizeof(tests[0]), argc,
				 argv)
		   ? 1
		   : 0;
}
