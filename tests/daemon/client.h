/* SPDX-License-Identifier: MIT */
/*
 * client.h - a minimal client of ufaultd's native protocol for the tests:
 * raw messages with fds, blocking, one request and one reply at a time.
 * Header-only (static inline), so forked test children use it directly.
 * Deliberately not libufault's client (ufault_remote_*): the tests must be
 * able to send what a correct client never would.
 *
 *  tc_connect(path)          connected stream socket (30 s receive timeout,
 *                            so a daemon that never answers fails a test
 *                            instead of hanging it), or -errno.
 *  tc_send_raw(fd, buf, len, fds, nfds)   one sendmsg(), fds as SCM_RIGHTS.
 *  tc_send(fd, type, seq, body, len, fds, nfds)   a framed message.
 *  tc_recv(fd, buf, &msg)    one framed, checked message into buf
 *                            (TC_MSG_MAX bytes); -ECONNRESET at EOF.
 *  tc_call(fd, type, body, len, fds, nfds, &msg, buf)   request + reply;
 *                            returns the transport result (0 or -errno),
 *                            the daemon's answer is msg.u.reply.status.
 *  tc_closed(fd)             true once the daemon closed the connection.
 *  tc_uffd(features)         a userfaultfd (O_CLOEXEC | O_NONBLOCK) after
 *                            UFFDIO_API with @features, or -errno.
 *  tc_uffd_register(uffd, addr, len)   UFFDIO_REGISTER, mode MISSING.
 *  tc_hello / tc_register / tc_unregister / tc_list: the requests; each
 *                            returns the reply status, or the transport
 *                            error if there was no reply.
 *  tc_uffd_count(pid, what)  fault messages in @pid's userfaultfds, from
 *                            /proc/PID/fdinfo: "pending:" (unread) or
 *                            "total:" (read or not), or -1.
 */
#ifndef UFAULT_TEST_DAEMON_CLIENT_H
#define UFAULT_TEST_DAEMON_CLIENT_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <ufault/protocol.h>

#include "proto.h"

#define TC_MSG_MAX (sizeof(struct ufault_proto_hdr) + UFAULT_PROTO_MAX_BODY)
#define TC_MAX_SEND_FDS 8

static inline int tc_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = 30};
	int fd, err;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		err = -errno;
		close(fd);
		return err;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

static inline int tc_send_raw(int fd, const void *buf, size_t len, const int *fds,
			      unsigned int nfds)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * TC_MAX_SEND_FDS)];
	} control;
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	if (nfds > TC_MAX_SEND_FDS)
		return -EINVAL;
	if (nfds) {
		struct cmsghdr *cm;

		memset(&control, 0, sizeof(control));
		mh.msg_control = control.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	do {
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	/* The rest, if the socket took only part (no fds with it). */
	while ((size_t)n < len) {
		ssize_t m = send(fd, (const char *)buf + n, len - (size_t)n, MSG_NOSIGNAL);

		if (m < 0 && errno == EINTR)
			continue;
		if (m < 0)
			return -errno;
		n += m;
	}
	return 0;
}

static inline int tc_send(int fd, uint16_t type, uint32_t seq, const void *body, uint32_t len,
			  const int *fds, unsigned int nfds)
{
	unsigned char buf[TC_MSG_MAX];
	size_t n;

	if (len > UFAULT_PROTO_MAX_BODY)
		return -EMSGSIZE;
	n = ufault__proto_build(buf, type, seq, body, len);
	return tc_send_raw(fd, buf, n, fds, nfds);
}

static inline int tc_read_all(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = recv(fd, p, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static inline int tc_recv(int fd, unsigned char *buf, struct ufault__proto_msg *m)
{
	const size_t hdr = sizeof(struct ufault_proto_hdr);
	const char *why = "";
	long total;
	int err;

	err = tc_read_all(fd, buf, hdr);
	if (err)
		return err;
	total = ufault__proto_frame(buf, hdr, &why);
	if (total <= 0)
		return -EPROTO;
	err = tc_read_all(fd, buf + hdr, (size_t)total - hdr);
	if (err)
		return err;
	return ufault__proto_check(buf, (size_t)total, 0, (uint64_t)sysconf(_SC_PAGESIZE), m, &why);
}

static inline int tc_call(int fd, uint16_t type, const void *body, uint32_t len, const int *fds,
			  unsigned int nfds, struct ufault__proto_msg *m, unsigned char *buf)
{
	static uint32_t seq;
	uint32_t s = ++seq;
	int err;

	err = tc_send(fd, type, s, body, len, fds, nfds);
	if (err)
		return err;
	err = tc_recv(fd, buf, m);
	if (err)
		return err;
	if (m->hdr.type != UFAULT_MSG_REPLY || m->hdr.seq != s)
		return -EPROTO;
	return 0;
}

/* True once the peer has closed: EOF (or a reset) within the receive
 * timeout; anything it sends meanwhile is read and dropped. */
static inline int tc_closed(int fd)
{
	char buf[4096];

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE)))
			return 1;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return 0; /* timeout: still open */
	}
}

