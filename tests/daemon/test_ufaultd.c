/* SPDX-License-Identifier: MIT */
/*
 * test_ufaultd.c - the real ufaultd binary, served to real client
 * processes.
 *
 * One daemon is started for the group (native socket, Firecracker socket on
 * a pattern memory file, metrics on a free 127.0.0.1 port) under a temporary
 * directory. Clients are forked children that speak the protocols with
 * nothing of libufault: a uffd of their own, UFFDIO_REGISTER, the socket.
 * Every byte a client faults in is compared with the file it came from
 * (tests/testutil.h's pattern, never 0, so a zero byte is a page the
 * daemon did not fill). After every test the daemon's open fds are back to
 * what they were before the first client (bounded poll): nothing a client
 * did or sent leaks.
 *
 *  - native: 3 clients at once, each its own region over the file at its
 *    own offset, 4 faulting threads each; LIST shows them while they live.
 *  - kill -9 of a client that faults continuously while 2 others fault:
 *    they finish byte-exact, the dead one leaves LIST, fds come back.
 *  - malicious: unframeable messages close the connection; well-framed bad
 *    ones get a REPLY with the errno and the connection stays usable;
 *    fds sent where none may go are closed; another client's range cannot
 *    be unregistered (and that client still reads its bytes); another uid
 *    is refused at accept; random bytes. Then a fresh client works and the
 *    daemon is the same process.
 *  - Firecracker: a child reproduces Firecracker's side of persist.rs
 *    (uffd with EVENT_REMOVE, O_CLOEXEC | O_NONBLOCK; regions registered
 *    MISSING; the serde_json region list and the uffd in one sendmsg; the
 *    socket kept open): 3 regions at different file offsets read
 *    byte-exact, a balloon madvise(MADV_DONTNEED) range reads zeros
 *    afterwards, 2 MiB hugetlb pages if the machine can have 8 free; bad
 *    handshakes close the connection.
 *  - metrics: GET /metrics has nonzero fault counters for a live client.
 *  - ufaultctl: status, clients, stats ID, budget (set, and shown by stats
 *    ID); SET_BUDGET of a native client is applied, of a Firecracker client
 *    refused (EOPNOTSUPP), of no client ENOENT. (Eviction under a budget:
 *    test_restart's remote_budget.)
 *  - systemd: socket activation (LISTEN_FDS on fd 3, LISTEN_PID) and
 *    READY=1 on an abstract $NOTIFY_SOCKET; a client's fd store entry
 *    goes to systemd (FDSTORE=1, FDNAME=c<id>) and leaves with it
 *    (FDSTOREREMOVE=1).
 *  - socket paths: a live daemon's socket is not taken over, a file that
 *    is not a socket is not removed, a stale socket is replaced and gets
 *    mode 0660; --max-clients closes the connection past the bound.
 *  - SIGTERM: a clean exit (status 0) that removes the socket it bound.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "../testutil.h"
#include "client.h"

#define PAT_SEED 17
#define FC_SEED 29
#define PAT_LEN (80u << 20) /* the native clients' backing file */
#define MEM_LEN (16u << 20) /* Firecracker's guest memory file */
#define HUGE_2M (2u << 20)
#define WAIT_MS 20000 /* bound of every poll for the daemon to catch up */

static char tmpdir[64], sock_path[128], fc_sock_path[128], mem_path[128], pat_path[128];
static pid_t daemon_pid = -1;
static pid_t act_pid = -1; /* the socket-activated daemon, while it runs */
static int metrics_port;
static int baseline_fds;
static size_t ps;

/* ------------------------------------------------------------------ */
/* Processes                                                            */
/* ------------------------------------------------------------------ */

static int daemon_fds(pid_t pid)
{
	char path[64];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Poll (bounded) until the daemon has @want fds open; the last count. */
static int wait_daemon_fds(int want)
{
	int n = daemon_fds(daemon_pid);

	for (int i = 0; i < WAIT_MS && n != want; i++) {
		usleep(1000);
		n = daemon_fds(daemon_pid);
	}
	return n;
}

static void daemon_alive(void)
{
	int st;

	assert_int_equal(waitpid(daemon_pid, &st, WNOHANG), 0);
	assert_int_equal(kill(daemon_pid, 0), 0);
}

/* Wait (bounded) until @path accepts a connection; fails if @pid exits. */
static void wait_socket(const char *path, pid_t pid)
{
	int st;

	for (int i = 0; i < WAIT_MS; i++) {
		int fd = tc_connect(path);

		if (fd >= 0) {
			close(fd);
			return;
		}
		if (waitpid(pid, &st, WNOHANG) == pid)
			fail_msg("ufaultd exited before listening on %s", path);
		usleep(1000);
	}
	fail_msg("ufaultd does not accept on %s", path);
}

static pid_t start_daemon(char *const argv[], char *const envp[], int keep_fd)
{
	pid_t pid = fork();

	if (pid < 0)
		tu_die("fork", errno);
	if (!pid) {
		if (keep_fd >= 0) {
			/* systemd's layout: the socket is fd 3, no CLOEXEC. */
			if (dup2(keep_fd, 3) < 0)
				_exit(126);
		}
		if (envp)
			execve(UFAULTD_PATH, argv, envp);
		else
			execv(UFAULTD_PATH, argv);
		_exit(127);
	}
	return pid;
}

/* A free 127.0.0.1 TCP port (asked of the kernel, then released). */
static int free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    getsockname(fd, (struct sockaddr *)&sa, &len))
		tu_die("finding a free port", errno);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* ------------------------------------------------------------------ */
/* LIST                                                                 */
/* ------------------------------------------------------------------ */

static const struct ufault_proto_client *find_id(const struct ufault_proto_client *e, long n,
						 uint64_t id)
{
	for (long i = 0; i < n; i++)
		if (e[i].id == id)
			return &e[i];
	return NULL;
}

/* Poll (bounded) until client @id is no longer listed. */
static void wait_gone(uint64_t id)
{
	struct ufault_proto_client e[TC_LIST_MAX];

	for (int i = 0; i < WAIT_MS; i++) {
		long n = tc_list_clients(sock_path, e);

		assert_true(n >= 0);
		if (!find_id(e, n, id))
			return;
		usleep(1000);
	}
	fail_msg("client %llu is still listed", (unsigned long long)id);
}

/* After every test: the daemon holds exactly what it held with no client. */
static void check_no_leak(void)
{
	struct ufault_proto_client e[TC_LIST_MAX];
	long n = -1;

	for (int i = 0; i < WAIT_MS; i++) {
		n = tc_list_clients(sock_path, e);
		if (n == 0)
			break;
		usleep(1000);
	}
	assert_int_equal(n, 0);
	assert_int_equal(wait_daemon_fds(baseline_fds), baseline_fds);
	daemon_alive();
}

/* ------------------------------------------------------------------ */
/* Native client children                                               */
/* ------------------------------------------------------------------ */

struct native_args {
	const char *sock;
	size_t len;
	uint64_t off;	      /* in the pattern file */
	unsigned int threads; /* faulting threads */
	int ready_w;	      /* gets id and region address (8 + 8 bytes) once registered */
	int go_r;	      /* one byte read from it before touching (-1: none) */
	int hold_r;	      /* one byte read from it before exiting (-1: none) */
	bool victim;	      /* fault forever (8 more bytes on ready_w after a pass) */
};

static void read_byte(int fd)
{
	char c;

	while (read(fd, &c, 1) < 0 && errno == EINTR)
		;
}

