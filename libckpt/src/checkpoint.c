/*
 * checkpoint.c - ckpt_begin() and the writer thread.
 *
 * ckpt_begin() closes the gate (the fault path waits), marks the pages of
 * the checkpoint PENDING, write-protects them, opens the gate and returns:
 * that instant is the checkpoint.  The writer thread then streams every
 * PENDING page to the sink: pages copied aside by the fault path first
 * (they hold pool slots), the rest in address order from the read-only
 * alias mapping.  docs/design.md has the protocol; engine.h the invariants.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"

#define WRITER_BATCH_PAGES 64 /* 256 KiB with 4 KiB pages */
#define PARALLEL_WP_BYTES (128ull << 20)

bool ckpt__page_is_zero(const void *p, size_t len)
{
	const uint64_t *w = p;
	for (size_t i = 0; i < len / 8; i += 8) {
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7])
			return false;
	}
	return true;
}

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
		uint8_t expect = PG_PENDING;
		claimed[i] = atomic_compare_exchange_strong(&e->pg[lo + i], &expect, PG_CLAIMED);
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
			atomic_store_explicit(&e->pg[lo + i], PG_IDLE, memory_order_release);
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
			return CKPT_E_CANCELED;
		rc = drain_pool(h, e);
		if (rc)
			return rc;
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

/* After a failed or cancelled checkpoint the protection state is whatever
 * the failure left: unprotect everything that may be protected and forget
 * the incremental lineage (the next checkpoint is full). */
static void abort_protection(ckpt_heap *h, struct ckpt__engine *e)
{
	uint32_t slot;
	size_t lim = atomic_load(&e->prot_limit);

	ckpt__gate_close(e);
	for (size_t q = 0; q < lim; q++)
		atomic_store(&e->pg[q], PG_IDLE | PG_UNPROT);
	if (lim) {
		int rc = ckpt__wp_range(h, 0, lim, false);
		if (rc)
			ckpt__log(h, CKPT_LOG_ERROR, "unprotecting the heap failed: %s",
				  ckpt_strerror(rc));
	}
	while (ckpt__queue_pop(&e->pool.ready_q, &slot))
		ckpt__pool_put(&e->pool, slot);
	atomic_store(&e->prot_limit, 0);
	atomic_store(&e->active, 0);
	ckpt__gate_open(e);
}

static void finish(ckpt_heap *h, struct ckpt__engine *e, int rc)
{
	if (rc == 0)
		rc = e->sink.end(e->sink.arg, 0);
	else
		e->sink.end(e->sink.arg, rc);

	if (h->backend == CKPT_BACKEND_FORK) {
		ckpt__fork_kill(h);
		atomic_store(&e->active, 0);
	} else if (rc != 0) {
		abort_protection(h, e);
	} else {
		if (!e->keep_protected)
			atomic_store(&e->prot_limit, 0); /* everything was unprotected */
		atomic_store(&e->active, 0);
	}
	ckpt__pool_trim(&e->pool);

	pthread_mutex_lock(&e->lock);
	if (rc == 0) {
		e->tracking_valid = e->keep_protected && h->backend != CKPT_BACKEND_FORK;
		e->prot_extent = e->ck_npages;
		e->generation = e->info.generation;
		memcpy(e->last_id, e->info.id, 16);
		e->since_full = e->incremental_run ? e->since_full + 1 : 0;
	} else {
		e->tracking_valid = false;
		e->prot_extent = 0;
		free(e->last_path);
		e->last_path = NULL;
		e->last_sink = NULL;
	}
	e->duration_ns = ckpt__now_ns() - e->t_begin;
	e->result = rc;
	e->running = false;
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
}

static void *writer_main(void *arg)
{
	ckpt_heap *h = arg;
	struct ckpt__engine *e = h->eng;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);

	pthread_mutex_lock(&e->lock);
	for (;;) {
		while (!e->writer_job && !e->writer_exit)
			pthread_cond_wait(&e->cond, &e->lock);
		if (e->writer_exit)
			break;
		e->writer_job = false;
		pthread_mutex_unlock(&e->lock);

		if (h->backend != CKPT_BACKEND_FORK)
			ckpt__pool_warm(&e->pool, e->to_emit);
		int rc = e->sink.begin ? e->sink.begin(e->sink.arg, &e->info) : 0;
		if (rc == 0)
			rc = h->backend == CKPT_BACKEND_FORK ? ckpt__fork_stream(h) : stream_pages(h, e);
		if (rc == 0 && atomic_load(&e->cancel))
			rc = CKPT_E_CANCELED;
		finish(h, e, rc);

		pthread_mutex_lock(&e->lock);
	}
	pthread_mutex_unlock(&e->lock);
	return NULL;
}

