/* SPDX-License-Identifier: MIT */
/*
 * ctx.h - the context (the mm_struct of ufault) and the region object (the
 * VMA), shared by the files that implement them: ctx.c, regions.c, fault.c,
 * workers.c, proxy.c.
 *
 * Lock order: range lock (or the global rwlock) -> tree lock -> region write
 * locks in ascending address order. The tree lock is never held across a
 * syscall that can block. A region's write lock is held only to mark it
 * detached (no syscall under it), so a fault waiting for its read lock waits
 * at most for another install in flight.
 */
#ifndef UFAULT_LIB_CTX_H
#define UFAULT_LIB_CTX_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <ufault/rangelock.h>
#include <ufault/ufault.h>

#include "alloc.h"
#include "index.h"
#include "log.h"
#include "qsbr.h"
#include "source.h"
#include "stats.h"
#include "uffd.h"

#define ufault__container_of(ptr, type, member)                                                    \
	((type *)((char *)(ptr) - __builtin_offsetof(type, member)))

/*
 * A region never changes its range, source or uffd once in the index: a
 * proxy that changes one (split, move) detaches it and inserts new regions.
 * So a lockless reader only has to re-check `detached` and `gen` under the
 * region read lock before it installs.
 */
struct ufault_region {
	struct ufault__index_node node; /* [start, end) */
	struct ufault__qsbr_item free_item;
	struct ufault_ctx *ctx;
	struct ufault_source src; /* src.offset: source offset of node.start */
	const struct ufault__source_ops *ops;
	unsigned int flags;
	unsigned int uffd_idx;
	uint64_t page_size;
	uint64_t gen; /* bumped when detached; read atomically */
	int detached; /* read atomically; written under lock (write) */
	pthread_rwlock_t lock;
	struct ufault_region *next_victim; /* proxy-local list, under the range lock */
};

static inline uint64_t ufault__region_start(const struct ufault_region *r)
{
	return r->node.start;
}

static inline uint64_t ufault__region_end(const struct ufault_region *r)
{
	return r->node.end;
}

struct ufault__worker;

#define UFAULT__MAX_REMAPS 64

struct ufault_ctx {
	struct ufault__log log;
	enum ufault_lock_mode mode;
	unsigned int nr_workers;
	unsigned int nr_uffds;
	unsigned int batch;
	uint64_t sys_page;
	uint64_t max_page_size;
	uint64_t features; /* granted by the kernel (same on every uffd) */
	int *uffds;
	int stop_fd;  /* eventfd: readable when the workers must stop */
	int retry_fd; /* eventfd (edge-triggered): a proxy finished; retry deferred faults */
	unsigned int deferring; /* atomic: workers holding deferred faults */
	void *zero_buf;		/* max_page_size of zeros, never written: write faults copy it */
	struct ufault__worker *workers;
	size_t workers_len; /* bytes mapped for the workers array */

	pthread_rwlock_t global;       /* GLOBAL mode: faults read, proxies write */
	struct ufault_rangelock range; /* proxies (all modes but GLOBAL), RANGE faults */
	pthread_mutex_t tree_lock;     /* index writers, gen, next_uffd */
	struct ufault__index index;
	struct ufault__qsbr qsbr; /* one slot per worker */
	struct ufault__slab region_slab;
	uint64_t next_gen;
	unsigned int next_uffd; /* atomic */
	uint64_t proxy_ops;	/* atomic; proxies are not the fault fast path */

	/* mremap(2) calls of the proxies in flight (UFFD_EVENT_REMAP with
	 * another origin means the application moved registered memory
	 * behind ufault's back). Under remap_lock; workers only look. */
	pthread_mutex_t remap_lock;
	pthread_cond_t remap_free; /* a slot of remaps[] was freed */
	struct {
		uint64_t from, len;
	} remaps[UFAULT__MAX_REMAPS];
};

/* --- regions.c ----------------------------------------------------------- */

/* A new, not yet indexed region (zeroed, lock initialised). NULL + errno. */
struct ufault_region *ufault__region_alloc(struct ufault_ctx *ctx);
/* Free a region that was never visible to lockless readers. */
void ufault__region_free_now(struct ufault_region *r);
/* Free after a grace period (it was in the index). Never blocks. */
void ufault__region_retire(struct ufault_region *r);
/* Mark detached under the write lock: waits for installs in flight, and
 * every later validation of a snapshot of @r fails. */
