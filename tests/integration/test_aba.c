/* SPDX-License-Identifier: MIT */
/*
 * test_aba.c - the ABA case, forced deterministically in every lock mode:
 * munmap + mmap (or one MAP_FIXED) at the same address with a different
 * source while a fill for the old region is still running must never leave
 * the old source's bytes in the new mapping.
 *
 *   region A at X, callback source whose FIRST fill blocks until released
 *   and returns 'A' bytes; the new source returns 'B' bytes.
 *   T1 touches X and parks; the fill for A starts and blocks (the callback
 *   posts a semaphore, so we know).
 *   Thread P replaces A at X by B:
 *     "munmap_mmap": ufault_munmap(X), a pause, ufault_mmap(X, NOREPLACE);
 *     "map_fixed":   ufault_mmap(X, MAP_FIXED) over A.
 *   spec mode:  P must complete while the fill is still blocked (proxies
 *               never wait for slow fills); then the fill is released and
 *               its speculation must abort (DETACHED or GEN counter).
 *   other modes: the fill holds a lock P needs; P is left to block for a
 *               while, then the fill is released and P completes.
 *   Then: every byte of X is 'B', never 'A'. T1's own view: 'B' in spec
 *   mode; 'A' or 'B' (uniformly) in the others, where its fault may have
 *   legitimately completed before the munmap.
 *
 * T1 may be woken by the unregister and re-fault while nothing is mapped at
 * X: that SIGSEGV is caught (siglongjmp) and T1 retries once the new
 * mapping is published. In munmap_mmap P pauses between munmap and mmap so
 * a woken T1 meets the hole, not a half-made mapping. In map_fixed T1 may
 * legitimately read a torn page while the mapping is replaced, so only the
 * final read is judged there.
 *
 * The munmap_mmap variant uses MAP_FIXED_NOREPLACE for the new mapping: X is
 * a hole for a moment and MAP_FIXED could clobber a mapping somebody else
 * put there; the library path (map at a fixed address that is free) is the
 * same.
 */
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include <cmocka.h>

#include "../modes.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define RW (PROT_READ | PROT_WRITE)
#define PA (MAP_PRIVATE | MAP_ANONYMOUS)
#define ITERS 3

enum variant { V_MUNMAP_MMAP, V_MAP_FIXED };

struct aba {
	struct ufault_ctx *ctx;
	enum variant v;
	char *x;
	size_t ps;
	sem_t entered, release;
	int a_calls, b_calls; /* atomic */
	int a_done;	      /* atomic: the blocked fill returned */
	int published;	      /* atomic: the B mapping is in place */
	int p_done;	      /* atomic */
	/* P's results */
	int unmap_rc, unmap_err;
	void *map_ret;
	int map_err;
	/* T1's results */
	int t1_segv;
	int t1_view; /* 'A', 'B', 0 = zeros, '?' = anything else */
	unsigned char t1_first_bad;
};

static struct aba g;

/*
 * T1 reads X while P replaces the mapping under it: that race is the
 * scenario itself. TSan models mmap/munmap as writes to the range, so tell
 * it to ignore T1's reads of X (the oracle checks them instead).
 */
#if defined(__SANITIZE_THREAD__)
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
#define IGNORE_READS_BEGIN() AnnotateIgnoreReadsBegin(__FILE__, __LINE__)
#define IGNORE_READS_END() AnnotateIgnoreReadsEnd(__FILE__, __LINE__)
#else
#define IGNORE_READS_BEGIN()                                                                       \
	do {                                                                                       \
	} while (0)
#define IGNORE_READS_END()                                                                         \
	do {                                                                                       \
	} while (0)
#endif

static int fill_a(void *arg, uint64_t off, void *buf, size_t len)
{
	struct aba *t = arg;

	if (__atomic_fetch_add(&t->a_calls, 1, __ATOMIC_SEQ_CST) == 0) {
		sem_post(&t->entered);
		while (sem_wait(&t->release) && errno == EINTR)
			;
		memset(buf, 'A', len);
		__atomic_store_n(&t->a_done, 1, __ATOMIC_RELEASE);
		return 0;
	}
	memset(buf, 'A', len);
	return 0;
}

