/*
 * checkpoint.c - a checkpoint's life: ckpt_prepare() / ckpt_cut() (and the
 * one-call ckpt_begin()), the writer thread that runs the preparation and
 * then streams the pages, and poll / wait / cancel / stats.
 *
 * Preparation (writer thread, the application keeps writing): the sink's
 * set-up, the pool's warm-up, marking the checkpoint's pages PENDING, and
 * write-protection in passes (protect.c) until few pages are left open.  The
 * cut (the caller's thread, the only pause) protects that remainder and
 * flips the phase to PH_RUNNING: from then on a trap copies a pre-image
 * aside.  The writer then streams every PENDING page to the sink: pages the
 * fault path copied aside first (they hold pool slots), the rest in address
 * order from the read-only alias mapping.  docs/design.md has the protocol;
 * engine.h the invariants.
 *
 * Calls the heap's backend through struct ckpt__backend (uffdbackend.c,
 * forkbackend.c) at each step, the file sink (filesink.c) for path and fd
 * destinations, the allocator (quiesce at the cut), pool.c, protect.c and
 * util.c.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"

#define READY_PASS_MS 2       /* while ready, a pass this often keeps the remainder small */

static void notify(struct ckpt__engine *e)
{
	uint64_t one = 1;
	if (e->event_fd >= 0 && write(e->event_fd, &one, sizeof(one)) < 0) {
		/* an eventfd write fails only on counter overflow */
	}
}

static void finish(ckpt_heap *h, struct ckpt__engine *e, int rc)
{
	bool was_cut = atomic_load(&e->phase) == PH_RUNNING;

	if (rc == 0)
		rc = e->sink.end(e->sink.arg, 0);
	else
		e->sink.end(e->sink.arg, rc);

	e->be->settle(h, e, rc);
	ckpt__pool_trim(&e->pool);
	/* no checkpoint active, and none can start while running is set */
	ckpt__alloc_release_deferred(h);

	pthread_mutex_lock(&e->lock);
	if (rc == 0) {
		e->tracking_valid = e->keep_protected && e->be->tracks_pages;
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
	e->duration_ns = ckpt__now_ns() - (was_cut ? e->t_begin : e->t_prepare);
	e->result = rc;
	e->past[e->info.generation % 8].gen = e->info.generation;
	e->past[e->info.generation % 8].result = rc;
	e->running = false;
	e->cut_done = false;
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
	notify(e);
}

/*
 * The preparation, on the writer thread: set-up, marking, passes; then
 * ready, and passes every READY_PASS_MS until the cut.  Returns 0 once the
 * cut happened, or the error / CKPT_E_CANCELED that ends the checkpoint.
 */
static int prepare(ckpt_heap *h, struct ckpt__engine *e)
{
	int rc = 0;

	if (e->prepared_sink)
		rc = ckpt__file_sink_prepare(&e->sink, &e->info);
	if (rc == 0 && e->be->prepare)
		rc = e->be->prepare(h, e);
	pthread_mutex_lock(&e->lock);
	e->setup_done = true;
	if (rc == 0 && !atomic_load(&e->cancel)) {
		if (e->be->tracks_pages)
			atomic_store(&e->phase, PH_READY);
		e->prepare_ns = ckpt__now_ns() - e->t_prepare;
		e->ready = true;
		pthread_cond_broadcast(&e->cond);
		pthread_mutex_unlock(&e->lock);
		notify(e);
		pthread_mutex_lock(&e->lock);
	}
	/* Until the cut, a pass every READY_PASS_MS keeps the remainder (and
	 * so the pause) small however long the application takes to cut.  The
	 * cut never waits for one (protect.c). */
	while (rc == 0 && !e->cut_done && !e->cut_requested && !atomic_load(&e->cancel)) {
		if (!e->converge || !e->be->ready_pass) {
			pthread_cond_wait(&e->cond, &e->lock);
			continue;
		}
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += READY_PASS_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&e->cond, &e->lock, &ts);
		if (e->cut_done || e->cut_requested || atomic_load(&e->cancel))
			break;
		pthread_mutex_unlock(&e->lock);
		rc = e->be->ready_pass(h, e);
		pthread_mutex_lock(&e->lock);
	}
	while (rc == 0 && !e->cut_done && !atomic_load(&e->cancel))
		pthread_cond_wait(&e->cond, &e->lock);
	if (rc == 0 && atomic_load(&e->cancel))
		rc = e->cut_rc ? e->cut_rc : atomic_load(&e->failed) ? CKPT_E_FAILED : CKPT_E_CANCELED;
	pthread_mutex_unlock(&e->lock);
	return rc;
}