int ckpt__engine_init(ckpt_heap *h)
{
	struct ckpt__engine *e = calloc(1, sizeof(*e));
	int rc;

	if (!e)
		return -ENOMEM;
	h->eng = e;
	e->pipe_rd = -1;
	e->wake_fd = -1;
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->cond, NULL);
	e->fault_around = h->opts.fault_around;
	e->keep_protected = (h->flags & CKPT_HEAP_INCREMENTAL) != 0;
	e->pg = mmap(NULL, h->npages, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (e->pg == MAP_FAILED) {
		e->pg = NULL;
		return -ENOMEM;
	}
	e->wbuf_pages = WRITER_BATCH_PAGES;
	e->wbuf = mmap(NULL, e->wbuf_pages * h->page_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (e->wbuf == MAP_FAILED) {
		e->wbuf = NULL;
		return -ENOMEM;
	}
	if (h->backend == CKPT_BACKEND_FORK)
		return 0;
	rc = ckpt__pool_init(&e->pool, h->opts.pool_bytes, h->page_size);
	if (rc)
		return rc;
	if (h->backend == CKPT_TRAP_SIGBUS)
		return ckpt__sigbus_register(h);
	return ckpt__handler_start(h);
}

void ckpt__engine_fini(ckpt_heap *h)
{
	struct ckpt__engine *e = h->eng;

	if (!e)
		return;
	pthread_mutex_lock(&e->lock);
	if (e->running) {
		atomic_store(&e->cancel, 1);
		if (h->backend == CKPT_BACKEND_FORK && e->child > 0)
			kill(e->child, SIGKILL);
		while (e->running)
			pthread_cond_wait(&e->cond, &e->lock);
	}
	if (e->writer_up) {
		e->writer_exit = true;
		pthread_cond_broadcast(&e->cond);
		pthread_mutex_unlock(&e->lock);
		pthread_join(e->writer, NULL);
		pthread_mutex_lock(&e->lock);
		e->writer_up = false;
	}
	pthread_mutex_unlock(&e->lock);
	if (h->backend == CKPT_TRAP_SIGBUS)
		ckpt__sigbus_unregister(h);
	ckpt__handler_stop(h);
	if (e->pool.mem)
		ckpt__pool_fini(&e->pool);
	if (e->pg)
		munmap((void *)e->pg, h->npages);
	if (e->wbuf)
		munmap(e->wbuf, e->wbuf_pages * h->page_size);
	free(e->last_path);
	pthread_cond_destroy(&e->cond);
	pthread_mutex_destroy(&e->lock);
	free(e);
	h->eng = NULL;
}

void ckpt__heap_set_lineage(ckpt_heap *h, uint64_t generation, const uint8_t id[16])
{
	struct ckpt__engine *e = h->eng;
	pthread_mutex_lock(&e->lock);
	e->generation = generation;
	if (id)
		memcpy(e->last_id, id, 16);
	pthread_mutex_unlock(&e->lock);
}

CKPT_API void ckpt_begin_opts_init(struct ckpt_begin_opts *o)
{
	if (!o)
		return;
	memset(o, 0, sizeof(*o));
	o->struct_size = sizeof(*o);
}

struct wp_part {
	ckpt_heap *h;
	size_t first, n;
	int rc;
};

static void *wp_part_main(void *arg)
{
	struct wp_part *p = arg;
	p->rc = ckpt__wp_range(p->h, p->first, p->n, true);
	return NULL;
}

/* Write-protect [0, n) for a full checkpoint.  Large ranges are split in
 * two and protected in parallel: UFFDIO_WRITEPROTECT takes mmap_lock for
 * reading only, so disjoint ranges proceed at once. */
static int protect_full(ckpt_heap *h, size_t n)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (n == 0)
		return 0;
	if (ncpu < 2 || ((uint64_t)n << h->page_shift) < PARALLEL_WP_BYTES)
		return ckpt__wp_range(h, 0, n, true);
	struct wp_part part = {h, n / 2, n - n / 2, 0};
	pthread_t t;
	if (pthread_create(&t, NULL, wp_part_main, &part) != 0)
		return ckpt__wp_range(h, 0, n, true);
	int rc = ckpt__wp_range(h, 0, n / 2, true);
	pthread_join(t, NULL);
	return rc ? rc : part.rc;
}

/* Protect the dirty set of an incremental checkpoint, pages [lo, hi): runs
 * of PENDING pages, merged across short gaps (the clean pages in a gap are
 * protected already, and one ioctl costs about as much as protecting a few
 * dozen pages: ~2.5 us vs ~70 ns a page here). */
