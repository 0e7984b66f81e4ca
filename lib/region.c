// SPDX-License-Identifier: MIT
/*
 * region.c - region objects and the set that owns them (region.h): the
 * index and its tree lock, allocation and QSBR reclamation, kernel
 * registration, the handle table, the collect/swap steps of the proxies,
 * and the process's list of sets (so one context can see another's
 * regions).
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "region.h"

/* Handles: slot + 1 in the low bits, the slot's sequence above. */
#define HANDLE_SLOT_BITS 24
#define HANDLE_MAX_SLOTS ((1u << HANDLE_SLOT_BITS) - 1)

/*
 * The process's region sets, so one context can see another's regions. A
 * child made by fork(2) starts with none: its copies of the parent's
 * contexts are not its own (ctx.h), and the lock may have been held by a
 * parent thread at the fork.
 */
static pthread_mutex_t sets_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t sets_once = PTHREAD_ONCE_INIT;
/* Handle sequences are drawn from one process-wide counter, so a handle is
 * never valid in another context either. */
static uint64_t next_handle_seq;
static struct ufault__regions *sets;

static void sets_forget_in_child(void)
{
	pthread_mutex_init(&sets_lock, NULL);
	sets = NULL;
}

static void sets_setup(void)
{
	pthread_atfork(NULL, NULL, sets_forget_in_child);
}

static void tree_lock(struct ufault__regions *set)
{
	pthread_mutex_lock(&set->tree_lock);
	ufault__witness_acquire(UFAULT__RANK_TREE, false);
}

static void tree_unlock(struct ufault__regions *set)
{
	ufault__witness_release(UFAULT__RANK_TREE);
	pthread_mutex_unlock(&set->tree_lock);
}

static struct ufault_region *region_of(struct ufault__index_node *n)
{
	return n ? ufault__container_of(n, struct ufault_region, node) : NULL;
}

int ufault__regions_init(struct ufault__regions *set, struct ufault__qsbr *qsbr,
			 const struct ufault__log *log, const int *uffds, unsigned int nr_uffds,
			 uint64_t features, uint64_t max_page_size)
{
	int ret;

	set->qsbr = qsbr;
	set->log = log;
	set->uffds = uffds;
	set->nr_uffds = nr_uffds;
	set->features = features;
	set->max_page_size = max_page_size;
	ufault__index_init(&set->index);
	ret = -pthread_mutex_init(&set->tree_lock, NULL);
	if (ret)
		return ret;
	ret = ufault__slab_init(&set->region_slab, sizeof(struct ufault_region));
	if (ret)
		goto out_lock;
	ret = ufault__slab_init(&set->source_slab, sizeof(struct ufault__source));
	if (ret)
		goto out_slab;
	set->pid = getpid();
	pthread_once(&sets_once, sets_setup);
	pthread_mutex_lock(&sets_lock);
	set->next_set = sets;
	sets = set;
	pthread_mutex_unlock(&sets_lock);
	return 0;
out_slab:
	ufault__slab_destroy(&set->region_slab);
out_lock:
	pthread_mutex_destroy(&set->tree_lock);
	return ret;
}

void ufault__regions_unlist(struct ufault__regions *set)
{
	pthread_mutex_lock(&sets_lock);
	for (struct ufault__regions **p = &sets; *p; p = &(*p)->next_set) {
		if (*p == set) {
			*p = set->next_set;
			break;
		}
	}
	pthread_mutex_unlock(&sets_lock);
}

void ufault__regions_destroy(struct ufault__regions *set)
{
	ufault__slab_destroy(&set->region_slab);
	ufault__slab_destroy(&set->source_slab);
	ufault__pages_unmap(set->handles, sizeof(*set->handles) * set->nr_handles);
	pthread_mutex_destroy(&set->tree_lock);
}

