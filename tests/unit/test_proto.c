/* SPDX-License-Identifier: MIT */
/*
 * test_proto.c - ufaultd's message checking (lib/proto.c): the fuzz seed
 * corpus replayed through the fuzz target's own entry with each file's
 * ok/bad verdict checked, then one test per rule of proto.h, each refusal
 * path and the boundaries on both sides.
 *
 * The corpus directory is argv[1], else UFAULT_FUZZ_CORPUS (set by CMake).
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto.h"
#include "fuzz_proto.h"

#ifndef UFAULT_FUZZ_CORPUS
#define UFAULT_FUZZ_CORPUS "tests/fuzz/corpus"
#endif

#define SYS_PAGE 4096u
#define HDR sizeof(struct ufault_proto_hdr)

static const char *corpus_dir = UFAULT_FUZZ_CORPUS;

/* --- the seed corpus ------------------------------------------------------ */

static int has_prefix(const char *s, const char *prefix)
{
	return !strncmp(s, prefix, strlen(prefix));
}

static void test_corpus(void **state)
{
	unsigned int files = 0, native_ok = 0, native_bad = 0, fc_ok = 0, fc_bad = 0;
	static unsigned char buf[UFAULT__FC_MAX_JSON + 1];
	struct dirent *de;
	DIR *d;

	d = opendir(corpus_dir);
	if (!d)
		fail_msg("cannot open corpus %s: %s", corpus_dir, strerror(errno));
	while ((de = readdir(d))) {
		const char *name = de->d_name, *rest;
		unsigned int want_bit, verdict;
		char path[4096];
		int want_ok;
		size_t n;
		FILE *f;

		if (name[0] == '.')
			continue;
		/* A file named for neither kind or verdict would test nothing. */
		want_bit = has_prefix(name, "native-") ? FUZZ_PROTO_NATIVE_OK
			   : has_prefix(name, "fc-")   ? FUZZ_PROTO_FC_OK
			   : has_prefix(name, "zlog-") ? FUZZ_PROTO_ZLOG_OK
						       : 0;
		if (!want_bit)
			fail_msg("corpus file %s: not native-*, fc-* or zlog-*", name);
		rest = strchr(name, '-') + 1;
		want_ok = has_prefix(rest, "ok-") ? 1 : has_prefix(rest, "bad-") ? 0 : -1;
		if (want_ok < 0)
			fail_msg("corpus file %s: no ok-/bad- after the kind", name);

		snprintf(path, sizeof(path), "%s/%s", corpus_dir, name);
		f = fopen(path, "rb");
		assert_non_null(f);
		n = fread(buf, 1, sizeof(buf), f);
		assert_false(ferror(f));
		fclose(f);

		/* Exactly the bytes, at a heap address of their own, so a
		 * sanitizer build catches a read past the end. */
		{
			unsigned char *copy = malloc(n ? n : 1);

			assert_non_null(copy);
			memcpy(copy, buf, n);
			verdict = fuzz_proto_one(copy, n);
			free(copy);
		}
		if (!!(verdict & want_bit) != want_ok)
			fail_msg("corpus file %s: %s, expected %s", name,
				 verdict & want_bit ? "accepted" : "refused",
				 want_ok ? "accepted" : "refused");
		files++;
		if (want_bit == FUZZ_PROTO_NATIVE_OK)
			want_ok ? native_ok++ : native_bad++;
		else
			want_ok ? fc_ok++ : fc_bad++;
	}
	closedir(d);
	print_message("corpus: %u files (native %u ok %u bad, fc %u ok %u bad)\n", files, native_ok,
		      native_bad, fc_ok, fc_bad);
	assert_true(files >= 30);
	assert_true(native_ok && native_bad && fc_ok && fc_bad);
}

/* --- native messages ------------------------------------------------------ */

static unsigned char msgbuf[HDR + UFAULT_PROTO_MAX_BODY + 16];

/* Check a message of @type with @body, as sent with @nfds fds. */
static int check(uint16_t type, const void *body, uint32_t len, unsigned int nfds,
		 struct ufault__proto_msg *m, const char **why)
{
	size_t n = ufault__proto_build(msgbuf, type, 77, body, len);

	*why = NULL;
	return ufault__proto_check(msgbuf, n, nfds, SYS_PAGE, m, why);
}

#define assert_refused(expr, err, why)                                                             \
	do {                                                                                       \
		assert_int_equal((expr), (err));                                                   \
		assert_non_null(why);                                                              \
		assert_true((why)[0] != '\0');                                                     \
	} while (0)

