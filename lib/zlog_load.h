/* SPDX-License-Identifier: MIT */
/*
 * zlog_load.h - reading ufaultd's removed-ranges log (protocol.h): the daemon
 * reads a stored client's back after a restart, a ufault_remote client
 * reads its own when it takes over in-process. In the ufault_proto
 * library too, since the daemon is not part of libufault.
 */
#ifndef UFAULT_LIB_ZLOG_LOAD_H
#define UFAULT_LIB_ZLOG_LOAD_H

#include <stdint.h>

#include <ufault/protocol.h>

/*
 * The ranges the log @fd holds, checked (ufault__proto_zlog_check()), in
 * a malloc'd array (*out; NULL when there are none) of *nr. 0, -EINVAL
 * with *why set (not a log), or the read's -errno.
 */
int ufault__zlog_load(int fd, uint64_t sys_page, uint64_t va_end,
		      struct ufault_proto_zlog_range **out, unsigned int *nr, const char **why);

#endif /* UFAULT_LIB_ZLOG_LOAD_H */
