/* SPDX-License-Identifier: MIT */
/*
 * fc.c - Firecracker's snapshot-restore page-fault handler protocol.
 *
 * Firecracker (src/vmm/src/persist.rs, guest_memory_from_uffd and
 * send_uffd_handshake) maps the guest memory anonymous, creates a uffd
 * (O_CLOEXEC | O_NONBLOCK, UFFDIO_API requiring UFFD_FEATURE_EVENT_REMOVE
 * for the balloon), registers every region MISSING, connects to the
 * handler's socket and sends serde_json of Vec<GuestRegionUffdMapping>
 * with the uffd as SCM_RIGHTS, in one sendmsg. It then keeps the socket
 * open for as long as the VM lives, and expects no answer: the handler's
 * only output is the pages it installs.
 *
 * So: accumulate bytes until the top-level JSON array is closed (a stream
 * socket may split it), take the one fd that came with them, check the list
 * (ufault__fc_parse), and serve it with a foreign context whose regions are
 * FILE sources on the memory file at each region's offset. Anything wrong
 * closes the connection (there is no way to answer); Firecracker's own copy
 * of the uffd keeps its guest parked rather than reading zeros. Closing by
 * Firecracker (the VM exited) destroys the context.
 */
#include <errno.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto.h"
#include "ufaultd.h"

#define FC_BATCH 16	 /* reads per readiness callback */
#define JSON_MAX_DEPTH 8 /* an array of flat objects needs 2 */

/*
 * Where the top-level array that starts @s ends: its length including the
 * ']', 0 if it is not complete yet, -EINVAL if it cannot be one. Only
 * brackets outside strings count; checking the contents is the parser's.
 */
static long json_extent(const char *s, size_t n)
{
	bool in_str = false, esc = false;
	int depth = 0;
	size_t i = 0;

	while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	if (i == n)
		return 0;
	if (s[i] != '[')
		return -EINVAL;
	for (; i < n; i++) {
		char ch = s[i];

		if (in_str) {
			if (esc)
				esc = false;
			else if (ch == '\\')
				esc = true;
			else if (ch == '"')
				in_str = false;
			continue;
		}
		switch (ch) {
		case '"':
			in_str = true;
			break;
		case '[':
		case '{':
			if (++depth > JSON_MAX_DEPTH)
				return -EINVAL;
			break;
		case ']':
		case '}':
			if (--depth == 0)
				return (long)(i + 1);
			break;
		case '\0':
			return -EINVAL;
		}
	}
	return 0;
}

static bool only_space(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
			return false;
	return true;
}

static int fc_serve(struct ufd_client *c, const struct ufault__fc_region *r, unsigned int nr)
{
	struct ufd_daemon *d = c->d;
	uint64_t total = 0, max_page = 0;
	unsigned int i;
	int err;

	for (i = 0; i < nr; i++) {
		if (r[i].offset > d->mem_size || r[i].size > d->mem_size - r[i].offset) {
			ufd_log(d, UFAULT_LOG_WARN,
				"client %llu: region %u (offset %#llx, size %#llx) is past the end "
				"of the memory file (%#llx bytes)",
				(unsigned long long)c->id, i, (unsigned long long)r[i].offset,
				(unsigned long long)r[i].size, (unsigned long long)d->mem_size);
			return -EINVAL;
		}
		if (r[i].page_size > max_page)
			max_page = r[i].page_size;
		total += r[i].size;
	}

	/* What Firecracker's UffdBuilder required (persist.rs), hence what
	 * its UFFDIO_API enabled: the balloon's madvise raises REMOVE. */
	c->start_time = ufd_proc_start_time(c->pid);
	err = ufd_client_serve(c, c->in_fds[0], UFFD_FEATURE_EVENT_REMOVE, max_page);
	if (err)
		return err;
	ufd_close_fds(c->in_fds, &c->nr_in_fds);

	for (i = 0; i < nr; i++) {
		struct ufault_proto_region pr = {
		    .start = r[i].base,
		    .len = r[i].size,
		    .offset = r[i].offset,
		    .page_size = (uint32_t)r[i].page_size,
		    .source = UFAULT_PROTO_SRC_FILE,
		};

		err = ufd_client_region(c, &pr, d->mem_fd, -1);
		if (err) {
			ufd_log(d, UFAULT_LOG_WARN, "client %llu: region %u at %#llx: %s",
				(unsigned long long)c->id, i, (unsigned long long)r[i].base,
				ufault_strerror(err));
			return err; /* the close destroys the context */
		}
	}
	/* Firecracker never reconnects: after a restart the daemon serves the
	 * VM from this entry, its memory file included, until it exits. */
	ufd_persist_put(c);
	ufd_log(d, UFAULT_LOG_INFO,
		"client %llu: Firecracker VM, %u regions, %llu MiB, page size %llu",
		(unsigned long long)c->id, nr, (unsigned long long)(total >> 20),
		(unsigned long long)max_page);
	return 0;
}

