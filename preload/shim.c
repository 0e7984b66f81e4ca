// SPDX-License-Identifier: MIT
/*
 * shim.c - libufault_preload.so: the mmap family of an unmodified program,
 * interposed (LD_PRELOAD), so that its large private anonymous mappings
 * are ufault regions.
 *
 * mmap, mmap64, munmap, mremap, mprotect, madvise and shmat are defined
 * here (and _exit, for the UFAULT_TRACE report); the program's calls through the dynamic linker come here (glibc's
 * own malloc calls the kernel directly, through internal aliases: its
 * mappings are never seen, and never regions). A private anonymous
 * mapping of at least UFAULT_MIN_BYTES (default 1 MiB) with no flag but
 * MAP_FIXED, MAP_FIXED_NOREPLACE and MAP_NORESERVE becomes a region of one
 * process-wide context (the zero source: it reads as zeros until written,
 * as the kernel's would), made when the shim is loaded (state.c). Calls
 * that touch a region go to the proxies (ufault_munmap(), ...); all other
 * calls go to the kernel unchanged, as raw system calls. Under
 * UFAULT_DAEMON the calls that make, unmap or move regions go to daemon.c
 * instead (ufaultd serves the regions; mprotect and madvise are the
 * kernel's). A thread inside
 * ufault (the proxies, the context's creation) is marked: its own mmap
 * calls go straight to the kernel, so nothing re-enters ufault.
 *
 * errno: a call that succeeds leaves errno as the program had it; one
 * that fails sets it as the kernel would.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <ufault/ufault.h>

#include "daemon.h"
#include "proxy.h"
#include "shim.h"
#include "swap.h"

#define SHIM_API __attribute__((visibility("default")))

/* Flags a region may be mapped with: those ufault_mmap() takes, those the
 * kernel ignores (MAP_DENYWRITE, MAP_EXECUTABLE: not passed on) and
 * MAP_POPULATE (the region is prefetched: ufault_prefetch()). Any other
 * (MAP_STACK, MAP_GROWSDOWN, MAP_HUGETLB, MAP_LOCKED, MAP_32BIT, ...)
 * leaves the mapping to the kernel. */
#define PROXY_FLAGS (MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_NORESERVE)
#define REGION_FLAGS (PROXY_FLAGS | MAP_POPULATE | MAP_DENYWRITE | MAP_EXECUTABLE)

/* Private anonymous memory with only flags a region may have. */
static bool anonymous_kind(int flags)
{
	return (flags & MAP_TYPE) == MAP_PRIVATE && (flags & MAP_ANONYMOUS) &&
	       !(flags & ~REGION_FLAGS);
}

/* A region, through ufault_mmap() (MAP_POPULATE: prefetched, as the kernel
 * would have filled it; best effort, a full queue leaves it to the faults),
 * noted for the bounds and the report. Under UFAULT_MEMORY_LIMIT, a
 * write-back region over an area of the swap file (discarding: its writes
 * matter only while it is mapped). MAP_FAILED with errno if refused. */
static void *make_region(struct ufault_ctx *ctx, void *addr, size_t len, int prot, int flags)
{
	struct ufault_source swap;
	bool limited;
	void *p;

	shim_enter();
	limited = shim_limited() && swap_source(&swap);
	p = ufault_mmap(ctx, addr, len, prot, flags & PROXY_FLAGS, limited ? &swap : NULL,
			limited ? UFAULT_REGION_WRITEBACK | UFAULT_REGION_DISCARD : 0);
	if (p == MAP_FAILED && limited) /* no release hook: the area goes back */
		swap.release(swap.release_arg);
	if (p != MAP_FAILED && (flags & MAP_POPULATE))
		(void)ufault_prefetch(ctx, p, len);
	shim_leave();
	if (p != MAP_FAILED)
		shim_note_region(p, len);
	return p;
}

/* The context, if [addr, addr + len) may hold a region of it. */
static struct ufault_ctx *ctx_over(const void *addr, size_t len)
{
	uint64_t a = (uint64_t)(uintptr_t)addr;

	if (shim_inside() || !shim_may_hold(a, a + len))
		return NULL;
	return shim_ctx_current();
}

