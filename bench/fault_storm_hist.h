/* SPDX-License-Identifier: MIT */
/*
 * fault_storm_hist.h - per-thread latency histograms in ns, in ufault's own
 * bucketing (ufault_stats_bucket_of(): 32 buckets per power of two, about 3%
 * wide, so the 1.15x comparisons fault_storm makes are not lost in bucket
 * width). The bucketing and the quantiles are the library's public
 * functions, so they exist only in lib/stats.c; this file only owns the
 * arrays. Each faulting thread owns one histogram; they are merged after the
 * threads are joined, so no atomics.
 */
#ifndef FAULT_STORM_HIST_H
#define FAULT_STORM_HIST_H

#include <stdint.h>

#include <ufault/ufault.h>

/* Buckets per histogram: set by hist_setup() before any hist_new(). */
static unsigned int hist_nr;

struct hist {
	uint64_t n;
	uint64_t b[];
};

/* Size the histograms: the bucket of the longest duration, plus one. */
static void hist_setup(void)
{
	hist_nr = ufault_stats_bucket_of(UINT64_MAX) + 1;
}

static struct hist *hist_new(void)
{
	if (!hist_nr)
		die("internal: hist_new() before hist_setup()");
	return xcalloc(1, sizeof(struct hist) + hist_nr * sizeof(uint64_t));
}

static inline void hist_add(struct hist *h, uint64_t ns)
{
	h->b[ufault_stats_bucket_of(ns)]++;
	h->n++;
}

static void hist_merge(struct hist *dst, const struct hist *src)
{
	unsigned int i;

	for (i = 0; i < hist_nr; i++)
		dst->b[i] += src->b[i];
	dst->n += src->n;
}

/* Midpoint of the bucket holding quantile @permille (0..1000); 0 if empty. */
static double hist_quantile_ns(const struct hist *h, unsigned int permille)
{
	return (double)ufault_stats_quantile_ns(h->b, hist_nr, permille);
}

#endif /* FAULT_STORM_HIST_H */
