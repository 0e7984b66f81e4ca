// SPDX-License-Identifier: MIT
/*
 * ctx.c - context life cycle: configuration, opening and negotiating the
 * userfaultfds, the locks, the workers; orderly destruction that wakes every
 * parked thread before anything is closed; ufault_stats().
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "ctx.h"

#define MAX_WORKERS 1024
#define DEFAULT_BATCH 64
#define MAX_BATCH 4096
#define DEFAULT_MAX_PAGE (2u << 20)
#define MAX_PAGE (1ull << 30)

static const char *const mode_names[] = {
    [UFAULT_LOCK_SPEC] = "spec",
    [UFAULT_LOCK_REGION] = "region",
    [UFAULT_LOCK_RANGE] = "range",
    [UFAULT_LOCK_GLOBAL] = "global",
};

const char *ufault_lock_mode_name(enum ufault_lock_mode mode)
{
	if (mode == UFAULT_LOCK_DEFAULT)
		return "default";
	if ((unsigned int)mode > UFAULT_LOCK_GLOBAL)
		return "invalid";
	return mode_names[mode];
}

int ufault_lock_mode_parse(const char *name, enum ufault_lock_mode *out)
{
	if (!name || !out)
		return -EINVAL;
	for (unsigned int m = UFAULT_LOCK_SPEC; m <= UFAULT_LOCK_GLOBAL; m++) {
		if (!strcmp(name, mode_names[m])) {
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
}

static int resolve_config(struct ufault_ctx *ctx, const struct ufault_config *cfg)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	const char *env;

	ctx->sys_page = (uint64_t)sysconf(_SC_PAGESIZE);
	ctx->nr_workers = cfg->nr_workers ? cfg->nr_workers : (cpus > 0 ? (unsigned int)cpus : 1);
	ctx->nr_uffds = cfg->nr_uffds ? cfg->nr_uffds : 1;
	ctx->batch = cfg->batch ? cfg->batch : DEFAULT_BATCH;
	ctx->max_page_size = cfg->max_page_size ? cfg->max_page_size : DEFAULT_MAX_PAGE;
	ctx->mode = cfg->lock_mode;

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
	if (ctx->max_page_size < ctx->sys_page || ctx->max_page_size > MAX_PAGE ||
	    (ctx->max_page_size & (ctx->max_page_size - 1))) {
		ufault__warn(&ctx->log,
			     "config: max_page_size %llu must be a power of two in [%llu, %llu]",
			     (unsigned long long)ctx->max_page_size,
			     (unsigned long long)ctx->sys_page, MAX_PAGE);
		return -EINVAL;
	}
	if ((unsigned int)cfg->log_level > UFAULT_LOG_DEBUG) {
		ufault__warn(&ctx->log, "config: bad log level %d", (int)cfg->log_level);
		return -EINVAL;
	}
	if ((unsigned int)ctx->mode > UFAULT_LOCK_GLOBAL) {
		ufault__warn(&ctx->log, "config: bad lock mode %d", (int)ctx->mode);
		return -EINVAL;
	}
	if (ctx->mode == UFAULT_LOCK_DEFAULT) {
		env = getenv("UFAULT_LOCK_MODE");
		ctx->mode = UFAULT_LOCK_SPEC;
		if (env && *env && ufault_lock_mode_parse(env, &ctx->mode)) {
			ufault__warn(&ctx->log,
				     "UFAULT_LOCK_MODE=%s: expected spec, region, range or global",
				     env);
			return -EINVAL;
		}
	}
	return 0;
}

static int open_uffds(struct ufault_ctx *ctx)
{
	/*
	 * POISON for the SIGBUS error policy; EVENT_REMAP so that a range
	 * moved by mremap(2) stays registered (without it the kernel drops
	 * the registration of the moved VMA and of any registered neighbour
	 * it merges with) and MAP_FIXED can replace a range atomically.
	 */
	uint64_t want = UFFD_FEATURE_POISON | UFFD_FEATURE_EVENT_REMAP;
	struct ufault__uffd_caps caps;
	int ret;

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
	if (!(ctx->features & UFFD_FEATURE_POISON))
		ufault__info(&ctx->log,
			     "kernel lacks UFFDIO_POISON: the SIGBUS error policy is unavailable");
	return 0;
}

static void close_uffds(struct ufault_ctx *ctx)
{
	if (!ctx->uffds)
		return;
	for (unsigned int i = 0; i < ctx->nr_uffds; i++)
		if (ctx->uffds[i] >= 0)
			close(ctx->uffds[i]);
	ufault__pages_unmap(ctx->uffds, sizeof(int) * ctx->nr_uffds);
	ctx->uffds = NULL;
}

/* Undo whatever ufault_ctx_create did, in reverse; tolerant of a partial
 * construction (fields still zero or -1 are skipped). */