void ufault__regions_forget(struct ufault__regions *set)
{
	/* The parent's threads may have held any of these locks at the
	 * fork: only the memory goes, the sets list is the child's copy. */
	ufault__slab_destroy(&set->region_slab);
	ufault__slab_destroy(&set->source_slab);
	ufault__pages_unmap(set->handles, sizeof(*set->handles) * set->nr_handles);
}

/* --- allocation and reclamation ------------------------------------------ */

struct ufault_region *ufault__region_new(struct ufault__regions *set, uint64_t start, uint64_t len,
					 struct ufault__source *src, uint64_t offset,
					 unsigned int flags, uint64_t page_size,
					 unsigned int uffd_idx)
{
	/* Writer-preferring, as the kernel's rwsem: a proxy waiting to
	 * detach the region is not starved by a stream of region-mode
	 * faults that hold the read side across their fills. */
	pthread_rwlockattr_t attr;
	struct ufault_region *r = ufault__slab_alloc(&set->region_slab);
	int err;

	if (!r)
		return NULL;
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	err = pthread_rwlock_init(&r->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	if (err) {
		ufault__slab_free(&set->region_slab, r);
		return NULL;
	}
	r->set = set;
	r->refs = 1;
	r->node.start = start;
	r->node.end = start + len;
	r->src = src;
	ufault__source_get(src);
	r->offset = offset;
	r->flags = flags;
	r->page_size = page_size;
	r->uffd_idx = uffd_idx;
	return r;
}

unsigned int ufault__regions_next_uffd(struct ufault__regions *set)
{
	return __atomic_fetch_add(&set->next_uffd, 1, __ATOMIC_RELAXED) % set->nr_uffds;
}

static void region_free(struct ufault_region *r)
{
	struct ufault__source *src = r->src;

	pthread_rwlock_destroy(&r->lock);
	ufault__slab_free(&r->set->region_slab, r);
	ufault__source_put(src);
}

void ufault__region_free_chain(struct ufault_region *r)
{
	while (r) {
		struct ufault_region *next = r->next_victim;

		region_free(r);
		r = next;
	}
}

void ufault__region_unpin(struct ufault_region *r)
{
	if (!__atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL))
		region_free(r);
}

static void region_free_item(struct ufault__qsbr_item *item)
{
	ufault__region_unpin(ufault__container_of(item, struct ufault_region, free_item));
}

/* Free after a grace period (it was in the index). Never blocks. */
static void region_retire(struct ufault_region *r)
{
	r->free_item.free_fn = region_free_item;
	ufault__qsbr_retire(r->set->qsbr, &r->free_item);
}

void ufault__regions_reclaim(struct ufault__regions *set)
{
	ufault__witness_assert_unlocked("reclaiming regions");
	ufault__qsbr_poll(set->qsbr);
}

/* Mark detached under the write lock: waits for installs in flight, and
 * every later validation of a snapshot of @r fails. */
static void region_detach(struct ufault_region *r)
{
	pthread_rwlock_wrlock(&r->lock);
	ufault__witness_acquire(UFAULT__RANK_REGION, false);
	__atomic_store_n(&r->detached, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&r->gen, __atomic_load_n(&r->gen, __ATOMIC_RELAXED) + 1, __ATOMIC_RELEASE);
	ufault__witness_release(UFAULT__RANK_REGION);
	pthread_rwlock_unlock(&r->lock);
}

/* Undo a detach when the change it prepared for failed (the generation
 * moves on, so snapshots taken before the detach still fail). */
static void region_undetach(struct ufault_region *r)
{
	pthread_rwlock_wrlock(&r->lock);
	ufault__witness_acquire(UFAULT__RANK_REGION, false);
	__atomic_store_n(&r->gen, __atomic_load_n(&r->gen, __ATOMIC_RELAXED) + 1, __ATOMIC_RELEASE);
	__atomic_store_n(&r->detached, 0, __ATOMIC_RELEASE);
	ufault__witness_release(UFAULT__RANK_REGION);
	pthread_rwlock_unlock(&r->lock);
}

