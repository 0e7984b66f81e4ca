// SPDX-License-Identifier: MIT
/*
 * keeper.c - ufaultd-keeper: holds ufaultd's clients' fds while no daemon
 * runs (fdstore.h), where systemd's fd store is not there.
 *
 *   ufaultd-keeper PATH
 *
 * Listens on the Unix socket PATH (mode 0600); one daemon at a time (the
 * next is accepted once the last one's connection has ended). PUT stores or replaces an entry, DEL
 * drops one (closing its fds), LIST sends every entry back (as PUTs), then
 * END. Exits when its daemon leaves and it holds nothing, or on SIGTERM or
 * SIGINT. It keeps no state but what it is given: a keeper that dies
 * loses the entries (the clients' own copies of their uffds remain theirs).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fdstore.h"

struct entry {
	char name[UFD_STORE_MAX_NAME + 1];
	unsigned char *blob;
	size_t len;
	int fds[UFD_STORE_MAX_FDS];
	unsigned int nr;
};

static struct entry *entries;
static unsigned int nr_entries, cap_entries;
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void entry_free(struct entry *e)
{
	for (unsigned int i = 0; i < e->nr; i++)
		close(e->fds[i]);
	free(e->blob);
}

static struct entry *find(const char *name)
{
	for (unsigned int i = 0; i < nr_entries; i++)
		if (!strcmp(entries[i].name, name))
			return &entries[i];
	return NULL;
}

static void del(const char *name)
{
	struct entry *e = find(name);

	if (!e)
		return;
	entry_free(e);
	*e = entries[--nr_entries];
}

/* Takes the fds (closed on failure). */
static int put(const char *name, const void *blob, size_t len, const int *fds, unsigned int nr)
{
	struct entry e = {.len = len, .nr = nr};

	strcpy(e.name, name);
	memcpy(e.fds, fds, sizeof(int) * nr);
	e.blob = malloc(len ? len : 1);
	if (!e.blob)
		goto fail;
	memcpy(e.blob, blob, len);
	del(name);
	if (nr_entries == cap_entries) {
		unsigned int cap = cap_entries ? cap_entries * 2 : 16;
		void *v = realloc(entries, cap * sizeof(*entries));

		if (!v)
			goto fail;
		entries = v;
		cap_entries = cap;
	}
	entries[nr_entries++] = e;
	return 0;
fail:
	entry_free(&e);
	return -ENOMEM;
}

/* One request from the daemon; false: the connection is done. */
static bool serve(int c)
{
	static unsigned char blob[UFD_STORE_MAX_BLOB];
	char name[UFD_STORE_MAX_NAME + 1];
	int fds[UFD_STORE_MAX_FDS];
	unsigned int nr;
	uint32_t op;
	size_t len;

	if (ufd_store_recv(c, &op, name, blob, &len, fds, &nr))
		return false;
	switch (op) {
	case UFD_KEEP_PUT:
		if (put(name, blob, len, fds, nr))
			fprintf(stderr, "ufaultd-keeper: out of memory: entry %s lost\n", name);
		return true;
	case UFD_KEEP_DEL:
		del(name);
		break;
	case UFD_KEEP_LIST:
		for (unsigned int i = 0; i < nr_entries; i++)
			if (ufd_store_send(c, UFD_KEEP_PUT, entries[i].name, entries[i].blob,
					   entries[i].len, entries[i].fds, entries[i].nr))
				return false;
		if (ufd_store_send(c, UFD_KEEP_END, NULL, NULL, 0, NULL, 0))
			return false;
		break;
	default:
		break;
	}
	for (unsigned int i = 0; i < nr; i++) /* fds only PUT may carry */
		close(fds[i]);
	return true;
}

int main(int argc, char **argv)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	struct sigaction sa = {.sa_handler = on_signal};
	int l, c = -1;

	if (argc != 2 || strlen(argv[1]) >= sizeof(a.sun_path)) {
		fprintf(stderr, "usage: ufaultd-keeper SOCKET-PATH\n");
		return 2;
	}
	strcpy(a.sun_path, argv[1]);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0)
		return 1;
	/* Another keeper there already: it keeps the entries. */
	if (!connect(l, (struct sockaddr *)&a, sizeof(a)))
		return 0;
	close(l);
	l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	unlink(a.sun_path);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || chmod(a.sun_path, 0600) ||
	    listen(l, 4)) {
		fprintf(stderr, "ufaultd-keeper: %s: %s\n", a.sun_path, strerror(errno));
		return 1;
	}
	while (!stop) {
		struct pollfd p[2] = {{.fd = l, .events = POLLIN}, {.fd = c, .events = POLLIN}};

		/* The daemon connected now first: what it sent before it died
		 * counts (a new daemon waits until that connection ends). */
		p[0].events = c < 0 ? POLLIN : 0;
		if (poll(p, 2, -1) < 0)
			continue; /* EINTR: a signal; the loop looks at stop */
		if (c >= 0 && p[1].revents && !serve(c)) {
			close(c);
			c = -1;
			if (!nr_entries)
				break; /* its daemon left and nothing is held */
		}
		if (c < 0 && (p[0].revents & POLLIN))
			c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	}
	unlink(a.sun_path);
	for (unsigned int i = 0; i < nr_entries; i++)
		entry_free(&entries[i]);
	return 0;
}
