// SPDX-License-Identifier: MIT
/*
 * source_snapshot.c - pages copied from a caller's buffer (a checkpoint, a
 * VM snapshot already in memory). Pages wholly inside the buffer are copied
 * straight from it with no bounce; bytes past its end read as zeros.
 */
#include <errno.h>
#include <string.h>

#include "source.h"

static int snapshot_validate(const struct ufault_source *src, const struct ufault__log *log)
{
	if (!src->snapshot.data && src->snapshot.len) {
		ufault__warn(log, "snapshot source: NULL data with length %zu", src->snapshot.len);
		return -EINVAL;
	}
	return 0;
}

static int snapshot_fill(const struct ufault_source *src, uint64_t off, size_t len, void *buf,
			 const void **data)
{
	const unsigned char *base = src->snapshot.data;
	size_t have = src->snapshot.len;

	if (off >= have)
		return UFAULT__FILL_ZERO;
	if (have - off >= len) {
		*data = base + off;
		return 0;
	}
	memcpy(buf, base + off, have - off);
	memset((unsigned char *)buf + (have - off), 0, len - (have - off));
	*data = buf;
	return 0;
}

const struct ufault__source_ops ufault__source_snapshot = {
    .name = "snapshot",
    .validate = snapshot_validate,
    .fill = snapshot_fill,
};
