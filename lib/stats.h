/* SPDX-License-Identifier: MIT */
/*
 * stats.h - per-thread counters and latency histograms. Each worker owns one
 * struct ufault__stats and is its only writer; ufault_stats() reads them all
 * and merges. Writers use relaxed load+store (not atomic read-modify-write:
 * there is one writer), readers relaxed loads, so nothing shared is written
 * on the fault path and ThreadSanitizer sees no race.
 */
#ifndef UFAULT_LIB_STATS_H
#define UFAULT_LIB_STATS_H

#include <stdint.h>
#include <time.h>

#include <ufault/ufault.h>

enum ufault__stat {
	UFAULT__STAT_FAULTS,
	UFAULT__STAT_PAGES,
	UFAULT__STAT_EEXIST,
	UFAULT__STAT_RETRIES,
	UFAULT__STAT_DEFERRED,
	UFAULT__STAT_SOURCE_ERRORS,
	UFAULT__STAT_POISONED,
	UFAULT__STAT_ZERO_FILLED,
	UFAULT__STAT_JOINED,
	UFAULT__STAT_FA_PAGES,
	UFAULT__STAT_FA_WASTED,
	UFAULT__STAT_PREFETCHED,
	UFAULT__STAT_CACHE_FILLED,
	UFAULT__STAT_CACHE_MAPPED,
	UFAULT__STAT_WP_FAULTS,
	UFAULT__STAT_SPEC_ABORT, /* + enum ufault_spec_abort */
	UFAULT__STAT_NR = UFAULT__STAT_SPEC_ABORT + UFAULT_SPEC_ABORT_NR,
};

/* Latency histogram: log-linear, 2^UFAULT__HIST_SUB_BITS buckets per power
 * of two of nanoseconds (about 3% wide), enough for any 64-bit value. */
#define UFAULT__HIST_SUB_BITS 5
#define UFAULT__HIST_BUCKETS ((64 - UFAULT__HIST_SUB_BITS + 1) << UFAULT__HIST_SUB_BITS)

struct ufault__stats {
	uint64_t ctr[UFAULT__STAT_NR];
	uint64_t hist[UFAULT__HIST_BUCKETS];
} __attribute__((aligned(64)));

static inline void ufault__stat_add(struct ufault__stats *s, enum ufault__stat which, uint64_t n)
{
	uint64_t *p = &s->ctr[which];

	__atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

static inline uint64_t ufault__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void ufault__stat_latency(struct ufault__stats *s, uint64_t ns)
{
	uint64_t *p = &s->hist[ufault_stats_bucket_of(ns)];

	__atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}

/* Add @src's counters into @out (relaxed loads). */
void ufault__stats_merge(struct ufault_stats *out, const struct ufault__stats *src);
/* Add @src's histogram into @hist (its first @nr buckets). */
void ufault__stats_merge_hist(uint64_t *hist, unsigned int nr, const struct ufault__stats *src);

#endif
