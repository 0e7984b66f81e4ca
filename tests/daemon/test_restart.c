/* SPDX-License-Identifier: MIT */
/*
 * test_restart.c - ufaultd killed with SIGKILL while its clients fault, and
 * started again: clients outlive the daemon through the fd store
 * (ufaultd-keeper here; systemd's store is test_fdstore's and
 * test_ufaultd's, and the real systemd's test_systemd's), native clients
 * take over in-process when no daemon comes back, and a forked child of
 * a client is served through its own uffd.
 *
 * Every client is a real process that faults with several threads over a
 * pattern file (tests/testutil.h, never a 0 byte) and checks every byte;
 * a watchdog fails any child whose threads hang. The daemon is killed
 * once every client reported that pages came in while its threads go on
 * faulting, and the clients are then told to fault in a part nothing
 * touched yet: the test waits until the kernel holds unread fault
 * messages for each (/proc/PID/fdinfo: "pending"), so faults that came
 * while no daemon ran are part of every restart test. Waits are bounded
 * polls, never timing thresholds.
 *
 *  - restart_native: 3 raw-protocol clients (client.h), 64 MiB and 4
 *    threads each; after the restart LIST shows them (detached: they never
 *    reconnect), they finish byte-exact, and when they exit the daemon
 *    frees them (pidfd) and the keeper holds nothing (it exits once the
 *    daemon is killed again).
 *  - keeper_killed: the keeper is killed (-9) while 2 such clients fault;
 *    the daemon starts a new one and stores both in it again (their uffds
 *    are in the new keeper), so that a kill -9 and a restart of the daemon
 *    after that still finds them.
 *  - restart_systemd: the same with systemd's fd store, this process
 *    playing systemd (the listening socket on fd 3, $NOTIFY_SOCKET, a
 *    store that keeps one copy of an open file as systemd does, handed
 *    back as LISTEN_FDS/LISTEN_FDNAMES): killed mid-fault and started
 *    again, then stopped with SIGTERM (systemctl restart: the entries stay
 *    in the store) and started again; the clients finish byte-exact and
 *    their entries leave the store when they exit. test_systemd does the
 *    same under the real systemd.
 *  - restart_firecracker: the same for a Firecracker-protocol client (two
 *    regions of the memory file), which never reconnects.
 *  - remote_takeover: ufault_remote_* (libufault) with takeover_ms 300 and
 *    a daemon without a store, killed and not restarted: the faults that
 *    follow are served in-process (ufault_remote_local() is 1), byte-exact,
 *    those in flight at the kill included.
 *  - remote_resume: ufault_remote_* with the keeper, the daemon killed and
 *    started again: the client resumes its session (LIST: one entry, the
 *    same id), ufault_remote_local() stays 0, faults go on byte-exact;
 *    a region registered while no daemon ran is served too, and one
 *    unregistered meanwhile is gone from the daemon.
 *  - remote_release: taken over in-process, then a daemon comes back with
 *    the session in its store: the client tells it to let go (LIST
 *    empties while the client lives) and goes on serving itself.
 *  - remote_budget: ufault_remote_map() (write-back, MAP_SHARED memfd)
 *    under a budget set with SET_BUDGET: two passes check and write every
 *    page's generation while the daemon evicts (LIST and the client's smaps
 *    stay within the budget's limit); ufaultd is killed -9 during the
 *    second and started again: the session resumes with its budget and
 *    eviction goes on; at the end the file holds every page's last
 *    generation.
 *  - remote_map_orphan: a client with a written ufault_remote_map()
 *    mapping exits while no daemon runs; the next daemon stores the pages
 *    from the memfd in its fd store before it drops the entry: the file
 *    holds them all.
 *  - remote_map_takeover: half a ufault_remote_map() mapping written
 *    through a daemon without a store, which is then killed: the client
 *    takes over, reads that half from the memfd and fills the other from
 *    the file in-process, writes every page, and its unregister writes
 *    them all back.
 *  - store_entries: entries put into a keeper by hand, as a store that
 *    cannot be trusted might hold them: a truncated record, a pipe for a
 *    uffd or for a file, an unaligned region, a name that is not the
 *    record's id, an fd index out of range, an fd no region uses, a
 *    memfd index on a FILE region, a SHARED region whose memfd is its
 *    file, a fork child on the good entry's uffd (two clients on one
 *    uffd), a process that is gone; and one good entry of a live process,
 *    in version 1 (as 0.5 and 0.6 wrote it: no budget). The daemon serves only the good one (which its process then
 *    faults through, byte-exact), drops the rest and deletes them (the
 *    keeper holds nothing in the end), and gives new clients ids above
 *    every id it loaded.
 *  - fork: a client with UFFD_FEATURE_EVENT_FORK touches half its region
 *    and forks; LIST shows the child (pid 0); the child reads the other
 *    half through its own uffd, byte-exact; the parent's remaining faults
 *    work; each is freed when its process exits. Then the same with a
 *    kill -9 and a restart between the fork and the child's reads.
 *  - fork_child_exit_freed: the child exits while its parent lives: it
 *    leaves LIST and the store (the keeper holds the parent's uffd alone),
 *    and the parent is still served.
 *  - fork_outlives_parent: the parent is killed (-9) before the child
 *    reads: the daemon frees the parent, not the child, which then reads
 *    every page its parent never touched, byte-exact, and exits 0; it is
 *    freed once it exited. Then the same with the daemon killed (-9) and
 *    started again after the parent went: the child, rebuilt without a
 *    parent, is served.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <linux/kcmp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>

#include <ufault/ufault.h>

#include "../testutil.h"
#include "client.h"
#include "fdstore.h"
#include "record.h"
#include "zlog.h"

#define PAT_SEED 23
#define FC_SEED 31
#define PAT_LEN (80u << 20)    /* the native clients' backing file */
#define MEM_LEN (24u << 20)    /* Firecracker's guest memory file */
#define REGION_LEN (64u << 20) /* a restart client's region */
#define PROGRESS_PAGES 512     /* a faulting thread reports after this many */
#define WAIT_MS 20000	       /* bound of every poll for the daemon */
#define CHILD_WATCHDOG_S 120

/* Words a child sends up its pipe (besides its client id). */
#define UP_PROGRESS 1ull
#define UP_DONE 2ull
#define UP_REGISTERED 3ull

static char tmpdir[64], sock_path[128], keeper_path[160], fc_sock_path[128], mem_path[128],
    pat_path[128], base_sock_path[128];
static pid_t daemon_pid = -1;
static size_t ps;

