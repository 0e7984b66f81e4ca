/* SPDX-License-Identifier: MIT */
/*
 * fault.h - the fault path: a fault is a request (lookup -> fill ->
 * validate -> install), not a stack frame. A synchronous source fills
 * inside ufault__fault_start(); an asynchronous one returns PENDING and the
 * request waits, holding what its lock mode holds across the fill, until
 * ufault_complete() queues it back to its worker, which calls
 * ufault__fault_finish(). Faults on a region page whose fill is in flight
 * join that request instead of filling the page twice.
 *
 * Called by workers only, with the per-worker state the path needs (the
 * worker owns it; nothing shared is written here but the completion queue,
 * which any thread may push to).
 */
#ifndef UFAULT_LIB_FAULT_H
#define UFAULT_LIB_FAULT_H

#include <stdbool.h>
#include <stdint.h>

#include "ctx.h"
#include "stats.h"

#define UFAULT__INFLIGHT_HASH 64

struct ufault__fault_env;

/* One fault being resolved. The worker owns the memory (a pool). */
struct ufault__req {
	struct ufault__fault_env *env;
	uint64_t addr; /* the faulting system page */
	uint64_t page; /* the region page being filled */
	uint64_t len;  /* bytes filled from @page: a region page or a window */
	uint64_t t0;   /* when its message was read */
	unsigned int flags;
	int state;  /* atomic, enum in fault.c */
	int result; /* the fill's: 0, UFAULT__FILL_ZERO or -errno */
	const void *data;
	void *buf; /* max_page_size bytes, this request's own */
	struct ufault_region *r;
	uint64_t gen;	    /* spec: the region's generation at lookup */
	uint64_t evict_seq; /* evictions done when its fill began (evict.h) */
	struct ufault__mm_held held;
	bool region_locked;
	bool cached;		   /* page-cache source: the window is in the cache already */
	bool zero;		   /* foreign: the window was removed by its owner (zeroed.h) */
	uint64_t zseq;		   /* foreign: removals seen when its fill began */
	struct ufault__req *next;  /* owner's lists: free, done, retry */
	struct ufault__req *hnext; /* the in-flight table */
};

struct ufault__fault_env {
	struct ufault__stats stats; /* first: its own cache lines */
	struct ufault_ctx *ctx;
	unsigned int id;	 /* the worker's */
	unsigned int log_budget; /* source-error lines left before going quiet */
	unsigned int nr_pending; /* asynchronous fills in flight */
	unsigned int completing; /* atomic: ufault_complete() calls under way */
	struct ufault__req *inflight[UFAULT__INFLIGHT_HASH]; /* pending, by page */
	struct ufault__req *done; /* atomic stack: completed, for the worker */
	int done_fd;		  /* eventfd: something was pushed on done, or a CQE */
	struct io_uring *ring;	  /* the worker's: sources queue their reads here */
};

enum ufault__fault_result {
	UFAULT__FAULT_DONE = 0, /* resolved, joined, or nobody waits any more */
	UFAULT__FAULT_DEFER,	/* retry later (lock busy, events pending): do not spin */
	UFAULT__FAULT_PENDING,	/* an asynchronous fill is in flight */
};

/* @flags: UFAULT__FAULT_WRITE if the thread faulted on a write;
 * UFAULT__FAULT_PREFETCH for ufault_prefetch() (no thread waits). */
#define UFAULT__FAULT_WRITE 1u
#define UFAULT__FAULT_PREFETCH 2u
/* A write-protect fault (write-back regions, SYNC mode): not a request. */
#define UFAULT__FAULT_WP 4u

/* Set up @env (zeroed memory) for @ctx; 0 or -errno. */
int ufault__fault_env_init(struct ufault__fault_env *env, struct ufault_ctx *ctx);
void ufault__fault_env_destroy(struct ufault__fault_env *env);

/*
 * Resolve the fault @req->addr (@req->flags, @req->t0 and @req->buf set by
 * the caller). The caller is an online QSBR reader. May sleep in a
 * synchronous fill and, in spec mode, briefly on a region's read lock
 * (held by proxies only for a few instructions); never waits for the mm
 * lock. DONE and DEFER: the request is free again. PENDING: it belongs to
 * the fill until it shows up in ufault__fault_take_done().
 */
enum ufault__fault_result ufault__fault_start(struct ufault__fault_env *env,
					      struct ufault__req *req);
/*
 * Finish a request whose asynchronous fill completed: validate and install.
 * DONE: the request is free again; DEFER: call again later (events pending).
 */
enum ufault__fault_result ufault__fault_finish(struct ufault__fault_env *env,
					       struct ufault__req *req);
/* The requests completed since the last call (any order), linked by next. */
struct ufault__req *ufault__fault_take_done(struct ufault__fault_env *env);
/* A read a source queued on the worker's ring completed (@data: its user
 * data, @res: the CQE's result): complete its request. A short read is the
 * end of the file: the rest of the page reads as zeros. */
void ufault__fault_read_done(struct ufault__fault_env *env, void *data, int res);

#endif
