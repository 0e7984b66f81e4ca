/* SPDX-License-Identifier: MIT */
/*
 * test_writer_starve.c - a proxy is never starved by a stream of faults.
 *
 * In region mode a fault holds its region's read lock for the whole fill.
 * With a reader-preferring rwlock (glibc's default), a ufault_munmap that
 * needs the region's write lock waits as long as any fill holds the read
 * side, and with several workers and a steady stream of faults some fill
 * always does: the munmap returns only once the faults stop. The contract
 * (ufault.h): writers are never starved; a proxy waits for the fills in
 * flight, not for faults that arrive after it.
 *
 * Workload: 4 workers, a callback source whose fill sleeps about 2 ms,
 * 8 threads touching fresh pages of one large region until the munmap has
 * returned or a fixed budget of pages is used up. Meanwhile the main
 * thread unmaps one page of the same region. The check is on behaviour:
 * the munmap must return while faults are still streaming (fewer pages
 * touched than the budget when it returned, and the faulting threads stop
 * because they saw it return, not because they ran out of pages). No time
 * is measured. Runs in every lock mode.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include <cmocka.h>

#include "../modes.h"

#define NR_WORKERS 4
#define NR_FAULTERS 8
#define BUDGET 1000 /* pages, all faulting threads together */
#define REGION_PAGES (BUDGET + 16)
#define HOLE_PAGE (BUDGET + 8) /* the page ufault_munmap takes out */
#define FILL_SLEEP_NS 2000000L
#define SEED 61

static size_t ps;

static int slow_fill(void *arg, uint64_t offset, void *buf, size_t len)
{
	struct timespec ts = {0, FILL_SLEEP_NS};

	(void)arg;
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
	tu_pattern_fill(buf, len, offset, SEED);
	return 0;
}

struct stream {
	char *base;
	unsigned int next;	      /* atomic: next page to touch */
	unsigned int touched;	      /* atomic: pages touched and checked */
	unsigned int munmap_done;     /* atomic: the munmap has returned */
	unsigned int stopped_by_flag; /* atomic: threads that saw munmap_done */
	unsigned int bad;	      /* atomic: pages with wrong contents */
};

static void *faulter_main(void *arg)
{
	struct stream *s = arg;

	for (;;) {
		unsigned int pg;

		if (__atomic_load_n(&s->munmap_done, __ATOMIC_ACQUIRE)) {
			__atomic_fetch_add(&s->stopped_by_flag, 1, __ATOMIC_RELAXED);
			break;
		}
		pg = __atomic_fetch_add(&s->next, 1, __ATOMIC_RELAXED);
		if (pg >= BUDGET)
			break;
		if (tu_read_byte(s->base + (size_t)pg * ps) != tu_pattern((uint64_t)pg * ps, SEED))
			__atomic_fetch_add(&s->bad, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&s->touched, 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

/*
 * One stream and one munmap. A starved writer can still slip in by luck
 * when every worker happens to be between two fills at once, so the test
 * runs this a few times: a correct library passes every round.
 */
static void stream_and_munmap(struct ufault_ctx *ctx, unsigned int round)
{
	struct stream s = {0};
	struct ufault_source src;
	pthread_t th[NR_FAULTERS];
	unsigned int at_return;
	unsigned char vec;
	char *base;
	int rc;

	ufault_source_init(&src, UFAULT_SOURCE_CALLBACK);
	src.callback.fill = slow_fill;
	base = ufault_mmap(ctx, NULL, REGION_PAGES * ps, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, &src, 0);
	assert_ptr_not_equal(base, MAP_FAILED);
	s.base = base;

	for (unsigned int i = 0; i < NR_FAULTERS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, faulter_main, &s), 0);
	/* Faults are streaming: every worker has been busy for a while. */
	while (__atomic_load_n(&s.touched, __ATOMIC_ACQUIRE) < 4 * NR_FAULTERS)
		usleep(1000);

	rc = ufault_munmap(ctx, base + (size_t)HOLE_PAGE * ps, ps);
	at_return = __atomic_load_n(&s.touched, __ATOMIC_ACQUIRE);
	__atomic_store_n(&s.munmap_done, 1, __ATOMIC_RELEASE);
	for (unsigned int i = 0; i < NR_FAULTERS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);

	printf("  [%s] round %u: munmap returned after %u of %u pages; %u of %u threads "
	       "stopped on it\n",
	       ufault_lock_mode_name(tu_mode), round, at_return, BUDGET, s.stopped_by_flag,
	       NR_FAULTERS);
	assert_int_equal(rc, 0);
	assert_int_equal(s.bad, 0);
	/*
	 * The munmap returned while faults were streaming: fewer pages than
	 * the budget were touched by then, and every faulting thread stopped
	 * because it saw the munmap return, none because the pages ran out
	 * (with a starved writer the stream drains first and the munmap gets
	 * in only as the last faults finish).
	 */
	if (at_return >= BUDGET || s.stopped_by_flag != NR_FAULTERS)
		fail_msg("[%s] round %u: ufault_munmap returned only as the faulting threads "
			 "ran out of pages (%u of %u touched when it returned, %u of %u "
			 "threads stopped on it): the writer starved behind the faults",
			 ufault_lock_mode_name(tu_mode), round, at_return, BUDGET,
			 s.stopped_by_flag, NR_FAULTERS);
	assert_true(__atomic_load_n(&s.next, __ATOMIC_RELAXED) < BUDGET);

	/* The hole is gone, the region around it still serves. */
	errno = 0;
	assert_int_equal(mincore(base + (size_t)HOLE_PAGE * ps, ps, &vec), -1);
	assert_int_equal(errno, ENOMEM);
	assert_int_equal(tu_read_byte(base + (size_t)(HOLE_PAGE + 1) * ps),
			 tu_pattern((uint64_t)(HOLE_PAGE + 1) * ps, SEED));
	assert_int_equal(ufault_munmap(ctx, base, REGION_PAGES * ps), 0);
}

static void test_munmap_not_starved(void **state)
{
	struct ufault_ctx *ctx = NULL;

	(void)state;
	tu_watchdog(120);
	assert_int_equal(tu_ctx_create(&ctx, tu_mode, NR_WORKERS, 0), 0);
	for (unsigned int round = 0; round < 3; round++)
		stream_and_munmap(ctx, round);
	ufault_ctx_destroy(ctx);
	tu_watchdog(0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_munmap_not_starved),
	};
	int failed;

	ps = tu_page_size();
	/* An optional argument runs only the tests whose name matches it. */
	failed =
	    tu_run_every_mode("writer_starve", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
	return failed ? 1 : 0;
}
