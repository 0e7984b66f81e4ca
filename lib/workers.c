// SPDX-License-Identifier: MIT
/*
 * workers.c - worker threads. Worker i reads uffd i % nr_uffds directly (no
 * dispatcher thread: each hand-off between threads costs a cross-CPU
 * wake-up), a batch of messages per read(2), and resolves each fault.
 *
 * A worker never blocks on a library lock before it has read its messages;
 * a fault that cannot be resolved now (EAGAIN: events pending) is deferred
 * and retried after the next read or a short epoll timeout, never spun on.
 * While it sleeps in epoll_wait(2) the worker is an offline QSBR reader, so it
 * never holds up reclamation.
 */
#include <errno.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "fault.h"

#define DEFER_POLL_MS 1

/* The first deferred fault of a worker makes proxies poke on unlock. */
static void defer(struct ufault__worker *w, uint64_t entry)
{
	if (!w->nr_deferred)
		__atomic_fetch_add(&w->ctx->deferring, 1, __ATOMIC_SEQ_CST);
	w->deferred[w->nr_deferred++] = entry;
}

void ufault__workers_poke(struct ufault_ctx *ctx)
{
	uint64_t one = 1;

	/* Pairs with defer(): a worker that defers after this load retries
	 * on its epoll timeout at the latest. */
	if (__atomic_load_n(&ctx->deferring, __ATOMIC_SEQ_CST) &&
	    write(ctx->retry_fd, &one, sizeof(one)) != sizeof(one))
		ufault__err(&ctx->log, "poking workers: %s", ufault_strerror(errno));
}

static void handle_fault(struct ufault__worker *w, const struct uffd_msg *msg, uint64_t t0)
{
	uint64_t addr = msg->arg.pagefault.address & ~(w->ctx->sys_page - 1);
	unsigned int flags =
	    (msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE) ? UFAULT__FAULT_WRITE : 0;

	ufault__stat_add(&w->stats, UFAULT__STAT_FAULTS, 1);
	if (ufault__fault_resolve(w, addr, flags) == UFAULT__FAULT_DEFER) {
		ufault__stat_add(&w->stats, UFAULT__STAT_DEFERRED, 1);
		if (w->nr_deferred < UFAULT__DEFER_MAX) {
			defer(w, addr | flags);
			return;
		}
		/* Deferred list full: this fault is retried by the thread
		 * itself — wake it so it faults again and re-queues. */
		ufault__uffd_wake(w->uffd, addr, w->ctx->sys_page);
	}
	ufault__stat_latency(&w->stats, ufault__now_ns() - t0);
}

static void retry_deferred(struct ufault__worker *w)
{
	unsigned int n = w->nr_deferred;
	uint64_t t0 = ufault__now_ns();

	w->nr_deferred = 0;
	__atomic_fetch_sub(&w->ctx->deferring, 1, __ATOMIC_SEQ_CST);
	for (unsigned int i = 0; i < n; i++) {
		uint64_t d = w->deferred[i];

		/* Counted as a fault once, when it was first read. */
		ufault__stat_add(&w->stats, UFAULT__STAT_RETRIES, 1);
		if (ufault__fault_resolve(w, d & ~(uint64_t)UFAULT__FAULT_WRITE,
					  (unsigned int)(d & UFAULT__FAULT_WRITE)) ==
		    UFAULT__FAULT_DEFER)
			defer(w, d);
		else
			ufault__stat_latency(&w->stats, ufault__now_ns() - t0);
		ufault__qsbr_quiescent(&w->ctx->qsbr, w->id);
	}
}

/*
 * With every slot taken, wait: an unannounced move would be mistaken for
 * the application's and unregistered. Slots free as the moves in flight
 * complete, which needs no lock this caller holds.
 */
void ufault__remap_begin(struct ufault_ctx *ctx, uint64_t from, uint64_t len)
{
	pthread_mutex_lock(&ctx->remap_lock);
	for (;;) {
		for (unsigned int i = 0; i < UFAULT__MAX_REMAPS; i++) {
			if (!ctx->remaps[i].len) {
				ctx->remaps[i].from = from;
				ctx->remaps[i].len = len;
				pthread_mutex_unlock(&ctx->remap_lock);
				return;
			}
		}
		pthread_cond_wait(&ctx->remap_free, &ctx->remap_lock);
	}
}