static __attribute__((noreturn)) void native_child(const struct native_args *a)
{
	struct ufault_proto_stats st;
	size_t pages = a->len / ps;
	uint64_t id = 0, addr;
	unsigned char *p;
	int uffd, fd, file;
	long bad;

	tu_watchdog(180);
	uffd = tc_uffd(0);
	TU_CHILD_CHECK(uffd >= 0, 2);
	p = tu_map_anon(a->len, 0);
	TU_CHILD_CHECK(!tc_uffd_register(uffd, p, a->len), 3);
	fd = tc_connect(a->sock);
	TU_CHILD_CHECK(fd >= 0, 4);
	TU_CHILD_CHECK(!tc_hello(fd, uffd, 0, &id) && id, 5);
	file = open(pat_path, O_RDONLY | O_CLOEXEC);
	TU_CHILD_CHECK(file >= 0, 6);
	TU_CHILD_CHECK(!tc_register(fd, p, a->len, a->off, 0, file), 7);
	close(file);
	addr = (uintptr_t)p;
	if (a->ready_w >= 0) {
		TU_CHILD_CHECK(write(a->ready_w, &id, 8) == 8, 8);
		TU_CHILD_CHECK(write(a->ready_w, &addr, 8) == 8, 8);
	}
	if (a->go_r >= 0)
		read_byte(a->go_r);
	if (a->victim) {
		for (unsigned int pass = 0;; pass++) {
			tu_touch_spread(p, pages, ps, 2);
			if (pass == 0)
				TU_CHILD_CHECK(write(a->ready_w, &id, 8) == 8, 9);
			/* Drop the pages so that the next pass faults again. */
			madvise(p, a->len, MADV_DONTNEED);
		}
	}
	tu_touch_spread(p, pages, ps, a->threads);
	bad = tu_pattern_check(p, a->len, a->off, PAT_SEED);
	if (bad >= 0) {
		fprintf(stderr, "client %llu: byte %ld is 0x%02x, the file's is 0x%02x\n",
			(unsigned long long)id, bad, p[bad], tu_pattern(a->off + bad, PAT_SEED));
		tu_child_exit(10);
	}
	TU_CHILD_CHECK(!tc_stats(fd, &st), 11);
	TU_CHILD_CHECK(st.faults > 0 && st.pages >= pages && st.regions == 1 && !st.errors, 12);
	if (a->hold_r >= 0)
		read_byte(a->hold_r);
	tu_child_exit(0);
}

static pid_t spawn_native(const struct native_args *a)
{
	pid_t pid = fork();

	if (pid < 0)
		tu_die("fork", errno);
	if (!pid)
		native_child(a);
	return pid;
}

static void read_full(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fail_msg("a child died before reporting (read: %zd)", n);
		p += n;
		len -= (size_t)n;
	}
}

static void make_pipe(int p[2])
{
	if (pipe2(p, O_CLOEXEC))
		tu_die("pipe", errno);
}

/* A native client that reports its id and region address on @ready and
 * then waits (its pages in) until @hold[1] is written or closed. */
static pid_t spawn_held(struct native_args *a, int ready[2], int hold[2], uint64_t *id,
			uint64_t *addr)
{
	pid_t pid;

	make_pipe(ready);
	make_pipe(hold);
	a->ready_w = ready[1];
	a->hold_r = hold[0];
	pid = spawn_native(a);
	close(ready[1]);
	read_full(ready[0], id, 8);
	read_full(ready[0], addr, 8);
	return pid;
}

static void write_bytes(int fd, unsigned int n)
{
	while (n--)
		if (write(fd, "g", 1) != 1)
			tu_die("write", errno);
}

/* ------------------------------------------------------------------ */
/* Group setup                                                          */
/* ------------------------------------------------------------------ */

