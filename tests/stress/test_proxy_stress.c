/* SPDX-License-Identifier: MIT */
/*
 * test_proxy_stress.c - fault threads read pages while proxy threads remap
 * the same and neighbouring ranges, in every lock mode, with an oracle.
 *
 * The arena: NR_SLOTS slots of SLOT_CAP units of up to 64 KiB, reserved
 * PROT_NONE up front, each slot aligned to 64 KiB. A slot is FREE (all
 * reservation) or MAPPED: ufault memory over its first len units (one or
 * more regions), our PROT_NONE reservation behind it. A mapping's unit is
 * its region page: the system page, or 64 KiB (UFAULT_REGION_PAGE_SHIFT(16));
 * half the slots start with each, a remap may switch a slot to the other and
 * a move carries its unit along. Every proxy operation on a slot uses
 * offsets and lengths in whole units, as the library requires.
 * Every ufault mapping gets a fresh generation g and a random source offset
 * so; its source serves the system page at source offset o as page(o, g):
 * word 0 names (g, o / system page size), the other words are a hash of
 * (o, g, i). No byte of any page is 0, so a zero byte (the kernel's zero
 * page, a lost install, a short read) is always a wrong byte. Any page read
 * tells which (o, g) it came from, and whether it is whole.
 *
 * Sources: each mapping's source is one of three kinds, by its generation
 * number n (n % 3, a third each, deterministic):
 *   callback  UFAULT_SOURCE_CALLBACK: the worker computes the page.
 *   async     UFAULT_SOURCE_ASYNC: the fill hands the request to the
 *             completer thread (one per mode, a small queue), which computes
 *             the page and calls ufault_complete(c, 0) at once or after
 *             50-200 us; one fill in four completes inline, inside the fill
 *             function. The completer stops only after ufault_ctx_destroy(),
 *             which must have waited for every fill started (checked).
 *   file      UFAULT_SOURCE_FILE over a file made at start in /var/tmp
 *             (unlinked at once; the descriptor stays open): NR_FILE_GENS
 *             chunks of C = a slot + FILE_SLACK pages, chunk k holding
 *             page(F, FILE_G0 + k) at file offset F. A file mapping takes
 *             generation FILE_G0 + k, k = (n / 3) % NR_FILE_GENS (file
 *             generations are reused, and never equal a counted one), and
 *             source offset k * C plus fewer than FILE_SLACK pages: the
 *             chunk holds a whole slot from there, so every byte a mapping
 *             can show is page(o, g) of its entry, like the others. Half of
 *             them read with UFAULT_FILE_DIRECT where the file system takes
 *             O_DIRECT.
 *             Without io_uring in this process (seccomp, io_uring_disabled)
 *             there are no file sources: said once, and not required.
 * A split refills its hole with a source of any kind serving the same
 * (g, so): callback and async serve any generation, file only file ones.
 *
 * Per slot, a history ring of the (g, so) the slot has shown: a proxy
 * announces an entry (seq_hi) before the call that makes it visible and
 * completes it (seq_lo) after. A reader notes seq_lo before reading a page
 * and seq_hi after; the page must equal page(so + p * ps, g) for an entry in
 * [lo, hi]: a generation retired before the read began is never accepted.
 * A page that matches no entry while a replacement overlapped the read is
 * "torn" (a concurrent MAP_FIXED can legitimately tear a read, as with the
 * kernel) and is read again; with no overlap it is a failure.
 *
 * Proxy operations (per slot serialised by the test's op mutex; readers are
 * excluded by the slot rwlock only where memory they may read is unmapped):
 *   replace   ufault_mmap MAP_FIXED over the slot, new g     (no exclusion)
 *   remap     ufault_munmap of the slot + reservation, ufault_mmap
 *             MAP_FIXED_NOREPLACE, new g                       (exclusive)
 *   move      ufault_mremap MAYMOVE|FIXED to a free slot, maybe resized,
 *             later maybe back                                 (exclusive)
 *   grow      ufault_mremap of the last region in place        (no exclusion)
 *   shrink    ufault_mremap in place, or ufault_munmap of the tail
 *                                                              (exclusive)
 *   split     ufault_munmap of the middle, refilled with
 *             MAP_FIXED_NOREPLACE from the same source function (exclusive)
 *   mprotect  RW -> R -> RW over part of the slot              (no exclusion)
 *   madvise   MADV_DONTNEED over part of the slot              (no exclusion)
 * An mremap over a slot made of several regions must fail (not within one
 * region) and change nothing; that is checked too.
 *
 * After the run, every mapped page is read once more single-threaded and must
 * equal its slot's current entry exactly. Wrong bytes (a page that matches
 * no entry it may show, compared byte by byte with the one it should) fail
 * the mode. Holes the test makes are refilled
 * with MAP_FIXED_NOREPLACE: if something else landed in one, the slot is
 * retired ("dead") rather than clobbering somebody's memory.
 *
 * An mremap the kernel refuses with EFAULT because the region has become two
 * VMAs it cannot merge (mprotect split them, their pages got different
 * anon_vmas) is what mremap(2) does too: counted, not a failure.
 *
 * Hangs: every reader and proxy beats a heartbeat per iteration; a thread
 * whose beat stops for HANG_SECS (scaled by tu_slowdown()), or that does not
 * return within that long after the stop, is a hang: the summary line is
 * printed with hangs=N and the process exits 1 (a thread parked in a fault
 * cannot be joined). tu_watchdog() stays armed as the last resort.
 *
 * Each mode ends with one summary line:
 *   stress mode=M seconds=S reads=N proxy_ops=N wrong_bytes=N hangs=N
 *          src_callback=N src_async=N src_file=N
 * (src_*: mappings made with a source of that kind, the initial ones
 * included). A mode fails if a kind was never used: no mapping made with it,
 * no callback or async fill run, no page of a file generation checked.
 *
 * $UFAULT_TEST_SECONDS: seconds per mode (default 3; 2 under sanitizers).
 * $UFAULT_STRESS_MODE: spec, region, range or global: run that mode only.
 * $UFAULT_STRESS_OPS: comma-separated subset of the operations above (e.g.
 * "replace" or "move,madvise") to narrow a failure down; default all.
 * A failure prints the slot, page, what was read (zero page, retired
 * generation, other page, mixture), the history window and the proxy op in
 * progress / last completed on the slot.
 */
#include <fcntl.h>
#include <linux/io_uring.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/syscall.h>

#include <cmocka.h>

#include "../testutil.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define RW (PROT_READ | PROT_WRITE)
#define PA (MAP_PRIVATE | MAP_ANONYMOUS)

#define NR_SLOTS 16
#define NR_MAPPED_AT_START 12
#define SLOT_CAP 8 /* units (region pages of the slot's mapping) */
#define MIN_LEN 2
#define BIG_SHIFT 16 /* the large region page: 64 KiB */
#define HANG_SECS 20
#define HIST 256
#define NR_READERS 3
#define NR_PROXIES 2
#define MAX_BOUNDS SLOT_CAP
#define NR_FILE_GENS 32	     /* generations the file source's file holds */
#define FILE_SLACK 32	     /* pages of random source offset inside a chunk */
#define FILE_G0 (1ull << 27) /* file generation k is FILE_G0 + k */
#define AQ_CAP 256	     /* the completer's queue (fills in flight: 64) */

enum slot_state { SLOT_FREE, SLOT_MAPPED, SLOT_DEAD };

enum op {
	OP_REPLACE,
	OP_REMAP,
	OP_MOVE,
	OP_GROW,
	OP_SHRINK,
	OP_SPLIT,
	OP_MPROTECT,
	OP_MADVISE,
	OP_NR
};

static const char *const op_names[OP_NR] = {
    "replace", "remap", "move", "grow", "shrink", "split", "mprotect", "madvise",
};
static const unsigned int op_weight[OP_NR] = {20, 10, 15, 10, 10, 5, 10, 15};

enum src_kind { SRC_CALLBACK, SRC_ASYNC, SRC_FILE, SRC_NR };

static const char *const src_names[SRC_NR] = {"callback", "async", "file"};

/* How an asynchronous fill completes. */
enum { AC_INLINE, AC_NOW, AC_DELAYED, AC_NR };

/*
 * Readers copy pages while a proxy may replace the mapping under them
 * (MAP_FIXED, madvise): that race is the workload. TSan models mmap and
 * madvise as writes to the range, so it is told to ignore the copy; the
 * oracle checks it instead.
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

struct hent {
	uint64_t g;
	uint64_t so;
};

struct slot {
	pthread_rwlock_t rw;	 /* readers shared; unmapping windows exclusive */
	pthread_mutex_t op;	 /* serialises proxies on this slot */
	int state;		 /* atomic: enum slot_state */
	unsigned int len;	 /* atomic: mapped units */
	unsigned int upp;	 /* atomic: system pages a unit; changed exclusive */
	uint64_t seq_lo, seq_hi; /* atomic */
	struct hent hist[HIST];	 /* atomic fields */
	int busy;		 /* atomic: op in progress + 1, for diagnostics */
	int last_op;		 /* atomic: last op completed + 1, for diagnostics */
	unsigned int kinds;	 /* atomic: bit per source kind of its regions, roughly */
	/* proxy-only (under op) */
	uint64_t g, so;
	unsigned int bounds[MAX_BOUNDS]; /* first unit of each region */
	unsigned int nbounds;
};

