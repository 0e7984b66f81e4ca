// SPDX-License-Identifier: MIT
/*
 * remote.c - the client side of ufaultd's protocol (ufault_remote_*): a
 * process hands its userfaultfd and its regions to the daemon, keeps its
 * own copy of both, and serves them itself if the daemon stays away.
 *
 * One connection, requests and replies in turn under @lock. A monitor
 * thread only watches the connection for a hang-up (it never reads): then
 * it reconnects and resumes (HELLO with the client id: a restarted daemon
 * took the uffd back from its keeper), or starts afresh (HELLO with the
 * uffd, every region again) if the daemon does not know the client any
 * more; if no daemon answers within takeover_ms, it makes a foreign
 * context on its own uffd and registers the regions there: from then on
 * the process serves its faults itself.
 *
 * A resumed daemon knows the regions as they were when it last stored the
 * session: a REGISTER or UNREGISTER whose answer the hang-up cut off may
 * or may not have reached it, so those are sent again after the resume
 * (an EEXIST or ENOENT then means it had). After a takeover, the first
 * daemon that answers is told to let the session go (a resume, then a
 * close), or it would serve the same uffd as the in-process context.
 *
 * Fork: the uffd has UFFD_FEATURE_EVENT_FORK, so the daemon serves a child
 * through the child's own uffd (as a client of its own). The handle stays
 * the parent's: in a child, register and unregister fail with ECHILD
 * without touching the connection or the uffd (both the parent's), and
 * close only frees the child's copy. After a takeover the in-process
 * context cannot serve a child: regions with a file are MADV_DONTFORK from
 * then on, as an in-process context's are (ufault(7), Fork).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stddef.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <ufault/ufault.h>

#include "alloc.h"
#include "proto.h"
#include "stats.h"
#include "uffd.h"
#include "util.h"
#include "zlog_load.h"

_Static_assert(sizeof(struct ufault_proto_zlog_range) == sizeof(struct ufault_zeroed) &&
		   offsetof(struct ufault_proto_zlog_range, end) ==
		       offsetof(struct ufault_zeroed, end),
	       "the removed-ranges log's ranges are struct ufault_zeroed");

#define DEFAULT_TAKEOVER_MS 2000
#define RETRY_MS 20
#define RELEASE_MS 200	    /* taken over: how often a daemon is looked for */
#define RELEASE_TIMEOUT_S 2 /* ... and how long its answer may take */

struct remote_region {
	uint64_t start, len, offset;
	uint32_t page_size;	      /* 0: the system page */
	int fd;			      /* a dup of the backing file, or -1 (zeros) */
	int mem_fd;		      /* ufault_remote_map(): the memfd mapped; else -1 */
	struct ufault_region *handle; /* in the in-process context */
	bool unsent;		      /* its REGISTER's answer never came */
};

struct ufault_remote {
	pthread_mutex_t lock; /* the connection, the regions, local */
	int sock;	      /* -1 while disconnected */
	int uffd;
	uint64_t features;
	uint64_t id;
	uint32_t seq;
	struct remote_region *regions;
	unsigned int nr, cap;
	struct ufault_ctx *local; /* taken over: serving in-process */
	bool released;		  /* ... and a daemon was told to let go */
	/* Unregistered while the daemon's answer could not come: it may
	 * still have them. */
	struct ufault_proto_range *gone;
	unsigned int nr_gone, cap_gone;
	struct sockaddr_un addr;
	unsigned int takeover_ms, nr_workers;
	int zlog_fd; /* the daemon's removed-ranges log for us (protocol.h); -1 */
	int stop_fd; /* eventfd: the monitor stops */
	pthread_t monitor;
	bool monitor_started;
	pid_t pid; /* the process that connected: the handle is its own */
};

/* Called in a child made by fork(2) of the process that connected. */
static bool forked(const struct ufault_remote *rm)
{
	return getpid() != rm->pid;
}

void ufault_remote_config_init(struct ufault_remote_config *cfg)
{
	if (!cfg)
		return;
	memset(cfg, 0, sizeof(*cfg));
	cfg->size = sizeof(*cfg);
}

/* Send one message (+ @fds[0..@nfds), at most UFAULT_PROTO_MAX_FDS);
 * 0 or -errno. */
