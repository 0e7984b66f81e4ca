// SPDX-License-Identifier: MIT
/*
 * policy.c - the evictor's page pool and the eviction policies (policy.h).
 *
 * FIFO: every installed page joins one queue; the oldest goes first; no
 * ghosts (LLNL umap's policy, the reference).
 *
 * 2Q (Johnson and Shasha, VLDB 1994), with fault history standing in for
 * references, which a fault handler never sees: a page installed for the
 * first time joins the probation queue (A1in); evicted from it, its address
 * becomes a ghost (A1out, as many as the budget). A page installed while a
 * ghost was evicted too early: it joins the main queue (Am). Victims come
 * from probation while it holds more than its share (a quarter of the
 * budget, Kin in the paper), else from main. A scan over cold pages thus
 * only ever cycles through probation, and pages that proved hot keep three
 * quarters of the budget.
 */
#include <errno.h>
#include <string.h>

#include "alloc.h"
#include "policy.h"

#define PROBATION_SHARE 4 /* probation's share: budget / 4 */

static uint32_t hash_of(const struct ufault__pool *p, uint64_t addr)
{
	uint64_t h = (addr >> 12) * 0x9e3779b97f4a7c15ull;

	return (uint32_t)(h >> 32) & (p->nbuckets - 1);
}

static struct ufault__entry *at(struct ufault__pool *p, uint32_t i1)
{
	return i1 ? &p->e[i1 - 1] : NULL;
}

static uint32_t index_of(const struct ufault__pool *p, const struct ufault__entry *e)
{
	return (uint32_t)(e - p->e) + 1;
}

static struct ufault__entry *lookup(struct ufault__pool *p, uint64_t addr)
{
	for (uint32_t i = p->hash[hash_of(p, addr)]; i; i = p->e[i - 1].hnext)
		if (p->e[i - 1].addr == addr)
			return &p->e[i - 1];
	return NULL;
}

static void unlist(struct ufault__pool *p, struct ufault__entry *e)
{
	if (e->list == UFAULT__L_NONE)
		return;
	if (e->prev)
		at(p, e->prev)->next = e->next;
	else
		p->head[e->list] = e->next;
	if (e->next)
		at(p, e->next)->prev = e->prev;
	else
		p->tail[e->list] = e->prev;
	p->len[e->list]--;
	e->list = UFAULT__L_NONE;
	e->prev = e->next = 0;
}

static void append(struct ufault__pool *p, struct ufault__entry *e, enum ufault__list l)
{
	unlist(p, e);
	e->list = (uint8_t)l;
	e->prev = p->tail[l];
	e->next = 0;
	if (p->tail[l])
		at(p, p->tail[l])->next = index_of(p, e);
	else
		p->head[l] = index_of(p, e);
	p->tail[l] = index_of(p, e);
	p->len[l]++;
}

static void release(struct ufault__pool *p, struct ufault__entry *e)
{
	uint32_t *link = &p->hash[hash_of(p, e->addr)];

	unlist(p, e);
	while (*link != index_of(p, e))
		link = &p->e[*link - 1].hnext;
	*link = e->hnext;
	e->addr = 0;
	e->hnext = p->free_head;
	p->free_head = index_of(p, e);
}

/* A free entry for @addr (hashed, on no list): the oldest ghost is given up
 * when none is free; NULL if every entry is resident. */
static struct ufault__entry *alloc(struct ufault__pool *p, uint64_t addr)
{
	struct ufault__entry *e;
	uint32_t h;

	if (!p->free_head && p->head[UFAULT__L_GHOST])
		release(p, at(p, p->head[UFAULT__L_GHOST]));
	if (!p->free_head)
		return NULL;
	e = at(p, p->free_head);
	p->free_head = e->hnext;
	memset(e, 0, sizeof(*e));
	e->addr = addr;
	h = hash_of(p, addr);
	e->hnext = p->hash[h];
	p->hash[h] = index_of(p, e);
	return e;
}

