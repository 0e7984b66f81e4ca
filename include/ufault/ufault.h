/* SPDX-License-Identifier: MIT */
/*
 * ufault.h - userspace page-fault handling service on userfaultfd.
 *
 * An application hands ufault memory regions. When a thread touches a page of
 * a region that is not there yet, the kernel parks the thread and ufault's
 * worker threads fill the page from the region's source (zeros, a snapshot
 * buffer, a user callback) and install it with one ioctl.
 *
 * Conventions:
 *  - Functions named ufault_<noun>_<verb> return 0 or a negative errno and,
 *    when they fail, change nothing. ufault_strerror() names the error.
 *  - The mmap-family proxies (ufault_mmap, ufault_munmap, ufault_mremap,
 *    ufault_mprotect, ufault_madvise) mirror the system calls they stand in
 *    for: they return what the syscall would (MAP_FAILED or -1) and set errno.
 *  - No function aborts on bad input; the reason is logged through the
 *    context's log callback (stderr by default).
 */
#ifndef UFAULT_UFAULT_H
#define UFAULT_UFAULT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(UFAULT_BUILDING) && defined(__GNUC__)
#define UFAULT_API __attribute__((visibility("default")))
#else
#define UFAULT_API
#endif

#define UFAULT_VERSION_MAJOR 0
#define UFAULT_VERSION_MINOR 1
#define UFAULT_VERSION_PATCH 0

/** Opaque: one address space handled by ufault (the mm_struct). */
struct ufault_ctx;
/** Opaque: one registered range with one source (the VMA). */
struct ufault_region;

/**
 * enum ufault_lock_mode - how faults and proxies synchronise (DESIGN.md).
 * @UFAULT_LOCK_DEFAULT: $UFAULT_LOCK_MODE if set (an invalid value makes
 *                       ufault_ctx_create() fail with -EINVAL), else spec.
 * @UFAULT_LOCK_SPEC:    faults fill with no lock held, then validate under a
 *                       region read *trylock* and install.
 * @UFAULT_LOCK_REGION:  faults find their region locklessly and hold that
 *                       region's read lock for the whole resolution.
 * @UFAULT_LOCK_RANGE:   faults read-lock their page in the range lock.
 * @UFAULT_LOCK_GLOBAL:  one fair rwlock: faults read, proxies write.
 */
enum ufault_lock_mode {
	UFAULT_LOCK_DEFAULT = 0,
	UFAULT_LOCK_SPEC,
	UFAULT_LOCK_REGION,
	UFAULT_LOCK_RANGE,
	UFAULT_LOCK_GLOBAL,
};

/** Log levels, in decreasing severity. */
enum ufault_log_level {
	UFAULT_LOG_ERROR = 0,
	UFAULT_LOG_WARN,
	UFAULT_LOG_INFO,
	UFAULT_LOG_DEBUG,
};

/** Log callback: @msg is one line without a trailing newline. */
typedef void (*ufault_log_fn)(void *arg, enum ufault_log_level level, const char *msg);

/**
 * struct ufault_config - options for ufault_ctx_create().
 * @size:         sizeof(struct ufault_config); set by ufault_config_init().
 *                Lets the struct grow without breaking old callers: a
 *                smaller size (an older caller's struct) is accepted and the
 *                fields past it take their defaults; a larger one is -EINVAL.
 * @nr_workers:   worker threads; 0 means the number of online CPUs.
 * @nr_uffds:     userfaultfds the regions are spread over (round robin at
 *                registration); worker i reads uffd i % nr_uffds, with no
 *                dispatcher in between. 0 means 1. Clamped to nr_workers.
 * @lock_mode:    see enum ufault_lock_mode.
 * @batch:        uffd messages read per read(2); 0 means 64.
 * @max_page_size: largest region page size this context accepts (it sizes
 *                the per-worker bounce buffers); 0 means 2 MiB.
 * @log_fn, @log_arg: where log lines go; NULL means stderr.
 * @log_level:    the most verbose level passed on; default UFAULT_LOG_WARN.
 *                $UFAULT_LOG (error, warn, info, debug) overrides it.
 */
struct ufault_config {
	size_t size;
	unsigned int nr_workers;
	unsigned int nr_uffds;
	enum ufault_lock_mode lock_mode;
	unsigned int batch;
	size_t max_page_size;
	ufault_log_fn log_fn;
	void *log_arg;
	enum ufault_log_level log_level;
};

/** ufault_config_init() - fill @cfg with the defaults. Never fails. */
UFAULT_API void ufault_config_init(struct ufault_config *cfg);

