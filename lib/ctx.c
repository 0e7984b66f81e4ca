// SPDX-License-Identifier: MIT
/*
 * ctx.c - context life cycle: configuration, opening and negotiating the
 * userfaultfds, putting the parts together (ctx.h), orderly destruction
 * that wakes every parked thread before anything is closed, destruction in
 * a child process, and the statistics calls. The top of the library: it
 * includes every other part, none includes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "worker.h"

#define MAX_WORKERS 1024
#define DEFAULT_BATCH 64
#define MAX_BATCH 4096
#define DEFAULT_INFLIGHT 64
#define MAX_INFLIGHT 4096
#define DEFAULT_MAX_PAGE (2u << 20)
#define MAX_PAGE (1ull << 30)

_Static_assert(sizeof(struct ufault_config) >= UFAULT_CONFIG_SIZE_VER0, "config ABI");
_Static_assert(sizeof(struct ufault_source) >= UFAULT_SOURCE_SIZE_VER0, "source ABI");
_Static_assert(sizeof(struct ufault_stats) >= UFAULT_STATS_SIZE_VER0, "stats ABI");

const char *ufault_lock_mode_name(enum ufault_lock_mode mode)
{
	const struct ufault__mm_mode *m = ufault__mm_mode(mode);

	if (mode == UFAULT_LOCK_DEFAULT)
		return "default";
	return m ? m->name : "invalid";
}

int ufault_lock_mode_parse(const char *name, enum ufault_lock_mode *out)
{
	if (!name || !out)
		return -EINVAL;
	for (unsigned int m = UFAULT_LOCK_SPEC; m <= UFAULT_LOCK_GLOBAL; m++) {
		if (!strcmp(name, ufault__mm_mode((enum ufault_lock_mode)m)->name)) {
			*out = (enum ufault_lock_mode)m;
			return 0;
		}
	}
	return -EINVAL;
}

void ufault_config_init(struct ufault_config *cfg)
{
	if (!cfg)
		return;
	memset(cfg, 0, sizeof(*cfg));
	cfg->size = sizeof(*cfg);
	cfg->lock_mode = UFAULT_LOCK_DEFAULT;
	cfg->log_level = UFAULT_LOG_WARN;
	cfg->foreign_uffd = -1;
}

static int resolve_config(struct ufault_ctx *ctx, const struct ufault_config *cfg,
			  enum ufault_lock_mode *mode)
{
	uint64_t sys_page = ufault__sys_page();
	const char *env;

	/* One worker per uffd unless asked: measured (BENCHMARKS.md), more
	 * workers on one uffd mostly add wake-ups. */
	ctx->nr_uffds = cfg->nr_uffds ? cfg->nr_uffds : 1;
	ctx->nr_workers = cfg->nr_workers ? cfg->nr_workers : ctx->nr_uffds;
	ctx->batch = cfg->batch ? cfg->batch : DEFAULT_BATCH;
	ctx->max_page_size = cfg->max_page_size ? cfg->max_page_size : DEFAULT_MAX_PAGE;
	*mode = cfg->lock_mode;

	if (cfg->foreign_uffd < 0 && (cfg->on_remove || cfg->nr_zeroed)) {
		ufault__warn(&ctx->log, "config: on_remove and zeroed are for foreign contexts");
		return -EINVAL;
	}
	for (unsigned int i = 0; i < cfg->nr_zeroed; i++) {
		if (!cfg->zeroed || cfg->zeroed[i].start >= cfg->zeroed[i].end) {
			ufault__warn(&ctx->log, "config: zeroed[%u] is not a range", i);
			return -EINVAL;
		}
	}

	if (ctx->nr_workers > MAX_WORKERS) {
		ufault__warn(&ctx->log, "config: nr_workers %u exceeds %u", ctx->nr_workers,
			     MAX_WORKERS);
		return -EINVAL;
	}
	if (ctx->nr_uffds > ctx->nr_workers)
		ctx->nr_uffds = ctx->nr_workers; /* a uffd nobody reads would hang */
	if (ctx->batch > MAX_BATCH) {
		ufault__warn(&ctx->log, "config: batch %u exceeds %u", ctx->batch, MAX_BATCH);
		return -EINVAL;
	}
	if (cfg->max_inflight > MAX_INFLIGHT) {
		ufault__warn(&ctx->log, "config: max_inflight %zu exceeds %u", cfg->max_inflight,
			     MAX_INFLIGHT);
		return -EINVAL;
	}
	ctx->max_inflight = cfg->max_inflight ? (unsigned int)cfg->max_inflight : DEFAULT_INFLIGHT;
	ctx->fault_around_max = cfg->fault_around_max;
	if (ctx->fault_around_max % sys_page || ctx->fault_around_max > ctx->max_page_size) {
		ufault__warn(&ctx->log,
			     "config: fault_around_max %zu must be a multiple of %llu, at most "
			     "max_page_size %llu",
			     cfg->fault_around_max, (unsigned long long)sys_page,
			     (unsigned long long)ctx->max_page_size);
		return -EINVAL;
	}
	if (ctx->max_page_size < sys_page || ctx->max_page_size > MAX_PAGE ||
	    (ctx->max_page_size & (ctx->max_page_size - 1))) {
		ufault__warn(
		    &ctx->log, "config: max_page_size %llu must be a power of two in [%llu, %llu]",
		    (unsigned long long)ctx->max_page_size, (unsigned long long)sys_page, MAX_PAGE);
		return -EINVAL;
	}
	if ((unsigned int)cfg->dirty_tracking > UFAULT_DIRTY_SYNC) {
		ufault__warn(&ctx->log, "config: bad dirty_tracking %d", (int)cfg->dirty_tracking);
		return -EINVAL;
	}
	ctx->dirty_mode = cfg->dirty_tracking;
	if ((unsigned int)cfg->log_level > UFAULT_LOG_DEBUG) {
		ufault__warn(&ctx->log, "config: bad log level %d", (int)cfg->log_level);
		return -EINVAL;
	}
	if ((unsigned int)*mode > UFAULT_LOCK_GLOBAL) {
		ufault__warn(&ctx->log, "config: bad lock mode %d", (int)*mode);
		return -EINVAL;
	}
	if (*mode == UFAULT_LOCK_DEFAULT) {
		env = getenv("UFAULT_LOCK_MODE");
		*mode = UFAULT_LOCK_SPEC;
		if (env && *env && ufault_lock_mode_parse(env, mode)) {
			ufault__warn(&ctx->log,
				     "UFAULT_LOCK_MODE=%s: expected spec, region, range or global",
				     env);
			return -EINVAL;
		}
	}
	return 0;
}

