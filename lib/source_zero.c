// SPDX-License-Identifier: MIT
/*
 * source_zero.c - the zero source: every page is installed with
 * UFFDIO_ZEROPAGE. Also home of the ops lookup shared by all sources.
 */
#include <stddef.h>

#include "source.h"

static int zero_validate(const struct ufault_source *src, const struct ufault__log *log)
{
	return 0;
}

static int zero_fill(const struct ufault_source *src, uint64_t off, size_t len, void *buf,
		     const void **data)
{
	return UFAULT__FILL_ZERO;
}

const struct ufault__source_ops ufault__source_zero = {
    .name = "zero",
    .validate = zero_validate,
    .fill = zero_fill,
};
