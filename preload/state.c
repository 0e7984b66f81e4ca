// SPDX-License-Identifier: MIT
/*
 * state.c - the preload shim's state (shim.h).
 *
 * Configuration (read once, at the first call that needs it):
 *   UFAULT_MIN_BYTES  the smallest private anonymous mapping made a region
 *                     (N, NK, NM or NG; default 1M, at least one page);
 *   UFAULT_WORKERS    the context's workers (1..64, default 2);
 *   UFAULT_FAULT_AROUND  ufault_config.fault_around_max (default 0: one page
 *                     per fault, as the kernel's anonymous memory; a
 *                     sequential toucher then pays a round trip per page);
 *   UFAULT_TRACE      a file the first-touch report is appended to at exit;
 *   UFAULT_MEMORY_LIMIT  a budget (N, NK, NM, NG; at least 1M) for the
 *                     regions: they are made write-back over a swap file
 *                     (swap.h), and the context's evictor keeps at most
 *                     that much of them resident;
 *   UFAULT_SWAP_DIR   where that file is made (default $TMPDIR, /var/tmp);
 *   UFAULT_DAEMON     ufaultd's socket: the regions are served by the
 *                     daemon (daemon.h) instead of a context of this
 *                     process (if it cannot be reached, in-process);
 *   UFAULT_LOCK_MODE, UFAULT_LOG  read by libufault itself.
 *
 * The context and its workers are made when the shim is loaded (its
 * constructor), never later: making them needs memory from the program's
 * allocator (pthread_create allocates the new thread's TLS vector with
 * calloc), and a large mmap is often made by that allocator with its lock
 * held (jemalloc does), so a context made there would wait for that lock
 * forever. Mappings made before the constructor ran (by the loader, or
 * constructors that ran first) are the kernel's.
 *
 * fork(2): the child gets no workers and makes no regions: the kernel drops
 * the parent's uffd registrations from the child's copy of the memory (no
 * UFFD_FEATURE_EVENT_FORK), so its copies of the regions are plain memory
 * before it touches anything: pages the parent filled are copied, the
 * others read zeros, as they would have from the zero source. Every call
 * of the child goes to the kernel; an exec(2) starts the shim afresh.
 * Under UFAULT_MEMORY_LIMIT the pages in the swap file must be in memory
 * for that: before the fork the budget is removed (in force when the call
 * returns: nothing is evicted after it) and every page in the file is read
 * back (swap_bring_back()); after it the parent sets the budget again and
 * its evictor brings it down. So a fork costs the reading back, and for a
 * moment the whole of the regions is resident. The child runs without a
 * limit until it execs. vfork(2) and posix_spawn(3) run no fork handlers
 * and need none: the child shares the memory until it execs. Under
 * UFAULT_DAEMON the daemon serves the child's copies through the child's
 * own uffd (UFFD_EVENT_FORK), and the child registers nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <ufault/protocol.h>
#include <ufault/ufault.h>

#include "daemon.h"
#include "shim.h"
#include "swap.h"
#include "util.h"

#define DEFAULT_MIN_BYTES (1u << 20)
#define DEFAULT_WORKERS 2u
#define TRACE_MAX 65536u /* mappings the report can list */
#define HEAT_CELLS 64u	 /* columns of a mapping's heat map */
#define MIN_LIMIT (1u << 20)

static __thread unsigned int inside __attribute__((tls_model("initial-exec")));

/* A region made, for the report. */
struct mapping {
	uint64_t start, len;
	uint64_t touched_gone; /* pages found resident in parts unmapped */
	int live;
};

static struct {
	pthread_once_t once;
	pthread_mutex_t lock;	/* creation, fork, the mappings */
	struct ufault_ctx *ctx; /* atomic: this process's, or NULL */
	size_t min_bytes, fault_around;
	size_t limit; /* UFAULT_MEMORY_LIMIT asked for (0: none) */
	bool limited; /* ... and in force */
	unsigned int workers;
	pid_t pid;	 /* the process the state is of (not a vfork child) */
	int reported;	 /* the report is written */
	uint64_t lo, hi; /* atomic: the span of the regions made since the fork */
	uint64_t made, refused;
	char trace[4096]; /* "": no report */
	char daemon[108]; /* UFAULT_DAEMON, a socket path ("": in-process) */
	struct mapping *map;
	unsigned int nr_map;
	uint64_t unlisted;
} S = {
    .once = PTHREAD_ONCE_INIT,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .min_bytes = DEFAULT_MIN_BYTES,
    .workers = DEFAULT_WORKERS,
    .lo = UINT64_MAX,
};