static int group_setup(void **state)
{
	char port[16];

	ps = tu_page_size();
	signal(SIGPIPE, SIG_IGN);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ufaultd-test.XXXXXX");
	if (!mkdtemp(tmpdir))
		tu_die("mkdtemp", errno);
	/* Traversable: the other-uid client must reach the socket to be
	 * refused by SO_PEERCRED rather than by the directory. */
	chmod(tmpdir, 0755);
	snprintf(sock_path, sizeof(sock_path), "%s/run/ufaultd.sock", tmpdir);
	snprintf(fc_sock_path, sizeof(fc_sock_path), "%s/fc.sock", tmpdir);
	snprintf(mem_path, sizeof(mem_path), "%s/guest.mem", tmpdir);
	snprintf(pat_path, sizeof(pat_path), "%s/pattern", tmpdir);
	tu_pattern_file(pat_path, PAT_LEN, PAT_SEED);
	tu_pattern_file(mem_path, MEM_LEN, FC_SEED);
	chmod(pat_path, 0644);

	metrics_port = free_port();
	snprintf(port, sizeof(port), "%d", metrics_port);
	{
		char *argv[] = {"ufaultd",    "--socket",   sock_path, "--firecracker-socket",
				fc_sock_path, "--mem-file", mem_path,  "--metrics-port",
				port,	      "--workers",  "2",       NULL};

		daemon_pid = start_daemon(argv, NULL, -1);
	}
	wait_socket(sock_path, daemon_pid);
	wait_socket(fc_sock_path, daemon_pid);
	baseline_fds = wait_daemon_fds(daemon_fds(daemon_pid));
	/* The probe connections above may still be closing: settle. */
	usleep(100000);
	baseline_fds = daemon_fds(daemon_pid);
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[128];

	/* A failed test leaves its daemon running: not past the test. */
	if (daemon_pid > 0 && !waitpid(daemon_pid, NULL, WNOHANG)) {
		kill(daemon_pid, SIGKILL);
		waitpid(daemon_pid, NULL, 0);
	}
	if (act_pid > 0 && !waitpid(act_pid, NULL, WNOHANG)) {
		kill(act_pid, SIGKILL);
		waitpid(act_pid, NULL, 0);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (tmpdir[0] && system(cmd))
		fprintf(stderr, "could not remove %s\n", tmpdir);
	return 0;
}

/* ------------------------------------------------------------------ */
/* a) native clients                                                    */
/* ------------------------------------------------------------------ */

static void test_native_concurrent(void **state)
{
	struct ufault_proto_client e[TC_LIST_MAX];
	int ready[3][2], go[2];
	uint64_t id[3], addr;
	pid_t pid[3];
	long n;

	make_pipe(go);
	for (int i = 0; i < 3; i++) {
		struct native_args a = {
		    .sock = sock_path,
		    .len = (size_t)(16 + 4 * i) << 20,
		    .off = (uint64_t)(7 * i + 1) * ps,
		    .threads = 4,
		    .go_r = go[0],
		    .hold_r = -1,
		};

		make_pipe(ready[i]);
		a.ready_w = ready[i][1];
		pid[i] = spawn_native(&a);
		close(ready[i][1]);
	}
	for (int i = 0; i < 3; i++) {
		read_full(ready[i][0], &id[i], 8);
		read_full(ready[i][0], &addr, 8);
	}
	assert_true(id[0] != id[1] && id[1] != id[2] && id[0] != id[2]);

	/* While they live, LIST shows each with its pid and one region. */
	n = tc_list_clients(sock_path, e);
	assert_true(n >= 3);
	for (int i = 0; i < 3; i++) {
		const struct ufault_proto_client *c = find_id(e, n, id[i]);

		assert_non_null(c);
		assert_int_equal(c->pid, (uint32_t)pid[i]);
		assert_int_equal(c->uid, geteuid());
		assert_int_equal(c->regions, 1);
		assert_int_equal(c->firecracker, 0);
	}

	write_bytes(go[1], 3); /* all three fault at once */
	for (int i = 0; i < 3; i++)
		assert_int_equal(tc_wait_exit(pid[i]), 0);
	for (int i = 0; i < 3; i++) {
		wait_gone(id[i]);
		close(ready[i][0]);
	}
	close(go[0]);
	close(go[1]);
	check_no_leak();
}

/* ------------------------------------------------------------------ */
/* b) kill -9 of a client while others fault                           */
/* ------------------------------------------------------------------ */

static void test_kill9(void **state)
{
	int ready[3][2], go[2];
	uint64_t id[3], addr, again;
	pid_t pid[3];

	make_pipe(go);
	for (int i = 0; i < 3; i++) {
		struct native_args a = {
		    .sock = sock_path,
		    .len = i == 0 ? (4u << 20) : (64u << 20),
		    .off = (uint64_t)(3 * i) * ps,
		    .threads = 4,
		    .go_r = go[0],
		    .hold_r = -1,
		    .victim = i == 0,
		};

		make_pipe(ready[i]);
		a.ready_w = ready[i][1];
		pid[i] = spawn_native(&a);
		close(ready[i][1]);
	}
	for (int i = 0; i < 3; i++) {
		read_full(ready[i][0], &id[i], 8);
		read_full(ready[i][0], &addr, 8);
	}
	write_bytes(go[1], 3);
	/* The victim finished one pass: it is faulting again right now. */
	read_full(ready[0][0], &again, 8);
	assert_int_equal(kill(pid[0], SIGKILL), 0);
	assert_int_equal(tc_wait_exit(pid[0]), 128 + SIGKILL);

	for (int i = 1; i < 3; i++)
		assert_int_equal(tc_wait_exit(pid[i]), 0);
	wait_gone(id[0]);
	for (int i = 0; i < 3; i++) {
		wait_gone(id[i]);
		close(ready[i][0]);
	}
	close(go[0]);
	close(go[1]);
	check_no_leak();
}

/* ------------------------------------------------------------------ */
/* c) malicious clients                                                 */
/* ------------------------------------------------------------------ */

/* Send @len raw bytes on a fresh connection: the daemon must close it. */
static void expect_closed(const void *buf, size_t len, const char *what)
{
	int fd = tc_connect(sock_path);

	assert_true(fd >= 0);
	assert_int_equal(tc_send_raw(fd, buf, len, NULL, 0), 0);
	if (!tc_closed(fd))
		fail_msg("%s: the connection stayed open", what);
	close(fd);
}

/* A request on @fd must get a REPLY with @want, and leave @fd usable. */
static void expect_status(int fd, uint16_t type, const void *body, uint32_t len, const int *fds,
			  unsigned int nfds, int want, const char *what)
{
	struct ufault_proto_client e[TC_LIST_MAX];
	unsigned char buf[TC_MSG_MAX];
	struct ufault__proto_msg m;
	int err;

	err = tc_call(fd, type, body, len, fds, nfds, &m, buf);
	if (err)
		fail_msg("%s: no reply (%s)", what, strerror(-err));
	if (m.u.reply.status != want)
		fail_msg("%s: status %d (%s), expected %d (%s)", what, m.u.reply.status,
			 strerror(-m.u.reply.status), want, strerror(-want));
	/* Still usable. */
	assert_true(tc_list(fd, e, TC_LIST_MAX) >= 0);
}

static void header(struct ufault_proto_hdr *h, uint16_t type, uint32_t len)
{
	*h = (struct ufault_proto_hdr){
	    .magic = UFAULT_PROTO_MAGIC,
	    .version = UFAULT_PROTO_VERSION,
	    .type = type,
	    .len = len,
	    .seq = 1,
	};
}

static void other_uid_refused(void)
{
	pid_t pid;

	if (geteuid() != 0) {
		fprintf(stderr, "note: not root, the other-uid refusal is not tested\n");
		return;
	}
	/* Let the socket's mode admit the stranger, so that only
	 * SO_PEERCRED stands between it and the daemon. */
	assert_int_equal(chmod(sock_path, 0666), 0);
	pid = fork();
	if (pid < 0)
		tu_die("fork", errno);
	if (!pid) {
		struct ufault_proto_client e[TC_LIST_MAX];
		int fd;

		tu_watchdog(60);
		TU_CHILD_CHECK(!setgroups(0, NULL), 2);
		TU_CHILD_CHECK(!setresgid(65534, 65534, 65534), 3);
		TU_CHILD_CHECK(!setresuid(65534, 65534, 65534), 4);
		fd = tc_connect(sock_path);
		TU_CHILD_CHECK(fd >= 0, 5);
		/* Refused at accept: no reply, ever. */
		TU_CHILD_CHECK(tc_list(fd, e, TC_LIST_MAX) < 0, 6);
		TU_CHILD_CHECK(tc_closed(fd), 7);
		tu_child_exit(0);
	}
	assert_int_equal(tc_wait_exit(pid), 0);
	assert_int_equal(chmod(sock_path, 0660), 0);
}

static void test_malicious(void **state)
{
	unsigned char buf[TC_MSG_MAX + 64];
	struct ufault_proto_hdr h;
	struct ufault_proto_hello hello = {0};
	struct ufault_proto_region r;
	struct ufault_proto_range range;
	int fd, uffd, uffd2, file, file2, pfd[2], ready[2], go[2];
	uint64_t id, victim_id, victim_addr;
	size_t len = 64 * ps;
	unsigned char *p;
	pid_t victim;

	/* Unframeable: closed. */
	header(&h, UFAULT_MSG_LIST, 0);
	h.magic = 0xdeadbeef;
	expect_closed(&h, sizeof(h), "bad magic");
	header(&h, UFAULT_MSG_LIST, 0);
	h.version = 99;
	expect_closed(&h, sizeof(h), "bad version");
	header(&h, UFAULT_MSG_HELLO, UFAULT_PROTO_MAX_BODY + 1);
	memset(buf, 0, sizeof(buf));
	memcpy(buf, &h, sizeof(h));
	expect_closed(buf, sizeof(h) + 64, "oversized len");

	/* Truncated, then gone: nothing to answer, nothing may leak. */
	fd = tc_connect(sock_path);
	assert_true(fd >= 0);
	header(&h, UFAULT_MSG_HELLO, sizeof(hello));
	assert_int_equal(tc_send_raw(fd, &h, sizeof(h) - 3, NULL, 0), 0);
	close(fd);
	fd = tc_connect(sock_path);
	assert_true(fd >= 0);
	memcpy(buf, &h, sizeof(h));
	assert_int_equal(tc_send_raw(fd, buf, sizeof(h) + 5, NULL, 0), 0);
	close(fd);

	/* Well-framed but wrong: a REPLY with the error, the connection stays. */
	fd = tc_connect(sock_path);
	assert_true(fd >= 0);
	expect_status(fd, UFAULT_MSG_HELLO, &hello, 8, NULL, 0, -EINVAL, "wrong body size");
	expect_status(fd, 99, NULL, 0, NULL, 0, -EPROTO, "unknown type");
	expect_status(fd, UFAULT_MSG_REPLY, &(struct ufault_proto_reply){0},
		      sizeof(struct ufault_proto_reply), NULL, 0, -EPROTO,
		      "a REPLY sent to the daemon");
	file = open(pat_path, O_RDONLY | O_CLOEXEC);
	file2 = open(pat_path, O_RDONLY | O_CLOEXEC);
	assert_true(file >= 0 && file2 >= 0);
	p = tu_map_anon(len, 0);
	r = (struct ufault_proto_region){
	    .start = (uintptr_t)p, .len = len, .source = UFAULT_PROTO_SRC_FILE};
	expect_status(fd, UFAULT_MSG_REGISTER, &r, sizeof(r), &file, 1, -ENOTCONN,
		      "REGISTER before HELLO");
	expect_status(fd, UFAULT_MSG_STATS, NULL, 0, NULL, 0, -ENOTCONN, "STATS before HELLO");
	expect_status(fd, UFAULT_MSG_LIST, NULL, 0, &file, 1, -EBADF, "LIST with an fd");
	{
		int three[3] = {file, file2, file};

		expect_status(fd, UFAULT_MSG_LIST, NULL, 0, three, 3, -EBADF, "three fds");
	}
	make_pipe(pfd);
	expect_status(fd, UFAULT_MSG_HELLO, &hello, sizeof(hello), &pfd[0], 1, -EBADF,
		      "HELLO with a pipe");
	expect_status(fd, UFAULT_MSG_HELLO, &hello, sizeof(hello), NULL, 0, -EBADF,
		      "HELLO without an fd");
	hello.resume_id = 12345;
	expect_status(fd, UFAULT_MSG_HELLO, &hello, sizeof(hello), NULL, 0, -ENOENT,
		      "HELLO resuming an unknown id");
	hello.resume_id = 0;
	hello.flags = 2;
	uffd = tc_uffd(0);
	assert_true(uffd >= 0);
	expect_status(fd, UFAULT_MSG_HELLO, &hello, sizeof(hello), &uffd, 1, -EINVAL,
		      "HELLO with an unknown flag");
	/* A removed-ranges log from a last session: it must be one. */
	hello.flags = UFAULT_HELLO_ZEROED;
	expect_status(fd, UFAULT_MSG_HELLO, &hello, sizeof(hello), &uffd, 1, -EBADF,
		      "HELLO saying it has a log, without it");
	{
		struct ufault_proto_zlog_head zh = {.magic = UFAULT_PROTO_ZLOG_MAGIC, .count = 2};
		int log[2] = {uffd, pfd[0]}, zfd = memfd_create("zlog", MFD_CLOEXEC);

		expect_status(fd, UFAULT_MSG_HELLO, &hello, sizeof(hello), log, 2, -EINVAL,
			      "HELLO with a pipe for its log");
		assert_true(zfd >= 0);
		assert_int_equal(pwrite(zfd, &zh, sizeof(zh), 0), (ssize_t)sizeof(zh));
		log[1] = zfd;
		expect_status(fd, UFAULT_MSG_HELLO, &hello, sizeof(hello), log, 2, -EINVAL,
			      "HELLO with a log shorter than its count");
		close(zfd);
	}
	hello.flags = 0;

	/* A proper session from here on (our own uffd and memory, never
	 * touched: nobody but the daemon would serve it). */
	assert_int_equal(tc_uffd_register(uffd, p, len), 0);
	assert_int_equal(tc_hello(fd, uffd, 0, &id), 0);
	assert_true(id > 0);
	uffd2 = tc_uffd(0);
	assert_true(uffd2 >= 0);
	expect_status(fd, UFAULT_MSG_HELLO, &hello, sizeof(hello), &uffd2, 1, -EISCONN,
		      "HELLO twice");
	{
		int two[2] = {file, file2};

		expect_status(fd, UFAULT_MSG_REGISTER, &r, sizeof(r), two, 2, -EBADF,
			      "REGISTER with 2 fds");
	}
	expect_status(fd, UFAULT_MSG_REGISTER, &r, sizeof(r), NULL, 0, -EBADF,
		      "FILE REGISTER without an fd");
	r.start = (uintptr_t)p + 1;
	expect_status(fd, UFAULT_MSG_REGISTER, &r, sizeof(r), &file, 1, -EINVAL,
		      "misaligned REGISTER");
	r.start = (uintptr_t)p;
	r.offset = 100;
	expect_status(fd, UFAULT_MSG_REGISTER, &r, sizeof(r), &file, 1, -EINVAL,
		      "misaligned file offset");
	r.offset = 0;
	expect_status(fd, UFAULT_MSG_REGISTER, &r, sizeof(r), &pfd[0], 1, -EINVAL,
		      "REGISTER of a pipe");
	assert_int_equal(tc_register(fd, p, len, 0, 0, file), 0);
	r.start = (uintptr_t)p + 16 * ps;
	r.len = 4 * ps;
	expect_status(fd, UFAULT_MSG_REGISTER, &r, sizeof(r), &file, 1, -EEXIST,
		      "overlapping REGISTER");
	r.start = (uintptr_t)p - 4 * ps;
	r.len = 8 * ps;
	r.source = UFAULT_PROTO_SRC_ZERO;
	expect_status(fd, UFAULT_MSG_REGISTER, &r, sizeof(r), NULL, 0, -EEXIST,
		      "overlapping REGISTER from below");
	range = (struct ufault_proto_range){.start = (uintptr_t)p, .len = 8 * ps};
	expect_status(fd, UFAULT_MSG_UNREGISTER, &range, sizeof(range), NULL, 0, -ENOENT,
		      "UNREGISTER of part of a region");

	/* Another client's range: not ours to unregister. */
	make_pipe(ready);
	make_pipe(go);
	{
		struct native_args a = {
		    .sock = sock_path,
		    .len = 2u << 20,
		    .off = 5 * ps,
		    .threads = 2,
		    .ready_w = ready[1],
		    .go_r = go[0],
		    .hold_r = -1,
		};

		victim = spawn_native(&a);
	}
	close(ready[1]);
	read_full(ready[0], &victim_id, 8);
	read_full(ready[0], &victim_addr, 8);
	range = (struct ufault_proto_range){.start = victim_addr, .len = 2u << 20};
	expect_status(fd, UFAULT_MSG_UNREGISTER, &range, sizeof(range), NULL, 0, -ENOENT,
		      "UNREGISTER of another client's region");
	{
		struct ufault_proto_budget b = {.client_id = victim_id, .bytes = 1 << 20};

		/* Its own SHARED mappings' budget (it has none: no effect). */
		expect_status(fd, UFAULT_MSG_SET_BUDGET, &b, sizeof(b), NULL, 0, 0,
			      "SET_BUDGET of a native client");
		b.client_id = 1ull << 60;
		expect_status(fd, UFAULT_MSG_SET_BUDGET, &b, sizeof(b), NULL, 0, -ENOENT,
			      "SET_BUDGET of no client");
	}
	write_bytes(go[1], 1);
	assert_int_equal(tc_wait_exit(victim), 0); /* its bytes were all there */
	close(ready[0]);
	close(go[0]);
	close(go[1]);

	/* Our own region comes off whole. */
	range = (struct ufault_proto_range){.start = (uintptr_t)p, .len = len};
	expect_status(fd, UFAULT_MSG_UNREGISTER, &range, sizeof(range), NULL, 0, 0,
		      "UNREGISTER of our region");
	expect_status(fd, UFAULT_MSG_UNREGISTER, &range, sizeof(range), NULL, 0, -ENOENT,
		      "UNREGISTER twice");
	close(fd);
	close(uffd);
	close(uffd2);
	close(file);
	close(file2);
	close(pfd[0]);
	close(pfd[1]);
	tu_unmap(p, len);

	other_uid_refused();

	/* Random bytes: raw, and behind a valid header of each type. */
	srand(4242);
	for (int round = 0; round < 24; round++) {
		size_t n = 1 + (size_t)rand() % (sizeof(buf) - 1);
		struct ufault_proto_client e[TC_LIST_MAX];
		unsigned char rb[TC_MSG_MAX];
		struct ufault__proto_msg m;
		int err;

		for (size_t i = 0; i < n; i++)
			buf[i] = (unsigned char)rand();
		fd = tc_connect(sock_path);
		assert_true(fd >= 0);
		if (round % 2) {
			static const uint32_t sizes[] = {
			    0,
			    sizeof(struct ufault_proto_hello),
			    sizeof(struct ufault_proto_region),
			    sizeof(struct ufault_proto_range),
			    0,
			    0,
			    sizeof(struct ufault_proto_budget),
			};
			uint16_t type = (uint16_t)(1 + (round / 2) % 6);

			/* Random body, right size: an answer, whatever it is. */
			err = tc_call(fd, type, buf, sizes[type], NULL, 0, &m, rb);
			assert_int_equal(err, 0);
			assert_true(tc_list(fd, e, TC_LIST_MAX) >= 0);
		} else {
			/* Random header: the magic cannot match, closed. */
			buf[0] ^= 0x5a;
			assert_int_equal(tc_send_raw(fd, buf, n, NULL, 0), 0);
			assert_true(tc_closed(fd));
		}
		close(fd);
	}

	/* A client that sends and never reads: the daemon stops reading it
	 * once its replies back up, and serves everyone else meanwhile. */
	{
		struct ufault_proto_client e[TC_LIST_MAX];
		unsigned char msg[sizeof(struct ufault_proto_hdr)];
		long sent = 0;
		int flood = tc_connect(sock_path);

		assert_true(flood >= 0);
		ufault__proto_build(msg, UFAULT_MSG_LIST, 7, NULL, 0);
		assert_int_equal(fcntl(flood, F_SETFL, O_NONBLOCK), 0);
		for (; sent < (1L << 22); sent++)
			if (send(flood, msg, sizeof(msg), MSG_NOSIGNAL) != (ssize_t)sizeof(msg))
				break;
		assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
		assert_true(sent < (1L << 22));
		assert_true(tc_list_clients(sock_path, e) >= 0);
		close(flood);
	}

	/* After all that: a fresh client, byte-exact, the same daemon. */
	{
		struct native_args a = {
		    .sock = sock_path,
		    .len = 8u << 20,
		    .off = 9 * ps,
		    .threads = 4,
		    .ready_w = -1,
		    .go_r = -1,
		    .hold_r = -1,
		};

		assert_int_equal(tc_wait_exit(spawn_native(&a)), 0);
	}
	daemon_alive();
	check_no_leak();
}

/* ------------------------------------------------------------------ */
/* d) Firecracker                                                       */
/* ------------------------------------------------------------------ */

struct fc_region {
	size_t size;
	uint64_t offset;
};

/*
 * Firecracker's side of the handshake (persist.rs guest_memory_from_uffd,
 * send_uffd_handshake), byte for byte what serde_json writes for
 * Vec<GuestRegionUffdMapping>: fields in declaration order, no spaces,
 * page_size and the deprecated page_size_kib (bytes, despite the name).
 */
static size_t fc_json(char *out, size_t cap, void *const *base, const struct fc_region *r,
		      unsigned int nr, size_t page)
{
	size_t n = 0;

	n += (size_t)snprintf(out + n, cap - n, "[");
	for (unsigned int i = 0; i < nr; i++)
		n +=
		    (size_t)snprintf(out + n, cap - n,
				     "%s{\"base_host_virt_addr\":%llu,\"size\":%zu,\"offset\":%llu,"
				     "\"page_size\":%zu,\"page_size_kib\":%zu}",
				     i ? "," : "", (unsigned long long)(uintptr_t)base[i],
				     r[i].size, (unsigned long long)r[i].offset, page, page);
	n += (size_t)snprintf(out + n, cap - n, "]");
	return n;
}

static __attribute__((noreturn)) void fc_child(const struct fc_region *r, unsigned int nr,
					       size_t page, int ready_w, int go_r)
{
	int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
	void *base[4];
	char json[1024];
	size_t n;
	uint64_t one = 1;
	int uffd, sock;
	long bad;

	tu_watchdog(180);
	if (page == HUGE_2M)
		flags |= MAP_HUGETLB | (21 << MAP_HUGE_SHIFT);
	/* UffdBuilder: require_features(EVENT_REMOVE), close_on_exec,
	 * non_blocking, user_mode_only(false). */
	uffd = tc_uffd(UFFD_FEATURE_EVENT_REMOVE);
	TU_CHILD_CHECK(uffd >= 0, 2);
	for (unsigned int i = 0; i < nr; i++) {
		base[i] = mmap(NULL, r[i].size, PROT_READ | PROT_WRITE, flags, -1, 0);
		TU_CHILD_CHECK(base[i] != MAP_FAILED, 3);
		/* uffd.register(): mode MISSING. */
		TU_CHILD_CHECK(!tc_uffd_register(uffd, base[i], r[i].size), 4);
	}
	n = fc_json(json, sizeof(json), base, r, nr, page);
	sock = tc_connect(fc_sock_path);
	TU_CHILD_CHECK(sock >= 0, 5);
	/* One sendmsg: the JSON and the uffd. The socket stays open (Firecracker
	 * forget()s it) and Firecracker keeps its own uffd. */
	TU_CHILD_CHECK(!tc_send_raw(sock, json, n, &uffd, 1), 6);

	for (unsigned int i = 0; i < nr; i++) {
		tu_touch_spread(base[i], r[i].size / page, page, 3);
		bad = tu_pattern_check(base[i], r[i].size, r[i].offset, FC_SEED);
		if (bad >= 0) {
			fprintf(stderr,
				"firecracker region %u: byte %ld is 0x%02x, expected 0x%02x\n", i,
				bad, ((unsigned char *)base[i])[bad],
				tu_pattern(r[i].offset + bad, FC_SEED));
			tu_child_exit(7);
		}
	}
	TU_CHILD_CHECK(write(ready_w, &one, 8) == 8, 8);
	read_byte(go_r);

	if (page != HUGE_2M) {
		/* The balloon: Firecracker madvise(MADV_DONTNEED)s what the guest
		 * gave back, the kernel raises UFFD_EVENT_REMOVE, and from then
		 * on those pages are zeros, not the snapshot's bytes. */
		unsigned char *b = base[1];
		size_t lo = 8 * page, cnt = 24 * page;

		TU_CHILD_CHECK(!madvise(b + lo, cnt, MADV_DONTNEED), 9);
		bad = tu_zero_check(b + lo, cnt);
		if (bad >= 0) {
			fprintf(stderr, "ballooned byte %ld is 0x%02x, expected 0\n", bad,
				b[lo + bad]);
			tu_child_exit(10);
		}
		TU_CHILD_CHECK(tu_pattern_check(b, lo, r[1].offset, FC_SEED) < 0, 11);
		TU_CHILD_CHECK(tu_pattern_check(b + lo + cnt, r[1].size - lo - cnt,
						r[1].offset + lo + cnt, FC_SEED) < 0,
			       12);
	}
	tu_child_exit(0);
}

/* Run one Firecracker-side child; check LIST while it lives. */
static void run_fc(const struct fc_region *r, unsigned int nr, size_t page)
{
	struct ufault_proto_client e[TC_LIST_MAX];
	const struct ufault_proto_client *c;
	int ready[2], go[2];
	uint64_t one, id;
	pid_t pid;
	long n;

	make_pipe(ready);
	make_pipe(go);
	pid = fork();
	if (pid < 0)
		tu_die("fork", errno);
	if (!pid)
		fc_child(r, nr, page, ready[1], go[0]);
	close(ready[1]);
	read_full(ready[0], &one, 8);
	n = tc_list_clients(sock_path, e);
	c = tc_find_pid(e, n, pid);
	assert_non_null(c);
	assert_int_equal(c->firecracker, 1);
	assert_int_equal(c->regions, nr);
	assert_true(c->faults > 0);
	id = c->id;
	{
		/* Its memory is the VMM's (the balloon is its API): no budget. */
		struct ufault_proto_budget b = {.client_id = id, .bytes = 1 << 20};
		int fd = tc_connect(sock_path);

		assert_true(fd >= 0);
		expect_status(fd, UFAULT_MSG_SET_BUDGET, &b, sizeof(b), NULL, 0, -EOPNOTSUPP,
			      "SET_BUDGET of a Firecracker client");
		close(fd);
		n = tc_list_clients(sock_path, e);
		assert_int_equal(tc_find_pid(e, n, pid)->budget, 0);
	}
	write_bytes(go[1], 1);
	assert_int_equal(tc_wait_exit(pid), 0);
	/* Firecracker's connection closed: the VM is gone, so is its client. */
	wait_gone(id);
	close(ready[0]);
	close(go[0]);
	close(go[1]);
}

static void fc_expect_closed(const char *json, const int *fds, unsigned int nfds, const char *what)
{
	int fd = tc_connect(fc_sock_path);

	assert_true(fd >= 0);
	assert_int_equal(tc_send_raw(fd, json, strlen(json), fds, nfds), 0);
	if (!tc_closed(fd))
		fail_msg("Firecracker handshake %s: the connection stayed open", what);
	close(fd);
}

/* 2 MiB pages: at least @want free, raising nr_hugepages if we may.
 * *restore: the value to put back, or -1. */
static bool hugepages(long want, long *restore)
{
	const char *nr_path = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";
	const char *free_path = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";
	long nr = -1, nfree = -1;
	FILE *f;

	*restore = -1;
	if ((f = fopen(nr_path, "r"))) {
		if (fscanf(f, "%ld", &nr) != 1)
			nr = -1;
		fclose(f);
	}
	if ((f = fopen(free_path, "r"))) {
		if (fscanf(f, "%ld", &nfree) != 1)
			nfree = -1;
		fclose(f);
	}
	if (nr < 0 || nfree < 0)
		return false;
	if (nfree >= want)
		return true;
	f = fopen(nr_path, "w");
	if (!f)
		return false;
	fprintf(f, "%ld\n", nr + want - nfree);
	if (fclose(f) == 0)
		*restore = nr;
	f = fopen(free_path, "r");
	if (!f || fscanf(f, "%ld", &nfree) != 1)
		nfree = -1;
	if (f)
		fclose(f);
	return nfree >= want;
}

static void hugepages_restore(long restore)
{
	FILE *f;

	if (restore < 0)
		return;
	f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "w");
	if (f) {
		fprintf(f, "%ld\n", restore);
		fclose(f);
	}
}

