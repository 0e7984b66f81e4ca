// SPDX-License-Identifier: MIT
/*
 * cold_table.c - a database maps a cold table file into memory lazily: the
 * table's pages are read from disk (pread) only when a query touches them,
 * and evicted under memory pressure with ufault_madvise(MADV_DONTNEED): the
 * next touch reads them again. A read error poisons the page (the query
 * thread gets SIGBUS) instead of handing it zeros.
 *
 * usage: cold_table [FILE]   (without FILE, a 64 MiB table is made in /tmp)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ufault/ufault.h>

#define ROW 64 /* bytes per row; row i starts with its number */

static int fill_from_file(void *arg, uint64_t offset, void *buf, size_t len)
{
	int fd = *(int *)arg;
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(offset + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) { /* past the end of the file: zeros, like mmap(2) */
			memset((char *)buf + done, 0, len - done);
			break;
		}
		done += (size_t)n;
	}
	return 0;
}

static int make_table(const char *path, size_t rows)
{
	char row[ROW];
	FILE *f = fopen(path, "w");

	if (!f)
		return -1;
	for (size_t i = 0; i < rows; i++) {
		memset(row, 0, sizeof(row));
		snprintf(row, sizeof(row), "%zu", i);
		fwrite(row, sizeof(row), 1, f);
	}
	return fclose(f);
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "/tmp/ufault_cold_table.dat";
	struct ufault_stats st = {.size = sizeof(st)};
	struct ufault_source src;
	size_t rows = 1u << 20, len;
	struct ufault_ctx *ctx;
	struct stat sb;
	char *table;
	int fd, ret;

	if (argc < 2 && make_table(path, rows)) {
		perror(path);
		return 1;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb)) {
		perror(path);
		return 1;
	}
	len = ((size_t)sb.st_size + 4095) & ~(size_t)4095;
	rows = (size_t)sb.st_size / ROW;
	ufault_source_init(&src, UFAULT_SOURCE_CALLBACK);
	src.callback.fill = fill_from_file;
	src.callback.arg = &fd;

	ret = ufault_ctx_create(&ctx, NULL);
	if (ret) {
		fprintf(stderr, "ufault_ctx_create: %s\n", ufault_strerror(ret));
		return 1;
	}
	table = ufault_mmap(ctx, NULL, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, &src, 0);
	if (table == MAP_FAILED) {
		fprintf(stderr, "ufault_mmap: %s\n", strerror(errno));
		return 1;
	}

	/* A query touching 1000 random rows: only their pages are read. */
	srand(1);
	for (int q = 0; q < 1000; q++) {
		size_t i = (size_t)rand() % rows;

		if ((size_t)strtoull(table + i * ROW, NULL, 10) != i) {
			fprintf(stderr, "row %zu: wrong contents\n", i);
			return 1;
		}
	}
	ufault_stats(ctx, &st);
	printf("1000 random rows of %zu: %llu pages read from disk (of %zu), fill p50 %.1f us\n",
	       rows, (unsigned long long)st.pages_installed, len / 4096,
	       st.latency_p50_ns / 1000.0);

	/* Memory pressure: evict the whole table; touching it reads again. */
	if (ufault_madvise(ctx, table, len, MADV_DONTNEED)) {
		perror("ufault_madvise");
		return 1;
	}
	if ((size_t)strtoull(table + 12345 * ROW, NULL, 10) != 12345) {
		fprintf(stderr, "row 12345 after eviction: wrong contents\n");
		return 1;
	}
	ufault_stats(ctx, &st);
	printf("after eviction and one more row: %llu pages read in all, %llu source errors\n",
	       (unsigned long long)st.pages_installed, (unsigned long long)st.source_errors);

	ufault_munmap(ctx, table, len);
	ufault_ctx_destroy(ctx);
	close(fd);
	if (argc < 2)
		unlink(path);
	return 0;
}
