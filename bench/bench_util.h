/* SPDX-License-Identifier: MIT */
/*
 * bench_util.h - what every benchmark program needs: fatal errors and
 * warnings (prefixed with BENCH_NAME, which the program defines before it
 * includes this), the monotonic clock, and command-line parsing (numbers,
 * sizes with K/M/G suffixes that must be multiples of the page, comma
 * lists), and medians. The program provides usage(FILE *) and sets
 * page_size.
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#ifndef BENCH_NAME
#error "define BENCH_NAME before including bench_util.h"
#endif

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long page_size;
static void usage(FILE *f);

/*
 * Print and leave with status 1. _exit, not exit: other threads may be parked
 * in a page fault that nobody will resolve any more, and atexit handlers must
 * not wait for them.
 */
static void vwarnx(const char *fmt, va_list ap)
{
	fflush(stdout);
	fprintf(stderr, BENCH_NAME ": ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vwarnx(fmt, ap);
	va_end(ap);
	fflush(stderr);
	_exit(1);
}

static void warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vwarnx(fmt, ap);
	va_end(ap);
}

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n, sz);

	if (!p)
		die("out of memory (%zu x %zu bytes)", n, sz);
	return p;
}

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void bad_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, BENCH_NAME ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	usage(stderr);
	exit(2);
}

static long parse_long(const char *s, const char *what, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		bad_usage("bad %s '%s' (want %ld..%ld)", what, s, min, max);
	return v;
}

static size_t parse_size(const char *s, const char *what)
{
	char *end;
	unsigned long long v;
	int shift = 0;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || s[0] == '-')
		bad_usage("bad %s '%s'", what, s);
	switch (*end) {
	case 'k':
	case 'K':
		shift = 10;
		end++;
		break;
	case 'm':
	case 'M':
		shift = 20;
		end++;
		break;
	case 'g':
	case 'G':
		shift = 30;
		end++;
		break;
	default:
		break;
	}
	if (*end == 'i' && end[1] == 'B')
		end += 2;
	else if (*end == 'B')
		end++;
	if (*end || v == 0 || v > (1ull << 40) >> shift)
		bad_usage("bad %s '%s'", what, s);
	v <<= shift;
	if (v % (unsigned long long)page_size)
		bad_usage("%s '%s' is not a multiple of the page size", what, s);
	return (size_t)v;
}

/* Split a comma list; call @fn on each item. */
static void parse_list(const char *arg, void (*fn)(const char *item))
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
static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(v[0]), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#endif
