/* SPDX-License-Identifier: MIT */
/*
 * fault_storm_util.h - small helpers for bench/fault_storm.c: fatal errors,
 * clocks, sleeping, barriers, and the "slow" page source shared by the ufault
 * callback and the minimal handler so both do exactly the same work.
 */
#ifndef FAULT_STORM_UTIL_H
#define FAULT_STORM_UTIL_H

#include "bench_util.h" /* die, warnx, xcalloc, now_ns */

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

/*
 * The asynchronous slow source: its fill only queues the page on a delay
 * line; one completer thread fills and completes each page once its
 * latency has passed, all due pages per wake-up (as an I/O completion path
 * would). Many fills are in flight at once; none holds a worker.
 */
struct dl_item {
	uint64_t due_ns;
	struct ufault_completion *c;
	void *buf;
	uint64_t offset;
	size_t len;
};

#define DL_CAP 65536u

struct delay_line {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC */
	struct dl_item ring[DL_CAP];
	unsigned int head, tail; /* tail - head items queued */
	unsigned int latency_us;
	bool stop;
	pthread_t thread;
};

static uint64_t dl_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *dl_main(void *arg)
{
	struct delay_line *dl = arg;
	struct dl_item due[256];

	pthread_mutex_lock(&dl->lock);
	for (;;) {
		unsigned int n = 0;
		uint64_t now = dl_now_ns();

		while (dl->head != dl->tail && n < 256 && dl->ring[dl->head % DL_CAP].due_ns <= now)
			due[n++] = dl->ring[dl->head++ % DL_CAP];
		if (n) {
			pthread_mutex_unlock(&dl->lock);
			for (unsigned int i = 0; i < n; i++) {
				fill_pattern(due[i].buf, due[i].offset, due[i].len);
				ufault_complete(due[i].c, 0);
			}
			pthread_mutex_lock(&dl->lock);
			continue;
		}
		if (dl->stop)
			break;
		if (dl->head == dl->tail) {
			pthread_cond_wait(&dl->cond, &dl->lock);
		} else {
			uint64_t t = dl->ring[dl->head % DL_CAP].due_ns;
			struct timespec ts = {.tv_sec = (time_t)(t / 1000000000u),
					      .tv_nsec = (long)(t % 1000000000u)};

			pthread_cond_timedwait(&dl->cond, &dl->lock, &ts);
		}
	}
	pthread_mutex_unlock(&dl->lock);
	return NULL;
}

static int async_fill(void *arg, uint64_t offset, void *buf, size_t len,
		      struct ufault_completion *c)
{
	struct delay_line *dl = arg;
	bool was_empty;

	pthread_mutex_lock(&dl->lock);
	if (dl->tail - dl->head == DL_CAP) {
		pthread_mutex_unlock(&dl->lock);
		return -EAGAIN; /* cannot happen below DL_CAP fills in flight */
	}
	was_empty = dl->head == dl->tail;
	dl->ring[dl->tail++ % DL_CAP] = (struct dl_item){
	    .due_ns = dl_now_ns() + (uint64_t)dl->latency_us * 1000u,
	    .c = c,
	    .buf = buf,
	    .offset = offset,
	    .len = len,
	};
	if (was_empty)
		pthread_cond_signal(&dl->cond);
	pthread_mutex_unlock(&dl->lock);
	return 0;
}

static struct delay_line *dl_start(unsigned int latency_us)
{
	struct delay_line *dl = calloc(1, sizeof(*dl));
	pthread_condattr_t attr;

	if (!dl)
		return NULL;
	dl->latency_us = latency_us;
	pthread_mutex_init(&dl->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&dl->cond, &attr);
	pthread_condattr_destroy(&attr);
	if (pthread_create(&dl->thread, NULL, dl_main, dl)) {
		free(dl);
		return NULL;
	}
	return dl;
}

/* After the context is destroyed (no fill can be queued any more). */
static void dl_stop(struct delay_line *dl)
{
	pthread_mutex_lock(&dl->lock);
	dl->stop = true;
	pthread_cond_signal(&dl->cond);
	pthread_mutex_unlock(&dl->lock);
	pthread_join(dl->thread, NULL);
	pthread_cond_destroy(&dl->cond);
	pthread_mutex_destroy(&dl->lock);
	free(dl);
}

#endif /* FAULT_STORM_UTIL_H */
