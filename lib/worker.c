// SPDX-License-Identifier: MIT
/*
 * worker.c - worker threads (worker.h).
 *
 * A worker never blocks on a library lock before it has read its messages;
 * a fault that cannot be resolved now is deferred and retried after a poke
 * or a short epoll timeout, never spun on. While it sleeps in epoll_wait(2)
 * the worker is an offline QSBR reader, so it never holds up reclamation,
 * and just before, it reclaims what expired.
 * A worker stops only when told to: a failing read(2) or an error on its
 * uffd is logged and retried after a back-off, so the faults queued on that
 * uffd are not orphaned.
 */
#include <errno.h>
#include <stddef.h>
#include <stdbool.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "worker.h"

#define DEFER_POLL_MS 1
#define ERROR_BACKOFF_NS (10 * 1000 * 1000)
#define SYNC_POLL_NS (50 * 1000)
#define PREFETCH_BATCH 16

enum { EV_UFFD, EV_STOP, EV_POKE, EV_DONE };

static void log_error(struct ufault__worker *w, const char *what, int err);

static struct ufault__req *req_get(struct ufault__worker *w)
{
	struct ufault__req *req = w->free_reqs;

	w->free_reqs = req->next;
	w->nr_free--;
	return req;
}

static void req_put(struct ufault__worker *w, struct ufault__req *req)
{
	req->next = w->free_reqs;
	w->free_reqs = req;
	w->nr_free++;
}

/*
 * What happens to a request after a step of the fault path: free it (and
 * count the fault's latency), defer its fault, or leave it in flight.
 */
static void settle(struct ufault__worker *w, struct ufault__req *req, enum ufault__fault_result res)
{
	if (res == UFAULT__FAULT_PENDING)
		return;
	if (req->flags & UFAULT__FAULT_PREFETCH) {
		/* Best effort: nobody waits, nothing to defer or time. */
	} else if (res == UFAULT__FAULT_DEFER) {
		ufault__stat_add(&w->env.stats, UFAULT__STAT_DEFERRED, 1);
		if (!ufault__defer_add(&w->defer, req->addr, req->flags, req->t0)) {
			/* Deferred list full: this fault is retried by the
			 * thread itself — wake it so it faults again. */
			ufault__uffd_wake(w->uffd, req->addr, ufault__sys_page());
			ufault__stat_latency(&w->env.stats, ufault__now_ns() - req->t0);
		}
	} else {
		ufault__stat_latency(&w->env.stats, ufault__now_ns() - req->t0);
	}
	req_put(w, req);
}

/*
 * A write to a clean page of a write-back region (SYNC dirty tracking,
 * writeback.h): unprotecting it is what records it as written, and wakes
 * the writer. Events pending: deferred like a fault. A page the evictor
 * froze (a foreign owner's shared memory, shared.h) stays protected until
 * its eviction is done: deferred too, or, the list full, the writer woken
 * to fault again.
 */
static void handle_wp(struct ufault__worker *w, uint64_t addr, unsigned int flags, uint64_t t0)
{
	int ret;

	if (ufault__evict_busy(&w->env.ctx->evict, addr, addr + ufault__sys_page())) {
		ufault__stat_add(&w->env.stats, UFAULT__STAT_DEFERRED, 1);
		if (!ufault__defer_add(&w->defer, addr, flags, t0))
			ufault__uffd_wake(w->uffd, addr, ufault__sys_page());
		return;
	}
	ret = ufault__uffd_writeprotect(w->uffd, addr, ufault__sys_page(), false, true);
	if (ret == -EAGAIN && ufault__defer_add(&w->defer, addr, flags, t0)) {
		ufault__stat_add(&w->env.stats, UFAULT__STAT_DEFERRED, 1);
		return;
	}
	if (ret && ret != -ENOENT && ret != -ESRCH && ret != -EAGAIN)
		log_error(w, "UFFDIO_WRITEPROTECT", ret);
	if (ret) /* whatever it was, nobody is left parked */
		ufault__uffd_wake(w->uffd, addr, ufault__sys_page());
	ufault__stat_add(&w->env.stats, UFAULT__STAT_WP_FAULTS, 1);
}