/* The writer runs at a lower CPU priority than the application: its work
 * is background work, and on a loaded machine it otherwise takes the CPU
 * the application's requests need (issue 10's measurements).  It cannot
 * starve: a trap that waits for a pool slot sleeps, which frees the CPU. */
static void lower_priority(ckpt_heap *h)
{
	/* relative to the thread that created the writer (the application's
	 * nice value is inherited): writer_nice steps below it */
	errno = 0;
	int cur = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
	if (h->opts.writer_nice > 0 && errno == 0) {
		int want = cur + h->opts.writer_nice > 19 ? 19 : cur + h->opts.writer_nice;
		(void)!setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), want);
	}
}

/*
 * One checkpoint, on a thread of its own, started by ckpt_prepare() /
 * ckpt_begin() and so at the application's priority while it prepares: the
 * passes decide how much the cut has to protect, and a pass slowed down
 * behind the application leaves more to the pause (under load the remainder
 * stopped converging).  Streaming is background work: the thread lowers its
 * priority at the cut and cannot raise it again, so it ends with its
 * checkpoint.
 */
static void *writer_main(void *arg)
{
	ckpt_heap *h = arg;
	struct ckpt__engine *e = h->eng;

	int rc = prepare(h, e);
	lower_priority(h);
	if (rc == 0 && e->sink.begin)
		rc = e->sink.begin(e->sink.arg, &e->info);
	if (rc == 0)
		rc = e->be->stream(h, e);
	if (rc == 0 && atomic_load(&e->cancel))
		rc = atomic_load(&e->failed) ? CKPT_E_FAILED : CKPT_E_CANCELED;
	finish(h, e, rc);
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
	e->be = h->backend == CKPT_BACKEND_FORK ? &ckpt__backend_fork : &ckpt__backend_uffd;
	e->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (e->event_fd < 0)
		return -errno;
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
	rc = ckpt__protect_init(h);
	if (rc)
		return rc;
	if (e->be->tracks_pages) {
		rc = ckpt__pool_init(&e->pool, h->opts.pool_bytes, h->page_size);
		if (rc)
			return rc;
	}
	return e->be->attach ? e->be->attach(h) : 0;
}

