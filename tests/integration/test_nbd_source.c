/* SPDX-License-Identifier: MIT */
/*
 * test_nbd_source.c - UFAULT_SOURCE_NBD: an NBD export read with libnbd's
 * asynchronous API, in every lock mode. Each test starts its own server,
 * nbdkit's file plugin over a file whose byte at offset o is
 * tu_pattern(o, SEED), on a Unix socket (skipped without nbdkit).
 *
 *  - Oracle: a region larger than the export, with a source offset; 8
 *    threads fault it in at once (reads in flight on one connection):
 *    every byte is the export's, every byte past its end is 0. Writes stay
 *    in memory. Once released, the connection's fds are closed.
 *  - The server killed while threads fault pages in: with the zero policy
 *    every page reads the pattern or zeros, nothing hangs, and the context
 *    is destroyed; with the SIGBUS policy a child touching a page after
 *    the kill dies of SIGBUS.
 *  - Proxies churning (churn.h): a region over the export's last pages and
 *    past its end, checked against the oracle while madvise(MADV_DONTNEED)
 *    makes pages come back from the server and mprotect flips
 *    protections.
 *  - Destroy with reads in flight (a server delaying each read): returns
 *    once they completed, with no thread of the source's own, and closes
 *    the connection (the socket is driven by the workers' loops).
 *  - Write-back: written pages reach the export's file with NBD writes and
 *    a flush (ufault_flush, then ufault_munmap); a read-only export is
 *    refused (-EINVAL), registering nothing.
 *  - Validation: a NULL or unparsable URI is refused with EINVAL; a server
 *    that cannot be reached fails the registration (it connects), with
 *    nothing registered.
 */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "../modes.h"
#include "../churn.h"

#define FILE_PAGES 1024 /* 4 MiB with 4 KiB pages: the kill test has fills in flight */
#define TAIL_BYTES 1234 /* the export ends this far into its last page */
#define REGION_PAGES 48
#define KILL_PAGES (FILE_PAGES + 8)
#define SEED 57
#define NR_THREADS 8

static size_t ps;
static char file_path[64];
static uint64_t file_len;

struct server {
	pid_t pid;
	char sock[80];
	char pidfile[80];
	char uri[160];
};

/* A file of @len bytes, byte o = tu_pattern(o, SEED). */
static void make_file(uint64_t len)
{
	snprintf(file_path, sizeof(file_path), "/var/tmp/ufault_nbd_source_%d", (int)getpid());
	tu_pattern_file(file_path, len, SEED);
	file_len = len;
}

/* nbdkit serving the test file on a Unix socket, through nbdkit's delay
 * filter if @rdelay (e.g. "100ms" per read), read-only if @readonly (else
 * writable: the file plugin writes the file); ready once its pidfile is there
 * (written after it listens). Skips the test without nbdkit. */
static void server_start_opts(struct server *srv, const char *rdelay, bool readonly)
{
	static unsigned int serial;
	char delay[64];
	char *argv[16];
	int n = 0;
	struct stat st;

	argv[n++] = "nbdkit";
	argv[n++] = "--unix";
	argv[n++] = srv->sock;
	argv[n++] = "--pidfile";
	argv[n++] = srv->pidfile;
	argv[n++] = "-f";
	if (readonly)
		argv[n++] = "--readonly";
	argv[n++] = "--exit-with-parent";
	if (rdelay)
		argv[n++] = "--filter=delay"; /* filters before the plugin */
	argv[n++] = "file";
	argv[n++] = file_path;
	if (rdelay) {
		snprintf(delay, sizeof(delay), "rdelay=%s", rdelay);
		argv[n++] = delay;
	}
	argv[n] = NULL;
	snprintf(srv->sock, sizeof(srv->sock), "/tmp/ufault_nbd_%d_%u.sock", (int)getpid(), serial);
	snprintf(srv->pidfile, sizeof(srv->pidfile), "/tmp/ufault_nbd_%d_%u.pid", (int)getpid(),
		 serial++);
	snprintf(srv->uri, sizeof(srv->uri), "nbd+unix:///?socket=%s", srv->sock);
	unlink(srv->sock);
	unlink(srv->pidfile);
	fflush(NULL);
	srv->pid = fork();
	assert_true(srv->pid >= 0);
	if (!srv->pid) {
		int null = open("/dev/null", O_WRONLY);

		if (null >= 0)
			dup2(null, 2); /* quiet when the test kills it */
		execvp("nbdkit", argv);
		_exit(127);
	}
	for (int i = 0; i < 10000; i++) {
		int status;

		if (!stat(srv->pidfile, &st) && st.st_size > 0)
			return;
		if (waitpid(srv->pid, &status, WNOHANG) == srv->pid) {
			srv->pid = -1;
			if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
				skip(); /* no nbdkit here */
			fail_msg("nbdkit exited at start (status %#x)", status);
		}
		usleep(1000);
	}
	fail_msg("nbdkit did not start in 10 s");
}

