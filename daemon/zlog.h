/* SPDX-License-Identifier: MIT */
/*
 * zlog.h - a client's log of removed ranges: what its context heard from
 * UFFD_EVENT_REMOVE and UFFD_EVENT_UNMAP (a balloon, madvise(MADV_DONTNEED),
 * munmap), which reads as zeros from then on. It lives in a memfd kept in
 * the client's fd store entry (persist.c) beside the uffd, so a restarted
 * daemon seeds the new context with it (ufault_config.zeroed) and those
 * ranges do not read their source again.
 *
 * The context calls ufd_zlog_append() on the worker that read the event,
 * before any fault there is resolved (ufault_config.on_remove): the store
 * holds the same open file, so the range is kept the moment the write
 * returns, with no message to the store. Each append is one pwrite(2) of
 * a whole range, then one of the count, so a daemon killed between them
 * leaves the log as it was before the range: nothing was resolved with
 * zeros there yet. A range that touches the last one extends it in place
 * (one pwrite(2) of the merged range).
 *
 * The layout is the protocol's (include/ufault/protocol.h): the REPLY to a
 * native client's HELLO carries the log too, so that a client that takes
 * over in-process knows its removed ranges. Read back as untrusted input
 * (lib/zlog_load.h).
 */
#ifndef UFAULTD_ZLOG_H
#define UFAULTD_ZLOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <ufault/ufault.h>

struct ufd_zlog {
	pthread_mutex_t lock;
	int fd;			   /* -1: none */
	uint32_t n;		   /* under lock: ranges in the log */
	struct ufault_zeroed last; /* under lock: the last one */
	bool full_warned;	   /* under lock */
};

/* An empty log with no file. */
void ufd_zlog_init(struct ufd_zlog *z);

/* A new memfd log; 0 or -errno. */
int ufd_zlog_create(struct ufd_zlog *z);

/*
 * Take @fd (a log from the store) if it is one: checked against @sys_page
 * and @va_end. 0, or -EINVAL with *why set (the fd is not taken then).
 */
int ufd_zlog_adopt(struct ufd_zlog *z, int fd, uint64_t sys_page, uint64_t va_end,
		   const char **why);

/* The ranges logged so far, in a malloc'd array (*out NULL when none);
 * 0 or -errno. (struct ufault_zeroed has the log's range layout.) */
int ufd_zlog_read(struct ufd_zlog *z, struct ufault_zeroed **out, unsigned int *nr);

/*
 * Log [start, end): 0, -ENOSPC when the log is full (UFAULT_PROTO_ZLOG_MAX), or the
 * write's -errno (the log is unchanged then). Any thread.
 */
int ufd_zlog_append(struct ufd_zlog *z, uint64_t start, uint64_t end);

/* A new log for @to holding what @from has: a forked child's (its memory
 * is its parent's copy); 0 or -errno (@to has none then). */
int ufd_zlog_fork(struct ufd_zlog *to, struct ufd_zlog *from);

/* A new log holding @v[0..@n) (a client's last session's); 0 or -errno
 * (@z has none then). */
int ufd_zlog_create_from(struct ufd_zlog *z, const struct ufault_proto_zlog_range *v,
			 unsigned int n);

/* No log any more (the file closed); @z stays usable. Not while a context
 * may append. */
void ufd_zlog_reset(struct ufd_zlog *z);

/* Close the file (the store may keep its own copy). */
void ufd_zlog_close(struct ufd_zlog *z);

#endif /* UFAULTD_ZLOG_H */
