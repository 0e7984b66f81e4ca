/* SPDX-License-Identifier: MIT */
/*
 * index.c - the address index: a seqcount latch over two copies of one
 * red-black tree (the kernel's rbtree_latch.h idea, our own tree code).
 *
 * Every indexed node embeds two tree links, rb[0] and rb[1]. A writer (the
 * caller serialises writers) bumps the sequence, changes copy 0, bumps the
 * sequence again and changes copy 1, so at any moment one copy is stable
 * and a lockless reader walks that one: seq even -> copy 0, odd -> copy 1.
 * A reader whose copy was touched while it walked sees the sequence moved
 * and walks again.
 *
 * Memory ordering. Writers store every tree pointer (child links and roots)
 * with release semantics and lockless readers load them with acquire, so:
 *  - a reader that reaches a node through a link also sees the node's
 *    start/end and its initialised links (the node is published by that
 *    release store; this is rcu_assign_pointer/rcu_dereference);
 *  - a reader that loads any pointer written after a sequence bump also
 *    sees the bump, because the bump is sequenced before that release
 *    store, so its final sequence check fails (this is what smp_wmb after
 *    the bump and smp_rmb before the re-check give the kernel);
 *  - the sequence store is itself a release and the first sequence load an
 *    acquire, so a reader that sees a sequence value sees everything the
 *    writer did to the copy it selects before that value (smp_wmb before
 *    the bump / smp_rmb after the first load).
 * Per-access release/acquire is used instead of free-standing
 * __atomic_thread_fence because ThreadSanitizer understands it (GCC
 * rejects fences under -fsanitize=thread) and it costs nothing extra on
 * x86; on arm64 it becomes ldar/stlr.
 *
 * A walk over a copy that a writer is rotating may go astray (miss a node,
 * revisit one) but never runs off: every node it can reach is still mapped
 * (nodes are freed only after a QSBR grace period) and the walk is cut off
 * after WALK_LIMIT steps, more than twice the height of any red-black tree
 * that fits in a 64-bit address space.
 *
 * Parent pointers and colours are read only by the writer, so they are
 * plain fields.
 */
#include "index.h"
#include "util.h"

#include <errno.h>

#define RB_RED 0UL
#define RB_BLACK 1UL
#define WALK_LIMIT (2 * 64)

typedef struct ufault__rb_node rbn;

/* --- tree link helpers (writer side) ------------------------------------ */

static inline rbn *rb_parent(const rbn *r)
{
	return (rbn *)(r->parent_color & ~(uintptr_t)3);
}

static inline bool rb_is_red(const rbn *r)
{
	return r && (r->parent_color & 1) == RB_RED;
}

static inline bool rb_is_black(const rbn *r)
{
	return !rb_is_red(r);
}

static inline void rb_set_parent(rbn *r, rbn *p)
{
	r->parent_color = (uintptr_t)p | (r->parent_color & 1);
}

static inline void rb_set_color(rbn *r, uintptr_t color)
{
	r->parent_color = (r->parent_color & ~(uintptr_t)1) | color;
}

static inline uintptr_t rb_color(const rbn *r)
{
	return r->parent_color & 1;
}

/* Every change to a link a reader may follow goes through here. */
static inline void wr_link(rbn **slot, rbn *v)
{
	__atomic_store_n(slot, v, __ATOMIC_RELEASE);
}

static inline rbn *rd_link(rbn *const *slot)
{
	return __atomic_load_n(slot, __ATOMIC_ACQUIRE);
}

static inline struct ufault__index_node *node_of(const rbn *r, int idx)
{
	return (struct ufault__index_node *)((char *)r - offsetof(struct ufault__index_node, rb) -
					     (size_t)idx * sizeof(rbn));
}

static void change_child(struct ufault__index *ix, int idx, rbn *old, rbn *new, rbn *parent)
{
	if (!parent)
		wr_link(&ix->root[idx], new);
	else if (parent->left == old)
		wr_link(&parent->left, new);
	else
		wr_link(&parent->right, new);
}

/*
 * Rotations store the links in an order that never makes a node its own
 * ancestor in program order (x gives away its child before it becomes the
 * child of y), which keeps a concurrent walk short even before the step
 * limit cuts in.
 */
static void rotate_left(struct ufault__index *ix, int idx, rbn *x)
{
	rbn *y = x->right;
	rbn *p = rb_parent(x);
	rbn *b = y->left;

	wr_link(&x->right, b);
	if (b)
		rb_set_parent(b, x);
	wr_link(&y->left, x);
	rb_set_parent(y, p);
	change_child(ix, idx, x, y, p);
	rb_set_parent(x, y);
}

static void rotate_right(struct ufault__index *ix, int idx, rbn *x)
{
	rbn *y = x->left;
	rbn *p = rb_parent(x);
	rbn *b = y->right;

	wr_link(&x->left, b);
	if (b)
		rb_set_parent(b, x);
	wr_link(&y->right, x);
	rb_set_parent(y, p);
	change_child(ix, idx, x, y, p);
	rb_set_parent(x, y);
}

