/* SPDX-License-Identifier: MIT */
/*
 * test_fdstore.c - the fd store's keeper (daemon/fdstore.c, keeper.c):
 * entries outlive the daemon's connection and come back whole.
 *
 *  - A "daemon" (this process) opens the store, which starts the real
 *    ufaultd-keeper; it puts two entries (a record and the write ends of
 *    two pipes each), replaces one, deletes none, and closes the store and
 *    its own copies, as a killed daemon would.
 *  - A second open finds the same keeper: load gives both entries back,
 *    records byte-exact, fds in the stored order and working (a byte
 *    written through each reaches its pipe's read end, which this process
 *    kept).
 *  - Deleting both, then closing: the keeper exits (it holds nothing and
 *    its daemon left), and its socket is gone.
 *  - Bad input: a name too long, too many fds, a record too big: -EINVAL,
 *    nothing sent.
 *  - systemd's store, with this process as systemd (a datagram socket as
 *    $NOTIFY_SOCKET): a put is FDSTOREREMOVE=1 then FDSTORE=1 with the
 *    entry's name and fds (a record memfd first); a regular file goes as
 *    an open of its own (systemd would drop a description another entry
 *    holds); delete is FDSTOREREMOVE=1. Handed back as systemd does (all
 *    fds, names in $LISTEN_FDNAMES order, here reversed), load gives each
 *    entry its record and its fds in the stored order, and closes an fd
 *    no record claims.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "fdstore.h"

static char sock_path[108];

struct seen {
	unsigned int n;
	char names[4][UFD_STORE_MAX_NAME + 1];
	char blobs[4][64];
	size_t lens[4];
	int fds[4][UFD_STORE_MAX_FDS];
	unsigned int nr[4];
};

static void on_entry(void *arg, const char *name, const void *blob, size_t len, int *fds,
		     unsigned int nr)
{
	struct seen *s = arg;

	assert_true(s->n < 4);
	assert_true(len < sizeof(s->blobs[0]));
	strcpy(s->names[s->n], name);
	memcpy(s->blobs[s->n], blob, len);
	s->lens[s->n] = len;
	memcpy(s->fds[s->n], fds, sizeof(int) * nr);
	s->nr[s->n] = nr;
	s->n++;
}

static int open_store(struct ufd_store *st)
{
	return ufd_store_open(st, 0, sock_path, UFAULTD_KEEPER_BIN);
}

static void test_keep(void **state)
{
	struct ufd_store st;
	struct seen seen = {0};
	int a[2], b[2], c[2], fds[2];
	char byte;

	(void)state;
	assert_int_equal(pipe2(a, O_CLOEXEC), 0);
	assert_int_equal(pipe2(b, O_CLOEXEC), 0);
	assert_int_equal(pipe2(c, O_CLOEXEC), 0);
	assert_int_equal(open_store(&st), 0);
	fds[0] = a[1];
	fds[1] = b[1];
	assert_int_equal(ufd_store_put(&st, "c1", "first", 5, fds, 2), 0);
	assert_int_equal(ufd_store_put(&st, "c2", "old", 3, &c[1], 1), 0);
	assert_int_equal(ufd_store_put(&st, "c2", "second", 6, &c[1], 1), 0); /* replaces */
	ufd_store_close(&st);
	close(a[1]);
	close(b[1]);
	close(c[1]);

	assert_int_equal(open_store(&st), 0);
	assert_int_equal(ufd_store_load(&st, on_entry, &seen), 0);
	assert_int_equal(seen.n, 2);
	for (unsigned int i = 0; i < 2; i++) {
		bool first = !strcmp(seen.names[i], "c1");
		int *ends = first ? (int[]){a[0], b[0]} : (int[]){c[0]};

		assert_true(first || !strcmp(seen.names[i], "c2"));
		assert_int_equal(seen.nr[i], first ? 2 : 1);
		assert_int_equal(seen.lens[i], first ? 5 : 6);
		assert_memory_equal(seen.blobs[i], first ? "first" : "second", seen.lens[i]);
		for (unsigned int k = 0; k < seen.nr[i]; k++) {
			char w = (char)('a' + k);

			assert_int_equal(write(seen.fds[i][k], &w, 1), 1);
			assert_int_equal(read(ends[k], &byte, 1), 1);
			assert_int_equal(byte, w);
			close(seen.fds[i][k]);
		}
	}
	assert_int_equal(ufd_store_del(&st, "c1"), 0);
	assert_int_equal(ufd_store_del(&st, "c2"), 0);
	ufd_store_close(&st);
	/* Nothing held, its daemon gone: the keeper exits; the write ends it
	 * held are closed (EOF on the read ends). Bounded wait. */
	for (int i = 0; i < 500 && !access(sock_path, F_OK); i++)
		usleep(10000);
	assert_int_not_equal(access(sock_path, F_OK), 0);
	assert_int_equal(read(a[0], &byte, 1), 0);
	assert_int_equal(read(c[0], &byte, 1), 0);
	close(a[0]);
	close(b[0]);
	close(c[0]);
}

