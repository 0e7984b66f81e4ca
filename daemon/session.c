/* SPDX-License-Identifier: MIT */
/*
 * session.c - client objects (both protocols) and the native protocol
 * (include/ufault/protocol.h).
 *
 * A connection is read one message at a time: the header, then exactly the
 * body it announces, never past it, so the fds a recvmsg() returns belong
 * to the message being read (the kernel attaches them to the first byte of
 * the sender's write, and a read that stops at the message's end cannot
 * take the next one's). Checking is lib/proto.c's: a message it cannot
 * frame closes the connection, a well-framed bad one gets a REPLY with the
 * error and the connection stays. A reply the socket does not take at once
 * waits in the client's buffer, and input waits until it is out, so a
 * client that does not read costs one buffer, never the loop.
 *
 * A client acts on its own context and regions only (SET_BUDGET names
 * another client, and is checked against the caller's uid). When the
 * connection ends, the context is destroyed on the libuv thread pool:
 * ufault_ctx_destroy() joins the workers, which may wait for a fill in
 * flight, and the loop must not.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "proto.h"
#include "zlog_load.h"
#include "ufaultd.h"

#define HDR_SIZE sizeof(struct ufault_proto_hdr)
#define MSG_MAX (HDR_SIZE + UFAULT_PROTO_MAX_BODY)
#define MSGS_PER_WAKEUP 32 /* messages handled per readiness callback: fairness */

/* ------------------------------------------------------------------ */
/* Receiving with fds                                                   */
/* ------------------------------------------------------------------ */

void ufd_close_fds(int *fds, unsigned int *nr)
{
	unsigned int i;

	for (i = 0; i < *nr; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
	*nr = 0;
}

/*
 * recvmsg() of at most @len bytes, non-blocking, fds close-on-exec. Up to
 * @max_fds - *@nr_fds fds are kept in @fds; any beyond, and any the kernel
 * had to drop (MSG_CTRUNC: the buffer has one slot more than a message may
 * carry, so that is a client sending even more), set *@overflow and are
 * closed. Returns the bytes read, 0 at EOF, or -errno (-EAGAIN: nothing).
 */
ssize_t ufd_recv(int fd, void *buf, size_t len, int *fds, unsigned int max_fds,
		 unsigned int *nr_fds, bool *overflow)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * (UFAULT_PROTO_MAX_FDS + 1))];
	} control;
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr mh = {
	    .msg_iov = &iov,
	    .msg_iovlen = 1,
	    .msg_control = control.buf,
	    .msg_controllen = sizeof(control.buf),
	};
	struct cmsghdr *cm;
	ssize_t n;

	do {
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		size_t i, nr;
		int got;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		nr = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < nr; i++) {
			memcpy(&got, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (*nr_fds < max_fds) {
				fds[(*nr_fds)++] = got;
			} else {
				close(got);
				*overflow = true;
			}
		}
	}
	if (mh.msg_flags & MSG_CTRUNC)
		*overflow = true;
	return n;
}

/* ------------------------------------------------------------------ */
/* Client objects                                                       */
/* ------------------------------------------------------------------ */

bool ufd_client_listed(const struct ufd_client *c)
{
	return c->ctx && !c->closing;
}

/*
 * A client object with nothing open yet (not linked: ufd_client_link()).
 * Native clients get their message buffers now: a detached one may get a
 * connection back later.
 */
struct ufd_client *ufd_client_alloc(struct ufd_daemon *d, uint64_t id, enum ufd_kind kind,
				    pid_t pid, uid_t uid, gid_t gid)
{
	struct ufd_client *c = calloc(1, sizeof(*c));
	unsigned int i;

	if (!c)
		return NULL;
	c->d = d;
	c->id = id;
	c->kind = kind;
	c->fd = -1;
	c->pidfd = -1;
	c->uffd = -1;
	c->out_fd = -1;
	ufd_zlog_init(&c->zlog);
	c->pid = pid;
	c->uid = uid;
	c->gid = gid;
	for (i = 0; i < UFAULT_PROTO_MAX_FDS + 1; i++)
		c->in_fds[i] = -1;
	if (kind == UFD_NATIVE) {
		c->in = malloc(MSG_MAX);
		c->out = malloc(MSG_MAX);
		if (!c->in || !c->out) {
			free(c->in);
			free(c->out);
			free(c);
			return NULL;
		}
	}
	return c;
}

/* Everything a client holds but its context (destroyed by now) and its
 * handles (closed by now). */
