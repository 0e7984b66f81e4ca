// SPDX-License-Identifier: MIT
/*
 * source_memfd.c - a shared page cache: the region maps a memfd (or any
 * tmpfs file) MAP_PRIVATE, registered for MISSING and MINOR faults.
 *
 *   - A page already in the memfd's page cache (filled by another region,
 *     another process, or the caller beforehand) is mapped with
 *     UFFDIO_CONTINUE: no copy. A private mapping gets it read-only, so a
 *     write takes the kernel's copy-on-write and stays in this process.
 *   - A page missing from the cache is filled once from the inner source
 *     (a file, a callback, NBD, ...: any other type) into the worker's
 *     buffer, put in the cache with UFFDIO_COPY through the source's own
 *     shared view of the memfd (the alias), then mapped with CONTINUE.
 *
 * The alias is registered on a userfaultfd of the source's own that nobody
 * reads: it exists because UFFDIO_COPY into a shared shmem mapping is the
 * kernel's insert-if-absent for a whole page. Two fillers racing on one
 * page (two regions, two processes) both copy; the second gets EEXIST and
 * maps the first one's page, which was complete before it became visible.
 * A pwrite(2) into the memfd would instead make a half-written page
 * visible to a MINOR fault of another process.
 *
 * Residency is asked with mincore(2) on the alias (page cache presence for
 * a file mapping, whatever is mapped where), so a fault-around window is
 * cut where the cache changes from filled to missing.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <linux/magic.h>

#include "source.h"
#include "uffd.h"
#include "util.h"

struct memfd_cache {
	int uffd;      /* the alias is registered on it (MISSING), never read */
	char *alias;   /* MAP_SHARED view of the memfd's [0, size) */
	uint64_t size; /* the memfd's size at registration */
	dev_t dev;     /* the memfd's identity, to recognise its mappings */
	ino_t ino;
	struct ufault__source *inner; /* fills missing pages; NULL: zeros */
};

static int memfd_validate(const struct ufault_source *src, const struct ufault__log *log)
{
	int fl = src->memfd.fd >= 0 ? fcntl(src->memfd.fd, F_GETFL) : -1;
	struct ufault_source inner;
	struct statfs sfs;
	struct stat st;

	if (fl < 0 || fstat(src->memfd.fd, &st) || fstatfs(src->memfd.fd, &sfs)) {
		ufault__warn(log, "memfd source: fd %d is not open", src->memfd.fd);
		return -EINVAL;
	}
	if ((fl & O_ACCMODE) != O_RDWR) {
		ufault__warn(log,
			     "memfd source: fd %d is not open for reading and writing "
			     "(the page cache is filled through it)",
			     src->memfd.fd);
		return -EINVAL;
	}
	if (!S_ISREG(st.st_mode) || sfs.f_type != TMPFS_MAGIC) {
		ufault__warn(log,
			     "memfd source: fd %d is not a memfd or tmpfs file "
			     "(hugetlbfs is not supported)",
			     src->memfd.fd);
		return -EINVAL;
	}
	if (src->offset % ufault__sys_page()) {
		ufault__warn(log, "memfd source: offset %" PRIu64 " is not page aligned",
			     src->offset);
		return -EINVAL;
	}
	if (!src->memfd.from)
		return 0;
	if (ufault__source_check(src->memfd.from, log, &inner))
		return -EINVAL;
	if (inner.type == UFAULT_SOURCE_MEMFD) {
		ufault__warn(log, "memfd source: the inner source cannot be a memfd source");
		return -EINVAL;
	}
	return 0;
}

static int memfd_init(struct ufault_source *src, const struct ufault__log *log)
{
	struct ufault__source *self = ufault__source_of(src);
	struct memfd_cache *c;
	struct stat st;
	int ret;

	c = ufault__pages_map(ufault__sys_page());
	if (!c)
		return -ENOMEM;
	c->uffd = -1;
	c->alias = MAP_FAILED;
	if (fstat(src->memfd.fd, &st)) {
		ret = -errno;
		goto fail;
	}
	c->size = (uint64_t)st.st_size;
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	if (!c->size || c->size % ufault__sys_page()) {
		ufault__warn(log,
			     "memfd source: size %" PRIu64 " is not a non-zero multiple of the "
			     "page size (ftruncate it first)",
			     c->size);
		ret = -EINVAL;
		goto fail;
	}
	c->alias = mmap(NULL, c->size, PROT_READ, MAP_SHARED, src->memfd.fd, 0);
	if (c->alias == MAP_FAILED) {
		ret = -errno;
		ufault__warn(log, "memfd source: mapping the memfd: %s", ufault_strerror(ret));
		goto fail;
	}
	/* A child must not inherit a registered view of the shared cache. */
	madvise(c->alias, c->size, MADV_DONTFORK);
	c->uffd = ufault__uffd_open();
	if (c->uffd < 0) {
		ret = c->uffd;
		goto fail_log;
	}
	ret = ufault__uffd_api(c->uffd, 0, NULL);
	if (!ret)
		ret = ufault__uffd_register(c->uffd, (uint64_t)(uintptr_t)c->alias, c->size,
					    UFFDIO_REGISTER_MODE_MISSING, NULL);
	if (ret)
		goto fail_log;
	if (src->memfd.from) {
		ret =
		    ufault__source_create(self->slab, self->loops, src->memfd.from, log, &c->inner);
		if (ret)
			goto fail;
		/* Its own hook is not called: the memfd source's covers it. */
		src->memfd.from = &c->inner->user;
	}
	/* The caller's fd is not needed any more: the alias keeps the file. */
	src->memfd.fd = -1;
	self->priv = c;
	return 0;

fail_log:
	ufault__warn(log, "memfd source: userfaultfd for the page cache: %s", ufault_strerror(ret));
fail:
	if (c->uffd >= 0)
		close(c->uffd);
	if (c->alias != MAP_FAILED)
		munmap(c->alias, c->size);
	ufault__pages_unmap(c, ufault__sys_page());
	return ret;
}

