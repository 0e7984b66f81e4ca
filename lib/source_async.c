// SPDX-License-Identifier: MIT
/*
 * source_async.c - a user function starts a fill into the request's buffer
 * and completes it later with ufault_complete(), from any thread; the
 * worker goes on with other faults meanwhile (fault.c keeps the request).
 */
#include <errno.h>

#include "source.h"

static int async_validate(const struct ufault_source *src, const struct ufault__log *log)
{
	if (!src->async.fill) {
		ufault__warn(log, "async source: NULL fill function");
		return -EINVAL;
	}
	return 0;
}

static int async_start(const struct ufault_source *src, uint64_t off, size_t len, void *buf,
		       struct ufault_completion *c, struct io_uring *ring)
{
	(void)ring;
	int ret = src->async.fill(src->async.arg, off, buf, len, c);

	return ret > 0 ? -EIO : ret; /* a positive return is a caller bug */
}

const struct ufault__source_ops ufault__source_async = {
    .name = "async",
    .validate = async_validate,
    .start = async_start,
};