/* ------------------------------------------------------------------ */
/* Processes                                                            */
/* ufaultd on sock_path (+ Firecracker's socket), with @extra options. */
static void daemon_start(const char *extra1, const char *extra2)
{
	char *argv[16];
	int n = 0;
	pid_t pid;

	argv[n++] = "ufaultd";
	argv[n++] = "--socket";
	argv[n++] = sock_path;
	argv[n++] = "--firecracker-socket";
	argv[n++] = fc_sock_path;
	argv[n++] = "--mem-file";
	argv[n++] = mem_path;
	argv[n++] = "--workers";
	argv[n++] = "2";
	if (extra1)
		argv[n++] = (char *)extra1;
	if (extra2)
		argv[n++] = (char *)extra2;
	argv[n] = NULL;
	pid = fork();
	if (pid < 0)
		tu_die("fork", errno);
	if (!pid) {
		/* Not past this program, whatever becomes of it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execv(UFAULTD_PATH, argv);
		_exit(127);
	}
	daemon_pid = pid;
	/* Both sockets: the Firecracker one is bound after the native one
	 * (a client of it must not find the last daemon's stale socket). */
	for (int i = 0, up = 0; i < WAIT_MS; i++) {
		int fd = tc_connect(up ? fc_sock_path : sock_path), st;

		if (fd >= 0) {
			close(fd);
			if (up++)
				return;
			continue;
		}
		if (waitpid(pid, &st, WNOHANG) == pid)
			fail_msg("ufaultd exited before listening");
		usleep(1000);
	}
	fail_msg("ufaultd does not accept on %s and %s", sock_path, fc_sock_path);
}

static void daemon_kill9(void)
{
	assert_int_equal(kill(daemon_pid, SIGKILL), 0);
	assert_int_equal(tc_wait_exit(daemon_pid), 128 + SIGKILL);
	daemon_pid = -1;
}

/* The ufaultd-keeper serving @path, or 0. */
static pid_t keeper_pid(const char *path)
{
	struct dirent *e;
	DIR *d = opendir("/proc");
	pid_t found = 0;

	if (!d)
		tu_die("opendir /proc", errno);
	while (!found && (e = readdir(d))) {
		char file[300], cmd[512];
		ssize_t n;
		int fd;

		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(file, sizeof(file), "/proc/%s/cmdline", e->d_name);
		fd = open(file, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, cmd, sizeof(cmd) - 1);
		close(fd);
		if (n <= 0)
			continue;
		cmd[n] = 0;
		/* argv[0] ends in ufaultd-keeper, argv[1] is the path. */
		size_t l0 = strlen(cmd);

		if (l0 >= 14 && !strcmp(cmd + l0 - 14, "ufaultd-keeper") && (ssize_t)l0 + 1 < n &&
		    !strcmp(cmd + l0 + 1, path))
			found = (pid_t)atoi(e->d_name);
	}
	closedir(d);
	return found;
}

/*
 * The keeper holds nothing: killed, a daemon leaves it with no entry, and
 * then it exits (keeper.c) and removes its socket. Bounded poll.
 */
static void keeper_holds_nothing(const char *path)
{
	for (int i = 0; i < WAIT_MS; i++) {
		if (!keeper_pid(path) && access(path, F_OK))
			return;
		usleep(1000);
	}
	fail_msg("the keeper at %s still runs: it holds entries", path);
}

/*
 * Kill -9 the daemon at a moment it read a fault of one of @pids and had
 * not answered it: stopped (SIGSTOP, which it cannot see), it is looked
 * at, and killed where it stands if so, or let go on and stopped again.
 * Bounded: a client that faults without pause (@must) is always caught;
 * one that may have finished faulting is killed anyway after a while.
 */
static void daemon_kill9_mid_fault(const pid_t *pids, unsigned int n, bool must)
{
	for (int i = 0; i < (must ? WAIT_MS : 2000); i++) {
		int st;

		assert_int_equal(kill(daemon_pid, SIGSTOP), 0);
		assert_int_equal(waitpid(daemon_pid, &st, WUNTRACED), daemon_pid);
		assert_true(WIFSTOPPED(st));
		for (unsigned int k = 0; k < n; k++) {
			if (tc_uffd_count(pids[k], "total:") > tc_uffd_count(pids[k], "pending:")) {
				daemon_kill9();
				return;
			}
		}
		assert_int_equal(kill(daemon_pid, SIGCONT), 0);
		usleep(200);
	}
	if (must)
		fail_msg("the daemon was never caught between reading a fault and answering it");
	fprintf(stderr, "note: the daemon was not caught in the middle of a fault\n");
	daemon_kill9();
}

/* Poll (bounded) until @pid has a fault nobody read: it faults while no
 * daemon runs. */
static void wait_pending(pid_t pid)
{
	for (int i = 0; i < WAIT_MS; i++) {
		if (tc_uffd_count(pid, "pending:") > 0)
			return;
		usleep(1000);
	}
	fail_msg("pid %d: no fault pending in its uffd", (int)pid);
}

/* ------------------------------------------------------------------ */
/* LIST                                                                 */
/* ------------------------------------------------------------------ */

static long count_pid(const struct ufault_proto_client *e, long n, pid_t pid)
{
	long k = 0;

	for (long i = 0; i < n; i++)
		k += e[i].pid == (uint32_t)pid;
	return k;
}

/* Poll (bounded) until LIST has no client of @pid (0: none at all). */
static void wait_unlisted(pid_t pid)
{
	struct ufault_proto_client e[TC_LIST_MAX];
	long n = -1;

	for (int i = 0; i < WAIT_MS; i++) {
		n = tc_list_clients(sock_path, e);
		assert_true(n >= 0);
		if (pid ? !tc_find_pid(e, n, pid) : !n)
			return;
		usleep(1000);
	}
	fail_msg("LIST still has %ld clients (pid %d)", n, (int)pid);
}

/* ------------------------------------------------------------------ */
/* Children                                                             */
/* ------------------------------------------------------------------ */

/* The test's side of a child: words come up, bytes go down. */
struct kid {
	pid_t pid;
	int up_r, down_w;
};

/* The child's side. */
struct ctl {
	int up_w, down_r;
};

static void up(const struct ctl *c, uint64_t v)
{
	TU_CHILD_CHECK(write(c->up_w, &v, 8) == 8, 90);
}

static void down(const struct ctl *c)
{
	char b;
	ssize_t n;

	do
		n = read(c->down_r, &b, 1);
	while (n < 0 && errno == EINTR);
	TU_CHILD_CHECK(n == 1, 91);
}

static void kid_spawn(struct kid *k, void (*fn)(const struct ctl *, const void *), const void *arg)
{
	int u[2], d[2];

	if (pipe2(u, O_CLOEXEC) || pipe2(d, O_CLOEXEC))
		tu_die("pipe", errno);
	k->pid = fork();
	if (k->pid < 0)
		tu_die("fork", errno);
	if (!k->pid) {
		struct ctl c = {.up_w = u[1], .down_r = d[0]};

		close(u[0]);
		close(d[1]);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		tu_watchdog(CHILD_WATCHDOG_S);
		fn(&c, arg);
		tu_child_exit(0);
	}
	close(u[1]);
	close(d[0]);
	k->up_r = u[0];
	k->down_w = d[1];
}

static uint64_t kid_recv(const struct kid *k)
{
	uint64_t v;
	size_t got = 0;

	while (got < 8) {
		ssize_t n = read(k->up_r, (char *)&v + got, 8 - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fail_msg("child %d died before reporting", (int)k->pid);
		got += (size_t)n;
	}
	return v;
}

static void kid_expect(const struct kid *k, uint64_t want)
{
	uint64_t v = kid_recv(k);

	if (v != want)
		fail_msg("child %d sent %llu, expected %llu", (int)k->pid, (unsigned long long)v,
			 (unsigned long long)want);
}

static void kid_send(const struct kid *k)
{
	if (write(k->down_w, "g", 1) != 1)
		tu_die("write", errno);
}

static void kid_finish(struct kid *k)
{
	int st = tc_wait_exit(k->pid);

	if (st)
		fail_msg("child %d exited with %d", (int)k->pid, st);
	close(k->up_r);
	close(k->down_w);
}

/* Threads that fault pages [0, @pages) of @base, spread; thread 0 sends
 * UP_PROGRESS once it faulted PROGRESS_PAGES (if @c). */
struct faulter {
	unsigned char *base;
	size_t pages;
	unsigned int id, n;
	const struct ctl *c;
	int *cycle; /* non-NULL: fault again and again until it is 0 (atomic) */
};

struct faulters {
	struct faulter f[4];
	pthread_t th[4];
	unsigned int n;
};

static void *fault_main(void *arg)
{
	const struct faulter *f = arg;
	size_t done = 0;

	do {
		for (size_t pg = f->id; pg < f->pages; pg += f->n) {
			(void)tu_read_byte(f->base + pg * ps + (pg % 7) * 100);
			if (++done == PROGRESS_PAGES && f->c && !f->id)
				up(f->c, UP_PROGRESS);
		}
		/* Dropped, so that the next pass faults again (no
		 * UFFD_EVENT_REMOVE asked for: the pages are only missing). */
		if (f->cycle && !f->id)
			madvise(f->base, f->pages * ps, MADV_DONTNEED);
	} while (f->cycle && __atomic_load_n(f->cycle, __ATOMIC_ACQUIRE));
	return NULL;
}

static void faulters_start(struct faulters *fs, void *base, size_t pages, unsigned int n,
			   const struct ctl *c, int *cycle)
{
	fs->n = n;
	for (unsigned int i = 0; i < n; i++) {
		fs->f[i] = (struct faulter){
		    .base = base, .pages = pages, .id = i, .n = n, .c = c, .cycle = cycle};
		TU_CHILD_CHECK(!pthread_create(&fs->th[i], NULL, fault_main, &fs->f[i]), 92);
	}
}

static void faulters_join(struct faulters *fs)
{
	for (unsigned int i = 0; i < fs->n; i++)
		TU_CHILD_CHECK(!pthread_join(fs->th[i], NULL), 93);
}

static void child_check(const void *p, size_t len, uint64_t off, uint64_t seed, int code)
{
	long bad = tu_pattern_check(p, len, off, seed);

	if (bad >= 0) {
		fprintf(stderr, "pid %d: byte %ld (file offset %llu) is 0x%02x, expected 0x%02x\n",
			(int)getpid(), bad, (unsigned long long)(off + bad),
			((const unsigned char *)p)[bad], tu_pattern(off + bad, seed));
		tu_child_exit(code);
	}
}

/* @p: the file from @off, but [@at, @at + @gone) zeros (given up). Exit
 * codes @code to @code + 2. */
static void check_gone(const unsigned char *p, size_t len, size_t at, size_t gone, uint64_t off,
		       int code)
{
	child_check(p, at, off, PAT_SEED, code);
	for (size_t i = at; i < at + gone; i++)
		TU_CHILD_CHECK(!p[i], code + 1);
	child_check(p + at + gone, len - at - gone, off + at + gone, PAT_SEED, code + 2);
}

/*
 * The restart pattern, for any client: part A faulted by 2 threads (which
 * report progress and go on), part B by 2 more once the test says so (the
 * daemon is dead by then), then every byte checked.
 */
static void fault_in_two_parts(const struct ctl *c, void *a, size_t a_len, void *b, size_t b_len)
{
	struct faulters fa, fb;

	down(c);
	faulters_start(&fa, a, a_len / ps, 2, c, NULL);
	down(c);
	faulters_start(&fb, b, b_len / ps, 2, NULL, NULL);
	faulters_join(&fa);
	faulters_join(&fb);
}

/* ------------------------------------------------------------------ */
/* restart, native                                                      */
/* ------------------------------------------------------------------ */

struct native_arg {
	uint64_t off;
};

static void native_child(const struct ctl *c, const void *arg)
{
	const struct native_arg *a = arg;
	static int cycle = 1;
	struct faulters fa, fb;
	unsigned char *p;
	uint64_t id = 0;
	int uffd, fd, file;

	uffd = tc_uffd(0);
	TU_CHILD_CHECK(uffd >= 0, 2);
	p = tu_map_anon(REGION_LEN, 0);
	TU_CHILD_CHECK(!tc_uffd_register(uffd, p, REGION_LEN), 3);
	fd = tc_connect(sock_path);
	TU_CHILD_CHECK(fd >= 0, 4);
	TU_CHILD_CHECK(!tc_hello(fd, uffd, 0, &id) && id, 5);
	file = open(pat_path, O_RDONLY | O_CLOEXEC);
	TU_CHILD_CHECK(file >= 0, 6);
	TU_CHILD_CHECK(!tc_register(fd, p, REGION_LEN, a->off, 0, file), 7);
	close(file);
	up(c, id);
	/* The connection dies with the daemon: this client never comes back
	 * to it. Its uffd is all a restarted daemon needs. Part A is
	 * faulted over and over until the third word, so that the daemon is
	 * killed in the middle of faults. */
	down(c);
	faulters_start(&fa, p, REGION_LEN / 2 / ps, 2, c, &cycle);
	down(c);
	faulters_start(&fb, p + REGION_LEN / 2, REGION_LEN / 2 / ps, 2, NULL, NULL);
	down(c);
	__atomic_store_n(&cycle, 0, __ATOMIC_RELEASE);
	faulters_join(&fa);
	faulters_join(&fb);
	child_check(p, REGION_LEN, a->off, PAT_SEED, 10);
}

/*
 * Kill -9 the daemon once every kid reported progress, at a moment it read
 * a fault and had not answered it (@mid_fault: the kids fault without
 * pause, so that moment must come), let them fault where
 * nothing was touched yet, wait until each has a fault no one read, and
 * start the daemon again.
 */
static void kill_and_restart(struct kid *k, unsigned int n, bool mid_fault, const char *extra1,
			     const char *extra2)
{
	pid_t pids[3];

	for (unsigned int i = 0; i < n; i++)
		kid_send(&k[i]);
	for (unsigned int i = 0; i < n; i++) {
		kid_expect(&k[i], UP_PROGRESS);
		pids[i] = k[i].pid;
	}
	daemon_kill9_mid_fault(pids, n, mid_fault);
	for (unsigned int i = 0; i < n; i++)
		kid_send(&k[i]);
	for (unsigned int i = 0; i < n; i++)
		wait_pending(k[i].pid);
	daemon_start(extra1, extra2);
}

/* @n native clients, client i on the pattern file from page
 * @stride * i + @first; their ids, as each reports it. */
static void spawn_natives(struct kid *k, struct native_arg *args, uint64_t *id, int n,
			  unsigned int first, unsigned int stride)
{
	for (int i = 0; i < n; i++) {
		args[i].off = (uint64_t)(stride * (unsigned int)i + first) * ps;
		kid_spawn(&k[i], native_child, &args[i]);
	}
	for (int i = 0; i < n; i++)
		id[i] = kid_recv(&k[i]);
}

static void test_restart_native(void **state)
{
	struct ufault_proto_client e[TC_LIST_MAX];
	struct native_arg args[3];
	struct kid k[3];
	uint64_t id[3];
	long n;

	daemon_start(NULL, NULL);
	spawn_natives(k, args, id, 3, 1, 5);
	kill_and_restart(k, 3, true, NULL, NULL);

	/* Served again before the daemon accepted anything. */
	n = tc_list_clients(sock_path, e);
	assert_int_equal(n, 3);
	for (int i = 0; i < 3; i++) {
		const struct ufault_proto_client *c = tc_find_pid(e, n, k[i].pid);

		assert_non_null(c);
		assert_int_equal(c->id, id[i]);
		assert_int_equal(c->regions, 1);
		assert_int_equal(c->uid, geteuid());
		assert_int_equal(c->firecracker, 0);
	}
	for (int i = 0; i < 3; i++)
		kid_send(&k[i]); /* part A: one last pass */
	for (int i = 0; i < 3; i++)
		kid_finish(&k[i]);
	/* Gone processes: freed (pidfd), and their entries with them. */
	wait_unlisted(0);
	daemon_kill9();
	keeper_holds_nothing(keeper_path);
}

/* ------------------------------------------------------------------ */
/* the keeper killed                                                    */
/* ------------------------------------------------------------------ */

/* Userfaultfds @pid holds. */
static int count_uffds(pid_t pid)
{
	return (int)tc_uffd_count(pid, NULL);
}

static void test_keeper_killed(void **state)
{
	struct ufault_proto_client e[TC_LIST_MAX];
	struct native_arg args[2];
	pid_t old, now = 0;
	struct kid k[2];
	uint64_t id[2];
	long n;

	daemon_start(NULL, NULL);
	spawn_natives(k, args, id, 2, 4, 7);
	old = keeper_pid(keeper_path);
	assert_true(old > 0);
	assert_int_equal(count_uffds(old), 2);
	assert_int_equal(kill(old, SIGKILL), 0);
	/* A new keeper (not the old one's pid), holding both again. */
	for (int i = 0; i < WAIT_MS; i++) {
		now = keeper_pid(keeper_path);
		if (now > 0 && now != old && count_uffds(now) == 2)
			break;
		usleep(1000);
	}
	assert_true(now > 0 && now != old);
	assert_int_equal(count_uffds(now), 2);

	kill_and_restart(k, 2, true, NULL, NULL);
	n = tc_list_clients(sock_path, e);
	assert_int_equal(n, 2);
	for (int i = 0; i < 2; i++)
		assert_int_equal(tc_find_pid(e, n, k[i].pid)->id, id[i]);
	for (int i = 0; i < 2; i++)
		kid_send(&k[i]);
	for (int i = 0; i < 2; i++)
		kid_finish(&k[i]);
	wait_unlisted(0);
	daemon_kill9();
	keeper_holds_nothing(keeper_path);
}

/* ------------------------------------------------------------------ */
/* restart under systemd (this process plays it)                        */
/* ------------------------------------------------------------------ */

#define SD_MAX_FDS 64

/* systemd's side: the notify socket and the fd store it feeds. */
static struct {
	pthread_mutex_t lock;
	int notify;    /* bound to @name */
	char name[64]; /* "@..." */
	int fds[SD_MAX_FDS];
	char names[SD_MAX_FDS][UFD_STORE_MAX_NAME + 1];
	unsigned int nr;
	unsigned int stopping; /* STOPPING=1 messages seen */
} sd = {.lock = PTHREAD_MUTEX_INITIALIZER};

static bool sd_same_file(int a, int b)
{
	return syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, a, b) == 0;
}

/* One sd_notify datagram, as systemd takes it (under sd.lock). */
static void sd_message(char *msg, int *fds, unsigned int nr)
{
	const char *fdname = strstr(msg, "FDNAME=");
	char name[UFD_STORE_MAX_NAME + 1] = "";

	if (fdname)
		snprintf(name, sizeof(name), "%.*s", (int)strcspn(fdname + 7, "\n"), fdname + 7);
	if (strstr(msg, "STOPPING=1"))
		sd.stopping++;
	if (strstr(msg, "FDSTOREREMOVE=1")) {
		for (unsigned int i = 0; i < sd.nr;) {
			if (strcmp(sd.names[i], name)) {
				i++;
				continue;
			}
			close(sd.fds[i]);
			if (i != --sd.nr) {
				sd.fds[i] = sd.fds[sd.nr];
				strcpy(sd.names[i], sd.names[sd.nr]);
			}
		}
	}
	for (unsigned int k = 0; k < nr; k++) {
		bool dup = false;

		/* systemd keeps one copy of an open file (service.c,
		 * service_add_fd_store: same_fd()). */
		for (unsigned int i = 0; i < sd.nr && !dup; i++)
			dup = sd_same_file(sd.fds[i], fds[k]);
		if (dup || !strstr(msg, "FDSTORE=1") || sd.nr == SD_MAX_FDS) {
			close(fds[k]);
			continue;
		}
		sd.fds[sd.nr] = fds[k];
		strcpy(sd.names[sd.nr], name);
		sd.nr++;
	}
}

/* Takes every datagram there is (no thread: under TSan a process that
 * forks children which start threads may not have threads of its own). */
static void sd_drain(void)
{
	pthread_mutex_lock(&sd.lock);
	for (;;) {
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int) * 32)];
		} control;
		char msg[512];
		struct iovec iov = {.iov_base = msg, .iov_len = sizeof(msg) - 1};
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = control.buf,
				    .msg_controllen = sizeof(control.buf)};
		int fds[32];
		unsigned int nr = 0;
		struct cmsghdr *cm;
		ssize_t n = recvmsg(sd.notify, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n < 0)
			break;
		msg[n] = 0;
		for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			unsigned int k = (unsigned int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));

			memcpy(fds + nr, CMSG_DATA(cm), sizeof(int) * k);
			nr += k;
		}
		sd_message(msg, fds, nr);
	}
	pthread_mutex_unlock(&sd.lock);
}

