/* SPDX-License-Identifier: MIT */
/*
 * fault.h - the fault path: resolve one page-fault message under the
 * context's lock mode. Called by workers only.
 */
#ifndef UFAULT_LIB_FAULT_H
#define UFAULT_LIB_FAULT_H

#include <stdint.h>

#include "ctx.h"

#define UFAULT__DEFER_MAX 256

/* Per-worker state the fault path uses; owned by workers.c. */
struct ufault__worker {
	struct ufault__stats stats; /* first: its own cache lines */
	struct ufault_ctx *ctx;
	unsigned int id;
	int uffd;
	int epfd; /* this worker's epoll set: its uffd (exclusive) + stop */
	pthread_t thread;
	void *buf;			      /* bounce buffer, ctx->max_page_size bytes */
	uint64_t deferred[UFAULT__DEFER_MAX]; /* page address | UFAULT__FAULT_WRITE */
	unsigned int nr_deferred;
	unsigned int log_budget; /* source-error lines left before going quiet */
};

enum ufault__fault_result {
	UFAULT__FAULT_DONE = 0, /* resolved, or nobody is waiting any more */
	UFAULT__FAULT_DEFER,	/* retry later (events pending): do not spin */
};

/*
 * Resolve the fault at @addr. The worker is an online QSBR reader. May sleep
 * in the source's fill and, outside spec mode, on the mode's read lock.
 */
/* @flags: UFAULT__FAULT_WRITE if the thread faulted on a write. */
#define UFAULT__FAULT_WRITE 1u
enum ufault__fault_result ufault__fault_resolve(struct ufault__worker *w, uint64_t addr,
						unsigned int flags);

#endif