static void server_start_delayed(struct server *srv, const char *rdelay)
{
	server_start_opts(srv, rdelay, false);
}

static void server_start(struct server *srv)
{
	server_start_opts(srv, NULL, false);
}

/* Re-read the export's file (what the server stored). */
static void read_file(uint64_t off, void *buf, size_t len)
{
	int fd = open(file_path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static void server_kill(struct server *srv)
{
	if (srv->pid > 0) {
		kill(srv->pid, SIGKILL);
		waitpid(srv->pid, NULL, 0);
	}
	srv->pid = -1;
	unlink(srv->sock);
	unlink(srv->pidfile);
}

static struct ufault_source nbd_source(const char *uri, uint64_t offset)
{
	struct ufault_source s;

	ufault_source_init(&s, UFAULT_SOURCE_NBD);
	s.nbd.uri = uri;
	s.offset = offset;
	return s;
}

/* What byte @i of a region whose source starts at @off must hold. */
static unsigned char expected(uint64_t off, size_t i)
{
	uint64_t o = off + i;

	return o < file_len ? tu_pattern(o, SEED) : 0;
}

struct toucher {
	const unsigned char *base;
	size_t pages;
	unsigned int id;
	unsigned int *touched; /* atomic: pages touched by all */
};

static void *touch_main(void *arg)
{
	struct toucher *t = arg;

	for (size_t pg = t->id; pg < t->pages; pg += NR_THREADS) {
		(void)tu_read_byte(t->base + pg * ps + (pg % 7) * 100);
		__atomic_fetch_add(t->touched, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void touch_all(const unsigned char *p, size_t pages, struct server *kill_after)
{
	pthread_t th[NR_THREADS];
	struct toucher t[NR_THREADS];
	unsigned int touched = 0;

	for (unsigned int i = 0; i < NR_THREADS; i++) {
		t[i] = (struct toucher){.base = p, .pages = pages, .id = i, .touched = &touched};
		assert_int_equal(pthread_create(&th[i], NULL, touch_main, &t[i]), 0);
	}
	if (kill_after) {
		/* Some pages in, the rest in flight or to come. */
		while (__atomic_load_n(&touched, __ATOMIC_RELAXED) < 16)
			usleep(100);
		server_kill(kill_after);
	}
	for (unsigned int i = 0; i < NR_THREADS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
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
	struct server srv;

	server_start(&srv);
	s = nbd_source(srv.uri, CHURN_OFF);
	c.base = ufault_mmap(ctx, NULL, c.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			     &s, 0);
	assert_ptr_not_equal(c.base, MAP_FAILED);
	tu_churn_run(&c, tu_test_seconds(1.0));
	assert_int_equal(ufault_munmap(ctx, c.base, c.len), 0);
	server_kill(&srv);
}

static void test_oracle(void **state)
{
	struct ufault_ctx *ctx = ((struct tu_fx *)*state)->ctx;
	/* The region ends 8 pages and a bit past the export's end. */
	const uint64_t off = (FILE_PAGES - REGION_PAGES + 9) * ps;
	struct server srv;
	struct ufault_source s;
	unsigned char *p;
	int base_fds;

	server_start(&srv);
	base_fds = tu_count_fds();
	s = nbd_source(srv.uri, off);
	p = ufault_mmap(ctx, NULL, REGION_PAGES * ps, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, &s, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	memset(srv.uri, 0, sizeof(srv.uri)); /* ufault holds its own copy */
	touch_all(p, REGION_PAGES, NULL);
	for (size_t i = 0; i < REGION_PAGES * ps; i++)
		if (p[i] != expected(off, i))
			fail_msg("[%s] byte %zu (export offset %llu) is 0x%02x, expected 0x%02x",
				 ufault_lock_mode_name(tu_mode), i, (unsigned long long)(off + i),
				 p[i], expected(off, i));
	/* A write stays in memory (the mapping is private). */
	p[5] = (unsigned char)~p[5];
	assert_int_equal(p[5], (unsigned char)~expected(off, 5));
	assert_int_equal(ufault_munmap(ctx, p, REGION_PAGES * ps), 0);
	/* Released: the connection is closed (after a quiescent state of
	 * every worker: poll, bounded). */
	assert_int_equal(tu_wait_fds(base_fds), base_fds);
	server_kill(&srv);
}

/*
 * The connection is driven by the workers' own event loops: registering
 * the source starts no thread. Destroying the context while reads are in
 * flight on it (a server answering each read after 100 ms, threads parked
 * on every page) returns once they completed, whichever worker issued them
 * and whichever drives the socket, and closes the connection.
 */
static void test_destroy_in_flight(void **state)
{
	struct ufault_ctx *ctx;
	struct server srv;
	struct ufault_source s;
	unsigned char *p;
	int base_fds, threads;

	(void)state;
	server_start_delayed(&srv, "100ms");
	base_fds = tu_count_fds();
	assert_int_equal(tu_ctx_create(&ctx, tu_mode, 2, 0), 0);
	threads = tu_count_threads();
	s = nbd_source(srv.uri, 0);
	p = ufault_mmap(ctx, NULL, REGION_PAGES * ps, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, &s, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	assert_int_equal(tu_count_threads(), threads);
	{
		pthread_t th[NR_THREADS];
		struct toucher t[NR_THREADS];
		unsigned int touched = 0;
		struct ufault_stats st;

		for (unsigned int i = 0; i < NR_THREADS; i++) {
			t[i] = (struct toucher){
			    .base = p, .pages = REGION_PAGES, .id = i, .touched = &touched};
			assert_int_equal(pthread_create(&th[i], NULL, touch_main, &t[i]), 0);
		}
		/* Every thread parked on its first page: reads in flight. */
		do {
			usleep(1000);
			st.size = sizeof(st);
			assert_int_equal(ufault_stats(ctx, &st), 0);
		} while (st.faults < NR_THREADS);
		ufault_ctx_destroy(ctx);
		/* Unregistered: the threads go on over ordinary memory. */
		for (unsigned int i = 0; i < NR_THREADS; i++)
			assert_int_equal(pthread_join(th[i], NULL), 0);
	}
	tu_unmap(p, REGION_PAGES * ps);
	assert_int_equal(tu_wait_fds(base_fds), base_fds);
	server_kill(&srv);
}

/*
 * Write-back (UFAULT_REGION_WRITEBACK): written pages go to the export with
 * NBD writes and a flush; a read-only export is refused (-EINVAL), with
 * nothing registered.
 */
static void test_writeback(void **state)
{
	struct ufault_ctx *ctx = ((struct tu_fx *)*state)->ctx;
	const size_t pages = 16;
	struct server srv;
	struct ufault_source s;
	unsigned char *p, *back, *want;

	server_start(&srv);
	s = nbd_source(srv.uri, 0);
	p = ufault_mmap(ctx, NULL, pages * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			&s, UFAULT_REGION_WRITEBACK);
	assert_ptr_not_equal(p, MAP_FAILED);
	want = malloc(pages * ps);
	back = malloc(pages * ps);
	assert_non_null(want);
	assert_non_null(back);
	for (size_t i = 0; i < pages * ps; i++)
		want[i] = expected(0, i);
	for (size_t pg = 1; pg < pages; pg += 3) {
		p[pg * ps + 17] = (unsigned char)(pg + 0x40);
		want[pg * ps + 17] = (unsigned char)(pg + 0x40);
	}
	assert_int_equal(ufault_flush(ctx, p, pages * ps), 0);
	read_file(0, back, pages * ps);
	assert_memory_equal(back, want, pages * ps);
	/* Unmapping flushes what was written since. */
	p[5] = 0x77;
	want[5] = 0x77;
	assert_int_equal(ufault_munmap(ctx, p, pages * ps), 0);
	read_file(0, back, pages * ps);
	assert_memory_equal(back, want, pages * ps);
	/* Put the file back as the other tests expect it. */
	server_kill(&srv);
	make_file(FILE_PAGES * ps + TAIL_BYTES);
	free(back);
	free(want);
}

static void test_writeback_readonly(void **state)
{
	struct ufault_ctx *ctx = ((struct tu_fx *)*state)->ctx;
	unsigned char *a = tu_map_anon(4 * ps, 0);
	struct server srv;
	struct ufault_source s;

	server_start_opts(&srv, NULL, true);
	s = nbd_source(srv.uri, 0);
	assert_int_equal(ufault_region_register(ctx, a, 4 * ps, &s, UFAULT_REGION_WRITEBACK, NULL),
			 -EINVAL);
	assert_int_equal(tu_zero_check(a, 4 * ps), -1); /* nothing registered */
	tu_unmap(a, 4 * ps);
	server_kill(&srv);
}

static void test_server_killed_zero_policy(void **state)
{
	struct ufault_ctx *ctx = ((struct tu_fx *)*state)->ctx;
	struct ufault_stats st = {.size = sizeof(st)};
	struct server srv;
	struct ufault_source s;
	unsigned char *p;
	size_t zeros = 0;

	server_start(&srv);
	s = nbd_source(srv.uri, 0);
	p = ufault_mmap(ctx, NULL, KILL_PAGES * ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, &s,
			UFAULT_REGION_ON_ERROR_ZERO);
	assert_ptr_not_equal(p, MAP_FAILED);
	touch_all(p, KILL_PAGES, &srv);
	/* Every page is whole: the export's bytes, or zeros after an error. */
	for (size_t pg = 0; pg < KILL_PAGES; pg++) {
		const unsigned char *q = p + pg * ps;

		if (tu_zero_check(q, ps) == -1) {
			zeros += pg * ps < file_len ? 1 : 0;
			continue;
		}
		for (size_t i = 0; i < ps; i++)
			if (q[i] != expected(0, pg * ps + i))
				fail_msg("[%s] page %zu byte %zu is 0x%02x, expected 0x%02x or a "
					 "zero page",
					 ufault_lock_mode_name(tu_mode), pg, i, q[i],
					 expected(0, pg * ps + i));
	}
	/* Pages touched after the kill failed: zeros, and counted. */
	assert_int_equal(ufault_stats(ctx, &st), 0);
	print_message("  [%s] %zu of %zu export pages zero after the kill; %llu source errors\n",
		      ufault_lock_mode_name(tu_mode), zeros, (size_t)(file_len / ps),
		      (unsigned long long)st.source_errors);
	assert_int_equal(ufault_munmap(ctx, p, KILL_PAGES * ps), 0);
	/* The fixture's teardown destroys the context: it must return. */
}

static void test_server_killed_sigbus_policy(void **state)
{
	int status;
	pid_t pid;

	(void)state; /* no fixture context: fork from a single-threaded parent */
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct ufault_ctx *ctx;
		struct ufault_source s;
		struct server srv;
		unsigned char *p;

		tu_watchdog(20);
		server_start(&srv);	 /* the child's own, before any thread */
		signal(SIGBUS, SIG_DFL); /* not CMocka's handler: die of it */
		if (tu_ctx_create(&ctx, tu_mode, 1, 0))
			_exit(2);
		s = nbd_source(srv.uri, 0);
		p = ufault_mmap(ctx, NULL, 2 * ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, &s, 0);
		if (p == MAP_FAILED)
			_exit(3);
		if (tu_read_byte(p + 7) != tu_pattern(7, SEED))
			_exit(5);
		server_kill(&srv);
		(void)tu_read_byte(p + ps); /* SIGBUS: the default action kills us */
		_exit(errno == EOPNOTSUPP ? 77 : 4);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
		skip();
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
	int ret;

	s = nbd_source(NULL, 0);
	assert_int_equal(ufault_region_register(ctx, a, 4 * ps, &s, 0, NULL), -EINVAL);
	s = nbd_source("this is not a URI", 0);
	assert_int_equal(ufault_region_register(ctx, a, 4 * ps, &s, 0, NULL), -EINVAL);
	s = nbd_source("nbd+unix:///?socket=/nonexistent/ufault_nbd.sock", 0);
	ret = ufault_region_register(ctx, a, 4 * ps, &s, 0, NULL);
	if (ret >= 0 || ret == -EINVAL)
		fail_msg("[%s] an unreachable server: %d, expected a connection error",
			 ufault_lock_mode_name(tu_mode), ret);
	/* Nothing was registered: the memory is ordinary (reads zeros). */
	assert_int_equal(tu_zero_check(a, 4 * ps), -1);
	tu_unmap(a, 4 * ps);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    tu_fx_test(test_oracle),
	    tu_fx_test(test_proxies_churn),
	    tu_watchdog_test(test_destroy_in_flight),
	    tu_fx_test(test_writeback),
	    tu_fx_test(test_writeback_readonly),
	    tu_fx_test(test_server_killed_zero_policy),
	    tu_watchdog_test(test_server_killed_sigbus_policy),
	    tu_fx_test(test_validation),
	};
	int failed;

	ps = tu_page_size();
	make_file(FILE_PAGES * ps + TAIL_BYTES);
	failed =
	    tu_run_every_mode("nbd_source", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
	unlink(file_path);
	return failed ? 1 : 0;
}