static inline int tc_uffd(uint64_t features)
{
	struct uffdio_api api = {.api = UFFD_API, .features = features};
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return -errno;
	if (ioctl(fd, UFFDIO_API, &api)) {
		int err = -errno;

		close(fd);
		return err;
	}
	if ((api.features & features) != features) {
		close(fd);
		return -EOPNOTSUPP;
	}
	return fd;
}

static inline int tc_uffd_register(int uffd, void *addr, size_t len)
{
	struct uffdio_register reg = {
	    .range = {.start = (uintptr_t)addr, .len = len},
	    .mode = UFFDIO_REGISTER_MODE_MISSING,
	};

	return ioctl(uffd, UFFDIO_REGISTER, &reg) ? -errno : 0;
}

static inline int tc_status(int err, const struct ufault__proto_msg *m)
{
	return err ? err : m->u.reply.status;
}

static inline int tc_hello(int fd, int uffd, uint64_t features, uint64_t *id)
{
	struct ufault_proto_hello h = {.features = features};
	unsigned char buf[TC_MSG_MAX];
	struct ufault__proto_msg m;
	int err;

	err = tc_call(fd, UFAULT_MSG_HELLO, &h, sizeof(h), &uffd, uffd >= 0, &m, buf);
	if (!err && id)
		*id = m.u.reply.value;
	return tc_status(err, &m);
}

static inline int tc_register(int fd, const void *start, uint64_t len, uint64_t offset,
			      uint32_t page_size, int file)
{
	struct ufault_proto_region r = {
	    .start = (uintptr_t)start,
	    .len = len,
	    .offset = offset,
	    .page_size = page_size,
	    .source = file >= 0 ? UFAULT_PROTO_SRC_FILE : UFAULT_PROTO_SRC_ZERO,
	};
	unsigned char buf[TC_MSG_MAX];
	struct ufault__proto_msg m;
	int err;

	err = tc_call(fd, UFAULT_MSG_REGISTER, &r, sizeof(r), &file, file >= 0, &m, buf);
	return tc_status(err, &m);
}

static inline int tc_unregister(int fd, const void *start, uint64_t len)
{
	struct ufault_proto_range r = {.start = (uintptr_t)start, .len = len};
	unsigned char buf[TC_MSG_MAX];
	struct ufault__proto_msg m;
	int err;

	err = tc_call(fd, UFAULT_MSG_UNREGISTER, &r, sizeof(r), NULL, 0, &m, buf);
	return tc_status(err, &m);
}