static void test_frame(void **state)
{
	struct ufault_proto_hdr h = {UFAULT_PROTO_MAGIC, UFAULT_PROTO_VERSION, UFAULT_MSG_STATS, 0,
				     1};
	const char *why = NULL;
	size_t i;

	/* Incomplete header: wait for more, at every length below it. */
	for (i = 0; i < HDR; i++)
		assert_int_equal(ufault__proto_frame(&h, i, &why), 0);
	assert_int_equal(ufault__proto_frame(&h, HDR, &why), HDR);

	h.len = UFAULT_PROTO_MAX_BODY;
	assert_int_equal(ufault__proto_frame(&h, HDR, &why), HDR + UFAULT_PROTO_MAX_BODY);
	h.len = UFAULT_PROTO_MAX_BODY + 1;
	why = NULL;
	assert_refused(ufault__proto_frame(&h, HDR, &why), -EMSGSIZE, why);
	h.len = UINT32_MAX;
	assert_refused(ufault__proto_frame(&h, HDR, &why), -EMSGSIZE, why);

	h.len = 0;
	h.magic = 0x554c4654;
	why = NULL;
	assert_refused(ufault__proto_frame(&h, HDR, &why), -EPROTO, why);
	h.magic = UFAULT_PROTO_MAGIC;
	h.version = 2;
	why = NULL;
	assert_refused(ufault__proto_frame(&h, HDR, &why), -EPROTO, why);
	h.version = 0;
	assert_refused(ufault__proto_frame(&h, HDR, &why), -EPROTO, why);

	/* A NULL *why is allowed. */
	assert_int_equal(ufault__proto_frame(&h, HDR, NULL), -EPROTO);
}

/* Frames are read from wherever the receive buffer put them. */
static void test_unaligned(void **state)
{
	struct ufault_proto_region r = {0x7f0000000000, 1 << 20, 0, 0, UFAULT_PROTO_SRC_ZERO};
	static unsigned char raw[HDR + sizeof(r) + 8];
	struct ufault__proto_msg m;
	const char *why;
	size_t n;

	for (size_t off = 1; off < 8; off++) {
		n = ufault__proto_build(raw + off, UFAULT_MSG_REGISTER, 5, &r, sizeof(r));
		assert_int_equal(ufault__proto_frame(raw + off, n, &why), n);
		assert_int_equal(ufault__proto_check(raw + off, n, 0, SYS_PAGE, &m, &why), 0);
		assert_int_equal(m.u.region.start, r.start);
		assert_int_equal(m.hdr.seq, 5);
	}
}

static void test_length_exact(void **state)
{
	unsigned char body[UFAULT_PROTO_MAX_BODY + 1];
	struct ufault__proto_msg m;
	const char *why;
	size_t n;

	memset(body, 0, sizeof(body));
	n = ufault__proto_build(msgbuf, UFAULT_MSG_STATS, 1, NULL, 0);
	/* Short, long, and a header cut short. */
	why = NULL;
	assert_refused(ufault__proto_check(msgbuf, n + 1, 0, SYS_PAGE, &m, &why), -EINVAL, why);
	n = ufault__proto_build(msgbuf, UFAULT_MSG_SET_BUDGET, 1, body, 16);
	why = NULL;
	assert_refused(ufault__proto_check(msgbuf, n - 1, 0, SYS_PAGE, &m, &why), -EINVAL, why);
	why = NULL;
	assert_refused(ufault__proto_check(msgbuf, HDR - 1, 0, SYS_PAGE, &m, &why), -EINVAL, why);
	why = NULL;
	assert_refused(ufault__proto_check(msgbuf, 0, 0, SYS_PAGE, &m, &why), -EINVAL, why);

	/* REPLY: a body of exactly MAX_BODY is accepted, one more is not. */
	assert_int_equal(check(UFAULT_MSG_REPLY, body, UFAULT_PROTO_MAX_BODY, 0, &m, &why), 0);
	assert_int_equal(m.extra_len, UFAULT_PROTO_MAX_BODY - sizeof(struct ufault_proto_reply));
	assert_ptr_equal(m.extra, msgbuf + HDR + sizeof(struct ufault_proto_reply));
	assert_refused(check(UFAULT_MSG_REPLY, body, UFAULT_PROTO_MAX_BODY + 1, 0, &m, &why),
		       -EMSGSIZE, why);

	/* Bad framing comes back as the framer's error. */
	n = ufault__proto_build(msgbuf, UFAULT_MSG_STATS, 1, NULL, 0);
	msgbuf[0] ^= 1;
	why = NULL;
	assert_refused(ufault__proto_check(msgbuf, n, 0, SYS_PAGE, &m, &why), -EPROTO, why);

	/* A system page that is not one. */
	n = ufault__proto_build(msgbuf, UFAULT_MSG_STATS, 1, NULL, 0);
	why = NULL;
	assert_refused(ufault__proto_check(msgbuf, n, 0, 0, &m, &why), -EINVAL, why);
	assert_refused(ufault__proto_check(msgbuf, n, 0, 6000, &m, &why), -EINVAL, why);
	assert_int_equal(ufault__proto_check(msgbuf, n, 0, SYS_PAGE, NULL, NULL), 0);
}

