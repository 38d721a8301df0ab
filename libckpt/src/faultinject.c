/*
 * faultinject.c - the fault-injection hook (see faultinject.h).  Compiled to nothing
 * unless -DCKPT_FAULT_INJECTION.  Calls nothing else in libckpt: every layer
 * may ask it.
 */
#include "faultinject.h"

#ifdef CKPT_FAULT_INJECTION
#include <stdatomic.h>

#include "internal.h"

struct fault_slot {
	_Atomic int err;          /* 0 = disarmed */
	_Atomic unsigned skip;    /* passes left before failing */
	_Atomic unsigned count;   /* failures left; 0 = unlimited */
	_Atomic unsigned long hits;
};

static struct fault_slot slots[CKPT_FAULT__COUNT];

int ckpt__fault_hit(enum ckpt__fault_site site)
{
	if ((unsigned)site >= CKPT_FAULT__COUNT)
		return 0;
	struct fault_slot *s = &slots[site];
	atomic_fetch_add(&s->hits, 1);
	int err = atomic_load(&s->err);
	if (!err)
		return 0;
	/* consume one skip; while skips remain the call passes */
	unsigned sk = atomic_load(&s->skip);
	while (sk > 0) {
		if (atomic_compare_exchange_weak(&s->skip, &sk, sk - 1))
			return 0;
	}
	unsigned c = atomic_load(&s->count);
	if (c == 0)
		return err; /* unlimited */
	while (c > 0) {
		if (atomic_compare_exchange_weak(&s->count, &c, c - 1)) {
			if (c == 1)
				atomic_store(&s->err, 0);
			return err;
		}
	}
	return 0;
}

void ckpt__fault_arm(enum ckpt__fault_site site, int err, unsigned skip, unsigned count)
{
	if ((unsigned)site >= CKPT_FAULT__COUNT)
		return;
	struct fault_slot *s = &slots[site];
	atomic_store(&s->err, 0);
	atomic_store(&s->skip, skip);
	atomic_store(&s->count, count);
	atomic_store(&s->err, err);
}

void ckpt__fault_reset(void)
{
	for (int i = 0; i < CKPT_FAULT__COUNT; i++) {
		atomic_store(&slots[i].err, 0);
		atomic_store(&slots[i].skip, 0);
		atomic_store(&slots[i].count, 0);
		atomic_store(&slots[i].hits, 0);
	}
}

unsigned long ckpt__fault_hits(enum ckpt__fault_site site)
{
	if ((unsigned)site >= CKPT_FAULT__COUNT)
		return 0;
	return atomic_load(&slots[site].hits);
}
#else
/* ISO C wants at least one declaration in a translation unit. */
typedef int ckpt__fault_disabled;
#endif