static inline int tc_stats(int fd, struct ufault_proto_stats *st)
{
	unsigned char buf[TC_MSG_MAX];
	struct ufault__proto_msg m;
	int err;

	err = tc_call(fd, UFAULT_MSG_STATS, NULL, 0, NULL, 0, &m, buf);
	if (!err && !m.u.reply.status) {
		if (m.extra_len != sizeof(*st))
			return -EPROTO;
		memcpy(st, m.extra, sizeof(*st));
	}
	return tc_status(err, &m);
}

/* LIST into @out (room for @max); the number of entries, or -errno. */
static inline long tc_list(int fd, struct ufault_proto_client *out, size_t max)
{
	unsigned char buf[TC_MSG_MAX];
	struct ufault__proto_msg m;
	int err;

	err = tc_call(fd, UFAULT_MSG_LIST, NULL, 0, NULL, 0, &m, buf);
	if (err)
		return err;
	if (m.u.reply.status)
		return m.u.reply.status;
	if (m.u.reply.value > max || m.extra_len != m.u.reply.value * sizeof(*out))
		return -EPROTO;
	memcpy(out, m.extra, m.extra_len);
	return (long)m.u.reply.value;
}

/* Room for LIST's entries (as many as fit one reply's body). */
#define TC_LIST_MAX                                                                                \
	((UFAULT_PROTO_MAX_BODY - sizeof(struct ufault_proto_reply)) /                             \
	 sizeof(struct ufault_proto_client))

/* LIST over a connection of its own; the count, or -errno. */
static inline long tc_list_clients(const char *path, struct ufault_proto_client *e)
{
	int fd = tc_connect(path);
	long n;

	if (fd < 0)
		return fd;
	n = tc_list(fd, e, TC_LIST_MAX);
	close(fd);
	return n;
}

static inline const struct ufault_proto_client *tc_find_pid(const struct ufault_proto_client *e,
							    long n, pid_t pid)
{
	for (long i = 0; i < n; i++)
		if (e[i].pid == (uint32_t)pid)
			return &e[i];
	return NULL;
}

/* waitpid(2) for @pid: its exit status, 128 + the signal, or -1. */
static inline int tc_wait_exit(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/*
 * Fault messages waiting in @pid's userfaultfds (/proc/PID/fdinfo):
 * "pending" not read yet, "total" read or not, so total - pending were
 * read and not answered (their threads wait for a wake); @what NULL: the
 * userfaultfds themselves. -1 if @pid's fds cannot be listed.
 */
static inline long tc_uffd_count(pid_t pid, const char *what)
{
	char dir[64], link[320], target[64], info[320], buf[512];
	struct dirent *e;
	long total = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	if (!d)
		return -1;
	while ((e = readdir(d))) {
		ssize_t n;
		char *p;
		int fd;

		snprintf(link, sizeof(link), "%s/%s", dir, e->d_name);
		n = readlink(link, target, sizeof(target) - 1);
		if (n < 0)
			continue;
		target[n] = 0;
		if (strcmp(target, "anon_inode:[userfaultfd]"))
			continue;
		if (!what) {
			total++;
			continue;
		}
		snprintf(info, sizeof(info), "/proc/%d/fdinfo/%s", (int)pid, e->d_name);
		fd = open(info, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = 0;
		p = strstr(buf, what);
		if (p)
			total += strtol(p + strlen(what), NULL, 10);
	}
	closedir(d);
	return total;
}

/*
 * The start of a daemon test program's main() (it includes cmocka.h and
 * testutil.h first): exit 77 where this process gets no userfaultfd;
 * $UFAULTD_TEST (a glob, e.g. test_fork*) runs only the tests it matches;
 * a watchdog of @secs.
 */
static inline void tc_main_start(unsigned int secs)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);

	if (fd < 0)
		tu_skip("userfaultfd is not available to this process");
	close(fd);
	if (getenv("UFAULTD_TEST"))
		cmocka_set_test_filter(getenv("UFAULTD_TEST"));
	tu_watchdog(secs);
}

#endif /* UFAULT_TEST_DAEMON_CLIENT_H */
