/* SPDX-License-Identifier: MIT */
/*
 * qsbr.h - quiescent-state-based reclamation for objects that lockless
 * readers (the workers) may still be reading.
 *
 * A fixed set of reader slots, one per worker, each written only by its
 * owner (no shared counter on the fault path). A reader is "online" while it
 * may hold pointers obtained from the index; it reports quiescent states
 * between faults and goes "offline" while it sleeps in poll(2). A retired
 * object is freed once every slot has been offline or quiescent since the
 * retirement. Retirement never waits: reclamation happens in
 * ufault__qsbr_poll() (called by proxies and by workers) and in
 * ufault__qsbr_drain().
 */
#ifndef UFAULT_LIB_QSBR_H
#define UFAULT_LIB_QSBR_H

#include <pthread.h>
#include <stdint.h>

struct ufault__qsbr_slot {
	uint64_t ctr; /* odd: online; only the owner writes it */
	char pad[64 - sizeof(uint64_t)];
} __attribute__((aligned(64)));

/* Embed in the retired object; set free_fn before ufault__qsbr_retire. */
struct ufault__qsbr_item {
	struct ufault__qsbr_item *next; /* set by qsbr */
	void (*free_fn)(struct ufault__qsbr_item *item);
};

/*
 * Items wait in two batches. ufault__qsbr_poll() snapshots every slot
 * counter once for the whole "waiting" batch (into @snap, mapped at init),
 * so retirement needs no memory and cannot fail; items retired after the
 * snapshot wait in "retired" for the next one.
 */
struct ufault__qsbr {
	struct ufault__qsbr_slot *slots;
	unsigned int nr_slots;
	pthread_mutex_t lock;		   /* protects retired, waiting and snap */
	struct ufault__qsbr_item *retired; /* not yet covered by a snapshot */
	struct ufault__qsbr_item *waiting; /* covered by snap */
	uint64_t *snap;			   /* slot counters when waiting was formed */
	size_t map_len;			   /* slots + snap, one raw mapping */
};

/* Returns 0 or -ENOMEM. Slots start offline. */
int ufault__qsbr_init(struct ufault__qsbr *q, unsigned int nr_slots);
/* Frees everything still retired, then the slots. No reader may be online. */
void ufault__qsbr_destroy(struct ufault__qsbr *q);
/* In a child process: unmap this copy's slots; frees no item, takes no lock. */
void ufault__qsbr_forget(struct ufault__qsbr *q);

void ufault__qsbr_online(struct ufault__qsbr *q, unsigned int slot);
void ufault__qsbr_offline(struct ufault__qsbr *q, unsigned int slot);
/* Between two read-side sections of an online reader: it holds no pointer
 * obtained before this call. online and quiescent include a full barrier,
 * offline a release store. */
void ufault__qsbr_quiescent(struct ufault__qsbr *q, unsigned int slot);

/* Queue @item for free_fn once no reader can see it. The object must
 * already be unreachable for new lookups (removed from the index). Never
 * blocks on readers, never fails (the list is threaded through the items),
 * takes the list mutex briefly. */
void ufault__qsbr_retire(struct ufault__qsbr *q, struct ufault__qsbr_item *item);
/* Free what has expired (free_fn runs outside the list mutex, in the
 * caller's thread). Returns how many were freed. The caller may be online. */
unsigned int ufault__qsbr_poll(struct ufault__qsbr *q);
/* Wait (sleeping, not spinning hot) until everything retired is freed.
 * The caller must not be online itself, or it would wait for itself. */
void ufault__qsbr_drain(struct ufault__qsbr *q);

#endif
