/* SPDX-License-Identifier: MIT */
/*
 * test_writeback.c - write-back regions (UFAULT_REGION_WRITEBACK):
 * ufault_flush() stores the written pages in the source, in every lock mode
 * and both dirty-tracking modes (UFAULT_DIRTY_ASYNC, UFAULT_DIRTY_SYNC; each
 * test that needs one makes a context of its own per dirty mode).
 *
 *  - Oracle: a file region written by 4 threads (disjoint pages, random
 *    bytes, a malloc'ed copy of what the region must hold), read by 2 more
 *    (pages nobody writes), flushed in a loop by another, while a proxy
 *    thread calls ufault_mprotect() on parts of it and maps and unmaps
 *    small arenas (zero source, and write-back callback ones checked after
 *    their unmap). After a last flush the file equals the copy byte for
 *    byte, and the file outside the region is untouched.
 *  - Write errors: a callback whose writeback fails with -EIO while a flag
 *    is set: the flush returns -EIO and the storage keeps its bytes; the
 *    next flush stores them. A failure on one page leaves the others
 *    stored; only that page goes again. A ufault_munmap() whose flush
 *    fails returns EIO and leaves the region in place.
 *  - ufault_munmap() flushes (the whole region, and a part of it), and so
 *    does ufault_region_unregister() (over a mapping of the test's own).
 *  - UFAULT_REGION_DISCARD: ufault_flush() stores, ufault_munmap() (of
 *    part, then the rest), ufault_region_unregister() and
 *    ufault_ctx_destroy() drop the writes not flushed; without
 *    UFAULT_REGION_WRITEBACK it is -EINVAL.
 *  - MADV_DONTNEED discards the writes not flushed: those pages read the
 *    source again, and a write after the refill is tracked again.
 *  - kill -9: a child flushes generation 1, writes generation 2 without a
 *    flush, and is killed: the file holds generation 1 exactly.
 *  - Validation: UFAULT_REGION_WRITEBACK with a zero, snapshot, async, NBD
 *    or memfd source, a read-only file, a callback without writeback is
 *    -EINVAL and registers nothing; ufault_flush() of NULL, an empty or a
 *    wrapping range is -EINVAL, of memory without write-back regions 0.
 *  - Statistics: written_back counts the distinct pages flushed; wp_faults
 *    grows in SYNC mode only.
 */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/wait.h>

#include <cmocka.h>

#include <linux/userfaultfd.h>

#include "../modes.h"

#define SEED 57
#define GEN1 71 /* kill -9: the flushed generation */
#define GEN2 72 /* kill -9: the generation written after the flush */
#define WB UFAULT_REGION_WRITEBACK

/* The oracle test: a region of REGION_PAGES pages, ORACLE_OFF pages into a
 * file of ORACLE_FILE_PAGES pages. Page pg belongs to writer pg % 8 if that
 * is below NR_WRITERS; the other pages are never written (the readers'). */
#define REGION_PAGES 256
#define ORACLE_OFF 3
#define ORACLE_FILE_PAGES (REGION_PAGES + 8)
#define NR_WRITERS 4
#define NR_READERS 2
#define OWNER_STRIDE 8

/* The small tests: regions of SMALL_PAGES pages in a file of FILE_PAGES. */
#define SMALL_PAGES 8
#define FILE_PAGES 16

static size_t ps;
static char file_path[64];

static const enum ufault_dirty_mode dirty_modes[] = {UFAULT_DIRTY_ASYNC, UFAULT_DIRTY_SYNC};
#define NR_DIRTY_MODES (sizeof(dirty_modes) / sizeof(dirty_modes[0]))

static const char *dirty_name(enum ufault_dirty_mode dm)
{
	return dm == UFAULT_DIRTY_ASYNC ? "async" : dm == UFAULT_DIRTY_SYNC ? "sync" : "auto";
}

/* ------------------------------------------------------------------ */
/* Contexts, files, sources                                             */
/* ------------------------------------------------------------------ */

/* A context in the group's lock mode with dirty tracking @dm; -EOPNOTSUPP
 * (the kernel lacks WP_ASYNC or PAGEMAP_SCAN) is returned, not failed. */
static int dirty_ctx_create(struct ufault_ctx **ctx, enum ufault_dirty_mode dm)
{
	struct ufault_config cfg;

	ufault_config_init(&cfg);
	cfg.lock_mode = tu_mode;
	cfg.nr_workers = tu_modes_cfg.nr_workers;
	cfg.dirty_tracking = dm;
	return tu_ctx_create_cfg(ctx, &cfg);
}

/* Run @body once per dirty mode, each with a fresh context. */
static void each_dirty_mode(void (*body)(struct ufault_ctx *ctx, enum ufault_dirty_mode dm))
{
	for (size_t i = 0; i < NR_DIRTY_MODES; i++) {
		struct ufault_ctx *ctx;
		int rc = dirty_ctx_create(&ctx, dirty_modes[i]);

		if (rc == -EOPNOTSUPP) {
			print_message("  [%s/%s] not supported by this kernel: skipped\n",
				      ufault_lock_mode_name(tu_mode), dirty_name(dirty_modes[i]));
			continue;
		}
		if (rc)
			fail_msg("[%s/%s] ufault_ctx_create: %s", ufault_lock_mode_name(tu_mode),
				 dirty_name(dirty_modes[i]), ufault_strerror(rc));
		body(ctx, dirty_modes[i]);
		ufault_ctx_destroy(ctx);
	}
}

static struct ufault_source file_source(int fd, uint64_t offset)
{
	struct ufault_source s;

	ufault_source_init(&s, UFAULT_SOURCE_FILE);
	s.file.fd = fd;
	s.offset = offset;
	return s;
}

static int open_file(int flags)
{
	int fd = open(file_path, flags | O_CLOEXEC);

	assert_true(fd >= 0);
	return fd;
}

/* @len bytes of the test file at @off. */
static void file_read(void *buf, size_t len, uint64_t off)
{
	int fd = open_file(O_RDONLY);
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		assert_true(n > 0);
		done += (size_t)n;
	}
	close(fd);
}

/* The file's bytes [@off, @off + @len) equal @want; fail naming the first
 * byte that does not. */
static void file_check(const char *tag, const unsigned char *want, size_t len, uint64_t off)
{
	unsigned char *got = malloc(len);

	assert_non_null(got);
	file_read(got, len, off);
	for (size_t i = 0; i < len; i++)
		if (got[i] != want[i])
			fail_msg("%s: file byte %llu (page %llu) is 0x%02x, expected 0x%02x", tag,
				 (unsigned long long)(off + i),
				 (unsigned long long)((off + i) / ps), got[i], want[i]);
	free(got);
}

/* The file's bytes [@off, @off + @len) are still tu_pattern(o, SEED). */
static void file_check_pattern(const char *tag, size_t len, uint64_t off)
{
	unsigned char *want = malloc(len);

	assert_non_null(want);
	tu_pattern_fill(want, len, off, SEED);
	file_check(tag, want, len, off);
	free(want);
}