static int protect_runs(ckpt_heap *h, struct ckpt__engine *e, size_t lo_lim, size_t hi_lim)
{
	const size_t max_gap = 32;
	size_t q = lo_lim;
	while (q < hi_lim) {
		if ((atomic_load_explicit(&e->pg[q], memory_order_relaxed) & PG_STATE) != PG_PENDING) {
			q++;
			continue;
		}
		size_t lo = q, hi = q + 1, gap = 0;
		for (size_t r = q + 1; r < hi_lim && gap <= max_gap; r++) {
			if ((atomic_load_explicit(&e->pg[r], memory_order_relaxed) & PG_STATE) == PG_PENDING) {
				hi = r + 1;
				gap = 0;
			} else {
				gap++;
			}
		}
		int rc = ckpt__wp_range(h, lo, hi - lo, true);
		if (rc)
			return rc;
		q = hi;
	}
	return 0;
}

struct runs_part {
	ckpt_heap *h;
	size_t lo, hi;
	int rc;
};

static void *runs_part_main(void *arg)
{
	struct runs_part *p = arg;
	p->rc = protect_runs(p->h, p->h->eng, p->lo, p->hi);
	return NULL;
}

/* Many scattered runs cost one ioctl each: split them over two cores like
 * a full protect (mmap_lock is only read-held by UFFDIO_WRITEPROTECT). */
static int protect_dirty(ckpt_heap *h, struct ckpt__engine *e, size_t n, uint64_t to_emit)
{
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2 || to_emit < 1024)
		return protect_runs(h, e, 0, n);
	struct runs_part part = {h, n / 2, n, 0};
	pthread_t t;
	if (pthread_create(&t, NULL, runs_part_main, &part) != 0)
		return protect_runs(h, e, 0, n);
	int rc = protect_runs(h, e, 0, n / 2);
	pthread_join(t, NULL);
	return rc ? rc : part.rc;
}

static bool same_dest(const struct ckpt__engine *e, const struct ckpt_dest *d)
{
	if (d->kind == CKPT_DEST_PATH)
		return e->last_path && strcmp(e->last_path, d->path) == 0;
	if (d->kind == CKPT_DEST_SINK)
		return e->last_sink == d->sink;
	return false; /* an fd stream always gets a full image */
}

