/* SPDX-License-Identifier: MIT */
/*
 * preload_cost.c - what libufault_preload.so adds to a call of the mmap
 * family: the same calls timed in a child run without the shim (the bare
 * system call, through libc) and in one run with it (LD_PRELOAD),
 * alternated over --runs pairs; medians of the per-call medians.
 *
 * Each child, for each size, maps, touches one byte of the first page and
 * unmaps --calls times, timing mmap and munmap one by one:
 *  - 64 KiB: below UFAULT_MIN_BYTES, passed to the kernel (the shim's
 *    cost on a call it does not take: a few checks);
 *  - 2 MiB: a region under the shim (ufault_mmap, ufault_munmap: the
 *    proxies' locks and bookkeeping, registration with the uffd); the
 *    touch is a fault ufault serves, which is not in the call figures.
 *
 * Only programs' calls are timed, never ufault's internals.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"

static const size_t sizes[] = {64u << 10, 2u << 20};
#define NR_SIZES (sizeof(sizes) / sizeof(sizes[0]))

static struct {
	unsigned int runs, calls;
	const char *shim;
} O = {.runs = 5, .calls = 2000};

void usage(FILE *f)
{
	fprintf(f, "usage: preload_cost [options]\n"
		   "Latency of mmap and munmap with and without libufault_preload.so.\n"
		   "\n"
		   "  --runs N     pairs of children (default 5)\n"
		   "  --calls N    mmap/munmap pairs per size per child (default 2000)\n"
		   "  --shim PATH  the shim (default: ../preload/libufault_preload.so next to\n"
		   "               this program)\n"
		   "  --help\n");
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The child: per size, the median ns of mmap and of munmap, to stdout. */
static int child(void)
{
	uint64_t *t_map = xcalloc(O.calls, sizeof(uint64_t)), *t_unmap = xcalloc(O.calls, 8);

	for (size_t s = 0; s < NR_SIZES; s++) {
		for (unsigned int i = 0; i < O.calls; i++) {
			uint64_t t0 = now_ns(), t1, t2;
			volatile unsigned char *p = mmap(NULL, sizes[s], PROT_READ | PROT_WRITE,
							 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

			t1 = now_ns();
			if (p == MAP_FAILED)
				die("mmap: %s", strerror(errno));
			p[0] = 1;
			t2 = now_ns();
			if (munmap((void *)p, sizes[s]))
				die("munmap: %s", strerror(errno));
			t_unmap[i] = now_ns() - t2;
			t_map[i] = t1 - t0;
		}
		qsort(t_map, O.calls, 8, cmp_u64);
		qsort(t_unmap, O.calls, 8, cmp_u64);
		printf("%llu %llu\n", (unsigned long long)t_map[O.calls / 2],
		       (unsigned long long)t_unmap[O.calls / 2]);
	}
	return 0;
}

/* One child, with the shim or not: its medians into @m (mmap, munmap per
 * size). */
static void measure(const char *self, bool shim, double *m)
{
	char calls[16];
	int pfd[2], status;
	FILE *f;
	pid_t pid;

	snprintf(calls, sizeof(calls), "%u", O.calls);
	if (pipe(pfd))
		die("pipe: %s", strerror(errno));
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (!pid) {
		dup2(pfd[1], STDOUT_FILENO);
		close(pfd[0]);
		if (shim)
			setenv("LD_PRELOAD", O.shim, 1);
		else
			unsetenv("LD_PRELOAD");
		execl(self, self, "--child", "--calls", calls, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	f = fdopen(pfd[0], "r");
	for (size_t s = 0; s < NR_SIZES; s++) {
		unsigned long long a = 0, b = 0;

		if (!f || fscanf(f, "%llu %llu", &a, &b) != 2)
			die("the child (%s) reported nothing", shim ? "shim" : "bare");
		m[2 * s] = (double)a;
		m[2 * s + 1] = (double)b;
	}
	fclose(f);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		die("the child (%s) failed", shim ? "shim" : "bare");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"runs", required_argument, NULL, 'r'}, {"calls", required_argument, NULL, 'c'},
	    {"shim", required_argument, NULL, 's'}, {"child", no_argument, NULL, 'C'},
	    {"help", no_argument, NULL, 'h'},	    {NULL, 0, NULL, 0},
	};
	double *v[2][2 * NR_SIZES], med[2][2 * NR_SIZES];
	char self[PATH_MAX];
	bool is_child = false;
	ssize_t n;
	int c;

	page_size = sysconf(_SC_PAGESIZE);
	O.shim = bench_next_to_self("../preload/libufault_preload.so", "libufault_preload.so");
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'r':
			O.runs = (unsigned int)parse_long(optarg, "--runs", 1, 1000);
			break;
		case 'c':
			O.calls = (unsigned int)parse_long(optarg, "--calls", 10, 1000000);
			break;
		case 's':
			O.shim = optarg;
			break;
		case 'C':
			is_child = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (is_child)
		return child();
	if (access(O.shim, R_OK))
		die("%s: %s (--shim)", O.shim, strerror(errno));
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		die("/proc/self/exe: %s", strerror(errno));
	self[n] = 0;
	printf("preload_cost: %u calls per size per child, %u runs, shim %s\n", O.calls, O.runs,
	       O.shim);
	for (int w = 0; w < 2; w++)
		for (size_t k = 0; k < 2 * NR_SIZES; k++)
			v[w][k] = xcalloc(O.runs, sizeof(double));
	for (unsigned int r = 0; r < O.runs; r++) {
		double m[2][2 * NR_SIZES];
		int first = (int)(r % 2); /* ABBA */

		measure(self, first, m[first]);
		measure(self, !first, m[!first]);
		for (int w = 0; w < 2; w++)
			for (size_t k = 0; k < 2 * NR_SIZES; k++)
				v[w][k][r] = m[w][k];
	}
	for (int w = 0; w < 2; w++)
		for (size_t k = 0; k < 2 * NR_SIZES; k++)
			med[w][k] = median(v[w][k], (int)O.runs);
	printf("\n%-8s %-7s %12s %12s %8s\n", "size", "call", "bare ns", "shim ns", "ratio");
	for (size_t s = 0; s < NR_SIZES; s++)
		for (int k = 0; k < 2; k++)
			printf("%-8s %-7s %12.0f %12.0f %8.2f\n",
			       sizes[s] < (1u << 20) ? "64K" : "2M", k ? "munmap" : "mmap",
			       med[0][2 * s + k], med[1][2 * s + k],
			       med[1][2 * s + k] / med[0][2 * s + k]);
	printf("\n64K calls pass through the shim to the kernel; 2M calls are regions "
	       "(ufault_mmap, ufault_munmap).\n");
	return 0;
}
