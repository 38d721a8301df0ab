/*
 * engine.h - the checkpoint engine's shared state: per-page states, the
 * pool of pages copied aside, the fault path and the writer.
 *
 * Private to heap.c, pool.c, track.c, checkpoint.c and forkbackend.c.  The
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
 *             PG_PENDING  in the running checkpoint, pre-image not saved yet;
 *                         the page is write-protected
 *             PG_CLAIMED  a writer or a trap owns it and is copying it
 *   bit 2     PG_UNPROT   the page has been unprotected since it was last
 *                         write-protected (it may have been written): an
 *                         incremental checkpoint must include it
 *
 * Invariants:
 *  I1 A page is emitted exactly once per checkpoint: only the thread that
 *     moves it PENDING -> CLAIMED (CAS) copies and emits it.
 *  I2 A page is never unprotected while PENDING or CLAIMED: whoever
 *     unprotects a page first sees it IDLE, which is stored (release) only
 *     after its pre-image is safe (in the writer's buffer or a pool slot).
 *  I3 Pages [0, prot_limit) without PG_UNPROT are write-protected; pages at
 *     or past prot_limit never were.
 */
#define PG_IDLE 0u
#define PG_PENDING 1u
#define PG_CLAIMED 2u
#define PG_STATE 3u
#define PG_UNPROT 4u

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
};

int ckpt__pool_init(struct ckpt__pool *p, size_t bytes, size_t slot_size);
void ckpt__pool_fini(struct ckpt__pool *p);
void ckpt__pool_trim(struct ckpt__pool *p); /* between checkpoints */
void ckpt__pool_warm(struct ckpt__pool *p, uint64_t max_pages); /* writer, at start */
bool ckpt__pool_get(struct ckpt__pool *p, uint32_t *slot);
void ckpt__pool_put(struct ckpt__pool *p, uint32_t slot);
static inline uint8_t *ckpt__pool_slot(struct ckpt__pool *p, uint32_t slot)
{
	return p->mem + (size_t)slot * p->slot_size;
}

/* Statistics of the running / last checkpoint, updated from the fault path
 * (async-signal-safe atomics) and the writer. */
struct ckpt__stats {
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
	_Atomic int active;         /* pages may be PENDING */
	_Atomic int cancel;
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
	bool writer_job;            /* a job is posted for the writer */
	bool writer_exit;
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

/* track.c: the fault path */
int ckpt__track_init(ckpt_heap *h);
void ckpt__track_fini(ckpt_heap *h);
int ckpt__trap(ckpt_heap *h, size_t page, bool wait_allowed);
int ckpt__wp_range(ckpt_heap *h, size_t first, size_t n, bool protect);
void ckpt__gate_close(struct ckpt__engine *e);
void ckpt__gate_open(struct ckpt__engine *e);
int ckpt__sigbus_register(ckpt_heap *h);
void ckpt__sigbus_unregister(ckpt_heap *h);
int ckpt__handler_start(ckpt_heap *h);
void ckpt__handler_stop(ckpt_heap *h);
void ckpt__hist_add(struct ckpt__stats *st, uint64_t ns);

/* checkpoint.c */
int ckpt__engine_init(ckpt_heap *h);
void ckpt__engine_fini(ckpt_heap *h);

/* forkbackend.c */
int ckpt__fork_start(ckpt_heap *h);          /* in ckpt_begin, heap quiescent */
int ckpt__fork_stream(ckpt_heap *h);         /* on the writer thread */
void ckpt__fork_kill(ckpt_heap *h);

/* zero test used by the writer and the fork child (async-signal-safe) */
bool ckpt__page_is_zero(const void *p, size_t len);

#endif /* CKPT_ENGINE_H */
