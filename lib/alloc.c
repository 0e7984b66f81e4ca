/* SPDX-License-Identifier: MIT */
/*
 * alloc.c - pages and fixed-size objects for ufault's own metadata, mapped
 * with raw syscalls.
 *
 * syscall(SYS_mmap) rather than mmap(3): the preload shim interposes
 * mmap, and ufault's metadata must neither re-enter it nor come from libc
 * malloc (which may itself be inside an interposed mmap). Except in a
 * sanitizer build (where the shim is not built): there the interceptors
 * must see the pages come and go, or a later mapping at the same address
 * (an io_uring ring, say) looks to TSan like racing with the last one's
 * users. The slab keeps a
 * chunk header at the start of each chunk, a bump pointer for slots never
 * handed out, and a LIFO free list threaded through freed objects.
 */
#include "alloc.h"
#include "util.h"
#include "witness.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SLAB_CHUNK_SIZE (64 * 1024)

struct ufault__slab_chunk {
	struct ufault__slab_chunk *next; /* immutable once published */
	char *objs;			 /* first slot */
	size_t nr;			 /* slots in this chunk */
	size_t used;			 /* slots handed out by the bump pointer */
};

/* Offset of the first slot: the header, rounded to a cache line. */
#define CHUNK_HDR ((sizeof(struct ufault__slab_chunk) + 63) & ~(size_t)63)

static size_t page_size(void)
{
	return (size_t)ufault__sys_page();
}

/* Sizes here are checked against SIZE_MAX first: rounding cannot wrap. */
static size_t len_up(size_t v, size_t a)
{
	uint64_t r = 0;

	ufault__round_up(v, a, &r);
	return (size_t)r;
}

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifdef SANITIZED
#define MAP_CALL(len)                                                                              \
	(long)mmap(NULL, (len), PROT_READ | PROT_WRITE,                                            \
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
#define UNMAP_CALL(p, len) munmap((p), (len))
#else
#define MAP_CALL(len)                                                                              \
	syscall(SYS_mmap, NULL, (len), PROT_READ | PROT_WRITE,                                     \
		MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
#define UNMAP_CALL(p, len) syscall(SYS_munmap, (p), (len))
#endif

void *ufault__pages_map(size_t len)
{
	size_t ps = page_size();
	long r;

	if (len == 0 || len > SIZE_MAX - ps) {
		errno = EINVAL;
		return NULL;
	}
	r = MAP_CALL(len_up(len, ps));
	if (r == -1)
		return NULL; /* errno set */
	return (void *)r;
}

void ufault__pages_unmap(void *p, size_t len)
{
	if (!p || !len)
		return;
	UNMAP_CALL(p, len_up(len, page_size()));
}

int ufault__slab_init(struct ufault__slab *s, size_t objsize)
{
	size_t align, stride;
	int err;

	if (objsize == 0 || objsize > SIZE_MAX / 4)
		return -EINVAL;
	align = objsize >= 64 ? 64 : 16;
	stride = len_up(objsize < sizeof(void *) ? sizeof(void *) : objsize, align);
	s->objsize = objsize;
	s->stride = stride;
	s->chunk_size = SLAB_CHUNK_SIZE;
	if (CHUNK_HDR + stride > s->chunk_size)
		s->chunk_size = len_up(CHUNK_HDR + stride, page_size());
	s->per_chunk = (s->chunk_size - CHUNK_HDR) / stride;
	err = pthread_mutex_init(&s->lock, NULL);
	if (err)
		return -err;
	s->free_list = NULL;
	s->chunks = NULL;
	s->nr_live = 0;
	return 0;
}

/* Called with s->lock held. */
static struct ufault__slab_chunk *slab_grow(struct ufault__slab *s)
{
	struct ufault__slab_chunk *c = ufault__pages_map(s->chunk_size);

	if (!c)
		return NULL;
	c->objs = (char *)c + CHUNK_HDR;
	c->nr = s->per_chunk;
	c->used = 0;
	c->next = s->chunks;
	/* ufault__slab_owns walks the list without the lock. */
	__atomic_store_n(&s->chunks, c, __ATOMIC_RELEASE);
	return c;
}

void *ufault__slab_alloc(struct ufault__slab *s)
{
	struct ufault__slab_chunk *c;
	void *obj;

	pthread_mutex_lock(&s->lock);
	ufault__witness_acquire(UFAULT__RANK_SLAB, false);
	obj = s->free_list;
	if (obj) {
		s->free_list = *(void **)obj;
	} else {
		c = s->chunks;
		if (!c || c->used == c->nr)
			c = slab_grow(s);
		if (!c) {
			ufault__witness_release(UFAULT__RANK_SLAB);
			pthread_mutex_unlock(&s->lock);
			errno = ENOMEM;
			return NULL;
		}
		obj = c->objs + c->used * s->stride;
		c->used++;
	}
	s->nr_live++;
	ufault__witness_release(UFAULT__RANK_SLAB);
	pthread_mutex_unlock(&s->lock);
	memset(obj, 0, s->objsize);
	return obj;
}

void ufault__slab_free(struct ufault__slab *s, void *obj)
{
	if (!obj)
		return;
	pthread_mutex_lock(&s->lock);
	ufault__witness_acquire(UFAULT__RANK_SLAB, false);
	*(void **)obj = s->free_list;
	s->free_list = obj;
	s->nr_live--;
	ufault__witness_release(UFAULT__RANK_SLAB);
	pthread_mutex_unlock(&s->lock);
}

void ufault__slab_destroy(struct ufault__slab *s)
{
	struct ufault__slab_chunk *c = s->chunks, *next;

	while (c) {
		next = c->next;
		ufault__pages_unmap(c, s->chunk_size);
		c = next;
	}
	s->chunks = NULL;
	s->free_list = NULL;
	s->nr_live = 0;
	pthread_mutex_destroy(&s->lock);
}

int ufault__slab_owns(const struct ufault__slab *s, const void *p)
{
	const struct ufault__slab_chunk *c = __atomic_load_n(&s->chunks, __ATOMIC_ACQUIRE);
	uintptr_t a = (uintptr_t)p;

	for (; c; c = c->next) {
		uintptr_t lo = (uintptr_t)c->objs;

		if (a >= lo && a < lo + c->nr * s->stride)
			return (a - lo) % s->stride == 0;
	}
	return 0;
}
