/* SPDX-License-Identifier: MIT */
/*
 * mmlock.h - the lock modes (DESIGN.md) as one symmetric API, in the manner
 * of the kernel's include/linux/mmap_lock.h. The "mm lock" is what a fault
 * read-holds across its fill and what a proxy write-holds across its system
 * call: the global rwlock (global mode) or a range of the range lock (the
 * other modes; in spec and region mode faults do not take it, proxies
 * still serialise among themselves with it). The region rwlock is
 * region.h's.
 *
 * Each mode is one row of a table (mmlock.c): what a fault holds and how it
 * treats its region. Nothing else switches on the mode.
 *
 * Workers only ever try-lock the mm lock: a proxy holds it across a system
 * call that, with UFFD_EVENT_REMAP, waits for a worker to read an event
 * (the witness checks it in debug builds).
 */
#ifndef UFAULT_LIB_MMLOCK_H
#define UFAULT_LIB_MMLOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <ufault/rangelock.h>
#include <ufault/ufault.h>

/* What a fault does with its region once found. */
enum ufault__region_hold {
	UFAULT__REGION_NONE,	 /* the mm lock already excludes changes */
	UFAULT__REGION_HOLD,	 /* read-lock it across fill and install */
	UFAULT__REGION_VALIDATE, /* fill unlocked; try-lock, validate, install */
};

struct ufault__mm_mode {
	const char *name;
	bool global;			 /* the mm lock is the global rwlock */
	bool fault_mm;			 /* faults read-hold the mm lock */
	enum ufault__region_hold region; /* then, what they do with the region */
};

struct ufault__mmlock {
	const struct ufault__mm_mode *mode;
	enum ufault_lock_mode id;
	pthread_rwlock_t global;       /* global mode: faults read, proxies write */
	struct ufault_rangelock range; /* the other modes */
};

/* A held mm lock (on the holder's stack). */
struct ufault__mm_held {
	struct ufault_range range;
	bool locked;
};

/* The row of @mode (not UFAULT_LOCK_DEFAULT), or NULL. */
const struct ufault__mm_mode *ufault__mm_mode(enum ufault_lock_mode mode);
int ufault__mmlock_init(struct ufault__mmlock *ml, enum ufault_lock_mode mode);
void ufault__mmlock_destroy(struct ufault__mmlock *ml);

/* Faults: read-trylock the system page at @page if the mode says so (true
 * also when the mode takes nothing). Never waits. */
bool ufault__mm_read_trylock(struct ufault__mmlock *ml, struct ufault__mm_held *h, uint64_t page,
			     uint64_t sys_page);
void ufault__mm_read_unlock(struct ufault__mmlock *ml, struct ufault__mm_held *h);

/* Flushes: read-lock [start, end), waiting (the whole space in global
 * mode): no proxy changes the regions there meanwhile, faults go on.
 * Released with ufault__mm_read_unlock(). Not for workers. */
void ufault__mm_read_lock(struct ufault__mmlock *ml, struct ufault__mm_held *h, uint64_t start,
			  uint64_t end);

/* Proxies: write-lock [start, end) (the whole space in global mode). */
void ufault__mm_write_lock(struct ufault__mmlock *ml, struct ufault__mm_held *h, uint64_t start,
			   uint64_t end);
void ufault__mm_write_unlock(struct ufault__mmlock *ml, struct ufault__mm_held *h);

/* Debug builds: the caller holds the mm write lock. */
void ufault__mm_assert_write_locked(const struct ufault__mm_held *h);

#endif