/*
 * Per thread. reads, ops and wrong_bytes are read by the main thread while
 * the owner may still run (hang report): relaxed atomics, through cnt_add().
 */
struct counters {
	uint64_t reads, checked, torn, skipped, unmapped_skips, big_reads;
	uint64_t ops[OP_NR], big_ops, expected_failures, dead, efault;
	uint64_t wrong_bytes;
	uint64_t src[SRC_NR], src_direct; /* mappings made, by source kind */
	uint64_t file_checked;		  /* pages of a file generation checked */
};

static struct {
	struct ufault_ctx *ctx;
	enum ufault_lock_mode mode;
	char *arena;
	size_t ps;
	size_t span;	      /* bytes a slot: SLOT_CAP large units */
	unsigned int big_upp; /* system pages in a 64 KiB unit (1 on 64 KiB systems) */
	struct slot slots[NR_SLOTS];
	uint64_t next_g;     /* atomic */
	int stop;	     /* atomic */
	int failed;	     /* atomic */
	char fail_msg[1024]; /* first failure, under fail_lock */
	pthread_mutex_t fail_lock;
	struct counters cnt[NR_READERS + NR_PROXIES];
	uint64_t src_setup[SRC_NR], setup_direct; /* the initial mappings' sources */
} S;

/* The file source's file (made once, in main). */
static struct {
	int fd;		   /* open for reading and writing; already unlinked */
	bool ok;	   /* file sources work in this process (io_uring) */
	bool direct;	   /* the file system takes O_DIRECT */
	size_t chunk;	   /* bytes a generation: a slot + FILE_SLACK pages */
	char why_not[160]; /* why !ok */
} F = {.fd = -1};

/*
 * The completer: asynchronous fills queued for one thread, which computes
 * the page, waits until due (0: at once) and completes them. pending
 * counts the fills started and not completed (dropped before the
 * completion, so ufault_ctx_destroy() returning means it is 0).
 */
struct areq {
	struct ufault_completion *c;
	void *buf;
	size_t len;
	uint64_t off, g, due;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct areq q[AQ_CAP]; /* [head, tail), under lock */
	unsigned int head, tail;
	bool stop; /* under lock */
	pthread_t thread;
	uint64_t seq;	     /* atomic: async fills started */
	uint64_t pending;    /* atomic: started, not completed */
	uint64_t how[AC_NR]; /* atomic: by how they completed */
	uint64_t cb_fills;   /* atomic: callback fills */
} A = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* ---------------------------------------------------------------- */
/* The page function                                                 */
/* ---------------------------------------------------------------- */

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

static void cnt_add(uint64_t *p, uint64_t n)
{
	__atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

#define ID_BITS 28
#define ID_MASK ((1ull << ID_BITS) - 1)

/* 56 bits as 8 bytes of 7 bits, each with its top bit set: never 0. */
static uint64_t spread7(uint64_t v)
{
	uint64_t w = 0;

	for (unsigned int b = 0; b < 8; b++)
		w |= (((v >> (7 * b)) & 0x7f) | 0x80) << (8 * b);
	return w;
}

static uint64_t unspread7(uint64_t w)
{
	uint64_t v = 0;

	for (unsigned int b = 0; b < 8; b++)
		v |= ((w >> (8 * b)) & 0x7f) << (7 * b);
	return v;
}

/*
 * Word 0 names the page: (g, o / ps), 28 bits each. The others are a hash
 * with the low bit of every byte set. No byte of a page is ever 0.
 */
static uint64_t page_word(uint64_t o, uint64_t g, size_t i)
{
	if (i == 0)
		return spread7((g & ID_MASK) << ID_BITS | ((o / S.ps) & ID_MASK));
	return mix64(o * 0x9e3779b97f4a7c15ull ^ (g << 17) ^ i) | 0x0101010101010101ull;
}

/* What word 0 of a page says it is. */
static void page_id(const uint64_t *w, uint64_t *g, uint64_t *o)
{
	uint64_t v = unspread7(w[0]);

	*g = v >> ID_BITS;
	*o = (v & ID_MASK) * S.ps;
}

/* @len bytes from source offset @off of generation @g: what every source serves. */
static void pattern_fill(uint64_t g, uint64_t off, void *buf, size_t len)
{
	uint64_t *w = buf;

	for (size_t pg = 0; pg < len / S.ps; pg++)
		for (size_t i = 0; i < S.ps / 8; i++)
			w[pg * (S.ps / 8) + i] = page_word(off + pg * S.ps, g, i);
}

static int gen_fill(void *arg, uint64_t off, void *buf, size_t len)
{
	pattern_fill((uint64_t)(uintptr_t)arg, off, buf, len);
	__atomic_fetch_add(&A.cb_fills, 1, __ATOMIC_RELAXED);
	return 0;
}

/* Fills the request and completes it (the pending count drops first). */
static void async_finish(const struct areq *r)
{
	pattern_fill(r->g, r->off, r->buf, r->len);
	__atomic_fetch_sub(&A.pending, 1, __ATOMIC_RELEASE);
	ufault_complete(r->c, 0);
}

/*
 * The async source's fill: one in four completes here, the others go to the
 * completer, to be completed at once or 50-200 us from now (a full queue
 * completes here too).
 */
static int async_fill(void *arg, uint64_t off, void *buf, size_t len, struct ufault_completion *c)
{
	uint64_t n = __atomic_fetch_add(&A.seq, 1, __ATOMIC_RELAXED);
	struct areq r = {.c = c, .buf = buf, .len = len, .off = off};
	int how = n % 4 == 0 ? AC_INLINE : n % 4 == 1 ? AC_NOW : AC_DELAYED;

	r.g = (uint64_t)(uintptr_t)arg;
	__atomic_fetch_add(&A.pending, 1, __ATOMIC_RELAXED);
	if (how != AC_INLINE) {
		if (how == AC_DELAYED)
			r.due = tu_now_ns() + (50 + mix64(n) % 151) * 1000;
		pthread_mutex_lock(&A.lock);
		if (A.tail - A.head < AQ_CAP) {
			A.q[A.tail++ % AQ_CAP] = r;
			pthread_cond_signal(&A.cond);
		} else {
			how = AC_INLINE;
		}
		pthread_mutex_unlock(&A.lock);
	}
	__atomic_fetch_add(&A.how[how], 1, __ATOMIC_RELAXED);
	if (how == AC_INLINE)
		async_finish(&r);
	return 0;
}

static void *completer_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&A.lock);
	for (;;) {
		struct areq r;

		if (A.head == A.tail) {
			if (A.stop)
				break;
			pthread_cond_wait(&A.cond, &A.lock);
			continue;
		}
		r = A.q[A.head++ % AQ_CAP];
		pthread_mutex_unlock(&A.lock);
		if (r.due) {
			struct timespec ts = {.tv_sec = (time_t)(r.due / 1000000000ull),
					      .tv_nsec = (long)(r.due % 1000000000ull)};

			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
				;
		}
		async_finish(&r);
		pthread_mutex_lock(&A.lock);
	}
	pthread_mutex_unlock(&A.lock);
	return NULL;
}

/* -1 if @w is page(o, g), else the first differing word. */
static long page_mismatch(const uint64_t *w, uint64_t o, uint64_t g)
{
	for (size_t i = 0; i < S.ps / 8; i++)
		if (w[i] != page_word(o, g, i))
			return (long)i;
	return -1;
}

/* Bytes of @w that differ from page(o, g): the oracle, byte for byte. */
static uint64_t wrong_bytes(const uint64_t *w, uint64_t o, uint64_t g)
{
	uint64_t n = 0;

	for (size_t i = 0; i < S.ps / 8; i++) {
		uint64_t d = w[i] ^ page_word(o, g, i);

		for (; d; d >>= 8)
			n += (d & 0xff) != 0;
	}
	return n;
}

/* Region flags of a mapping whose unit is @upp system pages. */
static unsigned int unit_flags(unsigned int upp)
{
	return upp > 1 ? UFAULT_REGION_PAGE_SHIFT(BIG_SHIFT) : 0;
}

static bool is_file_gen(uint64_t g)
{
	return g >= FILE_G0 && g < FILE_G0 + NR_FILE_GENS;
}

/*
 * A source of kind @k serving page(o, @g) at every source offset o the
 * mapping can reach from @so (file: @g must be a file generation and @so in
 * its chunk; @direct reads with O_DIRECT where the file system takes it).
 */
static struct ufault_source make_src(enum src_kind k, uint64_t g, uint64_t so, bool direct)
{
	struct ufault_source s;

	switch (k) {
	case SRC_ASYNC:
		ufault_source_init(&s, UFAULT_SOURCE_ASYNC);
		s.async.fill = async_fill;
		s.async.arg = (void *)(uintptr_t)g;
		break;
	case SRC_FILE:
		ufault_source_init(&s, UFAULT_SOURCE_FILE);
		s.file.fd = F.fd;
		s.file.flags = direct && F.direct ? UFAULT_FILE_DIRECT : 0;
		break;
	default:
		ufault_source_init(&s, UFAULT_SOURCE_CALLBACK);
		s.callback.fill = gen_fill;
		s.callback.arg = (void *)(uintptr_t)g;
		break;
	}
	s.offset = so;
	return s;
}

/* The source kind of generation number @n: n % 3, file ones only if usable. */
static enum src_kind kind_of(uint64_t n)
{
	enum src_kind k = (enum src_kind)(n % SRC_NR);

