// SPDX-License-Identifier: MIT
/*
 * source_nbd.c - an NBD export read with libnbd's asynchronous API: one
 * nbd_aio_pread() per fill, many in flight on one connection per source.
 *
 * One handle per source, shared by the workers, plus a poller thread per
 * source that alone waits on the socket and drives libnbd's state machine
 * (nbd_aio_notify_read/write). A libnbd handle takes its own lock around
 * every call, so workers issue reads from any thread, never waiting on the
 * network (the lock covers only non-blocking work). The handle stays with
 * the source object: a worker holds no per-source state whose lifetime it
 * would have to track, and the source's fini (last reference, any thread)
 * stops the poller and closes the connection. Chosen over a handle per
 * worker in the workers' epoll sets for that reason: no cache of handles
 * keyed by source objects that come and go.
 *
 * The registration connects (blocking the registering thread, not a
 * worker), so a bad URI or an unreachable server fails it at once and the
 * export's size is known before the first fill.
 *
 * A fill completes from libnbd's completion callback, which libnbd(3)
 * reaches exactly once for a command it issued, whatever happens then (a
 * reply, an error, a connection that dies; possibly before nbd_aio_pread
 * returns, which ufault_complete allows). A read it could not issue fails
 * the fill at once.
 *
 * libnbd allocates with libc malloc (a command per read): unlike the other
 * sources, this one is not for the preload shim's metadata-free fault path.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <libnbd.h>

#include "source.h"

struct nbd_conn {
	struct nbd_handle *h;
	uint64_t size;	  /* the export's, read at connect */
	int wake_fd;	  /* eventfd: look at the direction again, or stop */
	bool stop;	  /* atomic */
	pthread_t poller; /* waits on the socket, notifies libnbd */
	size_t bytes;	  /* of this mapping */
	char uri[];	  /* the caller's URI, copied */
};

static int nbd_validate(const struct ufault_source *src, const struct ufault__log *log)
{
	if (!src->nbd.uri) {
		ufault__warn(log, "nbd source: NULL uri");
		return -EINVAL;
	}
	return 0;
}

static void wake(struct nbd_conn *c)
{
	uint64_t one = 1;

	/* A failed write means the counter is saturated: a wake-up is due. */
	if (write(c->wake_fd, &one, sizeof(one)) < 0)
		return;
}

/*
 * Wait on the socket in the direction libnbd wants and on the wake-up
 * eventfd. A dead or closed handle wants nothing: only the eventfd is left
 * (no busy loop on a hung-up socket); reads issued then fail at once.
 */
static void *poller_main(void *arg)
{
	struct nbd_conn *c = arg;

	while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
		unsigned int dir = (unsigned int)nbd_aio_get_direction(c->h);
		int fd = dir ? nbd_aio_get_fd(c->h) : -1;
		struct pollfd p[2] = {
		    {.fd = c->wake_fd, .events = POLLIN},
		    {.fd = fd,
		     .events = (short)(((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
				       ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0))},
		};
		uint64_t v;
		ssize_t r = 0;

		if (poll(p, 2, -1) < 0)
			continue; /* EINTR */
		if (p[0].revents)
			r = read(c->wake_fd, &v, sizeof(v)); /* reset it; nothing to check */
		(void)r;
		if (!p[1].revents)
			continue;
		/* Another thread may have changed it since (see libnbd(3)). */
		dir = (unsigned int)nbd_aio_get_direction(c->h);
		if ((dir & LIBNBD_AIO_DIRECTION_READ) &&
		    (p[1].revents & (POLLIN | POLLHUP | POLLERR)))
			nbd_aio_notify_read(c->h);
		else if ((dir & LIBNBD_AIO_DIRECTION_WRITE) &&
			 (p[1].revents & (POLLOUT | POLLERR | POLLHUP)))
			nbd_aio_notify_write(c->h);
	}
	return NULL;
}

static int nbd_error(int dflt)
{
	int e = nbd_get_errno();

	return e > 0 ? -e : dflt;
}

