/*
 * uffdbackend.c - the two userfaultfd backends (a handler thread, or SIGBUS
 * in the faulting thread) as a checkpoint's life sees them: marking the
 * checkpoint's pages and the protection passes of the preparation, the cut
 * that protects the remainder, the stream of pages (the pool's copies first,
 * then address order through the read-only alias), and the clean-up after a
 * failure.  They differ only in how traps arrive (trap.c); everything here
 * is shared, and checkpoint.c reaches it through struct ckpt__backend.
 *
 * Calls: trap.c (gate, handler thread, SIGBUS), protect.c (passes,
 * ckpt__wp_range), pool.c, the allocator's extent, util.c.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "engine.h"

#define PASSES_MAX 16         /* protection passes before ready, at most */
#define CUT_TARGET_PAGES 64   /* ready once this few pages are left open */

/* Hand pages to the sink, splitting all-zero pages off as NULL runs so
 * sinks can record them without storing them. */
static int emit(ckpt_heap *h, struct ckpt__engine *e, uint64_t first, uint32_t n, const uint8_t *data)
{
	uint32_t i = 0;
	while (i < n) {
		bool z = ckpt__page_is_zero(data + ((size_t)i << h->page_shift), h->page_size);
		uint32_t j = i + 1;
		while (j < n && ckpt__page_is_zero(data + ((size_t)j << h->page_shift), h->page_size) == z)
			j++;
		int rc = e->sink.pages(e->sink.arg, first + i, j - i,
				       z ? NULL : data + ((size_t)i << h->page_shift));
		if (rc < 0)
			return rc;
		atomic_fetch_add(&e->st.emitted, j - i);
		if (z)
			atomic_fetch_add(&e->st.zero, j - i);
		i = j;
	}
	return 0;
}


/* Emit the pages the fault path copied aside; their slots go back to the
 * pool, which un-blocks traps waiting for one. */
static int drain_pool(ckpt_heap *h, struct ckpt__engine *e)
{
	uint32_t slot;
	while (ckpt__queue_pop(&e->pool.ready_q, &slot)) {
		int rc = emit(h, e, e->pool.slot_page[slot], 1, ckpt__pool_slot(&e->pool, slot));
		ckpt__pool_put(&e->pool, slot);
		if (rc)
			return rc;
	}
	return 0;
}


/* One batch of the address-order scan: claim, copy, release, unprotect,
 * emit.  The copy happens before the IDLE store (I2) and the emit after
 * the unprotect, so the application waits on a memcpy, never on the sink. */
static int scan_batch(ckpt_heap *h, struct ckpt__engine *e, size_t lo, size_t hi)
{
	bool claimed[WRITER_BATCH_PAGES];
	size_t n = hi - lo;
	bool any = false;

	for (size_t i = 0; i < n; i++) {
		uint8_t expect = atomic_load_explicit(&e->pg[lo + i], memory_order_relaxed);
		claimed[i] = false;
		while ((expect & PG_STATE) == PG_PENDING &&
		       !(claimed[i] = atomic_compare_exchange_weak(&e->pg[lo + i], &expect,
								  (uint8_t)((expect & ~PG_STATE) | PG_CLAIMED))))
			;
		if (claimed[i]) {
			memcpy(e->wbuf + (i << h->page_shift), h->alias + ((lo + i) << h->page_shift),
			       h->page_size);
			any = true;
		}
	}
	if (!any)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (claimed[i])
			atomic_store_explicit(&e->pg[lo + i],
					      (uint8_t)(atomic_load_explicit(&e->pg[lo + i], memory_order_relaxed) &
							~PG_STATE),
					      memory_order_release);
	for (size_t i = 0; i < n;) {
		if (!claimed[i]) {
			i++;
			continue;
		}
		size_t j = i;
		while (j < n && claimed[j])
			j++;
		if (!e->keep_protected) {
			int rc = ckpt__wp_range(h, lo + i, j - i, false);
			if (rc)
				return rc;
			for (size_t k = i; k < j; k++)
				atomic_fetch_or(&e->pg[lo + k], PG_UNPROT);
		}
		int rc = emit(h, e, lo + i, (uint32_t)(j - i), e->wbuf + (i << h->page_shift));
		if (rc)
			return rc;
		i = j;
	}
	return 0;
}


