/* SPDX-License-Identifier: MIT */
/*
 * test_systemd.c - ufaultd under the real systemd: socket activation and
 * the file-descriptor store, over a kill -9 (Restart=on-failure) and a
 * systemctl restart. test_restart's restart_systemd plays systemd itself;
 * this one runs systemd (252 on Debian 12) and only talks to it through
 * systemctl.
 *
 * systemd is not PID 1 where the tests run, so the test starts a manager of
 * its own: "systemd --user" (as root), in
 *  - a cgroup (v2) the test makes under its own and removes at the end: the
 *    manager's root, which it fills with init.scope, app.slice and the
 *    services; on a hybrid host (v1 controllers, cgroup2 at
 *    /sys/fs/cgroup/unified) a manager left in the root cgroup would move
 *    every process of the machine into init.scope;
 *  - a cgroup namespace rooted there, with cgroup2 mounted on
 *    /sys/fs/cgroup in a mount namespace of its own: the manager sees a
 *    unified hierarchy of its own and touches no v1 controller;
 *  - a tmpfs on /tmp and /var/tmp there, the test's directory bound back
 *    in place: the service's PrivateTmp= directories go with the
 *    namespace, however the manager ends;
 *  - a tmpfs on /run with /run/systemd/system in it: a user manager
 *    refuses to start where systemd was not booted (sd_booted(3));
 *    $XDG_RUNTIME_DIR, the manager's private socket that systemctl talks
 *    to and the services' $NOTIFY_SOCKET, is the test's run/, bound into
 *    that /run (a path the services' PrivateTmp= does not hide);
 *  - a FIFO bound over /dev/kmsg, its log target, so its log is the test's
 *    to print when something fails (its console log needs a tty).
 * Its units are daemon/ufaultd.socket and daemon/ufaultd.service as
 * shipped, with drop-ins for what a test must change: the socket's path,
 * the daemon built here, RestartSec=100ms, its output in a file (no
 * journal). The hardening lines stay: root's user manager applies them
 * (LimitNOFILE= up to its own hard limit).
 *
 * One raw-protocol client (client.h) registers a region backed by a
 * pattern file (tests/testutil.h); its threads fault part A again and
 * again (dropping it after each pass), so the daemon is always serving.
 *  1. The manager is up (READY=1 on its $NOTIFY_SOCKET); systemctl starts
 *     ufaultd.socket; the client's connection starts ufaultd.service.
 *  2. The client's entry is in systemd's store (NFileDescriptorStore >= 3:
 *     its record, its uffd, its file).
 *  3. The daemon is stopped (SIGSTOP) at a moment it read a fault and has
 *     not answered it, and killed (-9) there. systemd restarts it
 *     (NRestarts 1, a new MainPID); the new daemon lists the client (same
 *     pid and id: it never reconnects, so its session came from the
 *     store), the store holds its entry again, and part B is served.
 *  4. systemctl restart (SIGTERM: the daemon leaves its entries to the
 *     store): the store still holds the entry, a new daemon lists the
 *     client again, and the client faults part C, then checks every byte
 *     of the region and exits 0 (no thread hung: it has a watchdog).
 *  5. The client gone, the daemon deletes its entry: NFileDescriptorStore
 *     drops to 0 and LIST empties. systemctl stop leaves the daemon's last
 *     exit clean (Result=success, status 0: no sanitizer report).
 * After READY=1 a child drains the manager's $NOTIFY_SOCKET: the manager
 * blocks in sendmsg(2) once 10 notifications wait unread, and a stop job
 * hung with it (1 run in 10 under load, CI's ASan build among them).
 * The teardown stops the manager (SIGTERM: exit.target stops its units),
 * kills what is left in its cgroup and removes the cgroup and the
 * temporary directory; a process forked at the start does the same if
 * the test dies without its teardown (the watchdog, a crash).
 *
 * Skips (77) where systemd or systemctl is not installed, where the test is
 * not root, or where the manager cannot be started (no cgroup2, a cgroup
 * it may not create, namespaces or mounts refused, a manager that exits
 * at start); anything else fails. Every wait is a bounded poll.
 */
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "../testutil.h"
#include "client.h"

#define PAT_SEED 41
#define PART_LEN (8u << 20) /* parts A, B and C of the client's region */
#define REGION_LEN (3 * PART_LEN)
#define PAT_OFF (5u << 12) /* the region's offset in the pattern file */
#define WAIT_S 30	   /* bound of every wait on systemd or the daemon */
#define CLIENT_WATCHDOG_S 120
#define UNIT_DIR "config/systemd/user"
#define NS_RUN "/run/ufault-test" /* $XDG_RUNTIME_DIR in the manager's namespace */

static const char *const systemd_bins[] = {"/lib/systemd/systemd", "/usr/lib/systemd/systemd"};
static const char *const systemctl_bins[] = {"/usr/bin/systemctl", "/bin/systemctl"};

