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
 *  - Option structs (ufault_config, ufault_source, ufault_stats) start with
 *    a size field so they can grow; each has a *_SIZE_VER0 macro, the
 *    smallest size any release accepts.
 *  - What each call blocks on, which locks it takes, what callbacks may do
 *    and what a child process may do: "Threads, callbacks and fork" below,
 *    and ufault(7).
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
#define UFAULT_VERSION_MINOR 8
#define UFAULT_VERSION_PATCH 0

/** Opaque: one address space handled by ufault (the mm_struct). */
struct ufault_ctx;
/** Opaque: one registered range with one source (the VMA). */
struct ufault_region;

/**
 * enum ufault_lock_mode - how faults and proxies synchronise (ufault(7)).
 * @UFAULT_LOCK_DEFAULT: $UFAULT_LOCK_MODE if set and non-empty (an invalid
 *                       value makes ufault_ctx_create() fail with -EINVAL;
 *                       an empty value counts as unset), else spec.
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
 *                The smallest accepted is UFAULT_CONFIG_SIZE_VER0 (the
 *                struct of release 0.1); anything smaller is -EINVAL.
 * @nr_workers:   worker threads; 0 means one per uffd (nr_uffds). One
 *                worker keeps many asynchronous fills in flight, and extra
 *                workers on one uffd mostly add wake-ups (BENCHMARKS.md);
 *                a synchronous callback that blocks (e.g. pread) holds its
 *                worker for its length, so give those more workers.
 * @nr_uffds:     userfaultfds the regions are spread over (round robin at
 *                registration); worker i reads uffd i % nr_uffds, with no
 *                dispatcher in between. 0 means 1. Clamped to nr_workers.
 * @lock_mode:    see enum ufault_lock_mode.
 * @batch:        uffd messages read per read(2); 0 means 64.
 * @max_page_size: largest region page size this context accepts (it sizes
 *                the per-worker bounce buffers); 0 means 2 MiB.
 * @log_fn, @log_arg: where log lines go; NULL means stderr. The callback
 *                may run on any thread, including inside a ufault call and
 *                under ufault's locks (see "Threads, callbacks and fork"):
 *                it must not call ufault functions on the same context and
 *                should not block.
 * @max_inflight: fills a worker keeps in flight at once (asynchronous
 *                sources; a synchronous fill occupies one for its length);
 *                0 means 64. When all are taken the worker stops reading its
 *                uffd: the kernel queues further faults (back-pressure, no
 *                memory growth). Each costs max_page_size of address space
 *                for its buffer (mapped MAP_NORESERVE, touched on use).
 * @fault_around_max: the largest fault-around window, in bytes (a
 *                multiple of the system page, at most max_page_size); 0 or
 *                anything up to a region's page size means none. A fault at
 *                the page right after the previous window of its region
 *                (sequential access) fills and installs a window twice as
 *                large, up to this; any other fault shrinks it back to one
 *                region page. A window never crosses the region's end, never
 *                overwrites a page already there, and falls back to one
 *                page where it would cross a VMA boundary. Default 0.
 * @dirty_tracking: how write-back regions (UFAULT_REGION_WRITEBACK) find
 *                their written pages; see enum ufault_dirty_mode. Default
 *                UFAULT_DIRTY_AUTO. (Since 0.4.)
 * @log_level:    the most verbose level passed on; default UFAULT_LOG_WARN.
 *                $UFAULT_LOG (error, warn, info, debug) overrides it; any
 *                other non-empty value is reported (a warning) and ignored.
 */
/**
 * enum ufault_dirty_mode - how written pages of write-back regions are found.
 * @UFAULT_DIRTY_AUTO:  ASYNC where the kernel has UFFD_FEATURE_WP_ASYNC and
 *                      the PAGEMAP_SCAN ioctl (Linux 6.7), else SYNC.
 * @UFAULT_DIRTY_ASYNC: the kernel resolves write-protect faults itself and
 *                      records the page as written; ufault_flush() finds
 *                      and re-protects written pages in one PAGEMAP_SCAN
 *                      call (PM_SCAN_WP_MATCHING). A write costs nothing
 *                      extra. ufault_ctx_create() fails with -EOPNOTSUPP
 *                      where the kernel lacks it.
 * @UFAULT_DIRTY_SYNC:  the first write to a clean page is a write-protect
 *                      fault that a worker resolves (UFFDIO_WRITEPROTECT,
 *                      one round trip); ufault_flush() finds the pages no
 *                      longer protected (PAGEMAP_SCAN, or /proc/self/pagemap
 *                      on kernels before 6.7) and protects them again.
 * ufault_ctx_features() includes UFFD_FEATURE_WP_ASYNC when ASYNC is in
 * effect.
 */
enum ufault_dirty_mode {
	UFAULT_DIRTY_AUTO = 0,
	UFAULT_DIRTY_ASYNC,
	UFAULT_DIRTY_SYNC,
};

