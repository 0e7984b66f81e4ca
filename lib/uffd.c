// SPDX-License-Identifier: MIT
/*
 * uffd.c - the kernel interface. Everything that talks ioctl to a
 * userfaultfd lives here, including the judgement of benign races
 * (ufault__uffd_classify), so no other file interprets a raw errno from the
 * kernel. Touches no library state besides the cached probe result.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "uffd.h"
#include "util.h"

static int uffd_ioctl(int fd, unsigned long req, void *arg)
{
	int ret;

	do {
		ret = ioctl(fd, req, arg);
	} while (ret < 0 && errno == EINTR);
	return ret < 0 ? -errno : 0;
}

/*
 * A uffd that also takes the faults the kernel takes on the program's
 * behalf (read(2) into a page never touched, a futex word there, ...):
 * userfaultfd(2) where the caller may (privileged, or
 * vm.unprivileged_userfaultfd = 1), else /dev/userfaultfd where it can
 * open it. Only where neither works, one limited to user-mode faults
 * (UFFD_USER_MODE_ONLY, what an unprivileged process gets by default): a
 * system call that reads or writes a page never touched then fails with
 * EFAULT instead of waiting for the page.
 */
int ufault__uffd_open(void)
{
	int flags = O_CLOEXEC | O_NONBLOCK;
	int fd, dev, err;

	fd = (int)syscall(SYS_userfaultfd, flags);
	if (fd >= 0)
		return fd;
	err = errno;
	if (err != EPERM && err != ENOSYS)
		return -err;
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
		close(dev);
		if (fd >= 0)
			return fd;
	}
	if (err == ENOSYS)
		return -ENOSYS;
	fd = (int)syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY);
	return fd >= 0 ? fd : -EPERM;
}

static int api_call(int fd, uint64_t features, struct ufault__uffd_caps *got)
{
	struct uffdio_api api = {.api = UFFD_API, .features = features};
	int ret = uffd_ioctl(fd, UFFDIO_API, &api);

	if (ret == 0 && got) {
		got->features = api.features;
		got->ioctls = api.ioctls;
	}
	return ret;
}

/*
 * The kernel rejects UFFDIO_API with EINVAL when asked for a feature it does
 * not know, and an fd accepts the handshake only once. So the probe spends a
 * throwaway fd asking for nothing; the kernel then reports everything it
 * supports in api.features.
 */
static struct ufault__uffd_caps probed;
static bool probe_done;
static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;

/* Only a success is cached: a passing failure (out of fds) is retried. */
int ufault__uffd_probe(struct ufault__uffd_caps *out)
{
	int ret = 0, fd;

	pthread_mutex_lock(&probe_lock);
	if (!probe_done) {
		fd = ufault__uffd_open();
		ret = fd < 0 ? fd : api_call(fd, 0, &probed);
		if (fd >= 0)
			close(fd);
		probe_done = !ret;
	}
	if (!ret)
		*out = probed;
	pthread_mutex_unlock(&probe_lock);
	return ret;
}

int ufault__uffd_api(int fd, uint64_t want, struct ufault__uffd_caps *got)
{
	struct ufault__uffd_caps have;
	int ret = ufault__uffd_probe(&have);

	if (ret)
		return ret;
	ret = api_call(fd, want & have.features, got);
	/* The kernel answers with everything it supports; what this fd has
	 * is what was asked for and supported. */
	if (!ret && got)
		got->features = want & have.features;
	return ret;
}

int ufault__uffd_register(int fd, uint64_t start, uint64_t len, uint64_t mode, uint64_t *ioctls)
{
	struct uffdio_register reg = {.range = {.start = start, .len = len}, .mode = mode};
	int ret = uffd_ioctl(fd, UFFDIO_REGISTER, &reg);

	if (ret == 0 && ioctls)
		*ioctls = reg.ioctls;
	return ret;
}

int ufault__uffd_unregister(int fd, uint64_t start, uint64_t len)
{
	struct uffdio_range range = {.start = start, .len = len};

	return uffd_ioctl(fd, UFFDIO_UNREGISTER, &range);
}

/*
 * The fill ioctls share one shape: a range, a mode and a progress field the
 * kernel sets to bytes done or -errno. Continue after partial progress (the
 * kernel stops at e.g. a pending signal); stop on a real error.
 */
