/*
 * trap.c - the fault path: what happens when the application writes a
 * write-protected heap page, delivered either to a handler thread that reads
 * the userfaultfd (CKPT_TRAP_THREAD) or as SIGBUS to the faulting thread
 * (CKPT_TRAP_SIGBUS).
 *
 * Everything reachable from ckpt__trap() is async-signal-safe: atomics,
 * memcpy, ioctl, nanosleep, clock_gettime.  No locks, no allocation.
 *
 * Calls protect.c (unprotect, group bits), pool.c and util.c; the engine's
 * state is in engine.h.  checkpoint.c and uffdbackend.c call in here.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "faultinject.h"


void ckpt__hist_add(struct ckpt__stats *st, uint64_t ns)
{
	unsigned b = ns ? 63u - (unsigned)__builtin_clzll(ns) : 0;
	if (b >= CKPT_HIST_BUCKETS)
		b = CKPT_HIST_BUCKETS - 1;
	atomic_fetch_add_explicit(&st->hist[b], 1, memory_order_relaxed);
}

void ckpt__gate_close(struct ckpt__engine *e)
{
	unsigned spins = 0;
	atomic_store(&e->gate_closed, 1);
	while (atomic_load(&e->inflight) != 0)
		ckpt__pause(&spins);
}

void ckpt__gate_open(struct ckpt__engine *e)
{
	atomic_store(&e->gate_closed, 0);
}

static void gate_enter(struct ckpt__engine *e)
{
	unsigned spins = 0;
	for (;;) {
		atomic_fetch_add(&e->inflight, 1);
		if (!atomic_load(&e->gate_closed))
			return;
		atomic_fetch_sub(&e->inflight, 1);
		while (atomic_load(&e->gate_closed))
			ckpt__pause(&spins);
	}
}

static void gate_leave(struct ckpt__engine *e)
{
	atomic_fetch_sub(&e->inflight, 1);
}

/*
 * Mark pages [first, first + n) as opened (about to be, or just,
 * unprotected), as @phase requires:
 *  - before the cut: PENDING (written after preparation started, so part of
 *    the checkpoint, incremental or not), UNPROT and TRAPPED (a protection
 *    pass must not clear UNPROT), and the group map (the cut finds it);
 *  - otherwise: UNPROT (I3; an incremental checkpoint includes the page).
 * @extra: PG_PINNED for ckpt_prepare_write().  Called inside the gate.
 */
void ckpt__mark_open(struct ckpt__engine *e, size_t first, size_t n, int phase, uint8_t extra)
{
	bool prep = phase == PH_PREPARING || phase == PH_READY;
	uint8_t bits = (uint8_t)(PG_UNPROT | extra | (prep ? PG_PENDING | PG_TRAPPED : 0));

	for (size_t q = first; q < first + n; q++) {
		uint8_t old = atomic_fetch_or(&e->pg[q], bits);
		if (prep && (old & PG_STATE) == PG_IDLE)
			atomic_fetch_add_explicit(&e->npending, 1, memory_order_relaxed);
	}
	if (prep)
		for (size_t g = first >> GROUP_SHIFT; g <= (first + n - 1) >> GROUP_SHIFT; g++)
			ckpt__groups_set(e, g << GROUP_SHIFT);
}

/* Before the cut nothing is copied: the page is opened and marked.  It is
 * marked again after the unprotect: a protection pass that ran between our
 * first mark and our unprotect may have cleared both, and only a mark that
 * follows the unprotect is sure to be seen (protect.c). */
static int open_before_cut(ckpt_heap *h, struct ckpt__engine *e, size_t page, int phase)
{
	ckpt__mark_open(e, page, 1, phase, 0);
	int rc = ckpt__wp_range(h, page, 1, false);
	ckpt__mark_open(e, page, 1, phase, 0);
	return rc;
}

/*
 * Save the pre-image of page q into a pool slot if it is still PENDING.
 * The caller holds slot.  Returns true if the slot was used.
 * Ordering (I2): copy, queue, then store IDLE with release, so whoever sees
 * IDLE and unprotects does so after the pre-image is safe.
 */