static void test_types_and_sizes(void **state)
{
	static const struct {
		uint16_t type;
		uint32_t size;
	} t[] = {
	    {UFAULT_MSG_HELLO, sizeof(struct ufault_proto_hello)},
	    {UFAULT_MSG_REGISTER, sizeof(struct ufault_proto_region)},
	    {UFAULT_MSG_UNREGISTER, sizeof(struct ufault_proto_range)},
	    {UFAULT_MSG_STATS, 0},
	    {UFAULT_MSG_LIST, 0},
	    {UFAULT_MSG_SET_BUDGET, sizeof(struct ufault_proto_budget)},
	};
	unsigned char body[64] = {0};
	struct ufault__proto_msg m;
	const char *why;
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		assert_refused(check(t[i].type, body, t[i].size + 1, 0, &m, &why), -EINVAL, why);
		if (t[i].size)
			assert_refused(check(t[i].type, body, t[i].size - 1, 0, &m, &why), -EINVAL,
				       why);
	}
	assert_refused(
	    check(UFAULT_MSG_REPLY, body, sizeof(struct ufault_proto_reply) - 1, 0, &m, &why),
	    -EINVAL, why);

	assert_refused(check(0, NULL, 0, 0, &m, &why), -EPROTO, why);
	assert_refused(check(7, NULL, 0, 0, &m, &why), -EPROTO, why);
	assert_refused(check(0x81, NULL, 0, 0, &m, &why), -EPROTO, why);
	assert_refused(check(0xffff, NULL, 0, 0, &m, &why), -EPROTO, why);

	assert_int_equal(check(UFAULT_MSG_STATS, NULL, 0, 0, &m, &why), 0);
	assert_int_equal(m.hdr.type, UFAULT_MSG_STATS);
	assert_int_equal(m.hdr.seq, 77);
	assert_int_equal(check(UFAULT_MSG_LIST, NULL, 0, 0, &m, &why), 0);
	assert_refused(check(UFAULT_MSG_STATS, NULL, 0, 1, &m, &why), -EBADF, why);
	assert_refused(check(UFAULT_MSG_LIST, NULL, 0, 1, &m, &why), -EBADF, why);
}

static void test_hello(void **state)
{
	struct ufault_proto_hello h = {.features = 0xff};
	struct ufault__proto_msg m;
	const char *why;

	assert_int_equal(check(UFAULT_MSG_HELLO, &h, sizeof(h), 1, &m, &why), 0);
	assert_int_equal(m.u.hello.features, 0xff);
	assert_refused(check(UFAULT_MSG_HELLO, &h, sizeof(h), 0, &m, &why), -EBADF, why);
	assert_refused(check(UFAULT_MSG_HELLO, &h, sizeof(h), 2, &m, &why), -EBADF, why);

	h.resume_id = 12;
	assert_int_equal(check(UFAULT_MSG_HELLO, &h, sizeof(h), 0, &m, &why), 0);
	assert_int_equal(m.u.hello.resume_id, 12);
	assert_refused(check(UFAULT_MSG_HELLO, &h, sizeof(h), 1, &m, &why), -EBADF, why);

	h.flags = 1;
	assert_refused(check(UFAULT_MSG_HELLO, &h, sizeof(h), 0, &m, &why), -EINVAL, why);
	h.flags = 0;
	h.reserved = 0x80000000u;
	assert_refused(check(UFAULT_MSG_HELLO, &h, sizeof(h), 0, &m, &why), -EINVAL, why);
}

static int reg(uint64_t start, uint64_t len, uint64_t offset, uint32_t page, uint32_t source,
	       unsigned int nfds, const char **why)
{
	struct ufault_proto_region r = {start, len, offset, page, source};
	struct ufault__proto_msg m;
	int err = check(UFAULT_MSG_REGISTER, &r, sizeof(r), nfds, &m, why);

	if (!err)
		assert_memory_equal(&m.u.region, &r, sizeof(r));
	return err;
}

