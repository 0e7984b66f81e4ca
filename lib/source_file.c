// SPDX-License-Identifier: MIT
/*
 * source_file.c - a file read through the faulting worker's io_uring: one
 * IORING_OP_READ per fill, many in flight, completed by the worker when the
 * CQE arrives (fault.c: short reads past EOF become zeros). The source
 * object holds its own duplicate of the caller's fd, or with
 * UFAULT_FILE_DIRECT a private O_DIRECT reopen (read-write if the caller's
 * fd is). Write-back regions write their written pages straight from the
 * mapping: a flush's runs through io_uring, all in flight at once, an
 * evicted page with pwrite(2); fdatasync(2) on flush.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "source.h"
#include "util.h"

static int file_validate(const struct ufault_source *src, const struct ufault__log *log)
{
	int fl = src->file.fd >= 0 ? fcntl(src->file.fd, F_GETFL) : -1;
	struct stat st;

	if (fl < 0 || fstat(src->file.fd, &st)) {
		ufault__warn(log, "file source: fd %d is not open", src->file.fd);
		return -EINVAL;
	}
	if ((fl & O_ACCMODE) == O_WRONLY) {
		ufault__warn(log, "file source: fd %d is not open for reading", src->file.fd);
		return -EINVAL;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		ufault__warn(log, "file source: fd %d is not a regular file or block device",
			     src->file.fd);
		return -EINVAL;
	}
	if (src->file.flags & ~UFAULT_FILE_DIRECT) {
		ufault__warn(log, "file source: unknown flags %#x",
			     src->file.flags & ~UFAULT_FILE_DIRECT);
		return -EINVAL;
	}
	if ((src->file.flags & UFAULT_FILE_DIRECT) && src->offset % ufault__sys_page()) {
		ufault__warn(log, "file source: O_DIRECT needs an offset aligned to %llu",
			     (unsigned long long)ufault__sys_page());
		return -EINVAL;
	}
	return 0;
}

static int file_init(struct ufault_source *src, const struct ufault__log *log)
{
	char path[64];
	int fd;

	if (src->file.flags & UFAULT_FILE_DIRECT) {
		/* F_SETFL on a dup would change the caller's file too. */
		snprintf(path, sizeof(path), "/proc/self/fd/%d", src->file.fd);
		fd = open(path, ((fcntl(src->file.fd, F_GETFL) & O_ACCMODE) == O_RDWR ? O_RDWR
										      : O_RDONLY) |
				    O_DIRECT | O_CLOEXEC);
	} else {
		fd = fcntl(src->file.fd, F_DUPFD_CLOEXEC, 0);
	}
	if (fd < 0) {
		fd = -errno;
		ufault__warn(log, "file source: %s fd %d: %s",
			     (src->file.flags & UFAULT_FILE_DIRECT) ? "reopening (O_DIRECT)"
								    : "duplicating",
			     src->file.fd, ufault_strerror(fd));
		return fd;
	}
	src->file.fd = fd;
	return 0;
}

static void file_fini(struct ufault_source *src)
{
	close(src->file.fd);
}

static int file_start(const struct ufault_source *src, uint64_t off, size_t len, void *buf,
		      struct ufault_completion *c, struct io_uring *ring)
{
	struct io_uring_sqe *sqe;

	if (!ring)
		return -EOPNOTSUPP; /* this worker has no io_uring */
	sqe = io_uring_get_sqe(ring);
	if (!sqe) {
		/* The ring has an entry per request: only unsubmitted ones. */
		io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
		if (!sqe)
			return -EAGAIN;
	}
	io_uring_prep_read(sqe, src->file.fd, buf, (unsigned int)len, off);
	io_uring_sqe_set_data(sqe, c);
	return 0;
}

static int file_can_write(const struct ufault_source *src, bool made, const struct ufault__log *log)
{
	(void)made;
	if ((fcntl(src->file.fd, F_GETFL) & O_ACCMODE) != O_RDWR) {
		ufault__warn(log, "write-back region: the file source's fd is not open read-write");
		return -EINVAL;
	}
	return 0;
}

/*
 * @buf is the region's memory, which the program may be writing meanwhile:
 * by design (the page is protected again before, so such a write leaves it
 * written for the next flush).
 */
static int file_write(const struct ufault_source *src, uint64_t off, const void *buf, size_t len)
{
	long n = ufault__pio(src->file.fd, (void *)buf, len, off, true);

	return n < 0 ? (int)n : (size_t)n < len ? -EIO : 0;
}

/*
 * A flush's runs, all in flight at once on a ring of the flushing thread's
 * (IORING_OP_WRITE; the kernel reads the region's memory, as pwrite(2)
 * would). Short writes finish with pwrite; no ring here (io_uring
 * disabled, out of memory): pwrite for all.
 */
static void file_write_batch(const struct ufault_source *src, struct ufault__wb_io *io,
			     unsigned int n)
{
	struct io_uring ring;
	struct io_uring_cqe *cqe;
	unsigned int i, queued = 0;

	if (io_uring_queue_init(n, &ring, 0)) {
		for (i = 0; i < n; i++)
			io[i].result = file_write(src, io[i].off, io[i].buf, io[i].len);
		return;
	}
	for (i = 0; i < n; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

		if (!sqe) { /* cannot happen with n entries: write it here */
			io[i].result = file_write(src, io[i].off, io[i].buf, io[i].len);
			continue;
		}
		io_uring_prep_write(sqe, src->file.fd, io[i].buf, (unsigned int)io[i].len,
				    io[i].off);
		io_uring_sqe_set_data64(sqe, i);
		queued++;
	}
	io_uring_submit(&ring);
	while (queued && !io_uring_wait_cqe(&ring, &cqe)) {
		struct ufault__wb_io *w = &io[io_uring_cqe_get_data64(cqe)];
		int res = cqe->res;

		io_uring_cqe_seen(&ring, cqe);
		queued--;
		if (res < 0)
			w->result = res;
		else if ((size_t)res < w->len)
			w->result = file_write(src, w->off + (uint64_t)res,
					       (const char *)w->buf + res, w->len - (size_t)res);
		else
			w->result = 0;
	}
	io_uring_queue_exit(&ring);
}

static int file_read(const struct ufault_source *src, uint64_t off, void *buf, size_t len)
{
	long n = ufault__pio(src->file.fd, buf, len, off, false);

	if (n < 0)
		return (int)n;
	/* Past the end reads as zeros, as a fill does. */
	memset((char *)buf + n, 0, len - (size_t)n);
	return 0;
}

static int file_sync(const struct ufault_source *src)
{
	return fdatasync(src->file.fd) ? -errno : 0;
}

const struct ufault__source_ops ufault__source_file = {
    .name = "file",
    .validate = file_validate,
    .init = file_init,
    .fini = file_fini,
    .start = file_start,
    .can_write = file_can_write,
    .write = file_write,
    .write_batch = file_write_batch,
    .sync = file_sync,
    .read = file_read,
};