static void test_firecracker(void **state)
{
	/* Firecracker's offsets: each region follows the previous one. */
	const struct fc_region r[3] = {
	    {.size = 1u << 20, .offset = 0},
	    {.size = 2u << 20, .offset = 1u << 20},
	    {.size = 512u << 10, .offset = 3u << 20},
	};
	const struct fc_region huge[1] = {{.size = 8u << 20, .offset = 4u << 20}};
	char json[512];
	long restore;
	int uffd, pfd[2];

	run_fc(r, 3, ps);

	/* Bad handshakes: closed, nothing served, nothing leaked. */
	uffd = tc_uffd(UFFD_FEATURE_EVENT_REMOVE);
	assert_true(uffd >= 0);
	make_pipe(pfd);
	snprintf(json, sizeof(json),
		 "[{\"base_host_virt_addr\":%llu,\"size\":4096,\"offset\":0,\"page_size\":4096,"
		 "\"page_size_kib\":4096}]",
		 (unsigned long long)(64ull << 30));
	fc_expect_closed(json, NULL, 0, "without a uffd");
	fc_expect_closed(json, &pfd[0], 1, "with a pipe for a uffd");
	{
		int two[2] = {uffd, uffd};

		fc_expect_closed(json, two, 2, "with two fds");
	}
	fc_expect_closed("{\"not\":\"a list\"}", &uffd, 1, "with an object");
	fc_expect_closed("[{\"base_host_virt_addr\":4096,\"size\":4096}]", &uffd, 1,
			 "without offset and page size");
	snprintf(json, sizeof(json),
		 "[{\"base_host_virt_addr\":%llu,\"size\":8192,\"offset\":%u,\"page_size\":4096,"
		 "\"page_size_kib\":4096}]",
		 (unsigned long long)(64ull << 30), MEM_LEN - 4096);
	fc_expect_closed(json, &uffd, 1, "past the end of the memory file");
	/* Cut short: the daemon waits for the rest (a stream may split it),
	 * and closes when the sender does without finishing. */
	{
		const char *part = "[{\"base_host_virt_addr\":4096,";
		int fd = tc_connect(fc_sock_path);

		assert_true(fd >= 0);
		assert_int_equal(tc_send_raw(fd, part, strlen(part), &uffd, 1), 0);
		assert_int_equal(shutdown(fd, SHUT_WR), 0);
		assert_true(tc_closed(fd));
		close(fd);
	}
	close(uffd);
	close(pfd[0]);
	close(pfd[1]);

	if (hugepages(8, &restore)) {
		run_fc(huge, 1, HUGE_2M);
	} else {
		fprintf(stderr, "SKIP (part): fewer than 8 free 2 MiB huge pages and "
				"nr_hugepages cannot be raised: hugetlb region not tested\n");
	}
	hugepages_restore(restore);
	check_no_leak();
}

