/* SPDX-License-Identifier: MIT */
/*
 * churn.h - a source's oracle under churning proxies, for the source tests
 * (file, memfd, NBD). Header-only; include it after <cmocka.h> and
 * "../modes.h".
 *
 * tu_churn_run(c, secs): 4 checker threads read random bytes of the region
 * [c->base, + c->len) and compare each with c->expected(i) (byte i of the
 * region, a function of its source offset only), while the calling thread,
 * for @secs seconds, calls on random runs of whole region pages (c->page
 * bytes each) either ufault_madvise(MADV_DONTNEED) (the pages are filled
 * again from the source) or ufault_mprotect(PROT_READ) then
 * ufault_mprotect(PROT_READ | PROT_WRITE) (the range stays readable: only
 * PROT_WRITE comes and goes). The region must be mapped read-write and
 * never written. A wrong byte fails the test (fail_msg); at the end every
 * byte is checked once more. Prints the counts; returns the proxy calls.
 */
#ifndef UFAULT_TEST_CHURN_H
#define UFAULT_TEST_CHURN_H

#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

#define TU_CHURN_CHECKERS 4

struct tu_churn {
	struct ufault_ctx *ctx;
	unsigned char *base;
	size_t len, page;
	unsigned char (*expected)(size_t i);
	bool stop;	       /* atomic */
	unsigned long checked; /* atomic */
};

static inline void tu_churn_fail(struct tu_churn *c, size_t i, unsigned char got)
{
	fail_msg("[%s] byte %zu of the region is 0x%02x, expected 0x%02x",
		 ufault_lock_mode_name(tu_mode), i, got, c->expected(i));
}

static inline void *tu_churn_check_main(void *arg)
{
	struct tu_churn *c = arg;
	unsigned int seed = (unsigned int)(uintptr_t)&seed;
	unsigned long n = 0;

	while (!__atomic_load_n(&c->stop, __ATOMIC_RELAXED)) {
		size_t i = (size_t)rand_r(&seed) % c->len;
		unsigned char got = tu_read_byte(c->base + i);

		if (got != c->expected(i))
			tu_churn_fail(c, i, got);
		n++;
	}
	__atomic_fetch_add(&c->checked, n, __ATOMIC_RELAXED);
	return NULL;
}

static inline unsigned long tu_churn_run(struct tu_churn *c, double secs)
{
	const size_t pages = c->len / c->page;
	pthread_t th[TU_CHURN_CHECKERS];
	unsigned int seed = 7;
	unsigned long ops = 0;
	uint64_t t_end;

	c->stop = false;
	c->checked = 0;
	for (unsigned int i = 0; i < TU_CHURN_CHECKERS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, tu_churn_check_main, c), 0);
	t_end = tu_now_ns() + (uint64_t)(secs * 1e9);
	while (tu_now_ns() < t_end) {
		size_t first = (size_t)rand_r(&seed) % pages;
		size_t n = 1 + (size_t)rand_r(&seed) % (pages - first);
		unsigned char *p = c->base + first * c->page;

		if (rand_r(&seed) & 1) {
			assert_int_equal(ufault_madvise(c->ctx, p, n * c->page, MADV_DONTNEED), 0);
		} else {
			assert_int_equal(ufault_mprotect(c->ctx, p, n * c->page, PROT_READ), 0);
			assert_int_equal(
			    ufault_mprotect(c->ctx, p, n * c->page, PROT_READ | PROT_WRITE), 0);
		}
		ops++;
	}
	__atomic_store_n(&c->stop, true, __ATOMIC_RELAXED);
	for (unsigned int i = 0; i < TU_CHURN_CHECKERS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	for (size_t i = 0; i < c->len; i++)
		if (c->base[i] != c->expected(i))
			tu_churn_fail(c, i, c->base[i]);
	print_message("  [%s] %lu proxy calls, %lu random bytes checked\n",
		      ufault_lock_mode_name(tu_mode), ops, c->checked);
	return ops;
}

#endif