/* Until every datagram sent so far is in the store (bounded). */
static void sd_settle(void)
{
	for (int i = 0; i < WAIT_MS; i++) {
		int q = 1;

		sd_drain();
		pthread_mutex_lock(&sd.lock);
		if (ioctl(sd.notify, FIONREAD, &q))
			q = 1;
		pthread_mutex_unlock(&sd.lock);
		if (!q)
			return;
		usleep(1000);
	}
	fail_msg("the notify socket is never empty");
}

/* Fds named @name in the store (under the lock). */
static unsigned int sd_count(const char *name)
{
	unsigned int n = 0;

	sd_drain();
	pthread_mutex_lock(&sd.lock);
	for (unsigned int i = 0; i < sd.nr; i++)
		n += !name || !strcmp(sd.names[i], name);
	pthread_mutex_unlock(&sd.lock);
	return n;
}

/* ufaultd as systemd starts it: the listener @lfd and the store's fds
 * from fd 3 on, named, and $NOTIFY_SOCKET and $FDSTORE. */
static void sd_daemon_start(int lfd)
{
	char names[2048] = "ufaultd";
	int fds[SD_MAX_FDS + 1], nr = 0;
	pid_t pid;

	sd_settle();
	pthread_mutex_lock(&sd.lock);
	fds[nr++] = lfd;
	for (unsigned int i = 0; i < sd.nr; i++) {
		fds[nr++] = sd.fds[i];
		snprintf(names + strlen(names), sizeof(names) - strlen(names), ":%s", sd.names[i]);
	}
	pid = fork();
	if (pid < 0)
		tu_die("fork", errno);
	if (!pid) {
		char *argv[] = {"ufaultd", "--workers", "2", NULL};
		char env_pid[32], env_fds[32], env_names[2100], env_notify[96];
		char *envp[] = {env_pid, env_fds, env_names, env_notify, "FDSTORE=64", NULL};

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		/* Out of the way first, then in place (dup2 clears CLOEXEC). */
		for (int i = 0; i < nr; i++)
			if ((fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 200)) < 0)
				_exit(126);
		for (int i = 0; i < nr; i++)
			if (dup2(fds[i], 3 + i) < 0)
				_exit(126);
		snprintf(env_pid, sizeof(env_pid), "LISTEN_PID=%d", (int)getpid());
		snprintf(env_fds, sizeof(env_fds), "LISTEN_FDS=%d", nr);
		snprintf(env_names, sizeof(env_names), "LISTEN_FDNAMES=%s", names);
		snprintf(env_notify, sizeof(env_notify), "NOTIFY_SOCKET=%s", sd.name);
		execve(UFAULTD_PATH, argv, envp);
		_exit(127);
	}
	pthread_mutex_unlock(&sd.lock);
	daemon_pid = pid;
	for (int i = 0; i < WAIT_MS; i++) {
		struct ufault_proto_client e[TC_LIST_MAX];
		int st;

		if (tc_list_clients(sock_path, e) >= 0)
			return;
		if (waitpid(pid, &st, WNOHANG) == pid)
			fail_msg("ufaultd exited at start");
		usleep(1000);
	}
	fail_msg("ufaultd does not answer");
}

static void test_restart_systemd(void **state)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	struct ufault_proto_client e[TC_LIST_MAX];
	char entry[32], saved[128];
	struct native_arg args[2];
	int lfd;
	struct kid k[2];
	pid_t pids[2];
	uint64_t id[2];
	long n;

	/* systemd's: the socket (ufaultd.socket) and the notify socket. */
	strcpy(saved, sock_path);
	snprintf(sock_path, sizeof(sock_path), "%s/systemd.sock", tmpdir);
	strcpy(a.sun_path, sock_path);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(lfd, 64), 0);
	snprintf(sd.name, sizeof(sd.name), "@ufault-test-systemd-%d", (int)getpid());
	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	memcpy(a.sun_path + 1, sd.name + 1, strlen(sd.name) - 1);
	sd.notify = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(sd.notify >= 0);
	assert_int_equal(
	    bind(sd.notify, (struct sockaddr *)&a,
		 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(sd.name))),
	    0);

	sd_daemon_start(lfd);
	spawn_natives(k, args, id, 2, 2, 3);
	for (int i = 0; i < 2; i++)
		pids[i] = k[i].pid;
	/* Each entry: its record's memfd, the uffd, the pattern file (both
	 * clients' files are one file, opened apart: systemd keeps both). */
	sd_settle();
	for (int i = 0; i < 2; i++) {
		snprintf(entry, sizeof(entry), "c%llu", (unsigned long long)id[i]);
		assert_int_equal(sd_count(entry), 3);
	}

	/* Killed mid-fault, started again from systemd's store. */
	for (int i = 0; i < 2; i++)
		kid_send(&k[i]);
	for (int i = 0; i < 2; i++)
		kid_expect(&k[i], UP_PROGRESS);
	daemon_kill9_mid_fault(pids, 2, true);
	for (int i = 0; i < 2; i++)
		kid_send(&k[i]);
	for (int i = 0; i < 2; i++)
		wait_pending(pids[i]);
	sd_daemon_start(lfd);
	n = tc_list_clients(sock_path, e);
	assert_int_equal(n, 2);
	for (int i = 0; i < 2; i++)
		assert_int_equal(tc_find_pid(e, n, pids[i])->id, id[i]);

	/* systemctl restart: SIGTERM, and the store keeps the entries. */
	assert_int_equal(kill(daemon_pid, SIGTERM), 0);
	assert_int_equal(tc_wait_exit(daemon_pid), 0);
	daemon_pid = -1;
	sd_settle();
	for (int i = 0; i < 2; i++) {
		snprintf(entry, sizeof(entry), "c%llu", (unsigned long long)id[i]);
		assert_int_equal(sd_count(entry), 3);
	}
	sd_daemon_start(lfd);
	n = tc_list_clients(sock_path, e);
	assert_int_equal(n, 2);
	for (int i = 0; i < 2; i++)
		assert_int_equal(tc_find_pid(e, n, pids[i])->id, id[i]);

	for (int i = 0; i < 2; i++)
		kid_send(&k[i]);
	for (int i = 0; i < 2; i++)
		kid_finish(&k[i]);
	wait_unlisted(0);
	/* Gone clients leave the store. */
	for (int i = 0; i < WAIT_MS && sd_count(NULL); i++)
		usleep(1000);
	assert_int_equal(sd_count(NULL), 0);
	assert_int_equal(kill(daemon_pid, SIGTERM), 0);
	assert_int_equal(tc_wait_exit(daemon_pid), 0);
	daemon_pid = -1;

	close(sd.notify);
	close(lfd);
	strcpy(sock_path, saved);
}

