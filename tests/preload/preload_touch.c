/* SPDX-License-Identifier: MIT */
/*
 * preload_touch.c - a plain program (nothing of ufault in it) that touches
 * a lot of private anonymous memory and checks every byte it reads back:
 * run_preload.sh's memory_limit case runs it with and without
 * libufault_preload.so under UFAULT_MEMORY_LIMIT, compares the outputs and
 * bounds the peak RSS.
 *
 * usage: preload_touch TOTAL_MIB MAP_MIB RSS_FILE
 *
 * TOTAL_MIB of memory in mappings of MAP_MIB each. Every 8-byte word of a
 * page holds a function of its address's page number, its index and a
 * generation, so a page that comes back from anywhere is checked whole:
 *   1. generation 1 written into every page, in order;
 *   2. every page checked, generation 2 written, in reverse order;
 *   3. what programs do between: a whole mapping unmapped and mapped again,
 *      MADV_DONTNEED over half of another, mremap growing a third, and
 *      MAP_FIXED anonymous over part of a fourth, each checked (zeros where
 *      the memory is new, generation 2 where it is kept) and written;
 *   4. every page checked again.
 * The peak RSS (VmHWM) is written to RSS_FILE (in KiB) after step 4, before
 * step 5 (so that the fork's bring-back does not count):
 *   5. fork: the child checks every page, the parent waits, then checks
 *      every page once more.
 * stdout: one line per step with its count of wrong words (0 expected), so
 * the outputs with and without the shim must be identical; never an
 * address. Exit 0 if every check passed, 1 otherwise.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB (1ul << 20)
#define PA (MAP_PRIVATE | MAP_ANONYMOUS)
#define RW (PROT_READ | PROT_WRITE)

/* A call the program needs failed: say which, exit 2. */
#define DIE(what)                                                                                  \
	do {                                                                                       \
		perror(what);                                                                      \
		return 2;                                                                          \
	} while (0)

static size_t ps, map_len, nr_maps;
static unsigned char **maps;
static size_t *lens; /* each mapping's length (step 3 grows one) */

/* A page's words: 0 where the page holds zeros (@gen 0). */
static uint64_t word(size_t m, size_t pg, size_t i, uint64_t gen)
{
	if (!gen)
		return 0;
	return (m * 1000003u + pg) * 0x9e3779b97f4a7c15ull ^ (i * 0xbf58476d1ce4e5b9ull) ^ gen;
}

static void put(size_t m, size_t pg, uint64_t gen)
{
	uint64_t *w = (uint64_t *)(maps[m] + pg * ps);

	for (size_t i = 0; i < ps / 8; i++)
		w[i] = word(m, pg, i, gen);
}

static size_t wrong(size_t m, size_t pg, uint64_t gen)
{
	const uint64_t *w = (const uint64_t *)(maps[m] + pg * ps);
	size_t bad = 0;

	for (size_t i = 0; i < ps / 8; i++)
		bad += w[i] != word(m, pg, i, gen);
	return bad;
}

/* Wrong words in every page of every mapping, against @gen. */
static size_t check_all(uint64_t gen)
{
	size_t bad = 0;

	for (size_t m = 0; m < nr_maps; m++)
		for (size_t pg = 0; pg < lens[m] / ps; pg++)
			bad += wrong(m, pg, gen);
	return bad;
}

static size_t rss_hwm_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	size_t kib = 0;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %zu kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib;
}

