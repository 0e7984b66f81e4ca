/* SPDX-License-Identifier: MIT */
/*
 * defer.h - faults a worker set aside because they cannot be resolved now
 * (a proxy holds the mm lock or is replacing the region; EAGAIN while
 * events are pending). A worker never waits for those: it keeps them here
 * and retries when a proxy pokes it on unlock (its own eventfd, so a poke
 * wakes only workers that hold deferred faults) or after a short timeout.
 * Each entry keeps the time its message was read, so latency counts from
 * there. One list per worker, touched only by its worker; the poke side is
 * an atomic flag and an eventfd.
 */
#ifndef UFAULT_LIB_DEFER_H
#define UFAULT_LIB_DEFER_H

#include <stdbool.h>
#include <stdint.h>

#define UFAULT__DEFER_MAX 256

struct ufault__deferred {
	uint64_t addr; /* system page */
	unsigned int flags;
	uint64_t t0; /* when its message was read */
};

struct ufault__defer {
	struct ufault__deferred e[UFAULT__DEFER_MAX];
	unsigned int n;
	unsigned int armed; /* atomic: n > 0, pokes wanted */
	int poke_fd;	    /* eventfd, edge-triggered in the worker's epoll set */
};

int ufault__defer_init(struct ufault__defer *d);
void ufault__defer_destroy(struct ufault__defer *d);

/* Worker side. Returns false when the list is full (the caller wakes the
 * thread instead, which then faults again). */
bool ufault__defer_add(struct ufault__defer *d, uint64_t addr, unsigned int flags, uint64_t t0);
/* Take every entry out (into @out, which holds UFAULT__DEFER_MAX); returns
 * how many. */
unsigned int ufault__defer_take(struct ufault__defer *d, struct ufault__deferred *out);

/* Proxy side: wake the worker if it holds deferred faults. */
void ufault__defer_poke(struct ufault__defer *d);

#endif
