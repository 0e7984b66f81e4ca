/* SPDX-License-Identifier: MIT */
/*
 * proto.c - checking ufaultd's native messages and Firecracker's region
 * list (lib/proto.h). Pure functions over bytes that came from another
 * process: no I/O, no allocation, no global state. Nothing here trusts a
 * length it read; every struct is copied out with memcpy because a receive
 * buffer gives no alignment guarantee.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "proto.h"

/* The x86-64 / arm64 (4-level) user address space: a range above it can
 * never be registered, and refusing it here keeps later sums far from wrap. */
#define USER_VA_END (1ULL << 47)

static void set_why(const char **why, const char *reason)
{
	if (why)
		*why = reason;
}

static int refuse(const char **why, int err, const char *reason)
{
	set_why(why, reason);
	return err;
}

static int is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

/* a + b, or 1 if it wraps. */
static int add_wraps(uint64_t a, uint64_t b, uint64_t *sum)
{
	*sum = a + b;
	return *sum < a;
}

long ufault__proto_frame(const void *buf, size_t n, const char **why)
{
	struct ufault_proto_hdr hdr;

	if (n < sizeof(hdr)) {
		set_why(why, "incomplete header");
		return 0;
	}
	memcpy(&hdr, buf, sizeof(hdr));
	if (hdr.magic != UFAULT_PROTO_MAGIC)
		return refuse(why, -EPROTO, "bad magic");
	if (hdr.version != UFAULT_PROTO_VERSION)
		return refuse(why, -EPROTO, "unsupported version");
	if (hdr.len > UFAULT_PROTO_MAX_BODY)
		return refuse(why, -EMSGSIZE, "body too long");
	return (long)(sizeof(hdr) + hdr.len);
}

static int check_fds(unsigned int nfds, unsigned int need, const char **why)
{
	if (nfds == need)
		return 0;
	return refuse(why, -EBADF, nfds < need ? "message needs more fds" : "unexpected fd");
}

static int check_hello(const struct ufault_proto_hello *h, unsigned int nfds, const char **why)
{
	if (h->flags & ~UFAULT_HELLO_ZEROED)
		return refuse(why, -EINVAL, "unknown hello flags");
	if (h->resume_id && h->flags)
		return refuse(why, -EINVAL, "a resume takes no removed-ranges log");
	if (h->reserved)
		return refuse(why, -EINVAL, "hello reserved not 0");
	/* A new client hands over its uffd (and its last log if it says so);
	 * one resuming after a daemon restart has none to give (protocol.h),
	 * and an fd we did not ask for would only leak. */
	if (h->resume_id)
		return check_fds(nfds, 0, why);
	if (nfds == (h->flags & UFAULT_HELLO_ZEROED ? 2u : 1u))
		return 0;
	return refuse(why, -EBADF,
		      h->flags ? "hello with its log needs two fds" : "hello needs one fd");
}

static int check_region(const struct ufault_proto_region *r, unsigned int nfds, uint64_t sys_page,
			const char **why)
{
	uint64_t ps = r->page_size ? r->page_size : sys_page;
	uint64_t end, oend;
	int err;

	if (r->source > UFAULT_PROTO_SRC_SHARED)
		return refuse(why, -EINVAL, "unknown source");
	err = check_fds(nfds, r->source, why); /* ZERO 0, FILE 1, SHARED 2 */
	if (err)
		return err;
	if (r->source == UFAULT_PROTO_SRC_SHARED && r->page_size && r->page_size != sys_page)
		return refuse(why, -EINVAL, "shared memory in system pages only");
	if (!is_pow2(ps))
		return refuse(why, -EINVAL, "page size not a power of two");
	if (ps < sys_page)
		return refuse(why, -EINVAL, "page size below the system page");
	if (ps > UFAULT_PROTO_MAX_PAGE)
		return refuse(why, -EINVAL, "page size too large");
	if (!r->len)
		return refuse(why, -EINVAL, "empty region");
	if ((r->start | r->len | r->offset) & (ps - 1))
		return refuse(why, -EINVAL, "region not page-aligned");
	if (add_wraps(r->start, r->len, &end))
		return refuse(why, -EINVAL, "region wraps");
	if (add_wraps(r->offset, r->len, &oend))
		return refuse(why, -EINVAL, "file offset wraps");
	if (end > USER_VA_END)
		return refuse(why, -EINVAL, "region beyond user address space");
	return 0;
}