void ckpt__engine_fini(ckpt_heap *h)
{
	struct ckpt__engine *e = h->eng;

	if (!e)
		return;
	pthread_mutex_lock(&e->lock);
	if (e->running) {
		atomic_store(&e->cancel, 1);
		atomic_store(&e->prot_stop, 1);
		if (e->be->interrupt)
			e->be->interrupt(h);
		pthread_cond_broadcast(&e->cond);
		while (e->running)
			pthread_cond_wait(&e->cond, &e->lock);
	}
	if (e->writer_up) {
		pthread_mutex_unlock(&e->lock);
		pthread_join(e->writer, NULL);
		pthread_mutex_lock(&e->lock);
		e->writer_up = false;
	}
	pthread_mutex_unlock(&e->lock);
	if (e->be->detach)
		e->be->detach(h);
	if (e->pool.mem)
		ckpt__pool_fini(&e->pool);
	if (e->pg)
		munmap((void *)e->pg, h->npages);
	if (e->wbuf)
		munmap(e->wbuf, e->wbuf_pages * h->page_size);
	ckpt__protect_fini(h);
	if (e->event_fd >= 0)
		close(e->event_fd);
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

static bool same_dest(const struct ckpt__engine *e, const struct ckpt_dest *d)
{
	if (d->kind == CKPT_DEST_PATH)
		return e->last_path && strcmp(e->last_path, d->path) == 0;
	if (d->kind == CKPT_DEST_SINK)
		return e->last_sink == d->sink;
	return false; /* an fd stream always gets a full image */
}

static int check_args(const struct ckpt_dest *dest, const struct ckpt_begin_opts *opts_in,
		      struct ckpt_begin_opts *opts)
{
	ckpt_begin_opts_init(opts);
	if (opts_in) {
		if (opts_in->struct_size == 0 || opts_in->struct_size > sizeof(*opts))
			return -EINVAL;
		memcpy(opts, opts_in, opts_in->struct_size);
	}
	if (opts->zstd_level < 0 || opts->zstd_level > 22)
		return -EINVAL;
	switch (dest->kind) {
	case CKPT_DEST_PATH:
		return dest->path && *dest->path ? 0 : -EINVAL;
	case CKPT_DEST_FD:
		return dest->fd < 0 ? -EBADF : 0;
	case CKPT_DEST_SINK:
		return dest->sink && dest->sink->pages && dest->sink->end ? 0 : -EINVAL;
	default:
		return -EINVAL;
	}
}

/* Field by field, atomically: with CKPT_HEAP_INCREMENTAL the fault path
 * counts traps between checkpoints too, so it may be adding to these
 * counters right now (a plain memset raced with it: make tsan). */
static void reset_stats(struct ckpt__engine *e)
{
	_Static_assert(sizeof(struct ckpt__stats) == (8 + 2 * CKPT_HIST_BUCKETS) * sizeof(uint64_t),
		       "a counter added to struct ckpt__stats must be reset here too");
	_Atomic uint64_t *c[] = {&e->st.prep_traps, &e->st.traps, &e->st.saved_by_traps,
				 &e->st.fault_around, &e->st.pool_waits, &e->st.emitted,
				 &e->st.zero, &e->st.bytes_written};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
		atomic_store(c[i], 0);
	for (size_t i = 0; i < CKPT_HIST_BUCKETS; i++) {
		atomic_store(&e->st.hist[i], 0);
		atomic_store(&e->st.prep_hist[i], 0);
	}
}

/* Remember the destination, for the next checkpoint's "same destination?"
 * (an incremental needs its parent there).  Called with e->lock held. */
static int remember_dest(struct ckpt__engine *e, const struct ckpt_dest *dest)
{
	if (dest->kind == CKPT_DEST_PATH) {
		if (!e->last_path || strcmp(e->last_path, dest->path) != 0) {
			char *p = strdup(dest->path);
			if (!p)
				return -ENOMEM;
			free(e->last_path);
			e->last_path = p;
		}
		e->last_sink = NULL;
	} else {
		free(e->last_path);
		e->last_path = NULL;
		e->last_sink = dest->kind == CKPT_DEST_SINK ? dest->sink : NULL;
	}
	return 0;
}

/* The identity of the coming image; npages, pages_to_emit, created_ns and
 * root are filled in at the cut. */
static void fill_info(ckpt_heap *h, struct ckpt__engine *e, bool incremental)
{
	memset(&e->info, 0, sizeof(e->info));
	e->info.base = (uint64_t)(uintptr_t)h->base;
	e->info.heap_size = h->size;
	e->info.page_size = (uint32_t)h->page_size;
	e->info.generation = e->generation + 1;
	memcpy(e->info.app_tag, h->app_tag, sizeof(e->info.app_tag));
	if (getrandom(e->info.id, sizeof(e->info.id), 0) != (ssize_t)sizeof(e->info.id)) {
		uint64_t t = ckpt__now_ns() ^ (uint64_t)getpid();
		memcpy(e->info.id, &t, 8);
		memcpy(e->info.id + 8, &e->info.generation, 8);
	}
	if (incremental) {
		e->info.flags |= CKPT_SINK_INCREMENTAL;
		memcpy(e->info.parent_id, e->last_id, 16);
	}
}

/* Called with e->lock held and the checkpoint set up.  The last
 * checkpoint's thread has finished it (running is false): joining it waits
 * at most for its return. */
static int start_writer(ckpt_heap *h, struct ckpt__engine *e)
{
	if (e->writer_up) {
		pthread_join(e->writer, NULL);
		e->writer_up = false;
	}
	/* the application's signal handlers never run on it */
	int rc = ckpt__thread_start(&e->writer, "ckpt-writer", writer_main, h);
	if (rc)
		return rc;
	e->writer_up = true;
	return 0;
}

/* ckpt_prepare() and ckpt_begin(): everything but the cut. */
static int prepare_common(ckpt_heap *h, const struct ckpt_dest *dest, const struct ckpt_begin_opts *opts_in,
			  bool converge, uint64_t *gen)
{
	struct ckpt_begin_opts opts;
	struct ckpt__engine *e;
	int rc;

	if (!h || !dest)
		return -EINVAL;
	rc = check_args(dest, opts_in, &opts);
	if (rc)
		return rc;
	/* the writer reads pages through the alias: they must all be there */
	rc = h->lazy ? h->lazy_ops->make_resident(h) : 0;
	if (rc)
		return rc;
	e = h->eng;
	pthread_mutex_lock(&e->lock);
	if (atomic_load(&e->failed)) {
		pthread_mutex_unlock(&e->lock);
		return CKPT_E_FAILED;
	}
	if (e->running) {
		pthread_mutex_unlock(&e->lock);
		return -EBUSY;
	}
	bool incremental = e->tracking_valid && e->keep_protected && !(opts.flags & CKPT_BEGIN_FULL) &&
			   !(h->opts.full_every && e->since_full + 1 >= h->opts.full_every) &&
			   same_dest(e, dest);
	reset_stats(e);
	if (dest->kind == CKPT_DEST_SINK) {
		e->sink = *dest->sink;
		e->prepared_sink = false;
	} else {
		rc = ckpt__file_sink_open(dest, &opts, &e->st.bytes_written, h, &e->sink);
		if (rc) {
			pthread_mutex_unlock(&e->lock);
			return rc;
		}
		e->prepared_sink = true;
	}
	rc = remember_dest(e, dest);
	if (rc) {
		e->sink.end(e->sink.arg, rc);
		pthread_mutex_unlock(&e->lock);
		return rc;
	}
	fill_info(h, e, incremental);
	e->incremental_run = incremental;
	e->converge = converge;
	atomic_store(&e->cancel, 0);
	e->t_prepare = ckpt__now_ns();
	e->prepare_ns = e->pause_ns = e->duration_ns = 0;
	e->prep_passes = e->cut_pages = 0;
	e->setup_done = e->ready = e->cut_done = e->cut_requested = false;
	e->cut_rc = 0;
	rc = start_writer(h, e);
	if (rc) {
		e->sink.end(e->sink.arg, rc);
		pthread_mutex_unlock(&e->lock);
		return rc;
	}
	e->started = true;
	e->running = true;
	e->result = 0;
	if (gen)
		*gen = e->info.generation;
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
	return 0;
}

CKPT_API int ckpt_prepare(ckpt_heap *h, const struct ckpt_dest *dest, const struct ckpt_begin_opts *opts,
			  uint64_t *generation)
{
	return prepare_common(h, dest, opts, true, generation);
}

/* A checkpoint is prepared (or preparing) and nobody cut it yet; e->lock held. */
static bool awaits_cut(const struct ckpt__engine *e)
{
	return e->running && !e->cut_done && !e->cut_requested;
}

CKPT_API int ckpt_cut(ckpt_heap *h)
{
	uint64_t t_enter = ckpt__now_ns();
	if (!h)
		return -EINVAL;
	struct ckpt__engine *e = h->eng;
	int rc;

	pthread_mutex_lock(&e->lock);
	if (!awaits_cut(e)) {
		pthread_mutex_unlock(&e->lock);
		return -ENOENT;
	}
	/* The set-up (the destination) must exist before the instant. */
	while (!e->setup_done && e->running)
		pthread_cond_wait(&e->cond, &e->lock);
	if (!e->running || !e->ready) {
		pthread_mutex_unlock(&e->lock);
		return -ENOENT; /* the preparation failed: ckpt_wait() says why */
	}
	e->cut_requested = true;
	/* Passes stop; one still in flight is taken over, not waited for. */
	atomic_store(&e->prot_stop, 1);

	/* A signal handler that wrote the heap on this thread now would trap
	 * into a gate this thread has closed: keep them out for the pause. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	e->info.root = (uint64_t)(uintptr_t)ckpt_root_get(h); /* takes the allocator lock */
	ckpt__alloc_quiesce(h);
	e->t_begin = ckpt__now_ns();
	size_t ext = ckpt__alloc_extent_pages(h);
	e->ck_npages = ext;
	e->info.npages = ext;
	if (!e->incremental_run)
		e->info.pages_to_emit = ext;
	e->info.created_ns = ckpt__realtime_ns();
	rc = e->be->cut(h, e, ext);
	/* the pause is all the caller waited for, passes and locks included */
	e->pause_ns = ckpt__now_ns() - t_enter;
	ckpt__alloc_resume(h);
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	if (rc) {
		e->cut_rc = rc; /* the checkpoint's result, not CKPT_E_CANCELED */
		atomic_store(&e->cancel, 1);
		e->tracking_valid = false;
	} else {
		e->cut_done = true;
	}
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
	return rc;
}

CKPT_API int ckpt_begin(ckpt_heap *h, const struct ckpt_dest *dest, const struct ckpt_begin_opts *opts)
{
	uint64_t gen;
	int rc = prepare_common(h, dest, opts, false, &gen);
	if (rc)
		return rc;
	rc = ckpt_cut(h);
	if (rc) {
		/* the preparation's or the cut's error: reap the checkpoint; a
		 * cut that found nothing to cut reports the preparation's error */
		int wrc = ckpt_wait_gen(h, gen);
		return rc == -ENOENT && wrc ? wrc : rc;
	}
	return 0;
}

CKPT_API int ckpt_ready(ckpt_heap *h)
{
	if (!h)
		return -EINVAL;
	struct ckpt__engine *e = h->eng;
	pthread_mutex_lock(&e->lock);
	int rc = !awaits_cut(e) ? -ENOENT : e->ready ? 1 : 0;
	pthread_mutex_unlock(&e->lock);
	return rc;
}

CKPT_API int ckpt_event_fd(ckpt_heap *h)
{
	if (!h)
		return -EINVAL;
	return h->eng->event_fd;
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
		*total = e->cut_done || !e->running ? e->to_emit * h->page_size : 0;
	rc = e->running ? 1 : 0;
	pthread_mutex_unlock(&e->lock);
	return rc;
}

/* Waits for generation @gen to finish; e->lock held.  A checkpoint that is
 * prepared but not cut would wait for a cut that this thread must make. */
static int wait_locked(struct ckpt__engine *e, uint64_t gen)
{
	while (e->running && e->info.generation == gen) {
		if (!e->cut_done && !e->cut_requested && e->setup_done && e->ready &&
		    !atomic_load(&e->cancel))
			return -EAGAIN;
		pthread_cond_wait(&e->cond, &e->lock);
	}
	/* The checkpoint's thread has finished it and only returns now (it
	 * needs no lock for that): reap it, so that no thread of a finished
	 * checkpoint outlives ckpt_wait(). */
	if (!e->running && e->writer_up) {
		pthread_join(e->writer, NULL);
		e->writer_up = false;
	}
	if (e->past[gen % 8].gen == gen)
		return e->past[gen % 8].result;
	return gen > e->info.generation ? -ENOENT : -ESTALE;
}

/* ckpt_wait() and ckpt_wait_gen(): @gen 0 is the latest generation. */
static int wait_gen(ckpt_heap *h, uint64_t gen)
{
	if (!h)
		return -EINVAL;
	struct ckpt__engine *e = h->eng;
	pthread_mutex_lock(&e->lock);
	int rc = e->started ? wait_locked(e, gen ? gen : e->info.generation) : -ENOENT;
	pthread_mutex_unlock(&e->lock);
	return rc;
}

CKPT_API int ckpt_wait(ckpt_heap *h)
{
	return wait_gen(h, 0);
}

CKPT_API int ckpt_wait_gen(ckpt_heap *h, uint64_t gen)
{
	return gen == 0 ? -EINVAL : wait_gen(h, gen);
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
	if (e->be->interrupt)
		e->be->interrupt(h);
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
	return 0;
}

/* p-th percentile (0..100) of a log2 histogram, as its bucket's upper
 * bound in ns; 0 when empty. */
static uint64_t hist_pct(const uint64_t *hist, unsigned p)
{
	uint64_t n = 0, acc = 0;
	for (int i = 0; i < CKPT_HIST_BUCKETS; i++)
		n += hist[i];
	if (!n)
		return 0;
	for (int i = 0; i < CKPT_HIST_BUCKETS; i++) {
		acc += hist[i];
		if (acc * 100 >= n * p)
			return 2ull << i;
	}
	return 2ull << (CKPT_HIST_BUCKETS - 1);
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
	st.duration_ns = e->running ? ckpt__now_ns() - (e->cut_done ? e->t_begin : e->t_prepare)
				    : e->duration_ns;
	st.pages_total = e->cut_done || !e->running ? e->to_emit : 0;
	st.prepare_ns = e->prepare_ns;
	st.prep_passes = e->prep_passes;
	st.cut_pages = e->cut_pages;
	st.cut = e->cut_done || (!e->running && e->result == 0 && e->started);
	pthread_mutex_unlock(&e->lock);
	st.pages_emitted = atomic_load(&e->st.emitted);
	st.pages_zero = atomic_load(&e->st.zero);
	st.traps = atomic_load(&e->st.traps);
	st.pages_saved_by_traps = atomic_load(&e->st.saved_by_traps);
	st.fault_around_pages = atomic_load(&e->st.fault_around);
	st.pool_peak_bytes = (uint64_t)atomic_load(&e->pool.peak) * h->page_size;
	st.pool_waits = atomic_load(&e->st.pool_waits);
	st.bytes_written = atomic_load(&e->st.bytes_written);
	st.prep_traps = atomic_load(&e->st.prep_traps);
	for (int i = 0; i < CKPT_HIST_BUCKETS; i++) {
		st.trap_hist[i] = atomic_load(&e->st.hist[i]);
		st.prep_trap_hist[i] = atomic_load(&e->st.prep_hist[i]);
	}
	st.prep_trap_p50_ns = hist_pct(st.prep_trap_hist, 50);
	st.prep_trap_p99_ns = hist_pct(st.prep_trap_hist, 99);
	size_t n = out->struct_size < sizeof(st) ? out->struct_size : sizeof(st);
	memcpy(out, &st, n);
	out->struct_size = n;
	return 0;
}