/* A range [start, end) of a foreign context's owner that reads as zeros. */
struct ufault_zeroed {
	uint64_t start, end;
};

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
	size_t max_inflight;		       /* since 0.2 */
	size_t fault_around_max;	       /* since 0.2 */
	enum ufault_dirty_mode dirty_tracking; /* since 0.4 */
	/*
	 * Since 0.5: serve another process's userfaultfd (a "foreign"
	 * context, as ufaultd serves its clients). @foreign_uffd >= 0 is a
	 * uffd its creator opened, set up with UFFDIO_API (enabling
	 * @foreign_features) and registered itself; the context keeps a
	 * dup(2) of it (the caller's fd stays the caller's) as its only uffd.
	 * Its regions (ufault_region_register()) describe ranges of that
	 * process: nothing is registered with the kernel, and no proxy call
	 * is available (-EOPNOTSUPP). Write-back regions, flushes and budgets
	 * work in the owner's shared memory only
	 * (ufault_region_register_shared(), since 0.7; elsewhere a
	 * write-back region is -EOPNOTSUPP). Events the
	 * creator enabled are handled: UFFD_EVENT_REMOVE and UFFD_EVENT_UNMAP
	 * make the range read as zeros from then on (a balloon; not in
	 * shared memory, where the memfd keeps the pages); with
	 * UFFD_EVENT_FORK, @on_fork gets the child's uffd (which it owns:
	 * without @on_fork it is closed, and the child's faults on it fall
	 * back to the kernel); UFFD_EVENT_REMAP moves no region: the moved
	 * range is unregistered (it reads as anonymous memory there). A fault
	 * in no region waits (retried every few milliseconds, not spun) until
	 * a region covers it: the creator may register its memory with the
	 * kernel, and fault, before it tells the context. The context sets
	 * O_NONBLOCK on the uffd (a flag of the open file: the creator's copy
	 * shares it). -1 (the default): an ordinary context.
	 */
	int foreign_uffd;
	uint64_t foreign_features;
	void (*on_fork)(void *arg, int child_uffd);
	void *on_fork_arg;
	/*
	 * Since 0.6, foreign contexts only (-EINVAL otherwise): @on_remove
	 * hears each range [start, end) the owner removed or unmapped, on the
	 * worker that read the event, before any fault is resolved there
	 * (with zeros from then on), so a record of them kept elsewhere is
	 * never behind what a fault saw. It may block briefly (installs wait)
	 * and must not call into the context. @zeroed: @nr_zeroed ranges that
	 * read as zeros from the start (what @on_remove heard while another
	 * context served the same uffd, or its parent's at a fork); copied.
	 */
	void (*on_remove)(void *arg, uint64_t start, uint64_t end);
	void *on_remove_arg;
	const struct ufault_zeroed *zeroed;
	unsigned int nr_zeroed;
};

/* sizeof(struct ufault_config) in release 0.1: the smallest accepted. */
#define UFAULT_CONFIG_SIZE_VER0 56

/** ufault_config_init() - fill @cfg with the defaults. Never fails. */
UFAULT_API void ufault_config_init(struct ufault_config *cfg);

/**
 * ufault_ctx_create() - open userfaultfd(s), negotiate features, start workers.
 * @out: receives the context.
 * @cfg: options, or NULL for the defaults.
 *
 * May block (thread creation). Errors: -EINVAL (bad option or struct size),
 * -ENOSYS/-EPERM (no userfaultfd available to this process), -ENOMEM,
 * -EAGAIN (thread creation). The context belongs to the calling process: a
 * child made by fork(2) may not use it (every call fails with -ECHILD).
 */
UFAULT_API int ufault_ctx_create(struct ufault_ctx **out, const struct ufault_config *cfg);

/**
 * ufault_ctx_destroy() - unregister every region, wake every thread parked in
 * a fault on them, stop and join the workers, close the uffds, free all.
 *
 * A thread that touches a former region afterwards gets ordinary kernel
 * behaviour (an anonymous page) rather than hanging. Waits for fills already
 * running in a worker to return, then calls every pending source release
 * hook. Must not be called from a source callback, nor while another thread
 * is inside any call on @ctx; @ctx is invalid afterwards.
 *
 * In a child process (fork(2) after ufault_ctx_create()), it releases only
 * the child's copies of ufault's memory and file descriptors: the parent's
 * regions, workers and uffds are untouched and no release hook runs. This is
 * what an atexit handler or a C++ static destructor in the child does.
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
	UFAULT_SOURCE_ASYNC,	/* a user function starts a fill, completed later */
	UFAULT_SOURCE_FILE,	/* a file, read through the worker's io_uring */
	UFAULT_SOURCE_NBD,	/* an NBD export, read with libnbd's asynchronous API */
	UFAULT_SOURCE_MEMFD,	/* a shared page cache (memfd), mapped without a copy */
};

/* File source flags. */
#define UFAULT_FILE_DIRECT (1u << 0) /* read with O_DIRECT (a private reopen of the fd) */

/**
 * ufault_fill_fn - produce @len bytes of source data at source @offset.
 * @arg:    the callback's argument.
 * @offset: byte offset in the source (the region's source offset plus the
 *          page's distance from the region start).
 * @buf:    bounce buffer of @len bytes; not registered memory.
 * @len:    whole region pages: one, or a fault-around window of several.
 *
 * Runs on a worker thread. Locks held while it runs, by lock mode:
 * spec: none; region: the region's read lock; range: the faulting page's
 * range read lock; global: the global read lock. It may sleep (a slow fill
 * delays only faults that need the same worker, and in region, range and
 * global mode the proxies that wait for that lock). It must not call
 * ufault_region_register(), ufault_region_unregister(), a proxy or
 * ufault_ctx_destroy() on the same context: in region, range and global
 * mode that deadlocks, and in spec mode a mremap would wait for this
 * worker. ufault_stats(), ufault_stats_histogram() and the ufault_ctx_*
 * getters are allowed. Return 0 or a negative errno; a
 * failure applies the region's error policy to the faulting page.
 */
typedef int (*ufault_fill_fn)(void *arg, uint64_t offset, void *buf, size_t len);

/**
 * typedef ufault_writeback_fn - store @len bytes of @buf at source offset
 * @offset (a write-back region's written pages; see ufault_flush()). Runs
 * on the thread that flushes (ufault_flush(), or the ufault_munmap() /
 * ufault_region_unregister() of the region), holding the lock mode's read
 * lock over the range flushed (spec and region: none); the same rules as
 * ufault_fill_fn on what it may call. Return 0 once the bytes are durable
 * as the caller's storage defines it, or a negative errno: ufault_flush()
 * returns it and the pages stay written (a later flush tries again).
 */
typedef int (*ufault_writeback_fn)(void *arg, uint64_t offset, const void *buf, size_t len);

/**
 * typedef ufault_discard_fn - the bytes at source offsets [@offset,
 * @offset + @len) are no longer any region's (since 0.8): the application
 * unmapped them (ufault_munmap(), a shrinking ufault_mremap(), the
 * destination of ufault_mremap(MREMAP_FIXED)) or dropped them
 * (ufault_madvise() with MADV_DONTNEED, MADV_DONTNEED_LOCKED, MADV_FREE or
 * MADV_REMOVE). A source that keeps what write-back gave it (a swap) can
 * forget it: the next fill of those offsets, if a region grows over them
 * again, should give what a fresh mapping would. Runs on the thread of that
 * call, after the kernel's, holding the lock mode's write lock over the
 * range (every lock mode: no fill or eviction of the range runs meanwhile);
 * it must not block for long, nor call ufault functions.
 */
