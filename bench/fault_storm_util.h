/* SPDX-License-Identifier: MIT */
/*
 * fault_storm_util.h - small helpers for bench/fault_storm.c: fatal errors,
 * clocks, sleeping, barriers, and the "slow" page source shared by the ufault
 * callback and the minimal handler so both do exactly the same work.
 */
#ifndef FAULT_STORM_UTIL_H
#define FAULT_STORM_UTIL_H

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/*
 * Print and leave with status 1. _exit, not exit: other threads may be parked
 * in a page fault that nobody will resolve any more, and atexit handlers must
 * not wait for them.
 */
static void vwarnx(const char *fmt, va_list ap)
{
	fflush(stdout);
	fprintf(stderr, "fault_storm: ");
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

/* Sleep without burning CPU (the timer slack is set to 1 ns in main). */
static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull),
			      .tv_nsec = (long)(ns % 1000000000ull)};
	int err;

	while ((err = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts)) == EINTR)
		;
	if (err)
		die("clock_nanosleep: %s", strerror(err));
}

static void barrier_init(pthread_barrier_t *b, unsigned int n)
{
	int err = pthread_barrier_init(b, NULL, n);

	if (err)
		die("pthread_barrier_init: %s", strerror(err));
}

static void barrier_wait(pthread_barrier_t *b)
{
	int err = pthread_barrier_wait(b);

	if (err && err != PTHREAD_BARRIER_SERIAL_THREAD)
		die("pthread_barrier_wait: %s", strerror(err));
}

/* THP "always" would give native runs 2 MiB pages; baselines opt out then. */
static bool thp_always;

static bool thp_is_always(void)
{
	char buf[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");

	if (!f)
		return false;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	return strstr(buf, "[always]") != NULL;
}

/* The slow source: wait the latency, asleep, then write a pattern. */
struct slow_src {
	unsigned int latency_us;
};

static void fill_pattern(void *buf, uint64_t offset, size_t len)
{
	uint64_t *w = buf;
	size_t i;

	for (i = 0; i < len / sizeof(*w); i++)
		w[i] = offset + i * sizeof(*w);
}

static int slow_fill(void *arg, uint64_t offset, void *buf, size_t len)
{
	const struct slow_src *s = arg;

	if (s->latency_us)
		sleep_ns((uint64_t)s->latency_us * 1000u);
	fill_pattern(buf, offset, len);
	return 0;
}

#endif /* FAULT_STORM_UTIL_H */
