/* SPDX-License-Identifier: MIT */
/*
 * index_bench.c - the region index: lockless lookup ns/op and
 * insert+remove us/op at 10, 1,000, 10,000 and 50,000 regions, plus the
 * cost of a QSBR quiescent state (paid once per fault by a worker).
 *
 *   index_bench [-o results.csv] [-n lookups]
 *
 * Regions are 4 KiB..64 KiB apart, inserted in random order; lookups hit
 * random regions in random order (a working set larger than the caches at
 * 50,000 regions, as a preloaded program would have). Single-threaded: the
 * numbers are the cost of the data structure itself. Run it unpinned and
 * under `taskset -c 0`.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "index.h"
#include "qsbr.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

struct region {
	struct ufault__index_node ix;
	char payload[128]; /* a region is bigger than its index node */
};

struct result {
	size_t n;
	double lookup_hit_ns, lookup_miss_ns, insrem_us;
	uint64_t retries;
};

static volatile uintptr_t sink;

static void run(size_t n, size_t lookups, struct result *res)
{
	struct ufault__slab slab;
	struct ufault__index ix;
	struct region **r = calloc(n, sizeof(*r));
	uint64_t *addr = calloc(lookups, sizeof(*addr));
	uint64_t s = 12345 + n, t0, base = 1ULL << 32;
	size_t i, pairs;
	bool retried;

	if (!r || !addr || ufault__slab_init(&slab, sizeof(struct region))) {
		fprintf(stderr, "index_bench: out of memory\n");
		exit(1);
	}
	ufault__index_init(&ix);
	for (i = 0; i < n; i++) {
		r[i] = ufault__slab_alloc(&slab);
		r[i]->ix.start = base + i * 65536ULL;
		r[i]->ix.end = r[i]->ix.start + 4096 * (1 + rnd(&s) % 15);
	}
	/* Random insertion order. */
	for (i = n - 1; i > 0; i--) {
		size_t j = rnd(&s) % (i + 1);
		struct region *t = r[i];

		r[i] = r[j];
		r[j] = t;
	}
	for (i = 0; i < n; i++)
		if (ufault__index_insert(&ix, &r[i]->ix)) {
			fprintf(stderr, "index_bench: insert failed\n");
			exit(1);
		}

	/* Lookups that hit. */
	for (i = 0; i < lookups; i++) {
		struct region *g = r[rnd(&s) % n];

		addr[i] = g->ix.start + rnd(&s) % (g->ix.end - g->ix.start);
	}
	res->retries = 0;
	t0 = now_ns();
	for (i = 0; i < lookups; i++) {
		sink += (uintptr_t)ufault__index_lookup(&ix, addr[i], &retried);
		res->retries += retried;
	}
	res->lookup_hit_ns = (double)(now_ns() - t0) / (double)lookups;

	/* Lookups that miss (the gap after a region). */
	for (i = 0; i < lookups; i++)
		addr[i] = r[rnd(&s) % n]->ix.start + 65535;
	t0 = now_ns();
	for (i = 0; i < lookups; i++)
		sink += (uintptr_t)ufault__index_lookup(&ix, addr[i], NULL);
	res->lookup_miss_ns = (double)(now_ns() - t0) / (double)lookups;

	/* Remove a random region and put it back: one insert + one remove. */
	pairs = lookups / 10;
	t0 = now_ns();
	for (i = 0; i < pairs; i++) {
		struct region *g = r[rnd(&s) % n];

		ufault__index_remove(&ix, &g->ix);
		if (ufault__index_insert(&ix, &g->ix)) {
			fprintf(stderr, "index_bench: reinsert failed\n");
			exit(1);
		}
	}
	res->insrem_us = (double)(now_ns() - t0) / 1000.0 / (double)pairs;
	res->n = n;

	ufault__slab_destroy(&slab);
	free(r);
	free(addr);
}

static double quiescent_ns(size_t iters)
{
	struct ufault__qsbr q;
	uint64_t t0;
	size_t i;
	double ns;

	if (ufault__qsbr_init(&q, 4))
		return -1;
	ufault__qsbr_online(&q, 0);
	t0 = now_ns();
	for (i = 0; i < iters; i++)
		ufault__qsbr_quiescent(&q, 0);
	ns = (double)(now_ns() - t0) / (double)iters;
	ufault__qsbr_offline(&q, 0);
	ufault__qsbr_destroy(&q);
	return ns;
}

int main(int argc, char **argv)
{
	static const size_t sizes[] = {10, 1000, 10000, 50000};
	struct result res[sizeof(sizes) / sizeof(sizes[0])];
	const char *csv = NULL;
	size_t lookups = 2000000, i;
	double qns;
	int c;

	while ((c = getopt(argc, argv, "o:n:h")) != -1) {
		switch (c) {
		case 'o':
			csv = optarg;
			break;
		case 'n':
			lookups = strtoull(optarg, NULL, 0);
			if (lookups < 10)
				lookups = 10;
			break;
		default:
			fprintf(stderr, "usage: %s [-o results.csv] [-n lookups]\n", argv[0]);
			return c == 'h' ? 0 : 2;
		}
	}

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		run(sizes[i], lookups, &res[i]);
	qns = quiescent_ns(lookups);

	printf("%10s %16s %17s %20s %10s\n", "regions", "lookup hit ns", "lookup miss ns",
	       "insert+remove us", "retries");
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		printf("%10zu %16.1f %17.1f %20.3f %10llu\n", res[i].n, res[i].lookup_hit_ns,
		       res[i].lookup_miss_ns, res[i].insrem_us, (unsigned long long)res[i].retries);
	printf("qsbr quiescent state: %.1f ns\n", qns);

	if (csv) {
		FILE *f = fopen(csv, "w");

		if (!f) {
			fprintf(stderr, "index_bench: %s: %s\n", csv, strerror(errno));
			return 1;
		}
		fprintf(f, "regions,lookup_hit_ns,lookup_miss_ns,insert_remove_us\n");
		for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
			fprintf(f, "%zu,%.2f,%.2f,%.4f\n", res[i].n, res[i].lookup_hit_ns,
				res[i].lookup_miss_ns, res[i].insrem_us);
		fclose(f);
	}
	return 0;
}