void ufd_client_free(struct ufd_client *c)
{
	unsigned int i;

	if (c->uffd >= 0)
		close(c->uffd);
	for (i = 0; i < c->nr_regs; i++) {
		if (c->reg_fds[i] >= 0)
			close(c->reg_fds[i]);
		if (c->reg_mems[i] >= 0)
			close(c->reg_mems[i]);
	}
	ufd_close_fds(c->in_fds, &c->nr_in_fds);
	ufd_zlog_close(&c->zlog);
	free(c->in);
	free(c->out);
	free(c->regs);
	free(c->handles);
	free(c->reg_fds);
	free(c->reg_mems);
	free(c->json);
	free(c);
}

/* From here on the client is closed, never freed, when something fails. */
void ufd_client_link(struct ufd_client *c)
{
	struct ufd_daemon *d = c->d;

	c->prev = d->clients_tail;
	c->next = NULL;
	if (d->clients_tail)
		d->clients_tail->next = c;
	else
		d->clients = c;
	d->clients_tail = c;
	d->nr_clients++;
}

/* Thread pool: the only code that runs off the loop, and it touches only
 * this client's context, which nothing else refers to any more. */
static void destroy_work(uv_work_t *w)
{
	struct ufd_client *c = w->data;

	if (c->ctx)
		ufault_ctx_destroy(c->ctx);
	/* The context woke what was parked in its regions; a fault it held
	 * back for a region it never learnt of waits too, for whoever serves
	 * the uffd next (the process itself, a new session). */
	if (c->uffd >= 0)
		ufd_wake_all(c);
}

static void destroy_done(uv_work_t *w, int status)
{
	struct ufd_client *c = w->data;

	if (c->ctx)
		ufd_log(c->d, UFAULT_LOG_DEBUG, "client %llu: context destroyed",
			(unsigned long long)c->id);
	c->ctx = NULL;
	c->d->nr_closing--;
	/* Its workers are joined: a fork one of them read is queued by now.
	 * Its child becomes a client before @c, whose regions it starts
	 * with, is freed: a process that forks and exits at once (a double
	 * fork) has its child served all the same. */
	ufd_forks_take(c->d);
	ufd_client_free(c);
}

/* Every handle is closed: the context goes, off the loop (even a client
 * without one goes through the pool, so it is never freed under a caller
 * that still looks at it). */
static void client_finish(struct ufd_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	ufd_close_fds(c->in_fds, &c->nr_in_fds);
	c->work.data = c;
	if (uv_queue_work(c->d->loop, &c->work, destroy_work, destroy_done)) {
		/* Cannot happen with a live loop; do it here rather than leak. */
		destroy_work(&c->work);
		destroy_done(&c->work, 0);
	}
}

void ufd_client_handle_closed(uv_handle_t *h)
{
	struct ufd_client *c = h->data;

	if (--c->open_handles || !c->closing)
		return;
	client_finish(c);
}

void ufd_client_close(struct ufd_client *c, const char *why)
{
	struct ufd_daemon *d = c->d;
	char child[48] = "";

	if (c->closing)
		return;
	c->closing = true;
	if (c->prev)
		c->prev->next = c->next;
	else
		d->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		d->clients_tail = c->prev;
	d->nr_clients--;
	d->nr_closing++;
	if (c->parent_id)
		snprintf(child, sizeof(child), ", forked child of %llu",
			 (unsigned long long)c->parent_id);
	ufd_log(d, UFAULT_LOG_INFO, "client %llu (%s, pid %d%s): closed: %s",
		(unsigned long long)c->id, ufd_kind_name(c->kind), (int)c->pid, child, why);
	/* Its forked children stay: each is served until its own process
	 * exits (persist.c, "Forks"), which is often after this one's. */
	ufd_persist_del(c);
	if (c->fd >= 0) {
		c->open_handles++;
		uv_close((uv_handle_t *)&c->poll, ufd_client_handle_closed);
	}
	ufd_persist_unwatch(c);
	if (!c->open_handles)
		client_finish(c);
}