void ufault__region_wake(struct ufault_region *r)
{
	ufault__uffd_wake(ufault__region_uffd(r), r->node.start, r->node.end - r->node.start);
}

/* --- the index ------------------------------------------------------------ */

struct ufault_region *ufault__region_lookup(struct ufault__regions *set, uint64_t addr,
					    bool *retried)
{
	struct ufault_region *r = region_of(ufault__index_lookup(&set->index, addr, retried));

	if (r)
		return r;
	tree_lock(set);
	r = region_of(ufault__index_find_locked(&set->index, addr));
	tree_unlock(set);
	return r;
}

/* Under the tree lock: regions overlapping [start, end) in address order. */
static struct ufault_region *first_locked(struct ufault__regions *set, uint64_t start, uint64_t end)
{
	return region_of(ufault__index_first_overlap_locked(&set->index, start, end));
}

static struct ufault_region *next_locked(struct ufault__regions *set, struct ufault_region *r,
					 uint64_t end)
{
	struct ufault__index_node *n = ufault__index_next_locked(&set->index, &r->node);

	return n && n->start < end ? region_of(n) : NULL;
}

static void insert_locked(struct ufault__regions *set, struct ufault_region *r)
{
	int ret;

	r->gen = ++set->next_gen;
	ret = ufault__index_insert(&set->index, &r->node);
	if (ret) /* only if memory changed behind ufault's back */
		ufault__err(set->log, "index insert [%#llx, %#llx): %s",
			    (unsigned long long)r->node.start, (unsigned long long)r->node.end,
			    ufault_strerror(ret));
}

/* --- handles: unforgeable names for registered regions ------------------ */

#define HANDLE_SEQ_MASK ((1ull << (64 - HANDLE_SLOT_BITS)) - 1)

static int handle_grow(struct ufault__regions *set)
{
	uint32_t n = set->nr_handles ? set->nr_handles * 2 : 64;
	struct ufault__handle_slot *h;

	if (set->nr_handles >= HANDLE_MAX_SLOTS)
		return -ENOMEM;
	if (n > HANDLE_MAX_SLOTS)
		n = HANDLE_MAX_SLOTS;
	h = ufault__pages_map(sizeof(*h) * n);
	if (!h)
		return -ENOMEM;
	if (set->handles)
		memcpy(h, set->handles, sizeof(*h) * set->nr_handles);
	ufault__pages_unmap(set->handles, sizeof(*h) * set->nr_handles);
	for (uint32_t i = n; i-- > set->nr_handles;) {
		h[i].next_free = set->free_handle;
		set->free_handle = i + 1;
	}
	set->handles = h;
	set->nr_handles = n;
	return 0;
}

/* Give @r a handle; under the tree lock. Returns the token, or NULL. */
static struct ufault_region *handle_alloc_locked(struct ufault__regions *set,
						 struct ufault_region *r)
{
	struct ufault__handle_slot *h;
	uint32_t i;

	if (!set->free_handle && handle_grow(set))
		return NULL;
	i = set->free_handle - 1;
	h = &set->handles[i];
	set->free_handle = h->next_free;
	h->seq = (__atomic_add_fetch(&next_handle_seq, 1, __ATOMIC_RELAXED)) & HANDLE_SEQ_MASK;
	h->r = r;
	r->handle = i + 1;
	return (struct ufault_region *)(uintptr_t)((h->seq << HANDLE_SLOT_BITS) | (i + 1));
}

struct ufault_region *ufault__region_from_handle(struct ufault__regions *set,
						 struct ufault_region *handle, uint64_t *start,
						 uint64_t *end)
{
	uint64_t token = (uint64_t)(uintptr_t)handle;
	uint64_t slot = token & HANDLE_MAX_SLOTS;
	struct ufault_region *r = NULL;

	tree_lock(set);
	if (slot && slot <= set->nr_handles &&
	    set->handles[slot - 1].seq == token >> HANDLE_SLOT_BITS)
		r = set->handles[slot - 1].r;
	if (r) {
		*start = r->node.start;
		*end = r->node.end;
	}
	tree_unlock(set);
	return r;
}