/* --- insert ------------------------------------------------------------- */

static void insert_fixup(struct ufault__index *ix, int idx, rbn *n)
{
	rbn *p, *g, *u;

	while ((p = rb_parent(n)) && rb_is_red(p)) {
		g = rb_parent(p); /* p is red, so not the root */
		if (p == g->left) {
			u = g->right;
			if (rb_is_red(u)) {
				rb_set_color(p, RB_BLACK);
				rb_set_color(u, RB_BLACK);
				rb_set_color(g, RB_RED);
				n = g;
				continue;
			}
			if (n == p->right) {
				rotate_left(ix, idx, p);
				n = p;
				p = rb_parent(n);
			}
			rb_set_color(p, RB_BLACK);
			rb_set_color(g, RB_RED);
			rotate_right(ix, idx, g);
		} else {
			u = g->left;
			if (rb_is_red(u)) {
				rb_set_color(p, RB_BLACK);
				rb_set_color(u, RB_BLACK);
				rb_set_color(g, RB_RED);
				n = g;
				continue;
			}
			if (n == p->left) {
				rotate_right(ix, idx, p);
				n = p;
				p = rb_parent(n);
			}
			rb_set_color(p, RB_BLACK);
			rb_set_color(g, RB_RED);
			rotate_left(ix, idx, g);
		}
	}
	rb_set_color(ix->root[idx], RB_BLACK);
}

/* Link @n into copy @idx; the caller has checked there is no overlap. */
static void tree_insert(struct ufault__index *ix, int idx, struct ufault__index_node *n)
{
	rbn *parent = NULL, **link = &ix->root[idx];
	rbn *r = &n->rb[idx];

	while (*link) {
		parent = *link;
		if (n->start < node_of(parent, idx)->start)
			link = &parent->left;
		else
			link = &parent->right;
	}
	/* Initialise before the release store in wr_link publishes it. */
	wr_link(&r->left, NULL);
	wr_link(&r->right, NULL);
	r->parent_color = (uintptr_t)parent | RB_RED;
	wr_link(link, r);
	insert_fixup(ix, idx, r);
}

/* --- erase -------------------------------------------------------------- */

static void erase_fixup(struct ufault__index *ix, int idx, rbn *x, rbn *parent)
{
	rbn *w;

	while (x != ix->root[idx] && rb_is_black(x)) {
		if (x == parent->left) {
			w = parent->right;
			if (rb_is_red(w)) {
				rb_set_color(w, RB_BLACK);
				rb_set_color(parent, RB_RED);
				rotate_left(ix, idx, parent);
				w = parent->right;
			}
			if (rb_is_black(w->left) && rb_is_black(w->right)) {
				rb_set_color(w, RB_RED);
				x = parent;
				parent = rb_parent(x);
			} else {
				if (rb_is_black(w->right)) {
					rb_set_color(w->left, RB_BLACK);
					rb_set_color(w, RB_RED);
					rotate_right(ix, idx, w);
					w = parent->right;
				}
				rb_set_color(w, rb_color(parent));
				rb_set_color(parent, RB_BLACK);
				rb_set_color(w->right, RB_BLACK);
				rotate_left(ix, idx, parent);
				x = ix->root[idx];
				break;
			}
		} else {
			w = parent->left;
			if (rb_is_red(w)) {
				rb_set_color(w, RB_BLACK);
				rb_set_color(parent, RB_RED);
				rotate_right(ix, idx, parent);
				w = parent->left;
			}
			if (rb_is_black(w->left) && rb_is_black(w->right)) {
				rb_set_color(w, RB_RED);
				x = parent;
				parent = rb_parent(x);
			} else {
				if (rb_is_black(w->left)) {
					rb_set_color(w->right, RB_BLACK);
					rb_set_color(w, RB_RED);
					rotate_left(ix, idx, w);
					w = parent->left;
				}
				rb_set_color(w, rb_color(parent));
				rb_set_color(parent, RB_BLACK);
				rb_set_color(w->left, RB_BLACK);
				rotate_right(ix, idx, parent);
				x = ix->root[idx];
				break;
			}
		}
	}
	if (x)
		rb_set_color(x, RB_BLACK);
}

/* Replace the subtree rooted at @u by the one rooted at @v (may be NULL). */
static void transplant(struct ufault__index *ix, int idx, rbn *u, rbn *v)
{
	rbn *p = rb_parent(u);

	change_child(ix, idx, u, v, p);
	if (v)
		rb_set_parent(v, p);
}