static void start_fault(struct ufault__worker *w, uint64_t addr, unsigned int flags, uint64_t t0)
{
	struct ufault__req *req;

	if (flags & UFAULT__FAULT_WP) {
		handle_wp(w, addr, flags, t0);
		return;
	}
	req = req_get(w);

	req->addr = addr;
	req->flags = flags;
	req->t0 = t0;
	settle(w, req, ufault__fault_start(&w->env, req));
}

static void handle_fault(struct ufault__worker *w, const struct uffd_msg *msg, uint64_t t0)
{
	uint64_t addr = msg->arg.pagefault.address & ~(ufault__sys_page() - 1);
	unsigned int flags =
	    ((msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE) ? UFAULT__FAULT_WRITE : 0) |
	    ((msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) ? UFAULT__FAULT_WP : 0);

	if (flags & UFAULT__FAULT_WP) {
		handle_wp(w, addr, flags, t0);
		return;
	}
	ufault__stat_add(&w->env.stats, UFAULT__STAT_FAULTS, 1);
	start_fault(w, addr, flags, t0);
}

/* Finish the requests whose asynchronous fills completed: reads on the
 * ring first (they complete onto the same list). */
static void handle_done(struct ufault__worker *w)
{
	struct ufault__req *req, *next;
	struct io_uring_cqe *cqe;

	while (w->ring_ok && !io_uring_peek_cqe(&w->ring, &cqe)) {
		ufault__fault_read_done(&w->env, io_uring_cqe_get_data(cqe), cqe->res);
		io_uring_cqe_seen(&w->ring, cqe);
	}
	req = ufault__fault_take_done(&w->env);
	for (; req; req = next) {
		next = req->next;
		settle(w, req, ufault__fault_finish(&w->env, req));
		ufault__qsbr_quiescent(&w->env.ctx->qsbr, w->id);
	}
}

/*
 * Prefetch pages queued by ufault_prefetch() with requests to spare: half
 * the pool stays for faults, and at most PREFETCH_BATCH pages are started
 * per round of the loop, so faults (a synchronous source fills inline) wait
 * for one batch at most. Pages already there are skipped (mincore), a page
 * another fill is bringing joins it.
 */
static void prefetch_some(struct ufault__worker *w)
{
	struct ufault_ctx *ctx = w->env.ctx;
	unsigned int reserve = ctx->max_inflight / 2;
	uint64_t sys = ufault__sys_page(), start, end;
	unsigned char vec[64];

	if (w->nr_free > reserve && ufault__prefetch_queued(&ctx->prefetch) &&
	    ufault__prefetch_take(&ctx->prefetch,
				  (uint64_t)(w->nr_free - reserve < PREFETCH_BATCH
						 ? w->nr_free - reserve
						 : PREFETCH_BATCH) *
				      sys,
				  &start, &end)) {
		for (uint64_t a = start; a < end && w->nr_free > reserve; a += 64 * sys) {
			uint64_t n = (end - a) / sys < 64 ? (end - a) / sys : 64;

			if (mincore((void *)(uintptr_t)a, n * sys, vec))
				continue; /* not all mapped: skip the chunk */
			for (uint64_t i = 0; i < n && w->nr_free > reserve; i++) {
				struct ufault__req *req;

				if (vec[i] & 1)
					continue;
				req = req_get(w);
				req->addr = a + i * sys;
				req->flags = UFAULT__FAULT_PREFETCH;
				req->t0 = 0;
				ufault__stat_add(&w->env.stats, UFAULT__STAT_PREFETCHED, 1);
				settle(w, req, ufault__fault_start(&w->env, req));
				ufault__qsbr_quiescent(&ctx->qsbr, w->id);
			}
		}
	}
}

