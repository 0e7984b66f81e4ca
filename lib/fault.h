/* SPDX-License-Identifier: MIT */
/*
 * fault.h - the fault path: resolve one page-fault message under the
 * context's lock mode. Called by workers only, with the per-worker state
 * the path needs (the worker owns it; nothing shared is written here).
 */
#ifndef UFAULT_LIB_FAULT_H
#define UFAULT_LIB_FAULT_H

#include <stdint.h>

#include "ctx.h"
#include "stats.h"

struct ufault__fault_env {
	struct ufault__stats stats; /* first: its own cache lines */
	struct ufault_ctx *ctx;
	void *buf;		 /* bounce buffer, ctx->max_page_size bytes */
	unsigned int log_budget; /* source-error lines left before going quiet */
};

enum ufault__fault_result {
	UFAULT__FAULT_DONE = 0, /* resolved, or nobody is waiting any more */
	UFAULT__FAULT_DEFER,	/* retry later (lock busy, events pending): do not spin */
};

/* @flags: UFAULT__FAULT_WRITE if the thread faulted on a write. */
#define UFAULT__FAULT_WRITE 1u

/*
 * Resolve the fault at @addr (a system page). The caller is an online QSBR
 * reader. May sleep in the source's fill and, in region and spec mode, on
 * a region's read lock (held by proxies only for a few instructions); never
 * waits for the mm lock.
 */
enum ufault__fault_result ufault__fault_resolve(struct ufault__fault_env *env, uint64_t addr,
						unsigned int flags);

#endif