static void mem_check(const char *tag, const unsigned char *p, const unsigned char *want,
		      size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (tu_read_byte(p + i) != want[i])
			fail_msg("%s: region byte %zu (page %zu) is 0x%02x, expected 0x%02x", tag,
				 i, i / ps, tu_read_byte(p + i), want[i]);
}

/* Store @v at byte @i of the region @p and of its oracle @o. */
static void put(unsigned char *p, unsigned char *o, size_t i, unsigned char v)
{
	*(volatile unsigned char *)(p + i) = v;
	o[i] = v;
}

/* The tag of messages: "<lock mode>/<dirty mode>". */
static const char *tag_of(enum ufault_dirty_mode dm)
{
	static char tag[48];

	snprintf(tag, sizeof(tag), "[%s/%s]", ufault_lock_mode_name(tu_mode), dirty_name(dm));
	return tag;
}

static struct ufault_stats stats_of(struct ufault_ctx *ctx)
{
	struct ufault_stats st;

	memset(&st, 0, sizeof(st));
	st.size = sizeof(st);
	assert_int_equal(ufault_stats(ctx, &st), 0);
	return st;
}

/* ------------------------------------------------------------------ */
/* A callback source over a malloc'ed storage                          */
/* ------------------------------------------------------------------ */

/*
 * Fills read @data, write-backs copy into it; while @fail_all is set, or
 * for a call whose range overlaps [@fail_lo, @fail_hi), the write-back
 * copies nothing and returns -EIO. A call outside the storage or not made
 * of whole system pages is counted in @bad (and refused). Reference
 * counted: the test holds one reference, each registration another that
 * its release hook drops, so the storage outlives every use by ufault.
 */
struct store {
	unsigned char *data;
	size_t len;
	int refs;		    /* atomic */
	bool fail_all;		    /* atomic */
	uint64_t fail_lo, fail_hi;  /* atomic */
	unsigned long calls;	    /* atomic: write-back calls */
	unsigned long bytes;	    /* atomic: bytes stored */
	unsigned long failed;	    /* atomic: calls answered -EIO */
	unsigned long failed_bytes; /* atomic: bytes of those calls */
	unsigned long bad;	    /* atomic */
	/* The storage's own lock: a fill (a worker) and a write-back (a
	 * flusher) of one page are ordered by the page fault between them,
	 * which a race checker cannot see; real storage locks anyway. */
	pthread_mutex_t lock;
};

static int store_fill(void *arg, uint64_t offset, void *buf, size_t len)
{
	struct store *s = arg;

	if (offset >= s->len) {
		memset(buf, 0, len);
		return 0;
	}
	if (len > s->len - offset) {
		memset((char *)buf + (s->len - offset), 0, len - (s->len - offset));
		len = s->len - offset;
	}
	pthread_mutex_lock(&s->lock);
	memcpy(buf, s->data + offset, len);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int store_writeback(void *arg, uint64_t offset, const void *buf, size_t len)
{
	struct store *s = arg;
	uint64_t lo = __atomic_load_n(&s->fail_lo, __ATOMIC_RELAXED);
	uint64_t hi = __atomic_load_n(&s->fail_hi, __ATOMIC_RELAXED);

	__atomic_fetch_add(&s->calls, 1, __ATOMIC_RELAXED);
	if (!len || len % ps || offset % ps || offset > s->len || len > s->len - offset) {
		__atomic_fetch_add(&s->bad, 1, __ATOMIC_RELAXED);
		return -EINVAL;
	}
	if (__atomic_load_n(&s->fail_all, __ATOMIC_RELAXED) || (offset < hi && offset + len > lo)) {
		__atomic_fetch_add(&s->failed, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&s->failed_bytes, len, __ATOMIC_RELAXED);
		return -EIO;
	}
	pthread_mutex_lock(&s->lock);
	memcpy(s->data + offset, buf, len);
	pthread_mutex_unlock(&s->lock);
	__atomic_fetch_add(&s->bytes, len, __ATOMIC_RELAXED);
	return 0;
}

/* A storage of @pages pages holding tu_pattern(o, SEED); one reference. */
static struct store *store_new(size_t pages)
{
	struct store *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->len = pages * ps;
	s->data = malloc(s->len);
	if (!s->data) {
		free(s);
		return NULL;
	}
	tu_pattern_fill(s->data, s->len, 0, SEED);
	pthread_mutex_init(&s->lock, NULL);
	s->refs = 1;
	return s;
}

/* Drop a reference (also the sources' release hook). */
static void store_put(void *arg)
{
	struct store *s = arg;

	if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL))
		return;
	pthread_mutex_destroy(&s->lock);
	free(s->data);
	free(s);
}

static struct ufault_source store_source(struct store *s, uint64_t offset)
{
	struct ufault_source src;

	ufault_source_init(&src, UFAULT_SOURCE_CALLBACK);
	src.offset = offset;
	src.callback.fill = store_fill;
	src.callback.writeback = store_writeback;
	src.callback.arg = s;
	src.release = store_put;
	src.release_arg = s;
	return src;
}

/* ufault_mmap() of a write-back region of @len bytes over @s at @offset:
 * the region's reference is taken here (dropped again on failure). */
static void *store_mmap(struct ufault_ctx *ctx, struct store *s, uint64_t offset, size_t len)
{
	struct ufault_source src = store_source(s, offset);
	void *p;

	__atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
	p = ufault_mmap(ctx, NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, &src,
			WB);
	if (p == MAP_FAILED)
		store_put(s);
	return p;
}

/* The same with ufault_region_register() over @a. */
static int store_register(struct ufault_ctx *ctx, struct store *s, uint64_t offset, void *a,
			  size_t len, struct ufault_region **out)
{
	struct ufault_source src = store_source(s, offset);
	int rc;

	__atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
	rc = ufault_region_register(ctx, a, len, &src, WB, out);
	if (rc)
		store_put(s);
	return rc;
}

/* The whole storage equals @want (s->len bytes). */
static void store_check(const char *tag, const struct store *s, const unsigned char *want)
{
	for (size_t i = 0; i < s->len; i++)
		if (s->data[i] != want[i])
			fail_msg("%s: storage byte %zu (page %zu) is 0x%02x, expected 0x%02x", tag,
				 i, i / ps, s->data[i], want[i]);
}

/* ------------------------------------------------------------------ */
/* Oracle                                                               */
/* ------------------------------------------------------------------ */

struct oracle_run {
	struct ufault_ctx *ctx;
	unsigned char *base;   /* the region */
	unsigned char *oracle; /* what the region must hold */
	size_t len;
	uint64_t off; /* the region's file offset */
	bool stop;    /* atomic */
	pthread_mutex_t lock;
	bool failed; /* under lock: the first failure is in msg */
	char msg[256];
	/* atomic: what the threads did */
	unsigned long writes, reads, flushes, proxy_calls, arenas;
};

struct oracle_thread {
	struct oracle_run *r;
	unsigned int id;
	pthread_t th;
};

/* Record the first failure (CMocka's assertions belong to the main
 * thread) and stop every thread. */
static void __attribute__((format(printf, 2, 3)))
run_fail(struct oracle_run *r, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&r->lock);
	if (!r->failed) {
		r->failed = true;
		va_start(ap, fmt);
		vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&r->lock);
	__atomic_store_n(&r->stop, true, __ATOMIC_RELAXED);
}

