/* SPDX-License-Identifier: MIT */
/*
 * region.h - the region object (the VMA of ufault) and its owner, the
 * region set of a context: the address index, the tree lock that
 * serialises its writers, the region and source allocators, the handle
 * table and the kernel registration of each region.
 *
 * Nothing outside region.c takes the tree lock: proxies and faults use the
 * operations below (lookup, span, collect, swap, ...).
 *
 * A region never changes its range, source or uffd once in the index: a
 * proxy that changes one (split, move) detaches it and indexes new regions.
 * So a lockless reader only has to re-check `detached` and `gen` under the
 * region read lock before it installs.
 *
 * Lock order (witness.h): mm lock -> tree lock -> region locks. The tree
 * lock is never held across a blocking call. A region's write lock is held
 * only to mark it detached (no syscall under it), so a fault waiting for
 * its read lock waits at most for another install in flight.
 */
#ifndef UFAULT_LIB_REGION_H
#define UFAULT_LIB_REGION_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <ufault/ufault.h>

#include "alloc.h"
#include "index.h"
#include "log.h"
#include "qsbr.h"
#include "source.h"
#include "uffd.h"
#include "util.h"
#include "witness.h"

struct ufault__regions;

#define UFAULT__FA_RUNS 4

struct ufault_region {
	struct ufault__index_node node; /* [start, end) */
	struct ufault__qsbr_item free_item;
	struct ufault__regions *set;
	struct ufault__source *src; /* shared with the other pieces of its registration */
	uint64_t offset;	    /* source offset of node.start */
	unsigned int flags;
	unsigned int uffd_idx;
	uint32_t handle; /* slot in the handle table + 1; 0: none */
	uint64_t page_size;
	uint64_t gen;	   /* bumped when detached; read atomically */
	int detached;	   /* read atomically; written under lock (write) */
	unsigned int refs; /* atomic: 1 for the index (dropped after the grace
			    * period), +1 per asynchronous fill in flight */
	/* Fault-around (fault.c), racy hints updated by any worker: for a few
	 * sequential runs at once (threads scanning their own parts), where
	 * each run's next fault is expected, its last window, and when it
	 * last grew (a tick of fa_clock: the stalest run is replaced). */
	struct {
		uint64_t next, len, used;
	} fa[UFAULT__FA_RUNS];
	uint64_t fa_clock;
	pthread_rwlock_t lock;
	struct ufault_region *next_victim; /* proxy-local list, under the mm lock */
};

struct ufault__handle_slot {
	struct ufault_region *r; /* NULL: free */
	uint64_t seq;		 /* new on each use of the slot (process-wide counter) */
	uint32_t next_free;	 /* free list link: slot + 1, 0 ends it */
};

struct ufault__regions {
	pthread_mutex_t tree_lock; /* index writers, gen, handles */
	struct ufault__index index;
	struct ufault__slab region_slab;
	struct ufault__slab source_slab;
	struct ufault__qsbr *qsbr;
	const struct ufault__log *log;
	const int *uffds;
	unsigned int nr_uffds;
	unsigned int next_uffd; /* atomic */
	uint64_t features;	/* granted by the kernel */
	uint64_t max_page_size;
	uint64_t next_gen;
	struct ufault__handle_slot *handles;
	uint32_t nr_handles, free_handle; /* free_handle: head of a free list, +1 */
	struct ufault__regions *next_set; /* the process's list of sets */
	pid_t pid;			  /* the process the set belongs to */
	/* The regions are another process's (a foreign context): its owner
	 * registered them with the kernel; nothing here (un)registers,
	 * checks the mapping or sets MADV_DONTFORK. */
	bool foreign;
};

/* Set up an empty set; 0 or -errno. Joins the process's list of sets. */
int ufault__regions_init(struct ufault__regions *set, struct ufault__qsbr *qsbr,
			 const struct ufault__log *log, const int *uffds, unsigned int nr_uffds,
			 uint64_t features, uint64_t max_page_size);
/* Leave the process's list (before the set is torn down). */
void ufault__regions_unlist(struct ufault__regions *set);
/* Free the allocators (after QSBR has freed every region). */
void ufault__regions_destroy(struct ufault__regions *set);
/* In a child process: unmap this copy's memory, touch no lock. */
void ufault__regions_forget(struct ufault__regions *set);
/* Detach, unindex, unregister (waking parked threads) and retire every
 * region; used by context destruction. */