void ufault__region_detach(struct ufault_region *r);
/* Undo a detach when the change it prepared for failed (the generation
 * moves on, so snapshots taken before the detach still fail). */
void ufault__region_undetach(struct ufault_region *r);
/* Describe a brand-new region (not indexed): range, source, flags, uffd. */
void ufault__region_init_new(struct ufault_ctx *ctx, struct ufault_region *r, uint64_t start,
			     uint64_t len, const struct ufault_source *src, unsigned int flags,
			     uint64_t page_size);
/* Fill a copy of @r restricted to [start, end) (source offset follows). */
void ufault__region_init_piece(struct ufault_region *piece, const struct ufault_region *r,
			       uint64_t start, uint64_t end);
/* Lockless: the region containing @addr, or NULL. Caller is a QSBR reader. */
struct ufault_region *ufault__region_lookup(struct ufault_ctx *ctx, uint64_t addr, bool *retried);
/* Under the tree lock. */
struct ufault_region *ufault__region_first_locked(struct ufault_ctx *ctx, uint64_t start,
						  uint64_t end);
struct ufault_region *ufault__region_next_locked(struct ufault_ctx *ctx, struct ufault_region *r,
						 uint64_t end);
/* Validation of user arguments shared by register and ufault_mmap. */
int ufault__region_check_args(struct ufault_ctx *ctx, uint64_t start, uint64_t len,
			      const struct ufault_source *src, unsigned int flags,
			      uint64_t *page_size);
/*
 * Create, index and register [start, start+len) with the kernel. The caller
 * holds the write side of the lock mode over the range and has validated the
 * arguments. Returns 0 or -errno (nothing changed).
 */
int ufault__region_create_locked(struct ufault_ctx *ctx, uint64_t start, uint64_t len,
				 const struct ufault_source *src, unsigned int flags,
				 uint64_t page_size, struct ufault_region **out);
/*
 * A child process does not inherit ufault's handling (no UFFD_EVENT_FORK):
 * its copy of a region is unregistered, so missing pages would read as
 * zeros. For sources other than zero that is silent corruption, so such
 * regions are MADV_DONTFORK while handled (the child gets no mapping, and
 * SIGSEGV if it touches one) and MADV_DOFORK again once unregistered.
 */
void ufault__region_set_fork(struct ufault_ctx *ctx, uint64_t start, uint64_t len,
			     const struct ufault_source *src, bool handled);
/* Detach, unindex, unregister from the kernel (waking parked threads) and
 * retire every region; used by ctx destroy. */
void ufault__regions_teardown(struct ufault_ctx *ctx);

/* --- lock modes: the writer side, used by register and proxies ----------- */

struct ufault__wlock {
	struct ufault_range r;
	int n; /* 0: the global rwlock is held, 1: the range lock */
};
/* Lock [start, end) for writing (the global rwlock in GLOBAL mode). */
void ufault__wlock(struct ufault_ctx *ctx, struct ufault__wlock *w, uint64_t start, uint64_t end);
/* Lock two ranges at once: one request over their union (never nested). */
void ufault__wlock2(struct ufault_ctx *ctx, struct ufault__wlock *w, uint64_t s1, uint64_t e1,
		    uint64_t s2, uint64_t e2);
void ufault__wunlock(struct ufault_ctx *ctx, struct ufault__wlock *w);

/* --- workers.c ----------------------------------------------------------- */
/* Tell workers holding deferred faults that a proxy finished a change. */
void ufault__workers_poke(struct ufault_ctx *ctx);
/* Announce / withdraw a proxy mremap, so its UFFD_EVENT_REMAP is recognised
 * (the worker that reads the event withdraws the announcement itself). */
void ufault__remap_begin(struct ufault_ctx *ctx, uint64_t from, uint64_t len);
void ufault__remap_end(struct ufault_ctx *ctx, uint64_t from, uint64_t len);
int ufault__workers_start(struct ufault_ctx *ctx);
void ufault__workers_stop(struct ufault_ctx *ctx);
void ufault__workers_stats(struct ufault_ctx *ctx, struct ufault_stats *out);

#endif