static bool save_to_slot(ckpt_heap *h, struct ckpt__engine *e, size_t q, uint32_t slot)
{
	uint8_t expect = atomic_load_explicit(&e->pg[q], memory_order_relaxed);
	do {
		if ((expect & PG_STATE) != PG_PENDING)
			return false;
	} while (!atomic_compare_exchange_weak(&e->pg[q], &expect,
					       (uint8_t)((expect & ~PG_STATE) | PG_CLAIMED)));
	/* Read the pre-image through the heap mapping itself: a write-protected
	 * pte is readable, and the faulting page is mapped there already,
	 * whereas its alias pte is often not (a minor fault per trap). */
	memcpy(ckpt__pool_slot(&e->pool, slot), h->base + (q << h->page_shift), h->page_size);
	e->pool.slot_page[slot] = q;
	ckpt__queue_push(&e->pool.ready_q, slot);
	atomic_store_explicit(&e->pg[q], (uint8_t)(expect & ~PG_STATE), memory_order_release);
	return true;
}

/* Fault-around on neighbour q: save its pre-image if it is still PENDING
 * and a slot is free (never waiting: neighbours are a bonus).  Returns true
 * if q is now IDLE, i.e. safe to unprotect (I2). */
static bool neighbour_safe(ckpt_heap *h, struct ckpt__engine *e, size_t q)
{
	uint32_t slot;
	uint8_t s = atomic_load_explicit(&e->pg[q], memory_order_acquire);

	if ((s & PG_STATE) == PG_PENDING) {
		/* Neighbours are speculative: once the pool is half full, keep
		 * its slots for pages that are actually being written (a trap
		 * that finds the pool empty stalls its thread). */
		if (atomic_load_explicit(&e->pool.in_use, memory_order_relaxed) >= e->pool.nslots / 2 ||
		    !ckpt__pool_get(&e->pool, &slot))
			return false;
		if (save_to_slot(h, e, q, slot)) {
			atomic_fetch_add_explicit(&e->st.saved_by_traps, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&e->st.fault_around, 1, memory_order_relaxed);
		} else {
			ckpt__pool_put(&e->pool, slot);
		}
		s = atomic_load_explicit(&e->pg[q], memory_order_acquire);
	}
	return (s & PG_STATE) == PG_IDLE;
}

/*
 * Fault-around pays only for a thread that writes pages in address order:
 * for random writes each neighbour saved is a copy on the application's
 * critical path (16 pages: ~10 us) and a pool slot taken early, and an
 * unprotected neighbour inflates an incremental's dirty set.  So it is
 * used only when the window just below this one was trapped recently: a
 * small direct-mapped table of recently trapped windows (a race on it only
 * costs one wrong guess).
 */
static bool looks_sequential(struct ckpt__engine *e, size_t window)
{
	size_t below = window - 1;
	bool seq = window > 0 &&
		   atomic_load_explicit(&e->recent[below % CKPT__RECENT], memory_order_relaxed) == below + 1;
	atomic_store_explicit(&e->recent[window % CKPT__RECENT], window + 1, memory_order_relaxed);
	return seq;
}

/* The run of pages around @page to open at once: the aligned fault-around
 * window, cut short at the first neighbour that is not safe (I2). */
static void fault_around(ckpt_heap *h, struct ckpt__engine *e, size_t page, size_t *lo_out,
			 size_t *hi_out)
{
	size_t fa = e->fault_around;
	size_t lo = page & ~(fa - 1), hi = lo + fa;
	size_t run_lo = page, run_hi = page + 1;

	if (fa > 1 && looks_sequential(e, page / fa)) {
		size_t lim = atomic_load(&e->prot_limit);
		if (hi > lim) /* past prot_limit nothing is protected */
			hi = lim > page ? lim : page + 1;
		while (run_hi < hi && neighbour_safe(h, e, run_hi))
			run_hi++;
		while (run_lo > lo && neighbour_safe(h, e, run_lo - 1))
			run_lo--;
	}
	*lo_out = run_lo;
	*hi_out = run_hi;
}

/*
 * ckpt__trap() : a write hit protected page @page.
 *  - no checkpoint (an incremental heap's clean page): mark it dirty, open it;
 *  - preparing: mark it and open it, no copy (open_before_cut);
 *  - after the cut: make sure the pre-image of every page we open is safe
 *    (copy it into a pool slot if still PENDING, wait if CLAIMED), then open.
 * Returns 0 or the error of the unprotect ioctl.
 */
