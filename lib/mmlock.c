// SPDX-License-Identifier: MIT
/*
 * mmlock.c - the writer side of the lock modes, used by region registration
 * and by the proxies: the global rwlock in GLOBAL mode, otherwise the range
 * lock over the affected range (REGION and SPEC faults do not take it; the
 * proxies still serialise among themselves with it and, with the tree lock
 * and region write locks, keep faults consistent).
 */
#include "ctx.h"

void ufault__wlock(struct ufault_ctx *ctx, struct ufault__wlock *w, uint64_t start, uint64_t end)
{
	if (ctx->mode == UFAULT_LOCK_GLOBAL) {
		pthread_rwlock_wrlock(&ctx->global);
		w->n = 0;
		return;
	}
	ufault_range_write_lock(&ctx->range, &w->r[0], start, end);
	w->n = 1;
}

void ufault__wlock2(struct ufault_ctx *ctx, struct ufault__wlock *w, uint64_t s1, uint64_t e1,
		    uint64_t s2, uint64_t e2)
{
	if (ctx->mode == UFAULT_LOCK_GLOBAL || (s1 < e2 && s2 < e1)) {
		ufault__wlock(ctx, w, s1 < s2 ? s1 : s2, e1 > e2 ? e1 : e2);
		return;
	}
	/* Disjoint: two requests in ascending address order, the order every
	 * multi-range locker uses, so two of them cannot deadlock. */
	if (s2 < s1) {
		uint64_t t = s1;

		s1 = s2;
		s2 = t;
		t = e1;
		e1 = e2;
		e2 = t;
	}
	ufault_range_write_lock(&ctx->range, &w->r[0], s1, e1);
	ufault_range_write_lock(&ctx->range, &w->r[1], s2, e2);
	w->n = 2;
}

void ufault__wunlock(struct ufault_ctx *ctx, struct ufault__wlock *w)
{
	if (w->n == 0) {
		pthread_rwlock_unlock(&ctx->global);
		return;
	}
	while (w->n > 0)
		ufault_range_write_unlock(&ctx->range, &w->r[--w->n]);
}