/* The context, if a region of it overlaps [addr, addr + len) now. */
static struct ufault_ctx *ctx_region(const void *addr, size_t len)
{
	struct ufault_ctx *ctx = ctx_over(addr, len);
	uint64_t a = (uint64_t)(uintptr_t)addr;
	bool any;

	if (!ctx)
		return NULL;
	shim_enter();
	any = ufault__ctx_has_region(ctx, a, a + len);
	shim_leave();
	return any ? ctx : NULL;
}

/*
 * MAP_FIXED over a region. The kernel replaces what is there atomically;
 * ufault cannot always:
 *  - private anonymous memory goes to ufault_mmap(), which keeps the range
 *    mapped throughout, and becomes a (small) region;
 *  - under UFAULT_MEMORY_LIMIT (write-back regions, which ufault_mmap()
 *    does not replace) private anonymous memory wholly over regions
 *    (a JVM committing or uncommitting part of its heap) keeps them: the
 *    pages are dropped (zeros, their swap slots freed) and the protection
 *    set, so the range stays mapped throughout;
 *  - anything else (a file, a MAP_STACK, anonymous memory over a region's
 *    edge under the limit) is mapped once the regions there are
 *    unmapped, with a moment between in which another thread's mmap could
 *    take the range.
 */
static void *fixed_over_region(struct ufault_ctx *ctx, void *addr, size_t len, int prot, int flags,
			       int fd, off_t off)
{
	uint64_t a = (uint64_t)(uintptr_t)addr;
	bool anon = anonymous_kind(flags);
	int ret;

	if (anon && !shim_limited())
		return make_region(ctx, addr, len, prot, flags);
	shim_enter();
	if (anon && ufault__ctx_covered(ctx, a, a + len)) {
		ret = ufault_madvise(ctx, addr, len, MADV_DONTNEED);
		if (!ret)
			ret = ufault_mprotect(ctx, addr, len, prot);
		if (!ret && (flags & MAP_POPULATE))
			(void)ufault_prefetch(ctx, addr, len);
		shim_leave();
		return ret ? MAP_FAILED : addr;
	}
	ret = ufault_munmap(ctx, addr, len);
	shim_leave();
	if (ret)
		return MAP_FAILED;
	return anon ? make_region(ctx, addr, len, prot, flags | MAP_FIXED)
		    : shim_sys_mmap(addr, len, prot, flags, fd, off);
}

SHIM_API void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	int saved = errno;
	struct ufault_ctx *ctx;
	void *p;

	bool region;

	if (shim_inside())
		return shim_sys_mmap(addr, len, prot, flags, fd, off);
	region = anonymous_kind(flags) && len >= shim_min_bytes();
	if (daemon_on()) {
		p = daemon_mmap(addr, len, prot, flags, fd, off, region);
		if (p != MAP_FAILED)
			errno = saved;
		return p;
	}
	/* Over regions: what only ufault_mmap() cannot do (fixed_over_region). */
	if ((flags & MAP_FIXED) && (!region || shim_limited()) && (ctx = ctx_region(addr, len))) {
		p = fixed_over_region(ctx, addr, len, prot, flags, fd, off);
		if (p != MAP_FAILED)
			errno = saved;
		return p;
	}
	if (!region)
		return shim_sys_mmap(addr, len, prot, flags, fd, off);
	ctx = shim_ctx_current();
	if (!ctx) {
		errno = saved;
		return shim_sys_mmap(addr, len, prot, flags, fd, off);
	}
	p = make_region(ctx, addr, len, prot, flags);
	if (p == MAP_FAILED) {
		/* Not a region (ufault refused it: a reason is logged): the
		 * kernel's mapping, unless the address was an order. */
		if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE))
			return MAP_FAILED;
		shim_count_refused();
		errno = saved;
		return shim_sys_mmap(addr, len, prot, flags, fd, off);
	}
	errno = saved;
	return p;
}

SHIM_API void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
    __attribute__((alias("mmap")));