static int stream_pages(ckpt_heap *h, struct ckpt__engine *e)
{
	size_t cursor = 0, n = e->ck_npages;
	int rc;

	while (atomic_load(&e->st.emitted) < e->to_emit) {
		if (atomic_load(&e->cancel))
			return atomic_load(&e->failed) ? CKPT_E_FAILED : CKPT_E_CANCELED;
		rc = drain_pool(h, e);
		if (rc)
			return rc;
		ckpt__pool_warm(&e->pool, e->to_emit);
		if (cursor < n) {
			size_t end = cursor + WRITER_BATCH_PAGES < n ? cursor + WRITER_BATCH_PAGES : n;
			rc = scan_batch(h, e, cursor, end);
			if (rc)
				return rc;
			cursor = end;
		} else {
			/* Everything left was claimed by traps and is on its
			 * way into the pool. */
			struct timespec ts = {0, 20000};
			nanosleep(&ts, NULL);
		}
	}
	return drain_pool(h, e);
}


/* After a failed or cancelled checkpoint (or preparation) the protection
 * state is whatever the failure left: unprotect everything that may be
 * protected and forget the incremental lineage (the next checkpoint is
 * full).  Passes have stopped: the writer ran them, and it is the caller. */
static void abort_protection(ckpt_heap *h, struct ckpt__engine *e)
{
	uint32_t slot;
	size_t lim = atomic_load(&e->prot_limit);

	ckpt__gate_close(e);
	for (size_t q = 0; q < lim; q++)
		atomic_store(&e->pg[q], PG_IDLE | PG_UNPROT);
	if (lim) {
		int rc = ckpt__wp_range(h, 0, lim, false);
		if (rc) {
			/* Nothing can be known about the heap's protection any
			 * more: a later checkpoint could miss writes. */
			atomic_store(&e->failed, 1);
			ckpt__log(h, CKPT_LOG_ERROR,
				  "unprotecting the heap failed: %s; the heap takes no more checkpoints",
				  ckpt_strerror(rc));
		}
	}
	while (ckpt__queue_pop(&e->pool.ready_q, &slot))
		ckpt__pool_put(&e->pool, slot);
	atomic_store(&e->prot_limit, 0);
	atomic_store(&e->phase, PH_IDLE);
	atomic_store(&e->active, 0);
	ckpt__gate_open(e);
}


/* Marks the checkpoint's pages PENDING: all of [0, n) for a full one, the
 * pages written since the last checkpoint (PG_UNPROT) for an incremental.
 * Traps mark what is written meanwhile (ckpt__mark_open); npending counts
 * each page once, whoever marks it. */
static void mark_pending(struct ckpt__engine *e, size_t n, bool incremental)
{
	for (size_t q = 0; q < n; q++) {
		if (incremental && !(atomic_load_explicit(&e->pg[q], memory_order_relaxed) & PG_UNPROT))
			continue;
		uint8_t old = atomic_fetch_or_explicit(&e->pg[q], PG_PENDING, memory_order_relaxed);
		if ((old & PG_STATE) == PG_IDLE)
			atomic_fetch_add_explicit(&e->npending, 1, memory_order_relaxed);
	}
}


/* The start of preparation, under the gate: the phase changes, pages the
 * heap grew into since the last checkpoint count as open (they never were
 * protected), and every chunk may hold open pages. */
static void enter_preparation(ckpt_heap *h, struct ckpt__engine *e)
{
	pthread_mutex_lock(&h->alloc_lock);
	size_t ext = ckpt__alloc_extent_pages(h);
	pthread_mutex_unlock(&h->alloc_lock);

	ckpt__gate_close(e);
	size_t lim = atomic_load(&e->prot_limit);
	for (size_t q = lim; q < ext; q++)
		atomic_store_explicit(&e->pg[q], PG_UNPROT, memory_order_relaxed);
	if (ext > lim)
		atomic_store(&e->prot_limit, ext);
	e->prep_npages = ext;
	atomic_store(&e->npending, 0);
	ckpt__protect_reset(e);
	ckpt__groups_fill(e, ext);
	atomic_store(&e->prot_stop, 0);
	atomic_store(&e->active, 1);
	atomic_store(&e->phase, PH_PREPARING);
	ckpt__gate_open(e);
}