static bool run_stopped(struct oracle_run *r)
{
	return __atomic_load_n(&r->stop, __ATOMIC_RELAXED);
}

/* A random page owned by writer @id. */
static size_t owned_page(struct oracle_run *r, unsigned int id, unsigned int *seed)
{
	return ((size_t)rand_r(seed) % (r->len / ps / OWNER_STRIDE)) * OWNER_STRIDE + id;
}

/* Writer @id: random bytes (now and then a run of them) at random offsets
 * of its own pages, each write followed by a check of a random byte of
 * its pages (it alone writes them: the oracle is exact for it). */
static void *oracle_writer(void *arg)
{
	struct oracle_thread *t = arg;
	struct oracle_run *r = t->r;
	unsigned int seed = 1000 + t->id;
	unsigned long n = 0;

	while (!run_stopped(r)) {
		size_t pg = owned_page(r, t->id, &seed);
		size_t i = pg * ps + (size_t)rand_r(&seed) % ps;
		size_t k = rand_r(&seed) % 8 ? 1 : 1 + (size_t)rand_r(&seed) % 64;
		unsigned char got;

		if (i % ps + k > ps)
			k = ps - i % ps;
		for (size_t j = 0; j < k; j++)
			put(r->base, r->oracle, i + j, (unsigned char)rand_r(&seed));
		pg = owned_page(r, t->id, &seed);
		i = pg * ps + (size_t)rand_r(&seed) % ps;
		got = tu_read_byte(r->base + i);
		if (got != r->oracle[i])
			run_fail(r, "writer %u: byte %zu (page %zu) reads 0x%02x, it wrote 0x%02x",
				 t->id, i, pg, got, r->oracle[i]);
		n += k + 1;
	}
	__atomic_fetch_add(&r->writes, n, __ATOMIC_RELAXED);
	return NULL;
}

/* A reader: random bytes of the pages nobody writes (the file's bytes). */
static void *oracle_reader(void *arg)
{
	struct oracle_thread *t = arg;
	struct oracle_run *r = t->r;
	const size_t groups = r->len / ps / OWNER_STRIDE;
	unsigned int seed = 2000 + t->id;
	unsigned long n = 0;

	while (!run_stopped(r)) {
		size_t pg = ((size_t)rand_r(&seed) % groups) * OWNER_STRIDE + NR_WRITERS +
			    (size_t)rand_r(&seed) % (OWNER_STRIDE - NR_WRITERS);
		size_t i = pg * ps + (size_t)rand_r(&seed) % ps;
		unsigned char got = tu_read_byte(r->base + i);

		if (got != tu_pattern(r->off + i, SEED))
			run_fail(r,
				 "reader: byte %zu (page %zu, never written) reads 0x%02x, "
				 "expected 0x%02x",
				 i, pg, got, tu_pattern(r->off + i, SEED));
		n++;
	}
	__atomic_fetch_add(&r->reads, n, __ATOMIC_RELAXED);
	return NULL;
}

/* The flusher: the whole region, or a random run of its pages. */
static void *oracle_flusher(void *arg)
{
	struct oracle_thread *t = arg;
	struct oracle_run *r = t->r;
	const size_t pages = r->len / ps;
	unsigned int seed = 3000;
	unsigned long n = 0;

	while (!run_stopped(r)) {
		size_t first = 0, cnt = pages;
		int rc;

		if (rand_r(&seed) & 1) {
			first = (size_t)rand_r(&seed) % pages;
			cnt = 1 + (size_t)rand_r(&seed) % (pages - first);
		}
		rc = ufault_flush(r->ctx, r->base + first * ps, cnt * ps);
		if (rc)
			run_fail(r, "ufault_flush(pages %zu..%zu): %s", first, first + cnt - 1,
				 ufault_strerror(rc));
		n++;
	}
	__atomic_fetch_add(&r->flushes, n, __ATOMIC_RELAXED);
	return NULL;
}

#define ARENA_PAGES 4

/* One arena: mapped (zero source, or write-back over @st), each page read
 * (checked) and written, unmapped; a write-back arena's writes must be in
 * @st once ufault_munmap() returns. False on a failure (recorded). */
static bool proxy_arena(struct oracle_run *r, struct store *st, bool wb, unsigned int *seed)
{
	const size_t len = ARENA_PAGES * ps;
	unsigned char want[ARENA_PAGES];
	unsigned char *a;

	if (wb)
		a = store_mmap(r->ctx, st, 0, len);
	else
		a = ufault_mmap(r->ctx, NULL, len, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, NULL, 0);
	if (a == MAP_FAILED) {
		run_fail(r, "ufault_mmap(%s arena): %s", wb ? "write-back" : "zero",
			 strerror(errno));
		return false;
	}
	for (size_t pg = 0; pg < ARENA_PAGES; pg++) {
		size_t i = pg * ps + pg;
		unsigned char old = tu_read_byte(a + i), exp = wb ? st->data[i] : 0;

		if (old != exp)
			run_fail(r, "%s arena page %zu reads 0x%02x, expected 0x%02x",
				 wb ? "write-back" : "zero", pg, old, exp);
		want[pg] = (unsigned char)(rand_r(seed) | 1);
		*(volatile unsigned char *)(a + i) = want[pg];
	}
	if (ufault_munmap(r->ctx, a, len)) {
		run_fail(r, "ufault_munmap(%s arena): %s", wb ? "write-back" : "zero",
			 strerror(errno));
		return false;
	}
	for (size_t pg = 0; pg < ARENA_PAGES && wb; pg++)
		if (st->data[pg * ps + pg] != want[pg])
			run_fail(r,
				 "write-back arena unmapped: storage page %zu holds 0x%02x, the "
				 "arena wrote 0x%02x",
				 pg, st->data[pg * ps + pg], want[pg]);
	return true;
}

/* The proxy thread: mprotect(PROT_READ | PROT_WRITE) on runs of the
 * region's pages (the protection stays; VMAs and page tables are walked
 * under the write lock), and arenas mapped, used and unmapped elsewhere. */
static void *oracle_proxy(void *arg)
{
	struct oracle_thread *t = arg;
	struct oracle_run *r = t->r;
	const size_t pages = r->len / ps;
	struct store *st = store_new(ARENA_PAGES);
	unsigned int seed = 4000;
	unsigned long calls = 0, arenas = 0;

	if (!st) {
		run_fail(r, "proxy: out of memory");
		return NULL;
	}
	while (!run_stopped(r)) {
		unsigned int op = (unsigned int)rand_r(&seed) % 3;

		if (op == 0) {
			size_t first = (size_t)rand_r(&seed) % pages;
			size_t cnt = 1 + (size_t)rand_r(&seed) % (pages - first);

			if (ufault_mprotect(r->ctx, r->base + first * ps, cnt * ps,
					    PROT_READ | PROT_WRITE)) {
				run_fail(r, "ufault_mprotect(pages %zu..%zu): %s", first,
					 first + cnt - 1, strerror(errno));
				break;
			}
			calls++;
			continue;
		}
		if (!proxy_arena(r, st, op == 2, &seed))
			break;
		calls += 2;
		arenas++;
	}
	if (__atomic_load_n(&st->bad, __ATOMIC_RELAXED))
		run_fail(r, "write-back arenas: %lu write-back calls outside the storage", st->bad);
	store_put(st);
	__atomic_fetch_add(&r->proxy_calls, calls, __ATOMIC_RELAXED);
	__atomic_fetch_add(&r->arenas, arenas, __ATOMIC_RELAXED);
	return NULL;
}

