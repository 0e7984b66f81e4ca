/* SPDX-License-Identifier: MIT */
/*
 * main.c - ufaultd: options, the libuv loop, the listening sockets (bound
 * here, or handed over by systemd socket activation), accept with
 * SO_PEERCRED authorisation, SIGINT/SIGTERM, and the readiness notification.
 *
 * The loop is the control plane only. Faults are never resolved here: each
 * client gets its own libufault context whose worker threads serve its uffd,
 * so a slow or dead client costs the loop one message at a time, never a
 * wait. Every socket is non-blocking and every callback does a bounded amount
 * of work before it returns to the loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "compat.h" /* UFFD_FEATURE_POISON on older headers */
#include "ufaultd.h"

#define ACCEPT_BATCH 64	      /* connections taken per readiness callback */
#define ACCEPT_RETRY_MS 100   /* pause after EMFILE/ENFILE/ENOMEM */
#define SD_LISTEN_FDS_START 3 /* sd_listen_fds(3) */

static const char *const refusal_names[UFD_REFUSED_NR] = {
    [UFD_REFUSED_AUTH] = "auth",	 [UFD_REFUSED_MAX_CLIENTS] = "max_clients",
    [UFD_REFUSED_PROTOCOL] = "protocol", [UFD_REFUSED_REQUEST] = "request",
    [UFD_REFUSED_FDS] = "fds",
};

const char *ufd_refusal_name(enum ufd_refusal r)
{
	return r < UFD_REFUSED_NR ? refusal_names[r] : "?";
}

const char *ufd_kind_name(enum ufd_kind k)
{
	return k == UFD_FIRECRACKER ? "firecracker" : "native";
}

/* ------------------------------------------------------------------ */
/* Logging                                                              */
/* ------------------------------------------------------------------ */

/* sd-daemon(3) priorities, understood by the journal on stderr. */
static int journal_prio(enum ufault_log_level level)
{
	switch (level) {
	case UFAULT_LOG_ERROR:
		return 3;
	case UFAULT_LOG_WARN:
		return 4;
	case UFAULT_LOG_INFO:
		return 6;
	default:
		return 7;
	}
}

static bool journal_stderr;

static void log_line(enum ufault_log_level level, const char *prefix, const char *msg)
{
	/* One fprintf per line: stdio locks the stream, so lines from the
	 * contexts' worker threads never interleave with ours. */
	if (journal_stderr)
		fprintf(stderr, "<%d>%s%s\n", journal_prio(level), prefix, msg);
	else
		fprintf(stderr, "ufaultd: %s%s\n", prefix, msg);
}