int ufd_client_new(struct ufd_daemon *d, int fd, enum ufd_kind kind, pid_t pid, uid_t uid,
		   gid_t gid)
{
	struct ufd_client *c = ufd_client_alloc(d, d->next_id, kind, pid, uid, gid);
	int err;

	if (!c)
		return -ENOMEM;
	err = uv_poll_init(d->loop, &c->poll, fd);
	if (err) {
		ufd_client_free(c);
		return err;
	}
	d->next_id++;
	c->fd = fd;
	c->poll.data = c;
	ufd_client_link(c);
	ufd_log(d, UFAULT_LOG_INFO, "client %llu: %s connection from pid %d uid %u",
		(unsigned long long)c->id, ufd_kind_name(kind), (int)pid, (unsigned int)uid);
	err = uv_poll_start(&c->poll, UV_READABLE, kind == UFD_NATIVE ? ufd_native_io : ufd_fc_io);
	if (err) {
		/* The fd is the client's now: closing it is the close's job. */
		ufd_client_close(c, uv_strerror(err));
		return 0;
	}
	c->poll_events = UV_READABLE;
	return 0;
}

/*
 * A detached native client gets a connection again (its process resumed
 * after a daemon restart): a dup of @fd, which the connection it came on
 * keeps until that one is closed. The pidfd is not needed any more: the
 * connection's end says when the client leaves.
 */
int ufd_client_attach(struct ufd_client *c, int fd)
{
	int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3), err;

	if (nfd < 0)
		return -errno;
	err = uv_poll_init(c->d->loop, &c->poll, nfd);
	if (!err) {
		c->poll.data = c;
		c->fd = nfd;
		err = uv_poll_start(&c->poll, UV_READABLE, ufd_native_io);
		if (err) {
			ufd_client_close(c, uv_strerror(err));
			return err;
		}
		c->poll_events = UV_READABLE;
		ufd_persist_unwatch(c);
		return 0;
	}
	close(nfd);
	return err;
}

/* A context's worker, before a removed range reads as zeros (zlog.h). */
static void on_remove(void *arg, uint64_t start, uint64_t end)
{
	struct ufd_client *c = arg;
	int err = ufd_zlog_append(&c->zlog, start, end);
	bool warn = err && err != -ENOSPC;

	if (err == -ENOSPC) {
		pthread_mutex_lock(&c->zlog.lock);
		warn = !c->zlog.full_warned;
		c->zlog.full_warned = true;
		pthread_mutex_unlock(&c->zlog.lock);
	}
	if (warn) {
		char msg[160];

		snprintf(msg, sizeof(msg),
			 "[%#llx, %#llx) removed: not logged for a restart (%s); after one it "
			 "reads its source again",
			 (unsigned long long)start, (unsigned long long)end, strerror(-err));
		ufd_ctx_log(c, UFAULT_LOG_WARN, msg);
	}
}

/*
 * Serve @uffd (the client's: a dup is kept here for the store, and the
 * context keeps its own) with a foreign context. @max_page: the largest
 * page of the regions to come, if over 2 MiB. Ranges in @c's removed-ranges
 * log (one a restart or a fork gave it) read as zeros; where the client's
 * removals are events, a log is made if it has none (a fork copies it,
 * the store keeps it).
 */
int ufd_client_serve(struct ufd_client *c, int uffd, uint64_t features, uint64_t max_page)
{
	struct ufd_daemon *d = c->d;
	struct ufault_zeroed *zeroed = NULL;
	struct ufault_config cfg;
	int err;

	if (c->zlog.fd < 0 && (features & (UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP))) {
		err = ufd_zlog_create(&c->zlog);
		if (err)
			ufd_log(d, UFAULT_LOG_WARN,
				"client %llu: no removed-ranges log (%s): a range it removes reads "
				"its source again after a restart",
				(unsigned long long)c->id, strerror(-err));
	}
	c->uffd = fcntl(uffd, F_DUPFD_CLOEXEC, 3);
	if (c->uffd < 0)
		return -errno;
	ufault_config_init(&cfg);
	cfg.nr_workers = d->workers;
	cfg.foreign_uffd = uffd;
	cfg.foreign_features = features;
	if (max_page > (2u << 20))
		cfg.max_page_size = max_page;
	/* A child's uffd is ours once read: the loop makes it a client. */
	if (features & UFFD_FEATURE_EVENT_FORK) {
		cfg.on_fork = ufd_on_fork;
		cfg.on_fork_arg = c;
	}
	cfg.log_fn = ufd_ctx_log;
	cfg.log_arg = c;
	cfg.log_level = d->log_level == UFAULT_LOG_DEBUG ? UFAULT_LOG_DEBUG : UFAULT_LOG_WARN;
	err = 0;
	if (c->zlog.fd >= 0) {
		cfg.on_remove = on_remove;
		cfg.on_remove_arg = c;
		err = ufd_zlog_read(&c->zlog, &zeroed, &cfg.nr_zeroed);
		cfg.zeroed = zeroed;
	}
	err = err ? err : ufault_ctx_create(&c->ctx, &cfg);
	free(zeroed);
	if (err) {
		c->ctx = NULL;
		close(c->uffd);
		c->uffd = -1;
		ufd_log(d, UFAULT_LOG_WARN, "client %llu: serving its uffd: %s",
			(unsigned long long)c->id, ufault_strerror(err));
		return err;
	}
	c->features = features;
	return 0;
}

