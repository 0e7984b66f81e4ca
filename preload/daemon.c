// SPDX-License-Identifier: MIT
/*
 * daemon.c - UFAULT_DAEMON (daemon.h).
 *
 * The process connects to ufaultd at load (ufault_remote_connect(): one
 * uffd handed to the daemon, a monitor thread that reconnects, or serves
 * in-process once the daemon stays away), and each mapping of a region's
 * kind is registered with it as a zero-filled range
 * (ufault_remote_register(), fd -1). The daemon has no proxies for this
 * process, so the shim keeps its own table of what is registered (spans,
 * in address order) and keeps it true to the kernel's mappings:
 *   munmap, MAP_FIXED, mremap, shmat(SHM_REMAP) over registered memory:
 *     the spans there are unregistered first, the parts of them outside
 *     the range registered again, then the kernel's call is made; what
 *     mremap returns is registered again, as is a new MAP_FIXED mapping of
 *     a region's kind;
 *   mprotect, madvise: the kernel's (MADV_DONTNEED reaches the daemon as
 *     UFFD_EVENT_REMOVE: those pages read zeros again).
 * Between an unregistration and the next registration, a thread that
 * touches the memory gets the kernel's zero page: the same bytes the
 * daemon would give, so no window is visible. A registration the daemon
 * refuses (UFAULT_PROTO_MAX_REGIONS per client, ...) leaves the mapping
 * the kernel's. One lock over the table and the calls that change it.
 *
 * fork(2): the daemon serves the child's copies through the child's uffd
 * (UFFD_EVENT_FORK); the handle is the parent's, so the child registers
 * nothing (daemon_forget()). A vfork child sharing the table cannot
 * register either (ECHILD: a pid of its own).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <ufault/protocol.h>
#include <ufault/ufault.h>

#include "daemon.h"
#include "shim.h"

struct span {
	uint64_t start, end;
};

static struct {
	pthread_mutex_t lock; /* the spans, and the calls that change them */
	struct ufault_remote *rm;
	bool on;	/* atomic */
	struct span *v; /* in address order, UFAULT_PROTO_MAX_REGIONS at most */
	size_t n;
	uint64_t ps;
} D = {.lock = PTHREAD_MUTEX_INITIALIZER};

int daemon_connect(const char *path)
{
	struct ufault_remote_config cfg;
	void *v;
	int ret;

	D.ps = (uint64_t)sysconf(_SC_PAGESIZE);
	v = shim_pages(UFAULT_PROTO_MAX_REGIONS * sizeof(*D.v));
	if (!v)
		return -ENOMEM;
	ufault_remote_config_init(&cfg);
	cfg.socket_path = path;
	ret = ufault_remote_connect(&D.rm, &cfg);
	if (!ret && !shim_kernel_reads(NULL, D.rm))
		ret = -EPERM;
	if (ret) {
		if (D.rm)
			ufault_remote_close(D.rm);
		D.rm = NULL;
		syscall(SYS_munmap, v, UFAULT_PROTO_MAX_REGIONS * sizeof(*D.v));
		return ret;
	}
	D.v = v;
	__atomic_store_n(&D.on, true, __ATOMIC_RELEASE);
	return 0;
}

bool daemon_on(void)
{
	return __atomic_load_n(&D.on, __ATOMIC_ACQUIRE);
}

void daemon_forget(void)
{
	__atomic_store_n(&D.on, false, __ATOMIC_RELEASE);
}

static uint64_t round_up(uint64_t n)
{
	return (n + D.ps - 1) & ~(D.ps - 1);
}

/* Register [s, e) (under the lock); a mapping made (@made, not a piece
 * left by carve) is noted for the bounds and the report. false if the
 * daemon refused it. */
static bool add(uint64_t s, uint64_t e, bool made)
{
	size_t i = 0;
	int ret;

	if (D.n == UFAULT_PROTO_MAX_REGIONS)
		ret = -ENOSPC;
	else
		ret = ufault_remote_register(D.rm, (void *)(uintptr_t)s, e - s, -1, 0, 0);
	if (ret) {
		if (made)
			shim_count_refused();
		return false;
	}
	while (i < D.n && D.v[i].start < s)
		i++;
	memmove(&D.v[i + 1], &D.v[i], (D.n - i) * sizeof(*D.v));
	D.v[i] = (struct span){s, e};
	D.n++;
	if (made)
		shim_note_region((void *)(uintptr_t)s, e - s);
	return true;
}

/* The spans overlapping [s, e) unregistered, their parts outside it
 * registered again (under the lock). */