void ufault__remap_end(struct ufault_ctx *ctx, uint64_t from, uint64_t len)
{
	pthread_mutex_lock(&ctx->remap_lock);
	for (unsigned int i = 0; i < UFAULT__MAX_REMAPS; i++) {
		if (ctx->remaps[i].from == from && ctx->remaps[i].len == len) {
			ctx->remaps[i].len = 0;
			pthread_cond_signal(&ctx->remap_free);
			break;
		}
	}
	pthread_mutex_unlock(&ctx->remap_lock);
}

/*
 * UFFD_EVENT_REMAP: reading it is what lets the mremap(2) return. A proxy's
 * own move updates the index itself. A move the application made with plain
 * mremap(2) leaves registered memory that no region describes, where a fault
 * would park forever: unregister it so it behaves as ordinary memory.
 */
static void handle_remap(struct ufault__worker *w, const struct uffd_msg *msg)
{
	struct ufault_ctx *ctx = w->ctx;
	uint64_t from = msg->arg.remap.from, to = msg->arg.remap.to, len = msg->arg.remap.len;
	bool ours = false;

	pthread_mutex_lock(&ctx->remap_lock);
	for (unsigned int i = 0; i < UFAULT__MAX_REMAPS && !ours; i++) {
		ours = ctx->remaps[i].len && ctx->remaps[i].from == from;
		if (ours) {
			ctx->remaps[i].len = 0; /* consumed: one event per move */
			pthread_cond_signal(&ctx->remap_free);
		}
	}
	pthread_mutex_unlock(&ctx->remap_lock);
	if (ours)
		return;
	ufault__warn(&ctx->log,
		     "registered memory [%#llx, +%llu) was moved to %#llx by mremap(2), not "
		     "ufault_mremap: unregistering it there",
		     (unsigned long long)from, (unsigned long long)len, (unsigned long long)to);
	ufault__uffd_unregister(w->uffd, to, len);
}

/* Read and handle one batch; returns the number of messages read, 0 when
 * the queue is empty, -1 on a fatal read error. */
static int read_batch(struct ufault__worker *w, struct uffd_msg *msgs)
{
	struct ufault_ctx *ctx = w->ctx;
	ssize_t n = read(w->uffd, msgs, sizeof(*msgs) * ctx->batch);
	uint64_t t0;

	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return 0;
		ufault__err(&ctx->log, "worker %u: read(uffd): %s", w->id, ufault_strerror(errno));
		return -1;
	}
	t0 = ufault__now_ns();
	for (size_t i = 0; i < (size_t)n / sizeof(*msgs); i++) {
		if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
			handle_fault(w, &msgs[i], t0);
		else if (msgs[i].event == UFFD_EVENT_REMAP)
			handle_remap(w, &msgs[i]);
		ufault__qsbr_quiescent(&ctx->qsbr, w->id);
	}
	return (int)((size_t)n / sizeof(*msgs));
}

/*
 * Each worker waits in its own epoll set, with its uffd added EPOLLEXCLUSIVE:
 * when several workers share a uffd, one fault wakes one of them instead of
 * all (every needless wake-up costs a cross-CPU IPI on a VM).
 */
static int worker_epoll(struct ufault__worker *w)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u32 = 0};
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep < 0)
		return -errno;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, w->uffd, &ev))
		goto fail;
	ev.events = EPOLLIN;
	ev.data.u32 = 1;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, w->ctx->stop_fd, &ev))
		goto fail;
	/* Edge-triggered and never read: every poke is one wake-up. */
	ev.events = EPOLLIN | EPOLLET;
	ev.data.u32 = 2;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, w->ctx->retry_fd, &ev))
		goto fail;
	return ep;
fail:
	close(ep);
	return -errno;
}

