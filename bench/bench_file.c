// SPDX-License-Identifier: MIT
/*
 * bench_file.c - the file benchmarks' data files (bench_file.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_file.h"
#include "bench_util.h"

#define SAMPLES 64

void bench_pread_all(int fd, const char *path, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("read %s at %" PRIu64 ": %s", path, off + done,
			    n ? strerror(errno) : "unexpected end of file");
		done += (size_t)n;
	}
}

/* NULL if @path holds @fill's bytes (or @page_ok's), else why not. */
static const char *check(const char *path, uint64_t size, bench_fill_fn fill,
			 bench_page_ok_fn page_ok)
{
	uint64_t pages = size / (uint64_t)page_size;
	unsigned char *got = xcalloc(1, (size_t)page_size);
	unsigned char *want = xcalloc(1, (size_t)page_size);
	const char *why = NULL;
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 && errno == ENOENT) {
		why = "created (missing)";
		goto out;
	}
	if (fd < 0 || fstat(fd, &st))
		die("open %s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		die("%s is not a regular file", path);
	if ((uint64_t)st.st_size != size) {
		why = "rewritten (wrong size)";
		goto out;
	}
	for (int i = 0; i < SAMPLES && !why; i++) {
		uint64_t pg = i == 0 ? 0 : i == 1 ? pages - 1 : mix64((uint64_t)i) % pages;
		uint64_t off = pg * (uint64_t)page_size;

		bench_pread_all(fd, path, got, (size_t)page_size, off);
		if (page_ok) {
			if (!page_ok(got, off, (size_t)page_size))
				why = "rewritten (contents are not this version's)";
			continue;
		}
		fill(want, off, (size_t)page_size);
		if (memcmp(got, want, (size_t)page_size))
			why = "rewritten (contents are not this version's)";
	}
out:
	if (fd >= 0)
		close(fd);
	free(got);
	free(want);
	return why;
}

static void create(const char *path, uint64_t size, bench_fill_fn fill)
{
	const size_t buf_len = 4ul << 20;
	unsigned char *buf = xcalloc(1, buf_len);
	char *tmp;
	int fd;

	if (asprintf(&tmp, "%s.tmp", path) < 0)
		die("out of memory");
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		die("create %s: %s", tmp, strerror(errno));
	for (uint64_t off = 0; off < size;) {
		size_t len = size - off < buf_len ? (size_t)(size - off) : buf_len;

		fill(buf, off, len);
		for (size_t done = 0; done < len;) {
			ssize_t n = write(fd, buf + done, len - done);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				die("write %s at %" PRIu64 ": %s", tmp, off + done,
				    strerror(errno));
			done += (size_t)n;
		}
		off += len;
	}
	if (fsync(fd))
		die("fsync %s: %s", tmp, strerror(errno));
	if (close(fd))
		die("close %s: %s", tmp, strerror(errno));
	if (rename(tmp, path))
		die("rename %s to %s: %s", tmp, path, strerror(errno));
	free(tmp);
	free(buf);
}

const char *bench_data_file(const char *path, uint64_t size, bench_fill_fn fill,
			    bench_page_ok_fn page_ok, bool quiet)
{
	if (!check(path, size, fill, page_ok))
		return "reused";
	if (!quiet)
		printf("%s: writing %s (%" PRIu64 " MiB)...\n", program_invocation_short_name, path,
		       size >> 20);
	fflush(stdout);
	create(path, size, fill);
	if (check(path, size, fill, page_ok))
		die("%s does not read back as written", path);
	return "created";
}

uint32_t *bench_shuffle(uint64_t n, uint64_t seed)
{
	uint32_t *perm = xcalloc(n, sizeof(*perm));

	for (uint64_t i = 0; i < n; i++)
		perm[i] = (uint32_t)i;
	for (uint64_t i = n - 1; i > 0 && n; i--) {
		uint64_t j = mix64(seed++) % (i + 1);
		uint32_t t = perm[i];

		perm[i] = perm[j];
		perm[j] = t;
	}
	return perm;
}
