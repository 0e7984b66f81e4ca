/* SPDX-License-Identifier: MIT */
/*
 * source.h - how a region's bytes are produced. Each source type is one file
 * (source_zero.c, source_snapshot.c, source_callback.c) providing one ops
 * table; the fault path only calls through it.
 */
#ifndef UFAULT_LIB_SOURCE_H
#define UFAULT_LIB_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include <ufault/ufault.h>

#include "log.h"

/* fill() result meaning "install zeros" (UFFDIO_ZEROPAGE, no copy). */
#define UFAULT__FILL_ZERO 1

struct ufault__source_ops {
	const char *name;
	/* 0 if @src is usable, else -EINVAL (and the reason logged). */
	int (*validate)(const struct ufault_source *src, const struct ufault__log *log);
	/*
	 * Produce @len bytes at source offset @off. Returns 0 with *data
	 * pointing at the bytes to copy (into @buf, or straight at source
	 * memory that is not registered), UFAULT__FILL_ZERO, or -errno.
	 * @buf is the worker's bounce buffer of at least @len bytes.
	 */
	int (*fill)(const struct ufault_source *src, uint64_t off, size_t len, void *buf,
		    const void **data);
};

extern const struct ufault__source_ops ufault__source_zero;
extern const struct ufault__source_ops ufault__source_snapshot;
extern const struct ufault__source_ops ufault__source_callback;

/* The ops for @src->type, or NULL for an unknown type. */
const struct ufault__source_ops *ufault__source_ops(const struct ufault_source *src);

#endif