static void handle_release_locked(struct ufault__regions *set, struct ufault_region *r)
{
	struct ufault__handle_slot *h;

	if (!r->handle)
		return;
	h = &set->handles[r->handle - 1];
	h->r = NULL;
	h->next_free = set->free_handle;
	set->free_handle = r->handle;
	r->handle = 0;
}

/* Unindex @r; its handle (if any) dies with it. */
static void remove_locked(struct ufault__regions *set, struct ufault_region *r)
{
	ufault__index_remove(&set->index, &r->node);
	handle_release_locked(set, r);
}

void ufault__regions_span(struct ufault__regions *set, uint64_t start, uint64_t end, uint64_t *s,
			  uint64_t *e)
{
	struct ufault_region *r, *last = NULL;

	*s = start;
	*e = end;
	tree_lock(set);
	r = first_locked(set, start, end);
	if (r && r->node.start < *s)
		*s = r->node.start;
	for (; r; r = next_locked(set, r, end))
		last = r;
	if (last && last->node.end > *e)
		*e = last->node.end;
	tree_unlock(set);
}

struct ufault_region *ufault__regions_first(struct ufault__regions *set, uint64_t start,
					    uint64_t end)
{
	struct ufault_region *r;

	tree_lock(set);
	r = first_locked(set, start, end);
	tree_unlock(set);
	return r;
}

bool ufault__regions_cut_page(struct ufault__regions *set, uint64_t start, uint64_t end)
{
	struct ufault_region *r;
	bool cut = false;

	tree_lock(set);
	r = region_of(ufault__index_find_locked(&set->index, start));
	if (r && (start - r->node.start) % r->page_size)
		cut = true;
	r = region_of(ufault__index_find_locked(&set->index, end - 1));
	if (r && end < r->node.end && (end - r->node.start) % r->page_size)
		cut = true;
	tree_unlock(set);
	return cut;
}

/*
 * Another context's regions are invisible to this one's index; a change
 * over them would leave that context describing memory that is gone. Only
 * regions that exist now are seen: a registration racing in another
 * context is not ordered with the caller.
 */
bool ufault__regions_foreign(struct ufault__regions *set, uint64_t start, uint64_t end)
{
	bool found = false;

	pthread_mutex_lock(&sets_lock);
	ufault__witness_acquire(UFAULT__RANK_CTXLIST, false);
	for (struct ufault__regions *o = sets; o && !found; o = o->next_set) {
		if (o == set || o->pid != set->pid)
			continue; /* a raw clone(2) child may still list its parent's */
		tree_lock(o);
		found = first_locked(o, start, end) != NULL;
		tree_unlock(o);
	}
	ufault__witness_release(UFAULT__RANK_CTXLIST);
	pthread_mutex_unlock(&sets_lock);
	return found;
}

/* --- registration ---------------------------------------------------------- */