SHIM_API int munmap(void *addr, size_t len)
{
	struct ufault_ctx *ctx = ctx_over(addr, len);
	int saved = errno, ret;

	if (!shim_inside() && daemon_on()) {
		ret = daemon_munmap(addr, len);
		if (!ret)
			errno = saved;
		return ret;
	}
	if (!ctx)
		return (int)syscall(SYS_munmap, addr, len);
	shim_note_unmap(addr, len);
	shim_enter();
	ret = ufault_munmap(ctx, addr, len);
	shim_leave();
	if (!ret)
		errno = saved;
	return ret;
}

/* mprotect and madvise: over a region, its proxy @proxy; else the kernel's
 * call @nr. */
static int proxy_or_kernel(void *addr, size_t len, int arg, long nr,
			   int (*proxy)(struct ufault_ctx *, void *, size_t, int))
{
	struct ufault_ctx *ctx = ctx_over(addr, len);
	int saved = errno, ret;

	if (!ctx)
		return (int)syscall(nr, addr, len, arg);
	shim_enter();
	ret = proxy(ctx, addr, len, arg);
	shim_leave();
	if (!ret)
		errno = saved;
	return ret;
}

SHIM_API int mprotect(void *addr, size_t len, int prot)
{
	return proxy_or_kernel(addr, len, prot, SYS_mprotect, ufault_mprotect);
}

SHIM_API int madvise(void *addr, size_t len, int advice)
{
	return proxy_or_kernel(addr, len, advice, SYS_madvise, ufault_madvise);
}

SHIM_API void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	void *new_addr = NULL, *p;
	int saved = errno;
	struct ufault_ctx *ctx;
	uint64_t a = (uint64_t)(uintptr_t)old;
	bool inside;

	if (flags & MREMAP_FIXED) {
		va_list ap;

		va_start(ap, flags);
		new_addr = va_arg(ap, void *);
		va_end(ap);
	}
	if (!shim_inside() && daemon_on()) {
		p = daemon_mremap(old, old_len, new_len, flags, new_addr);
		if (p != MAP_FAILED)
			errno = saved;
		return p;
	}
	ctx = ctx_over(old, old_len);
	/* A destination over a region: the region goes first, as the
	 * kernel would unmap it (not atomically: see fixed_over_region). */
	if (!ctx && (flags & MREMAP_FIXED))
		ctx = ctx_region(new_addr, new_len);
	if (!ctx)
		return (void *)syscall(SYS_mremap, old, old_len, new_len, flags, new_addr);
	shim_enter();
	inside = ufault__ctx_has_region(ctx, a, a + (old_len ? old_len : 1));
	if (inside) {
		p = ufault_mremap(ctx, old, old_len, new_len, flags, new_addr);
	} else if ((flags & MREMAP_FIXED) && ufault_munmap(ctx, new_addr, new_len)) {
		p = MAP_FAILED;
	} else {
		p = (void *)syscall(SYS_mremap, old, old_len, new_len, flags, new_addr);
	}
	shim_leave();
	if (p == MAP_FAILED)
		return p;
	if (inside)
		shim_note_remap(old, old_len, p, new_len);
	errno = saved;
	return p;
}

/* SHM_REMAP replaces what is mapped there, a region included. */
SHIM_API void *shmat(int id, const void *addr, int flags)
{
	struct shmid_ds ds;
	struct ufault_ctx *ctx;

	if (!shim_inside() && daemon_on() && (flags & SHM_REMAP) && addr &&
	    !shmctl(id, IPC_STAT, &ds))
		daemon_release(addr, ds.shm_segsz);
	else if ((flags & SHM_REMAP) && addr && !shmctl(id, IPC_STAT, &ds) &&
		 (ctx = ctx_region(addr, ds.shm_segsz))) {
		int ret;

		shim_enter();
		ret = ufault_munmap(ctx, (void *)addr, ds.shm_segsz);
		shim_leave();
		if (ret)
			return (void *)-1;
	}
	return (void *)syscall(SYS_shmat, id, addr, flags);
}

/* A process that ends with _exit(2) (a forked child, commonly) runs no
 * destructor: its UFAULT_TRACE report is written here. */
SHIM_API void _exit(int status)
{
	shim_report();
	syscall(SYS_exit_group, status);
	__builtin_unreachable();
}

SHIM_API void _Exit(int status) __attribute__((alias("_exit")));
