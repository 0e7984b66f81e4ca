// SPDX-License-Identifier: MIT
/*
 * watch.c - an fd driven by a worker's event loop (watch.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "watch.h"
#include "witness.h"

int ufault__watch_init(struct ufault__watch *w, int fd, const struct ufault__watch_ops *ops)
{
	int ret;

	w->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (w->fd < 0)
		return -errno;
	ret = -pthread_mutex_init(&w->lock, NULL);
	if (ret) {
		close(w->fd);
		return ret;
	}
	w->ops = ops;
	w->refs = 1;
	w->epfd = w->wake_fd = -1;
	w->events = 0;
	w->gone = w->closing = false;
	w->next = NULL;
	return 0;
}

static void put(struct ufault__watch *w)
{
	if (__atomic_sub_fetch(&w->refs, 1, __ATOMIC_ACQ_REL))
		return;
	pthread_mutex_destroy(&w->lock);
	close(w->fd);
	w->ops->free(w);
}

void ufault__watch_lock(struct ufault__watch *w)
{
	ufault__witness_acquire(UFAULT__RANK_WATCH, false);
	pthread_mutex_lock(&w->lock);
}

/* Under the lock: the epoll entry asks for what the source wants now. */
static void rearm(struct ufault__watch *w)
{
	uint32_t want;
	struct epoll_event ev = {.data.ptr = w};

	if (w->gone || w->epfd < 0)
		return;
	want = w->ops->want(w);
	if (want == UFAULT__WATCH_GONE) {
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->fd, NULL);
		w->gone = true;
		return;
	}
	if (want == w->events)
		return;
	ev.events = want;
	/* Cannot fail for an fd of ours in a set of the owner's but on
	 * ENOMEM; the entry then keeps the old interest, and the next change
	 * tries again. */
	if (!epoll_ctl(w->epfd, EPOLL_CTL_MOD, w->fd, &ev))
		w->events = want;
}

void ufault__watch_unlock(struct ufault__watch *w)
{
	rearm(w);
	pthread_mutex_unlock(&w->lock);
	ufault__witness_release(UFAULT__RANK_WATCH);
}

int ufault__watch_arm(struct ufault__watch *w, int epfd, int wake_fd)
{
	struct epoll_event ev = {.events = 0, .data.ptr = w};
	int ret = 0;

	ufault__watch_lock(w);
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, w->fd, &ev)) {
		ret = -errno;
	} else {
		__atomic_fetch_add(&w->refs, 1, __ATOMIC_RELAXED);
		w->epfd = epfd;
		w->wake_fd = wake_fd;
		w->events = 0;
	}
	ufault__watch_unlock(w); /* asks for what is wanted already */
	return ret;
}

void ufault__watch_ready(struct ufault__watch *w, uint32_t events)
{
	ufault__watch_lock(w);
	if (!w->gone && !w->closing)
		w->ops->ready(w, events);
	ufault__watch_unlock(w);
}

bool ufault__watch_closing(struct ufault__watch *w)
{
	return __atomic_load_n(&w->closing, __ATOMIC_ACQUIRE);
}

bool ufault__watch_busy(struct ufault__watch *w)
{
	bool busy;

	ufault__watch_lock(w);
	busy = !w->gone && !w->closing && w->ops->busy(w);
	ufault__watch_unlock(w);
	return busy;
}

void ufault__watch_release(struct ufault__watch *w)
{
	ufault__watch_lock(w);
	if (w->epfd >= 0 && !w->gone)
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->fd, NULL);
	w->epfd = w->wake_fd = -1;
	pthread_mutex_unlock(&w->lock); /* no re-arm: nobody owns it now */
	ufault__witness_release(UFAULT__RANK_WATCH);
	put(w);
}

void ufault__watch_close(struct ufault__watch *w)
{
	uint64_t one = 1;

	ufault__watch_lock(w);
	__atomic_store_n(&w->closing, true, __ATOMIC_RELEASE);
	if (w->epfd >= 0 && !w->gone)
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->fd, NULL);
	w->gone = true;
	/* A failed write means the counter is saturated: a wake-up is due. */
	if (w->wake_fd >= 0 && write(w->wake_fd, &one, sizeof(one)) < 0)
		one = 0;
	pthread_mutex_unlock(&w->lock);
	ufault__witness_release(UFAULT__RANK_WATCH);
	put(w);
}