static int send_msg(int sock, uint16_t type, uint32_t seq, const void *body, uint32_t len,
		    const int *fds, unsigned int nfds)
{
	unsigned char buf[sizeof(struct ufault_proto_hdr) + UFAULT_PROTO_MAX_BODY];
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * UFAULT_PROTO_MAX_FDS)];
	} control;
	struct iovec iov = {.iov_base = buf};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

	iov.iov_len = ufault__proto_build(buf, type, seq, body, len);
	if (nfds) {
		struct cmsghdr *c;

		memset(&control, 0, sizeof(control));
		mh.msg_control = control.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	for (;;) {
		ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);

		if (n == (ssize_t)iov.iov_len)
			return 0;
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 ? -errno : -EPROTO;
	}
}

/* Read @len bytes; an fd that comes with them goes to *fd (if *fd is
 * still -1; any other is closed). */
static int read_full(int sock, void *buf, size_t len, int *fd)
{
	size_t done = 0;

	while (done < len) {
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int) * UFAULT_PROTO_MAX_FDS)];
		} control;
		struct iovec iov = {.iov_base = (char *)buf + done, .iov_len = len - done};
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = control.buf,
				    .msg_controllen = sizeof(control.buf)};
		ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n ? -errno : -ECONNRESET;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
				int got;

				memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				if (*fd < 0)
					*fd = got;
				else
					close(got);
			}
		}
		done += (size_t)n;
	}
	return 0;
}

/* One request with @nfds fds and its reply (status, value; @data: what
 * follows it, up to @data_len bytes). Under rm->lock. 0 or -errno: the
 * reply's status, or a broken connection (-ECONNRESET, -EPIPE, -EPROTO). */
static int request_fds(struct ufault_remote *rm, uint16_t type, const void *body, uint32_t len,
		       const int *fds, unsigned int nfds, uint64_t *value, void *data,
		       size_t data_len)
{
	unsigned char buf[sizeof(struct ufault_proto_hdr) + UFAULT_PROTO_MAX_BODY];
	struct ufault__proto_msg m;
	struct ufault_proto_hdr h;
	const char *why;
	uint32_t seq = ++rm->seq;
	int ret, rfd = -1;

	if (rm->sock < 0)
		return -ENOTCONN;
	ret = send_msg(rm->sock, type, seq, body, len, fds, nfds);
	if (!ret)
		ret = read_full(rm->sock, &h, sizeof(h), &rfd);
	if (!ret) {
		memcpy(buf, &h, sizeof(h));
		if (ufault__proto_frame(buf, sizeof(h), &why) <= 0)
			ret = -EPROTO;
	}
	if (!ret)
		ret = read_full(rm->sock, buf + sizeof(h), h.len, &rfd);
	if (!ret && (ufault__proto_check(buf, sizeof(h) + h.len, 0, ufault__sys_page(), &m, &why) ||
		     m.hdr.type != UFAULT_MSG_REPLY || m.hdr.seq != seq))
		ret = -EPROTO;
	if (!ret) {
		if (value)
			*value = m.u.reply.value;
		if (data)
			memcpy(data, m.extra, m.extra_len < data_len ? m.extra_len : data_len);
		ret = m.u.reply.status;
	}
	/* A session's answer carries its removed-ranges log: the newest is
	 * the one (a resumed session's is the one the daemon kept). */
	if (rfd >= 0 && !ret && type == UFAULT_MSG_HELLO) {
		if (rm->zlog_fd >= 0)
			close(rm->zlog_fd);
		rm->zlog_fd = rfd;
	} else if (rfd >= 0) {
		close(rfd);
	}
	return ret;
}

/* request_fds() with one fd (@fd >= 0) or none. */
static int request(struct ufault_remote *rm, uint16_t type, const void *body, uint32_t len, int fd,
		   uint64_t *value, void *data, size_t data_len)
{
	return request_fds(rm, type, body, len, &fd, fd >= 0, value, data, data_len);
}

static int dial(struct ufault_remote *rm)
{
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (s < 0)
		return -errno;
	if (connect(s, (struct sockaddr *)&rm->addr, sizeof(rm->addr))) {
		int ret = -errno;

		close(s);
		return ret;
	}
	return s;
}

