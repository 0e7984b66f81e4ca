// SPDX-License-Identifier: MIT
/*
 * defer.c - deferred faults of one worker, and the poke that retries them
 * (defer.h).
 */
#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "defer.h"

int ufault__defer_init(struct ufault__defer *d)
{
	d->n = 0;
	d->armed = 0;
	d->poke_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return d->poke_fd < 0 ? -errno : 0;
}

void ufault__defer_destroy(struct ufault__defer *d)
{
	if (d->poke_fd >= 0)
		close(d->poke_fd);
	d->poke_fd = -1;
}

bool ufault__defer_add(struct ufault__defer *d, uint64_t addr, unsigned int flags, uint64_t t0)
{
	if (d->n == UFAULT__DEFER_MAX)
		return false;
	/* Armed before the entry counts: a proxy that unlocks after this
	 * store pokes; one that unlocked before it is seen by the retry. */
	if (!d->n)
		__atomic_store_n(&d->armed, 1, __ATOMIC_SEQ_CST);
	d->e[d->n].addr = addr;
	d->e[d->n].flags = flags;
	d->e[d->n].t0 = t0;
	d->n++;
	return true;
}

unsigned int ufault__defer_take(struct ufault__defer *d, struct ufault__deferred *out)
{
	unsigned int n = d->n;

	memcpy(out, d->e, sizeof(*out) * n);
	d->n = 0;
	__atomic_store_n(&d->armed, 0, __ATOMIC_SEQ_CST);
	return n;
}

void ufault__defer_poke(struct ufault__defer *d)
{
	uint64_t one = 1;

	/* A failed write means the counter is saturated: a poke is pending
	 * anyway. */
	if (__atomic_load_n(&d->armed, __ATOMIC_SEQ_CST) &&
	    write(d->poke_fd, &one, sizeof(one)) < 0)
		return;
}
