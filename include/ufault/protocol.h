/* SPDX-License-Identifier: MIT */
/*
 * ufault/protocol.h - ufaultd's wire protocol, version 1 (since 0.5).
 *
 * A client talks to ufaultd over a Unix stream socket. Every message, both
 * ways, is a header followed by @len bytes of body; file descriptors travel
 * with a message as SCM_RIGHTS (at most UFAULT_PROTO_MAX_FDS). Integers are
 * in host order (client and daemon share a machine). The daemon checks
 * every field (magic, version, type, body length for the type, alignment,
 * ranges that wrap or overlap the client's regions, counts, the fds a type
 * needs) and answers a bad message with a UFAULT_MSG_REPLY carrying an
 * error, or, for a message it cannot frame, by closing the connection.
 * Nothing a client sends touches another client's state. ufaultd never
 * opens a path on a client's behalf: backing files come as fds.
 *
 * Exchange:
 *   HELLO (+ the client's uffd [+ its  -> REPLY {status, value: client id}
 *          last removed-ranges log])    (+ the removed-ranges log, below)
 *   REGISTER (+ backing fd for FILE; -> REPLY {status}
 *     file and memfd for SHARED)
 *   UNREGISTER                       -> REPLY {status}
 *   STATS                            -> REPLY {status} + body ufault_proto_stats
 *   LIST (ufaultctl)                 -> REPLY {status, value: n} + n ufault_proto_client
 *   SET_BUDGET (ufaultctl)           -> REPLY {status}
 * The client registers its ranges with its own uffd (UFFDIO_REGISTER, mode
 * MISSING; MISSING | WP for SHARED) before it sends REGISTER, and keeps its
 * own copy of the uffd.
 *
 * Firecracker mode is a different protocol on its own socket: see
 * ufaultd(8).
 */
#ifndef UFAULT_PROTOCOL_H
#define UFAULT_PROTOCOL_H

#include <stdint.h>

#define UFAULT_PROTO_MAGIC 0x544c4655u /* "UFLT" */
#define UFAULT_PROTO_VERSION 1
#define UFAULT_PROTO_MAX_BODY 4096u	 /* bytes of body, any message */
#define UFAULT_PROTO_MAX_FDS 2u		 /* fds with one message */
#define UFAULT_PROTO_MAX_REGIONS 1024u	 /* regions of one client */
#define UFAULT_PROTO_MAX_PAGE (1u << 30) /* the largest region page size */
#define UFAULT_PROTO_DEFAULT_PATH "/run/ufaultd/ufaultd.sock"

struct ufault_proto_hdr {
	uint32_t magic;	  /* UFAULT_PROTO_MAGIC */
	uint16_t version; /* UFAULT_PROTO_VERSION */
	uint16_t type;	  /* enum ufault_proto_type */
	uint32_t len;	  /* body bytes that follow, <= UFAULT_PROTO_MAX_BODY */
	uint32_t seq;	  /* chosen by the sender of a request, echoed by its reply */
};

enum ufault_proto_type {
	UFAULT_MSG_HELLO = 1,	   /* body ufault_proto_hello, fd: the uffd */
	UFAULT_MSG_REGISTER = 2,   /* body ufault_proto_region, fd: backing (FILE) */
	UFAULT_MSG_UNREGISTER = 3, /* body ufault_proto_range */
	UFAULT_MSG_STATS = 4,	   /* no body */
	UFAULT_MSG_LIST = 5,	   /* no body */
	UFAULT_MSG_SET_BUDGET = 6, /* body ufault_proto_budget */
	UFAULT_MSG_REPLY = 0x80,   /* daemon to client: ufault_proto_reply [+ data] */
};

/* HELLO: the first message of a connection, and only the first. */
struct ufault_proto_hello {
	uint64_t features;  /* UFFD_FEATURE_* the client's UFFDIO_API enabled */
	uint64_t resume_id; /* 0: a new client; else the id a daemon gave it before
			     * (reconnecting after a daemon restart: no fd then) */
	uint32_t flags;	    /* UFAULT_HELLO_* */
	uint32_t reserved;  /* 0 */
};