static void oracle_body(struct ufault_ctx *ctx, enum ufault_dirty_mode dm)
{
	struct oracle_thread th[NR_WRITERS + NR_READERS + 2];
	void *(*const mains[])(void *) = {oracle_flusher, oracle_proxy};
	struct oracle_run r;
	struct ufault_source s;
	struct ufault_stats st;
	const char *tag = tag_of(dm);
	unsigned int n = 0;
	uint64_t t_end;
	int fd;

	memset(&r, 0, sizeof(r));
	pthread_mutex_init(&r.lock, NULL);
	r.ctx = ctx;
	r.len = REGION_PAGES * ps;
	r.off = ORACLE_OFF * ps;
	r.oracle = malloc(r.len);
	assert_non_null(r.oracle);
	tu_pattern_fill(r.oracle, r.len, r.off, SEED);
	tu_pattern_file(file_path, ORACLE_FILE_PAGES * ps, SEED);
	fd = open_file(O_RDWR);
	s = file_source(fd, r.off);
	r.base = ufault_mmap(ctx, NULL, r.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			     &s, WB);
	assert_ptr_not_equal(r.base, MAP_FAILED);
	close(fd); /* ufault holds its own */

	for (unsigned int i = 0; i < NR_WRITERS; i++, n++) {
		th[n] = (struct oracle_thread){.r = &r, .id = i};
		assert_int_equal(pthread_create(&th[n].th, NULL, oracle_writer, &th[n]), 0);
	}
	for (unsigned int i = 0; i < NR_READERS; i++, n++) {
		th[n] = (struct oracle_thread){.r = &r, .id = i};
		assert_int_equal(pthread_create(&th[n].th, NULL, oracle_reader, &th[n]), 0);
	}
	for (unsigned int i = 0; i < 2; i++, n++) {
		th[n] = (struct oracle_thread){.r = &r};
		assert_int_equal(pthread_create(&th[n].th, NULL, mains[i], &th[n]), 0);
	}
	t_end = tu_now_ns() + (uint64_t)(tu_test_seconds(1.0) * 1e9);
	while (tu_now_ns() < t_end && !run_stopped(&r))
		usleep(10000);
	__atomic_store_n(&r.stop, true, __ATOMIC_RELAXED);
	for (unsigned int i = 0; i < n; i++)
		assert_int_equal(pthread_join(th[i].th, NULL), 0);
	if (r.failed)
		fail_msg("%s %s", tag, r.msg);

	/* Everything written is flushed now, byte for byte; the file outside
	 * the region is untouched. */
	assert_int_equal(ufault_flush(ctx, r.base, r.len), 0);
	mem_check(tag, r.base, r.oracle, r.len);
	file_check(tag, r.oracle, r.len, r.off);
	file_check_pattern(tag, r.off, 0);
	file_check_pattern(tag, (ORACLE_FILE_PAGES - ORACLE_OFF - REGION_PAGES) * ps,
			   r.off + r.len);
	st = stats_of(ctx);
	print_message("  %s %lu writer accesses, %lu reads, %lu flushes, %lu proxy calls (%lu "
		      "arenas); %llu pages written back, %llu wp faults\n",
		      tag, r.writes, r.reads, r.flushes, r.proxy_calls, r.arenas,
		      (unsigned long long)st.written_back, (unsigned long long)st.wp_faults);
	assert_int_equal(ufault_munmap(ctx, r.base, r.len), 0);
	file_check(tag, r.oracle, r.len, r.off);
	free(r.oracle);
	pthread_mutex_destroy(&r.lock);
	unlink(file_path);
}

static void test_oracle(void **state)
{
	(void)state;
	each_dirty_mode(oracle_body);
}

/* ------------------------------------------------------------------ */
/* Write errors                                                         */
/* ------------------------------------------------------------------ */

#define ERR_OFF 3 /* the region starts at storage page 3 */
#define ERR_STORE_PAGES (ERR_OFF + FILE_PAGES + 5)

/* Written pages; 11 has no written neighbour, so a write-back call that
 * covers it covers nothing else. */
static const size_t err_pages[] = {1, 4, 5, 6, 11};
#define NR_ERR_PAGES (sizeof(err_pages) / sizeof(err_pages[0]))

static void write_errors_body(struct ufault_ctx *ctx, enum ufault_dirty_mode dm)
{
	const char *tag = tag_of(dm);
	const size_t len = FILE_PAGES * ps, off = ERR_OFF * ps;
	struct store *st = store_new(ERR_STORE_PAGES);
	unsigned char *p, *image, *oracle, *before, *expect;
	unsigned long calls, bytes;
	unsigned int v = 1;

	assert_non_null(st);
	p = store_mmap(ctx, st, off, len);
	assert_ptr_not_equal(p, MAP_FAILED);
	/* image: what the storage must hold; oracle: its part under the region. */
	image = malloc(st->len);
	before = malloc(st->len);
	expect = malloc(st->len);
	assert_non_null(image);
	assert_non_null(before);
	assert_non_null(expect);
	memcpy(image, st->data, st->len);
	oracle = image + off;
	(void)tu_read_byte(p + 4 * ps); /* one page filled before its writes */

	/* Every write-back fails: the storage keeps its bytes. */
	for (size_t k = 0; k < NR_ERR_PAGES; k++)
		for (size_t j = 0; j < 3; j++)
			put(p, oracle, err_pages[k] * ps + j * (ps / 4) + k,
			    (unsigned char)(v++ | 1));
	memcpy(before, st->data, st->len);
	__atomic_store_n(&st->fail_all, true, __ATOMIC_RELAXED);
	assert_int_equal(ufault_flush(ctx, p, len), -EIO);
	assert_true(st->failed >= 1);
	assert_int_equal(st->bytes, 0);
	/* Only written pages were offered (the others were never touched,
	 * or only read). */
	if (st->failed_bytes > NR_ERR_PAGES * ps)
		fail_msg("%s: the failed flush offered %lu bytes, %zu pages were written", tag,
			 st->failed_bytes, NR_ERR_PAGES);
	store_check(tag, st, before);
	mem_check(tag, p, oracle, len);
	/* Once it works again, the next flush stores every written page. */
	__atomic_store_n(&st->fail_all, false, __ATOMIC_RELAXED);
	assert_int_equal(ufault_flush(ctx, p, len), 0);
	store_check(tag, st, image);
	assert_int_equal(st->bytes, NR_ERR_PAGES * ps);
	/* Nothing written since: nothing to write. */
	calls = st->calls;
	assert_int_equal(ufault_flush(ctx, p, len), 0);
	assert_int_equal(st->calls, calls);

	/* Page 11 fails alone: the other pages are stored (they are clean
	 * now), page 11 keeps its old bytes until a flush that succeeds,
	 * which writes it and nothing else. */
	for (size_t k = 0; k < NR_ERR_PAGES; k++)
		put(p, oracle, err_pages[k] * ps + 77, (unsigned char)(v++ | 1));
	memcpy(before, st->data, st->len);
	__atomic_store_n(&st->fail_lo, off + 11 * ps, __ATOMIC_RELAXED);
	__atomic_store_n(&st->fail_hi, off + 12 * ps, __ATOMIC_RELAXED);
	assert_int_equal(ufault_flush(ctx, p, len), -EIO);
	memcpy(expect, image, st->len);
	memcpy(expect + off + 11 * ps, before + off + 11 * ps, ps);
	store_check(tag, st, expect);
	__atomic_store_n(&st->fail_lo, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&st->fail_hi, 0, __ATOMIC_RELAXED);
	bytes = st->bytes;
	assert_int_equal(ufault_flush(ctx, p, len), 0);
	assert_int_equal(st->bytes - bytes, ps);
	store_check(tag, st, image);

	/* An unmap whose flush fails fails, and leaves the region as it was. */
	put(p, oracle, 2 * ps + 5, (unsigned char)(v++ | 1));
	__atomic_store_n(&st->fail_all, true, __ATOMIC_RELAXED);
	errno = 0;
	assert_int_equal(ufault_munmap(ctx, p, len), -1);
	assert_int_equal(errno, EIO);
	mem_check(tag, p, oracle, len);
	__atomic_store_n(&st->fail_all, false, __ATOMIC_RELAXED);
	assert_int_equal(ufault_munmap(ctx, p, len), 0);
	store_check(tag, st, image);
	assert_int_equal(st->bad, 0);
	print_message("  %s %lu write-back calls, %lu failed\n", tag, st->calls, st->failed);
	store_put(st);
	free(image);
	free(before);
	free(expect);
}