static void test_register(void **state)
{
	const uint64_t base = 0x7f0000000000ULL, va_end = 1ULL << 47;
	const uint32_t zero = UFAULT_PROTO_SRC_ZERO, file = UFAULT_PROTO_SRC_FILE,
		       shared = UFAULT_PROTO_SRC_SHARED;
	const char *why;

	assert_int_equal(reg(base, 4096, 0, 0, zero, 0, &why), 0);
	assert_int_equal(reg(base, 4096, 8192, 4096, file, 1, &why), 0);

	/* fds: FILE needs one, SHARED two (the file, the memfd), ZERO none. */
	assert_refused(reg(base, 4096, 0, 0, file, 0, &why), -EBADF, why);
	assert_refused(reg(base, 4096, 0, 0, zero, 1, &why), -EBADF, why);
	assert_int_equal(reg(base, 4096, 8192, 0, shared, 2, &why), 0);
	assert_int_equal(reg(base, 4096, 8192, 4096, shared, 2, &why), 0);
	assert_refused(reg(base, 4096, 0, 0, shared, 1, &why), -EBADF, why);
	assert_refused(reg(base, 4096, 0, 0, file, 2, &why), -EBADF, why);
	/* SHARED: system pages only. */
	assert_refused(reg(base, 2 << 20, 0, 2 << 20, shared, 2, &why), -EINVAL, why);
	assert_refused(reg(base, 4096, 0, 0, 3, 0, &why), -EINVAL, why);
	assert_refused(reg(base, 4096, 0, 0, UINT32_MAX, 1, &why), -EINVAL, why);

	/* Page sizes: powers of two from the system page to 1 GiB. */
	assert_int_equal(reg(0, 1ULL << 30, 0, 1u << 30, zero, 0, &why), 0);
	assert_refused(reg(0, 1ULL << 31, 0, 1u << 31, zero, 0, &why), -EINVAL, why);
	assert_int_equal(reg(base, 2 << 20, 2 << 20, 2 << 20, file, 1, &why), 0);
	assert_refused(reg(base, 3 * 4096, 0, 3 * 4096, zero, 0, &why), -EINVAL, why);
	assert_refused(reg(base, 4096, 0, 2048, zero, 0, &why), -EINVAL, why);
	assert_refused(reg(base, 4096, 0, 1, zero, 0, &why), -EINVAL, why);
	{
		/* On a 64 KiB-page system, 4 KiB and "0" mean different things. */
		struct ufault_proto_region r = {base, 65536, 0, 4096, zero};
		size_t n = ufault__proto_build(msgbuf, UFAULT_MSG_REGISTER, 1, &r, sizeof(r));

		why = NULL;
		assert_refused(ufault__proto_check(msgbuf, n, 0, 65536, NULL, &why), -EINVAL, why);
		r.page_size = 0;
		n = ufault__proto_build(msgbuf, UFAULT_MSG_REGISTER, 1, &r, sizeof(r));
		assert_int_equal(ufault__proto_check(msgbuf, n, 0, 65536, NULL, &why), 0);
		r.len = 4096;
		n = ufault__proto_build(msgbuf, UFAULT_MSG_REGISTER, 1, &r, sizeof(r));
		assert_refused(ufault__proto_check(msgbuf, n, 0, 65536, NULL, &why), -EINVAL, why);
	}

	/* Alignment to the effective page, each field. */
	assert_refused(reg(base, 0, 0, 0, zero, 0, &why), -EINVAL, why);
	assert_refused(reg(base + 1, 4096, 0, 0, zero, 0, &why), -EINVAL, why);
	assert_refused(reg(base, 4097, 0, 0, zero, 0, &why), -EINVAL, why);
	assert_refused(reg(base, 4096, 512, 0, file, 1, &why), -EINVAL, why);
	assert_refused(reg(base + 4096, 2 << 20, 0, 2 << 20, zero, 0, &why), -EINVAL, why);
	assert_refused(reg(base, (2 << 20) + 4096, 0, 2 << 20, zero, 0, &why), -EINVAL, why);
	assert_refused(reg(base, 2 << 20, 4096, 2 << 20, file, 1, &why), -EINVAL, why);

	/* Wrap, and the user address space. */
	assert_refused(reg(UINT64_MAX - 4095, 4096 * 2, 0, 0, zero, 0, &why), -EINVAL, why);
	assert_refused(reg(4096, UINT64_MAX - 4095, 0, 0, zero, 0, &why), -EINVAL, why);
	assert_refused(reg(base, 8192, UINT64_MAX - 4095, 0, file, 1, &why), -EINVAL, why);
	assert_int_equal(reg(base, 4096, UINT64_MAX - 8191, 0, file, 1, &why), 0);
	assert_int_equal(reg(va_end - 4096, 4096, 0, 0, zero, 0, &why), 0);
	assert_refused(reg(va_end - 4096, 8192, 0, 0, zero, 0, &why), -EINVAL, why);
	assert_refused(reg(va_end, 4096, 0, 0, zero, 0, &why), -EINVAL, why);
}

static void test_unregister(void **state)
{
	struct ufault_proto_range r = {0x7f0000000000ULL, 4096};
	struct ufault__proto_msg m;
	const char *why;

	assert_int_equal(check(UFAULT_MSG_UNREGISTER, &r, sizeof(r), 0, &m, &why), 0);
	assert_int_equal(m.u.range.len, 4096);
	assert_refused(check(UFAULT_MSG_UNREGISTER, &r, sizeof(r), 1, &m, &why), -EBADF, why);
	r.len = 0;
	assert_refused(check(UFAULT_MSG_UNREGISTER, &r, sizeof(r), 0, &m, &why), -EINVAL, why);
	r.len = 100;
	assert_refused(check(UFAULT_MSG_UNREGISTER, &r, sizeof(r), 0, &m, &why), -EINVAL, why);
	r.len = 4096;
	r.start += 8;
	assert_refused(check(UFAULT_MSG_UNREGISTER, &r, sizeof(r), 0, &m, &why), -EINVAL, why);
	r.start = UINT64_MAX - 4095;
	assert_refused(check(UFAULT_MSG_UNREGISTER, &r, sizeof(r), 0, &m, &why), -EINVAL, why);
	r.start = UINT64_MAX - 8191;
	assert_int_equal(check(UFAULT_MSG_UNREGISTER, &r, sizeof(r), 0, &m, &why), 0);
}

