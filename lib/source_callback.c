// SPDX-License-Identifier: MIT
/*
 * source_callback.c - a user function fills the worker's bounce buffer
 * (never registered memory, so the callback cannot fault on itself), which
 * is then installed with UFFDIO_COPY. Write-back regions give their written
 * pages to the user's writeback function, straight from the mapping.
 */
#include <errno.h>

#include "source.h"

static int callback_validate(const struct ufault_source *src, const struct ufault__log *log)
{
	if (!src->callback.fill) {
		ufault__warn(log, "callback source: NULL fill function");
		return -EINVAL;
	}
	return 0;
}

static int callback_fill(const struct ufault_source *src, uint64_t off, size_t len, void *buf,
			 const void **data)
{
	int ret = src->callback.fill(src->callback.arg, off, buf, len);

	if (ret > 0) /* a positive return is a caller bug; treat as an error */
		ret = -EIO;
	if (ret == 0)
		*data = buf;
	return ret;
}

static int callback_can_write(const struct ufault_source *src, bool made,
			      const struct ufault__log *log)
{
	(void)made;
	if (!src->callback.writeback) {
		ufault__warn(log,
			     "write-back region: the callback source has no writeback function");
		return -EINVAL;
	}
	return 0;
}

static int callback_write(const struct ufault_source *src, uint64_t off, const void *buf,
			  size_t len)
{
	int ret = src->callback.writeback(src->callback.arg, off, buf, len);

	return ret > 0 ? -EIO : ret; /* a positive return is a caller bug */
}

static void callback_discard(const struct ufault_source *src, uint64_t off, uint64_t len)
{
	if (src->callback.discard)
		src->callback.discard(src->callback.arg, off, len);
}

const struct ufault__source_ops ufault__source_callback = {
    .name = "callback",
    .validate = callback_validate,
    .fill = callback_fill,
    .can_write = callback_can_write,
    .write = callback_write,
    .discard = callback_discard,
};
