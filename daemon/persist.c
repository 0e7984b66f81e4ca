/* SPDX-License-Identifier: MIT */
/*
 * persist.c - clients that outlive the daemon.
 *
 * Every served client has an entry "c<id>" in the fd store (fdstore.h):
 * a record (below) and its fds, [uffd, one per backing file, the
 * removed-ranges log if it has one (zlog.h: its workers write it in
 * place, so a removal needs no put)]. It is put
 * when the client's session is set up and whenever its regions change,
 * before the client is answered, and deleted when the client is gone. All
 * of it on the loop: the store is a local socket and answers at once.
 *
 * A daemon that starts finds the entries a killed one left and rebuilds
 * each client before it accepts anything: a foreign context on the uffd,
 * the regions as they were, then UFFDIO_WAKE over every region, since a
 * fault message the dead daemon read but never resolved left its thread
 * parked where no message will come again; woken, it faults anew and the
 * new message is served. Faults that came while no daemon ran wait in the
 * uffd and are read as usual. Such a client is "detached": it has no
 * connection. A native one gets one back when its process resumes (HELLO
 * with resume_id, session.c); until then, and for a Firecracker VM, which
 * never reconnects, a pidfd of its process says when it is gone.
 *
 * The record (record.h) is read back as untrusted input: it may come from a store
 * another program wrote to. Every size, count, alignment and fd is
 * checked, and one that fails is dropped, its fds closed, its entry
 * deleted.
 *
 * Forks: a context whose client enabled UFFD_FEATURE_EVENT_FORK calls
 * ufd_on_fork() on one of its workers with the child's uffd; the fd is
 * queued for the loop, which makes it a client of its own (no connection,
 * the parent's regions) and stores it too. The child is served for as
 * long as its own process lives, which is often longer than its parent:
 * were its uffd closed, the kernel would drop the registration and its
 * missing pages would read as zeros. Its pid is not known (the event does
 * not say), so no pidfd: a timer asks each child's uffd instead
 * (child_probe()).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "proto.h"
#include "record.h"
#include "ufaultd.h"

#define STORE_OPEN_TRIES 3   /* a keeper that was exiting as we came: start one */
#define KEEPER_RETRY_MS 1000 /* a keeper that cannot be had: tried again after */
#define CHILD_PROBE_MS 500   /* how often forked children are asked if they exited */

#define REC_MAX_REGIONS                                                                            \
	((UFD_STORE_MAX_BLOB - sizeof(struct ufd_rec_head)) / sizeof(struct ufd_rec_region))
_Static_assert(REC_MAX_REGIONS >= UFAULT_PROTO_MAX_REGIONS, "a native client's regions fit");
_Static_assert(sizeof(struct ufd_rec_head) == 72 && UFD_REC_HEAD_V1 == 64 &&
		   sizeof(struct ufd_rec_region) == 40,
	       "record.h has no padding");

/* A child's uffd from on_fork, on its way to the loop. */
struct ufd_fork {
	struct ufd_fork *next;
	/* Not freed before its forks are taken: the parent's workers queue
	 * them, and its destruction joins those workers, then takes them
	 * (ufd_forks_take()) before it frees the parent. */
	struct ufd_client *parent;
	int fd;
};

/* ------------------------------------------------------------------ */
/* Processes                                                            */
/* ------------------------------------------------------------------ */

/* /proc/<pid>/stat field 22, starttime: with the pid, it names one process
 * (a pid is reused, a pid and its start time are not). 0: not known. */
uint64_t ufd_proc_start_time(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long v = 0;
	ssize_t n;
	int fd, field;

	if (pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* The name (field 2) may hold spaces and parentheses: count from
	 * the last ')'. */
	p = strrchr(buf, ')');
	if (!p)
		return 0;
	for (field = 2; *p && field < 22; p++)
		if (*p == ' ')
			field++;
	if (field != 22 || sscanf(p, "%llu", &v) != 1)
		return 0;
	return v;
}

/* A pidfd of @pid if it is still the process that started at @start_time;
 * -ESRCH if it is gone. */
static int open_process(pid_t pid, uint64_t start_time)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	if (fd < 0)
		return -errno;
	/* Checked after the open: the pidfd then names this process or one
	 * that exited already (whose start time no longer reads). */
	if (!start_time || ufd_proc_start_time(pid) != start_time) {
		close(fd);
		return -ESRCH;
	}
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	return fd;
}

static void pid_exited(uv_poll_t *poll, int status, int events)
{
	struct ufd_client *c = poll->data;

	ufd_client_close(c, status < 0 ? uv_strerror(status) : "its process exited");
}

/* Watch the detached client's process (@c->pidfd): it is freed when the
 * process exits. */
int ufd_persist_watch(struct ufd_client *c)
{
	int err = uv_poll_init(c->d->loop, &c->pid_poll, c->pidfd);

	if (err)
		return err;
	c->pid_poll.data = c;
	err = uv_poll_start(&c->pid_poll, UV_READABLE, pid_exited);
	if (err) {
		c->open_handles++;
		uv_close((uv_handle_t *)&c->pid_poll, ufd_client_handle_closed);
		close(c->pidfd);
		c->pidfd = -1;
	}
	return err;
}