static void test_bad_input(void **state)
{
	struct ufd_store st;
	char name[UFD_STORE_MAX_NAME + 2];
	int fds[UFD_STORE_MAX_FDS + 1];
	static char big[UFD_STORE_MAX_BLOB + 1];

	(void)state;
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = 0;
	for (unsigned int i = 0; i <= UFD_STORE_MAX_FDS; i++)
		fds[i] = 0;
	assert_int_equal(open_store(&st), 0);
	assert_int_equal(ufd_store_put(&st, name, "x", 1, NULL, 0), -EINVAL);
	assert_int_equal(ufd_store_put(&st, "n", "x", 1, fds, UFD_STORE_MAX_FDS + 1), -EINVAL);
	assert_int_equal(ufd_store_put(&st, "n", big, sizeof(big), NULL, 0), -EINVAL);
	ufd_store_close(&st);
	for (int i = 0; i < 500 && !access(sock_path, F_OK); i++)
		usleep(10000);
	assert_int_not_equal(access(sock_path, F_OK), 0);
}

/* One datagram on @s: its text into @msg, its fds appended to @fds. */
static void notify_recv(int s, char *msg, size_t cap, int *fds, unsigned int *nr)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * (UFD_STORE_MAX_FDS + 1))];
	} control;
	struct iovec iov = {.iov_base = msg, .iov_len = cap - 1};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = control.buf,
			    .msg_controllen = sizeof(control.buf)};
	struct cmsghdr *cm;
	ssize_t n = recvmsg(s, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);

	assert_true(n > 0);
	assert_false(mh.msg_flags & MSG_CTRUNC);
	msg[n] = 0;
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		unsigned int k = (unsigned int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));

		assert_int_equal(cm->cmsg_type, SCM_RIGHTS);
		memcpy(fds + *nr, CMSG_DATA(cm), sizeof(int) * k);
		*nr += k;
	}
}