/*
 * HELLO flag (since 0.6): a second fd follows the uffd, the removed-ranges
 * log the client got with its last session's REPLY (below): a daemon that
 * does not know the client any more (restarted with no fd store) starts
 * the new session's log from it, so those ranges still read as zeros. Not
 * with a resume_id (a resumed session has its log).
 */
#define UFAULT_HELLO_ZEROED 1u

enum ufault_proto_source {
	UFAULT_PROTO_SRC_ZERO = 0, /* no fd */
	UFAULT_PROTO_SRC_FILE = 1, /* fd: a regular file or memfd, read at offset */
	/*
	 * Since 0.7, write-back: fds: a regular file open read-write, then the
	 * memfd the client maps MAP_SHARED over the range from its offset 0.
	 * Pages are filled from the file into the memfd; a page that differs
	 * from the file is written back when the daemon evicts it (the
	 * client's budget, SET_BUDGET), at UNREGISTER (answered once written)
	 * and when the client goes. System pages only (page_size 0). The
	 * client's uffd has UFFD_FEATURE_WP_HUGETLBFS_SHMEM and not
	 * UFFD_FEATURE_WP_ASYNC, and the range is registered MISSING | WP (a
	 * page being evicted is write-protected meanwhile).
	 */
	UFAULT_PROTO_SRC_SHARED = 2,
};

/* REGISTER: [start, start + len) of the client, page-aligned (region page). */
struct ufault_proto_region {
	uint64_t start, len;
	uint64_t offset;    /* in the backing file, aligned to the region page */
	uint32_t page_size; /* 0: the system page; else a power of two in
			     * [system page, UFAULT_PROTO_MAX_PAGE] */
	uint32_t source;    /* enum ufault_proto_source */
};

/* UNREGISTER: a whole region, as registered. */
struct ufault_proto_range {
	uint64_t start, len;
};

/* SET_BUDGET (ufaultctl): the most memory client @client_id's SHARED
 * regions keep resident (since 0.7 enforced: the rest is evicted). */
struct ufault_proto_budget {
	uint64_t client_id;
	uint64_t bytes; /* 0: none */
};

struct ufault_proto_reply {
	int32_t status; /* 0 or -errno */
	uint32_t reserved;
	uint64_t value; /* HELLO: the client id; LIST: the entries that follow */
};

/* STATS reply data: this client's counters. */
struct ufault_proto_stats {
	uint64_t faults, pages, errors, regions;
	uint64_t p50_ns, p99_ns; /* fault latency */
	/* Since 0.7: the budget (0: none), the SHARED regions' resident
	 * pages, the pages evicted and, of those, written back. */
	uint64_t budget, resident, evicted, evicted_written;
};

/* LIST reply data, one per client (at most what fits the body). */
struct ufault_proto_client {
	uint64_t id;
	uint32_t pid, uid;
	uint64_t faults, regions, errors;
	uint32_t firecracker; /* 1: a Firecracker-protocol client */
	uint32_t reserved;
	uint64_t budget, resident, evicted; /* since 0.7: as in ufault_proto_stats */
};

/*
 * The removed-ranges log (since 0.6). The REPLY to a HELLO, new or resumed,
 * of a client whose features include UFFD_FEATURE_EVENT_REMOVE or
 * UFFD_FEATURE_EVENT_UNMAP carries one fd (SCM_RIGHTS): a memfd where the
 * daemon logs, before it serves a fault there, every range the client
 * removed or unmapped, which reads as zeros from then on. A client that
 * serves itself after the daemon went away reads it to know them. A client
 * that reads replies without a control buffer loses nothing: the kernel
 * closes the fd. Layout, host order: the head, then @count ranges, each
 * page-aligned with start < end, sorted by when they were logged (a range
 * that touches the last one extends it in place).
 */
#define UFAULT_PROTO_ZLOG_MAGIC 0x5a444655u /* "UFDZ" */
#define UFAULT_PROTO_ZLOG_MAX 65536u	    /* ranges */

struct ufault_proto_zlog_head {
	uint32_t magic; /* UFAULT_PROTO_ZLOG_MAGIC */
	uint32_t count;
	uint64_t reserved; /* 0 */
};

struct ufault_proto_zlog_range {
	uint64_t start, end;
};

#endif