int ckpt__trap(ckpt_heap *h, size_t page)
{
	struct ckpt__engine *e = h->eng;
	unsigned spins = 0;
	uint32_t slot;
	int rc, phase;

	for (;;) {
		gate_enter(e);
		phase = atomic_load(&e->phase);
		if (phase == PH_PREPARING || phase == PH_READY) {
			rc = open_before_cut(h, e, page, phase);
			gate_leave(e);
			return rc;
		}
		if (phase == PH_IDLE)
			break;
		uint8_t s = atomic_load_explicit(&e->pg[page], memory_order_acquire);
		if ((s & PG_STATE) == PG_PENDING) {
			if (!ckpt__pool_get(&e->pool, &slot)) {
				/* Pool full: wait for the writer to drain it
				 * (outside the gate, so an abort can proceed). */
				gate_leave(e);
				if (spins == 0)
					atomic_fetch_add(&e->st.pool_waits, 1);
				ckpt__pause(&spins);
				continue;
			}
			if (save_to_slot(h, e, page, slot))
				atomic_fetch_add_explicit(&e->st.saved_by_traps, 1,
							  memory_order_relaxed);
			else
				ckpt__pool_put(&e->pool, slot);
			gate_leave(e);
			continue; /* re-read: now IDLE (or claimed by the writer) */
		}
		if ((s & PG_STATE) == PG_CLAIMED) {
			/* The writer (or another trap) is copying it: I2 says
			 * wait until it is IDLE. */
			gate_leave(e);
			ckpt__pause(&spins);
			continue;
		}
		break; /* IDLE: the pre-image is safe */
	}

	size_t run_lo = page, run_hi = page + 1;
	if (phase == PH_RUNNING)
		fault_around(h, e, page, &run_lo, &run_hi);
	/* I3: mark before unprotecting, so an incremental checkpoint that
	 * starts after this (the gate orders us before it) includes them. */
	ckpt__mark_open(e, run_lo, run_hi - run_lo, phase, 0);
	rc = ckpt__wp_range(h, run_lo, run_hi - run_lo, false);
	if (rc == 0 && run_hi - run_lo > 1) {
		/* An unprotected pte still lacks its write bit: the next write
		 * to each neighbour would take a minor fault (~1 us).  Set them
		 * now, in one call (measured: a sequential writer's next writes
		 * go from 0.9 us to 0.15 us p50).  The pages exist already
		 * (they were just read to be saved, or inside the extent). */
		madvise(h->base + (run_lo << h->page_shift), (run_hi - run_lo) << h->page_shift,
			MADV_POPULATE_WRITE);
	}
	gate_leave(e);
	return rc;
}

/* Counts a trap in the histogram of its phase. */
static void count_trap(struct ckpt__engine *e, uint64_t t0)
{
	uint64_t ns = ckpt__now_ns() - t0;
	int phase = atomic_load_explicit(&e->phase, memory_order_relaxed);
	if (phase == PH_PREPARING || phase == PH_READY) {
		unsigned b = ns ? 63u - (unsigned)__builtin_clzll(ns) : 0;
		atomic_fetch_add_explicit(&e->st.prep_traps, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&e->st.prep_hist[b < CKPT_HIST_BUCKETS ? b : CKPT_HIST_BUCKETS - 1],
					  1, memory_order_relaxed);
		return;
	}
	atomic_fetch_add_explicit(&e->st.traps, 1, memory_order_relaxed);
	ckpt__hist_add(&e->st, ns);
}

/* ------------------------------------------------------------ SIGBUS mode */

/*
 * The SIGBUS handler must find the heap from the faulting address alone; a
 * signal handler has no context argument, so this registry is the one piece
 * of process-global state libckpt keeps.  A fixed array of atomic pointers:
 * lookups are lock-free and async-signal-safe.
 */
#define MAX_SIGBUS_HEAPS 64
static _Atomic(ckpt_heap *) sigbus_heaps[MAX_SIGBUS_HEAPS];
static struct sigaction old_sigbus;
static pthread_mutex_t sigbus_install_lock = PTHREAD_MUTEX_INITIALIZER;
static bool sigbus_installed;

/* Faults at one address by one thread with no write-protect in between: a
 * SIGBUS that unprotecting does not cure (e.g. a truncated memfd) must go to
 * the old handler instead of looping forever.  The protect epoch tells a
 * retry from a new checkpoint's fault on the same page (a counter thread
 * writes one word every checkpoint). */
