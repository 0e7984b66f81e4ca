// SPDX-License-Identifier: MIT
/*
 * fdstore.c - the daemon's side of the fd store (fdstore.h).
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fdstore.h"

#define MEMFD_NAME "ufaultd-entry"

/* --- the wire (keeper) ------------------------------------------------------ */

/* @nr fds (none: nothing) as the SCM_RIGHTS of @mh, in @cbuf (room for
 * CMSG_SPACE of them, which every caller's buffer has). */
static void attach_fds(struct msghdr *mh, char *cbuf, const int *fds, unsigned int nr)
{
	struct cmsghdr *c;

	if (!nr)
		return;
	memset(cbuf, 0, CMSG_SPACE(sizeof(int) * nr));
	mh->msg_control = cbuf;
	mh->msg_controllen = CMSG_SPACE(sizeof(int) * nr);
	c = CMSG_FIRSTHDR(mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * nr);
	memcpy(CMSG_DATA(c), fds, sizeof(int) * nr);
}

int ufd_store_send(int sock, uint32_t op, const char *name, const void *blob, size_t len,
		   const int *fds, unsigned int nr)
{
	struct ufd_keeper_hdr h = {.magic = UFD_KEEPER_MAGIC, .op = op};
	char cbuf[CMSG_SPACE(sizeof(int) * UFD_STORE_MAX_FDS)];
	struct iovec iov[3];
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 3};
	size_t total;
	ssize_t n;

	h.name_len = name ? (uint32_t)strlen(name) : 0;
	h.blob_len = (uint32_t)len;
	if (h.name_len > UFD_STORE_MAX_NAME || len > UFD_STORE_MAX_BLOB || nr > UFD_STORE_MAX_FDS)
		return -EINVAL;
	iov[0] = (struct iovec){.iov_base = &h, .iov_len = sizeof(h)};
	iov[1] = (struct iovec){.iov_base = (void *)name, .iov_len = h.name_len};
	iov[2] = (struct iovec){.iov_base = (void *)blob, .iov_len = len};
	total = sizeof(h) + h.name_len + len;
	attach_fds(&mh, cbuf, fds, nr);
	do
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	/* The fds went with the first byte; the rest may need more calls. */
	for (size_t done = (size_t)n; done < total;) {
		char *p;
		size_t off = done, left;

		if (off < sizeof(h)) {
			p = (char *)&h + off;
			left = sizeof(h) - off;
		} else if (off < sizeof(h) + h.name_len) {
			p = (char *)name + (off - sizeof(h));
			left = h.name_len - (off - sizeof(h));
		} else {
			p = (char *)blob + (off - sizeof(h) - h.name_len);
			left = total - off;
		}
		n = send(sock, p, left, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n ? -errno : -EPIPE;
		done += (size_t)n;
	}
	return 0;
}

static int read_all(int sock, void *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = read(sock, (char *)buf + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n ? -errno : -EPROTO;
		done += (size_t)n;
	}
	return 0;
}

int ufd_store_recv(int sock, uint32_t *op, char *name, void *blob, size_t *len, int *fds,
		   unsigned int *nr)
{
	char cbuf[CMSG_SPACE(sizeof(int) * UFD_STORE_MAX_FDS)];
	struct ufd_keeper_hdr h;
	struct iovec iov = {.iov_base = &h, .iov_len = sizeof(h)};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *c;
	ssize_t n;
	int ret = 0;

	*nr = 0;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
	while (n < 0 && errno == EINTR);
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			unsigned int k = (unsigned int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));

			memcpy(fds + *nr, CMSG_DATA(c), sizeof(int) * k);
			*nr += k;
		}
	}
	if (n == 0)
		ret = -ECONNRESET;
	else if (n < 0)
		ret = -errno;
	else if ((size_t)n < sizeof(h) || (mh.msg_flags & MSG_CTRUNC) ||
		 h.magic != UFD_KEEPER_MAGIC || h.name_len > UFD_STORE_MAX_NAME ||
		 h.blob_len > UFD_STORE_MAX_BLOB)
		ret = -EPROTO;
	if (!ret)
		ret = read_all(sock, name, h.name_len);
	if (!ret)
		ret = read_all(sock, blob, h.blob_len);
	if (ret) {
		for (unsigned int i = 0; i < *nr; i++)
			close(fds[i]);
		*nr = 0;
		return ret;
	}
	name[h.name_len] = 0;
	*op = h.op;
	*len = h.blob_len;
	return 0;
}

/* --- systemd ---------------------------------------------------------------- */

/* sd_notify(3) by hand: one datagram, with fds. */
static int notify(const struct ufd_store *st, const char *msg, const int *fds, unsigned int nr)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	char cbuf[CMSG_SPACE(sizeof(int) * (UFD_STORE_MAX_FDS + 1))];
	struct iovec iov = {.iov_base = (void *)msg, .iov_len = strlen(msg)};
	struct msghdr mh = {.msg_name = &a, .msg_iov = &iov, .msg_iovlen = 1};
	size_t plen = strlen(st->notify);
	int s, ret = 0;

	memcpy(a.sun_path, st->notify, plen);
	if (a.sun_path[0] == '@')
		a.sun_path[0] = 0; /* abstract */
	mh.msg_namelen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
	attach_fds(&mh, cbuf, fds, nr);
	s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	if (sendmsg(s, &mh, MSG_NOSIGNAL) < 0)
		ret = -errno;
	close(s);
	return ret;
}