void ufd_persist_unwatch(struct ufd_client *c)
{
	if (c->pidfd < 0)
		return;
	/* uv_close() stops the poll at once: the fd may go now. */
	c->open_handles++;
	uv_close((uv_handle_t *)&c->pid_poll, ufd_client_handle_closed);
	close(c->pidfd);
	c->pidfd = -1;
}

/*
 * The page child_probe() asks about: the highest user page there is, or,
 * if one of @c's regions holds it, the first page below that region (and
 * so on: the regions do not overlap, so each moves it once at most). 0:
 * every candidate is in a region.
 *
 * On x86-64 the highest page is either unmapped or the top of the stack
 * (the stack's end is put a random distance below UFD_USER_VA_END, or
 * right at it without randomisation), which holds argv, the environment
 * and the auxv strings: nobody registers it for missing faults, and a
 * page that is there is never replaced (EEXIST). Where the address space
 * is larger (arm64, 5-level paging) it lies a long way above where mmap()
 * places mappings. A zero page only goes where the page is missing in a
 * vma registered with a userfaultfd: the kernel checks that the vma has
 * one, not that it is this uffd. The child's own registrations are the
 * ones it inherited, the regions the daemon knows, which the page is kept
 * out of here; a range the child registered with a uffd of its own would
 * have to hold the top of its stack.
 */
static uint64_t probe_page(const struct ufd_client *c)
{
	uint64_t ps = c->d->sys_page, page = (UFD_USER_VA_END & ~(ps - 1)) - ps;
	unsigned int i = 0;

	while (i < c->nr_regs) {
		const struct ufault_proto_region *r = &c->regs[i];

		/* Both are aligned to ps: the page overlaps iff it starts
		 * in the region. */
		if (page < r->start || page - r->start >= r->len) {
			i++;
			continue;
		}
		if (r->start < c->d->wake_start + ps)
			return 0;
		page = r->start - ps;
		i = 0;
	}
	return page;
}

/*
 * Is forked child @c's process still there? Its pid is not known, but its
 * uffd tells: UFFDIO_ZEROPAGE takes a reference on the uffd's mm before
 * anything else and fails with ESRCH once that mm is gone (the process
 * exited, or exec'd, which leaves nothing of its registration either).
 * While it lives, the ioctl fails with ENOENT on a page where no vma
 * registered with a userfaultfd is (probe_page()), and installs nothing;
 * DONTWAKE, so that it wakes nothing either. 0: there; -ESRCH: gone;
 * -errno: not told (the caller keeps the child).
 */
static int child_probe(const struct ufd_client *c)
{
	struct uffdio_zeropage zp = {
	    .range = {.start = probe_page(c), .len = c->d->sys_page},
	    .mode = UFFDIO_ZEROPAGE_MODE_DONTWAKE,
	};

	if (!zp.range.start)
		return -ENOSPC;
	if (!ioctl(c->uffd, UFFDIO_ZEROPAGE, &zp))
		return -EEXIST; /* a registered page after all: now a zero page */
	/* EAGAIN: an event on the mm (a fork of its own, a remap) is under
	 * way, which says it is there. */
	return errno == ENOENT || errno == EAGAIN ? 0 : -errno;
}

/* ------------------------------------------------------------------ */
/* Putting and deleting                                                 */
/* ------------------------------------------------------------------ */

static void entry_name(char *name, size_t len, uint64_t id)
{
	snprintf(name, len, "c%llu", (unsigned long long)id);
}

/*
 * @c's record into @buf and its fds into @fds: the uffd, then each backing
 * file once (regions on one file share its fd: any open of it reads the
 * same). The record's size, or -E2BIG (more files than an entry holds).
 */