void ufd_log(struct ufd_daemon *d, enum ufault_log_level level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (level > d->log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_line(level, "", msg);
}

/* A context's log callback: any thread; @arg is the client, which outlives
 * its context (freed only after ufault_ctx_destroy() returned). */
void ufd_ctx_log(void *arg, enum ufault_log_level level, const char *msg)
{
	const struct ufd_client *c = arg;
	char prefix[48];

	snprintf(prefix, sizeof(prefix), "client %llu: ", (unsigned long long)c->id);
	log_line(level, prefix, msg);
}

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */
/* ------------------------------------------------------------------ */

/* Is @fd a userfaultfd? Only the kernel's own name for it counts: a client
 * could hand over any fd, and a context built on a pipe would never serve. */
bool ufd_is_uffd(int fd)
{
	char path[64], target[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = '\0';
	return !strcmp(target, "anon_inode:[userfaultfd]");
}

static int parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
	unsigned long long v;
	char *end;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* sd_notify(3), by hand: one datagram to $NOTIFY_SOCKET ('@': abstract). */
static void sd_notify_msg(struct ufd_daemon *d, const char *msg)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	socklen_t len;
	size_t n;
	int fd;

	if (!path || !*path)
		return;
	n = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || n >= sizeof(sa.sun_path)) {
		ufd_log(d, UFAULT_LOG_WARN, "NOTIFY_SOCKET=%s: not a socket path, ignored", path);
		return;
	}
	memcpy(sa.sun_path, path, n);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, len) < 0)
		ufd_log(d, UFAULT_LOG_WARN, "sd_notify %s: %s", msg, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* ------------------------------------------------------------------ */
/* Accepting                                                            */
/* ------------------------------------------------------------------ */

static bool authorised(const struct ufd_daemon *d, uid_t uid, gid_t gid)
{
	unsigned int i;

	if (uid == d->euid)
		return true;
	for (i = 0; i < d->nr_allow_uid; i++)
		if (d->allow_uid[i] == uid)
			return true;
	for (i = 0; i < d->nr_allow_gid; i++)
		if (d->allow_gid[i] == gid)
			return true;
	return false;
}

static void listener_io(uv_poll_t *poll, int status, int events);

static void listener_resume(uv_timer_t *t)
{
	struct ufd_listener *l = t->data;

	if (l->d->stopping || l->polling)
		return;
	if (!uv_poll_start(&l->poll, UV_READABLE, listener_io))
		l->polling = true;
}

/* Out of fds or memory: the connection stays queued and the listener stays
 * readable, so stop watching for a while instead of spinning on it. */
static void listener_pause(struct ufd_listener *l, int err)
{
	ufd_log(l->d, UFAULT_LOG_WARN, "accept on the %s socket: %s; pausing %d ms",
		ufd_kind_name(l->kind), strerror(err), ACCEPT_RETRY_MS);
	uv_poll_stop(&l->poll);
	l->polling = false;
	uv_timer_start(&l->retry, listener_resume, ACCEPT_RETRY_MS, 0);
}

static void accept_one(struct ufd_listener *l, int fd)
{
	struct ufd_daemon *d = l->d;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int err;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) || len != sizeof(cred)) {
		ufd_log(d, UFAULT_LOG_WARN, "SO_PEERCRED: %s; connection closed", strerror(errno));
		close(fd);
		return;
	}
	if (!authorised(d, cred.uid, cred.gid)) {
		ufd_log(d, UFAULT_LOG_WARN,
			"refused a %s connection from pid %d uid %u gid %u: not allowed",
			ufd_kind_name(l->kind), (int)cred.pid, (unsigned int)cred.uid,
			(unsigned int)cred.gid);
		d->refused[UFD_REFUSED_AUTH]++;
		close(fd);
		return;
	}
	/* Clients whose contexts are still being torn down hold fds and
	 * threads too: they count against the bound. */
	if (d->nr_clients + d->nr_closing >= d->max_clients) {
		ufd_log(d, UFAULT_LOG_WARN, "refused a connection from pid %d: %u clients already",
			(int)cred.pid, d->max_clients);
		d->refused[UFD_REFUSED_MAX_CLIENTS]++;
		close(fd);
		return;
	}
	err = ufd_client_new(d, fd, l->kind, cred.pid, cred.uid, cred.gid);
	if (err) {
		ufd_log(d, UFAULT_LOG_ERROR, "connection from pid %d: %s", (int)cred.pid,
			strerror(-err));
		close(fd);
	}
}

static void listener_io(uv_poll_t *poll, int status, int events)
{
	struct ufd_listener *l = poll->data;
	int i, fd;

	if (status < 0) {
		ufd_log(l->d, UFAULT_LOG_ERROR, "the %s listening socket failed: %s",
			ufd_kind_name(l->kind), uv_strerror(status));
		listener_pause(l, EIO);
		return;
	}
	for (i = 0; i < ACCEPT_BATCH && !l->d->stopping; i++) {
		fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			switch (errno) {
			case EAGAIN:
				return;
			case EINTR:
			case ECONNABORTED:
			case EPROTO:
				continue;
			case EMFILE:
			case ENFILE:
			case ENOBUFS:
			case ENOMEM:
				listener_pause(l, errno);
				return;
			default:
				ufd_log(l->d, UFAULT_LOG_ERROR, "accept: %s", strerror(errno));
				listener_pause(l, errno);
				return;
			}
		}
		accept_one(l, fd);
	}
}

/* ------------------------------------------------------------------ */
/* Listening sockets                                                    */
/* ------------------------------------------------------------------ */