/* ------------------------------------------------------------------ */
/* restart, Firecracker                                                 */
/* ------------------------------------------------------------------ */

#define FC_REGION (8u << 20)
#define FC_BALLOON (1u << 20) /* of the second region, given up before the kill */

static void fc_child(const struct ctl *c, const void *arg)
{
	const uint64_t off[2] = {3 * ps, 12u << 20};
	unsigned char *base[2];
	char json[512];
	int uffd, sock;
	size_t n = 0;

	(void)arg;
	/* As Firecracker's UffdBuilder: EVENT_REMOVE, O_CLOEXEC | O_NONBLOCK. */
	uffd = tc_uffd(UFFD_FEATURE_EVENT_REMOVE);
	TU_CHILD_CHECK(uffd >= 0, 2);
	for (int i = 0; i < 2; i++) {
		base[i] = tu_map_anon(FC_REGION, 0);
		TU_CHILD_CHECK(!tc_uffd_register(uffd, base[i], FC_REGION), 3);
	}
	n += (size_t)snprintf(json + n, sizeof(json) - n, "[");
	for (int i = 0; i < 2; i++)
		n += (size_t)snprintf(json + n, sizeof(json) - n,
				      "%s{\"base_host_virt_addr\":%llu,\"size\":%u,\"offset\":%llu,"
				      "\"page_size\":%zu,\"page_size_kib\":%zu}",
				      i ? "," : "", (unsigned long long)(uintptr_t)base[i],
				      FC_REGION, (unsigned long long)off[i], ps, ps);
	n += (size_t)snprintf(json + n, sizeof(json) - n, "]");
	sock = tc_connect(fc_sock_path);
	TU_CHILD_CHECK(sock >= 0, 4);
	TU_CHILD_CHECK(!tc_send_raw(sock, json, n, &uffd, 1), 5);
	/* A balloon inflated over the start of the second region before the
	 * daemon is killed (the madvise returns once it read the event): it
	 * reads zeros after the restart too, not the memory file. */
	TU_CHILD_CHECK(!madvise(base[1], FC_BALLOON, MADV_DONTNEED), 6);
	up(c, 0);
	/* Firecracker never sends more, nor reconnects. */
	fault_in_two_parts(c, base[0], FC_REGION, base[1], FC_REGION);
	child_check(base[0], FC_REGION, off[0], FC_SEED, 10);
	for (size_t i = 0; i < FC_BALLOON; i++)
		TU_CHILD_CHECK(!base[1][i], 12);
	child_check(base[1] + FC_BALLOON, FC_REGION - FC_BALLOON, off[1] + FC_BALLOON, FC_SEED, 11);
}

static void test_restart_firecracker(void **state)
{
	struct ufault_proto_client e[TC_LIST_MAX];
	const struct ufault_proto_client *c = NULL;
	struct kid k;
	uint64_t id;
	long n = 0;

	/* The keeper named, this time. */
	snprintf(keeper_path, sizeof(keeper_path), "%s/keeper.sock", tmpdir);
	daemon_start("--keeper", keeper_path);
	kid_spawn(&k, fc_child, NULL);
	kid_expect(&k, 0);
	/* Served once LIST has it (the handshake needs no answer). */
	for (int i = 0; i < WAIT_MS && !c; i++) {
		n = tc_list_clients(sock_path, e);
		c = tc_find_pid(e, n, k.pid);
		if (!c)
			usleep(1000);
	}
	assert_non_null(c);
	id = c->id;
	kill_and_restart(&k, 1, false, "--keeper", keeper_path);

	n = tc_list_clients(sock_path, e);
	c = tc_find_pid(e, n, k.pid);
	assert_non_null(c);
	assert_int_equal(c->id, id);
	assert_int_equal(c->firecracker, 1);
	assert_int_equal(c->regions, 2);
	kid_finish(&k);
	/* The VM exited: its pidfd said so. */
	wait_unlisted(0);
	daemon_kill9();
	keeper_holds_nothing(keeper_path);
	snprintf(keeper_path, sizeof(keeper_path), "%s.keeper", sock_path);
}

/* ------------------------------------------------------------------ */
/* ufault_remote: takeover, resume, release                             */
/* ------------------------------------------------------------------ */

#define REMOTE_LEN (32u << 20)
#define REMOTE_GONE (1u << 20) /* its end, given up before the daemon dies */

enum remote_mode { TAKEOVER, RESUME, RELEASE, AFRESH };

struct remote_arg {
	enum remote_mode mode;
	uint64_t off;
};

static void remote_child(const struct ctl *c, const void *arg)
{
	const struct remote_arg *a = arg;
	struct ufault_remote_config cfg;
	struct ufault_remote *rm;
	unsigned char *p, *q = NULL, *r3 = NULL;
	const uint64_t q_off = 70u << 20;
	const size_t q_len = 4u << 20;
	int file;

	ufault_remote_config_init(&cfg);
	cfg.socket_path = sock_path;
	/* Resume: far longer than a restart takes, so that the daemon, not
	 * the clock, decides. */
	cfg.takeover_ms = a->mode == RESUME || a->mode == AFRESH ? 100000 : 300;
	cfg.nr_workers = 2;
	TU_CHILD_CHECK(!ufault_remote_connect(&rm, &cfg), 2);
	file = open(pat_path, O_RDONLY | O_CLOEXEC);
	TU_CHILD_CHECK(file >= 0, 3);
	p = tu_map_anon(REMOTE_LEN, 0);
	TU_CHILD_CHECK(!ufault_remote_register(rm, p, REMOTE_LEN, file, a->off, 0), 4);
	/* Its end given up (read zeros from then on), while the first daemon
	 * serves: a resumed daemon knows it from its store, a takeover from
	 * the log the daemon passed with its answer to HELLO. */
	TU_CHILD_CHECK(!madvise(p + REMOTE_LEN - REMOTE_GONE, REMOTE_GONE, MADV_DONTNEED), 16);
	if (a->mode == RESUME) {
		r3 = tu_map_anon(q_len, 0);
		TU_CHILD_CHECK(!ufault_remote_register(rm, r3, q_len, -1, 0, 0), 5);
	}
	up(c, 0);

	if (a->mode == RESUME) {
		struct faulters fa, fb;

		/* As fault_in_two_parts, and while the daemon is dead (the test
		 * starts the next one once told): a region unregistered and
		 * one registered, which the resumed daemon must learn. */
		down(c);
		faulters_start(&fa, p, REMOTE_LEN / 2 / ps, 2, c, NULL);
		down(c);
		TU_CHILD_CHECK(!ufault_remote_unregister(rm, r3, q_len), 6);
		q = tu_map_anon(q_len, 0);
		TU_CHILD_CHECK(!ufault_remote_register(rm, q, q_len, file, q_off, 0), 7);
		up(c, UP_REGISTERED);
		faulters_start(&fb, p + REMOTE_LEN / 2, REMOTE_LEN / 2 / ps, 2, NULL, NULL);
		tu_touch_spread(q, q_len / ps, ps, 2);
		faulters_join(&fa);
		faulters_join(&fb);
		child_check(q, q_len, q_off, PAT_SEED, 11);
	} else {
		fault_in_two_parts(c, p, REMOTE_LEN / 2, p + REMOTE_LEN / 2, REMOTE_LEN / 2);
	}
	check_gone(p, REMOTE_LEN, REMOTE_LEN - REMOTE_GONE, REMOTE_GONE, a->off, 20);
	TU_CHILD_CHECK(ufault_remote_local(rm) == (a->mode != RESUME && a->mode != AFRESH), 12);
	if (a->mode == RELEASE) {
		/* A daemon comes back with the session in its store: it is
		 * told to let go; this process goes on serving itself. */
		up(c, UP_DONE);
		down(c);
		q = tu_map_anon(q_len, 0);
		TU_CHILD_CHECK(!ufault_remote_register(rm, q, q_len, file, q_off, 0), 13);
		tu_touch_spread(q, q_len / ps, ps, 2);
		child_check(q, q_len, q_off, PAT_SEED, 14);
		TU_CHILD_CHECK(ufault_remote_local(rm) == 1, 15);
	}
	up(c, UP_DONE);
	down(c);
	ufault_remote_close(rm);
	close(file);
}

/* A remote_child as @a says, the daemon killed -9 while its part A faults. */
static void remote_kill9_mid_fault(struct kid *k, const struct remote_arg *a)
{
	kid_spawn(k, remote_child, a);
	kid_expect(k, 0);
	kid_send(k);
	kid_expect(k, UP_PROGRESS);
	daemon_kill9_mid_fault(&k->pid, 1, false);
}

static void test_remote_takeover(void **state)
{
	struct remote_arg a = {.mode = TAKEOVER, .off = 9 * ps};
	struct kid k;

	/* No store: nothing could ever resume the session. */
	daemon_start("--no-keeper", NULL);
	remote_kill9_mid_fault(&k, &a);
	kid_send(&k);
	/* Not restarted: served in-process, every byte. */
	kid_expect(&k, UP_DONE);
	kid_send(&k);
	kid_finish(&k);
}

