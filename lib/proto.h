/* SPDX-License-Identifier: MIT */
/*
 * proto.h - checking ufaultd's messages (include/ufault/protocol.h) and
 * Firecracker's region list, with no I/O: the daemon, the client side
 * (remote.c) and the fuzz target share these. Every function takes bytes
 * that may be anything and never reads past @n.
 */
#ifndef UFAULT_LIB_PROTO_H
#define UFAULT_LIB_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include <ufault/protocol.h>

/* A message that passed ufault__proto_check(). */
struct ufault__proto_msg {
	struct ufault_proto_hdr hdr;
	union {
		struct ufault_proto_hello hello;
		struct ufault_proto_region region;
		struct ufault_proto_range range;
		struct ufault_proto_budget budget;
		struct ufault_proto_reply reply;
	} u;
	const unsigned char *extra; /* REPLY: the data after the reply struct */
	size_t extra_len;
};

/*
 * Frame: how many bytes the message at @buf (@n bytes read so far) has in
 * all: 0 if the header is not complete yet, or -EPROTO (bad magic or
 * version), -EMSGSIZE (body over UFAULT_PROTO_MAX_BODY). *why: a reason.
 */
long ufault__proto_frame(const void *buf, size_t n, const char **why);

/*
 * Check one whole message (@n bytes, as framed) that came with @nfds fds,
 * against the system page @sys_page: the body length its type needs, the
 * fds it needs (exactly), reserved fields 0, alignment, no wrap, page size.
 * 0 and *out filled, or -EINVAL / -EPROTO / -EMSGSIZE / -EBADF (wrong fd
 * count), *why set.
 */
int ufault__proto_check(const void *buf, size_t n, unsigned int nfds, uint64_t sys_page,
			struct ufault__proto_msg *out, const char **why);

/* Does [start, start + len) overlap one of @have[0..@nr)? */
int ufault__proto_overlaps(const struct ufault_proto_region *have, unsigned int nr, uint64_t start,
			   uint64_t len);

/*
 * Check a removed-ranges log (protocol.h) read into @buf (@n bytes, the
 * whole file): its head, its count against @n and UFAULT_PROTO_ZLOG_MAX,
 * every range page-aligned (@sys_page), start < end <= @va_end. The count,
 * or -EINVAL with *why set. The ranges follow the head in @buf.
 */
long ufault__proto_zlog_check(const void *buf, size_t n, uint64_t sys_page, uint64_t va_end,
			      const char **why);

/* Build a message: header (@type, @seq, body @len) + body into @buf (room
 * for sizeof(hdr) + len); returns the total. */
size_t ufault__proto_build(void *buf, uint16_t type, uint32_t seq, const void *body, uint32_t len);

/* Firecracker's GuestRegionUffdMapping. */
struct ufault__fc_region {
	uint64_t base; /* base_host_virt_addr */
	uint64_t size;
	uint64_t offset;
	uint64_t page_size; /* bytes: page_size, or page_size_kib (bytes too, despite its name) */
};

#define UFAULT__FC_MAX_REGIONS 128u
#define UFAULT__FC_MAX_JSON 65536u

/*
 * Parse Firecracker's message: one JSON array of objects with the keys
 * base_host_virt_addr, size, offset, page_size and/or page_size_kib
 * (unsigned integers; both page keys, if present, must agree; unknown keys
 * are refused), at most @max of them, in @n bytes (not NUL-terminated;
 * trailing whitespace allowed). Each region: page size a power of two >=
 * @sys_page (4 KiB or a huge page size), base, size and offset aligned to
 * it, size > 0, no wrap; regions do not overlap. 0 and *nr set, or -EINVAL
 * / -E2BIG (more than @max) / -EMSGSIZE (@n over UFAULT__FC_MAX_JSON), *why set.
 */
int ufault__fc_parse(const char *json, size_t n, uint64_t sys_page, struct ufault__fc_region *out,
		     unsigned int max, unsigned int *nr, const char **why);

#endif