CKPT_API int ckpt_begin(ckpt_heap *h, const struct ckpt_dest *dest, const struct ckpt_begin_opts *opts_in)
{
	struct ckpt_begin_opts opts;
	struct ckpt__engine *e;
	int rc;

	if (!h || !dest)
		return -EINVAL;
	ckpt_begin_opts_init(&opts);
	if (opts_in) {
		if (opts_in->struct_size == 0 || opts_in->struct_size > sizeof(opts))
			return -EINVAL;
		memcpy(&opts, opts_in, opts_in->struct_size);
	}
	if (opts.zstd_level < 0 || opts.zstd_level > 22)
		return -EINVAL;
	switch (dest->kind) {
	case CKPT_DEST_PATH:
		if (!dest->path || !*dest->path)
			return -EINVAL;
		break;
	case CKPT_DEST_FD:
		if (dest->fd < 0)
			return -EBADF;
		break;
	case CKPT_DEST_SINK:
		if (!dest->sink || !dest->sink->pages || !dest->sink->end)
			return -EINVAL;
		break;
	default:
		return -EINVAL;
	}
	e = h->eng;

	pthread_mutex_lock(&e->lock);
	if (e->running) {
		pthread_mutex_unlock(&e->lock);
		return -EBUSY;
	}
	if (!e->writer_up) {
		rc = pthread_create(&e->writer, NULL, writer_main, h);
		if (rc) {
			pthread_mutex_unlock(&e->lock);
			return -rc;
		}
		e->writer_up = true;
	}

	bool incremental = e->tracking_valid && e->keep_protected && !(opts.flags & CKPT_BEGIN_FULL) &&
			   !(h->opts.full_every && e->since_full + 1 >= h->opts.full_every) &&
			   same_dest(e, dest);

	/* The destination is opened before the pause: creating files is slow
	 * and may fail, and neither should stop the database. */
	/* Field by field, atomically: with CKPT_HEAP_INCREMENTAL the fault
	 * path counts traps between checkpoints too, so it may be adding to
	 * these counters right now (a plain memset raced with it: make tsan). */
	{
		_Static_assert(sizeof(struct ckpt__stats) == (7 + CKPT_HIST_BUCKETS) * sizeof(uint64_t),
			       "a counter added to struct ckpt__stats must be reset here too");
		_Atomic uint64_t *c[] = { &e->st.traps, &e->st.saved_by_traps, &e->st.fault_around,
					  &e->st.pool_waits, &e->st.emitted, &e->st.zero,
					  &e->st.bytes_written };
		for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
			atomic_store(c[i], 0);
		for (size_t i = 0; i < CKPT_HIST_BUCKETS; i++)
			atomic_store(&e->st.hist[i], 0);
	}
	if (dest->kind == CKPT_DEST_SINK) {
		e->sink = *dest->sink;
	} else {
		rc = ckpt__file_sink_open(dest, &opts, &e->st.bytes_written, &e->sink);
		if (rc) {
			pthread_mutex_unlock(&e->lock);
			return rc;
		}
	}
	if (dest->kind == CKPT_DEST_PATH) {
		if (!e->last_path || strcmp(e->last_path, dest->path) != 0) {
			char *p = strdup(dest->path);
			if (!p) {
				e->sink.end(e->sink.arg, -ENOMEM);
				pthread_mutex_unlock(&e->lock);
				return -ENOMEM;
			}
			free(e->last_path);
			e->last_path = p;
		}
		e->last_sink = NULL;
	} else {
		free(e->last_path);
		e->last_path = NULL;
		e->last_sink = dest->kind == CKPT_DEST_SINK ? dest->sink : NULL;
	}

	memset(&e->info, 0, sizeof(e->info));
	e->info.base = (uint64_t)(uintptr_t)h->base;
	e->info.heap_size = h->size;
	e->info.page_size = (uint32_t)h->page_size;
	e->info.generation = e->generation + 1;
	e->info.created_ns = ckpt__realtime_ns();
	e->info.root = (uint64_t)(uintptr_t)ckpt_root_get(h);
	if (getrandom(e->info.id, sizeof(e->info.id), 0) != (ssize_t)sizeof(e->info.id)) {
		uint64_t t = ckpt__now_ns() ^ (uint64_t)getpid();
		memcpy(e->info.id, &t, 8);
		memcpy(e->info.id + 8, &e->info.generation, 8);
	}
	if (incremental) {
		e->info.flags |= CKPT_SINK_INCREMENTAL;
		memcpy(e->info.parent_id, e->last_id, 16);
	}
	e->incremental_run = incremental;
	atomic_store(&e->cancel, 0);

	/* The pause: no allocator call and no fault handling may run while
	 * page states and protection change. */
	pthread_mutex_lock(&h->alloc_lock);
	e->t_begin = ckpt__now_ns();
	size_t ext = ckpt__alloc_extent_pages(h);
	e->ck_npages = ext;
	e->info.npages = ext;

	if (h->backend == CKPT_BACKEND_FORK) {
		e->to_emit = ext;
		e->info.pages_to_emit = ext;
		rc = ckpt__fork_start(h);
	} else {
		uint64_t to_emit = 0;
		ckpt__gate_close(e);
		atomic_store(&e->pool.peak, atomic_load(&e->pool.in_use));
		bool known = e->tracking_valid && e->keep_protected;
		uint64_t nprot = 0;
		if (!incremental && known) {
			/* A full image of an incremental heap: its clean pages
			 * are write-protected already (I3), so only the pages
			 * written since the last checkpoint need protecting; the
			 * pause stays proportional to the dirty set.  Pass one
			 * marks those, pass two (after protecting) the rest. */
			for (size_t q = 0; q < ext; q++) {
				if (q >= e->prot_extent ||
				    (atomic_load_explicit(&e->pg[q], memory_order_relaxed) & PG_UNPROT)) {
					atomic_store_explicit(&e->pg[q], PG_PENDING, memory_order_relaxed);
					nprot++;
				}
			}
			to_emit = ext;
		} else if (!incremental) {
			for (size_t q = 0; q < ext; q++)
				atomic_store_explicit(&e->pg[q], PG_PENDING, memory_order_relaxed);
			to_emit = ext;
		} else {
			for (size_t q = 0; q < ext; q++) {
				if (q >= e->prot_extent ||
				    (atomic_load_explicit(&e->pg[q], memory_order_relaxed) & PG_UNPROT)) {
					atomic_store_explicit(&e->pg[q], PG_PENDING, memory_order_relaxed);
					to_emit++;
				}
			}
		}
		e->to_emit = to_emit;
		e->info.pages_to_emit = to_emit;
		size_t old_lim = atomic_load(&e->prot_limit);
		atomic_store(&e->prot_limit, ext > old_lim ? ext : old_lim);
		atomic_store(&e->active, 1);
		if (incremental)
			rc = protect_dirty(h, e, ext, to_emit);
		else if (known) {
			rc = protect_dirty(h, e, ext, nprot);
			for (size_t q = 0; q < ext && rc == 0; q++)
				atomic_store_explicit(&e->pg[q], PG_PENDING, memory_order_relaxed);
		} else
			rc = protect_full(h, ext);
		if (rc) {
			/* UFFDIO_WRITEPROTECT can fail part-way (ENOMEM, or
			 * ENOENT after protecting part of the range): the state
			 * is unknown, so unprotect the whole heap. */
			ckpt__gate_open(e);
			abort_protection(h, e);
		} else {
			ckpt__gate_open(e);
		}
	}
	e->pause_ns = ckpt__now_ns() - e->t_begin;
	pthread_mutex_unlock(&h->alloc_lock);

	if (rc) {
		e->sink.end(e->sink.arg, rc);
		e->tracking_valid = false;
		pthread_mutex_unlock(&e->lock);
		return rc;
	}
	e->started = true;
	e->running = true;
	e->result = 0;
	e->writer_job = true;
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
	return 0;
}