static int send_region(struct ufault_remote *rm, const struct remote_region *r)
{
	struct ufault_proto_region body = {
	    .start = r->start,
	    .len = r->len,
	    .offset = r->offset,
	    .page_size = r->page_size,
	    .source = r->mem_fd >= 0 ? UFAULT_PROTO_SRC_SHARED
		      : r->fd >= 0   ? UFAULT_PROTO_SRC_FILE
				     : UFAULT_PROTO_SRC_ZERO,
	};
	int fds[2] = {r->fd, r->mem_fd};

	return request_fds(rm, UFAULT_MSG_REGISTER, &body, sizeof(body), fds, body.source,
			   /* ZERO 0, FILE 1, SHARED 2 */ NULL, NULL, 0);
}

/*
 * A new session: HELLO with the uffd, then every region. Under lock. A
 * client that had a session gives its removed-ranges log too (a daemon that
 * lost the session starts from it); a daemon that refuses it (-EINVAL: one
 * older than 0.6, or a log it cannot read) gets the HELLO again without.
 */
static int hello(struct ufault_remote *rm)
{
	struct ufault_proto_hello h = {.features = rm->features};
	int fds[2] = {rm->uffd, rm->zlog_fd}, ret = -EINVAL;

	if (rm->zlog_fd >= 0) {
		h.flags = UFAULT_HELLO_ZEROED;
		ret = request_fds(rm, UFAULT_MSG_HELLO, &h, sizeof(h), fds, 2, &rm->id, NULL, 0);
		h.flags = 0;
	}
	if (ret == -EINVAL)
		ret = request(rm, UFAULT_MSG_HELLO, &h, sizeof(h), rm->uffd, &rm->id, NULL, 0);

	for (unsigned int i = 0; !ret && i < rm->nr; i++)
		ret = send_region(rm, &rm->regions[i]);
	if (!ret) {
		for (unsigned int i = 0; i < rm->nr; i++)
			rm->regions[i].unsent = false;
		rm->nr_gone = 0;
	}
	return ret;
}

/* A connection that broke: not the daemon's answer to the request. */
static bool broken(int ret)
{
	return ret == -ECONNRESET || ret == -EPIPE || ret == -ENOTCONN || ret == -EPROTO;
}

/*
 * Resumed: what the daemon may have missed while the connection was down.
 * Under lock. 0, or the error of a request (the connection broke again).
 */
static int resync(struct ufault_remote *rm)
{
	int ret;

	for (unsigned int i = 0; i < rm->nr_gone; i++) {
		ret = request(rm, UFAULT_MSG_UNREGISTER, &rm->gone[i], sizeof(rm->gone[i]), -1,
			      NULL, NULL, 0);
		if (ret && ret != -ENOENT)
			return ret;
	}
	rm->nr_gone = 0;
	for (unsigned int i = 0; i < rm->nr; i++) {
		if (!rm->regions[i].unsent)
			continue;
		ret = send_region(rm, &rm->regions[i]);
		if (ret && ret != -EEXIST)
			return ret;
		rm->regions[i].unsent = false;
	}
	return 0;
}

/* A fault the daemon that went away read and never resolved left its
 * thread parked, and no message for it will come again: woken, it faults
 * anew (a resumed daemon wakes them itself). Under lock. */
static void wake_regions(struct ufault_remote *rm)
{
	for (unsigned int i = 0; i < rm->nr; i++)
		ufault__uffd_wake(rm->uffd, rm->regions[i].start, rm->regions[i].len);
}

/* @r in the in-process context. */
static int local_register(struct ufault_remote *rm, struct remote_region *r)
{
	struct ufault_source src;
	unsigned int flags = 0;

	ufault_source_init(&src, r->fd >= 0 ? UFAULT_SOURCE_FILE : UFAULT_SOURCE_ZERO);
	src.file.fd = r->fd;
	src.offset = r->offset;
	if (r->page_size)
		flags |= UFAULT_REGION_PAGE_SHIFT(__builtin_ctzll(r->page_size));
	if (!(rm->features & UFFD_FEATURE_POISON))
		flags |= UFAULT_REGION_ON_ERROR_ZERO;
	/* No child is served from here: it gets no mapping rather than
	 * zeros where pages were never filled (best effort: a failure only
	 * loses that). */
	if (r->fd >= 0)
		madvise((void *)(uintptr_t)r->start, r->len, MADV_DONTFORK);
	if (r->mem_fd >= 0) /* written back from here, as the daemon did */
		return ufault_region_register_shared(rm->local, (void *)(uintptr_t)r->start, r->len,
						     &src, flags | UFAULT_REGION_WRITEBACK,
						     r->mem_fd, 0, &r->handle);
	return ufault_region_register(rm->local, (void *)(uintptr_t)r->start, r->len, &src, flags,
				      &r->handle);
}