typedef void (*ufault_discard_fn)(void *arg, uint64_t offset, uint64_t len);

/** Opaque: one asynchronous fill in flight; ufault_complete() ends it. */
struct ufault_completion;

/**
 * ufault_fill_async_fn - start producing @len bytes of source data at source
 * @offset into @buf, and call ufault_complete(@c, result) once they are
 * there (or the fill failed), from any thread, exactly once. It may also
 * complete before it returns.
 *
 * Runs on a worker, which goes on with other faults while the fill is in
 * flight: the user's own I/O (an RPC client, a remote store) fills many
 * pages at once. @buf stays valid, and nothing else writes it, until the
 * completion. Locks held until the completion, by lock mode: spec: none;
 * region: the region's read lock; range: the page's range read lock;
 * global: the global read lock (so a proxy over that range waits for the
 * completion). What it may call: as ufault_fill_fn; ufault_complete() may
 * be called from anywhere, including from inside this function.
 *
 * Return 0 when the fill was started (ufault_complete() will follow), or a
 * negative errno when it could not be started (then ufault_complete() must
 * not be called, and the region's error policy applies).
 */
typedef int (*ufault_fill_async_fn)(void *arg, uint64_t offset, void *buf, size_t len,
				    struct ufault_completion *c);

/**
 * ufault_complete() - end an asynchronous fill. @result: 0 (the bytes are in
 * the buffer) or a negative errno (the region's error policy applies; a
 * positive value counts as -EIO). Callable from any thread, never blocks;
 * @c is invalid afterwards. ufault_ctx_destroy() waits for the completion
 * of every fill that was started.
 */
UFAULT_API void ufault_complete(struct ufault_completion *c, int result);

/**
 * ufault_release_fn - a source is no longer used by ufault.
 * @arg: the source's @release_arg.
 *
 * Called once for each successful registration (ufault_region_register(),
 * or a ufault_mmap() given a source) when no region made from it is left
 * and no fill can touch it any more: after every region piece made from it
 * was unregistered, unmapped or replaced, and every fill that looked it up
 * has returned. From then on the caller may free the callback's argument or
 * the snapshot buffer. It runs on a ufault thread with no ufault lock held:
 * a worker, or any thread inside a ufault call on the context once that
 * call has released its locks (ufault_region_unregister() itself included),
 * or ufault_ctx_destroy(). It must not call ufault functions on the same
 * context.
 * Not called when the registration failed, nor in a child process.
 */
typedef void (*ufault_release_fn)(void *arg);

/**
 * struct ufault_source - where a region's bytes come from.
 * @size:   sizeof(struct ufault_source), set by ufault_source_init(); at
 *          least UFAULT_SOURCE_SIZE_VER0, at most this library's size
 *          (-EINVAL otherwise). Lets new source types add fields.
 * @type:   see enum ufault_source_type.
 * @offset: source offset of the region's first byte.
 * @release, @release_arg: optional release hook (see ufault_release_fn).
 * @snapshot.data, @snapshot.len: SNAPSHOT: a buffer the caller keeps alive
 *          and unchanged until the release hook runs (or, without one,
 *          until ufault_ctx_destroy() returns); it must not itself be
 *          registered memory. Bytes past @len read as zeros.
 * @callback.fill, @callback.arg: CALLBACK; @arg stays valid until the
 *          release hook runs (or ufault_ctx_destroy() returns).
 *          @callback.writeback (since 0.4; may be NULL): where a write-back
 *          region's written pages go (UFAULT_REGION_WRITEBACK needs it).
 *          @callback.discard (since 0.8; may be NULL): told when the
 *          application unmaps or drops part of a region (ufault_discard_fn).
 * @async.fill, @async.arg: ASYNC, likewise.
 * @file.fd, @file.flags: FILE: an open file (regular or block device),
 *          readable; ufault duplicates it at registration (the caller may
 *          close its own; the duplicate is closed when the source is
 *          released). The region's byte at source offset o is the file's
 *          byte at o, read asynchronously (IORING_OP_READ on the faulting
 *          worker's ring, many in flight); bytes past the end of the file
 *          read as zeros; a read error applies the region's error policy.
 *          The mapping is private: writes stay in memory, unless the region
 *          is UFAULT_REGION_WRITEBACK (then @fd must be open read-write and
 *          ufault_flush() writes them to the file). UFAULT_FILE_DIRECT
 *          reads with O_DIRECT (a reopen through /proc/self/fd, so the
 *          caller's file is untouched; needs @offset aligned to the system
 *          page).
 * @nbd.uri: NBD: an NBD URI ("nbd+unix:///export?socket=/path",
 *          "nbd://host:port/export"; see nbd_connect_uri(3)), copied at
 *          registration. The region's byte at source offset o is the
 *          export's byte at o, read asynchronously (one NBD read per fill,
 *          many in flight on one connection per source); bytes past the end
 *          of the export read as zeros; a read error, or a server that goes
 *          away, applies the region's error policy to the pages concerned
 *          (never a hang). The registration connects, blocking the calling
 *          thread until the server answers: a NULL or unparsable URI fails
 *          it with -EINVAL, a server that cannot be reached with its errno
 *          (-ECONNREFUSED, -ENOENT, ...). The connection is closed when the
 *          source is released; each registration has its own. The mapping
 *          is private: writes stay in memory, the export is never written,
 *          unless the region is UFAULT_REGION_WRITEBACK (a writable
 *          export: ufault_flush() sends NBD writes, then an NBD flush).
 * @memfd.fd, @memfd.from: MEMFD: a shared page cache. @fd is a memfd (or a
 *          tmpfs file, e.g. in /dev/shm; not hugetlbfs) open read-write,
 *          sized with ftruncate(2) before the registration (its size then
 *          bounds the regions made from it: -EINVAL past it). The range
 *          must be a MAP_PRIVATE mapping of it at file offset @offset,
 *          made by the caller (-EINVAL otherwise); ufault_mmap() does not
 *          take this source. A page already in the memfd's page cache is
 *          mapped with UFFDIO_CONTINUE, without a copy; a page missing from
 *          it is filled once, from @from (any other source type, copied
 *          at registration and read at its own @offset plus the memfd
 *          offset; NULL: zeros), put in the page cache, then mapped. So
 *          any number of regions, in this process or others (each with its
 *          own context), share one copy of what was read: the first touch
 *          of a page anywhere fills it, every later one maps it. Writes are
 *          private to the mapping (the kernel's copy-on-write); the page
 *          cache keeps what the source gave. Every mapping of the memfd
 *          must be a ufault region, or the pages filled beforehand: a plain
 *          mapping that reads a missing page puts zeros in the page cache.
 *          ufault keeps its own mapping of the memfd (the caller may close
 *          @fd); @from's release hook is not called, this source's is.
 *          Needs UFFD_FEATURE_MINOR_SHMEM (Linux 5.14):
 *          -EOPNOTSUPP (logged) without it. ufault_mmap(MAP_FIXED) over
 *          a memfd region fails with EINVAL (unmap or unregister it first).
 *
 * The struct is copied at registration.
 */