/*
 * A foreign context's uffd: a dup of @fd, which must be a userfaultfd (its
 * creator ran UFFDIO_API: @features is what it enabled). Non-blocking, as
 * the workers need (the flag is the open file's: the creator's copy gets
 * it too).
 */
static int adopt_uffd(struct ufault_ctx *ctx, int fd, uint64_t features)
{
	struct ufault__uffd_caps kernel;
	char path[32], target[64];
	ssize_t n;
	int dup_fd, fl;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0 || (target[n] = 0, strcmp(target, "anon_inode:[userfaultfd]"))) {
		ufault__warn(&ctx->log, "config: foreign_uffd %d is not a userfaultfd (%s)", fd,
			     n < 0 ? ufault_strerror(-errno) : target);
		return -EINVAL;
	}
	ctx->uffds = ufault__pages_map(sizeof(int));
	if (!ctx->uffds)
		return -ENOMEM;
	dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (dup_fd < 0) {
		ctx->uffds[0] = -1;
		return -errno;
	}
	ctx->uffds[0] = dup_fd;
	fl = fcntl(dup_fd, F_GETFL);
	if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(dup_fd, F_SETFL, fl | O_NONBLOCK)))
		return -errno;
	/* UFFDIO_POISON works on any uffd of a kernel that has it, asked
	 * for at UFFDIO_API or not (Firecracker asks for EVENT_REMOVE only):
	 * the region's default error policy needs no more. */
	ctx->features = features;
	if (!ufault__uffd_probe(&kernel))
		ctx->features |= kernel.features & UFFD_FEATURE_POISON;
	ctx->foreign = true;
	/* No write-back: its tracking reads this process's page tables. */
	return ufault__writeback_init(&ctx->wb, UFAULT_DIRTY_AUTO, 0, &ctx->log, &(uint64_t){0});
}