static void carve(uint64_t s, uint64_t e)
{
	size_t i = 0;

	while (i < D.n) {
		struct span sp = D.v[i];

		if (sp.end <= s || sp.start >= e) {
			i++;
			continue;
		}
		(void)ufault_remote_unregister(D.rm, (void *)(uintptr_t)sp.start,
					       sp.end - sp.start);
		memmove(&D.v[i], &D.v[i + 1], (D.n - i - 1) * sizeof(*D.v));
		D.n--;
		if (sp.start < s)
			add(sp.start, s, false);
		if (sp.end > e)
			add(e, sp.end, false);
		i = 0; /* the table moved: again from the start */
	}
}

/* Is [s, e) inside one span (under the lock)? */
static bool inside_one(uint64_t s, uint64_t e)
{
	for (size_t i = 0; i < D.n; i++)
		if (D.v[i].start <= s && e <= D.v[i].end)
			return true;
	return false;
}

void *daemon_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off, bool region)
{
	uint64_t a = (uint64_t)(uintptr_t)addr, e = a + round_up(len);
	bool over = (flags & MAP_FIXED) && len && e > a && shim_may_hold(a, e);
	void *p;

	if (!over && !region)
		return shim_sys_mmap(addr, len, prot, flags, fd, off);
	if (!over) {
		p = shim_sys_mmap(addr, len, prot, flags, fd, off);
		if (p == MAP_FAILED)
			return p;
	}
	shim_enter();
	pthread_mutex_lock(&D.lock);
	if (over) {
		shim_note_unmap(addr, len);
		carve(a, e);
		p = shim_sys_mmap(addr, len, prot, flags, fd, off);
	}
	if (p != MAP_FAILED && region)
		add((uint64_t)(uintptr_t)p, (uint64_t)(uintptr_t)p + round_up(len), true);
	pthread_mutex_unlock(&D.lock);
	shim_leave();
	return p;
}

int daemon_munmap(void *addr, size_t len)
{
	uint64_t a = (uint64_t)(uintptr_t)addr, e = a + round_up(len);
	int ret;

	/* What the kernel refuses (EINVAL) changes nothing here either. */
	if (!len || a % D.ps || e <= a || !shim_may_hold(a, e))
		return (int)syscall(SYS_munmap, addr, len);
	shim_enter();
	pthread_mutex_lock(&D.lock);
	shim_note_unmap(addr, len);
	carve(a, e);
	ret = (int)syscall(SYS_munmap, addr, len);
	pthread_mutex_unlock(&D.lock);
	shim_leave();
	return ret;
}

void *daemon_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr)
{
	uint64_t a = (uint64_t)(uintptr_t)old, e = a + round_up(old_len);
	uint64_t n = (uint64_t)(uintptr_t)new_addr, ne = n + round_up(new_len);
	bool fixed = flags & MREMAP_FIXED, whole;
	void *p;
	int err;

	if (a % D.ps || !old_len || e <= a ||
	    (!shim_may_hold(a, e) && !(fixed && ne > n && shim_may_hold(n, ne))))
		return (void *)syscall(SYS_mremap, old, old_len, new_len, flags, new_addr);
	shim_enter();
	pthread_mutex_lock(&D.lock);
	whole = inside_one(a, e);
	carve(a, e);
	if (fixed && ne > n)
		carve(n, ne);
	p = (void *)syscall(SYS_mremap, old, old_len, new_len, flags, new_addr);
	err = errno;
	/* The memory moved (or stayed, resized) is registered where it is. */
	if (whole && p != MAP_FAILED) {
		shim_note_remap(old, old_len, p, new_len);
		add((uint64_t)(uintptr_t)p, (uint64_t)(uintptr_t)p + round_up(new_len), false);
	} else if (whole) {
		add(a, e, false);
	}
	pthread_mutex_unlock(&D.lock);
	shim_leave();
	errno = err;
	return p;
}

void daemon_release(const void *addr, size_t len)
{
	uint64_t a = (uint64_t)(uintptr_t)addr, e = a + round_up(len);

	if (!len || e <= a || !shim_may_hold(a, e))
		return;
	shim_enter();
	pthread_mutex_lock(&D.lock);
	carve(a, e);
	pthread_mutex_unlock(&D.lock);
	shim_leave();
}

int daemon_stats(struct ufault_proto_stats *st)
{
	int ret;

	shim_enter();
	ret = ufault_remote_stats(D.rm, st);
	shim_leave();
	return ret;
}