static void retry_deferred(struct ufault__worker *w)
{
	struct ufault__deferred d[UFAULT__DEFER_MAX];
	unsigned int n = ufault__defer_take(&w->defer, d), i;

	for (i = 0; i < n && w->nr_free; i++) {
		/* Counted as a fault once, when it was first read. */
		ufault__stat_add(&w->env.stats, UFAULT__STAT_RETRIES, 1);
		start_fault(w, d[i].addr, d[i].flags, d[i].t0);
		ufault__qsbr_quiescent(&w->env.ctx->qsbr, w->id);
	}
	/* Out of requests: the rest wait for one to be free. */
	for (; i < n; i++)
		ufault__defer_add(&w->defer, d[i].addr, d[i].flags, d[i].t0);
}

/*
 * UFFD_EVENT_REMAP: reading it is what lets the mremap(2) return. A proxy's
 * own move updates the index itself. A move the application made with plain
 * mremap(2) leaves registered memory that no region describes, where a fault
 * would park forever: unregister it so it behaves as ordinary memory.
 */
static void handle_remap(struct ufault__worker *w, const struct uffd_msg *msg)
{
	struct ufault_ctx *ctx = w->env.ctx;
	uint64_t from = msg->arg.remap.from, to = msg->arg.remap.to, len = msg->arg.remap.len;

	if (ufault__remap_consume(&ctx->remaps, from, len))
		return;
	ufault__warn(&ctx->log,
		     "registered memory [%#llx, +%llu) was moved to %#llx by mremap(2), not "
		     "ufault_mremap: unregistering it there",
		     (unsigned long long)from, (unsigned long long)len, (unsigned long long)to);
	ufault__uffd_unregister(w->uffd, to, len);
}

/*
 * A foreign context's owner removed (madvise(MADV_DONTNEED/REMOVE): a
 * balloon) or unmapped a range: it reads as zeros from now on. Reading the
 * event is what lets its madvise(2) or munmap(2) return.
 */
static void handle_remove(struct ufault__worker *w, const struct uffd_msg *msg)
{
	struct ufault_ctx *ctx = w->env.ctx;
	uint64_t start = msg->arg.remove.start, end = msg->arg.remove.end;

	/* Told first: installs wait on the guard until the batch is done. */
	if (ctx->on_remove)
		ctx->on_remove(ctx->on_remove_arg, start, end);
	if (ufault__zeroed_add(&ctx->zeroed, start, end))
		ufault__err(&ctx->log,
			    "[%#llx, %#llx) was removed by its owner but cannot be recorded "
			    "(no memory): it will read its source, not zeros",
			    (unsigned long long)start, (unsigned long long)end);
}

/* UFFD_EVENT_FORK: the child's uffd, installed in this process by the
 * read: the context's owner gets it, or it is closed (the child's faults
 * then fall back to the kernel). */
static void handle_fork(struct ufault__worker *w, const struct uffd_msg *msg)
{
	struct ufault_ctx *ctx = w->env.ctx;
	int fd = (int)msg->arg.fork.ufd;

	if (ctx->on_fork)
		ctx->on_fork(ctx->on_fork_arg, fd);
	else
		close(fd);
}

static void log_error(struct ufault__worker *w, const char *what, int err)
{
	if (!w->err_budget)
		return;
	w->err_budget--;
	ufault__err(&w->env.ctx->log, "worker %u: %s: %s; retrying%s", w->id, what,
		    ufault_strerror(err), w->err_budget ? "" : " (further errors are not logged)");
}

/* Read and handle one batch; returns the number of messages read, 0 when
 * the queue is empty, -1 on a read error. */