/**
 * ufault_ctx_create() - open userfaultfd(s), negotiate features, start workers.
 * @out: receives the context.
 * @cfg: options, or NULL for the defaults.
 *
 * May block (thread creation). Errors: -EINVAL (bad option or struct size),
 * -ENOSYS/-EPERM (no userfaultfd available to this process), -ENOMEM,
 * -EAGAIN (thread creation).
 */
UFAULT_API int ufault_ctx_create(struct ufault_ctx **out, const struct ufault_config *cfg);

/**
 * ufault_ctx_destroy() - unregister every region, wake every thread parked in
 * a fault on them, stop and join the workers, close the uffds, free all.
 *
 * A thread that touches a former region afterwards gets ordinary kernel
 * behaviour (an anonymous page) rather than hanging. Waits for fills already
 * running in a worker to return. Must not be called from a source callback,
 * nor while another thread is inside a call on @ctx (a proxy, register,
 * unregister, stats); @ctx is invalid afterwards.
 */
UFAULT_API void ufault_ctx_destroy(struct ufault_ctx *ctx);

/** The lock mode the context runs in (never UFAULT_LOCK_DEFAULT). */
UFAULT_API enum ufault_lock_mode ufault_ctx_lock_mode(const struct ufault_ctx *ctx);

/** Number of worker threads / uffds actually used. */
UFAULT_API unsigned int ufault_ctx_nr_workers(const struct ufault_ctx *ctx);
UFAULT_API unsigned int ufault_ctx_nr_uffds(const struct ufault_ctx *ctx);

/** UFFD_FEATURE_* bits the kernel granted this context. */
UFAULT_API uint64_t ufault_ctx_features(const struct ufault_ctx *ctx);

/** Name of a lock mode ("spec", "region", "range", "global"). */
UFAULT_API const char *ufault_lock_mode_name(enum ufault_lock_mode mode);

/** Parse a lock mode name; returns 0 or -EINVAL. */
UFAULT_API int ufault_lock_mode_parse(const char *name, enum ufault_lock_mode *out);

/* ------------------------------------------------------------------ */
/* Sources                                                              */
/* ------------------------------------------------------------------ */

enum ufault_source_type {
	UFAULT_SOURCE_ZERO = 1, /* zero pages (UFFDIO_ZEROPAGE) */
	UFAULT_SOURCE_SNAPSHOT, /* bytes copied from a caller's buffer */
	UFAULT_SOURCE_CALLBACK, /* a user function fills a bounce buffer */
};

/**
 * ufault_fill_fn - produce @len bytes of source data at source @offset.
 * @arg:    the callback's argument.
 * @offset: byte offset in the source (the region's source offset plus the
 *          page's distance from the region start).
 * @buf:    bounce buffer of @len bytes; not registered memory.
 * @len:    a whole region page.
 *
 * Runs on a worker thread with no ufault lock held (spec mode) or with the
 * region read-locked (other modes); it may sleep, but must not call ufault
 * proxies on the same context. Return 0 or a negative errno; a failure
 * applies the region's error policy to the faulting page.
 */
typedef int (*ufault_fill_fn)(void *arg, uint64_t offset, void *buf, size_t len);

/**
 * struct ufault_source - where a region's bytes come from.
 * @type:   see enum ufault_source_type.
 * @offset: source offset of the region's first byte.
 * @snapshot.data, @snapshot.len: SNAPSHOT: a buffer the caller keeps alive
 *          and unchanged while any region uses it; it must not itself be
 *          registered memory. Bytes past @len read as zeros.
 * @callback.fill, @callback.arg: CALLBACK.
 *
 * The struct is copied at registration.
 */
struct ufault_source {
	enum ufault_source_type type;
	uint64_t offset;
	union {
		struct {
			const void *data;
			size_t len;
		} snapshot;
		struct {
			ufault_fill_fn fill;
			void *arg;
		} callback;
	};
};

/* ------------------------------------------------------------------ */
/* Regions                                                              */
/* ------------------------------------------------------------------ */

/** Region flags. Error policy when the source fails: */
#define UFAULT_REGION_ON_ERROR_SIGBUS 0u      /* default: UFFDIO_POISON, the thread gets SIGBUS */
#define UFAULT_REGION_ON_ERROR_ZERO (1u << 0) /* install zeros and go on */
/*
 * Region page size, as log2 in the top bits (like MAP_HUGE_SHIFT): every
 * fault fills and installs one whole region page. 0 means the system page.
 * Example: UFAULT_REGION_PAGE_SHIFT(16) for 64 KiB pages.
 */