int ufault__region_check_args(struct ufault__regions *set, uint64_t start, uint64_t len,
			      const struct ufault_source *src, unsigned int flags,
			      uint64_t *page_size)
{
	unsigned int shift = flags >> UFAULT_REGION_PAGE_SHIFT_BIT;
	uint64_t ps = ufault__sys_page();
	struct ufault_source norm;

	if (flags & ~UFAULT_REGION_FLAGS_MASK) {
		ufault__warn(set->log, "register: unknown flags %#x",
			     flags & ~UFAULT_REGION_FLAGS_MASK);
		return -EINVAL;
	}
	if (shift) {
		if (shift >= 63 || (1ull << shift) < ps || (1ull << shift) > set->max_page_size) {
			ufault__warn(
			    set->log,
			    "register: page shift %u outside [system page, max_page_size %llu]",
			    shift, (unsigned long long)set->max_page_size);
			return -EINVAL;
		}
		ps = 1ull << shift;
	}
	if (!len || len % ps) {
		ufault__warn(
		    set->log,
		    "register: length %llu is not a non-zero multiple of the region page %llu",
		    (unsigned long long)len, (unsigned long long)ps);
		return -EINVAL;
	}
	if (start % ps) { /* start 0: not chosen yet (ufault_mmap) */
		ufault__warn(set->log,
			     "register: address %#llx is not aligned to the region page %llu",
			     (unsigned long long)start, (unsigned long long)ps);
		return -EINVAL;
	}
	if (start + len < start) {
		ufault__warn(set->log, "register: range wraps around");
		return -EINVAL;
	}
	if (ufault__source_check(src, set->log, &norm))
		return -EINVAL;
	if (norm.offset + len < norm.offset) {
		ufault__warn(set->log, "register: source offset %llu + length %llu wraps around",
			     (unsigned long long)norm.offset, (unsigned long long)len);
		return -EINVAL;
	}
	if ((flags & UFAULT_REGION_WRITEBACK) && ufault__source_check_write(&norm, NULL, set->log))
		return -EINVAL;
	if ((flags & UFAULT_REGION_DISCARD) && !(flags & UFAULT_REGION_WRITEBACK)) {
		ufault__warn(set->log, "register: UFAULT_REGION_DISCARD without "
				       "UFAULT_REGION_WRITEBACK");
		return -EINVAL;
	}
	if (norm.type == UFAULT_SOURCE_MEMFD && !(set->features & UFFD_FEATURE_MINOR_SHMEM)) {
		ufault__warn(set->log, "register: the memfd source needs UFFDIO_CONTINUE on shmem "
				       "(UFFD_FEATURE_MINOR_SHMEM, Linux 5.14), which this kernel "
				       "lacks");
		return -EOPNOTSUPP;
	}
	if (!(flags & UFAULT_REGION_ON_ERROR_ZERO) && !(set->features & UFFD_FEATURE_POISON)) {
		ufault__warn(set->log, "register: SIGBUS error policy needs UFFDIO_POISON, which "
				       "this kernel lacks; use UFAULT_REGION_ON_ERROR_ZERO");
		return -EOPNOTSUPP;
	}
	*page_size = ps;
	return 0;
}

/* mincore() fails with ENOMEM when part of the range is not mapped. */
static int range_mapped(uint64_t start, uint64_t len)
{
	unsigned char vec[256];
	uint64_t step = sizeof(vec) * ufault__sys_page();

	for (uint64_t off = 0; off < len; off += step) {
		uint64_t n = len - off < step ? len - off : step;

		if (mincore((void *)(uintptr_t)(start + off), n, vec))
			return -errno;
	}
	return 0;
}

void ufault__region_set_fork(struct ufault__regions *set, uint64_t start, uint64_t len,
			     const struct ufault__source *src, bool handled)
{
	/* A child reads zeros in a zero-source region, which is right. */
	int advice = handled && src->user.type != UFAULT_SOURCE_ZERO ? MADV_DONTFORK : MADV_DOFORK;

	if (madvise((void *)(uintptr_t)start, len, advice))
		ufault__warn(set->log, "madvise(%s) [%#llx, +%llu): %s",
			     advice == MADV_DONTFORK ? "MADV_DONTFORK" : "MADV_DOFORK",
			     (unsigned long long)start, (unsigned long long)len,
			     ufault_strerror(errno));
}

int ufault__region_create(struct ufault__regions *set, uint64_t start, uint64_t len,
			  struct ufault__source *src, unsigned int flags, uint64_t page_size,
			  struct ufault_region **handle)
{
	struct ufault_region *r, *token = NULL;
	int ret;

