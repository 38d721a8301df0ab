/*
 * pool.c - the bounded pool of pages copied aside by the fault path, and
 * the lock-free queue it is built from.
 *
 * The fault path runs in a SIGBUS handler in CKPT_TRAP_SIGBUS mode, so
 * everything it touches here is lock-free and allocation-free: a slot is
 * popped from free_s, filled, and pushed to ready_q; the writer pops ready_q,
 * hands the page to the sink and pushes the slot back onto free_s.  The pool
 * never holds more than nslots pages: that is the memory cap.
 *
 * Calls nothing else in libckpt.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "engine.h"

int ckpt__queue_init(struct ckpt__queue *q, size_t min_capacity)
{
	size_t cap = 2;
	while (cap < min_capacity)
		cap <<= 1;
	q->cells = calloc(cap, sizeof(*q->cells));
	if (!q->cells)
		return -ENOMEM;
	for (size_t i = 0; i < cap; i++)
		atomic_init(&q->cells[i].seq, i);
	q->mask = cap - 1;
	atomic_init(&q->head, 0);
	atomic_init(&q->tail, 0);
	return 0;
}

void ckpt__queue_fini(struct ckpt__queue *q)
{
	free(q->cells);
	q->cells = NULL;
}

/* Each cell's seq says whose turn it is: seq == pos means free for the
 * producer at pos, seq == pos + 1 means filled for the consumer at pos. */
bool ckpt__queue_push(struct ckpt__queue *q, uint32_t v)
{
	uint64_t pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
	for (;;) {
		struct ckpt__qcell *c = &q->cells[pos & q->mask];
		uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
		int64_t dif = (int64_t)seq - (int64_t)pos;
		if (dif == 0) {
			if (atomic_compare_exchange_weak_explicit(&q->tail, &pos, pos + 1,
								  memory_order_relaxed,
								  memory_order_relaxed)) {
				c->val = v;
				atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
				return true;
			}
		} else if (dif < 0) {
			return false; /* full */
		} else {
			pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
		}
	}
}

bool ckpt__queue_pop(struct ckpt__queue *q, uint32_t *v)
{
	uint64_t pos = atomic_load_explicit(&q->head, memory_order_relaxed);
	for (;;) {
		struct ckpt__qcell *c = &q->cells[pos & q->mask];
		uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
		int64_t dif = (int64_t)seq - (int64_t)(pos + 1);
		if (dif == 0) {
			if (atomic_compare_exchange_weak_explicit(&q->head, &pos, pos + 1,
								  memory_order_relaxed,
								  memory_order_relaxed)) {
				*v = c->val;
				atomic_store_explicit(&c->seq, pos + q->mask + 1,
						      memory_order_release);
				return true;
			}
		} else if (dif < 0) {
			return false; /* empty */
		} else {
			pos = atomic_load_explicit(&q->head, memory_order_relaxed);
		}
	}
}

static void stack_push(struct ckpt__stack *s, uint32_t i)
{
	uint64_t old = atomic_load_explicit(&s->head, memory_order_relaxed), nw;
	do {
		atomic_store_explicit(&s->next[i], (uint32_t)old, memory_order_relaxed);
		nw = (((old >> 32) + 1) << 32) | (uint64_t)(i + 1);
	} while (!atomic_compare_exchange_weak_explicit(&s->head, &old, nw, memory_order_release,
							memory_order_relaxed));
}

static bool stack_pop(struct ckpt__stack *s, uint32_t *i)
{
	uint64_t old = atomic_load_explicit(&s->head, memory_order_acquire), nw;
	do {
		uint32_t top = (uint32_t)old;
		if (top == 0)
			return false;
		/* next[] of a slot another thread just popped may be stale:
		 * the tag makes the CAS fail in that case */
		uint32_t nxt = atomic_load_explicit(&s->next[top - 1], memory_order_relaxed);
		nw = (((old >> 32) + 1) << 32) | nxt;
	} while (!atomic_compare_exchange_weak_explicit(&s->head, &old, nw, memory_order_acquire,
							memory_order_acquire));
	*i = (uint32_t)old - 1;
	return true;
}