static void test_systemd(void **state)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	char notify[64], msg[256], file_path[128], byte;
	int s, p1[2], p2[2], file, fds[2], got[32], spare[2];
	const char *names[32];
	int inherit[32];
	unsigned int nr = 0, n_in = 0, nr_c1, nr_c2;
	struct ufd_store st;
	struct seen seen = {0};

	(void)state;
	snprintf(notify, sizeof(notify), "@ufault-test-fdstore-%d", (int)getpid());
	memcpy(a.sun_path + 1, notify + 1, strlen(notify) - 1);
	s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(s >= 0);
	assert_int_equal(bind(s, (struct sockaddr *)&a,
			      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(notify))),
			 0);
	assert_int_equal(setenv("NOTIFY_SOCKET", notify, 1), 0);
	assert_int_equal(pipe2(p1, O_CLOEXEC), 0);
	assert_int_equal(pipe2(p2, O_CLOEXEC), 0);
	assert_int_equal(pipe2(spare, O_CLOEXEC), 0);
	snprintf(file_path, sizeof(file_path), "%s.file", sock_path);
	file = open(file_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(file >= 0);
	assert_int_equal(write(file, "0123456789", 10), 10);
	unlink(file_path);

	assert_int_equal(ufd_store_open(&st, 1, NULL, NULL), 0);
	assert_int_equal(st.kind, UFD_STORE_SYSTEMD);
	fds[0] = p1[1];
	fds[1] = file;
	assert_int_equal(ufd_store_put(&st, "c1", "first", 5, fds, 2), 0);
	fds[0] = p2[1];
	assert_int_equal(ufd_store_put(&st, "c2", "second", 6, fds, 2), 0);

	notify_recv(s, msg, sizeof(msg), got, &nr);
	assert_string_equal(msg, "FDSTOREREMOVE=1\nFDNAME=c1");
	assert_int_equal(nr, 0);
	notify_recv(s, msg, sizeof(msg), got, &nr);
	assert_string_equal(msg, "FDSTORE=1\nFDNAME=c1");
	assert_int_equal(nr, 3); /* the record's memfd, then the two */
	nr_c1 = nr;
	notify_recv(s, msg, sizeof(msg), got, &nr);
	assert_string_equal(msg, "FDSTOREREMOVE=1\nFDNAME=c2");
	notify_recv(s, msg, sizeof(msg), got, &nr);
	assert_string_equal(msg, "FDSTORE=1\nFDNAME=c2");
	nr_c2 = nr - nr_c1;
	assert_int_equal(nr_c2, 3);
	/* The file, in both entries, as two opens: moving one's offset does
	 * not move the other's, nor ours. */
	assert_int_equal(lseek(got[2], 3, SEEK_SET), 3);
	assert_int_equal(lseek(got[5], 0, SEEK_CUR), 0);
	assert_int_equal(lseek(file, 0, SEEK_CUR), 10);

	assert_int_equal(ufd_store_del(&st, "c1"), 0);
	notify_recv(s, msg, sizeof(msg), got + nr, &n_in);
	assert_string_equal(msg, "FDSTOREREMOVE=1\nFDNAME=c1");
	ufd_store_close(&st);

	/* Handed back in an order of systemd's choosing, plus an fd that no
	 * record claims. */
	for (unsigned int i = 0; i < nr; i++) {
		inherit[i] = got[nr - 1 - i];
		names[i] = nr - 1 - i < nr_c1 ? "c1" : "c2";
	}
	inherit[nr] = spare[1];
	names[nr] = "c9";
	assert_int_equal(ufd_store_open(&st, 1, NULL, NULL), 0);
	ufd_store_set_inherited(&st, inherit, names, nr + 1);
	assert_int_equal(ufd_store_load(&st, on_entry, &seen), 0);
	assert_int_equal(seen.n, 2);
	for (unsigned int i = 0; i < 2; i++) {
		bool first = !strcmp(seen.names[i], "c1");
		int end = first ? p1[0] : p2[0];
		char off[4] = "";

		assert_true(first || !strcmp(seen.names[i], "c2"));
		assert_int_equal(seen.nr[i], 2);
		assert_memory_equal(seen.blobs[i], first ? "first" : "second", seen.lens[i]);
		/* fds[0]: the pipe's write end; fds[1]: the file. */
		assert_int_equal(write(seen.fds[i][0], "x", 1), 1);
		assert_int_equal(read(end, &byte, 1), 1);
		assert_int_equal(pread(seen.fds[i][1], off, 3, 7), 3);
		assert_memory_equal(off, "789", 3);
		close(seen.fds[i][0]);
		close(seen.fds[i][1]);
	}
	/* The unclaimed fd was closed: EOF once ours is closed too. */
	close(spare[1]);
	assert_int_equal(read(spare[0], &byte, 1), 0);
	ufd_store_close(&st);
	unsetenv("NOTIFY_SOCKET");
	close(spare[0]);
	close(p1[0]);
	close(p1[1]);
	close(p2[0]);
	close(p2[1]);
	close(file);
	close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_keep),
	    cmocka_unit_test(test_bad_input),
	    cmocka_unit_test(test_systemd),
	};

	snprintf(sock_path, sizeof(sock_path), "/tmp/ufault_test_keeper_%d.sock", (int)getpid());
	return cmocka_run_group_tests(tests, NULL, NULL);
}
