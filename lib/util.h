/* SPDX-License-Identifier: MIT */
/*
 * util.h - the few helpers every layer of the library uses: overflow-checked
 * rounding, the system page size (read once), container_of, a spin-wait
 * hint, positioned I/O to the end, ufault's threads, sizes as people write
 * them. Header-only, includes nothing of ufault's.
 */
#ifndef UFAULT_LIB_UTIL_H
#define UFAULT_LIB_UTIL_H

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define ufault__container_of(ptr, type, member)                                                    \
	((type *)((char *)(ptr) - __builtin_offsetof(type, member)))

/* *out = @x rounded up to a multiple of @a (a power of two); false if that
 * does not fit in 64 bits (a length near SIZE_MAX is bad input, not a
 * small number). */
static inline bool ufault__round_up(uint64_t x, uint64_t a, uint64_t *out)
{
	if (x > UINT64_MAX - (a - 1))
		return false;
	*out = (x + a - 1) & ~(a - 1);
	return true;
}

/* The system page size, read once per process (it never changes). */
static inline uint64_t ufault__sys_page(void)
{
	static uint64_t page;
	uint64_t v = __atomic_load_n(&page, __ATOMIC_RELAXED);

	if (!v) {
		long r = sysconf(_SC_PAGESIZE);

		v = r > 0 ? (uint64_t)r : 4096;
		__atomic_store_n(&page, v, __ATOMIC_RELAXED);
	}
	return v;
}

/* Sleep @ns (less than a second), not spinning: back-offs and polls. */
static inline void ufault__sleep_ns(long ns)
{
	struct timespec ts = {.tv_sec = 0, .tv_nsec = ns};

	nanosleep(&ts, NULL);
}

/*
 * pread(2) or pwrite(2) (@write) of @len bytes at @off of @fd, again after
 * EINTR and short transfers; the bytes done (fewer than @len only at the
 * end of the file), or -errno. The raw system calls, so that a race
 * checker does not read the buffer in user space: a write-back region's
 * memory may be written meanwhile, by design (writeback.h).
 */
static inline long ufault__pio(int fd, void *buf, size_t len, uint64_t off, bool write)
{
	size_t done = 0;

	while (done < len) {
		long n = syscall(write ? SYS_pwrite64 : SYS_pread64, fd, (char *)buf + done,
				 len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (long)done;
}

/*
 * Start one of ufault's threads (a worker, the evictor, a monitor) with
 * every signal blocked: the program's signals, process-directed ones
 * included, are delivered to its own threads, whose masks it chose, and
 * its handlers never run on a thread that may hold ufault's locks (a
 * program under the preload shim never created these threads). Faults of
 * ufault's own (SIGSEGV, SIGBUS) are delivered regardless. 0 or -errno.
 */
static inline int ufault__thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int ret;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -ret;
}

/* "N", "NK", "NM", "NG" (powers of 1024; "KiB"/"KB" and "B" too) into
 * *@out; false if @s is not that or the value does not fit. */
static inline bool ufault__parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	unsigned int shift = 0;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || s[0] == '-')
		return false;
	switch (*end) {
	case 'k':
	case 'K':
		shift = 10;
		end++;
		break;
	case 'm':
	case 'M':
		shift = 20;
		end++;
		break;
	case 'g':
	case 'G':
		shift = 30;
		end++;
		break;
	default:
		break;
	}
	if (*end == 'i' && end[1] == 'B')
		end += 2;
	else if (*end == 'B')
		end++;
	if (*end || v > (UINT64_MAX >> shift))
		return false;
	*out = (uint64_t)v << shift;
	return true;
}

static inline void ufault__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

#endif