static void test_remote_resume(void **state)
{
	struct remote_arg a = {.mode = RESUME, .off = 13 * ps};
	struct ufault_proto_client e[TC_LIST_MAX];
	const struct ufault_proto_client *c;
	struct kid k;
	uint64_t id;
	long n;

	daemon_start(NULL, NULL);
	kid_spawn(&k, remote_child, &a);
	kid_expect(&k, 0);
	n = tc_list_clients(sock_path, e);
	c = tc_find_pid(e, n, k.pid);
	assert_non_null(c);
	assert_int_equal(c->regions, 2);
	id = c->id;
	kid_send(&k);
	kid_expect(&k, UP_PROGRESS);
	daemon_kill9_mid_fault(&k.pid, 1, false);
	kid_send(&k);
	kid_expect(&k, UP_REGISTERED); /* and unregistered, with no daemon */
	wait_pending(k.pid);
	daemon_start(NULL, NULL);
	kid_expect(&k, UP_DONE);
	/* Resumed, not started afresh: one session, the same id (a new one
	 * would be a second entry while the old one waits for the process
	 * to exit), and the regions as the client has them now: the first
	 * and the one registered while no daemon ran, not the one it
	 * unregistered meanwhile. */
	n = tc_list_clients(sock_path, e);
	assert_int_equal(count_pid(e, n, k.pid), 1);
	c = tc_find_pid(e, n, k.pid);
	assert_int_equal(c->id, id);
	assert_int_equal(c->regions, 2);
	kid_send(&k);
	kid_finish(&k);
	wait_unlisted(0);
	daemon_kill9();
	keeper_holds_nothing(keeper_path);
}

/*
 * A daemon restarted with no fd store does not know the client: it starts
 * a new session (HELLO with the uffd and every region again), and the
 * ranges the client gave up under the first daemon still read as zeros:
 * the HELLO carries the log the first daemon's answer gave it.
 */
static void test_remote_afresh(void **state)
{
	struct remote_arg a = {.mode = AFRESH, .off = 21 * ps};
	struct ufault_proto_client e[TC_LIST_MAX];
	struct kid k;
	long n;

	daemon_start("--no-keeper", NULL);
	remote_kill9_mid_fault(&k, &a);
	daemon_start("--no-keeper", NULL);
	kid_send(&k);
	kid_expect(&k, UP_DONE);
	/* A new session, served by the new daemon (the client says it is not
	 * serving itself), with its region. */
	n = tc_list_clients(sock_path, e);
	assert_int_equal(count_pid(e, n, k.pid), 1);
	assert_int_equal(tc_find_pid(e, n, k.pid)->regions, 1);
	kid_send(&k);
	kid_finish(&k);
	wait_unlisted(0);
	daemon_kill9();
}

static void test_remote_release(void **state)
{
	struct remote_arg a = {.mode = RELEASE, .off = 17 * ps};
	struct kid k;

	daemon_start(NULL, NULL);
	remote_kill9_mid_fault(&k, &a);
	kid_send(&k);
	/* Taken over. The keeper still holds the session. */
	kid_expect(&k, UP_DONE);
	assert_true(keeper_pid(keeper_path) > 0);
	daemon_start(NULL, NULL);
	/* The client makes the daemon let the session go. */
	wait_unlisted(k.pid);
	kid_send(&k);
	kid_expect(&k, UP_DONE);
	kid_send(&k);
	kid_finish(&k);
	daemon_kill9();
	keeper_holds_nothing(keeper_path);
}

/*
 * A ufault_remote client forks: the child reads its copy of the region
 * through its own uffd (the daemon serves it as a client of its own); the
 * parent's handle answers ECHILD there and its close in the child leaves
 * the parent's session, monitor and registrations alone. Before the fork,
 * ufault_remote_stats() gives the daemon's counters of the client (one
 * region, the pages touched); in the child it answers ECHILD.
 */
static void remote_fork_child(const struct ctl *c, const void *arg)
{
	const size_t len = 8u << 20, half = len / 2, gone = 1u << 20;
	const uint64_t off = 5 * ps, q_off = 40u << 20;
	struct ufault_remote_config cfg;
	struct ufault_remote *rm;
	unsigned char *p, *q;
	pid_t kid;
	int file;

	(void)arg;
	ufault_remote_config_init(&cfg);
	cfg.socket_path = sock_path;
	cfg.takeover_ms = 100000; /* the daemon stays: never taken over */
	TU_CHILD_CHECK(!ufault_remote_connect(&rm, &cfg), 2);
	file = open(pat_path, O_RDONLY | O_CLOEXEC);
	TU_CHILD_CHECK(file >= 0, 3);
	p = tu_map_anon(len, 0);
	q = tu_map_anon(len, 0);
	TU_CHILD_CHECK(!ufault_remote_register(rm, p, len, file, off, 0), 4);
	tu_touch_spread(p, half / ps, ps, 2);
	child_check(p, half, off, PAT_SEED, 5);
	/* The daemon's counters of this client: the half touched, one region. */
	{
		struct ufault_proto_stats st;

		TU_CHILD_CHECK(ufault_remote_stats(rm, NULL) == -EINVAL, 30);
		TU_CHILD_CHECK(ufault_remote_stats(NULL, &st) == -EINVAL, 31);
		TU_CHILD_CHECK(!ufault_remote_stats(rm, &st), 32);
		TU_CHILD_CHECK(st.regions == 1 && st.pages >= half / ps && st.faults > 0 &&
				   st.faults <= st.pages && st.errors == 0,
			       33);
	}
	/* Given up before the fork: zeros in the parent, and in the child's
	 * copy (the daemon gives the child its parent's removed ranges). */
	TU_CHILD_CHECK(!madvise(p + half, gone, MADV_DONTNEED), 12);
	/* fork(2) returns once the daemon read UFFD_EVENT_FORK. */
	kid = fork();
	TU_CHILD_CHECK(kid >= 0, 6);
	if (!kid) {
		TU_CHILD_CHECK(ufault_remote_register(rm, q, len, file, q_off, 0) == -ECHILD, 20);
		TU_CHILD_CHECK(ufault_remote_unregister(rm, p, len) == -ECHILD, 21);
		TU_CHILD_CHECK(ufault_remote_local(rm) == 0, 22);
		{
			struct ufault_proto_stats st;

			TU_CHILD_CHECK(ufault_remote_stats(rm, &st) == -ECHILD, 24);
		}
		ufault_remote_close(rm);
		/* Read in order by this one thread (a child of a threaded
		 * process starts none: TSan refuses). */
		check_gone(p, len, half, gone, off, 23);
		_exit(0);
	}
	TU_CHILD_CHECK(tc_wait_exit(kid) == 0, 7);
	/* The parent's session is whole: its other half, a new region. */
	tu_touch_spread(p + half, half / ps, ps, 2);
	check_gone(p, len, half, gone, off, 13);
	TU_CHILD_CHECK(!ufault_remote_register(rm, q, len, file, q_off, 0), 9);
	tu_touch_spread(q, len / ps, ps, 2);
	child_check(q, len, q_off, PAT_SEED, 10);
	TU_CHILD_CHECK(ufault_remote_local(rm) == 0, 11);
	ufault_remote_close(rm);
	close(file);
}

static void test_remote_fork(void **state)
{
	struct kid k;

	daemon_start(NULL, NULL);
	kid_spawn(&k, remote_fork_child, NULL);
	kid_finish(&k);
	wait_unlisted(0);
	daemon_kill9();
	keeper_holds_nothing(keeper_path);
}

/* ------------------------------------------------------------------ */
/* Store entries that cannot be trusted                                 */
/* ------------------------------------------------------------------ */

#define HELD_LEN (8u << 20)
#define HELD_OFF (3u << 20)

/* /proc/PID/stat field 22 (as the daemon reads it). */
static uint64_t start_time(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long v = 0;
	int fd, field = 2;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(n > 0);
	buf[n] = 0;
	p = strrchr(buf, ')');
	assert_non_null(p);
	for (; *p && field < 22; p++)
		field += *p == ' ';
	assert_int_equal(sscanf(p, "%llu", &v), 1);
	return v;
}

/* A process whose uffd the test puts into the store by hand: it sends
 * the uffd over @c's socket (fd 3 of the pair), then faults when told. */
struct held_arg {
	int sock;
	unsigned char **addr;
};

static void held_child(const struct ctl *c, const void *arg)
{
	const struct held_arg *a = arg;
	unsigned char *p = tu_map_anon(HELD_LEN, 0);
	uint64_t addr = (uintptr_t)p;
	int uffd = tc_uffd(0);

	TU_CHILD_CHECK(uffd >= 0, 2);
	TU_CHILD_CHECK(!tc_uffd_register(uffd, p, HELD_LEN), 3);
	TU_CHILD_CHECK(!tc_send_raw(a->sock, &addr, 8, &uffd, 1), 4);
	up(c, 0);
	down(c);
	tu_touch_spread(p, HELD_LEN / ps, ps, 2);
	child_check(p, HELD_LEN, HELD_OFF, PAT_SEED, 10);
}

/* A record of @nr regions; the caller spoils what it wants. */
static size_t record(unsigned char *buf, uint64_t id, pid_t pid, uint64_t start, uint64_t addr,
		     unsigned int nr, unsigned int nr_fds)
{
	struct ufd_rec_head h = {
	    .magic = UFD_REC_MAGIC,
	    .version = UFD_REC_VERSION,
	    .kind = 0,
	    .id = id,
	    .start_time = start,
	    .pid = (uint32_t)pid,
	    .uid = geteuid(),
	    .gid = getegid(),
	    .nr_regions = nr,
	    .nr_fds = nr_fds,
	};
	struct ufd_rec_region r = {
	    .r = {.start = addr,
		  .len = HELD_LEN,
		  .offset = HELD_OFF,
		  .source = UFAULT_PROTO_SRC_FILE},
	    .fd = 1,
	};

	memcpy(buf, &h, sizeof(h));
	for (unsigned int i = 0; i < nr; i++)
		memcpy(buf + sizeof(h) + i * sizeof(r), &r, sizeof(r));
	return sizeof(h) + nr * sizeof(r);
}

static void put(struct ufd_store *st, const char *name, const void *rec, size_t len, const int *fds,
		unsigned int nr)
{
	assert_int_equal(ufd_store_put(st, name, rec, len, fds, nr), 0);
}

