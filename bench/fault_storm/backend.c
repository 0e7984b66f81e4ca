// SPDX-License-Identifier: MIT
/*
 * backend.c - the handlers under test, one ops table each: a ufault context
 * in one of its four lock modes (a fresh context per measurement, so the
 * library's counters belong to it alone), the minimal hand-written handler
 * (minimal.c), or none (native kernel anonymous faults). The workloads only
 * call through struct backend_ops.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "fault_storm.h"

const char *const mode_names[M_NR] = {"spec", "region", "range", "global", "minimal", "native"};

/* --- ufault ---------------------------------------------------------- */

static void ufault_open(struct backend *b, const struct run_cfg *rc)
{
	static const enum ufault_lock_mode lock_of[] = {UFAULT_LOCK_SPEC, UFAULT_LOCK_REGION,
							UFAULT_LOCK_RANGE, UFAULT_LOCK_GLOBAL};
	struct ufault_config cfg;
	int err;

	ufault_config_init(&cfg);
	cfg.lock_mode = lock_of[rc->mode];
	if (rc->src == S_ASYNC && !(b->dl = dl_start(&rc->lat)))
		die("starting the delay line: %s", strerror(errno));
	if (rc->src == S_SLOW) {
		/* Fills sleep: give every fault thread a worker and a uffd. */
		unsigned int w = (unsigned int)rc->threads;

		if (w < nr_cpus)
			w = nr_cpus;
		cfg.nr_workers = w;
		cfg.nr_uffds = w;
	}
	if (opt.workers)
		cfg.nr_workers = opt.workers;
	if (opt.uffds)
		cfg.nr_uffds = opt.uffds;
	cfg.fault_around_max = opt.fault_around;
	err = ufault_ctx_create(&b->ctx, &cfg);
	if (err)
		die("ufault_ctx_create(%s): %s", mode_names[rc->mode], ufault_strerror(err));
	if (ufault_ctx_lock_mode(b->ctx) != cfg.lock_mode)
		warnx("WARNING: asked for lock mode %s, context runs %s", mode_names[rc->mode],
		      ufault_lock_mode_name(ufault_ctx_lock_mode(b->ctx)));
}

static void ufault_close(struct backend *b, struct result *res)
{
	struct ufault_stats st;
	int err, i;

	memset(&st, 0, sizeof(st));
	st.size = sizeof(st);
	err = ufault_stats(b->ctx, &st);
	if (err)
		die("ufault_stats: %s", ufault_strerror(err));
	res->lib_faults = st.faults;
	res->spec_aborts = 0;
	for (i = 0; i < UFAULT_SPEC_ABORT_NR; i++)
		res->spec_aborts += st.spec_aborts[i];
	res->workers = ufault_ctx_nr_workers(b->ctx);
	res->uffds = ufault_ctx_nr_uffds(b->ctx);
	ufault_ctx_destroy(b->ctx); /* waits for the fills in flight */
	b->ctx = NULL;
	if (b->dl)
		dl_stop(b->dl);
	b->dl = NULL;
}

static void *ufault_map(struct backend *b, void *hint, size_t len, int fixed, uint64_t src_off,
			bool zero_src)
{
	struct ufault_source s;

	if (b->src == S_SLOW) {
		ufault_source_init(&s, UFAULT_SOURCE_CALLBACK);
		s.callback.fill = slow_fill;
		s.callback.arg = &b->lat;
	} else if (b->src == S_ASYNC) {
		ufault_source_init(&s, UFAULT_SOURCE_ASYNC);
		s.async.fill = async_fill;
		s.async.arg = b->dl;
	} else {
		ufault_source_init(&s, UFAULT_SOURCE_ZERO);
	}
	s.offset = src_off;
	return ufault_mmap(b->ctx, hint, len, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | fixed,
			   zero_src ? NULL : &s, 0);
}

static int ufault_unmap(struct backend *b, void *p, size_t len)
{
	return ufault_munmap(b->ctx, p, len);
}