static void test_budget_reply(void **state)
{
	struct ufault_proto_budget b = {.client_id = 3, .bytes = 0};
	struct ufault_proto_reply rp = {.status = -ENOMEM, .value = 9};
	unsigned char body[sizeof(rp) + 8];
	struct ufault__proto_msg m;
	const char *why;

	assert_int_equal(check(UFAULT_MSG_SET_BUDGET, &b, sizeof(b), 0, &m, &why), 0);
	assert_int_equal(m.u.budget.client_id, 3);
	assert_refused(check(UFAULT_MSG_SET_BUDGET, &b, sizeof(b), 1, &m, &why), -EBADF, why);
	b.client_id = 0;
	assert_refused(check(UFAULT_MSG_SET_BUDGET, &b, sizeof(b), 0, &m, &why), -EINVAL, why);

	assert_int_equal(check(UFAULT_MSG_REPLY, &rp, sizeof(rp), 0, &m, &why), 0);
	assert_int_equal(m.u.reply.status, -ENOMEM);
	assert_int_equal(m.extra_len, 0);
	memcpy(body, &rp, sizeof(rp));
	memcpy(body + sizeof(rp), "abcdefgh", 8);
	assert_int_equal(check(UFAULT_MSG_REPLY, body, sizeof(body), 0, &m, &why), 0);
	assert_int_equal(m.extra_len, 8);
	assert_memory_equal(m.extra, "abcdefgh", 8);
	assert_refused(check(UFAULT_MSG_REPLY, &rp, sizeof(rp), 1, &m, &why), -EBADF, why);
	rp.reserved = 1;
	assert_refused(check(UFAULT_MSG_REPLY, &rp, sizeof(rp), 0, &m, &why), -EINVAL, why);
	rp.reserved = 0;
	rp.status = 1;
	assert_refused(check(UFAULT_MSG_REPLY, &rp, sizeof(rp), 0, &m, &why), -EINVAL, why);
	rp.status = -4096;
	assert_refused(check(UFAULT_MSG_REPLY, &rp, sizeof(rp), 0, &m, &why), -EINVAL, why);
	rp.status = -4095;
	assert_int_equal(check(UFAULT_MSG_REPLY, &rp, sizeof(rp), 0, &m, &why), 0);
}

static void test_build(void **state)
{
	struct ufault_proto_hdr h;
	unsigned char buf[HDR + 4];

	memset(buf, 0xaa, sizeof(buf));
	assert_int_equal(ufault__proto_build(buf, UFAULT_MSG_LIST, 0xdeadbeef, NULL, 4), HDR + 4);
	memcpy(&h, buf, sizeof(h));
	assert_int_equal(h.magic, UFAULT_PROTO_MAGIC);
	assert_int_equal(h.version, UFAULT_PROTO_VERSION);
	assert_int_equal(h.type, UFAULT_MSG_LIST);
	assert_int_equal(h.len, 4);
	assert_int_equal(h.seq, 0xdeadbeef);
	assert_memory_equal(buf + HDR, "\0\0\0\0", 4);
}

static void test_overlaps(void **state)
{
	struct ufault_proto_region have[2] = {
	    {.start = 0x10000, .len = 0x2000},
	    {.start = UINT64_MAX - 0xfff, .len = 0x1000},
	};

	/* Half-open: touching ends do not overlap. */
	assert_false(ufault__proto_overlaps(have, 2, 0xf000, 0x1000));
	assert_true(ufault__proto_overlaps(have, 2, 0xf000, 0x1001));
	assert_false(ufault__proto_overlaps(have, 2, 0x12000, 0x1000));
	assert_true(ufault__proto_overlaps(have, 2, 0x11fff, 1));
	assert_true(ufault__proto_overlaps(have, 2, 0x10000, 0x2000));
	assert_true(ufault__proto_overlaps(have, 2, 0x11000, 1));
	assert_true(ufault__proto_overlaps(have, 2, 0, UINT64_MAX));
	assert_false(ufault__proto_overlaps(have, 2, 0x10000, 0));
	assert_false(ufault__proto_overlaps(have, 0, 0x10000, 0x1000));
	/* At the top of the address space, where start + len would wrap. */
	assert_true(ufault__proto_overlaps(have, 2, UINT64_MAX, 1));
	assert_false(ufault__proto_overlaps(have, 2, UINT64_MAX - 0x1fff, 0x1000));
	assert_true(ufault__proto_overlaps(have, 2, UINT64_MAX - 0x1fff, 0x1001));
}

