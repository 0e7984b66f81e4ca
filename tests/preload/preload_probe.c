/* SPDX-License-Identifier: MIT */
/*
 * preload_probe.c - a plain program (nothing of ufault in it) that uses the
 * mmap family the way runtimes and allocators do, and prints what it
 * observed: one line per case, bytes summarised as checksums, never an
 * address. run_preload.sh runs it with and without libufault_preload.so:
 * the outputs must be identical, and the shim's UFAULT_TRACE report must
 * show the regions it made and the faults it served.
 *
 * Cases: a large private anonymous mapping (zeros, then written); MAP_FIXED
 * over part of one (anonymous, then a file); a PROT_NONE MAP_NORESERVE
 * reservation committed piecewise with mprotect, its uncommitted part still
 * SIGSEGV (the program's handler runs); mremap grow, shrink and
 * MREMAP_FIXED move; madvise(MADV_DONTNEED) and MADV_FREE; munmap of a
 * middle part and MAP_FIXED_NOREPLACE into the hole; MAP_STACK,
 * MAP_GROWSDOWN and small mappings (left to the kernel); errno kept on
 * success, set on failure; threads mapping, touching and unmapping at once;
 * fork (the child sees what the parent wrote, zeros elsewhere, and maps its
 * own); posix_spawn and exec of a child program; shmat(SHM_REMAP) over a
 * region.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB (1ul << 20)
#define PA (MAP_PRIVATE | MAP_ANONYMOUS)
#define RW (PROT_READ | PROT_WRITE)

extern char **environ;

static size_t ps;
static int failures;

static void check(int ok, const char *what)
{
	if (!ok) {
		printf("FAIL %s (errno %d)\n", what, errno);
		failures++;
	}
}

/* FNV-1a over @len bytes. */
static uint64_t sum(const void *p, size_t len)
{
	const volatile unsigned char *b = p;
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < len; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

static int all_zero(const void *p, size_t len)
{
	const volatile unsigned char *b = p;

	for (size_t i = 0; i < len; i++)
		if (b[i])
			return 0;
	return 1;
}

/* One byte per page, a function of the page and @seed. */
static void stamp(unsigned char *p, size_t len, unsigned int seed)
{
	for (size_t i = 0; i < len; i += ps)
		p[i + (i / ps) % 64] = (unsigned char)(i / ps * 31 + seed) | 1;
}

static void *map(size_t len, int prot, int flags)
{
	void *p = mmap(NULL, len, prot, flags, -1, 0);

	check(p != MAP_FAILED, "mmap");
	return p;
}

static void case_large(void)
{
	unsigned char *p = map(16 * MIB, RW, PA);

	check(all_zero(p, 16 * MIB), "large: zeros");
	stamp(p, 16 * MIB, 1);
	printf("large %016llx\n", (unsigned long long)sum(p, 16 * MIB));
	munmap(p, 16 * MIB);
}

static void case_fixed(void)
{
	unsigned char *p = map(16 * MIB, RW, PA), *q;
	char path[] = "/tmp/preload_probe_XXXXXX";
	int fd = mkstemp(path);

	stamp(p, 16 * MIB, 2);
	q = mmap(p + 4 * MIB, 4 * MIB, RW, PA | MAP_FIXED, -1, 0);
	check(q == p + 4 * MIB, "fixed: anonymous over a region");
	check(all_zero(q, 4 * MIB), "fixed: new part zeros");
	check(fd >= 0 && ftruncate(fd, 2 * MIB) == 0, "fixed: file");
	check(pwrite(fd, "file bytes", 10, 5) == 10, "fixed: file write");
	q = mmap(p + 10 * MIB, 2 * MIB, RW, MAP_PRIVATE | MAP_FIXED, fd, 0);
	check(q == p + 10 * MIB && !memcmp(q + 5, "file bytes", 10), "fixed: file over a region");
	printf("fixed %016llx\n", (unsigned long long)sum(p, 16 * MIB));
	munmap(p, 16 * MIB);
	close(fd);
	unlink(path);
}

static sigjmp_buf segv_jmp;

static void on_segv(int sig)
{
	(void)sig;
	siglongjmp(segv_jmp, 1);
}

static void case_reserve(void)
{
	struct sigaction sa = {.sa_handler = on_segv}, old;
	unsigned char *p = map(64 * MIB, PROT_NONE, PA | MAP_NORESERVE);
	volatile int faulted = 0;

	check(mprotect(p + 8 * MIB, 8 * MIB, RW) == 0, "reserve: commit");
	stamp(p + 8 * MIB, 8 * MIB, 3);
	check(mprotect(p + 16 * MIB, 4 * MIB, PROT_READ) == 0, "reserve: read-only");
	check(all_zero(p + 16 * MIB, 4 * MIB), "reserve: read-only zeros");
	sigaction(SIGSEGV, &sa, &old);
	if (!sigsetjmp(segv_jmp, 1))
		(void)*(volatile unsigned char *)(p + 40 * MIB);
	else
		faulted = 1;
	sigaction(SIGSEGV, &old, NULL);
	check(faulted, "reserve: uncommitted part faults");
	printf("reserve %016llx segv %d\n", (unsigned long long)sum(p + 8 * MIB, 8 * MIB), faulted);
	munmap(p, 64 * MIB);
}

static void case_remap(void)
{
	unsigned char *p = map(8 * MIB, RW, PA), *q, *r;
	void *dst = map(16 * MIB, PROT_NONE, PA);
	uint64_t before;

	stamp(p, 8 * MIB, 4);
	before = sum(p, 8 * MIB);
	q = mremap(p, 8 * MIB, 16 * MIB, MREMAP_MAYMOVE);
	check(q != MAP_FAILED, "remap: grow");
	check(sum(q, 8 * MIB) == before && all_zero(q + 8 * MIB, 8 * MIB), "remap: grown bytes");
	q = mremap(q, 16 * MIB, 12 * MIB, 0);
	check(q != MAP_FAILED, "remap: shrink");
	r = mremap(q, 12 * MIB, 12 * MIB, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	check(r == dst, "remap: fixed move");
	check(sum(r, 8 * MIB) == before, "remap: moved bytes");
	printf("remap %016llx\n", (unsigned long long)sum(r, 12 * MIB));
	munmap(r, 16 * MIB);
}

static void case_advise(void)
{
	unsigned char *p = map(8 * MIB, RW, PA);

	stamp(p, 8 * MIB, 5);
	check(madvise(p, 2 * MIB, MADV_DONTNEED) == 0, "advise: dontneed");
	check(all_zero(p, 2 * MIB), "advise: dropped reads zeros");
	check(madvise(p + 2 * MIB, 2 * MIB, MADV_FREE) == 0, "advise: free");
	memset(p + 2 * MIB, 7, 2 * MIB); /* written again: kept */
	printf("advise %016llx\n", (unsigned long long)sum(p, 8 * MIB));
	munmap(p, 8 * MIB);
}

static void case_hole(void)
{
	unsigned char *p = map(12 * MIB, RW, PA), *q;

	stamp(p, 12 * MIB, 6);
	check(munmap(p + 4 * MIB, 4 * MIB) == 0, "hole: munmap middle");
	q = mmap(p + 4 * MIB, 4 * MIB, RW, PA | MAP_FIXED_NOREPLACE, -1, 0);
	check(q == p + 4 * MIB, "hole: noreplace into it");
	check(all_zero(q, 4 * MIB), "hole: zeros");
	check(mmap(p, 4 * MIB, RW, PA | MAP_FIXED_NOREPLACE, -1, 0) == MAP_FAILED &&
		  errno == EEXIST,
	      "hole: noreplace over a mapping is EEXIST");
	printf("hole %016llx\n", (unsigned long long)sum(p, 12 * MIB));
	munmap(p, 12 * MIB);
}

static void case_kernel_kinds(void)
{
	unsigned char *s = map(8 * MIB, RW, PA | MAP_STACK);
	unsigned char *g = map(2 * MIB, RW, PA | MAP_GROWSDOWN);
	unsigned char *t = map(64 * 1024, RW, PA);

	stamp(s, 8 * MIB, 7);
	stamp(g, 2 * MIB, 8);
	stamp(t, 64 * 1024, 9);
	printf("kernel %016llx %016llx %016llx\n", (unsigned long long)sum(s, 8 * MIB),
	       (unsigned long long)sum(g, 2 * MIB), (unsigned long long)sum(t, 64 * 1024));
	munmap(s, 8 * MIB);
	munmap(g, 2 * MIB);
	munmap(t, 64 * 1024);
}

static void case_errno(void)
{
	void *p;

	errno = 1234;
	p = mmap(NULL, 4 * MIB, RW, PA, -1, 0);
	check(p != MAP_FAILED && errno == 1234, "errno: kept by mmap");
	check(munmap(p, 4 * MIB) == 0 && errno == 1234, "errno: kept by munmap");
	check(munmap((char *)p + 1, ps) == -1 && errno == EINVAL, "errno: EINVAL");
	check(mmap(NULL, 0, RW, PA, -1, 0) == MAP_FAILED && errno == EINVAL, "errno: zero length");
	printf("errno ok\n");
}

static void *thread_main(void *arg)
{
	unsigned int seed = (unsigned int)(uintptr_t)arg;
	uint64_t h = 0;

	for (int i = 0; i < 20; i++) {
		unsigned char *p = mmap(NULL, 2 * MIB, RW, PA, -1, 0);

		if (p == MAP_FAILED)
			return (void *)1;
		if (!all_zero(p, 2 * MIB))
			return (void *)2;
		stamp(p, 2 * MIB, seed + (unsigned int)i);
		h ^= sum(p, 2 * MIB);
		if (munmap(p, 2 * MIB))
			return (void *)3;
	}
	return (void *)(uintptr_t)(h ? 0 : 4);
}

static void case_threads(void)
{
	pthread_t th[4];
	void *r;
	int bad = 0;

	for (uintptr_t i = 0; i < 4; i++)
		check(pthread_create(&th[i], NULL, thread_main, (void *)(i * 100)) == 0, "threads");
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], &r);
		bad |= r != NULL;
	}
	check(!bad, "threads: each checked its mappings");
	printf("threads %d\n", bad);
}