static void test_store_entries(void **state)
{
	struct ufault_proto_client e[TC_LIST_MAX];
	unsigned char rec[4096];
	struct ufd_rec_head h;
	struct ufd_rec_region r;
	struct ufd_store st;
	uint64_t addr = 0, start, id;
	int sp[2], uffd = -1, file, file2, pfd[2], fds[3], fd, hold, zfd;
	unsigned int nfds = 0;
	pid_t dead;
	size_t len;
	long n;
	struct kid k;

	/* A live process and its uffd. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	{
		struct held_arg a = {.sock = sp[1]};

		kid_spawn(&k, held_child, &a);
	}
	kid_expect(&k, 0);
	{
		struct iovec iov = {.iov_base = &addr, .iov_len = 8};
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int))];
		} control;
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = control.buf,
				    .msg_controllen = sizeof(control.buf)};

		assert_int_equal(recvmsg(sp[0], &mh, MSG_CMSG_CLOEXEC), 8);
		assert_non_null(CMSG_FIRSTHDR(&mh));
		memcpy(&uffd, CMSG_DATA(CMSG_FIRSTHDR(&mh)), sizeof(int));
		nfds = 1;
	}
	assert_true(nfds == 1 && uffd >= 0 && addr);
	start = start_time(k.pid);
	dead = fork();
	if (!dead)
		_exit(0);
	assert_int_equal(tc_wait_exit(dead), 0);
	file = open(pat_path, O_RDONLY | O_CLOEXEC);
	file2 = open(mem_path, O_RDONLY | O_CLOEXEC);
	assert_true(file >= 0 && file2 >= 0);
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	fds[0] = uffd;
	fds[1] = file;
	fds[2] = pfd[0];

	/* No daemon runs: this process is the keeper's daemon for now. */
	assert_int_equal(ufd_store_open(&st, 0, keeper_path, UFAULTD_KEEPER_BIN), 0);
	len = record(rec, 7, k.pid, start, addr, 1, 2);
	/* The good one, as ufaultd 0.5 and 0.6 wrote it: version 1, its head
	 * without the budget. */
	memcpy(&h, rec, sizeof(h));
	h.version = 1;
	memcpy(rec, &h, UFD_REC_HEAD_V1);
	memmove(rec + UFD_REC_HEAD_V1, rec + sizeof(h), len - sizeof(h));
	put(&st, "c7", rec, len - (sizeof(h) - UFD_REC_HEAD_V1), fds, 2);
	len = record(rec, 40, dead, start, addr, 1, 2);
	put(&st, "c40", rec, len, fds, 2);	     /* its process is gone */
	put(&st, "c1", rec, sizeof(h) + 10, fds, 2); /* truncated */
	len = record(rec, 2, k.pid, start, addr, 1, 2);
	put(&st, "c2", rec, len, (int[]){pfd[0], file}, 2); /* a pipe for a uffd */
	len = record(rec, 3, k.pid, start, addr + 4096 + 1, 1, 2);
	put(&st, "c3", rec, len, fds, 2); /* unaligned */
	len = record(rec, 33, k.pid, start, addr, 1, 2);
	put(&st, "c4", rec, len, fds, 2); /* named for another id */
	len = record(rec, 5, k.pid, start, addr, 1, 2);
	memcpy(&r, rec + sizeof(h), sizeof(r));
	r.fd = 2;
	memcpy(rec + sizeof(h), &r, sizeof(r));
	put(&st, "c5", rec, len, fds, 2); /* fd index out of range */
	len = record(rec, 6, k.pid, start, addr, 1, 3);
	put(&st, "c6", rec, len, (int[]){uffd, file, file2}, 3); /* an fd no region uses */
	len = record(rec, 9, k.pid, start, addr, 1, 3);
	put(&st, "c9", rec, len, fds, 3); /* a pipe for a file */
	len = record(rec, 8, 0, 0, addr, 1, 2);
	memcpy(&h, rec, sizeof(h));
	h.parent = 99;
	memcpy(rec, &h, sizeof(h));
	put(&st, "c8", rec, len, fds, 2); /* a fork child on c7's uffd: two on one */
	len = record(rec, 10, k.pid, start, addr, 1, 2);
	memcpy(&h, rec, sizeof(h));
	h.zlog = 1;
	memcpy(rec, &h, sizeof(h));
	put(&st, "c10", rec, len, fds, 2); /* the backing file as the removed-ranges log */
	len = record(rec, 12, k.pid, start, addr, 1, 3);
	memcpy(&r, rec + sizeof(h), sizeof(r));
	r.mem = 2;
	memcpy(rec + sizeof(h), &r, sizeof(r));
	put(&st, "c12", rec, len, (int[]){uffd, file, file2}, 3); /* a memfd for a FILE region */
	len = record(rec, 13, k.pid, start, addr, 1, 2);
	memcpy(&r, rec + sizeof(h), sizeof(r));
	r.r.source = UFAULT_PROTO_SRC_SHARED;
	r.r.page_size = 0;
	r.mem = 1;
	memcpy(rec + sizeof(h), &r, sizeof(r));
	put(&st, "c13", rec, len, fds, 2); /* SHARED: its file as its memfd */
	{
		struct ufault_proto_zlog_head zh = {.magic = UFAULT_PROTO_ZLOG_MAGIC, .count = 1};
		struct ufault_zeroed zr = {.start = 2 * ps, .end = ps}; /* not a range */

		zfd = memfd_create("zlog", MFD_CLOEXEC);
		assert_true(zfd >= 0);
		assert_int_equal(pwrite(zfd, &zh, sizeof(zh), 0), (ssize_t)sizeof(zh));
		assert_int_equal(pwrite(zfd, &zr, sizeof(zr), sizeof(zh)), (ssize_t)sizeof(zr));
	}
	len = record(rec, 11, k.pid, start, addr, 1, 3);
	memcpy(&h, rec, sizeof(h));
	h.zlog = 2;
	memcpy(rec, &h, sizeof(h));
	put(&st, "c11", rec, len, (int[]){uffd, file, zfd}, 3); /* a log with a bad range */
	ufd_store_close(&st);
	close(zfd);
	close(uffd);
	close(file);
	close(file2);
	close(pfd[0]);
	close(pfd[1]);

	daemon_start(NULL, NULL);
	n = tc_list_clients(sock_path, e);
	assert_int_equal(n, 1);
	assert_int_equal(e[0].id, 7);
	assert_int_equal(e[0].pid, (uint32_t)k.pid);
	assert_int_equal(e[0].regions, 1);
	assert_int_equal(e[0].budget, 0);
	/* New ids above every one the store had. */
	fd = tc_connect(sock_path);
	assert_true(fd >= 0);
	hold = tc_uffd(0);
	assert_true(hold >= 0);
	assert_int_equal(tc_hello(fd, hold, 0, &id), 0);
	assert_true(id > 40);
	close(fd);
	close(hold);
	/* The good one is served. */
	kid_send(&k);
	kid_finish(&k);
	wait_unlisted(0);
	daemon_kill9();
	keeper_holds_nothing(keeper_path);
	close(sp[0]);
	close(sp[1]);
}

/* ------------------------------------------------------------------ */
/* fork                                                                 */
/* ------------------------------------------------------------------ */

#define FORK_LEN (16u << 20)

struct fork_arg {
	uint64_t off;
};

/* A forked child the test took in (its parent was killed), or -1. */
static pid_t fork_orphan = -1;

/*
 * A session with UFFD_FEATURE_EVENT_FORK: @p (@len bytes) and @q (@q_len,
 * may be 0) registered with the kernel, only @p with the daemon (the
 * pattern file from @off, open in *@file). Its connection.
 */
static int fork_session(void *p, size_t len, void *q, size_t q_len, uint64_t off, uint64_t *id,
			int *file)
{
	int uffd = tc_uffd(UFFD_FEATURE_EVENT_FORK), fd;

	TU_CHILD_CHECK(uffd >= 0, 2);
	TU_CHILD_CHECK(!tc_uffd_register(uffd, p, len), 3);
	TU_CHILD_CHECK(!q_len || !tc_uffd_register(uffd, q, q_len), 3);
	fd = tc_connect(sock_path);
	TU_CHILD_CHECK(fd >= 0, 4);
	TU_CHILD_CHECK(!tc_hello(fd, uffd, UFFD_FEATURE_EVENT_FORK, id) && *id, 5);
	*file = open(pat_path, O_RDONLY | O_CLOEXEC);
	TU_CHILD_CHECK(*file >= 0, 6);
	TU_CHILD_CHECK(!tc_register(fd, p, len, off, 0, *file), 7);
	return fd;
}

static void fork_child(const struct ctl *c, const void *arg)
{
	const struct fork_arg *a = arg;
	const size_t half = FORK_LEN / 2;
	unsigned char *p;
	uint64_t id = 0;
	int fd, file, st;
	pid_t child;

	p = tu_map_anon(FORK_LEN, 0);
	fd = fork_session(p, FORK_LEN, NULL, 0, a->off, &id, &file);
	close(file);
	up(c, id);
	tu_touch_spread(p, half / ps, ps, 2);
	child_check(p, half, a->off, PAT_SEED, 8);

	/* fork(2) returns once the daemon read UFFD_EVENT_FORK. */
	child = fork();
	TU_CHILD_CHECK(child >= 0, 9);
	if (!child) {
		tu_watchdog(CHILD_WATCHDOG_S); /* alarms are not inherited */
		/* The parent's session is the parent's: a copy of its
		 * connection here would hide its end from the daemon. */
		close(fd);
		/* Until the test saw it in LIST, and restarted the daemon or
		 * killed this one's parent if it does. The parent is in
		 * tc_wait_exit() meanwhile: the word is this one's. */
		down(c);
		/* Missing here too: served through the child's own uffd. */
		tu_touch_spread(p + half, half / ps, ps, 2);
		child_check(p + half, half, a->off + half, PAT_SEED, 20);
		child_check(p, half, a->off, PAT_SEED, 21);
		tu_child_exit(0);
	}
	up(c, (uint64_t)child);
	st = tc_wait_exit(child);
	TU_CHILD_CHECK(st == 0, 10);
	up(c, UP_DONE);
	down(c);
	/* The parent's own missing half, after all that. */
	tu_touch_spread(p + half, half / ps, ps, 2);
	child_check(p, FORK_LEN, a->off, PAT_SEED, 11);
}

/*
 * A client registers its second region with the kernel, forks, and tells
 * the daemon of that region only once the child is served (LIST has it,
 * with the first region alone): the child inherited the registration and
 * reads that region through its own uffd all the same.
 */
static void fork_late_child(const struct ctl *c, const void *arg)
{
	struct ufault_proto_client e[TC_LIST_MAX];
	const struct fork_arg *a = arg;
	const size_t len = FORK_LEN / 4;
	const struct ufault_proto_client *k = NULL;
	unsigned char *p, *q;
	uint64_t id = 0;
	int fd, file, go[2];
	pid_t child;
	char b;

	TU_CHILD_CHECK(!pipe2(go, O_CLOEXEC), 2);
	p = tu_map_anon(len, 0);
	q = tu_map_anon(len, 0);
	fd = fork_session(p, len, q, len, a->off, &id, &file);
	child = fork();
	TU_CHILD_CHECK(child >= 0, 8);
	if (!child) {
		tu_watchdog(CHILD_WATCHDOG_S);
		close(fd);
		while (read(go[0], &b, 1) < 0 && errno == EINTR)
			;
		child_check(q, len, a->off + len, PAT_SEED, 20);
		child_check(p, len, a->off, PAT_SEED, 21);
		tu_child_exit(0);
	}
	for (int i = 0; i < WAIT_MS && !k; i++) {
		long n = tc_list_clients(sock_path, e);

		k = n > 0 ? tc_find_pid(e, n, 0) : NULL;
		if (!k)
			usleep(1000);
	}
	TU_CHILD_CHECK(k && k->regions == 1, 9);
	TU_CHILD_CHECK(!tc_register(fd, q, len, a->off + len, 0, file), 10);
	TU_CHILD_CHECK(write(go[1], "g", 1) == 1, 11);
	TU_CHILD_CHECK(tc_wait_exit(child) == 0, 12);
	close(file);
	up(c, UP_DONE);
}

