// SPDX-License-Identifier: MIT
/*
 * source.c - the source object shared by the regions of one registration:
 * argument checks, reference counting, the release hook.
 */
#include <errno.h>
#include <string.h>

#include "source.h"
#include "witness.h"

void ufault_source_init(struct ufault_source *src, enum ufault_source_type type)
{
	if (!src)
		return;
	memset(src, 0, sizeof(*src));
	src->size = sizeof(*src);
	src->type = type;
}

static const struct ufault__source_ops *ops_of(enum ufault_source_type type)
{
	switch (type) {
	case UFAULT_SOURCE_ZERO:
		return &ufault__source_zero;
	case UFAULT_SOURCE_SNAPSHOT:
		return &ufault__source_snapshot;
	case UFAULT_SOURCE_CALLBACK:
		return &ufault__source_callback;
	case UFAULT_SOURCE_ASYNC:
		return &ufault__source_async;
	case UFAULT_SOURCE_FILE:
		return &ufault__source_file;
	case UFAULT_SOURCE_NBD:
#ifdef UFAULT_NO_NBD /* the preload shim's copy of the library */
		return NULL;
#else
		return &ufault__source_nbd;
#endif
	case UFAULT_SOURCE_MEMFD:
		return &ufault__source_memfd;
	}
	return NULL;
}

int ufault__source_check(const struct ufault_source *user, const struct ufault__log *log,
			 struct ufault_source *out)
{
	const struct ufault__source_ops *ops;

	if (!user) {
		ufault__warn(log, "NULL source");
		return -EINVAL;
	}
	if (user->size < UFAULT_SOURCE_SIZE_VER0 || user->size > sizeof(*user)) {
		ufault__warn(log, "source: size %zu, expected %d..%zu (use ufault_source_init)",
			     user->size, UFAULT_SOURCE_SIZE_VER0, sizeof(*user));
		return -EINVAL;
	}
	memset(out, 0, sizeof(*out));
	memcpy(out, user, user->size);
	out->size = sizeof(*out);
	ops = ops_of(out->type);
	if (!ops) {
		ufault__warn(log, "source: unknown type %d", (int)out->type);
		return -EINVAL;
	}
	return ops->validate(out, log) ? -EINVAL : 0;
}

int ufault__source_check_write(const struct ufault_source *norm, const struct ufault__source *s,
			       const struct ufault__log *log)
{
	const struct ufault__source_ops *ops = ops_of(norm->type);

	if (!ops->can_write) {
		ufault__warn(log, "write-back region: the %s source cannot be written", ops->name);
		return -EINVAL;
	}
	return s ? ops->can_write(&s->user, true, log) : ops->can_write(norm, false, log);
}

int ufault__source_create(struct ufault__slab *slab, struct ufault__loops *loops,
			  const struct ufault_source *user, const struct ufault__log *log,
			  struct ufault__source **out)
{
	struct ufault_source norm;
	struct ufault__source *s;
	int ret = ufault__source_check(user, log, &norm);

	if (ret)
		return ret;
	s = ufault__slab_alloc(slab);
	if (!s)
		return -ENOMEM;
	/* A reused object holds its last user's fields (release_ok...). */
	memset(s, 0, sizeof(*s));
	s->user = norm;
	s->ops = ops_of(norm.type);
	s->slab = slab; /* init may make more (a memfd source's inner one) */
	s->loops = loops;
	if (s->ops->init) {
		ret = s->ops->init(&s->user, log);
		if (ret) {
			ufault__slab_free(slab, s);
			return ret;
		}
	}
	s->refs = 1;
	*out = s;
	return 0;
}

void ufault__source_put(struct ufault__source *s)
{
	if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL))
		return;
	if (__atomic_load_n(&s->release_ok, __ATOMIC_ACQUIRE) && s->user.release) {
		ufault__witness_assert_unlocked("calling a source release hook");
		s->user.release(s->user.release_arg);
	}
	if (s->ops->fini)
		s->ops->fini(&s->user);
	if (__atomic_load_n(&s->group, __ATOMIC_ACQUIRE))
		s->group_gone(s->group_arg, s->group);
	ufault__shared_fini(&s->shared);
	ufault__slab_free(s->slab, s);
}

void ufault__source_commit(struct ufault__source *s)
{
	__atomic_store_n(&s->release_ok, true, __ATOMIC_RELEASE);
	ufault__source_put(s);
}

void ufault__source_abandon(struct ufault__source *s)
{
	ufault__source_put(s);
}