/* Serve in-process: a foreign context on our own uffd. Under lock. */
static int take_over(struct ufault_remote *rm)
{
	struct ufault_proto_zlog_range *zeroed = NULL;
	unsigned int nr_zeroed = 0;
	struct ufault_config cfg;
	const char *why;
	int ret;

	ufault_config_init(&cfg);
	cfg.nr_workers = rm->nr_workers;
	cfg.foreign_uffd = rm->uffd;
	cfg.foreign_features = rm->features;
	/* What we removed while the daemon served us reads as zeros still.
	 * A log that cannot be read costs that, never the takeover (faults
	 * would wait for ever). */
	if (rm->zlog_fd >= 0 && !ufault__zlog_load(rm->zlog_fd, ufault__sys_page(), UINT64_MAX,
						   &zeroed, &nr_zeroed, &why)) {
		cfg.zeroed = (const struct ufault_zeroed *)(const void *)zeroed;
		cfg.nr_zeroed = nr_zeroed;
	}
	ret = ufault_ctx_create(&rm->local, &cfg);
	free(zeroed);
	if (ret)
		return ret;
	for (unsigned int i = 0; i < rm->nr && !ret; i++)
		ret = local_register(rm, &rm->regions[i]);
	if (ret) {
		ufault_ctx_destroy(rm->local);
		rm->local = NULL;
		return ret;
	}
	wake_regions(rm);
	rm->nr_gone = 0;
	return 0;
}

/*
 * Taken over: a daemon that answers now may have taken the session back
 * from its fd store and serve the uffd too. A resume hands it this
 * connection and the close that follows ends the session there. Once a
 * daemon answered (0, or ENOENT: it has no such session), nothing is left
 * to do. Under lock.
 */
static void release_daemon(struct ufault_remote *rm)
{
	struct ufault_proto_hello h = {.features = rm->features, .resume_id = rm->id};
	struct timeval tv = {.tv_sec = RELEASE_TIMEOUT_S};
	int s = dial(rm), ret;

	if (s < 0)
		return;
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	rm->sock = s;
	ret = request(rm, UFAULT_MSG_HELLO, &h, sizeof(h), -1, NULL, NULL, 0);
	close(s);
	rm->sock = -1;
	if (ret == 0 || ret == -ENOENT)
		rm->released = true;
}

/* The daemon hung up: resume, start afresh, or take over. Under lock. */
static void recover(struct ufault_remote *rm)
{
	uint64_t deadline = ufault__now_ns() + (uint64_t)rm->takeover_ms * 1000000u;

	close(rm->sock);
	rm->sock = -1;
	for (;;) {
		struct ufault_proto_hello h = {.features = rm->features, .resume_id = rm->id};
		int s = dial(rm), ret;

		if (s >= 0) {
			rm->sock = s;
			ret = request(rm, UFAULT_MSG_HELLO, &h, sizeof(h), -1, NULL, NULL, 0);
			if (ret == -ENOENT) {
				/* It does not know us: everything again. */
				ret = hello(rm);
				if (!ret)
					wake_regions(rm);
			} else if (!ret) {
				ret = resync(rm);
			}
			if (!ret)
				return;
			close(rm->sock);
			rm->sock = -1;
		}
		if (rm->takeover_ms != UINT_MAX && ufault__now_ns() >= deadline) {
			if (!take_over(rm))
				return;
			deadline = ufault__now_ns() + (uint64_t)rm->takeover_ms * 1000000u;
		}
		pthread_mutex_unlock(&rm->lock);
		ufault__sleep_ns((uint64_t)RETRY_MS * 1000000u);
		pthread_mutex_lock(&rm->lock);
	}
}