static void test_fork_late_register(void **state)
{
	struct fork_arg a = {.off = 33 * ps};
	struct kid k;

	daemon_start(NULL, NULL);
	kid_spawn(&k, fork_late_child, &a);
	kid_expect(&k, UP_DONE);
	kid_finish(&k);
	wait_unlisted(0);
	daemon_kill9();
	keeper_holds_nothing(keeper_path);
}

/* Poll (bounded) until LIST has a forked child (pid 0) with one region
 * (@listed), or until it has none. */
static void wait_fork_child(bool listed)
{
	struct ufault_proto_client e[TC_LIST_MAX];

	for (int i = 0; i < WAIT_MS; i++) {
		long n = tc_list_clients(sock_path, e);
		const struct ufault_proto_client *c;

		assert_true(n >= 0);
		c = tc_find_pid(e, n, 0);
		if (c && listed) {
			assert_int_equal(c->regions, 1);
			return;
		}
		if (!c && !listed)
			return;
		usleep(1000);
	}
	fail_msg("%s", listed ? "no forked child in LIST" : "the forked child is still in LIST");
}

enum fork_mode {
	FORK_PLAIN,
	FORK_RESTART,	 /* a kill -9 and a restart before the child reads */
	FORK_EXIT_FREED, /* the child's exit frees it, its parent still there */
};

static void run_fork(enum fork_mode mode)
{
	struct fork_arg a = {.off = 21 * ps};
	struct ufault_proto_client e[TC_LIST_MAX];
	struct kid k;
	uint64_t id;
	long n;

	daemon_start(NULL, NULL);
	kid_spawn(&k, fork_child, &a);
	id = kid_recv(&k);
	(void)kid_recv(&k);    /* its child's pid */
	wait_fork_child(true); /* served, and stored */
	if (mode == FORK_RESTART) {
		daemon_kill9();
		daemon_start(NULL, NULL);
		wait_fork_child(true);
	}
	kid_send(&k); /* the child reads now, and exits */
	kid_expect(&k, UP_DONE);
	n = tc_list_clients(sock_path, e);
	assert_non_null(tc_find_pid(e, n, k.pid));
	if (mode == FORK_EXIT_FREED) {
		/* Its uffd said its process is gone: freed, its entry
		 * deleted, while its parent is served as before. */
		wait_fork_child(false);
		n = tc_list_clients(sock_path, e);
		assert_int_equal(n, 1);
		assert_int_equal(tc_find_pid(e, n, k.pid)->id, id);
		for (int i = 0; i < WAIT_MS && count_uffds(keeper_pid(keeper_path)) != 1; i++)
			usleep(1000);
		assert_int_equal(count_uffds(keeper_pid(keeper_path)), 1);
	}
	kid_send(&k); /* the parent's own missing half */
	kid_finish(&k);
	wait_unlisted(0);
	daemon_kill9();
	keeper_holds_nothing(keeper_path);
}

static void test_fork(void **state)
{
	run_fork(FORK_PLAIN);
}

static void test_fork_restart(void **state)
{
	run_fork(FORK_RESTART);
}

static void test_fork_child_exit_freed(void **state)
{
	run_fork(FORK_EXIT_FREED);
}

/*
 * The client @k, a fork's parent, killed with SIGKILL; its child becomes
 * this process's (a subreaper only while @k dies, so that nothing else, a
 * keeper a daemon starts, is ever handed to it): the test can tell how
 * the child exits.
 */
static void kill_fork_parent(struct kid *k)
{
	assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	assert_int_equal(kill(k->pid, SIGKILL), 0);
	/* Reaped, it handed its child over first (exit_notify()). */
	assert_int_equal(tc_wait_exit(k->pid), 128 + SIGKILL);
	assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 0), 0);
}

static void run_fork_orphan(bool restart)
{
	struct fork_arg a = {.off = 29 * ps};
	struct ufault_proto_client e[TC_LIST_MAX];
	struct kid k;
	long n;

	daemon_start(NULL, NULL);
	kid_spawn(&k, fork_child, &a);
	(void)kid_recv(&k); /* its id */
	fork_orphan = (pid_t)kid_recv(&k);
	wait_fork_child(true);
	kill_fork_parent(&k);
	/* The daemon saw the parent's connection end and freed it. */
	wait_unlisted(k.pid);
	if (restart) {
		daemon_kill9();
		daemon_start(NULL, NULL);
	}
	/* The child is not: served through its uffd, which the kernel would
	 * unregister were it closed (its pages would read as zeros). */
	n = tc_list_clients(sock_path, e);
	assert_int_equal(n, 1);
	assert_non_null(tc_find_pid(e, n, 0));
	kid_send(&k); /* to the child: it reads what its parent never did */
	assert_int_equal(tc_wait_exit(fork_orphan), 0);
	fork_orphan = -1;
	close(k.up_r);
	close(k.down_w);
	/* Freed once it exited, and its entry with it. */
	wait_unlisted(0);
	daemon_kill9();
	keeper_holds_nothing(keeper_path);
}

static void test_fork_outlives_parent(void **state)
{
	run_fork_orphan(false);
}

static void test_fork_outlives_restart(void **state)
{
	run_fork_orphan(true);
}

/* ------------------------------------------------------------------ */
/* Group                                                                */
/* ------------------------------------------------------------------ */

/* ------------------------------------------------------------------ */
/* ufault_remote_map: write-back under a budget, across a restart       */
/* ------------------------------------------------------------------ */

#define WB_LEN (4u << 20)
#define WB_OFF_PAGES 5u
#define WB_BUDGET (256u << 10)
#define WB_THREADS 2u

static char wb_path[160];

/* Does @p (page @page) hold generation @gen (0: the file's pattern)? */
static bool wb_holds(const unsigned char *p, uint64_t page, uint64_t gen)
{
	return tu_gen_holds(p, ps, page, gen, (WB_OFF_PAGES + page) * ps, PAT_SEED);
}

/* The pages of the file's mapped part that do not hold @gen (a read
 * error counts every page). */
static uint64_t wb_file_wrong(int fd, uint64_t gen)
{
	unsigned char *buf = malloc(ps);
	uint64_t wrong = 0;

	for (uint64_t pg = 0; pg < WB_LEN / ps; pg++)
		wrong += !buf ||
			 pread(fd, buf, ps, (off_t)((WB_OFF_PAGES + pg) * ps)) != (ssize_t)ps ||
			 !wb_holds(buf, pg, gen);
	free(buf);
	return wrong;
}

/* One thread of a pass: its pages checked at @gen - 1, written at @gen;
 * thread 0 reports UP_PROGRESS after 64 pages (if @c). */
struct wb_pass {
	unsigned char *p;
	unsigned int id;
	uint64_t gen, wrong;
	const struct ctl *c;
	pthread_t th;
};

static void *wb_pass_main(void *arg)
{
	struct wb_pass *w = arg;

	for (uint64_t pg = w->id, n = 0; pg < WB_LEN / ps; pg += WB_THREADS, n++) {
		if (!wb_holds(w->p + pg * ps, pg, w->gen - 1))
			w->wrong++;
		tu_gen_write(w->p + pg * ps, pg, w->gen, 0, ps / 8);
		if (w->c && !w->id && n == 64)
			up(w->c, UP_PROGRESS);
	}
	return NULL;
}

/* A pass over the whole mapping; the pages that did not hold @gen - 1. */
static uint64_t wb_pass(unsigned char *p, uint64_t gen, const struct ctl *c)
{
	struct wb_pass w[WB_THREADS];
	uint64_t wrong = 0;

	for (unsigned int i = 0; i < WB_THREADS; i++) {
		w[i] = (struct wb_pass){.p = p, .id = i, .gen = gen, .c = c};
		TU_CHILD_CHECK(!pthread_create(&w[i].th, NULL, wb_pass_main, &w[i]), 30);
	}
	for (unsigned int i = 0; i < WB_THREADS; i++) {
		pthread_join(w[i].th, NULL);
		wrong += w[i].wrong;
	}
	return wrong;
}

/* A child's session (@takeover_ms, 2 workers) and its mapping of the
 * write-back file (open read-write in *@fd). */
static void *wb_map(struct ufault_remote **rm, int *fd, unsigned int takeover_ms)
{
	struct ufault_remote_config cfg;
	void *p;

	ufault_remote_config_init(&cfg);
	cfg.socket_path = sock_path;
	cfg.takeover_ms = takeover_ms;
	cfg.nr_workers = 2;
	TU_CHILD_CHECK(!ufault_remote_connect(rm, &cfg), 2);
	*fd = open(wb_path, O_RDWR | O_CLOEXEC);
	TU_CHILD_CHECK(*fd >= 0, 3);
	TU_CHILD_CHECK(!ufault_remote_map(*rm, WB_LEN, *fd, WB_OFF_PAGES * ps, &p), 4);
	return p;
}

static void budget_child(const struct ctl *c, const void *arg)
{
	struct ufault_remote *rm;
	void *p;
	int fd;

	(void)arg;
	/* A restarted daemon, not the clock, decides: it resumes the session. */
	p = wb_map(&rm, &fd, 100000);
	up(c, 0);
	down(c); /* the budget is set */
	TU_CHILD_CHECK(wb_pass(p, 1, NULL) == 0, 5);
	up(c, UP_DONE);
	down(c); /* the daemon is killed in this pass, and started again */
	TU_CHILD_CHECK(wb_pass(p, 2, c) == 0, 6);
	up(c, UP_DONE);
	down(c);
	/* Written back, then unmapped: the file has every page's last. */
	TU_CHILD_CHECK(!ufault_remote_unregister(rm, p, WB_LEN), 7);
	TU_CHILD_CHECK(wb_file_wrong(fd, 2) == 0, 8);
	up(c, UP_DONE);
	down(c);
	ufault_remote_close(rm);
	close(fd);
}

/* The pages of @pid's mapping of ufault_remote_map()'s memfd in its page
 * tables (smaps Rss), in bytes; -1 if it has none. */
static long long mapped_rss(pid_t pid)
{
	char path[64], line[512];
	long long rss = -1;
	bool in = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		long long kb;

		if (strchr(line, '-') && strstr(line, " rw-s "))
			in = strstr(line, "/memfd:ufault_remote_map") != NULL;
		else if (in && sscanf(line, "Rss: %lld kB", &kb) == 1)
			rss = kb << 10;
	}
	fclose(f);
	return rss;
}

/* LIST's entry of @pid, which must be there. */
static struct ufault_proto_client listed(pid_t pid)
{
	struct ufault_proto_client e[TC_LIST_MAX];
	long n = tc_list_clients(sock_path, e);
	const struct ufault_proto_client *c = tc_find_pid(e, n, pid);