static struct {
	char dir[64];  /* /tmp/ufault-systemd.XXXXXX */
	char cg[2112]; /* the manager's: our cgroup2 mount + path + a name */
	const char *systemd, *systemctl;
	pid_t sweeper, manager, client, drainer;
	int sweep_w; /* its EOF starts the sweeper */
	int kmsg;    /* the manager's log: the FIFO's read end */
	int notify;  /* the manager's $NOTIFY_SOCKET */
	bool passed;
} t = {.sweeper = -1,
       .manager = -1,
       .client = -1,
       .drainer = -1,
       .sweep_w = -1,
       .kmsg = -1,
       .notify = -1};

static size_t ps;

/* @dir/@name into @buf (PATH_MAX). */
static char *path(char *buf, const char *name)
{
	snprintf(buf, PATH_MAX, "%s/%s", t.dir, name);
	return buf;
}

static bool timed_out(uint64_t deadline)
{
	return tu_now_ns() > deadline;
}

static uint64_t deadline_in(unsigned int s)
{
	return tu_now_ns() + (uint64_t)s * tu_slowdown() * 1000000000ull;
}

/* ------------------------------------------------------------------ */
/* Cleaning up: the teardown's, or the sweeper's if the test dies        */
/* ------------------------------------------------------------------ */

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (flag == FTW_DP)
		rmdir(p);
	else
		unlink(p);
	return 0;
}

/* cgroup v2 directories hold only their interface files: rmdir each. */
static int rm_cgroup(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (flag == FTW_DP)
		rmdir(p);
	return 0;
}

/* Kill every process in the manager's cgroup (cgroup.kill, Linux 5.14;
 * before it, each pid listed, until none is), then remove it. Bounded. */
static void cgroup_sweep(void)
{
	char file[PATH_MAX + 32];
	uint64_t end = deadline_in(WAIT_S);
	bool kill_file;
	int fd;

	if (!t.cg[0] || access(t.cg, F_OK))
		return;
	snprintf(file, sizeof(file), "%s/cgroup.kill", t.cg);
	fd = open(file, O_WRONLY | O_CLOEXEC);
	kill_file = fd >= 0;
	if (kill_file) {
		if (write(fd, "1", 1) != 1)
			fprintf(stderr, "cgroup.kill: %s\n", strerror(errno));
		close(fd);
	}
	while (!timed_out(end)) {
		char buf[64] = "";
		FILE *f;

		snprintf(file, sizeof(file), "%s/cgroup.events", t.cg);
		f = fopen(file, "re");
		if (f) {
			bool empty = false;

			while (fgets(buf, sizeof(buf), f))
				empty |= !strcmp(buf, "populated 0\n");
			fclose(f);
			if (empty)
				break;
		}
		if (!kill_file) { /* by hand, the whole tree */
			char cmd[PATH_MAX + 96];

			snprintf(cmd, sizeof(cmd),
				 "find '%s' -name cgroup.procs -exec cat {} + | xargs -r kill -9",
				 t.cg);
			if (system(cmd) == -1)
				fprintf(stderr, "%s: %s\n", cmd, strerror(errno));
		}
		usleep(2000);
	}
	while (!timed_out(end)) {
		nftw(t.cg, rm_cgroup, 16, FTW_DEPTH | FTW_PHYS);
		if (access(t.cg, F_OK))
			return;
		usleep(2000);
	}
	fprintf(stderr, "could not remove the cgroup %s\n", t.cg);
}

static void sweep(void)
{
	cgroup_sweep();
	if (t.dir[0])
		nftw(t.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * A process that outlives the test: once every copy of the pipe's write
 * end is closed (the test exited, however), it sweeps. Its own session,
 * so that a signal to the test's process group does not take it along.
 */
static void sweeper_start(void)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC))
		tu_die("pipe", errno);
	t.sweeper = fork();
	if (t.sweeper < 0)
		tu_die("fork", errno);
	if (!t.sweeper) {
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
		char b;

		close(p[1]);
		setsid();
		/* Not ctest's output pipe: it would wait for us. */
		if (null >= 0)
			dup2(null, 1);
		while (read(p[0], &b, 1) != 0 && errno == EINTR)
			;
		sweep();
		_exit(0);
	}
	close(p[0]);
	t.sweep_w = p[1];
}

/* ------------------------------------------------------------------ */
/* systemctl                                                            */
/* ------------------------------------------------------------------ */

/*
 * systemctl --user @args (NULL-terminated) against our manager; its
 * standard output in @out (NUL-terminated; NULL: dropped). Its exit
 * status, or -1. Bounded: alarm() outlives the execve.
 */
