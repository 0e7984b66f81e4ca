/* SPDX-License-Identifier: MIT */
/*
 * bench_util.h - what every benchmark program needs: fatal errors and
 * warnings (prefixed with the program's name), the monotonic clock, and
 * command-line parsing (numbers, sizes with K/M/G suffixes that must be
 * multiples of the page, comma lists), and medians. The program provides
 * usage(FILE *) and sets page_size. bench_util.c has the bodies.
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

extern long page_size; /* set by the program before parsing sizes */

/* The program's own: its usage text (bad_usage prints it). */
void usage(FILE *f);

/*
 * Print and leave with status 1. _exit, not exit: other threads may be parked
 * in a page fault that nobody will resolve any more, and atexit handlers must
 * not wait for them.
 */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void *xcalloc(size_t n, size_t sz);
/* A usage error: the message, the usage text, exit status 2. */
void bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
long parse_long(const char *s, const char *what, long min, long max);
/* N[K|M|G][B|iB], a multiple of page_size. */
size_t parse_size(const char *s, const char *what);
/* Index of @s in @names[0..@nr), or -1 (an option's named choices). */
int bench_lookup(const char *s, const char *const *names, int nr);
/* Split a comma list; call @fn on each item. */
void parse_list(const char *arg, void (*fn)(const char *item));
/* The median of @v[0..@n) (sorted in place); @n > 0. */
double median(double *v, int n);
/* The median of the double (or uint64_t) at offset @field in each of the
 * @n structs of @size bytes at @base (the runs of one measurement). */
double median_field(const void *base, size_t size, int n, size_t field);
uint64_t median_field_u64(const void *base, size_t size, int n, size_t field);
/* Can this process drop the page cache? NULL if so, else why not. */
const char *bench_drop_caches_probe(void);
/* sync(2), then drop the page cache (cold measurements); dies on failure. */
void bench_drop_caches(void);
/* A count for a table cell: 1.23M, 45.6k, 789. */
void fmt_count(char *buf, size_t n, double v);
/* @rel (e.g. "../daemon/ufaultd") from this program's directory, in a
 * static buffer; @fallback where /proc/self/exe cannot be read. */
const char *bench_next_to_self(const char *rel, const char *fallback);

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif
