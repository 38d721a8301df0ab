/*
 * engine.h - the checkpoint engine's shared state: per-page states, the
 * pool of pages copied aside, the fault path and the writer.
 *
 * Private to heap.c, pool.c, trap.c, protect.c, checkpoint.c, uffdbackend.c
 * and forkbackend.c.  The
 * protocol between the fault path and the writer is written down in
 * docs/design.md ("The page protocol"); the comments here name the
 * invariant each ordering keeps.
 */
#ifndef CKPT_ENGINE_H
#define CKPT_ENGINE_H

#include <signal.h>

#include "internal.h"

/*
 * Per-page state, one byte per heap page, changed only with atomics.
 *
 *   bits 0-1  PG_IDLE     not part of the running checkpoint, or already saved
 *             PG_PENDING  part of the prepared / running checkpoint, pre-image
 *                         not saved yet
 *             PG_CLAIMED  a writer or a trap owns it and is copying it
 *   bit 2     PG_UNPROT   the page may be unprotected (it may have been
 *                         written since it was last write-protected): an
 *                         incremental checkpoint must include it, and the cut
 *                         must protect it
 *   bit 3     PG_TRAPPED  preparation only: a trap (or ckpt_prepare_write)
 *                         unprotected the page since a protection pass last
 *                         looked at it; the pass must then keep PG_UNPROT
 *   bit 4     PG_PINNED   ckpt_prepare_write() opened the page for a syscall:
 *                         preparation's passes leave it unprotected, only the
 *                         cut protects it again
 *
 * Invariants (docs/design.md, "The page protocol"):
 *  I1 A page is emitted exactly once per checkpoint: only the thread that
 *     moves it PENDING -> CLAIMED (CAS) copies and emits it, and that only
 *     after the cut.
 *  I2 After the cut, a page is never unprotected while PENDING or CLAIMED:
 *     whoever unprotects a page first sees it IDLE, which is stored
 *     (release) only after its pre-image is safe (in the writer's buffer or
 *     a pool slot).  Before the cut nothing is copied: a trap only marks.
 *  I3 Pages [0, prot_limit) without PG_UNPROT are write-protected; pages at
 *     or past prot_limit never were.  PG_UNPROT on a protected page is
 *     allowed (it costs a redundant protect), never the reverse: whoever
 *     unprotects sets PG_UNPROT first, and a protection pass clears it only
 *     with a CAS that fails if PG_TRAPPED was set after its protect.
 */
#define PG_IDLE 0u
#define PG_PENDING 1u
#define PG_CLAIMED 2u
#define PG_STATE 3u
#define PG_UNPROT 4u
#define PG_TRAPPED 8u
#define PG_PINNED 16u
#define PG_CUTMARK 32u /* the cut took this page's chunk from a pass in flight: that
			* pass must not clear PG_UNPROT any more (protect.c) */

/* Pages per bit of the "may hold PG_UNPROT pages" group map that lets the
 * cut find the remainder without reading every page's state. */
#define GROUP_SHIFT 6
#define GROUP_PAGES (1u << GROUP_SHIFT)

#define WRITER_BATCH_PAGES 64 /* the writer copies 256 KiB (4 KiB pages) at a time */

struct ckpt__backend;

/* Life of a checkpoint (e->phase). */
enum ckpt__phase {
	PH_IDLE = 0,      /* none; with CKPT_HEAP_INCREMENTAL traps still mark dirty pages */
	PH_PREPARING = 1, /* set-up and protection passes on the writer thread */
	PH_READY = 2,     /* ready to cut; passes keep the remainder small */
	PH_RUNNING = 3,   /* cut: PENDING pages are copied by traps and streamed */
};

/* A bounded multi-producer multi-consumer queue of 32-bit values (Dmitry
 * Vyukov's design): lock-free, no allocation, so usable from a SIGBUS
 * handler.  Capacity is a power of two >= the number of values that can
 * ever be in it, so a push never finds it full. */
struct ckpt__queue {
	struct ckpt__qcell {
		_Atomic uint64_t seq;
		uint32_t val;
	} *cells;
	uint64_t mask;
	_Atomic uint64_t head __attribute__((aligned(64)));
	_Atomic uint64_t tail __attribute__((aligned(64)));
};

int ckpt__queue_init(struct ckpt__queue *q, size_t min_capacity);
void ckpt__queue_fini(struct ckpt__queue *q);
bool ckpt__queue_push(struct ckpt__queue *q, uint32_t v);
bool ckpt__queue_pop(struct ckpt__queue *q, uint32_t *v);

/* A lock-free LIFO stack of 32-bit indexes (Treiber), with a tag in the
 * head word against ABA.  LIFO so that the slot freed last (still in cache,
 * already faulted in) is the next one used. */
struct ckpt__stack {
	_Atomic uint64_t head; /* low 32 bits: index + 1 (0: empty); high: tag */
	_Atomic uint32_t *next;
};

/* The pool of pages copied aside by the fault path: nslots page-sized
 * slots, a stack of free slots and a queue of filled ones (slot index; the
 * page index is in slot_page[]).  Slots are MAP_NORESERVE anonymous memory:
 * the writer faults in what a checkpoint may need when it starts (so traps
 * do not take a page fault on their slot) and gives it back afterwards. */
struct ckpt__pool {
	uint8_t *mem;
	size_t slot_size;
	uint32_t nslots;
	uint64_t *slot_page;
	struct ckpt__stack free_s;
	struct ckpt__queue ready_q;
	_Atomic uint32_t in_use;
	_Atomic uint32_t peak;
	uint32_t warmed;            /* slots [0, warmed) are faulted in (writer only) */
};

int ckpt__pool_init(struct ckpt__pool *p, size_t bytes, size_t slot_size);
void ckpt__pool_fini(struct ckpt__pool *p);
void ckpt__pool_trim(struct ckpt__pool *p); /* between checkpoints */
void ckpt__pool_warm(struct ckpt__pool *p, uint64_t max_pages); /* writer: ahead of need */
bool ckpt__pool_get(struct ckpt__pool *p, uint32_t *slot);
void ckpt__pool_put(struct ckpt__pool *p, uint32_t slot);
static inline uint8_t *ckpt__pool_slot(struct ckpt__pool *p, uint32_t slot)
{
	return p->mem + (size_t)slot * p->slot_size;
}

/* Statistics of the running / last checkpoint, updated from the fault path
 * (async-signal-safe atomics) and the writer. */
struct ckpt__stats {
	_Atomic uint64_t prep_traps;
	_Atomic uint64_t prep_hist[CKPT_HIST_BUCKETS];
	_Atomic uint64_t traps;
	_Atomic uint64_t saved_by_traps;
	_Atomic uint64_t fault_around;
	_Atomic uint64_t pool_waits;
	_Atomic uint64_t emitted;
	_Atomic uint64_t zero;
	_Atomic uint64_t bytes_written;
	_Atomic uint64_t hist[CKPT_HIST_BUCKETS];
};

struct ckpt__engine {
	const struct ckpt__backend *be; /* the heap's backend, fixed at creation */
	_Atomic uint8_t *pg;        /* npages states */
	struct ckpt__pool pool;
	unsigned fault_around;      /* pages, power of two */

	/*
	 * The gate keeps the fault path out while ckpt_begin() (or an abort)
	 * rewrites page states and protection: the fault path increments
	 * inflight, then checks gate_closed; the closer sets gate_closed, then
	 * waits for inflight to drain.  Both are seq_cst, so either the fault
	 * path sees the gate closed or the closer sees it in flight.
	 */
	_Atomic int gate_closed;
	_Atomic int inflight;

	/* the running checkpoint */
	_Atomic int phase;          /* enum ckpt__phase; changed with the gate closed */
	_Atomic int active;         /* phase != PH_IDLE: pages may be PENDING, discards wait */
	_Atomic int cancel;
	_Atomic uint64_t npending;  /* pages marked PENDING for this checkpoint */
	_Atomic uint64_t *groups;   /* one bit per GROUP_PAGES pages: may hold PG_UNPROT */
	size_t ngroups;
	size_t npages;              /* = h->npages, for protect.c */
	size_t prep_npages;         /* extent when preparation started */
	bool converge;              /* ckpt_prepare(): protect in passes before the cut */
	bool prepared_sink;         /* the file sink's set-up ran in preparation */
	/* protection passes vs the cut (protect.c): a pass publishes the chunk
	 * it works on in pass_cur[] and then checks prot_stop; the cut sets
	 * prot_stop and then takes over every published chunk, never waiting
	 * for a pass (which runs below the application's priority) */
	_Atomic int prot_stop;
#define CKPT__PASS_SLOTS 64
	_Atomic long pass_cur[CKPT__PASS_SLOTS];
	_Atomic size_t cutmarked[CKPT__PASS_SLOTS]; /* chunks + 1 the cut took over */
	bool setup_done;            /* under lock: the preparation's set-up has ended */
	bool ready;                 /* under lock: ready to cut */
	bool cut_requested;         /* under lock: a cut is under way, passes stop */
	bool cut_done;              /* under lock: the cut happened */
	int cut_rc;                 /* under lock: the cut's error, the checkpoint's result */
	uint64_t t_prepare;
	uint64_t prepare_ns;
	uint64_t prep_passes;
	uint64_t cut_pages;
	int event_fd;               /* eventfd: ready to cut, and done */
	_Atomic int failed;         /* CKPT_E_FAILED: the heap's protection state is lost */
	struct { uint64_t gen; int result; } past[8]; /* results of recent generations */
	_Atomic uint64_t wp_epoch;  /* +1 for every write-protect: tells a new fault from a retry */
#define CKPT__RECENT 16
	_Atomic size_t recent[CKPT__RECENT]; /* recently trapped fault-around windows, + 1 */
	_Atomic size_t prot_limit;  /* I3 */
	size_t ck_npages;           /* extent at ckpt_begin */
	uint64_t to_emit;           /* pages the stream carries */
	bool incremental_run;
	bool keep_protected;        /* CKPT_HEAP_INCREMENTAL: the writer leaves saved pages protected */
	struct ckpt_sink sink;
	struct ckpt_sink_info info;
	uint64_t t_begin;
	uint64_t pause_ns;
	uint64_t duration_ns;
	struct ckpt__stats st;

	/* fork backend */
	pid_t child;
	int pipe_rd;

	/* lifecycle, under lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool started;               /* some checkpoint was started */
	bool running;
	int result;
	bool writer_up;
	pthread_t writer;

	/* lineage for incrementals, under lock */
	bool tracking_valid;        /* I3 holds with prot_limit = prot_extent */
	size_t prot_extent;
	uint64_t generation;
	uint8_t last_id[16];
	char *last_path;
	const struct ckpt_sink *last_sink;
	unsigned since_full;

	/* handler thread (CKPT_TRAP_THREAD) */
	bool handler_up;
	pthread_t handler;
	int wake_fd;                /* eventfd: stop the handler */
	_Atomic int handler_stop;

	/* per-page write buffer of the writer thread */
	uint8_t *wbuf;
	size_t wbuf_pages;
};

/* trap.c: the fault path */
int ckpt__trap(ckpt_heap *h, size_t page);
void ckpt__mark_open(struct ckpt__engine *e, size_t first, size_t n, int phase, uint8_t extra);
void ckpt__gate_close(struct ckpt__engine *e);
void ckpt__gate_open(struct ckpt__engine *e);
/* Large runs freed by the allocator (the heap's discard hook, userfaultfd
 * backends only): whether their memory can be given back now (MADV_REMOVE),
 * recording the pages as dirty.  false: kept (a checkpoint is being
 * prepared or runs); the allocator then records the run for
 * ckpt__alloc_release_deferred().  Called with alloc_lock held. */
bool ckpt__track_discard(ckpt_heap *h, size_t first_page, size_t npages);
/* start / stop taking traps: a handler thread reading the uffd, or the
 * SIGBUS handler, as the heap's backend says */
int ckpt__traps_start(ckpt_heap *h);
void ckpt__traps_stop(ckpt_heap *h);
void ckpt__hist_add(struct ckpt__stats *st, uint64_t ns);

/* protect.c: write-protection in passes during preparation, and the cut's
 * remainder */
/* Write-protect or unprotect heap pages [first, first + n); unprotecting
 * also wakes threads blocked on a fault there (handler-thread mode). */
int ckpt__wp_range(ckpt_heap *h, size_t first, size_t n, bool protect);
int ckpt__protect_init(ckpt_heap *h);
void ckpt__protect_fini(ckpt_heap *h);
void ckpt__groups_set(struct ckpt__engine *e, size_t page);
void ckpt__groups_fill(struct ckpt__engine *e, size_t npages);
int ckpt__protect_pass(ckpt_heap *h, bool all, size_t npages, uint64_t *left);
int ckpt__protect_remainder(ckpt_heap *h, size_t npages, uint64_t *protected_pages);
void ckpt__protect_reset(struct ckpt__engine *e);
uint64_t ckpt__open_pages(ckpt_heap *h, size_t npages);
int ckpt__protect_parallel(ckpt_heap *h, size_t lo, size_t hi);

/*
 * What differs between the ways of taking a snapshot, stated once: the
 * userfaultfd backends (uffdbackend.c; thread and SIGBUS differ only in how
 * traps arrive, trap.c) and fork() (forkbackend.c).
 * checkpoint.c runs a checkpoint's life and calls these at its steps; a
 * NULL hook means "nothing to do".  @e->lock is not held unless said.
 */
struct ckpt__backend {
	const char *name;
	/* page states, protection, the pool and traps are in use (the
	 * userfaultfd backends); fork relies on the child's copy-on-write */
	bool tracks_pages;
	int (*attach)(ckpt_heap *h);  /* heap creation: start taking traps */
	void (*detach)(ckpt_heap *h); /* heap destruction */
	/* the checkpoint's thread, after the destination is set up */
	int (*prepare)(ckpt_heap *h, struct ckpt__engine *e);
	/* while ready and not cut, every few ms */
	int (*ready_pass)(ckpt_heap *h, struct ckpt__engine *e);
	/* the pause: gate and allocator quiescent, @ext pages in the image;
	 * sets e->to_emit */
	int (*cut)(ckpt_heap *h, struct ckpt__engine *e, size_t ext);
	/* the checkpoint's thread, after the cut: every page to the sink */
	int (*stream)(ckpt_heap *h, struct ckpt__engine *e);
	/* after the sink's end(@rc): back to idle (and to a known protection
	 * state after a failure) */
	void (*settle)(ckpt_heap *h, struct ckpt__engine *e, int rc);
	/* cancel or destroy while running: stop what would not notice the
	 * cancel flag; e->lock held */
	void (*interrupt)(ckpt_heap *h);
};
extern const struct ckpt__backend ckpt__backend_uffd, ckpt__backend_fork;

/* checkpoint.c */
int ckpt__engine_init(ckpt_heap *h);
void ckpt__engine_fini(ckpt_heap *h);

/* zero test used by the writer and the fork child (async-signal-safe) */

#endif /* CKPT_ENGINE_H */