static void *monitor_main(void *arg)
{
	struct ufault_remote *rm = arg;

	for (;;) {
		struct pollfd p[2] = {{.fd = rm->stop_fd, .events = POLLIN},
				      {.fd = -1, .events = POLLRDHUP}};
		bool release;
		int n;

		pthread_mutex_lock(&rm->lock);
		p[1].fd = rm->local ? -1 : rm->sock;
		release = rm->local && !rm->released;
		pthread_mutex_unlock(&rm->lock);
		n = poll(p, 2, release ? RELEASE_MS : -1);
		if (n < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			break;
		if (release && !n) {
			pthread_mutex_lock(&rm->lock);
			release_daemon(rm);
			pthread_mutex_unlock(&rm->lock);
			continue;
		}
		if (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
			pthread_mutex_lock(&rm->lock);
			if (!rm->local && rm->sock == p[1].fd)
				recover(rm);
			pthread_mutex_unlock(&rm->lock);
		}
	}
	return NULL;
}

int ufault_remote_connect(struct ufault_remote **out, const struct ufault_remote_config *cfg)
{
	struct ufault_remote_config def;
	const char *path;
	struct ufault__uffd_caps caps;
	struct ufault_remote *rm;
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!cfg) {
		ufault_remote_config_init(&def);
		cfg = &def;
	}
	if (cfg->size != sizeof(*cfg))
		return -EINVAL;
	path = cfg->socket_path ? cfg->socket_path : UFAULT_PROTO_DEFAULT_PATH;
	if (strlen(path) >= sizeof(rm->addr.sun_path))
		return -ENAMETOOLONG;
	rm = calloc(1, sizeof(*rm));
	if (!rm)
		return -ENOMEM;
	rm->sock = rm->uffd = rm->stop_fd = rm->zlog_fd = -1;
	rm->pid = getpid();
	rm->addr.sun_family = AF_UNIX;
	strcpy(rm->addr.sun_path, path);
	rm->takeover_ms = cfg->takeover_ms ? cfg->takeover_ms : DEFAULT_TAKEOVER_MS;
	rm->nr_workers = cfg->nr_workers ? cfg->nr_workers : 1;
	ret = -pthread_mutex_init(&rm->lock, NULL);
	if (ret) {
		free(rm);
		return ret;
	}
	rm->stop_fd = eventfd(0, EFD_CLOEXEC);
	ret = rm->stop_fd < 0 ? -errno : ufault__uffd_open();
	if (ret >= 0) {
		rm->uffd = ret;
		/* POISON: a source error is a SIGBUS, not zeros; REMOVE and
		 * UNMAP: memory given up reads as zeros, as anonymous memory
		 * does (the daemon sees the events); FORK: a child is served
		 * through its own uffd; WP_HUGETLBFS_SHMEM: mappings of
		 * ufault_remote_map() (never WP_ASYNC: a page being evicted
		 * is protected until it is done). */
		ret = ufault__uffd_api(rm->uffd,
				       UFFD_FEATURE_POISON | UFFD_FEATURE_EVENT_REMOVE |
					   UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_FORK |
					   UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
				       &caps);
		rm->features = caps.features;
	}
	if (!ret)
		ret = rm->sock = dial(rm);
	if (ret >= 0) {
		pthread_mutex_lock(&rm->lock);
		ret = hello(rm);
		pthread_mutex_unlock(&rm->lock);
	}
	if (!ret)
		ret = ufault__thread_start(&rm->monitor, monitor_main, rm);
	if (ret) {
		ufault_remote_close(rm);
		return ret;
	}
	rm->monitor_started = true;
	*out = rm;
	return 0;
}

/* *@v, an array of *@cap elements of @size bytes holding @n, made room
 * for one more. From raw pages, never the program's allocator: the preload
 * shim registers from inside it (an mmap of jemalloc's, which holds its
 * lock). 0 or -ENOMEM. */
static int grow(void **v, unsigned int *cap, size_t size, unsigned int n)
{
	unsigned int c = *cap ? *cap * 2 : 64;
	void *nv;

	if (n < *cap)
		return 0;
	nv = ufault__pages_map(c * size);
	if (!nv)
		return -ENOMEM;
	if (*v) {
		memcpy(nv, *v, *cap * size);
		ufault__pages_unmap(*v, *cap * size);
	}
	*v = nv;
	*cap = c;
	return 0;
}

/* Register @r (its fds ours now, closed on failure) with the uffd in
 * @mode, then with the daemon or the in-process context. */
