// SPDX-License-Identifier: MIT
/*
 * source_nbd.c - an NBD export read with libnbd's asynchronous API: one
 * nbd_aio_pread() per fill, many in flight on one connection per source.
 *
 * The connection is driven inside the workers' event loops: its socket is
 * a watch (watch.h) given to one worker, which waits on it in its epoll set
 * with its uffd and its completions, and calls nbd_aio_notify_read/write
 * when it is ready. Any worker issues reads on the connection (its fills
 * are its own); the watch lock, the connection's lock, covers every call
 * that changes what the socket waits for, and its unlock re-arms the epoll
 * entry from nbd_aio_get_direction(), so a read queued behind a full socket
 * always gets its POLLOUT. No call under it waits on the network. One
 * connection per source rather than per worker: a worker holds no state
 * keyed by sources that come and go, and the owner drops its reference when
 * the source closes the watch.
 *
 * The registration connects (blocking the registering thread, not a
 * worker), so a bad URI or an unreachable server fails it at once and the
 * export's size is known before the first fill.
 *
 * A fill completes from libnbd's completion callback, which libnbd(3)
 * reaches exactly once for a command it issued, whatever happens then (a
 * reply, an error, a connection that dies; possibly before nbd_aio_pread
 * returns, which ufault_complete allows). A read it could not issue fails
 * the fill at once. A dead connection leaves the epoll set (want() says
 * gone) and every later read fails at once: the region's error policy.
 *
 * libnbd allocates with libc malloc (a command per read): unlike the other
 * sources, this one is not for the preload shim's metadata-free fault path.
 */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>

#include <libnbd.h>

#include "source.h"

struct nbd_conn {
	struct ufault__watch watch; /* first: the watch's callbacks find the rest */
	struct nbd_handle *h;
	uint64_t size; /* the export's, read at connect */
	size_t bytes;  /* of this mapping */
	char uri[];    /* the caller's URI, copied */
};

static int nbd_validate(const struct ufault_source *src, const struct ufault__log *log)
{
	if (!src->nbd.uri) {
		ufault__warn(log, "nbd source: NULL uri");
		return -EINVAL;
	}
	return 0;
}

static bool conn_over(struct nbd_handle *h)
{
	return nbd_aio_is_dead(h) || nbd_aio_is_closed(h);
}

static uint32_t conn_want(struct ufault__watch *w)
{
	struct nbd_conn *c = (struct nbd_conn *)w;
	unsigned int dir;

	if (conn_over(c->h))
		return UFAULT__WATCH_GONE;
	dir = (unsigned int)nbd_aio_get_direction(c->h);
	return ((dir & LIBNBD_AIO_DIRECTION_READ) ? EPOLLIN : 0) |
	       ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? EPOLLOUT : 0);
}

static void conn_ready(struct ufault__watch *w, uint32_t events)
{
	struct nbd_conn *c = (struct nbd_conn *)w;
	unsigned int dir = (unsigned int)nbd_aio_get_direction(c->h);

	/* A hang-up or an error goes to the state machine, which sees it
	 * on its next read or write and fails what is in flight. */
	if ((dir & LIBNBD_AIO_DIRECTION_READ) && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		nbd_aio_notify_read(c->h);
	else if ((dir & LIBNBD_AIO_DIRECTION_WRITE) && (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)))
		nbd_aio_notify_write(c->h);
}

static bool conn_busy(struct ufault__watch *w)
{
	struct nbd_conn *c = (struct nbd_conn *)w;

	return !conn_over(c->h) && nbd_aio_in_flight(c->h) > 0;
}

/* The last reference (the source's or the owning worker's): no read is in
 * flight, nobody calls libnbd on this handle any more. */
static void conn_free(struct ufault__watch *w)
{
	struct nbd_conn *c = (struct nbd_conn *)w;

	nbd_close(c->h);
	ufault__pages_unmap(c, c->bytes);
}

static const struct ufault__watch_ops conn_ops = {
    .want = conn_want,
    .ready = conn_ready,
    .busy = conn_busy,
    .free = conn_free,
};

static int nbd_error(int dflt)
{
	int e = nbd_get_errno();

	return e > 0 ? -e : dflt;
}

static int nbd_init(struct ufault_source *src, const struct ufault__log *log)
{
	struct ufault__source *self = ufault__source_of(src);
	size_t n = strlen(src->nbd.uri) + 1;
	struct nbd_conn *c = ufault__pages_map(sizeof(*c) + n); /* not libc malloc */
	int64_t size;
	int ret;

	if (!c)
		return -ENOMEM;
	c->bytes = sizeof(*c) + n;
	memcpy(c->uri, src->nbd.uri, n);
	c->h = nbd_create();
	if (!c->h) {
		ret = nbd_error(-ENOMEM);
		ufault__warn(log, "nbd source: %s", nbd_get_error());
		goto free_conn;
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
	ret = ufault__watch_init(&c->watch, nbd_aio_get_fd(c->h), &conn_ops);
	if (ret) {
		ufault__warn(log, "nbd source: socket: %s", ufault_strerror(ret));
		goto close_handle;
	}
	/* From here the watch owns the connection: its last reference closes it. */
	ret = self->loops->adopt(self->loops, &c->watch);
	if (ret) {
		ufault__warn(log, "nbd source: watching the socket: %s", ufault_strerror(ret));
		ufault__watch_close(&c->watch);
		return ret;
	}
	src->nbd.uri = c->uri;
	self->priv = c;
	return 0;

close_handle:
	nbd_close(c->h);
free_conn:
	ufault__pages_unmap(c, c->bytes);
	return ret;
}

static void nbd_fini(struct ufault_source *src)
{
	struct nbd_conn *c = ufault__source_of(src)->priv;

	/* No read is in flight: the last reference goes after every fill's
	 * completion (the region stays pinned until then). The owner lets go
	 * of the watch next time round its loop; the last one closes. */
	ufault__watch_close(&c->watch);
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
	int ret = 0;

	(void)ring;
	if (n < len)
		memset((char *)buf + n, 0, len - n); /* past the end of the export */
	if (!n) {
		ufault_complete(cp, 0);
		return 0;
	}
	ufault__watch_lock(&c->watch);
	if (conn_over(c->h)) {
		/* The connection is gone (the server went away): fail at once. */
		ret = -ENOTCONN;
	} else if (nbd_aio_pread(c->h, buf, n, off,
				 (nbd_completion_callback){.callback = read_done, .user_data = cp},
				 0) == -1) {
		/* Not issued: no completion callback follows (libnbd(3),
		 * "Callback lifetimes"); the fill fails here instead. */
		ret = nbd_error(-EIO);
	}
	/* Issued: read_done completes it (perhaps already). The unlock
	 * re-arms the socket: a read queued behind others waits for POLLOUT. */
	ufault__watch_unlock(&c->watch);
	return ret;
}

const struct ufault__source_ops ufault__source_nbd = {
    .name = "nbd",
    .validate = nbd_validate,
    .init = nbd_init,
    .fini = nbd_fini,
    .start = nbd_start,
};