static int check_range(const struct ufault_proto_range *r, uint64_t sys_page, const char **why)
{
	uint64_t end;

	if (!r->len)
		return refuse(why, -EINVAL, "empty range");
	if ((r->start | r->len) & (sys_page - 1))
		return refuse(why, -EINVAL, "range not page-aligned");
	if (add_wraps(r->start, r->len, &end))
		return refuse(why, -EINVAL, "range wraps");
	return 0;
}

static int check_reply(const struct ufault_proto_reply *r, const char **why)
{
	if (r->reserved)
		return refuse(why, -EINVAL, "reply reserved not 0");
	/* 0 or -errno: anything else is not something a daemon could mean. */
	if (r->status > 0 || r->status < -4095)
		return refuse(why, -EINVAL, "reply status not 0 or -errno");
	return 0;
}

/* The body size a type needs: exact, or at least that much for REPLY. */
static int body_size(uint16_t type, size_t *size, int *at_least)
{
	*at_least = 0;
	switch (type) {
	case UFAULT_MSG_HELLO:
		*size = sizeof(struct ufault_proto_hello);
		return 0;
	case UFAULT_MSG_REGISTER:
		*size = sizeof(struct ufault_proto_region);
		return 0;
	case UFAULT_MSG_UNREGISTER:
		*size = sizeof(struct ufault_proto_range);
		return 0;
	case UFAULT_MSG_STATS:
	case UFAULT_MSG_LIST:
		*size = 0;
		return 0;
	case UFAULT_MSG_SET_BUDGET:
		*size = sizeof(struct ufault_proto_budget);
		return 0;
	case UFAULT_MSG_REPLY:
		*size = sizeof(struct ufault_proto_reply);
		*at_least = 1;
		return 0;
	}
	return -EPROTO;
}

int ufault__proto_check(const void *buf, size_t n, unsigned int nfds, uint64_t sys_page,
			struct ufault__proto_msg *out, const char **why)
{
	const unsigned char *p = buf;
	struct ufault__proto_msg m;
	const unsigned char *body;
	size_t need;
	int at_least, err;
	long framed;

	if (!is_pow2(sys_page))
		return refuse(why, -EINVAL, "system page not a power of two");
	framed = ufault__proto_frame(buf, n, why);
	if (framed < 0)
		return (int)framed;
	if (!framed)
		return refuse(why, -EINVAL, "truncated header");
	if ((size_t)framed != n)
		return refuse(why, -EINVAL, "message length does not match header");

	memset(&m, 0, sizeof(m));
	memcpy(&m.hdr, p, sizeof(m.hdr));
	body = p + sizeof(m.hdr);
	if (body_size(m.hdr.type, &need, &at_least))
		return refuse(why, -EPROTO, "unknown message type");
	if (at_least ? m.hdr.len < need : m.hdr.len != need)
		return refuse(why, -EINVAL, "wrong body size for type");
	/* Every member of the union is at most @need bytes, checked above. */
	memcpy(&m.u, body, need);

	switch (m.hdr.type) {
	case UFAULT_MSG_HELLO:
		err = check_hello(&m.u.hello, nfds, why);
		break;
	case UFAULT_MSG_REGISTER:
		err = check_region(&m.u.region, nfds, sys_page, why);
		break;
	case UFAULT_MSG_UNREGISTER:
		err = check_fds(nfds, 0, why);
		if (!err)
			err = check_range(&m.u.range, sys_page, why);
		break;
	case UFAULT_MSG_SET_BUDGET:
		err = check_fds(nfds, 0, why);
		if (!err && !m.u.budget.client_id)
			err = refuse(why, -EINVAL, "budget for client 0");
		break;
	case UFAULT_MSG_REPLY:
		err = check_fds(nfds, 0, why);
		if (!err)
			err = check_reply(&m.u.reply, why);
		m.extra = body + need;
		m.extra_len = m.hdr.len - need;
		break;
	default: /* STATS, LIST: the body size was all there was to check */
		err = check_fds(nfds, 0, why);
		break;
	}
	if (err)
		return err;
	if (out)
		*out = m;
	return 0;
}