static int open_uffds(struct ufault_ctx *ctx)
{
	/*
	 * POISON for the SIGBUS error policy; EVENT_REMAP so that a range
	 * moved by mremap(2) stays registered (without it the kernel drops
	 * the registration of the moved VMA and of any registered neighbour
	 * it merges with) and MAP_FIXED can replace a range atomically;
	 * MINOR_SHMEM for memfd sources (UFFDIO_CONTINUE); MOVE for the
	 * memory budget's evictor (evict.h).
	 */
	uint64_t want = UFFD_FEATURE_POISON | UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_MINOR_SHMEM |
			UFFD_FEATURE_MOVE;
	struct ufault__uffd_caps caps, kernel;
	uint64_t wb_want = 0;
	int ret;

	/* WP_ASYNC for write-back regions (writeback.h), if the mode wants it. */
	ret = ufault__uffd_probe(&kernel);
	if (ret)
		kernel.features = 0;
	ret =
	    ufault__writeback_init(&ctx->wb, ctx->dirty_mode, kernel.features, &ctx->log, &wb_want);
	if (ret)
		return ret;
	want |= wb_want;

	ctx->uffds = ufault__pages_map(sizeof(int) * ctx->nr_uffds);
	if (!ctx->uffds)
		return -ENOMEM;
	for (unsigned int i = 0; i < ctx->nr_uffds; i++)
		ctx->uffds[i] = -1;
	for (unsigned int i = 0; i < ctx->nr_uffds; i++) {
		ret = ufault__uffd_open();
		if (ret < 0) {
			ufault__err(
			    &ctx->log, "cannot open a userfaultfd: %s%s", ufault_strerror(ret),
			    ret == -EPERM ? " (needs CAP_SYS_PTRACE, access to /dev/userfaultfd or "
					    "vm.unprivileged_userfaultfd=1)"
					  : "");
			return ret;
		}
		ctx->uffds[i] = ret;
		ret = ufault__uffd_api(ctx->uffds[i], want, &caps);
		if (ret) {
			ufault__err(&ctx->log, "UFFDIO_API: %s", ufault_strerror(ret));
			return ret;
		}
		ctx->features = caps.features;
	}
	ufault__writeback_start(&ctx->wb, ctx->features);
	if (!(ctx->features & UFFD_FEATURE_POISON))
		ufault__info(&ctx->log,
			     "kernel lacks UFFDIO_POISON: the SIGBUS error policy is unavailable");
	return 0;
}

/* The fds and memory a context holds directly (the parts free their own). */
static void free_own(struct ufault_ctx *ctx)
{
	ufault__writeback_destroy(&ctx->wb);
	if (ctx->stop_fd >= 0)
		close(ctx->stop_fd);
	if (ctx->zero_buf)
		ufault__pages_unmap(ctx->zero_buf, ctx->max_page_size);
	ufault__zeroed_destroy(&ctx->zeroed);
	if (ctx->uffds) {
		for (unsigned int i = 0; i < ctx->nr_uffds; i++)
			if (ctx->uffds[i] >= 0)
				close(ctx->uffds[i]);
		ufault__pages_unmap(ctx->uffds, sizeof(int) * ctx->nr_uffds);
	}
	ufault__pages_unmap(ctx, sizeof(*ctx));
}

/* Construction steps, undone in reverse by ctx_free. */
enum { BUILT_NONE, BUILT_MM, BUILT_QSBR, BUILT_REGIONS, BUILT_REMAPS, BUILT_PREFETCH, BUILT_EVICT };

static void ctx_free(struct ufault_ctx *ctx, int built)
{
	if (built >= BUILT_EVICT)
		ufault__evict_stop(ctx);
	ufault__workers_stop(ctx);
	if (built >= BUILT_EVICT)
		ufault__evict_destroy(ctx);
	if (built >= BUILT_PREFETCH)
		ufault__prefetch_destroy(&ctx->prefetch);
	if (built >= BUILT_REMAPS)
		ufault__remaps_destroy(&ctx->remaps);
	if (built >= BUILT_REGIONS)
		ufault__regions_unlist(&ctx->regions);
	/* Runs the free of every retired region, and so the release hooks. */
	if (built >= BUILT_QSBR)
		ufault__qsbr_destroy(&ctx->qsbr);
	if (built >= BUILT_REGIONS)
		ufault__regions_destroy(&ctx->regions);
	if (built >= BUILT_MM)
		ufault__mmlock_destroy(&ctx->mm);
	free_own(ctx);
}