static int fill_b(void *arg, uint64_t off, void *buf, size_t len)
{
	struct aba *t = arg;

	__atomic_fetch_add(&t->b_calls, 1, __ATOMIC_SEQ_CST);
	memset(buf, 'B', len);
	return 0;
}

static struct ufault_source src_of(ufault_fill_fn fn, struct aba *t)
{
	struct ufault_source s;

	ufault_source_init(&s, UFAULT_SOURCE_CALLBACK);
	s.callback.fill = fn;
	s.callback.arg = t;
	return s;
}

static int classify(const unsigned char *b, size_t len, unsigned char *bad)
{
	unsigned char c = b[0];

	for (size_t i = 1; i < len; i++)
		if (b[i] != c) {
			*bad = b[i];
			return '?';
		}
	if (c == 'A' || c == 'B' || c == 0)
		return c;
	*bad = c;
	return '?';
}

/* ---- T1: the faulting thread, tolerant of SIGSEGV on a hole ---- */

static __thread sigjmp_buf t1_jb;
static __thread volatile sig_atomic_t t1_armed;

static void segv_handler(int sig, siginfo_t *si, void *uc)
{
	(void)si;
	(void)uc;
	if (!t1_armed) {
		/* Not ours: die as the default action would. */
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	t1_armed = 0;
	siglongjmp(t1_jb, 1);
}

/*
 * Retry only once B is in place AND the blocked fill for A has returned
 * (plus a moment for its install attempt): X is then still missing in the
 * new mapping when the stale fill tries to install, which is the window
 * the ABA bug needs. Retrying earlier would populate X with B first and
 * hide the bug behind an EEXIST.
 */
static void wait_published(void)
{
	while (!__atomic_load_n(&g.published, __ATOMIC_ACQUIRE) ||
	       !__atomic_load_n(&g.a_done, __ATOMIC_ACQUIRE))
		usleep(1000);
	usleep(50 * 1000);
}

static void *t1_main(void *arg)
{
	struct aba *t = arg;
	unsigned char *buf = malloc(t->ps);
	volatile unsigned char *x = (volatile unsigned char *)t->x;

	if (sigsetjmp(t1_jb, 1)) {
		/* Touched X while nothing was mapped there. */
		__atomic_fetch_add(&t->t1_segv, 1, __ATOMIC_SEQ_CST);
		wait_published();
	}
	IGNORE_READS_BEGIN(); /* again after a longjmp: it only over-ignores */
	t1_armed = 1;
	for (size_t i = 0; i < t->ps; i++)
		buf[i] = x[i]; /* x[0] parks us in the kernel */
	t1_armed = 0;
	IGNORE_READS_END();
	t->t1_view = classify(buf, t->ps, &t->t1_first_bad);
	free(buf);
	return NULL;
}

/* ---- P: the proxy thread ---- */

static void *p_main(void *arg)
{
	struct aba *t = arg;
	struct ufault_source sb = src_of(fill_b, t);

	if (t->v == V_MUNMAP_MMAP) {
		errno = 0;
		t->unmap_rc = ufault_munmap(t->ctx, t->x, t->ps);
		t->unmap_err = errno;
		/* Let a T1 woken by the unregister meet the hole. */
		usleep(50 * 1000);
		errno = 0;
		t->map_ret = ufault_mmap(t->ctx, t->x, t->ps, RW, PA | MAP_FIXED_NOREPLACE, &sb, 0);
	} else {
		errno = 0;
		t->map_ret = ufault_mmap(t->ctx, t->x, t->ps, RW, PA | MAP_FIXED, &sb, 0);
	}
	t->map_err = errno;
	if (t->map_ret == (void *)t->x)
		__atomic_store_n(&t->published, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&t->p_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static bool wait_flag(int *flag, unsigned int ms)
{
	for (unsigned int i = 0; i < ms; i++) {
		if (__atomic_load_n(flag, __ATOMIC_ACQUIRE))
			return true;
		usleep(1000);
	}
	return __atomic_load_n(flag, __ATOMIC_ACQUIRE) != 0;
}

static bool sem_wait_ms(sem_t *s, unsigned int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	while (sem_timedwait(s, &ts))
		if (errno != EINTR)
			return false;
	return true;
}

static uint64_t spec_aborts(struct ufault_ctx *ctx, uint64_t *seq_try)
{
	struct ufault_stats st;

	*seq_try = 0;
	memset(&st, 0, sizeof(st));
	st.size = sizeof(st);
	if (ufault_stats(ctx, &st))
		return 0;
	*seq_try =
	    st.spec_aborts[UFAULT_SPEC_ABORT_SEQ] + st.spec_aborts[UFAULT_SPEC_ABORT_TRYLOCK];
	return st.spec_aborts[UFAULT_SPEC_ABORT_DETACHED] + st.spec_aborts[UFAULT_SPEC_ABORT_GEN];
}

/*
 * One round. Returns NULL on success, else a description of the failure
 * (static storage). Never leaves a fill blocked or a thread running when
 * it returns, so a failed round cannot hang the next one.
 */
static const char *aba_round(struct ufault_ctx *ctx, enum variant v, int iter)
{
	static char why[512];
	struct ufault_source sa;
	pthread_t t1, p;
	bool entered, p_early, spec = tu_mode == UFAULT_LOCK_SPEC;
	uint64_t ab0, ab1, st0, st1;
	unsigned char bad = 0;
	int final;
	struct sigaction sa_segv, old_segv;

	memset(&g, 0, sizeof(g));
	g.ctx = ctx;
	g.v = v;
	g.ps = tu_page_size();
	g.t1_view = -1;
	sem_init(&g.entered, 0, 0);
	sem_init(&g.release, 0, 0);
	sa = src_of(fill_a, &g);
	why[0] = 0;

	memset(&sa_segv, 0, sizeof(sa_segv));
	sa_segv.sa_sigaction = segv_handler;
	sa_segv.sa_flags = SA_SIGINFO;
	sigemptyset(&sa_segv.sa_mask);
	sigaction(SIGSEGV, &sa_segv, &old_segv);

	g.x = ufault_mmap(ctx, NULL, g.ps, RW, PA, &sa, 0);
	if (g.x == MAP_FAILED) {
		snprintf(why, sizeof(why), "ufault_mmap(A): %s", strerror(errno));
		goto out_sig;
	}
	ab0 = spec_aborts(ctx, &st0);

	pthread_create(&t1, NULL, t1_main, &g);
	entered = sem_wait_ms(&g.entered, 5000 * tu_slowdown());
	if (!entered) {
		snprintf(why, sizeof(why), "the fill for A never started after T1 touched X");
		/* Let things unwind: publish so T1 can finish when woken. */
		__atomic_store_n(&g.published, 1, __ATOMIC_RELEASE);
		sem_post(&g.release);
		pthread_join(t1, NULL);
		goto out_unmap;
	}

	pthread_create(&p, NULL, p_main, &g);
	if (spec) {
		/* The proxy must not wait for the slow fill. */
		p_early = wait_flag(&g.p_done, 5000 * tu_slowdown());
	} else {
		/* The fill holds a lock the proxy needs; give P the time to
		 * block on it (a correct library keeps it blocked). */
		p_early = wait_flag(&g.p_done, 200);
	}
	sem_post(&g.release);
	pthread_join(p, NULL);
	if (!__atomic_load_n(&g.published, __ATOMIC_ACQUIRE)) {
		snprintf(why, sizeof(why), "P failed: munmap rc %d (%s), mmap %p (%s)", g.unmap_rc,
			 strerror(g.unmap_err), g.map_ret, strerror(g.map_err));
		__atomic_store_n(&g.published, 1, __ATOMIC_RELEASE);
		pthread_join(t1, NULL);
		goto out_sig;
	}
	pthread_join(t1, NULL); /* the watchdog catches a hang */

	/* Spec mode: let the released fill finish its validation (and, if
	 * the library were wrong, its install) before the final read. */
	ab1 = spec_aborts(ctx, &st1);
	for (int i = 0; spec && ab1 == ab0 && i < 5000 * (int)tu_slowdown(); i++) {
		usleep(1000);
		ab1 = spec_aborts(ctx, &st1);
	}
	if (!wait_flag(&g.a_done, 5000 * tu_slowdown()))
		snprintf(why, sizeof(why), "the blocked fill never returned");
	usleep(20 * 1000);

	/* The final read, by the main thread. */
	final = classify((unsigned char *)g.x, g.ps, &bad);
	ab1 = spec_aborts(ctx, &st1);

	printf("  [%s/%s #%d] P %s the blocked fill; T1 saw '%c', segv %d; "
	       "fills A %d B %d; spec aborts detached+gen +%llu, "
	       "seq+trylock +%llu; final '%c'\n",
	       ufault_lock_mode_name(tu_mode), v == V_MUNMAP_MMAP ? "munmap_mmap" : "map_fixed",
	       iter, p_early ? "finished during" : "waited for", g.t1_view > 0 ? g.t1_view : '0',
	       __atomic_load_n(&g.t1_segv, __ATOMIC_RELAXED),
	       __atomic_load_n(&g.a_calls, __ATOMIC_RELAXED),
	       __atomic_load_n(&g.b_calls, __ATOMIC_RELAXED), (unsigned long long)(ab1 - ab0),
	       (unsigned long long)(st1 - st0), final > 0 ? final : '0');

	if (why[0]) {
		/* already failed above */
	} else if (final != 'B')
		snprintf(why, sizeof(why),
			 "final read of X: '%c' (first odd byte 0x%02x), expected "
			 "all 'B': %s",
			 final > 0 ? final : '0', bad,
			 final == 'A' ? "ABA: the old source's bytes landed in "
					"the new mapping"
				      : "neither source's bytes");
	else if (spec && !p_early)
		snprintf(why, sizeof(why),
			 "spec mode: the proxy did not complete while the fill "
			 "was blocked (it waited for a slow fill)");
	else if (spec && ab1 == ab0)
		snprintf(why, sizeof(why),
			 "spec mode: spec_aborts[DETACHED]+[GEN] did not grow "
			 "(%llu)",
			 (unsigned long long)ab1);
	else if (v == V_MUNMAP_MMAP && spec && g.t1_view != 'B')
		snprintf(why, sizeof(why),
			 "spec mode: T1 read '%c' (odd byte 0x%02x), expected 'B'",
			 g.t1_view > 0 ? g.t1_view : '0', g.t1_first_bad);
	else if (v == V_MUNMAP_MMAP && g.t1_view != 'A' && g.t1_view != 'B')
		snprintf(why, sizeof(why),
			 "T1 read '%c' (odd byte 0x%02x), expected all 'A' or all "
			 "'B'",
			 g.t1_view > 0 ? g.t1_view : '0', g.t1_first_bad);

out_unmap:
	if (ufault_munmap(ctx, g.x, g.ps) && !why[0])
		snprintf(why, sizeof(why), "ufault_munmap(X): %s", strerror(errno));
out_sig:
	sigaction(SIGSEGV, &old_segv, NULL);
	sem_destroy(&g.entered);
	sem_destroy(&g.release);
	return why[0] ? why : NULL;
}

static void run_variant(enum variant v)
{
	struct ufault_ctx *ctx;
	const char *why = NULL;
	int rc;

	/* Two workers: the one blocked in A's fill, and one for B's. */
	rc = tu_ctx_create(&ctx, tu_mode, 2, 0);
	if (rc)
		fail_msg("ufault_ctx_create: %s", ufault_strerror(rc));
	for (int i = 0; i < ITERS && !why; i++)
		why = aba_round(ctx, v, i);
	ufault_ctx_destroy(ctx);
	if (why)
		fail_msg("%s: %s", ufault_lock_mode_name(tu_mode), why);
}

static void test_aba_munmap_mmap(void **state)
{
	(void)state;
	run_variant(V_MUNMAP_MMAP);
}

static void test_aba_map_fixed(void **state)
{
	(void)state;
	run_variant(V_MAP_FIXED);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_aba_munmap_mmap),
	    cmocka_unit_test(test_aba_map_fixed),
	};
	int failed;

	/* A 60 s watchdog per lock mode's group, disarmed after the last. */
	tu_modes_cfg.group_watchdog = 60;
	/* An optional argument runs only the tests whose name matches it. */
	failed = tu_run_every_mode("aba", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
	return failed ? 1 : 0;
}