/* ------------------------------------------------------------------ */
/* e) metrics                                                           */
/* ------------------------------------------------------------------ */

static char *http_get(const char *path)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)metrics_port)};
	struct timeval tv = {.tv_sec = 30};
	size_t len = 0, cap = 1 << 16;
	char *out = malloc(cap + 1), req[128];
	int fd;

	assert_non_null(out);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path);
	assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
	for (;;) {
		ssize_t n;

		if (len == cap) {
			cap *= 2;
			out = realloc(out, cap + 1);
			assert_non_null(out);
		}
		n = recv(fd, out + len, cap - len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		assert_true(n >= 0);
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	out[len] = '\0';
	return out;
}

/* The value of the sample whose line starts with @prefix; -1 if none. */
static double sample(const char *text, const char *prefix)
{
	const char *p = text;
	size_t n = strlen(prefix);

	while ((p = strstr(p, prefix))) {
		if (p == text || p[-1] == '\n') {
			const char *v = strchr(p + n, ' ');

			return v ? strtod(v + 1, NULL) : -1;
		}
		p += n;
	}
	return -1;
}

static void test_metrics(void **state)
{
	char prefix[160], *text;
	int ready[2], hold[2];
	uint64_t id, addr;
	pid_t pid;
	struct native_args a = {
	    .sock = sock_path,
	    .len = 4u << 20,
	    .off = 2 * ps,
	    .threads = 2,
	    .go_r = -1,
	};

	pid = spawn_held(&a, ready, hold, &id, &addr);
	/* The child faults its 1024 pages in, checks them, then waits on
	 * hold[0]: poll (bounded) until the daemon counts them all. */
	snprintf(prefix, sizeof(prefix),
		 "ufault_pages_total{client=\"%llu\",pid=\"%d\",kind=\"native\"}",
		 (unsigned long long)id, (int)pid);
	text = NULL;
	for (int i = 0; i < WAIT_MS; i++) {
		free(text);
		text = http_get("/metrics");
		if (sample(text, prefix) >= 1024)
			break;
		usleep(1000);
	}
	assert_non_null(strstr(text, "HTTP/1.0 200 OK\r\n"));
	assert_non_null(strstr(text, "Content-Type: text/plain; version=0.0.4"));
	if (sample(text, prefix) < 1024)
		fail_msg("no page count for client %llu in:\n%s", (unsigned long long)id, text);
	snprintf(prefix, sizeof(prefix),
		 "ufault_faults_total{client=\"%llu\",pid=\"%d\",kind=\"native\"}",
		 (unsigned long long)id, (int)pid);
	assert_true(sample(text, prefix) >= 1);
	snprintf(prefix, sizeof(prefix),
		 "ufault_errors_total{client=\"%llu\",pid=\"%d\",kind=\"native\"}",
		 (unsigned long long)id, (int)pid);
	assert_true(sample(text, prefix) == 0);
	snprintf(prefix, sizeof(prefix),
		 "ufault_fault_latency_seconds_count{client=\"%llu\",pid=\"%d\",kind=\"native\"}",
		 (unsigned long long)id, (int)pid);
	assert_true(sample(text, prefix) >= 1);
	snprintf(prefix, sizeof(prefix),
		 "ufault_fault_latency_seconds_bucket{client=\"%llu\",pid=\"%d\",kind=\"native\","
		 "le=\"+Inf\"}",
		 (unsigned long long)id, (int)pid);
	assert_true(sample(text, prefix) >= 1);
	assert_true(sample(text, "ufaultd_clients") >= 1);
	assert_true(sample(text, "ufaultd_refused_total{reason=\"auth\"}") >= 0);
	assert_true(sample(text, "ufaultd_refused_total{reason=\"protocol\"}") >= 0);
	assert_non_null(strstr(text, "# TYPE ufault_fault_latency_seconds histogram\n"));
	free(text);

	text = http_get("/nothing");
	assert_non_null(strstr(text, "HTTP/1.0 404"));
	free(text);

	write_bytes(hold[1], 1);
	assert_int_equal(tc_wait_exit(pid), 0);
	wait_gone(id);
	close(ready[0]);
	close(hold[0]);
	close(hold[1]);
	check_no_leak();
}

/* ------------------------------------------------------------------ */
/* f) ufaultctl                                                         */
/* ------------------------------------------------------------------ */

/* Run ufaultctl with @args; its exit code, stdout in @out. */
static int ctl(const char *args, char *out, size_t cap)
{
	char cmd[512];
	size_t len = 0;
	FILE *f;
	int st;

	snprintf(cmd, sizeof(cmd), "'%s' %s 2>&1", UFAULTCTL_PATH, args);
	f = popen(cmd, "r");
	assert_non_null(f);
	while (len + 1 < cap) {
		size_t n = fread(out + len, 1, cap - 1 - len, f);

		if (!n)
			break;
		len += n;
	}
	out[len] = '\0';
	st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_ufaultctl(void **state)
{
	char args[256], out[8192], want[64];
	int ready[2], hold[2];
	uint64_t id, addr;
	pid_t pid;
	struct native_args a = {
	    .sock = sock_path,
	    .len = 1u << 20,
	    .off = 0,
	    .threads = 1,
	    .go_r = -1,
	};

	pid = spawn_held(&a, ready, hold, &id, &addr);

	snprintf(args, sizeof(args), "--socket '%s' status", sock_path);
	assert_int_equal(ctl(args, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "running, 1 client"));

	snprintf(args, sizeof(args), "--socket '%s' clients", sock_path);
	assert_int_equal(ctl(args, out, sizeof(out)), 0);
	snprintf(want, sizeof(want), "%-8llu %-12s %-8d", (unsigned long long)id, "native",
		 (int)pid);
	if (!strstr(out, want))
		fail_msg("'%s' not in:\n%s", want, out);

	snprintf(args, sizeof(args), "--socket '%s' stats %llu", sock_path, (unsigned long long)id);
	assert_int_equal(ctl(args, out, sizeof(out)), 0);
	snprintf(want, sizeof(want), "pid:      %d\n", (int)pid);
	assert_non_null(strstr(out, want));
	assert_non_null(strstr(out, "regions:  1\n"));

	snprintf(args, sizeof(args), "--socket '%s' stats 999999", sock_path);
	assert_int_equal(ctl(args, out, sizeof(out)), 1);
	snprintf(args, sizeof(args), "--socket '%s' budget %llu 1048576", sock_path,
		 (unsigned long long)id);
	assert_int_equal(ctl(args, out, sizeof(out)), 0);
	snprintf(want, sizeof(want), "client %llu: budget 1048576 bytes", (unsigned long long)id);
	assert_non_null(strstr(out, want));
	snprintf(args, sizeof(args), "--socket '%s' stats %llu", sock_path, (unsigned long long)id);
	assert_int_equal(ctl(args, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "budget:   1048576 bytes\n"));
	snprintf(args, sizeof(args), "--socket '%s/nothing.sock' status", tmpdir);
	assert_int_equal(ctl(args, out, sizeof(out)), 1);
	assert_int_equal(ctl("frobnicate", out, sizeof(out)), 2);

	write_bytes(hold[1], 1);
	assert_int_equal(tc_wait_exit(pid), 0);
	wait_gone(id);
	close(ready[0]);
	close(hold[0]);
	close(hold[1]);
	check_no_leak();
}

/* ------------------------------------------------------------------ */
/* g) systemd socket activation and readiness                           */
/* ------------------------------------------------------------------ */

/*
 * The next sd_notify message on @nfd that is not about the fd store, into
 * @msg; the store's (FDSTORE=1 with fds, FDSTOREREMOVE=1) are appended to
 * @store, one per line, and their fds closed.
 */
static void notify_recv(int nfd, char *msg, size_t cap, char *store, size_t store_cap)
{
	for (;;) {
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int) * 32)];
		} control;
		struct iovec iov = {.iov_base = msg, .iov_len = cap - 1};
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = control.buf,
				    .msg_controllen = sizeof(control.buf)};
		struct cmsghdr *cm;
		ssize_t n = recvmsg(nfd, &mh, MSG_CMSG_CLOEXEC);

		assert_true(n > 0);
		msg[n] = '\0';
		for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			size_t nr = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			for (size_t i = 0; cm->cmsg_type == SCM_RIGHTS && i < nr; i++) {
				int fd;

				memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				close(fd);
			}
		}
		if (strncmp(msg, "FDSTORE", 7))
			return;
		for (char *p = msg; *p; p++)
			if (*p == '\n')
				*p = ' ';
		snprintf(store + strlen(store), store_cap - strlen(store), "%s\n", msg);
	}
}

