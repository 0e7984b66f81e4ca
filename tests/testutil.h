/* SPDX-License-Identifier: MIT */
/*
 * testutil.h - small helpers shared by the integration and stress test
 * programs. Header-only (everything is static inline), no CMocka dependency,
 * so any test_*.c may include it as "../testutil.h".
 *
 * What is here, and the contract each helper keeps (keep it stable: other
 * test files depend on these names):
 *
 *  Skipping
 *    TU_SKIP             exit code 77: ctest reports "skipped".
 *    tu_skip(why)        print why and exit(77).
 *    tu_is_unavailable(rc)  rc is -EPERM/-ENOSYS: no userfaultfd here.
 *    tu_die(what, err)   print "what: strerror(|err|)" and exit(1): for
 *                        failures of the machine, not of the library.
 *
 *  Contexts
 *    tu_lock_mode(i), TU_NR_LOCK_MODES   iterate spec, region, range, global.
 *    tu_ctx_create(&ctx, mode, nr_workers, nr_uffds)
 *                        ufault_ctx_create() with those options (0 = library
 *                        default); exits 77 when userfaultfd is unavailable,
 *                        otherwise returns ufault_ctx_create()'s result.
 *    tu_ctx_create_cfg(&ctx, &cfg)   same, with a full config.
 *
 *  Memory
 *    tu_page_size()      the system page size.
 *    tu_map_anon(len, align)  private anonymous mapping of @len bytes whose
 *                        start is aligned to @align (0 = system page);
 *                        pages are not populated. Exits 1 on failure (the
 *                        machine, not the library, is broken then).
 *    tu_unmap(addr, len) munmap, exits 1 on failure.
 *    tu_reserve(len)     a PROT_NONE private anonymous reservation of @len
 *                        bytes (MAP_NORESERVE) that the test owns, so a
 *                        MAP_FIXED into it clobbers nothing else. Exits 1
 *                        on failure.
 *    tu_read_byte(p)     one volatile read (a touch the compiler keeps).
 *    tu_touch_spread(base, pages, page, nthreads)  @nthreads threads (at
 *                        most TU_TOUCH_MAX) read one byte of each of @pages
 *                        pages of @page bytes at once: thread i pages i,
 *                        i + nthreads, ... (byte (pg % 7) * 100 of page pg);
 *                        returns once all are done. Exits 1 if a thread
 *                        cannot be started or joined.
 *
 *  Data oracle
 *    tu_pattern(offset, seed)  byte of a pseudo-random but deterministic
 *                        pattern; NEVER 0, so a zero byte always means "this
 *                        was not filled from the pattern".
 *    tu_pattern_fill(buf, len, offset, seed)
 *    tu_pattern_check(buf, len, offset, seed)  -1 if every byte matches,
 *                        else the index of the first mismatch.
 *    tu_zero_check(buf, len)   -1 if every byte is 0, else first non-zero.
 *    tu_pattern_fill_cb  a ufault_fill_fn; its arg is the seed cast to a
 *                        pointer: (void *)(uintptr_t)seed.
 *    tu_pattern_source(offset, seed)  a callback source of that pattern,
 *                        starting at source @offset (made with
 *                        ufault_source_init(), so its size is set).
 *
 *  Gates (a fill that blocks until the test lets it go)
 *    struct tu_gate      lock, cond, entered (fills that reached the gate),
 *                        open, seed; initialise with TU_GATE_INIT(seed).
 *    tu_gate_pass(g)     in a fill: count this fill as entered, wake
 *                        tu_gate_wait_entered(), block until the gate is
 *                        open. No timeout (the process watchdog bounds it).
 *    tu_gate_wait_entered(g)  block until at least one fill has entered.
 *    tu_gate_open(g)     open the gate: every fill blocked in it, and every
 *                        later one, goes on.
 *    tu_gate_fill_cb     a ufault_fill_fn whose arg is a struct tu_gate *:
 *                        tu_gate_pass(), then tu_pattern(offset, g->seed).
 *
 *  Time (tests assert behaviour, never timing; these only bound run time)
 *    tu_now_ns()         CLOCK_MONOTONIC in ns.
 *    tu_test_seconds(def)  $UFAULT_TEST_SECONDS if set and > 0, else @def.
 *    tu_slowdown()       1, or 5 under TSan, 3 under ASan: scale watchdogs.
 *    tu_watchdog(secs)   arm alarm(): when it fires the process prints a
 *                        message and _exit(1)s, so a hang fails the test
 *                        instead of stalling ctest. secs is scaled by
 *                        tu_slowdown(); tu_watchdog(0) disarms. Per process
 *                        (fork children must arm their own).
 *
 *  Files and processes
 *    tu_pattern_file(path, len, seed)  write a file of @len bytes whose byte
 *                        o is tu_pattern(o, seed), synced; exits 1 on failure.
 *    tu_read_all(fd, buf, len) / tu_write_all(fd, buf, len)  all @len
 *                        bytes (EINTR retried): 0, or -1 (an error or EOF).
 *    tu_count_fds()      open file descriptors of this process.
 *    tu_count_threads()  threads of this process.
 *    tu_wait_fds(n)      poll (bounded: 2 s) until tu_count_fds() is @n;
 *                        returns the last count (a release may wait for a
 *                        worker's quiescent state).
 *    tu_child_exit(code) leave a forked child with @code: exit_group, so no
 *                        atexit handler or sanitizer report of the parent's
 *                        state changes it.
 *    TU_CHILD_CHECK(cond, code)  in a forked child (no CMocka there): if
 *                        @cond fails, print it and tu_child_exit(@code).
 */