/*
 * Region @r of the client, from @fd (FILE; checked by the caller) or zeros
 * (@fd < 0): registered in the context, and kept with a dup of @fd.
 */
/* A dup of @fd (-1: none): 0, or -errno. */
static int keep_fd(int fd, int *keep)
{
	*keep = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 3) : -1;
	return fd >= 0 && *keep < 0 ? -errno : 0;
}

int ufd_client_region(struct ufd_client *c, const struct ufault_proto_region *r, int fd, int mem_fd)
{
	struct ufd_daemon *d = c->d;
	uint64_t ps = r->page_size ? r->page_size : d->sys_page;
	unsigned int flags = 0;
	struct ufault_source src;
	struct ufault_region *h;
	int err, keep = -1, keep_mem = -1;

	if (c->nr_regs == c->cap_regs) {
		unsigned int cap = c->cap_regs ? 2 * c->cap_regs : 8;
		struct ufault_proto_region *regs;
		struct ufault_region **handles;
		int *fds;

		regs = realloc(c->regs, cap * sizeof(*regs));
		if (!regs)
			return -ENOMEM;
		c->regs = regs;
		handles = realloc(c->handles, cap * sizeof(*handles));
		if (!handles)
			return -ENOMEM;
		c->handles = handles;
		fds = realloc(c->reg_fds, cap * sizeof(*fds));
		if (!fds)
			return -ENOMEM;
		c->reg_fds = fds;
		fds = realloc(c->reg_mems, cap * sizeof(*fds));
		if (!fds)
			return -ENOMEM;
		c->reg_mems = fds;
		c->cap_regs = cap;
	}
	if (ps > d->sys_page)
		flags |= UFAULT_REGION_PAGE_SHIFT(__builtin_ctzll(ps));
	err = keep_fd(fd, &keep);
	if (!err)
		err = keep_fd(mem_fd, &keep_mem);
	if (err)
		goto fail;
	if (fd >= 0) {
		ufault_source_init(&src, UFAULT_SOURCE_FILE);
		src.file.fd = fd; /* ufault keeps its own dup */
		src.offset = r->offset;
	} else {
		ufault_source_init(&src, UFAULT_SOURCE_ZERO);
	}
	if (r->source == UFAULT_PROTO_SRC_SHARED)
		err =
		    ufault_region_register_shared(c->ctx, (void *)(uintptr_t)r->start, r->len, &src,
						  flags | UFAULT_REGION_WRITEBACK, mem_fd, 0, &h);
	else
		err = ufault_region_register(c->ctx, (void *)(uintptr_t)r->start, r->len, &src,
					     flags, &h);
	if (err)
		goto fail;
	c->regs[c->nr_regs] = *r;
	c->handles[c->nr_regs] = h;
	c->reg_fds[c->nr_regs] = keep;
	c->reg_mems[c->nr_regs] = keep_mem;
	c->nr_regs++;
	return 0;
fail:
	if (keep >= 0)
		close(keep);
	if (keep_mem >= 0)
		close(keep_mem);
	return err;
}

int ufd_client_budget(struct ufd_client *c, uint64_t bytes)
{
	struct ufault_budget b = {.size = sizeof(b), .bytes = bytes};
	int err = ufault_ctx_set_budget(c->ctx, &b);

	if (!err)
		c->budget = bytes;
	return err;
}

struct ufd_client *ufd_client_find(struct ufd_daemon *d, uint64_t id)
{
	struct ufd_client *c;

	for (c = d->clients; c; c = c->next)
		if (c->id == id && ufd_client_listed(c))
			return c;
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Replies                                                              */
/* ------------------------------------------------------------------ */

static void set_poll(struct ufd_client *c, unsigned int events)
{
	int err;

	if (c->closing || c->poll_events == events)
		return;
	err = uv_poll_start(&c->poll, (int)events, ufd_native_io);
	if (err) {
		ufd_client_close(c, uv_strerror(err));
		return;
	}
	c->poll_events = events;
}

/* Send what is left of c->out, c->out_fd with its first bytes. */
static ssize_t send_out(struct ufd_client *c)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} control;
	struct iovec iov = {.iov_base = c->out + c->out_off, .iov_len = c->out_len - c->out_off};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	if (c->out_fd >= 0) {
		struct cmsghdr *cm;

		memset(&control, 0, sizeof(control));
		mh.msg_control = control.buf;
		mh.msg_controllen = sizeof(control.buf);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &c->out_fd, sizeof(int));
	}
	n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n > 0)
		c->out_fd = -1; /* it went with those bytes */
	return n;
}