static int read_batch(struct ufault__worker *w, struct uffd_msg *msgs, unsigned int *want)
{
	struct ufault_ctx *ctx = w->env.ctx;
	int err = __atomic_exchange_n(&w->inject_err, 0, __ATOMIC_RELAXED);
	ssize_t n = -1;
	uint64_t t0;

	/* No more messages than free requests: the rest stay queued in the
	 * kernel until fills complete (back-pressure). */
	*want = w->nr_free < ctx->batch ? w->nr_free : ctx->batch;
	if (!*want)
		return 0;
	/* Removals are recorded before anyone installs again (zeroed.h). */
	ufault__zeroed_read_begin(&ctx->zeroed);
	if (!err) {
		n = read(w->uffd, msgs, sizeof(*msgs) * *want);
		err = n < 0 ? -errno : 0;
	}
	/* Only a foreign context's owner enables these events. */
	for (size_t i = 0; ctx->foreign && n > 0 && i < (size_t)n / sizeof(*msgs); i++)
		if (msgs[i].event == UFFD_EVENT_REMOVE || msgs[i].event == UFFD_EVENT_UNMAP)
			handle_remove(w, &msgs[i]);
	ufault__zeroed_read_end(&ctx->zeroed);
	if (n < 0) {
		if (err == -EAGAIN || err == -EINTR)
			return 0;
		log_error(w, "read(uffd)", err);
		return -1;
	}
	t0 = ufault__now_ns();
	for (size_t i = 0; i < (size_t)n / sizeof(*msgs); i++) {
		if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
			handle_fault(w, &msgs[i], t0);
		else if (msgs[i].event == UFFD_EVENT_REMAP)
			handle_remap(w, &msgs[i]);
		else if (msgs[i].event == UFFD_EVENT_FORK)
			handle_fork(w, &msgs[i]);
		ufault__qsbr_quiescent(&ctx->qsbr, w->id);
	}
	return (int)((size_t)n / sizeof(*msgs));
}

/* Read until the queue is dry. The batch sequence is odd from before the
 * first read until every message read is handled (ufault__workers_sync). */
static int drain(struct ufault__worker *w, struct uffd_msg *msgs)
{
	unsigned int want;
	int n;

	__atomic_fetch_add(&w->batch_seq, 1, __ATOMIC_SEQ_CST);
	/* A full batch means more may be queued: read again before sleeping;
	 * a short one means the queue is dry. */
	while ((n = read_batch(w, msgs, &want)) > 0 && n == (int)want)
		;
	__atomic_fetch_add(&w->batch_seq, 1, __ATOMIC_RELEASE);
	return n;
}

/*
 * Each worker waits in its own epoll set, with its uffd added EPOLLEXCLUSIVE:
 * when several workers share a uffd, one fault wakes one of them instead of
 * all (every needless wake-up costs a cross-CPU IPI on a VM). Pokes come on
 * the worker's own eventfd, edge-triggered and never read.
 */
/* Put the uffd in the epoll set, or take it out (EPOLLEXCLUSIVE forbids
 * EPOLL_CTL_MOD), so that a worker out of requests is not woken for it. */
static int set_reading(struct ufault__worker *w, int ep, bool on)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u64 = EV_UFFD};

	if (on == w->reading)
		return 0;
	if (epoll_ctl(ep, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, w->uffd, &ev))
		return -errno;
	w->reading = on;
	return 0;
}

static int worker_epoll(struct ufault__worker *w)
{
	struct epoll_event ev;
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep < 0)
		return -errno;
	w->reading = false;
	if (set_reading(w, ep, true))
		goto fail;
	ev.events = EPOLLIN;
	ev.data.u64 = EV_STOP;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, w->env.ctx->stop_fd, &ev))
		goto fail;
	ev.events = EPOLLIN | EPOLLET;
	ev.data.u64 = EV_POKE;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, w->defer.poke_fd, &ev))
		goto fail;
	ev.data.u64 = EV_DONE; /* edge-triggered too: one event per completion */
	if (epoll_ctl(ep, EPOLL_CTL_ADD, w->env.done_fd, &ev))
		goto fail;
	return ep;
fail:
	ev.events = (uint32_t)errno;
	close(ep);
	return -(int)ev.events;
}

/*
 * The watches given to this worker since the last look join its list, and
 * those whose source went are let go: here, before epoll_wait, no event
 * naming them is held any more.
 */