void ufault__regions_teardown(struct ufault__regions *set);

/* --- one region ------------------------------------------------------- */

static inline uint64_t ufault__region_start(const struct ufault_region *r)
{
	return r->node.start;
}

static inline uint64_t ufault__region_end(const struct ufault_region *r)
{
	return r->node.end;
}

/* The region page holding @addr (regions start on a region page). */
static inline uint64_t ufault__region_page(const struct ufault_region *r, uint64_t addr)
{
	return r->node.start + ((addr - r->node.start) & ~(r->page_size - 1));
}

static inline uint64_t ufault__region_offset(const struct ufault_region *r, uint64_t addr)
{
	return r->offset + (addr - r->node.start);
}

/* Are the region's written pages tracked by write-protection (installed
 * protected)? Write-back regions, except in a foreign owner's shared memory
 * (shared.h: written means different from the source there). */
static inline bool ufault__region_wp_tracked(const struct ufault_region *r)
{
	return (r->flags & UFAULT_REGION_WRITEBACK) && !r->src->shared.on;
}

static inline bool ufault__region_detached(const struct ufault_region *r)
{
	return __atomic_load_n(&r->detached, __ATOMIC_ACQUIRE);
}

static inline uint64_t ufault__region_gen(const struct ufault_region *r)
{
	return __atomic_load_n(&r->gen, __ATOMIC_ACQUIRE);
}

static inline int ufault__region_uffd(const struct ufault_region *r)
{
	return r->set->uffds[r->uffd_idx];
}

/* The region rwlock, ranked for the witness. Read side: faults. */
static inline bool ufault__region_read_trylock(struct ufault_region *r)
{
	if (pthread_rwlock_tryrdlock(&r->lock))
		return false;
	ufault__witness_acquire(UFAULT__RANK_REGION, true);
	return true;
}

static inline void ufault__region_read_lock(struct ufault_region *r)
{
	pthread_rwlock_rdlock(&r->lock);
	ufault__witness_acquire(UFAULT__RANK_REGION, false);
}

static inline void ufault__region_read_unlock(struct ufault_region *r)
{
	ufault__witness_release(UFAULT__RANK_REGION);
	pthread_rwlock_unlock(&r->lock);
}

/* Write side, outside region.c: the evictor, around taking a page out. */
static inline void ufault__region_write_lock(struct ufault_region *r)
{
	pthread_rwlock_wrlock(&r->lock);
	ufault__witness_acquire(UFAULT__RANK_REGION, false);
}

static inline void ufault__region_write_unlock(struct ufault_region *r)
{
	ufault__witness_release(UFAULT__RANK_REGION);
	pthread_rwlock_unlock(&r->lock);
}

/*
 * An asynchronous fill keeps the region it looked up (and so its source)
 * alive past the QSBR grace period: pin it while online, unpin when done.
 * The last unpin frees the region (and may run a release hook: no ufault
 * lock may be held).
 */
static inline void ufault__region_pin(struct ufault_region *r)
{
	__atomic_fetch_add(&r->refs, 1, __ATOMIC_RELAXED);
}

void ufault__region_unpin(struct ufault_region *r);

/*
 * Lockless lookup of the region containing @addr, confirmed under the tree
 * lock on a miss (a proxy may be halfway through swapping regions). The
 * caller is an online QSBR reader. *@retried (may be NULL): the lockless
 * lookup raced with a writer.
 */
struct ufault_region *ufault__region_lookup(struct ufault__regions *set, uint64_t addr,
					    bool *retried);

/* --- registration ------------------------------------------------------ */

/* Validation of user arguments shared by register and ufault_mmap (@start
 * 0: not chosen yet). Fills *page_size. 0 or -EINVAL/-EOPNOTSUPP, logged. */
int ufault__region_check_args(struct ufault__regions *set, uint64_t start, uint64_t len,
			      const struct ufault_source *src, unsigned int flags,
			      uint64_t *page_size);
/*
 * Create, index and register [start, start+len) with the kernel, from
 * source @src (the region takes its own reference). The caller holds the
 * mm write lock over the range and has validated the arguments. With
 * @handle, the region gets a handle (returned as *@handle). Returns 0 or
 * -errno (nothing changed).
 */