static __thread __attribute__((tls_model("initial-exec"))) uintptr_t last_fault_addr;
static __thread __attribute__((tls_model("initial-exec"))) uint64_t last_fault_epoch;
static __thread __attribute__((tls_model("initial-exec"))) unsigned last_fault_count;

#define SIGBUS_RETRIES 1000

static void chain_sigbus(int sig, siginfo_t *si, void *uctx)
{
	if (old_sigbus.sa_flags & SA_SIGINFO) {
		if (old_sigbus.sa_sigaction) {
			old_sigbus.sa_sigaction(sig, si, uctx);
			return;
		}
	} else if (old_sigbus.sa_handler != SIG_DFL && old_sigbus.sa_handler != SIG_IGN) {
		old_sigbus.sa_handler(sig);
		return;
	}
	/* Default action: restore it; returning re-executes the faulting
	 * instruction, which faults again and terminates the process with
	 * SIGBUS as it would have without libckpt. */
	struct sigaction dfl;
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigaction(SIGBUS, &dfl, NULL);
}

static void sigbus_handler(int sig, siginfo_t *si, void *uctx)
{
	int saved_errno = errno;
	uintptr_t addr = (uintptr_t)si->si_addr;

	if (si->si_code == BUS_ADRERR) {
		for (int i = 0; i < MAX_SIGBUS_HEAPS; i++) {
			ckpt_heap *h = atomic_load_explicit(&sigbus_heaps[i], memory_order_acquire);
			if (!h || !ckpt__in_heap(h, (void *)addr))
				continue;
			uint64_t epoch = atomic_load_explicit(&h->eng->wp_epoch, memory_order_relaxed);
			if (addr != last_fault_addr || epoch != last_fault_epoch) {
				last_fault_addr = addr;
				last_fault_epoch = epoch;
				last_fault_count = 0;
			} else if (++last_fault_count > SIGBUS_RETRIES) {
				break; /* not ours to cure */
			}
			uint64_t t0 = ckpt__now_ns();
			int rc = ckpt__trap(h, ckpt__page_of(h, (void *)addr));
			count_trap(h->eng, t0);
			if (rc == 0) {
				errno = saved_errno;
				return;
			}
			break;
		}
	}
	last_fault_addr = 0;
	chain_sigbus(sig, si, uctx);
	errno = saved_errno;
}

static int sigbus_register(ckpt_heap *h)
{
	int rc = 0;

	pthread_mutex_lock(&sigbus_install_lock);
	if (!sigbus_installed) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = sigbus_handler;
		/* SA_NODEFER: a heap write from another signal handler that
		 * interrupts ours must fault into us again, not into a blocked
		 * synchronous SIGBUS (which the kernel turns into a kill). */
		sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_RESTART;
		/* Asynchronous signals stay blocked while a trap runs: a
		 * handler that wrote the page this trap has CLAIMED, or that
		 * trapped while a cut waits for this trap to leave the gate,
		 * would wait forever for the frame it interrupted.  The
		 * synchronous ones cannot be blocked (the kernel would kill). */
		sigfillset(&sa.sa_mask);
		sigdelset(&sa.sa_mask, SIGBUS);
		sigdelset(&sa.sa_mask, SIGSEGV);
		sigdelset(&sa.sa_mask, SIGILL);
		sigdelset(&sa.sa_mask, SIGFPE);
		sigdelset(&sa.sa_mask, SIGTRAP);
		if (sigaction(SIGBUS, &sa, &old_sigbus) != 0) {
			rc = -errno;
			goto out;
		}
		sigbus_installed = true;
	}
	rc = -ENOSPC;
	for (int i = 0; i < MAX_SIGBUS_HEAPS; i++) {
		ckpt_heap *expect = NULL;
		if (atomic_compare_exchange_strong(&sigbus_heaps[i], &expect, h)) {
			rc = 0;
			break;
		}
	}
out:
	pthread_mutex_unlock(&sigbus_install_lock);
	return rc;
}

static void sigbus_unregister(ckpt_heap *h)
{
	pthread_mutex_lock(&sigbus_install_lock);
	for (int i = 0; i < MAX_SIGBUS_HEAPS; i++) {
		ckpt_heap *expect = h;
		atomic_compare_exchange_strong(&sigbus_heaps[i], &expect, NULL);
	}
	/* The handler stays installed: another library may have chained to it
	 * since, and it passes foreign faults on anyway. */
	pthread_mutex_unlock(&sigbus_install_lock);
}

