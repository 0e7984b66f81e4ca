/* SPDX-License-Identifier: MIT */
/*
 * index.h - the address index: [start, end) -> node, with lookups that take
 * no lock (a seqcount latch over two copies of a red-black tree, as the
 * kernel's rbtree_latch.h) and O(log n) insert and remove.
 *
 * Writers (insert, remove, the *_locked queries) must be serialised by the
 * caller (the context's tree lock). Lockless readers may run at any time;
 * a node a reader can still see must not be freed until the reader has
 * passed a quiescent state (see qsbr.h).
 */
#ifndef UFAULT_LIB_INDEX_H
#define UFAULT_LIB_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ufault__rb_node {
	struct ufault__rb_node *left;
	struct ufault__rb_node *right;
	uintptr_t parent_color;
};

/* Embed in the indexed object; start/end are set before insert and never
 * change while the node is in the index, nor after its removal until a QSBR
 * grace period has passed (lockless readers may still be looking at it). */
struct ufault__index_node {
	struct ufault__rb_node rb[2];
	uint64_t start;
	uint64_t end; /* exclusive */
};

struct ufault__index {
	unsigned int seq; /* latch sequence; odd: copy 0 being changed */
	struct ufault__rb_node *root[2];
	size_t count;
};

void ufault__index_init(struct ufault__index *ix);

/* Writer side; the caller holds the tree lock. Insert returns -EEXIST if
 * [start, end) overlaps a node already there, -EINVAL if start >= end. */
int ufault__index_insert(struct ufault__index *ix, struct ufault__index_node *n);
void ufault__index_remove(struct ufault__index *ix, struct ufault__index_node *n);
/* Node containing @addr, or NULL. */
struct ufault__index_node *ufault__index_find_locked(struct ufault__index *ix, uint64_t addr);
/* Lowest node overlapping [start, end), or NULL; then ufault__index_next_locked
 * walks nodes in address order (the caller stops when node->start >= end). */
struct ufault__index_node *ufault__index_first_overlap_locked(struct ufault__index *ix,
							      uint64_t start, uint64_t end);
struct ufault__index_node *ufault__index_next_locked(struct ufault__index *ix,
						     struct ufault__index_node *n);
static inline size_t ufault__index_count(const struct ufault__index *ix)
{
	return ix->count;
}

/*
 * Lockless lookup: node containing @addr, or NULL. Never blocks and never
 * loops forever; it retries internally while a writer changes the copy it
 * reads, and sets *@retried (if not NULL) when it had to. The caller must be
 * inside a QSBR read-side section (online).
 */
struct ufault__index_node *ufault__index_lookup(const struct ufault__index *ix, uint64_t addr,
						bool *retried);

#endif