bool shim_inside(void)
{
	return inside != 0;
}

void shim_enter(void)
{
	inside++;
}

void shim_leave(void)
{
	inside--;
}

/* A line on stderr, with no allocation (the program may be inside its
 * allocator). */
void shim_say(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 1;
	if (n > 0 && write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

/* The context's budget: UFAULT_MEMORY_LIMIT's bytes, or none (0). */
static int set_budget(struct ufault_ctx *c, size_t bytes)
{
	struct ufault_budget b = {.size = sizeof(b), .bytes = bytes};

	return ufault_ctx_set_budget(c, &b);
}

static void fork_prepare(void)
{
	struct ufault_ctx *c = shim_ctx_current();

	if (c && S.limited && !shim_inside()) {
		shim_enter();
		if (set_budget(c, 0))
			shim_say("ufault_preload: fork: the budget cannot be lifted: pages in the "
				 "swap file may read as zeros in the child\n");
		swap_bring_back(c);
		shim_leave();
	}
	pthread_mutex_lock(&S.lock);
}

static void fork_parent(void)
{
	struct ufault_ctx *c = shim_ctx_current();

	pthread_mutex_unlock(&S.lock);
	if (c && S.limited && !shim_inside()) {
		shim_enter();
		swap_after_fork(c);
		if (set_budget(c, S.limit))
			shim_say("ufault_preload: after fork: the budget cannot be set again: no "
				 "memory limit from now on\n");
		shim_leave();
	}
}

/* The child: one thread, this one. Its regions are plain memory already. */
static void fork_child(void)
{
	/* The parent's context stays in the child's memory, unused (its
	 * fds close at exec: all are O_CLOEXEC). */
	__atomic_store_n(&S.ctx, NULL, __ATOMIC_RELEASE);
	__atomic_store_n(&S.lo, UINT64_MAX, __ATOMIC_RELAXED);
	__atomic_store_n(&S.hi, 0, __ATOMIC_RELAXED);
	for (unsigned int i = 0; i < S.nr_map; i++)
		S.map[i].live = 0;
	S.made = S.refused = 0;
	S.limited = false; /* the child has no context, so no budget */
	daemon_forget();
	S.pid = getpid();
	S.reported = 0;
	pthread_mutex_unlock(&S.lock);
}

/* $@name, a size (ufault__parse_size) from @min to @max, into *@out; a
 * value that is not one is reported and *@out kept (the default). */
static void env_size(const char *name, uint64_t min, uint64_t max, size_t *out)
{
	const char *v = getenv(name);
	uint64_t n;

	if (!v || !*v)
		return;
	if (ufault__parse_size(v, &n) && n >= min && n <= max) {
		*out = (size_t)n;
		return;
	}
	if (max == SIZE_MAX)
		shim_say(
		    "ufault_preload: %s=%s: not a size (N, NK, NM, NG) of at least %llu; using "
		    "%zu\n",
		    name, v, (unsigned long long)min, *out);
	else
		shim_say(
		    "ufault_preload: %s=%s: not a size (N, NK, NM, NG) from %llu to %llu; using "
		    "%zu\n",
		    name, v, (unsigned long long)min, (unsigned long long)max, *out);
}

/* $@name, a path, into @buf (@size bytes); one too long is reported
 * (then @instead happens) and @buf left empty. */
static void env_path(const char *name, char *buf, size_t size, const char *instead)
{
	const char *v = getenv(name);

	if (!v || !*v)
		return;
	if (strlen(v) < size)
		strcpy(buf, v);
	else
		shim_say("ufault_preload: %s: path too long: %s\n", name, instead);
}

static void configure(void)
{
	size_t workers = S.workers;

	S.pid = getpid();
	env_size("UFAULT_MIN_BYTES", (uint64_t)sysconf(_SC_PAGESIZE), SIZE_MAX, &S.min_bytes);
	env_size("UFAULT_WORKERS", 1, 64, &workers);
	S.workers = (unsigned int)workers;
	env_size("UFAULT_FAULT_AROUND", 0, 2u << 20, &S.fault_around);
	env_size("UFAULT_MEMORY_LIMIT", MIN_LIMIT, SIZE_MAX, &S.limit);
	env_path("UFAULT_TRACE", S.trace, sizeof(S.trace), "no report");
	env_path("UFAULT_DAEMON", S.daemon, sizeof(S.daemon), "faults served in-process");
	if (pthread_atfork(fork_prepare, fork_parent, fork_child))
		shim_say("ufault_preload: pthread_atfork failed\n");
}

bool shim_limited(void)
{
	return S.limited;
}

size_t shim_min_bytes(void)
{
	pthread_once(&S.once, configure);
	return S.min_bytes;
}

struct ufault_ctx *shim_ctx_current(void)
{
	return __atomic_load_n(&S.ctx, __ATOMIC_ACQUIRE);
}

bool shim_kernel_reads(struct ufault_ctx *c, struct ufault_remote *rm)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	void *p = shim_pages(ps);
	struct ufault_region *r = NULL;
	struct ufault_source src;
	bool ok = false;
	int pfd[2], ret;

	if (!p)
		return false;
	ufault_source_init(&src, UFAULT_SOURCE_ZERO);
	ret = c ? ufault_region_register(c, p, ps, &src, 0, &r)
		: ufault_remote_register(rm, p, ps, -1, 0, 0);
	if (!ret && !pipe2(pfd, O_CLOEXEC)) {
		ok = write(pfd[1], p, 1) == 1;
		close(pfd[0]);
		close(pfd[1]);
	}
	if (r)
		ufault_region_unregister(c, r);
	else if (!c && !ret)
		ufault_remote_unregister(rm, p, ps);
	syscall(SYS_munmap, p, ps);
	return ok;
}

/* At load: the context, or a line saying why there is none. */
__attribute__((constructor)) static void start(void)
{
	struct ufault_config cfg;
	struct ufault_ctx *c;
	int ret;

	pthread_once(&S.once, configure);
	shim_enter();
	if (S.daemon[0]) {
		ret = daemon_connect(S.daemon);
		if (!ret && S.limit)
			shim_say("ufault_preload: UFAULT_MEMORY_LIMIT is not served by ufaultd: no "
				 "memory limit\n");
		if (!ret) {
			shim_leave();
			return;
		}
		shim_say("ufault_preload: UFAULT_DAEMON=%s: %s: faults served in-process\n",
			 S.daemon, ufault_strerror(ret));
	}
	ufault_config_init(&cfg);
	cfg.nr_workers = S.workers;
	cfg.fault_around_max = S.fault_around;
	/* The program's own bad calls (a munmap the kernel refuses too) are
	 * not ufault's to report: errors only, unless $UFAULT_LOG asks. */
	cfg.log_level = UFAULT_LOG_ERROR;
	ret = ufault_ctx_create(&c, &cfg);
	if (!ret && !shim_kernel_reads(c, NULL)) {
		ufault_ctx_destroy(c);
		shim_leave();
		shim_say(
		    "ufault_preload: this process's userfaultfd takes user-mode faults only (an "
		    "unprivileged process's, with vm.unprivileged_userfaultfd 0 and no access to "
		    "/dev/userfaultfd): a system call into memory never touched would fail, so "
		    "every mapping is the kernel's\n");
		return;
	}
	if (!ret && S.limit) {
		int err = swap_open();

		if (!err)
			err = set_budget(c, S.limit);
		if (err)
			shim_say("ufault_preload: UFAULT_MEMORY_LIMIT: %s: no memory limit\n",
				 ufault_strerror(err));
		S.limited = !err;
	}
	shim_leave();
	if (ret) {
		shim_say("ufault_preload: no context (%s): every mapping is the kernel's\n",
			 ufault_strerror(ret));
		return;
	}
	__atomic_store_n(&S.ctx, c, __ATOMIC_RELEASE);
}

bool shim_may_hold(uint64_t start, uint64_t end)
{
	return start < __atomic_load_n(&S.hi, __ATOMIC_ACQUIRE) &&
	       end > __atomic_load_n(&S.lo, __ATOMIC_ACQUIRE);
}

static void widen(uint64_t start, uint64_t end)
{
	uint64_t v = __atomic_load_n(&S.lo, __ATOMIC_RELAXED);

	while (start < v && !__atomic_compare_exchange_n(&S.lo, &v, start, true, __ATOMIC_RELEASE,
							 __ATOMIC_RELAXED))
		;
	v = __atomic_load_n(&S.hi, __ATOMIC_RELAXED);
	while (end > v && !__atomic_compare_exchange_n(&S.hi, &v, end, true, __ATOMIC_RELEASE,
						       __ATOMIC_RELAXED))
		;
}

/* Pages of [start, start + len) in the page tables (mincore; unmapped
 * parts count none), and, if @heat, each cell's share in @heat. */
static uint64_t resident(uint64_t start, uint64_t len, unsigned int *heat)
{
	uint64_t ps = (uint64_t)sysconf(_SC_PAGESIZE), pages = len / ps, n = 0;
	unsigned char vec[512];

	for (uint64_t i = 0; i < pages; i += sizeof(vec)) {
		uint64_t k = pages - i < sizeof(vec) ? pages - i : sizeof(vec);

		if (mincore((void *)(uintptr_t)(start + i * ps), k * ps, vec))
			continue;
		for (uint64_t j = 0; j < k; j++) {
			if (!(vec[j] & 1))
				continue;
			n++;
			if (heat)
				heat[(i + j) * HEAT_CELLS / pages]++;
		}
	}
	return n;
}

static bool tracing(void)
{
	pthread_once(&S.once, configure);
	return S.trace[0] != 0;
}

void shim_note_region(void *p, size_t len)
{
	uint64_t a = (uint64_t)(uintptr_t)p;

	widen(a, a + len);
	__atomic_fetch_add(&S.made, 1, __ATOMIC_RELAXED);
	if (!tracing())
		return;
	pthread_mutex_lock(&S.lock);
	if (!S.map)
		S.map = shim_pages(TRACE_MAX * sizeof(*S.map));
	if (S.map && S.nr_map < TRACE_MAX)
		S.map[S.nr_map++] = (struct mapping){.start = a, .len = len, .live = 1};
	else
		S.unlisted++;
	pthread_mutex_unlock(&S.lock);
}

void shim_note_unmap(void *p, size_t len)
{
	uint64_t a = (uint64_t)(uintptr_t)p, e = a + len;

	if (!tracing())
		return;
	pthread_mutex_lock(&S.lock);
	for (unsigned int i = 0; i < S.nr_map; i++) {
		struct mapping *m = &S.map[i];
		uint64_t s = m->start > a ? m->start : a,
			 t = m->start + m->len < e ? m->start + m->len : e;

		if (!m->live || s >= t)
			continue;
		m->touched_gone += resident(s, t - s, NULL);
		if (s == m->start && t == m->start + m->len)
			m->live = 0;
	}
	pthread_mutex_unlock(&S.lock);
}

void shim_note_remap(void *old, size_t old_len, void *p, size_t len)
{
	uint64_t a = (uint64_t)(uintptr_t)old, n = (uint64_t)(uintptr_t)p;

	widen(n, n + len);
	if (!tracing())
		return;
	pthread_mutex_lock(&S.lock);
	for (unsigned int i = 0; i < S.nr_map; i++)
		if (S.map[i].live && S.map[i].start == a && S.map[i].len == old_len) {
			S.map[i].start = n;
			S.map[i].len = len;
		}
	pthread_mutex_unlock(&S.lock);
}

void shim_count_refused(void)
{
	__atomic_fetch_add(&S.refused, 1, __ATOMIC_RELAXED);
}

/*
 * UFAULT_TRACE: at exit (exit(3), or _exit(2), which shim.c interposes for
 * it), appended to the file, one block per process:
 *   ufault_preload pid P: R regions made, F refused; faults N, pages installed M
 *   ufault_preload pid P: lock mode M, W workers (or: regions served by
 *                          ufaultd at PATH)
 *   ufault_preload pid P: memory limit L: resident ..., evicted ... (with
 *                                          UFAULT_MEMORY_LIMIT)
 *   P 0xSTART LEN pages touched T/TOTAL |heat map|
 * where the heat map has HEAT_CELLS cells, each ' ' (none of its pages
 * touched) to '@' (all), and a mapping unmapped before exit shows
 * "unmapped" with the pages it had touched.
 */
void shim_report(void)
{
	static const char shade[] = " .:-=+*#%@";
	struct ufault_stats st = {.size = sizeof(st)};
	struct ufault_ctx *c = shim_ctx_current();
	uint64_t ps = (uint64_t)sysconf(_SC_PAGESIZE);
	int fd;

	/* Once, and not from a vfork child (the state is its parent's). */
	if (!S.trace[0] || S.pid != getpid() ||
	    __atomic_exchange_n(&S.reported, 1, __ATOMIC_ACQ_REL))
		return;
	shim_enter();
	fd = open(S.trace, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0) {
		shim_say("ufault_preload: UFAULT_TRACE=%s: %s\n", S.trace, strerror(errno));
		shim_leave();
		return;
	}
	if (!c || ufault_stats(c, &st))
		memset(&st, 0, sizeof(st));
	if (daemon_on()) {
		struct ufault_proto_stats ds;

		if (!daemon_stats(&ds)) {
			st.faults = ds.faults;
			st.pages_installed = ds.pages;
		}
	}
	pthread_mutex_lock(&S.lock);
	dprintf(fd,
		"ufault_preload pid %d: %llu regions made, %llu refused; faults %llu, pages "
		"installed %llu%s\n",
		(int)getpid(), (unsigned long long)S.made, (unsigned long long)S.refused,
		(unsigned long long)st.faults, (unsigned long long)st.pages_installed,
		S.unlisted ? " (some mappings not listed)" : "");
	if (daemon_on())
		dprintf(fd, "ufault_preload pid %d: regions served by ufaultd at %s\n",
			(int)getpid(), S.daemon);
	else if (c)
		dprintf(fd, "ufault_preload pid %d: lock mode %s, %u workers\n", (int)getpid(),
			ufault_lock_mode_name(ufault_ctx_lock_mode(c)), ufault_ctx_nr_workers(c));
	if (S.limited) {
		unsigned long long stored, written;

		swap_counts(&stored, &written);
		dprintf(fd,
			"ufault_preload pid %d: memory limit %zu: resident %llu pages, evicted "
			"%llu (%llu written to the swap file), refaults %llu; swap file pages %llu "
			"now, %llu writes\n",
			(int)getpid(), S.limit, (unsigned long long)st.resident,
			(unsigned long long)st.evicted, (unsigned long long)st.evicted_dirty,
			(unsigned long long)st.refaults, stored, written);
	}
	for (unsigned int i = 0; i < S.nr_map; i++) {
		const struct mapping *m = &S.map[i];
		unsigned int heat[HEAT_CELLS] = {0};
		char row[HEAT_CELLS + 1];
		uint64_t pages = m->len / ps, t;

		if (!m->live) {
			dprintf(fd, "%d %#llx %llu unmapped, pages touched %llu\n", (int)getpid(),
				(unsigned long long)m->start, (unsigned long long)m->len,
				(unsigned long long)m->touched_gone);
			continue;
		}
		t = resident(m->start, m->len, heat) + m->touched_gone;
		for (unsigned int k = 0; k < HEAT_CELLS; k++) {
			uint64_t cell = pages / HEAT_CELLS ? pages / HEAT_CELLS : 1;

			row[k] = shade[heat[k] * 9 / cell > 9 ? 9 : heat[k] * 9 / cell];
		}
		row[HEAT_CELLS] = 0;
		dprintf(fd, "%d %#llx %llu pages touched %llu/%llu |%s|\n", (int)getpid(),
			(unsigned long long)m->start, (unsigned long long)m->len,
			(unsigned long long)t, (unsigned long long)pages, row);
	}
	pthread_mutex_unlock(&S.lock);
	close(fd);
	shim_leave();
}

__attribute__((destructor)) static void at_exit(void)
{
	shim_report();
}