/* --- Firecracker ---------------------------------------------------------- */

static struct ufault__fc_region fcr[UFAULT__FC_MAX_REGIONS + 1];

static int fcp(const char *json, unsigned int *nr, const char **why)
{
	*why = NULL;
	return ufault__fc_parse(json, strlen(json), SYS_PAGE, fcr, UFAULT__FC_MAX_REGIONS, nr, why);
}

#define FC_OK(json, want_nr)                                                                       \
	do {                                                                                       \
		unsigned int nr_;                                                                  \
		const char *why_;                                                                  \
		int err_ = fcp((json), &nr_, &why_);                                               \
		if (err_)                                                                          \
			fail_msg("%s: %d (%s)", (json), err_, why_);                               \
		assert_int_equal(nr_, (want_nr));                                                  \
	} while (0)

#define FC_BAD(json, err)                                                                          \
	do {                                                                                       \
		unsigned int nr_ = 99;                                                             \
		const char *why_;                                                                  \
		int err_ = fcp((json), &nr_, &why_);                                               \
		if (err_ != (err))                                                                 \
			fail_msg("%s: %d, expected %d", (json), err_, (err));                      \
		assert_non_null(why_);                                                             \
		assert_int_equal(nr_, 0);                                                          \
	} while (0)

#define R(base, size, off) "\"base_host_virt_addr\":" #base ",\"size\":" #size ",\"offset\":" #off

static void test_fc_firecracker(void **state)
{
	/* Byte for byte what Firecracker 1.12+ sends (serde field order). */
	FC_OK("[{\"base_host_virt_addr\":140251259760640,\"size\":134217728,\"offset\":0,"
	      "\"page_size\":4096,\"page_size_kib\":4096}]",
	      1);
	assert_int_equal(fcr[0].base, 140251259760640ULL);
	assert_int_equal(fcr[0].size, 134217728);
	assert_int_equal(fcr[0].offset, 0);
	assert_int_equal(fcr[0].page_size, 4096);
	/* 1.7 - 1.11: page_size_kib only, in bytes despite the name. */
	FC_OK("[{" R(2097152, 4194304, 0) ",\"page_size_kib\":2097152}]", 1);
	assert_int_equal(fcr[0].page_size, 2 << 20);
	FC_OK("[{" R(2097152, 4194304, 0) ",\"page_size\":2097152}]", 1);
	assert_int_equal(fcr[0].page_size, 2 << 20);
	FC_BAD("[{" R(4096, 4096, 0) ",\"page_size\":4096,\"page_size_kib\":4}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) ",\"page_size_kib\":4}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) "}]", -EINVAL);

	FC_OK("[{" R(4096, 4096, 0) ",\"page_size\":4096},{" R(
		  8192, 8192, 4096) ",\"page_size\":4096},{" R(1073741824, 2097152,
							       12288) ",\"page_size\":4096}]",
	      3);
	assert_int_equal(fcr[2].base, 1 << 30);
	assert_int_equal(fcr[2].offset, 12288);
}