static long record_build(const struct ufd_client *c, void *buf, int *fds, unsigned int *nr)
{
	struct ufd_rec_head *h = buf;
	struct ufd_rec_region *rr = (struct ufd_rec_region *)(h + 1);
	struct stat ids[UFD_STORE_MAX_FDS];
	unsigned int n = 1, i, k;

	fds[0] = c->uffd;
	for (i = 0; i < c->nr_regs; i++) {
		struct stat st;
		int idx = -1;

		if (c->reg_fds[i] >= 0) {
			if (fstat(c->reg_fds[i], &st))
				return -errno;
			for (k = 1; k < n && idx < 0; k++)
				if (ids[k].st_dev == st.st_dev && ids[k].st_ino == st.st_ino)
					idx = (int)k;
			if (idx < 0) {
				if (n == UFD_STORE_MAX_FDS)
					return -E2BIG;
				ids[n] = st;
				fds[n] = c->reg_fds[i];
				idx = (int)n++;
			}
		}
		rr[i] = (struct ufd_rec_region){.r = c->regs[i], .fd = idx};
		if (c->reg_mems[i] >= 0) { /* its own: never shared */
			if (n == UFD_STORE_MAX_FDS)
				return -E2BIG;
			fds[n] = c->reg_mems[i];
			rr[i].mem = n++;
		}
	}
	if (c->zlog.fd >= 0) {
		if (n == UFD_STORE_MAX_FDS)
			return -E2BIG;
		fds[n++] = c->zlog.fd;
	}
	*h = (struct ufd_rec_head){
	    .magic = UFD_REC_MAGIC,
	    .version = UFD_REC_VERSION,
	    .kind = (uint16_t)c->kind,
	    .id = c->id,
	    .parent = c->parent_id,
	    .features = c->features,
	    .start_time = c->start_time,
	    .pid = (uint32_t)c->pid,
	    .uid = (uint32_t)c->uid,
	    .gid = (uint32_t)c->gid,
	    .nr_regions = c->nr_regs,
	    .nr_fds = n,
	    .zlog = c->zlog.fd >= 0 ? n - 1 : 0,
	    .budget = c->budget,
	};
	*nr = n;
	return (long)(sizeof(*h) + c->nr_regs * sizeof(*rr));
}

static int store_one(struct ufd_client *c)
{
	static unsigned char buf[UFD_STORE_MAX_BLOB]; /* the loop's only */
	int fds[UFD_STORE_MAX_FDS];
	char name[UFD_STORE_MAX_NAME];
	unsigned int nr;
	long len;

	entry_name(name, sizeof(name), c->id);
	len = record_build(c, buf, fds, &nr);
	if (len < 0)
		return (int)len;
	return ufd_store_put(&c->d->store, name, buf, (size_t)len, fds, nr);
}

static void keeper_poll_closed(uv_handle_t *h)
{
	free(h);
}

static void keeper_unwatch(struct ufd_daemon *d)
{
	if (!d->keeper_poll)
		return;
	uv_close((uv_handle_t *)d->keeper_poll, keeper_poll_closed);
	d->keeper_poll = NULL;
}

static int store_reopen(struct ufd_daemon *d);

/* The keeper only ever answers a LIST: anything readable on its
 * connection is its end (killed, or it hit an error). */
static void keeper_gone(uv_poll_t *p, int status, int events)
{
	struct ufd_daemon *d = p->data;

	ufd_log(d, UFAULT_LOG_WARN, "fd store: the keeper at %s hung up", d->keeper_path);
	store_reopen(d);
}

/* Watch the keeper's connection, so that a dead keeper is replaced at
 * once, not at the next store. */
static void keeper_watch(struct ufd_daemon *d)
{
	uv_poll_t *p = malloc(sizeof(*p));

	if (!p || uv_poll_init(d->loop, p, d->store.sock)) {
		free(p);
		return; /* noticed at the next store instead */
	}
	p->data = d;
	d->keeper_poll = p;
	if (uv_poll_start(p, UV_READABLE | UV_DISCONNECT, keeper_gone))
		keeper_unwatch(d);
}

/*
 * The keeper went away: a new one, and every client into it again (the
 * entries went with the old one). -errno if none can be had: the store is
 * tried again at a later put, once KEEPER_RETRY_MS passed.
 */
static int store_reopen(struct ufd_daemon *d)
{
	struct ufd_client *c;
	int err;

	keeper_unwatch(d);
	ufd_store_close(&d->store);
	for (c = d->clients; c; c = c->next)
		c->stored = false;
	d->keeper_retry_at = uv_now(d->loop) + KEEPER_RETRY_MS;
	err = ufd_store_open(&d->store, 0, d->keeper_path, d->keeper_bin);
	if (err) {
		ufd_log(d, UFAULT_LOG_ERROR,
			"fd store: the keeper at %s: %s; clients will not outlive the daemon "
			"until one answers",
			d->keeper_path, strerror(-err));
		return err;
	}
	ufd_log(d, UFAULT_LOG_WARN, "fd store: a new keeper at %s; storing every client again",
		d->keeper_path);
	keeper_watch(d);
	for (c = d->clients; c; c = c->next)
		if (ufd_client_listed(c) && c->uffd >= 0)
			c->stored = !store_one(c);
	return 0;
}

/*
 * Store @c's entry, or replace it (its regions changed). A failure is
 * logged and the client served anyway: it only costs the client a restart.
 */
void ufd_persist_put(struct ufd_client *c)
{
	struct ufd_daemon *d = c->d;
	int err;

	if (c->closing)
		return;
	if (d->store.kind == UFD_STORE_NONE) {
		/* A keeper lost: another try, now and then (it stores @c). */
		if (d->keeper_wanted && uv_now(d->loop) >= d->keeper_retry_at)
			store_reopen(d);
		return;
	}
	err = store_one(c);
	if (!err) {
		c->stored = true;
		return;
	}
	if (d->store.kind == UFD_STORE_KEEPER && err != -E2BIG && !store_reopen(d))
		return; /* the reopen stored every client, @c included */
	ufd_log(d, UFAULT_LOG_WARN, "client %llu: not kept in the fd store (%s): %s",
		(unsigned long long)c->id,
		err == -E2BIG ? "more backing files than an entry holds" : "store error",
		strerror(-err));
	/* An older entry would bring back a session that is not this one. */
	ufd_persist_del(c);
}