#define UFAULT_REGION_PAGE_SHIFT_BIT 26
#define UFAULT_REGION_PAGE_SHIFT(s) ((unsigned int)(s) << UFAULT_REGION_PAGE_SHIFT_BIT)
#define UFAULT_REGION_FLAGS_MASK                                                                   \
	(UFAULT_REGION_ON_ERROR_ZERO | (63u << UFAULT_REGION_PAGE_SHIFT_BIT))

/**
 * ufault_region_register() - hand [@addr, @addr + @len) to ufault.
 * @ctx:   the context.
 * @addr:  start, aligned to the region page size.
 * @len:   length, a non-zero multiple of the region page size.
 * @src:   the source (copied).
 * @flags: UFAULT_REGION_* flags.
 * @out:   receives the region handle (may be NULL).
 *
 * Fork: a child process does not inherit ufault's handling. A region whose
 * source is not zero is made MADV_DONTFORK while registered (MADV_DOFORK
 * again when unregistered), so a child touching it gets SIGSEGV instead of
 * zeros for pages never filled; a zero-source region reads correctly.
 *
 * The range must be mapped anonymous memory (private, or shared/memfd shmem
 * where the kernel supports uffd on it); ufault fills only missing pages and
 * leaves populated ones as they are. Takes the range lock and the tree
 * lock; may block.
 *
 * Errors (nothing changes): -EINVAL (NULL, unaligned, zero length, bad flags,
 * bad source, page size out of range), -EEXIST (overlaps a region of this
 * context), -ENOMEM (range not fully mapped), -EOPNOTSUPP (kernel lacks a
 * feature the flags need, or the memory type cannot be registered), -EBUSY
 * (the range is already registered with another userfaultfd, e.g. another
 * context's region).
 */
UFAULT_API int ufault_region_register(struct ufault_ctx *ctx, void *addr, size_t len,
				      const struct ufault_source *src, unsigned int flags,
				      struct ufault_region **out);

/**
 * ufault_region_unregister() - stop handling @region. Threads parked on it
 * are woken and from then on get ordinary kernel behaviour. The handle is
 * invalid afterwards. A proxy call that changes a region (munmap of part of
 * it, mremap) retires its handle too: unregister then returns -ENOENT.
 * Errors: -EINVAL (NULL), -ENOENT (not a live region of @ctx).
 */
UFAULT_API int ufault_region_unregister(struct ufault_ctx *ctx, struct ufault_region *region);

/* ------------------------------------------------------------------ */
/* Proxies for the mmap family (mirror the syscalls: return and errno)  */
/* ------------------------------------------------------------------ */

/**
 * ufault_mmap() - mmap(2) plus registration. Only private anonymous memory:
 * @flags must contain MAP_PRIVATE | MAP_ANONYMOUS and may add MAP_FIXED,
 * MAP_FIXED_NOREPLACE, MAP_NORESERVE. @src NULL means the zero source.
 *
 * MAP_FIXED replaces what was there, as the kernel does, but atomically for
 * readers: where regions covered the range, their (registered) VMAs are
 * kept and get the new contents, so a thread touching the range meanwhile
 * sees old bytes, or waits and sees new ones; never zeros. Parts that were
 * not ufault memory are mapped PROT_NONE, registered, then given @prot (a
 * racing touch there gets SIGSEGV). Kept VMAs keep their other attributes
 * (e.g. madvise flags). Fails with EINVAL if an old region's boundary would
 * split a page of the new region.
 *
 * Returns the address, or MAP_FAILED with errno set; a failure leaves
 * regions and mappings as they were, except that (as with mmap(2)) a failed
 * MAP_FIXED may leave the parts that were not ufault memory unmapped.
 */
UFAULT_API void *ufault_mmap(struct ufault_ctx *ctx, void *addr, size_t len, int prot, int flags,
			     const struct ufault_source *src, unsigned int region_flags);

/**
 * ufault_munmap() - munmap(2) that also retires the regions it covers; a
 * region partly covered is split and its remaining parts keep their source
 * offsets. Holes and non-ufault mappings in the range are unmapped as by
 * munmap(2). Returns 0, or -1 with errno.
 */
UFAULT_API int ufault_munmap(struct ufault_ctx *ctx, void *addr, size_t len);

