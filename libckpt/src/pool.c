/*
 * pool.c - the bounded pool of pages copied aside by the fault path, and
 * the lock-free queue it is built from.
 *
 * The fault path runs in a SIGBUS handler in CKPT_TRAP_SIGBUS mode, so
 * everything it touches here is lock-free and allocation-free: a slot is
 * taken from free_q, filled, and pushed to ready_q; the writer pops ready_q,
 * hands the page to the sink and pushes the slot back to free_q.  The pool
 * never holds more than nslots pages: that is the memory cap.
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
	rc = ckpt__queue_init(&p->free_q, p->nslots);
	if (rc)
		goto fail;
	rc = ckpt__queue_init(&p->ready_q, p->nslots);
	if (rc)
		goto fail;
	for (uint32_t i = 0; i < p->nslots; i++)
		ckpt__queue_push(&p->free_q, i);
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
	ckpt__queue_fini(&p->free_q);
	ckpt__queue_fini(&p->ready_q);
}

void ckpt__pool_trim(struct ckpt__pool *p)
{
	/* Give the copied-aside pages back: the pool costs memory only while a
	 * checkpoint needs it. */
	madvise(p->mem, (size_t)p->nslots * p->slot_size, MADV_DONTNEED);
}

bool ckpt__pool_get(struct ckpt__pool *p, uint32_t *slot)
{
	if (!ckpt__queue_pop(&p->free_q, slot))
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
	ckpt__queue_push(&p->free_q, slot);
}
