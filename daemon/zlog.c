// SPDX-License-Identifier: MIT
/*
 * zlog.c - a client's log of removed ranges (zlog.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zlog_load.h"
#include "zlog.h"

#define HEAD_SIZE sizeof(struct ufault_proto_zlog_head)
#define RANGE_SIZE sizeof(struct ufault_proto_zlog_range)

_Static_assert(sizeof(struct ufault_proto_zlog_head) == 16 &&
		   sizeof(struct ufault_proto_zlog_range) == 16 &&
		   sizeof(struct ufault_zeroed) == 16 &&
		   offsetof(struct ufault_zeroed, end) ==
		       offsetof(struct ufault_proto_zlog_range, end),
	       "the log's ranges are struct ufault_zeroed");

void ufd_zlog_init(struct ufd_zlog *z)
{
	memset(z, 0, sizeof(*z));
	pthread_mutex_init(&z->lock, NULL);
	z->fd = -1;
}

static int pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	ssize_t n;

	do
		n = pwrite(fd, buf, len, off);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

static int pread_all(int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, off + (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (!n)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

int ufd_zlog_create(struct ufd_zlog *z)
{
	struct ufault_proto_zlog_head h = {.magic = UFAULT_PROTO_ZLOG_MAGIC};
	int fd = memfd_create("ufaultd-zeroed", MFD_CLOEXEC), err;

	if (fd < 0)
		return -errno;
	err = pwrite_all(fd, &h, sizeof(h), 0);
	if (err) {
		close(fd);
		return err;
	}
	pthread_mutex_lock(&z->lock);
	z->fd = fd;
	z->n = 0;
	pthread_mutex_unlock(&z->lock);
	return 0;
}

int ufd_zlog_adopt(struct ufd_zlog *z, int fd, uint64_t sys_page, uint64_t va_end, const char **why)
{
	struct ufault_proto_zlog_range *v;
	unsigned int n;
	int err;

	if ((fcntl(fd, F_GETFL) & O_ACCMODE) != O_RDWR) {
		*why = "the removed-ranges log is not open for writing";
		return -EINVAL;
	}
	err = ufault__zlog_load(fd, sys_page, va_end, &v, &n, why);
	if (err) {
		if (!*why)
			*why = "the removed-ranges log cannot be read";
		return -EINVAL;
	}
	pthread_mutex_lock(&z->lock);
	z->fd = fd;
	z->n = n;
	if (n)
		memcpy(&z->last, &v[n - 1], sizeof(z->last));
	pthread_mutex_unlock(&z->lock);
	free(v);
	return 0;
}

int ufd_zlog_read(struct ufd_zlog *z, struct ufault_zeroed **out, unsigned int *nr)
{
	struct ufault_zeroed *v = NULL;
	int err = 0;

	pthread_mutex_lock(&z->lock);
	if (z->fd >= 0 && z->n) {
		v = malloc(z->n * RANGE_SIZE);
		err = v ? pread_all(z->fd, v, z->n * RANGE_SIZE, HEAD_SIZE) : -ENOMEM;
	}
	*nr = err ? 0 : (v ? z->n : 0);
	pthread_mutex_unlock(&z->lock);
	if (err) {
		free(v);
		v = NULL;
	}
	*out = v;
	return err;
}

int ufd_zlog_append(struct ufd_zlog *z, uint64_t start, uint64_t end)
{
	struct ufault_zeroed r = {.start = start, .end = end};
	uint32_t count;
	int err;

	pthread_mutex_lock(&z->lock);
	if (z->fd < 0) {
		pthread_mutex_unlock(&z->lock);
		return 0;
	}
	if (z->n && start <= z->last.end && end >= z->last.start) {
		/* Touches the last one: that one, grown, in one write. */
		if (z->last.start < r.start)
			r.start = z->last.start;
		if (z->last.end > r.end)
			r.end = z->last.end;
		err =
		    pwrite_all(z->fd, &r, sizeof(r), (off_t)(HEAD_SIZE + (z->n - 1) * RANGE_SIZE));
		if (!err)
			z->last = r;
	} else if (z->n == UFAULT_PROTO_ZLOG_MAX) {
		err = -ENOSPC;
	} else {
		count = z->n + 1;
		err = pwrite_all(z->fd, &r, sizeof(r), (off_t)(HEAD_SIZE + z->n * RANGE_SIZE));
		if (!err)
			err = pwrite_all(z->fd, &count, sizeof(count),
					 offsetof(struct ufault_proto_zlog_head, count));
		if (!err) {
			z->n = count;
			z->last = r;
		}
	}
	pthread_mutex_unlock(&z->lock);
	return err;
}

void ufd_zlog_reset(struct ufd_zlog *z)
{
	pthread_mutex_lock(&z->lock);
	if (z->fd >= 0)
		close(z->fd);
	z->fd = -1;
	z->n = 0;
	pthread_mutex_unlock(&z->lock);
}

int ufd_zlog_create_from(struct ufd_zlog *z, const struct ufault_proto_zlog_range *v,
			 unsigned int n)
{
	int err = ufd_zlog_create(z);

	for (unsigned int i = 0; !err && i < n; i++)
		err = ufd_zlog_append(z, v[i].start, v[i].end);
	if (err)
		ufd_zlog_reset(z);
	return err;
}

int ufd_zlog_fork(struct ufd_zlog *to, struct ufd_zlog *from)
{
	struct ufault_zeroed *v;
	unsigned int n;
	int err = ufd_zlog_read(from, &v, &n);

	if (!err)
		err =
		    ufd_zlog_create_from(to, (const struct ufault_proto_zlog_range *)(void *)v, n);
	free(v);
	return err;
}

void ufd_zlog_close(struct ufd_zlog *z)
{
	if (z->fd >= 0)
		close(z->fd);
	z->fd = -1;
	z->n = 0;
	pthread_mutex_destroy(&z->lock);
}
