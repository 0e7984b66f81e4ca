/* SPDX-License-Identifier: MIT */
/*
 * file_scan_util.h - small helpers for bench/file_scan.c: fatal errors, the
 * clock, and the data file's oracle (the byte at every file offset is a pure
 * function of the offset, so each touch is checked with a few instructions
 * and a stale or corrupted file is noticed).
 */
#ifndef FILE_SCAN_UTIL_H
#define FILE_SCAN_UTIL_H

#include "bench_file.h" /* mix64 */
#include "bench_util.h" /* die, warnx, xcalloc, now_ns */

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/*
 * The oracle. The file is a sequence of little-endian 64-bit words; word i
 * is mix64(i ^ FILE_SCAN_SALT). Change the salt when the layout changes, so
 * an old file is detected and rewritten.
 */
#define FILE_SCAN_SALT 0x66696c655f736331ull /* "file_sc1" */

static inline uint8_t oracle_byte(uint64_t off)
{
	return (uint8_t)(mix64((off >> 3) ^ FILE_SCAN_SALT) >> ((off & 7) * 8));
}

/* Write the oracle's bytes [@off, @off + @len) to @buf; @off and @len
 * multiples of 8 (a bench_fill_fn). */
static void oracle_fill(void *out, uint64_t off, size_t len)
{
	unsigned char *buf = out;
	size_t i;

	for (i = 0; i < len; i += 8) {
		uint64_t w = mix64(((off + i) >> 3) ^ FILE_SCAN_SALT);
		int b;

		for (b = 0; b < 8; b++)
			buf[i + (size_t)b] = (unsigned char)(w >> (b * 8));
	}
}

#endif /* FILE_SCAN_UTIL_H */