/* The region list is complete at @json[0..@end): check it, serve it. */
static int fc_handshake(struct ufd_client *c, size_t end)
{
	struct ufd_daemon *d = c->d;
	struct ufault__fc_region *r;
	const char *why = "";
	unsigned int nr = 0;
	int err;

	if (c->nr_in_fds != 1) {
		ufd_log(d, UFAULT_LOG_WARN, "client %llu: region list without a uffd",
			(unsigned long long)c->id);
		return -EBADF;
	}
	if (!ufd_is_uffd(c->in_fds[0])) {
		ufd_log(d, UFAULT_LOG_WARN, "client %llu: the fd sent is not a userfaultfd",
			(unsigned long long)c->id);
		return -EBADF;
	}
	if (!only_space(c->json + end, c->json_len - end))
		ufd_log(d, UFAULT_LOG_WARN, "client %llu: %zu bytes after the region list, ignored",
			(unsigned long long)c->id, c->json_len - end);
	r = calloc(UFAULT__FC_MAX_REGIONS, sizeof(*r));
	if (!r)
		return -ENOMEM;
	err = ufault__fc_parse(c->json, end, d->sys_page, r, UFAULT__FC_MAX_REGIONS, &nr, &why);
	if (err)
		ufd_log(d, UFAULT_LOG_WARN, "client %llu: bad region list: %s",
			(unsigned long long)c->id, why);
	else
		err = fc_serve(c, r, nr);
	free(r);
	return err;
}

void ufd_fc_io(uv_poll_t *poll, int status, int events)
{
	struct ufd_client *c = poll->data;
	struct ufd_daemon *d = c->d;
	unsigned int i;
	ssize_t n;
	long end;

	if (c->closing)
		return;
	if (status < 0) {
		ufd_client_close(c, uv_strerror(status));
		return;
	}
	for (i = 0; i < FC_BATCH && !c->closing; i++) {
		if (c->fc_done) {
			/* Firecracker sends nothing more: wait for its close,
			 * dropping (and never spinning on) anything else. */
			char junk[4096];
			int fds[UFAULT_PROTO_MAX_FDS + 1];
			unsigned int nr_fds = 0;
			bool over = false;

			n = ufd_recv(c->fd, junk, sizeof(junk), fds, UFAULT_PROTO_MAX_FDS + 1,
				     &nr_fds, &over);
			ufd_close_fds(fds, &nr_fds);
			if (n == -EAGAIN)
				return;
			if (n <= 0) {
				ufd_client_close(c, n ? strerror((int)-n)
						      : "Firecracker closed the connection");
				return;
			}
			if (!c->fc_extra_logged) {
				c->fc_extra_logged = true;
				ufd_log(d, UFAULT_LOG_WARN,
					"client %llu: data after the handshake, ignored",
					(unsigned long long)c->id);
			}
			continue;
		}
		if (!c->json) {
			c->json = malloc(UFAULT__FC_MAX_JSON);
			if (!c->json) {
				ufd_client_close(c, "out of memory");
				return;
			}
		}
		if (c->json_len == UFAULT__FC_MAX_JSON) {
			d->refused[UFD_REFUSED_PROTOCOL]++;
			ufd_client_close(c, "region list over 64 KiB");
			return;
		}
		n = ufd_recv(c->fd, c->json + c->json_len, UFAULT__FC_MAX_JSON - c->json_len,
			     c->in_fds, 1, &c->nr_in_fds, &c->fds_overflow);
		if (n == -EAGAIN)
			return;
		if (n < 0) {
			ufd_client_close(c, strerror((int)-n));
			return;
		}
		if (c->fds_overflow) {
			d->refused[UFD_REFUSED_FDS]++;
			ufd_client_close(c, "more than one fd");
			return;
		}
		if (n == 0) {
			/* A connection that sent nothing is only a probe. */
			if (c->json_len || c->nr_in_fds)
				d->refused[UFD_REFUSED_PROTOCOL]++;
			ufd_client_close(c, c->json_len
						? "closed before its region list was complete"
						: "closed without a handshake");
			return;
		}
		c->json_len += (size_t)n;
		end = json_extent(c->json, c->json_len);
		if (end == 0)
			continue;
		if (end < 0 || fc_handshake(c, (size_t)end)) {
			d->refused[UFD_REFUSED_PROTOCOL]++;
			ufd_client_close(c, "bad handshake");
			return;
		}
		c->fc_done = true;
		free(c->json);
		c->json = NULL;
		c->json_len = 0;
	}
}