static void tend_watches(struct ufault__worker *w)
{
	struct ufault__watch *a = __atomic_exchange_n(&w->adopted, NULL, __ATOMIC_ACQUIRE), **p;

	while (a) {
		struct ufault__watch *next = a->next;

		a->next = w->watches;
		w->watches = a;
		a = next;
	}
	for (p = &w->watches; *p;) {
		struct ufault__watch *x = *p;

		if (ufault__watch_closing(x)) {
			*p = x->next;
			ufault__watch_release(x);
		} else {
			p = &x->next;
		}
	}
}

/* Reads in flight on a watched fd: possibly another worker's, so this one
 * drives them before it stops. */
static bool watches_busy(struct ufault__worker *w)
{
	for (struct ufault__watch *x = w->watches; x; x = x->next)
		if (ufault__watch_busy(x))
			return true;
	return false;
}

static void *worker_main(void *arg)
{
	struct ufault__worker *w = arg;
	struct ufault_ctx *ctx = w->env.ctx;
	struct uffd_msg msgs[ctx->batch];

	bool stop = false;

	ufault__witness_set_worker();
	/* Slots start offline; each loop goes offline to sleep and back. */
	ufault__qsbr_online(&ctx->qsbr, w->id);
	for (;;) {
		struct epoll_event ev[4];
		bool ready = false, failed = false;
		int n;

		/*
		 * Offline first, then reclaim: a batch that waits only for
		 * this worker expires now, not at its next wake-up (a source's
		 * release hook would otherwise wait for an unrelated fault).
		 * Every batch not expired at once was snapshot with some
		 * worker online, and that worker comes through here.
		 */
		ufault__qsbr_offline(&ctx->qsbr, w->id);
		ufault__regions_reclaim(&ctx->regions);
		tend_watches(w);
		/* Stopping, the last completions may need a look without a
		 * wake-up of their own (see ufault__fault_env.completing). */
		n = epoll_wait(w->epfd, ev, 4, w->defer.n || stop ? DEFER_POLL_MS : -1);
		ufault__qsbr_online(&ctx->qsbr, w->id);
		if (n < 0 && errno != EINTR) {
			log_error(w, "epoll_wait", -errno);
			failed = true;
		}
		for (int i = 0; i < n; i++) {
			if (ev[i].data.u64 > EV_DONE) {
				ufault__watch_ready(ev[i].data.ptr, ev[i].events);
			} else if (ev[i].data.u64 == EV_STOP) {
				/* Level-triggered and never read (every worker
				 * sees it): out of the set, or a worker waiting
				 * for its last completions would spin. */
				if (!stop)
					epoll_ctl(w->epfd, EPOLL_CTL_DEL, ctx->stop_fd, NULL);
				stop = true;
			} else if (ev[i].data.u64 == EV_POKE || ev[i].data.u64 == EV_DONE) {
				/* the completions and deferred retries below */
			} else if (ev[i].events & EPOLLERR) {
				log_error(w, "uffd", -EIO);
				failed = true;
			} else {
				ready = true;
			}
		}
		/*
		 * Stopping: the regions are gone (ufault_ctx_destroy); what
		 * is left is to see every asynchronous fill complete. Ours
		 * first: then this worker issues nothing more. A worker
		 * driving fds goes on until no worker can issue a read on them
		 * any more and none is in flight (another worker's, perhaps
		 * issued after this one saw the stop).
		 */
		if (stop && !w->env.nr_pending &&
		    !__atomic_load_n(&w->env.completing, __ATOMIC_ACQUIRE)) {
			if (!w->issued_last) {
				w->issued_last = true;
				__atomic_fetch_sub(&ctx->issuing, 1, __ATOMIC_ACQ_REL);
			}
			/* (Watches adopted since the loop's top are listed
			 * at the next one.) */
			if ((!w->watches && !__atomic_load_n(&w->adopted, __ATOMIC_ACQUIRE)) ||
			    (!__atomic_load_n(&ctx->issuing, __ATOMIC_ACQUIRE) &&
			     !__atomic_load_n(&w->adopted, __ATOMIC_ACQUIRE) && !watches_busy(w)))
				break;
		}
		if (ready && !stop && drain(w, msgs) < 0)
			failed = true;
		handle_done(w);
		if (w->defer.n && !stop)
			retry_deferred(w);
		if (!stop)
			prefetch_some(w);
		/* More queued: come back at once (after a look at the uffd). */
		if (!stop && ufault__prefetch_queued(&ctx->prefetch) &&
		    w->nr_free > ctx->max_inflight / 2)
			ufault__workers_kick(ctx);
		/* One submission for the reads this round queued. */
		if (w->ring_ok && io_uring_sq_ready(&w->ring))
			io_uring_submit(&w->ring);
		if (set_reading(w, w->epfd, w->nr_free && !stop))
			failed = true;
		if (failed) {
			/* Back off, then read again: the faults stay queued. */
			ufault__qsbr_offline(&ctx->qsbr, w->id);
			ufault__sleep_ns(ERROR_BACKOFF_NS);
			ufault__qsbr_online(&ctx->qsbr, w->id);
		}
	}
	ufault__qsbr_offline(&ctx->qsbr, w->id);
	return NULL;
}

