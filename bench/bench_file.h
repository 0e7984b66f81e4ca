/* SPDX-License-Identifier: MIT */
/*
 * bench_file.h - the data files of the file benchmarks (file_scan,
 * buffer_pool): bytes that are a pure function of the offset, written once
 * and reused while they still match, so every read can be checked cheaply
 * and a stale file is noticed. bench_file.c has the bodies.
 */
#ifndef BENCH_FILE_H
#define BENCH_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* splitmix64's finaliser: a bijective 64-bit mix. */
static inline uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* The file's bytes [@off, @off + @len) into @buf (multiples of 8). */
typedef void (*bench_fill_fn)(void *buf, uint64_t off, size_t len);

/* Does a page read back (@got, at @off) still belong to this file? For
 * files the benchmark writes into, where only part of each page is fixed. */
typedef bool (*bench_page_ok_fn)(const void *got, uint64_t off, size_t len);

/* pread(2) all of it or die (@path for the message). */
void bench_pread_all(int fd, const char *path, void *buf, size_t len, uint64_t off);

/*
 * Make @path hold the @size bytes @fill gives: kept if it is a regular file
 * of that size whose first, last and 62 sampled pages match (equal what
 * @fill gives, or pass @page_ok where not NULL), else written
 * next to its name and renamed (never a half file), after a line saying so
 * on stdout unless @quiet, and checked again. Returns what happened, for the
 * header: "reused" or "created".
 */
const char *bench_data_file(const char *path, uint64_t size, bench_fill_fn fill,
			    bench_page_ok_fn page_ok, bool quiet);

/* 0 .. @n - 1 in an order fixed by @seed (Fisher-Yates over mix64). */
uint32_t *bench_shuffle(uint64_t n, uint64_t seed);

#endif