static void test_fc_syntax(void **state)
{
	/* Whitespace wherever JSON allows it, keys in any order. */
	FC_OK(" \t\r\n[ {\n \"size\" :\t4096 , \"page_size\": 4096,\"offset\":0,"
	      "\"base_host_virt_addr\" : 4096 } ,{\"offset\":4096,\"page_size_kib\":4096,"
	      "\"size\":4096,\"base_host_virt_addr\":8192}\n] \n\t\r",
	      2);
	FC_BAD("", -EINVAL);
	FC_BAD("   ", -EINVAL);
	FC_BAD("[]", -EINVAL);
	FC_BAD("[ ]", -EINVAL);
	FC_BAD("[{}]", -EINVAL);
	FC_BAD("{" R(4096, 4096, 0) ",\"page_size\":4096}", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) ",\"page_size\":4096}] x", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) ",\"page_size\":4096}][]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) ",\"page_size\":4096},]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) ",\"page_size\":4096,}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) ",\"page_size\":4096}", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) ",\"page_size\":4096", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) ",\"page_size\":", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) ",\"page_si", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) ",\"page_size\":4096} {}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) ",\"page_size\":4096 \"size\":1}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) " \"page_size\":4096}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) ",\"page_size\"=4096}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) ",page_size:4096}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) ",'page_size':4096}]", -EINVAL);
	FC_BAD("[[]]", -EINVAL);
	FC_BAD("[1]", -EINVAL);

	/* Keys: known, once, plain ASCII without escapes. */
	FC_BAD("[{" R(4096, 4096, 0) ",\"page_size\":4096,\"uffd\":1}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) ",\"Page_size\":4096}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) ",\"page_size \":4096}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) ",\"\":4096}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) ",\"page_size\":4096,\"size\":4096}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) ",\"page_size\":4096,\"page_size\":4096}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) ",\"page\\u005fsize\":4096}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) ",\"page_size\\\"\":4096}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) ",\"page_size\xc3\xa9\":4096}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0) ",\"page_size\t\":4096}]", -EINVAL);
	FC_BAD("[{\"base_host_virt_addr\":4096,\"size\":4096,\"page_size\":4096}]", -EINVAL);
	FC_BAD("[{\"base_host_virt_addr\":4096,\"offset\":0,\"page_size\":4096}]", -EINVAL);
	FC_BAD("[{\"size\":4096,\"offset\":0,\"page_size\":4096}]", -EINVAL);

	/* NUL anywhere, even after the array. */
	{
		static const char j[] = "[{" R(4096, 4096, 0) ",\"page_size\":4096}]";
		char buf[sizeof(j) + 1];
		unsigned int nr;
		const char *why;

		memcpy(buf, j, sizeof(j)); /* with its NUL */
		assert_int_equal(ufault__fc_parse(buf, sizeof(j) - 1, SYS_PAGE, fcr, 8, &nr, &why),
				 0);
		why = NULL;
		assert_refused(ufault__fc_parse(buf, sizeof(j), SYS_PAGE, fcr, 8, &nr, &why),
			       -EINVAL, why);
		buf[5] = '\0';
		why = NULL;
		assert_refused(ufault__fc_parse(buf, sizeof(j) - 1, SYS_PAGE, fcr, 8, &nr, &why),
			       -EINVAL, why);
	}
}

static void test_fc_numbers(void **state)
{
	FC_OK("[{" R(0, 4096, 0) ",\"page_size\":4096}]", 1);
	FC_OK("[{" R(4096, 4096, 18446744073709543424) ",\"page_size\":4096}]", 1);
	assert_int_equal(fcr[0].offset, UINT64_MAX - 8191);
	FC_BAD("[{" R(00, 4096, 0) ",\"page_size\":4096}]", -EINVAL);
	FC_BAD("[{" R(04096, 4096, 0) ",\"page_size\":4096}]", -EINVAL);
	FC_BAD("[{" R(-4096, 4096, 0) ",\"page_size\":4096}]", -EINVAL);
	FC_BAD("[{" R(+4096, 4096, 0) ",\"page_size\":4096}]", -EINVAL);
	FC_BAD("[{" R(4096.0, 4096, 0) ",\"page_size\":4096}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0.5) ",\"page_size\":4096}]", -EINVAL);
	FC_BAD("[{" R(4096, 4e3, 0) ",\"page_size\":4096}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0E0) ",\"page_size\":4096}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, "0") ",\"page_size\":4096}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, null) ",\"page_size\":4096}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 0x1000) ",\"page_size\":4096}]", -EINVAL);
	/* 2^64 - 1 fits (and then fails alignment); 2^64 does not. */
	FC_BAD("[{" R(4096, 4096, 18446744073709551615) ",\"page_size\":4096}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 18446744073709551616) ",\"page_size\":4096}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 184467440737095516150) ",\"page_size\":4096}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 99999999999999999999999999999999999999) ",\"page_size\":4096}]",
	       -EINVAL);
}