static void ctx_free(struct ufault_ctx *ctx, unsigned int built)
{
	ufault__workers_stop(ctx);
	if (built >= 4)
		ufault__qsbr_destroy(&ctx->qsbr);
	if (built >= 3)
		ufault__slab_destroy(&ctx->region_slab);
	if (built >= 2) {
		pthread_cond_destroy(&ctx->remap_free);
		pthread_mutex_destroy(&ctx->remap_lock);
		pthread_mutex_destroy(&ctx->tree_lock);
		ufault_rangelock_destroy(&ctx->range);
		pthread_rwlock_destroy(&ctx->global);
	}
	if (ctx->stop_fd >= 0)
		close(ctx->stop_fd);
	if (ctx->retry_fd >= 0)
		close(ctx->retry_fd);
	if (ctx->zero_buf)
		ufault__pages_unmap(ctx->zero_buf, ctx->max_page_size);
	close_uffds(ctx);
	ufault__pages_unmap(ctx, sizeof(*ctx));
}

static int init_locks(struct ufault_ctx *ctx)
{
	pthread_rwlockattr_t attr;
	int ret;

	/* Writers must not starve behind a stream of faults, as with the
	 * kernel's rwsem: glibc's writer-preferring rwlock. */
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	ret = -pthread_rwlock_init(&ctx->global, &attr);
	pthread_rwlockattr_destroy(&attr);
	if (ret)
		return ret;
	ret = ufault_rangelock_init(&ctx->range);
	if (ret) {
		pthread_rwlock_destroy(&ctx->global);
		return ret;
	}
	ret = -pthread_mutex_init(&ctx->tree_lock, NULL);
	if (ret)
		goto out_range;
	ret = -pthread_mutex_init(&ctx->remap_lock, NULL);
	if (ret)
		goto out_tree;
	ret = -pthread_cond_init(&ctx->remap_free, NULL);
	if (!ret)
		return 0;
	pthread_mutex_destroy(&ctx->remap_lock);
out_tree:
	pthread_mutex_destroy(&ctx->tree_lock);
out_range:
	ufault_rangelock_destroy(&ctx->range);
	pthread_rwlock_destroy(&ctx->global);
	return ret;
}

int ufault_ctx_create(struct ufault_ctx **out, const struct ufault_config *cfg)
{
	struct ufault_config defaults;
	struct ufault_ctx *ctx;
	unsigned int built = 0;
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
	ctx->retry_fd = -1;
	ufault__log_init(&ctx->log, cfg);
	if (cfg->size < sizeof(size_t) || cfg->size > sizeof(*cfg)) {
		/* A larger size is a newer caller asking for options we lack. */
		ufault__warn(&ctx->log, "config: size %zu, this library knows %zu", cfg->size,
			     sizeof(*cfg));
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
	ret = resolve_config(ctx, cfg);
	if (ret)
		goto fail;
	ret = open_uffds(ctx);
	if (ret)
		goto fail;
	ctx->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ctx->retry_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ctx->stop_fd < 0 || ctx->retry_fd < 0) {
		ret = -errno;
		goto fail;
	}
	ctx->zero_buf = ufault__pages_map(ctx->max_page_size);
	if (!ctx->zero_buf) {
		ret = -ENOMEM;
		goto fail;
	}
	built = 1;
	ret = init_locks(ctx);
	if (ret)
		goto fail;
	built = 2;
	ufault__index_init(&ctx->index);
	ret = ufault__slab_init(&ctx->region_slab, sizeof(struct ufault_region));
	if (ret)
		goto fail;
	built = 3;
	ret = ufault__qsbr_init(&ctx->qsbr, ctx->nr_workers);
	if (ret)
		goto fail;
	built = 4;
	ret = ufault__workers_start(ctx);
	if (ret)
		goto fail;
	ufault__info(&ctx->log, "context: %u workers, %u uffds, lock mode %s, features %#llx",
		     ctx->nr_workers, ctx->nr_uffds, ufault_lock_mode_name(ctx->mode),
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
	/*
	 * Unregister first, while the workers still run: UFFDIO_UNREGISTER
	 * wakes every thread parked on a region, and from then on those
	 * addresses fault as ordinary memory. Only then stop the workers and
	 * close the uffds, so nothing is ever left parked.
	 */
	ufault__regions_teardown(ctx);
	ufault__workers_stop(ctx);
	ctx_free(ctx, 4);
}

enum ufault_lock_mode ufault_ctx_lock_mode(const struct ufault_ctx *ctx)
{
	return ctx ? ctx->mode : UFAULT_LOCK_DEFAULT;
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

int ufault_stats(struct ufault_ctx *ctx, struct ufault_stats *out)
{
	size_t size;

	if (!ctx || !out || out->size < sizeof(*out))
		return -EINVAL;
	size = out->size;
	memset(out, 0, sizeof(*out));
	out->size = size;
	ufault__workers_stats(ctx, out);
	out->proxy_ops = __atomic_load_n(&ctx->proxy_ops, __ATOMIC_RELAXED);
	ufault__stats_finish(out);
	return 0;
}