static int nbd_init(struct ufault_source *src, const struct ufault__log *log)
{
	size_t n = strlen(src->nbd.uri) + 1;
	struct nbd_conn *c = ufault__pages_map(sizeof(*c) + n); /* not libc malloc */
	int64_t size;
	int ret;

	if (!c)
		return -ENOMEM;
	c->bytes = sizeof(*c) + n;
	memcpy(c->uri, src->nbd.uri, n);
	c->stop = false;
	c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->wake_fd < 0) {
		ret = -errno;
		goto free_conn;
	}
	c->h = nbd_create();
	if (!c->h) {
		ret = nbd_error(-ENOMEM);
		ufault__warn(log, "nbd source: %s", nbd_get_error());
		goto close_wake;
	}
	if (nbd_connect_uri(c->h, c->uri)) {
		ret = nbd_error(-EIO);
		ufault__warn(log, "nbd source: %s: %s", c->uri, nbd_get_error());
		goto close_handle;
	}
	size = nbd_get_size(c->h);
	if (size < 0) {
		ret = nbd_error(-EIO);
		ufault__warn(log, "nbd source: %s: %s", c->uri, nbd_get_error());
		goto close_handle;
	}
	c->size = (uint64_t)size;
	ret = -pthread_create(&c->poller, NULL, poller_main, c);
	if (ret) {
		ufault__warn(log, "nbd source: poller thread: %s", ufault_strerror(ret));
		goto close_handle;
	}
	src->nbd.uri = c->uri;
	ufault__source_of(src)->priv = c;
	return 0;

close_handle:
	nbd_close(c->h);
close_wake:
	close(c->wake_fd);
free_conn:
	ufault__pages_unmap(c, c->bytes);
	return ret;
}

static void nbd_fini(struct ufault_source *src)
{
	struct nbd_conn *c = ufault__source_of(src)->priv;

	__atomic_store_n(&c->stop, true, __ATOMIC_RELEASE);
	wake(c);
	pthread_join(c->poller, NULL);
	/* No read is in flight: the last reference goes after every fill's
	 * completion (the region stays pinned until then). */
	nbd_close(c->h);
	close(c->wake_fd);
	ufault__pages_unmap(c, c->bytes);
}

static int read_done(void *arg, int *error)
{
	ufault_complete(arg, *error ? -*error : 0);
	return 1; /* retire the command */
}

static int nbd_start(const struct ufault_source *src, uint64_t off, size_t len, void *buf,
		     struct ufault_completion *cp, struct io_uring *ring)
{
	struct nbd_conn *c = ufault__source_of(src)->priv;
	size_t n = off >= c->size ? 0 : (c->size - off < len ? (size_t)(c->size - off) : len);

	(void)ring;
	if (n < len)
		memset((char *)buf + n, 0, len - n); /* past the end of the export */
	if (!n) {
		ufault_complete(cp, 0);
		return 0;
	}
	/* The connection is gone (the server went away): fail at once. */
	if (nbd_aio_is_dead(c->h) || nbd_aio_is_closed(c->h))
		return -ENOTCONN;
	/* A read that cannot be issued (the handle died since the check
	 * above) gets no completion callback (libnbd(3), "Callback
	 * lifetimes"): it fails here instead. */
	if (nbd_aio_pread(c->h, buf, n, off,
			  (nbd_completion_callback){.callback = read_done, .user_data = cp},
			  0) == -1)
		return nbd_error(-EIO);
	/* Issued: read_done completes it (perhaps already). A request
	 * waiting in libnbd's queue needs the poller to wait for POLLOUT. */
	if (nbd_aio_get_direction(c->h) & LIBNBD_AIO_DIRECTION_WRITE)
		wake(c);
	return 0;
}

const struct ufault__source_ops ufault__source_nbd = {
    .name = "nbd",
    .validate = nbd_validate,
    .init = nbd_init,
    .fini = nbd_fini,
    .start = nbd_start,
};