/* --------------------------------------------------------- handler thread */

static void handle_msgs(ckpt_heap *h, struct uffd_msg *msgs, ssize_t n)
{
	for (ssize_t i = 0; i < n; i++) {
		struct uffd_msg *m = &msgs[i];
		if (m->event != UFFD_EVENT_PAGEFAULT)
			continue;
		void *addr = (void *)(uintptr_t)m->arg.pagefault.address;
		if (!ckpt__in_heap(h, addr))
			continue;
		uint64_t t0 = ckpt__now_ns();
		int rc = ckpt__trap(h, ckpt__page_of(h, addr));
		count_trap(h->eng, t0);
		if (rc != 0) {
			/* Nothing sensible is left but to let the writer
			 * proceed: wake the thread; it faults again and we
			 * retry. */
			struct uffdio_range r = {
				.start = (uint64_t)(uintptr_t)addr & ~((uint64_t)h->page_size - 1),
				.len = h->page_size};
			ioctl(h->uffd, UFFDIO_WAKE, &r);
			ckpt__log(h, CKPT_LOG_ERROR, "unprotect failed: %s", ckpt_strerror(rc));
		}
	}
}

/*
 * The handler thread cannot read the userfaultfd any more: no fault will be
 * resolved from now on, so nothing may stay protected.  Unprotect the whole
 * heap (which also wakes every thread blocked on a fault) and put the heap
 * in the failed state: the running checkpoint fails and no new one starts
 * (CKPT_E_FAILED).  Saying so loudly is all that is left.
 */
static void handler_fail(ckpt_heap *h, int err)
{
	struct ckpt__engine *e = h->eng;
	atomic_store(&e->failed, 1);
	atomic_store(&e->cancel, 1);
	ckpt__log(h, CKPT_LOG_ERROR,
		  "userfaultfd read failed (%s): the heap is unprotected and every later "
		  "checkpoint fails with CKPT_E_FAILED", ckpt_strerror(err));
	struct uffdio_writeprotect wp = {
		.range = {.start = (uint64_t)(uintptr_t)h->base, .len = (uint64_t)h->size}, .mode = 0};
	if (ioctl(h->uffd, UFFDIO_WRITEPROTECT, &wp) != 0)
		ckpt__log(h, CKPT_LOG_ERROR, "unprotecting the heap failed too: %s",
			  ckpt_strerror(-errno));
}

/*
 * Reads faults until stopped.  It blocks in poll() between faults instead of
 * spinning: on a loaded machine a spinning handler takes a CPU from the
 * application it serves (measured under load: issue 10, docs/design.md "Trap
 * delivery"); CKPT_HEAP_BUSY_POLL spins for the whole checkpoint, for
 * deployments with a core to spare.
 */
static void *handler_main(void *arg)
{
	ckpt_heap *h = arg;
	struct ckpt__engine *e = h->eng;
	struct uffd_msg msgs[32];

	while (!atomic_load(&e->handler_stop)) {
		int frc = ckpt__fault_hit(CKPT_FAULT_UFFD_READ);
		ssize_t n = frc ? (errno = -frc, -1) : read(h->uffd, msgs, sizeof(msgs));
		if (n > 0) {
			handle_msgs(h, msgs, n / (ssize_t)sizeof(msgs[0]));
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			handler_fail(h, -errno);
			break;
		}
		if (atomic_load(&e->active) && (h->flags & CKPT_HEAP_BUSY_POLL)) {
			ckpt__cpu_relax();
			continue;
		}
		struct pollfd pfd[2] = {{h->uffd, POLLIN, 0}, {e->wake_fd, POLLIN, 0}};
		int timeout = (h->flags & CKPT_HEAP_BUSY_POLL) ? 1 : -1;
		poll(pfd, 2, timeout);
	}
	return NULL;
}

static int handler_start(ckpt_heap *h)
{
	struct ckpt__engine *e = h->eng;
	int rc;

	e->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (e->wake_fd < 0)
		return -errno;
	atomic_store(&e->handler_stop, 0);
	/* Signals go to the application's threads, not to ours */
	rc = ckpt__thread_start(&e->handler, "ckpt-trap", handler_main, h);
	if (rc) {
		close(e->wake_fd);
		e->wake_fd = -1;
		return rc;
	}
	e->handler_up = true;
	return 0;
}