/* mkdir -p of @path's parent directories, mode 0755. */
static int make_parent(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *p;

	if (strlen(path) >= sizeof(dir))
		return -ENAMETOOLONG;
	strcpy(dir, path);
	p = strrchr(dir, '/');
	if (!p || p == dir)
		return 0;
	*p = '\0';
	for (p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0755) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(dir, 0755) && errno != EEXIST)
		return -errno;
	return 0;
}

/*
 * A socket file left by a daemon that died is removed; one another daemon
 * still answers on is not (two daemons on one path would split the
 * clients), nor is anything that is not a socket.
 */
static int remove_stale(struct ufd_daemon *d, const char *path, const struct sockaddr_un *sa)
{
	struct stat st;
	int fd, err;

	if (lstat(path, &st))
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		ufd_log(d, UFAULT_LOG_ERROR, "%s exists and is not a socket", path);
		return -EEXIST;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	err = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) ? errno : 0;
	close(fd);
	if (!err) {
		ufd_log(d, UFAULT_LOG_ERROR, "%s: another daemon is listening there", path);
		return -EADDRINUSE;
	}
	if (unlink(path) && errno != ENOENT)
		return -errno;
	ufd_log(d, UFAULT_LOG_INFO, "removed the stale socket %s", path);
	return 0;
}

static int bind_unix(struct ufd_daemon *d, const char *path, int *out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, err;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	err = make_parent(path);
	if (err)
		return err;
	err = remove_stale(d, path, &sa);
	if (err)
		return err;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		err = -errno;
		close(fd);
		return err;
	}
	/* After bind, not by umask: the mode is the access control between
	 * the daemon's group and everyone else, whatever umask we inherited. */
	if (chmod(path, 0660) || listen(fd, SOMAXCONN)) {
		err = -errno;
		unlink(path);
		close(fd);
		return err;
	}
	*out = fd;
	return 0;
}

static int listener_start(struct ufd_daemon *d, struct ufd_listener *l)
{
	int err;

	err = uv_poll_init(d->loop, &l->poll, l->fd);
	if (err)
		return err;
	l->poll.data = l;
	uv_timer_init(d->loop, &l->retry);
	l->retry.data = l;
	l->started = true;
	err = uv_poll_start(&l->poll, UV_READABLE, listener_io);
	if (err)
		return err;
	l->polling = true;
	return 0;
}

static void listener_closed(uv_handle_t *h)
{
	struct ufd_listener *l = h->data;

	close(l->fd);
	l->fd = -1;
}

static void listener_stop(struct ufd_listener *l)
{
	if (l->fd < 0)
		return;
	if (l->path)
		unlink(l->path);
	if (!l->started) {
		close(l->fd);
		l->fd = -1;
		return;
	}
	if (uv_is_closing((uv_handle_t *)&l->poll))
		return;
	uv_close((uv_handle_t *)&l->retry, NULL);
	uv_close((uv_handle_t *)&l->poll, listener_closed);
}

static bool is_listening_unix(int fd)
{
	int val = 0, type = 0;
	socklen_t len = sizeof(val);
	struct sockaddr_storage ss;
	socklen_t slen = sizeof(ss);

	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &val, &len) || !val)
		return false;
	len = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) || type != SOCK_STREAM)
		return false;
	if (getsockname(fd, (struct sockaddr *)&ss, &slen))
		return false;
	return ss.ss_family == AF_UNIX;
}