int ufault_ctx_create(struct ufault_ctx **out, const struct ufault_config *cfg)
{
	struct ufault_config defaults;
	enum ufault_lock_mode mode;
	struct ufault_ctx *ctx;
	int built = BUILT_NONE;
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!cfg) {
		ufault_config_init(&defaults);
		cfg = &defaults;
	}
	ctx = ufault__pages_map(sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	ctx->stop_fd = -1;
	ctx->wb.pagemap_fd = -1;
	ctx->pid = getpid();
	ufault__log_init(&ctx->log, cfg->size >= UFAULT_CONFIG_SIZE_VER0 ? cfg : NULL);
	if (cfg->size < UFAULT_CONFIG_SIZE_VER0 || cfg->size > sizeof(*cfg)) {
		/* A larger size is a newer caller asking for options we lack. */
		ufault__warn(&ctx->log, "config: size %zu, this library accepts %d..%zu", cfg->size,
			     UFAULT_CONFIG_SIZE_VER0, sizeof(*cfg));
		ret = -EINVAL;
		goto fail;
	}
	if (cfg->size < sizeof(*cfg)) {
		/* An older, shorter struct: take what it has, default the rest. */
		ufault_config_init(&defaults);
		memcpy(&defaults, cfg, cfg->size);
		defaults.size = sizeof(defaults);
		cfg = &defaults;
	}
	ret = resolve_config(ctx, cfg, &mode);
	if (!ret && cfg->foreign_uffd >= 0) {
		ctx->nr_uffds = 1;
		ctx->on_fork = cfg->on_fork;
		ctx->on_fork_arg = cfg->on_fork_arg;
		ctx->on_remove = cfg->on_remove;
		ctx->on_remove_arg = cfg->on_remove_arg;
		ret = adopt_uffd(ctx, cfg->foreign_uffd, cfg->foreign_features);
	} else if (!ret) {
		ret = open_uffds(ctx);
	}
	if (ret)
		goto fail;
	ret = ufault__zeroed_init(&ctx->zeroed,
				  ctx->foreign && (ctx->features & (UFFD_FEATURE_EVENT_REMOVE |
								    UFFD_FEATURE_EVENT_UNMAP)));
	for (unsigned int i = 0; !ret && i < cfg->nr_zeroed; i++)
		ret = ufault__zeroed_add(&ctx->zeroed, cfg->zeroed[i].start, cfg->zeroed[i].end);
	if (ret)
		goto fail;
	ctx->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ctx->stop_fd < 0) {
		ret = -errno;
		goto fail;
	}
	ctx->zero_buf = ufault__pages_map(ctx->max_page_size);
	if (!ctx->zero_buf) {
		ret = -ENOMEM;
		goto fail;
	}
	ret = ufault__mmlock_init(&ctx->mm, mode);
	if (ret)
		goto fail;
	built = BUILT_MM;
	ret = ufault__qsbr_init(&ctx->qsbr, ctx->nr_workers);
	if (ret)
		goto fail;
	built = BUILT_QSBR;
	ret = ufault__regions_init(&ctx->regions, &ctx->qsbr, &ctx->log, ctx->uffds, ctx->nr_uffds,
				   ctx->features, ctx->max_page_size);
	if (ret)
		goto fail;
	ctx->regions.foreign = ctx->foreign;
	built = BUILT_REGIONS;
	ret = ufault__remaps_init(&ctx->remaps);
	if (ret)
		goto fail;
	built = BUILT_REMAPS;
	ret = ufault__prefetch_init(&ctx->prefetch);
	if (ret)
		goto fail;
	built = BUILT_PREFETCH;
	ret = ufault__evict_init(&ctx->evict);
	if (ret)
		goto fail;
	built = BUILT_EVICT;
	ret = ufault__workers_start(ctx);
	if (ret)
		goto fail;
	ufault__info(&ctx->log, "context: %u workers, %u uffds, lock mode %s, features %#llx",
		     ctx->nr_workers, ctx->nr_uffds, ctx->mm.mode->name,
		     (unsigned long long)ctx->features);
	*out = ctx;
	return 0;

fail:
	ctx_free(ctx, built);
	return ret;
}

void ufault_ctx_destroy(struct ufault_ctx *ctx)
{
	if (!ctx)
		return;
	if (getpid() != ctx->pid) {
		/*
		 * A child's copy (atexit, a static destructor): the uffds are
		 * shared with the parent and the workers are the parent's.
		 * Drop this process's references and memory only; take no
		 * lock (a parent thread may have held any at the fork).
		 */
		ufault__workers_forget(ctx);
		ufault__regions_forget(&ctx->regions);
		ufault__qsbr_forget(&ctx->qsbr);
		free_own(ctx);
		return;
	}
	/* The evictor finishes the eviction it is in, then write-back
	 * regions are flushed, as by ufault_munmap() (errors are logged: the
	 * context goes anyway). */
	ufault__evict_stop(ctx);
	(void)ufault__writeback_flush(&ctx->wb, &ctx->regions, 0, UINT64_MAX, UFAULT__FLUSH_UNMAP);
	/*
	 * Unregister first, while the workers still run: UFFDIO_UNREGISTER
	 * wakes every thread parked on a region, and from then on those
	 * addresses fault as ordinary memory. Only then stop the workers and
	 * close the uffds, so nothing is ever left parked.
	 */
	ufault__regions_teardown(&ctx->regions);
	ctx_free(ctx, BUILT_EVICT);
}