struct ufault_source {
	size_t size;
	enum ufault_source_type type;
	uint64_t offset;
	ufault_release_fn release;
	void *release_arg;
	union {
		struct {
			const void *data;
			size_t len;
		} snapshot;
		struct {
			ufault_fill_fn fill;
			void *arg;
			ufault_writeback_fn writeback; /* since 0.4 */
			ufault_discard_fn discard;     /* since 0.8 */
		} callback;
		struct {
			ufault_fill_async_fn fill;
			void *arg;
		} async;
		struct {
			int fd;
			unsigned int flags;
		} file;
		struct {
			const char *uri;
		} nbd;
		struct {
			int fd;
			const struct ufault_source *from;
		} memfd;
	};
};

/* sizeof(struct ufault_source) in release 0.2: the smallest accepted. */
#define UFAULT_SOURCE_SIZE_VER0 56

/**
 * ufault_source_init() - zero @src and set its size and @type. Never fails
 * (a NULL @src is ignored).
 */
UFAULT_API void ufault_source_init(struct ufault_source *src, enum ufault_source_type type);

/* ------------------------------------------------------------------ */
/* Regions                                                              */
/* ------------------------------------------------------------------ */

/** Region flags. Error policy when the source fails: */
#define UFAULT_REGION_ON_ERROR_SIGBUS 0u      /* default: UFFDIO_POISON, the thread gets SIGBUS */
#define UFAULT_REGION_ON_ERROR_ZERO (1u << 0) /* install zeros and go on */
/*
 * Write-back (since 0.4): writes to the region are tracked (see enum
 * ufault_dirty_mode) and go back to the source: ufault_flush() writes every
 * written page to it, and ufault_munmap() / ufault_region_unregister() of
 * the region flush it first (their error, if the flush fails, leaves the
 * region in place). Only FILE sources opened read-write, CALLBACK sources
 * with a writeback function and NBD sources of a writable export (NBD
 * writes, then an NBD flush) take it (-EINVAL otherwise).
 * ufault_madvise(MADV_DONTNEED) on it discards the writes of the range that
 * were not flushed, as on a MAP_PRIVATE file mapping: the way to drop
 * changes instead of writing them back before an unmap.
 */
#define UFAULT_REGION_WRITEBACK (1u << 1)
/*
 * With UFAULT_REGION_WRITEBACK (since 0.4): ufault_munmap(),
 * ufault_region_unregister() and ufault_ctx_destroy() discard the region's
 * writes that were not flushed instead of flushing them first (a scratch
 * or temporary mapping whose source should keep what it had).
 * ufault_flush() and eviction under a budget still write pages back.
 * MAP_FIXED over the region is refused as for any write-back region.
 */
#define UFAULT_REGION_DISCARD (1u << 2)
/*
 * Region page size, as log2 in the top bits (like MAP_HUGE_SHIFT): every
 * fault fills and installs one whole region page. 0 means the system page.
 * Example: UFAULT_REGION_PAGE_SHIFT(16) for 64 KiB pages.
 */
#define UFAULT_REGION_PAGE_SHIFT_BIT 26
#define UFAULT_REGION_PAGE_SHIFT(s) ((unsigned int)(s) << UFAULT_REGION_PAGE_SHIFT_BIT)
#define UFAULT_REGION_FLAGS_MASK                                                                   \
	(UFAULT_REGION_ON_ERROR_ZERO | UFAULT_REGION_WRITEBACK | UFAULT_REGION_DISCARD |           \
	 (63u << UFAULT_REGION_PAGE_SHIFT_BIT))

/**
 * ufault_region_register() - hand [@addr, @addr + @len) to ufault.
 * @ctx:   the context.
 * @addr:  start, aligned to the region page size.
 * @len:   length, a non-zero multiple of the region page size.
 * @src:   the source (copied); its release hook runs once the region and
 *         every piece split from it are gone.
 * @flags: UFAULT_REGION_* flags.
 * @out:   receives the region handle (may be NULL): an opaque token, not a
 *         pointer to memory. A stale handle (its region gone, even if
 *         another region now has the same range) or a forged one is refused
 *         with -ENOENT; it never names another region.
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
 * context's region), -ECHILD (called in a child process).
 */
UFAULT_API int ufault_region_register(struct ufault_ctx *ctx, void *addr, size_t len,
				      const struct ufault_source *src, unsigned int flags,
				      struct ufault_region **out);

