/* SPDX-License-Identifier: MIT */
/*
 * ctx.h - the context (the mm_struct of ufault): what one address space
 * handled by ufault is made of. Each part has one owner, which alone
 * touches its insides: the region set (region.c), the mm lock (mmlock.c),
 * the mremap announcements (remap.c), the workers (worker.c), the uffds and
 * the rest (ctx.c). Everything is set at creation and read-only afterwards
 * unless its owner says otherwise.
 */
#ifndef UFAULT_LIB_CTX_H
#define UFAULT_LIB_CTX_H

#include <stdint.h>
#include <sys/types.h>
#include <unistd.h>

#include <ufault/ufault.h>

#include "log.h"
#include "mmlock.h"
#include "prefetch.h"
#include "qsbr.h"
#include "region.h"
#include "remap.h"
#include "evict.h"
#include "writeback.h"
#include "zeroed.h"

struct ufault__worker;

struct ufault_ctx {
	struct ufault__log log;
	pid_t pid; /* the creating process: a child may not use the context */
	unsigned int nr_workers;
	unsigned int nr_uffds;
	unsigned int batch;
	unsigned int max_inflight; /* requests per worker */
	uint64_t fault_around_max; /* bytes; <= a region's page: none */
	uint64_t max_page_size;
	uint64_t features; /* granted by the kernel (same on every uffd) */
	int *uffds;
	int stop_fd;	/* eventfd: readable when the workers must stop */
	void *zero_buf; /* max_page_size of zeros, never written: write faults copy it */
	struct ufault__worker *workers;
	size_t workers_len; /* bytes mapped for the workers array */

	struct ufault__mmlock mm;
	struct ufault__regions regions;
	struct ufault__qsbr qsbr; /* one slot per worker */
	struct ufault__remaps remaps;
	struct ufault__prefetch prefetch;
	struct ufault__loops loops;	   /* sources' fds go to the workers (worker.c) */
	struct ufault__writeback wb;	   /* write-back regions (writeback.c) */
	struct ufault__evict evict;	   /* the memory budget (evict.c) */
	enum ufault_dirty_mode dirty_mode; /* as asked */
	unsigned int next_prefetcher;	   /* atomic: the worker poked next */
	unsigned int next_owner;	   /* atomic: the worker given the next watch */
	unsigned int issuing;		   /* atomic: workers that may still start a fill */
	uint64_t proxy_ops;		   /* atomic; proxies are not the fault fast path */
	/* A foreign context (ufault_config.foreign_uffd): it serves another
	 * process's uffd; zeroed: what that process removed or unmapped. */
	bool foreign;
	struct ufault__zeroed zeroed;
	void (*on_fork)(void *arg, int child_uffd);
	void *on_fork_arg;
	void (*on_remove)(void *arg, uint64_t start, uint64_t end);
	void *on_remove_arg;
};

/*
 * True (and logged) when called in a child of the process that created
 * @ctx: the context's uffds, workers and regions belong to the parent.
 */
/* -EOPNOTSUPP (logged) for a call a foreign context cannot make. */
static inline int ufault__ctx_local_only(const struct ufault_ctx *ctx, const char *call)
{
	if (!ctx->foreign)
		return 0;
	ufault__warn(&ctx->log,
		     "%s: not available in a foreign context (it serves another "
		     "process's memory)",
		     call);
	return -EOPNOTSUPP;
}

static inline bool ufault__ctx_forked(const struct ufault_ctx *ctx, const char *call)
{
	if (getpid() == ctx->pid)
		return false;
	ufault__warn(&ctx->log, "%s: the context belongs to process %d, not to its child %d", call,
		     (int)ctx->pid, (int)getpid());
	return true;
}

#endif
