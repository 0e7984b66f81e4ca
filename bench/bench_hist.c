// SPDX-License-Identifier: MIT
/*
 * bench_hist.c - per-thread latency histograms (bench_hist.h) in ns, in ufault's own bucketing
 * (ufault_stats_bucket_of(): 32 buckets per power of two, about 3% wide,
 * so the 1.15x comparisons fault_storm makes are not lost in bucket
 * width). The bucketing and the quantiles are the library's public
 * functions, so they exist only in lib/stats.c; this file only owns the
 * arrays. Each thread owns its histograms; they are merged after the
 * threads are joined, so no atomics.
 */
#include "bench_hist.h"
#include "bench_util.h"

/* Buckets per histogram: set by hist_setup() before any hist_new(). */
static unsigned int hist_nr;

/* Size the histograms: the bucket of the longest duration, plus one. */
void hist_setup(void)
{
	hist_nr = ufault_stats_bucket_of(UINT64_MAX) + 1;
}

struct hist *hist_new(void)
{
	if (!hist_nr)
		die("internal: hist_new() before hist_setup()");
	return xcalloc(1, sizeof(struct hist) + hist_nr * sizeof(uint64_t));
}

void hist_merge(struct hist *dst, const struct hist *src)
{
	unsigned int i;

	for (i = 0; i < hist_nr; i++)
		dst->b[i] += src->b[i];
	dst->n += src->n;
	if (src->max_ns > dst->max_ns)
		dst->max_ns = src->max_ns;
}

double hist_quantile_ns(const struct hist *h, unsigned int permille)
{
	return (double)ufault_stats_quantile_ns(h->b, hist_nr, permille);
}