static int sctl(char *out, size_t cap, const char *const *args)
{
	char rundir[PATH_MAX + 32], *argv[16];
	char *envp[] = {rundir, "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL};
	size_t got = 0;
	int p[2], n = 0;
	pid_t pid;

	snprintf(rundir, sizeof(rundir), "XDG_RUNTIME_DIR=%s/run", t.dir);
	argv[n++] = "systemctl";
	argv[n++] = "--user";
	argv[n++] = "--no-pager";
	while (*args && n < 15)
		argv[n++] = (char *)*args++;
	argv[n] = NULL;
	if (pipe2(p, O_CLOEXEC))
		tu_die("pipe", errno);
	pid = fork();
	if (pid < 0)
		tu_die("fork", errno);
	if (!pid) {
		dup2(p[1], 1);
		alarm(WAIT_S * tu_slowdown());
		execve(t.systemctl, argv, envp);
		_exit(127);
	}
	close(p[1]);
	for (;;) {
		char scratch[512];
		char *dst = out && got + 1 < cap ? out + got : scratch;
		size_t room = out && got + 1 < cap ? cap - 1 - got : sizeof(scratch);
		ssize_t r = read(p[0], dst, room);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (dst != scratch)
			got += (size_t)r;
	}
	close(p[0]);
	if (out && cap)
		out[got] = 0;
	return tc_wait_exit(pid);
}

/* What systemctl show says of ufaultd.service. */
struct svc {
	long main_pid, restarts, fds, status;
	char active[32], sub[32], result[32];
};

static void prop(const char *text, const char *name, char *out, size_t cap)
{
	char key[64];
	const char *p;

	snprintf(key, sizeof(key), "\n%s=", name);
	p = strstr(text, key);
	out[0] = 0;
	if (p) {
		p += strlen(key);
		snprintf(out, cap, "%.*s", (int)strcspn(p, "\n"), p);
	}
}

static long prop_long(const char *text, const char *name)
{
	char v[32];

	prop(text, name, v, sizeof(v));
	return v[0] ? strtol(v, NULL, 10) : -1;
}

static void svc_get(struct svc *s)
{
	static const char *const args[] = {
	    "show", "-p",
	    "MainPID,NRestarts,NFileDescriptorStore,ExecMainStatus,ActiveState,SubState,Result",
	    "ufaultd.service", NULL};
	char out[1024] = "\n";
	int rc = sctl(out + 1, sizeof(out) - 1, args);

	if (rc)
		fail_msg("systemctl show ufaultd.service: exit status %d", rc);
	s->main_pid = prop_long(out, "MainPID");
	s->restarts = prop_long(out, "NRestarts");
	s->fds = prop_long(out, "NFileDescriptorStore");
	s->status = prop_long(out, "ExecMainStatus");
	prop(out, "ActiveState", s->active, sizeof(s->active));
	prop(out, "SubState", s->sub, sizeof(s->sub));
	prop(out, "Result", s->result, sizeof(s->result));
	/* A property this systemd does not have would read as -1 or "". */
	if (s->fds < 0 || s->restarts < 0 || s->main_pid < 0 || !s->active[0])
		fail_msg("systemctl show said:%s", out);
}

static bool svc_running(const struct svc *s)
{
	return !strcmp(s->active, "active") && !strcmp(s->sub, "running") && s->main_pid > 0;
}

/* systemctl @verb @unit [@unit2]: it must succeed. */
static void sctl_ok(const char *verb, const char *unit, const char *unit2)
{
	const char *args[] = {verb, unit, unit2, NULL};
	int rc = sctl(NULL, 0, args);

	if (rc)
		fail_msg("systemctl --user %s %s%s%s: exit status %d", verb, unit, unit2 ? " " : "",
			 unit2 ? unit2 : "", rc);
}

/* ------------------------------------------------------------------ */
/* The manager                                                          */
/* ------------------------------------------------------------------ */

static void write_file(const char *name, const char *fmt, ...)
{
	char p[PATH_MAX];
	va_list ap;
	FILE *f;

	f = fopen(path(p, name), "we");
	if (!f)
		tu_die(p, errno);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	if (fclose(f))
		tu_die(p, errno);
}

/* daemon/@name as shipped, into the unit directory. */
static void copy_unit(const char *name)
{
	char src[PATH_MAX], dst[PATH_MAX], buf[8192];
	size_t n;
	FILE *in, *out;

	snprintf(src, sizeof(src), "%s/%s", UFAULTD_UNITS, name);
	snprintf(dst, sizeof(dst), "%s/" UNIT_DIR "/%s", t.dir, name);
	in = fopen(src, "re");
	out = fopen(dst, "we");
	if (!in || !out)
		tu_die(in ? dst : src, errno);
	while ((n = fread(buf, 1, sizeof(buf), in)))
		if (fwrite(buf, 1, n, out) != n)
			tu_die(dst, errno);
	fclose(in);
	if (fclose(out))
		tu_die(dst, errno);
}

static void mkdirs(const char *name)
{
	char p[PATH_MAX], *s;

	path(p, name);
	for (s = p + strlen(t.dir) + 1;; s++) {
		char c = *s;

		if (c && c != '/')
			continue;
		*s = 0;
		if (mkdir(p, 0700) && errno != EEXIST)
			tu_die(p, errno);
		*s = c;
		if (!c)
			break;
	}
}

static bool built_in_tmp(void)
{
	return !strncmp(UFAULTD_PATH, "/tmp/", 5) || !strncmp(UFAULTD_PATH, "/var/tmp/", 9);
}

static void write_units(void)
{
	char p[PATH_MAX];

	mkdirs(UNIT_DIR "/ufaultd.service.d");
	mkdirs(UNIT_DIR "/ufaultd.socket.d");
	copy_unit("ufaultd.service");
	copy_unit("ufaultd.socket");
	write_file(UNIT_DIR "/ufaultd.socket.d/test.conf",
		   "# The test's socket, not /run/ufaultd's.\n"
		   "[Socket]\nListenStream=\nListenStream=%s\n",
		   path(p, "ufaultd.sock"));
	/* PrivateTmp= would hide a daemon built under /tmp from itself (and
	 * the manager would not have that /tmp either: manager_exec()). */
	/* An ASan build's daemon checks for leaks at exit in its other tests
	 * (test_ufaultd, test_restart), not here: LeakSanitizer stops the
	 * daemon's threads from a tracer process of its own, which a stop
	 * job's kill of the whole cgroup (SIGTERM, then SIGCONT) can reach as
	 * it starts: the SIGCONT cancels the SIGSTOP of a thread it is
	 * attaching, and the tracer waits for that thread for ever (seen 1 run
	 * in 15 under load: one pool thread traced but sleeping, the tracer
	 * in wait4 on it with SIGTERM and SIGCONT pending). Address errors
	 * still abort. */
	write_file(UNIT_DIR "/ufaultd.service.d/test.conf",
		   "# The daemon built here; a quick restart; its output in a file\n"
		   "# (the user manager has no journal to give it).\n"
		   "[Service]\nExecStart=\nExecStart=%s --workers 2\nRestartSec=100ms\n"
		   "StandardOutput=append:%s\n"
		   "Environment=ASAN_OPTIONS=detect_leaks=0:abort_on_error=1\n%s",
		   UFAULTD_PATH, path(p, "ufaultd.log"), built_in_tmp() ? "PrivateTmp=no\n" : "");
	/* What the manager starts, instead of default.target (the service's
	 * default dependencies pull in basic.target later all the same). */
	write_file(UNIT_DIR "/ufault-test.target",
		   "[Unit]\nDescription=ufault test: nothing else\n");
}

/* Our cgroup in the cgroup2 hierarchy (its mount point + our path), with
 * a new directory for the manager; 0 or a reason to skip in @why. */
static int make_cgroup(char *why, size_t cap)
{
	char line[2048 + 256], mnt[1024] = "", own[1024] = "";
	FILE *f;

	f = fopen("/proc/self/mountinfo", "re");
	while (f && !mnt[0] && fgets(line, sizeof(line), f)) {
		char *sep = strstr(line, " - cgroup2 "), *p = line;

		if (!sep)
			continue;
		/* Field 5 is the mount point (a space in it is "\\040"). */
		for (int i = 0; i < 4 && p; i++)
			p = strchr(p, ' ') ? strchr(p, ' ') + 1 : NULL;
		if (p)
			snprintf(mnt, sizeof(mnt), "%.*s", (int)strcspn(p, " "), p);
	}
	if (f)
		fclose(f);
	f = fopen("/proc/self/cgroup", "re");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "0::", 3))
			snprintf(own, sizeof(own), "%.*s", (int)strcspn(line + 3, "\n"), line + 3);
	if (f)
		fclose(f);
	if (!mnt[0] || !own[0]) {
		snprintf(why, cap, "no cgroup2 hierarchy is mounted (a manager needs one)");
		return -1;
	}
	snprintf(t.cg, sizeof(t.cg), "%s%s/ufault-systemd-test.%d", mnt,
		 strcmp(own, "/") ? own : "", (int)getpid());
	if (mkdir(t.cg, 0755)) {
		snprintf(why, cap, "cannot make the manager's cgroup %s: %s", t.cg,
			 strerror(errno));
		t.cg[0] = 0;
		return -1;
	}
	return 0;
}