#ifndef UFAULT_TESTUTIL_H
#define UFAULT_TESTUTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <ufault/ufault.h>

#define TU_SKIP 77

static inline void tu_skip(const char *why)
{
	fprintf(stderr, "SKIP: %s\n", why);
	fflush(NULL);
	exit(TU_SKIP);
}

static inline void tu_die(const char *what, int err)
{
	fprintf(stderr, "test infrastructure failure: %s: %s\n", what,
		strerror(err < 0 ? -err : err));
	fflush(NULL);
	exit(1);
}

/* ------------------------------------------------------------------ */
/* Contexts                                                             */
/* ------------------------------------------------------------------ */

#define TU_NR_LOCK_MODES 4

/* The four concrete lock modes, i in [0, TU_NR_LOCK_MODES). */
static inline enum ufault_lock_mode tu_lock_mode(unsigned int i)
{
	switch (i) {
	case 0:
		return UFAULT_LOCK_SPEC;
	case 1:
		return UFAULT_LOCK_REGION;
	case 2:
		return UFAULT_LOCK_RANGE;
	default:
		return UFAULT_LOCK_GLOBAL;
	}
}

static inline int tu_is_unavailable(int rc)
{
	return rc == -EPERM || rc == -ENOSYS;
}

static inline int tu_ctx_create_cfg(struct ufault_ctx **out, const struct ufault_config *cfg)
{
	int rc = ufault_ctx_create(out, cfg);

	if (tu_is_unavailable(rc))
		tu_skip("userfaultfd is not available to this process");
	return rc;
}

static inline int tu_ctx_create(struct ufault_ctx **out, enum ufault_lock_mode mode,
				unsigned int nr_workers, unsigned int nr_uffds)
{
	struct ufault_config cfg;

	ufault_config_init(&cfg);
	cfg.lock_mode = mode;
	cfg.nr_workers = nr_workers;
	cfg.nr_uffds = nr_uffds;
	return tu_ctx_create_cfg(out, &cfg);
}

/* ------------------------------------------------------------------ */
/* Memory                                                               */
/* ------------------------------------------------------------------ */