/**
 * ufault_region_register_shared() - (since 0.7) ufault_region_register() for
 * a foreign context (ufault_config.foreign_uffd) whose owner maps
 * [@addr, @addr + @len) MAP_SHARED from @mem_fd at @mem_offset: a memfd or
 * tmpfs file open read-write, at least @mem_offset + @len bytes long, of
 * which the context keeps a dup. Pages are the system page. Filled pages
 * go into @mem_fd's page cache (UFFDIO_COPY), so holding it is holding the
 * owner's memory: with UFAULT_REGION_WRITEBACK, the region is written back
 * and evicted under ufault_ctx_set_budget() and ufault_region_set_budget()
 * without any access to the owner's address space.
 *
 * Written, there, means different from the source: a page's bytes (read
 * from @mem_fd) are compared with the source's (FILE sources; others are
 * always stored) and stored if they differ. Eviction write-protects the
 * page in the owner (a write waits, never lost), stores it, punches it out
 * of @mem_fd, which unmaps it in the owner, and unprotects it: the next
 * touch is a missing fault, filled from the source. ufault_flush(),
 * ufault_region_unregister() and ufault_ctx_destroy() store every resident
 * page that differs (a page written during the flush may be stored either
 * way; the next flush or eviction compares it again). For that the owner
 * registers the range with UFFDIO_REGISTER_MODE_MISSING |
 * UFFDIO_REGISTER_MODE_WP on a uffd set up with
 * UFFD_FEATURE_WP_HUGETLBFS_SHMEM and without UFFD_FEATURE_WP_ASYNC (both
 * checked here: -EOPNOTSUPP). Without UFAULT_REGION_WRITEBACK the region is
 * filled as any other. UFFD_EVENT_REMOVE and UFFD_EVENT_UNMAP do not make
 * it read zeros: a page the owner dropped is still in @mem_fd, and a hole
 * (MADV_REMOVE) is filled from the source again, as a MAP_SHARED file
 * mapping would read it.
 *
 * Errors: as ufault_region_register(), and -EOPNOTSUPP (not a foreign
 * context; the uffd's features), -EINVAL (@mem_fd, @mem_offset, a region
 * page other than the system page).
 */
UFAULT_API int ufault_region_register_shared(struct ufault_ctx *ctx, void *addr, size_t len,
					     const struct ufault_source *src, unsigned int flags,
					     int mem_fd, uint64_t mem_offset,
					     struct ufault_region **out);

/**
 * ufault_region_unregister() - stop handling @region. Threads parked on it
 * are woken and from then on get ordinary kernel behaviour. The handle is
 * invalid afterwards. A proxy call that changes a region (munmap of part of
 * it, mremap) retires its handle too: unregister then returns -ENOENT.
 * May return before the source's release hook runs (the hook waits for
 * fills in flight). Takes the range lock (the global lock in global mode), the tree
 * lock and the region's write lock; may block.
 * Errors: -EINVAL (NULL), -ENOENT (not a live region of @ctx), -ECHILD.
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
 * (e.g. madvise flags, mlock: their old pages are dropped with
 * MADV_DONTNEED_LOCKED where the kernel has it). Fails with EINVAL if an
 * old region's boundary would split a page of the new region, and with
 * EBUSY if the range overlaps a region of another context of this process.
 *
 * Returns the address, or MAP_FAILED with errno set; a failure leaves
 * regions, contents and protections as they were, except that (as with
 * mmap(2)) a failed MAP_FIXED may leave the parts that were not ufault
 * memory unmapped. The old regions' pages are dropped before the
 * protection changes: if mprotect(2) itself then fails (ENOMEM: the map
 * count limit), the protection is as it was, and those pages are filled
 * again from the old source (writes the application made to them are lost,
 * as with MADV_DONTNEED).
 */
UFAULT_API void *ufault_mmap(struct ufault_ctx *ctx, void *addr, size_t len, int prot, int flags,
			     const struct ufault_source *src, unsigned int region_flags);

/**
 * ufault_munmap() - munmap(2) that also retires the regions it covers; a
 * region partly covered is split and its remaining parts keep their source
 * offsets. Holes and non-ufault mappings in the range are unmapped as by
 * munmap(2). A range that would cut a region page fails with EINVAL; one
 * overlapping a region of another context of this process fails with EBUSY
 * (detected for regions that exist when the call starts: a concurrent
 * registration in another context is not ordered with it). A length that
 * wraps around the address space is EINVAL. Returns 0, or -1 with errno.
 */
UFAULT_API int ufault_munmap(struct ufault_ctx *ctx, void *addr, size_t len);

/**
 * ufault_mremap() - mremap(2) of whole region pages inside one region
 * (grow, shrink, move: MREMAP_MAYMOVE, MREMAP_FIXED; MREMAP_DONTUNMAP is not
 * supported). The region follows the memory; pages added by growing fill
 * from the source at the matching offsets; with MREMAP_FIXED, regions under
 * the destination are unmapped first. A range that is not inside one region
 * fails with EINVAL. The destination is always aligned to the region page:
 * MREMAP_FIXED to an unaligned @new_addr fails with EINVAL, and a move the
 * kernel places (MREMAP_MAYMOVE alone) goes to an aligned address ufault
 * reserves first.
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

/**
 * ufault_mprotect() - mprotect(2) under the lock mode's write lock. A range
 * that would cut a region page (start or end inside one) fails with EINVAL:
 * the kernel would split the VMA inside a page ufault installs whole.
 */
UFAULT_API int ufault_mprotect(struct ufault_ctx *ctx, void *addr, size_t len, int prot);

/**
 * ufault_madvise() - madvise(2) under the lock mode's write lock. On a
 * region, MADV_DONTNEED drops pages so that the next touch fills them again
 * from the source (writes to them are lost, as for private anonymous memory).
 * A range that would cut a region page fails with EINVAL, as for
 * ufault_mprotect().
 */
UFAULT_API int ufault_madvise(struct ufault_ctx *ctx, void *addr, size_t len, int advice);

/**
 * ufault_prefetch() - have [@addr, @addr + @len) filled in the background,
 * ahead of the faults that would fill it. Returns at once: the range is
 * queued, and workers fill and install its missing pages (from the
 * regions' sources, pages already there are skipped) when they have
 * requests to spare, so a prefetch never delays a fault. Best effort: a
 * page of the range that is not in a region, or whose region changes
 * meanwhile, is skipped; the range is rounded out to system pages.
 * Errors: -EINVAL (NULL, empty or wrapping range), -EAGAIN (the queue of
 * ranges, 256 long, is full: try again later), -ECHILD.
 */
UFAULT_API int ufault_prefetch(struct ufault_ctx *ctx, void *addr, size_t len);