static int fill_loop(int fd, unsigned long req, uint64_t dst, const void *src, uint64_t len,
		     uint64_t mode, uint64_t *done_out)
{
	uint64_t pos = 0, done = 0;
	bool eexist = false;
	int ret = 0;

	while (pos < len) {
		int64_t progress;

		switch (req) {
		case UFFDIO_COPY: {
			struct uffdio_copy a = {.dst = dst + pos,
						.src = (uint64_t)(uintptr_t)src + pos,
						.len = len - pos,
						.mode = mode};
			ret = uffd_ioctl(fd, req, &a);
			progress = a.copy;
			break;
		}
		case UFFDIO_ZEROPAGE: {
			struct uffdio_zeropage a = {.range = {dst + pos, len - pos}, .mode = mode};
			ret = uffd_ioctl(fd, req, &a);
			progress = a.zeropage;
			break;
		}
		case UFFDIO_CONTINUE: {
			struct uffdio_continue a = {.range = {dst + pos, len - pos}, .mode = mode};
			ret = uffd_ioctl(fd, req, &a);
			progress = a.mapped;
			break;
		}
		default: { /* UFFDIO_POISON */
			struct uffdio_poison a = {.range = {dst + pos, len - pos}, .mode = mode};
			ret = uffd_ioctl(fd, req, &a);
			progress = a.updated;
			break;
		}
		}
		if (progress > 0) {
			pos += (uint64_t)progress;
			done += (uint64_t)progress;
		}
		if (ret == 0)
			break;
		/* Partial progress then EAGAIN: the rest is retried right away;
		 * with no progress the caller must defer instead of spinning. */
		if (ret == -EAGAIN && progress > 0)
			continue;
		/* One page of a multi-page range already there (someone else
		 * resolved it): skip it, fill the rest, report EEXIST at the end. */
		if (ret == -EEXIST && pos + ufault__sys_page() < len) {
			pos += ufault__sys_page();
			eexist = true;
			continue;
		}
		break;
	}
	if (done_out)
		*done_out = done;
	if (ret == 0 && eexist)
		ret = -EEXIST;
	return ret;
}

int ufault__uffd_copy(int fd, uint64_t dst, const void *src, uint64_t len, bool wake,
		      uint64_t *done)
{
	return fill_loop(fd, UFFDIO_COPY, dst, src, len, wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE,
			 done);
}

int ufault__uffd_copy_wp(int fd, uint64_t dst, const void *src, uint64_t len, bool wake,
			 uint64_t *done)
{
	return fill_loop(fd, UFFDIO_COPY, dst, src, len,
			 UFFDIO_COPY_MODE_WP | (wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE), done);
}

int ufault__uffd_zeropage(int fd, uint64_t dst, uint64_t len, bool wake, uint64_t *done)
{
	return fill_loop(fd, UFFDIO_ZEROPAGE, dst, NULL, len,
			 wake ? 0 : UFFDIO_ZEROPAGE_MODE_DONTWAKE, done);
}

int ufault__uffd_poison(int fd, uint64_t dst, uint64_t len, bool wake, uint64_t *done)
{
	return fill_loop(fd, UFFDIO_POISON, dst, NULL, len, wake ? 0 : UFFDIO_POISON_MODE_DONTWAKE,
			 done);
}

int ufault__uffd_continue(int fd, uint64_t dst, uint64_t len, bool wake, uint64_t *done)
{
	return fill_loop(fd, UFFDIO_CONTINUE, dst, NULL, len,
			 wake ? 0 : UFFDIO_CONTINUE_MODE_DONTWAKE, done);
}

int ufault__uffd_move(int fd, uint64_t dst, uint64_t src, uint64_t len, bool wake)
{
	struct uffdio_move m = {
	    .dst = dst, .src = src, .len = len, .mode = wake ? 0 : UFFDIO_MOVE_MODE_DONTWAKE};
	int ret = uffd_ioctl(fd, UFFDIO_MOVE, &m);

	/* What moved is in m.move, whatever the error: the kernel may move
	 * the page and then fail a retry on the (now filled) destination. */
	if (ret && m.move == (int64_t)len)
		ret = 0;
	return ret;
}

int ufault__uffd_writeprotect(int fd, uint64_t start, uint64_t len, bool protect, bool wake)
{
	struct uffdio_writeprotect wp = {
	    .range = {.start = start, .len = len},
	    .mode = (protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0) |
		    (wake ? 0 : UFFDIO_WRITEPROTECT_MODE_DONTWAKE),
	};

	/* EAGAIN: events pending (mmap_changing); nothing was changed. */
	return uffd_ioctl(fd, UFFDIO_WRITEPROTECT, &wp);
}

int ufault__pagemap_scan(int pagemap_fd, uint64_t start, uint64_t end, uint64_t flags,
			 uint64_t category_mask, uint64_t inverted, uint64_t anyof_mask,
			 struct page_region *vec, size_t n, uint64_t *walk_end)
{
	struct pm_scan_arg a = {
	    .size = sizeof(a),
	    .flags = flags,
	    .start = start,
	    .end = end,
	    .vec = (uint64_t)(uintptr_t)vec,
	    .vec_len = n,
	    .category_inverted = inverted,
	    .category_mask = category_mask | inverted,
	    .category_anyof_mask = anyof_mask,
	    .return_mask = category_mask,
	};
	long ret = ioctl(pagemap_fd, PAGEMAP_SCAN, &a);

	if (ret < 0)
		return -errno;
	*walk_end = a.walk_end;
	return (int)ret;
}

int ufault__uffd_wake(int fd, uint64_t start, uint64_t len)
{
	struct uffdio_range range = {.start = start, .len = len};

	return uffd_ioctl(fd, UFFDIO_WAKE, &range);
}

enum ufault__uffd_verdict ufault__uffd_classify(int err)
{
	switch (err < 0 ? -err : err) {
	case 0:
		return UFAULT__UFFD_OK;
	case EEXIST:
		return UFAULT__UFFD_RESOLVED;
	case EAGAIN:
		return UFAULT__UFFD_LATER;
	case ENOENT:
		return UFAULT__UFFD_NOVMA;
	case ESRCH:
		return UFAULT__UFFD_GONE;
	default:
		return UFAULT__UFFD_FATAL;
	}
}
