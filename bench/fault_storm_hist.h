/* SPDX-License-Identifier: MIT */
/*
 * fault_storm_hist.h - per-thread log-linear latency histogram in ns.
 *
 * 32 sub-buckets per power of two (about 3% wide), so the 1.15x comparisons
 * fault_storm makes are not lost in bucket width. Each faulting thread owns
 * one; they are merged after the threads are joined, so no atomics.
 */
#ifndef FAULT_STORM_HIST_H
#define FAULT_STORM_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 5
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS (64u * HIST_SUB)

struct hist {
	uint64_t n;
	uint64_t b[HIST_BUCKETS];
};

static struct hist *hist_new(void)
{
	return xcalloc(1, sizeof(struct hist));
}

static inline unsigned int hist_index(uint64_t ns)
{
	unsigned int msb, shift;

	if (ns < HIST_SUB)
		return (unsigned int)ns;
	msb = 63u - (unsigned int)__builtin_clzll(ns);
	shift = msb - HIST_SUB_BITS;
	return ((shift + 1) << HIST_SUB_BITS) + (unsigned int)((ns >> shift) & (HIST_SUB - 1));
}

static inline void hist_add(struct hist *h, uint64_t ns)
{
	h->b[hist_index(ns)]++;
	h->n++;
}

static void hist_merge(struct hist *dst, const struct hist *src)
{
	unsigned int i;

	for (i = 0; i < HIST_BUCKETS; i++)
		dst->b[i] += src->b[i];
	dst->n += src->n;
}

/* Midpoint of the bucket holding quantile @q (0..1); 0 if empty. */
static double hist_quantile_ns(const struct hist *h, double q)
{
	uint64_t want, seen = 0;
	unsigned int i;

	if (!h->n)
		return 0;
	want = (uint64_t)(q * (double)h->n);
	if (want < 1)
		want = 1;
	for (i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= want) {
			unsigned int shift, sub;
			double lo, width;

			if (i < HIST_SUB)
				return (double)i + 0.5;
			shift = (i >> HIST_SUB_BITS) - 1;
			sub = i & (HIST_SUB - 1);
			lo = (double)((uint64_t)(HIST_SUB + sub) << shift);
			width = (double)(1ull << shift);
			return lo + width / 2;
		}
	}
	return 0;
}

#endif /* FAULT_STORM_HIST_H */