/**
 * enum ufault_evict_policy - which resident page a memory budget evicts.
 * @UFAULT_EVICT_2Q:   the default: 2Q (Johnson and Shasha, VLDB 1994) fed
 *                     by fault history, the only access history a fault
 *                     handler sees. A page faulted in for the first time
 *                     enters a FIFO probation queue (a quarter of the
 *                     budget); evicted from it, its address is remembered
 *                     (a ghost list as long as the budget). A page that
 *                     faults again while remembered was wanted again soon:
 *                     it enters the main queue (the rest of the budget),
 *                     evicted only once probation is within its share.
 *                     One-touch pages (scans) never displace pages that
 *                     proved hot.
 * @UFAULT_EVICT_FIFO: first in, first out (LLNL umap's policy), the
 *                     reference.
 */
enum ufault_evict_policy {
	UFAULT_EVICT_2Q = 0,
	UFAULT_EVICT_FIFO,
};

/**
 * struct ufault_budget - a memory budget (since 0.4).
 * @size:     sizeof(struct ufault_budget).
 * @bytes:    the most memory the context's write-back regions
 *            (UFAULT_REGION_WRITEBACK) keep resident; 0: no budget.
 *            Other regions are never evicted (their writes could not be
 *            kept).
 * @high_pct, @low_pct: watermarks, in percent of @bytes: eviction starts
 *            when the resident pages reach @high_pct and stops at
 *            @low_pct. 0 and 0 mean 100 and 90; otherwise
 *            0 < @low_pct < @high_pct <= 100.
 * @policy:   see enum ufault_evict_policy.
 */
struct ufault_budget {
	size_t size;
	size_t bytes;
	unsigned int high_pct;
	unsigned int low_pct;
	enum ufault_evict_policy policy;
};

/**
 * ufault_ctx_set_budget() - set, change or remove (@b->bytes 0) the
 * context's memory budget, while it runs. Eviction runs in one evictor
 * thread per context (started by the first budget): it picks victims by
 * the policy, writes back the written ones (the page is taken out of the
 * region with UFFDIO_MOVE first, so a write racing with its eviction is
 * never lost) and frees them. A fault on a page being evicted waits for
 * that one write-back, never longer. Pages are counted when ufault
 * installs them; a budget set later counts pages faulted in from then on.
 * The change is in force when the call returns (since 0.8): the evictor
 * has finished the eviction it was in and evicts by the new budget only
 * (after a removal, nothing more). Needs UFFD_FEATURE_MOVE (Linux 6.8): -EOPNOTSUPP without it. Errors:
 * -EINVAL (NULL, bad size or watermarks, unknown policy), -ECHILD,
 * -ENOMEM, -EAGAIN (thread creation); a failed call changes nothing.
 */
UFAULT_API int ufault_ctx_set_budget(struct ufault_ctx *ctx, const struct ufault_budget *b);

/**
 * ufault_region_set_budget() - set, change or remove (@b->bytes 0) a budget
 * of its own for the write-back region holding @addr, while it runs. The
 * budget belongs to the region's registration: the pieces ufault_munmap()
 * splits from it share it, and it follows ufault_mremap(); it goes with
 * the last piece. The region's resident pages count against its own
 * budget (evicted, by @b->policy, between @b's watermarks) and against
 * the context's, if one is set (ufault_ctx_set_budget(): over it, the
 * evictor takes pages of regions without a budget of their own first,
 * then from the region with the most resident). A budget set later counts
 * pages faulted in from then on; removed, the region's pages count in the
 * context's budget again. At most 63 registrations have one at a time.
 * Errors: -EINVAL (NULL, bad size or watermarks, unknown policy; @addr in
 * a region without UFAULT_REGION_WRITEBACK), -ENOENT (no region of @ctx
 * at @addr), -ENOSPC (63 regions have a budget), -EOPNOTSUPP (as
 * ufault_ctx_set_budget()), -ECHILD, -ENOMEM, -EAGAIN; a failed call
 * changes nothing. Takes the range lock (the global lock) over @addr's
 * page as a reader: waits for proxies there.
 */
UFAULT_API int ufault_region_set_budget(struct ufault_ctx *ctx, void *addr,
					const struct ufault_budget *b);

/**
 * ufault_flush() - like msync(MS_SYNC): returns once every page of the
 * write-back regions (UFAULT_REGION_WRITEBACK) in [@addr, @addr + @len)
 * that was written before the call is stored in its source (FILE: written
 * through io_uring, then fdatasync(2); CALLBACK: its writeback function
 * returned 0; NBD: NBD writes, then an NBD flush). Pages written while the
 * flush runs stay written (the next flush takes them); a page written while
 * its own write-back is in flight is written again by the next flush, never
 * lost. Other memory in the range is ignored. Holds the lock mode's read lock over the range (spec
 * and region: none) while it writes. Errors: -EINVAL (NULL @ctx, empty or
 * wrapping range), -ECHILD, or the first write or sync error (-EIO,
 * -ENOSPC, ...): the pages whose write-back failed stay written, the others
 * are clean. 0 when nothing was written.
 */
UFAULT_API int ufault_flush(struct ufault_ctx *ctx, void *addr, size_t len);

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