	if (set->foreign) {
		if (src->ops->cache_run || ((flags & UFAULT_REGION_WRITEBACK) && !src->shared.on)) {
			ufault__warn(set->log, "register: a foreign context takes no memfd source, "
					       "and write-back regions only in shared memory "
					       "(ufault_region_register_shared())");
			return -EOPNOTSUPP;
		}
	} else if (range_mapped(start, len)) {
		ufault__warn(set->log, "register: [%#llx, +%llu) is not fully mapped",
			     (unsigned long long)start, (unsigned long long)len);
		return -ENOMEM;
	}
	if (src->ops->check_mapping) {
		ret = src->ops->check_mapping(&src->user, start, len, set->log);
		if (ret)
			return ret;
	}
	if ((flags & UFAULT_REGION_WRITEBACK) &&
	    ufault__source_check_write(&src->user, src, set->log))
		return -EINVAL;

	r = ufault__region_new(set, start, len, src, src->user.offset, flags, page_size,
			       ufault__regions_next_uffd(set));
	if (!r)
		return -ENOMEM;

	tree_lock(set);
	if (handle && !(token = handle_alloc_locked(set, r))) {
		tree_unlock(set);
		region_free(r);
		return -ENOMEM;
	}
	r->gen = ++set->next_gen;
	ret = ufault__index_insert(&set->index, &r->node);
	if (ret)
		handle_release_locked(set, r);
	tree_unlock(set);
	if (ret) {
		ufault__warn(set->log, "register: [%#llx, +%llu) overlaps a region",
			     (unsigned long long)start, (unsigned long long)len);
		region_free(r);
		return -EEXIST;
	}

	if (set->foreign) { /* its owner registered it */
		if (handle)
			*handle = token;
		return 0;
	}
	/* Indexed before registered: the first fault already finds it. */
	ret = ufault__uffd_register(
	    ufault__region_uffd(r), start, len,
	    UFFDIO_REGISTER_MODE_MISSING | (src->ops->cache_run ? UFFDIO_REGISTER_MODE_MINOR : 0) |
		((flags & UFAULT_REGION_WRITEBACK) ? UFFDIO_REGISTER_MODE_WP : 0),
	    NULL);
	if (ret) {
		if (ret == -EINVAL)
			ret = -EOPNOTSUPP; /* arguments were checked: the memory type */
		ufault__warn(set->log, "register: UFFDIO_REGISTER [%#llx, +%llu): %s",
			     (unsigned long long)start, (unsigned long long)len,
			     ufault_strerror(ret));
		region_detach(r);
		tree_lock(set);
		remove_locked(set, r);
		tree_unlock(set);
		region_retire(r);
		return ret;
	}
	if (src->user.type != UFAULT_SOURCE_ZERO)
		ufault__region_set_fork(set, start, len, src, true);
	if (handle)
		*handle = token;
	return 0;
}

void ufault__region_remove(struct ufault__regions *set, struct ufault_region *r)
{
	int ret;

	region_detach(r);
	tree_lock(set);
	remove_locked(set, r);
	tree_unlock(set);
	if (set->foreign) {
		/* Its owner's registration stays: wake its threads parked here
		 * (they fault again, for whoever serves the uffd next). */
		ufault__uffd_wake(ufault__region_uffd(r), r->node.start,
				  r->node.end - r->node.start);
		region_retire(r);
		return;
	}
	ret = ufault__uffd_unregister(ufault__region_uffd(r), r->node.start,
				      r->node.end - r->node.start);
	if (ret && ufault__uffd_classify(ret) != UFAULT__UFFD_GONE &&
	    ufault__uffd_classify(ret) != UFAULT__UFFD_NOVMA)
		ufault__warn(set->log, "UFFDIO_UNREGISTER [%#llx, %#llx): %s",
			     (unsigned long long)r->node.start, (unsigned long long)r->node.end,
			     ufault_strerror(ret));
	/* Ordinary memory again: a child inherits it as usual. */
	if (!ret && r->src->user.type != UFAULT_SOURCE_ZERO)
		ufault__region_set_fork(set, r->node.start, r->node.end - r->node.start, r->src,
					false);
	region_retire(r);
}

