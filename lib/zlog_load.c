// SPDX-License-Identifier: MIT
/*
 * zlog_load.c - reading ufaultd's removed-ranges log (zlog_load.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto.h"
#include "zlog_load.h"

#define ZLOG_MAX_BYTES                                                                             \
	(sizeof(struct ufault_proto_zlog_head) +                                                   \
	 (size_t)UFAULT_PROTO_ZLOG_MAX * sizeof(struct ufault_proto_zlog_range))

int ufault__zlog_load(int fd, uint64_t sys_page, uint64_t va_end,
		      struct ufault_proto_zlog_range **out, unsigned int *nr, const char **why)
{
	struct stat st;
	unsigned char *buf;
	size_t len, done = 0;
	long count;

	*out = NULL;
	*nr = 0;
	*why = NULL;
	if (fstat(fd, &st))
		return -errno;
	if (!S_ISREG(st.st_mode)) {
		*why = "the removed-ranges log is not a file";
		return -EINVAL;
	}
	/* Bytes past the last range may be there (a count not written yet):
	 * at most a whole log is read. */
	len = (uint64_t)st.st_size < ZLOG_MAX_BYTES ? (size_t)st.st_size : ZLOG_MAX_BYTES;
	buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	while (done < len) {
		ssize_t n = pread(fd, buf + done, len - done, (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* shorter than it was: the check says so */
		done += (size_t)n;
	}
	count = ufault__proto_zlog_check(buf, done, sys_page, va_end, why);
	if (count <= 0) {
		free(buf);
		return count < 0 ? (int)count : 0;
	}
	/* The ranges, moved to the front. */
	memmove(buf, buf + sizeof(struct ufault_proto_zlog_head),
		(size_t)count * sizeof(struct ufault_proto_zlog_range));
	*out = (struct ufault_proto_zlog_range *)(void *)buf;
	*nr = (unsigned int)count;
	return 0;
}