/* The record goes in a memfd: its first bytes identify the other fds. */
struct memfd_head {
	uint32_t nr;
	uint32_t blob_len;
	struct {
		uint64_t dev, ino;
	} id[UFD_STORE_MAX_FDS];
};

/*
 * systemd keeps one copy of an open file, whatever name it comes with:
 * a file description another entry holds already (a dup: two clients on
 * one backing file, a fork child and its parent) would be dropped from
 * this one. A regular file goes as a new open of it, where we may open
 * it; -1: the fd itself.
 */
static int fresh_open(int fd, const struct stat *sb)
{
	char path[64];

	if (!S_ISREG(sb->st_mode))
		return -1;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return open(path, O_RDONLY | O_CLOEXEC);
}

static int systemd_put(struct ufd_store *st, const char *name, const void *blob, size_t len,
		       const int *fds, unsigned int nr)
{
	struct memfd_head head = {.nr = nr, .blob_len = (uint32_t)len};
	int all[UFD_STORE_MAX_FDS + 1], fresh[UFD_STORE_MAX_FDS], mfd, ret = 0;
	char msg[160];
	struct stat sb;

	for (unsigned int i = 0; i < nr; i++)
		fresh[i] = -1;
	for (unsigned int i = 0; i < nr && !ret; i++) {
		if (fstat(fds[i], &sb)) {
			ret = -errno;
			break;
		}
		head.id[i].dev = sb.st_dev;
		head.id[i].ino = sb.st_ino;
		fresh[i] = fresh_open(fds[i], &sb);
		all[i + 1] = fresh[i] >= 0 ? fresh[i] : fds[i];
	}
	mfd = ret ? -1 : memfd_create(MEMFD_NAME, MFD_CLOEXEC);
	if (!ret && mfd < 0)
		ret = -errno;
	if (!ret && (write(mfd, &head, sizeof(head)) != sizeof(head) ||
		     write(mfd, blob, len) != (ssize_t)len))
		ret = -EIO;
	if (!ret) {
		all[0] = mfd;
		/* Replace: the old entry's fds first. */
		snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", name);
		(void)notify(st, msg, NULL, 0);
		snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
		ret = notify(st, msg, all, nr + 1);
	}
	if (mfd >= 0)
		close(mfd);
	for (unsigned int i = 0; i < nr; i++)
		if (fresh[i] >= 0)
			close(fresh[i]);
	return ret;
}

static int systemd_load(struct ufd_store *st, ufd_store_entry_fn cb, void *arg)
{
	static unsigned char blob[UFD_STORE_MAX_BLOB];
	bool *used = calloc(st->nr_inherit + 1, sizeof(bool));

	if (!used)
		return -ENOMEM;
	for (unsigned int i = 0; i < st->nr_inherit; i++) {
		char link[64], target[128];
		int fds[UFD_STORE_MAX_FDS], mfd = st->inherit[i];
		struct memfd_head head;
		unsigned int n = 0;
		ssize_t r;

		snprintf(link, sizeof(link), "/proc/self/fd/%d", mfd);
		r = readlink(link, target, sizeof(target) - 1);
		if (r < 0 || (target[r] = 0, !strstr(target, "memfd:" MEMFD_NAME)))
			continue;
		used[i] = true;
		if (pread(mfd, &head, sizeof(head), 0) != sizeof(head) ||
		    head.nr > UFD_STORE_MAX_FDS || head.blob_len > UFD_STORE_MAX_BLOB ||
		    pread(mfd, blob, head.blob_len, sizeof(head)) != (ssize_t)head.blob_len) {
			close(mfd);
			continue;
		}
		/* Its fds, by inode, among those with the same name. */
		for (unsigned int k = 0; k < head.nr; k++) {
			for (unsigned int j = 0; j < st->nr_inherit; j++) {
				struct stat sb;

				if (used[j] || strcmp(st->inherit_names[j], st->inherit_names[i]) ||
				    fstat(st->inherit[j], &sb) || sb.st_dev != head.id[k].dev ||
				    sb.st_ino != head.id[k].ino)
					continue;
				used[j] = true;
				fds[n++] = st->inherit[j];
				break;
			}
		}
		close(mfd);
		if (n == head.nr)
			cb(arg, st->inherit_names[i], blob, head.blob_len, fds, n);
		else
			for (unsigned int k = 0; k < n; k++)
				close(fds[k]);
	}
	/* Fds no record claims (an entry cut short): nobody's any more. */
	for (unsigned int i = 0; i < st->nr_inherit; i++)
		if (!used[i])
			close(st->inherit[i]);
	free(used);
	st->nr_inherit = 0;
	return 0;
}