static int add_region(struct ufault_remote *rm, struct remote_region *rr, uint64_t mode)
{
	struct remote_region r = *rr;
	uint64_t start = r.start, len = r.len;
	int ret;

	pthread_mutex_lock(&rm->lock);
	ret = rm->nr >= UFAULT_PROTO_MAX_REGIONS ? -ENOSPC : 0;
	if (!ret)
		ret = grow((void **)&rm->regions, &rm->cap, sizeof(*rm->regions), rm->nr);
	if (!ret)
		ret = ufault__uffd_register(rm->uffd, start, len, mode, NULL);
	if (!ret) {
		if (rm->local) {
			ret = local_register(rm, &r);
			if (!ret)
				rm->regions[rm->nr++] = r;
		} else {
			ret = send_region(rm, &r);
			if (broken(ret)) {
				/* The monitor sends it again once it is back. */
				r.unsent = true;
				ret = 0;
			}
			if (!ret)
				rm->regions[rm->nr++] = r;
		}
		if (ret)
			ufault__uffd_unregister(rm->uffd, start, len);
	}
	pthread_mutex_unlock(&rm->lock);
	if (ret && r.fd >= 0)
		close(r.fd);
	if (ret && r.mem_fd >= 0)
		close(r.mem_fd);
	return ret;
}

int ufault_remote_register(struct ufault_remote *rm, void *addr, size_t len, int fd,
			   uint64_t offset, unsigned int page_shift)
{
	uint64_t start = (uint64_t)(uintptr_t)addr;
	struct remote_region r = {
	    .start = start, .len = len, .offset = offset, .fd = -1, .mem_fd = -1};

	if (!rm || !addr || !len || page_shift >= 31 ||
	    (page_shift && (1ull << page_shift) < ufault__sys_page()))
		return -EINVAL;
	if (forked(rm))
		return -ECHILD;
	r.page_size = page_shift ? 1u << page_shift : 0;
	if (fd >= 0) {
		r.fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		if (r.fd < 0)
			return -errno;
	}
	return add_region(rm, &r, UFFDIO_REGISTER_MODE_MISSING);
}

int ufault_remote_map(struct ufault_remote *rm, size_t len, int fd, uint64_t offset, void **out)
{
	uint64_t sys = ufault__sys_page();
	struct remote_region r = {.len = len, .offset = offset, .fd = -1, .mem_fd = -1};
	void *p;
	int ret, fl = fd >= 0 ? fcntl(fd, F_GETFL) : -1;

	if (!rm || !len || len % sys || offset % sys || !out || fd < 0)
		return -EINVAL;
	if (forked(rm))
		return -ECHILD;
	if (fl < 0 || (fl & O_ACCMODE) != O_RDWR)
		return -EBADF;
	if (!(rm->features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM))
		return -EOPNOTSUPP;
	r.mem_fd = memfd_create("ufault_remote_map", MFD_CLOEXEC);
	if (r.mem_fd < 0)
		return -errno;
	if (ftruncate(r.mem_fd, (off_t)len)) {
		ret = -errno;
		close(r.mem_fd);
		return ret;
	}
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, r.mem_fd, 0);
	r.fd = p == MAP_FAILED ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (r.fd < 0) {
		ret = -errno;
		if (p != MAP_FAILED)
			munmap(p, len);
		close(r.mem_fd);
		return ret;
	}
	/* A child would share the pages with no one to fill its holes. */
	madvise(p, len, MADV_DONTFORK);
	r.start = (uint64_t)(uintptr_t)p;
	ret = add_region(rm, &r, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP);
	if (ret) {
		munmap(p, len);
		return ret;
	}
	*out = p;
	return 0;
}

static int remember_gone(struct ufault_remote *rm, const struct ufault_proto_range *r)
{
	if (grow((void **)&rm->gone, &rm->cap_gone, sizeof(*rm->gone), rm->nr_gone))
		return -ENOMEM;
	rm->gone[rm->nr_gone++] = *r;
	return 0;
}

/* Free region @i's own resources; a mapping of ufault_remote_map() goes,
 * with its registration. */
static void region_drop(struct ufault_remote *rm, const struct remote_region *r, bool own)
{
	if (r->mem_fd >= 0 && own) {
		ufault__uffd_unregister(rm->uffd, r->start, r->len);
		munmap((void *)(uintptr_t)r->start, r->len);
	}
	if (r->fd >= 0)
		close(r->fd);
	if (r->mem_fd >= 0)
		close(r->mem_fd);
}