int ufault__proto_overlaps(const struct ufault_proto_region *have, unsigned int nr, uint64_t start,
			   uint64_t len)
{
	unsigned int i;

	/* Compare distances, not ends, so that no sum can wrap. */
	for (i = 0; i < nr; i++) {
		uint64_t hs = have[i].start, hl = have[i].len;

		if (!len || !hl)
			continue;
		if (start >= hs ? start - hs < hl : hs - start < len)
			return 1;
	}
	return 0;
}

long ufault__proto_zlog_check(const void *buf, size_t n, uint64_t sys_page, uint64_t va_end,
			      const char **why)
{
	const unsigned char *p = buf;
	struct ufault_proto_zlog_head h;

	*why = NULL;
	if (n < sizeof(h)) {
		*why = "the removed-ranges log is shorter than its head";
		return -EINVAL;
	}
	memcpy(&h, p, sizeof(h));
	if (h.magic != UFAULT_PROTO_ZLOG_MAGIC || h.reserved) {
		*why = "the removed-ranges log has a bad head";
		return -EINVAL;
	}
	if (h.count > UFAULT_PROTO_ZLOG_MAX ||
	    (n - sizeof(h)) / sizeof(struct ufault_proto_zlog_range) < h.count) {
		*why = "the removed-ranges log is shorter than its count";
		return -EINVAL;
	}
	for (uint32_t i = 0; i < h.count; i++) {
		struct ufault_proto_zlog_range r;

		memcpy(&r, p + sizeof(h) + i * sizeof(r), sizeof(r));
		if (r.start >= r.end || r.end > va_end || r.start % sys_page || r.end % sys_page) {
			*why = "the removed-ranges log has a range that is not one";
			return -EINVAL;
		}
	}
	return h.count;
}

size_t ufault__proto_build(void *buf, uint16_t type, uint32_t seq, const void *body, uint32_t len)
{
	struct ufault_proto_hdr hdr = {
	    .magic = UFAULT_PROTO_MAGIC,
	    .version = UFAULT_PROTO_VERSION,
	    .type = type,
	    .len = len,
	    .seq = seq,
	};
	unsigned char *p = buf;

	memcpy(p, &hdr, sizeof(hdr));
	if (len) {
		if (body)
			memcpy(p + sizeof(hdr), body, len);
		else
			memset(p + sizeof(hdr), 0, len);
	}
	return sizeof(hdr) + len;
}

/* --- Firecracker's region list --------------------------------------------
 *
 * Firecracker (src/vmm/src/persist.rs, send_uffd_handshake) sends
 * serde_json::to_string(&Vec<GuestRegionUffdMapping>), and serde writes the
 * fields in declaration order, no whitespace:
 *
 *   [{"base_host_virt_addr":140251259760640,"size":134217728,"offset":0,
 *     "page_size":4096,"page_size_kib":4096}]
 *
 * page_size_kib came first (v1.7) and, despite its name, has always carried
 * the page size in bytes (HugePageConfig::page_size_kib() returned 4096 or
 * 2 MiB); v1.12 added page_size with the same value and deprecated
 * page_size_kib (CHANGELOG, #4948); its example handler
 * (src/firecracker/examples/uffd/uffd_utils.rs) reads page_size alone, in
 * bytes. Older releases send neither and are
 * refused: without a page size we would have to guess. Nothing but this
 * shape is accepted, so the parser is a straight-line scanner, not a
 * general JSON reader.
 */

enum fc_key {
	FC_BASE,
	FC_SIZE,
	FC_OFFSET,
	FC_PAGE_SIZE,
	FC_PAGE_SIZE_KIB,
	FC_NR_KEYS,
};