static inline size_t tu_page_size(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

static inline void *tu_map_anon(size_t len, size_t align)
{
	size_t ps = tu_page_size();
	size_t span;
	char *p, *start;

	if (align < ps)
		align = ps;
	span = len + align - ps;
	p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		 -1, 0);
	if (p == MAP_FAILED)
		tu_die("mmap", errno);
	start = (char *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
	if (start > p)
		munmap(p, (size_t)(start - p));
	if (start + len < p + span)
		munmap(start + len, (size_t)(p + span - (start + len)));
	return start;
}

static inline void tu_unmap(void *addr, size_t len)
{
	if (munmap(addr, len))
		tu_die("munmap", errno);
}

static inline void *tu_reserve(size_t len)
{
	void *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		tu_die("mmap reserve", errno);
	return p;
}

static inline unsigned char tu_read_byte(const void *p)
{
	return *(const volatile unsigned char *)p;
}

#define TU_TOUCH_MAX 16

struct tu_toucher {
	const unsigned char *base;
	size_t pages, page;
	unsigned int id, n;
};

static inline void *tu_touch_main(void *arg)
{
	const struct tu_toucher *t = arg;

	for (size_t pg = t->id; pg < t->pages; pg += t->n)
		(void)tu_read_byte(t->base + pg * t->page + (pg % 7) * 100);
	return NULL;
}

static inline void tu_touch_spread(const void *base, size_t pages, size_t page,
				   unsigned int nthreads)
{
	struct tu_toucher t[TU_TOUCH_MAX];
	pthread_t th[TU_TOUCH_MAX];
	int err;

	if (nthreads > TU_TOUCH_MAX)
		tu_die("tu_touch_spread: too many threads", EINVAL);
	for (unsigned int i = 0; i < nthreads; i++) {
		t[i] = (struct tu_toucher){
		    .base = base, .pages = pages, .page = page, .id = i, .n = nthreads};
		err = pthread_create(&th[i], NULL, tu_touch_main, &t[i]);
		if (err)
			tu_die("tu_touch_spread: pthread_create", err);
	}
	for (unsigned int i = 0; i < nthreads; i++) {
		err = pthread_join(th[i], NULL);
		if (err)
			tu_die("tu_touch_spread: pthread_join", err);
	}
}

/* ------------------------------------------------------------------ */
/* Data oracle                                                          */
/* ------------------------------------------------------------------ */

static inline unsigned char tu_pattern(uint64_t offset, uint64_t seed)
{
	uint64_t x = offset ^ (seed * 0x9e3779b97f4a7c15ull);

	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 29;
	return (unsigned char)(x | 1); /* never 0 */
}

static inline void tu_pattern_fill(void *buf, size_t len, uint64_t offset, uint64_t seed)
{
	unsigned char *b = buf;

	for (size_t i = 0; i < len; i++)
		b[i] = tu_pattern(offset + i, seed);
}

static inline long tu_pattern_check(const void *buf, size_t len, uint64_t offset, uint64_t seed)
{
	const volatile unsigned char *b = buf;

	for (size_t i = 0; i < len; i++)
		if (b[i] != tu_pattern(offset + i, seed))
			return (long)i;
	return -1;
}

static inline long tu_zero_check(const void *buf, size_t len)
{
	const volatile unsigned char *b = buf;

	for (size_t i = 0; i < len; i++)
		if (b[i])
			return (long)i;
	return -1;
}

/* A ufault_fill_fn producing tu_pattern(offset, seed); arg is the seed. */
/*
 * Generation oracles (write-back and eviction tests): page @page holds
 * generation @gen >= 1 when its 64-bit word k is tu_gen_word(page, gen, k);
 * generation 0 is the pattern file's bytes at @off (seed @seed).
 */
static inline uint64_t tu_gen_word(uint64_t page, uint64_t gen, uint64_t k)
{
	return (page * 0x9e3779b97f4a7c15ull) ^ (gen << 20) ^ k;
}

static inline bool tu_gen_holds(const void *p, size_t ps, uint64_t page, uint64_t gen, uint64_t off,
				uint64_t seed)
{
	const volatile uint64_t *w = (const volatile uint64_t *)p;

	if (!gen)
		return tu_pattern_check(p, ps, off, seed) == -1;
	for (uint64_t k = 0; k < ps / 8; k++)
		if (w[k] != tu_gen_word(page, gen, k))
			return false;
	return true;
}

/* Words [@from, @to) of page @page (at @p) written at generation @gen. */
static inline void tu_gen_write(void *p, uint64_t page, uint64_t gen, uint64_t from, uint64_t to)
{
	volatile uint64_t *w = (volatile uint64_t *)p;

	for (uint64_t k = from; k < to; k++)
		w[k] = tu_gen_word(page, gen, k);
}

static inline int tu_pattern_fill_cb(void *arg, uint64_t offset, void *buf, size_t len)
{
	tu_pattern_fill(buf, len, offset, (uint64_t)(uintptr_t)arg);
	return 0;
}

static inline struct ufault_source tu_pattern_source(uint64_t offset, uint64_t seed)
{
	struct ufault_source s;

	ufault_source_init(&s, UFAULT_SOURCE_CALLBACK);
	s.offset = offset;
	s.callback.fill = tu_pattern_fill_cb;
	s.callback.arg = (void *)(uintptr_t)seed;
	return s;
}

/* ------------------------------------------------------------------ */
/* Gates                                                                */
/* ------------------------------------------------------------------ */

struct tu_gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned int entered; /* under lock: fills that reached the gate */
	bool open;	      /* under lock */
	uint64_t seed;	      /* tu_gate_fill_cb's pattern */
};