static void *worker_main(void *arg)
{
	struct ufault__worker *w = arg;
	struct ufault_ctx *ctx = w->ctx;
	struct uffd_msg msgs[ctx->batch];

	/* Slots start offline; each loop goes offline to sleep and back. */
	ufault__qsbr_online(&ctx->qsbr, w->id);
	for (;;) {
		struct epoll_event ev[3];
		bool stop = false, ready = false;
		int n;

		ufault__qsbr_offline(&ctx->qsbr, w->id);
		n = epoll_wait(w->epfd, ev, 3, w->nr_deferred ? DEFER_POLL_MS : -1);
		ufault__qsbr_online(&ctx->qsbr, w->id);
		if (n < 0 && errno != EINTR) {
			ufault__err(&ctx->log, "worker %u: epoll_wait: %s", w->id,
				    ufault_strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			if (ev[i].data.u32 == 1) {
				stop = true;
			} else if (ev[i].data.u32 == 2) {
				/* a poke: only the deferred retry below */
			} else if (ev[i].events & EPOLLERR) {
				ufault__err(&ctx->log, "worker %u: uffd error", w->id);
				stop = true;
			} else {
				ready = true;
			}
		}
		if (stop)
			break;
		if (ready) {
			/* A full batch means more may be queued: read again
			 * before sleeping; a short one means the queue is dry. */
			while ((n = read_batch(w, msgs)) == (int)ctx->batch)
				;
			if (n < 0)
				break;
		}
		if (w->nr_deferred)
			retry_deferred(w);
		ufault__qsbr_poll(&ctx->qsbr);
	}
	ufault__qsbr_offline(&ctx->qsbr, w->id);
	return NULL;
}

int ufault__workers_start(struct ufault_ctx *ctx)
{
	size_t bytes = sizeof(struct ufault__worker) * ctx->nr_workers;
	unsigned int i;
	int ret;

	ctx->workers = ufault__pages_map(bytes);
	if (!ctx->workers)
		return -ENOMEM;
	ctx->workers_len = bytes;
	for (i = 0; i < ctx->nr_workers; i++) {
		struct ufault__worker *w = &ctx->workers[i];

		w->ctx = ctx;
		w->id = i;
		w->uffd = ctx->uffds[i % ctx->nr_uffds];
		w->log_budget = 8;
		w->buf = ufault__pages_map(ctx->max_page_size);
		if (!w->buf) {
			ret = -ENOMEM;
			goto undo;
		}
		w->epfd = worker_epoll(w);
		if (w->epfd < 0) {
			ret = w->epfd;
			ufault__pages_unmap(w->buf, ctx->max_page_size);
			goto undo;
		}
		ret = -pthread_create(&w->thread, NULL, worker_main, w);
		if (ret) {
			close(w->epfd);
			ufault__pages_unmap(w->buf, ctx->max_page_size);
			goto undo;
		}
	}
	return 0;

undo:
	ufault__err(&ctx->log, "starting worker %u: %s", i, ufault_strerror(ret));
	ctx->nr_workers = i; /* stop only those that started */
	ufault__workers_stop(ctx);
	return ret;
}

void ufault__workers_stop(struct ufault_ctx *ctx)
{
	uint64_t one = 1;

	if (!ctx->workers)
		return;
	if (write(ctx->stop_fd, &one, sizeof(one)) != sizeof(one))
		ufault__err(&ctx->log, "waking workers: %s", ufault_strerror(errno));
	for (unsigned int i = 0; i < ctx->nr_workers; i++) {
		pthread_join(ctx->workers[i].thread, NULL);
		close(ctx->workers[i].epfd);
		ufault__pages_unmap(ctx->workers[i].buf, ctx->max_page_size);
	}
	ufault__pages_unmap(ctx->workers, ctx->workers_len);
	ctx->workers = NULL;
}

void ufault__workers_stats(struct ufault_ctx *ctx, struct ufault_stats *out)
{
	for (unsigned int i = 0; i < ctx->nr_workers; i++)
		ufault__stats_merge(out, &ctx->workers[i].stats);
}
