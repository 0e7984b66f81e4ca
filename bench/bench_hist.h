/* SPDX-License-Identifier: MIT */
/*
 * bench_hist.h - latency histograms in ns, in the library's own bucketing
 * (ufault_stats_bucket_of(); bench_hist.c says more). One per thread,
 * merged after the join.
 */
#ifndef BENCH_HIST_H
#define BENCH_HIST_H

#include <stdint.h>

#include <ufault/ufault.h>

struct hist {
	uint64_t n;
	uint64_t max_ns; /* exact */
	uint64_t b[];
};

/* Once, before any hist_new(). */
void hist_setup(void);
struct hist *hist_new(void);
void hist_merge(struct hist *dst, const struct hist *src);
/* Midpoint of the bucket holding quantile @permille (0..1000); 0 if empty. */
double hist_quantile_ns(const struct hist *h, unsigned int permille);

static inline void hist_add(struct hist *h, uint64_t ns)
{
	h->b[ufault_stats_bucket_of(ns)]++;
	h->n++;
	if (ns > h->max_ns)
		h->max_ns = ns;
}

#endif