static void worker_free(struct ufault__worker *w, bool forget)
{
	struct ufault_ctx *ctx = w->env.ctx;

	/* A child takes no lock (a parent thread may have held one at the
	 * fork): its copies of the watches are left alone. */
	if (!forget) {
		tend_watches(w);
		while (w->watches) {
			struct ufault__watch *x = w->watches;

			w->watches = x->next;
			ufault__watch_release(x);
		}
	}

	if (w->epfd >= 0)
		close(w->epfd);
	ufault__defer_destroy(&w->defer);
	if (w->ring_ok)
		io_uring_queue_exit(&w->ring);
	w->ring_ok = false;
	ufault__fault_env_destroy(&w->env);
	ufault__pages_unmap(w->reqs, sizeof(*w->reqs) * ctx->max_inflight);
	ufault__pages_unmap(w->bufs, ctx->max_page_size * ctx->max_inflight);
}

/* The request pool and the buffers, one max_page_size each (address space
 * only until a fill touches it). */
static int pool_init(struct ufault__worker *w)
{
	struct ufault_ctx *ctx = w->env.ctx;
	int ret;

	w->reqs = ufault__pages_map(sizeof(*w->reqs) * ctx->max_inflight);
	w->bufs = ufault__pages_map(ctx->max_page_size * ctx->max_inflight);
	if (!w->reqs || !w->bufs)
		return -ENOMEM;
	/*
	 * An entry per request: a read is queued only for a request. Without
	 * io_uring (kernel.io_uring_disabled, seccomp) the context still works;
	 * only file sources fail their fills (-EOPNOTSUPP, the error policy).
	 */
	ret = io_uring_queue_init(ctx->max_inflight, &w->ring, 0);
	if (!ret) {
		w->ring_ok = true;
		ret = io_uring_register_eventfd(&w->ring, w->env.done_fd);
		if (ret)
			return ret;
		w->env.ring = &w->ring;
	} else if (!w->id) {
		ufault__warn(&ctx->log, "io_uring: %s: file sources will fail their fills",
			     ufault_strerror(ret));
	}
	for (unsigned int i = ctx->max_inflight; i--;) {
		w->reqs[i].buf = (char *)w->bufs + (size_t)i * ctx->max_page_size;
		req_put(w, &w->reqs[i]);
	}
	return 0;
}