static void flush_out(struct ufd_client *c)
{
	ssize_t n;

	while (c->out_off < c->out_len) {
		n = send_out(c);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				set_poll(c, UV_WRITABLE);
				return;
			}
			ufd_client_close(c, strerror(errno));
			return;
		}
		c->out_off += (size_t)n;
	}
	c->out_len = c->out_off = 0;
	set_poll(c, UV_READABLE);
}

/* A REPLY, with @fd (>= 0: borrowed, sent as SCM_RIGHTS) if there is one. */
static void reply_fd(struct ufd_client *c, uint32_t seq, int status, uint64_t value,
		     const void *extra, size_t extra_len, int fd)
{
	unsigned char body[UFAULT_PROTO_MAX_BODY];
	struct ufault_proto_reply r = {.status = status, .value = value};

	memcpy(body, &r, sizeof(r));
	if (extra_len)
		memcpy(body + sizeof(r), extra, extra_len);
	c->out_len = ufault__proto_build(c->out, UFAULT_MSG_REPLY, seq, body,
					 (uint32_t)(sizeof(r) + extra_len));
	c->out_off = 0;
	c->out_fd = fd;
	flush_out(c);
}

static void reply(struct ufd_client *c, uint32_t seq, int status, uint64_t value, const void *extra,
		  size_t extra_len)
{
	reply_fd(c, seq, status, value, extra, extra_len, -1);
}

/* ------------------------------------------------------------------ */
/* Requests                                                             */
/* ------------------------------------------------------------------ */

/* Do @a and @b (ours) refer to one open file? false if it cannot be told. */
bool ufd_same_file(int a, int b)
{
	pid_t self = getpid();

	return syscall(SYS_kcmp, self, self, KCMP_FILE, a, b) == 0;
}

/*
 * The removed-ranges log a client got with its last session (HELLO with
 * UFAULT_HELLO_ZEROED), checked as any input: the new session's log starts
 * with its ranges. -EINVAL if it is not one.
 */
static int zlog_from_client(struct ufd_client *c, int fd)
{
	struct ufault_proto_zlog_range *v;
	const char *why;
	unsigned int n;
	int err = ufault__zlog_load(fd, c->d->sys_page, UFD_USER_VA_END, &v, &n, &why);

	if (err) {
		ufd_log(c->d, UFAULT_LOG_INFO, "client %llu: HELLO's removed-ranges log: %s",
			(unsigned long long)c->id, why ? why : strerror(-err));
		return -EINVAL;
	}
	err = ufd_zlog_create_from(&c->zlog, v, n);
	free(v);
	return err;
}

static int do_hello(struct ufd_client *c, const struct ufault_proto_hello *h, uint64_t *value)
{
	struct ufd_daemon *d = c->d;
	int uffd = c->in_fds[0], err;
	struct ufd_client *t;

	if (c->ctx)
		return -EISCONN;
	if (!ufd_is_uffd(uffd)) {
		ufd_log(d, UFAULT_LOG_INFO, "client %llu: HELLO's fd is not a userfaultfd",
			(unsigned long long)c->id);
		return -EBADF;
	}
	/* What a failed HELLO before this one left. */
	ufd_zlog_reset(&c->zlog);
	if (h->flags & UFAULT_HELLO_ZEROED) {
		err = zlog_from_client(c, c->in_fds[1]);
		if (err)
			return err;
	}
	/* One session per uffd: two contexts reading one would each get
	 * faults in regions only the other knows, which never come back.
	 * Whoever holds the uffd and starts anew (a resume it was refused,
	 * say) ends the session it had. */
	for (t = d->clients; t; t = t->next) {
		if (ufd_client_listed(t) && t != c && t->uffd >= 0 &&
		    ufd_same_file(t->uffd, uffd)) {
			ufd_client_close(t, "its uffd came with a new session");
			break;
		}
	}
	/* What tells this process from a later one with its pid (a resume
	 * after a restart must come from the same process). */
	c->start_time = ufd_proc_start_time(c->pid);
	err = ufd_client_serve(c, uffd, h->features, 0);
	if (err)
		return err;
	/* The message's fd is closed with the message: the context and the
	 * store's copy are dups. Stored before the answer: a client that was
	 * told it is served is served by a restarted daemon too. */
	ufd_persist_put(c);
	*value = c->id;
	ufd_log(d, UFAULT_LOG_INFO, "client %llu: session, features %#llx",
		(unsigned long long)c->id, (unsigned long long)h->features);
	return 0;
}