static void test_write_errors(void **state)
{
	(void)state;
	each_dirty_mode(write_errors_body);
}

/* ------------------------------------------------------------------ */
/* Unmap and unregister flush                                           */
/* ------------------------------------------------------------------ */

#define SMALL_OFF 2 /* the small regions start at file page 2 */

/* A write-back region of SMALL_PAGES pages over the test file at page
 * SMALL_OFF: ufault_mmap()'ed, or registered over @a if not NULL. */
static unsigned char *small_region_flags(struct ufault_ctx *ctx, void *a,
					 struct ufault_region **reg, unsigned int flags)
{
	int fd = open_file(O_RDWR);
	struct ufault_source s = file_source(fd, SMALL_OFF * ps);
	unsigned char *p;

	if (a) {
		assert_int_equal(ufault_region_register(ctx, a, SMALL_PAGES * ps, &s, flags, reg),
				 0);
		p = a;
	} else {
		p = ufault_mmap(ctx, NULL, SMALL_PAGES * ps, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, &s, flags);
		assert_ptr_not_equal(p, MAP_FAILED);
	}
	close(fd); /* ufault holds its own */
	return p;
}

static unsigned char *small_region(struct ufault_ctx *ctx, void *a, struct ufault_region **reg)
{
	return small_region_flags(ctx, a, reg, WB);
}

static void unmap_body(struct ufault_ctx *ctx, enum ufault_dirty_mode dm)
{
	const char *tag = tag_of(dm);
	const size_t len = SMALL_PAGES * ps;
	unsigned char *image = malloc(FILE_PAGES * ps), *oracle, *p, *a;
	struct ufault_region *reg;
	int base_fds;

	assert_non_null(image);
	tu_pattern_file(file_path, FILE_PAGES * ps, SEED);
	tu_pattern_fill(image, FILE_PAGES * ps, 0, SEED);
	oracle = image + SMALL_OFF * ps;
	base_fds = tu_count_fds();

	/* ufault_munmap() of the whole region. Page 0 is first touched by a
	 * write, page 3 read first. */
	p = small_region(ctx, NULL, NULL);
	(void)tu_read_byte(p + 3 * ps);
	put(p, oracle, 0 * ps + 1, 0x11);
	put(p, oracle, 3 * ps + 2, 0x33);
	put(p, oracle, 3 * ps + ps - 1, 0x34);
	put(p, oracle, 7 * ps + 100, 0x77);
	assert_int_equal(ufault_munmap(ctx, p, len), 0);
	file_check(tag, image, FILE_PAGES * ps, 0);

	/* ufault_munmap() of the first half: its writes are stored; then of
	 * the second half. */
	p = small_region(ctx, NULL, NULL);
	put(p, oracle, 1 * ps + 9, 0x19);
	put(p, oracle, 6 * ps + 9, 0x69);
	assert_int_equal(ufault_munmap(ctx, p, len / 2), 0);
	file_check(tag, oracle + 1 * ps, ps, (SMALL_OFF + 1) * ps);
	assert_int_equal(ufault_munmap(ctx, p + len / 2, len / 2), 0);
	file_check(tag, image, FILE_PAGES * ps, 0);

	/* ufault_region_unregister() over a mapping of ours: the writes are
	 * stored, and stay in the memory, which is ordinary again. */
	a = tu_map_anon(len, 0);
	p = small_region(ctx, a, &reg);
	(void)tu_read_byte(p + 5 * ps);
	put(p, oracle, 0 * ps + 4, 0x04);
	put(p, oracle, 5 * ps + 4, 0x54);
	assert_int_equal(ufault_region_unregister(ctx, reg), 0);
	file_check(tag, image, FILE_PAGES * ps, 0);
	mem_check(tag, a, oracle, ps);
	mem_check(tag, a + 5 * ps, oracle + 5 * ps, ps);
	a[5 * ps + 4] = 0xaa; /* ordinary memory: the file does not see it */
	tu_unmap(a, len);
	file_check(tag, image, FILE_PAGES * ps, 0);
	/* Every region is gone: ufault's copies of the fd are closed. */
	assert_int_equal(tu_wait_fds(base_fds), base_fds);
	free(image);
	unlink(file_path);
}

static void test_unmap_flushes(void **state)
{
	(void)state;
	each_dirty_mode(unmap_body);
}

/* ------------------------------------------------------------------ */
/* UFAULT_REGION_DISCARD                                                */
/* ------------------------------------------------------------------ */