static int ufault_madv(struct backend *b, void *p, size_t len, int advice)
{
	return ufault_madvise(b->ctx, p, len, advice);
}

static int ufault_mprot(struct backend *b, void *p, size_t len, int prot)
{
	return ufault_mprotect(b->ctx, p, len, prot);
}

static const struct backend_ops ufault_ops = {
    .kind = "ufault",
    .open = ufault_open,
    .close = ufault_close,
    .map = ufault_map,
    .unmap = ufault_unmap,
    .madvise = ufault_madv,
    .mprotect = ufault_mprot,
};

/* --- kernel mappings: native, and the minimal handler's --------------- */

static void *kernel_map(struct backend *b, void *hint, size_t len, int fixed, uint64_t src_off,
			bool zero_src)
{
	void *p = mmap(hint, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | fixed, -1, 0);

	(void)src_off;
	if (p == MAP_FAILED)
		return p;
	if (thp_always)
		(void)madvise(p, len, MADV_NOHUGEPAGE);
	if (b->min && !zero_src)
		minimal_register(b->min, p, len);
	return p;
}

static int kernel_unmap(struct backend *b, void *p, size_t len)
{
	return munmap(p, len);
}

static int kernel_madvise(struct backend *b, void *p, size_t len, int advice)
{
	return madvise(p, len, advice);
}

static int kernel_mprotect(struct backend *b, void *p, size_t len, int prot)
{
	return mprotect(p, len, prot);
}

static void native_open(struct backend *b, const struct run_cfg *rc)
{
}

static void native_close(struct backend *b, struct result *res)
{
}

static const struct backend_ops native_ops = {
    .kind = "native",
    .open = native_open,
    .close = native_close,
    .map = kernel_map,
    .unmap = kernel_unmap,
    .madvise = kernel_madvise,
    .mprotect = kernel_mprotect,
};

static void minimal_open(struct backend *b, const struct run_cfg *rc)
{
	/* The hand-written handler has only the synchronous slow fill. */
	b->min = minimal_start(rc->src != S_ZERO ? &b->lat : NULL, (size_t)page_size);
}

static void minimal_close(struct backend *b, struct result *res)
{
	res->lib_faults = minimal_stop(b->min);
	res->workers = 1;
	res->uffds = 1;
	b->min = NULL;
}

static const struct backend_ops minimal_ops = {
    .kind = "minimal",
    .open = minimal_open,
    .close = minimal_close,
    .map = kernel_map,
    .unmap = kernel_unmap,
    .madvise = kernel_madvise,
    .mprotect = kernel_mprotect,
};

/* --- what the workloads call -------------------------------------------- */

void backend_open(struct backend *b, const struct run_cfg *rc)
{
	memset(b, 0, sizeof(*b));
	b->mode = rc->mode;
	b->src = rc->src;
	b->lat = rc->lat;
	b->ops = mode_is_ufault(rc->mode) ? &ufault_ops
		 : rc->mode == M_MINIMAL  ? &minimal_ops
					  : &native_ops;
	b->ops->open(b, rc);
}

void backend_close(struct backend *b, struct result *res)
{
	b->ops->close(b, res);
}

void *be_map(struct backend *b, void *hint, size_t len, int fixed, uint64_t src_off, bool zero_src)
{
	return b->ops->map(b, hint, len, fixed, src_off, zero_src);
}

void be_unmap(struct backend *b, void *p, size_t len)
{
	if (b->ops->unmap(b, p, len))
		die("%s munmap(%p, %zu): %s", b->ops->kind, p, len, strerror(errno));
}

void be_dontneed(struct backend *b, void *p, size_t len)
{
	if (b->ops->madvise(b, p, len, MADV_DONTNEED))
		die("%s madvise(%p, %zu, MADV_DONTNEED): %s", b->ops->kind, p, len,
		    strerror(errno));
}

void be_mprotect(struct backend *b, void *p, size_t len, int prot)
{
	if (b->ops->mprotect(b, p, len, prot))
		die("%s mprotect(%p, %zu, %#x): %s", b->ops->kind, p, len, prot, strerror(errno));
}