/* "c<digits>": a name the fd store gives its entries (persist.c). */
static bool store_entry_name(const char *name)
{
	if (name[0] != 'c' || !name[1])
		return false;
	for (const char *p = name + 1; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	return true;
}

/* The i-th colon-separated field of @names, or "" (into @out). */
static void fd_name(const char *names, unsigned int i, char *out, size_t cap)
{
	const char *p = names;
	size_t n;

	out[0] = '\0';
	for (unsigned int k = 0; k < i && p; k++) {
		p = strchr(p, ':');
		if (p)
			p++;
	}
	if (!p)
		return;
	n = strcspn(p, ":");
	if (n >= cap)
		n = cap - 1;
	memcpy(out, p, n);
	out[n] = '\0';
}

/*
 * sd_listen_fds_with_names(3), by hand: fds from 3 on, if $LISTEN_PID is
 * us. Names (FileDescriptorName=) say which is which: "firecracker" is the
 * Firecracker socket; "c<id>" an entry of the fd store that systemd kept
 * for us (FDSTORE=1, FileDescriptorStoreMax=), kept in d->inherit for
 * persist.c; anything else the native socket. Unnamed, the first is native
 * and a second Firecracker's. 1 if listening sockets came from systemd, 0
 * if not, or -errno.
 */
static int socket_activation(struct ufd_daemon *d)
{
	const char *pid_s = getenv("LISTEN_PID"), *fds_s = getenv("LISTEN_FDS");
	const char *names = getenv("LISTEN_FDNAMES");
	unsigned long long pid, nfds;
	unsigned int i, listeners = 0;

	if (!pid_s || !fds_s)
		return 0;
	if (parse_uint(pid_s, INT_MAX, &pid) || (pid_t)pid != getpid())
		return 0;
	/* A few sockets, and what the fd store holds (FileDescriptorStoreMax=). */
	if (parse_uint(fds_s, 65536, &nfds) || !nfds) {
		ufd_log(d, UFAULT_LOG_ERROR, "LISTEN_FDS=%s: expected 1 to 65536 fds", fds_s);
		return -EINVAL;
	}
	d->listen_fdnames = names != NULL;
	for (i = 0; i < nfds; i++) {
		int fd = SD_LISTEN_FDS_START + (int)i;
		char name[UFD_STORE_MAX_NAME + 1] = "";
		struct ufd_listener *l;

		if (names)
			fd_name(names, i, name, sizeof(name));
		if (store_entry_name(name)) {
			if (!d->inherit) {
				d->inherit = calloc(nfds, sizeof(*d->inherit));
				d->inherit_names = calloc(nfds, sizeof(*d->inherit_names));
				if (!d->inherit || !d->inherit_names)
					return -ENOMEM;
			}
			d->inherit_names[d->nr_inherit] = strdup(name);
			if (!d->inherit_names[d->nr_inherit])
				return -ENOMEM;
			fcntl(fd, F_SETFD, FD_CLOEXEC);
			d->inherit[d->nr_inherit++] = fd;
			continue;
		}
		if (name[0])
			l = strcmp(name, "firecracker") ? &d->native : &d->fc;
		else
			l = listeners == 0 ? &d->native : &d->fc;
		if (!is_listening_unix(fd)) {
			ufd_log(d, UFAULT_LOG_ERROR,
				"socket activation: fd %d is not a listening "
				"Unix stream socket",
				fd);
			return -EINVAL;
		}
		if (l->fd >= 0) {
			ufd_log(d, UFAULT_LOG_ERROR,
				"socket activation: two %s sockets (fd %d, %d)",
				ufd_kind_name(l->kind), l->fd, fd);
			return -EINVAL;
		}
		if (fcntl(fd, F_SETFD, FD_CLOEXEC) ||
		    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK))
			return -errno;
		l->fd = fd;
		l->path = NULL; /* systemd's: never unlinked by us */
		listeners++;
		ufd_log(d, UFAULT_LOG_INFO, "socket activation: fd %d is the %s socket%s%s", fd,
			ufd_kind_name(l->kind), name[0] ? ", named " : "", name);
	}
	/* Not for our children (the keeper is not started under systemd, but
	 * a hook or helper must not believe the sockets are its own). */
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return listeners > 0;
}

/* ------------------------------------------------------------------ */
/* Stopping                                                             */
/* ------------------------------------------------------------------ */

