/* SPDX-License-Identifier: MIT */
/*
 * ufaultd.h - the daemon's shared state: one libuv loop (the control plane)
 * owns the listeners, the client sessions, the signal handlers and the
 * metrics server. Everything here is touched from the loop thread only,
 * with two exceptions that are said where they happen: the libufault
 * contexts' own worker threads (which resolve the faults and never see this
 * state) and the thread-pool job that destroys a context after its client
 * left (it touches only that client's context).
 *
 *   main.c     options, listeners (bind or systemd socket activation),
 *              accept and SO_PEERCRED authorisation, signals, sd_notify
 *   session.c  client objects (both kinds) and the native protocol
 *   fc.c       Firecracker's page-fault handler protocol
 *   persist.c  each client's record in the fd store (fdstore.h), the
 *              detached clients a restarted daemon rebuilds from it, the
 *              pidfds that say when their processes are gone, and the
 *              children UFFD_EVENT_FORK hands over (whose uffds say when
 *              theirs are)
 *   metrics.c  GET /metrics (Prometheus text format) over libuv TCP
 *
 * The one more thread exception: a context's on_fork callback runs on one
 * of its workers, and only queues the child's uffd for the loop (persist.c).
 */
#ifndef UFAULTD_H
#define UFAULTD_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include <ufault/protocol.h>
#include <ufault/ufault.h>

#include "fdstore.h"
#include "zlog.h"

#define UFD_MAX_ALLOW 64	    /* --allow-uid / --allow-gid entries */
#define UFD_DEFAULT_WORKERS 2	    /* libufault workers per client */
#define UFD_DEFAULT_MAX_CLIENTS 256 /* connections of both kinds */
/* The end of the user address space every 64-bit Linux has at least (x86-64
 * with 4-level page tables): where a wake of "all of it" ends. */
#define UFD_USER_VA_END 0x7ffffffff000ull

enum ufd_kind {
	UFD_NATIVE = 0,
	UFD_FIRECRACKER,
};

/* Why a connection or a request was refused: ufaultd_refused_total{reason}. */
enum ufd_refusal {
	UFD_REFUSED_AUTH = 0,	 /* SO_PEERCRED not allowed */
	UFD_REFUSED_MAX_CLIENTS, /* --max-clients reached */
	UFD_REFUSED_PROTOCOL,	 /* unframeable message, bad handshake: closed */
	UFD_REFUSED_REQUEST,	 /* a well-framed request answered with an error */
	UFD_REFUSED_FDS,	 /* fds a message may not carry (closed) */
	UFD_REFUSED_NR,
};

struct ufd_daemon;

/* A listening socket, watched with uv_poll (it may come from systemd). */
struct ufd_listener {
	struct ufd_daemon *d;
	enum ufd_kind kind;
	int fd;		  /* -1: not in use */
	const char *path; /* the path we bound and unlink at exit; NULL if inherited */
	bool started;	  /* the handles below are initialised */
	bool polling;
	uv_poll_t poll;
	uv_timer_t retry; /* accept paused after EMFILE and the like */
};

/*
 * One client: a connection (a native session, a control connection of
 * ufaultctl, or a Firecracker VM), or a client served without one: a
 * "detached" client a restarted daemon rebuilt from the fd store, until
 * (native) its process reconnects, or a forked child of a client, which
 * lives as long as its own process, however long its parent does (its uffd
 * says when that process is gone: persist.c, "Forks").
 */
struct ufd_client {
	struct ufd_daemon *d;
	struct ufd_client *prev, *next; /* d->clients, in id order */
	uint64_t id;
	enum ufd_kind kind;
	int fd;			   /* the connection; -1: none (detached, or a child) */
	uv_poll_t poll;		   /* on @fd, initialised iff @fd >= 0 */
	unsigned int poll_events;  /* what the poll watches now */
	uv_work_t work;		   /* the context's destruction, off the loop */
	unsigned int open_handles; /* uv handles still to close before the work */
	pid_t pid;		   /* 0: not known (a forked child) */
	uid_t uid;
	gid_t gid;
	uint64_t start_time; /* /proc/<pid>/stat field 22: tells a reused pid */
	bool closing;

