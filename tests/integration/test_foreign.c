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
 *  - Stress (test_stress_removals): the owner's readers read random bytes
 *    while its remover gives pages up at random (MADV_DONTNEED); a byte of
 *    a page given up before the read must be 0, any other the file's or 0;
 *    every page whole at the end; on_remove heard exactly the removals.
 *    $UFAULT_TEST_SECONDS per lock mode (default 0.5).
 *  - Refusals: a foreign_uffd that is not a userfaultfd (a pipe) is
 *    -EINVAL, and so are on_remove or zeroed without a foreign_uffd, and
 *    a zeroed entry that is not a range (or a NULL array); in a foreign context the proxies fail with EOPNOTSUPP, a
 *    write-back region outside shared memory with -EOPNOTSUPP (nothing
 *    changes), ufault_flush() finds nothing to store and a budget has
 *    nothing to evict (test_shared_evict has what they do there).
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
#define OFF_PAGES 3   /* the region starts at this page of the file */
#define DROP_FIRST 16 /* pages [DROP_FIRST, DROP_FIRST + DROP_N) are removed */
#define DROP_N 8
#define UNMAP_FIRST 48 /* pages [UNMAP_FIRST, PAGES) are unmapped at the end */
#define GIVEN_FIRST 36 /* pages [GIVEN_FIRST, GIVEN_FIRST + GIVEN_N): config.zeroed */
#define GIVEN_N 4

static size_t ps;
static char file_path[64];

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
	TU_CHILD_CHECK(tu_send_fds(sock, &uffd, 1, &h, sizeof(h)) == 0, 6);
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

