/* SPDX-License-Identifier: MIT */
/*
 * worker.h - the worker threads. Worker i reads uffd i % nr_uffds directly
 * (no dispatcher thread: each hand-off between threads costs a cross-CPU
 * wake-up), a batch of messages per read(2), and resolves each fault
 * (fault.h) as a request from its pool, deferring those that cannot be
 * resolved now (defer.h). Asynchronous fills stay in flight while the
 * worker goes on; their completions come back on an eventfd in the same
 * epoll set, the one wait point. With every request in flight the worker
 * stops reading its uffd until one is free (back-pressure). A source with
 * an fd to drive (an NBD socket) gives it to one worker, which waits on it
 * in the same epoll set (watch.h).
 */
#ifndef UFAULT_LIB_WORKER_H
#define UFAULT_LIB_WORKER_H

#include <pthread.h>
#include <stdint.h>

#include "ctx.h"
#include "defer.h"
#include "fault.h"

struct ufault__worker {
	struct ufault__fault_env env; /* first: its stats' own cache lines */
	unsigned int id;
	int uffd;
	int epfd;     /* this worker's epoll set: its uffd (exclusive), stop, pokes,
		   * completions */
	bool reading; /* the uffd is in the epoll set */
	pthread_t thread;
	struct ufault__defer defer;
	struct ufault__req *reqs;      /* the pool: max_inflight requests */
	void *bufs;		       /* and their buffers */
	struct ufault__req *free_reqs; /* free list of the pool */
	unsigned int nr_free;
	struct ufault__watch *watches; /* sources' fds this worker drives (its own list) */
	struct ufault__watch *adopted; /* atomic stack: given to it, not yet listed */
	struct io_uring ring;	       /* reads of file sources; CQEs signal env.done_fd */
	bool ring_ok;
	bool issued_last;	 /* stopping: no fill of ours is in flight, none will be */
	unsigned int batch_seq;	 /* atomic; odd while reading or handling messages */
	int inject_err;		 /* atomic; tests: the next read fails with it */
	unsigned int err_budget; /* read-error lines left before going quiet */
};

int ufault__workers_start(struct ufault_ctx *ctx);
/* Stop and join every worker; frees their resources. */
void ufault__workers_stop(struct ufault_ctx *ctx);
/* In a child process: free this copy's worker memory and fds, join none. */
void ufault__workers_forget(struct ufault_ctx *ctx);
void ufault__workers_stats(struct ufault_ctx *ctx, struct ufault_stats *out);
/* Add every worker's latency histogram into @hist (@nr buckets). */
void ufault__workers_hist(struct ufault_ctx *ctx, uint64_t *hist, unsigned int nr);

/* Tell workers holding deferred faults that a proxy finished a change. */
void ufault__workers_poke(struct ufault_ctx *ctx);
/*
 * Wait until every message the workers had read when this was called has
 * been handled (a grace period over message batches): after a syscall that
 * waited for an event to be *read*, the event has then been *handled*.
 */
void ufault__workers_sync(struct ufault_ctx *ctx);

/* Wake one worker (round robin) to look at the prefetch queue. */
void ufault__workers_kick(struct ufault_ctx *ctx);

/* Tests: make every worker's next read(2) of its uffd fail with @err. */
void ufault__workers_inject_error(struct ufault_ctx *ctx, int err);

#endif