static const char *const fc_key_names[FC_NR_KEYS] = {
    [FC_BASE] = "base_host_virt_addr",
    [FC_SIZE] = "size",
    [FC_OFFSET] = "offset",
    [FC_PAGE_SIZE] = "page_size",
    [FC_PAGE_SIZE_KIB] = "page_size_kib",
};

struct fc_scan {
	const char *s;
	size_t n, i;
	const char **why;
};

static void fc_ws(struct fc_scan *sc)
{
	while (sc->i < sc->n) {
		char c = sc->s[sc->i];

		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		sc->i++;
	}
}

/* The next byte after whitespace, or -1 at the end. */
static int fc_peek(struct fc_scan *sc)
{
	fc_ws(sc);
	return sc->i < sc->n ? (unsigned char)sc->s[sc->i] : -1;
}

static int fc_expect(struct fc_scan *sc, char c, const char *reason)
{
	if (fc_peek(sc) != (unsigned char)c)
		return refuse(sc->why, -EINVAL, reason);
	sc->i++;
	return 0;
}

static int fc_key(struct fc_scan *sc, enum fc_key *key)
{
	size_t start, len;
	int k;

	if (fc_expect(sc, '"', "expected a key"))
		return -EINVAL;
	start = sc->i;
	for (;;) {
		unsigned char c;

		if (sc->i >= sc->n)
			return refuse(sc->why, -EINVAL, "unterminated key");
		c = sc->s[sc->i];
		if (c == '"')
			break;
		if (c == '\\')
			return refuse(sc->why, -EINVAL, "escape in key");
		if (c < 0x20 || c > 0x7e)
			return refuse(sc->why, -EINVAL, "control or non-ASCII byte in key");
		sc->i++;
	}
	len = sc->i - start;
	sc->i++;
	for (k = 0; k < FC_NR_KEYS; k++) {
		if (strlen(fc_key_names[k]) == len &&
		    !memcmp(fc_key_names[k], sc->s + start, len)) {
			*key = k;
			return 0;
		}
	}
	return refuse(sc->why, -EINVAL, "unknown key");
}

static int fc_uint(struct fc_scan *sc, uint64_t *out)
{
	uint64_t v = 0;
	size_t start;
	int c = fc_peek(sc);

	if (c == '-')
		return refuse(sc->why, -EINVAL, "negative number");
	if (c < '0' || c > '9')
		return refuse(sc->why, -EINVAL, "expected an unsigned integer");
	start = sc->i;
	while (sc->i < sc->n && sc->s[sc->i] >= '0' && sc->s[sc->i] <= '9') {
		unsigned int d = sc->s[sc->i] - '0';

		if (v > (UINT64_MAX - d) / 10)
			return refuse(sc->why, -EINVAL, "number over 64 bits");
		v = v * 10 + d;
		sc->i++;
	}
	if (sc->s[start] == '0' && sc->i - start > 1)
		return refuse(sc->why, -EINVAL, "leading zero");
	if (sc->i < sc->n) {
		c = sc->s[sc->i];
		if (c == '.' || c == 'e' || c == 'E')
			return refuse(sc->why, -EINVAL, "not an integer");
	}
	*out = v;
	return 0;
}

static int fc_object(struct fc_scan *sc, uint64_t *val, unsigned int *seen)
{
	int err;

	*seen = 0;
	if (fc_expect(sc, '{', "expected an object"))
		return -EINVAL;
	for (;;) {
		enum fc_key key;

		err = fc_key(sc, &key);
		if (err)
			return err;
		if (*seen & (1u << key))
			return refuse(sc->why, -EINVAL, "duplicate key");
		*seen |= 1u << key;
		if (fc_expect(sc, ':', "expected ':'"))
			return -EINVAL;
		err = fc_uint(sc, &val[key]);
		if (err)
			return err;
		switch (fc_peek(sc)) {
		case ',':
			sc->i++;
			continue;
		case '}':
			sc->i++;
			return 0;
		case -1:
			return refuse(sc->why, -EINVAL, "truncated object");
		default:
			return refuse(sc->why, -EINVAL, "expected ',' or '}'");
		}
	}
}