static void test_fc_regions(void **state)
{
	unsigned int nr;
	const char *why;

	/* Page size: a power of two from the system page to 1 GiB. */
	FC_OK("[{" R(1073741824, 1073741824, 0) ",\"page_size\":1073741824}]", 1);
	FC_BAD("[{" R(2147483648, 2147483648, 0) ",\"page_size\":2147483648}]", -EINVAL);
	FC_BAD("[{" R(0, 12288, 0) ",\"page_size\":12288}]", -EINVAL);
	FC_BAD("[{" R(0, 4096, 0) ",\"page_size\":2048}]", -EINVAL);
	FC_BAD("[{" R(0, 4096, 0) ",\"page_size\":0}]", -EINVAL);
	why = NULL;
	assert_refused(ufault__fc_parse("[{" R(0, 4096, 0) ",\"page_size\":4096}]",
					strlen("[{" R(0, 4096, 0) ",\"page_size\":4096}]"), 65536,
					fcr, 8, &nr, &why),
		       -EINVAL, why);

	/* Alignment of each of base, size, offset; size > 0; no wrap. */
	FC_BAD("[{" R(2048, 4096, 0) ",\"page_size\":4096}]", -EINVAL);
	FC_BAD("[{" R(4096, 6144, 0) ",\"page_size\":4096}]", -EINVAL);
	FC_BAD("[{" R(4096, 4096, 1) ",\"page_size\":4096}]", -EINVAL);
	FC_BAD("[{" R(2097152, 4096, 0) ",\"page_size\":2097152}]", -EINVAL);
	FC_BAD("[{" R(4096, 0, 0) ",\"page_size\":4096}]", -EINVAL);
	FC_BAD("[{" R(18446744073709547520, 8192, 0) ",\"page_size\":4096}]", -EINVAL);
	FC_BAD("[{" R(0, 8192, 18446744073709547520) ",\"page_size\":4096}]", -EINVAL);
	FC_OK("[{" R(18446744073709543424, 4096, 0) ",\"page_size\":4096}]", 1);

	/* Overlap: half-open, in either order, contained. */
	FC_OK(
	    "[{" R(4096, 4096, 0) ",\"page_size\":4096},{" R(8192, 4096, 0) ",\"page_size\":4096}]",
	    2);
	FC_BAD(
	    "[{" R(4096, 8192, 0) ",\"page_size\":4096},{" R(8192, 4096, 0) ",\"page_size\":4096}]",
	    -EINVAL);
	FC_BAD(
	    "[{" R(8192, 4096, 0) ",\"page_size\":4096},{" R(4096, 8192, 0) ",\"page_size\":4096}]",
	    -EINVAL);
	FC_BAD(
	    "[{" R(8192, 4096, 0) ",\"page_size\":4096},{" R(0, 1048576, 0) ",\"page_size\":4096}]",
	    -EINVAL);
	FC_BAD(
	    "[{" R(4096, 4096, 0) ",\"page_size\":4096},{" R(
		65536, 4096, 0) ",\"page_size\":4096},{" R(4096, 4096, 0) ",\"page_size\":4096}]",
	    -EINVAL);
}

static void test_fc_limits(void **state)
{
	static char big[UFAULT__FC_MAX_JSON + 2];
	unsigned int nr, i;
	const char *why;
	size_t n = 0;

	/* More than @max objects: -E2BIG, and @out is never written past @max. */
	n += (size_t)sprintf(big + n, "[");
	for (i = 0; i < UFAULT__FC_MAX_REGIONS + 1; i++)
		n += (size_t)sprintf(big + n,
				     "%s{\"base_host_virt_addr\":%u,\"size\":4096,\"offset\":0,"
				     "\"page_size\":4096}",
				     i ? "," : "", (i + 1) * 4096);
	n += (size_t)sprintf(big + n, "]");
	memset(fcr, 0xee, sizeof(fcr));
	why = NULL;
	assert_refused(ufault__fc_parse(big, n, SYS_PAGE, fcr, UFAULT__FC_MAX_REGIONS, &nr, &why),
		       -E2BIG, why);
	assert_int_equal(fcr[UFAULT__FC_MAX_REGIONS].base, 0xeeeeeeeeeeeeeeeeULL);
	assert_int_equal(
	    ufault__fc_parse(big, n, SYS_PAGE, fcr, UFAULT__FC_MAX_REGIONS + 1, &nr, &why), 0);
	assert_int_equal(nr, UFAULT__FC_MAX_REGIONS + 1);
	why = NULL;
	assert_refused(ufault__fc_parse(big, n, SYS_PAGE, fcr, 1, &nr, &why), -E2BIG, why);
	why = NULL;
	assert_refused(ufault__fc_parse(big, n, SYS_PAGE, fcr, 0, &nr, &why), -E2BIG, why);

	/* Size: exactly the limit is read (and judged), one more is not. */
	memset(big, ' ', sizeof(big));
	memcpy(big, "[{" R(4096, 4096, 0) ",\"page_size\":4096}]",
	       strlen("[{" R(4096, 4096, 0) ",\"page_size\":4096}]"));
	assert_int_equal(ufault__fc_parse(big, UFAULT__FC_MAX_JSON, SYS_PAGE, fcr, 8, &nr, &why),
			 0);
	assert_int_equal(nr, 1);
	why = NULL;
	assert_refused(ufault__fc_parse(big, UFAULT__FC_MAX_JSON + 1, SYS_PAGE, fcr, 8, &nr, &why),
		       -EMSGSIZE, why);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_corpus),	    cmocka_unit_test(test_frame),
	    cmocka_unit_test(test_unaligned),	    cmocka_unit_test(test_length_exact),
	    cmocka_unit_test(test_types_and_sizes), cmocka_unit_test(test_hello),
	    cmocka_unit_test(test_register),	    cmocka_unit_test(test_unregister),
	    cmocka_unit_test(test_budget_reply),    cmocka_unit_test(test_build),
	    cmocka_unit_test(test_overlaps),	    cmocka_unit_test(test_fc_firecracker),
	    cmocka_unit_test(test_fc_syntax),	    cmocka_unit_test(test_fc_numbers),
	    cmocka_unit_test(test_fc_regions),	    cmocka_unit_test(test_fc_limits),
	};

	if (argc > 1)
		corpus_dir = argv[1];
	return cmocka_run_group_tests(tests, NULL, NULL);
}
