/* SPDX-License-Identifier: MIT */
/*
 * fdstore.h - keeps each client's file descriptors (its uffd, its backing
 * files) and a small state record outside ufaultd, so that a restarted
 * ufaultd takes them back and resumes serving: faults that arrive while no
 * daemon runs wait in the kernel, on a uffd someone still holds.
 *
 * Two stores behind one interface:
 *  - systemd's file-descriptor store, when ufaultd runs under systemd with
 *    FileDescriptorStoreMax= (NOTIFY_SOCKET set): entries go out with
 *    sd_notify "FDSTORE=1" + "FDNAME=", come back through LISTEN_FDS /
 *    LISTEN_FDNAMES, and go away with "FDSTOREREMOVE=1";
 *  - elsewhere, ufaultd-keeper: a minimal process (keeper.c) that holds
 *    entries for the daemon over a Unix socket; started by the first
 *    daemon that finds none, it outlives a crashed daemon.
 *
 * An entry is a name (the client's), a record of up to UFD_STORE_MAX_BLOB
 * bytes, and up to UFD_STORE_MAX_FDS fds, given back in the order stored
 * (under systemd, where the order is not kept, the record's first bytes
 * name each fd's inode, and the fds are put back in that order).
 */
#ifndef UFAULTD_FDSTORE_H
#define UFAULTD_FDSTORE_H

#include <stddef.h>
#include <stdint.h>

#define UFD_STORE_MAX_FDS 16u
#define UFD_STORE_MAX_BLOB 65536u
#define UFD_STORE_MAX_NAME 64u

enum ufd_store_kind { UFD_STORE_NONE, UFD_STORE_SYSTEMD, UFD_STORE_KEEPER };

struct ufd_store {
	enum ufd_store_kind kind;
	int sock;	    /* keeper: the connection; systemd: unused */
	char notify[108];   /* systemd: NOTIFY_SOCKET */
	const int *inherit; /* systemd: the fds passed at start (LISTEN_FDS) */
	const char *const *inherit_names;
	unsigned int nr_inherit;
};

/* The keeper's wire format (fdstore.c and keeper.c). */
#define UFD_KEEPER_MAGIC 0x504b4655u /* "UFKP" */
enum ufd_keeper_op { UFD_KEEP_PUT = 1, UFD_KEEP_DEL, UFD_KEEP_LIST, UFD_KEEP_END };
struct ufd_keeper_hdr {
	uint32_t magic;
	uint32_t op;
	uint32_t name_len; /* <= UFD_STORE_MAX_NAME */
	uint32_t blob_len; /* <= UFD_STORE_MAX_BLOB */
};

/*
 * Open the store: systemd's if $NOTIFY_SOCKET is set and @use_systemd,
 * else the keeper at @keeper_path (started from @keeper_bin if none
 * answers; -ENOENT at once if @keeper_bin is not there). Requests to the
 * keeper time out after UFD_STORE_TIMEOUT_S (-EAGAIN): a keeper that
 * serves another daemon, or hangs, cannot hold ours. 0 or -errno.
 */
int ufd_store_open(struct ufd_store *st, int use_systemd, const char *keeper_path,
		   const char *keeper_bin);
void ufd_store_close(struct ufd_store *st);

#define UFD_STORE_TIMEOUT_S 10

/*
 * systemd: the fds it passed at start that are not listeners (@fds[i]
 * named @names[i] in $LISTEN_FDNAMES), which ufd_store_load() sorts into
 * entries. The arrays stay the caller's; the fds are the store's: load
 * gives them to its callback or closes them.
 */
void ufd_store_set_inherited(struct ufd_store *st, const int *fds, const char *const *names,
			     unsigned int nr);

/* Store (or replace) entry @name. 0 or -errno. */
int ufd_store_put(struct ufd_store *st, const char *name, const void *blob, size_t len,
		  const int *fds, unsigned int nr);
/* Forget entry @name (its fds are closed by the store). 0 or -errno. */
int ufd_store_del(struct ufd_store *st, const char *name);

/* Every entry, once, at start: @cb owns the fds it gets. 0 or -errno. */
typedef void (*ufd_store_entry_fn)(void *arg, const char *name, const void *blob, size_t len,
				   int *fds, unsigned int nr);
int ufd_store_load(struct ufd_store *st, ufd_store_entry_fn cb, void *arg);

/* Shared by fdstore.c and keeper.c: one message with fds. */
int ufd_store_send(int sock, uint32_t op, const char *name, const void *blob, size_t len,
		   const int *fds, unsigned int nr);
/* Receive one message: name (NUL-terminated, UFD_STORE_MAX_NAME + 1
 * bytes), blob (UFD_STORE_MAX_BLOB bytes), fds (UFD_STORE_MAX_FDS).
 * 0, or -ECONNRESET at the end, or -EPROTO / -errno. */
int ufd_store_recv(int sock, uint32_t *op, char *name, void *blob, size_t *len, int *fds,
		   unsigned int *nr);

#endif
