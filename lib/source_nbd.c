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
#include <pthread.h>
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

/* --- write-back: writes and flushes, waited for by the storing thread --- */

/* Commands a storing thread (a flush, the evictor) waits for; their
 * completions come from the worker that drives the connection. */
struct nbd_wait {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned int pending;
};

struct nbd_cmd {
	struct nbd_wait *w;
	int *result;
};

static int cmd_done(void *arg, int *error)
{
	struct nbd_cmd *cmd = arg;
	struct nbd_wait *w = cmd->w;

	pthread_mutex_lock(&w->lock);
	*cmd->result = *error ? -*error : 0;
	if (!--w->pending)
		pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	return 1;
}

static void wait_init(struct nbd_wait *w)
{
	w->pending = 0;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
}

static void wait_add(struct nbd_wait *w, int n)
{
	pthread_mutex_lock(&w->lock);
	w->pending = (unsigned int)((int)w->pending + n);
	pthread_mutex_unlock(&w->lock);
}

/* Until every command issued for @w completed; then @w is done with. */
static void wait_all(struct nbd_wait *w)
{
	pthread_mutex_lock(&w->lock);
	while (w->pending)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
}

/* Issue a write (@buf) or a flush (!@buf) that @cmd->w waits for; 0 when
 * issued (cmd_done follows), else -errno (nothing to wait for). */
static int issue(struct nbd_conn *c, uint64_t off, const void *buf, size_t len, struct nbd_cmd *cmd)
{
	nbd_completion_callback cb = {.callback = cmd_done, .user_data = cmd};
	int ret = 0;

	wait_add(cmd->w, 1); /* before: the completion may come at once */
	ufault__watch_lock(&c->watch);
	if (conn_over(c->h))
		ret = -ENOTCONN;
	else if ((buf ? nbd_aio_pwrite(c->h, buf, len, off, cb, 0) : nbd_aio_flush(c->h, cb, 0)) ==
		 -1)
		ret = nbd_error(-EIO);
	ufault__watch_unlock(&c->watch);
	if (ret)
		wait_add(cmd->w, -1);
	return ret;
}

/* All of @io at once, waited for; a write past the export's end cannot be
 * stored (-ENOSPC; its pages stay written). */
static void nbd_write_batch(const struct ufault_source *src, struct ufault__wb_io *io,
			    unsigned int n)
{
	struct nbd_conn *c = ufault__source_of(src)->priv;
	struct nbd_wait w;
	struct nbd_cmd cmd[n ? n : 1];

	wait_init(&w);
	for (unsigned int i = 0; i < n; i++) {
		int ret;

		if (io[i].off >= c->size || io[i].len > c->size - io[i].off) {
			io[i].result = -ENOSPC;
			continue;
		}
		cmd[i] = (struct nbd_cmd){.w = &w, .result = &io[i].result};
		ret = issue(c, io[i].off, io[i].buf, io[i].len, &cmd[i]);
		if (ret)
			io[i].result = ret;
	}
	wait_all(&w);
}

static int nbd_write(const struct ufault_source *src, uint64_t off, const void *buf, size_t len)
{
	struct ufault__wb_io io = {.off = off, .buf = buf, .len = len};

	nbd_write_batch(src, &io, 1);
	return io.result;
}

static int nbd_sync(const struct ufault_source *src)
{
	struct nbd_conn *c = ufault__source_of(src)->priv;
	struct nbd_wait w;
	int result = 0, ret;
	struct nbd_cmd cmd = {.w = &w, .result = &result};

	if (nbd_can_flush(c->h) != 1)
		return 0; /* the server has nothing to flush */
	wait_init(&w);
	ret = issue(c, 0, NULL, 0, &cmd);
	wait_all(&w);
	return ret ? ret : result;
}

/* Before the connection (!@made) nothing is known; then the export must
 * be writable. */
static int nbd_writable(const struct ufault_source *src, bool made, const struct ufault__log *log)
{
	struct nbd_conn *c;

	if (!made)
		return 0;
	c = ufault__source_of(src)->priv;
	if (nbd_is_read_only(c->h) != 0) {
		ufault__warn(log, "write-back region: the NBD export %s is read-only", c->uri);
		return -EINVAL;
	}
	return 0;
}

const struct ufault__source_ops ufault__source_nbd = {
    .name = "nbd",
    .validate = nbd_validate,
    .init = nbd_init,
    .fini = nbd_fini,
    .start = nbd_start,
    .can_write = nbd_writable,
    .write = nbd_write,
    .write_batch = nbd_write_batch,
    .sync = nbd_sync,
};
