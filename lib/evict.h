/* SPDX-License-Identifier: MIT */
/*
 * evict.h - the memory budget: one evictor thread per context keeps the
 * resident pages of its write-back regions under the budget.
 *
 * Workers tell it what they installed through one single-producer ring each
 * (no shared counter on the fault path); it counts, asks the policy
 * (policy.h) for victims, and evicts them one at a time:
 *   1. the mm write lock over the page (no proxy changes it, and in range
 *      and global modes no fault installs it), then the region's write lock;
 *   2. whether it was written (writeback.h: found and protected again), and
 *      a hash of its bytes, read after the protection;
 *   3. UFFDIO_MOVE takes the page out of the region into a scratch page,
 *      atomically: a write after this faults on a missing page, a write
 *      before is in the moved page (the hash differs if it came after step
 *      2). The page is marked busy and the eviction recorded, under the
 *      region lock, which installs take too (install() in fault.c): an
 *      install overlapping a busy page is deferred until the write-back is
 *      done, and one whose fill began before an eviction of a page in its
 *      window fills again (the source changed under it);
 *   4. region lock released; the page written back if it was written
 *      (moved back into the region, still written, if that fails); scratch
 *      freed; busy cleared; the deferred faults retried.
 * So a fault waits for at most one write-back, and no write is lost.
 *
 * A foreign owner's shared memory (shared.h) is evicted without a scratch
 * page: under the same locks the page is marked busy, write-protected in
 * the owner (a write waits: worker.c defers it while busy), compared with
 * the source and stored if it differs, recorded, punched out of the memfd
 * and unprotected; then busy is cleared and the deferred faults retried.
 *
 * Budgets are groups: group 0 is the context's (every write-back region's
 * pages together), groups 1.. belong to registrations given their own
 * (ufault_region_set_budget: the source object names its group, so the
 * pieces split from a region share it). Each group has its own policy
 * pool; a page is counted in its registration's group, else in the
 * context's. The context's budget bounds the sum: over it, the evictor
 * takes victims from the context's pool first, then from the largest
 * group's. A slot freed (budget removed, or registration gone) and reused
 * may still get a few pages logged for its last owner: they only count
 * until evicted (evict_one checks the region itself).
 */
#ifndef UFAULT_LIB_EVICT_H
#define UFAULT_LIB_EVICT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <ufault/ufault.h>

#include "policy.h"
#include "source.h"

struct ufault_ctx;

#define UFAULT__EVICT_LOG 65536u   /* installs per worker ring */
#define UFAULT__EVICT_RECENT 1024u /* evictions remembered for installs */

/* A worker's ring of installed pages (it produces, the evictor consumes). */
struct ufault__evict_log {
	uint64_t *ring;		 /* [UFAULT__EVICT_LOG] */
	unsigned int head;	 /* atomic: consumed up to */
	unsigned int tail;	 /* atomic: produced up to */
	unsigned int since_kick; /* worker-owned */
};

#define UFAULT__EVICT_GROUPS 64u /* the context's budget and 63 regions' */

struct ufault__evict_group {
	struct ufault_budget budget; /* under lock; bytes 0: none */
	unsigned int seq;	     /* under lock: bumped by every change */
	unsigned int gen;	     /* under lock: bumped when the slot is taken */
	bool used;		     /* under lock: a registration's (or 0: the context's) */
	bool to_ctx;		     /* under lock: freed by removal, pages still there */
	bool gone;		     /* atomic: its source is gone (the evictor frees it) */
	/* Faults in the group wait while its resident pages reach limit
	 * (atomic; 0: no limit, or stuck); group 0's resident is the sum. */
	uint64_t resident, limit;
};

struct ufault__evict {
	pthread_mutex_t lock; /* the groups and thread start: set_budget, evictor */
	struct ufault__evict_group groups[UFAULT__EVICT_GROUPS];
	unsigned int nr_used; /* under lock: groups with a budget */
	bool active;	      /* atomic: workers log installs, check busy */
	bool started, stop;   /* under lock */
	/* Budget changes made (atomic; written under lock) and the last one
	 * the evictor took (under lock): set_budget waits on @adopted_cv
	 * until its change is taken, so no eviction runs under the old
	 * budget once it returns. */
	uint64_t changes, adopted;
	pthread_cond_t adopted_cv;
	pthread_t thread;
	int wake_fd;			/* eventfd: look at the logs (or stop) */
	struct ufault__evict_log *logs; /* one per worker */
	unsigned int nr_logs;
	size_t logs_bytes;
	void *scratch; /* one page per uffd, registered MISSING; NULL: foreign */
	void *buf;     /* two pages: the evictor's, for shared memory (shared.h) */
	uint64_t busy; /* atomic: the page being evicted, or 0 */
	/* Evictions, by seq (atomic), for installs that began before them. */
	uint64_t seq;
	uint64_t recent[UFAULT__EVICT_RECENT];
	/* Counters (atomic). */
	uint64_t evicted, evicted_dirty, refaults;
};

int ufault__evict_init(struct ufault__evict *ev);
/* Stop the evictor thread (its eviction in progress completes). */
void ufault__evict_stop(struct ufault_ctx *ctx);
/* Free the rings and the scratch pages (after the workers stopped). */
void ufault__evict_destroy(struct ufault_ctx *ctx);

int ufault__evict_set_budget(struct ufault_ctx *ctx, const struct ufault_budget *b);
/* The budget of the registration of the write-back region holding @addr. */
int ufault__evict_set_region_budget(struct ufault_ctx *ctx, uint64_t addr,
				    const struct ufault_budget *b);

/* Resident pages counted, all groups together. */
static inline uint64_t ufault__evict_resident(const struct ufault__evict *ev)
{
	return __atomic_load_n(&ev->groups[0].resident, __ATOMIC_RELAXED);
}

static inline bool ufault__evict_active(const struct ufault__evict *ev)
{
	return __atomic_load_n(&ev->active, __ATOMIC_ACQUIRE);
}

static inline uint64_t ufault__evict_seq(const struct ufault__evict *ev)
{
	return __atomic_load_n(&ev->seq, __ATOMIC_ACQUIRE);
}

/* The group of a write-back region's source (0: the context's). */
static inline unsigned int ufault__evict_group_of(const struct ufault__source *s)
{
	return __atomic_load_n(&s->group, __ATOMIC_ACQUIRE);
}

/* Worker @id installed [addr, addr + len) in a write-back region of
 * group @group. */
void ufault__evict_note(struct ufault__evict *ev, unsigned int id, unsigned int group,
			uint64_t addr, uint64_t len);

/* Worker @id may not install more in group @group now: the context's or
 * the group's pages, plus those it installed that the evictor has not
 * counted yet, reach the limit (the fault is deferred, retried after the
 * next eviction). */
bool ufault__evict_full(const struct ufault__evict *ev, unsigned int id, unsigned int group);

/* A page of [start, end) is being evicted: a fill there would read its
 * source before the write-back (defer). Read after ufault__evict_seq(). */
bool ufault__evict_busy(const struct ufault__evict *ev, uint64_t start, uint64_t end);

/*
 * Installing [start, end) (a write-back region's window, the region's lock
 * held as install() takes it), from a fill that began at eviction @seq:
 * -EAGAIN if a page there is being evicted (defer), -ESTALE if one was
 * evicted since @seq (fill again), else 0.
 */
int ufault__evict_check(const struct ufault__evict *ev, uint64_t start, uint64_t end, uint64_t seq);

#endif