/*
 * HELLO with a resume_id (no fd): the process reconnects after a daemon
 * restart. Only the process the session was made for gets it back: same
 * uid, same pid, same start time, same features; anything else is a
 * session this daemon does not know (-ENOENT: the client starts afresh).
 * The session is a detached client (persist.c): it takes over this
 * connection, which is then closed quietly. 1: answered on the session.
 */
static int do_resume(struct ufd_client *c, const struct ufault_proto_hello *h, uint32_t seq)
{
	struct ufd_daemon *d = c->d;
	struct ufd_client *t = ufd_client_find(d, h->resume_id);
	char why[64];
	int err;

	if (c->ctx)
		return -EISCONN;
	if (!t || t->fd >= 0 || t->parent_id || t->kind != UFD_NATIVE || t->uid != c->uid ||
	    t->pid != c->pid || t->features != h->features ||
	    t->start_time != ufd_proc_start_time(c->pid)) {
		ufd_log(d, UFAULT_LOG_INFO, "client %llu: no session %llu to resume for pid %d",
			(unsigned long long)c->id, (unsigned long long)h->resume_id, (int)c->pid);
		return -ENOENT;
	}
	err = ufd_client_attach(t, c->fd);
	if (err)
		return err < 0 ? err : -ENOMEM;
	ufd_log(d, UFAULT_LOG_INFO, "client %llu: resumed by pid %d", (unsigned long long)t->id,
		(int)t->pid);
	/* With its removed-ranges log, as a new session's (protocol.h). */
	reply_fd(t, seq, 0, t->id, NULL, 0, t->zlog.fd);
	snprintf(why, sizeof(why), "resumed session %llu", (unsigned long long)t->id);
	ufd_client_close(c, why);
	return 1;
}

/*
 * A client registers a range with the kernel before it sends REGISTER: a
 * fork in between gives the child that registration, and the child its
 * copy of the client's regions without this one, so its faults there would
 * wait for ever. Each forked child of @c gets @r too. Where a child's
 * memory is not registered with its uffd there no fault ever comes for it;
 * one that overlaps a region the child has is not the child's (skipped).
 */
static void share_with_children(struct ufd_client *c, const struct ufault_proto_region *r, int fd)
{
	for (struct ufd_client *k = c->d->clients; k; k = k->next) {
		if (k->parent_id != c->id || !k->ctx ||
		    ufault__proto_overlaps(k->regs, k->nr_regs, r->start, r->len))
			continue;
		if (!ufd_client_region(k, r, fd, -1))
			ufd_persist_put(k);
	}
}

static int do_register(struct ufd_client *c, const struct ufault_proto_region *r)
{
	bool shared = r->source == UFAULT_PROTO_SRC_SHARED;
	int fd = -1, err, fl;
	struct stat st;

	if (!c->ctx)
		return -ENOTCONN;
	if (c->nr_regs >= UFAULT_PROTO_MAX_REGIONS)
		return -ENOSPC;
	if (ufault__proto_overlaps(c->regs, c->nr_regs, r->start, r->len))
		return -EEXIST;
	if (r->source != UFAULT_PROTO_SRC_ZERO) {
		fd = c->in_fds[0];
		/* Only what a read at an offset means the same every time:
		 * no pipe, socket or device whose bytes change under us.
		 * SHARED writes back to it. (The memfd: libufault checks.) */
		if (fstat(fd, &st) || !S_ISREG(st.st_mode))
			return -EINVAL;
		fl = fcntl(fd, F_GETFL);
		if (fl < 0 || (fl & O_PATH) || (fl & O_ACCMODE) == O_WRONLY ||
		    (shared && (fl & O_ACCMODE) != O_RDWR))
			return -EBADF;
	}
	err = ufd_client_region(c, r, fd, shared ? c->in_fds[1] : -1);
	if (!err) {
		ufd_persist_put(c);
		/* A SHARED mapping is MADV_DONTFORK: no child has it. */
		if (!shared)
			share_with_children(c, r, fd);
	}
	return err;
}