/* What on_remove heard (the first HEARD_MAX). */
#define HEARD_MAX (1u << 15)
static struct {
	pthread_mutex_t lock;
	struct ufault_zeroed v[HEARD_MAX];
	unsigned int n;
} heard = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void on_remove(void *arg, uint64_t start, uint64_t end)
{
	if (arg != &heard)
		abort(); /* a worker thread: no cmocka assert here */
	pthread_mutex_lock(&heard.lock);
	if (heard.n < HEARD_MAX)
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

/* A served owner: the context on its uffd, and what the fixture made. */
struct served {
	struct ufault_ctx *ctx;
	struct hello h;
	int uffd, sock;
	pid_t pid;
};

/*
 * Fork @fn as the owner of @pages pages, serve its uffd with a foreign
 * context (2 workers, on_remove heard, pages [@given, @given + @nr_given)
 * zeroed from the start, as a restarted ufaultd gives a context what the
 * last one heard) and the pattern file from OFF_PAGES as its region, then
 * let it go.
 */
static void serve(struct served *sv, void (*fn)(int sock), unsigned int pages, unsigned int given,
		  unsigned int nr_given)
{
	struct ufault_zeroed zeroed;
	struct ufault_config cfg;
	struct ufault_source src;
	int pair[2], fd;

	tu_pattern_file(file_path, (pages + OFF_PAGES) * ps, SEED);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
	fflush(NULL);
	sv->pid = fork();
	assert_true(sv->pid >= 0);
	if (!sv->pid) {
		close(pair[0]);
		fn(pair[1]);
		tu_child_exit(0);
	}
	close(pair[1]);
	sv->sock = pair[0];
	assert_int_equal(tu_recv_fds(sv->sock, &sv->uffd, 1, &sv->h, sizeof(sv->h)), 1);
	assert_true(sv->h.features & UFFD_FEATURE_EVENT_REMOVE);

	ufault_config_init(&cfg);
	cfg.lock_mode = tu_mode;
	cfg.nr_workers = 2;
	cfg.foreign_uffd = sv->uffd;
	cfg.foreign_features = sv->h.features;
	zeroed.start = sv->h.addr + given * ps;
	zeroed.end = zeroed.start + nr_given * ps;
	cfg.zeroed = &zeroed;
	cfg.nr_zeroed = nr_given ? 1 : 0;
	cfg.on_remove = on_remove;
	cfg.on_remove_arg = &heard;
	heard.n = 0;
	assert_int_equal(tu_ctx_create_cfg(&sv->ctx, &cfg), 0);
	/* The owner may fault on its first page before this: it waits. */
	usleep(20000);
	fd = open(file_path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	ufault_source_init(&src, UFAULT_SOURCE_FILE);
	src.file.fd = fd;
	src.offset = OFF_PAGES * ps;
	assert_int_equal(ufault_region_register(sv->ctx, (void *)(uintptr_t)sv->h.addr, pages * ps,
						&src, 0, NULL),
			 0);
	close(fd);
	assert_int_equal(write(sv->sock, "g", 1), 1);
}

/* The owner's exit: 0, or fail. */
static void owner_exit(const struct served *sv)
{
	int status;

	assert_int_equal(waitpid(sv->pid, &status, 0), sv->pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail_msg("[%s] the owner %s %d", ufault_lock_mode_name(tu_mode),
			 WIFSIGNALED(status) ? "died of signal" : "failed check",
			 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

static void served_end(struct served *sv)
{
	ufault_ctx_destroy(sv->ctx);
	/* The caller's fd is still its own. */
	assert_true(fcntl(sv->uffd, F_GETFD) >= 0);
	close(sv->uffd);
	close(sv->sock);
	unlink(file_path);
}

static void test_serve(void **state)
{
	struct ufault_stats st;
	struct served sv;
	struct hello h;

	(void)state;
	serve(&sv, owner, PAGES, GIVEN_FIRST, GIVEN_N);
	h = sv.h;
	owner_exit(&sv);
	memset(&st, 0, sizeof(st));
	st.size = sizeof(st);
	assert_int_equal(ufault_stats(sv.ctx, &st), 0);
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
	served_end(&sv);
}

/*
 * Removals while faults are served: the owner's readers read random bytes
 * of random pages while its remover gives up random runs of pages
 * (MADV_DONTNEED), one at a time, and marks them gone once madvise(2)
 * returned. A byte of a page marked gone before the read must be 0 (the
 * context must not have filled it from the file after the removal); any
 * other byte must be the file's or 0 (a removal may be under way). At the
 * end every page is checked whole, and the context's on_remove must have
 * heard exactly the owner's removals.
 */
#define ST_PAGES 4096u
#define ST_READERS 3
#define ST_MAX_RUN 8u
#define ST_MAX_REMOVALS 8192u

struct st_owner {
	unsigned char *p;
	uint8_t gone[ST_PAGES]; /* atomic: 1 once a removal of the page returned */
	int stop;		/* atomic */
	struct ufault_zeroed removed[ST_MAX_REMOVALS];
	uint32_t nr_removed;
};

struct st_reader {
	struct st_owner *o;
	pthread_t th;
	unsigned int seed;
	uint64_t reads, wrong;
};

static void *st_read(void *arg)
{
	struct st_reader *r = arg;
	struct st_owner *o = r->o;

	while (!__atomic_load_n(&o->stop, __ATOMIC_ACQUIRE)) {
		unsigned int pg = (unsigned int)rand_r(&r->seed) % ST_PAGES;
		size_t off = (size_t)rand_r(&r->seed) % ps;
		uint8_t gone = __atomic_load_n(&o->gone[pg], __ATOMIC_ACQUIRE);
		unsigned char b = tu_read_byte(o->p + pg * ps + off);

		if (gone ? b != 0 : b && b != tu_pattern((OFF_PAGES + pg) * ps + off, SEED))
			r->wrong++;
		r->reads++;
	}
	return NULL;
}

static __attribute__((noreturn)) void st_owner(int sock)
{
	struct uffdio_api api = {.api = UFFD_API,
				 .features = UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP};
	struct uffdio_register reg = {.mode = UFFDIO_REGISTER_MODE_MISSING};
	static struct st_owner o;
	struct st_reader r[ST_READERS];
	uint64_t reads = 0, wrong = 0, deadline;
	unsigned int seed = 7;
	struct hello h;
	char go;
	int uffd;

	tu_watchdog(60);
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	TU_CHILD_CHECK(uffd >= 0 && !ioctl(uffd, UFFDIO_API, &api), 2);
	o.p = tu_map_anon(ST_PAGES * ps, 0);
	reg.range.start = (uint64_t)(uintptr_t)o.p;
	reg.range.len = ST_PAGES * ps;
	TU_CHILD_CHECK(ioctl(uffd, UFFDIO_REGISTER, &reg) == 0, 3);
	h.addr = reg.range.start;
	h.features = api.features;
	TU_CHILD_CHECK(tu_send_fds(sock, &uffd, 1, &h, sizeof(h)) == 0, 4);
	TU_CHILD_CHECK(read(sock, &go, 1) == 1, 5);
	for (int i = 0; i < ST_READERS; i++) {
		r[i] = (struct st_reader){.o = &o, .seed = 100u + (unsigned int)i};
		TU_CHILD_CHECK(!pthread_create(&r[i].th, NULL, st_read, &r[i]), 6);
	}
	deadline = tu_now_ns() + (uint64_t)(tu_test_seconds(0.5) * 1e9);
	while (tu_now_ns() < deadline && o.nr_removed < ST_MAX_REMOVALS) {
		unsigned int a = (unsigned int)rand_r(&seed) % ST_PAGES;
		unsigned int k = 1 + (unsigned int)rand_r(&seed) % ST_MAX_RUN;

		if (a + k > ST_PAGES)
			k = ST_PAGES - a;
		TU_CHILD_CHECK(!madvise(o.p + a * ps, k * ps, MADV_DONTNEED), 7);
		for (unsigned int i = a; i < a + k; i++)
			__atomic_store_n(&o.gone[i], 1, __ATOMIC_RELEASE);
		o.removed[o.nr_removed++] =
		    (struct ufault_zeroed){h.addr + a * ps, h.addr + (a + k) * ps};
		usleep(200);
	}
	__atomic_store_n(&o.stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < ST_READERS; i++) {
		TU_CHILD_CHECK(!pthread_join(r[i].th, NULL), 8);
		reads += r[i].reads;
		wrong += r[i].wrong;
	}
	for (unsigned int pg = 0; pg < ST_PAGES; pg++) {
		const unsigned char *page = o.p + pg * ps;

		if (o.gone[pg] ? tu_zero_check(page, ps) != -1
			       : tu_pattern_check(page, ps, (OFF_PAGES + pg) * ps, SEED) != -1)
			wrong++;
	}
	fprintf(stderr, "foreign stress [%s]: %llu reads, %u removals, %llu wrong\n",
		ufault_lock_mode_name(tu_mode), (unsigned long long)reads, o.nr_removed,
		(unsigned long long)wrong);
	TU_CHILD_CHECK(tu_write_all(sock, &o.nr_removed, sizeof(o.nr_removed)) == 0, 9);
	TU_CHILD_CHECK(tu_write_all(sock, o.removed, o.nr_removed * sizeof(o.removed[0])) == 0, 9);
	tu_child_exit(wrong ? 10 : 0);
}

static int zeroed_cmp(const void *a, const void *b)
{
	const struct ufault_zeroed *x = a, *y = b;

	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return x->end < y->end ? -1 : x->end > y->end;
}

static void test_stress_removals(void **state)
{
	static struct ufault_zeroed want[ST_MAX_REMOVALS];
	struct served sv;
	uint32_t n;

	(void)state;
	serve(&sv, st_owner, ST_PAGES, 0, 0);
	assert_int_equal(tu_read_all(sv.sock, &n, sizeof(n)), 0);
	assert_true(n > 0 && n <= ST_MAX_REMOVALS);
	assert_int_equal(tu_read_all(sv.sock, want, n * sizeof(want[0])), 0);
	owner_exit(&sv);
	/* Each madvise(2) returned once its event was read: the worker may
	 * still be in on_remove for the last. */
	for (int i = 0; i < 5000 && heard_n() < n; i++)
		usleep(1000);
	assert_int_equal(heard_n(), n);
	qsort(want, n, sizeof(want[0]), zeroed_cmp);
	qsort(heard.v, n, sizeof(heard.v[0]), zeroed_cmp);
	assert_memory_equal(want, heard.v, n * sizeof(want[0]));
	served_end(&sv);
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
	/* Write-back and budgets are for shared memory (test_shared_evict):
	 * here nothing to flush, a budget with nothing to evict, no region. */
	assert_int_equal(ufault_flush(ctx, a, ps), 0);
	memset(&b, 0, sizeof(b));
	b.size = sizeof(b);
	b.bytes = 16 * ps;
	assert_int_equal(ufault_ctx_set_budget(ctx, &b), 0);
	assert_int_equal(ufault_region_set_budget(ctx, a, &b), -ENOENT);
	b.bytes = 0;
	assert_int_equal(ufault_ctx_set_budget(ctx, &b), 0);
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
	    tu_watchdog_test(test_stress_removals),
	};

	ps = tu_page_size();
	snprintf(file_path, sizeof(file_path), "/tmp/ufault_foreign_%d", (int)getpid());
	return tu_run_every_mode("foreign", tests, sizeof(tests) / sizeof(tests[0]), argc, argv)
		   ? 1
		   : 0;
}