static void test_socket_activation(void **state)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char act_path[128], notify_name[64], env_pid[32], env_notify[96], msg[256];
	char store[4096] = "", want[64];
	struct timeval tv = {.tv_sec = 30};
	struct stat st;
	int lfd, nfd, ready[2];
	uint64_t id, addr;
	pid_t pid;

	/* The listening socket, as systemd would make it for ufaultd.socket. */
	snprintf(act_path, sizeof(act_path), "%s/activated.sock", tmpdir);
	strcpy(sa.sun_path, act_path);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 16), 0);

	/* $NOTIFY_SOCKET, abstract ('@'), as systemd's is. */
	snprintf(notify_name, sizeof(notify_name), "@ufaultd-test-notify-%d", (int)getpid());
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path + 1, notify_name + 1, strlen(notify_name) - 1);
	nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(nfd >= 0);
	assert_int_equal(
	    bind(nfd, (struct sockaddr *)&sa,
		 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(notify_name))),
	    0);
	setsockopt(nfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

	pid = fork();
	if (pid < 0)
		tu_die("fork", errno);
	if (!pid) {
		char *argv[] = {"ufaultd", "--workers", "1", NULL};
		char *envp[] = {env_pid, "LISTEN_FDS=1", "LISTEN_FDNAMES=ufaultd", env_notify,
				NULL};

		/* LISTEN_PID is the daemon's own pid: ours, kept by execve. */
		snprintf(env_pid, sizeof(env_pid), "LISTEN_PID=%d", (int)getpid());
		snprintf(env_notify, sizeof(env_notify), "NOTIFY_SOCKET=%s", notify_name);
		if (dup2(lfd, 3) < 0)
			_exit(126);
		execve(UFAULTD_PATH, argv, envp);
		_exit(127);
	}
	act_pid = pid;
	close(lfd);

	notify_recv(nfd, msg, sizeof(msg), store, sizeof(store));
	assert_string_equal(msg, "READY=1");

	make_pipe(ready);
	{
		struct native_args a = {
		    .sock = act_path,
		    .len = 4u << 20,
		    .off = 11 * ps,
		    .threads = 2,
		    .ready_w = ready[1],
		    .go_r = -1,
		    .hold_r = -1,
		};
		pid_t client = spawn_native(&a);

		close(ready[1]);
		read_full(ready[0], &id, 8);
		read_full(ready[0], &addr, 8);
		assert_int_equal(tc_wait_exit(client), 0);
	}
	close(ready[0]);

	assert_int_equal(kill(pid, SIGTERM), 0);
	notify_recv(nfd, msg, sizeof(msg), store, sizeof(store));
	assert_string_equal(msg, "STOPPING=1");
	/* Under systemd the fd store is systemd's: the client's entry went
	 * in when its session began and out when it left. */
	snprintf(want, sizeof(want), "FDSTORE=1 FDNAME=c%llu\n", (unsigned long long)id);
	if (!strstr(store, want))
		fail_msg("no '%s' in the fd store messages:\n%s", want, store);
	/* ... and the last word about it is its removal. */
	snprintf(want, sizeof(want), "FDNAME=c%llu\n", (unsigned long long)id);
	{
		const char *last = NULL, *line;

		for (line = store; (line = strstr(line, want)); line++)
			last = line;
		while (last && last > store && last[-1] != '\n')
			last--;
		if (!last || strncmp(last, "FDSTOREREMOVE=1 ", 16))
			fail_msg("the entry of client %llu was not removed last:\n%s",
				 (unsigned long long)id, store);
	}
	assert_int_equal(tc_wait_exit(pid), 0);
	act_pid = -1;
	/* systemd's socket: not ours to remove. */
	assert_int_equal(stat(act_path, &st), 0);
	close(nfd);
	unlink(act_path);
}

