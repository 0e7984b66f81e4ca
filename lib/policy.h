/* SPDX-License-Identifier: MIT */
/*
 * policy.h - eviction policies: which resident page a memory budget gives
 * up next. The evictor (evict.c) alone owns a struct ufault__pool: the
 * pages it counts as resident and the ghosts of pages it evicted not long
 * ago, by address (a hash table), on the policy's lists. A policy is a
 * small table of functions over the pool (FIFO, 2Q); the only history it is
 * fed is what a fault handler sees: a page was installed, and whether it
 * had been evicted recently (a refault).
 */
#ifndef UFAULT_LIB_POLICY_H
#define UFAULT_LIB_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ufault/ufault.h>

enum ufault__list {
	UFAULT__L_NONE,
	UFAULT__L_PROBATION,
	UFAULT__L_MAIN,
	UFAULT__L_GHOST,
	UFAULT__L_NR
};

struct ufault__entry {
	uint64_t addr;	     /* system page; 0: free */
	uint32_t prev, next; /* list links (indices + 1; 0: none) */
	uint32_t hnext;	     /* hash chain */
	uint8_t list;	     /* enum ufault__list */
};

struct ufault__pool {
	const struct ufault__policy_ops *ops;
	struct ufault__entry *e; /* [cap] */
	uint32_t *hash;		 /* [nbuckets]: index + 1 */
	uint32_t cap, nbuckets, free_head;
	uint32_t head[UFAULT__L_NR], tail[UFAULT__L_NR]; /* index + 1 */
	uint64_t len[UFAULT__L_NR];
	uint64_t budget; /* pages */
	size_t bytes;	 /* mapped for e and hash */
};

struct ufault__policy_ops {
	const char *name;
	/* A page was installed: list it (@refault: it was a ghost). */
	void (*insert)(struct ufault__pool *p, struct ufault__entry *e, bool refault);
	/* The next page to evict (still listed), or NULL. */
	struct ufault__entry *(*victim)(struct ufault__pool *p);
	/* @e was evicted: keep it as a ghost, or free it. */
	void (*evicted)(struct ufault__pool *p, struct ufault__entry *e);
};

extern const struct ufault__policy_ops ufault__policy_fifo;
extern const struct ufault__policy_ops ufault__policy_2q;

/* A pool for a budget of @budget pages (ghosts as many); 0 or -ENOMEM. */
int ufault__pool_init(struct ufault__pool *p, const struct ufault__policy_ops *ops,
		      uint64_t budget);
void ufault__pool_destroy(struct ufault__pool *p);

/* Pages counted resident (probation and main). */
static inline uint64_t ufault__pool_resident(const struct ufault__pool *p)
{
	return p->len[UFAULT__L_PROBATION] + p->len[UFAULT__L_MAIN];
}

/*
 * The evictor's entry points. note_installed: @addr was installed (a
 * resident page stays where it is); true if it was a ghost (a refault).
 * take_victim: the policy's victim, unlisted (its address), or 0.
 * put_back: a victim that could not be evicted goes back, resident.
 * evicted: a victim is gone (the policy keeps a ghost or not).
 * forget: @addr is no longer mapped (or no longer a write-back page).
 */
bool ufault__pool_note_installed(struct ufault__pool *p, uint64_t addr);
uint64_t ufault__pool_take_victim(struct ufault__pool *p);
void ufault__pool_put_back(struct ufault__pool *p, uint64_t addr);
void ufault__pool_evicted(struct ufault__pool *p, uint64_t addr);
/* Carry @from's resident pages over to @to (a new budget or policy). */
void ufault__pool_carry(struct ufault__pool *to, struct ufault__pool *from);

#endif
