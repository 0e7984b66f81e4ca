/* SPDX-License-Identifier: MIT */
/*
 * daemon.h - UFAULT_DAEMON (daemon.c): the shim's regions served by ufaultd
 * through ufault_remote_* instead of a context of this process. shim.c
 * sends the interposed calls here while daemon_on().
 */
#ifndef UFAULT_PRELOAD_DAEMON_H
#define UFAULT_PRELOAD_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ufault_proto_stats;

/* Connect to the daemon at @path (at load). 0, or -errno (said on stderr
 * by the caller). */
int daemon_connect(const char *path);

/* Regions are the daemon's in this process (not in a forked child). */
bool daemon_on(void);

/* In a forked child: nothing more is registered (the parent's handle
 * answers ECHILD there; the daemon serves the child's copies). */
void daemon_forget(void);

/* The interposed calls. @region: the mapping is of a region's kind (private
 * anonymous, at least UFAULT_MIN_BYTES). Return and errno as the kernel's
 * calls; errno untouched on success. */
void *daemon_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off, bool region);
int daemon_munmap(void *addr, size_t len);
void *daemon_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr);
/* [addr, addr + len) is about to be replaced (shmat SHM_REMAP): the
 * regions there go, the parts outside it stay. */
void daemon_release(const void *addr, size_t len);

/* For the report: the daemon's counters of this process
 * (ufault_remote_stats()); 0 or -errno. */
int daemon_stats(struct ufault_proto_stats *st);

#endif