/* ------------------------------------------------------------------ */
/* Socket paths and the client bound                                    */
/* ------------------------------------------------------------------ */

/* A connection to @path that the daemon answers (bounded retries). */
static int connect_served(const char *path)
{
	struct ufault_proto_client e[TC_LIST_MAX];

	for (int i = 0; i < WAIT_MS; i++) {
		int fd = tc_connect(path);

		assert_true(fd >= 0);
		if (tc_list(fd, e, TC_LIST_MAX) >= 0)
			return fd;
		close(fd);
		usleep(1000);
	}
	fail_msg("%s: no connection is served", path);
	return -1;
}

static void test_socket_path(void **state)
{
	struct ufault_proto_client e[TC_LIST_MAX];
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char path[128];
	struct stat st;
	int fd, held[2], extra;
	pid_t pid;

	/* Another daemon is listening there: refuse to start, touch nothing. */
	{
		char *argv[] = {"ufaultd", "--socket", sock_path, NULL};

		assert_int_equal(tc_wait_exit(start_daemon(argv, NULL, -1)), 1);
	}
	assert_true(tc_list_clients(sock_path, e) >= 0);

	/* Not a socket: refuse, leave the file alone. */
	snprintf(path, sizeof(path), "%s/plain-file", tmpdir);
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	{
		char *argv[] = {"ufaultd", "--socket", path, NULL};

		assert_int_equal(tc_wait_exit(start_daemon(argv, NULL, -1)), 1);
	}
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));

	/* A stale socket (its daemon died without unlinking): replaced. */
	snprintf(path, sizeof(path), "%s/stale.sock", tmpdir);
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	{
		char *argv[] = {"ufaultd", "--socket", path, "--max-clients", "2", NULL};

		pid = start_daemon(argv, NULL, -1);
	}
	act_pid = pid;
	wait_socket(path, pid);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0660);

	/* --max-clients 2: a third connection is closed at once. (Each slot
	 * is taken with retries: the daemon may not have seen the probe
	 * connections above leave yet.) */
	for (int k = 0; k < 2; k++)
		held[k] = connect_served(path);
	extra = tc_connect(path);
	assert_true(extra >= 0);
	assert_true(tc_list(extra, e, TC_LIST_MAX) < 0);
	close(extra);
	/* One leaves: there is room again, once the daemon saw it leave. */
	close(held[0]);
	close(connect_served(path));
	close(held[1]);

	assert_int_equal(kill(pid, SIGTERM), 0);
	assert_int_equal(tc_wait_exit(pid), 0);
	act_pid = -1;
	assert_int_not_equal(stat(path, &st), 0);
}