int ufault_remote_unregister(struct ufault_remote *rm, void *addr, size_t len)
{
	uint64_t start = (uint64_t)(uintptr_t)addr;
	struct ufault_proto_range body = {.start = start, .len = len};
	unsigned int i;
	bool shared;
	int ret = 0;

	if (!rm)
		return -EINVAL;
	if (forked(rm))
		return -ECHILD;
	pthread_mutex_lock(&rm->lock);
	for (i = 0; i < rm->nr; i++)
		if (rm->regions[i].start == start && rm->regions[i].len == len)
			break;
	if (i == rm->nr) {
		pthread_mutex_unlock(&rm->lock);
		return -ENOENT;
	}
	/* The kernel first: from then on faults there are ordinary. Not
	 * for a mapping of ufault_remote_map(): a hole touched then would be
	 * a page of zeros in the memfd, stored over the file. Its pages are
	 * written back first (an error keeps it registered), then it goes. */
	shared = rm->regions[i].mem_fd >= 0;
	if (!shared)
		ufault__uffd_unregister(rm->uffd, start, len);
	if (rm->local) {
		ret = ufault_region_unregister(rm->local, rm->regions[i].handle);
	} else {
		ret = request(rm, UFAULT_MSG_UNREGISTER, &body, sizeof(body), -1, NULL, NULL, 0);
		if (broken(ret)) {
			/* The daemon may have it still: told again on resume
			 * (without memory, it is not: the daemon then keeps a
			 * region no fault comes from any more). */
			remember_gone(rm, &body);
			ret = 0;
		}
	}
	if (shared && ret) {
		pthread_mutex_unlock(&rm->lock);
		return ret;
	}
	region_drop(rm, &rm->regions[i], true);
	rm->regions[i] = rm->regions[--rm->nr];
	pthread_mutex_unlock(&rm->lock);
	return ret;
}

int ufault_remote_stats(struct ufault_remote *rm, struct ufault_proto_stats *out)
{
	int ret;

	if (!rm || !out)
		return -EINVAL;
	if (forked(rm))
		return -ECHILD;
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&rm->lock);
	ret = rm->local ? -ENOTCONN
			: request(rm, UFAULT_MSG_STATS, NULL, 0, -1, NULL, out, sizeof(*out));
	pthread_mutex_unlock(&rm->lock);
	return broken(ret) ? -ENOTCONN : ret;
}

int ufault_remote_local(const struct ufault_remote *rm)
{
	struct ufault_remote *m = (struct ufault_remote *)rm;
	int local;

	if (!rm)
		return 0;
	if (forked(rm)) /* no lock: a parent thread may have held it */
		return m->local != NULL;
	pthread_mutex_lock(&m->lock);
	local = m->local != NULL;
	pthread_mutex_unlock(&m->lock);
	return local;
}

void ufault_remote_close(struct ufault_remote *rm)
{
	uint64_t one = 1;
	bool own;

	if (!rm)
		return;
	/* In a child of the process that connected, the monitor, the
	 * session and the uffd's registrations are the parent's (the uffd is
	 * the parent's mm): only this process's fds and memory go, and no
	 * lock is taken (a parent thread may have held it at the fork). */
	own = !forked(rm);
	if (own && rm->monitor_started) {
		if (write(rm->stop_fd, &one, sizeof(one)) < 0)
			abort(); /* an eventfd write of 1 cannot fail */
		pthread_join(rm->monitor, NULL);
	}
	if (rm->sock >= 0)
		close(rm->sock);
	if (rm->local)
		ufault_ctx_destroy(rm->local); /* in a child, its child path */
	for (unsigned int i = 0; i < rm->nr; i++) {
		/* Ordinary memory again (pages never filled read zeros);
		 * the mappings of ufault_remote_map() unmapped. */
		if (own && rm->regions[i].mem_fd < 0)
			ufault__uffd_unregister(rm->uffd, rm->regions[i].start, rm->regions[i].len);
		region_drop(rm, &rm->regions[i], own);
	}
	if (rm->regions)
		ufault__pages_unmap(rm->regions, rm->cap * sizeof(*rm->regions));
	if (rm->gone)
		ufault__pages_unmap(rm->gone, rm->cap_gone * sizeof(*rm->gone));
	if (rm->uffd >= 0)
		close(rm->uffd);
	if (rm->stop_fd >= 0)
		close(rm->stop_fd);
	if (rm->zlog_fd >= 0)
		close(rm->zlog_fd);
	if (own)
		pthread_mutex_destroy(&rm->lock);
	free(rm);
}