int ckpt__pool_init(struct ckpt__pool *p, size_t bytes, size_t slot_size)
{
	int rc;

	memset(p, 0, sizeof(*p));
	p->slot_size = slot_size;
	p->nslots = (uint32_t)(bytes / slot_size);
	if (p->nslots < 1)
		p->nslots = 1;
	p->mem = mmap(NULL, (size_t)p->nslots * slot_size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p->mem == MAP_FAILED) {
		p->mem = NULL;
		return -ENOMEM;
	}
	p->slot_page = calloc(p->nslots, sizeof(*p->slot_page));
	if (!p->slot_page) {
		rc = -ENOMEM;
		goto fail;
	}
	p->free_s.next = calloc(p->nslots, sizeof(*p->free_s.next));
	if (!p->free_s.next) {
		rc = -ENOMEM;
		goto fail;
	}
	atomic_init(&p->free_s.head, 0);
	rc = ckpt__queue_init(&p->ready_q, p->nslots);
	if (rc)
		goto fail;
	for (uint32_t i = p->nslots; i-- > 0;)
		stack_push(&p->free_s, i); /* slot 0 on top */
	return 0;
fail:
	ckpt__pool_fini(p);
	return rc;
}

void ckpt__pool_fini(struct ckpt__pool *p)
{
	if (p->mem)
		munmap(p->mem, (size_t)p->nslots * p->slot_size);
	p->mem = NULL;
	free(p->slot_page);
	p->slot_page = NULL;
	free((void *)p->free_s.next);
	p->free_s.next = NULL;
	ckpt__queue_fini(&p->ready_q);
}

void ckpt__pool_trim(struct ckpt__pool *p)
{
	/* Give the copied-aside pages back: the pool costs memory only while a
	 * checkpoint needs it. */
	madvise(p->mem, (size_t)p->nslots * p->slot_size, MADV_DONTNEED);
	p->warmed = 0;
}


/*
 * A trap that copies into a never-touched slot first takes an anonymous
 * page fault.  The writer faults slots in ahead of need instead, off the
 * fault path: the free stack hands out the lowest slots first and takes
 * freed ones back on top, so the highest slot ever used is below the peak
 * occupancy, and keeping [0, in_use + margin) warm is enough.  Warming the
 * whole cap at every checkpoint cost its full size in RSS even when no
 * page was written (issue 11).  Writer thread only.
 */
void ckpt__pool_warm(struct ckpt__pool *p, uint64_t max_pages)
{
	uint32_t margin = p->nslots / 16 > 64 ? p->nslots / 16 : 64;
	uint64_t want = (uint64_t)atomic_load_explicit(&p->in_use, memory_order_relaxed) + margin;
	if (want > max_pages)
		want = max_pages;
	if (want > p->nslots)
		want = p->nslots;
	if (want <= p->warmed)
		return;
	/* in steps of at least a margin, so that this runs rarely */
	if (want < p->warmed + margin)
		want = p->warmed + margin < p->nslots ? p->warmed + margin : p->nslots;
	madvise(p->mem + (size_t)p->warmed * p->slot_size, (size_t)(want - p->warmed) * p->slot_size,
		MADV_POPULATE_WRITE);
	p->warmed = (uint32_t)want;
}

bool ckpt__pool_get(struct ckpt__pool *p, uint32_t *slot)
{
	if (!stack_pop(&p->free_s, slot))
		return false;
	uint32_t n = atomic_fetch_add(&p->in_use, 1) + 1;
	uint32_t pk = atomic_load_explicit(&p->peak, memory_order_relaxed);
	while (n > pk && !atomic_compare_exchange_weak(&p->peak, &pk, n))
		;
	return true;
}

void ckpt__pool_put(struct ckpt__pool *p, uint32_t slot)
{
	atomic_fetch_sub(&p->in_use, 1);
	stack_push(&p->free_s, slot);
}