	if (k == SRC_FILE && !F.ok)
		k = (enum src_kind)(n / SRC_NR % 2);
	return k;
}

/* A fresh mapping's history entry (g, so) and source. */
struct fresh {
	uint64_t g, so;
	enum src_kind kind;
	struct ufault_source src;
};

/* ---------------------------------------------------------------- */
/* Failures                                                          */
/* ---------------------------------------------------------------- */

static void failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void failf(const char *fmt, ...)
{
	va_list ap;
	char buf[1024];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "FAIL [%s]: %s\n", ufault_lock_mode_name(S.mode), buf);
	pthread_mutex_lock(&S.fail_lock);
	if (!S.failed)
		snprintf(S.fail_msg, sizeof(S.fail_msg), "%s", buf);
	__atomic_store_n(&S.failed, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&S.fail_lock);
	__atomic_store_n(&S.stop, 1, __ATOMIC_SEQ_CST);
}

static char *slot_base(unsigned int i)
{
	return S.arena + (size_t)i * S.span;
}

/* Bytes in a unit of slot @s's mapping (proxies, under the slot's op lock). */
static size_t unit(const struct slot *s)
{
	return (size_t)s->upp * S.ps;
}

/* Diagnostics: "callback+file", the source kinds in bit mask @m. */
static const char *kinds_str(unsigned int m, char *buf, size_t n)
{
	size_t k = 0;

	buf[0] = 0;
	for (int i = 0; i < SRC_NR; i++)
		if ((m & (1u << i)) && k < n)
			k += (size_t)snprintf(buf + k, n - k, "%s%s", k ? "+" : "", src_names[i]);
	return m ? buf : "none";
}

/* Diagnostics: the kernel's view (VMAs) of slots [i - 1, i + 1]. */
static void dump_maps(unsigned int i)
{
	uintptr_t lo = (uintptr_t)slot_base(i ? i - 1 : 0);
	uintptr_t hi = (uintptr_t)slot_base(i + 2 < NR_SLOTS ? i + 2 : NR_SLOTS);
	FILE *f = fopen("/proc/self/maps", "r");
	char line[256];

	if (!f)
		return;
	fprintf(stderr, "  VMAs around slot %u (slot base %p, %zu bytes a slot, unit %zu):\n", i,
		(void *)slot_base(i), S.span,
		__atomic_load_n(&S.slots[i].upp, __ATOMIC_RELAXED) * S.ps);
	while (fgets(line, sizeof(line), f)) {
		unsigned long a, b;

		if (sscanf(line, "%lx-%lx", &a, &b) == 2 && b > lo && a < hi)
			fprintf(stderr, "    %s", line);
	}
	fclose(f);
}

/* A reader touched memory that should have been there: report and die
 * (the state is no longer trustworthy). */
static void crash_handler(int sig, siginfo_t *si, void *uc)
{
	char msg[512];
	uintptr_t a = (uintptr_t)si->si_addr, b = (uintptr_t)S.arena;
	int n;

	(void)uc;
	if (a >= b && a < b + (uintptr_t)NR_SLOTS * S.span) {
		unsigned int i = (unsigned int)((a - b) / S.span);
		unsigned int pg = (unsigned int)((a - b) % S.span / S.ps);
		struct slot *s = &S.slots[i];
		int busy = __atomic_load_n(&s->busy, __ATOMIC_RELAXED);
		char kinds[32];

		n = snprintf(
		    msg, sizeof(msg),
		    "FAIL [%s]: %s at %p: slot %u page %u, slot state %d "
		    "len %u units of %u pages, sources %s, proxy op in progress: %s\n",
		    ufault_lock_mode_name(S.mode), sig == SIGSEGV ? "SIGSEGV" : "SIGBUS",
		    si->si_addr, i, pg, __atomic_load_n(&s->state, __ATOMIC_RELAXED),
		    __atomic_load_n(&s->len, __ATOMIC_RELAXED),
		    __atomic_load_n(&s->upp, __ATOMIC_RELAXED),
		    kinds_str(__atomic_load_n(&s->kinds, __ATOMIC_RELAXED), kinds, sizeof(kinds)),
		    busy ? op_names[busy - 1] : "none");
	} else {
		n = snprintf(msg, sizeof(msg),
			     "FAIL [%s]: %s at %p (outside "
			     "the arena)\n",
			     ufault_lock_mode_name(S.mode), sig == SIGSEGV ? "SIGSEGV" : "SIGBUS",
			     si->si_addr);
	}
	if (n > 0 && write(2, msg, (size_t)n) < 0)
		_exit(1);
	_exit(1);
}

/* ---------------------------------------------------------------- */
/* Slot history                                                      */
/* ---------------------------------------------------------------- */

/*
 * Load @p after every memory access before it (the page copy, the history
 * entries): a fence, or under TSan (which does not model fences) an RMW
 * that does the same job.
 */
static uint64_t load_after(uint64_t *p)
{
#if defined(__SANITIZE_THREAD__)
	return __atomic_fetch_add(p, 0, __ATOMIC_ACQ_REL);
#else
	__atomic_thread_fence(__ATOMIC_ACQ_REL);
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
#endif
}

static void hist_announce(struct slot *s, uint64_t g, uint64_t so)
{
	uint64_t n = __atomic_load_n(&s->seq_hi, __ATOMIC_RELAXED) + 1;
	struct hent *e = &s->hist[n % HIST];

	/* Release: a reader that sees this entry also sees seq_hi >= n - 1,
	 * which tells it the entry it wanted may have been overwritten. */
	__atomic_store_n(&e->g, g, __ATOMIC_RELEASE);
	__atomic_store_n(&e->so, so, __ATOMIC_RELEASE);
	__atomic_store_n(&s->seq_hi, n, __ATOMIC_RELEASE);
}

static void hist_complete(struct slot *s)
{
	__atomic_store_n(&s->seq_lo, __atomic_load_n(&s->seq_hi, __ATOMIC_RELAXED),
			 __ATOMIC_RELEASE);
}

static void hist_publish(struct slot *s, uint64_t g, uint64_t so)
{
	hist_announce(s, g, so);
	hist_complete(s);
	s->g = g;
	s->so = so;
}