static void discard_body(struct ufault_ctx *ctx, enum ufault_dirty_mode dm)
{
	const char *tag = tag_of(dm);
	const size_t len = SMALL_PAGES * ps;
	unsigned char *image = malloc(FILE_PAGES * ps), *oracle, *p, *a;
	struct ufault_region *reg;

	assert_non_null(image);
	tu_pattern_file(file_path, FILE_PAGES * ps, SEED);
	tu_pattern_fill(image, FILE_PAGES * ps, 0, SEED);
	oracle = image + SMALL_OFF * ps;

	/* A flush still stores; writes after it are dropped by the unmap,
	 * of part of the region, then of the rest. */
	p = small_region_flags(ctx, NULL, NULL, WB | UFAULT_REGION_DISCARD);
	put(p, oracle, 1 * ps + 5, 0x15);
	put(p, oracle, 6 * ps + 5, 0x65);
	assert_int_equal(ufault_flush(ctx, p, len), 0);
	file_check(tag, image, FILE_PAGES * ps, 0);
	p[1 * ps + 6] = 0xd1;
	p[6 * ps + 6] = 0xd6;
	p[7 * ps] = 0xd7;
	assert_int_equal(ufault_munmap(ctx, p, len / 2), 0);
	assert_int_equal(ufault_munmap(ctx, p + len / 2, len / 2), 0);
	file_check(tag, image, FILE_PAGES * ps, 0);

	/* ufault_region_unregister(): nothing stored, the memory keeps the
	 * writes (ordinary memory again). */
	a = tu_map_anon(len, 0);
	p = small_region_flags(ctx, a, &reg, WB | UFAULT_REGION_DISCARD);
	p[2 * ps + 2] = 0xd2;
	assert_int_equal(ufault_region_unregister(ctx, reg), 0);
	file_check(tag, image, FILE_PAGES * ps, 0);
	assert_int_equal(tu_read_byte(a + 2 * ps + 2), 0xd2);
	tu_unmap(a, len);

	/* The context's destruction drops them too (a plain write-back
	 * region beside it is stored). */
	p = small_region_flags(ctx, NULL, NULL, WB | UFAULT_REGION_DISCARD);
	p[3 * ps + 3] = 0xd3;
	free(image);
}

static void test_discard(void **state)
{
	(void)state;
	each_dirty_mode(discard_body);
	/* The last context was destroyed with a written DISCARD region in
	 * it: the file holds what its body flushed, nothing more. */
	{
		unsigned char *want = malloc(FILE_PAGES * ps);

		assert_non_null(want);
		tu_pattern_fill(want, FILE_PAGES * ps, 0, SEED);
		want[(SMALL_OFF + 1) * ps + 5] = 0x15;
		want[(SMALL_OFF + 6) * ps + 5] = 0x65;
		file_check("[discard/destroy]", want, FILE_PAGES * ps, 0);
		free(want);
	}
	unlink(file_path);
}

/* ------------------------------------------------------------------ */
/* MADV_DONTNEED discards                                               */
/* ------------------------------------------------------------------ */

static void dontneed_body(struct ufault_ctx *ctx, enum ufault_dirty_mode dm)
{
	const char *tag = tag_of(dm);
	const size_t len = SMALL_PAGES * ps;
	unsigned char *image = malloc(FILE_PAGES * ps), *oracle, *flushed5, *p;

	assert_non_null(image);
	flushed5 = malloc(ps);
	assert_non_null(flushed5);
	tu_pattern_file(file_path, FILE_PAGES * ps, SEED);
	tu_pattern_fill(image, FILE_PAGES * ps, 0, SEED);
	oracle = image + SMALL_OFF * ps;
	p = small_region(ctx, NULL, NULL);

	for (size_t pg = 0; pg < SMALL_PAGES; pg++)
		for (size_t j = 0; j < 16; j++)
			put(p, oracle, pg * ps + j * 7, (unsigned char)(pg * 16 + j + 1));
	/* Pages 2 and 3 lose their writes: they read the file again. */
	assert_int_equal(ufault_madvise(ctx, p + 2 * ps, 2 * ps, MADV_DONTNEED), 0);
	tu_pattern_fill(oracle + 2 * ps, 2 * ps, (SMALL_OFF + 2) * ps, SEED);
	mem_check(tag, p, oracle, len);
	/* A flush stores the others; a write to page 5 after it, discarded,
	 * leaves page 5 as flushed. */
	assert_int_equal(ufault_flush(ctx, p, len), 0);
	file_check(tag, image, FILE_PAGES * ps, 0);
	memcpy(flushed5, oracle + 5 * ps, ps);
	put(p, oracle, 5 * ps + 3000 % ps, 0xee);
	assert_int_equal(ufault_madvise(ctx, p + 5 * ps, ps, MADV_DONTNEED), 0);
	memcpy(oracle + 5 * ps, flushed5, ps);
	mem_check(tag, p + 5 * ps, oracle + 5 * ps, ps);
	/* A page filled again is tracked again: page 3 written after its
	 * refill is stored by the unmap's flush, page 2 (only read) is not. */
	put(p, oracle, 3 * ps + 11, 0x3b);
	assert_int_equal(ufault_munmap(ctx, p, len), 0);
	file_check(tag, image, FILE_PAGES * ps, 0);
	free(flushed5);
	free(image);
	unlink(file_path);
}

static void test_dontneed_discards(void **state)
{
	(void)state;
	each_dirty_mode(dontneed_body);
}

/* ------------------------------------------------------------------ */
/* kill -9                                                              */
/* ------------------------------------------------------------------ */

/* The child: generation 1 in every byte of the region, flushed ("F" on
 * @wfd), then generation 2 in every byte, not flushed ("G"); then it waits
 * for the SIGKILL. */
static __attribute__((noreturn)) void kill_child(enum ufault_dirty_mode dm, int wfd)
{
	const size_t len = SMALL_PAGES * ps, off = SMALL_OFF * ps;
	struct ufault_ctx *ctx;
	unsigned char *p;
	int rc;

	tu_watchdog(30);
	rc = dirty_ctx_create(&ctx, dm);
	if (rc == -EOPNOTSUPP)
		tu_child_exit(TU_SKIP);
	TU_CHILD_CHECK(rc == 0, 2);
	{
		int fd = open(file_path, O_RDWR | O_CLOEXEC);
		struct ufault_source s;

		TU_CHILD_CHECK(fd >= 0, 3);
		s = file_source(fd, off);
		p = ufault_mmap(ctx, NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				&s, WB);
		TU_CHILD_CHECK(p != MAP_FAILED, 4);
		close(fd);
	}
	tu_pattern_fill(p, len, off, GEN1);
	TU_CHILD_CHECK(ufault_flush(ctx, p, len) == 0, 5);
	TU_CHILD_CHECK(write(wfd, "F", 1) == 1, 6);
	tu_pattern_fill(p, len, off, GEN2);
	TU_CHILD_CHECK(tu_pattern_check(p, len, off, GEN2) == -1, 7);
	TU_CHILD_CHECK(write(wfd, "G", 1) == 1, 8);
	for (;;)
		pause();
}

static void kill_one(enum ufault_dirty_mode dm)
{
	const size_t len = SMALL_PAGES * ps, off = SMALL_OFF * ps;
	unsigned char *want = malloc(FILE_PAGES * ps);
	char got[2];
	size_t n = 0;
	int pfd[2], status;
	pid_t pid;

	assert_non_null(want);
	tu_pattern_file(file_path, FILE_PAGES * ps, SEED);
	tu_pattern_fill(want, FILE_PAGES * ps, 0, SEED);
	tu_pattern_fill(want + off, len, off, GEN1);
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(pfd[0]);
		kill_child(dm, pfd[1]);
	}
	close(pfd[1]);
	while (n < 2) {
		ssize_t r = read(pfd[0], got + n, 2 - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(pfd[0]);
	if (n < 2) {
		/* The child ended before its second generation was written. */
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (WIFEXITED(status) && WEXITSTATUS(status) == TU_SKIP) {
			print_message("  %s not supported by this kernel: skipped\n", tag_of(dm));
			free(want);
			return;
		}
		fail_msg("%s the child %s %d after %zu of its 2 messages", tag_of(dm),
			 WIFSIGNALED(status) ? "died of signal" : "exited",
			 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), n);
	}
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* Generation 1, exactly: nothing of generation 2 reached the file. */
	file_check(tag_of(dm), want, FILE_PAGES * ps, 0);
	free(want);
	unlink(file_path);
}

