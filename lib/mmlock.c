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
	ufault_range_write_lock(&ctx->range, &w->r, start, end);
	w->n = 1;
}

void ufault__wlock2(struct ufault_ctx *ctx, struct ufault__wlock *w, uint64_t s1, uint64_t e1,
		    uint64_t s2, uint64_t e2)
{
	/*
	 * One request over the union, even when the two ranges are far apart:
	 * with a FIFO range lock, taking two ranges one after the other can
	 * deadlock even in address order (a request queued between them
	 * conflicts with both), so a multi-range locker must not nest.
	 */
	ufault__wlock(ctx, w, s1 < s2 ? s1 : s2, e1 > e2 ? e1 : e2);
}

void ufault__wunlock(struct ufault_ctx *ctx, struct ufault__wlock *w)
{
	if (w->n == 0)
		pthread_rwlock_unlock(&ctx->global);
	else
		ufault_range_write_unlock(&ctx->range, &w->r);
	/* Faults that found this range locked or its regions detached were
	 * set aside, not waited for: tell their workers to try again. */
	ufault__workers_poke(ctx);
}