static void tree_erase(struct ufault__index *ix, int idx, struct ufault__index_node *n)
{
	rbn *z = &n->rb[idx];
	rbn *x, *xp, *y;
	uintptr_t y_color = rb_color(z);

	if (!z->left) {
		x = z->right;
		xp = rb_parent(z);
		transplant(ix, idx, z, x);
	} else if (!z->right) {
		x = z->left;
		xp = rb_parent(z);
		transplant(ix, idx, z, x);
	} else {
		/* Two children: the successor y takes z's place. */
		y = z->right;
		while (y->left)
			y = y->left;
		y_color = rb_color(y);
		x = y->right;
		if (rb_parent(y) == z) {
			xp = y;
		} else {
			xp = rb_parent(y);
			transplant(ix, idx, y, x);
			wr_link(&y->right, z->right);
			rb_set_parent(y->right, y);
		}
		wr_link(&y->left, z->left);
		rb_set_parent(y->left, y);
		rb_set_color(y, rb_color(z));
		transplant(ix, idx, z, y);
	}
	if (y_color == RB_BLACK)
		erase_fixup(ix, idx, x, xp);
}

/* --- latch -------------------------------------------------------------- */

/*
 * Bump the sequence. Release: the changes to the copy finished before are
 * visible to a reader that sees the new value. Changes made after it are
 * ordered after it by their own release stores (see the top of the file).
 */
static void latch_bump(struct ufault__index *ix)
{
	__atomic_store_n(&ix->seq, ix->seq + 1, __ATOMIC_RELEASE);
}

void ufault__index_init(struct ufault__index *ix)
{
	ix->seq = 0;
	ix->root[0] = NULL;
	ix->root[1] = NULL;
	ix->count = 0;
}

/* Locked walk over copy 0 (both copies are equal while the lock is held). */
static struct ufault__index_node *first_end_above(struct ufault__index *ix, uint64_t addr)
{
	rbn *r = ix->root[0];
	struct ufault__index_node *best = NULL;

	while (r) {
		struct ufault__index_node *n = node_of(r, 0);

		if (n->end > addr) {
			best = n;
			r = r->left;
		} else {
			r = r->right;
		}
	}
	return best;
}

int ufault__index_insert(struct ufault__index *ix, struct ufault__index_node *n)
{
	if (n->start >= n->end)
		return -EINVAL;
	if (ufault__index_first_overlap_locked(ix, n->start, n->end))
		return -EEXIST;
	latch_bump(ix); /* odd: readers move to copy 1 */
	tree_insert(ix, 0, n);
	latch_bump(ix); /* even: readers move to copy 0 */
	tree_insert(ix, 1, n);
	ix->count++;
	return 0;
}

void ufault__index_remove(struct ufault__index *ix, struct ufault__index_node *n)
{
	latch_bump(ix);
	tree_erase(ix, 0, n);
	latch_bump(ix);
	tree_erase(ix, 1, n);
	ix->count--;
}

struct ufault__index_node *ufault__index_find_locked(struct ufault__index *ix, uint64_t addr)
{
	rbn *r = ix->root[0];

	while (r) {
		struct ufault__index_node *n = node_of(r, 0);

		if (addr < n->start)
			r = r->left;
		else if (addr >= n->end)
			r = r->right;
		else
			return n;
	}
	return NULL;
}

struct ufault__index_node *ufault__index_first_overlap_locked(struct ufault__index *ix,
							      uint64_t start, uint64_t end)
{
	struct ufault__index_node *n;

	if (start >= end)
		return NULL;
	/* Nodes do not overlap, so ends ascend with starts. */
	n = first_end_above(ix, start);
	return n && n->start < end ? n : NULL;
}

struct ufault__index_node *ufault__index_next_locked(struct ufault__index *ix,
						     struct ufault__index_node *n)
{
	rbn *r = &n->rb[0], *p;

	if (r->right) {
		r = r->right;
		while (r->left)
			r = r->left;
		return node_of(r, 0);
	}
	while ((p = rb_parent(r)) && r == p->right)
		r = p;
	return p ? node_of(p, 0) : NULL;
}

/* --- lockless lookup ---------------------------------------------------- */

/*
 * One walk of copy @idx. Returns false if it was cut off, which can only
 * happen while a writer is changing that copy.
 */
static bool walk(const struct ufault__index *ix, int idx, uint64_t addr,
		 struct ufault__index_node **out)
{
	rbn *r = rd_link(&ix->root[idx]);
	int steps;

	for (steps = 0; r && steps < WALK_LIMIT; steps++) {
		struct ufault__index_node *n = node_of(r, idx);

		if (addr < n->start) {
			r = rd_link(&r->left);
		} else if (addr >= n->end) {
			r = rd_link(&r->right);
		} else {
			*out = n;
			return true;
		}
	}
	*out = NULL;
	return r == NULL;
}

struct ufault__index_node *ufault__index_lookup(const struct ufault__index *ix, uint64_t addr,
						bool *retried)
{
	struct ufault__index_node *n;
	unsigned int s;
	bool complete;

	if (retried)
		*retried = false;
	for (;;) {
		s = __atomic_load_n(&ix->seq, __ATOMIC_ACQUIRE);
		complete = walk(ix, (int)(s & 1), addr, &n);
		/*
		 * The walk's acquire loads keep this load after them; if the
		 * walk saw anything written after a bump, it sees the bump.
		 */
		if (complete && __atomic_load_n(&ix->seq, __ATOMIC_RELAXED) == s)
			return n;
		if (retried)
			*retried = true;
		ufault__cpu_relax();
	}
}
