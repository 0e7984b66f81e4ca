/* SPDX-License-Identifier: MIT */
/*
 * remap.h - mremap announcements. With UFFD_EVENT_REMAP the kernel tells a
 * worker about every move of registered memory. A move made by a proxy
 * (ufault_mremap) updates the index itself; any other move was made by the
 * application with plain mremap(2), and the moved memory, which no region
 * describes, must be unregistered or a fault there would park forever.
 *
 * A proxy announces its move before the syscall; the worker that reads the
 * event consumes the matching announcement (same source and length). The
 * announcement lives on the proxy's stack and the proxy always withdraws it
 * itself, after the workers have handled whatever they read while the
 * syscall ran (worker.h): nothing can leak and nothing is bounded.
 */
#ifndef UFAULT_LIB_REMAP_H
#define UFAULT_LIB_REMAP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct ufault__remap {
	uint64_t from, len;
	bool consumed;
	struct ufault__remap *next;
};

struct ufault__remaps {
	pthread_mutex_t lock;
	struct ufault__remap *head;
};

int ufault__remaps_init(struct ufault__remaps *rs);
void ufault__remaps_destroy(struct ufault__remaps *rs);

/* Proxy: announce a move of [from, from + len) before the syscall, and
 * withdraw it after (whether or not the event came). */
void ufault__remap_announce(struct ufault__remaps *rs, struct ufault__remap *a, uint64_t from,
			    uint64_t len);
void ufault__remap_withdraw(struct ufault__remaps *rs, struct ufault__remap *a);

/* Worker: the event for a move of [from, from + len); true if a proxy
 * announced it (it is consumed: one event per move). */
bool ufault__remap_consume(struct ufault__remaps *rs, uint64_t from, uint64_t len);

#endif
