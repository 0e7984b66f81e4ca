// SPDX-License-Identifier: MIT
/*
 * mmlock.c - the lock-mode table and the mm lock (mmlock.h).
 */
#include <errno.h>

#include "mmlock.h"
#include "witness.h"

static const struct ufault__mm_mode modes[] = {
    /*                 name      global  fault_mm  region */
    [UFAULT_LOCK_SPEC] = {"spec", false, false, UFAULT__REGION_VALIDATE},
    [UFAULT_LOCK_REGION] = {"region", false, false, UFAULT__REGION_HOLD},
    [UFAULT_LOCK_RANGE] = {"range", false, true, UFAULT__REGION_NONE},
    [UFAULT_LOCK_GLOBAL] = {"global", true, true, UFAULT__REGION_NONE},
};

const struct ufault__mm_mode *ufault__mm_mode(enum ufault_lock_mode mode)
{
	if (mode < UFAULT_LOCK_SPEC || mode > UFAULT_LOCK_GLOBAL)
		return NULL;
	return &modes[mode];
}

int ufault__mmlock_init(struct ufault__mmlock *ml, enum ufault_lock_mode mode)
{
	pthread_rwlockattr_t attr;
	int ret;

	ml->mode = ufault__mm_mode(mode);
	if (!ml->mode)
		return -EINVAL;
	ml->id = mode;
	/* Writers must not starve behind a stream of faults, as with the
	 * kernel's rwsem: glibc's writer-preferring rwlock. */
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	ret = -pthread_rwlock_init(&ml->global, &attr);
	pthread_rwlockattr_destroy(&attr);
	if (ret)
		return ret;
	ret = ufault_rangelock_init(&ml->range);
	if (ret)
		pthread_rwlock_destroy(&ml->global);
	return ret;
}

void ufault__mmlock_destroy(struct ufault__mmlock *ml)
{
	ufault_rangelock_destroy(&ml->range);
	pthread_rwlock_destroy(&ml->global);
}

bool ufault__mm_read_trylock(struct ufault__mmlock *ml, struct ufault__mm_held *h, uint64_t page,
			     uint64_t sys_page)
{
	h->locked = false;
	if (!ml->mode->fault_mm)
		return true;
	if (ml->mode->global) {
		if (pthread_rwlock_tryrdlock(&ml->global))
			return false;
	} else {
		/* Proxies lock whole region pages, so locking the faulting
		 * system page conflicts with every proxy that affects it. */
		if (!ufault_range_read_trylock(&ml->range, &h->range, page, page + sys_page))
			return false;
	}
	ufault__witness_acquire(UFAULT__RANK_MM, true);
	h->locked = true;
	return true;
}

void ufault__mm_read_unlock(struct ufault__mmlock *ml, struct ufault__mm_held *h)
{
	if (!h->locked)
		return;
	ufault__witness_release(UFAULT__RANK_MM);
	if (ml->mode->global)
		pthread_rwlock_unlock(&ml->global);
	else
		ufault_range_read_unlock(&ml->range, &h->range);
	h->locked = false;
}

void ufault__mm_read_lock(struct ufault__mmlock *ml, struct ufault__mm_held *h, uint64_t start,
			  uint64_t end)
{
	ufault__witness_acquire(UFAULT__RANK_MM, false);
	if (ml->mode->global)
		pthread_rwlock_rdlock(&ml->global);
	else
		ufault_range_read_lock(&ml->range, &h->range, start, end);
	h->locked = true;
}

void ufault__mm_write_lock(struct ufault__mmlock *ml, struct ufault__mm_held *h, uint64_t start,
			   uint64_t end)
{
	ufault__witness_acquire(UFAULT__RANK_MM, false);
	if (ml->mode->global)
		pthread_rwlock_wrlock(&ml->global);
	else
		ufault_range_write_lock(&ml->range, &h->range, start, end);
	h->locked = true;
}

void ufault__mm_write_unlock(struct ufault__mmlock *ml, struct ufault__mm_held *h)
{
	ufault__witness_release(UFAULT__RANK_MM);
	if (ml->mode->global)
		pthread_rwlock_unlock(&ml->global);
	else
		ufault_range_write_unlock(&ml->range, &h->range);
	h->locked = false;
}

void ufault__mm_assert_write_locked(const struct ufault__mm_held *h)
{
	ufault__witness_assert_held(UFAULT__RANK_MM, "changing regions");
	(void)h;
}