static int do_unregister(struct ufd_client *c, const struct ufault_proto_range *r)
{
	unsigned int i;
	int err;

	if (!c->ctx)
		return -ENOTCONN;
	/* Only this client's own regions are searched: another client's
	 * range is simply not found. */
	for (i = 0; i < c->nr_regs; i++)
		if (c->regs[i].start == r->start && c->regs[i].len == r->len)
			break;
	if (i == c->nr_regs)
		return -ENOENT;
	err = ufault_region_unregister(c->ctx, c->handles[i]);
	if (err)
		return err;
	if (c->reg_fds[i] >= 0)
		close(c->reg_fds[i]);
	if (c->reg_mems[i] >= 0)
		close(c->reg_mems[i]);
	c->nr_regs--;
	c->regs[i] = c->regs[c->nr_regs];
	c->handles[i] = c->handles[c->nr_regs];
	c->reg_fds[i] = c->reg_fds[c->nr_regs];
	c->reg_mems[i] = c->reg_mems[c->nr_regs];
	ufd_persist_put(c);
	return 0;
}

static int do_stats(struct ufd_client *c, struct ufault_proto_stats *ps)
{
	struct ufault_stats st = {.size = sizeof(st)};
	int err;

	if (!c->ctx)
		return -ENOTCONN;
	err = ufault_stats(c->ctx, &st);
	if (err)
		return err;
	*ps = (struct ufault_proto_stats){
	    .faults = st.faults,
	    .pages = st.pages_installed,
	    .errors = st.source_errors,
	    .regions = c->nr_regs,
	    .p50_ns = st.latency_p50_ns,
	    .p99_ns = st.latency_p99_ns,
	    .budget = c->budget,
	    .resident = st.resident,
	    .evicted = st.evicted,
	    .evicted_written = st.evicted_dirty,
	};
	return 0;
}

/* LIST: every served client, as many as fit one body (ufaultctl). */
static size_t do_list(struct ufd_daemon *d, struct ufault_proto_client *out, size_t max)
{
	struct ufd_client *c;
	size_t n = 0;

	for (c = d->clients; c && n < max; c = c->next) {
		struct ufault_stats st = {.size = sizeof(st)};

		if (!ufd_client_listed(c))
			continue;
		if (ufault_stats(c->ctx, &st))
			memset(&st, 0, sizeof(st));
		out[n++] = (struct ufault_proto_client){
		    .id = c->id,
		    .pid = (uint32_t)c->pid,
		    .uid = (uint32_t)c->uid,
		    .faults = st.faults,
		    .regions = c->nr_regs,
		    .errors = st.source_errors,
		    .firecracker = c->kind == UFD_FIRECRACKER,
		    .budget = c->budget,
		    .resident = st.resident,
		    .evicted = st.evicted,
		};
	}
	return n;
}

/*
 * SET_BUDGET: client @b->client_id's SHARED regions keep at most
 * @b->bytes resident (libufault's evictor on its context; kept in its
 * fd-store record). A Firecracker client has no write-back memory:
 * -EOPNOTSUPP.
 */
static int do_set_budget(struct ufd_client *c, const struct ufault_proto_budget *b)
{
	struct ufd_daemon *d = c->d;
	struct ufd_client *t = ufd_client_find(d, b->client_id);
	int err;

	if (!t)
		return -ENOENT;
	if (c->uid != d->euid && c->uid != 0 && c->uid != t->uid)
		return -EPERM;
	if (t->kind == UFD_FIRECRACKER)
		return -EOPNOTSUPP;
	err = ufd_client_budget(t, b->bytes);
	if (err)
		return err;
	ufd_persist_put(t);
	ufd_log(d, UFAULT_LOG_INFO, "client %llu: budget %llu bytes", (unsigned long long)t->id,
		(unsigned long long)b->bytes);
	return 0;
}

