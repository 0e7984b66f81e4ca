// SPDX-License-Identifier: MIT
/*
 * stats.c - histogram bucketing and merging of per-thread counters.
 */
#include <string.h>

#include "stats.h"

#define SUB (1u << UFAULT_HIST_SUB_BITS)

unsigned int ufault__hist_bucket(uint64_t ns)
{
	unsigned int log, sub;

	if (ns < SUB)
		return (unsigned int)ns;
	log = 63u - (unsigned int)__builtin_clzll(ns);
	sub = (unsigned int)(ns >> (log - UFAULT_HIST_SUB_BITS)) & (SUB - 1);
	return (log - UFAULT_HIST_SUB_BITS + 1) * SUB + sub;
}

uint64_t ufault_stats_bucket_ns(unsigned int i)
{
	unsigned int log, sub;

	if (i < SUB)
		return i;
	if (i >= UFAULT_HIST_BUCKETS)
		return UINT64_MAX;
	log = i / SUB + UFAULT_HIST_SUB_BITS - 1;
	sub = i % SUB;
	if (log > 63) /* past the largest 64-bit value: never used */
		return UINT64_MAX;
	return ((uint64_t)SUB + sub) << (log - UFAULT_HIST_SUB_BITS);
}

void ufault__stats_merge(struct ufault_stats *out, const struct ufault__stats *src)
{
	uint64_t c[UFAULT__STAT_NR];

	for (unsigned int i = 0; i < UFAULT__STAT_NR; i++)
		c[i] = __atomic_load_n(&src->ctr[i], __ATOMIC_RELAXED);
	out->faults += c[UFAULT__STAT_FAULTS];
	out->pages_installed += c[UFAULT__STAT_PAGES];
	out->eexist_races += c[UFAULT__STAT_EEXIST];
	out->retries += c[UFAULT__STAT_RETRIES];
	out->deferred += c[UFAULT__STAT_DEFERRED];
	out->source_errors += c[UFAULT__STAT_SOURCE_ERRORS];
	out->poisoned += c[UFAULT__STAT_POISONED];
	out->zero_filled += c[UFAULT__STAT_ZERO_FILLED];
	for (unsigned int i = 0; i < UFAULT_SPEC_ABORT_NR; i++)
		out->spec_aborts[i] += c[UFAULT__STAT_SPEC_ABORT + i];
	for (unsigned int i = 0; i < UFAULT_HIST_BUCKETS; i++)
		out->latency_hist[i] += __atomic_load_n(&src->hist[i], __ATOMIC_RELAXED);
}

/* Midpoint of the bucket holding the q-th quantile (q in per mille). */
static uint64_t quantile(const uint64_t *hist, uint64_t total, unsigned int permille)
{
	uint64_t want = (total * permille + 999) / 1000, seen = 0;

	if (!total)
		return 0;
	if (!want)
		want = 1;
	for (unsigned int i = 0; i < UFAULT_HIST_BUCKETS; i++) {
		seen += hist[i];
		if (seen >= want) {
			uint64_t lo = ufault_stats_bucket_ns(i);
			uint64_t hi = ufault_stats_bucket_ns(i + 1);

			return i + 1 < UFAULT_HIST_BUCKETS ? lo + (hi - lo) / 2 : lo;
		}
	}
	return ufault_stats_bucket_ns(UFAULT_HIST_BUCKETS - 1);
}

void ufault__stats_finish(struct ufault_stats *out)
{
	uint64_t total = 0;

	for (unsigned int i = 0; i < UFAULT_HIST_BUCKETS; i++)
		total += out->latency_hist[i];
	out->latency_p50_ns = quantile(out->latency_hist, total, 500);
	out->latency_p99_ns = quantile(out->latency_hist, total, 990);
}
