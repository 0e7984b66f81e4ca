// SPDX-License-Identifier: MIT
/*
 * bench_util.c - what every benchmark program needs (bench_util.h).
 */
#include <errno.h>
#include <limits.h>
#include <fcntl.h> /* program_invocation_short_name (_GNU_SOURCE) */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "util.h" /* ufault__parse_size */

long page_size;

static void vwarnx(const char *fmt, va_list ap)
{
	fflush(stdout);
	fprintf(stderr, "%s: ", program_invocation_short_name);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
}

/* _exit, not exit: see bench_util.h. */
void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vwarnx(fmt, ap);
	va_end(ap);
	fflush(stderr);
	_exit(1);
}

void warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vwarnx(fmt, ap);
	va_end(ap);
}

void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n, sz);

	if (!p)
		die("out of memory (%zu x %zu bytes)", n, sz);
	return p;
}

void bad_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", program_invocation_short_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	usage(stderr);
	exit(2);
}

long parse_long(const char *s, const char *what, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		bad_usage("bad %s '%s' (want %ld..%ld)", what, s, min, max);
	return v;
}

size_t parse_size(const char *s, const char *what)
{
	uint64_t v;

	if (!ufault__parse_size(s, &v) || v == 0 || v > (1ull << 40))
		bad_usage("bad %s '%s'", what, s);
	if (v % (uint64_t)page_size)
		bad_usage("%s '%s' is not a multiple of the page size", what, s);
	return (size_t)v;
}

/* Split a comma list; call @fn on each item. */
int bench_lookup(const char *s, const char *const *names, int nr)
{
	for (int i = 0; i < nr; i++)
		if (!strcmp(s, names[i]))
			return i;
	return -1;
}

void parse_list(const char *arg, void (*fn)(const char *item))
{
	char *dup = strdup(arg), *save = NULL, *tok;

	if (!dup)
		die("out of memory");
	for (tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		fn(tok);
	free(dup);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* The median of @v[0..@n) (sorted in place); @n > 0. */
double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(v[0]), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double median_field(const void *base, size_t size, int n, size_t field)
{
	double *v = xcalloc((size_t)n, sizeof(*v)), m;

	for (int i = 0; i < n; i++)
		v[i] = *(const double *)((const char *)base + (size_t)i * size + field);
	m = median(v, n);
	free(v);
	return m;
}

uint64_t median_field_u64(const void *base, size_t size, int n, size_t field)
{
	double *v = xcalloc((size_t)n, sizeof(*v)), m;

	for (int i = 0; i < n; i++)
		v[i] = (double)*(const uint64_t *)((const char *)base + (size_t)i * size + field);
	m = median(v, n);
	free(v);
	return (uint64_t)m;
}

void fmt_count(char *buf, size_t n, double v)
{
	if (v >= 1e6)
		snprintf(buf, n, "%.2fM", v / 1e6);
	else if (v >= 1e4)
		snprintf(buf, n, "%.1fk", v / 1e3);
	else
		snprintf(buf, n, "%.0f", v);
}

#define DROP_CACHES_PATH "/proc/sys/vm/drop_caches"

const char *bench_drop_caches_probe(void)
{
	static char why[160];
	int fd = open(DROP_CACHES_PATH, O_WRONLY | O_CLOEXEC);

	if (fd >= 0) {
		close(fd);
		return NULL;
	}
	snprintf(why, sizeof(why), "cannot write %s (%s; needs root)", DROP_CACHES_PATH,
		 strerror(errno));
	return why;
}

void bench_drop_caches(void)
{
	int fd;

	sync();
	fd = open(DROP_CACHES_PATH, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "3\n", 2) != 2)
		die("write %s: %s", DROP_CACHES_PATH, strerror(errno));
	close(fd);
}

const char *bench_next_to_self(const char *rel, const char *fallback)
{
	static char path[PATH_MAX + 64];
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	if (n <= 0)
		return fallback;
	self[n] = 0;
	slash = strrchr(self, '/');
	if (slash)
		*slash = 0;
	snprintf(path, sizeof(path), "%s/%s", self, rel);
	return path;
}
