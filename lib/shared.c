// SPDX-License-Identifier: MIT
/*
 * shared.c - a foreign owner's shared memory (shared.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shared.h"
#include "source.h"
#include "util.h"

int ufault__shared_init(struct ufault__shared *sh, int fd, uint64_t offset, uint64_t base,
			uint64_t len, const struct ufault__log *log)
{
	int fl = fd >= 0 ? fcntl(fd, F_GETFL) : -1;
	struct statfs sfs;
	struct stat st;

	if (fl < 0 || fstat(fd, &st) || fstatfs(fd, &sfs)) {
		ufault__warn(log, "register_shared: fd %d is not open", fd);
		return -EINVAL;
	}
	if ((fl & O_ACCMODE) != O_RDWR || !S_ISREG(st.st_mode) || sfs.f_type != TMPFS_MAGIC) {
		ufault__warn(log,
			     "register_shared: fd %d is not a memfd or tmpfs file open for reading "
			     "and writing (hugetlbfs is not supported)",
			     fd);
		return -EINVAL;
	}
	if (offset % ufault__sys_page() || offset + len < offset ||
	    (uint64_t)st.st_size < offset + len) {
		ufault__warn(
		    log,
		    "register_shared: offset %llu (page-aligned) + length %llu is past the "
		    "memfd's %lld bytes",
		    (unsigned long long)offset, (unsigned long long)len, (long long)st.st_size);
		return -EINVAL;
	}
	sh->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (sh->fd < 0)
		return -errno;
	sh->on = true;
	sh->offset = offset;
	sh->base = base;
	sh->len = len;
	return 0;
}

void ufault__shared_fini(struct ufault__shared *sh)
{
	if (sh->on)
		close(sh->fd);
	sh->on = false;
	sh->fd = -1;
}

/* The memfd offset of the owner's @addr. */
static off_t at(const struct ufault__shared *sh, uint64_t addr)
{
	return (off_t)(sh->offset + (addr - sh->base));
}

/* The owner's address of memfd offset @off. */
static uint64_t addr_of(const struct ufault__shared *sh, off_t off)
{
	return sh->base + ((uint64_t)off - sh->offset);
}

bool ufault__shared_resident(const struct ufault__shared *sh, uint64_t addr)
{
	return lseek(sh->fd, at(sh, addr), SEEK_DATA) == at(sh, addr);
}

int ufault__shared_punch(const struct ufault__shared *sh, uint64_t addr, uint64_t len)
{
	return fallocate(sh->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, at(sh, addr),
			 (off_t)len)
		   ? -errno
		   : 0;
}

int ufault__shared_store(const struct ufault__shared *sh, const struct ufault__source *s,
			 uint64_t addr, uint64_t off, void *buf)
{
	uint64_t sys = ufault__sys_page();
	char *mem = buf, *was = mem + sys;
	long n = ufault__pio(sh->fd, mem, sys, (uint64_t)at(sh, addr), false);
	int ret;

	if (n < 0 || (uint64_t)n < sys) /* the memfd is never shorter */
		return n < 0 ? (int)n : -EIO;
	if (s->ops->read && !s->ops->read(&s->user, off, was, sys) && !memcmp(mem, was, sys))
		return 0;
	ret = s->ops->write(&s->user, off, mem, sys);
	return ret ? ret : 1;
}

int ufault__shared_store_range(const struct ufault__shared *sh, const struct ufault__source *s,
			       uint64_t start, uint64_t end, uint64_t off, uint64_t *stored)
{
	uint64_t sys = ufault__sys_page(), a = start;
	void *buf = malloc(2 * sys);
	int first = 0;

	if (!buf)
		return -ENOMEM;
	while (a < end) {
		/* The next resident run: holes never filled store nothing. */
		off_t d = lseek(sh->fd, at(sh, a), SEEK_DATA), h;

		if (d < 0 || d >= at(sh, end)) {
			if (d < 0 && errno != ENXIO && !first)
				first = -errno;
			break;
		}
		h = lseek(sh->fd, d, SEEK_HOLE);
		if (h < 0 || h > at(sh, end))
			h = at(sh, end);
		for (a = addr_of(sh, d); a < addr_of(sh, h); a += sys) {
			int ret = ufault__shared_store(sh, s, a, off + (a - start), buf);

			if (ret > 0)
				++*stored;
			else if (ret < 0 && !first)
				first = ret;
		}
	}
	free(buf);
	return first;
}