static void handler_stop(ckpt_heap *h)
{
	struct ckpt__engine *e = h->eng;
	uint64_t one = 1;

	if (!e->handler_up)
		return;
	atomic_store(&e->handler_stop, 1);
	if (write(e->wake_fd, &one, sizeof(one)) < 0) {
		/* eventfd write cannot fail short of overflow; poll times
		 * out in busy-poll mode anyway */
	}
	pthread_join(e->handler, NULL);
	close(e->wake_fd);
	e->wake_fd = -1;
	e->handler_up = false;
}

/* ---------------------------------------------------------- discard, API */

bool ckpt__track_discard(ckpt_heap *h, size_t first_page, size_t npages)
{
	struct ckpt__engine *e = h->eng;

	/*
	 * Punching a hole changes a page to zeroes without a write fault, so
	 * its pre-image would be lost: never while a checkpoint runs (the
	 * memory is then simply kept).  Otherwise, the pages are marked
	 * unprotected-and-changed so that an incremental checkpoint carries
	 * their new (zero) contents.
	 */
	if (atomic_load(&e->active))
		return false;
	for (size_t q = first_page; q < first_page + npages && q < h->npages; q++)
		atomic_fetch_or(&e->pg[q], PG_UNPROT);
	madvise(h->base + (first_page << h->page_shift), npages << h->page_shift, MADV_REMOVE);
	return true;
}

/*
 * ckpt_prepare_write() : the range must be writable by a syscall when this
 * returns, in every phase, so it never trusts a page's state byte alone (a
 * trap marks PG_UNPROT before its unprotect lands): it saves what still needs
 * saving, marks the pages PG_PINNED (preparation's passes then leave them
 * open until the cut), and unprotects the whole range itself, in one ioctl.
 */
CKPT_API int ckpt_prepare_write(ckpt_heap *h, void *ptr, size_t len)
{
	struct ckpt__engine *e;
	size_t first, last;

	if (!h || !ptr)
		return -EINVAL;
	if (len == 0)
		return 0;
	if (!ckpt__in_heap(h, ptr) || len > (size_t)(h->base + h->size - (uint8_t *)ptr))
		return -EINVAL;
	if (!h->eng->be->tracks_pages)
		return 0;
	e = h->eng;
	first = ckpt__page_of(h, ptr);
	last = ckpt__page_of(h, (uint8_t *)ptr + len - 1);
	for (;;) {
		/* After the cut a PENDING page must be saved first (I2):
		 * ckpt__trap() does that and waits for a CLAIMED one. */
		size_t lim = atomic_load(&e->prot_limit);
		for (size_t q = first; q <= last && q < lim; q++) {
			uint8_t s = atomic_load_explicit(&e->pg[q], memory_order_acquire);
			if (atomic_load(&e->phase) == PH_RUNNING && (s & PG_STATE) != PG_IDLE) {
				int rc = ckpt__trap(h, q);
				if (rc)
					return rc;
			}
		}
		gate_enter(e);
		int phase = atomic_load(&e->phase);
		lim = atomic_load(&e->prot_limit);
		size_t end = last + 1 < lim ? last + 1 : lim;
		bool again = false;
		for (size_t q = first; phase == PH_RUNNING && q < end; q++)
			if ((atomic_load_explicit(&e->pg[q], memory_order_acquire) & PG_STATE) != PG_IDLE)
				again = true; /* a new checkpoint was cut meanwhile */
		if (again) {
			gate_leave(e);
			continue;
		}
		int rc = 0;
		if (end > first) {
			ckpt__mark_open(e, first, end - first, phase, PG_PINNED);
			rc = ckpt__wp_range(h, first, end - first, false);
			ckpt__mark_open(e, first, end - first, phase, PG_PINNED);
		}
		gate_leave(e);
		return rc;
	}
}

/* How traps arrive is this file's business: the two userfaultfd backends
 * differ in nothing else. */
int ckpt__traps_start(ckpt_heap *h)
{
	return h->backend == CKPT_TRAP_SIGBUS ? sigbus_register(h) : handler_start(h);
}

void ckpt__traps_stop(ckpt_heap *h)
{
	if (h->backend == CKPT_TRAP_SIGBUS)
		sigbus_unregister(h);
	handler_stop(h);
}
