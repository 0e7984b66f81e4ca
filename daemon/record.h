/* SPDX-License-Identifier: MIT */
/*
 * record.h - the record ufaultd keeps with each client's fd store entry
 * (persist.c), version 2: what a restarted daemon needs to serve the
 * client again, besides the fds that come with it (the uffd first, then
 * one per backing file and one per SHARED region's memfd, then the
 * removed-ranges log if it has one: zlog.h). Host order: the store is on
 * this machine. A record is read back as untrusted input (persist.c checks
 * every field). Version 1 (0.5 and 0.6) had no budget and no memfds: it
 * is read as version 2 with none.
 *
 * The entry is named "c<id>"; the record is a rec_head, then nr_regions
 * rec_region, nothing after.
 */
#ifndef UFAULTD_RECORD_H
#define UFAULTD_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include <ufault/protocol.h>

#define UFD_REC_MAGIC 0x43444655u /* "UFDC" */
#define UFD_REC_VERSION 2

struct ufd_rec_head {
	uint32_t magic;	  /* UFD_REC_MAGIC */
	uint16_t version; /* UFD_REC_VERSION */
	uint16_t kind;	  /* enum ufd_kind: 0 native, 1 Firecracker */
	uint64_t id;
	uint64_t parent;	/* 0, or the client this one is a forked child of */
	uint64_t features;	/* what the uffd's UFFDIO_API enabled */
	uint64_t start_time;	/* of the process, /proc/PID/stat field 22 (0: a child) */
	uint32_t pid, uid, gid; /* pid 0: a forked child (not known) */
	uint32_t nr_regions;
	uint32_t nr_fds; /* that come with the record: the uffd, then files */
	uint32_t zlog;	 /* index of the removed-ranges log in the fds; 0: none */
	uint64_t budget; /* since version 2: SET_BUDGET's bytes (0: none) */
};

/* The size of a version 1 head (no budget). */
#define UFD_REC_HEAD_V1 offsetof(struct ufd_rec_head, budget)

struct ufd_rec_region {
	struct ufault_proto_region r; /* as REGISTER has it */
	int32_t fd;		      /* index into the entry's fds (>= 1); -1: zeros */
	uint32_t mem;		      /* SHARED: index of its memfd in the fds (>= 1); else 0 */
};

#endif