static void handle_message(struct ufd_client *c)
{
	struct ufd_daemon *d = c->d;
	struct ufault__proto_msg m;
	struct ufault_proto_hdr hdr;
	const char *why = "";
	uint64_t value = 0;
	union {
		struct ufault_proto_stats stats;
		struct ufault_proto_client
		    list[(UFAULT_PROTO_MAX_BODY - sizeof(struct ufault_proto_reply)) /
			 sizeof(struct ufault_proto_client)];
	} extra;
	size_t extra_len = 0;
	int err;

	memcpy(&hdr, c->in, sizeof(hdr));
	if (c->fds_overflow) {
		err = -EBADF;
		why = "more fds than a message carries";
	} else {
		err = ufault__proto_check(c->in, c->in_total, c->nr_in_fds, d->sys_page, &m, &why);
		if (!err && m.hdr.type == UFAULT_MSG_REPLY) {
			err = -EPROTO;
			why = "a reply is not a request";
		}
	}
	if (err) {
		d->refused[err == -EBADF ? UFD_REFUSED_FDS : UFD_REFUSED_REQUEST]++;
		ufd_log(d, UFAULT_LOG_INFO, "client %llu: refused a message of type %u: %s",
			(unsigned long long)c->id, hdr.type, why);
		ufd_close_fds(c->in_fds, &c->nr_in_fds);
		reply(c, hdr.seq, err, 0, NULL, 0);
		return;
	}

	switch (m.hdr.type) {
	case UFAULT_MSG_HELLO:
		if (m.u.hello.resume_id) {
			err = do_resume(c, &m.u.hello, m.hdr.seq);
			if (err > 0)
				return; /* answered on the session it resumed */
			break;
		}
		err = do_hello(c, &m.u.hello, &value);
		break;
	case UFAULT_MSG_REGISTER:
		err = do_register(c, &m.u.region);
		break;
	case UFAULT_MSG_UNREGISTER:
		err = do_unregister(c, &m.u.range);
		break;
	case UFAULT_MSG_STATS:
		err = do_stats(c, &extra.stats);
		if (!err)
			extra_len = sizeof(extra.stats);
		break;
	case UFAULT_MSG_LIST:
		value = do_list(d, extra.list, sizeof(extra.list) / sizeof(extra.list[0]));
		extra_len = value * sizeof(extra.list[0]);
		err = 0;
		break;
	case UFAULT_MSG_SET_BUDGET:
		err = do_set_budget(c, &m.u.budget);
		break;
	default:
		err = -EPROTO;
		break;
	}
	/* Whatever the handler did, the message's fds are done with: the
	 * context and the FILE source keep dups of their own. */
	ufd_close_fds(c->in_fds, &c->nr_in_fds);
	if (err && err != -EOPNOTSUPP) {
		d->refused[UFD_REFUSED_REQUEST]++;
		ufd_log(d, UFAULT_LOG_DEBUG, "client %llu: message of type %u: %s",
			(unsigned long long)c->id, m.hdr.type, strerror(-err));
	}
	/* A session's answer carries its removed-ranges log (protocol.h). */
	reply_fd(c, m.hdr.seq, err, value, &extra, err ? 0 : extra_len,
		 m.hdr.type == UFAULT_MSG_HELLO && !err ? c->zlog.fd : -1);
}

static void read_messages(struct ufd_client *c)
{
	struct ufd_daemon *d = c->d;
	unsigned int done = 0;
	const char *why = "";
	ssize_t n;
	long total;

	while (done < MSGS_PER_WAKEUP && !c->closing && !c->out_len) {
		size_t want = c->in_total ? c->in_total - c->in_len : HDR_SIZE - c->in_len;

		if (want) {
			n = ufd_recv(c->fd, c->in + c->in_len, want, c->in_fds,
				     UFAULT_PROTO_MAX_FDS, &c->nr_in_fds, &c->fds_overflow);
			if (n == -EAGAIN)
				return;
			if (n < 0) {
				ufd_client_close(c, strerror((int)-n));
				return;
			}
			if (n == 0) {
				ufd_client_close(c, c->in_len ? "closed in the middle of a message"
							      : "connection closed by the client");
				return;
			}
			c->in_len += (size_t)n;
		}
		if (!c->in_total) {
			if (c->in_len < HDR_SIZE)
				continue;
			total = ufault__proto_frame(c->in, c->in_len, &why);
			if (total <= 0) {
				d->refused[UFD_REFUSED_PROTOCOL]++;
				ufd_log(d, UFAULT_LOG_WARN, "client %llu: unframeable message (%s)",
					(unsigned long long)c->id, why);
				ufd_client_close(c, why);
				return;
			}
			c->in_total = (size_t)total;
		}
		if (c->in_len < c->in_total)
			continue;
		handle_message(c);
		c->in_len = c->in_total = 0;
		c->fds_overflow = false;
		done++;
	}
}

void ufd_native_io(uv_poll_t *poll, int status, int events)
{
	struct ufd_client *c = poll->data;

	if (c->closing)
		return;
	if (status < 0) {
		ufd_client_close(c, uv_strerror(status));
		return;
	}
	if (events & UV_WRITABLE) {
		flush_out(c);
		return; /* reading resumes on the next readiness, level-triggered */
	}
	if (events & UV_READABLE)
		read_messages(c);
}