void ufd_persist_del(struct ufd_client *c)
{
	struct ufd_daemon *d = c->d;
	char name[UFD_STORE_MAX_NAME];
	int err;

	if (!c->stored || d->store.kind == UFD_STORE_NONE)
		return;
	/* systemd drops its store on a real stop and keeps it over a
	 * restart: a stopping daemon leaves the entries to it. */
	if (d->stopping && d->store_keep)
		return;
	entry_name(name, sizeof(name), c->id);
	err = ufd_store_del(&d->store, name);
	if (err)
		ufd_log(d, UFAULT_LOG_WARN, "client %llu: deleting its fd store entry: %s",
			(unsigned long long)c->id, strerror(-err));
	c->stored = false;
}

/* ------------------------------------------------------------------ */
/* Loading                                                              */
/* ------------------------------------------------------------------ */

/* An entry that passed the checks, waiting to be rebuilt. */
struct loaded {
	struct loaded *next;
	struct ufd_rec_head h;
	struct ufd_rec_region *regs;
	int fds[UFD_STORE_MAX_FDS];
};

struct load_state {
	struct ufd_daemon *d;
	struct loaded *list;
	uint64_t max_id;
};

static void close_all(int *fds, unsigned int nr)
{
	for (unsigned int i = 0; i < nr; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static bool readable_file(int fd)
{
	struct stat st;
	int fl = fcntl(fd, F_GETFL);

	return fl >= 0 && !(fl & O_PATH) && (fl & O_ACCMODE) != O_WRONLY && !fstat(fd, &st) &&
	       S_ISREG(st.st_mode);
}

/* Everything the record claims, checked against itself and the fds (the
 * head into @h, its size, by version, into *@hsz). NULL, or why not. */
static const char *record_check(struct ufd_daemon *d, const char *name, const void *blob,
				size_t len, const int *fds, unsigned int nr, struct ufd_rec_head *h,
				size_t *hsz)
{
	const struct ufd_rec_region *rr;
	struct ufault_proto_region *seen;
	bool used[UFD_STORE_MAX_FDS] = {false};
	char want[UFD_STORE_MAX_NAME];
	const char *why = NULL;
	unsigned int i, max_regions;

	if (len < UFD_REC_HEAD_V1)
		return "record shorter than its header";
	memset(h, 0, sizeof(*h));
	memcpy(h, blob, UFD_REC_HEAD_V1);
	if (h->magic != UFD_REC_MAGIC || (h->version != 1 && h->version != UFD_REC_VERSION))
		return "not a record of a known version";
	*hsz = h->version == 1 ? UFD_REC_HEAD_V1 : sizeof(*h);
	if (len < *hsz)
		return "record shorter than its header";
	memcpy(h, blob, *hsz);
	rr = (const struct ufd_rec_region *)((const char *)blob + *hsz);
	if (h->kind != UFD_NATIVE && h->kind != UFD_FIRECRACKER)
		return "unknown client kind";
	if (h->zlog && h->zlog >= nr)
		return "removed-ranges log index out of range";
	max_regions = h->kind == UFD_NATIVE ? UFAULT_PROTO_MAX_REGIONS : UFAULT__FC_MAX_REGIONS;
	if (h->nr_regions > max_regions)
		return "too many regions";
	if (len != *hsz + (size_t)h->nr_regions * sizeof(*rr))
		return "record size does not match its region count";
	entry_name(want, sizeof(want), h->id);
	if (!h->id || h->id >= UINT64_MAX / 2 || strcmp(name, want))
		return "entry name does not match the client id";
	if (h->parent == h->id)
		return "a client is its own parent";
	if (!h->parent && (!h->pid || h->pid > INT_MAX || !h->start_time))
		return "no process";
	if (h->nr_fds != nr || !nr)
		return "fd count does not match";
	if (!ufd_is_uffd(fds[0]))
		return "first fd is not a userfaultfd";
	for (i = 1; i < nr; i++)
		if (!readable_file(fds[i]))
			return "a backing fd is not a regular file open for reading";
	seen = calloc(h->nr_regions ? h->nr_regions : 1, sizeof(*seen));
	if (!seen)
		return "out of memory";
	for (i = 0; i < h->nr_regions && !why; i++) {
		struct ufd_rec_region r;
		unsigned char msg[sizeof(struct ufault_proto_hdr) + sizeof(r.r)];
		struct ufault__proto_msg m;
		size_t n;
		bool file;

		memcpy(&r, rr + i, sizeof(r));
		file = r.r.source != UFAULT_PROTO_SRC_ZERO;
		/* The region as a REGISTER message: the protocol's own check
		 * (page size, alignment, wrap, source), nothing less. */
		n = ufault__proto_build(msg, UFAULT_MSG_REGISTER, 0, &r.r, sizeof(r.r));
		if (ufault__proto_check(msg, n, r.r.source, d->sys_page, &m, &why))
			break;
		if (r.r.source == UFAULT_PROTO_SRC_SHARED
			? (r.mem < 1 || r.mem >= nr || used[r.mem] || r.mem == h->zlog ||
			   (int)r.mem == r.fd)
			: r.mem != 0)
			why = "region memfd index out of range or shared";
		else if (file ? (r.fd < 1 || (unsigned int)r.fd >= nr ||
				 (h->zlog && (unsigned int)r.fd == h->zlog))
			      : r.fd != -1)
			why = "region fd index out of range";
		else if (h->kind == UFD_FIRECRACKER && !file)
			why = "a Firecracker region without its memory file";
		else if (ufault__proto_overlaps(seen, i, r.r.start, r.r.len))
			why = "regions overlap";
		if (file && !why)
			used[r.fd] = true;
		if (r.mem && !why)
			used[r.mem] = true;
		seen[i] = r.r;
	}
	free(seen);
	if (h->zlog)
		used[h->zlog] = true;
	for (i = 1; i < nr && !why; i++)
		if (!used[i])
			why = "an fd no region uses";
	return why;
}

static void on_entry(void *arg, const char *name, const void *blob, size_t len, int *fds,
		     unsigned int nr)
{
	struct load_state *ls = arg;
	struct ufd_daemon *d = ls->d;
	struct loaded *l;
	struct ufd_rec_head h;
	size_t hsz = 0;
	const char *why = record_check(d, name, blob, len, fds, nr, &h, &hsz);

	l = why ? NULL : calloc(1, sizeof(*l));
	if (l) {
		l->regs = malloc(h.nr_regions ? h.nr_regions * sizeof(*l->regs) : 1);
		if (!l->regs) {
			free(l);
			l = NULL;
		}
	}
	if (!l) {
		ufd_log(d, UFAULT_LOG_ERROR, "fd store: entry %s dropped: %s", name,
			why ? why : "out of memory");
		close_all(fds, nr);
		ufd_store_del(&d->store, name);
		return;
	}
	l->h = h;
	memcpy(l->regs, (const char *)blob + hsz, h.nr_regions * sizeof(*l->regs));
	memcpy(l->fds, fds, nr * sizeof(int));
	l->next = ls->list;
	ls->list = l;
	if (h.id > ls->max_id)
		ls->max_id = h.id;
}

/*
 * Let every thread parked on @c's uffd fault again: all of the user
 * address space, since the dead daemon may have held a fault back for a
 * region it had not been told of yet (and neither has this one). Where
 * that range is not the kernel's (another address-space size), region by
 * region.
 */
void ufd_wake_all(struct ufd_client *c)
{
	uint64_t start = c->d->wake_start;
	struct uffdio_range all = {.start = start, .len = UFD_USER_VA_END - start};

	if (!ioctl(c->uffd, UFFDIO_WAKE, &all))
		return;
	for (unsigned int i = 0; i < c->nr_regs; i++) {
		struct uffdio_range r = {.start = c->regs[i].start, .len = c->regs[i].len};

		if (ioctl(c->uffd, UFFDIO_WAKE, &r))
			ufd_log(c->d, UFAULT_LOG_WARN,
				"client %llu: UFFDIO_WAKE [%#llx, +%llu): %s",
				(unsigned long long)c->id, (unsigned long long)r.start,
				(unsigned long long)r.len, strerror(errno));
	}
}

/* The removed-ranges log of a stored client, checked (zlog.h): its
 * ranges read as zeros again. */
static int adopt_zlog(struct ufd_client *c, int fd)
{
	const char *why;
	int keep = fcntl(fd, F_DUPFD_CLOEXEC, 3), err;

	if (keep < 0)
		return -errno;
	err = ufd_zlog_adopt(&c->zlog, keep, c->d->sys_page, UFD_USER_VA_END, &why);
	if (err) {
		close(keep);
		ufd_log(c->d, UFAULT_LOG_ERROR, "fd store: client %llu: %s",
			(unsigned long long)c->id, why);
	}
	return err;
}

/*
 * Serve @l as a detached client: one of a process, watched through a
 * pidfd, or a forked child, whose uffd says when its process is gone
 * (child_probe()), whether its parent is still there or not. A process
 * that exited while no daemon ran is dropped, once what its write-back
 * mappings (SHARED) held is stored: their memfds are here, and the context
 * built for them stores it as it goes, as a client's that dies does.
 */
static int rebuild(struct ufd_daemon *d, struct loaded *l)
{
	const struct ufd_rec_head *h = &l->h;
	struct ufd_client *c;
	uint64_t max_page = 0;
	unsigned int i;
	int pidfd = -1, err;
	bool gone = false, shared = false;
	char child[48] = "";

	for (i = 0; i < h->nr_regions; i++)
		shared = shared || l->regs[i].r.source == UFAULT_PROTO_SRC_SHARED;
	if (!h->parent) {
		pidfd = open_process((pid_t)h->pid, h->start_time);
		if (pidfd < 0 && !shared) {
			ufd_log(d, UFAULT_LOG_INFO,
				"fd store: client %llu (pid %u) is gone; its entry is dropped",
				(unsigned long long)h->id, h->pid);
			return pidfd;
		}
		gone = pidfd < 0;
	}
	c = ufd_client_alloc(d, h->id, (enum ufd_kind)h->kind, (pid_t)h->pid, (uid_t)h->uid,
			     (gid_t)h->gid);
	if (!c) {
		if (pidfd >= 0)
			close(pidfd);
		return -ENOMEM;
	}
	c->start_time = h->start_time;
	c->parent_id = h->parent;
	for (i = 0; i < h->nr_regions; i++)
		if (l->regs[i].r.page_size > max_page)
			max_page = l->regs[i].r.page_size;
	err = h->zlog ? adopt_zlog(c, l->fds[h->zlog]) : 0;
	if (!err)
		err = ufd_client_serve(c, l->fds[0], h->features, max_page);
	for (i = 0; !err && i < h->nr_regions; i++)
		err = ufd_client_region(c, &l->regs[i].r,
					l->regs[i].fd >= 0 ? l->fds[l->regs[i].fd] : -1,
					l->regs[i].mem ? l->fds[l->regs[i].mem] : -1);
	if (!err && h->budget && !gone)
		err = ufd_client_budget(c, h->budget);
	/* A child that exited while no daemon ran goes as a process does. */
	if (!err && c->parent_id)
		gone = child_probe(c) == -ESRCH;
	if (err || gone) {
		if (gone && !c->parent_id)
			ufd_log(
			    d, UFAULT_LOG_INFO,
			    "fd store: client %llu (pid %u) is gone; its write-back mappings are "
			    "stored and its entry dropped",
			    (unsigned long long)h->id, h->pid);
		else if (gone)
			ufd_log(d, UFAULT_LOG_INFO,
				"fd store: client %llu (fork child of %llu) is gone; its entry is "
				"dropped",
				(unsigned long long)h->id, (unsigned long long)h->parent);
		else
			ufd_log(d, UFAULT_LOG_ERROR,
				"fd store: client %llu cannot be served again: %s",
				(unsigned long long)h->id, ufault_strerror(err));
		if (c->ctx)
			ufault_ctx_destroy(c->ctx);
		c->ctx = NULL;
		if (pidfd >= 0)
			close(pidfd);
		ufd_client_free(c);
		return err ? err : -ESRCH;
	}
	c->stored = true;
	ufd_client_link(c);
	if (pidfd >= 0) {
		c->pidfd = pidfd;
		err = ufd_persist_watch(c);
		if (err) {
			ufd_client_close(c, uv_strerror(err));
			return 0; /* the close deletes the entry */
		}
	}
	ufd_wake_all(c);
	if (c->parent_id)
		snprintf(child, sizeof(child), " fork child of %llu",
			 (unsigned long long)c->parent_id);
	ufd_log(d, UFAULT_LOG_INFO,
		"client %llu: %s%s, pid %d, %u regions, served again (detached)",
		(unsigned long long)c->id, ufd_kind_name(c->kind), child, (int)c->pid, c->nr_regs);
	return 0;
}

static void loaded_free(struct loaded *l)
{
	close_all(l->fds, l->h.nr_fds);
	free(l->regs);
	free(l);
}

/* The client that serves @uffd already, or NULL. */
static struct ufd_client *uffd_served(struct ufd_daemon *d, int uffd)
{
	for (struct ufd_client *c = d->clients; c; c = c->next)
		if (ufd_client_listed(c) && c->uffd >= 0 && ufd_same_file(c->uffd, uffd))
			return c;
	return NULL;
}

/*
 * Rebuild every entry, each on its own: a forked child is served whether
 * its parent is or not (it often outlives it). Those of a process first,
 * then the children, so that of two entries on one uffd, which only a
 * store that cannot be trusted holds, the one whose process was checked
 * is kept: two contexts on one uffd would each read faults that only the
 * other can serve (do_hello() keeps one session per uffd too).
 */
static void rebuild_all(struct ufd_daemon *d, struct load_state *ls)
{
	char name[UFD_STORE_MAX_NAME];

	for (int children = 0; children < 2; children++) {
		struct loaded **pp = &ls->list, *l;

		while ((l = *pp)) {
			struct ufd_client *twin;
			int err;

			if (!l->h.parent != !children) {
				pp = &l->next;
				continue;
			}
			*pp = l->next;
			twin = uffd_served(d, l->fds[0]);
			if (twin) {
				ufd_log(d, UFAULT_LOG_ERROR,
					"fd store: entry c%llu dropped: its uffd is client %llu's",
					(unsigned long long)l->h.id, (unsigned long long)twin->id);
				err = -EEXIST;
			} else {
				err = rebuild(d, l);
			}
			if (err) {
				entry_name(name, sizeof(name), l->h.id);
				ufd_store_del(&d->store, name);
			}
			loaded_free(l);
		}
	}
}

/* ------------------------------------------------------------------ */
/* Forks                                                                */
/* ------------------------------------------------------------------ */

/* A context's worker, with the child's uffd it just read: to the loop. */
void ufd_on_fork(void *arg, int child_uffd)
{
	struct ufd_client *c = arg;
	struct ufd_daemon *d = c->d;
	struct ufd_fork *f = malloc(sizeof(*f));

	pthread_mutex_lock(&d->fork_lock);
	if (!f || d->fork_closed) {
		pthread_mutex_unlock(&d->fork_lock);
		close(child_uffd);
		free(f);
		return;
	}
	f->parent = c;
	f->fd = child_uffd;
	f->next = d->forks;
	d->forks = f;
	uv_async_send(&d->fork_async);
	pthread_mutex_unlock(&d->fork_lock);
}

/* The child of @p, served on @fd with @p's regions as they were at the
 * fork (the fork waited for the event to be read). @p may be closing
 * already (its process forked and exited): its child is served all the
 * same, for as long as the child lives. */
static void fork_child(struct ufd_client *p, int fd)
{
	struct ufd_daemon *d = p->d;
	struct ufd_client *c = ufd_client_alloc(d, d->next_id, p->kind, 0, p->uid, p->gid);
	uint64_t max_page = 0;
	unsigned int i;
	int err = c ? 0 : -ENOMEM;

	for (i = 0; c && i < p->nr_regs; i++)
		if (p->regs[i].page_size > max_page)
			max_page = p->regs[i].page_size;
	if (!err) {
		c->parent_id = p->id;
		/* What the parent removed reads as zeros in its copy too. */
		if (p->zlog.fd >= 0)
			err = ufd_zlog_fork(&c->zlog, &p->zlog);
	}
	if (!err)
		err = ufd_client_serve(c, fd, p->features, max_page);
	/* A SHARED mapping is MADV_DONTFORK: the child has none. */
	for (i = 0; !err && i < p->nr_regs; i++)
		if (p->regs[i].source != UFAULT_PROTO_SRC_SHARED)
			err = ufd_client_region(c, &p->regs[i], p->reg_fds[i], -1);
	close(fd); /* the context and c->uffd are dups */
	if (err) {
		ufd_log(d, UFAULT_LOG_WARN,
			"client %llu: its forked child cannot be served (%s): the child's faults "
			"fall back to the kernel",
			(unsigned long long)p->id, ufault_strerror(err));
		if (c && c->ctx)
			ufault_ctx_destroy(c->ctx);
		if (c) {
			c->ctx = NULL;
			ufd_client_free(c);
		}
		return;
	}
	d->next_id++;
	ufd_client_link(c);
	ufd_persist_put(c);
	ufd_log(d, UFAULT_LOG_INFO, "client %llu: forked child of client %llu, %u regions",
		(unsigned long long)c->id, (unsigned long long)p->id, c->nr_regs);
}

/*
 * Every fork queued so far becomes a client: when the loop hears of them
 * (forks_ready()), and when a client is freed (its queued forks still
 * need it, session.c: destroy_done()).
 */
void ufd_forks_take(struct ufd_daemon *d)
{
	struct ufd_fork *f, *list = NULL, *next;

	if (!d->persist_started)
		return;
	pthread_mutex_lock(&d->fork_lock);
	/* Reversed: in the order they came. */
	for (f = d->forks; f; f = next) {
		next = f->next;
		f->next = list;
		list = f;
	}
	d->forks = NULL;
	pthread_mutex_unlock(&d->fork_lock);
	for (f = list; f; f = next) {
		next = f->next;
		fork_child(f->parent, f->fd);
		free(f);
	}
}

static void forks_ready(uv_async_t *a)
{
	ufd_forks_take(a->data);
}

/*
 * Each forked child's process, asked through its uffd (child_probe()):
 * one that is gone is freed, and its entry deleted. A child whose pid is
 * not known has no pidfd to watch; a repeating timer is the price, one
 * ioctl per child every CHILD_PROBE_MS.
 */
static void probe_children(uv_timer_t *t)
{
	struct ufd_daemon *d = t->data;
	struct ufd_client *c, *next;
	int err;

	for (c = d->clients; c; c = next) {
		next = c->next; /* a close unlinks @c, and only @c */
		if (!c->parent_id || !ufd_client_listed(c) || c->uffd < 0)
			continue;
		err = child_probe(c);
		if (err == -ESRCH) {
			ufd_client_close(c, "its process exited");
		} else if (err && !c->probe_warned) {
			const char *why = strerror(-err);

			if (err == -EEXIST)
				why = "a page registered with its uffd is where it was asked about";
			else if (err == -ENOSPC)
				why = "its regions leave no page to ask about";
			c->probe_warned = true;
			ufd_log(d, UFAULT_LOG_WARN,
				"client %llu: cannot tell whether its process exited (%s); it is "
				"kept",
				(unsigned long long)c->id, why);
		}
	}
}

/* ------------------------------------------------------------------ */
/* Start and stop                                                       */
/* ------------------------------------------------------------------ */

/* A load that failed half-way: what it gave is given again next time. */
static void loaded_discard(struct load_state *ls)
{
	while (ls->list) {
		struct loaded *l = ls->list;

		ls->list = l->next;
		loaded_free(l);
	}
	ls->max_id = 0;
}

static void open_store(struct ufd_daemon *d)
{
	bool systemd = d->store.kind == UFD_STORE_SYSTEMD;
	struct load_state ls = {.d = d};
	int err = 0;

	for (int i = 0; i < STORE_OPEN_TRIES; i++) {
		if (!systemd) {
			err = ufd_store_open(&d->store, 0, d->keeper_path, d->keeper_bin);
			if (err)
				break;
		}
		err = ufd_store_load(&d->store, on_entry, &ls);
		if (!err || systemd)
			break;
		/* The keeper hung up on us (it was exiting, holding
		 * nothing, as we connected): a new one. */
		loaded_discard(&ls);
		ufd_store_close(&d->store);
	}
	if (err) {
		ufd_log(d, UFAULT_LOG_ERROR,
			"fd store: %s: %s; clients will not outlive the daemon",
			systemd ? "systemd" : d->keeper_path, strerror(-err));
		loaded_discard(&ls);
		ufd_store_close(&d->store);
		return;
	}
	if (ls.max_id >= d->next_id)
		d->next_id = ls.max_id + 1;
	rebuild_all(d, &ls);
	if (!systemd) {
		d->keeper_wanted = true; /* from now on, one that goes is replaced */
		keeper_watch(d);
	}
}

/*
 * Before the listeners start: the fork queue, the store, every client a
 * killed daemon left in it, and the timer that asks after forked
 * children. Under systemd (d->store.kind set to UFD_STORE_SYSTEMD by
 * main.c) the entries are the fds it passed.
 */
int ufd_persist_start(struct ufd_daemon *d)
{
	unsigned long long v = 0;
	FILE *f = fopen("/proc/sys/vm/mmap_min_addr", "re");
	int err;

	/* Where a wake of every address starts: the lowest a mapping may
	 * have, page-aligned, never 0 (the ioctl refuses it). */
	if (!f || fscanf(f, "%llu", &v) != 1)
		v = 65536;
	if (f)
		fclose(f);
	d->wake_start = (v + d->sys_page - 1) / d->sys_page * d->sys_page;
	if (!d->wake_start)
		d->wake_start = d->sys_page;
	err = pthread_mutex_init(&d->fork_lock, NULL);
	if (err)
		return -err;
	err = uv_async_init(d->loop, &d->fork_async, forks_ready);
	if (err) {
		pthread_mutex_destroy(&d->fork_lock);
		return err;
	}
	d->fork_async.data = d;
	uv_timer_init(d->loop, &d->child_probe); /* returns 0, always */
	d->child_probe.data = d;
	d->persist_started = true;
	if (d->store.kind == UFD_STORE_SYSTEMD || (!d->no_keeper && d->keeper_path))
		open_store(d);
	/* After the store: the children it brought back are asked too. */
	err = uv_timer_start(&d->child_probe, probe_children, CHILD_PROBE_MS, CHILD_PROBE_MS);
	if (err)
		ufd_log(d, UFAULT_LOG_WARN,
			"forked children: not watched (%s); each is freed when the daemon stops",
			uv_strerror(err));
	if (d->store.kind != UFD_STORE_NONE) {
		unsigned int n = 0;

		for (struct ufd_client *c = d->clients; c; c = c->next)
			n++;
		ufd_log(d, UFAULT_LOG_INFO, "fd store: %s, %u clients served again",
			d->store.kind == UFD_STORE_SYSTEMD ? "systemd" : d->keeper_path, n);
	}
	return 0;
}

/* Stopping: no more forks are taken (a worker that reads one now closes
 * it), and no child is asked after (every client is closing). The store
 * stays open until the clients are gone. */
void ufd_persist_stop(struct ufd_daemon *d)
{
	struct ufd_fork *f, *next;

	if (!d->persist_started)
		return;
	pthread_mutex_lock(&d->fork_lock);
	d->fork_closed = true;
	f = d->forks;
	d->forks = NULL;
	pthread_mutex_unlock(&d->fork_lock);
	for (; f; f = next) {
		next = f->next;
		close(f->fd);
		free(f);
	}
	uv_close((uv_handle_t *)&d->fork_async, NULL);
	uv_close((uv_handle_t *)&d->child_probe, NULL);
	/* The connection stays for the deletes to come, unwatched: a keeper
	 * that goes now is not replaced. */
	keeper_unwatch(d);
	d->keeper_wanted = false;
}