/**
 * ufault_mremap() - mremap(2) of whole region pages inside one region
 * (grow, shrink, move: MREMAP_MAYMOVE, MREMAP_FIXED; MREMAP_DONTUNMAP is not
 * supported). The region follows the memory; pages added by growing fill
 * from the source at the matching offsets; with MREMAP_FIXED, regions under
 * the destination are unmapped first. A range that is not inside one region
 * fails with EINVAL.
 *
 * A move needs UFFD_FEATURE_EVENT_REMAP (EOPNOTSUPP without it) and returns
 * only after a worker of the region's uffd has read the kernel's remap
 * event: at worst after the fill that worker is running. A source callback
 * must therefore never wait for a ufault_mremap. Moving registered memory
 * with plain mremap(2) instead is detected from that event and the moved
 * range is unregistered (a warning is logged): it becomes ordinary memory.
 * Returns the new address, or MAP_FAILED with errno.
 */
UFAULT_API void *ufault_mremap(struct ufault_ctx *ctx, void *old_addr, size_t old_len,
			       size_t new_len, int flags, void *new_addr);

/** ufault_mprotect() - mprotect(2) under the lock mode's write lock. */
UFAULT_API int ufault_mprotect(struct ufault_ctx *ctx, void *addr, size_t len, int prot);

/**
 * ufault_madvise() - madvise(2) under the lock mode's write lock. On a
 * region, MADV_DONTNEED drops pages so that the next touch fills them again
 * from the source (writes to them are lost, as for private anonymous memory).
 */
UFAULT_API int ufault_madvise(struct ufault_ctx *ctx, void *addr, size_t len, int advice);

/* ------------------------------------------------------------------ */
/* Statistics                                                           */
/* ------------------------------------------------------------------ */

/** Why a speculative fault gave up its speculation. */
enum ufault_spec_abort {
	UFAULT_SPEC_ABORT_SEQ = 0,  /* index changed during the lookup */
	UFAULT_SPEC_ABORT_TRYLOCK,  /* region write-locked by a proxy */
	UFAULT_SPEC_ABORT_DETACHED, /* region removed or replaced */
	UFAULT_SPEC_ABORT_GEN,	    /* region generation changed */
	UFAULT_SPEC_ABORT_NR,
};

/*
 * Latency histogram: log-linear, 4 sub-buckets per power of two of
 * nanoseconds. ufault_stats_bucket_ns() gives a bucket's lower bound.
 */
#define UFAULT_HIST_SUB_BITS 2
#define UFAULT_HIST_BUCKETS (64 << UFAULT_HIST_SUB_BITS)

/**
 * struct ufault_stats - counters merged from every worker.
 * @size:           sizeof(struct ufault_stats); set by the caller.
 * @faults:         page-fault messages handled.
 * @pages_installed: system pages installed by this context.
 * @eexist_races:   installs that found the page already there (benign).
 * @retries:        resolutions restarted (validation failed, EAGAIN).
 * @deferred:       faults set aside to retry later (EAGAIN, lock busy).
 * @source_errors:  fills that failed.
 * @poisoned:       pages poisoned after a source error (SIGBUS policy).
 * @zero_filled:    pages zero-filled after a source error (zero policy).
 * @spec_aborts:    speculative aborts by reason.
 * @proxy_ops:      successful proxy calls.
 * @latency_hist:   worker-side resolution time (message read to install).
 * @latency_p50_ns, @latency_p99_ns: from the histogram (bucket midpoints).
 */
struct ufault_stats {
	size_t size;
	uint64_t faults;
	uint64_t pages_installed;
	uint64_t eexist_races;
	uint64_t retries;
	uint64_t deferred;
	uint64_t source_errors;
	uint64_t poisoned;
	uint64_t zero_filled;
	uint64_t spec_aborts[UFAULT_SPEC_ABORT_NR];
	uint64_t proxy_ops;
	uint64_t latency_hist[UFAULT_HIST_BUCKETS];
	uint64_t latency_p50_ns;
	uint64_t latency_p99_ns;
};

/**
 * ufault_stats() - merge the per-worker counters into @out. Lock-free with
 * respect to the fault path; counters are monotonic but not a snapshot taken
 * at one instant. Errors: -EINVAL (NULL, or @out->size too small).
 */
UFAULT_API int ufault_stats(struct ufault_ctx *ctx, struct ufault_stats *out);

/** Lower bound in nanoseconds of histogram bucket @i. */
UFAULT_API uint64_t ufault_stats_bucket_ns(unsigned int i);

/** A short description of a (negative or positive) errno value. */
UFAULT_API const char *ufault_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* UFAULT_UFAULT_H */