/**
 * struct ufault_stats - counters merged from every worker.
 * @size:           sizeof(struct ufault_stats), set by the caller: at least
 *                  UFAULT_STATS_SIZE_VER0. An older, smaller struct gets the
 *                  fields it has; a newer, larger one gets ours and zeros.
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
 * @joined:         faults on a page whose fill was already in flight, which
 *                  waited for that fill instead of starting another.
 * @fault_around_pages: system pages installed ahead of a fault by
 *                  fault-around (not counting the faulting region page).
 * @fault_around_wasted: of those, pages of windows whose sequential run
 *                  stopped (the next fault of the region was elsewhere):
 *                  an upper bound of the pages filled for nothing, since
 *                  the program may still touch them later.
 * @prefetched:     prefetch fills started (ufault_prefetch()).
 * @cache_filled:   memfd sources: system pages this context put in the
 *                  shared page cache (read from the inner source once).
 * @cache_mapped:   memfd sources: system pages mapped from the page cache
 *                  with no fill and no copy (filled earlier, by anyone).
 * @wp_faults:      write-back regions, UFAULT_DIRTY_SYNC: write-protect
 *                  faults resolved by the workers (first writes to clean
 *                  pages).
 * @written_back:   write-back regions: system pages stored in their source
 *                  by flushes.
 * @evicted, @evicted_dirty: memory budget: system pages evicted, and of
 *                  those, written back first (the others were clean).
 * @refaults:       memory budget: faults on pages evicted not long before
 *                  (found in the ghost list: the policy's misses).
 * @resident:       memory budget: system pages of write-back regions the
 *                  evictor counts as resident now.
 * @latency_p50_ns, @latency_p99_ns: worker-side resolution time, from the
 *                  message read to the install (a deferred fault counts
 *                  from its first read), from the histogram (bucket
 *                  midpoints); the histogram itself: ufault_stats_histogram().
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
	uint64_t latency_p50_ns;
	uint64_t latency_p99_ns;
	uint64_t joined;
	uint64_t fault_around_pages;
	uint64_t fault_around_wasted;
	uint64_t prefetched;
	uint64_t cache_filled;	/* since 0.3 */
	uint64_t cache_mapped;	/* since 0.3 */
	uint64_t wp_faults;	/* since 0.4 */
	uint64_t written_back;	/* since 0.4 */
	uint64_t evicted;	/* since 0.4 */
	uint64_t evicted_dirty; /* since 0.4 */
	uint64_t refaults;	/* since 0.4 */
	uint64_t resident;	/* since 0.4 */
};

/* sizeof(struct ufault_stats) in release 0.2: the smallest accepted. */
#define UFAULT_STATS_SIZE_VER0 160

/**
 * ufault_stats() - merge the per-worker counters into @out. Lock-free with
 * respect to the fault path; counters are monotonic but not a snapshot taken
 * at one instant. Errors: -EINVAL (NULL, or @out->size too small), -ECHILD.
 */
UFAULT_API int ufault_stats(struct ufault_ctx *ctx, struct ufault_stats *out);

/**
 * ufault_stats_histogram() - the latency histogram (resolution time per
 * fault, as for @latency_p50_ns), merged from every worker.
 * @buckets: receives min(@nr, number of buckets) counts; may be NULL if @nr
 *           is 0.
 * Buckets are log-linear: 32 per power of two of nanoseconds (about 3%
 * wide); ufault_stats_bucket_ns() gives a bucket's lower bound and
 * ufault_stats_bucket_of() the bucket of a duration. Returns the number of
 * buckets the library has (call with @nr 0 to size @buckets), or -EINVAL,
 * -ECHILD. -EINVAL: @ctx NULL, or @buckets NULL with @nr > 0.
 */
UFAULT_API int ufault_stats_histogram(struct ufault_ctx *ctx, uint64_t *buckets, unsigned int nr);

/** Lower bound in nanoseconds of histogram bucket @i (UINT64_MAX past the last). */
UFAULT_API uint64_t ufault_stats_bucket_ns(unsigned int i);

/** The histogram bucket that a duration of @ns nanoseconds falls in (every
 * 64-bit value has one: the result is always below the bucket count). */
UFAULT_API unsigned int ufault_stats_bucket_of(uint64_t ns);

/**
 * ufault_stats_quantile_ns() - the midpoint of the bucket holding quantile
 * @permille (0..1000; more counts as 1000) of the histogram
 * @buckets[0..@nr); 0 if it is empty or @buckets is NULL.
 * Works on any histogram in ufault's bucketing (e.g. one a program keeps
 * itself with ufault_stats_bucket_of()).
 */
UFAULT_API uint64_t ufault_stats_quantile_ns(const uint64_t *buckets, unsigned int nr,
					     unsigned int permille);

/* ------------------------------------------------------------------ */
/* Threads, callbacks and fork                                          */
/* ------------------------------------------------------------------ */

/*
 * Locks. A context has, in this order (a thread holding one may take only
 * those after it): the range lock (the global rwlock in global mode), the
 * tree lock, region locks, the mremap announcement lock, the reclamation
 * lock, the allocator lock. Proxies hold the range (or global) lock across
 * their system call; the tree lock, region write locks and the others are
 * held only for a few instructions, never across a blocking call. Workers
 * never wait for a lock a proxy may hold across a system call: they
 * try-lock and set the fault aside.
 *
 * Per call:
 *  - ufault_ctx_create(): none of the context's locks; starts threads.
 *  - ufault_ctx_destroy(): every lock in turn; joins the workers, so it
 *    waits for the fills they are running.
 *  - ufault_region_register(), ufault_region_unregister(), ufault_mmap(),
 *    ufault_munmap(), ufault_mremap(): the range lock over the affected
 *    range (global: the global write lock), then briefly the tree lock and
 *    region write locks. They block while faults in region, range or global
 *    mode hold the read side (for the length of one fill) and while other
 *    proxies hold overlapping ranges. ufault_mremap() that moves memory
 *    also waits until a worker has read the kernel's remap event and
 *    finished the batch it read it in.
 *  - ufault_mprotect(), ufault_madvise(): the range (global) write lock.
 *  - ufault_stats(), ufault_stats_histogram() and the ufault_ctx_*
 *    getters: no lock; never block.
 *
 * Writers are never starved: the range lock is FIFO, and the global and
 * region rwlocks prefer writers (a proxy waits for fills in flight, not for
 * faults that arrive after it).
 *
 * Callbacks:
 *  - A fill callback (ufault_fill_fn) runs on a worker, holding the locks
 *    its lock mode says there; it may call ufault_stats(),
 *    ufault_stats_histogram() and the getters, nothing else on its context.
 *  - The log callback may run on any thread, inside any call and under any
 *    of the locks above; it must not call ufault functions on the context.
 *  - A release hook (ufault_release_fn) runs with no ufault lock held and
 *    must not call ufault functions on the context.
 *
 * Fork. Neither the workers nor the uffds' registrations follow a child:
 *  - In a child, every call on a context created by an ancestor fails with
 *    -ECHILD (the proxies: errno ECHILD), except the getters and
 *    ufault_ctx_destroy(), which there frees only the child's copy (see
 *    ufault_ctx_destroy()). A child that wants ufault creates its own
 *    context.
 *  - Regions whose source is not zero are MADV_DONTFORK while handled: the
 *    child has no mapping there (SIGSEGV if touched) instead of zeros in
 *    place of pages never filled. Zero-source regions read correctly.
 */