static void test_kill9(void **state)
{
	(void)state; /* no context in this process: fork from a single thread */
	for (size_t i = 0; i < NR_DIRTY_MODES; i++)
		kill_one(dirty_modes[i]);
}

/* ------------------------------------------------------------------ */
/* Validation                                                           */
/* ------------------------------------------------------------------ */

static int async_fill(void *arg, uint64_t offset, void *buf, size_t len,
		      struct ufault_completion *c)
{
	(void)arg;
	tu_pattern_fill(buf, len, offset, SEED);
	ufault_complete(c, 0);
	return 0;
}

/* @s with UFAULT_REGION_WRITEBACK: ufault_region_register() over @a and
 * (@mmap_too) ufault_mmap() are refused with EINVAL. */
static void expect_einval(struct ufault_ctx *ctx, unsigned char *a, const struct ufault_source *s,
			  bool mmap_too, const char *what)
{
	int rc = ufault_region_register(ctx, a, 4 * ps, s, WB, NULL);
	void *p;

	if (rc != -EINVAL)
		fail_msg("[%s] ufault_region_register(%s, UFAULT_REGION_WRITEBACK): %d (%s), "
			 "expected -EINVAL",
			 ufault_lock_mode_name(tu_mode), what, rc, ufault_strerror(rc));
	if (!mmap_too)
		return;
	errno = 0;
	p = ufault_mmap(ctx, NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, s,
			WB);
	if (p != MAP_FAILED || errno != EINVAL)
		fail_msg("[%s] ufault_mmap(%s, UFAULT_REGION_WRITEBACK): %p, errno %d, expected "
			 "MAP_FAILED and EINVAL",
			 ufault_lock_mode_name(tu_mode), what, p, errno);
}

static void test_validation(void **state)
{
	struct ufault_ctx *ctx = ((struct tu_fx *)*state)->ctx;
	unsigned char *a = tu_map_anon(4 * ps, 0), *snap, *m, *w, *z;
	struct ufault_source s, from;
	struct ufault_region *reg;
	struct store *st;
	int base_fds, fd, mfd;

	tu_pattern_file(file_path, FILE_PAGES * ps, SEED);
	base_fds = tu_count_fds();

	ufault_source_init(&s, UFAULT_SOURCE_ZERO);
	expect_einval(ctx, a, &s, true, "zero source");
	expect_einval(ctx, a, NULL, true, "NULL (zero) source");
	snap = malloc(4 * ps);
	assert_non_null(snap);
	tu_pattern_fill(snap, 4 * ps, 0, SEED);
	ufault_source_init(&s, UFAULT_SOURCE_SNAPSHOT);
	s.snapshot.data = snap;
	s.snapshot.len = 4 * ps;
	expect_einval(ctx, a, &s, true, "snapshot source");
	ufault_source_init(&s, UFAULT_SOURCE_ASYNC);
	s.async.fill = async_fill;
	expect_einval(ctx, a, &s, true, "async source");
	fd = open_file(O_RDONLY);
	s = file_source(fd, 0);
	expect_einval(ctx, a, &s, true, "read-only file");
	close(fd);
	ufault_source_init(&s, UFAULT_SOURCE_CALLBACK);
	s.callback.fill = tu_pattern_fill_cb;
	s.callback.arg = (void *)(uintptr_t)SEED;
	expect_einval(ctx, a, &s, true, "callback without writeback");
	/* UFAULT_REGION_DISCARD without write-back. */
	assert_int_equal(ufault_region_register(ctx, a, 4 * ps, &s, UFAULT_REGION_DISCARD, NULL),
			 -EINVAL);
	/* A memfd source, over a private mapping of the memfd (read-write
	 * file as its inner source). */
	mfd = memfd_create("ufault-writeback", MFD_CLOEXEC);
	assert_true(mfd >= 0);
	assert_int_equal(ftruncate(mfd, (off_t)(4 * ps)), 0);
	m = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE, mfd, 0);
	assert_ptr_not_equal(m, MAP_FAILED);
	fd = open_file(O_RDWR);
	from = file_source(fd, 0);
	ufault_source_init(&s, UFAULT_SOURCE_MEMFD);
	s.memfd.fd = mfd;
	s.memfd.from = &from;
	expect_einval(ctx, m, &s, false, "memfd source");
	close(fd);
	assert_int_equal(tu_zero_check(m, 4 * ps), -1); /* not filled from the file */
	munmap(m, 4 * ps);
	close(mfd);

	/* Nothing was registered: the memory is ordinary (zeros), no fd was
	 * kept, and a valid write-back region takes the range. */
	assert_int_equal(tu_zero_check(a, 4 * ps), -1);
	assert_int_equal(tu_wait_fds(base_fds), base_fds);
	st = store_new(4);
	assert_non_null(st);
	assert_int_equal(store_register(ctx, st, 0, a, 4 * ps, &reg), 0);
	assert_int_equal(ufault_region_unregister(ctx, reg), 0);
	assert_int_equal(st->bad, 0);

	/* ufault_flush(): bad arguments, and memory with no write-back region. */
	assert_int_equal(ufault_flush(NULL, a, ps), -EINVAL);
	assert_int_equal(ufault_flush(ctx, a, 0), -EINVAL);
	assert_int_equal(ufault_flush(ctx, (void *)(UINTPTR_MAX & ~(uintptr_t)(ps - 1)), 2 * ps),
			 -EINVAL);
	assert_int_equal(ufault_flush(ctx, a, 4 * ps), 0);
	z = ufault_mmap(ctx, NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			NULL, 0);
	assert_ptr_not_equal(z, MAP_FAILED);
	z[ps] = 0x5a;
	assert_int_equal(ufault_flush(ctx, z, 4 * ps), 0);
	assert_int_equal(z[ps], 0x5a);
	assert_int_equal(ufault_munmap(ctx, z, 4 * ps), 0);
	/* A range wider than a write-back region (ordinary memory on both
	 * sides): the region's writes are stored, the rest is ignored. */
	w = tu_map_anon(8 * ps, 0);
	assert_int_equal(store_register(ctx, st, 0, w + 2 * ps, 4 * ps, &reg), 0);
	w[0] = 1;
	w[3 * ps + 5] = 0x35;
	w[7 * ps] = 7;
	assert_int_equal(ufault_flush(ctx, w, 8 * ps), 0);
	assert_int_equal(st->data[ps + 5], 0x35);
	assert_int_equal(st->data[0], tu_pattern(0, SEED));
	assert_int_equal(st->data[3 * ps], tu_pattern(3 * ps, SEED));
	assert_int_equal(ufault_region_unregister(ctx, reg), 0);
	assert_int_equal(st->bad, 0);
	/* An NBD source may be written back (test_nbd_source checks it); a
	 * server that does not exist fails the registration with its
	 * connection error, registering nothing. */
	ufault_source_init(&s, UFAULT_SOURCE_NBD);
	s.nbd.uri = "nbd+unix:///?socket=/nonexistent/ufault_writeback.sock";
	{
		int rc = ufault_region_register(ctx, a, 4 * ps, &s, WB, NULL);

		if (rc >= 0 || rc == -EINVAL)
			fail_msg("[%s] NBD write-back region, no server: %d, expected a connection "
				 "error",
				 ufault_lock_mode_name(tu_mode), rc);
		assert_int_equal(tu_zero_check(a, 4 * ps), -1);
	}
	assert_int_equal(tu_zero_check(a, 4 * ps), -1);
	store_put(st);
	tu_unmap(w, 8 * ps);
	tu_unmap(a, 4 * ps);
	free(snap); /* its registrations all failed: no release to wait for */
	unlink(file_path);
}