int ufault__pool_init(struct ufault__pool *p, const struct ufault__policy_ops *ops, uint64_t budget)
{
	uint64_t cap = 2 * budget + 1024, nb = 1;

	while (nb < cap)
		nb <<= 1;
	if (cap > UINT32_MAX / 2)
		return -ENOMEM;
	memset(p, 0, sizeof(*p));
	p->bytes = (size_t)(cap * sizeof(*p->e) + nb * sizeof(*p->hash));
	p->e = ufault__pages_map(p->bytes); /* zeroed */
	if (!p->e)
		return -ENOMEM;
	p->hash = (uint32_t *)(p->e + cap);
	p->ops = ops;
	p->cap = (uint32_t)cap;
	p->nbuckets = (uint32_t)nb;
	p->budget = budget;
	for (uint32_t i = p->cap; i; i--) {
		p->e[i - 1].hnext = p->free_head;
		p->free_head = i;
	}
	return 0;
}

void ufault__pool_destroy(struct ufault__pool *p)
{
	if (p->e)
		ufault__pages_unmap(p->e, p->bytes);
	p->e = NULL;
}

bool ufault__pool_note_installed(struct ufault__pool *p, uint64_t addr)
{
	struct ufault__entry *e = lookup(p, addr);
	bool refault = e && e->list == UFAULT__L_GHOST;

	if (e && !refault)
		return false; /* resident already (or being evicted) */
	if (!e)
		e = alloc(p, addr);
	if (e)
		p->ops->insert(p, e, refault);
	return refault;
}

uint64_t ufault__pool_take_victim(struct ufault__pool *p)
{
	struct ufault__entry *e = p->ops->victim(p);

	if (!e)
		return 0;
	unlist(p, e);
	return e->addr;
}

void ufault__pool_put_back(struct ufault__pool *p, uint64_t addr)
{
	struct ufault__entry *e = lookup(p, addr);

	if (e && e->list == UFAULT__L_NONE)
		p->ops->insert(p, e, false);
}

void ufault__pool_evicted(struct ufault__pool *p, uint64_t addr)
{
	struct ufault__entry *e = lookup(p, addr);

	if (e && e->list == UFAULT__L_NONE)
		p->ops->evicted(p, e);
}

void ufault__pool_carry(struct ufault__pool *to, struct ufault__pool *from)
{
	static const enum ufault__list order[] = {UFAULT__L_MAIN, UFAULT__L_PROBATION};

	for (unsigned int k = 0; k < 2; k++)
		for (uint32_t i = from->head[order[k]]; i; i = from->e[i - 1].next) {
			struct ufault__entry *e = alloc(to, from->e[i - 1].addr);

			if (e)
				to->ops->insert(to, e, order[k] == UFAULT__L_MAIN);
		}
}

/* --- FIFO ---------------------------------------------------------------- */

static void fifo_insert(struct ufault__pool *p, struct ufault__entry *e, bool refault)
{
	(void)refault;
	append(p, e, UFAULT__L_PROBATION);
}

static struct ufault__entry *fifo_victim(struct ufault__pool *p)
{
	return at(p, p->head[UFAULT__L_PROBATION]);
}

static void fifo_evicted(struct ufault__pool *p, struct ufault__entry *e)
{
	release(p, e);
}

const struct ufault__policy_ops ufault__policy_fifo = {
    .name = "fifo",
    .insert = fifo_insert,
    .victim = fifo_victim,
    .evicted = fifo_evicted,
};

/* --- 2Q -------------------------------------------------------------------- */

static void q2_insert(struct ufault__pool *p, struct ufault__entry *e, bool refault)
{
	append(p, e, refault ? UFAULT__L_MAIN : UFAULT__L_PROBATION);
}

static struct ufault__entry *q2_victim(struct ufault__pool *p)
{
	uint64_t kin = p->budget / PROBATION_SHARE;

	if ((p->len[UFAULT__L_PROBATION] > kin || !p->head[UFAULT__L_MAIN]) &&
	    p->head[UFAULT__L_PROBATION])
		return at(p, p->head[UFAULT__L_PROBATION]);
	return at(p, p->head[UFAULT__L_MAIN]);
}

static void q2_evicted(struct ufault__pool *p, struct ufault__entry *e)
{
	/* Ghosts: as many as the budget, the oldest given up first. */
	append(p, e, UFAULT__L_GHOST);
	while (p->len[UFAULT__L_GHOST] > p->budget)
		release(p, at(p, p->head[UFAULT__L_GHOST]));
}

const struct ufault__policy_ops ufault__policy_2q = {
    .name = "2q",
    .insert = q2_insert,
    .victim = q2_victim,
    .evicted = q2_evicted,
};
