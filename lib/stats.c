// SPDX-License-Identifier: MIT
/*
 * stats.c - histogram bucketing (the only copy: the benchmarks use the
 * public functions), quantiles, and merging of per-thread counters.
 */
#include <string.h>

#include "stats.h"

#define SUB (1u << UFAULT__HIST_SUB_BITS)

unsigned int ufault_stats_bucket_of(uint64_t ns)
{
	unsigned int log, sub;

	if (ns < SUB)
		return (unsigned int)ns;
	log = 63u - (unsigned int)__builtin_clzll(ns);
	sub = (unsigned int)(ns >> (log - UFAULT__HIST_SUB_BITS)) & (SUB - 1);
	return (log - UFAULT__HIST_SUB_BITS + 1) * SUB + sub;
}

uint64_t ufault_stats_bucket_ns(unsigned int i)
{
	unsigned int log, sub;

	if (i < SUB)
		return i;
	if (i >= UFAULT__HIST_BUCKETS)
		return UINT64_MAX;
	log = i / SUB + UFAULT__HIST_SUB_BITS - 1;
	sub = i % SUB;
	return ((uint64_t)SUB + sub) << (log - UFAULT__HIST_SUB_BITS);
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
	out->joined += c[UFAULT__STAT_JOINED];
	out->fault_around_pages += c[UFAULT__STAT_FA_PAGES];
	out->fault_around_wasted += c[UFAULT__STAT_FA_WASTED];
	out->prefetched += c[UFAULT__STAT_PREFETCHED];
	out->cache_filled += c[UFAULT__STAT_CACHE_FILLED];
	out->cache_mapped += c[UFAULT__STAT_CACHE_MAPPED];
	out->wp_faults += c[UFAULT__STAT_WP_FAULTS];
	for (unsigned int i = 0; i < UFAULT_SPEC_ABORT_NR; i++)
		out->spec_aborts[i] += c[UFAULT__STAT_SPEC_ABORT + i];
}

void ufault__stats_merge_hist(uint64_t *hist, unsigned int nr, const struct ufault__stats *src)
{
	if (nr > UFAULT__HIST_BUCKETS)
		nr = UFAULT__HIST_BUCKETS;
	for (unsigned int i = 0; i < nr; i++)
		hist[i] += __atomic_load_n(&src->hist[i], __ATOMIC_RELAXED);
}

uint64_t ufault_stats_quantile_ns(const uint64_t *hist, unsigned int nr, unsigned int permille)
{
	uint64_t total = 0, want, seen = 0;

	if (!hist)
		return 0;
	if (permille > 1000)
		permille = 1000;
	for (unsigned int i = 0; i < nr; i++)
		total += hist[i];
	if (!total)
		return 0;
	want = (total * permille + 999) / 1000;
	if (!want)
		want = 1;
	for (unsigned int i = 0; i < nr; i++) {
		seen += hist[i];
		if (seen >= want) {
			uint64_t lo = ufault_stats_bucket_ns(i);
			uint64_t hi = ufault_stats_bucket_ns(i + 1);

			return hi != UINT64_MAX ? lo + (hi - lo) / 2 : lo;
		}
	}
	return ufault_stats_bucket_ns(nr - 1);
}