/* In the manager's child: a step that failed, told to the test, which skips. */
static void child_fail(int err_w, const char *what)
{
	char msg[512];
	int n = snprintf(msg, sizeof(msg), "%s: %s", what, strerror(errno));

	if (write(err_w, msg, (size_t)n) < 0)
		_exit(125);
	_exit(125);
}

static void manager_exec(int err_w)
{
	char p[PATH_MAX], procs[PATH_MAX + 32], pid[16], env[8][PATH_MAX + 64];
	char *envp[16], *argv[] = {"systemd", "--user", "--unit=ufault-test.target", NULL};
	static const char *const pass[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS",
					   "TSAN_OPTIONS"};
	const char *log_target = "SYSTEMD_LOG_TARGET=kmsg";
	int n = 0, e = 0, fd;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* Into its cgroup first: the cgroup namespace is rooted where we are. */
	snprintf(procs, sizeof(procs), "%s/cgroup.procs", t.cg);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	fd = open(procs, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, pid, strlen(pid)) < 0)
		child_fail(err_w, procs);
	close(fd);
	if (unshare(CLONE_NEWNS | CLONE_NEWCGROUP))
		child_fail(err_w, "unshare(CLONE_NEWNS | CLONE_NEWCGROUP)");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		child_fail(err_w, "making / private");
	/* PrivateTmp='s directories on tmpfs that go with the namespace,
	 * however the manager ends; our directory bound back in place. */
	if (!built_in_tmp()) {
		char self[64];
		int dfd = open(t.dir, O_PATH | O_DIRECTORY | O_CLOEXEC);

		snprintf(self, sizeof(self), "/proc/self/fd/%d", dfd);
		if (dfd < 0 || mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") ||
		    mkdir(t.dir, 0700) || mount(self, t.dir, NULL, MS_BIND, NULL))
			child_fail(err_w, "a tmpfs on /tmp");
		close(dfd);
		(void)mount("tmpfs", "/var/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	}
	if (mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"))
		child_fail(err_w, "mounting a tmpfs on /run");
	if (mkdir("/run/systemd", 0755) || mkdir("/run/systemd/system", 0755) ||
	    mkdir(NS_RUN, 0700))
		child_fail(err_w, "/run/systemd/system");
	if (mount(path(p, "run"), NS_RUN, NULL, MS_BIND, NULL))
		child_fail(err_w, "binding the runtime directory");
	if (mount("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
		child_fail(err_w, "mounting cgroup2 on /sys/fs/cgroup");
	/* No /dev/kmsg to bind over (a container): no log, rather than the
	 * console's. */
	if (mount(path(p, "kmsg"), "/dev/kmsg", NULL, MS_BIND, NULL))
		log_target = "SYSTEMD_LOG_TARGET=null";
	fd = open(path(p, "kmsg"), O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		child_fail(err_w, p);
	dup2(fd, 1);
	dup2(fd, 2);
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd >= 0)
		dup2(fd, 0);

	snprintf(env[e], sizeof(env[e]), "XDG_CONFIG_HOME=%s/config", t.dir);
	envp[n++] = env[e++];
	snprintf(env[e], sizeof(env[e]), "NOTIFY_SOCKET=%s", path(p, "notify"));
	envp[n++] = env[e++];
	envp[n++] = "XDG_RUNTIME_DIR=" NS_RUN;
	envp[n++] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
	envp[n++] = "HOME=/root";
	envp[n++] = (char *)log_target;
	/* The sanitizers' settings reach the daemon (the manager passes its
	 * environment on to its services). */
	for (size_t i = 0; i < sizeof(pass) / sizeof(pass[0]); i++) {
		if (!getenv(pass[i]))
			continue;
		snprintf(env[e], sizeof(env[e]), "%s=%s", pass[i], getenv(pass[i]));
		envp[n++] = env[e++];
	}
	envp[n] = NULL;
	execve(t.systemd, argv, envp);
	child_fail(err_w, t.systemd);
}

/* The manager's log, and the daemon's, to stderr. */
static void dump_logs(void)
{
	static const char *const status[] = {"status", "ufaultd.service", "ufaultd.socket", NULL};
	char buf[4096], p[PATH_MAX];
	ssize_t n;
	int fd;

	fprintf(stderr, "--- the systemd manager's log:\n");
	while (t.kmsg >= 0 && (n = read(t.kmsg, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, (size_t)n, stderr);
	fprintf(stderr, "--- ufaultd's output:\n");
	fd = open(path(p, "ufaultd.log"), O_RDONLY | O_CLOEXEC);
	while (fd >= 0 && (n = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, (size_t)n, stderr);
	if (fd >= 0)
		close(fd);
	if (t.manager > 0) {
		char out[8192];

		sctl(out, sizeof(out), status);
		fprintf(stderr, "--- systemctl status:\n%s", out);
	}
	fprintf(stderr, "---\n");
}

/* The manager's $NOTIFY_SOCKET, to hear READY=1. */
static void notify_bind(void)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	char p[PATH_MAX];

	t.notify = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (t.notify < 0)
		tu_die("socket", errno);
	if (strlen(path(p, "notify")) >= sizeof(a.sun_path))
		tu_die(p, ENAMETOOLONG);
	strcpy(a.sun_path, p);
	if (bind(t.notify, (struct sockaddr *)&a, sizeof(a)))
		tu_die(p, errno);
}

static const char *first_executable(const char *const *bins, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!access(bins[i], X_OK))
			return bins[i];
	return NULL;
}

/*
 * The manager goes on telling its supervisor (STATUS= and the like) after
 * READY=1, with a blocking sendmsg(2): once net.unix.max_dgram_qlen (10
 * here) wait unread, it stops in it, and a stop job hangs with it. A child
 * reads them from now on (a thread would make every later fork a fork of
 * a threaded process, which TSan refuses for the client); it dies with us.
 */
static void notify_drain(void)
{
	t.drainer = fork();
	if (t.drainer < 0)
		tu_die("fork", errno);
	if (t.drainer)
		return;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		_exit(0);
	for (;;) {
		struct pollfd pfd = {.fd = t.notify, .events = POLLIN};
		char msg[4096];

		if (poll(&pfd, 1, -1) > 0)
			(void)recv(t.notify, msg, sizeof(msg), MSG_DONTWAIT);
	}
}

static void manager_start(void)
{
	char p[PATH_MAX], why[2304];
	uint64_t end;
	int err[2];
	ssize_t n;

	t.systemd = first_executable(systemd_bins, sizeof(systemd_bins) / sizeof(systemd_bins[0]));
	t.systemctl =
	    first_executable(systemctl_bins, sizeof(systemctl_bins) / sizeof(systemctl_bins[0]));
	if (!t.systemd || !t.systemctl)
		tu_skip("systemd is not installed (no /lib/systemd/systemd or systemctl)");
	if (geteuid())
		tu_skip("a systemd manager of the test's own needs root (cgroups, mounts)");

	snprintf(t.dir, sizeof(t.dir), "/tmp/ufault-systemd.XXXXXX");
	if (!mkdtemp(t.dir))
		tu_die("mkdtemp", errno);
	if (make_cgroup(why, sizeof(why))) {
		sweep();
		tu_skip(why);
	}
	/* From here on, whatever becomes of the test, it is cleaned up. */
	sweeper_start();
	mkdirs("run");
	write_units();
	tu_pattern_file(path(p, "pattern"), PAT_OFF + REGION_LEN, PAT_SEED);
	if (mkfifo(path(p, "kmsg"), 0600))
		tu_die(p, errno);
	/* Read and write: a reader always, so the manager's opens never wait;
	 * room for all it says at info level in a run. */
	t.kmsg = open(p, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (t.kmsg < 0)
		tu_die(p, errno);
	fcntl(t.kmsg, F_SETPIPE_SZ, 1 << 20);
	notify_bind();

	if (pipe2(err, O_CLOEXEC))
		tu_die("pipe", errno);
	t.manager = fork();
	if (t.manager < 0)
		tu_die("fork", errno);
	if (!t.manager)
		manager_exec(err[1]);
	close(err[1]);
	n = read(err[0], why, sizeof(why) - 1);
	close(err[0]);
	if (n > 0) {
		why[n] = 0;
		fprintf(stderr, "cannot start a systemd manager here: %s\n", why);
		tu_skip("the systemd manager cannot be started in this environment");
	}

	end = deadline_in(WAIT_S);
	while (!timed_out(end)) {
		struct pollfd pfd = {.fd = t.notify, .events = POLLIN};
		char msg[512];
		int st;

		if (waitpid(t.manager, &st, WNOHANG) == t.manager) {
			t.manager = -1;
			dump_logs();
			fprintf(stderr, "the systemd manager exited at start (status 0x%x)\n", st);
			tu_skip("the systemd manager cannot be started in this environment");
		}
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		n = recv(t.notify, msg, sizeof(msg) - 1, 0);
		if (n <= 0)
			continue;
		msg[n] = 0;
		if (strstr(msg, "READY=1")) {
			notify_drain();
			return;
		}
	}
	fail_msg("the systemd manager never said READY=1");
}

/* SIGTERM: a user manager starts exit.target, which stops every unit, and
 * exits. Bounded, then SIGKILL. */
static void manager_stop(void)
{
	uint64_t end = deadline_in(WAIT_S);

	if (t.manager <= 0)
		return;
	kill(t.manager, SIGTERM);
	while (waitpid(t.manager, NULL, WNOHANG) != t.manager) {
		if (timed_out(end)) {
			fprintf(stderr, "the systemd manager ignores SIGTERM: killed\n");
			kill(t.manager, SIGKILL);
			waitpid(t.manager, NULL, 0);
			break;
		}
		usleep(2000);
	}
	t.manager = -1;
}

/* ------------------------------------------------------------------ */
/* The client                                                           */
/* ------------------------------------------------------------------ */

/* Shared with the client (MAP_SHARED): words each side writes once. */
enum phase { PH_A = 1, PH_B, PH_C };

struct shared {
	uint64_t id;	 /* the client's: its id, once registered */
	uint64_t passes; /* the client's: passes over part A */
	uint32_t phase;	 /* the test's: what the client faults now */
	uint32_t done;	 /* the client's: the last phase it finished */
};

static struct shared *sh;

static uint32_t load32(const uint32_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void store32(uint32_t *p, uint32_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

struct toucher {
	unsigned char *base;
	size_t pages;
	unsigned int id, n;
	bool cycle; /* again and again, until phase C */
	pthread_t th;
};

/* Every n-th page from the id-th; cycling, thread 0 drops the part after
 * each pass, so that the next pass faults again. */
static void *touch_main(void *arg)
{
	struct toucher *tc = arg;

	do {
		for (size_t pg = tc->id; pg < tc->pages; pg += tc->n)
			(void)tu_read_byte(tc->base + pg * ps + (pg % 5) * 64);
		if (tc->cycle && !tc->id) {
			madvise(tc->base, tc->pages * ps, MADV_DONTNEED);
			__atomic_add_fetch(&sh->passes, 1, __ATOMIC_RELEASE);
		}
	} while (tc->cycle && load32(&sh->phase) < PH_C);
	return NULL;
}

static void touch_start(struct toucher *tc, unsigned char *base, bool cycle)
{
	for (unsigned int i = 0; i < 2; i++) {
		tc[i] = (struct toucher){
		    .base = base, .pages = PART_LEN / ps, .id = i, .n = 2, .cycle = cycle};
		TU_CHILD_CHECK(!pthread_create(&tc[i].th, NULL, touch_main, &tc[i]), 20);
	}
}

static void touch_join(struct toucher *tc)
{
	for (unsigned int i = 0; i < 2; i++)
		TU_CHILD_CHECK(!pthread_join(tc[i].th, NULL), 21);
}

static void wait_phase(uint32_t ph)
{
	while (load32(&sh->phase) < ph)
		usleep(1000);
}

/* Registered through systemd's socket, it never talks to a daemon again:
 * a restarted daemon serves it from the store or not at all. */
static void client_main(void)
{
	struct toucher a[2], b[2], c[2];
	char p[PATH_MAX];
	unsigned char *r;
	uint64_t id = 0;
	int uffd, fd, file;
	long bad;

	uffd = tc_uffd(0);
	TU_CHILD_CHECK(uffd >= 0, 2);
	r = tu_map_anon(REGION_LEN, 0);
	TU_CHILD_CHECK(!tc_uffd_register(uffd, r, REGION_LEN), 3);
	fd = tc_connect(path(p, "ufaultd.sock"));
	TU_CHILD_CHECK(fd >= 0, 4);
	TU_CHILD_CHECK(!tc_hello(fd, uffd, 0, &id) && id, 5);
	file = open(path(p, "pattern"), O_RDONLY | O_CLOEXEC);
	TU_CHILD_CHECK(file >= 0, 6);
	TU_CHILD_CHECK(!tc_register(fd, r, REGION_LEN, PAT_OFF, 0, file), 7);
	close(file);
	__atomic_store_n(&sh->id, id, __ATOMIC_RELEASE);

	touch_start(a, r, true);
	wait_phase(PH_B);
	touch_start(b, r + PART_LEN, false);
	touch_join(b);
	store32(&sh->done, PH_B);
	wait_phase(PH_C);
	touch_start(c, r + 2 * PART_LEN, false);
	touch_join(c);
	touch_join(a);
	bad = tu_pattern_check(r, REGION_LEN, PAT_OFF, PAT_SEED);
	if (bad >= 0) {
		fprintf(stderr, "client: byte %ld is 0x%02x, expected 0x%02x\n", bad, r[bad],
			tu_pattern(PAT_OFF + (uint64_t)bad, PAT_SEED));
		tu_child_exit(10);
	}
	store32(&sh->done, PH_C);
	tu_child_exit(0);
}

static void client_start(void)
{
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		tu_die("mmap", errno);
	memset(sh, 0, sizeof(*sh));
	t.client = fork();
	if (t.client < 0)
		tu_die("fork", errno);
	if (!t.client) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		tu_watchdog(CLIENT_WATCHDOG_S);
		client_main();
	}
}

static void client_alive(void)
{
	int st;

	if (waitpid(t.client, &st, WNOHANG) == t.client) {
		t.client = -1;
		fail_msg("the client exited with %d",
			 WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	}
}

/* Bounded: until the client's word @p is at least @v. */
static void client_wait(const uint64_t *p, uint64_t v, const char *what)
{
	uint64_t end = deadline_in(WAIT_S);

	while (__atomic_load_n(p, __ATOMIC_ACQUIRE) < v) {
		client_alive();
		if (timed_out(end))
			fail_msg("the client never %s", what);
		usleep(1000);
	}
}

/* ------------------------------------------------------------------ */
/* The daemon                                                           */
/* ------------------------------------------------------------------ */

/* Every thread of @pid stopped (state T), bounded; false if it is gone. */
static bool all_stopped(pid_t pid)
{
	uint64_t end = deadline_in(WAIT_S);
	char dir[64];

	snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
	while (!timed_out(end)) {
		struct dirent *e;
		bool all = true;
		DIR *d = opendir(dir);

		if (!d)
			return false;
		while (all && (e = readdir(d))) {
			char file[384], buf[512], *s;
			ssize_t n;
			int fd;

			if (e->d_name[0] == '.')
				continue;
			snprintf(file, sizeof(file), "%s/%s/stat", dir, e->d_name);
			fd = open(file, O_RDONLY | O_CLOEXEC);
			n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
			if (fd >= 0)
				close(fd);
			if (n <= 0)
				continue; /* a thread that exited */
			buf[n] = 0;
			s = strrchr(buf, ')');
			all = s && (s[2] == 'T' || s[2] == 't');
		}
		closedir(d);
		if (all)
			return true;
		usleep(200);
	}
	fail_msg("ufaultd (pid %d) does not stop on SIGSTOP", (int)pid);
	return false;
}

/*
 * SIGKILL the daemon (systemd's child, not ours) at a moment it had read a
 * fault of the client and not answered it: stopped, looked at, and killed
 * where it stands, or let go on and stopped again. The client faults
 * without pause, so the moment comes.
 */
static void kill9_mid_fault(pid_t daemon, pid_t client)
{
	uint64_t end = deadline_in(WAIT_S);

	while (!timed_out(end)) {
		assert_int_equal(kill(daemon, SIGSTOP), 0);
		assert_true(all_stopped(daemon));
		if (tc_uffd_count(client, "total:") > tc_uffd_count(client, "pending:")) {
			assert_int_equal(kill(daemon, SIGKILL), 0);
			return;
		}
		assert_int_equal(kill(daemon, SIGCONT), 0);
		client_alive();
		usleep(200);
	}
	fail_msg("ufaultd was never caught between reading a fault and answering it");
}

/* Bounded: until ufaultd.service runs with a main pid other than @old
 * (and, if @restarts >= 0, that many automatic restarts). */
static void svc_wait_running(struct svc *s, long old, long restarts)
{
	uint64_t end = deadline_in(WAIT_S);

	for (;;) {
		svc_get(s);
		if (svc_running(s) && s->main_pid != old &&
		    (restarts < 0 || s->restarts == restarts))
			return;
		if (timed_out(end))
			fail_msg("ufaultd.service: %s/%s, MainPID %ld (was %ld), NRestarts %ld",
				 s->active, s->sub, s->main_pid, old, s->restarts);
		usleep(5000);
	}
}

/* Bounded: until systemd's store holds @lo to @hi fds for the service. */
static void svc_wait_fds(struct svc *s, long lo, long hi)
{
	uint64_t end = deadline_in(WAIT_S);

	for (;;) {
		svc_get(s);
		if (s->fds >= lo && s->fds <= hi)
			return;
		if (timed_out(end))
			fail_msg("NFileDescriptorStore is %ld, expected %ld to %ld", s->fds, lo,
				 hi);
		usleep(5000);
	}
}

/* The running daemon lists the client, with its id. */
static void listed(uint64_t id)
{
	struct ufault_proto_client e[TC_LIST_MAX];
	char p[PATH_MAX];
	const struct ufault_proto_client *c;
	long n = tc_list_clients(path(p, "ufaultd.sock"), e);

	assert_int_equal(n, 1);
	c = tc_find_pid(e, n, t.client);
	assert_non_null(c);
	assert_int_equal(c->id, id);
	assert_int_equal(c->regions, 1);
}

/* ------------------------------------------------------------------ */
/* The test                                                             */
/* ------------------------------------------------------------------ */

static void test_systemd_restart(void **state)
{
	struct ufault_proto_client e[TC_LIST_MAX];
	char p[PATH_MAX];
	uint64_t end, id;
	long pid, restarts;
	struct svc s;
	int st;

	(void)state;
	manager_start();
	sctl_ok("start", "ufaultd.socket", NULL);
	svc_get(&s);
	assert_string_equal(s.active, "inactive"); /* until a client connects */

	/* 1, 2: socket activation; the client's entry in systemd's store. */
	client_start();
	client_wait(&sh->id, 1, "registered");
	id = __atomic_load_n(&sh->id, __ATOMIC_ACQUIRE);
	svc_wait_running(&s, 0, 0);
	svc_wait_fds(&s, 3, LONG_MAX);
	listed(id);

	/* 3: kill -9 mid-fault; Restart=on-failure; served from the store. */
	client_wait(&sh->passes, 1, "faulted part A");
	pid = s.main_pid;
	kill9_mid_fault((pid_t)pid, t.client);
	svc_wait_running(&s, pid, 1);
	listed(id);
	svc_wait_fds(&s, 3, LONG_MAX);
	store32(&sh->phase, PH_B);
	end = deadline_in(WAIT_S);
	while (load32(&sh->done) < PH_B) {
		client_alive();
		if (timed_out(end))
			fail_msg("the client never faulted part B");
		usleep(1000);
	}

	/* 4: systemctl restart: the entries stay in the store. */
	svc_get(&s);
	assert_int_equal(s.restarts, 1); /* no crash since the kill */
	pid = s.main_pid;
	sctl_ok("restart", "ufaultd.service", NULL);
	svc_wait_running(&s, pid, -1);
	restarts = s.restarts;
	listed(id);
	svc_wait_fds(&s, 3, LONG_MAX);
	store32(&sh->phase, PH_C);
	end = deadline_in(WAIT_S);
	while (waitpid(t.client, &st, WNOHANG) != t.client) {
		if (timed_out(end))
			fail_msg("the client never finished");
		usleep(1000);
	}
	t.client = -1;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(load32(&sh->done), PH_C);

	/* 5: the client gone, its entry leaves the store. */
	svc_wait_fds(&s, 0, 0);
	end = deadline_in(WAIT_S);
	while (tc_list_clients(path(p, "ufaultd.sock"), e) != 0) {
		if (timed_out(end))
			fail_msg("LIST still shows clients");
		usleep(1000);
	}
	svc_get(&s);
	assert_int_equal(s.restarts, restarts); /* no crash since the restart */
	/* Both at once: the socket would start the service again. */
	sctl_ok("stop", "ufaultd.socket", "ufaultd.service");
	svc_get(&s);
	assert_string_equal(s.active, "inactive");
	assert_string_equal(s.result, "success");
	assert_int_equal(s.status, 0);
	t.passed = true;
}

static int teardown(void **state)
{
	(void)state;
	if (t.client > 0) {
		kill(t.client, SIGKILL);
		waitpid(t.client, NULL, 0);
		t.client = -1;
	}
	if (!t.passed && t.manager > 0)
		dump_logs();
	manager_stop();
	if (t.drainer > 0) {
		kill(t.drainer, SIGKILL);
		waitpid(t.drainer, NULL, 0);
		t.drainer = -1;
	}
	sweep();
	/* The sweeper finds nothing left; wait for it, so that it is gone too. */
	if (t.sweep_w >= 0) {
		close(t.sweep_w);
		t.sweep_w = -1;
		if (t.sweeper > 0)
			waitpid(t.sweeper, NULL, 0);
	}
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_systemd_restart, teardown),
	};

	tc_main_start(100);
	ps = tu_page_size();
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