	/* Detached: a pidfd of the client's process, readable once it exits. */
	int pidfd; /* -1: not watched */
	uv_poll_t pid_poll;
	/* A forked child: its parent's id, for the logs and the record (the
	 * parent may go first: an id, never a pointer). 0: not a child. */
	uint64_t parent_id;
	bool probe_warned; /* a child's liveness probe failed oddly: logged once */

	/* Served: a libufault context on the client's uffd (NULL until the
	 * HELLO, or Firecracker's handshake, succeeded). */
	struct ufault_ctx *ctx;
	int uffd; /* our own copy, for the fd store; -1 until served */
	uint64_t features;
	uint64_t budget; /* SET_BUDGET: its SHARED regions' resident bytes */
	bool stored;	 /* its entry is in the fd store */
	/* The ranges it removed or unmapped, kept in the store (zlog.h);
	 * written by the context's workers. */
	struct ufd_zlog zlog;

	/* Native: the message being received and the fds that came with it. */
	unsigned char *in;
	size_t in_len, in_total; /* bytes read; whole message (0: header not read) */
	int in_fds[UFAULT_PROTO_MAX_FDS + 1];
	unsigned int nr_in_fds;
	bool fds_overflow; /* more fds than a message may carry (all closed) */
	/* A reply the socket did not take at once; input waits until it is out. */
	unsigned char *out;
	size_t out_len, out_off;
	int out_fd; /* goes with out's first bytes (borrowed: the zlog's); -1 */

	/* Regions (native: registered one by one; Firecracker: the list),
	 * with a copy of each one's backing fd (-1: zeros) and memfd (SHARED;
	 * else -1) for the store. */
	struct ufault_proto_region *regs;
	struct ufault_region **handles;
	int *reg_fds, *reg_mems;
	unsigned int nr_regs, cap_regs;

	/* Firecracker: the region list being received, then its uffd. */
	char *json;
	size_t json_len;
	bool fc_done; /* handshake complete: only EOF is awaited */
	bool fc_extra_logged;
};

struct ufd_metrics;
struct ufd_fork;

struct ufd_daemon {
	uv_loop_t *loop;

	/* Options. */
	const char *socket_path;
	const char *fc_socket_path;
	const char *mem_path;
	int mem_fd; /* Firecracker memory file, read-only; -1: none */
	uint64_t mem_size;
	unsigned int workers;
	unsigned int max_clients;
	uid_t allow_uid[UFD_MAX_ALLOW];
	gid_t allow_gid[UFD_MAX_ALLOW];
	unsigned int nr_allow_uid, nr_allow_gid;
	int metrics_port; /* -1: no metrics server */
	enum ufault_log_level log_level;
	const char *keeper_path; /* NULL: the native socket's path + ".keeper" */
	const char *keeper_bin;	 /* NULL: ufaultd-keeper next to this binary */
	bool no_keeper;		 /* --no-keeper: no fd store at all */

	/* State. */
	uid_t euid;
	uint64_t sys_page;
	struct ufd_listener native, fc;
	uv_signal_t sigint, sigterm;
	struct ufd_metrics *metrics;
	struct ufd_client *clients, *clients_tail;
	unsigned int nr_clients; /* connections open */
	unsigned int nr_closing; /* contexts still being destroyed */
	uint64_t next_id;
	uint64_t refused[UFD_REFUSED_NR];
	bool stopping;

