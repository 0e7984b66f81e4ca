/* SPDX-License-Identifier: MIT */
/*
 * source.h - how a region's bytes are produced, and the source object that
 * regions share.
 *
 * Each source type is one file (source_zero.c, source_snapshot.c,
 * source_callback.c, source_async.c, source_file.c, source_nbd.c,
 * source_memfd.c) providing one ops table; the fault path only calls through it. A registration makes one struct ufault__source, holding the
 * caller's struct and a reference count: every region made from it (the
 * region itself, and the pieces a split or a replacement leaves) holds a
 * reference, dropped when the region is freed after its QSBR grace period.
 * The last reference calls the caller's release hook, so the hook runs
 * only once no fill can still use the source.
 */
#ifndef UFAULT_LIB_SOURCE_H
#define UFAULT_LIB_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <liburing.h>
#include <ufault/ufault.h>

#include "alloc.h"
#include "log.h"
#include "shared.h"
#include "watch.h"

/* fill() result meaning "install zeros" (UFFDIO_ZEROPAGE, no copy). */
#define UFAULT__FILL_ZERO 1
/* Page-cache sources: the bytes are in the cache already; just map them. */
#define UFAULT__FILL_CACHED 2

/* One write of a write-back batch: @off, @buf, @len in; @result out. */
struct ufault__wb_io {
	uint64_t off;
	const void *buf;
	size_t len;
	int result; /* 0 or -errno */
};

struct ufault__source_ops {
	const char *name;
	/* 0 if @src is usable, else -EINVAL (and the reason logged). */
	int (*validate)(const struct ufault_source *src, const struct ufault__log *log);
	/* Optional: take what the source needs from the caller's resources
	 * (a duplicated fd) into the source object's copy; 0 or -errno.
	 * fini undoes it when the source object goes. */
	int (*init)(struct ufault_source *src, const struct ufault__log *log);
	void (*fini)(struct ufault_source *src);
	/*
	 * Produce @len bytes at source offset @off. Returns 0 with *data
	 * pointing at the bytes to copy (into @buf, or straight at source
	 * memory that is not registered), UFAULT__FILL_ZERO, or -errno.
	 * @buf is the worker's bounce buffer of at least @len bytes.
	 */
	int (*fill)(const struct ufault_source *src, uint64_t off, size_t len, void *buf,
		    const void **data);
	/*
	 * Asynchronous sources instead (fill is NULL): start producing @len
	 * bytes at @off into @buf; 0 when started (ufault_complete(@c) follows,
	 * possibly before this returns, or a read queued on @ring with @c as
	 * its user data completes), else -errno (nothing follows). @ring is
	 * the worker's; the worker submits what was queued.
	 */
	int (*start)(const struct ufault_source *src, uint64_t off, size_t len, void *buf,
		     struct ufault_completion *c, struct io_uring *ring);

	/*
	 * Page-cache sources (memfd) instead of fill and start: the region
	 * maps a shared page cache (registered for MINOR faults too), and
	 * installs with UFFDIO_CONTINUE. Optional check at registration:
	 * [start, start + len) maps the source as it must; 0 or -EINVAL
	 * (logged).
	 */
	int (*check_mapping)(const struct ufault_source *src, uint64_t start, uint64_t len,
			     const struct ufault__log *log);
	/* From source offset @off, the bytes (up to @len, whole @unit) whose
	 * units are all in the cache (*resident) or all missing from it. */
	uint64_t (*cache_run)(const struct ufault_source *src, uint64_t off, uint64_t len,
			      uint64_t unit, bool *resident);
	/* Put @len bytes of @data (NULL: zeros) in the cache at @off, except
	 * pages someone else filled first; the bytes put there, or -errno. */
	int (*cache_fill)(const struct ufault_source *src, uint64_t off, const void *data,
			  uint64_t len);
	/* The source that fills missing pages (NULL: zeros). */
	struct ufault__source *(*cache_inner)(const struct ufault_source *src);

