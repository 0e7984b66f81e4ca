/* SPDX-License-Identifier: MIT */
/*
 * file_scan_util.h - small helpers for bench/file_scan.c: fatal errors, the
 * clock, and the data file's oracle (the byte at every file offset is a pure
 * function of the offset, so each touch is checked with a few instructions
 * and a stale or corrupted file is noticed).
 */
#ifndef FILE_SCAN_UTIL_H
#define FILE_SCAN_UTIL_H

#include "bench_util.h" /* die, warnx, xcalloc, now_ns */

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* splitmix64's finaliser: a bijective 64-bit mix. */
static inline uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

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

/* Write the oracle's bytes [@off, @off + @len) to @buf; @off and @len multiples of 8. */
static void oracle_fill(unsigned char *buf, uint64_t off, size_t len)
{
	size_t i;

	for (i = 0; i < len; i += 8) {
		uint64_t w = mix64(((off + i) >> 3) ^ FILE_SCAN_SALT);
		int b;

		for (b = 0; b < 8; b++)
			buf[i + (size_t)b] = (unsigned char)(w >> (b * 8));
	}
}

#endif /* FILE_SCAN_UTIL_H */