static void case_fork(void)
{
	unsigned char *p = map(16 * MIB, RW, PA);
	uint64_t half;
	int status = -1;
	pid_t pid;

	stamp(p, 8 * MIB, 10);
	half = sum(p, 8 * MIB);
	fflush(stdout);
	pid = fork();
	if (!pid) {
		unsigned char *q;

		/* What the parent wrote, zeros where it never touched. */
		if (sum(p, 8 * MIB) != half || !all_zero(p + 8 * MIB, 8 * MIB))
			_exit(2);
		stamp(p, 16 * MIB, 11); /* its own copy */
		q = mmap(NULL, 8 * MIB, RW, PA, -1, 0);
		if (q == MAP_FAILED || !all_zero(q, 8 * MIB))
			_exit(3);
		stamp(q, 8 * MIB, 12);
		if (munmap(q, 8 * MIB) || munmap(p, 16 * MIB))
			_exit(4);
		_exit(0);
	}
	check(pid > 0 && waitpid(pid, &status, 0) == pid, "fork: wait");
	check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fork: the child's checks");
	check(sum(p, 8 * MIB) == half && all_zero(p + 8 * MIB, 8 * MIB), "fork: parent unchanged");
	printf("fork %d %016llx\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
	       (unsigned long long)half);
	munmap(p, 16 * MIB);
}