	/*
	 * Write-back sources (UFAULT_REGION_WRITEBACK; writeback.c): can this
	 * source take writes (-EINVAL, logged, if not)? Asked of the caller's
	 * struct before the object is made (!@made), then of the object
	 * (what only a connection knows: an NBD export's flags). Then store
	 * @len bytes of @buf at @off (0 or -errno), and make what was stored
	 * durable (optional).
	 */
	int (*can_write)(const struct ufault_source *src, bool made, const struct ufault__log *log);
	int (*write)(const struct ufault_source *src, uint64_t off, const void *buf, size_t len);
	/* Optional: store a batch at once (a flush's runs), each io's
	 * result set; without it, write is called for each. */
	void (*write_batch)(const struct ufault_source *src, struct ufault__wb_io *io,
			    unsigned int n);
	int (*sync)(const struct ufault_source *src);
	/* Optional: read @len bytes at @off now (0 or -errno), for what
	 * compares memory with the source (shared.h). */
	int (*read)(const struct ufault_source *src, uint64_t off, void *buf, size_t len);
	/* Optional: [@off, @off + @len) left every region (ufault_discard_fn). */
	void (*discard)(const struct ufault_source *src, uint64_t off, uint64_t len);
};

extern const struct ufault__source_ops ufault__source_zero;
extern const struct ufault__source_ops ufault__source_snapshot;
extern const struct ufault__source_ops ufault__source_callback;
extern const struct ufault__source_ops ufault__source_async;
extern const struct ufault__source_ops ufault__source_file;
extern const struct ufault__source_ops ufault__source_nbd;
extern const struct ufault__source_ops ufault__source_memfd;

struct ufault__source {
	struct ufault_source user; /* the caller's struct, at this library's size */
	const struct ufault__source_ops *ops;
	struct ufault__slab *slab; /* where this object lives */
	struct ufault__loops *loops; /* the context's workers, for an fd to drive */
	unsigned int refs;	   /* atomic */
	bool release_ok;	   /* the registration succeeded: call the hook */
	void *priv;		   /* the type's own state, set by init (nbd: the connection) */
	bool unsynced;		   /* atomic: the evictor wrote to it since the last sync */
	/* The registration's own memory budget (evict.h's group; 0: the
	 * context's). Set by evict.c, which is told when the source goes:
	 * group_gone(group_arg, group) from ufault__source_put(). */
	unsigned int group; /* atomic */
	void (*group_gone)(void *arg, unsigned int group);
	void *group_arg;
	/* A foreign owner's shared memory (ufault_region_register_shared()),
	 * set before the registration is made; released with the source. */
	struct ufault__shared shared;
};

/* The source object whose caller's struct is @src (the ops get &s->user). */
static inline struct ufault__source *ufault__source_of(const struct ufault_source *src)
{
	return (struct ufault__source *)((char *)src - offsetof(struct ufault__source, user));
}

/*
 * Check @user (size, type, the type's own fields) and make a source object
 * holding one reference, the caller's. Returns 0, -EINVAL (logged) or
 * -ENOMEM. Takes the slab lock.
 */
int ufault__source_create(struct ufault__slab *slab, struct ufault__loops *loops,
			  const struct ufault_source *user, const struct ufault__log *log,
			  struct ufault__source **out);
/* @norm (checked; @s: the object made from it, or NULL) can take
 * UFAULT_REGION_WRITEBACK: 0 or -EINVAL (logged). */
int ufault__source_check_write(const struct ufault_source *norm, const struct ufault__source *s,
			       const struct ufault__log *log);
/* Only the checks of ufault__source_create (no object). */
int ufault__source_check(const struct ufault_source *user, const struct ufault__log *log,
			 struct ufault_source *normalised);

static inline void ufault__source_get(struct ufault__source *s)
{
	__atomic_fetch_add(&s->refs, 1, __ATOMIC_RELAXED);
}

/* Drop a reference; the last one runs the release hook (if the
 * registration succeeded) and frees the object. No ufault lock may be
 * held: the hook is user code. */
void ufault__source_put(struct ufault__source *s);

/* The registration that created @s succeeded / failed: drop the caller's
 * reference, and let the last one call the hook only on success. */
void ufault__source_commit(struct ufault__source *s);
void ufault__source_abandon(struct ufault__source *s);

#endif