static uint64_t new_gen(void)
{
	return __atomic_add_fetch(&S.next_g, 1, __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------- */
/* Fault threads                                                     */
/* ---------------------------------------------------------------- */

static uint64_t rnd(uint64_t *st)
{
	*st ^= *st << 13;
	*st ^= *st >> 7;
	*st ^= *st << 17;
	return *st;
}

enum verdict { V_OK, V_TORN, V_SKIP, V_BAD };

static enum verdict judge(const uint64_t *w, struct slot *s, unsigned int pg, uint64_t lo,
			  uint64_t hi)
{
	bool match = false;
	uint64_t now;

	if (hi - lo + 1 >= HIST - 1)
		return V_SKIP;
	for (uint64_t e = lo; e <= hi && !match; e++) {
		uint64_t g = __atomic_load_n(&s->hist[e % HIST].g, __ATOMIC_ACQUIRE);
		uint64_t so = __atomic_load_n(&s->hist[e % HIST].so, __ATOMIC_ACQUIRE);

		match = page_mismatch(w, so + (uint64_t)pg * S.ps, g) < 0;
	}
	now = load_after(&s->seq_hi);
	if (now + 1 - lo >= HIST)
		return V_SKIP; /* entries may have been overwritten meanwhile */
	if (match)
		return V_OK;
	return hi != lo ? V_TORN : V_BAD;
}

/* A page matched nothing it may show: report it; returns its wrong bytes. */
static uint64_t report_bad(const uint64_t *w, unsigned int i, unsigned int pg, uint64_t lo,
			   uint64_t hi, const char *who)
{
	struct slot *s = &S.slots[i];
	uint64_t g = __atomic_load_n(&s->hist[lo % HIST].g, __ATOMIC_ACQUIRE);
	uint64_t so = __atomic_load_n(&s->hist[lo % HIST].so, __ATOMIC_ACQUIRE);
	uint64_t o = so + (uint64_t)pg * S.ps;
	uint64_t fg, fo, nwrong = wrong_bytes(w, o, g);
	long bad = page_mismatch(w, o, g);
	bool zero = tu_zero_check(w, S.ps) < 0;
	const char *what;
	bool old_gen = false;
	char kinds[32];

	page_id(w, &fg, &fo);
	/* Did the page come whole from a retired generation of this slot? */
	for (uint64_t e = lo > HIST - 2 ? lo - (HIST - 2) : 1; e < lo; e++) {
		uint64_t og = __atomic_load_n(&s->hist[e % HIST].g, __ATOMIC_RELAXED);
		uint64_t oso = __atomic_load_n(&s->hist[e % HIST].so, __ATOMIC_RELAXED);

		if ((og & ID_MASK) == fg && page_mismatch(w, oso + (uint64_t)pg * S.ps, og) < 0)
			old_gen = true;
	}
	if (zero)
		what = "a ZERO page (filled by the kernel, not the source)";
	else if (old_gen)
		what = "a RETIRED generation's page (stale install: ABA)";
	else if (page_mismatch(w, fo, fg) < 0)
		what = "a whole page of another (offset, generation)";
	else
		what = "a mixture / corrupted page";
	failf("%s: slot %u page %u (%p, unit %u pages, sources %s): read %s: %llu wrong bytes: "
	      "expected g %llu%s offset 0x%llx (history window %llu..%llu), found word0 g %llu "
	      "offset 0x%llx, first bad word %ld (0x%016llx, want 0x%016llx); proxy "
	      "op on the slot now: %s, last completed: %s",
	      who, i, pg, (void *)(slot_base(i) + (size_t)pg * S.ps),
	      __atomic_load_n(&s->upp, __ATOMIC_RELAXED),
	      kinds_str(__atomic_load_n(&s->kinds, __ATOMIC_RELAXED), kinds, sizeof(kinds)), what,
	      (unsigned long long)nwrong, (unsigned long long)g,
	      is_file_gen(g) ? " (a file generation)" : "", (unsigned long long)o,
	      (unsigned long long)lo, (unsigned long long)hi, (unsigned long long)fg,
	      (unsigned long long)fo, bad, bad >= 0 ? (unsigned long long)w[bad] : 0ull,
	      bad >= 0 ? (unsigned long long)page_word(o, g, (size_t)bad) : 0ull,
	      __atomic_load_n(&s->busy, __ATOMIC_RELAXED)
		  ? op_names[__atomic_load_n(&s->busy, __ATOMIC_RELAXED) - 1]
		  : "none",
	      __atomic_load_n(&s->last_op, __ATOMIC_RELAXED)
		  ? op_names[__atomic_load_n(&s->last_op, __ATOMIC_RELAXED) - 1]
		  : "initial mmap");
	return nwrong;
}

struct thr {
	pthread_t t;
	unsigned int id;
	uint64_t beat; /* atomic: one per iteration, for the hang monitor */
	int slot;      /* atomic: slot being worked on, -1 none (diagnostics) */
};

static void beat(struct thr *me, int slot)
{
	__atomic_store_n(&me->slot, slot, __ATOMIC_RELAXED);
	__atomic_store_n(&me->beat, __atomic_load_n(&me->beat, __ATOMIC_RELAXED) + 1,
			 __ATOMIC_RELEASE);
}

static void *reader_main(void *arg)
{
	struct thr *me = arg;
	struct counters *c = &S.cnt[me->id];
	uint64_t st = 0x9e3779b97f4a7c15ull * (me->id + 1);
	uint64_t *buf = aligned_alloc(64, S.ps);

	while (!__atomic_load_n(&S.stop, __ATOMIC_RELAXED)) {
		unsigned int i = (unsigned int)(rnd(&st) % NR_SLOTS), pg, npages, upp;
		struct slot *s = &S.slots[i];
		uint64_t lo, hi;
		enum verdict v;
		int tries = 0;

		beat(me, (int)i);
		pthread_rwlock_rdlock(&s->rw);
		if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != SLOT_MAPPED) {
			pthread_rwlock_unlock(&s->rw);
			c->unmapped_skips++;
			continue;
		}
		/* The unit changes only under the write lock; len may grow. */
		upp = __atomic_load_n(&s->upp, __ATOMIC_ACQUIRE);
		npages = __atomic_load_n(&s->len, __ATOMIC_ACQUIRE) * upp;
		pg = (unsigned int)(rnd(&st) % npages);
		do {
			lo = __atomic_load_n(&s->seq_lo, __ATOMIC_ACQUIRE);
			IGNORE_READS_BEGIN();
			memcpy(buf, slot_base(i) + (size_t)pg * S.ps, S.ps);
			IGNORE_READS_END();
			hi = load_after(&s->seq_hi);
			cnt_add(&c->reads, 1);
			if (upp > 1)
				c->big_reads++;
			v = judge(buf, s, pg, lo, hi);
			if (v == V_TORN)
				c->torn++;
		} while (v == V_TORN && ++tries < 100);
		pthread_rwlock_unlock(&s->rw);
		if (v == V_OK) {
			uint64_t fg, fo;

			c->checked++;
			page_id(buf, &fg, &fo);
			if (is_file_gen(fg))
				c->file_checked++;
		} else if (v == V_SKIP || v == V_TORN) {
			c->skipped++;
		} else {
			cnt_add(&c->wrong_bytes, report_bad(buf, i, pg, lo, hi, "reader"));
		}
	}
	beat(me, -1);
	free(buf);
	return NULL;
}

/* ---------------------------------------------------------------- */
/* Proxy threads                                                     */
/* ---------------------------------------------------------------- */

static uint64_t rand_so(uint64_t *st)
{
	return (rnd(st) % (1u << 20)) * S.ps;
}

/* A fresh generation, its source kind, a random source offset. */
static void fresh_src(struct fresh *f, uint64_t *st)
{
	uint64_t n = new_gen();
	bool direct = rnd(st) & 1;

	f->kind = kind_of(n);
	if (f->kind == SRC_FILE) {
		uint64_t k = n / SRC_NR % NR_FILE_GENS;

		f->g = FILE_G0 + k;
		f->so = k * F.chunk + rnd(st) % FILE_SLACK * S.ps;
	} else {
		f->g = n;
		f->so = rand_so(st);
	}
	f->src = make_src(f->kind, f->g, f->so, direct);
}

/* A mapping was made with @src, of kind @k. */
static void count_src(uint64_t *src, uint64_t *direct, enum src_kind k,
		      const struct ufault_source *s)
{
	cnt_add(&src[k], 1);
	if (k == SRC_FILE && (s->file.flags & UFAULT_FILE_DIRECT))
		cnt_add(direct, 1);
}

/* Our PROT_NONE reservation back over a hole; false if somebody else's
 * mapping landed there meanwhile. */
static bool rereserve(char *addr, size_t len)
{
	void *r;

	if (!len)
		return true;
	r = mmap(addr, len, PROT_NONE, PA | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
	if (r == addr)
		return true;
	if (r != MAP_FAILED)
		munmap(r, len); /* old kernel ignoring NOREPLACE: not here */
	return false;
}

static void slot_kill(struct slot *s, struct counters *c)
{
	__atomic_store_n(&s->state, SLOT_DEAD, __ATOMIC_RELEASE);
	c->dead++;
}

static void wrlock2(struct slot *a, struct slot *b)
{
	if (b && b < a) {
		struct slot *t = a;

		a = b;
		b = t;
	}
	pthread_rwlock_wrlock(&a->rw);
	if (b)
		pthread_rwlock_wrlock(&b->rw);
}

static void set_single_region(struct slot *s)
{
	s->bounds[0] = 0;
	s->nbounds = 1;
}

#define PFAIL(...)                                                                                 \
	do {                                                                                       \
		failf(__VA_ARGS__);                                                                \
		return;                                                                            \
	} while (0)
#define PFAILB(...)                                                                                \
	do {                                                                                       \
		failf(__VA_ARGS__);                                                                \
		return false;                                                                      \
	} while (0)

/* mremap over a slot of several regions: must fail and change nothing. */
static void expect_mremap_fails(struct slot *s, unsigned int i, size_t new_len, int flags, void *to,
				struct counters *c)
{
	void *r;

	errno = 0;
	r = ufault_mremap(S.ctx, slot_base(i), s->len * unit(s), new_len, flags, to);
	if (r != MAP_FAILED)
		PFAIL("slot %u: ufault_mremap over %u regions succeeded (%p); "
		      "expected a failure (not within one region)",
		      i, s->nbounds, r);
	if (!errno)
		PFAIL("slot %u: ufault_mremap over %u regions failed with "
		      "errno 0",
		      i, s->nbounds);
	c->expected_failures++;
}

static bool op_replace(unsigned int i, uint64_t *st, struct counters *c)
{
	struct slot *s = &S.slots[i];
	unsigned int len = s->len, len2 = len + (unsigned int)(rnd(st) % (SLOT_CAP - len + 1));
	struct fresh f;
	void *r;

	fresh_src(&f, st);
	/* Same unit, at least as long: the old regions are wholly replaced. */
	hist_announce(s, f.g, f.so);
	r = ufault_mmap(S.ctx, slot_base(i), len2 * unit(s), RW, PA | MAP_FIXED, &f.src,
			unit_flags(s->upp));
	if (r != slot_base(i)) {
		int e = errno;

		/* The old mapping must be intact: re-announce it. */
		hist_publish(s, s->g, s->so);
		PFAILB("slot %u: ufault_mmap(MAP_FIXED, %u units of %u pages, %s source) over "
		       "our own mapping failed: %s",
		       i, len2, s->upp, src_names[f.kind], strerror(e));
	}
	hist_complete(s);
	s->g = f.g;
	s->so = f.so;
	set_single_region(s);
	count_src(c->src, &c->src_direct, f.kind, &f.src);
	__atomic_store_n(&s->kinds, 1u << f.kind, __ATOMIC_RELAXED);
	__atomic_store_n(&s->len, len2, __ATOMIC_RELEASE);
	return true;
}

static bool op_remap(unsigned int i, uint64_t *st, struct counters *c)
{
	struct slot *s = &S.slots[i];
	unsigned int len = s->len, upp = s->upp;
	struct fresh f;
	bool whole = rnd(st) & 1;
	size_t u2;
	void *r;

	/* Every other remap on average switches the slot's unit; the new
	 * mapping's length differs then, so the whole slot goes. */
	if (S.big_upp > 1 && (rnd(st) & 1)) {
		upp = s->upp == 1 ? S.big_upp : 1;
		whole = true;
	}
	u2 = (size_t)upp * S.ps;
	fresh_src(&f, st);
	wrlock2(s, NULL);
	/* Either the mapping alone, or the whole slot: mapping + our
	 * reservation (a non-ufault mapping in the range). */
	if (ufault_munmap(S.ctx, slot_base(i), whole ? S.span : len * unit(s))) {
		int e = errno;

		pthread_rwlock_unlock(&s->rw);
		PFAILB("slot %u: ufault_munmap: %s", i, strerror(e));
	}
	r = ufault_mmap(S.ctx, slot_base(i), len * u2, RW, PA | MAP_FIXED_NOREPLACE, &f.src,
			unit_flags(upp));
	if (r != slot_base(i)) {
		int e = errno;

		if (e == EEXIST) {
			slot_kill(s, c);
		} else {
			pthread_rwlock_unlock(&s->rw);
			PFAILB("slot %u: ufault_mmap(NOREPLACE, %u units of %u pages, %s source) "
			       "into a hole: %s",
			       i, len, upp, src_names[f.kind], strerror(e));
		}
	} else {
		hist_publish(s, f.g, f.so);
		set_single_region(s);
		count_src(c->src, &c->src_direct, f.kind, &f.src);
		__atomic_store_n(&s->kinds, 1u << f.kind, __ATOMIC_RELAXED);
		__atomic_store_n(&s->upp, upp, __ATOMIC_RELEASE);
		if (whole && !rereserve(slot_base(i) + len * u2, S.span - len * u2))
			slot_kill(s, c);
	}
	pthread_rwlock_unlock(&s->rw);
	return true;
}

static bool op_move(unsigned int i, uint64_t *st, struct counters *c)
{
	struct slot *s = &S.slots[i], *d = NULL;
	unsigned int j = 0, len = s->len, len2;
	unsigned int start = (unsigned int)(rnd(st) % NR_SLOTS);
	bool done = false;
	void *r;

	for (unsigned int k = 0; k < NR_SLOTS; k++) {
		j = (start + k) % NR_SLOTS;
		if (j == i || pthread_mutex_trylock(&S.slots[j].op))
			continue;
		if (__atomic_load_n(&S.slots[j].state, __ATOMIC_ACQUIRE) == SLOT_FREE) {
			d = &S.slots[j];
			break;
		}
		pthread_mutex_unlock(&S.slots[j].op);
	}
	if (!d)
		return false;
	__atomic_store_n(&d->busy, OP_MOVE + 1, __ATOMIC_RELAXED);
	len2 = MIN_LEN + (unsigned int)(rnd(st) % (SLOT_CAP - MIN_LEN + 1));
	wrlock2(s, d);
	if (s->nbounds > 1) {
		expect_mremap_fails(s, i, len2 * unit(s), MREMAP_MAYMOVE | MREMAP_FIXED,
				    slot_base(j), c);
		done = true;
		goto out;
	}
	r = ufault_mremap(S.ctx, slot_base(i), len * unit(s), len2 * unit(s),
			  MREMAP_MAYMOVE | MREMAP_FIXED, slot_base(j));
	if (r == MAP_FAILED && errno == EFAULT) {
		c->efault++; /* two VMAs, as with mremap(2) */
		done = true;
		goto out;
	}
	if (r != slot_base(j)) {
		failf("slot %u -> %u: ufault_mremap(%u -> %u pages, "
		      "MAYMOVE|FIXED): %s",
		      i, j, len, len2, r == MAP_FAILED ? strerror(errno) : "wrong address");
		goto out;
	}
	/* d takes over the memory, its unit, generation and source offset. */
	hist_publish(d, s->g, s->so);
	set_single_region(d);
	__atomic_store_n(&d->kinds, __atomic_load_n(&s->kinds, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
	__atomic_store_n(&d->upp, s->upp, __ATOMIC_RELEASE);
	__atomic_store_n(&d->len, len2, __ATOMIC_RELEASE);
	__atomic_store_n(&d->state, SLOT_MAPPED, __ATOMIC_RELEASE);
	if (rereserve(slot_base(i), len * unit(s)))
		__atomic_store_n(&s->state, SLOT_FREE, __ATOMIC_RELEASE);
	else
		slot_kill(s, c);
	done = true;
out:
	pthread_rwlock_unlock(&d->rw);
	pthread_rwlock_unlock(&s->rw);
	__atomic_store_n(&d->last_op, OP_MOVE + 1, __ATOMIC_RELAXED);
	__atomic_store_n(&d->busy, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&d->op);
	return done;
}

static bool op_grow(unsigned int i, uint64_t *st, struct counters *c)
{
	struct slot *s = &S.slots[i];
	unsigned int len = s->len, len2, last;
	size_t u = unit(s);
	void *r;

	if (len == SLOT_CAP)
		return false;
	len2 = len + 1 + (unsigned int)(rnd(st) % (SLOT_CAP - len));
	last = s->bounds[s->nbounds - 1];
	/* Room to grow in place: give back that much of our reservation. */
	tu_unmap(slot_base(i) + len * u, (len2 - len) * u);
	if (rnd(st) % 4 == 0 && s->nbounds > 1) {
		/* The whole slot is not one region: must fail. */
		expect_mremap_fails(s, i, len2 * u, 0, NULL, c);
		if (!rereserve(slot_base(i) + len * u, (len2 - len) * u))
			slot_kill(s, c);
		return true;
	}
	/* Readers never read past the published len: no exclusion. */
	r = ufault_mremap(S.ctx, slot_base(i) + last * u, (len - last) * u, (len2 - last) * u, 0,
			  NULL);
	if (r == MAP_FAILED && errno == EFAULT) {
		/* As mremap(2): the region spans two VMAs the kernel could not
		 * merge back (mprotect split them and their pages got
		 * different anon_vmas). Nothing changed. */
		c->efault++;
		if (!rereserve(slot_base(i) + len * u, (len2 - len) * u))
			slot_kill(s, c);
		return true;
	}
	if (r == MAP_FAILED) {
		int e = errno;

		if (rereserve(slot_base(i) + len * u, (len2 - len) * u)) {
			dump_maps(i);
			PFAILB("slot %u: ufault_mremap grow in place %u -> %u "
			       "units of %u pages (last region at unit %u) failed although "
			       "the space was free: %s",
			       i, len, len2, s->upp, last, strerror(e));
		}
		if (e != ENOMEM)
			PFAILB("slot %u: ufault_mremap grow in place: %s", i, strerror(e));
		/* ENOMEM: somebody else's mapping took the hole. */
		slot_kill(s, c);
		return false;
	}
	if (r != slot_base(i) + last * u)
		PFAILB("slot %u: grow in place moved the region to %p", i, r);
	__atomic_store_n(&s->len, len2, __ATOMIC_RELEASE);
	return true;
}

static bool op_shrink(unsigned int i, uint64_t *st, struct counters *c)
{
	struct slot *s = &S.slots[i];
	unsigned int len = s->len, len2, last, k;
	bool by_munmap, done = false;
	size_t u = unit(s);
	void *r;

	if (len <= MIN_LEN)
		return false;
	len2 = MIN_LEN + (unsigned int)(rnd(st) % (len - MIN_LEN));
	last = s->bounds[s->nbounds - 1];
	by_munmap = last >= len2 || (rnd(st) & 1);
	wrlock2(s, NULL);
	if (by_munmap) {
		if (ufault_munmap(S.ctx, slot_base(i) + len2 * u, (len - len2) * u)) {
			failf("slot %u: ufault_munmap of the tail [%u, %u): %s", i, len2, len,
			      strerror(errno));
			goto out;
		}
		for (k = 0; k < s->nbounds && s->bounds[k] < len2; k++)
			;
		s->nbounds = k;
	} else {
		r = ufault_mremap(S.ctx, slot_base(i) + last * u, (len - last) * u,
				  (len2 - last) * u, 0, NULL);
		if (r == MAP_FAILED && errno == EFAULT) {
			c->efault++; /* two VMAs, as with mremap(2) */
			done = true;
			goto out;
		}
		if (r != slot_base(i) + last * u) {
			failf("slot %u: ufault_mremap shrink %u -> %u units of %u pages "
			      "(last region at unit %u): %s",
			      i, len, len2, s->upp, last,
			      r == MAP_FAILED ? strerror(errno) : "moved");
			goto out;
		}
	}
	__atomic_store_n(&s->len, len2, __ATOMIC_RELEASE);
	if (!rereserve(slot_base(i) + len2 * u, (len - len2) * u))
		slot_kill(s, c);
	done = true;
out:
	pthread_rwlock_unlock(&s->rw);
	return done;
}

static bool op_split(unsigned int i, uint64_t *st, struct counters *c)
{
	struct slot *s = &S.slots[i];
	unsigned int len = s->len, a, b, k, nb;
	unsigned int nbounds[MAX_BOUNDS + 2];
	struct ufault_source src;
	enum src_kind kind;
	bool done = false;
	uint64_t n;
	size_t u = unit(s);
	void *r;

	if (len < 3)
		return false;
	a = 1 + (unsigned int)(rnd(st) % (len - 2));
	b = 1 + (unsigned int)(rnd(st) % (len - 1 - a));
	/* Any kind that can serve (g, so): a file one only a file generation. */
	n = new_gen();
	kind = kind_of(n);
	if (kind == SRC_FILE && !is_file_gen(s->g))
		kind = (enum src_kind)(n / SRC_NR % 2);
	src = make_src(kind, s->g, s->so + a * u, rnd(st) & 1);
	wrlock2(s, NULL);
	if (ufault_munmap(S.ctx, slot_base(i) + a * u, b * u)) {
		failf("slot %u: ufault_munmap of the middle [%u, %u): %s", i, a, a + b,
		      strerror(errno));
		goto out;
	}
	/* Refill the hole with a region serving the same bytes. */
	r = ufault_mmap(S.ctx, slot_base(i) + a * u, b * u, RW, PA | MAP_FIXED_NOREPLACE, &src,
			unit_flags(s->upp));
	if (r != slot_base(i) + a * u) {
		if (errno == EEXIST)
			slot_kill(s, c);
		else
			failf("slot %u: ufault_mmap(NOREPLACE, %s source) into the split "
			      "hole: %s",
			      i, src_names[kind], strerror(errno));
		goto out;
	}
	/* Region starts: the old ones, plus a and a + b. */
	nb = 0;
	for (k = 0; k < s->nbounds; k++)
		if (s->bounds[k] < a)
			nbounds[nb++] = s->bounds[k];
	nbounds[nb++] = a;
	if (a + b < len) {
		/* The region that contained a + b - 1 continues at a + b. */
		nbounds[nb++] = a + b;
		for (k = 0; k < s->nbounds; k++)
			if (s->bounds[k] > a + b)
				nbounds[nb++] = s->bounds[k];
	}
	memcpy(s->bounds, nbounds, nb * sizeof(nbounds[0]));
	s->nbounds = nb;
	count_src(c->src, &c->src_direct, kind, &src);
	__atomic_fetch_or(&s->kinds, 1u << kind, __ATOMIC_RELAXED);
	done = true;
out:
	pthread_rwlock_unlock(&s->rw);
	return done;
}

static bool op_mprotect(unsigned int i, uint64_t *st, struct counters *c)
{
	struct slot *s = &S.slots[i];
	unsigned int len = s->len;
	unsigned int a = (unsigned int)(rnd(st) % len);
	unsigned int n = 1 + (unsigned int)(rnd(st) % (len - a));
	size_t u = unit(s);
	char *p = slot_base(i) + a * u;

	if (ufault_mprotect(S.ctx, p, n * u, PROT_READ))
		PFAILB("slot %u: ufault_mprotect(R) units [%u, %u) of %u pages: %s", i, a, a + n,
		       s->upp, strerror(errno));
	for (int k = 0; k < 3; k++)
		sched_yield();
	if (ufault_mprotect(S.ctx, p, n * u, RW))
		PFAILB("slot %u: ufault_mprotect(RW) units [%u, %u) of %u pages: %s", i, a, a + n,
		       s->upp, strerror(errno));
	return true;
}

static bool op_madvise(unsigned int i, uint64_t *st, struct counters *c)
{
	struct slot *s = &S.slots[i];
	unsigned int len = s->len;
	unsigned int a = (unsigned int)(rnd(st) % len);
	unsigned int n = 1 + (unsigned int)(rnd(st) % (len - a));
	size_t u = unit(s);

	if (ufault_madvise(S.ctx, slot_base(i) + a * u, n * u, MADV_DONTNEED))
		PFAILB("slot %u: ufault_madvise(DONTNEED) units [%u, %u) of %u pages: %s", i, a,
		       a + n, s->upp, strerror(errno));
	return true;
}

static unsigned int weights[OP_NR];

/*
 * $UFAULT_STRESS_OPS: a comma-separated subset of op_names to run only
 * those (to narrow a failure down); default all.
 */
static void parse_ops(void)
{
	const char *env = getenv("UFAULT_STRESS_OPS");

	for (int k = 0; k < OP_NR; k++)
		weights[k] = env && *env ? 0 : op_weight[k];
	if (!env || !*env)
		return;
	for (int k = 0; k < OP_NR; k++) {
		const char *p = env;
		size_t n = strlen(op_names[k]);

		while ((p = strstr(p, op_names[k]))) {
			if ((p == env || p[-1] == ',') && (p[n] == ',' || !p[n]))
				weights[k] = op_weight[k];
			p += n;
		}
	}
}

static enum op pick_op(uint64_t *st)
{
	unsigned int total = 0, x;

	for (int k = 0; k < OP_NR; k++)
		total += weights[k];
	if (!total)
		return OP_MADVISE;
	x = (unsigned int)(rnd(st) % total);
	for (int k = 0; k < OP_NR; k++) {
		if (x < weights[k])
			return (enum op)k;
		x -= weights[k];
	}
	return OP_MADVISE;
}

static void *proxy_main(void *arg)
{
	struct thr *me = arg;
	struct counters *c = &S.cnt[me->id];
	uint64_t st = 0x2545f4914f6cdd1dull * (me->id + 7);

	while (!__atomic_load_n(&S.stop, __ATOMIC_RELAXED)) {
		unsigned int i = (unsigned int)(rnd(&st) % NR_SLOTS);
		struct slot *s = &S.slots[i];
		enum op op = pick_op(&st);
		bool done, big;

		beat(me, (int)i);
		if (pthread_mutex_trylock(&s->op))
			continue;
		if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != SLOT_MAPPED) {
			pthread_mutex_unlock(&s->op);
			continue;
		}
		__atomic_store_n(&s->busy, op + 1, __ATOMIC_RELAXED);
		big = s->upp > 1;
		switch (op) {
		case OP_REPLACE:
			done = op_replace(i, &st, c);
			break;
		case OP_REMAP:
			done = op_remap(i, &st, c);
			break;
		case OP_MOVE:
			done = op_move(i, &st, c);
			break;
		case OP_GROW:
			done = op_grow(i, &st, c);
			break;
		case OP_SHRINK:
			done = op_shrink(i, &st, c);
			break;
		case OP_SPLIT:
			done = op_split(i, &st, c);
			break;
		case OP_MPROTECT:
			done = op_mprotect(i, &st, c);
			break;
		default:
			done = op_madvise(i, &st, c);
			break;
		}
		if (done) {
			cnt_add(&c->ops[op], 1);
			if (big)
				c->big_ops++;
			__atomic_store_n(&s->last_op, op + 1, __ATOMIC_RELAXED);
		}
		__atomic_store_n(&s->busy, 0, __ATOMIC_RELAXED);
		pthread_mutex_unlock(&s->op);
	}
	beat(me, -1);
	return NULL;
}

/* ---------------------------------------------------------------- */
/* One mode                                                          */
/* ---------------------------------------------------------------- */

/* The PROT_NONE reservation of every slot, aligned to the large unit. */
static char *arena_reserve(void)
{
	size_t len = NR_SLOTS * S.span, align = S.big_upp * S.ps, span = len + align;
	char *p = mmap(NULL, span, PROT_NONE, PA | MAP_NORESERVE, -1, 0), *a;

	if (p == MAP_FAILED)
		tu_die("mmap arena", errno);
	a = (char *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
	if (a > p)
		tu_unmap(p, (size_t)(a - p));
	tu_unmap(a + len, (size_t)(p + span - (a + len)));
	return a;
}

static void arena_setup(uint64_t *st)
{
	S.arena = arena_reserve();
	for (unsigned int i = 0; i < NR_SLOTS; i++) {
		struct slot *s = &S.slots[i];
		pthread_rwlockattr_t ra;

		memset(s, 0, sizeof(*s));
		pthread_rwlockattr_init(&ra);
		pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
		pthread_rwlock_init(&s->rw, &ra);
		pthread_rwlockattr_destroy(&ra);
		pthread_mutex_init(&s->op, NULL);
		s->state = SLOT_FREE;
		/* Half the slots start with each unit. */
		s->upp = i % 2 ? S.big_upp : 1;
		if (i < NR_MAPPED_AT_START) {
			struct fresh f;
			unsigned int len =
			    MIN_LEN + (unsigned int)(rnd(st) % (SLOT_CAP - MIN_LEN + 1));
			void *r;

			fresh_src(&f, st);
			r = ufault_mmap(S.ctx, slot_base(i), len * unit(s), RW, PA | MAP_FIXED,
					&f.src, unit_flags(s->upp));
			if (r != slot_base(i))
				fail_msg("initial ufault_mmap(MAP_FIXED) of slot "
					 "%u (%s source): %s",
					 i, src_names[f.kind], strerror(errno));
			hist_publish(s, f.g, f.so);
			count_src(S.src_setup, &S.setup_direct, f.kind, &f.src);
			s->kinds = 1u << f.kind;
			set_single_region(s);
			s->len = len;
			s->state = SLOT_MAPPED;
		}
	}
}

/*
 * Single-threaded: every mapped page equals its slot's current entry.
 * Adds the wrong bytes it finds to *@wrong.
 */
static uint64_t final_check(uint64_t *wrong)
{
	uint64_t *buf = aligned_alloc(64, S.ps), n = 0;

	for (unsigned int i = 0; i < NR_SLOTS && !S.failed; i++) {
		struct slot *s = &S.slots[i];

		if (s->state != SLOT_MAPPED)
			continue;
		for (unsigned int pg = 0; pg < s->len * s->upp && !S.failed; pg++) {
			memcpy(buf, slot_base(i) + (size_t)pg * S.ps, S.ps);
			if (page_mismatch(buf, s->so + (uint64_t)pg * S.ps, s->g) >= 0)
				*wrong +=
				    report_bad(buf, i, pg, s->seq_lo, s->seq_lo, "final check");
			n++;
		}
	}
	free(buf);
	return n;
}

static void arena_teardown(void)
{
	unsigned int i = 0;

	/* ufault_munmap over runs of live slots (regions, reservations and
	 * the holes between); dead slots may hold somebody else's memory. */
	while (i < NR_SLOTS) {
		unsigned int j = i;

		while (j < NR_SLOTS && S.slots[j].state != SLOT_DEAD)
			j++;
		if (j > i && ufault_munmap(S.ctx, slot_base(i), (size_t)(j - i) * S.span))
			failf("final ufault_munmap of slots [%u, %u): %s", i, j, strerror(errno));
		i = j + 1;
	}
	for (i = 0; i < NR_SLOTS; i++) {
		pthread_rwlock_destroy(&S.slots[i].rw);
		pthread_mutex_destroy(&S.slots[i].op);
	}
}

/* ---------------------------------------------------------------- */
/* Hangs and the summary                                             */
/* ---------------------------------------------------------------- */

#define NR_THREADS (NR_READERS + NR_PROXIES)

static uint64_t hang_ns(void)
{
	return (uint64_t)HANG_SECS * tu_slowdown() * 1000000000ull;
}

/* What the main thread last saw of a thread's heartbeat. */
struct progress {
	uint64_t beat, since;
	bool stuck;
};

/* Marks and counts the threads whose heartbeat has not moved for hang_ns(). */
static unsigned int stuck_threads(struct thr *thr, struct progress *pr, uint64_t now)
{
	unsigned int n = 0;

	for (unsigned int k = 0; k < NR_THREADS; k++) {
		uint64_t b = __atomic_load_n(&thr[k].beat, __ATOMIC_ACQUIRE);

		if (b != pr[k].beat) {
			pr[k].beat = b;
			pr[k].since = now;
		} else if (now - pr[k].since > hang_ns()) {
			pr[k].stuck = true;
			n++;
		}
	}
	return n;
}

/* The one line a mode ends with. Safe while the threads still run. */
static void print_summary(enum ufault_lock_mode mode, double secs, uint64_t final_wrong,
			  unsigned int hangs)
{
	uint64_t reads = 0, ops = 0, wrong = final_wrong, src[SRC_NR];

	for (int k = 0; k < SRC_NR; k++)
		src[k] = S.src_setup[k];
	for (unsigned int k = 0; k < NR_THREADS; k++) {
		struct counters *c = &S.cnt[k];

		reads += __atomic_load_n(&c->reads, __ATOMIC_RELAXED);
		wrong += __atomic_load_n(&c->wrong_bytes, __ATOMIC_RELAXED);
		for (int o = 0; o < OP_NR; o++)
			ops += __atomic_load_n(&c->ops[o], __ATOMIC_RELAXED);
		for (int o = 0; o < SRC_NR; o++)
			src[o] += __atomic_load_n(&c->src[o], __ATOMIC_RELAXED);
	}
	printf("stress mode=%s seconds=%.1f reads=%llu proxy_ops=%llu wrong_bytes=%llu "
	       "hangs=%u src_callback=%llu src_async=%llu src_file=%llu\n",
	       ufault_lock_mode_name(mode), secs, (unsigned long long)reads,
	       (unsigned long long)ops, (unsigned long long)wrong, hangs,
	       (unsigned long long)src[SRC_CALLBACK], (unsigned long long)src[SRC_ASYNC],
	       (unsigned long long)src[SRC_FILE]);
	fflush(stdout);
}

/*
 * A thread is stuck (in a fault that is never resolved, or a proxy call
 * that never returns): say where, print the summary and exit. It cannot be
 * joined, so the process cannot go on to the next mode.
 */
static void die_hung(enum ufault_lock_mode mode, double secs, struct thr *thr,
		     const struct progress *pr, unsigned int hangs, uint64_t now, const char *when)
{
	for (unsigned int k = 0; k < NR_THREADS; k++) {
		int i = __atomic_load_n(&thr[k].slot, __ATOMIC_RELAXED);
		int busy = i >= 0 ? __atomic_load_n(&S.slots[i].busy, __ATOMIC_RELAXED) : 0;

		if (!pr[k].stuck)
			continue;
		fprintf(stderr,
			"HANG [%s]: %s %u made no progress for %.1f s (%s); last on slot %d, "
			"proxy op on it: %s\n",
			ufault_lock_mode_name(mode), k < NR_READERS ? "reader" : "proxy",
			k < NR_READERS ? k : k - NR_READERS, (double)(now - pr[k].since) / 1e9,
			when, i, busy ? op_names[busy - 1] : "none");
		if (i >= 0)
			dump_maps((unsigned int)i);
	}
	print_summary(mode, secs, 0, hangs);
	fflush(NULL);
	_exit(1);
}

/* ---------------------------------------------------------------- */
/* One mode                                                          */
/* ---------------------------------------------------------------- */

/* The system page, the large unit, a slot's bytes. */
static void geometry(void)
{
	S.ps = tu_page_size();
	S.big_upp = S.ps < (1u << BIG_SHIFT) ? (unsigned int)((1u << BIG_SHIFT) / S.ps) : 1;
	S.span = SLOT_CAP * (size_t)S.big_upp * S.ps;
}

/*
 * The file source's file: chunk k (F.chunk bytes) holds page(F, FILE_G0 + k)
 * at file offset F. Unlinked once written; the descriptor stays open (the
 * library duplicates it, or reopens it through /proc/self/fd for O_DIRECT).
 * File sources need io_uring in the workers: without it they are left out.
 */
static void file_setup(void)
{
	struct io_uring_params p;
	char path[64], proc[64];
	uint64_t *buf;
	int fd, rfd;

	geometry();
	F.chunk = S.span + FILE_SLACK * S.ps;
	snprintf(path, sizeof(path), "/var/tmp/ufault_proxy_stress_%d", (int)getpid());
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		tu_die("creating the file source's file in /var/tmp", errno);
	buf = aligned_alloc(64, F.chunk);
	if (!buf) {
		unlink(path);
		tu_die("allocating a chunk of the file", ENOMEM);
	}
	for (unsigned int k = 0; k < NR_FILE_GENS; k++) {
		pattern_fill(FILE_G0 + k, k * F.chunk, buf, F.chunk);
		if (pwrite(fd, buf, F.chunk, (off_t)(k * F.chunk)) != (ssize_t)F.chunk) {
			int e = errno ? errno : EIO;

			unlink(path);
			tu_die("writing the file source's file", e);
		}
	}
	free(buf);
	if (fsync(fd)) {
		int e = errno;

		unlink(path);
		tu_die("fsync of the file source's file", e);
	}
	unlink(path);
	F.fd = fd;
	/* As the library reopens it for UFAULT_FILE_DIRECT. */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	rfd = open(proc, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (rfd >= 0) {
		F.direct = true;
		close(rfd);
	}
	/* As each worker sets up its ring (max_inflight entries, 64). */
	memset(&p, 0, sizeof(p));
	rfd = (int)syscall(__NR_io_uring_setup, 64, &p);
	if (rfd >= 0) {
		F.ok = true;
		close(rfd);
	} else {
		snprintf(F.why_not, sizeof(F.why_not), "io_uring_setup: %s", strerror(errno));
	}
	printf("proxy_stress: file source: %u generations of %zu KiB (%s, unlinked), "
	       "O_DIRECT %s%s%s\n",
	       NR_FILE_GENS, F.chunk / 1024, path, F.direct ? "yes" : "no",
	       F.ok ? "" : "; FILE SOURCES LEFT OUT: ", F.ok ? "" : F.why_not);
}

static void completer_start(void)
{
	int rc;

	A.head = A.tail = 0;
	A.stop = false;
	rc = pthread_create(&A.thread, NULL, completer_main, NULL);
	if (rc)
		tu_die("starting the completer thread", rc);
}

/* After ufault_ctx_destroy(): every fill it started was completed. */
static void completer_stop(void)
{
	pthread_mutex_lock(&A.lock);
	A.stop = true;
	pthread_cond_broadcast(&A.cond);
	pthread_mutex_unlock(&A.lock);
	pthread_join(A.thread, NULL);
}

static void run_mode(enum ufault_lock_mode mode)
{
	struct thr thr[NR_THREADS];
	struct progress pr[NR_THREADS];
	struct counters tot;
	struct ufault_stats st0, st1;
	struct sigaction sa, old_segv, old_bus;
	double secs = tu_test_seconds(tu_slowdown() > 1 ? 2.0 : 3.0);
	uint64_t seed = 0x1234567ull + (uint64_t)mode, proxy_calls, finals, final_wrong = 0, t0;
	uint64_t async_left, async_fills = 0;
	unsigned int hangs = 0;
	struct timespec dl;
	int rc;

	memset(&S.cnt, 0, sizeof(S.cnt));
	S.mode = mode;
	S.stop = 0;
	S.failed = 0;
	S.fail_msg[0] = 0;
	geometry();
	memset(S.src_setup, 0, sizeof(S.src_setup));
	S.setup_direct = 0;
	A.seq = 0;
	A.cb_fills = 0;
	memset(A.how, 0, sizeof(A.how));
	pthread_mutex_init(&S.fail_lock, NULL);
	/* The last resort; the heartbeat monitor below fires well before. */
	tu_watchdog((unsigned int)secs + 2 * HANG_SECS + 60);

	rc = tu_ctx_create(&S.ctx, mode, 0, 0);
	if (rc)
		fail_msg("ufault_ctx_create(%s): %s", ufault_lock_mode_name(mode),
			 ufault_strerror(rc));
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = crash_handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old_segv);
	sigaction(SIGBUS, &sa, &old_bus);

	arena_setup(&seed);
	/* No fault yet: the initial mappings are untouched. */
	completer_start();
	memset(&st0, 0, sizeof(st0));
	st0.size = sizeof(st0);
	ufault_stats(S.ctx, &st0);

	t0 = tu_now_ns();
	memset(pr, 0, sizeof(pr));
	for (unsigned int k = 0; k < NR_THREADS; k++) {
		thr[k].id = k;
		thr[k].beat = 0;
		thr[k].slot = -1;
		pr[k].since = t0;
		pthread_create(&thr[k].t, NULL, k < NR_READERS ? reader_main : proxy_main, &thr[k]);
	}
	for (uint64_t end = t0 + (uint64_t)(secs * 1e9), now = t0;
	     now < end && !__atomic_load_n(&S.stop, __ATOMIC_RELAXED); now = tu_now_ns()) {
		usleep(10 * 1000);
		hangs = stuck_threads(thr, pr, tu_now_ns());
		if (hangs)
			die_hung(mode, (double)(tu_now_ns() - t0) / 1e9, thr, pr, hangs,
				 tu_now_ns(), "while running");
	}
	secs = (double)(tu_now_ns() - t0) / 1e9;
	__atomic_store_n(&S.stop, 1, __ATOMIC_SEQ_CST);
	/* Every thread must notice the stop within the hang limit. */
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += (time_t)(hang_ns() / 1000000000ull);
	for (unsigned int k = 0; k < NR_THREADS; k++) {
		if (pthread_timedjoin_np(thr[k].t, NULL, &dl)) {
			pr[k].stuck = true;
			hangs++;
		}
	}
	if (hangs)
		die_hung(mode, secs, thr, pr, hangs, tu_now_ns(), "after the stop");

	finals = final_check(&final_wrong);
	memset(&st1, 0, sizeof(st1));
	st1.size = sizeof(st1);
	ufault_stats(S.ctx, &st1);
	arena_teardown();
	ufault_ctx_destroy(S.ctx);
	/* ufault_ctx_destroy() waits for the completion of every fill started. */
	async_left = __atomic_load_n(&A.pending, __ATOMIC_ACQUIRE);
	if (async_left)
		failf("ufault_ctx_destroy() returned with %llu asynchronous fills not completed "
		      "(%u still queued for the completer)",
		      (unsigned long long)async_left, A.tail - A.head);
	else
		completer_stop();
	sigaction(SIGSEGV, &old_segv, NULL);
	sigaction(SIGBUS, &old_bus, NULL);
	tu_watchdog(0);

	memset(&tot, 0, sizeof(tot));
	proxy_calls = 0;
	for (unsigned int k = 0; k < NR_THREADS; k++) {
		struct counters *c = &S.cnt[k];

		tot.reads += c->reads;
		tot.big_reads += c->big_reads;
		tot.checked += c->checked;
		tot.torn += c->torn;
		tot.skipped += c->skipped;
		tot.expected_failures += c->expected_failures;
		tot.dead += c->dead;
		tot.efault += c->efault;
		tot.wrong_bytes += c->wrong_bytes;
		tot.big_ops += c->big_ops;
		tot.file_checked += c->file_checked;
		tot.src_direct += c->src_direct;
		for (int o = 0; o < SRC_NR; o++)
			tot.src[o] += c->src[o];
		for (int o = 0; o < OP_NR; o++) {
			tot.ops[o] += c->ops[o];
			proxy_calls += c->ops[o];
		}
	}
	tot.wrong_bytes += final_wrong;
	for (int o = 0; o < SRC_NR; o++)
		tot.src[o] += S.src_setup[o];
	tot.src_direct += S.setup_direct;
	for (int o = 0; o < AC_NR; o++)
		async_fills += A.how[o];
	printf("[%s] %.1fs: %llu page reads (%llu in %zu KiB units), %llu checked OK, %llu torn "
	       "(re-read), %llu unjudged, %llu final pages OK; ops (%llu on %zu KiB units):",
	       ufault_lock_mode_name(mode), secs, (unsigned long long)tot.reads,
	       (unsigned long long)tot.big_reads, S.big_upp * S.ps / 1024,
	       (unsigned long long)tot.checked, (unsigned long long)tot.torn,
	       (unsigned long long)tot.skipped, (unsigned long long)finals,
	       (unsigned long long)tot.big_ops, S.big_upp * S.ps / 1024);
	for (int o = 0; o < OP_NR; o++)
		printf(" %s %llu", op_names[o], (unsigned long long)tot.ops[o]);
	printf("; expected mremap failures %llu (not one region) + %llu "
	       "(EFAULT: several VMAs); dead slots %llu\n",
	       (unsigned long long)tot.expected_failures, (unsigned long long)tot.efault,
	       (unsigned long long)tot.dead);
	printf("[%s] library: faults %llu, installed %llu, eexist %llu, "
	       "retries %llu, deferred %llu, proxy_ops %llu, spec aborts "
	       "seq %llu trylock %llu detached %llu gen %llu\n",
	       ufault_lock_mode_name(mode), (unsigned long long)(st1.faults - st0.faults),
	       (unsigned long long)(st1.pages_installed - st0.pages_installed),
	       (unsigned long long)(st1.eexist_races - st0.eexist_races),
	       (unsigned long long)(st1.retries - st0.retries),
	       (unsigned long long)(st1.deferred - st0.deferred),
	       (unsigned long long)(st1.proxy_ops - st0.proxy_ops),
	       (unsigned long long)(st1.spec_aborts[0] - st0.spec_aborts[0]),
	       (unsigned long long)(st1.spec_aborts[1] - st0.spec_aborts[1]),
	       (unsigned long long)(st1.spec_aborts[2] - st0.spec_aborts[2]),
	       (unsigned long long)(st1.spec_aborts[3] - st0.spec_aborts[3]));
	printf(
	    "[%s] sources made: callback %llu (fills %llu), async %llu (fills %llu: inline %llu, "
	    "completer at once %llu, after 50-200 us %llu), file %llu (O_DIRECT %llu; pages of "
	    "file generations checked %llu)\n",
	    ufault_lock_mode_name(mode), (unsigned long long)tot.src[SRC_CALLBACK],
	    (unsigned long long)A.cb_fills, (unsigned long long)tot.src[SRC_ASYNC],
	    (unsigned long long)async_fills, (unsigned long long)A.how[AC_INLINE],
	    (unsigned long long)A.how[AC_NOW], (unsigned long long)A.how[AC_DELAYED],
	    (unsigned long long)tot.src[SRC_FILE], (unsigned long long)tot.src_direct,
	    (unsigned long long)tot.file_checked);
	print_summary(mode, secs, final_wrong, 0);
	pthread_mutex_destroy(&S.fail_lock);

	if (S.failed)
		fail_msg("%s: %s", ufault_lock_mode_name(mode), S.fail_msg);
	assert_int_equal(tot.wrong_bytes, 0);
	assert_true(tot.checked > 0);
	assert_true(proxy_calls > 0);
	/* Every source kind was used. */
	for (int k = 0; k < SRC_NR; k++)
		if (!tot.src[k] && (k != SRC_FILE || F.ok))
			fail_msg("%s: no mapping was made with a %s source",
				 ufault_lock_mode_name(mode), src_names[k]);
	if (!A.cb_fills || !async_fills)
		fail_msg("%s: fills run: callback %llu, async %llu: a source kind was never used",
			 ufault_lock_mode_name(mode), (unsigned long long)A.cb_fills,
			 (unsigned long long)async_fills);
	if (F.ok && !tot.file_checked)
		fail_msg("%s: no page of a file generation was read and checked",
			 ufault_lock_mode_name(mode));
}

static void test_stress_spec(void **state)
{
	(void)state;
	run_mode(UFAULT_LOCK_SPEC);
}

static void test_stress_region(void **state)
{
	(void)state;
	run_mode(UFAULT_LOCK_REGION);
}

static void test_stress_range(void **state)
{
	(void)state;
	run_mode(UFAULT_LOCK_RANGE);
}

static void test_stress_global(void **state)
{
	(void)state;
	run_mode(UFAULT_LOCK_GLOBAL);
}

int main(void)
{
	const struct CMUnitTest all[TU_NR_LOCK_MODES] = {
	    cmocka_unit_test(test_stress_spec),
	    cmocka_unit_test(test_stress_region),
	    cmocka_unit_test(test_stress_range),
	    cmocka_unit_test(test_stress_global),
	};
	struct CMUnitTest tests[TU_NR_LOCK_MODES];
	const char *only = getenv("UFAULT_STRESS_MODE");
	size_t n = 0;
	int rc;

	/* all[m] runs tu_lock_mode(m). */
	for (unsigned int m = 0; m < TU_NR_LOCK_MODES; m++)
		if (!only || !*only || !strcmp(only, ufault_lock_mode_name(tu_lock_mode(m))))
			tests[n++] = all[m];
	if (!n) {
		fprintf(stderr, "UFAULT_STRESS_MODE=%s: expected spec, region, range or global\n",
			only);
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_ops();
	file_setup();
	rc = _cmocka_run_group_tests("proxy_stress", tests, n, NULL, NULL);
	close(F.fd);
	return rc;
}
