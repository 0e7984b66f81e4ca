/* SPDX-License-Identifier: MIT */
/*
 * fuzz_proto.c - libFuzzer target for lib/proto.c: every byte string goes
 * through the native framer and checker, the Firecracker region list
 * parser and the removed-ranges log checker. Beyond ASan/UBSan finding a bad read, it aborts when an
 * accepted input breaks what proto.h promises (alignment, no wrap, no
 * overlap, the counts), or when a refusal comes without a reason. test_proto
 * links this file too and replays the seed corpus through fuzz_proto_one().
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "fuzz_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define USER_VA_END (1ULL << 47)

static void must(int cond)
{
	if (!cond)
		abort();
}

static int pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

/* The overlap test done the obvious way, in 128 bits where nothing wraps. */
static int overlaps_ref(uint64_t a, uint64_t la, uint64_t b, uint64_t lb)
{
	unsigned __int128 ae = (unsigned __int128)a + la, be = (unsigned __int128)b + lb;

	return la && lb && a < be && b < ae;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/*
 * Is @v written in @s as a whole run of digits? A value the parser returns
 * must be one it read, not one it wrapped or truncated on the way.
 */
static int written(const char *s, size_t n, uint64_t v)
{
	char dec[24];
	size_t len = 0, i;

	do {
		dec[sizeof(dec) - 1 - len++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (i = 0; i + len <= n; i++) {
		if (memcmp(s + i, dec + sizeof(dec) - len, len))
			continue;
		if ((i == 0 || s[i - 1] < '0' || s[i - 1] > '9') &&
		    (i + len == n || s[i + len] < '0' || s[i + len] > '9'))
			return 1;
	}
	return 0;
}

static void native_accepted(const uint8_t *msg, size_t n, unsigned int nfds,
			    const struct ufault__proto_msg *m)
{
	unsigned char rebuilt[sizeof(struct ufault_proto_hdr) + UFAULT_PROTO_MAX_BODY];
	const uint8_t *body = msg + sizeof(m->hdr);
	const char *why = NULL;

	must(ufault__proto_frame(msg, n, &why) == (long)n);
	must(n == sizeof(m->hdr) + m->hdr.len && m->hdr.len <= UFAULT_PROTO_MAX_BODY);
	/* One byte short is never a whole message. */
	must(ufault__proto_check(msg, n - 1, nfds, FUZZ_PROTO_SYS_PAGE, NULL, &why) < 0);
	/* What was accepted is exactly what build() would have sent. */
	must(ufault__proto_build(rebuilt, m->hdr.type, m->hdr.seq, body, m->hdr.len) == n);
	must(!memcmp(rebuilt, msg, n));

	switch (m->hdr.type) {
	case UFAULT_MSG_HELLO:
		must(!(m->u.hello.flags & ~UFAULT_HELLO_ZEROED) && !m->u.hello.reserved);
		must(!m->u.hello.resume_id || !m->u.hello.flags);
		must(nfds == (m->u.hello.resume_id		       ? 0u
			      : m->u.hello.flags & UFAULT_HELLO_ZEROED ? 2u
								       : 1u));
		break;
	case UFAULT_MSG_REGISTER: {
		const struct ufault_proto_region *r = &m->u.region;
		uint64_t ps = r->page_size ? r->page_size : FUZZ_PROTO_SYS_PAGE;

		must(pow2(ps) && ps >= FUZZ_PROTO_SYS_PAGE && ps <= UFAULT_PROTO_MAX_PAGE);
		must(r->len && !(r->start % ps) && !(r->len % ps) && !(r->offset % ps));
		must((unsigned __int128)r->start + r->len <= USER_VA_END);
		must((unsigned __int128)r->offset + r->len <= UINT64_MAX);
		must(r->source <= UFAULT_PROTO_SRC_SHARED);
		must(nfds == r->source); /* ZERO none, FILE the file, SHARED and the memfd */
		must(r->source != UFAULT_PROTO_SRC_SHARED || ps == FUZZ_PROTO_SYS_PAGE);
		must(!ufault__proto_overlaps(r, 1, r->start + r->len, ps));
		must(ufault__proto_overlaps(r, 1, r->start + r->len - 1, ps));
		break;
	}
	case UFAULT_MSG_UNREGISTER:
		must(m->u.range.len && !(m->u.range.start % FUZZ_PROTO_SYS_PAGE) &&
		     !(m->u.range.len % FUZZ_PROTO_SYS_PAGE));
		must(m->u.range.start + m->u.range.len > m->u.range.start);
		must(!nfds);
		break;
	case UFAULT_MSG_STATS:
	case UFAULT_MSG_LIST:
		must(!m->hdr.len && !nfds);
		break;
	case UFAULT_MSG_SET_BUDGET:
		must(m->u.budget.client_id && !nfds);
		break;
	case UFAULT_MSG_REPLY:
		must(!m->u.reply.reserved && m->u.reply.status <= 0 && !nfds);
		must(m->extra == body + sizeof(struct ufault_proto_reply));
		must(m->extra_len + sizeof(struct ufault_proto_reply) == m->hdr.len);
		break;
	default:
		must(0);
	}
}

static int native(const uint8_t *data, size_t size)
{
	struct ufault__proto_msg m;
	const char *why = NULL;
	unsigned int nfds;
	long framed;
	int err;

	if (!size)
		return 0;
	nfds = data[0] % (UFAULT_PROTO_MAX_FDS + 1);
	data++;
	size--;

	framed = ufault__proto_frame(data, size, &why);
	must(framed == 0 || framed == -EPROTO || framed == -EMSGSIZE ||
	     (framed >= (long)sizeof(struct ufault_proto_hdr) &&
	      framed <= (long)(sizeof(struct ufault_proto_hdr) + UFAULT_PROTO_MAX_BODY)));
	must(framed > 0 || why);

	why = NULL;
	err = ufault__proto_check(data, size, nfds, FUZZ_PROTO_SYS_PAGE, &m, &why);
	if (err) {
		must(err == -EINVAL || err == -EPROTO || err == -EMSGSIZE || err == -EBADF);
		must(why && *why);
		return 0;
	}
	native_accepted(data, size, nfds, &m);
	return 1;
}

static int fc(const uint8_t *data, size_t size)
{
	static struct ufault__fc_region r[UFAULT__FC_MAX_REGIONS], again[UFAULT__FC_MAX_REGIONS];
	const char *json = (const char *)data;
	const char *why = NULL;
	unsigned int nr = ~0u, nr2, i, j;
	int err;

	err =
	    ufault__fc_parse(json, size, FUZZ_PROTO_SYS_PAGE, r, UFAULT__FC_MAX_REGIONS, &nr, &why);
	if (err) {
		must(err == -EINVAL || err == -E2BIG || err == -EMSGSIZE);
		must(why && *why);
		must(!nr);
		return 0;
	}
	must(nr >= 1 && nr <= UFAULT__FC_MAX_REGIONS);
	for (i = 0; i < nr; i++) {
		uint64_t ps = r[i].page_size;

		must(pow2(ps) && ps >= FUZZ_PROTO_SYS_PAGE && ps <= UFAULT_PROTO_MAX_PAGE);
		must(r[i].size && !(r[i].base % ps) && !(r[i].size % ps) && !(r[i].offset % ps));
		must(r[i].base + r[i].size > r[i].base);
		must(r[i].offset + r[i].size > r[i].offset);
		must(written(json, size, r[i].base) && written(json, size, r[i].size) &&
		     written(json, size, r[i].offset) && written(json, size, ps));
		for (j = 0; j < i; j++)
			must(!overlaps_ref(r[i].base, r[i].size, r[j].base, r[j].size));
	}
	/* The count limit is exact: one slot fewer is refused, and with just
	 * enough the same regions come back. */
	why = NULL;
	must(ufault__fc_parse(json, size, FUZZ_PROTO_SYS_PAGE, again, nr - 1, &nr2, &why) ==
	     -E2BIG);
	must(why != NULL);
	must(!ufault__fc_parse(json, size, FUZZ_PROTO_SYS_PAGE, again, nr, &nr2, &why));
	must(nr2 == nr && !memcmp(again, r, nr * sizeof(r[0])));
	return 1;
}

/* proto_overlaps against the 128-bit reference, on bytes from the input. */
static void overlaps(const uint8_t *data, size_t size)
{
	struct ufault_proto_region have[2];
	uint64_t s, l;
	int ref;

	if (size < 48)
		return;
	data += size - 48;
	memset(have, 0, sizeof(have));
	have[0].start = get64(data);
	have[0].len = get64(data + 8);
	have[1].start = get64(data + 16);
	have[1].len = get64(data + 24);
	s = get64(data + 32);
	l = get64(data + 40);
	ref = overlaps_ref(have[0].start, have[0].len, s, l) ||
	      overlaps_ref(have[1].start, have[1].len, s, l);
	must(ufault__proto_overlaps(have, 2, s, l) == ref);
	must(!ufault__proto_overlaps(have, 0, s, l));
}

/* The removed-ranges log checker: an accepted log's ranges are ranges,
 * page-aligned, under the bound, all within @size; a refusal says why. */
static int zlog(const uint8_t *data, size_t size)
{
	const char *why = NULL;
	long n = ufault__proto_zlog_check(data, size, FUZZ_PROTO_SYS_PAGE, USER_VA_END, &why);

	if (n < 0) {
		must(n == -EINVAL && why != NULL);
		return 0;
	}
	must(why == NULL && n <= (long)UFAULT_PROTO_ZLOG_MAX);
	must(sizeof(struct ufault_proto_zlog_head) + (size_t)n * 16 <= size);
	for (long i = 0; i < n; i++) {
		const uint8_t *r = data + sizeof(struct ufault_proto_zlog_head) + i * 16;
		uint64_t start = get64(r), end = get64(r + 8);

		must(start < end && end <= USER_VA_END);
		must(!(start % FUZZ_PROTO_SYS_PAGE) && !(end % FUZZ_PROTO_SYS_PAGE));
	}
	return 1;
}

unsigned int fuzz_proto_one(const uint8_t *data, size_t size)
{
	unsigned int ok = 0;

	if (native(data, size))
		ok |= FUZZ_PROTO_NATIVE_OK;
	if (fc(data, size))
		ok |= FUZZ_PROTO_FC_OK;
	if (zlog(data, size))
		ok |= FUZZ_PROTO_ZLOG_OK;
	overlaps(data, size);
	return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_proto_one(data, size);
	return 0;
}