void ufd_store_set_inherited(struct ufd_store *st, const int *fds, const char *const *names,
			     unsigned int nr)
{
	st->inherit = fds;
	st->inherit_names = names;
	st->nr_inherit = nr;
}

/* --- the keeper --------------------------------------------------------------- */

static int keeper_dial(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = UFD_STORE_TIMEOUT_S};
	int s;

	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, path);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	if (connect(s, (struct sockaddr *)&a, sizeof(a))) {
		int ret = -errno;

		close(s);
		return ret;
	}
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return s;
}

/* Start ufaultd-keeper, detached (its own session: it outlives us). */
static int keeper_spawn(const char *bin, const char *path)
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return -errno;
	if (!pid) {
		int null;

		if (fork()) /* the grandchild is the keeper: init reaps it */
			_exit(0);
		setsid();
		/* Nothing of ours but stderr (its messages): not our stdout, a
		 * pipe someone may wait on for EOF, nor our cwd. */
		null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
		}
		if (chdir("/"))
			_exit(126);
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
		execl(bin, bin, path, (char *)NULL);
		_exit(127);
	}
	waitpid(pid, &status, 0);
	return 0;
}

int ufd_store_open(struct ufd_store *st, int use_systemd, const char *keeper_path,
		   const char *keeper_bin)
{
	const char *ns = getenv("NOTIFY_SOCKET");
	int s, ret;

	memset(st, 0, sizeof(*st));
	st->sock = -1;
	if (use_systemd && ns && *ns && strlen(ns) < sizeof(st->notify)) {
		strcpy(st->notify, ns);
		st->kind = UFD_STORE_SYSTEMD;
		return 0;
	}
	if (!keeper_path)
		return -EINVAL;
	s = keeper_dial(keeper_path);
	if (s < 0 && keeper_bin) {
		/* Not there: no point waiting for it to listen. */
		if (access(keeper_bin, X_OK))
			return -errno;
		ret = keeper_spawn(keeper_bin, keeper_path);
		if (ret)
			return ret;
		/* Until it listens (bounded: 5 s). */
		for (int i = 0; i < 500 && s < 0; i++) {
			struct timespec ts = {0, 10 * 1000 * 1000};

			nanosleep(&ts, NULL);
			s = keeper_dial(keeper_path);
		}
	}
	if (s < 0)
		return s;
	st->sock = s;
	st->kind = UFD_STORE_KEEPER;
	return 0;
}

void ufd_store_close(struct ufd_store *st)
{
	if (st->sock >= 0)
		close(st->sock);
	st->sock = -1;
	st->kind = UFD_STORE_NONE;
}

int ufd_store_put(struct ufd_store *st, const char *name, const void *blob, size_t len,
		  const int *fds, unsigned int nr)
{
	if (!name || strlen(name) > UFD_STORE_MAX_NAME || len > UFD_STORE_MAX_BLOB ||
	    nr > UFD_STORE_MAX_FDS)
		return -EINVAL;
	switch (st->kind) {
	case UFD_STORE_SYSTEMD:
		return systemd_put(st, name, blob, len, fds, nr);
	case UFD_STORE_KEEPER:
		return ufd_store_send(st->sock, UFD_KEEP_PUT, name, blob, len, fds, nr);
	default:
		return -ENOTCONN;
	}
}

int ufd_store_del(struct ufd_store *st, const char *name)
{
	char msg[160];

	switch (st->kind) {
	case UFD_STORE_SYSTEMD:
		snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", name);
		return notify(st, msg, NULL, 0);
	case UFD_STORE_KEEPER:
		return ufd_store_send(st->sock, UFD_KEEP_DEL, name, NULL, 0, NULL, 0);
	default:
		return -ENOTCONN;
	}
}

int ufd_store_load(struct ufd_store *st, ufd_store_entry_fn cb, void *arg)
{
	static unsigned char blob[UFD_STORE_MAX_BLOB];
	char name[UFD_STORE_MAX_NAME + 1];
	int fds[UFD_STORE_MAX_FDS], ret;

	if (st->kind == UFD_STORE_SYSTEMD)
		return systemd_load(st, cb, arg);
	if (st->kind != UFD_STORE_KEEPER)
		return -ENOTCONN;
	ret = ufd_store_send(st->sock, UFD_KEEP_LIST, NULL, NULL, 0, NULL, 0);
	while (!ret) {
		unsigned int nr;
		uint32_t op;
		size_t len;

		ret = ufd_store_recv(st->sock, &op, name, blob, &len, fds, &nr);
		if (ret)
			break;
		if (op == UFD_KEEP_END)
			break;
		if (op != UFD_KEEP_PUT) {
			for (unsigned int i = 0; i < nr; i++)
				close(fds[i]);
			ret = -EPROTO;
			break;
		}
		cb(arg, name, blob, len, fds, nr);
	}
	return ret;
}