#define TU_GATE_INIT(seed_)                                                                        \
	{                                                                                          \
		.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER,               \
		.seed = (seed_)                                                                    \
	}

static inline void tu_gate_pass(struct tu_gate *g)
{
	pthread_mutex_lock(&g->lock);
	g->entered++;
	pthread_cond_broadcast(&g->cond);
	while (!g->open)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
}

static inline void tu_gate_wait_entered(struct tu_gate *g)
{
	pthread_mutex_lock(&g->lock);
	while (!g->entered)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
}

static inline void tu_gate_open(struct tu_gate *g)
{
	pthread_mutex_lock(&g->lock);
	g->open = true;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

/* A ufault_fill_fn: waits at the gate @arg, then fills its pattern. */
static inline int tu_gate_fill_cb(void *arg, uint64_t offset, void *buf, size_t len)
{
	struct tu_gate *g = arg;

	tu_gate_pass(g);
	tu_pattern_fill(buf, len, offset, g->seed);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Time                                                                 */
/* ------------------------------------------------------------------ */

static inline uint64_t tu_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline double tu_test_seconds(double def)
{
	const char *s = getenv("UFAULT_TEST_SECONDS");
	double v;

	if (!s || !*s)
		return def;
	v = strtod(s, NULL);
	return v > 0 ? v : def;
}

static inline unsigned int tu_slowdown(void)
{
#if defined(__SANITIZE_THREAD__)
	return 5;
#elif defined(__SANITIZE_ADDRESS__)
	return 3;
#else
	return 1;
#endif
}

static inline void tu_watchdog_fired(int sig)
{
	static const char msg[] = "WATCHDOG: test hung, failing it\n";
	ssize_t r = write(2, msg, sizeof(msg) - 1);

	(void)sig;
	(void)r;
	_exit(1);
}

static inline void tu_watchdog(unsigned int secs)
{
	struct sigaction sa;

	if (!secs) {
		alarm(0);
		return;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = tu_watchdog_fired;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	alarm(secs * tu_slowdown());
}

/* ------------------------------------------------------------------ */
/* Files and processes                                                  */
/* ------------------------------------------------------------------ */

/* All @len bytes through read(2) (@wr false) or write(2): 0, or -1. */
static inline int tu_io_all(int fd, void *buf, size_t len, bool wr)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = wr ? write(fd, (char *)buf + done, len - done)
			       : read(fd, (char *)buf + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

static inline int tu_read_all(int fd, void *buf, size_t len)
{
	return tu_io_all(fd, buf, len, false);
}

static inline int tu_write_all(int fd, const void *buf, size_t len)
{
	return tu_io_all(fd, (void *)buf, len, true);
}

static inline void tu_pattern_file(const char *path, size_t len, uint64_t seed)
{
	char *buf = malloc(len);
	int fd;

	if (!buf)
		tu_die("allocating the test file's contents", ENOMEM);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		tu_die("creating the test file", errno);
	tu_pattern_fill(buf, len, 0, seed);
	if (write(fd, buf, len) != (ssize_t)len || fsync(fd))
		tu_die("writing the test file", errno);
	close(fd);
	free(buf);
}

static inline int tu_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		tu_die("opendir /proc/self/fd", errno);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* Threads of this process (/proc/self/task). */
static inline int tu_count_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	int n = 0;
	struct dirent *e;

	if (!d)
		tu_die("opendir /proc/self/task", errno);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static inline int tu_wait_fds(int want)
{
	int n = tu_count_fds();

	for (int i = 0; i < 2000 && n != want; i++) {
		usleep(1000);
		n = tu_count_fds();
	}
	return n;
}

/*
 * Straight to exit_group(2): under TSan, _exit() is intercepted and turns
 * into 66 if the process ever reported a race, and a child inherits the
 * parent's count (a race found earlier in the parent would fail every
 * child). The child's own reports are still printed.
 */
#define TU_MAX_FDS 4 /* fds one tu_send_fds() message carries */

/* Send @len bytes of @data with @fds[0..@n) (SCM_RIGHTS, @n <= TU_MAX_FDS)
 * over @sock; 0 or -1. */
static inline int tu_send_fds(int sock, const int *fds, unsigned int n, const void *data,
			      size_t len)
{
	char cbuf[CMSG_SPACE(TU_MAX_FDS * sizeof(int))];
	struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cbuf,
			    .msg_controllen = CMSG_SPACE(n * sizeof(int))};
	struct cmsghdr *c;

	if (!n || n > TU_MAX_FDS)
		return -1;
	memset(cbuf, 0, sizeof(cbuf));
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(n * sizeof(int));
	memcpy(CMSG_DATA(c), fds, n * sizeof(int));
	return sendmsg(sock, &mh, 0) == (ssize_t)len ? 0 : -1;
}

/* Receive @len bytes into @data and up to @max fds into @fds (close-on-
 * exec); the number of fds that came, or -1 (a short message). */
static inline int tu_recv_fds(int sock, int *fds, unsigned int max, void *data, size_t len)
{
	char cbuf[CMSG_SPACE(TU_MAX_FDS * sizeof(int))];
	struct iovec iov = {.iov_base = data, .iov_len = len};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *c;
	unsigned int n;

	if (recvmsg(sock, &mh, MSG_CMSG_CLOEXEC) != (ssize_t)len)
		return -1;
	c = CMSG_FIRSTHDR(&mh);
	if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
		return 0;
	n = (unsigned int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
	memcpy(fds, CMSG_DATA(c), (n < max ? n : max) * sizeof(int));
	for (unsigned int i = max; i < n; i++) { /* more than asked for */
		int extra;

		memcpy(&extra, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
		close(extra);
	}
	return (int)(n < max ? n : max);
}

static inline __attribute__((noreturn)) void tu_child_exit(int code)
{
	fflush(NULL);
	syscall(SYS_exit_group, code);
	_exit(code);
}

#define TU_CHILD_CHECK(cond, code)                                                                 \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "child check failed (%d): %s\n", code, #cond);             \
			tu_child_exit(code);                                                       \
		}                                                                                  \
	} while (0)

#endif /* UFAULT_TESTUTIL_H */