/* ------------------------------------------------------------------ */
/* Statistics                                                           */
/* ------------------------------------------------------------------ */

#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1ull << 15) /* Linux 6.7 */
#endif

#define STATS_PAGES 32

/* The worker counts a write-protect fault after the ioctl that woke the
 * writer: poll (bounded) until wp_faults passes @above. */
static struct ufault_stats wait_wp_faults(struct ufault_ctx *ctx, uint64_t above)
{
	struct ufault_stats st = stats_of(ctx);

	for (int i = 0; i < 2000 && st.wp_faults <= above; i++) {
		usleep(1000);
		st = stats_of(ctx);
	}
	return st;
}

static void stats_body(struct ufault_ctx *ctx, enum ufault_dirty_mode dm)
{
	static const size_t first[] = {0, 3, 4, 5, 17, 31}, second[] = {3, 9};
	const char *tag = tag_of(dm);
	const bool sync = dm == UFAULT_DIRTY_SYNC;
	struct store *st = store_new(STATS_PAGES);
	struct ufault_stats s0, s1, s2, s3;
	unsigned char *p, *image;
	uint64_t features = ufault_ctx_features(ctx);

	if (sync && (features & UFFD_FEATURE_WP_ASYNC))
		fail_msg("%s ufault_ctx_features() has UFFD_FEATURE_WP_ASYNC", tag);
	if (!sync && !(features & UFFD_FEATURE_WP_ASYNC))
		fail_msg("%s ufault_ctx_features() lacks UFFD_FEATURE_WP_ASYNC", tag);
	assert_non_null(st);
	image = malloc(st->len);
	assert_non_null(image);
	memcpy(image, st->data, st->len);
	p = store_mmap(ctx, st, 0, STATS_PAGES * ps);
	assert_ptr_not_equal(p, MAP_FAILED);
	/* Every page read first: filled, clean. */
	for (size_t pg = 0; pg < STATS_PAGES; pg++)
		(void)tu_read_byte(p + pg * ps + pg);
	s0 = stats_of(ctx);

	/* 6 distinct pages written, some several times. */
	for (size_t k = 0; k < sizeof(first) / sizeof(first[0]); k++)
		put(p, image, first[k] * ps + k, (unsigned char)(0x10 + k));
	put(p, image, 4 * ps + 100, 0x41);
	put(p, image, 4 * ps + 200, 0x42);
	put(p, image, 17 * ps + 300, 0x43);
	assert_int_equal(ufault_flush(ctx, p, STATS_PAGES * ps), 0);
	s1 = sync ? wait_wp_faults(ctx, s0.wp_faults) : stats_of(ctx);
	assert_int_equal(s1.written_back - s0.written_back, sizeof(first) / sizeof(first[0]));
	if (sync)
		assert_true(s1.wp_faults > s0.wp_faults);
	else
		assert_int_equal(s1.wp_faults, 0);
	store_check(tag, st, image);

	/* Nothing written since: nothing written back. */
	assert_int_equal(ufault_flush(ctx, p, STATS_PAGES * ps), 0);
	s2 = stats_of(ctx);
	assert_int_equal(s2.written_back, s1.written_back);

	/* Flushed pages are tracked again: 2 more pages (one flushed before). */
	for (size_t k = 0; k < sizeof(second) / sizeof(second[0]); k++)
		put(p, image, second[k] * ps + 500, (unsigned char)(0x50 + k));
	assert_int_equal(ufault_flush(ctx, p, STATS_PAGES * ps), 0);
	s3 = sync ? wait_wp_faults(ctx, s2.wp_faults) : stats_of(ctx);
	assert_int_equal(s3.written_back - s2.written_back, sizeof(second) / sizeof(second[0]));
	if (sync)
		assert_true(s3.wp_faults > s2.wp_faults);
	else
		assert_int_equal(s3.wp_faults, 0);
	store_check(tag, st, image);
	assert_int_equal(ufault_munmap(ctx, p, STATS_PAGES * ps), 0);
	assert_int_equal(st->bad, 0);

	/* A region whose pages were never touched before the writes: only
	 * the written pages are written back, the storage of the others is
	 * left alone. */
	memcpy(image, st->data, st->len);
	p = store_mmap(ctx, st, 0, STATS_PAGES * ps);
	assert_ptr_not_equal(p, MAP_FAILED);
	for (size_t k = 0; k < sizeof(second) / sizeof(second[0]); k++)
		put(p, image, second[k] * ps + 600, (unsigned char)(0x60 + k));
	assert_int_equal(ufault_flush(ctx, p, STATS_PAGES * ps), 0);
	s1 = stats_of(ctx);
	if (s1.written_back - s3.written_back != sizeof(second) / sizeof(second[0]))
		fail_msg("%s untouched pages: written_back grew by %llu, %zu pages were written",
			 tag, (unsigned long long)(s1.written_back - s3.written_back),
			 sizeof(second) / sizeof(second[0]));
	store_check(tag, st, image);
	assert_int_equal(ufault_munmap(ctx, p, STATS_PAGES * ps), 0);
	store_check(tag, st, image);
	assert_int_equal(st->bad, 0);
	print_message("  %s written_back %llu, wp_faults %llu\n", tag,
		      (unsigned long long)s1.written_back, (unsigned long long)s1.wp_faults);
	store_put(st);
	free(image);
}

static void test_stats(void **state)
{
	(void)state;
	each_dirty_mode(stats_body);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    tu_watchdog_test(test_oracle),	  tu_watchdog_test(test_write_errors),
	    tu_watchdog_test(test_unmap_flushes), tu_watchdog_test(test_dontneed_discards),
	    tu_watchdog_test(test_kill9),	  tu_fx_test(test_validation),
	    tu_watchdog_test(test_stats),	  tu_watchdog_test(test_discard),
	};
	int failed;

	ps = tu_page_size();
	/* The oracle test runs tu_test_seconds() per dirty mode. */
	tu_modes_cfg.test_watchdog = 30 + (unsigned int)(4 * tu_test_seconds(1.0));
	snprintf(file_path, sizeof(file_path), "/tmp/ufault_writeback_%d", (int)getpid());
	failed =
	    tu_run_every_mode("writeback", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
	unlink(file_path);
	return failed ? 1 : 0;
}
