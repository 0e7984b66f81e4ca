// SPDX-License-Identifier: MIT
/*
 * witness.c - the lock-order checker (see witness.h). Per-thread counts of
 * the locks held by rank; checked on every acquisition. Only built with
 * UFAULT_WITNESS.
 */
#include "witness.h"

#ifdef UFAULT_WITNESS
#include <stdio.h>
#include <stdlib.h>

static const char *const rank_names[UFAULT__RANK_NR] = {
    [UFAULT__RANK_MM] = "mm (range/global)",
    [UFAULT__RANK_CTXLIST] = "context list",
    [UFAULT__RANK_TREE] = "tree",
    [UFAULT__RANK_REGION] = "region",
    [UFAULT__RANK_REMAP] = "remap",
    [UFAULT__RANK_WATCH] = "watch",
    [UFAULT__RANK_QSBR] = "qsbr",
    [UFAULT__RANK_SLAB] = "slab",
};

static __thread unsigned int held[UFAULT__RANK_NR];
static __thread bool is_worker;

__attribute__((noreturn)) static void violation(const char *what, enum ufault__lock_rank a,
						enum ufault__lock_rank b)
{
	fprintf(stderr, "ufault: witness: %s: %s lock, while holding %s lock\n", what,
		rank_names[a], rank_names[b]);
	abort();
}

void ufault__witness_acquire(enum ufault__lock_rank rank, bool try)
{
	for (int r = UFAULT__RANK_NR - 1; r >= (int)rank; r--)
		if (held[r])
			violation("lock order reversed: acquiring", rank,
				  (enum ufault__lock_rank)r);
	if (rank == UFAULT__RANK_MM && is_worker && !try) {
		fprintf(stderr, "ufault: witness: a worker waits for the mm lock, which a proxy "
				"may hold across a system call that waits for a worker\n");
		abort();
	}
	held[rank]++;
}

void ufault__witness_release(enum ufault__lock_rank rank)
{
	if (!held[rank]) {
		fprintf(stderr, "ufault: witness: releasing a %s lock not held\n",
			rank_names[rank]);
		abort();
	}
	held[rank]--;
}

void ufault__witness_set_worker(void)
{
	is_worker = true;
}

void ufault__witness_assert_unlocked(const char *where)
{
	for (int r = 0; r < UFAULT__RANK_NR; r++) {
		if (held[r]) {
			fprintf(stderr, "ufault: witness: %s with the %s lock held\n", where,
				rank_names[r]);
			abort();
		}
	}
}

void ufault__witness_assert_held(enum ufault__lock_rank rank, const char *where)
{
	if (!held[rank]) {
		fprintf(stderr, "ufault: witness: %s without the %s lock\n", where,
			rank_names[rank]);
		abort();
	}
}
#else
/* ISO C wants a translation unit to declare something. */
typedef int ufault__witness_unused;
#endif
