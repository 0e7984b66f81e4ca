/* SPDX-License-Identifier: MIT */
/*
 * watch.h - an fd that a source needs a worker's event loop to drive (the
 * NBD socket): the owning worker waits on it in its epoll set, next to its
 * uffd and its completions (the one wait point), and calls the source back
 * when it is ready. No thread of the source's own.
 *
 * The watch lock is the connection's lock: whoever changes what the fd waits
 * for (issues a read on it, or handles its readiness) does so between
 * ufault__watch_lock() and ufault__watch_unlock(), and the unlock asks the
 * source what it wants now and re-arms the epoll entry if that changed. Every
 * change is followed by a re-arm under the lock, so the epoll set never
 * keeps a stale interest (a read queued behind a busy socket always gets
 * its POLLOUT). The fd in the set is the watch's own dup, closed only with
 * the watch: however the source's fd ends, the number in the set is never
 * another file's.
 *
 * Lifetime: two references, the source's and the owning worker's. The
 * source closes the watch when it goes (out of the epoll set at once, the
 * owner woken to drop its reference); the owner drops it at the top of its
 * loop, where it holds no event naming the watch, or when it stops. The
 * last reference frees the watch through the source's callback.
 */
#ifndef UFAULT_LIB_WATCH_H
#define UFAULT_LIB_WATCH_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* What a source's want() returns for a connection that is over: the watch
 * leaves the epoll set for good (a dead socket would report EPOLLHUP for
 * ever). */
#define UFAULT__WATCH_GONE UINT32_MAX

struct ufault__watch;

struct ufault__watch_ops {
	/* EPOLLIN / EPOLLOUT wanted now (0: nothing yet), or
	 * UFAULT__WATCH_GONE. Called with the watch lock held. */
	uint32_t (*want)(struct ufault__watch *w);
	/* The fd is ready (@events from epoll). Called by the owning worker
	 * with the watch lock held. */
	void (*ready)(struct ufault__watch *w, uint32_t events);
	/* Work still in flight on the fd: the owner keeps driving it until
	 * none is left, even when told to stop. Called with the lock held. */
	bool (*busy)(struct ufault__watch *w);
	/* The last reference went: free the source's state. No lock held. */
	void (*free)(struct ufault__watch *w);
};

struct ufault__watch {
	const struct ufault__watch_ops *ops;
	pthread_mutex_t lock;
	int fd;			    /* our dup of the source's fd */
	unsigned int refs;	    /* atomic */
	int epfd;		    /* under lock: the owner's epoll set, -1 when none */
	int wake_fd;		    /* under lock: the owner's eventfd, -1 when none */
	uint32_t events;	    /* under lock: what the epoll entry asks for */
	bool gone;		    /* under lock: out of the epoll set for good */
	bool closing;		    /* written under lock, read atomically: the source went */
	struct ufault__watch *next; /* the owner's list */
};

/* The event loops a source can hand a watch to: the context's workers. */
struct ufault__loops {
	/* Give @w to a worker (it takes a reference and arms the epoll
	 * entry); 0 or -errno. */
	int (*adopt)(struct ufault__loops *loops, struct ufault__watch *w);
};

/* @w holds one reference, the source's; @fd is duplicated. 0 or -errno. */
int ufault__watch_init(struct ufault__watch *w, int fd, const struct ufault__watch_ops *ops);

void ufault__watch_lock(struct ufault__watch *w);
/* Re-arm the epoll entry if what the source wants changed, and unlock. */
void ufault__watch_unlock(struct ufault__watch *w);

/* The owner: add @w to @epfd (data.ptr is @w); it wakes @wake_fd when the
 * source closes it. Takes the owner's reference. 0 or -errno. */
int ufault__watch_arm(struct ufault__watch *w, int epfd, int wake_fd);
/* The owner, @w ready: lock, ops->ready, re-arm, unlock. */
void ufault__watch_ready(struct ufault__watch *w, uint32_t events);
/* The owner: has the source closed @w? / still work in flight on it? */
bool ufault__watch_closing(struct ufault__watch *w);
bool ufault__watch_busy(struct ufault__watch *w);
/* The owner lets go of @w (closed, or the owner stops; the epoll set need
 * not outlive this) and drops its reference. */
void ufault__watch_release(struct ufault__watch *w);

/* The source is going: out of the epoll set, wake the owner, and drop the
 * source's reference. */
void ufault__watch_close(struct ufault__watch *w);

#endif
