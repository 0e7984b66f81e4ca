/* SPDX-License-Identifier: MIT */
/*
 * shim.h - the preload shim's state (state.c): its configuration from the
 * environment, the process-wide context and its life across fork(2), the
 * thread mark that keeps ufault's own calls out of the shim, and what the
 * UFAULT_TRACE report at exit counts. shim.c, the interposed calls, is its
 * only user.
 */
#ifndef UFAULT_PRELOAD_SHIM_H
#define UFAULT_PRELOAD_SHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

struct ufault_ctx;

/* mmap(2) as a raw system call: never the interposed one. */
static inline void *shim_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

/* @len bytes of zeroed private memory for the shim's own use (raw: the
 * program's allocator is never used), or NULL. */
static inline void *shim_pages(size_t len)
{
	void *p = shim_sys_mmap(NULL, len, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* Is this thread inside ufault (a proxy, the context's creation)? Its
 * mmap calls then go straight to the kernel. */
bool shim_inside(void);
void shim_enter(void);
void shim_leave(void);

/* UFAULT_MIN_BYTES: the smallest mapping made a region. */
size_t shim_min_bytes(void);

/* This process's context (made at load), or NULL: before the shim's
 * constructor ran, in a forked child, or if it could not be made. */
struct ufault_ctx *shim_ctx_current(void);

/* May [start, end) overlap a region of this process (made since its last
 * fork)? False is certain; true means "ask the proxies". */
bool shim_may_hold(uint64_t start, uint64_t end);

/* A region made, unmapped (before the call), moved; a mapping ufault
 * refused (the kernel mapped it). For the bounds and UFAULT_TRACE. */
void shim_note_region(void *p, size_t len);
void shim_note_unmap(void *p, size_t len);
void shim_note_remap(void *old, size_t old_len, void *p, size_t len);
void shim_count_refused(void);

/* A line on stderr, with no allocation (the program may be inside its
 * allocator). */
__attribute__((format(printf, 1, 2))) void shim_say(const char *fmt, ...);

/* Does a system call into a region page never touched get it (a uffd that
 * takes the kernel's faults) rather than EFAULT (one limited to user-mode
 * faults, an unprivileged process's)? Asked of a context @c, or, if NULL,
 * of the daemon's handle @rm, with a page registered for the question. */
struct ufault_remote;
bool shim_kernel_reads(struct ufault_ctx *c, struct ufault_remote *rm);

/* UFAULT_MEMORY_LIMIT is in force: regions are made with a swap source
 * (swap.h) under the context's budget. */
bool shim_limited(void);

/* The UFAULT_TRACE report of this process, if asked for, once. */
void shim_report(void);

#endif