CKPT_API int ckpt_poll(ckpt_heap *h, uint64_t *done, uint64_t *total)
{
	struct ckpt__engine *e;
	int rc;

	if (!h)
		return -EINVAL;
	e = h->eng;
	pthread_mutex_lock(&e->lock);
	if (!e->started) {
		pthread_mutex_unlock(&e->lock);
		return -ENOENT;
	}
	if (done)
		*done = atomic_load(&e->st.emitted) * h->page_size;
	if (total)
		*total = e->to_emit * h->page_size;
	rc = e->running ? 1 : 0;
	pthread_mutex_unlock(&e->lock);
	return rc;
}

CKPT_API int ckpt_wait(ckpt_heap *h)
{
	struct ckpt__engine *e;
	int rc;

	if (!h)
		return -EINVAL;
	e = h->eng;
	pthread_mutex_lock(&e->lock);
	if (!e->started) {
		pthread_mutex_unlock(&e->lock);
		return -ENOENT;
	}
	while (e->running)
		pthread_cond_wait(&e->cond, &e->lock);
	rc = e->result;
	pthread_mutex_unlock(&e->lock);
	return rc;
}

CKPT_API int ckpt_cancel(ckpt_heap *h)
{
	struct ckpt__engine *e;

	if (!h)
		return -EINVAL;
	e = h->eng;
	pthread_mutex_lock(&e->lock);
	if (!e->running) {
		pthread_mutex_unlock(&e->lock);
		return -ENOENT;
	}
	atomic_store(&e->cancel, 1);
	if (h->backend == CKPT_BACKEND_FORK && e->child > 0)
		kill(e->child, SIGKILL);
	pthread_mutex_unlock(&e->lock);
	return 0;
}

CKPT_API int ckpt_stats(ckpt_heap *h, struct ckpt_stats *out)
{
	struct ckpt__engine *e;
	struct ckpt_stats st;

	if (!h || !out || out->struct_size == 0)
		return -EINVAL;
	e = h->eng;
	memset(&st, 0, sizeof(st));
	st.struct_size = sizeof(st);
	pthread_mutex_lock(&e->lock);
	st.running = e->running;
	st.result = e->result;
	st.incremental = e->incremental_run;
	st.backend = h->backend;
	st.generation = e->info.generation;
	st.pause_ns = e->pause_ns;
	st.duration_ns = e->running ? ckpt__now_ns() - e->t_begin : e->duration_ns;
	st.pages_total = e->to_emit;
	pthread_mutex_unlock(&e->lock);
	st.pages_emitted = atomic_load(&e->st.emitted);
	st.pages_zero = atomic_load(&e->st.zero);
	st.traps = atomic_load(&e->st.traps);
	st.pages_saved_by_traps = atomic_load(&e->st.saved_by_traps);
	st.fault_around_pages = atomic_load(&e->st.fault_around);
	st.pool_peak_bytes = (uint64_t)atomic_load(&e->pool.peak) * h->page_size;
	st.pool_waits = atomic_load(&e->st.pool_waits);
	st.bytes_written = atomic_load(&e->st.bytes_written);
	for (int i = 0; i < CKPT_HIST_BUCKETS; i++)
		st.trap_hist[i] = atomic_load(&e->st.hist[i]);
	size_t n = out->struct_size < sizeof(st) ? out->struct_size : sizeof(st);
	memcpy(out, &st, n);
	out->struct_size = n;
	return 0;
}