static void case_spawn(const char *self)
{
	unsigned char *p = map(8 * MIB, RW, PA);
	char *argv[] = {(char *)self, "child", NULL};
	int status = -1;
	pid_t pid;

	stamp(p, 8 * MIB, 13);
	fflush(stdout);
	check(posix_spawn(&pid, self, NULL, NULL, argv, environ) == 0, "spawn");
	check(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "spawn: the child ran");
	pid = fork();
	if (!pid) {
		execve(self, argv, environ);
		_exit(127);
	}
	check(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "exec: the child ran");
	printf("spawn %016llx\n", (unsigned long long)sum(p, 8 * MIB));
	munmap(p, 8 * MIB);
}

static void case_shm(void)
{
	unsigned char *p = map(8 * MIB, RW, PA), *q;
	int id = shmget(IPC_PRIVATE, 2 * MIB, IPC_CREAT | 0600);

	stamp(p, 8 * MIB, 14);
	check(id >= 0, "shm: shmget");
	q = shmat(id, p + 2 * MIB, SHM_REMAP);
	check(q == p + 2 * MIB, "shm: remap over a region");
	check(all_zero(q, 2 * MIB), "shm: its zeros");
	memset(q, 3, 2 * MIB);
	printf("shm %016llx\n", (unsigned long long)sum(p, 8 * MIB));
	shmdt(q);
	shmctl(id, IPC_RMID, NULL);
	munmap(p, 8 * MIB);
}

int main(int argc, char **argv)
{
	ps = (size_t)sysconf(_SC_PAGESIZE);
	if (argc > 1 && !strcmp(argv[1], "child")) {
		/* Spawned: a region of its own, checked. */
		unsigned char *p = mmap(NULL, 4 * MIB, RW, PA, -1, 0);

		if (p == MAP_FAILED || !all_zero(p, 4 * MIB))
			return 1;
		stamp(p, 4 * MIB, 15);
		return munmap(p, 4 * MIB) ? 2 : 0;
	}
	case_large();
	case_fixed();
	case_reserve();
	case_remap();
	case_advise();
	case_hole();
	case_kernel_kinds();
	case_errno();
	case_threads();
	case_fork();
	case_spawn(argv[0]);
	case_shm();
	printf("failures %d\n", failures);
	return failures ? 1 : 0;
}