enum ufault_lock_mode ufault_ctx_lock_mode(const struct ufault_ctx *ctx)
{
	return ctx ? ctx->mm.id : UFAULT_LOCK_DEFAULT;
}

unsigned int ufault_ctx_nr_workers(const struct ufault_ctx *ctx)
{
	return ctx ? ctx->nr_workers : 0;
}

unsigned int ufault_ctx_nr_uffds(const struct ufault_ctx *ctx)
{
	return ctx ? ctx->nr_uffds : 0;
}

uint64_t ufault_ctx_features(const struct ufault_ctx *ctx)
{
	return ctx ? ctx->features : 0;
}

int ufault_prefetch(struct ufault_ctx *ctx, void *addr, size_t len)
{
	uint64_t start = (uint64_t)(uintptr_t)addr, sys = ufault__sys_page(), end;
	int ret;

	if (!ctx)
		return -EINVAL;
	if (ufault__ctx_forked(ctx, "prefetch"))
		return -ECHILD;
	end = start + len;
	if (!len || end < start || !ufault__round_up(end, sys, &end)) {
		ufault__warn(&ctx->log, "prefetch: [%p, +%zu) is empty or wraps around", addr, len);
		return -EINVAL;
	}
	ret = ufault__prefetch_push(&ctx->prefetch, start & ~(sys - 1), end);
	if (!ret)
		ufault__workers_kick(ctx);
	return ret;
}

int ufault_stats(struct ufault_ctx *ctx, struct ufault_stats *out)
{
	uint64_t hist[UFAULT__HIST_BUCKETS] = {0};
	struct ufault_stats st;
	size_t size;

	if (!ctx || !out || out->size < UFAULT_STATS_SIZE_VER0)
		return -EINVAL;
	if (ufault__ctx_forked(ctx, "stats"))
		return -ECHILD;
	size = out->size;
	memset(&st, 0, sizeof(st));
	ufault__workers_stats(ctx, &st);
	ufault__workers_hist(ctx, hist, UFAULT__HIST_BUCKETS);
	st.proxy_ops = __atomic_load_n(&ctx->proxy_ops, __ATOMIC_RELAXED);
	st.written_back = __atomic_load_n(&ctx->wb.written_back, __ATOMIC_RELAXED);
	st.evicted = __atomic_load_n(&ctx->evict.evicted, __ATOMIC_RELAXED);
	st.evicted_dirty = __atomic_load_n(&ctx->evict.evicted_dirty, __ATOMIC_RELAXED);
	st.refaults = __atomic_load_n(&ctx->evict.refaults, __ATOMIC_RELAXED);
	st.resident = ufault__evict_resident(&ctx->evict);
	st.latency_p50_ns = ufault_stats_quantile_ns(hist, UFAULT__HIST_BUCKETS, 500);
	st.latency_p99_ns = ufault_stats_quantile_ns(hist, UFAULT__HIST_BUCKETS, 990);
	/* An older caller gets its prefix, a newer one our fields and zeros. */
	if (size > sizeof(st))
		memset((char *)out + sizeof(st), 0, size - sizeof(st));
	st.size = size;
	memcpy(out, &st, size < sizeof(st) ? size : sizeof(st));
	return 0;
}

int ufault_stats_histogram(struct ufault_ctx *ctx, uint64_t *buckets, unsigned int nr)
{
	if (!ctx || (nr && !buckets))
		return -EINVAL;
	if (ufault__ctx_forked(ctx, "stats_histogram"))
		return -ECHILD;
	if (!nr)
		return UFAULT__HIST_BUCKETS;
	if (nr > UFAULT__HIST_BUCKETS)
		nr = UFAULT__HIST_BUCKETS;
	memset(buckets, 0, sizeof(*buckets) * nr);
	ufault__workers_hist(ctx, buckets, nr);
	return UFAULT__HIST_BUCKETS;
}

int ufault_ctx_set_budget(struct ufault_ctx *ctx, const struct ufault_budget *b)
{
	if (!ctx)
		return -EINVAL;
	if (ufault__ctx_forked(ctx, "set_budget"))
		return -ECHILD;
	return ufault__evict_set_budget(ctx, b);
}

int ufault_region_set_budget(struct ufault_ctx *ctx, void *addr, const struct ufault_budget *b)
{
	if (!ctx)
		return -EINVAL;
	if (ufault__ctx_forked(ctx, "region_set_budget"))
		return -ECHILD;
	return ufault__evict_set_region_budget(ctx, (uint64_t)(uintptr_t)addr, b);
}