void ufault__regions_teardown(struct ufault__regions *set)
{
	for (;;) {
		struct ufault_region *r;

		tree_lock(set);
		r = first_locked(set, 0, UINT64_MAX);
		tree_unlock(set);
		if (!r)
			break;
		ufault__region_remove(set, r);
	}
}

/* --- the steps of a proxy's change ------------------------------------------ */

int ufault__cut_collect(struct ufault__regions *set, uint64_t start, uint64_t end,
			struct ufault__cut *c)
{
	struct ufault_region *r, *first = NULL, *last = NULL, **tail = &c->victims;
	bool cut = false;

	c->victims = c->left = c->right = NULL;
	tree_lock(set);
	for (r = first_locked(set, start, end); r; r = next_locked(set, r, end)) {
		if (!first)
			first = r;
		last = r;
		r->next_victim = NULL;
		*tail = r;
		tail = &r->next_victim;
	}
	if (first && first->node.start < start && (start - first->node.start) % first->page_size)
		cut = true;
	if (last && last->node.end > end && (end - last->node.start) % last->page_size)
		cut = true;
	tree_unlock(set);
	if (cut) {
		ufault__warn(set->log, "[%#llx, %#llx) would split a region page",
			     (unsigned long long)start, (unsigned long long)end);
		c->victims = NULL;
		return -EINVAL;
	}
	if (first && first->node.start < start) {
		c->left = ufault__region_new(set, first->node.start, start - first->node.start,
					     first->src, first->offset, first->flags,
					     first->page_size, first->uffd_idx);
		if (!c->left)
			goto nomem;
	}
	if (last && last->node.end > end) {
		c->right = ufault__region_new(set, end, last->node.end - end, last->src,
					      ufault__region_offset(last, end), last->flags,
					      last->page_size, last->uffd_idx);
		if (!c->right)
			goto nomem;
	}
	return 0;
nomem:
	ufault__cut_abort(c);
	return -ENOMEM;
}

void ufault__cut_abort(struct ufault__cut *c)
{
	if (c->left)
		region_free(c->left);
	if (c->right)
		region_free(c->right);
	c->victims = c->left = c->right = NULL;
}

/*
 * Detach the victims before the syscall: from then on a fault that finds
 * one is deferred until the proxy unlocks, so no fault can fill the changed
 * range from an old source, and none is left to a lookup that finds
 * nothing. If the syscall fails, the victims are undetached.
 */
void ufault__cut_detach(struct ufault__cut *c)
{
	for (struct ufault_region *r = c->victims; r; r = r->next_victim)
		region_detach(r);
}

void ufault__cut_undetach(struct ufault__cut *c)
{
	for (struct ufault_region *r = c->victims; r; r = r->next_victim)
		region_undetach(r);
}

void ufault__cut_swap(struct ufault__regions *set, struct ufault__cut *c,
		      struct ufault_region *extra)
{
	tree_lock(set);
	for (struct ufault_region *r = c->victims; r; r = r->next_victim)
		remove_locked(set, r);
	if (c->left)
		insert_locked(set, c->left);
	if (c->right)
		insert_locked(set, c->right);
	for (; extra; extra = extra->next_victim)
		insert_locked(set, extra);
	tree_unlock(set);
	c->left = c->right = NULL; /* the index owns them now */
}

/*
 * Threads parked on the changed range wait on the old regions' uffds, and
 * the kernel does not wake them on munmap, mmap or mremap; a fault message
 * for the range that a worker dropped (its lookup found no region while the
 * change was under way) left its thread parked too. Woken, they fault again
 * on whatever is mapped now. Then the old regions are retired.
 */
void ufault__cut_finish(struct ufault__cut *c, uint64_t start, uint64_t end)
{
	struct ufault_region *r = c->victims, *next;

	for (; r; r = next) {
		uint64_t s = r->node.start > start ? r->node.start : start;
		uint64_t e = r->node.end < end ? r->node.end : end;

		next = r->next_victim;
		ufault__uffd_wake(ufault__region_uffd(r), s, e - s);
		region_retire(r);
	}
	c->victims = NULL;
}