	assert_non_null(c);
	assert_int_equal(count_pid(e, n, pid), 1);
	return *c;
}

/*
 * A budget through SET_BUDGET (as ufaultctl sends it) on a mapping of
 * ufault_remote_map(), 4 MiB over a 256 KiB budget: two passes of 2
 * threads check each page's last generation and write the next. The
 * daemon evicts (LIST: evicted, resident within the budget's limit, and
 * the client's own page tables, smaps, hold no more); it is killed -9
 * during the second pass and started again: the session resumes with its
 * budget from the fd store, and eviction goes on. At the end the client
 * unregisters the mapping (written back, unmapped) and finds every page's
 * last generation in the file.
 */
static void test_remote_budget(void **state)
{
	struct ufault_proto_budget b = {.bytes = WB_BUDGET};
	/* The evictor's limit: the budget and 1/32 of it, at least 32 pages. */
	long long limit =
	    WB_BUDGET + (long long)(WB_BUDGET / 32 / ps > 32 ? WB_BUDGET / 32 : 32 * ps);
	unsigned char buf[TC_MSG_MAX];
	struct ufault_proto_client e;
	struct ufault__proto_msg m;
	uint64_t evicted;
	struct kid k;
	int fd;

	tu_pattern_file(wb_path, WB_LEN + WB_OFF_PAGES * ps, PAT_SEED);
	daemon_start(NULL, NULL);
	kid_spawn(&k, budget_child, NULL);
	kid_expect(&k, 0);
	b.client_id = listed(k.pid).id;
	fd = tc_connect(sock_path);
	assert_true(fd >= 0);
	assert_int_equal(
	    tc_status(tc_call(fd, UFAULT_MSG_SET_BUDGET, &b, sizeof(b), NULL, 0, &m, buf), &m), 0);
	close(fd);
	kid_send(&k);
	kid_expect(&k, UP_DONE);
	e = listed(k.pid);
	assert_int_equal(e.budget, WB_BUDGET);
	assert_true(e.evicted > 0);
	assert_true((long long)e.resident * (long long)ps <= limit);
	assert_true(mapped_rss(k.pid) >= 0 && mapped_rss(k.pid) <= limit);
	evicted = e.evicted;

	kid_send(&k);
	kid_expect(&k, UP_PROGRESS);
	daemon_kill9_mid_fault(&k.pid, 1, false);
	daemon_start(NULL, NULL);
	kid_expect(&k, UP_DONE);
	/* Resumed with its budget; this daemon evicted too. Pages resident
	 * before the restart are not counted by it (ufaultd(8)). */
	e = listed(k.pid);
	assert_int_equal(e.budget, WB_BUDGET);
	assert_true(e.evicted > 0);
	assert_true((long long)e.resident * (long long)ps <= limit);
	print_message("evicted %llu before the restart, %llu after\n", (unsigned long long)evicted,
		      (unsigned long long)e.evicted);
	kid_send(&k);
	kid_expect(&k, UP_DONE);
	kid_send(&k);
	kid_finish(&k);
	wait_unlisted(0);
	daemon_kill9();
	keeper_holds_nothing(keeper_path);
	unlink(wb_path);
}

/* Pages [@from, @to) of @p: each checked at generation (its index below
 * @half ? @below : @above), then written at @gen; the pages that were not. */
static uint64_t wb_sweep(unsigned char *p, uint64_t from, uint64_t to, uint64_t half,
			 uint64_t below, uint64_t above, uint64_t gen)
{
	uint64_t wrong = 0;

	for (uint64_t pg = from; pg < to; pg++) {
		wrong += !wb_holds(p + pg * ps, pg, pg < half ? below : above);
		tu_gen_write(p + pg * ps, pg, gen, 0, ps / 8);
	}
	return wrong;
}

/* Half a ufault_remote_map() mapping written through the daemon, then,
 * the daemon gone, the whole of it through the takeover context. */
static void map_takeover_child(const struct ctl *c, const void *arg)
{
	uint64_t half = WB_LEN / ps / 2;
	struct ufault_remote *rm;
	void *p;
	int fd;

	(void)arg;
	p = wb_map(&rm, &fd, 300);
	TU_CHILD_CHECK(wb_sweep(p, 0, half, half, 0, 0, 1) == 0, 5);
	up(c, UP_DONE);
	down(c); /* the daemon is dead, for good */
	/* The first half from the memfd, the second filled in-process. */
	TU_CHILD_CHECK(wb_sweep(p, 0, WB_LEN / ps, half, 1, 0, 2) == 0, 6);
	TU_CHILD_CHECK(ufault_remote_local(rm) == 1, 7);
	TU_CHILD_CHECK(!ufault_remote_unregister(rm, p, WB_LEN), 8);
	TU_CHILD_CHECK(wb_file_wrong(fd, 2) == 0, 9);
	up(c, UP_DONE);
	down(c);
	ufault_remote_close(rm);
	close(fd);
}

/*
 * ufault_remote_map() after a takeover: the daemon (no store) killed -9
 * once half the mapping was written through it; the client serves itself,
 * fills the other half from the file, and writes every page back at
 * unregister, in-process.
 */
static void test_remote_map_takeover(void **state)
{
	struct kid k;

	tu_pattern_file(wb_path, WB_LEN + WB_OFF_PAGES * ps, PAT_SEED);
	daemon_start("--no-keeper", NULL);
	kid_spawn(&k, map_takeover_child, NULL);
	kid_expect(&k, UP_DONE);
	daemon_kill9();
	kid_send(&k);
	kid_expect(&k, UP_DONE);
	kid_send(&k);
	kid_finish(&k);
	unlink(wb_path);
}

/* Writes generation 1 into a mapping of ufault_remote_map(), then exits
 * when told (the daemon dead by then), without closing anything. */
static void orphan_child(const struct ctl *c, const void *arg)
{
	struct ufault_remote *rm;
	void *p;
	int fd;

	(void)arg;
	p = wb_map(&rm, &fd, 100000);
	TU_CHILD_CHECK(wb_pass(p, 1, NULL) == 0, 5);
	up(c, UP_DONE);
	down(c);
	tu_child_exit(0);
}

/*
 * A client whose process exits while no daemon runs, its written pages
 * only in its mapping's memfd (no budget: nothing was evicted): the next
 * daemon finds the process gone, stores those pages from the memfd kept
 * in the fd store, and drops the entry. The file then holds them all.
 */
static void test_remote_map_orphan(void **state)
{
	struct kid k;
	int fd;

	tu_pattern_file(wb_path, WB_LEN + WB_OFF_PAGES * ps, PAT_SEED);
	daemon_start(NULL, NULL);
	kid_spawn(&k, orphan_child, NULL);
	kid_expect(&k, UP_DONE);
	daemon_kill9();
	kid_send(&k);
	kid_finish(&k);
	daemon_start(NULL, NULL);
	wait_unlisted(0);
	fd = open(wb_path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(wb_file_wrong(fd, 1), 0);
	close(fd);
	daemon_kill9();
	keeper_holds_nothing(keeper_path);
	unlink(wb_path);
}

static int group_setup(void **state)
{
	ps = tu_page_size();
	signal(SIGPIPE, SIG_IGN);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ufaultd-restart.XXXXXX");
	if (!mkdtemp(tmpdir))
		tu_die("mkdtemp", errno);
	snprintf(sock_path, sizeof(sock_path), "%s/ufaultd.sock", tmpdir);
	strcpy(base_sock_path, sock_path);
	snprintf(keeper_path, sizeof(keeper_path), "%s.keeper", sock_path);
	snprintf(fc_sock_path, sizeof(fc_sock_path), "%s/fc.sock", tmpdir);
	snprintf(mem_path, sizeof(mem_path), "%s/guest.mem", tmpdir);
	snprintf(pat_path, sizeof(pat_path), "%s/pattern", tmpdir);
	snprintf(wb_path, sizeof(wb_path), "%s/writeback", tmpdir);
	tu_pattern_file(pat_path, PAT_LEN, PAT_SEED);
	tu_pattern_file(mem_path, MEM_LEN, FC_SEED);
	return 0;
}

/* A failed test leaves a daemon, or a keeper holding entries: not past
 * the test program. */
static void cleanup(void)
{
	char other[160];
	pid_t k;

	if (daemon_pid > 0) {
		kill(daemon_pid, SIGKILL);
		waitpid(daemon_pid, NULL, 0);
		daemon_pid = -1;
	}
	if (fork_orphan > 0) {
		kill(fork_orphan, SIGKILL);
		waitpid(fork_orphan, NULL, 0);
		fork_orphan = -1;
	}
	prctl(PR_SET_CHILD_SUBREAPER, 0);
	/* What a test that failed half-way changed. */
	strcpy(sock_path, base_sock_path);
	snprintf(keeper_path, sizeof(keeper_path), "%s.keeper", sock_path);
	snprintf(other, sizeof(other), "%s/keeper.sock", tmpdir);
	if ((k = keeper_pid(keeper_path)) > 0)
		kill(k, SIGTERM);
	if ((k = keeper_pid(other)) > 0)
		kill(k, SIGTERM);
}

static int test_teardown(void **state)
{
	cleanup();
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[128];

	cleanup();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (tmpdir[0] && system(cmd))
		fprintf(stderr, "could not remove %s\n", tmpdir);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_restart_native, test_teardown),
	    cmocka_unit_test_teardown(test_keeper_killed, test_teardown),
	    cmocka_unit_test_teardown(test_restart_systemd, test_teardown),
	    cmocka_unit_test_teardown(test_restart_firecracker, test_teardown),
	    cmocka_unit_test_teardown(test_remote_takeover, test_teardown),
	    cmocka_unit_test_teardown(test_remote_resume, test_teardown),
	    cmocka_unit_test_teardown(test_remote_release, test_teardown),
	    cmocka_unit_test_teardown(test_remote_afresh, test_teardown),
	    cmocka_unit_test_teardown(test_remote_budget, test_teardown),
	    cmocka_unit_test_teardown(test_remote_map_orphan, test_teardown),
	    cmocka_unit_test_teardown(test_remote_map_takeover, test_teardown),
	    cmocka_unit_test_teardown(test_remote_fork, test_teardown),
	    cmocka_unit_test_teardown(test_store_entries, test_teardown),
	    cmocka_unit_test_teardown(test_fork, test_teardown),
	    cmocka_unit_test_teardown(test_fork_restart, test_teardown),
	    cmocka_unit_test_teardown(test_fork_late_register, test_teardown),
	    cmocka_unit_test_teardown(test_fork_child_exit_freed, test_teardown),
	    cmocka_unit_test_teardown(test_fork_outlives_parent, test_teardown),
	    cmocka_unit_test_teardown(test_fork_outlives_restart, test_teardown),
	};

	tc_main_start(600);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