/* ------------------------------------------------------------------ */
/* h) SIGTERM                                                           */
/* ------------------------------------------------------------------ */

static void test_sigterm(void **state)
{
	struct stat st;
	uint64_t id;
	int fd, uffd;

	/* A session is open when the signal comes: it is closed for it. */
	uffd = tc_uffd(0);
	assert_true(uffd >= 0);
	fd = tc_connect(sock_path);
	assert_true(fd >= 0);
	assert_int_equal(tc_hello(fd, uffd, 0, &id), 0);

	assert_int_equal(kill(daemon_pid, SIGTERM), 0);
	assert_true(tc_closed(fd));
	assert_int_equal(tc_wait_exit(daemon_pid), 0);
	daemon_pid = -1;
	assert_int_not_equal(stat(sock_path, &st), 0);
	assert_int_not_equal(stat(fc_sock_path, &st), 0);
	close(fd);
	close(uffd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_native_concurrent), cmocka_unit_test(test_kill9),
	    cmocka_unit_test(test_malicious),	      cmocka_unit_test(test_firecracker),
	    cmocka_unit_test(test_metrics),	      cmocka_unit_test(test_ufaultctl),
	    cmocka_unit_test(test_socket_activation), cmocka_unit_test(test_socket_path),
	    cmocka_unit_test(test_sigterm),
	};

	tc_main_start(600);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