/* ------------------------------------------------------------------ */
/* ufaultd clients (since 0.5)                                          */
/* ------------------------------------------------------------------ */

/*
 * A process can hand its page faults to ufaultd(8): it opens a
 * userfaultfd, registers its ranges with it itself, and passes the uffd and
 * the backing files to the daemon (include/ufault/protocol.h). It keeps its
 * own copies: if the daemon hangs up, the client reconnects (a restarted
 * daemon resumes serving it), and if none answers within @takeover_ms it
 * serves its faults itself, in-process (a foreign context on its own uffd:
 * see ufault_config.foreign_uffd).
 */
struct ufault_remote;

/**
 * struct ufault_remote_config - options of ufault_remote_connect().
 * @size:        sizeof(struct ufault_remote_config).
 * @socket_path: the daemon's socket; NULL: /run/ufaultd/ufaultd.sock.
 * @takeover_ms: serve in-process once the daemon has been away this long
 *               (0: 2000; UINT_MAX: never, keep waiting for it).
 * @nr_workers:  workers of the in-process context (0: 1).
 */
struct ufault_remote_config {
	size_t size;
	const char *socket_path;
	unsigned int takeover_ms;
	unsigned int nr_workers;
};

UFAULT_API void ufault_remote_config_init(struct ufault_remote_config *cfg);

/**
 * ufault_remote_connect() - open a userfaultfd (with UFFD_FEATURE_POISON,
 * EVENT_REMOVE, EVENT_UNMAP and EVENT_FORK where the kernel has them),
 * connect to the daemon and hand it the uffd. Starts one monitor thread.
 * The handle belongs to the calling process: a child made by fork(2) is
 * served by the daemon through its own uffd, and in the child register and
 * unregister fail with -ECHILD and close only frees the child's copy (see
 * ufault_remote_connect(3), Fork). Errors: -EINVAL,
 * -ENAMETOOLONG, -ENOMEM, the connect(2) error (-ENOENT, -ECONNREFUSED,
 * -EACCES...), the daemon's refusal (-EPERM...), -EAGAIN.
 */
UFAULT_API int ufault_remote_connect(struct ufault_remote **out,
				     const struct ufault_remote_config *cfg);

/**
 * ufault_remote_register() - have [@addr, @addr + @len) of this process
 * (mapped private anonymous memory) filled from @fd at @offset (@fd -1:
 * zeros) by the daemon, in pages of 2^@page_shift bytes (0: the system
 * page). Registers the range with the uffd (mode MISSING), then tells the
 * daemon; keeps a dup of @fd. Touch the range only after it returns.
 * Errors: -EINVAL, -ENOSPC (UFAULT_PROTO_MAX_REGIONS), the kernel's
 * UFFDIO_REGISTER error, the daemon's refusal (-EEXIST: overlaps another
 * region...); nothing is registered then.
 */
UFAULT_API int ufault_remote_register(struct ufault_remote *rm, void *addr, size_t len, int fd,
				      uint64_t offset, unsigned int page_shift);

/**
 * ufault_remote_map() - (since 0.7) map @len bytes (a multiple of the
 * system page) of @fd (a regular file open read-write) from @offset
 * (page-aligned), served by the daemon with write-back: *@out receives
 * the address. The mapping is MAP_SHARED memory of a memfd the daemon
 * holds too (ufault_region_register_shared()): a page is filled from @fd
 * on first touch, and a page whose bytes differ from @fd's is written back
 * when the daemon evicts it (under this client's budget: `ufaultctl budget`),
 * when the region is unregistered, and when this process disconnects or
 * dies (the daemon still holds the memory then). A child made by fork(2)
 * does not get the mapping (MADV_DONTFORK). Served in-process after a
 * takeover, it is written back the same way, without a budget.
 * ufault_remote_unregister(@out, @len) writes it back, then unmaps it;
 * ufault_remote_close() unmaps it (the daemon writes it back). Errors:
 * -EINVAL, -EBADF (@fd not open read-write), -EOPNOTSUPP (no
 * UFFD_FEATURE_WP_HUGETLBFS_SHMEM: Linux 5.19), -ENOMEM, -ENOSPC, the
 * daemon's refusal (-EINVAL: @fd not a regular file...); nothing is mapped
 * then.
 */
UFAULT_API int ufault_remote_map(struct ufault_remote *rm, size_t len, int fd, uint64_t offset,
				 void **out);

/** ufault_remote_unregister() - the region registered exactly as
 * [@addr, @addr + @len) becomes ordinary memory. -ENOENT if there is none.
 * A mapping of ufault_remote_map() is written back first (an error, the
 * region staying, is returned), then unmapped. */
UFAULT_API int ufault_remote_unregister(struct ufault_remote *rm, void *addr, size_t len);

/** 1 once the client serves its faults itself (the daemon stayed away). */
UFAULT_API int ufault_remote_local(const struct ufault_remote *rm);

struct ufault_proto_stats; /* <ufault/protocol.h> */

/**
 * ufault_remote_stats() - (since 0.8) this client's counters as the daemon
 * keeps them (its STATS reply: faults, pages, errors, regions, latency
 * percentiles, budget). Errors: -EINVAL, -ECHILD (in a child), -ENOTCONN
 * (serving in-process after a takeover, or the daemon away right now).
 */
UFAULT_API int ufault_remote_stats(struct ufault_remote *rm, struct ufault_proto_stats *out);

/**
 * ufault_remote_close() - disconnect (the daemon frees what it held for the
 * client), unregister every region (pages never filled then read zeros:
 * close once the regions are no longer used), unmap the mappings of
 * ufault_remote_map() (the daemon writes them back after: unregister them
 * first to know when that is done), close the uffd, free @rm.
 */
UFAULT_API void ufault_remote_close(struct ufault_remote *rm);

/** A short description of a (negative or positive) errno value. */
UFAULT_API const char *ufault_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* UFAULT_UFAULT_H */
