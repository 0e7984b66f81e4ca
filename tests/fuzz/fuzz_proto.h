/* SPDX-License-Identifier: MIT */
/*
 * fuzz_proto.h - the one entry the fuzz target and test_proto share, so the
 * seed corpus is replayed in ctest through exactly what libFuzzer runs.
 */
#ifndef UFAULT_FUZZ_PROTO_H
#define UFAULT_FUZZ_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define FUZZ_PROTO_NATIVE_OK 1u /* data[1..] passed ufault__proto_check() */
#define FUZZ_PROTO_FC_OK 2u	/* data passed ufault__fc_parse() */
#define FUZZ_PROTO_ZLOG_OK 4u	/* data passed ufault__proto_zlog_check() */

/* The system page both parsers are run against. */
#define FUZZ_PROTO_SYS_PAGE 4096u

/*
 * Feed @data to the native checker (data[0] % 3: the fd count; the rest:
 * the message) and, whole, to the Firecracker parser and the removed-ranges
 * log checker. Aborts if either
 * breaks a promise of lib/proto.h; returns the FUZZ_PROTO_* that accepted.
 */
unsigned int fuzz_proto_one(const uint8_t *data, size_t size);

#endif
