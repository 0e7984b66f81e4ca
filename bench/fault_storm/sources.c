// SPDX-License-Identifier: MIT
/*
 * sources.c - the slow sources fault_storm measures with, shared by the
 * ufault backends and the minimal handler so both do exactly the same work:
 * a synchronous fill that sleeps its latency, and an asynchronous fill
 * queued on a delay line whose thread completes each page once its latency
 * has passed (as an I/O completion path would; many in flight, none holding
 * a worker). The latency of each fill is drawn from a distribution: fixed,
 * exponential, or bimodal (remote storage: most reads fast, a few slow).
 * Also the small helpers every file uses: sleeping, barriers, THP.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fault_storm.h"

const char *const dist_names[LD_NR] = {"fixed", "exp", "bimodal"};

void sleep_ns(uint64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull),
			      .tv_nsec = (long)(ns % 1000000000ull)};
	int err;

	while ((err = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts)) == EINTR)
		;
	if (err)
		die("clock_nanosleep: %s", strerror(err));
}

void barrier_init(pthread_barrier_t *b, unsigned int n)
{
	int err = pthread_barrier_init(b, NULL, n);

	if (err)
		die("pthread_barrier_init: %s", strerror(err));
}

void barrier_wait(pthread_barrier_t *b)
{
	int err = pthread_barrier_wait(b);

	if (err && err != PTHREAD_BARRIER_SERIAL_THREAD)
		die("pthread_barrier_wait: %s", strerror(err));
}

bool thp_always;

bool thp_is_always(void)
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

/* A per-thread xorshift64*: fills are drawn from any worker thread. */
static double uniform01(void)
{
	static __thread uint64_t x;

	if (!x)
		x = now_ns() ^ ((uint64_t)(uintptr_t)&x << 17) ^ 0x9e3779b97f4a7c15ull;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	return (double)((x * 0x2545f4914f6cdd1dull) >> 11) / (double)(1ull << 53);
}

uint64_t latency_draw_ns(const struct latency *l)
{
	switch (l->dist) {
	case LD_EXP:
		/* Inverse transform; 1 - u is in (0, 1]. */
		return (uint64_t)(-log(1.0 - uniform01()) * (double)l->us * 1000.0);
	case LD_BIMODAL:
		return (uint64_t)(uniform01() * 1000.0 < (double)l->slow_permille ? l->slow_us
										  : l->fast_us) *
		       1000u;
	case LD_FIXED:
	case LD_NR:
		break;
	}
	return (uint64_t)l->us * 1000u;
}

void latency_describe(const struct latency *l, char *buf, size_t n)
{
	if (l->dist == LD_BIMODAL)
		snprintf(buf, n, "bimodal %.1f%% %u us / %.1f%% %u us",
			 (1000 - l->slow_permille) / 10.0, l->fast_us, l->slow_permille / 10.0,
			 l->slow_us);
	else if (l->dist == LD_EXP)
		snprintf(buf, n, "exp mean %u us", l->us);
	else
		snprintf(buf, n, "%u us", l->us);
}

void fill_pattern(void *buf, uint64_t offset, size_t len)
{
	uint64_t *w = buf;
	size_t i;

	for (i = 0; i < len / sizeof(*w); i++)
		w[i] = offset + i * sizeof(*w);
}

int slow_fill(void *arg, uint64_t offset, void *buf, size_t len)
{
	const struct latency *l = arg;
	uint64_t ns = latency_draw_ns(l);

	if (ns)
		sleep_ns(ns);
	fill_pattern(buf, offset, len);
	return 0;
}

/* The delay line: a binary min-heap on the due time (latencies differ, so
 * the order of completion is not the order of arrival). */
struct dl_item {
	uint64_t due_ns;
	struct ufault_completion *c;
	void *buf;
	uint64_t offset;
	size_t len;
};

#define DL_CAP 65536u
#define DL_BATCH 256u

struct delay_line {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC */
	struct dl_item heap[DL_CAP];
	unsigned int n;
	struct latency lat;
	bool stop;
	pthread_t thread;
};

static void heap_push(struct delay_line *dl, struct dl_item it)
{
	unsigned int i = dl->n++;

	while (i && dl->heap[(i - 1) / 2].due_ns > it.due_ns) {
		dl->heap[i] = dl->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	dl->heap[i] = it;
}

static struct dl_item heap_pop(struct delay_line *dl)
{
	struct dl_item top = dl->heap[0], last = dl->heap[--dl->n];
	unsigned int i = 0;

	for (;;) {
		unsigned int c = 2 * i + 1;

		if (c >= dl->n)
			break;
		if (c + 1 < dl->n && dl->heap[c + 1].due_ns < dl->heap[c].due_ns)
			c++;
		if (dl->heap[c].due_ns >= last.due_ns)
			break;
		dl->heap[i] = dl->heap[c];
		i = c;
	}
	if (dl->n)
		dl->heap[i] = last;
	return top;
}

static void *dl_main(void *arg)
{
	struct delay_line *dl = arg;
	struct dl_item due[DL_BATCH];

	pthread_mutex_lock(&dl->lock);
	for (;;) {
		unsigned int n = 0;
		uint64_t now = now_ns();

		while (dl->n && n < DL_BATCH && dl->heap[0].due_ns <= now)
			due[n++] = heap_pop(dl);
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
		if (!dl->n) {
			pthread_cond_wait(&dl->cond, &dl->lock);
		} else {
			uint64_t t = dl->heap[0].due_ns;
			struct timespec ts = {.tv_sec = (time_t)(t / 1000000000u),
					      .tv_nsec = (long)(t % 1000000000u)};

			pthread_cond_timedwait(&dl->cond, &dl->lock, &ts);
		}
	}
	pthread_mutex_unlock(&dl->lock);
	return NULL;
}

int async_fill(void *arg, uint64_t offset, void *buf, size_t len, struct ufault_completion *c)
{
	struct delay_line *dl = arg;
	uint64_t due = now_ns() + latency_draw_ns(&dl->lat);
	bool earliest;

	pthread_mutex_lock(&dl->lock);
	if (dl->n == DL_CAP) {
		pthread_mutex_unlock(&dl->lock);
		return -EAGAIN; /* cannot happen below DL_CAP fills in flight */
	}
	earliest = !dl->n || due < dl->heap[0].due_ns;
	heap_push(
	    dl, (struct dl_item){.due_ns = due, .c = c, .buf = buf, .offset = offset, .len = len});
	/* The thread sleeps until the earliest due time: a new earliest one
	 * moves that. */
	if (earliest)
		pthread_cond_signal(&dl->cond);
	pthread_mutex_unlock(&dl->lock);
	return 0;
}

struct delay_line *dl_start(const struct latency *lat)
{
	struct delay_line *dl = calloc(1, sizeof(*dl));
	pthread_condattr_t attr;

	if (!dl)
		return NULL;
	dl->lat = *lat;
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

void dl_stop(struct delay_line *dl)
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