int ufault__region_create(struct ufault__regions *set, uint64_t start, uint64_t len,
			  struct ufault__source *src, unsigned int flags, uint64_t page_size,
			  struct ufault_region **handle);
/* The live region a handle names, and its range, or NULL (stale, forged).
 * Takes the tree lock; the region may be gone as soon as it is dropped. */
struct ufault_region *ufault__region_from_handle(struct ufault__regions *set,
						 struct ufault_region *handle, uint64_t *start,
						 uint64_t *end);
/* Unindex, unregister from the kernel (waking parked threads) and retire
 * @r. The caller holds the mm write lock over its range. */
void ufault__region_remove(struct ufault__regions *set, struct ufault_region *r);

/*
 * A child process does not inherit ufault's handling: regions whose
 * source is not zero are MADV_DONTFORK while handled (the child gets no
 * mapping, and SIGSEGV if it touches one) and MADV_DOFORK again once
 * unregistered.
 */
void ufault__region_set_fork(struct ufault__regions *set, uint64_t start, uint64_t len,
			     const struct ufault__source *src, bool handled);

/* --- changes made by proxies (the caller holds the mm write lock) ------- */

/* [start, end) widened to the regions it overlaps. */
void ufault__regions_span(struct ufault__regions *set, uint64_t start, uint64_t end, uint64_t *s,
			  uint64_t *e);
/* The first region overlapping [start, end), or NULL. The caller holds
 * the mm lock (read or write) over the range, so it stays. */
struct ufault_region *ufault__regions_first(struct ufault__regions *set, uint64_t start,
					    uint64_t end);
/* The region after @r overlapping [.., end), or NULL: with
 * ufault__regions_first(), a walk over the regions of a range. */
static inline struct ufault_region *
ufault__regions_next(struct ufault__regions *set, const struct ufault_region *r, uint64_t end)
{
	return ufault__region_end(r) < end ? ufault__regions_first(set, ufault__region_end(r), end)
					   : NULL;
}
/* True if [start, end) starts or ends inside a region page. */
bool ufault__regions_cut_page(struct ufault__regions *set, uint64_t start, uint64_t end);
/* True if a region of another context of this process overlaps
 * [start, end) (-EBUSY for the proxies). */
bool ufault__regions_foreign(struct ufault__regions *set, uint64_t start, uint64_t end);

/* Regions cut by a change of [start, end): removed, with surviving pieces. */
struct ufault__cut {
	struct ufault_region *victims; /* linked through next_victim */
	struct ufault_region *left, *right;
};

/* Collect the regions overlapping [start, end) and prepare the pieces that
 * survive outside it. -EINVAL if the range would split a region page,
 * -ENOMEM. On failure nothing is held. */
int ufault__cut_collect(struct ufault__regions *set, uint64_t start, uint64_t end,
			struct ufault__cut *c);
/* Forget a collected cut (frees the unused pieces). */
void ufault__cut_abort(struct ufault__cut *c);
/* Detach the victims (before the syscall) / undo it if the syscall failed. */
void ufault__cut_detach(struct ufault__cut *c);
void ufault__cut_undetach(struct ufault__cut *c);
/* Swap the (detached) victims for their pieces and the regions of the
 * @extra chain (linked through next_victim) in the index. */
void ufault__cut_swap(struct ufault__regions *set, struct ufault__cut *c,
		      struct ufault_region *extra);
/* Wake threads parked on the changed range and retire the victims. */
void ufault__cut_finish(struct ufault__cut *c, uint64_t start, uint64_t end);

/* A region not yet indexed, describing [start, start+len) of @src at
 * source @offset; takes a reference on @src. NULL if out of memory. */
struct ufault_region *ufault__region_new(struct ufault__regions *set, uint64_t start, uint64_t len,
					 struct ufault__source *src, uint64_t offset,
					 unsigned int flags, uint64_t page_size,
					 unsigned int uffd_idx);
/* The next uffd index, round robin. */
unsigned int ufault__regions_next_uffd(struct ufault__regions *set);
/* Free a region (and a chain through next_victim) never indexed. */
void ufault__region_free_chain(struct ufault_region *r);
/* Wake threads parked on @r's range (faults before it was indexed). */
void ufault__region_wake(struct ufault_region *r);
/* Free regions retired long enough ago; call with no ufault lock held
 * (a source's release hook may run). */
void ufault__regions_reclaim(struct ufault__regions *set);

#endif