/* Protection passes until the pages left open are few, or stop shrinking
 * (the application dirties them as fast as a pass protects them). */
static int converge(ckpt_heap *h, struct ckpt__engine *e)
{
	uint64_t left, prev = UINT64_MAX, unused;
	int rc = ckpt__protect_pass(h, true, e->prep_npages, &unused);
	e->prep_passes = 1;
	left = ckpt__open_pages(h, e->prep_npages);
	while (rc == 0 && left > CUT_TARGET_PAGES && left < prev && e->prep_passes < PASSES_MAX &&
	       !atomic_load(&e->prot_stop) && !atomic_load(&e->cancel)) {
		prev = left;
		rc = ckpt__protect_pass(h, false, e->prep_npages, &unused);
		e->prep_passes++;
		left = ckpt__open_pages(h, e->prep_npages);
	}
	return rc;
}


/* Pages the heap grew into during preparation were never protected: the
 * checkpoint includes them, and the cut protects them with the rest. */
static void mark_grown(struct ckpt__engine *e, size_t from, size_t ext)
{
	for (size_t q = from; q < ext; q++) {
		uint8_t old = atomic_fetch_or_explicit(&e->pg[q], PG_PENDING | PG_UNPROT, memory_order_relaxed);
		if ((old & PG_STATE) == PG_IDLE)
			atomic_fetch_add_explicit(&e->npending, 1, memory_order_relaxed);
		if (q == from || (q & (GROUP_PAGES - 1)) == 0)
			ckpt__groups_set(e, q);
	}
	if (ext > atomic_load(&e->prot_limit))
		atomic_store(&e->prot_limit, ext);
}

/* The pause itself, with the gate closed and the allocator quiescent. */
static int uffd_cut(ckpt_heap *h, struct ckpt__engine *e, size_t ext)
{
	int rc;

	ckpt__gate_close(e);
	atomic_store(&e->pool.peak, atomic_load(&e->pool.in_use));
	mark_grown(e, e->prep_npages, ext);
	rc = ckpt__protect_remainder(h, ext, &e->cut_pages);
	if (rc) {
		/* UFFDIO_WRITEPROTECT can fail part-way (ENOMEM, or ENOENT
		 * after protecting part of the range): the state is unknown,
		 * so unprotect the whole heap. */
		ckpt__gate_open(e);
		abort_protection(h, e);
		return rc;
	}
	e->to_emit = atomic_load(&e->npending);
	e->info.pages_to_emit = e->to_emit;
	atomic_store(&e->phase, PH_RUNNING);
	ckpt__gate_open(e);
	return 0;
}


/* The preparation's part of these backends, on the checkpoint's thread. */
static int uffd_prepare(ckpt_heap *h, struct ckpt__engine *e)
{
	enter_preparation(h, e);
	ckpt__pool_warm(&e->pool, e->prep_npages);
	mark_pending(e, e->prep_npages, e->incremental_run);
	return e->converge ? converge(h, e) : 0;
}

/* While ready, until the cut: one more pass keeps the remainder small. */
static int uffd_ready_pass(ckpt_heap *h, struct ckpt__engine *e)
{
	uint64_t left;
	return ckpt__protect_pass(h, false, e->prep_npages, &left);
}

/* After the sink ended: on failure the protection state is unknown. */
static void uffd_settle(ckpt_heap *h, struct ckpt__engine *e, int rc)
{
	if (rc != 0) {
		abort_protection(h, e);
		return;
	}
	if (!e->keep_protected)
		atomic_store(&e->prot_limit, 0); /* everything was unprotected */
	atomic_store(&e->phase, PH_IDLE);
	atomic_store(&e->active, 0);
}

const struct ckpt__backend ckpt__backend_uffd = {
	.name = "userfaultfd",
	.tracks_pages = true,
	.attach = ckpt__traps_start,
	.detach = ckpt__traps_stop,
	.prepare = uffd_prepare,
	.ready_pass = uffd_ready_pass,
	.cut = uffd_cut,
	.stream = stream_pages,
	.settle = uffd_settle,
};