static void daemon_stop(struct ufd_daemon *d, const char *why)
{
	if (d->stopping)
		return;
	d->stopping = true;
	ufd_log(d, UFAULT_LOG_INFO, "stopping (%s): %u clients", why, d->nr_clients);
	sd_notify_msg(d, "STOPPING=1");
	listener_stop(&d->native);
	listener_stop(&d->fc);
	ufd_metrics_stop(d);
	uv_close((uv_handle_t *)&d->sigint, NULL);
	uv_close((uv_handle_t *)&d->sigterm, NULL);
	/* systemd drops its fd store when the unit stops for good and keeps
	 * it over a restart: leave the entries to it. The keeper cannot tell
	 * a restart from a stop: its entries go with the clients. */
	d->store_keep = d->store.kind == UFD_STORE_SYSTEMD;
	ufd_persist_stop(d);
	/* Each context's destruction wakes its client's parked threads; the
	 * loop runs until the last one is done. (A close unlinks the client:
	 * always the head.) */
	while (d->clients)
		ufd_client_close(d->clients, "daemon stopping");
}

static void on_signal(uv_signal_t *s, int signum)
{
	daemon_stop(s->data, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

/* ------------------------------------------------------------------ */
/* Options                                                              */
/* ------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ufaultd [options]\n"
		"  --socket PATH              native protocol socket (default %s)\n"
		"  --firecracker-socket PATH  Firecracker page-fault handler socket\n"
		"  --mem-file PATH            Firecracker guest memory file (opened read-only)\n"
		"  --mem-fd N                 the same, as an inherited fd\n"
		"  --workers N                fault-handling threads per client (default %u)\n"
		"  --max-clients N            connections at once (default %u)\n"
		"  --allow-uid UID            also accept this uid (repeatable)\n"
		"  --allow-gid GID            also accept this gid (repeatable)\n"
		"  --metrics-port PORT        serve GET /metrics on 127.0.0.1:PORT\n"
		"  --keeper PATH              the fd keeper's socket (default: the native\n"
		"                             socket's path + \".keeper\")\n"
		"  --keeper-bin PATH          the ufaultd-keeper to start (default: next to\n"
		"                             this binary)\n"
		"  --no-keeper                no fd store: clients do not outlive the daemon\n"
		"  --log-level LEVEL          error, warn, info (default), debug\n"
		"  -v, --verbose              --log-level debug\n"
		"  -h, --help                 this text\n",
		UFAULT_PROTO_DEFAULT_PATH, UFD_DEFAULT_WORKERS, UFD_DEFAULT_MAX_CLIENTS);
}

enum {
	OPT_SOCKET = 256,
	OPT_FC_SOCKET,
	OPT_MEM_FILE,
	OPT_MEM_FD,
	OPT_WORKERS,
	OPT_MAX_CLIENTS,
	OPT_ALLOW_UID,
	OPT_ALLOW_GID,
	OPT_METRICS_PORT,
	OPT_LOG_LEVEL,
	OPT_KEEPER,
	OPT_KEEPER_BIN,
	OPT_NO_KEEPER,
};

static const struct option long_opts[] = {
    {"socket", required_argument, NULL, OPT_SOCKET},
    {"firecracker-socket", required_argument, NULL, OPT_FC_SOCKET},
    {"mem-file", required_argument, NULL, OPT_MEM_FILE},
    {"mem-fd", required_argument, NULL, OPT_MEM_FD},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"max-clients", required_argument, NULL, OPT_MAX_CLIENTS},
    {"allow-uid", required_argument, NULL, OPT_ALLOW_UID},
    {"allow-gid", required_argument, NULL, OPT_ALLOW_GID},
    {"metrics-port", required_argument, NULL, OPT_METRICS_PORT},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"keeper", required_argument, NULL, OPT_KEEPER},
    {"keeper-bin", required_argument, NULL, OPT_KEEPER_BIN},
    {"no-keeper", no_argument, NULL, OPT_NO_KEEPER},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int bad_option(const char *opt, const char *val)
{
	fprintf(stderr, "ufaultd: bad value for --%s: '%s'\n", opt, val);
	return -EINVAL;
}

static int parse_options(struct ufd_daemon *d, int argc, char **argv)
{
	unsigned long long v;
	int c, mem_fd = -1;

	while ((c = getopt_long(argc, argv, "vh", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_SOCKET:
			d->socket_path = optarg;
			break;
		case OPT_FC_SOCKET:
			d->fc_socket_path = optarg;
			break;
		case OPT_MEM_FILE:
			d->mem_path = optarg;
			break;
		case OPT_MEM_FD:
			if (parse_uint(optarg, INT_MAX, &v))
				return bad_option("mem-fd", optarg);
			mem_fd = (int)v;
			break;
		case OPT_WORKERS:
			if (parse_uint(optarg, 64, &v) || !v)
				return bad_option("workers", optarg);
			d->workers = (unsigned int)v;
			break;
		case OPT_MAX_CLIENTS:
			if (parse_uint(optarg, 65536, &v) || !v)
				return bad_option("max-clients", optarg);
			d->max_clients = (unsigned int)v;
			break;
		case OPT_ALLOW_UID:
			if (parse_uint(optarg, UINT32_MAX - 1, &v) ||
			    d->nr_allow_uid >= UFD_MAX_ALLOW)
				return bad_option("allow-uid", optarg);
			d->allow_uid[d->nr_allow_uid++] = (uid_t)v;
			break;
		case OPT_ALLOW_GID:
			if (parse_uint(optarg, UINT32_MAX - 1, &v) ||
			    d->nr_allow_gid >= UFD_MAX_ALLOW)
				return bad_option("allow-gid", optarg);
			d->allow_gid[d->nr_allow_gid++] = (gid_t)v;
			break;
		case OPT_METRICS_PORT:
			if (parse_uint(optarg, 65535, &v))
				return bad_option("metrics-port", optarg);
			d->metrics_port = (int)v;
			break;
		case OPT_LOG_LEVEL:
			if (!strcmp(optarg, "error"))
				d->log_level = UFAULT_LOG_ERROR;
			else if (!strcmp(optarg, "warn"))
				d->log_level = UFAULT_LOG_WARN;
			else if (!strcmp(optarg, "info"))
				d->log_level = UFAULT_LOG_INFO;
			else if (!strcmp(optarg, "debug"))
				d->log_level = UFAULT_LOG_DEBUG;
			else
				return bad_option("log-level", optarg);
			break;
		case OPT_KEEPER:
			if (!*optarg ||
			    strlen(optarg) >= sizeof(((struct sockaddr_un *)0)->sun_path))
				return bad_option("keeper", optarg);
			d->keeper_path = optarg;
			break;
		case OPT_KEEPER_BIN:
			if (!*optarg)
				return bad_option("keeper-bin", optarg);
			d->keeper_bin = optarg;
			break;
		case OPT_NO_KEEPER:
			d->no_keeper = true;
			break;
		case 'v':
			d->log_level = UFAULT_LOG_DEBUG;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ufaultd: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (d->mem_path && mem_fd >= 0) {
		fprintf(stderr, "ufaultd: --mem-file and --mem-fd are exclusive\n");
		return -EINVAL;
	}
	d->mem_fd = mem_fd;
	return 0;
}

/*
 * The Firecracker memory file: named on our own command line, so we open
 * it ourselves (read-only: the guest's writes stay in its private memory).
 */
static int open_mem_file(struct ufd_daemon *d)
{
	struct stat st;
	int fl;

	if (d->mem_path) {
		d->mem_fd = open(d->mem_path, O_RDONLY | O_CLOEXEC);
		if (d->mem_fd < 0) {
			fprintf(stderr, "ufaultd: %s: %s\n", d->mem_path, strerror(errno));
			return -errno;
		}
	} else if (d->mem_fd >= 0) {
		fl = fcntl(d->mem_fd, F_GETFL);
		if (fl < 0 || (fl & O_PATH) || (fl & O_ACCMODE) == O_WRONLY) {
			fprintf(stderr, "ufaultd: --mem-fd %d: not a readable fd\n", d->mem_fd);
			return -EBADF;
		}
		fcntl(d->mem_fd, F_SETFD, FD_CLOEXEC);
	} else {
		return 0;
	}
	if (fstat(d->mem_fd, &st) || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "ufaultd: the memory file is not a regular file\n");
		return -EINVAL;
	}
	d->mem_size = (uint64_t)st.st_size;
	return 0;
}

/* A daemon holds a few fds per client (socket, uffd, io_uring, files):
 * take what the hard limit allows. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/*
 * Which fd store, and where: systemd's when it runs us with a store
 * (FileDescriptorStoreMax= sets $FDSTORE; a store it hands back, or socket
 * activation, sets $LISTEN_FDNAMES) and can be told ($NOTIFY_SOCKET);
 * else ufaultd-keeper, at --keeper or the native socket's path +
 * ".keeper", started from --keeper-bin or the ufaultd-keeper next to this
 * binary. Nothing with --no-keeper (fds systemd passed are closed).
 */
/* Store entries systemd passed that no store will take. */
static void close_inherited(struct ufd_daemon *d)
{
	for (unsigned int i = 0; i < d->nr_inherit; i++) {
		if (d->inherit[i] >= 0)
			close(d->inherit[i]);
		d->inherit[i] = -1;
	}
}

static int choose_store(struct ufd_daemon *d)
{
	static char keeper_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	static char keeper_bin[PATH_MAX + sizeof("/ufaultd-keeper")];
	const char *ns = getenv("NOTIFY_SOCKET");
	char exe[PATH_MAX], *slash;
	ssize_t n;

	if (d->no_keeper) {
		close_inherited(d);
		return 0;
	}
	if (ns && *ns && (d->listen_fdnames || getenv("FDSTORE"))) {
		int err = ufd_store_open(&d->store, 1, NULL, NULL);

		if (err) {
			close_inherited(d);
			return err;
		}
		ufd_store_set_inherited(&d->store, d->inherit,
					(const char *const *)d->inherit_names, d->nr_inherit);
		return 0;
	}
	close_inherited(d);
	if (!d->keeper_path) {
		struct sockaddr_un sa;
		socklen_t len = sizeof(sa);
		const char *base = d->native.path;

		/* An inherited socket: its own name. */
		if (!base && d->native.fd >= 0 &&
		    !getsockname(d->native.fd, (struct sockaddr *)&sa, &len) &&
		    len > offsetof(struct sockaddr_un, sun_path) + 1 && sa.sun_path[0])
			base = strndup(sa.sun_path, len - offsetof(struct sockaddr_un, sun_path));
		if (!base)
			base = UFAULT_PROTO_DEFAULT_PATH;
		if ((size_t)snprintf(keeper_path, sizeof(keeper_path), "%s.keeper", base) >=
		    sizeof(keeper_path)) {
			ufd_log(d, UFAULT_LOG_ERROR, "%s.keeper: path too long for a socket", base);
			return -ENAMETOOLONG;
		}
		d->keeper_path = keeper_path;
	}
	if (!d->keeper_bin) {
		n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (n > 0) {
			exe[n] = '\0';
			slash = strrchr(exe, '/');
			if (slash) {
				*slash = '\0';
				snprintf(keeper_bin, sizeof(keeper_bin), "%s/ufaultd-keeper", exe);
				d->keeper_bin = keeper_bin;
			}
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	static struct ufd_daemon daemon_state;
	struct ufd_daemon *d = &daemon_state;
	int err, activated;
	uv_loop_t loop;

	d->workers = UFD_DEFAULT_WORKERS;
	d->max_clients = UFD_DEFAULT_MAX_CLIENTS;
	d->metrics_port = -1;
	d->log_level = UFAULT_LOG_INFO;
	d->native = (struct ufd_listener){.d = d, .kind = UFD_NATIVE, .fd = -1};
	d->fc = (struct ufd_listener){.d = d, .kind = UFD_FIRECRACKER, .fd = -1};
	d->next_id = 1;
	d->store.sock = -1;
	d->euid = geteuid();
	d->sys_page = (uint64_t)sysconf(_SC_PAGESIZE);
	journal_stderr = getenv("JOURNAL_STREAM") != NULL;

	if (parse_options(d, argc, argv))
		return 2;
	if (open_mem_file(d))
		return 1;
	/* A peer that vanished mid-reply must cost an EPIPE, not the daemon. */
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();

	activated = socket_activation(d);
	if (activated < 0)
		return 1;
	/* Only the fd store's entries came from systemd: we bind. */
	if (!activated) {
		const char *path = d->socket_path ? d->socket_path : UFAULT_PROTO_DEFAULT_PATH;

		err = bind_unix(d, path, &d->native.fd);
		if (err) {
			fprintf(stderr, "ufaultd: %s: %s\n", path, strerror(-err));
			return 1;
		}
		d->native.path = path;
		if (d->fc_socket_path) {
			err = bind_unix(d, d->fc_socket_path, &d->fc.fd);
			if (err) {
				fprintf(stderr, "ufaultd: %s: %s\n", d->fc_socket_path,
					strerror(-err));
				unlink(path);
				return 1;
			}
			d->fc.path = d->fc_socket_path;
		}
	} else if (d->socket_path || d->fc_socket_path) {
		ufd_log(d, UFAULT_LOG_WARN,
			"socket activation: --socket and "
			"--firecracker-socket are ignored");
	}
	if (d->fc.fd >= 0 && d->mem_fd < 0) {
		fprintf(stderr, "ufaultd: the Firecracker socket needs --mem-file or --mem-fd\n");
		err = -EINVAL;
		goto out_unlink;
	}
	if (d->native.fd < 0 && d->fc.fd < 0) {
		fprintf(stderr, "ufaultd: no socket to listen on\n");
		err = -EINVAL;
		goto out_unlink;
	}

	err = uv_loop_init(&loop);
	if (err) {
		fprintf(stderr, "ufaultd: uv_loop_init: %s\n", uv_strerror(err));
		goto out_unlink;
	}
	d->loop = &loop;
	uv_signal_init(d->loop, &d->sigint);
	uv_signal_init(d->loop, &d->sigterm);
	d->sigint.data = d->sigterm.data = d;
	uv_signal_start(&d->sigint, on_signal, SIGINT);
	uv_signal_start(&d->sigterm, on_signal, SIGTERM);
	if ((d->native.fd >= 0 && (err = listener_start(d, &d->native))) ||
	    (d->fc.fd >= 0 && (err = listener_start(d, &d->fc))) ||
	    (d->metrics_port >= 0 && (err = ufd_metrics_start(d)))) {
		ufd_log(d, UFAULT_LOG_ERROR, "starting: %s", uv_strerror(err));
		daemon_stop(d, "start failed");
		uv_run(d->loop, UV_RUN_DEFAULT);
		uv_loop_close(d->loop);
		return 1;
	}
	/* The clients a killed daemon left, served again before the loop
	 * accepts anything (a resume must find its session). A store that
	 * cannot be had is logged: the daemon serves without one. */
	err = choose_store(d);
	if (err)
		ufd_log(d, UFAULT_LOG_ERROR, "fd store: %s; clients will not outlive the daemon",
			strerror(-err));
	err = ufd_persist_start(d);
	if (err) {
		ufd_log(d, UFAULT_LOG_ERROR, "starting: %s", strerror(-err));
		daemon_stop(d, "start failed");
		uv_run(d->loop, UV_RUN_DEFAULT);
		uv_loop_close(d->loop);
		return 1;
	}

	ufd_log(d, UFAULT_LOG_INFO, "ready: native socket %s%s%s, %u workers per client",
		d->native.path ? d->native.path : "(systemd)",
		d->fc.fd >= 0 ? ", Firecracker socket " : "",
		d->fc.fd >= 0 ? (d->fc.path ? d->fc.path : "(systemd)") : "", d->workers);
	sd_notify_msg(d, "READY=1");

	uv_run(d->loop, UV_RUN_DEFAULT);
	err = uv_loop_close(d->loop);
	if (err)
		ufd_log(d, UFAULT_LOG_WARN, "uv_loop_close: %s", uv_strerror(err));
	/* Last: a keeper that holds nothing exits when we leave. */
	ufd_store_close(&d->store);
	for (unsigned int i = 0; i < d->nr_inherit; i++)
		free(d->inherit_names[i]);
	free(d->inherit_names);
	free(d->inherit);
	if (d->mem_fd >= 0)
		close(d->mem_fd);
	ufd_log(d, UFAULT_LOG_INFO, "stopped");
	return 0;

out_unlink:
	if (d->native.path)
		unlink(d->native.path);
	if (d->fc.path)
		unlink(d->fc.path);
	return 1;
}