static void memfd_fini(struct ufault_source *src)
{
	struct memfd_cache *c = ufault__source_of(src)->priv;

	if (c->inner)
		ufault__source_abandon(c->inner);
	close(c->uffd);
	munmap(c->alias, c->size);
	ufault__pages_unmap(c, ufault__sys_page());
}

/* Does the kernel have this memfd page (or, for a larger unit, all of it)? */
static bool unit_resident(const unsigned char *vec, uint64_t unit_pages)
{
	for (uint64_t i = 0; i < unit_pages; i++)
		if (!(vec[i] & 1))
			return false;
	return true;
}

static uint64_t memfd_cache_run(const struct ufault_source *src, uint64_t off, uint64_t len,
				uint64_t unit, bool *resident)
{
	const struct memfd_cache *c = ufault__source_of(src)->priv;
	uint64_t sys = ufault__sys_page(), upages = unit / sys, run = 0;
	unsigned char vec[256];

	*resident = false;
	if (off >= c->size || len > c->size - off)
		return len; /* past the memfd's end: the fill reports it */
	while (run < len) {
		uint64_t n = len - run, chunk = sizeof(vec) / upages * unit;

		if (n > chunk)
			n = chunk;
		if (mincore(c->alias + off + run, n, vec))
			return run ? run : unit; /* cannot tell: fill (COPY skips cached pages) */
		for (uint64_t u = 0; u < n; u += unit) {
			bool in = unit_resident(vec + u / sys, upages);

			if (!run && !u)
				*resident = in;
			else if (in != *resident)
				return run + u;
		}
		run += n;
	}
	return run;
}

static int memfd_cache_fill(const struct ufault_source *src, uint64_t off, const void *data,
			    uint64_t len)
{
	const struct memfd_cache *c = ufault__source_of(src)->priv;
	uint64_t dst = (uint64_t)(uintptr_t)c->alias + off, done = 0;
	int ret;

	if (off >= c->size || len > c->size - off)
		return -EFAULT; /* the region grew past the memfd */
	ret = data ? ufault__uffd_copy(c->uffd, dst, data, len, false, &done)
		   : ufault__uffd_zeropage(c->uffd, dst, len, false, &done);
	/* Pages another filler put there first are as good as ours. */
	if (ret && ret != -EEXIST)
		return ret;
	return done > INT_MAX ? INT_MAX : (int)done;
}

static struct ufault__source *memfd_cache_inner(const struct ufault_source *src)
{
	return ((const struct memfd_cache *)ufault__source_of(src)->priv)->inner;
}

/* One /proc/self/maps line: [start, end), flags, file offset, device, inode. */
struct maps_line {
	uint64_t start, end, off, ino;
	unsigned int major, minor;
	char perms[5];
};

static int memfd_check_mapping(const struct ufault_source *src, uint64_t start, uint64_t len,
			       const struct ufault__log *log)
{
	const struct memfd_cache *c = ufault__source_of(src)->priv;
	uint64_t at = start, end = start + len;
	struct maps_line m;
	char line[512];
	FILE *f;

	if (src->offset > c->size || len > c->size - src->offset) {
		ufault__warn(log,
			     "memfd source: [offset %" PRIu64 ", +%" PRIu64
			     ") is past the memfd's size %" PRIu64,
			     src->offset, len, c->size);
		return -EINVAL;
	}
	f = fopen("/proc/self/maps", "re");
	if (!f)
		return -errno;
	while (at < end && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %4s %" SCNx64 " %x:%x %" SCNu64, &m.start,
			   &m.end, m.perms, &m.off, &m.major, &m.minor, &m.ino) != 7)
			continue;
		if (m.end <= at || m.start > at)
			continue;
		if (m.ino != c->ino || makedev(m.major, m.minor) != c->dev || m.perms[3] != 'p' ||
		    m.off + (at - m.start) != src->offset + (at - start))
			break;
		at = m.end;
	}
	fclose(f);
	if (at < end) {
		ufault__warn(log,
			     "memfd source: [%#" PRIx64 ", +%" PRIu64 ") is not a MAP_PRIVATE "
			     "mapping of the memfd at offset %" PRIu64 " (at %#" PRIx64 ")",
			     start, len, src->offset, at);
		return -EINVAL;
	}
	return 0;
}

const struct ufault__source_ops ufault__source_memfd = {
    .name = "memfd",
    .validate = memfd_validate,
    .init = memfd_init,
    .fini = memfd_fini,
    .check_mapping = memfd_check_mapping,
    .cache_run = memfd_cache_run,
    .cache_fill = memfd_cache_fill,
    .cache_inner = memfd_cache_inner,
};