static int fc_region(const uint64_t *val, unsigned int seen, uint64_t sys_page,
		     struct ufault__fc_region *r, const char **why)
{
	const unsigned int need = 1u << FC_BASE | 1u << FC_SIZE | 1u << FC_OFFSET;
	const unsigned int both = 1u << FC_PAGE_SIZE | 1u << FC_PAGE_SIZE_KIB;
	uint64_t end;

	if ((seen & need) != need)
		return refuse(why, -EINVAL, "region lacks base_host_virt_addr, size or offset");
	if (!(seen & both))
		return refuse(why, -EINVAL, "region lacks page_size");
	/* page_size_kib is bytes too: see the comment above enum fc_key. */
	if ((seen & both) == both && val[FC_PAGE_SIZE] != val[FC_PAGE_SIZE_KIB])
		return refuse(why, -EINVAL, "page_size and page_size_kib disagree");
	r->base = val[FC_BASE];
	r->size = val[FC_SIZE];
	r->offset = val[FC_OFFSET];
	r->page_size = seen & 1u << FC_PAGE_SIZE ? val[FC_PAGE_SIZE] : val[FC_PAGE_SIZE_KIB];

	if (!is_pow2(r->page_size))
		return refuse(why, -EINVAL, "page size not a power of two");
	if (r->page_size < sys_page)
		return refuse(why, -EINVAL, "page size below the system page");
	if (r->page_size > UFAULT_PROTO_MAX_PAGE)
		return refuse(why, -EINVAL, "page size too large");
	if (!r->size)
		return refuse(why, -EINVAL, "empty region");
	if ((r->base | r->size | r->offset) & (r->page_size - 1))
		return refuse(why, -EINVAL, "region not page-aligned");
	if (add_wraps(r->base, r->size, &end))
		return refuse(why, -EINVAL, "region wraps");
	if (add_wraps(r->offset, r->size, &end))
		return refuse(why, -EINVAL, "file offset wraps");
	return 0;
}

static int fc_overlaps(const struct ufault__fc_region *have, unsigned int nr,
		       const struct ufault__fc_region *r)
{
	unsigned int i;

	for (i = 0; i < nr; i++) {
		uint64_t hs = have[i].base, hl = have[i].size;

		if (r->base >= hs ? r->base - hs < hl : hs - r->base < r->size)
			return 1;
	}
	return 0;
}

int ufault__fc_parse(const char *json, size_t n, uint64_t sys_page, struct ufault__fc_region *out,
		     unsigned int max, unsigned int *nr, const char **why)
{
	struct fc_scan sc = {.s = json, .n = n, .i = 0, .why = why};
	unsigned int count = 0;
	int err;

	*nr = 0;
	if (n > UFAULT__FC_MAX_JSON)
		return refuse(why, -EMSGSIZE, "region list too long");
	if (!is_pow2(sys_page))
		return refuse(why, -EINVAL, "system page not a power of two");
	if (n && memchr(json, '\0', n))
		return refuse(why, -EINVAL, "NUL byte");
	if (fc_expect(&sc, '[', "expected '['"))
		return -EINVAL;
	if (fc_peek(&sc) == ']')
		return refuse(why, -EINVAL, "no regions");
	for (;;) {
		uint64_t val[FC_NR_KEYS] = {0};
		unsigned int seen;

		/* Refuse before parsing so @out is never written past @max. */
		if (count >= max)
			return refuse(why, -E2BIG, "too many regions");
		err = fc_object(&sc, val, &seen);
		if (err)
			return err;
		err = fc_region(val, seen, sys_page, &out[count], why);
		if (err)
			return err;
		if (fc_overlaps(out, count, &out[count]))
			return refuse(why, -EINVAL, "regions overlap");
		count++;

		err = fc_peek(&sc);
		if (err == ']')
			break;
		if (err == -1)
			return refuse(why, -EINVAL, "truncated array");
		if (err != ',')
			return refuse(why, -EINVAL, "expected ',' or ']'");
		sc.i++;
	}
	sc.i++;
	if (fc_peek(&sc) != -1)
		return refuse(why, -EINVAL, "data after the array");
	*nr = count;
	return 0;
}