/* ufault__loops.adopt: the workers take watches in turn. */
static int adopt(struct ufault__loops *loops, struct ufault__watch *x)
{
	struct ufault_ctx *ctx =
	    (struct ufault_ctx *)((char *)loops - offsetof(struct ufault_ctx, loops));
	unsigned int i = __atomic_fetch_add(&ctx->next_owner, 1, __ATOMIC_RELAXED);
	struct ufault__worker *w = &ctx->workers[i % ctx->nr_workers];
	struct ufault__watch *head;
	int ret = ufault__watch_arm(x, w->epfd, w->defer.poke_fd);

	if (ret)
		return ret;
	head = __atomic_load_n(&w->adopted, __ATOMIC_RELAXED);
	do
		x->next = head;
	while (!__atomic_compare_exchange_n(&w->adopted, &head, x, true, __ATOMIC_RELEASE,
					    __ATOMIC_RELAXED));
	return 0;
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
	ctx->loops.adopt = adopt;
	ctx->issuing = ctx->nr_workers;
	for (i = 0; i < ctx->nr_workers; i++) {
		struct ufault__worker *w = &ctx->workers[i];

		w->err_budget = 8;
		w->id = i;
		w->uffd = ctx->uffds[i % ctx->nr_uffds];
		w->epfd = -1;
		w->defer.poke_fd = -1;
		ret = ufault__fault_env_init(&w->env, ctx);
		w->env.id = i;
		if (!ret)
			ret = pool_init(w);
		if (!ret)
			ret = ufault__defer_init(&w->defer);
		if (!ret) {
			w->epfd = worker_epoll(w);
			ret = w->epfd < 0 ? w->epfd : 0;
		}
		if (!ret)
			ret = ufault__thread_start(&w->thread, worker_main, w);
		if (ret) {
			worker_free(w, false);
			goto undo;
		}
	}
	return 0;

undo:
	ufault__err(&ctx->log, "starting worker %u: %s", i, ufault_strerror(ret));
	ctx->issuing = i;
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
		worker_free(&ctx->workers[i], false);
	}
	ufault__pages_unmap(ctx->workers, ctx->workers_len);
	ctx->workers = NULL;
}

void ufault__workers_forget(struct ufault_ctx *ctx)
{
	if (!ctx->workers)
		return;
	for (unsigned int i = 0; i < ctx->nr_workers; i++)
		worker_free(&ctx->workers[i], true);
	ufault__pages_unmap(ctx->workers, ctx->workers_len);
	ctx->workers = NULL;
}

void ufault__workers_stats(struct ufault_ctx *ctx, struct ufault_stats *out)
{
	for (unsigned int i = 0; i < ctx->nr_workers; i++)
		ufault__stats_merge(out, &ctx->workers[i].env.stats);
}

void ufault__workers_hist(struct ufault_ctx *ctx, uint64_t *hist, unsigned int nr)
{
	for (unsigned int i = 0; i < ctx->nr_workers; i++)
		ufault__stats_merge_hist(hist, nr, &ctx->workers[i].env.stats);
}

void ufault__workers_poke(struct ufault_ctx *ctx)
{
	for (unsigned int i = 0; i < ctx->nr_workers; i++)
		ufault__defer_poke(&ctx->workers[i].defer);
}

void ufault__workers_sync(struct ufault_ctx *ctx)
{
	for (unsigned int i = 0; i < ctx->nr_workers; i++) {
		struct ufault__worker *w = &ctx->workers[i];
		unsigned int s = __atomic_load_n(&w->batch_seq, __ATOMIC_SEQ_CST);

		while ((s & 1) && __atomic_load_n(&w->batch_seq, __ATOMIC_ACQUIRE) == s)
			ufault__sleep_ns(SYNC_POLL_NS);
	}
}

void ufault__workers_kick(struct ufault_ctx *ctx)
{
	unsigned int i = __atomic_fetch_add(&ctx->next_prefetcher, 1, __ATOMIC_RELAXED);
	uint64_t one = 1;

	/* A failed write means the counter is saturated: a wake-up is due. */
	if (write(ctx->workers[i % ctx->nr_workers].defer.poke_fd, &one, sizeof(one)) < 0)
		return;
}

void ufault__workers_inject_error(struct ufault_ctx *ctx, int err)
{
	for (unsigned int i = 0; i < ctx->nr_workers; i++)
		__atomic_store_n(&ctx->workers[i].inject_err, err, __ATOMIC_RELAXED);
}