int main(int argc, char **argv)
{
	size_t total, bad, fails = 0;
	FILE *rss;

	if (argc != 4 || atol(argv[1]) <= 0 || atol(argv[2]) <= 0 ||
	    atol(argv[1]) % atol(argv[2]) || atol(argv[1]) / atol(argv[2]) < 4) {
		fprintf(stderr,
			"usage: preload_touch TOTAL_MIB MAP_MIB RSS_FILE (at least 4 maps)\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	ps = (size_t)sysconf(_SC_PAGESIZE);
	total = (size_t)atol(argv[1]) * MIB;
	map_len = (size_t)atol(argv[2]) * MIB;
	nr_maps = total / map_len;
	maps = calloc(nr_maps, sizeof(*maps));
	lens = calloc(nr_maps, sizeof(*lens));
	if (!maps || !lens)
		return 2;
	for (size_t m = 0; m < nr_maps; m++) {
		maps[m] = mmap(NULL, map_len, RW, PA, -1, 0);
		if (maps[m] == MAP_FAILED)
			DIE("mmap");
		lens[m] = map_len;
	}
	printf("%zu MiB in %zu mappings of %zu MiB\n", total / MIB, nr_maps, map_len / MIB);

	/* 1 */
	for (size_t m = 0; m < nr_maps; m++)
		for (size_t pg = 0; pg < map_len / ps; pg++)
			put(m, pg, 1);
	printf("1 written\n");

	/* 2 */
	bad = 0;
	for (size_t m = nr_maps; m-- > 0;)
		for (size_t pg = map_len / ps; pg-- > 0;) {
			bad += wrong(m, pg, 1);
			put(m, pg, 2);
		}
	printf("2 wrong words %zu\n", bad);
	fails += bad;

	/* 3: mapping 0 unmapped and mapped again: zeros. */
	bad = 0;
	if (munmap(maps[0], map_len))
		DIE("munmap");
	maps[0] = mmap(NULL, map_len, RW, PA, -1, 0);
	if (maps[0] == MAP_FAILED)
		DIE("mmap");
	for (size_t pg = 0; pg < map_len / ps; pg++) {
		bad += wrong(0, pg, 0);
		put(0, pg, 2);
	}
	/* Mapping 1: its first half dropped: zeros there, generation 2 after. */
	if (madvise(maps[1], map_len / 2, MADV_DONTNEED))
		DIE("madvise");
	for (size_t pg = 0; pg < map_len / ps; pg++) {
		bad += wrong(1, pg, pg < map_len / 2 / ps ? 0 : 2);
		put(1, pg, 2);
	}
	/* Mapping 2 grown by half (it may move): zeros in the new part. */
	maps[2] = mremap(maps[2], map_len, map_len + map_len / 2, MREMAP_MAYMOVE);
	if (maps[2] == MAP_FAILED)
		DIE("mremap");
	lens[2] = map_len + map_len / 2;
	for (size_t pg = 0; pg < lens[2] / ps; pg++) {
		bad += wrong(2, pg, pg < map_len / ps ? 2 : 0);
		put(2, pg, 2);
	}
	/* Mapping 3: MAP_FIXED anonymous over its second quarter: zeros. */
	if (mmap(maps[3] + map_len / 4, map_len / 4, RW, PA | MAP_FIXED, -1, 0) !=
	    maps[3] + map_len / 4)
		DIE("mmap MAP_FIXED");
	for (size_t pg = 0; pg < map_len / ps; pg++) {
		bad += wrong(3, pg, pg >= map_len / 4 / ps && pg < map_len / 2 / ps ? 0 : 2);
		put(3, pg, 2);
	}
	printf("3 wrong words %zu\n", bad);
	fails += bad;

	/* 4 */
	bad = check_all(2);
	printf("4 wrong words %zu\n", bad);
	fails += bad;
	rss = fopen(argv[3], "w");
	if (!rss)
		DIE(argv[3]);
	fprintf(rss, "%zu\n", rss_hwm_kib());
	fclose(rss);

	/* 5 */
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		size_t b = check_all(2);

		if (b)
			printf("5 child: wrong words %zu\n", b);
		_exit(b ? 1 : 0);
	}
	int st = 0;
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		DIE("fork");
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		printf("5 child saw every page\n");
	else if (WIFSIGNALED(st))
		printf("5 child killed by signal %d\n", WTERMSIG(st));
	else
		printf("5 child exited %d\n", WEXITSTATUS(st));
	fails += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	bad = check_all(2);
	printf("5 wrong words after the fork %zu\n", bad);
	fails += bad;
	return fails ? 1 : 0;
}