	/* The fd store (persist.c); kind UFD_STORE_NONE: none. */
	struct ufd_store store;
	bool store_keep;	  /* stopping: keep the entries (systemd keeps them
			  * over a restart and drops them on a real stop) */
	uv_poll_t *keeper_poll;	  /* the keeper's connection, for its end */
	bool keeper_wanted;	  /* one was had: a keeper that goes is replaced */
	uint64_t keeper_retry_at; /* loop time of the next try when none answers */
	bool listen_fdnames;	  /* systemd passed $LISTEN_FDNAMES */
	bool persist_started;
	uint64_t wake_start; /* the lowest address a mapping may have (persist.c) */
	/* Fds systemd passed at start that are not listeners: store entries. */
	int *inherit;
	char **inherit_names;
	unsigned int nr_inherit;

	/* Children's uffds from the contexts' on_fork, queued for the loop. */
	pthread_mutex_t fork_lock;
	struct ufd_fork *forks; /* under fork_lock */
	bool fork_closed;	/* under fork_lock: the async is closed */
	uv_async_t fork_async;
	/* Asks each forked child's uffd whether its process is still there
	 * (a child's pid is not known: no pidfd). */
	uv_timer_t child_probe;
};

/* main.c */
void ufd_log(struct ufd_daemon *d, enum ufault_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void ufd_ctx_log(void *arg, enum ufault_log_level level, const char *msg);
bool ufd_is_uffd(int fd);
const char *ufd_refusal_name(enum ufd_refusal r);
const char *ufd_kind_name(enum ufd_kind k);

/* session.c */
ssize_t ufd_recv(int fd, void *buf, size_t len, int *fds, unsigned int max_fds,
		 unsigned int *nr_fds, bool *overflow);
void ufd_close_fds(int *fds, unsigned int *nr);
int ufd_client_new(struct ufd_daemon *d, int fd, enum ufd_kind kind, pid_t pid, uid_t uid,
		   gid_t gid);
struct ufd_client *ufd_client_alloc(struct ufd_daemon *d, uint64_t id, enum ufd_kind kind,
				    pid_t pid, uid_t uid, gid_t gid);
void ufd_client_link(struct ufd_client *c);
void ufd_client_free(struct ufd_client *c);
void ufd_client_close(struct ufd_client *c, const char *why);
void ufd_client_handle_closed(uv_handle_t *h);
bool ufd_client_listed(const struct ufd_client *c);
bool ufd_same_file(int a, int b);
struct ufd_client *ufd_client_find(struct ufd_daemon *d, uint64_t id);
int ufd_client_serve(struct ufd_client *c, int uffd, uint64_t features, uint64_t max_page);
/* Serve @r from @fd (-1: zeros) and, for SHARED, in the memfd @mem_fd
 * (-1 otherwise); dups of both kept. 0 or -errno, nothing kept then. */
int ufd_client_region(struct ufd_client *c, const struct ufault_proto_region *r, int fd,
		      int mem_fd);
/* Apply @bytes as @c's budget (its SHARED regions'); 0 or -errno. */
int ufd_client_budget(struct ufd_client *c, uint64_t bytes);
int ufd_client_attach(struct ufd_client *c, int fd);
void ufd_native_io(uv_poll_t *poll, int status, int events);

/* fc.c */
void ufd_fc_io(uv_poll_t *poll, int status, int events);

/* persist.c */
int ufd_persist_start(struct ufd_daemon *d);
void ufd_persist_stop(struct ufd_daemon *d);
void ufd_persist_put(struct ufd_client *c);
void ufd_persist_del(struct ufd_client *c);
int ufd_persist_watch(struct ufd_client *c);
void ufd_persist_unwatch(struct ufd_client *c);
uint64_t ufd_proc_start_time(pid_t pid);
void ufd_wake_all(struct ufd_client *c);
void ufd_on_fork(void *arg, int child_uffd);
void ufd_forks_take(struct ufd_daemon *d);

/* metrics.c */
int ufd_metrics_start(struct ufd_daemon *d);
void ufd_metrics_stop(struct ufd_daemon *d);

#endif /* UFAULTD_H */
